"""The release's auxiliary loss for :class:`gdkvm.models.release.ReleaseGDKVM` (weight 0.01).

The release supervises the sensory auxiliary prediction with the same cross-entropy + Dice pair as the
main output, on the clip's first and last frames, scaled by 0.01. Differences from the release, on purpose:
the loss is dense (every pixel, logits bilinearly upsampled to the target size) where the release samples
uncertain points; and every batch item contributes (the release computes the auxiliary terms once, after
its per-item loop, from the last item only).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from gdkvm.errors import ConfigError

__all__ = ["AUX_WEIGHT", "release_aux_loss"]

#: The weight of the sensory auxiliary terms in the release config.
AUX_WEIGHT = 0.01


def _ce_dice(logits: Tensor, onehot: Tensor) -> tuple[Tensor, Tensor]:
    """logits, onehot (F, C, H, W) -> (CE summed over frames, mean over pixels; Dice of the foreground
    classes, summed over frames, mean over classes), with the release's +1 smoothing."""
    ce = F.cross_entropy(logits, onehot, reduction="none").flatten(1).mean(1).sum()
    prob = logits.softmax(dim=1)[:, 1:].flatten(2)
    gt = onehot[:, 1:].flatten(2)
    dice = 1 - (2 * (prob * gt).sum(-1) + 1) / (prob.sum(-1) + gt.sum(-1) + 1)
    return ce, dice.sum(0).mean()


def release_aux_loss(aux: dict[str, Tensor], target: Tensor, weight: float = AUX_WEIGHT) -> dict[str, Tensor]:
    """Auxiliary losses from ``model.forward_with_aux(clip)[1]``.

    aux["sensory_logits"] (B, T, O + 1, h, w); target (B, T, H, W) integer labels in [0, O] (0 background).
    Returns {"aux_sensory_ce", "aux_sensory_dice", "aux_total"}, each a weighted scalar averaged over the
    batch, on frames 0 and T - 1 (frame 0 only for T = 1).
    """
    logits = aux.get("sensory_logits")
    if logits is None or logits.dim() != 5:
        raise ConfigError("release aux loss: aux must hold 'sensory_logits' of shape (B, T, O + 1, h, w)")
    b, t, c = logits.shape[:3]
    if target.shape[:2] != (b, t) or target.dim() != 4:
        raise ConfigError(f"release aux loss: target must be (B={b}, T={t}, H, W) labels, got {tuple(target.shape)}")
    frames = [0, t - 1] if t > 1 else [0]
    sel = logits[:, frames].flatten(0, 1)
    sel = F.interpolate(sel, size=target.shape[-2:], mode="bilinear", align_corners=False)
    sel = sel.view(b, len(frames), c, *target.shape[-2:])
    onehot = F.one_hot(target[:, frames].long().clamp(0, c - 1), c).permute(0, 1, 4, 2, 3).to(sel.dtype)
    ce = dice = sel.new_zeros(())
    for i in range(b):
        item_ce, item_dice = _ce_dice(sel[i], onehot[i])
        ce, dice = ce + item_ce / b, dice + item_dice / b
    ce, dice = ce * weight, dice * weight
    return {"aux_sensory_ce": ce, "aux_sensory_dice": dice, "aux_total": ce + dice}
