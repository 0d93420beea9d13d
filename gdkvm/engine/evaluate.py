"""Evaluate a trained run on a split: streaming inference, per-frame / per-video / EF tables.

Outputs (one folder, written atomically; ``eval/<split>`` for the default ``clean`` mode and
``eval/<split>-<mode>`` for the ``memsam`` and ``gdkvm-legacy`` compatibility modes)::

    per_frame.csv     one row per scored frame (FRAME_COLUMNS)
    per_video.csv     one row per clip (VIDEO_COLUMNS)
    ef.csv            one row per EF unit and method (EF_COLUMNS)
    summary.json      means, bootstrap 95% CIs (overall / ED / ES), EF agreement, provenance
    predictions.npy   (N, T, H, W) uint8 binary masks at the mode's threshold, for plots

Masks are ``probability > threshold`` with the mode's threshold (0.5; memsam 0.6), as
:func:`gdkvm.metrics.segmentation.binarize`. Scored frames: every labelled frame (``clean``,
``memsam``) or the first and last frame only (``gdkvm-legacy``). The first labelled frame of a clip
is its ``phase_first`` phase (ED for CAMUS and the default EchoNet clips) and the last labelled frame
the other phase. Metric definitions are in
:mod:`gdkvm.metrics.segmentation`; distances are in mm when the manifest has a spacing, else px.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import torch
from torch import nn

from gdkvm.data.locate import FoundStore
from gdkvm.engine import run_files
from gdkvm.engine.checkpoint import RunPaths
from gdkvm.engine.config import TrainConfig, load_train_config
from gdkvm.engine.distributed import resolve_device
from gdkvm.engine.inference import LV_LABEL, predict_clips
from gdkvm.errors import ConfigError, DataError, GdkvmError, unknown_name
from gdkvm.metrics.segmentation import MODES
from gdkvm.utils.atomic import atomic_dir

#: Which checkpoint of a run: best (validation Dice), last, or auto (best, else last).
CheckpointChoice = Literal["auto", "best", "last"]
CHECKPOINT_CHOICES: tuple[str, ...] = get_args(CheckpointChoice)

FRAME_COLUMNS: tuple[str, ...] = (
    "case_id", "patient", "view", "video", "frame", "source_frame", "phase",
    "dice", "iou", "hd", "hd95", "asd", "unit", "status", "pred_area_px", "ref_area_px",
)
SUMMARY_METRICS: tuple[str, ...] = ("dice", "iou", "hd95", "asd")
VIDEO_COLUMNS: tuple[str, ...] = (
    "case_id", "patient", "view", "video", "n_frames",
    *SUMMARY_METRICS,
    *(f"{m}_{p}" for p in ("ed", "es") for m in SUMMARY_METRICS),
    "unit",
)
EF_COLUMNS: tuple[str, ...] = (
    "method", "unit_id", "patient", "view", "ef_pred", "ef_ref", "ef_manifest",
    "edv_pred", "esv_pred", "edv_ref", "esv_ref", "volume_unit",
)
PHASES: tuple[str, ...] = ("overall", "ED", "ES")


@dataclass
class EvalResult:
    """Tables and summary of one evaluation (also written to ``out_dir``)."""

    out_dir: Path
    split: str
    mode: str
    per_frame: pd.DataFrame
    per_video: pd.DataFrame
    ef: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------ run loading


def eval_dir(run_dir: str | Path, split: str, mode: str = "clean") -> Path:
    """Where the evaluation of ``split`` in ``mode`` goes."""
    return RunPaths(Path(run_dir)).eval_dir(run_files.eval_folder_name(split, mode))


def resolve_checkpoint(run_dir: Path, which: str = "auto") -> Path:
    """``best`` / ``last`` checkpoint of a run; ``auto`` prefers best. Missing -> one-line GdkvmError."""
    if which not in CHECKPOINT_CHOICES:
        raise unknown_name("checkpoint", which, CHECKPOINT_CHOICES)
    paths = RunPaths(run_dir)
    candidates = {"best": [paths.best], "last": [paths.last], "auto": [paths.best, paths.last]}[which]
    for path in candidates:
        if path.is_file():
            return path
    names = " or ".join(p.name for p in candidates)
    raise GdkvmError(f"{run_dir}: no {names} (training has not written a checkpoint yet?)")


def load_run(run_dir: str | Path, which: str = "auto",
             device: torch.device | None = None) -> tuple[TrainConfig, nn.Module, Path]:
    """The run's config, its model loaded from a checkpoint (checked against the run's variant), and
    the checkpoint path. A missing or half-written run folder is a one-line GdkvmError."""
    from gdkvm.models.weights import load_model

    run_dir = Path(run_dir)
    paths = RunPaths(run_dir)
    if not run_dir.is_dir():
        raise GdkvmError(f"{run_dir}: run folder not found")
    if not paths.config.is_file():
        raise GdkvmError(f"{paths.config}: missing, so {run_dir} is not a (complete) training run folder")
    cfg = load_train_config(paths.config)
    ckpt = resolve_checkpoint(run_dir, which)
    model = load_model(ckpt, map_location=device or "cpu", variant=cfg.variant)
    return cfg, model, ckpt


# ------------------------------------------------------------------------------ frame selection


def scored_frames(labeled: np.ndarray, mode: str) -> np.ndarray:
    """Indices of the frames scored in ``mode`` for one clip's ``labeled`` (T,) flags."""
    idx = np.flatnonzero(np.asarray(labeled, dtype=bool))
    if mode == "gdkvm-legacy":
        t = len(labeled)
        idx = np.array([i for i in (0, t - 1) if labeled[i]], dtype=np.int64)
    return idx


def frame_phases(labeled: np.ndarray, phase_first: str = "ED") -> dict[int, str]:
    """Phase names of the first and last labelled frame (``phase_first`` and the other one)."""
    idx = np.flatnonzero(np.asarray(labeled, dtype=bool))
    if idx.size == 0:
        return {}
    first = "ES" if str(phase_first).upper() == "ES" else "ED"
    other = "ES" if first == "ED" else "ED"
    out = {int(idx[0]): first}
    if idx.size > 1:
        out[int(idx[-1])] = other
    return out


def phase_frame(labeled: np.ndarray, phase_first: str, phase: str) -> int | None:
    """Clip position of the ED (or ES) frame, or None when the clip has no such labelled frame."""
    for t, name in frame_phases(labeled, phase_first).items():
        if name == phase:
            return t
    return None


def clip_spacing(row: pd.Series) -> tuple[float, float] | None:
    """(sy, sx) in mm from a manifest row, or None (pixel units) when unknown."""
    if str(row.get("spacing_unit", "")) != "mm":
        return None
    sy, sx = float(row.get("spacing_row_mm", math.nan)), float(row.get("spacing_col_mm", math.nan))
    if not (math.isfinite(sy) and math.isfinite(sx) and sy > 0 and sx > 0):
        return None
    return sy, sx


def _source_frames(row: pd.Series, t: int) -> list[int | None]:
    text = str(row.get("frame_indices", "") or "")
    parts = text.split()
    if len(parts) != t:
        return [None] * t
    return [int(p) for p in parts]


# ------------------------------------------------------------------------------ tables


def frame_table(pred: np.ndarray, masks: np.ndarray, labeled: np.ndarray, manifest: pd.DataFrame,
                mode: str) -> pd.DataFrame:
    """Per-frame metrics of binary predictions.

    Args:
        pred: (N, T, H, W) bool predicted LV masks.
        masks: (N, T, H, W) reference label maps (LV = 1).
        labeled: (N, T) bool.
        manifest: the split's manifest (one row per clip).
        mode: ``clean``, ``memsam`` or ``gdkvm-legacy``.
    Returns:
        DataFrame with FRAME_COLUMNS.
    """
    from gdkvm.metrics.segmentation import segmentation_metrics

    rows = []
    for n in range(pred.shape[0]):
        meta = manifest.iloc[n]
        spacing = clip_spacing(meta)
        phases = frame_phases(labeled[n], str(meta.get("phase_first", "ED")))
        sources = _source_frames(meta, pred.shape[1])
        for t in scored_frames(labeled[n], mode):
            ref = np.asarray(masks[n, t]) == LV_LABEL
            m = segmentation_metrics(pred[n, t], ref, spacing, mode)
            rows.append({
                "case_id": str(meta["case_id"]), "patient": str(meta["patient"]), "view": str(meta["view"]),
                "video": n, "frame": int(t), "source_frame": sources[t], "phase": phases.get(int(t), "mid"),
                "dice": m["dice"], "iou": m["iou"], "hd": m["hd"], "hd95": m["hd95"], "asd": m["asd"],
                "unit": m["unit"], "status": m["status"],
                "pred_area_px": int(pred[n, t].sum()), "ref_area_px": int(ref.sum()),
            })
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))


def _mean(values: pd.Series | np.ndarray, mode: str) -> float:
    from gdkvm.metrics.segmentation import aggregate_legacy

    arr = np.asarray(values, dtype=np.float64)
    if mode == "gdkvm-legacy":
        return aggregate_legacy(arr)
    kept = arr[np.isfinite(arr)]
    return float(kept.mean()) if kept.size else math.nan


def video_table(frames: pd.DataFrame, mode: str = "clean") -> pd.DataFrame:
    """Per-clip means of the per-frame table (overall and at ED / ES). Columns VIDEO_COLUMNS."""
    rows = []
    for video, group in frames.groupby("video", sort=True):
        first = group.iloc[0]
        row: dict[str, Any] = {"case_id": first["case_id"], "patient": first["patient"], "view": first["view"],
                               "video": int(video), "n_frames": len(group), "unit": first["unit"]}
        for m in SUMMARY_METRICS:
            row[m] = _mean(group[m], mode)
            for phase in ("ED", "ES"):
                sel = group[group["phase"] == phase]
                row[f"{m}_{phase.lower()}"] = _mean(sel[m], mode) if len(sel) else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=list(VIDEO_COLUMNS))


def summarize_segmentation(frames: pd.DataFrame, mode: str, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per phase (overall / ED / ES) and metric: mean and std over frames and a bootstrap 95% CI.

    The mean is over every scored frame (the papers' averaging). The CI is a percentile bootstrap
    that resamples patients (their frames stay together), from :func:`gdkvm.metrics.bootstrap_ci`.
    """
    from gdkvm.metrics.bootstrap import bootstrap_ci

    out: dict[str, Any] = {}
    for phase in PHASES:
        sel = frames if phase == "overall" else frames[frames["phase"] == phase]
        block: dict[str, Any] = {"n_frames": len(sel)}
        for m in SUMMARY_METRICS:
            values = sel[m].to_numpy(dtype=np.float64)
            finite = values[np.isfinite(values)]
            entry = {"mean": _mean(values, mode), "std": float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
                     "n": int(finite.size), "ci_low": math.nan, "ci_high": math.nan}
            if finite.size:
                _, low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed, groups=sel["patient"].tolist())
                entry["ci_low"], entry["ci_high"] = low, high
            block[m] = entry
        out[phase] = block
    return out


# ------------------------------------------------------------------------------ ejection fraction


def _ef_row(method: str, unit_id: str, patient: str, view: str, pred: Any, ref: Any, manifest_ef: float,
            volume_unit: str) -> dict[str, Any]:
    return {"method": method, "unit_id": unit_id, "patient": patient, "view": view,
            "ef_pred": pred.ef, "ef_ref": ref.ef, "ef_manifest": manifest_ef,
            "edv_pred": pred.edv, "esv_pred": pred.esv, "edv_ref": ref.edv, "esv_ref": ref.esv,
            "volume_unit": volume_unit}


@dataclass(frozen=True)
class _Vol:
    edv: float
    esv: float
    ef: float


def _area_length(ed: np.ndarray, es: np.ndarray) -> _Vol:
    from gdkvm.metrics.clinical import legacy_ef_fraction, safe_area_length_volume

    return _Vol(safe_area_length_volume(ed), safe_area_length_volume(es), 100.0 * legacy_ef_fraction(ed, es))


def _ed_es(pred: np.ndarray, masks: np.ndarray, labeled: np.ndarray, row: pd.Series, n: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    phase_first = str(row.get("phase_first", "ED"))
    ed = phase_frame(labeled[n], phase_first, "ED")
    es = phase_frame(labeled[n], phase_first, "ES")
    if ed is None or es is None:
        return None
    ref = np.asarray(masks[n]) == LV_LABEL
    return pred[n, ed], pred[n, es], ref[ed], ref[es]


def ef_table(pred: np.ndarray, masks: np.ndarray, labeled: np.ndarray, manifest: pd.DataFrame,
             dataset: str) -> pd.DataFrame:
    """Ejection fractions from predicted and reference ED/ES masks.

    - CAMUS (``dataset == 'camus'``): biplane Simpson per patient having both 2CH and 4CH clips, in
      mL with the manifest spacing (one step size over the four masks, as the official script).
    - Otherwise (EchoNet): single-plane Simpson per clip, pixel units.
    - Both: the legacy GDKVM single-view area-length EF per clip (percent), pixel units.
    - Both, "clean" variants (``*-clean``): the same disk methods measured on masks upsampled to a
      448-px grid with the per-instant step (see ``clean_biplane_ef``); at 128-256 px the official
      routine's fixed 8-px walk start inflates small end-systolic cavities.
    ``ef_manifest`` is the dataset's own EF (CAMUS cfg / EchoNet FileList). Unmeasurable masks give NaN.
    Returns a DataFrame with EF_COLUMNS.
    """
    from gdkvm.metrics.clinical import (
        clean_biplane_ef,
        clean_single_plane_ef,
        safe_biplane_ef,
        safe_single_plane_ef,
    )

    rows: list[dict[str, Any]] = []
    phases = {n: _ed_es(pred, masks, labeled, manifest.iloc[n], n) for n in range(pred.shape[0])}
    if dataset == "camus":
        by_patient: dict[str, dict[str, int]] = {}
        for n in range(pred.shape[0]):
            row = manifest.iloc[n]
            by_patient.setdefault(str(row["patient"]), {})[str(row["view"])] = n
        for patient, views in by_patient.items():
            if "2CH" not in views or "4CH" not in views:
                continue
            n2, n4 = views["2CH"], views["4CH"]
            if phases[n2] is None or phases[n4] is None:
                continue
            p2ed, p2es, r2ed, r2es = phases[n2]
            p4ed, p4es, r4ed, r4es = phases[n4]
            s2, s4 = clip_spacing(manifest.iloc[n2]), clip_spacing(manifest.iloc[n4])
            if (s2 is None) != (s4 is None):
                s2 = s4 = None
            pred_ef = safe_biplane_ef(p2ed, p2es, p4ed, p4es, s2, s4)
            ref_ef = safe_biplane_ef(r2ed, r2es, r4ed, r4es, s2, s4)
            manifest_ef = float(manifest.iloc[n4].get("ef", math.nan))
            unit = "mL" if s2 is not None else "px^3"
            rows.append(_ef_row("biplane-simpson", patient, patient, "2CH+4CH", pred_ef, ref_ef, manifest_ef, unit))
            rows.append(_ef_row("biplane-simpson-clean", patient, patient, "2CH+4CH",
                                clean_biplane_ef(p2ed, p2es, p4ed, p4es, s2, s4),
                                clean_biplane_ef(r2ed, r2es, r4ed, r4es, s2, s4), manifest_ef, unit))
    for n in range(pred.shape[0]):
        if phases[n] is None:
            continue
        row = manifest.iloc[n]
        p_ed, p_es, r_ed, r_es = phases[n]
        case, patient, view = str(row["case_id"]), str(row["patient"]), str(row["view"])
        manifest_ef = float(row.get("ef", math.nan))
        if dataset != "camus":
            rows.append(_ef_row("single-plane-simpson", case, patient, view, safe_single_plane_ef(p_ed, p_es),
                                safe_single_plane_ef(r_ed, r_es), manifest_ef, "px^3"))
            rows.append(_ef_row("single-plane-simpson-clean", case, patient, view, clean_single_plane_ef(p_ed, p_es),
                                clean_single_plane_ef(r_ed, r_es), manifest_ef, "px^3"))
        rows.append(_ef_row("area-length", case, patient, view, _area_length(p_ed, p_es),
                            _area_length(r_ed, r_es), manifest_ef, "px^3"))
    return pd.DataFrame(rows, columns=list(EF_COLUMNS))


def summarize_ef(ef: pd.DataFrame) -> dict[str, Any]:
    """EF agreement per method: prediction vs reference masks, vs the manifest EF, and the reference
    masks vs the manifest (how well the volume routine reproduces the dataset's own EF)."""
    from gdkvm.metrics.clinical import ef_agreement

    out: dict[str, Any] = {}
    for method, group in ef.groupby("method", sort=True):
        out[str(method)] = {
            "n_units": len(group),
            "pred_vs_ref_masks": ef_agreement(group["ef_pred"], group["ef_ref"]),
            "pred_vs_manifest": ef_agreement(group["ef_pred"], group["ef_manifest"]),
            "ref_masks_vs_manifest": ef_agreement(group["ef_ref"], group["ef_manifest"]),
        }
    return out


# ------------------------------------------------------------------------------ driver


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python numbers, so summary.json is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def find_eval_store(run_dir: str | Path, data: str | Path | None = None) -> FoundStore:
    """The prepared store to evaluate a run on: ``data`` itself when it is a prepared store (an explicit
    choice, e.g. another dataset); otherwise the run's recorded store, found by
    :func:`gdkvm.data.locate.locate_store` (recorded path, relative to the run folder and its parents,
    then by ``data_id`` under ``data``). Raises a one-line GdkvmError naming the paths tried."""
    from gdkvm.config import load_yaml
    from gdkvm.data.locate import STORE_FILE, locate_store

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise GdkvmError(f"{run_dir}: run folder not found")
    if data is not None and (Path(data) / STORE_FILE).is_file():
        path = Path(data).resolve()
        meta = json.loads((path / STORE_FILE).read_text(encoding="utf-8"))
        return FoundStore(path, "given by --data", meta if isinstance(meta, dict) else {"files": {}})
    paths = RunPaths(run_dir)
    if not paths.config.is_file():
        raise GdkvmError(f"{paths.config}: missing, so {run_dir} is not a (complete) training run folder")
    raw = load_yaml(paths.config)
    return locate_store(run_dir, raw if isinstance(raw, dict) else {}, search=data)


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    *,
    data: str | Path | FoundStore | None = None,
    mode: str = "clean",
    checkpoint: str = "auto",
    device: str = "auto",
    amp: bool = True,
    batch: int = 8,
    n_boot: int = 1000,
    seed: int = 0,
    verify: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Stream ``split`` of the run's prepared dataset (or ``data``) through the model and score it.

    Args:
        run_dir: a training run folder (``config.yaml`` + a checkpoint).
        split: ``train``, ``val`` or ``test``.
        data: a prepared dataset folder to use instead of the run's own store, or a folder to search
            below for the run's store by its ``data_id`` (:func:`find_eval_store`), or a
            :class:`~gdkvm.data.locate.FoundStore` already located.
        mode: metric protocol, ``clean`` (default), ``memsam`` or ``gdkvm-legacy``.
        checkpoint: ``auto`` (best, else last), ``best`` or ``last``.
        verify: check the store's SHA-256 manifest first.
    Returns:
        :class:`EvalResult`; the files listed in the module docstring are written atomically.
    """
    from gdkvm.data.store import open_store, verify_store
    from gdkvm.metrics.segmentation import THRESHOLDS

    if mode not in MODES:
        raise unknown_name("metric mode", mode, MODES)
    if batch < 1 or n_boot < 1:
        raise ConfigError("evaluate: batch and n_boot must be >= 1")
    run_dir = Path(run_dir)
    torch_device = resolve_device(device)
    cfg, model, ckpt = load_run(run_dir, checkpoint, torch_device)
    found = data if isinstance(data, FoundStore) else find_eval_store(run_dir, data)
    data_dir = found.path
    if verify:
        verify_store(data_dir)
    store = open_store(data_dir, split)
    if len(store) == 0:
        raise DataError(store.path, "split holds no clips")
    pred = predict_clips(model, store.images, torch_device, amp=amp, batch=batch, threshold=THRESHOLDS[mode],
                         progress=progress)
    masks, labeled, manifest = store.masks, np.asarray(store.labeled), store.manifest
    frames = frame_table(pred, masks, labeled, manifest, mode)
    videos = video_table(frames, mode)
    ef = ef_table(pred, masks, labeled, manifest, store.dataset)
    summary = {
        "run": run_dir.name,
        "variant": cfg.variant,
        "preset": cfg.preset,
        "dataset": store.dataset,
        "split": split,
        "mode": mode,
        "checkpoint": ckpt.name,
        "n_videos": len(store),
        "store": str(data_dir),
        "store_found": found.how,
        "unit": str(frames["unit"].iloc[0]) if len(frames) else None,
        "n_boot": n_boot,
        "segmentation": summarize_segmentation(frames, mode, n_boot, seed),
        "ef": summarize_ef(ef),
    }
    out_dir = eval_dir(run_dir, split, mode)
    with atomic_dir(out_dir) as tmp:
        frames.to_csv(tmp / run_files.PER_FRAME_FILE, index=False, lineterminator="\n")
        videos.to_csv(tmp / run_files.PER_VIDEO_FILE, index=False, lineterminator="\n")
        ef.to_csv(tmp / run_files.EF_FILE, index=False, lineterminator="\n")
        np.save(tmp / run_files.PREDICTIONS_FILE, pred.astype(np.uint8))
        (tmp / run_files.SUMMARY_FILE).write_text(json.dumps(_json_safe(summary), indent=2) + "\n", encoding="utf-8")
    return EvalResult(out_dir, split, mode, frames, videos, ef, summary)


def read_summary(run_dir: str | Path, split: str = "test", mode: str = "clean") -> dict[str, Any] | None:
    """The ``summary.json`` of a finished evaluation, or None when there is none."""
    path = eval_dir(run_dir, split, mode) / run_files.SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
