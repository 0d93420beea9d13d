"""``release``: GDKVM as the authors' released training code runs it (gdkvm issue 12).

What follows the release exactly (written from the equations, not copied):

* image normalisation with mean 0.5 / std 0.5 of the gray frame;
* keys from their own projection of the stride-16 features (1x1 to ``pixel_dim`` then 3x3 to ``key_dim``,
  no activation), pixel features from a separate 1x1 projection;
* the release KPFF: pixel branch 1x1-ReLU-3x3 to ``key_dim``, a 1-channel 1x1 gate on (key + its global
  average), fused = g * key + (1 - g) * pixel branch; then a softmax over key channels;
* the gated delta recurrence with the release's gates, computed from the previous state S (B, O, Ck, Cv):
  beta = sigmoid(b_proj(S)) (B, O, Ck, H) expanded with ``repeat_interleave`` (value channel c uses head
  c // (Cv / H)); alpha = -exp(A_log) * softplus(a_proj(S) + dt_bias) tiled with ``repeat`` (channel c
  uses head c % H); S_t = alpha * (S - beta * K^T K S) + beta * K^T V_t; readout K_t S_t. alpha is used
  as is (negative, no exp), as in the release;
* gate init: b_proj / a_proj Linear(Cv, H, bias=False), A ~ U(0, 16), A_log = log A, dt_bias = inverse
  softplus of a log-uniform dt in [0.001, 0.1] (floored at 1e-4);
* step order: frame 0 encodes its value from a zero mask, writes S_0 = K_0^T V_0 and reads it with K_0;
  every later frame encodes its value from the image and the previous predicted mask, writes, and reads
  with the same key; object summaries are summed, frame t's summary joining after frame t is segmented;
* the release's one-frame-stale pixel features (frame t's value encoded with frame t-1's pixel features)
  only with ``stale_pixel_features=True`` (variant ``release-stale``);
* the value encoder, pixel fuser, object summariser, object transformer (with its L + 1 auxiliary query
  heads) and mask decoder of the release (:mod:`gdkvm.models.release_modules`,
  :mod:`gdkvm.models.release_transformer`); ``forward_with_aux`` returns the sensory and the query
  auxiliary predictions that :func:`gdkvm.models.release_losses.release_aux_loss` weights by 0.01.

Still different (see docs/release.md): the key trunk takes the gray frame repeated to 3 channels (the
release's trunk has a 1-channel conv1; the same function class, 6,272 more parameters, so that
torchvision ImageNet files load unchanged); the pixel fuser outputs ``embed_dim`` channels where the
release writes ``value_dim`` (equal in every preset); the auxiliary losses are dense and use every batch
item (the release point-samples and, by a loop bug, uses the last item only).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdkvm.errors import ConfigError, GdkvmError, unknown_name
from gdkvm.models.backbone import ResNetTrunk
from gdkvm.models.gdkvm import check_clip, check_frame
from gdkvm.models.interface import SegmentationModelBase
from gdkvm.models.modules import soft_aggregate
from gdkvm.models.registry import VariantSpec, register_variant
from gdkvm.models.release_modules import ReleaseMaskDecoder, ReleasePixelFuser, ReleaseValueEncoder
from gdkvm.models.release_transformer import ReleaseObjectSummarizer, ReleaseObjectTransformer

__all__ = ["ReleaseConfig", "ReleaseGDKVM", "ReleaseKPFF", "build_release", "ReleaseStepper", "release_config",
           "expand_gates"]

STRIDE = 16
NO_PROMPT = "release model: first_frame_mask is not supported (the release segments frame 0 from an empty mask)"


@dataclass(frozen=True)
class ReleaseConfig:
    """Sizes of the release network (defaults: the released widths)."""

    num_objects: int = 1
    key_dim: int = 64
    value_dim: int = 256
    pixel_dim: int = 256
    sensory_dim: int = 256
    embed_dim: int = 256
    memory_heads: int = 8
    key_backbone: str = "resnet50"
    key_backbone_width: int = 64
    value_backbone: str = "resnet18"
    value_backbone_width: int = 64
    num_queries: int = 16
    transformer_blocks: int = 3
    transformer_heads: int = 8
    transformer_ff_dim: int = 2048
    decoder_dims: tuple[int, int] = (128, 128)
    stale_pixel_features: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoder_dims", tuple(self.decoder_dims))
        if self.value_dim % self.memory_heads:
            raise ConfigError(f"release config: value_dim {self.value_dim} must be divisible by memory_heads "
                              f"{self.memory_heads}")
        if self.embed_dim % 4 or self.embed_dim % self.transformer_heads:
            raise ConfigError(f"release config: embed_dim {self.embed_dim} must be divisible by 4 (positional "
                              f"encoding) and by transformer_heads {self.transformer_heads}")
        if self.num_queries % 2:
            raise ConfigError(f"release config: num_queries {self.num_queries} must be even (half object, "
                              "half background queries)")


_TINY = dict(key_dim=16, value_dim=32, pixel_dim=32, sensory_dim=32, embed_dim=32, memory_heads=4,
             key_backbone_width=16, value_backbone_width=8, num_queries=8, transformer_blocks=1,
             transformer_heads=4, transformer_ff_dim=64, decoder_dims=(16, 16))
_SIZES: dict[str, dict[str, Any]] = {
    "paper": {},
    "tiny": _TINY,
    "small": {**_TINY, "key_backbone": "resnet18", "key_backbone_width": 32, "value_backbone_width": 16,
              "key_dim": 32, "value_dim": 64, "pixel_dim": 64, "sensory_dim": 64, "embed_dim": 64,
              "transformer_ff_dim": 128, "decoder_dims": (32, 32)},
}


def release_config(preset: str = "tiny", **overrides: Any) -> ReleaseConfig:
    """The release config at ``preset`` (``paper``: the released widths; ``tiny``/``small``: narrow CPU
    widths, as gdkvm's presets of the same names) with ReleaseConfig field ``overrides`` applied last."""
    if preset not in _SIZES:
        raise unknown_name("preset", preset, list(_SIZES))
    base = dataclasses.replace(ReleaseConfig(), **_SIZES[preset])
    names = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"release config: unknown field(s) {unknown}; valid: {sorted(names)}")
    return dataclasses.replace(base, **overrides)


class ReleaseKPFF(nn.Module):
    """The released KPFF: key (B, Ck, h, w), pixel features (B, Cp, h, w) -> fused keys (B, Ck, h, w)."""

    def __init__(self, key_dim: int, pixel_dim: int):
        super().__init__()
        self.pix_in = nn.Conv2d(pixel_dim, pixel_dim, kernel_size=1)
        self.pix_out = nn.Conv2d(pixel_dim, key_dim, kernel_size=3, padding=1)
        self.gate = nn.Conv2d(key_dim, 1, kernel_size=1)

    def forward(self, key: Tensor, pix: Tensor) -> Tensor:
        pix_branch = self.pix_out(F.relu(self.pix_in(pix)))
        g = torch.sigmoid(self.gate(key + key.mean(dim=(2, 3), keepdim=True)))
        return g * key + (1 - g) * pix_branch


def expand_gates(alpha: Tensor, beta: Tensor, value_dim: int) -> tuple[Tensor, Tensor]:
    """Per-head gates (..., H) -> per-value-channel gates (..., Cv) as the release expands them:
    alpha tiled (channel c -> head c % H), beta interleaved (channel c -> head c // (Cv / H))."""
    heads = alpha.shape[-1]
    reps = value_dim // heads
    return alpha.repeat(*([1] * (alpha.dim() - 1)), reps), beta.repeat_interleave(reps, dim=-1)


class ReleaseGDKVM(SegmentationModelBase):
    """The released GDKVM forward pass.

    ``model(clip)`` with clip (B, T, 1, H, W) float in [0, 1] (H, W divisible by 16) returns logits
    (B, T, O + 1, H, W), background first. ``forward_with_states`` also returns the per-frame memory
    states for inspection. Declared capabilities (:class:`gdkvm.models.interface.SegmentationModel`): no
    first-frame prompt, auxiliary outputs, a constant-size state, no memory rule module, no CUDA-graph step.
    """

    accepts_prompt = False
    has_aux_outputs = True

    def __init__(self, config: ReleaseConfig, variant: str | None = None):
        super().__init__()
        self.config = config
        self.variant = variant
        cfg = config
        self.num_objects = cfg.num_objects
        self.key_encoder = ResNetTrunk(cfg.key_backbone, in_channels=3, width=cfg.key_backbone_width)
        c4, c8, c16 = self.key_encoder.out_channels
        self.key_proj = nn.Sequential(nn.Conv2d(c16, cfg.pixel_dim, kernel_size=1),
                                      nn.Conv2d(cfg.pixel_dim, cfg.key_dim, kernel_size=3, padding=1))
        self.pix_proj = nn.Conv2d(c16, cfg.pixel_dim, kernel_size=1)
        self.kpff = ReleaseKPFF(cfg.key_dim, cfg.pixel_dim)
        self.value_encoder = ReleaseValueEncoder(cfg.value_backbone, cfg.value_backbone_width, cfg.pixel_dim,
                                                 cfg.value_dim, cfg.sensory_dim)
        self.pixel_fuser = ReleasePixelFuser(cfg.pixel_dim, cfg.value_dim, cfg.sensory_dim, cfg.embed_dim)
        self.object_summarizer = ReleaseObjectSummarizer(cfg.value_dim, cfg.embed_dim, cfg.num_queries)
        self.object_transformer = ReleaseObjectTransformer(cfg.embed_dim, cfg.num_queries, cfg.transformer_blocks,
                                                           cfg.transformer_heads, cfg.transformer_ff_dim)
        self.decoder = ReleaseMaskDecoder(cfg.embed_dim, (c8, c4), cfg.decoder_dims, cfg.sensory_dim)
        # auxiliary head (training only): sensory -> per-pixel linear classifier over the pixel features + bias
        self.sensory_aux = nn.Conv2d(cfg.sensory_dim, cfg.pixel_dim + 1, kernel_size=1)
        heads = cfg.memory_heads
        self.b_proj = nn.Linear(cfg.value_dim, heads, bias=False)
        self.a_proj = nn.Linear(cfg.value_dim, heads, bias=False)
        self.A_log = nn.Parameter(torch.empty(heads))
        self.dt_bias = nn.Parameter(torch.empty(heads))
        self.reset_gate_parameters()
        self.register_buffer("pixel_mean", torch.tensor(0.5), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(0.5), persistent=False)

    def reset_gate_parameters(self) -> None:
        """A ~ U(0, 16), A_log = log A; dt log-uniform in [1e-3, 0.1] floored at 1e-4, dt_bias = softplus^-1(dt)."""
        if self.A_log.is_meta:
            return
        with torch.no_grad():
            self.A_log.copy_(torch.empty_like(self.A_log).uniform_(0, 16).log())
            lo, hi = math.log(1e-3), math.log(0.1)
            dt = torch.exp(torch.rand_like(self.dt_bias) * (hi - lo) + lo).clamp_min(1e-4)
            self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    # ------------------------------------------------------------------ stages
    def encode_image(self, image: Tensor) -> dict[str, Tensor]:
        """Gray frames (N, 1, H, W) in [0, 1] -> dict of image (N, 1, H, W) normalised (the value
        encoder's input; the key encoder sees it repeated to 3 channels), f4, f8 skips, pix (N, Cp, h, w)
        and key (N, Ck, h, w) (softmax over channels)."""
        image = (image - self.pixel_mean) / self.pixel_std
        f4, f8, f16 = self.key_encoder(image.expand(-1, 3, -1, -1))
        pix = self.pix_proj(f16)
        key = torch.softmax(self.kpff(self.key_proj(f16), pix), dim=1)
        return {"image": image, "f4": f4, "f8": f8, "pix": pix, "key": key}

    def gates(self, state: Tensor) -> tuple[Tensor, Tensor]:
        """State (B, O, Ck, Cv) -> (alpha, beta), each (B, O, Ck, Cv) after the release's expansion."""
        beta = torch.sigmoid(self.b_proj(state))
        alpha = -self.A_log.exp() * F.softplus(self.a_proj(state) + self.dt_bias)
        return expand_gates(alpha, beta, state.shape[-1])

    def segment(self, feats: dict[str, Tensor], readout: Tensor, sensory: Tensor, last_mask: Tensor,
                obj_memory: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """readout (B, O, Cv, h, w), sensory (B, O, Cs, h, w), last_mask (B, O, H, W), obj_memory
        (B, O, Q, E + 1) -> logits (B, O + 1, H, W), probabilities (B, O + 1, H, W), new sensory, and the
        object transformer's auxiliary object logits (B, O, L + 1, h, w)."""
        grid_mask = F.interpolate(last_mask, size=readout.shape[-2:], mode="area")
        fused, query_aux = self.object_transformer(self.pixel_fuser(feats["pix"], readout, sensory, grid_mask),
                                                   obj_memory)
        obj_logits, sensory = self.decoder(fused, feats["f8"], feats["f4"], sensory)
        logits = soft_aggregate(torch.sigmoid(obj_logits))
        logits = F.interpolate(logits, size=feats["image"].shape[-2:], mode="bilinear", align_corners=False)
        return logits, torch.softmax(logits, dim=1), sensory, query_aux

    @staticmethod
    def query_aux_logits(query_aux: Tensor) -> Tensor:
        """The release's query auxiliary predictions: object logits (B, O, L + 1, h, w) -> soft-aggregated
        logits per level (B, L + 1, O + 1, h, w) at stride 16."""
        return soft_aggregate(torch.sigmoid(query_aux.transpose(1, 2).flatten(0, 1))).view(
            query_aux.shape[0], query_aux.shape[2], query_aux.shape[1] + 1, *query_aux.shape[-2:])

    def sensory_aux_logits(self, pix: Tensor, sensory: Tensor) -> Tensor:
        """The release's sensory auxiliary prediction: pix (B, Cp, h, w), sensory (B, O, Cs, h, w) ->
        soft-aggregated logits (B, O + 1, h, w) at stride 16."""
        proj = self.sensory_aux(sensory.flatten(0, 1)).view(*sensory.shape[:2], -1, *sensory.shape[-2:])
        obj = (pix.unsqueeze(1) * proj[:, :, :-1]).sum(dim=2) + proj[:, :, -1]
        return soft_aggregate(torch.sigmoid(obj))

    # ------------------------------------------------------------------ recurrence
    def forward_with_aux(self, clip: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """clip (B, T, 1, H, W) -> (logits (B, T, O + 1, H, W), aux) with aux {"sensory_logits":
        (B, T, O + 1, H/16, W/16), "query_logits": (B, T, L + 1, O + 1, H/16, W/16)}, the inputs of
        :func:`gdkvm.models.release_losses.release_aux_loss` (L transformer blocks)."""
        logits, _, aux = self._run(clip, with_aux=True)
        return logits, {"sensory_logits": torch.stack([a[0] for a in aux], dim=1),
                        "query_logits": torch.stack([a[1] for a in aux], dim=1)}

    def forward_with_states(self, clip: Tensor) -> tuple[Tensor, list[Tensor]]:
        """clip (B, T, 1, H, W) -> (logits (B, T, O + 1, H, W), memory states [(B, O, Ck, Cv)] per frame)."""
        logits, states, _ = self._run(clip, with_aux=False)
        return logits, states

    def _run(self, clip: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor], list[tuple[Tensor, Tensor]]]:
        check_clip(clip)
        clip = clip.to(device=self.A_log.device, dtype=self.A_log.dtype)
        b, t = clip.shape[:2]
        every = self.encode_image(clip.flatten(0, 1))
        carry = self.init_carry(clip[:, 0])
        outputs, states, aux = [], [], []
        for i in range(t):
            feats = {k: v.view(b, t, *v.shape[1:])[:, i] for k, v in every.items()}
            logits, carry, query_aux = self._advance(carry, feats)
            if with_aux:
                aux.append((self.sensory_aux_logits(feats["pix"], carry["sensory"]), self.query_aux_logits(query_aux)))
            outputs.append(logits)
            states.append(carry["state"])
        return torch.stack(outputs, dim=1), states, aux

    def init_carry(self, frame: Tensor) -> dict[str, Tensor | None]:
        """The state before a video's first frame (B, 1, H, W): zero sensory state, zero previous mask and
        no memory yet (frame 0 writes S_0 = K_0^T V_0)."""
        b, _, h, w = frame.shape
        o, cfg = self.num_objects, self.config
        return {"sensory": frame.new_zeros(b, o, cfg.sensory_dim, h // STRIDE, w // STRIDE),
                "last_mask": frame.new_zeros(b, o, h, w), "state": None, "obj_memory": None, "prev_pix": None}

    def advance(self, carry: dict[str, Tensor | None], feats: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor | None]]:
        """One frame of the released recurrence: encode the value from the image and the previous mask,
        write (S_0 = K^T V on the first frame, the gated delta rule after), read with the same key,
        segment. Returns logits (B, O + 1, H, W) and the next carry."""
        logits, carry, _ = self._advance(carry, feats)
        return logits, carry

    def _advance(self, carry: dict[str, Tensor | None], feats: dict[str, Tensor]
                 ) -> tuple[Tensor, dict[str, Tensor | None], Tensor]:
        """:meth:`advance` that also returns the transformer's auxiliary object logits (B, O, L + 1, h, w)."""
        key, sensory, last_mask = feats["key"], carry["sensory"], carry["last_mask"]
        stale = self.config.stale_pixel_features and carry["prev_pix"] is not None
        value, sensory = self.value_encoder(feats["image"], carry["prev_pix"] if stale else feats["pix"],
                                            sensory, last_mask)
        summary = self.object_summarizer(last_mask, value)
        kv = torch.einsum("bkhw,bnvhw->bnkv", key, value)
        state = carry["state"]
        if state is None:
            state, obj_memory = kv, summary
        else:
            alpha, beta = self.gates(state)
            ktk_s = torch.einsum("bkhw,bnvhw->bnkv", key, torch.einsum("bkhw,bnkv->bnvhw", key, state))
            state, obj_memory = alpha * (state - beta * ktk_s) + beta * kv, carry["obj_memory"]
        readout = torch.einsum("bkhw,bnkv->bnvhw", key, state)
        logits, prob, sensory, query_aux = self.segment(feats, readout, sensory, last_mask, obj_memory)
        if carry["state"] is not None:  # frame t's summary joins after frame t is segmented
            obj_memory = obj_memory + summary
        return logits, {"sensory": sensory, "last_mask": prob[:, 1:], "state": state, "obj_memory": obj_memory,
                        "prev_pix": feats["pix"]}, query_aux

    def stepper(self) -> ReleaseStepper:
        """A fresh streaming stepper (see :class:`ReleaseStepper`)."""
        return ReleaseStepper(self)

    def forward(self, clip: Tensor, first_frame_mask: Tensor | None = None) -> Tensor:
        """clip (B, T, 1, H, W) in [0, 1] -> logits (B, T, O + 1, H, W); ``first_frame_mask`` is refused."""
        if first_frame_mask is not None:
            raise GdkvmError(NO_PROMPT)
        return self.forward_with_states(clip)[0]


class ReleaseStepper:
    """Streaming inference: ``step(frame)`` with frame (B, 1, H, W) in [0, 1] -> logits (B, O + 1, H, W),
    equal to the clip forward's frame. The release takes no first-frame prompt (it zeroes it)."""

    def __init__(self, model: ReleaseGDKVM):
        self.model = model
        self.reset()

    def reset(self) -> None:
        """Start a new video."""
        self._carry: dict[str, Tensor | None] | None = None
        self._frames = 0

    @property
    def frames(self) -> int:
        """Frames processed since the last reset."""
        return self._frames

    def step(self, frame: Tensor, first_frame_mask: Tensor | None = None) -> Tensor:
        """Segment the next frame (B, 1, H, W); ``first_frame_mask`` is refused (the release has no prompt)."""
        if first_frame_mask is not None:
            raise GdkvmError(NO_PROMPT)
        check_frame(frame)
        model = self.model
        frame = frame.to(device=model.A_log.device, dtype=model.A_log.dtype)
        if self._carry is None:
            self._carry = model.init_carry(frame)
        logits, self._carry = model.advance(self._carry, model.encode_image(frame))
        self._frames += 1
        return logits

    def state_bytes(self) -> int:
        """Bytes of the carried tensors (sensory state, last mask, memory, object memory, pixel features;
        0 before the first frame)."""
        if self._carry is None:
            return 0
        return sum(t.numel() * t.element_size() for t in self._carry.values() if t is not None)


def build_release(preset: str = "tiny", **overrides: Any) -> ReleaseGDKVM:
    """The release network at ``preset`` with ReleaseConfig field ``overrides``."""
    return ReleaseGDKVM(release_config(preset, **overrides))


def _build_stale(preset: str = "tiny", **overrides: Any) -> ReleaseGDKVM:
    if "stale_pixel_features" in overrides:
        raise ConfigError("variant 'release-stale' sets stale_pixel_features itself")
    return ReleaseGDKVM(release_config(preset, stale_pixel_features=True, **overrides))


@register_variant
def release() -> VariantSpec:
    return VariantSpec(name="release", description="the authors' released forward pass (stale-feature bug fixed)",
                       builder=build_release)


@register_variant
def release_stale() -> VariantSpec:
    return VariantSpec(name="release-stale", description="release with its one-frame-stale pixel features",
                       builder=_build_stale)
