"""The release's object-level modules: its positional encoding, object summariser and object transformer.

Written from the released architecture (gdkvm issue 12), not copied. Shapes: ``B`` batch, ``O`` objects,
``E`` embed width, ``Q`` object queries, ``h, w`` the stride-16 grid, ``L`` transformer blocks.

* :func:`release_position_encoding`: a fixed 2D sine encoding whose first half of the channels encodes
  the column and the second half the row, each as interleaved (sin, cos) pairs of ``pos * f_i`` with the
  position scaled to ``[0, scale]`` (``i / (n - 1) * scale``) and frequencies ``temperature^(-2i / (E/2))``;
  scale 32 and temperature 128 in the release.
* :class:`ReleaseObjectSummarizer`: values -> ``Q`` area-weighted object summaries (half of the queries
  pool over the object, half over the rest), with the positional encoding added to the projected values.
* :class:`ReleaseObjectTransformer`: ``L`` blocks of (queries read pixels under a foreground/background
  attention mask, query self-attention, query FFN, pixels read queries, a channel-attention residual
  conv block), plus ``L + 1`` auxiliary mask heads on the pixel features (before the first block and
  after each block); each head's prediction also sets the next block's attention mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdkvm.errors import ConfigError
from gdkvm.models.modules import ResBlock, per_object, soft_aggregate
from gdkvm.models.transformer import FeedForward

__all__ = ["release_position_encoding", "ReleaseObjectSummarizer", "ReleaseObjectTransformer",
           "ReleaseTransformerBlock", "query_attention_mask", "PE_SCALE", "PE_TEMPERATURE"]

#: The release's pixel positional-encoding scale and temperature (``pixel_pe_scale`` / ``_temperature``).
PE_SCALE = 32.0
PE_TEMPERATURE = 128.0


def release_position_encoding(height: int, width: int, dim: int, *, scale: float = PE_SCALE,
                              temperature: float = PE_TEMPERATURE, device: torch.device | None = None,
                              dtype: torch.dtype = torch.float32) -> Tensor:
    """The release's 2D sine encoding of a height x width grid: (height, width, dim), dim divisible by 4.

    Channels [0, dim/2) encode the column x, [dim/2, dim) the row y; within each half channel 2i is
    sin(p * f_i) and 2i + 1 is cos(p * f_i), with p = index / (n - 1 + 1e-6) * scale and
    f_i = temperature^(-2i / (dim/2)).
    """
    if dim % 4:
        raise ConfigError(f"release positional encoding: embed width {dim} must be divisible by 4")
    half = dim // 2
    freqs = temperature ** (-torch.arange(0, half, 2, device=device, dtype=torch.float64) / half)

    def axis(n: int) -> Tensor:  # (n, half)
        pos = torch.arange(n, device=device, dtype=torch.float64)
        pos = pos / (pos[-1] + 1e-6) * scale
        angle = pos[:, None] * freqs[None, :]
        return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)

    ex = axis(width)[None].expand(height, -1, -1)
    ey = axis(height)[:, None].expand(-1, width, -1)
    return torch.cat([ex, ey], dim=-1).to(dtype)


def _full_precision(x: Tensor) -> Tensor:
    """Half-precision tensors to float32 (the release pools summaries outside autocast); others unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class ReleaseObjectSummarizer(nn.Module):
    """masks (B, O, H, W) in [0, 1], values (B, O, Cv, h, w) -> object memory (B, O, Q, E + 1).

    The values are projected to E, the positional encoding is added, and two MLPs (E-E-E and E-E-Q, ReLU)
    give per-pixel features and per-query pooling logits. Query q's weight at a pixel is
    sigmoid(logit) times the pixel's area-resized object mask (first Q/2 queries) or its complement (last
    Q/2); the memory holds the weighted feature sums (first E channels) and the weight sums (last channel).
    """

    def __init__(self, value_dim: int, embed_dim: int, num_queries: int):
        super().__init__()
        if num_queries % 2:
            raise ConfigError(f"release object summariser: num_queries {num_queries} must be even")
        self.embed_dim = embed_dim
        self.num_queries = num_queries
        self.input_proj = nn.Linear(value_dim, embed_dim)
        self.feature_mlp = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim))
        self.weight_mlp = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, num_queries))

    def forward(self, masks: Tensor, value: Tensor) -> Tensor:
        h, w = value.shape[-2:]
        fg = F.interpolate(masks.to(value.dtype), size=(h, w), mode="area").unsqueeze(-1)  # (B, O, h, w, 1)
        half = self.num_queries // 2
        allowed = torch.cat([fg.expand(-1, -1, -1, -1, half), (1 - fg).expand(-1, -1, -1, -1, half)], dim=-1)
        x = self.input_proj(value.permute(0, 1, 3, 4, 2))  # (B, O, h, w, E)
        x = x + release_position_encoding(h, w, self.embed_dim, device=x.device, dtype=x.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = _full_precision(x)
            weights = self.weight_mlp(x).sigmoid() * _full_precision(allowed)  # (B, O, h, w, Q)
            sums = torch.einsum("bohwq,bohwc->boqc", weights, self.feature_mlp(x))
            area = weights.sum(dim=(2, 3)).unsqueeze(-1)
        return torch.cat([sums, area], dim=-1)


def query_attention_mask(obj_logits: Tensor, heads: int, num_queries: int) -> Tensor:
    """Auxiliary object logits (B, O, h, w) -> the query-reads-pixels mask (B * O * heads, Q, h * w), bool,
    True where attention is blocked.

    A pixel is the object's foreground when the object's soft-aggregated logit is the largest of all
    channels (background included; ties count). The first Q/2 queries may look only at foreground
    pixels, the last Q/2 only at the others; a query row that would be blocked everywhere is unblocked.
    Row order is (batch, object, head), as nn.MultiheadAttention expects.
    """
    b, o = obj_logits.shape[:2]
    agg = soft_aggregate(torch.sigmoid(obj_logits))
    fg = (agg[:, 1:] >= agg.max(dim=1, keepdim=True).values).flatten(2)  # (B, O, hw)
    half = num_queries // 2
    blocked = torch.cat([(~fg).unsqueeze(2).expand(-1, -1, half, -1), fg.unsqueeze(2).expand(-1, -1, half, -1)],
                        dim=2)  # (B, O, Q, hw)
    blocked = blocked & ~blocked.all(dim=-1, keepdim=True)
    return blocked.unsqueeze(2).expand(-1, -1, heads, -1, -1).reshape(b * o * heads, num_queries, -1)


class _Attend(nn.Module):
    """x (N, Lx, E) attends to mem (N, Lm, E): positional encodings go to the query and the key, not the
    value. With ``norm`` x is layer-normalised first and the residual is taken from the *normalised* x, as
    in the release; without it, from x itself. ``mem=None`` is self-attention on the normalised x."""

    def __init__(self, dim: int, heads: int, norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x: Tensor, x_pe: Tensor, mem: Tensor | None = None, mem_pe: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        x = self.norm(x)
        if mem is None:
            mem, mem_pe = x, x_pe
        return x + self.attn(x + x_pe, mem + mem_pe, mem, attn_mask=mask, need_weights=False)[0]


class ReleaseTransformerBlock(nn.Module):
    """One release object-transformer block.

    query (BO, Q, E) reads the pixels (BO, hw, E) under ``mask`` (normalised-residual attention), then
    self-attends (normalised residual), then passes a pre-norm FFN; the pixels read the updated queries
    (plain residual, no norm) and pass a channel-attention residual conv block on the (h, w) grid.
    """

    def __init__(self, dim: int, heads: int, ff_dim: int):
        super().__init__()
        self.query_reads_pixels = _Attend(dim, heads, norm=True)
        self.query_self_attention = _Attend(dim, heads, norm=True)
        self.query_ffn = FeedForward(dim, ff_dim)
        self.pixel_reads_queries = _Attend(dim, heads, norm=False)
        self.pixel_ffn = ResBlock(dim, dim)

    def forward(self, query: Tensor, query_pe: Tensor, pixel: Tensor, pixel_pe: Tensor,
                mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """query, query_pe (BO, Q, E); pixel (B, O, E, h, w); pixel_pe (BO, hw, E); mask (BO * heads, Q, hw)
        -> (query (BO, Q, E), pixel (B, O, E, h, w))."""
        b, o, e, h, w = pixel.shape
        flat = pixel.flatten(3).flatten(0, 1).transpose(1, 2)  # (BO, hw, E)
        query = self.query_reads_pixels(query, query_pe, flat, pixel_pe, mask)
        query = self.query_self_attention(query, query_pe)
        query = self.query_ffn(query)
        flat = self.pixel_reads_queries(flat, pixel_pe, query, query_pe)
        grid = flat.transpose(1, 2).reshape(b * o, e, h, w)
        return query, self.pixel_ffn(grid).view(b, o, e, h, w)


class ReleaseObjectTransformer(nn.Module):
    """pixel (B, O, E, h, w), object memory (B, O, Q, E + 1) -> (pixel (B, O, E, h, w),
    auxiliary object logits (B, O, L + 1, h, w)).

    The summaries are the memory's sums divided by (area + 1e-4). Queries: a learned init plus a linear
    map of the summaries; query encodings: a learned embedding plus another linear map. Pixels: a 1x1
    projection of the input; pixel encodings: another 1x1 projection plus the fixed positional encoding.
    Auxiliary head i (ReLU, then a 1x1 conv to one channel) reads the pixels before block i (i < L) or
    after the last block (i = L); heads 0..L-1 also give block i its attention mask.
    """

    def __init__(self, embed_dim: int, num_queries: int, num_blocks: int, heads: int, ff_dim: int):
        super().__init__()
        if num_queries % 2:
            raise ConfigError(f"release object transformer: num_queries {num_queries} must be even")
        if embed_dim % heads:
            raise ConfigError(f"release object transformer: embed_dim {embed_dim} must be divisible by "
                              f"transformer_heads {heads}")
        self.embed_dim, self.num_queries, self.heads = embed_dim, num_queries, heads
        self.query_init = nn.Embedding(num_queries, embed_dim)
        self.query_embed = nn.Embedding(num_queries, embed_dim)
        self.summary_to_init = nn.Linear(embed_dim, embed_dim)
        self.summary_to_embed = nn.Linear(embed_dim, embed_dim)
        self.pixel_init = nn.Conv2d(embed_dim, embed_dim, kernel_size=1)
        self.pixel_embed = nn.Conv2d(embed_dim, embed_dim, kernel_size=1)
        self.blocks = nn.ModuleList(ReleaseTransformerBlock(embed_dim, heads, ff_dim) for _ in range(num_blocks))
        self.aux_heads = nn.ModuleList(nn.Sequential(nn.ReLU(), nn.Conv2d(embed_dim, 1, kernel_size=1))
                                       for _ in range(num_blocks + 1))

    def aux_logits(self, index: int, pixel: Tensor) -> Tensor:
        """Auxiliary head ``index`` on pixel (B, O, E, h, w) -> object logits (B, O, h, w)."""
        return per_object(self.aux_heads[index], pixel).squeeze(2)

    def forward(self, pixel: Tensor, obj_memory: Tensor) -> tuple[Tensor, Tensor]:
        b, o, e, h, w = pixel.shape
        summaries = (obj_memory[..., :-1] / (obj_memory[..., -1:] + 1e-4)).flatten(0, 1)  # (BO, Q, E)
        query = self.query_init.weight.unsqueeze(0) + self.summary_to_init(summaries)
        query_pe = self.query_embed.weight.unsqueeze(0) + self.summary_to_embed(summaries)
        grid_pe = release_position_encoding(h, w, e, device=pixel.device, dtype=pixel.dtype).flatten(0, 1)
        pixel_pe = per_object(self.pixel_embed, pixel).flatten(3).flatten(0, 1).transpose(1, 2) + grid_pe
        x = per_object(self.pixel_init, pixel)
        aux = [self.aux_logits(0, x)]
        for i, block in enumerate(self.blocks):
            mask = query_attention_mask(aux[-1], self.heads, self.num_queries)
            query, x = block(query, query_pe, x, pixel_pe, mask)
            aux.append(self.aux_logits(i + 1, x))
        return x, torch.stack(aux, dim=2)
