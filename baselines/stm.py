"""Space-time memory baseline (STM / XMem family): every past frame's keys and values are kept.

Written here from scratch after the published designs (Oh et al. 2019, STM; Cheng & Schwing 2022,
XMem); nothing is vendored. Per frame t:

1. ``encode_image``: key encoder (ResNet to stride 16) -> query key Q_t (Ck, 3x3 key projection) and
   the stride-16/8/4 features kept for the decoder. As in XMem, the key a frame writes into memory is
   its own query key (computed once).
2. ``read``: affinity softmax over every memory pixel of every past frame,
   ``A = softmax_m(sim(K_m, Q_t) / sqrt(Ck))`` with ``sim`` the negative squared L2 distance (XMem,
   default) or the dot product (STM); readout = V A, per object.
3. ``segment``: readout fused with the query features -> decoder 16 -> 8 -> 4 with key-encoder skips
   -> per-object logits -> soft aggregation into (B, O + 1, H, W) logits (background first).
4. ``encode_value``: value encoder on image + the frame's predicted (or prompted) object mask + the
   other objects' mask, fused with the key encoder's stride-16 features -> values V_t (Cv).
5. ``write``: append K_t (shared by objects) and V_t (per object) to the memory bank.

No sensory state, no object transformer, no KPFF, no memory compression: the bank grows by
``h * w * (Ck + O * Cv)`` numbers per frame. ``paper`` uses ResNet-50 for both encoders with Ck = 128,
Cv = 512 as in STM (34.1M parameters); ``tiny`` is for CPU tests and demos. Both encoders are
:class:`gdkvm.models.backbone.ResNetTrunk`, so ``--backbone-weights`` loads torchvision ImageNet weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdkvm.errors import ConfigError, unknown_name
from gdkvm.models.backbone import BackboneName, ResNetTrunk
from gdkvm.models.config import PRESETS
from gdkvm.models.gdkvm import IMAGENET_MEAN, IMAGENET_STD, STRIDE, Stepper, frame_features, run_clip
from gdkvm.models.interface import SegmentationModelBase, state_element_bytes
from gdkvm.models.modules import FeatureFusion, UpsampleBlock, others_of, per_object, soft_aggregate
from gdkvm.models.registry import VariantSpec, register_variant

__all__ = ["STM", "STMConfig", "STMFeatures", "STMState", "STMStepper", "build_stm", "stm_config"]


#: How a query pixel is compared with a memory pixel: negative squared L2 distance or dot product.
Similarity = Literal["l2", "dot"]


@dataclass(frozen=True)
class STMConfig:
    """Sizes of a space-time memory network.

    ``key_dim`` = Ck, ``value_dim`` = Cv; ``embed_dim`` is the decoder's stride-16 width and
    ``decoder_dims`` its stride-8 and stride-4 widths; ``similarity`` is ``"l2"`` or ``"dot"``.
    """

    key_backbone: BackboneName = "resnet50"
    key_backbone_width: int = 64
    value_backbone: BackboneName = "resnet50"
    value_backbone_width: int = 64
    freeze_bn: bool = False
    key_dim: int = 128
    value_dim: int = 512
    embed_dim: int = 256
    decoder_dims: tuple[int, int] = (256, 256)
    similarity: Similarity = "l2"
    num_objects: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoder_dims", tuple(self.decoder_dims))
        for name in ("key_backbone", "value_backbone"):
            if getattr(self, name) not in get_args(BackboneName):
                raise ConfigError(f"stm config: {name} {getattr(self, name)!r} is not one of "
                                  f"{list(get_args(BackboneName))}")
        if self.similarity not in get_args(Similarity):
            raise ConfigError(f"stm config: similarity {self.similarity!r} is not one of "
                              f"{sorted(get_args(Similarity))}")
        for name in ("key_backbone_width", "value_backbone_width", "key_dim", "value_dim", "embed_dim",
                     "num_objects"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"stm config: {name} must be a positive integer, got {value!r}")
        if len(self.decoder_dims) != 2 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1
                                              for d in self.decoder_dims):
            raise ConfigError(f"stm config: decoder_dims must be two positive widths, got {self.decoder_dims}")

    def replace(self, **overrides: Any) -> STMConfig:
        """A copy with ``overrides`` applied; an unknown field name is a one-line ConfigError."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"stm config: unknown field(s) {unknown}; valid: {sorted(names)}")
        return dataclasses.replace(self, **overrides)


def stm_config(preset: str) -> STMConfig:
    """The STM config of a size preset: ``paper`` (two ResNet-50s, Ck 128, Cv 512), ``tiny`` or ``small``."""
    if preset == "paper":
        return STMConfig()
    if preset == "tiny":
        return STMConfig(key_backbone_width=16, value_backbone="resnet18", value_backbone_width=8, key_dim=16,
                         value_dim=32, embed_dim=32, decoder_dims=(16, 16))
    if preset == "small":
        return STMConfig(key_backbone="resnet18", key_backbone_width=32, value_backbone="resnet18",
                         value_backbone_width=16, key_dim=32, value_dim=64, embed_dim=64, decoder_dims=(32, 32))
    raise unknown_name("preset", preset, PRESETS)


@dataclass
class STMFeatures:
    """What ``encode_image`` derives from a batch of frames (leading dimension B).

    image (B, 3, H, W) normalised; f4 (B, C4, H/4, W/4), f8 (B, C8, H/8, W/8), f16 (B, C16, h, w)
    key-encoder features; key (B, Ck, h, w) the query (and, once written, memory) key.
    """

    image: Tensor
    f4: Tensor
    f8: Tensor
    f16: Tensor
    key: Tensor

    def frame(self, t: int, batch: int) -> STMFeatures:
        """Features of frame ``t`` from features computed for (batch * T) frames in clip order."""
        return frame_features(self, t, batch)


@dataclass
class STMState:
    """The memory bank: keys (B, Ck, N) shared by objects and values (B, O, Cv, N), N = frames * h * w.

    Kept in at least fp32. ``frames``: frames seen so far (the clip wrapper skips the last write).
    """

    keys: Tensor
    values: Tensor
    frames: int = 0


class STM(SegmentationModelBase):
    """Space-time memory network with GDKVM's model interface.

    Args:
        config: the sizes (see :class:`STMConfig`).
        variant: the registry name it was built as (recorded in checkpoints), if any.

    ``model(clip)`` with clip (B, T, 1, H, W), float in [0, 1], H and W divisible by 16, returns logits
    (B, T, O + 1, H, W), channel 0 being the background; ``model.stepper()`` streams frames. Declared
    capabilities (:class:`gdkvm.models.interface.SegmentationModel`): a growing state, no memory rule
    module (``memory_name`` is ``"-"``), no CUDA-graph step.
    """

    def __init__(self, config: STMConfig, variant: str | None = None):
        super().__init__()
        self.config = config
        self.variant = variant
        cfg = config
        self.num_objects = cfg.num_objects
        self.key_encoder = ResNetTrunk(cfg.key_backbone, in_channels=3, width=cfg.key_backbone_width,
                                       freeze_bn=cfg.freeze_bn)
        c4, c8, c16 = self.key_encoder.out_channels
        self.key_proj = nn.Conv2d(c16, cfg.key_dim, kernel_size=3, padding=1)
        nn.init.orthogonal_(self.key_proj.weight)
        nn.init.zeros_(self.key_proj.bias)
        # image (3) + this object's mask + the other objects' mask
        self.value_encoder = ResNetTrunk(cfg.value_backbone, in_channels=5, width=cfg.value_backbone_width,
                                         freeze_bn=cfg.freeze_bn)
        self.value_fuser = FeatureFusion(c16, self.value_encoder.out_channels[2], cfg.value_dim)
        self.query_fuser = FeatureFusion(c16, cfg.value_dim, cfg.embed_dim)
        d8, d4 = cfg.decoder_dims
        self.up_16_8 = UpsampleBlock(cfg.embed_dim, c8, d8)
        self.up_8_4 = UpsampleBlock(d8, c4, d4)
        self.pred = nn.Conv2d(d4, 1, kernel_size=3, padding=1)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ declared interface
    @property
    def constant_state(self) -> bool:
        """False: the bank keeps the keys and values of every written frame."""
        return False

    @property
    def freezes_batchnorm(self) -> bool:
        """``config.freeze_bn``."""
        return bool(self.config.freeze_bn)

    def state_growth_bytes(self, batch: int, height: int, width: int, dtype: torch.dtype = torch.float32) -> int:
        """Bytes one written frame (B, 1, height, width) adds to the bank: its keys (Ck, shared by objects)
        and one value map (Cv) per object at every stride-16 pixel, in ``dtype`` promoted to at least fp32."""
        cfg = self.config
        pixels = (height // STRIDE) * (width // STRIDE)
        return batch * pixels * (cfg.key_dim + self.num_objects * cfg.value_dim) * state_element_bytes(dtype)

    # ------------------------------------------------------------------ stages
    def encode_image(self, image: Tensor) -> STMFeatures:
        """Gray frames (B, 1, H, W) in [0, 1] -> :class:`STMFeatures` (key and decoder features)."""
        image = (image.expand(-1, 3, -1, -1) - self.pixel_mean) / self.pixel_std
        f4, f8, f16 = self.key_encoder(image)
        return STMFeatures(image=image, f4=f4, f8=f8, f16=f16, key=self.key_proj(f16))

    def encode_value(self, feats: STMFeatures, masks: Tensor) -> Tensor:
        """Values of one frame from its image and object masks (B, O, H, W) -> (B, O, Cv, h, w)."""
        b, o = masks.shape[:2]
        g = torch.stack([masks, others_of(masks)], dim=2)  # (B, O, 2, H, W)
        x = torch.cat([feats.image.unsqueeze(1).expand(-1, o, -1, -1, -1), g], dim=2)
        v16 = self.value_encoder(x.flatten(0, 1))[2]
        return self.value_fuser(feats.f16, v16.view(b, o, *v16.shape[1:]))

    def read(self, state: STMState, key: Tensor) -> Tensor:
        """Affinity readout for query keys (B, Ck, h, w) -> (B, O, Cv, h, w); zeros from an empty bank."""
        b, ck, h, w = key.shape
        mem_k, mem_v = state.keys, state.values
        if mem_k.shape[-1] == 0:
            return mem_v.new_zeros(b, mem_v.shape[1], mem_v.shape[2], h, w)
        # the softmax over a long bank is done in fp32, also under autocast
        with torch.autocast(device_type=key.device.type, enabled=False):
            q = key.flatten(2).to(mem_k.dtype)  # (B, Ck, Nq)
            sim = torch.einsum("bcm,bcq->bmq", mem_k, q)  # (B, Nm, Nq)
            if self.config.similarity == "l2":
                # -|k - q|^2 = 2 k.q - |k|^2 - |q|^2; the |q|^2 term is constant over memory and cancels
                sim = 2 * sim - mem_k.square().sum(dim=1).unsqueeze(-1)
            affinity = torch.softmax(sim / ck**0.5, dim=1)
            readout = torch.einsum("bocm,bmq->bocq", mem_v, affinity)
        return readout.view(b, mem_v.shape[1], mem_v.shape[2], h, w)

    def write(self, state: STMState, key: Tensor, value: Tensor) -> STMState:
        """Append keys (B, Ck, h, w) and values (B, O, Cv, h, w) to the bank; returns the new state."""
        return STMState(
            keys=torch.cat([state.keys, key.flatten(2).to(state.keys.dtype)], dim=-1),
            values=torch.cat([state.values, value.flatten(3).to(state.values.dtype)], dim=-1),
            frames=state.frames,
        )

    def segment(self, feats: STMFeatures, readout: Tensor) -> Tensor:
        """Decode one frame: readout (B, O, Cv, h, w) -> logits (B, O + 1, H, W), in at least fp32."""
        p16 = self.query_fuser(feats.f16, readout.to(feats.f16.dtype))
        p8 = self.up_16_8(p16, feats.f8)
        p4 = self.up_8_4(p8, feats.f4)
        obj_logits = per_object(self.pred, F.relu(p4)).squeeze(2)  # (B, O, H/4, W/4)
        # the aggregation clamps probabilities at 1e-7: at least fp32, also under autocast
        with torch.autocast(device_type=obj_logits.device.type, enabled=False):
            obj_logits = obj_logits.to(torch.promote_types(obj_logits.dtype, torch.float32))
            logits = soft_aggregate(torch.sigmoid(obj_logits))
            return F.interpolate(logits, size=feats.image.shape[-2:], mode="bilinear", align_corners=False)

    # ------------------------------------------------------------------ recurrence
    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> STMState:
        """An empty memory bank (``dtype`` promoted to at least fp32)."""
        dtype = torch.promote_types(dtype, torch.float32)
        cfg = self.config
        return STMState(keys=torch.zeros(batch, cfg.key_dim, 0, device=device, dtype=dtype),
                        values=torch.zeros(batch, self.num_objects, cfg.value_dim, 0, device=device, dtype=dtype))

    def advance(self, state: STMState, feats: STMFeatures, prompt: Tensor | None = None,
                update_memory: bool = True) -> tuple[Tensor, STMState]:
        """One frame: read, segment (or take the prompt (B, O, H, W)), encode the value, write.

        ``update_memory=False`` skips the value encoding and the write (the clip's last frame).
        Returns the frame's logits (B, O + 1, H, W) and the next state.
        """
        if prompt is None:
            logits = self.segment(feats, self.read(state, feats.key))
            masks = torch.softmax(logits, dim=1)[:, 1:]
        else:
            masks = prompt
            logits = soft_aggregate(prompt.to(torch.promote_types(prompt.dtype, torch.float32)))
        if update_memory:
            state = self.write(state, feats.key, self.encode_value(feats, masks.to(feats.f16.dtype)))
        return logits, dataclasses.replace(state, frames=state.frames + 1)

    def forward(self, clip: Tensor, first_frame_mask: Tensor | None = None) -> Tensor:
        """Clip wrapper: clip (B, T, 1, H, W) -> logits (B, T, O + 1, H, W).

        All T frames go through the key encoder in one batched call; then the memory recurrence runs
        frame by frame. ``first_frame_mask`` (B, O, H, W) in [0, 1] or a (B, H, W) label map prompts frame 0.
        """
        return run_clip(self, clip, first_frame_mask, lambda b, h, w, device, dtype: self.init_state(b, device, dtype))

    def stepper(self) -> STMStepper:
        """A fresh streaming stepper over this model (see :class:`STMStepper`)."""
        return STMStepper(self)

    @staticmethod
    def state_bytes(state: STMState) -> int:
        """Bytes held by the memory bank (grows linearly with the frames written)."""
        return sum(x.numel() * x.element_size() for x in (state.keys, state.values))


class STMStepper(Stepper):
    """Streaming inference: ``step(frame) -> logits`` one frame at a time; every frame is written to memory.

    The state grows by one frame's keys and values per step. Gradient mode is left to the caller.
    """

    model: STM

    def _new_state(self, feats: STMFeatures, batch: int, height: int, width: int, device: torch.device) -> STMState:
        return self.model.init_state(batch, device, feats.key.dtype)


def build_stm(preset: str = "tiny", **overrides: Any) -> STM:
    """A randomly initialised STM at ``preset`` (``paper`` | ``tiny``); ``overrides`` are STMConfig fields."""
    return STM(stm_config(preset).replace(**overrides))


@register_variant
def stm() -> VariantSpec:
    return VariantSpec(name="stm", description="baseline: space-time memory, softmax readout over all past frames",
                       builder=build_stm)
