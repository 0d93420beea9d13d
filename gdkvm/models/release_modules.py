"""The release's convolutional modules: its value (mask) encoder, pixel fuser and mask decoder.

Written from the released architecture (gdkvm issue 12), not copied. Shapes: ``B`` batch, ``O`` objects,
``h, w`` the stride-16 grid; per-object maps carry an object axis, (B, O, C, h, w).

The feature fusion (1x1 of the shared features + 1x1 of the per-object features, then two
channel-attention residual blocks) and the residual block itself are the same layers as gdkvm's
:class:`gdkvm.models.modules.FeatureFusion` / :class:`~gdkvm.models.modules.ResBlock`, so they are reused.
What differs from gdkvm's own modules:

* value encoder: a ResNet whose input is the *gray* normalised frame plus the object mask and the
  other objects' mask (3 channels, not 3 image + 2);
* sensory GRU convolutions keep PyTorch's default bias init (gdkvm zeroes it); xavier-normal weights;
* decoder: the skips are projected once (f8 to the embed width, f4 to the first decoder width) and
  added to the x2-upsampled features, then a block ``1x1(x) + GELU(conv3x3(GELU(conv3x3(x))))``;
  the prediction is a 1x1 convolution without activation; the sensory update reads the stride-16 input,
  the area-downsampled stride-8 features and the area-downsampled stride-4 features with the logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdkvm.models.backbone import BackboneName, ResNetTrunk
from gdkvm.models.modules import FeatureFusion, others_of, per_object, resize_objects

__all__ = ["ReleaseValueEncoder", "ReleasePixelFuser", "ReleaseMaskDecoder", "ReleaseUpsampleBlock",
           "ReleaseSensoryGRU", "gru_update"]


def gru_update(h: Tensor, values: Tensor) -> Tensor:
    """The sensory GRU: h (B, O, Cs, h, w), values (B, O, 3 Cs, h, w) split into (forget, update,
    candidate) -> sigmoid(f) * (1 - sigmoid(u)) * h + sigmoid(u) * tanh(c)."""
    forget, update, candidate = values.chunk(3, dim=2)
    update = torch.sigmoid(update)
    return torch.sigmoid(forget) * (1 - update) * h + update * torch.tanh(candidate)


class ReleaseSensoryGRU(nn.Module):
    """One 3x3 conv over [x (B, O, Cx, h, w), h (B, O, Cs, h, w)] -> 3 Cs gate channels -> new h."""

    def __init__(self, in_dim: int, sensory_dim: int):
        super().__init__()
        self.transform = nn.Conv2d(in_dim + sensory_dim, 3 * sensory_dim, kernel_size=3, padding=1)
        nn.init.xavier_normal_(self.transform.weight)  # bias: PyTorch's default, as released

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return gru_update(h, per_object(self.transform, torch.cat([x, h], dim=2)))


class ReleaseValueEncoder(nn.Module):
    """gray frame (B, 1, H, W) normalised, pixel features (B, Cp, h, w), sensory (B, O, Cs, h, w), masks
    (B, O, H, W) -> (values (B, O, Cv, h, w), new sensory).

    A ResNet on [gray, object mask, other objects' masks] per object; its stride-16 output fused with the
    pixel features gives the values, which also update the sensory state (the release's deep update).
    """

    def __init__(self, arch: BackboneName, width: int, pixel_dim: int, value_dim: int, sensory_dim: int):
        super().__init__()
        self.backbone = ResNetTrunk(arch, in_channels=3, width=width)
        self.fuser = FeatureFusion(pixel_dim, self.backbone.out_channels[2], value_dim)
        self.sensory_update = ReleaseSensoryGRU(value_dim, sensory_dim)

    def forward(self, gray: Tensor, pix: Tensor, sensory: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
        b, o = masks.shape[:2]
        x = torch.cat([gray.unsqueeze(1).expand(-1, o, -1, -1, -1), masks.unsqueeze(2),
                       others_of(masks).unsqueeze(2)], dim=2)  # (B, O, 3, H, W)
        f16 = self.backbone(x.flatten(0, 1))[2]
        value = self.fuser(pix, f16.view(b, o, *f16.shape[1:]))
        return value, self.sensory_update(value, sensory)


class ReleasePixelFuser(nn.Module):
    """pixel features (B, Cp, h, w), readout (B, O, Cv, h, w), sensory (B, O, Cs, h, w), last mask on the
    grid (B, O, h, w) -> (B, O, E, h, w): readout + 1x1([sensory, mask, others]), fused with the pixels."""

    def __init__(self, pixel_dim: int, value_dim: int, sensory_dim: int, out_dim: int):
        super().__init__()
        self.sensory_compress = nn.Conv2d(sensory_dim + 2, value_dim, kernel_size=1)
        self.fuser = FeatureFusion(pixel_dim, value_dim, out_dim)

    def forward(self, pix: Tensor, readout: Tensor, sensory: Tensor, grid_mask: Tensor) -> Tensor:
        extra = torch.stack([grid_mask, others_of(grid_mask)], dim=2)
        return self.fuser(pix, readout + per_object(self.sensory_compress, torch.cat([sensory, extra], dim=2)))


class ReleaseUpsampleBlock(nn.Module):
    """x2 bilinear upsampling of g (B, O, Cin, h, w), plus an already projected skip (B, Cin, 2h, 2w),
    then 1x1(x) + GELU(conv3x3(GELU(conv3x3(x)))) -> (B, O, Cout, 2h, 2w)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, out_dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1)
        self.shortcut = nn.Identity() if in_dim == out_dim else nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(self, g: Tensor, skip: Tensor) -> Tensor:
        x = resize_objects(g, skip.shape[-2:], mode="bilinear") + skip.unsqueeze(1)
        x = x.flatten(0, 1)
        out = self.shortcut(x) + F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return out.view(*g.shape[:2], *out.shape[1:])


class ReleaseMaskDecoder(nn.Module):
    """v16 (B, O, E, h, w), key-encoder skips f8 (B, C8, 2h, 2w) and f4 (B, C4, 4h, 4w), sensory
    (B, O, Cs, h, w) -> (object logits (B, O, 4h, 4w), new sensory).

    ``dims`` = (d8, d4): f8 is projected to E and f4 to d8 (1x1), the blocks map E -> d8 -> d4, a 1x1
    conv predicts the logits, and the sensory GRU reads 1x1(v16) + 1x1(area(v8)) + 1x1(area([v4, logits]))
    (each to Cs) at stride 16.
    """

    def __init__(self, embed_dim: int, skip_dims: tuple[int, int], dims: tuple[int, int], sensory_dim: int):
        super().__init__()
        d8, d4 = dims
        c8, c4 = skip_dims
        self.skip8_proj = nn.Conv2d(c8, embed_dim, kernel_size=1)
        self.skip4_proj = nn.Conv2d(c4, d8, kernel_size=1)
        self.up_16_8 = ReleaseUpsampleBlock(embed_dim, d8)
        self.up_8_4 = ReleaseUpsampleBlock(d8, d4)
        self.pred = nn.Conv2d(d4, 1, kernel_size=1)
        self.sensory_in16 = nn.Conv2d(embed_dim, sensory_dim, kernel_size=1)
        self.sensory_in8 = nn.Conv2d(d8, sensory_dim, kernel_size=1)
        self.sensory_in4 = nn.Conv2d(d4 + 1, sensory_dim, kernel_size=1)
        self.sensory_update = ReleaseSensoryGRU(sensory_dim, sensory_dim)

    def forward(self, v16: Tensor, f8: Tensor, f4: Tensor, sensory: Tensor) -> tuple[Tensor, Tensor]:
        v8 = self.up_16_8(v16, self.skip8_proj(f8))
        v4 = self.up_8_4(v8, self.skip4_proj(f4))
        logits = per_object(self.pred, v4)  # (B, O, 1, 4h, 4w)
        size16 = v16.shape[-2:]
        g = (per_object(self.sensory_in16, v16)
             + per_object(self.sensory_in8, resize_objects(v8, size16, mode="area"))
             + per_object(self.sensory_in4, resize_objects(torch.cat([v4, logits], dim=2), size16, mode="area")))
        return logits.squeeze(2), self.sensory_update(g, sensory)
