"""Per-recording quality verdict for `gdkvm predict`: flags that say when a result should not be trusted."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from gdkvm.predict.phases import Beat

EF_RANGE = (5.0, 90.0)  # % : outside this an EF is physiologically implausible
BEAT_SECONDS = (0.3, 2.0)  # ED-to-ED length of a plausible beat (30-200 bpm)
MIN_MASK_FRACTION = 0.005  # median LV mask below this share of the frame is "tiny"
EMPTY_FRAME_SHARE = 0.2  # more than this share of frames without LV is "empty masks"
EDGE_FRAME_SHARE = 0.2  # mask on the sector edge in more than this share of frames
MIN_CONFIDENCE = 0.7  # mean LV softmax probability over LV pixels
BACKGROUND_LEVEL = 2  # gray level (time median) at or below which a pixel is outside the sector


@dataclass
class Quality:
    """The verdict: ``ok`` when no flag is raised; ``beats`` are those that pass the per-beat checks."""

    flags: list[str] = field(default_factory=list)
    beats: list[Beat] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.flags

    def as_dict(self) -> dict:
        return {"ok": self.ok, "flags": list(self.flags)}


def _sector(frames: np.ndarray) -> np.ndarray:
    """(H, W) bool: the scan sector, the convex hull of the largest region ever brighter than
    BACKGROUND_LEVEL. A fan is convex, so dark blood, dropout and shadows inside it stay inside, and small
    overlays outside it (depth markers, text) are left out."""
    bright = (frames.max(axis=0) > BACKGROUND_LEVEL).astype(np.uint8)
    bright = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=8)
    sector = np.zeros(bright.shape, np.uint8)
    if n <= 1:
        return sector.astype(bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    points = np.column_stack(np.nonzero(labels == largest)[::-1]).astype(np.int32)
    cv2.fillConvexPoly(sector, cv2.convexHull(points), 1)
    return sector.astype(bool)


def _touches_edge(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(T,) bool: the LV mask reaches the image border or the area outside the scan sector (:func:`_sector`).

    frames (T, H, W) uint8, masks (T, H, W) {0, 1}.
    """
    outside = ~_sector(frames)
    outside[0, :] = outside[-1, :] = outside[:, 0] = outside[:, -1] = True
    return (masks.astype(bool) & outside[None]).reshape(len(masks), -1).any(axis=1)


def assess(frames: np.ndarray, masks: np.ndarray, fps: float, beats: list[Beat], ed_frames: list[int],
           confidence: float | None = None) -> Quality:
    """Flag one recording and keep the beats that pass.

    Args:
        frames: (T, H, W) uint8 input frames; masks: (T, H, W) {0, 1} LV masks at the same size.
        fps: frame rate; beats: detected beats (ED then ES); ed_frames: every detected ED frame.
        confidence: mean LV probability over LV pixels, when the segmenter reports it.
    """
    q = Quality()
    t = len(masks)
    areas = masks.reshape(t, -1).sum(axis=1)
    empty = float((areas == 0).mean()) if t else 1.0
    if empty > EMPTY_FRAME_SHARE:
        q.flags.append(f"empty masks in {empty:.0%} of frames")
    elif np.median(areas) < MIN_MASK_FRACTION * masks.shape[1] * masks.shape[2]:
        q.flags.append(f"tiny masks (median {int(np.median(areas))} px)")
    edge = float(_touches_edge(frames, masks).mean()) if t else 0.0
    if edge > EDGE_FRAME_SHARE:
        q.flags.append(f"mask touches the sector edge in {edge:.0%} of frames")
    if confidence is not None and confidence < MIN_CONFIDENCE:
        q.flags.append(f"low mean confidence {confidence:.2f}")
    eds = sorted(ed_frames)
    bad_ef, bad_len = [], []
    for b in beats:
        later = [e for e in eds if e > b.ed]
        length = (later[0] - b.ed) / fps if later else None
        if not (np.isfinite(b.ef) and EF_RANGE[0] <= b.ef <= EF_RANGE[1]):
            bad_ef.append(b.ef)
        elif length is not None and not BEAT_SECONDS[0] <= length <= BEAT_SECONDS[1]:
            bad_len.append(length)
        else:
            q.beats.append(b)
    if bad_ef:
        q.flags.append("implausible EF " + ", ".join(f"{e:.1f}" for e in bad_ef) + f" % (outside "
                       f"{EF_RANGE[0]:g}-{EF_RANGE[1]:g} %)")
    if bad_len:
        q.flags.append("beat length " + ", ".join(f"{s:.2f}" for s in bad_len) + f" s (outside "
                       f"{BEAT_SECONDS[0]:g}-{BEAT_SECONDS[1]:g} s)")
    if not beats:
        q.flags.append("no complete beat")
    return q
