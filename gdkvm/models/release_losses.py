"""The release's auxiliary losses for :class:`gdkvm.models.release.ReleaseGDKVM` (weights 0.01).

The release supervises the sensory auxiliary prediction and each object-transformer level's query
auxiliary prediction (L + 1 levels: before the first block and after every block) with the same
cross-entropy + Dice pair as the main output, on the clip's first and last frames, each scaled by 0.01.
Differences from the release, on purpose: the loss is dense (every pixel, logits bilinearly upsampled to
the target size) where the release samples uncertain points; and every batch item contributes (the
release computes the auxiliary terms once, after its per-item loop, from the last item only).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from gdkvm.errors import ConfigError

__all__ = ["AUX_WEIGHT", "QUERY_AUX_WEIGHT", "release_aux_loss"]

#: The weight of the sensory auxiliary terms in the release config (``aux_loss.sensory.weight``).
AUX_WEIGHT = 0.01
#: The weight of each object-transformer level's auxiliary terms (``aux_loss.query.weight``).
QUERY_AUX_WEIGHT = 0.01


def _ce_dice(logits: Tensor, onehot: Tensor) -> tuple[Tensor, Tensor]:
    """logits, onehot (F, C, H, W) -> (CE summed over frames, mean over pixels; Dice of the foreground
    classes, summed over frames, mean over classes), with the release's +1 smoothing."""
    ce = F.cross_entropy(logits, onehot, reduction="none").flatten(1).mean(1).sum()
    prob = logits.softmax(dim=1)[:, 1:].flatten(2)
    gt = onehot[:, 1:].flatten(2)
    dice = 1 - (2 * (prob * gt).sum(-1) + 1) / (prob.sum(-1) + gt.sum(-1) + 1)
    return ce, dice.sum(0).mean()


def _frames_onehot(logits: Tensor, target: Tensor, frames: list[int]) -> tuple[Tensor, Tensor]:
    """logits (B, T, C, h, w) -> (the ``frames`` bilinearly upsampled to the target size (B, F, C, H, W),
    one-hot targets (B, F, C, H, W))."""
    b, _, c = logits.shape[:3]
    sel = logits[:, frames].flatten(0, 1)
    sel = F.interpolate(sel, size=target.shape[-2:], mode="bilinear", align_corners=False)
    sel = sel.view(b, len(frames), c, *target.shape[-2:])
    onehot = F.one_hot(target[:, frames].long().clamp(0, c - 1), c).permute(0, 1, 4, 2, 3).to(sel.dtype)
    return sel, onehot


def _batch_ce_dice(sel: Tensor, onehot: Tensor) -> tuple[Tensor, Tensor]:
    """(B, F, C, H, W) logits and one-hot targets -> (CE, Dice), each the mean over the batch items of
    :func:`_ce_dice`."""
    b = sel.shape[0]
    ce = dice = sel.new_zeros(())
    for i in range(b):
        item_ce, item_dice = _ce_dice(sel[i], onehot[i])
        ce, dice = ce + item_ce / b, dice + item_dice / b
    return ce, dice


def release_aux_loss(aux: dict[str, Tensor], target: Tensor, weight: float = AUX_WEIGHT,
                     query_weight: float = QUERY_AUX_WEIGHT) -> dict[str, Tensor]:
    """Auxiliary losses from ``model.forward_with_aux(clip)[1]``.

    aux["sensory_logits"] (B, T, O + 1, h, w) and, optionally, aux["query_logits"] (B, T, L, O + 1, h, w)
    (one prediction per object-transformer level); target (B, T, H, W) integer labels in [0, O]
    (0 background). Returns {"aux_sensory_ce", "aux_sensory_dice"} (times ``weight``), with query logits
    also {"aux_query_ce", "aux_query_dice"} (summed over the levels, times ``query_weight``) and the
    per-level "aux_query_ce_l{i}" / "aux_query_dice_l{i}", and "aux_total" (the sensory and summed query
    terms). Each term is averaged over the batch, on frames 0 and T - 1 (frame 0 only for T = 1).
    """
    logits = aux.get("sensory_logits")
    if logits is None or logits.dim() != 5:
        raise ConfigError("release aux loss: aux must hold 'sensory_logits' of shape (B, T, O + 1, h, w)")
    b, t, c = logits.shape[:3]
    if target.shape[:2] != (b, t) or target.dim() != 4:
        raise ConfigError(f"release aux loss: target must be (B={b}, T={t}, H, W) labels, got {tuple(target.shape)}")
    frames = [0, t - 1] if t > 1 else [0]
    sel, onehot = _frames_onehot(logits, target, frames)
    ce, dice = _batch_ce_dice(sel, onehot)
    out = {"aux_sensory_ce": ce * weight, "aux_sensory_dice": dice * weight}
    total = out["aux_sensory_ce"] + out["aux_sensory_dice"]
    query = aux.get("query_logits")
    if query is not None:
        if query.dim() != 6 or query.shape[:2] != (b, t) or query.shape[3:] != logits.shape[2:]:
            raise ConfigError(f"release aux loss: 'query_logits' must be (B={b}, T={t}, L, {c}, "
                              f"{logits.shape[-2]}, {logits.shape[-1]}), got {tuple(query.shape)}")
        q_ce = q_dice = logits.new_zeros(())
        for level in range(query.shape[2]):
            sel, _ = _frames_onehot(query[:, :, level], target, frames)
            level_ce, level_dice = _batch_ce_dice(sel, onehot)
            out[f"aux_query_ce_l{level}"] = level_ce * query_weight
            out[f"aux_query_dice_l{level}"] = level_dice * query_weight
            q_ce, q_dice = q_ce + out[f"aux_query_ce_l{level}"], q_dice + out[f"aux_query_dice_l{level}"]
        out["aux_query_ce"], out["aux_query_dice"] = q_ce, q_dice
        total = total + q_ce + q_dice
    out["aux_total"] = total
    return out
