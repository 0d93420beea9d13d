"""EchoNet-style LV tracings: long axis plus 20 disk chords, from the exact cavity outline of a frame.

The outline is the cut of the 3D cavity by the view plane (foreshortened or not: from the apex the plane
shows), mapped into the video's pixel frame. Row 1 runs
from the apex to the midpoint of the mitral annulus; rows 2..21 are chords perpendicular to it at the
centres of 20 equal slabs from the apex towards the mitral plane, (X1, Y1) on one wall and (X2, Y2) on
the other. The single-plane method of disks then reads V = pi/4 * sum(d_i^2) * L / 20.
"""

from __future__ import annotations

import numpy as np

from gdkvm.data.phantom.geometry import PixelGrid, Pose
from gdkvm.data.phantom.shape import Foreshortening, LVShape

N_DISKS = 20


def cavity_outline(shape: LVShape, omega: float, m: float, n: int = 400, plane: Foreshortening | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The two walls of the cavity cut, apex -> base, as heart-plane points (n, 2) of (u, z) each:
    (wall at smaller u, wall at larger u). With a foreshortening ``plane``, z is the in-plane height and
    the outline starts at the apex that plane shows."""
    wall = float(shape.wall_thickness(m))
    if plane is None or plane.neutral:
        length = float(shape.length(m))
        z = length * np.linspace(0.0, 1.0, n) ** 2  # dense near the apex, where the outline bends fastest
    else:
        apex = shape.cut_apex(m, omega, plane)
        z = apex + (shape.plane_length(m, plane) - apex) * np.linspace(0.0, 1.0, n) ** 2
    c, h, _, _ = shape.cut(z, m, omega, wall, plane=plane)
    return np.stack([c - h, z], axis=1), np.stack([c + h, z], axis=1)


def _to_pixels(points: np.ndarray, pose: Pose, pixels: PixelGrid) -> np.ndarray:
    x, y = pose.to_probe(points[:, 0], points[:, 1])
    col, row = pixels.to_pixel(x, y)
    return np.stack([col, row], axis=1)


def _wall_at(wall: np.ndarray, apex: np.ndarray, axis_dir: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points of a wall polyline (pixels) at axial distances t from the apex along ``axis_dir``."""
    along = np.maximum.accumulate((wall - apex) @ axis_dir)
    return np.stack([np.interp(t, along, wall[:, 0]), np.interp(t, along, wall[:, 1])], axis=1)


def tracing_segments(shape: LVShape, omega: float, m: float, pose: Pose, pixels: PixelGrid,
                     plane: Foreshortening | None = None) -> np.ndarray:
    """The 21 tracing rows (X1, Y1, X2, Y2) in continuous pixel coordinates of ``pixels``."""
    left, right = cavity_outline(shape, omega, m, plane=plane)
    left_px = _to_pixels(left, pose, pixels)
    right_px = _to_pixels(right, pose, pixels)
    apex = 0.5 * (left_px[0] + right_px[0])
    base_mid = 0.5 * (left_px[-1] + right_px[-1])
    axis = base_mid - apex
    length = float(np.hypot(*axis))
    axis_dir = axis / length
    t = (np.arange(N_DISKS) + 0.5) / N_DISKS * length
    p1 = _wall_at(left_px, apex, axis_dir, t)
    p2 = _wall_at(right_px, apex, axis_dir, t)
    rows = np.concatenate([np.concatenate([apex, base_mid])[None, :], np.concatenate([p1, p2], axis=1)])
    return rows


def disk_volume(rows: np.ndarray) -> float:
    """Single-plane method of disks from tracing rows (pixel^3): pi/4 * sum(d_i^2) * L / n_disks."""
    rows = np.asarray(rows, dtype=np.float64)
    length = float(np.hypot(rows[0, 2] - rows[0, 0], rows[0, 3] - rows[0, 1]))
    d = np.hypot(rows[1:, 2] - rows[1:, 0], rows[1:, 3] - rows[1:, 1])
    return float(np.pi / 4.0 * np.sum(d * d) * length / len(d))


def _disk_chords(left: np.ndarray, right: np.ndarray) -> tuple[float, np.ndarray]:
    """Long-axis length and the N_DISKS disk diameters of one traced outline (any planar units)."""
    apex = 0.5 * (left[0] + right[0])
    axis = 0.5 * (left[-1] + right[-1]) - apex
    length = float(np.hypot(*axis))
    axis_dir = axis / length
    t = (np.arange(N_DISKS) + 0.5) / N_DISKS * length
    p1 = _wall_at(left, apex, axis_dir, t)
    p2 = _wall_at(right, apex, axis_dir, t)
    return length, np.hypot(*(p2 - p1).T)


def biplane_volume_ml(shape: LVShape, m: float, plane_4ch: Foreshortening | None = None,
                      plane_2ch: Foreshortening | None = None) -> float:
    """Biplane method of disks on the exact cuts of the two apical planes (what a perfect tracer of these
    two views would report): V = pi/4 * sum(a_i b_i) * L / n_disks, L the longer of the two lengths."""
    len4, d4 = _disk_chords(*cavity_outline(shape, 0.0, m, plane=plane_4ch))
    len2, d2 = _disk_chords(*cavity_outline(shape, np.pi / 2, m, plane=plane_2ch))
    return float(np.pi / 4.0 * np.sum(d4 * d2) * max(len4, len2) / N_DISKS) / 1000.0


def single_plane_volume_ml(shape: LVShape, omega: float, m: float, plane: Foreshortening | None = None) -> float:
    """Single-plane method of disks on the exact cut of one view (angle ``omega``, optional foreshortened
    ``plane``): what a perfect tracer of that view would report, V = pi/4 * sum(d_i^2) * L / n_disks (mL)."""
    length, d = _disk_chords(*cavity_outline(shape, omega, m, plane=plane))
    return float(np.pi / 4.0 * np.sum(d * d) * length / N_DISKS) / 1000.0


def long_axis_mm(shape: LVShape, omega: float, m: float, plane: Foreshortening | None = None) -> float:
    """The LV length a tracer of this view measures: from the apex the plane shows to the midpoint of the
    mitral annulus, in mm (L(m) for a plane through the axis; shorter when foreshortened)."""
    return _disk_chords(*cavity_outline(shape, omega, m, plane=plane))[0]
