"""Object-level reasoning after Cutie: an object summarizer (writes) and an object transformer (reads).

The summarizer pools each frame's values into ``Q`` object summaries per object: the first half of the
queries pool over the object's pixels, the second half over the background, with learned soft weights.
Summaries are kept as running sums with their pooled area (B, O, Q, E + 1), so the object memory is a
constant size whatever the number of frames. The transformer turns the averaged summaries into object
queries that read from the pixel features and write back into them (bidirectional cross-attention).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdkvm.models.modules import ResBlock, per_object


def sine_position_encoding(height: int, width: int, dim: int, *, device: torch.device | None = None,
                           dtype: torch.dtype = torch.float32, temperature: float = 10000.0) -> Tensor:
    """A fixed 2D sine/cosine encoding of a height x width grid: (height * width, dim).

    Half of the channels encode the row, half the column; each half holds sin and cos at dim/4
    geometric frequencies of the coordinate scaled to [0, 2*pi]. Odd leftovers are zero.
    """
    n_freq = max(dim // 4, 1)
    freqs = temperature ** (torch.arange(n_freq, device=device, dtype=torch.float64) / n_freq)
    ys = (torch.arange(height, device=device, dtype=torch.float64) + 0.5) / height * 2 * math.pi
    xs = (torch.arange(width, device=device, dtype=torch.float64) + 0.5) / width * 2 * math.pi
    ey = ys[:, None] / freqs  # (h, n_freq)
    ex = xs[:, None] / freqs
    pe_y = torch.cat([ey.sin(), ey.cos()], dim=1)[:, None, :].expand(height, width, -1)
    pe_x = torch.cat([ex.sin(), ex.cos()], dim=1)[None, :, :].expand(height, width, -1)
    pe = torch.cat([pe_y, pe_x], dim=2).reshape(height * width, -1)[:, :dim]
    if pe.shape[1] < dim:
        pe = F.pad(pe, (0, dim - pe.shape[1]))
    return pe.to(dtype)


class ObjectSummarizer(nn.Module):
    """Pool per-object values into Q summaries: masks (B, O, H, W), values (B, O, Cv, h, w) -> (B, O, Q, E + 1).

    The last channel is the pooled area (sum of weights); the first E are weighted feature sums.
    """

    def __init__(self, value_dim: int, embed_dim: int, num_queries: int):
        super().__init__()
        self.num_queries = num_queries
        self.embed_dim = embed_dim
        self.input_proj = nn.Linear(value_dim, embed_dim)
        self.feature_head = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim))
        self.weight_head = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, num_queries))

    def forward(self, masks: Tensor, value: Tensor) -> Tensor:
        h, w = value.shape[-2:]
        masks = F.interpolate(masks, size=(h, w), mode="area").unsqueeze(-1)  # (B, O, h, w, 1)
        half = self.num_queries // 2
        allowed = torch.cat([masks.expand(-1, -1, -1, -1, half), (1 - masks).expand(-1, -1, -1, -1, half)], dim=-1)
        x = self.input_proj(value.permute(0, 1, 3, 4, 2))  # (B, O, h, w, E)
        x = x + sine_position_encoding(h, w, self.embed_dim, device=x.device, dtype=x.dtype).view(h, w, -1)
        weights = self.weight_head(x).sigmoid() * allowed  # (B, O, h, w, Q)
        sums = torch.einsum("bohwq,bohwc->boqc", weights, self.feature_head(x))
        area = weights.sum(dim=(2, 3)).unsqueeze(-1)
        return torch.cat([sums, area], dim=-1)


class _Attention(nn.Module):
    """Pre-norm multi-head attention with a residual: x + attn(norm(x) + x_pos, mem + mem_pos, mem)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x: Tensor, x_pos: Tensor, mem: Tensor | None = None, mem_pos: Tensor | None = None) -> Tensor:
        xn = self.norm(x)
        if mem is None:  # self-attention
            mem, mem_pos = xn, x_pos
        out = self.attn(xn + x_pos, mem + mem_pos, mem, need_weights=False)[0]
        return x + out


class FeedForward(nn.Module):
    """Pre-norm feed-forward with a residual: x + fc2(relu(fc1(LayerNorm(x)))), x (B, N, dim)."""

    def __init__(self, dim: int, ff_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ff_dim)
        self.fc2 = nn.Linear(ff_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(F.relu(self.fc1(self.norm(x))))


class ObjectTransformerBlock(nn.Module):
    """Queries read pixels, attend to each other, pass an FFN; pixels read queries, pass a conv FFN."""

    def __init__(self, dim: int, heads: int, ff_dim: int):
        super().__init__()
        self.query_reads_pixels = _Attention(dim, heads)
        self.query_self_attention = _Attention(dim, heads)
        self.query_ffn = FeedForward(dim, ff_dim)
        self.pixel_reads_queries = _Attention(dim, heads)
        self.pixel_ffn = ResBlock(dim, dim)

    def forward(self, query: Tensor, query_pos: Tensor, pixel: Tensor, pixel_pos: Tensor,
                grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """query (BO, Q, E), pixel (BO, h*w, E), positions alike -> updated (query, pixel)."""
        query = self.query_reads_pixels(query, query_pos, pixel, pixel_pos)
        query = self.query_self_attention(query, query_pos)
        query = self.query_ffn(query)
        pixel = self.pixel_reads_queries(pixel, pixel_pos, query, query_pos)
        bo, n, e = pixel.shape
        pixel_map = self.pixel_ffn(pixel.transpose(1, 2).reshape(bo, e, *grid))
        return query, pixel_map.flatten(2).transpose(1, 2)


class ObjectTransformer(nn.Module):
    """Refine per-object pixel features with object queries: (B, O, E, h, w), (B, O, Q, E + 1) -> (B, O, E, h, w)."""

    def __init__(self, embed_dim: int, num_queries: int, num_blocks: int, heads: int, ff_dim: int):
        super().__init__()
        self.query_init = nn.Embedding(num_queries, embed_dim)
        self.query_pos = nn.Embedding(num_queries, embed_dim)
        self.summary_to_init = nn.Linear(embed_dim, embed_dim)
        self.summary_to_pos = nn.Linear(embed_dim, embed_dim)
        self.pixel_in = nn.Conv2d(embed_dim, embed_dim, kernel_size=1)
        self.pixel_pos_proj = nn.Conv2d(embed_dim, embed_dim, kernel_size=1)
        self.blocks = nn.ModuleList(ObjectTransformerBlock(embed_dim, heads, ff_dim) for _ in range(num_blocks))

    def forward(self, pixel: Tensor, obj_memory: Tensor) -> Tensor:
        b, o, e, h, w = pixel.shape
        sums, area = obj_memory[..., :-1], obj_memory[..., -1:]
        summaries = (sums / (area + 1e-4)).flatten(0, 1)  # (BO, Q, E)
        query = self.query_init.weight.unsqueeze(0) + self.summary_to_init(summaries)
        query_pos = self.query_pos.weight.unsqueeze(0) + self.summary_to_pos(summaries)
        grid_pe = sine_position_encoding(h, w, e, device=pixel.device, dtype=pixel.dtype)
        pixel_pos = per_object(self.pixel_pos_proj, pixel).flatten(3).flatten(0, 1).transpose(1, 2) + grid_pe
        x = per_object(self.pixel_in, pixel).flatten(3).flatten(0, 1).transpose(1, 2)  # (BO, h*w, E)
        for block in self.blocks:
            query, x = block(query, query_pos, x, pixel_pos, (h, w))
        return x.transpose(1, 2).reshape(b, o, e, h, w)
