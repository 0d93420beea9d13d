"""The one frame pipeline: native uint8 frames -> model size -> the model's stepper -> LV probabilities
and masks, at model size and (on request) back at the native size.

``gdkvm evaluate`` (through :func:`gdkvm.engine.inference.predict_clips`), ``gdkvm predict``
(:class:`gdkvm.predict.segmenter.ModelSegmenter`) and ``gdkvm bench fps``'s ``end-to-end`` mode all run
:meth:`FrameStream.step`, so the published end-to-end speed times what predict runs, and predict's masks
are what evaluate scores. One step, for a batch of B frames (one per clip, each clip with its own state):

1. **resize in** (host, uint8): when a frame is not at the model size, OpenCV bilinear
   (``cv2.INTER_LINEAR``) on the uint8 frame, as the preparers resize stored frames;
2. **to float** (host): ``float32(frame) / 255`` in [0, 1], copied to the device as (B, 1, S, S);
3. **step** under the one precision policy, :func:`autocast_context` (bf16 autocast on CUDA when ``amp``
   is on, float32 everywhere else);
4. **probabilities**: softmax over the background + object logits in float32, the object channel
   (1 = the LV), back on the host as (B, S, S) float32; **masks** at model size: ``prob > threshold``;
5. **resize out** (host, on request): the model-size masks to the native size with OpenCV nearest
   (``cv2.INTER_NEAREST``), uint8 in {0, 1}.

Streaming (predict, live use) and batched clips (evaluate) both go through :meth:`FrameStream.step`:
:meth:`FramePipeline.clip` is a loop over it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from gdkvm.errors import GdkvmError

LV_LABEL = 1
#: The default mask threshold: LV probability > 0.5 (evaluate's ``clean`` and ``gdkvm-legacy`` threshold).
MASK_THRESHOLD = 0.5
RESIZE_IN = cv2.INTER_LINEAR
RESIZE_OUT = cv2.INTER_NEAREST


def autocast_context(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``amp`` is on; a no-op elsewhere (CPU runs stay in float32)."""
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_name(device: torch.device, amp: bool) -> str:
    """What :func:`autocast_context` runs at: ``bf16 autocast`` (CUDA with ``amp``) or ``fp32``."""
    return "bf16 autocast" if amp and device.type == "cuda" else "fp32"


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _resize(frames: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    """(..., H, W) uint8 -> (..., h, w) uint8, each frame with ``cv2.resize``; unchanged if already (h, w)."""
    frames = np.asarray(frames)
    if tuple(frames.shape[-2:]) == size:
        return frames
    flat = frames.reshape(-1, *frames.shape[-2:])
    out = np.empty((flat.shape[0], *size), dtype=frames.dtype)
    for i, frame in enumerate(flat):
        out[i] = cv2.resize(np.ascontiguousarray(frame), (size[1], size[0]), interpolation=interpolation)
    return out.reshape(*frames.shape[:-2], *size)


def resize_frames(frames: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Native uint8 frames (..., H, W) -> (..., S, S) (or (..., h, w)) uint8, OpenCV bilinear; a no-op at size."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise GdkvmError(f"frame pipeline: frames must be uint8, got {frames.dtype}")
    return _resize(frames, _hw(size), RESIZE_IN)


def masks_to_native(masks: np.ndarray, native: tuple[int, int]) -> np.ndarray:
    """Model-size masks (..., S, S) bool or uint8 -> uint8 (..., H, W) in {0, 1}, OpenCV nearest."""
    return _resize(np.asarray(masks).astype(np.uint8, copy=False), _hw(native), RESIZE_OUT)


def to_model_input(frames: np.ndarray, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 frames (B, H, W) -> float32 (B, 1, S, S) in [0, 1] on the CPU (resized first unless ``size`` is None)."""
    frames = np.asarray(frames)
    if size is not None:
        frames = resize_frames(frames, size)
    return torch.from_numpy(np.asarray(frames, dtype=np.float32) / 255.0).unsqueeze(1)


@dataclass(frozen=True)
class FrameOutput:
    """One step's results for B frames.

    prob: (B, S, S) float32 object probabilities at model size; mask: (B, S, S) bool ``prob > threshold``;
    native: (B, H, W) uint8 {0, 1} masks at the input size (None unless asked for).
    """

    prob: np.ndarray
    mask: np.ndarray
    native: np.ndarray | None = None


class FrameStream:
    """One batch of clips streamed frame by frame from an empty memory (a fresh model stepper).

    The model's train/eval mode is the caller's (:meth:`FramePipeline.clip` sets eval mode).
    """

    def __init__(self, pipeline: FramePipeline):
        self.pipeline = pipeline
        self.stepper = pipeline.model.stepper()

    @torch.no_grad()
    def step(self, frames: np.ndarray, native: bool = False) -> FrameOutput:
        """The next frame of every clip: uint8 (B, H, W) (or one (H, W) frame, B = 1) at any size.

        Returns :class:`FrameOutput`; ``native=True`` adds the masks resized back to (H, W). Runs without
        gradients.
        """
        p = self.pipeline
        frames = np.asarray(frames)
        if frames.ndim == 2:
            frames = frames[None]
        if frames.ndim != 3:
            raise GdkvmError(f"frame pipeline: expected uint8 frames (B, H, W), got shape {tuple(frames.shape)}")
        x = to_model_input(frames, p.size).to(p.device)
        with autocast_context(p.device, p.amp):
            logits = self.stepper.step(x)
        prob = torch.softmax(logits.float(), dim=1)[:, p.object_index].cpu().numpy()
        mask = prob > p.threshold
        full = masks_to_native(mask, tuple(frames.shape[-2:])) if native else None
        return FrameOutput(prob, mask, full)

    def state_bytes(self) -> int:
        """Bytes of the carried recurrent state (the stepper's own count)."""
        return int(self.stepper.state_bytes())


@dataclass
class FramePipeline:
    """The model, its input size, device and precision: see the module docstring for the steps.

    size: the model's frame size (S or (h, w)); None feeds frames at the size they come (stored clips are
    already at the training size). amp: bf16 autocast on CUDA (:func:`autocast_context`).
    """

    model: nn.Module
    device: torch.device
    size: int | tuple[int, int] | None = None
    amp: bool = True
    object_index: int = LV_LABEL
    threshold: float = MASK_THRESHOLD

    def stream(self) -> FrameStream:
        """A fresh stream (empty memory); feed it with :meth:`FrameStream.step`."""
        return FrameStream(self)

    def clip(self, frames: np.ndarray, native: bool = False) -> Iterator[FrameOutput]:
        """Stream whole clips: uint8 (T, H, W) (one clip, B = 1) or (B, T, H, W); one output per frame.

        The model is in eval mode while the iterator runs; its train/eval mode is restored when the
        iterator finishes or is closed. A memory-mapped array is read one frame at a time.
        """
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4:
            raise GdkvmError(f"frame pipeline: expected uint8 clips (B, T, H, W), got shape {tuple(frames.shape)}")
        was_training = self.model.training
        self.model.eval()
        try:
            stream = self.stream()
            for i in range(frames.shape[1]):
                yield stream.step(frames[:, i], native=native)
        finally:
            self.model.train(was_training)
