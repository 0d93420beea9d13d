"""End-diastole / end-systole detection from a left-ventricle size curve.

Memory-based segmenters see a recording frame by frame and do not know where the cardiac phases are. Given
the LV area (or volume) of every frame, ED frames are the local maxima and ES frames the local minima of
the smoothed curve, one of each per heartbeat. The detector here is deliberately simple and explainable:

1. smooth with a Gaussian whose width is a fixed fraction of a second (so it adapts to the frame rate);
2. find maxima and minima with a minimum spacing (no two maxima, or two minima, closer than one
   shortest plausible beat, 0.3 s) and a prominence relative to the curve's robust range (noise wiggles are ignored);
3. force strict alternation max/min/max...: of two maxima in a row the larger is kept, of two minima the
   smaller;
4. a beat is an ED followed by the next ES (systole). Extrema at the very ends of the recording are not
   detected (a peak needs both neighbours), so partial beats at the edges are dropped automatically.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks


@dataclass(frozen=True)
class Beat:
    """One systole: ED frame, the following ES frame, their sizes and the EF between them."""

    ed: int
    es: int
    ed_size: float
    es_size: float

    @property
    def ef(self) -> float:
        """Ejection fraction in percent from this beat's ED and ES sizes (volumes)."""
        return 100.0 * (self.ed_size - self.es_size) / self.ed_size if self.ed_size > 0 else float("nan")


@dataclass(frozen=True)
class PhaseResult:
    """Detected phases of one recording."""

    ed_frames: list[int]
    es_frames: list[int]
    beats: list[Beat]
    smoothed: np.ndarray
    reason: str = ""  # why no beat was found, empty otherwise
    notes: list[str] = field(default_factory=list)

    @property
    def mean_ef(self) -> float:
        """Mean EF over complete beats (the EchoNet-Dynamic clinical practice); NaN without beats."""
        efs = [b.ef for b in self.beats if np.isfinite(b.ef)]
        return float(np.mean(efs)) if efs else float("nan")


def _alternate(maxima: np.ndarray, minima: np.ndarray, curve: np.ndarray) -> tuple[list[int], list[int]]:
    """Merge maxima and minima into a strictly alternating sequence (keep the more extreme of a run)."""
    events = sorted([(int(i), "max") for i in maxima] + [(int(i), "min") for i in minima])
    merged: list[tuple[int, str]] = []
    for idx, kind in events:
        if merged and merged[-1][1] == kind:
            prev = merged[-1][0]
            better = curve[idx] > curve[prev] if kind == "max" else curve[idx] < curve[prev]
            if better:
                merged[-1] = (idx, kind)
        else:
            merged.append((idx, kind))
    return [i for i, k in merged if k == "max"], [i for i, k in merged if k == "min"]


def detect_phases(
    sizes: np.ndarray,
    fps: float,
    *,
    max_heart_rate_bpm: float = 180.0,
    smoothing_s: float = 0.05,
    min_prominence: float = 0.15,
    min_beat_s: float = 0.3,
    volumes: np.ndarray | None = None,
) -> PhaseResult:
    """Find ED (maxima) and ES (minima) frames per beat in an LV size curve.

    Args:
        sizes: (T,) LV area or volume per frame (any unit).
        fps: frames per second of the recording.
        max_heart_rate_bpm: fastest plausible rate; sets the minimum spacing between two EDs.
        smoothing_s: Gaussian smoothing sigma in seconds.
        min_prominence: minimum peak prominence as a fraction of the robust range (p95 - p5).
        min_beat_s: shortest beat (ED to ED, ES to ES) in seconds; closer extrema of a kind are noise.
        volumes: optional (T,) volumes used for the per-beat EF (default: ``sizes``).

    Returns:
        PhaseResult with ED/ES frame indices, complete beats (ED followed by ES), and the smoothed curve.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    if sizes.ndim != 1:
        raise ValueError(f"sizes must be 1-D, got shape {sizes.shape}")
    if not np.isfinite(sizes).all():
        raise ValueError("sizes contain NaN or inf")
    vols = sizes if volumes is None else np.asarray(volumes, dtype=np.float64)
    t = len(sizes)
    sigma = max(smoothing_s * fps, 0.5)
    smoothed = gaussian_filter1d(sizes, sigma=sigma, mode="nearest") if t > 1 else sizes.copy()
    if t < 3:
        return PhaseResult([], [], [], smoothed, reason=f"recording has only {t} frame(s)")
    lo, hi = np.percentile(smoothed, [5, 95])
    span = hi - lo
    if span <= 1e-9 * max(abs(hi), 1.0):
        return PhaseResult([], [], [], smoothed, reason="LV size does not change (no cardiac motion found)")
    # Systole and diastole each take at least ~1/3 of the shortest beat.
    # Two extrema of the same kind are at least one beat apart (the shorter of min_beat_s and the
    # fastest heart rate's period).
    min_distance = max(1, int(round(fps * min(min_beat_s, 60.0 / max_heart_rate_bpm))))
    prominence = min_prominence * span
    maxima, _ = find_peaks(smoothed, prominence=prominence, distance=min_distance)
    minima, _ = find_peaks(-smoothed, prominence=prominence, distance=min_distance)
    ed, es = _alternate(maxima, minima, smoothed)
    beats = []
    for e in ed:
        following = [s for s in es if s > e]
        if following:
            s = following[0]
            beats.append(Beat(ed=e, es=s, ed_size=float(vols[e]), es_size=float(vols[s])))
    reason = "" if beats else "recording shorter than one beat (no ED followed by an ES found)"
    return PhaseResult(ed, es, beats, smoothed, reason=reason)
