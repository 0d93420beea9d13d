"""Segmentation loss: cross-entropy + soft Dice with equal weight (Cutie style), on chosen frames.

The model gives logits per frame, ``(B, T, C, H, W)``. With ``C == 1`` the single channel is the
foreground logit (sigmoid, binary cross-entropy); with ``C >= 2`` channel 0 is background and the
rest are objects (softmax, cross-entropy over classes). The soft Dice term is taken over the
foreground channel(s) only, per frame, with +1 smoothing in numerator and denominator so that an
empty target predicted empty costs nothing.

Losses are returned as *sums over supervised frames* plus the frame count, so that a distributed run
can divide by the global count and match a single-process run exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gdkvm.engine.config import Supervision


def supervised_frames(labeled: torch.Tensor, supervision: Supervision) -> torch.Tensor:
    """Which frames the loss sees: ``(B, T)`` bool.

    ``ends``: the first and last frame of each clip; ``full``: every frame. Either way only frames
    whose ``labeled`` flag is true count (a frame without a reference mask is never supervised).
    """
    if labeled.dim() != 2:
        raise ValueError(f"labeled must be (B, T), got shape {tuple(labeled.shape)}")
    labeled = labeled.bool()
    if supervision == "full":
        return labeled
    if supervision == "ends":
        ends = torch.zeros_like(labeled)
        ends[:, 0] = True
        ends[:, -1] = True
        return labeled & ends
    raise ValueError(f"unknown supervision {supervision!r}; valid: ends, full")


def foreground_probs(logits: torch.Tensor) -> torch.Tensor:
    """Foreground probabilities ``(N, C_fg, H, W)`` from logits ``(N, C, H, W)`` (float32)."""
    logits = logits.float()
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)[:, 1:]


def per_frame_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel-mean cross-entropy per frame: logits ``(N, C, H, W)``, target ``(N, H, W)`` int -> ``(N,)``."""
    logits = logits.float()
    if logits.shape[1] == 1:
        loss = F.binary_cross_entropy_with_logits(logits[:, 0], (target > 0).float(), reduction="none")
    else:
        loss = F.cross_entropy(logits, target.long(), reduction="none")
    return loss.flatten(1).mean(dim=1)


def per_frame_soft_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice loss per frame, averaged over foreground channels: -> ``(N,)`` in [0, 1].

    ``1 - (2 Σ p g + 1) / (Σ p + Σ g + 1)`` per foreground class, where ``g`` is the one-hot target.
    """
    probs = foreground_probs(logits)
    n_fg = probs.shape[1]
    if n_fg == 1:
        onehot = (target > 0).float().unsqueeze(1)
    else:
        onehot = F.one_hot(target.long().clamp(0, n_fg), n_fg + 1)[..., 1:].permute(0, 3, 1, 2).float()
    inter = (probs * onehot).flatten(2).sum(-1)
    denom = probs.flatten(2).sum(-1) + onehot.flatten(2).sum(-1)
    dice = (2 * inter + 1) / (denom + 1)
    return (1 - dice).mean(dim=1)


@dataclass
class LossSums:
    """Sums of per-frame losses over the supervised frames, and how many frames there were.

    ``ce`` and ``dice`` are 0-dim tensors that carry the autograd graph; ``frames`` is a 0-dim float
    tensor so it can be all-reduced. ``total(count)`` gives the weighted mean with a chosen divisor.
    """

    ce: torch.Tensor
    dice: torch.Tensor
    frames: torch.Tensor
    ce_weight: float = 1.0
    dice_weight: float = 1.0

    def total(self, count: torch.Tensor | float | None = None) -> torch.Tensor:
        """``(w_ce Σ ce + w_dice Σ dice) / count`` (``count`` defaults to the local frame count)."""
        divisor = self.frames if count is None else count
        divisor = torch.as_tensor(divisor, dtype=torch.float32, device=self.ce.device).clamp_min(1.0)
        return (self.ce_weight * self.ce + self.dice_weight * self.dice) / divisor


def segmentation_loss(
    logits: torch.Tensor,
    masks: torch.Tensor,
    frames: torch.Tensor,
    ce_weight: float = 1.0,
    dice_weight: float = 1.0,
) -> LossSums:
    """CE + soft Dice summed over the selected frames.

    Args:
        logits: ``(B, T, C, H, W)`` per-frame logits (any float dtype; computed in float32).
        masks: ``(B, T, H, W)`` integer reference masks (0 = background).
        frames: ``(B, T)`` bool, the frames to supervise (see :func:`supervised_frames`).
    Returns:
        :class:`LossSums`; ``.total()`` is the mean combined loss over the selected frames.
    """
    if logits.dim() != 5:
        raise ValueError(f"logits must be (B, T, C, H, W), got shape {tuple(logits.shape)}")
    b, t = logits.shape[:2]
    if masks.shape[:2] != (b, t) or frames.shape != (b, t):
        raise ValueError(
            f"shape mismatch: logits {tuple(logits.shape)}, masks {tuple(masks.shape)}, "
            f"frames {tuple(frames.shape)}"
        )
    if logits.shape[-2:] != masks.shape[-2:]:
        logits = F.interpolate(
            logits.flatten(0, 1).float(), size=masks.shape[-2:], mode="bilinear", align_corners=False
        ).unflatten(0, (b, t))
    select = frames.reshape(-1).bool()
    flat_logits = logits.flatten(0, 1)[select]
    flat_masks = masks.flatten(0, 1)[select]
    n = select.sum().to(torch.float32)
    if flat_logits.shape[0] == 0:
        zero = logits.float().sum() * 0.0  # keeps the graph connected so DDP sees every parameter
        return LossSums(zero, zero.detach(), n, ce_weight, dice_weight)
    ce = per_frame_ce(flat_logits, flat_masks).sum()
    dice = per_frame_soft_dice(flat_logits, flat_masks).sum()
    return LossSums(ce, dice, n, ce_weight, dice_weight)
