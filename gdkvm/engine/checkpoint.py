"""Run folders and checkpoints: atomic saves, RNG capture, safe loads.

A run folder holds::

    config.yaml                    the TrainConfig (plus the model config and versions)
    metrics.jsonl                  one JSON object per training step / validation
    checkpoint_last.safetensors    latest weights (config in the metadata; rebuilds the model alone)
    checkpoint_best.safetensors    weights with the best validation Dice
    trainer_state.pt               everything needed to resume exactly (see below)
    eval/<split>/...               evaluation tables

``trainer_state.pt`` is one self-contained file, written atomically after the safetensors files: the
model state dict, optimizer and scheduler state, every RNG state, the iteration, and the best metric.
Holding the weights itself means a crash between two file writes can never pair weights of one
iteration with optimizer moments of another. It is loaded with ``torch.load(weights_only=True)``, so
it stores only tensors and plain containers of numbers and strings.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gdkvm.engine import run_files
from gdkvm.errors import DataError
from gdkvm.utils.atomic import atomic_path

TRAINER_STATE_VERSION = 1


@dataclass(frozen=True)
class RunPaths:
    """The files of one run folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / run_files.CONFIG_FILE

    @property
    def metrics(self) -> Path:
        return self.root / run_files.METRICS_FILE

    @property
    def last(self) -> Path:
        return self.root / run_files.LAST_CHECKPOINT_FILE

    @property
    def best(self) -> Path:
        return self.root / run_files.BEST_CHECKPOINT_FILE

    @property
    def trainer_state(self) -> Path:
        return self.root / run_files.TRAINER_STATE_FILE

    @property
    def done(self) -> Path:
        """Marker written when training reached its last iteration."""
        return self.root / run_files.DONE_FILE

    def eval_dir(self, split: str) -> Path:
        return self.root / run_files.EVAL_DIR / split

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete ``.<name>.*.tmp*`` leftovers of a killed atomic write; return what was removed."""
        removed = []
        if not self.root.is_dir():
            return removed
        for path in self.root.iterdir():
            if path.name.startswith(".") and ".tmp" in path.name and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed


# --------------------------------------------------------------------------------------------- RNG


def capture_rng_state() -> dict[str, Any]:
    """All RNG states (torch CPU, CUDA, numpy, Python) as tensors and plain values."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": int(py_version), "state": [int(x) for x in py_internal], "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            int(np_state["pos"]),
            int(np_state["has_gauss"]),
            float(np_state["cached_gaussian"]),
        )
    )
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["state"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in cuda_states])


# ---------------------------------------------------------------------------------- trainer state


def save_trainer_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` atomically (temp file + rename, fsynced first)."""
    state = {"format_version": TRAINER_STATE_VERSION, **state}
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
        except RuntimeError as e:  # torch's zip writer reports a full disk as "unexpected pos ..."
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(path, f"cannot write the trainer state (disk full? {first[:100]})") from None


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    """Load a ``trainer_state.pt`` with ``weights_only=True``; a bad file is a one-line DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "trainer state not found (the run never reached its first checkpoint)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(path, f"unreadable trainer state ({first[:120]})") from None
    if not isinstance(state, dict) or "iteration" not in state or "model" not in state:
        raise DataError(path, "not a gdkvm trainer state (missing iteration/model)")
    if state.get("format_version") != TRAINER_STATE_VERSION:
        raise DataError(path, f"trainer state format {state.get('format_version')} != {TRAINER_STATE_VERSION}")
    return state
