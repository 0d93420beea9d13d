"""Tiny hand-built CAMUS and EchoNet-Dynamic folders in the real on-disk formats, for reader tests.

CAMUS: frame ``t`` of a case is filled with intensity ``20 + 9 t`` outside the LV and ``10`` inside, so a
frame's identity can be read back from its pixels. EchoNet: frame ``f`` has background ``(f * 7) % 200
+ 30``; tracings describe an ellipse-shaped LV (long axis vertical, 20 horizontal chords).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CAMUS_SPLIT_FILES = ("subgroup_training.txt", "subgroup_validation.txt", "subgroup_testing.txt")


def camus_frame_value(t: int) -> int:
    return 20 + 9 * t


def camus_labels(n_frames: int, height: int, width: int) -> np.ndarray:
    """(T, H, W) label map: LV (1) ellipse shrinking over time, myocardium ring (2), LA (3) below."""
    rows, cols = np.mgrid[0:height, 0:width]
    cy, cx = height * 0.4, width / 2
    labels = np.zeros((n_frames, height, width), dtype=np.uint8)
    for t in range(n_frames):
        k = 1.0 - 0.3 * t / max(n_frames - 1, 1)
        ry, rx = height * 0.25 * k, width * 0.2 * k
        r = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2
        labels[t][r <= 1.6] = 2
        labels[t][r <= 1.0] = 1
        la = ((rows - height * 0.8) / (height * 0.1)) ** 2 + ((cols - cx) / (width * 0.15)) ** 2
        labels[t][(la <= 1.0) & (labels[t] == 0)] = 3
    return labels


def write_nifti(path: Path, volume_thw: np.ndarray, spacing_xy: tuple[float, float]) -> None:
    """Write (T, H, W) as a NIfTI in the CAMUS layout: array (X=cols, Y=rows, T), zooms (sx, sy, 1)."""
    import nibabel as nib

    data = np.ascontiguousarray(volume_thw.transpose(2, 1, 0))
    image = nib.Nifti1Image(data, affine=np.diag([spacing_xy[0], spacing_xy[1], 1.0, 1.0]))
    image.header.set_zooms((spacing_xy[0], spacing_xy[1], 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))


@dataclass(frozen=True)
class CamusCaseSpec:
    n_frames: int = 5
    height: int = 24
    width: int = 20
    spacing_xy: tuple[float, float] = (0.3, 0.2)  # (sx = col mm, sy = row mm)
    reversed: bool = False  # stored ES -> ED (ED = NbFrame, ES = 1)
    ef: float = 55.0
    quality: str = "Good"


def write_camus_case(root: Path, patient: str, view: str, spec: CamusCaseSpec = CamusCaseSpec()) -> dict:
    """Write one case's cfg + half_sequence + half_sequence_gt; return the (T, H, W) arrays written."""
    folder = root / "database_nifti" / patient
    folder.mkdir(parents=True, exist_ok=True)
    labels = camus_labels(spec.n_frames, spec.height, spec.width)  # ED -> ES order
    images = np.empty_like(labels)
    for t in range(spec.n_frames):
        images[t] = np.where(labels[t] == 1, 10, camus_frame_value(t)).astype(np.uint8)
    if spec.reversed:
        labels, images = labels[::-1].copy(), images[::-1].copy()
        ed, es = spec.n_frames, 1
    else:
        ed, es = 1, spec.n_frames
    cfg = (
        f"ED: {ed}\nES: {es}\nNbFrame: {spec.n_frames}\nSex: F\nAge: 60\n"
        f"ImageQuality: {spec.quality}\nEF: {spec.ef}\nFrameRate: 50\n"
    )
    (folder / f"Info_{view}.cfg").write_text(cfg)
    write_nifti(folder / f"{patient}_{view}_half_sequence.nii.gz", images, spec.spacing_xy)
    write_nifti(folder / f"{patient}_{view}_half_sequence_gt.nii.gz", labels, spec.spacing_xy)
    return {"images": images, "labels": labels, "ed": ed, "es": es}


def write_camus_dataset(
    parent: Path,
    patients: int = 5,
    splits: tuple[int, int, int] | None = None,
    reversed_patients: tuple[int, ...] = (),
) -> Path:
    """A ``CAMUS_public`` folder with ``patients`` patients (both views) and split files.

    ``splits`` = (n_train, n_val, n_test), sequential by number; default 3/1/rest.
    """
    root = parent / "CAMUS_public"
    names = [f"patient{i:04d}" for i in range(1, patients + 1)]
    for number, name in enumerate(names, start=1):
        for k, view in enumerate(("2CH", "4CH")):
            spec = CamusCaseSpec(
                n_frames=5 + (number + k) % 4, reversed=number in reversed_patients, ef=50.0 + number
            )
            write_camus_case(root, name, view, spec)
    n_train, n_val, _ = splits or (3, 1, patients - 4)
    parts = (names[:n_train], names[n_train : n_train + n_val], names[n_train + n_val :])
    split_dir = root / "database_split"
    split_dir.mkdir(parents=True, exist_ok=True)
    for filename, part in zip(CAMUS_SPLIT_FILES, parts, strict=True):
        (split_dir / filename).write_text("".join(f"{n}\n" for n in part))
    return root


# ----------------------------------------------------------------------------------------------
# EchoNet


def echonet_background(frame: int) -> int:
    return (frame * 7) % 200 + 30


def write_avi(path: Path, frames_fhw: np.ndarray, fps: float = 50.0) -> None:
    """Write (F, H, W) uint8 as an MJPG AVI with 3 identical channels (EchoNet's gray-as-RGB)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    f, h, w = frames_fhw.shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for frame in frames_fhw:
        writer.write(np.repeat(frame[:, :, None], 3, axis=2))
    writer.release()


def ellipse_tracing(cx: float, top: float, length: float, half_width: float) -> np.ndarray:
    """(21, 4) rows X1, Y1, X2, Y2: long axis (apex -> base) then 20 chords of an ellipse LV."""
    rows = [[cx, top, cx, top + length]]
    for k in range(20):
        y = top + (k + 0.5) * length / 20
        u = (y - (top + length / 2)) / (length / 2)
        w = half_width * math.sqrt(max(0.0, 1 - u * u))
        rows.append([cx - w, y, cx + w, y])
    return np.array(rows)


@dataclass(frozen=True)
class EchoVideoSpec:
    name: str
    split: str = "TRAIN"
    n_frames: int = 30
    ed: int = 5
    es: int = 20
    es_first: bool = False  # list the ES tracing rows before the ED rows
    ed_half_width: float = 22.0
    es_half_width: float = 15.0
    repeats_ed: int = 1  # 2 -> the ED frame is traced twice (42 rows)


def write_echonet_dataset(
    parent: Path,
    videos: list[EchoVideoSpec],
    size: int = 112,
    extra_filelist: list[str] = (),
    extra_tracings: list[str] = (),
) -> Path:
    """An ``EchoNet-Dynamic`` folder with the given videos, FileList.csv and VolumeTracings.csv."""
    root = parent / "EchoNet-Dynamic"
    filelist = ["FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split"]
    tracings = ["FileName,X1,Y1,X2,Y2,Frame"]
    for spec in videos:
        frames = np.stack(
            [np.full((size, size), echonet_background(f), np.uint8) for f in range(spec.n_frames)]
        )
        write_avi(root / "Videos" / f"{spec.name}.avi", frames)
        ed_rows = ellipse_tracing(size / 2, 20, 70, spec.ed_half_width)
        es_rows = ellipse_tracing(size / 2, 25, 60, spec.es_half_width)
        edv = _disk_volume(ed_rows)
        esv = _disk_volume(es_rows)
        ef = 100 * (edv - esv) / edv
        filelist.append(
            f"{spec.name},{ef:.4f},{esv:.4f},{edv:.4f},{size},{size},50,{spec.n_frames},{spec.split}"
        )
        blocks = [(spec.ed, ed_rows, spec.repeats_ed), (spec.es, es_rows, 1)]
        if spec.es_first:
            blocks.reverse()
        for frame, rows, repeats in blocks:
            for _ in range(repeats):
                for x1, y1, x2, y2 in rows:
                    tracings.append(f"{spec.name}.avi,{x1:.4f},{y1:.4f},{x2:.4f},{y2:.4f},{frame}")
    filelist += list(extra_filelist)
    tracings += list(extra_tracings)
    (root / "FileList.csv").write_text("\n".join(filelist) + "\n")
    (root / "VolumeTracings.csv").write_text("\n".join(tracings) + "\n")
    return root


def _disk_volume(rows: np.ndarray) -> float:
    """Independent single-plane disk volume (pixel units) of a (21, 4) tracing."""
    length = float(np.hypot(rows[0, 2] - rows[0, 0], rows[0, 3] - rows[0, 1]))
    d = np.hypot(rows[1:, 2] - rows[1:, 0], rows[1:, 3] - rows[1:, 1])
    return float(np.pi / 4 * np.sum(d**2) * length / 20)
