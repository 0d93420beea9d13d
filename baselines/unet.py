"""Frame-wise U-Net baseline: every frame is segmented on its own, with no temporal memory.

The classic encoder-decoder of Ronneberger et al. (2015), written here from scratch: ``depth`` max-pool
stages of two 3x3 conv-BN-ReLU layers (widths ``base_width * 2**i``), a transposed-convolution decoder
with skip connections, and a 1x1 head giving ``O + 1`` class logits (channel 0 = background). Padded
convolutions keep the output at the input resolution. ``paper`` is the standard width-64, depth-4
network (31.0M parameters); ``tiny`` (width 8) is for CPU tests and demos.

It exposes GDKVM's interface so training, evaluation and benchmarks run it unchanged: the clip wrapper
``forward(clip, first_frame_mask=None)`` and a :class:`UNetStepper` that carries no state. A first-frame
prompt is not used to segment anything (there is no memory); frame 0 then returns the prompt itself as
log-odds, like GDKVM does, so a user-given keyframe is never rewritten.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gdkvm.errors import ConfigError, GdkvmError, unknown_name
from gdkvm.models.config import PRESETS
from gdkvm.models.gdkvm import check_clip, check_frame, prompt_masks
from gdkvm.models.interface import SegmentationModelBase
from gdkvm.models.modules import soft_aggregate
from gdkvm.models.registry import VariantSpec, register_variant

__all__ = ["UNet", "UNetConfig", "UNetStepper", "build_unet", "unet_config"]

#: Pooling stages allowed: the clip checks guarantee H and W divisible by 16 = 2**4.
MAX_DEPTH = 4


@dataclass(frozen=True)
class UNetConfig:
    """Sizes of a U-Net: first-stage width, number of pooling stages (1..4) and objects."""

    base_width: int = 64
    depth: int = 4
    num_objects: int = 1

    def __post_init__(self) -> None:
        for name in ("base_width", "depth", "num_objects"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"unet config: {name} must be a positive integer, got {value!r}")
        if self.depth > MAX_DEPTH:
            raise ConfigError(f"unet config: depth must be at most {MAX_DEPTH} (frames are only guaranteed "
                              f"divisible by 16), got {self.depth}")

    def replace(self, **overrides: Any) -> UNetConfig:
        """A copy with ``overrides`` applied; an unknown field name is a one-line ConfigError."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"unet config: unknown field(s) {unknown}; valid: {sorted(names)}")
        return dataclasses.replace(self, **overrides)


def unet_config(preset: str) -> UNetConfig:
    """The U-Net config of a size preset: ``paper`` (width 64, 31.0M) , ``tiny`` (width 8, 0.49M) or ``small`` (width 16)."""
    if preset == "paper":
        return UNetConfig(base_width=64)
    if preset == "tiny":
        return UNetConfig(base_width=8)
    if preset == "small":
        return UNetConfig(base_width=16)
    raise unknown_name("preset", preset, PRESETS)


class DoubleConv(nn.Sequential):
    """(conv3x3 -> BatchNorm -> ReLU) x 2: (B, in_ch, H, W) -> (B, out_ch, H, W)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class UpStage(nn.Module):
    """x2 transposed-conv upsampling, concatenation with the encoder skip, then a DoubleConv."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
        self.conv = DoubleConv(2 * out_ch, out_ch)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """x (B, in_ch, h, w), skip (B, out_ch, 2h, 2w) -> (B, out_ch, 2h, 2w)."""
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(SegmentationModelBase):
    """Frame-wise U-Net with GDKVM's model interface.

    Args:
        config: the sizes (see :class:`UNetConfig`).
        variant: the registry name it was built as (recorded in checkpoints), if any.

    ``model(clip)`` with clip (B, T, 1, H, W), float in [0, 1], H and W divisible by 16, returns logits
    (B, T, O + 1, H, W), channel 0 being the background; ``model.stepper()`` streams frames. Declared
    capabilities (:class:`gdkvm.models.interface.SegmentationModel`): frame-wise, no state, no memory rule.
    """

    #: every frame is segmented on its own
    frame_wise = True

    def __init__(self, config: UNetConfig, variant: str | None = None):
        super().__init__()
        self.config = config
        self.variant = variant
        self.num_objects = config.num_objects
        widths = [config.base_width * 2**i for i in range(config.depth + 1)]
        self.inc = DoubleConv(1, widths[0])
        self.down = nn.ModuleList(DoubleConv(widths[i], widths[i + 1]) for i in range(config.depth))
        self.pool = nn.MaxPool2d(kernel_size=2)
        self.up = nn.ModuleList(UpStage(widths[i + 1], widths[i]) for i in reversed(range(config.depth)))
        self.head = nn.Conv2d(widths[0], config.num_objects + 1, kernel_size=1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def segment(self, frames: Tensor) -> Tensor:
        """Frames (N, 1, H, W) in [0, 1] -> logits (N, O + 1, H, W), in at least fp32."""
        x = self.inc(frames * 2 - 1)
        skips = [x]
        for stage in self.down:
            x = stage(self.pool(x))
            skips.append(x)
        skips.pop()  # the bottleneck itself
        for stage in self.up:
            x = stage(x, skips.pop())
        logits = self.head(x)
        return logits.to(torch.promote_types(logits.dtype, torch.float32))

    def _input_dtype(self) -> tuple[torch.device, torch.dtype]:
        weight = self.head.weight
        return weight.device, weight.dtype

    def forward(self, clip: Tensor, first_frame_mask: Tensor | None = None) -> Tensor:
        """Clip wrapper: clip (B, T, 1, H, W) -> logits (B, T, O + 1, H, W); all frames in one batch.

        ``first_frame_mask`` (B, O, H, W) in [0, 1] or a (B, H, W) label map replaces frame 0's output by
        the prompt's log-odds; it does not change any other frame (the U-Net has no memory).
        """
        check_clip(clip)
        device, dtype = self._input_dtype()
        clip = clip.to(device=device, dtype=dtype)
        b, t, _, h, w = clip.shape
        logits = self.segment(clip.flatten(0, 1)).view(b, t, -1, h, w)
        if first_frame_mask is None:
            return logits
        prompt = prompt_masks(first_frame_mask, b, self.num_objects, (h, w), dtype).to(device)
        first = soft_aggregate(prompt.to(logits.dtype)).unsqueeze(1)
        return torch.cat([first, logits[:, 1:]], dim=1)

    def stepper(self) -> UNetStepper:
        """A fresh streaming stepper over this model (see :class:`UNetStepper`)."""
        return UNetStepper(self)


class UNetStepper:
    """Streaming inference for the U-Net: each ``step`` segments its frame alone; no state is carried."""

    def __init__(self, model: UNet):
        self.model = model
        self._frames = 0

    def reset(self) -> None:
        """Start a new video: the next frame is a first frame (and may carry a prompt)."""
        self._frames = 0

    @property
    def frames(self) -> int:
        """Frames processed since the last reset."""
        return self._frames

    def step(self, frame: Tensor, first_frame_mask: Tensor | None = None) -> Tensor:
        """frame (B, 1, H, W) float in [0, 1] -> logits (B, O + 1, H, W) (channel 0 = background).

        ``first_frame_mask`` (B, O, H, W) in [0, 1] or a (B, H, W) label map, only on the first frame:
        that frame's output is then the prompt's log-odds.
        """
        check_frame(frame)
        if first_frame_mask is not None and self._frames > 0:
            raise GdkvmError("first_frame_mask: only allowed on the first frame (call reset() first)")
        model = self.model
        device, dtype = model._input_dtype()
        frame = frame.to(device=device, dtype=dtype)
        if first_frame_mask is not None:
            b, _, h, w = frame.shape
            prompt = prompt_masks(first_frame_mask, b, model.num_objects, (h, w), dtype).to(device)
            logits = soft_aggregate(prompt.to(torch.promote_types(dtype, torch.float32)))
        else:
            logits = model.segment(frame)
        self._frames += 1
        return logits

    def state_bytes(self) -> int:
        """Bytes of the carried state: always 0 (a frame-wise model keeps nothing between frames)."""
        return 0


def build_unet(preset: str = "tiny", **overrides: Any) -> UNet:
    """A randomly initialised U-Net at ``preset`` (``paper`` | ``tiny``); ``overrides`` are UNetConfig fields."""
    return UNet(unet_config(preset).replace(**overrides))


@register_variant
def unet() -> VariantSpec:
    return VariantSpec(name="unet", description="baseline: frame-wise U-Net, no temporal memory",
                       builder=build_unet)
