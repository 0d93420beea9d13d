"""Writers for the real on-disk formats: CAMUS NIfTI + Info cfg, EchoNet-Dynamic AVI + CSV.

All writers are byte-deterministic: NIfTI files are gzip-compressed with mtime 0 and no file name, the
AVI goes through OpenCV's built-in MJPEG writer (no timestamps), CSV floats use a fixed format.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np

from gdkvm.errors import DataError

FILELIST_COLUMNS = ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split")
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
_JPEG_QUALITY = 90


def nifti_bytes(data: np.ndarray, zooms: Sequence[float]) -> bytes:
    """Gzipped NIfTI-1 bytes of ``data`` (nibabel axis order, e.g. (X, Y) or (X, Y, T)) with voxel sizes
    ``zooms`` (mm, one per axis)."""
    if data.ndim != len(zooms):
        raise ValueError(f"data has {data.ndim} axes but {len(zooms)} zooms were given")
    affine = np.eye(4)
    for axis, zoom in enumerate(zooms[:3]):
        affine[axis, axis] = float(zoom)
    image = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    image.header.set_zooms(tuple(float(z) for z in zooms))
    image.header.set_xyzt_units("mm", "sec")
    raw = image.to_bytes()
    return gzip.compress(raw, compresslevel=4, mtime=0)


def write_nifti(path: Path, data: np.ndarray, zooms: Sequence[float]) -> None:
    """Write ``data`` as ``path`` (.nii.gz), deterministically."""
    path.write_bytes(nifti_bytes(data, zooms))


def camus_cfg_text(ed: int, es: int, nb_frame: int, sex: str, age: int, quality: str, ef: float,
                   frame_rate: float) -> str:
    """Info_{2CH,4CH}.cfg content of the CAMUS NIfTI release (one ``Key: value`` per line)."""
    lines = [
        f"ED: {ed}",
        f"ES: {es}",
        f"NbFrame: {nb_frame}",
        f"Sex: {sex}",
        f"Age: {age}",
        f"ImageQuality: {quality}",
        f"EF: {round(ef)}",
        f"FrameRate: {round(frame_rate)}",
    ]
    return "\n".join(lines) + "\n"


def write_avi(path: Path, frames: np.ndarray, fps: float) -> None:
    """Write gray frames (T, H, W) uint8 as an MJPG AVI with 3 equal channels."""
    if frames.ndim != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W) uint8 frames, got {frames.shape} {frames.dtype}")
    height, width = frames.shape[1:]
    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), float(fps),
                             (width, height), True)
    if not writer.isOpened():
        raise DataError(path, "OpenCV could not open an MJPG AVI writer")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, _JPEG_QUALITY)
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    finally:
        writer.release()


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """CSV text with a header; floats with 6 significant digits (no quoting needed for these files)."""
    lines = [",".join(columns)]
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"row has {len(row)} values, expected {len(columns)}")
        lines.append(",".join(_fmt(v) for v in row))
    return "\n".join(lines) + "\n"
