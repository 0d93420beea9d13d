"""Convolutional building blocks of GDKVM (after Cutie): fusers, the GRU-style sensory update, the value
encoder, the pixel fuser and the mask decoder.

Shape conventions: ``B`` batch, ``O`` objects, ``h, w`` the stride-16 grid. Features shared by all
objects (image features) are (B, C, h, w); per-object features carry an object axis, (B, O, C, h, w).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdkvm.models.backbone import BackboneName, ResNetTrunk


def per_object(module: nn.Module, g: Tensor) -> Tensor:
    """Apply a 2D module to per-object maps: (B, O, C, h, w) -> (B, O, C', h', w')."""
    b, o = g.shape[:2]
    out = module(g.flatten(0, 1))
    return out.view(b, o, *out.shape[1:])


def resize_objects(g: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """Resize per-object maps (B, O, ..., H, W) (with or without a channel axis) to ``size``."""
    lead = g.shape[:-2]
    out = F.interpolate(g.reshape(-1, 1, *g.shape[-2:]), size=size, mode=mode)
    return out.view(*lead, *size)


def others_of(masks: Tensor) -> Tensor:
    """For each object, the union of all other objects' masks: (B, O, H, W) -> (B, O, H, W) in [0, 1]."""
    return (masks.sum(dim=1, keepdim=True) - masks).clamp(0, 1)


def soft_aggregate(prob: Tensor, eps: float = 1e-7) -> Tensor:
    """Object probabilities (B, O, H, W) -> logits (B, O + 1, H, W) with background in channel 0.

    Soft aggregation (STM/Cutie): the background probability is prod_o (1 - p_o); every channel's
    probability is clamped to [eps, 1 - eps] and turned into log-odds, so a softmax over channels
    gives a normalised segmentation and cross-entropy can be applied to the logits directly.
    """
    background = torch.prod(1 - prob, dim=1, keepdim=True)
    p = torch.cat([background, prob], dim=1).clamp(eps, 1 - eps)
    return torch.log(p / (1 - p))


class ChannelAttention(nn.Module):
    """Efficient channel attention: global average pool -> 1D conv across channels -> sigmoid gate."""

    def __init__(self, channels: int):
        super().__init__()
        k = int(abs((math.log2(channels) + 1) / 2))
        k = k if k % 2 else k + 1
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=k // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        weights = self.conv(x.mean(dim=(2, 3)).unsqueeze(1)).sigmoid()  # (B, 1, C)
        return x * weights.transpose(1, 2).unsqueeze(-1)


class ResBlock(nn.Module):
    """Pre-activation residual block: relu-conv3x3-relu-conv3x3 (+ channel attention) + shortcut."""

    def __init__(self, in_dim: int, out_dim: int, channel_attention: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, out_dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1)
        self.attention = ChannelAttention(out_dim) if channel_attention else nn.Identity()
        self.shortcut = nn.Identity() if in_dim == out_dim else nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.relu(self.conv1(F.relu(x))))
        return self.attention(out) + self.shortcut(x)


class FeatureFusion(nn.Module):
    """Fuse shared features x (B, Cx, h, w) into per-object features g (B, O, Cg, h, w) -> (B, O, C, h, w).

    Both are projected to ``out_dim`` by 1x1 convolutions and added, then refined by two residual blocks.
    """

    def __init__(self, x_dim: int, g_dim: int, out_dim: int):
        super().__init__()
        self.x_proj = nn.Conv2d(x_dim, out_dim, kernel_size=1)
        self.g_proj = nn.Conv2d(g_dim, out_dim, kernel_size=1)
        self.blocks = nn.Sequential(ResBlock(out_dim, out_dim), ResBlock(out_dim, out_dim))

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        fused = per_object(self.g_proj, g) + self.x_proj(x).unsqueeze(1)
        return per_object(self.blocks, fused)


class SensoryUpdate(nn.Module):
    """GRU-style update of the per-object sensory state h (B, O, Cs, h, w) from features x (B, O, Cx, h, w).

    One 3x3 convolution over [x, h] predicts a keep gate k, a write gate u and a candidate c:
    h' = k * (1 - u) * h + u * tanh(c). The state stays bounded in (-1, 1).
    """

    def __init__(self, in_dim: int, sensory_dim: int):
        super().__init__()
        self.sensory_dim = sensory_dim
        self.gates = nn.Conv2d(in_dim + sensory_dim, 3 * sensory_dim, kernel_size=3, padding=1)
        nn.init.xavier_normal_(self.gates.weight)
        nn.init.zeros_(self.gates.bias)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        values = per_object(self.gates, torch.cat([x, h], dim=2))
        keep, write, candidate = values.split(self.sensory_dim, dim=2)
        write = write.sigmoid()
        return keep.sigmoid() * (1 - write) * h + write * candidate.tanh()


class ValueEncoder(nn.Module):
    """Value encoder: ResNet on [image (3), object mask, other objects' masks] fused with pixel features.

    Input channels are 3 + 2; the ResNet's conv1 is widened for the two mask channels (zero-initialised
    when ImageNet weights are loaded). Its stride-16 output is fused with the key encoder's pixel
    features into the values V (B, O, Cv, h, w); the same values drive a sensory-state update.
    """

    def __init__(self, arch: BackboneName, width: int, pixel_dim: int, value_dim: int, sensory_dim: int,
                 freeze_bn: bool = False):
        super().__init__()
        self.backbone = ResNetTrunk(arch, in_channels=5, width=width, freeze_bn=freeze_bn)
        self.fuser = FeatureFusion(pixel_dim, self.backbone.out_channels[2], value_dim)
        self.sensory_update = SensoryUpdate(value_dim, sensory_dim)

    def forward(self, image: Tensor, pix: Tensor, sensory: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
        """image (B, 3, H, W) normalised, pix (B, Cp, h, w), sensory (B, O, Cs, h, w), masks (B, O, H, W)
        -> (values (B, O, Cv, h, w), new sensory (B, O, Cs, h, w))."""
        b, o = masks.shape[:2]
        g = torch.stack([masks, others_of(masks)], dim=2)  # (B, O, 2, H, W)
        x = torch.cat([image.unsqueeze(1).expand(-1, o, -1, -1, -1), g], dim=2)
        f16 = self.backbone(x.flatten(0, 1))[2]
        f16 = f16.view(b, o, *f16.shape[1:])
        value = self.fuser(pix, f16)
        return value, self.sensory_update(value, sensory)


class PixelFuser(nn.Module):
    """Combine the memory readout with the sensory state and last mask, then with the pixel features.

    readout (B, O, Cv, h, w) + conv1x1([sensory, last mask, last others]) -> fused with pix (B, Cp, h, w)
    -> (B, O, E, h, w), the input of the object transformer / decoder.
    """

    def __init__(self, pixel_dim: int, value_dim: int, sensory_dim: int, out_dim: int):
        super().__init__()
        self.sensory_compress = nn.Conv2d(sensory_dim + 2, value_dim, kernel_size=1)
        self.fuser = FeatureFusion(pixel_dim, value_dim, out_dim)

    def forward(self, pix: Tensor, readout: Tensor, sensory: Tensor, last_mask: Tensor) -> Tensor:
        extra = torch.stack([last_mask, others_of(last_mask)], dim=2)
        readout = readout + per_object(self.sensory_compress, torch.cat([sensory, extra], dim=2))
        return self.fuser(pix, readout)


class UpsampleBlock(nn.Module):
    """x2 bilinear upsampling of per-object maps, plus a projected skip feature, then a residual block."""

    def __init__(self, in_dim: int, skip_dim: int, out_dim: int):
        super().__init__()
        self.skip_proj = nn.Conv2d(skip_dim, in_dim, kernel_size=1)
        self.block = ResBlock(in_dim, out_dim, channel_attention=False)

    def forward(self, g: Tensor, skip: Tensor) -> Tensor:
        up = resize_objects(g, skip.shape[-2:], mode="bilinear")
        return per_object(self.block, up + self.skip_proj(skip).unsqueeze(1))


class MaskDecoder(nn.Module):
    """Decoder 16 -> 8 -> 4 with key-encoder skips; predicts stride-4 logits and updates the sensory state.

    Input p16 (B, O, E, h, w); skips f8 (B, C8, 2h, 2w) and f4 (B, C4, 4h, 4w). Output per-object
    logits (B, O, 4h, 4w) and the new sensory state (B, O, Cs, h, w), updated from all three scales.
    """

    def __init__(self, embed_dim: int, skip_dims: tuple[int, int], dims: tuple[int, int], sensory_dim: int):
        super().__init__()
        d8, d4 = dims
        self.up_16_8 = UpsampleBlock(embed_dim, skip_dims[0], d8)
        self.up_8_4 = UpsampleBlock(d8, skip_dims[1], d4)
        self.pred = nn.Conv2d(d4, 1, kernel_size=3, padding=1)
        self.sensory_in16 = nn.Conv2d(embed_dim, sensory_dim, kernel_size=1)
        self.sensory_in8 = nn.Conv2d(d8, sensory_dim, kernel_size=1)
        self.sensory_in4 = nn.Conv2d(d4 + 1, sensory_dim, kernel_size=1)
        self.sensory_update = SensoryUpdate(sensory_dim, sensory_dim)

    def forward(self, p16: Tensor, f8: Tensor, f4: Tensor, sensory: Tensor) -> tuple[Tensor, Tensor]:
        p8 = self.up_16_8(p16, f8)
        p4 = self.up_8_4(p8, f4)
        logits = per_object(self.pred, F.relu(p4))  # (B, O, 1, 4h, 4w)
        size16 = p16.shape[-2:]
        g = (
            per_object(self.sensory_in16, p16)
            + per_object(self.sensory_in8, resize_objects(p8, size16, mode="area"))
            + per_object(self.sensory_in4, resize_objects(torch.cat([p4, logits], dim=2), size16, mode="area"))
        )
        return logits.squeeze(2), self.sensory_update(g, sensory)
