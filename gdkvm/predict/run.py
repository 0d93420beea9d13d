"""`gdkvm predict` as a library function: segment whole recordings, find ED/ES per beat, estimate EF."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd

from gdkvm.errors import GdkvmError
from gdkvm.predict.analysis import analyse_masks
from gdkvm.predict.inputs import Recording, expand_with_subdirs, read_recording, recording_name
from gdkvm.predict.outputs import (
    overlay_frames,
    summary_dict,
    write_curve_plot,
    write_masks,
    write_overlay_png,
    write_overlay_video,
    write_summary,
)
from gdkvm.predict.phases import PhaseResult
from gdkvm.predict.quality import assess
from gdkvm.predict.reference import reference_ef
from gdkvm.predict.segmenter import Segmenter
from gdkvm.utils.atomic import atomic_path

SUMMARY_COLUMNS = ["input", "status", "quality", "frames", "fps", "n_beats", "mean_ef", "reference_ef",
                   "ef_unavailable_reason", "notes"]


@runtime_checkable
class ReportsConfidence(Protocol):
    """A segmenter that reports the mean LV probability of its last recording (``ModelSegmenter`` does)."""

    last_confidence: float | None


def last_confidence(segmenter: Segmenter) -> float | None:
    """The segmenter's confidence in its last recording, None for one that does not report it."""
    return segmenter.last_confidence if isinstance(segmenter, ReportsConfidence) else None


@dataclass
class PredictOutcome:
    """What happened to one input."""

    input: Path
    ok: bool
    summary: dict = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    error: str = ""


def predict_one(path: Path, segmenter: Segmenter, out_dir: Path, *, size: int | None = None,
                default_fps: float = 50.0, overlay_video: bool = True,
                progress: Callable[[int, int], None] | None = None) -> PredictOutcome:
    """Segment one recording and write its outputs under ``out_dir``; errors become a failed outcome."""
    try:
        rec = read_recording(path, default_fps)
        notes = []
        h, w = rec.frames.shape[1:]
        if size is not None and (h, w) != (size, size):
            notes.append(f"frames resized from {h}x{w} to the training size {size}x{size} and masks mapped back")
        masks = segmenter(rec.frames, progress)
        analysis = analyse_masks(masks, rec.fps, rec.spacing, rec.labelled_phases)
        quality = _apply_quality(rec, masks, analysis, last_confidence(segmenter))
        summary = summary_dict(rec, analysis, notes + analysis.phases.notes)
        summary["quality"] = quality.as_dict()
        ref = reference_ef(path)
        summary["reference_ef"] = ref[0] if ref else None
        summary["reference_source"] = str(ref[1]) if ref else None
        out_dir.mkdir(parents=True, exist_ok=True)
        overlay = overlay_frames(rec, masks, analysis)
        files = [write_masks(rec, masks, out_dir), write_curve_plot(rec, analysis, out_dir),
                 write_overlay_png(rec, overlay, analysis, out_dir)]
        if overlay_video:
            files.append(write_overlay_video(rec, overlay, out_dir))
        files.append(write_summary(summary, out_dir, rec.name))
        return PredictOutcome(path, True, summary, files)
    except GdkvmError as e:
        return PredictOutcome(path, False, error=str(e))
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # e.g. a reader/writer library error or a full disk: this file fails, the batch goes on
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return PredictOutcome(path, False, error=f"{path}: {type(e).__name__}: {first}".rstrip(": "))


def _apply_quality(rec: Recording, masks, analysis, confidence: float | None):
    """Flag the recording and keep only the beats that pass in ``analysis.phases`` (so EF uses those)."""
    ph = analysis.phases
    quality = assess(rec.frames, masks, rec.fps, ph.beats, ph.ed_frames, confidence)
    dropped = len(ph.beats) - len(quality.beats)
    if dropped:
        reason = ph.reason or ("" if quality.beats else "no beat passes the quality checks")
        analysis.phases = PhaseResult(ph.ed_frames, ph.es_frames, quality.beats, ph.smoothed, reason=reason,
                                      notes=[*ph.notes, f"{dropped} beat(s) left out of EF by the quality checks"])
    return quality


def predict_many(inputs: list[Path], segmenter: Segmenter, out_dir: Path, *, size: int | None = None,
                 default_fps: float = 50.0, overlay_video: bool = True,
                 on_start: Callable[[Path, int, int], Callable[[int, int], None] | None] | None = None,
                 ) -> list[PredictOutcome]:
    """Run :func:`predict_one` over every input (folders expanded); one bad input does not stop the others.

    Writes ``summary.csv`` (one row per input, failures included) in ``out_dir``.
    """
    files = expand_with_subdirs(inputs)
    outcomes = []
    used: set[tuple[Path, str]] = set()
    for i, (path, sub) in enumerate(files):
        progress = on_start(path, i, len(files)) if on_start else None
        target, name, k = out_dir / sub, recording_name(path), 1
        while (target, name) in used:  # the same file name given twice from different folders
            k += 1
            target = out_dir / sub / f"{path.parent.name or 'input'}-{k}"
        used.add((target, name))
        outcomes.append(predict_one(path, segmenter, target, size=size, default_fps=default_fps,
                                    overlay_video=overlay_video, progress=progress))
    rows = []
    for o in outcomes:
        s = o.summary
        rows.append({
            "input": str(o.input), "status": "ok" if o.ok else f"failed: {o.error}",
            "quality": _quality_text(s.get("quality")) if o.ok else "",
            "frames": s.get("frames"), "fps": s.get("fps"), "n_beats": s.get("n_beats"),
            "mean_ef": s.get("mean_ef"), "reference_ef": s.get("reference_ef"), "ef_unavailable_reason": s.get("ef_unavailable_reason"),
            "notes": "; ".join(s.get("notes", [])),
        })
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "summary.csv") as tmp:
        pd.DataFrame(rows, columns=SUMMARY_COLUMNS).to_csv(tmp, index=False)
    return outcomes


def _quality_text(quality: dict | None) -> str:
    """``"ok"`` or ``"flagged: a; b"`` for the summary table."""
    if not quality:
        return ""
    return "ok" if quality.get("ok") else "flagged: " + "; ".join(quality.get("flags", []))
