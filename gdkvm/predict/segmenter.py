"""Frame-by-frame LV segmentation of a whole recording with a trained run's model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

from gdkvm.errors import DataError

LV_CHANNEL = 1  # logits channel 0 is background, 1 the first object (LV)
#: Above this many frames a growing (softmax) memory asks for confirmation via ``allow_growing_memory``.
GROWING_MEMORY_FRAME_LIMIT = 400


class Segmenter(Protocol):
    """frames (T, H, W) uint8 -> LV masks (T, H, W) uint8 in {0, 1} at the same size."""

    def __call__(self, frames: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray: ...


def find_checkpoint(run: Path) -> Path:
    """The best checkpoint of a run folder, else the last; a folder without one is a DataError."""
    run = Path(run)
    if not run.is_dir():
        raise DataError(run, "run folder not found")
    for name in ("checkpoint_best.safetensors", "checkpoint_last.safetensors"):
        if (run / name).is_file():
            return run / name
    raise DataError(run, "run folder has no checkpoint (checkpoint_best/last.safetensors); train it first")


def training_size(run: Path) -> int | None:
    """The frame size the run was trained at, read from its config.yaml -> prepared store.json."""
    from gdkvm.config import load_yaml

    cfg_path = Path(run) / "config.yaml"
    if not cfg_path.is_file():
        return None
    cfg = load_yaml(cfg_path) or {}
    if isinstance(cfg, dict) and isinstance(cfg.get("train"), dict):
        cfg = cfg["train"]  # what `gdkvm train` writes; a flat mapping is accepted too
    data = cfg.get("data") if isinstance(cfg, dict) else None
    if not data:
        return None
    from gdkvm.data.store import read_store_meta

    try:
        size = read_store_meta(data).get("options", {}).get("size")
    except DataError:
        return None
    return size if isinstance(size, int) else None


@dataclass
class ModelSegmenter:
    """Streams a recording through a model's :class:`Stepper` at the training size and maps masks back.

    Frames are resized (bilinear) to ``size`` x ``size``, segmented one at a time with O(1) state for the
    constant-state memory rules, and the LV masks resized back (nearest) to the native frame size.
    """

    model: torch.nn.Module
    size: int
    device: torch.device
    allow_growing_memory: bool = False

    def memory_is_growing(self) -> bool:
        memory = getattr(self.model, "memory", None)
        return memory is not None and not getattr(memory, "constant_state", True)

    def growing_memory_cost(self, n_frames: int) -> int:
        """Approximate bytes a softmax memory holds after ``n_frames`` (keys + values of every frame)."""
        cfg = getattr(self.model, "config", None)
        ck = getattr(cfg, "key_dim", 64)
        cv = getattr(cfg, "value_dim", 256)
        pixels = (self.size // 16) ** 2
        return int(n_frames * pixels * (ck + cv) * 4)

    @torch.no_grad()
    def __call__(self, frames: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        t, h, w = frames.shape
        if self.memory_is_growing() and t > GROWING_MEMORY_FRAME_LIMIT and not self.allow_growing_memory:
            cost = self.growing_memory_cost(t) / 2**20
            raise DataError(
                None,
                f"this run's softmax memory grows with every frame: {t} frames would hold about {cost:.0f} MiB "
                f"of keys/values; pass --allow-growing-memory to run it anyway",
            )
        self.model.eval()
        stepper = self.model.stepper()
        out = np.zeros((t, h, w), dtype=np.uint8)
        for i in range(t):
            frame = frames[i]
            if frame.shape != (self.size, self.size):
                frame = cv2.resize(frame, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
            x = torch.from_numpy(frame.astype(np.float32) / 255.0)[None, None].to(self.device)
            logits = stepper.step(x)
            mask = (logits.argmax(dim=1)[0] == LV_CHANNEL).to(torch.uint8).cpu().numpy()
            if mask.shape != (h, w):
                mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
            out[i] = mask
            if progress is not None:
                progress(i + 1, t)
        return out


def load_segmenter(run: Path, device: str = "auto", size: int | None = None,
                   allow_growing_memory: bool = False) -> tuple[ModelSegmenter, Path]:
    """Build a :class:`ModelSegmenter` from a run folder's checkpoint; returns it and the checkpoint path."""
    from gdkvm.models.weights import load_model

    ckpt = find_checkpoint(run)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    model = load_model(ckpt).to(dev).eval()
    size = size or training_size(run) or 128
    return ModelSegmenter(model, size, dev, allow_growing_memory), ckpt
