"""`gdkvm predict` as a library function: segment whole recordings, find ED/ES per beat, estimate EF."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gdkvm.errors import GdkvmError
from gdkvm.predict.analysis import analyse_masks
from gdkvm.predict.inputs import expand_inputs, read_recording
from gdkvm.predict.outputs import (
    overlay_frames,
    summary_dict,
    write_curve_plot,
    write_masks,
    write_overlay_png,
    write_overlay_video,
    write_summary,
)
from gdkvm.predict.segmenter import Segmenter
from gdkvm.utils.atomic import atomic_path

SUMMARY_COLUMNS = ["input", "status", "frames", "fps", "n_beats", "mean_ef", "ef_unavailable_reason", "notes"]


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
        summary = summary_dict(rec, analysis, notes + analysis.phases.notes)
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


def predict_many(inputs: list[Path], segmenter: Segmenter, out_dir: Path, *, size: int | None = None,
                 default_fps: float = 50.0, overlay_video: bool = True,
                 on_start: Callable[[Path, int, int], Callable[[int, int], None] | None] | None = None,
                 ) -> list[PredictOutcome]:
    """Run :func:`predict_one` over every input (folders expanded); one bad input does not stop the others.

    Writes ``summary.csv`` (one row per input, failures included) in ``out_dir``.
    """
    files = expand_inputs(inputs)
    outcomes = []
    for i, path in enumerate(files):
        progress = on_start(path, i, len(files)) if on_start else None
        outcomes.append(predict_one(path, segmenter, out_dir, size=size, default_fps=default_fps,
                                    overlay_video=overlay_video, progress=progress))
    rows = []
    for o in outcomes:
        s = o.summary
        rows.append({
            "input": str(o.input), "status": "ok" if o.ok else f"failed: {o.error}",
            "frames": s.get("frames"), "fps": s.get("fps"), "n_beats": s.get("n_beats"),
            "mean_ef": s.get("mean_ef"), "ef_unavailable_reason": s.get("ef_unavailable_reason"),
            "notes": "; ".join(s.get("notes", [])),
        })
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "summary.csv") as tmp:
        pd.DataFrame(rows, columns=SUMMARY_COLUMNS).to_csv(tmp, index=False)
    return outcomes
