"""The files of a run folder: their names, in one place, and a reader for each.

A run folder (written by :mod:`gdkvm.engine.train`, :mod:`gdkvm.engine.evaluate` and
:mod:`gdkvm.engine.ablate`)::

    <runs>/<run>/config.yaml                 CONFIG_FILE: sections train, model, versions, store, ...
    <runs>/<run>/metrics.jsonl               METRICS_FILE: one JSON object per train / val / checkpoint record
    <runs>/<run>/train_done.json             DONE_FILE: written when training reached its last iteration
    <runs>/<run>/checkpoint_{last,best}.safetensors, trainer_state.pt
    <runs>/<run>/eval/<split>[-<mode>]/      EVAL_DIR / eval_folder_name(split, mode)
        summary.json, per_frame.csv, per_video.csv, ef.csv, predictions.npy
    <runs>/ablation-table<N>-<dataset>-<preset>.csv   ablation summaries beside the run folders

Every reader raises a one-line :class:`~gdkvm.errors.GdkvmError` (a :class:`~gdkvm.errors.DataError`
naming the file) for a file that is absent where one is required, unreadable, or not in the writer's
format; callers that collect several files (``gdkvm report``) turn each error into one "missing" line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gdkvm.errors import ConfigError, DataError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
DONE_FILE = "train_done.json"
LAST_CHECKPOINT_FILE = "checkpoint_last.safetensors"
BEST_CHECKPOINT_FILE = "checkpoint_best.safetensors"
TRAINER_STATE_FILE = "trainer_state.pt"
EVAL_DIR = "eval"
SUMMARY_FILE = "summary.json"
PER_FRAME_FILE = "per_frame.csv"
PER_VIDEO_FILE = "per_video.csv"
EF_FILE = "ef.csv"
PREDICTIONS_FILE = "predictions.npy"
#: Metric modes whose evaluation folder is ``<split>-<mode>`` (``clean`` is plain ``<split>``).
SUFFIXED_MODES: tuple[str, ...] = ("memsam", "gdkvm-legacy")
ABLATION_SUMMARY_GLOB = "ablation-table*-*.csv"


# ------------------------------------------------------------------------------ names


def eval_folder_name(split: str, mode: str = "clean") -> str:
    """``<split>`` for the clean mode, else ``<split>-<mode>``."""
    return split if mode == "clean" else f"{split}-{mode}"


def split_mode(folder_name: str) -> tuple[str, str]:
    """Inverse of :func:`eval_folder_name`: ``test-memsam`` -> ``("test", "memsam")``."""
    for mode in SUFFIXED_MODES:
        if folder_name.endswith(f"-{mode}"):
            return folder_name[: -len(mode) - 1], mode
    return folder_name, "clean"


def ablation_summary_name(table: int, dataset: str, preset: str, rows: tuple[str, ...] | None = None) -> str:
    """File name of one ablation summary CSV (matches :data:`ABLATION_SUMMARY_GLOB`); a run of some rows
    only (``--rows``) gets their names as a suffix, so it never replaces a whole table's summary."""
    suffix = "" if rows is None else "-rows-" + "-".join(rows)
    return f"ablation-table{table}-{dataset}-{preset}{suffix}.csv"


def is_run_folder(path: Path) -> bool:
    """A folder holding a ``config.yaml`` (what ``gdkvm train`` writes first)."""
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def eval_folders(run_dir: Path) -> list[Path]:
    """The evaluation folders of a run (``eval/*``, hidden temporaries skipped), sorted by name."""
    root = Path(run_dir) / EVAL_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


# ------------------------------------------------------------------------------ generic readers


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON file holding one object; DataError when absent, unreadable or not an object."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"{what} not found")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, f"unreadable {what} ({type(e).__name__})") from None
    if not isinstance(value, dict):
        raise DataError(path, f"{what} is not a JSON object")
    return value


def read_table(path: Path, what: str, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV table written by a gdkvm writer, checked for the ``required`` columns and for truncation.

    A file whose last line does not end in a newline, or with rows lacking a ``required`` value, was cut
    short (a writer killed mid-file): its numbers would be silently partial, so it is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"{what} not found")
    try:
        frame = pd.read_csv(path)
    except Exception as e:  # pandas raises many types for a bad CSV
        raise DataError(path, f"unreadable {what} ({type(e).__name__})") from None
    lacking = [c for c in required if c not in frame.columns]
    if lacking:
        raise DataError(path, f"{what} lacks column(s) {', '.join(lacking)}")
    with open(path, "rb") as f:
        f.seek(max(path.stat().st_size - 1, 0))
        last = f.read(1)
    short = int(frame[list(required)].isna().any(axis=1).sum()) if required else 0
    if last not in (b"\n", b"") or short:
        raise DataError(path, f"{what} looks truncated (last line incomplete or {short} row(s) with empty "
                              f"{'/'.join(required)})")
    return frame


# ------------------------------------------------------------------------------ training files


@dataclass(frozen=True)
class RunConfigFile:
    """A parsed ``config.yaml``: the whole mapping and its ``train`` section (the TrainConfig fields)."""

    path: Path
    raw: dict[str, Any]
    train: dict[str, Any]

    @property
    def store(self) -> dict[str, Any]:
        """The ``store`` section (:func:`gdkvm.data.locate.store_record`), ``{}`` for older runs."""
        record = self.raw.get("store")
        return record if isinstance(record, dict) else {}


def read_run_config(run_dir: Path) -> RunConfigFile:
    """The run's ``config.yaml`` as train writes it (``train`` section; a flat mapping of train options,
    as :func:`gdkvm.engine.config.load_train_config` also accepts). Raises ConfigError/DataError when it
    is absent, not YAML, or has no ``variant``/``data``."""
    from gdkvm.config import load_yaml

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise DataError(path, "not found (not a run folder)")
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping")
    train = raw["train"] if isinstance(raw.get("train"), dict) else raw
    if "variant" not in train or "data" not in train:
        raise ConfigError(f"{path}: no 'variant'/'data' (not a gdkvm run config)")
    return RunConfigFile(path, raw, train)


@dataclass(frozen=True)
class MetricsLogFile:
    """The records of ``metrics.jsonl`` (each a dict with ``iteration`` and ``kind``) and how many lines
    were skipped (torn or not a record)."""

    path: Path
    records: list[dict[str, Any]]
    bad_lines: int


def read_metrics_log(run_dir: Path) -> MetricsLogFile:
    """Every record of the run's ``metrics.jsonl`` in file order; ``kind`` defaults to ``train``.

    A record is written as ``{"kind": "train" | "val" | "checkpoint", "iteration": int, ...}``; train
    records carry the loss terms, ``lr``, ``grad_norm``, ``clips_per_s`` and ``gates`` (per gate name:
    :func:`gdkvm.engine.train._tensor_summary`'s statistics and a 16-bin ``hist``). Raises DataError when
    the file is absent.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise DataError(path, "training log not found")
    records: list[dict[str, Any]] = []
    bad = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if not isinstance(record, dict) or not isinstance(record.get("iteration"), int):
            bad += 1
            continue
        records.append({"kind": "train", **record})
    return MetricsLogFile(path, records, bad)


def read_train_done(run_dir: Path) -> dict[str, Any] | None:
    """``train_done.json`` (``iteration``, ``best_dice``, ``best_iteration``, ``last_loss``,
    ``elapsed_s``), or None when training has not finished. DataError when present but unreadable."""
    path = Path(run_dir) / DONE_FILE
    if not path.is_file():
        return None
    return read_json_object(path, "training-finished marker")


# ------------------------------------------------------------------------------ evaluation files


@dataclass(frozen=True)
class EvalFiles:
    """The readable files of one ``eval/<split>[-<mode>]`` folder."""

    path: Path
    split: str
    mode: str
    summary: dict[str, Any]


def read_eval_summary(folder: Path) -> EvalFiles:
    """``summary.json`` of an evaluation folder, checked for the ``segmentation.overall`` block evaluate
    writes; split and mode from the summary (else from the folder name). DataError otherwise."""
    folder = Path(folder)
    path = folder / SUMMARY_FILE
    if not path.is_file():
        raise DataError(folder, f"evaluation incomplete (no {SUMMARY_FILE})")
    summary = read_json_object(path, "evaluation summary")
    if not isinstance(summary.get("segmentation"), dict) or "overall" not in summary["segmentation"]:
        raise DataError(path, "no segmentation.overall block (not an evaluation summary)")
    split, mode = split_mode(folder.name)
    return EvalFiles(folder, str(summary.get("split", split)), str(summary.get("mode", mode)), summary)


def read_per_video(folder: Path) -> pd.DataFrame:
    """``per_video.csv`` (one row per clip; at least ``video``, ``dice``)."""
    return read_table(Path(folder) / PER_VIDEO_FILE, "per-video table", ("video", "dice"))


def read_per_frame(folder: Path) -> pd.DataFrame:
    """``per_frame.csv`` (one row per scored frame; at least ``video``, ``frame``, ``dice``)."""
    return read_table(Path(folder) / PER_FRAME_FILE, "per-frame table", ("video", "frame", "dice"))


def read_ef(folder: Path) -> pd.DataFrame:
    """``ef.csv`` (one row per EF unit and method; at least ``method``, ``ef_pred``, ``ef_ref``)."""
    return read_table(Path(folder) / EF_FILE, "EF table", ("method", "ef_pred", "ef_ref"))


def predictions_file(folder: Path) -> Path:
    """``predictions.npy`` of an evaluation, an (N, T, H, W) uint8 mask array; DataError when absent."""
    path = Path(folder) / PREDICTIONS_FILE
    if not path.is_file():
        raise DataError(path, "not found")
    return path


# ------------------------------------------------------------------------------ ablation summaries


def ablation_summaries(runs_dir: Path) -> list[Path]:
    """The ablation summary CSVs ``gdkvm ablate`` wrote beside the run folders, sorted."""
    return sorted(Path(runs_dir).glob(ABLATION_SUMMARY_GLOB))


def read_ablation_summary(path: Path) -> pd.DataFrame:
    """One ablation summary CSV with exactly :data:`gdkvm.engine.ablate.SUMMARY_COLUMNS`, in that order.
    DataError when unreadable or lacking a column."""
    from gdkvm.engine.ablate import SUMMARY_COLUMNS

    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise DataError(path, f"unreadable ablation summary ({type(e).__name__})") from None
    absent = [c for c in SUMMARY_COLUMNS if c not in frame.columns]
    if absent:
        raise DataError(path, f"ablation summary without column(s) {', '.join(absent)}")
    return frame.reindex(columns=list(SUMMARY_COLUMNS))
