"""Draw docs/img/phantom.png: one synthetic patient as written to disk, each frame next to its labels, and
docs/img/phantom-difficulty.png: the same hearts' EchoNet frames at every difficulty level.

Panels of the first: CAMUS 4CH at ED and ES, CAMUS 2CH at ED (label maps from the *_gt.nii.gz files), and
an EchoNet frame at ED with the LV mask rasterised from VolumeTracings.csv the way EchoNet readers do.

    python scripts/phantom_figure.py [--out docs/img/phantom.png] [--seed 0] [--patient 2]
        [--difficulty-out docs/img/phantom-difficulty.png]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from gdkvm.data.synthetic import load_truth, write_phantom  # noqa: E402
from gdkvm.utils.atomic import atomic_path  # noqa: E402

LABEL_COLOURS = {1: (0.85, 0.15, 0.15), 2: (0.15, 0.75, 0.25), 3: (0.2, 0.4, 0.95)}


def _nifti_2d(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    img = nib.load(str(path))
    data = np.asarray(img.dataobj).T  # (X, Y) -> (rows, cols)
    sx, sy = (float(z) for z in img.header.get_zooms()[:2])
    return data, (sx, sy)


def _overlay(gray: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    rgb = np.repeat(gray[..., None].astype(np.float32) / 255.0, 3, axis=2)
    for value, colour in LABEL_COLOURS.items():
        mask = labels == value
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.array(colour)
    return rgb


def _echonet_frame(root: Path, name: str, frame: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(root / "EchoNet-Dynamic" / "Videos" / f"{name}.avi"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
    ok, bgr = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError(f"could not read frame {frame} of {name}.avi")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def _echonet_mask(root: Path, name: str, frame: int, size: int) -> np.ndarray:
    """LV mask of a traced frame: polygon X1 of the chords then X2 reversed (the EchoNet convention)."""
    rows = []
    with open(root / "EchoNet-Dynamic" / "VolumeTracings.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["FileName"] == f"{name}.avi" and int(row["Frame"]) == frame:
                rows.append([float(row[k]) for k in ("X1", "Y1", "X2", "Y2")])
    chords = np.array(rows[1:])
    xs = np.concatenate([chords[:, 0], chords[::-1, 2]])
    ys = np.concatenate([chords[:, 1], chords[::-1, 3]])
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(np.stack([xs, ys], axis=1)).astype(np.int32)], 1)
    return mask


def make_figure(out: Path, seed: int, patient: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "phantom"
        write_phantom(root, patients=patient, seed=seed)
        truth = load_truth(root)
        name = f"patient{patient:04d}"
        folder = root / "CAMUS_public" / "database_nifti" / name
        panels = []
        for view, phase in (("4CH", "ED"), ("4CH", "ES"), ("2CH", "ED")):
            img, (sx, sy) = _nifti_2d(folder / f"{name}_{view}_{phase}.nii.gz")
            gt, _ = _nifti_2d(folder / f"{name}_{view}_{phase}_gt.nii.gz")
            extent = (0, img.shape[1] * sx, img.shape[0] * sy, 0)
            panels.append((f"CAMUS {view} {phase}", img, gt, extent))
        video = truth["camus"][name]["echonet"]
        ed = truth["echonet"][video]["traced"]["ed"]
        frame = _echonet_frame(root, video, ed)
        mask = _echonet_mask(root, video, ed, frame.shape[0])
        panels.append((f"EchoNet frame {ed} (ED)", frame, mask, None))
        ef = truth["camus"][name]["EF"]

    fig, axes = plt.subplots(2, 4, figsize=(12, 6.4), dpi=80)
    for k, (title, img, labels, extent) in enumerate(panels):
        ax_img, ax_lab = axes[k // 2, 2 * (k % 2)], axes[k // 2, 2 * (k % 2) + 1]
        ax_img.imshow(img, cmap="gray", vmin=0, vmax=255, extent=extent, interpolation="bilinear")
        ax_lab.imshow(_overlay(img, labels), extent=extent, interpolation="nearest")
        ax_img.set_title(title, fontsize=9)
        ax_lab.set_title("+ ground truth", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_facecolor("black")
    fig.suptitle(f"gdkvm synthetic echo phantom, {name} (seed {seed}), exact EF {ef:.1f} %; "
                 "red LV cavity, green myocardium, blue left atrium", fontsize=10)
    fig.tight_layout()
    with atomic_path(out) as tmp_png:
        fig.savefig(tmp_png, format="png", facecolor="white")
        mask = os.umask(0)
        os.umask(mask)
        tmp_png.chmod(0o666 & ~mask)  # the temporary file is private; give the figure the usual mode
    plt.close(fig)


def make_difficulty_figure(out: Path, seed: int, patients: int = 5) -> None:
    """EchoNet ED frames of ``patients`` hearts (columns) at every difficulty (rows), LV tracing in yellow."""
    from gdkvm.data.phantom.difficulty import DIFFICULTIES

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for level in DIFFICULTIES:
            root = Path(tmp) / level
            write_phantom(root, patients=patients, seed=seed, workers=2, difficulty=level)
            truth = load_truth(root)
            row = []
            for video, record in truth["echonet"].items():
                ed = record["traced"]["ed"]
                frame = _echonet_frame(root, video, ed)
                mask = _echonet_mask(root, video, ed, frame.shape[0])
                row.append((frame, mask))
            rows.append((level, row))
    fig, axes = plt.subplots(len(rows), patients, figsize=(2.0 * patients, 2.1 * len(rows)), dpi=90)
    for r, (level, row) in enumerate(rows):
        for c, (frame, mask) in enumerate(row):
            ax = axes[r, c]
            ax.imshow(frame, cmap="gray", vmin=0, vmax=255, interpolation="bilinear")
            ax.contour(mask, levels=[0.5], colors=["#f0e442"], linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(level, fontsize=10)
    fig.suptitle(f"phantom EchoNet ED frames (seed {seed}) at each --difficulty; yellow: the traced LV", fontsize=10)
    fig.tight_layout()
    with atomic_path(out) as tmp_png:
        fig.savefig(tmp_png, format="png", facecolor="white")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img/phantom.png"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patient", type=int, default=2)
    parser.add_argument("--difficulty-out", type=Path, default=Path("docs/img/phantom-difficulty.png"))
    args = parser.parse_args()
    make_figure(args.out, args.seed, args.patient)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    make_difficulty_figure(args.difficulty_out, args.seed)
    print(f"wrote {args.difficulty_out} ({args.difficulty_out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
