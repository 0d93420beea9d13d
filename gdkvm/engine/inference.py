"""Streaming inference over a prepared split with the model's :class:`Stepper`.

Used by evaluation and by the validation pass during training, so both score exactly what a user
would get frame by frame.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

LV_LABEL = 1


def autocast_context(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``amp`` is on; a no-op elsewhere (CPU runs stay in float32)."""
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_name(device: torch.device, amp: bool) -> str:
    """What :func:`autocast_context` runs at: ``bf16 autocast`` (CUDA with ``amp``) or ``fp32``."""
    return "bf16 autocast" if amp and device.type == "cuda" else "fp32"


def _to_clip(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, T, H, W) -> float32 (B, T, 1, H, W) in [0, 1]."""
    return torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0).unsqueeze(2)


@torch.no_grad()
def predict_clips(
    model: nn.Module,
    images: np.ndarray,
    device: torch.device,
    amp: bool = True,
    batch: int = 8,
    object_index: int = LV_LABEL,
    threshold: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Foreground probabilities (or masks) of every frame, predicted frame by frame with the model's stepper.

    Args:
        model: a GDKVM-like model with ``stepper()``; put in eval mode for the call and restored after.
        images: (N, T, H, W) uint8 clips (a memory-mapped store array is fine).
        batch: clips streamed side by side (each clip has its own state).
        object_index: which logit channel is the structure (1 = the LV; 0 is background).
        threshold: if given, return bool masks ``prob > threshold`` instead (8x less memory).
        progress: ``progress(done_clips, total_clips)``.
    Returns:
        (N, T, H, W) float32 probabilities (softmax over the background + object channels), or bool
        masks when ``threshold`` is given.
    """
    n, t, h, w = images.shape
    out = np.zeros((n, t, h, w), dtype=np.float32 if threshold is None else bool)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, batch):
            clip = _to_clip(images[start : start + batch]).to(device)
            stepper = model.stepper()
            for i in range(t):
                with autocast_context(device, amp):
                    logits = stepper.step(clip[:, i])
                prob = torch.softmax(logits.float(), dim=1)[:, object_index]
                prob = prob.cpu().numpy()
                out[start : start + clip.shape[0], i] = prob if threshold is None else prob > threshold
            if progress is not None:
                progress(min(start + batch, n), n)
    finally:
        model.train(was_training)
    return out


def mean_frame_dice(pred: np.ndarray, masks: np.ndarray, labeled: np.ndarray) -> float:
    """Mean Dice over labelled frames of bool predictions vs ``masks == LV``; both empty counts 1.

    A quick validation score; the full metric protocols live in :mod:`gdkvm.metrics.segmentation`.
    pred (N, T, H, W) bool, masks (N, T, H, W) int, labeled (N, T) bool.
    """
    sel = np.asarray(labeled, dtype=bool)
    if not sel.any():
        return float("nan")
    p = np.asarray(pred, dtype=bool)[sel].reshape(int(sel.sum()), -1)
    r = (np.asarray(masks)[sel] == LV_LABEL).reshape(p.shape[0], -1)
    inter = (p & r).sum(1)
    total = p.sum(1) + r.sum(1)
    dice = np.where(total > 0, 2.0 * inter / np.maximum(total, 1), 1.0)
    return float(dice.mean())
