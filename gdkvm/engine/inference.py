"""Streaming inference over a prepared split with the model's :class:`Stepper`.

Used by evaluation and by the validation pass during training, so both score exactly what a user
would get frame by frame: :func:`predict_clips` runs the one frame pipeline of
:mod:`gdkvm.engine.frames` (re-exported here), which ``gdkvm predict`` and ``gdkvm bench fps``'s
end-to-end mode run too.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from gdkvm.engine.frames import (
    LV_LABEL,
    FrameOutput,
    FramePipeline,
    FrameStream,
    autocast_context,
    masks_to_native,
    precision_name,
    resize_frames,
    to_model_input,
)

__all__ = [
    "LV_LABEL",
    "FrameOutput",
    "FramePipeline",
    "FrameStream",
    "autocast_context",
    "masks_to_native",
    "mean_frame_dice",
    "precision_name",
    "predict_clips",
    "resize_frames",
    "to_model_input",
]


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

    Runs :class:`~gdkvm.engine.frames.FramePipeline` (the pipeline predict and ``bench fps`` end-to-end
    run) on the clips at their stored size (no resize).

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
    pipeline = FramePipeline(model, device, size=None, amp=amp, object_index=object_index,
                             threshold=0.5 if threshold is None else threshold)
    for start in range(0, n, batch):
        clips = images[start : start + batch]
        for i, frame in enumerate(pipeline.clip(clips)):
            out[start : start + len(clips), i] = frame.prob if threshold is None else frame.mask
        if progress is not None:
            progress(min(start + batch, n), n)
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
