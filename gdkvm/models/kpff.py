"""Key-Pixel Feature Fusion (KPFF, paper Section 3.4, Eq. 6).

    F_Global = Expand(GAP(F_K))
    G        = sigmoid(Conv_gate(F_K + F_Global))
    F_fused  = G * (F_K + F_Global) + (1 - G) * F_Pix

F_K are the local key features (the key projection's output, Ck channels) and F_Pix the pixel features
(Cp channels). The paper does not say how F_Pix reaches the key width; here it is projected by a 1x1
convolution (Cp -> Ck) before the fusion. Conv_gate is a 3x3 convolution (Ck -> Ck), so the gate of a
pixel sees its neighbourhood. The fused map is still a pre-activation key: the model applies the
per-pixel softmax over channels afterwards, exactly as on F_K when KPFF is off.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class KPFF(nn.Module):
    """Fuse local keys, their global average and pixel features: (B, Ck, h, w), (B, Cp, h, w) -> (B, Ck, h, w)."""

    def __init__(self, key_dim: int, pixel_dim: int):
        super().__init__()
        self.pix_proj = nn.Conv2d(pixel_dim, key_dim, kernel_size=1)
        self.gate = nn.Conv2d(key_dim, key_dim, kernel_size=3, padding=1)

    def forward(self, key_feat: Tensor, pix_feat: Tensor) -> Tensor:
        """key_feat F_K (B, Ck, h, w), pix_feat F_Pix (B, Cp, h, w) -> F_fused (B, Ck, h, w)."""
        local_global = key_feat + key_feat.mean(dim=(2, 3), keepdim=True)  # F_K + Expand(GAP(F_K))
        gate = torch.sigmoid(self.gate(local_global))
        return gate * local_global + (1 - gate) * self.pix_proj(pix_feat)
