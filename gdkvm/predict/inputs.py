"""Read whole recordings for `gdkvm predict`: EchoNet-style AVI/MP4 and CAMUS-style NIfTI sequences."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gdkvm.errors import DataError

VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv")
NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass
class Recording:
    """One echo recording: gray frames (T, H, W) uint8, frame rate, pixel spacing (row, col) in mm or None."""

    path: Path
    frames: np.ndarray
    fps: float
    spacing: tuple[float, float] | None
    kind: str  # "video" | "nifti"
    # 0-based (ED, ES) frames labelled by the acquisition (CAMUS Info_<view>.cfg), when known.
    labelled_phases: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return recording_name(self.path)


def recording_name(path: Path) -> str:
    """The file name without its video/NIfTI suffix (the stem of every output file)."""
    n = Path(path).name
    for sfx in VIDEO_SUFFIXES + NIFTI_SUFFIXES:
        if n.lower().endswith(sfx):
            return n[: -len(sfx)]
    return Path(path).stem


def is_supported(path: Path) -> bool:
    """True for a file whose name ends with a supported video or NIfTI suffix (ground-truth files excluded)."""
    n = path.name.lower()
    if any(n.endswith(s) for s in NIFTI_SUFFIXES):
        return not n.split(".nii")[0].endswith("_gt")
    return any(n.endswith(s) for s in VIDEO_SUFFIXES)


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Expand folders into their supported files (sorted); missing paths raise DataError."""
    files: list[Path] = []
    for p in inputs:
        p = Path(p)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and is_supported(q))
            if not found:
                raise DataError(p, "folder holds no AVI/MP4 video or NIfTI sequence")
            files.extend(found)
        elif p.is_file():
            if not is_supported(p):
                raise DataError(p, f"unsupported file type (expected one of {VIDEO_SUFFIXES + NIFTI_SUFFIXES})")
            files.append(p)
        else:
            raise DataError(p, "no such file or folder")
    return files


def expand_with_subdirs(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """Like :func:`expand_inputs`, with each file's output sub-folder: its folder relative to the input
    folder it came from (``Path(".")`` for files given directly), so ``in/X.avi`` and ``in/sub/X.avi``
    write to different places."""
    pairs: list[tuple[Path, Path]] = []
    for p in inputs:
        p = Path(p)
        for f in expand_inputs([p]):
            pairs.append((f, f.parent.relative_to(p) if p.is_dir() else Path(".")))
    return pairs


def read_video(path: Path, default_fps: float = 50.0) -> Recording:
    """Decode an AVI/MP4 (the EchoNet reader's decoder) into gray frames (T, H, W) uint8, with its frame rate."""
    import cv2

    from gdkvm.data.echonet import load_video

    if path.suffix.lower() == ".avi":
        with open(path, "rb") as f:
            head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"AVI ":
            raise DataError(path, "not an AVI file (no RIFF/AVI header)")
    frames = load_video(path)
    cap = cv2.VideoCapture(str(path))
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    if declared > len(frames):
        raise DataError(path, f"truncated video: decoded {len(frames)} of the {declared} frames its header declares")
    rec = Recording(path, frames, fps if fps > 0 else default_fps, None, "video")
    check_frames(rec)
    return rec


#: Smallest frame side a recording may have (the model downsamples by 16).
MIN_FRAME_SIDE = 16


def check_frames(rec: Recording) -> None:
    """A one-line DataError for frames too small to segment."""
    h, w = rec.frames.shape[1:]
    if min(h, w) < MIN_FRAME_SIDE:
        raise DataError(rec.path, f"frames are {h}x{w} px; at least {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE} is needed")


def read_nifti_sequence(path: Path, default_fps: float = 50.0) -> Recording:
    """Read a CAMUS-style NIfTI sequence: data (X=cols, Y=rows, T) -> frames (T, H, W) uint8."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
        zooms = img.header.get_zooms()
    except Exception as e:  # nibabel raises several types for truncated/corrupt files
        raise DataError(path, f"unreadable NIfTI ({type(e).__name__}: {e})") from None
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3 or data.shape[2] == 0:
        raise DataError(path, f"expected a (X, Y, T) sequence, got shape {data.shape}")
    frames = np.transpose(data, (2, 1, 0))
    if np.issubdtype(frames.dtype, np.floating):
        bad = int((~np.isfinite(frames)).sum())
        if bad:
            raise DataError(path, f"{bad} of {frames.size} voxels are NaN or infinite")
    if frames.dtype != np.uint8:
        lo, hi = float(frames.min()), float(frames.max())
        frames = np.zeros(frames.shape, np.uint8) if hi <= lo else ((frames - lo) / (hi - lo) * 255).round()
        frames = frames.astype(np.uint8)
    spacing = (float(zooms[1]), float(zooms[0])) if len(zooms) >= 2 else None
    info = _camus_info(path)
    fps = (info.frame_rate if info is not None else None) or default_fps
    phases = None
    if info is not None and info.nb_frame == len(frames) and all(1 <= f <= len(frames) for f in (info.ed, info.es)):
        phases = (info.ed - 1, info.es - 1)
    rec = Recording(path, frames, fps, spacing, "nifti", labelled_phases=phases)
    check_frames(rec)
    return rec


def _camus_info(path: Path):
    """The parsed Info_<view>.cfg next to a CAMUS sequence (``CamusInfo``), or None where there is none
    or it does not parse (predict then falls back to defaults, as for any NIfTI)."""
    from gdkvm.data.cfg import parse_cfg

    for view in ("2CH", "4CH"):
        cfg = path.parent / f"Info_{view}.cfg"
        if f"_{view}_" in path.name and cfg.is_file():
            try:
                return parse_cfg(cfg)
            except DataError:
                return None
    return None


def read_recording(path: Path, default_fps: float = 50.0) -> Recording:
    """Read a video or NIfTI sequence by suffix."""
    n = path.name.lower()
    if any(n.endswith(s) for s in NIFTI_SUFFIXES):
        return read_nifti_sequence(path, default_fps)
    return read_video(path, default_fps)
