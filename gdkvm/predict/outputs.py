"""Files `gdkvm predict` writes per recording: masks, overlay video, curve plot, summary JSON/CSV."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from gdkvm.predict.analysis import RecordingAnalysis
from gdkvm.predict.inputs import Recording
from gdkvm.utils.atomic import atomic_path, atomic_write_text


def write_masks(rec: Recording, masks: np.ndarray, out_dir: Path) -> Path:
    """Masks aligned to the input frames: NIfTI (same header/affine, (X, Y, T)) for NIfTI input, else .npz."""
    if rec.kind == "nifti":
        import nibabel as nib

        src = nib.load(str(rec.path))
        data = np.transpose(masks, (2, 1, 0)).astype(np.uint8)
        zooms = tuple(float(z) for z in src.header.get_zooms())
        if len(src.shape) == 2:  # a single-frame image (CAMUS ED/ES): keep it 2-D like the input
            data, zooms = data[:, :, 0], zooms[:2]
        else:
            zooms = (zooms + (1.0, 1.0, 1.0))[:3]
        img = nib.Nifti1Image(data, src.affine)
        img.header.set_zooms(zooms)
        target = out_dir / f"{rec.name}_lv_mask.nii.gz"
        with atomic_path(target, suffix=".nii.gz") as tmp:
            nib.save(img, str(tmp))
        return target
    target = out_dir / f"{rec.name}_lv_mask.npz"
    with atomic_path(target, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, masks=masks.astype(np.uint8), fps=np.float64(rec.fps))
    return target


def overlay_frames(rec: Recording, masks: np.ndarray, analysis: RecordingAnalysis) -> np.ndarray:
    """(T, H, W, 3) BGR frames: echo in gray, LV contour in red; ED frames labelled green, ES yellow."""
    ed = set(analysis.phases.ed_frames)
    es = set(analysis.phases.es_frames)
    out = np.empty((*rec.frames.shape, 3), np.uint8)
    scale = max(rec.frames.shape[1], rec.frames.shape[2]) / 256
    for i, (frame, mask) in enumerate(zip(rec.frames, masks, strict=True)):
        bgr = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(bgr, contours, -1, (0, 0, 255), max(1, int(round(scale))))
        label, color = ("ED", (0, 255, 0)) if i in ed else (("ES", (0, 255, 255)) if i in es else ("", None))
        if label:
            cv2.putText(bgr, label, (3, max(12, int(14 * scale))), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * max(scale, 1.0), color, 1, cv2.LINE_AA)
        out[i] = bgr
    return out


def write_overlay_video(rec: Recording, frames: np.ndarray, out_dir: Path) -> Path:
    """An MJPG AVI of the overlay frames (T, H, W, 3) from :func:`overlay_frames`."""
    target = out_dir / f"{rec.name}_overlay.avi"
    with atomic_path(target, suffix=".avi") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), float(rec.fps),
                                 (frames.shape[2], frames.shape[1]))
        try:
            for f in frames:
                writer.write(f)
        finally:
            writer.release()
    return target


def write_overlay_png(rec: Recording, frames: np.ndarray, analysis: RecordingAnalysis, out_dir: Path) -> Path:
    """A still of the first detected ED and ES overlay frames side by side (or the first frame)."""
    beats = analysis.phases.beats
    picks = [beats[0].ed, beats[0].es] if beats else [0]
    strip = np.concatenate([frames[i] for i in picks], axis=1)
    if strip.shape[0] < 336:  # small (e.g. 112 px EchoNet) frames: enlarge for viewing
        f = int(np.ceil(336 / strip.shape[0]))
        strip = cv2.resize(strip, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)
    target = out_dir / f"{rec.name}_overlay.png"
    ok, buf = cv2.imencode(".png", strip)
    with atomic_path(target, suffix=".png") as tmp:
        tmp.write_bytes(buf.tobytes())
    return target


def write_curve_plot(rec: Recording, analysis: RecordingAnalysis, out_dir: Path) -> Path:
    """LV area (and volume) over time with detected ED (triangles up) and ES (triangles down)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(len(analysis.areas)) / rec.fps
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=110)
    ax.plot(t, analysis.areas, color="0.6", lw=1, label=f"LV area ({analysis.area_unit})")
    ax.plot(t, analysis.phases.smoothed, color="C0", lw=1.8, label="smoothed")
    ph = analysis.phases
    ax.plot(t[ph.ed_frames], analysis.phases.smoothed[ph.ed_frames], "^", color="C2", ms=8, label="ED")
    ax.plot(t[ph.es_frames], analysis.phases.smoothed[ph.es_frames], "v", color="C3", ms=8, label="ES")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"area ({analysis.area_unit})")
    efs = ", ".join(f"{b.ef:.0f}" for b in ph.beats)
    title = f"{rec.name}: EF per beat [{efs}] %, mean {ph.mean_ef:.1f} %" if ph.beats else \
        f"{rec.name}: EF unavailable ({analysis.ef_reason})"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right", ncol=4)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    target = out_dir / f"{rec.name}_curve.png"
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return target


def summary_dict(rec: Recording, analysis: RecordingAnalysis, notes: list[str]) -> dict:
    """The per-recording summary written as JSON (and one CSV row)."""
    ph = analysis.phases
    vols = analysis.volumes
    beats = [
        {"ed_frame": b.ed, "es_frame": b.es, "edv": float(vols[b.ed]), "esv": float(vols[b.es]), "ef": b.ef}
        for b in ph.beats
    ]
    return {
        "input": str(rec.path),
        "frames": int(rec.frames.shape[0]),
        "height": int(rec.frames.shape[1]),
        "width": int(rec.frames.shape[2]),
        "fps": float(rec.fps),
        "spacing_mm": list(rec.spacing) if rec.spacing else None,
        "volume_unit": analysis.volume_unit,
        "phase_source": analysis.phase_source,
        "ed_frames": [int(i) for i in ph.ed_frames],
        "es_frames": [int(i) for i in ph.es_frames],
        "beats": beats,
        "n_beats": len(beats),
        "mean_ef": float(ph.mean_ef) if beats else None,
        "ef_available": analysis.ef_available,
        "ef_unavailable_reason": analysis.ef_reason or None,
        "notes": notes,
        "quality": {"ok": True, "flags": []},
    }


def write_summary(summary: dict, out_dir: Path, name: str) -> Path:
    target = out_dir / f"{name}_summary.json"
    atomic_write_text(target, json.dumps(summary, indent=2))
    return target
