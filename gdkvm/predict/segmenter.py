"""Frame-by-frame LV segmentation of a whole recording with a trained run's model."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from gdkvm.engine.frames import FramePipeline
from gdkvm.errors import ConfigError, DataError
from gdkvm.models.interface import SegmentationModel

LV_CHANNEL = 1  # logits channel 0 is background, 1 the first object (LV)
#: Above this many frames a growing (softmax) memory asks for confirmation via ``allow_growing_memory``.
GROWING_MEMORY_FRAME_LIMIT = 400


class Segmenter(Protocol):
    """frames (T, H, W) uint8 -> LV masks (T, H, W) uint8 in {0, 1} at the same size."""

    def __call__(self, frames: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray: ...


CHECKPOINT_NAMES = {"best": "checkpoint_best.safetensors", "last": "checkpoint_last.safetensors"}


def find_checkpoint(run: Path, which: str = "auto") -> Path:
    """The checkpoint of a run folder: ``best``, ``last``, or ``auto`` (best, else last); DataError if absent."""
    run = Path(run)
    if not run.is_dir():
        raise DataError(run, "run folder not found")
    if which not in ("auto", *CHECKPOINT_NAMES):
        raise ConfigError(f"--checkpoint {which!r} is not one of auto, best, last")
    names = list(CHECKPOINT_NAMES.values()) if which == "auto" else [CHECKPOINT_NAMES[which]]
    for name in names:
        if (run / name).is_file():
            return run / name
    raise DataError(run, f"run folder has no {' or '.join(names)}; train it first")


def resolve_device(device: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a usable torch device; anything else, or CUDA on a
    machine without it, is a one-line ConfigError (:func:`gdkvm.utils.device.resolve_device`)."""
    from gdkvm.utils.device import resolve_device as _resolve

    return _resolve(device)


def _size_value(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def checkpoint_input_size(ckpt: Path) -> int | None:
    """The training frame size recorded in a checkpoint's ``input_size`` metadata, or None."""
    from gdkvm.models.weights import read_checkpoint_metadata

    raw = read_checkpoint_metadata(ckpt).get("input_size")
    if raw is None:
        return None
    try:
        size = _size_value(json.loads(raw))
    except json.JSONDecodeError:
        size = None
    if size is None:
        raise DataError(ckpt, f"checkpoint metadata input_size {raw!r} is not a positive integer")
    return size


def training_size(run: Path) -> int | None:
    """The frame size a run was trained at, from its config.yaml's prepared data folder (store.json).

    A relative data path is looked up against the run folder and its parents (where training ran), never
    the current folder. None when the run has no config.yaml or the data folder is gone; an unusable
    config.yaml is a one-line ConfigError.
    """
    from gdkvm.config import load_yaml
    from gdkvm.data.store import read_store_meta

    run = Path(run)
    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        return None
    cfg = load_yaml(cfg_path)
    if isinstance(cfg, dict) and isinstance(cfg.get("train"), dict):
        cfg = cfg["train"]  # what `gdkvm train` writes; a flat mapping is accepted too
    data = cfg.get("data") if isinstance(cfg, dict) else None
    if not isinstance(data, str) or not data:
        raise ConfigError(f"{cfg_path}: no 'data' folder recorded (not a config.yaml written by gdkvm train)")
    data_path = Path(data)
    candidates = [data_path] if data_path.is_absolute() else [d / data_path for d in (run, *run.resolve().parents)]
    for candidate in candidates:
        if (candidate / "store.json").is_file():
            try:
                return _size_value(read_store_meta(candidate).get("options", {}).get("size"))
            except DataError:
                return None
    return None


@dataclass
class ModelSegmenter:
    """Streams a recording through the one frame pipeline (:mod:`gdkvm.engine.frames`) at the model size.

    Each frame is resized (OpenCV bilinear, uint8) to ``size`` x ``size``, segmented one at a time with
    O(1) state for the constant-state memory rules under the precision policy of evaluate (bf16 autocast
    on CUDA when ``amp`` is on, float32 on the CPU), thresholded (LV probability > 0.5, as evaluate's
    ``clean`` mode) and the LV mask resized back (OpenCV nearest) to the native frame size.
    """

    model: SegmentationModel
    size: int
    device: torch.device
    allow_growing_memory: bool = False
    #: Mean LV softmax probability over the pixels called LV in the last recording (None: no LV pixel).
    last_confidence: float | None = None
    amp: bool = True

    def memory_is_growing(self) -> bool:
        """Whether the model's carried state grows with every frame (the softmax memory)."""
        return not self.model.constant_state

    def growing_memory_cost(self, n_frames: int) -> int:
        """Approximate bytes a growing memory holds after ``n_frames`` (the model's declared growth per frame)."""
        return int(n_frames * self.model.state_growth_bytes(1, self.size, self.size))

    def pipeline(self) -> FramePipeline:
        """The frame pipeline this segmenter runs (also what ``gdkvm bench fps`` end-to-end times)."""
        return FramePipeline(self.model, self.device, self.size, amp=self.amp, object_index=LV_CHANNEL)

    def __call__(self, frames: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """frames (T, H, W) uint8 at any size -> LV masks (T, H, W) uint8 in {0, 1} at the same size."""
        t, h, w = frames.shape
        if self.memory_is_growing() and t > GROWING_MEMORY_FRAME_LIMIT and not self.allow_growing_memory:
            cost = self.growing_memory_cost(t) / 2**20
            raise DataError(
                None,
                f"this run's softmax memory grows with every frame: {t} frames would hold about {cost:.0f} MiB "
                f"of keys/values; pass --allow-growing-memory to run it anyway",
            )
        out = np.zeros((t, h, w), dtype=np.uint8)
        conf_sum, conf_n = 0.0, 0
        for i, step in enumerate(self.pipeline().clip(frames, native=True)):
            lv = step.mask[0]
            if lv.any():
                conf_sum += float(step.prob[0][lv].sum(dtype=np.float64))
                conf_n += int(lv.sum())
            assert step.native is not None  # asked for with native=True
            out[i] = step.native[0]
            if progress is not None:
                progress(i + 1, t)
        self.last_confidence = conf_sum / conf_n if conf_n else None
        return out


@dataclass
class LoadedModel:
    """What :func:`load_segmenter` picked: the segmenter, its checkpoint and a line saying where it came from."""

    segmenter: ModelSegmenter
    checkpoint: Path
    source: str


def load_segmenter(run: Path | None = None, device: str = "auto", size: int | None = None,
                   allow_growing_memory: bool = False, *, weights: Path | None = None,
                   checkpoint: str = "auto", amp: bool = True) -> LoadedModel:
    """Build a :class:`ModelSegmenter` from a run folder, a checkpoint file, or the shipped weights.

    Exactly one of ``run`` / ``weights`` may be given; with neither the package's shipped checkpoint is
    used. The model input size is ``size`` if given, else the checkpoint's ``input_size`` metadata, else
    (run folders) the run's prepared data; when none says, a one-line ConfigError asks for ``--size``.
    A run folder's checkpoint must be of the variant in its config.yaml (as in evaluate). ``amp``: bf16
    autocast on CUDA, the precision policy of evaluate (:func:`gdkvm.engine.frames.autocast_context`).
    """
    from gdkvm.models.weights import (
        load_model,
        read_checkpoint_metadata,
        shipped_model_card_path,
        shipped_weights_path,
    )

    if run is not None and weights is not None:
        raise ConfigError("give either --run or --weights, not both")
    if size is not None and size < 16:
        raise ConfigError(f"--size {size} is too small (at least 16 px)")
    dev = resolve_device(device)
    variant = None
    if run is not None:
        ckpt = find_checkpoint(run, checkpoint)
        source = f"model: {ckpt}"
        variant = _run_variant(Path(run))
    elif weights is not None:
        ckpt = Path(weights)
        if not ckpt.is_file():
            raise DataError(ckpt, "weights file not found")
        source = f"model: {ckpt}"
    else:
        ckpt = shipped_weights_path()
        if not ckpt.is_file():
            raise DataError(ckpt, "the shipped weights are not installed; pass --run RUN or --weights FILE")
        name = read_checkpoint_metadata(ckpt).get("weights_name") or ckpt.name
        source = f"using the shipped weights '{name}' ({ckpt.name}); model card: {shipped_model_card_path()}"
    model = load_model(ckpt, variant=variant).to(dev).eval()
    size = size or checkpoint_input_size(ckpt) or (training_size(Path(run)) if run is not None else None)
    if size is None:
        where = f"{ckpt} has no input_size metadata" + (" and the run's prepared data was not found" if run else "")
        raise ConfigError(f"cannot tell the model's training frame size: {where}; pass --size N")
    return LoadedModel(ModelSegmenter(model, size, dev, allow_growing_memory, amp=amp), ckpt, source)


def _run_variant(run: Path) -> str | None:
    """The variant a run folder's config.yaml names, or None when it has no config.yaml."""
    from gdkvm.config import load_yaml

    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        return None
    cfg = load_yaml(cfg_path)
    if isinstance(cfg, dict) and isinstance(cfg.get("train"), dict):
        cfg = cfg["train"]
    variant = cfg.get("variant") if isinstance(cfg, dict) else None
    if variant is not None and not isinstance(variant, str):
        raise ConfigError(f"{cfg_path}: 'variant' is not a name")
    return variant
