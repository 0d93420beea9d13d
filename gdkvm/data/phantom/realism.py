"""How much a set of echo frames looks like real apical views: grey-level and geometry statistics around
the traced left ventricle, and the targets measured on real EchoNet-Dynamic recordings.

The statistics are computed on one frame and its LV mask (the expert tracing, or the phantom's truth):

- ``centroid_y``: the LV mask centroid row over the frame height (where the LV sits in depth);
- ``blood_mean``: mean grey inside the mask (the blood pool and its traced edge);
- ``band_mean`` / ``band_p90``: mean and 90th percentile of the ring just outside the mask (a dilation by
  1/16 of the frame height, 7 pixels at 112, minus the mask): myocardium, valve plane and whatever leaks
  from outside;
- ``band_dark``: the fraction of that ring at most as bright as the mean of the blood pool, i.e. wall
  that is as dark as the cavity (dropout, open valve, faint walls).

``REAL_ECHONET`` holds these statistics as measured outside the project on 20 expert-traced ED/ES frames of
10 real EchoNet-Dynamic videos (112 x 112); the recordings themselves are never in the project. Run
:func:`echonet_statistics` on a local EchoNet-Dynamic copy to measure them again, and on a phantom to
compare (``scripts/phantom_realism.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from gdkvm.errors import DataError

STAT_NAMES = ("centroid_y", "blood_mean", "band_mean", "band_p90", "band_dark")

# Measured on real EchoNet-Dynamic frames (see the module docstring): the mean over frames, and the
# tolerance within which a phantom's mean counts as matching.
REAL_ECHONET: dict[str, float] = {
    "centroid_y": 0.53,
    "blood_mean": 15.0,
    "band_mean": 67.0,
    "band_p90": 148.0,
    "band_dark": 0.25,
}
TOLERANCE: dict[str, float] = {
    "centroid_y": 0.04,
    "blood_mean": 6.0,
    "band_mean": 12.0,
    "band_p90": 15.0,
    "band_dark": 0.07,
}


@dataclass(frozen=True)
class FrameStats:
    """The realism statistics of one frame (see the module docstring)."""

    centroid_y: float
    blood_mean: float
    band_mean: float
    band_p90: float
    band_dark: float


def _disk(radius: int) -> np.ndarray:
    size = 2 * radius + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def frame_statistics(frame: np.ndarray, lv_mask: np.ndarray) -> FrameStats:
    """Statistics of one grey frame ``frame`` (H, W) uint8 around its LV mask ``lv_mask`` (H, W) {0, 1}."""
    frame = np.asarray(frame)
    mask = np.asarray(lv_mask).astype(np.uint8)
    if frame.shape != mask.shape:
        raise ValueError(f"frame {frame.shape} and mask {mask.shape} differ in size")
    if not mask.any():
        raise ValueError("the LV mask is empty")
    height = frame.shape[0]
    outer = cv2.dilate(mask, _disk(max(1, round(height / 16))))
    band = (outer > 0) & (mask == 0)
    gray = frame.astype(np.float64)
    blood = gray[mask > 0]
    ring = gray[band]
    rows = np.nonzero(mask)[0]
    return FrameStats(
        centroid_y=float((rows.mean() + 0.5) / height),
        blood_mean=float(blood.mean()),
        band_mean=float(ring.mean()),
        band_p90=float(np.percentile(ring, 90)),
        band_dark=float(np.mean(ring <= blood.mean())),
    )


def echonet_statistics(root: str | Path, limit: int | None = None) -> pd.DataFrame:
    """Statistics of every traced ED/ES frame of an EchoNet-Dynamic folder (real or phantom).

    Returns one row per frame: ``video``, ``phase`` (ED/ES) and the :data:`STAT_NAMES` columns.
    """
    from gdkvm.data.echonet import find_echonet_root, index_echonet, load_echonet_case

    index = index_echonet(find_echonet_root(root))
    rows = []
    for entry in list(index.entries)[:limit]:
        case = load_echonet_case(entry)
        for phase, frame, mask in (("ED", case.ed_frame, case.ed_mask), ("ES", case.es_frame, case.es_mask)):
            stats = frame_statistics(case.video[frame], mask)
            rows.append({"video": case.case_id, "phase": phase, **asdict(stats)})
    if not rows:
        raise DataError(root, "no traced EchoNet frames to measure")
    return pd.DataFrame(rows)


def compare(stats: pd.DataFrame, targets: dict[str, float] | None = None,
            tolerance: dict[str, float] | None = None) -> pd.DataFrame:
    """Mean, 10th and 90th percentile of each statistic against the target; ``match`` when within tolerance."""
    targets = targets or REAL_ECHONET
    tolerance = tolerance or TOLERANCE
    out = []
    for name in STAT_NAMES:
        values = stats[name].to_numpy(dtype=np.float64)
        mean = float(values.mean())
        out.append({
            "statistic": name,
            "mean": mean,
            "p10": float(np.percentile(values, 10)),
            "p90": float(np.percentile(values, 90)),
            "target": targets[name],
            "tolerance": tolerance[name],
            "match": bool(abs(mean - targets[name]) <= tolerance[name]),
        })
    return pd.DataFrame(out)
