"""Probe geometry: the sector (fan), the probe pose relative to the heart, and pixel grids.

Probe coordinates (mm): the transducer (fan apex) at the origin, X lateral (image right), Y depth (image
down). A view plane of the heart has in-plane coordinates (u, z): z along the LV long axis from the
cavity apex towards the base, u lateral in the plane (u < 0 is the septal side in the 4-chamber view).
The pose places the LV apex at ``apex_xy`` and tilts the long axis by ``tilt_rad`` from the beam axis:

    (X, Y) = apex_xy + z * (sin tilt, cos tilt) + u * (cos tilt, -sin tilt).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pose:
    """Where the heart's view plane sits in probe coordinates."""

    apex_x_mm: float
    apex_y_mm: float
    tilt_rad: float

    def axes(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Unit vectors (d along +z, n along +u) in probe coordinates."""
        st, ct = math.sin(self.tilt_rad), math.cos(self.tilt_rad)
        return (st, ct), (ct, -st)

    def to_heart(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probe (X, Y) -> heart plane (u, z)."""
        d, n = self.axes()
        dx = x - self.apex_x_mm
        dy = y - self.apex_y_mm
        return dx * n[0] + dy * n[1], dx * d[0] + dy * d[1]

    def to_probe(self, u: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heart plane (u, z) -> probe (X, Y)."""
        d, n = self.axes()
        return self.apex_x_mm + z * d[0] + u * n[0], self.apex_y_mm + z * d[1] + u * n[1]


@dataclass(frozen=True)
class Sector:
    """The scanned fan: radius ``depth_mm`` and opening +-``half_angle_rad`` around the beam axis."""

    depth_mm: float
    half_angle_rad: float

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r = np.hypot(x, y)
        theta = np.arctan2(x, y)
        return (r <= self.depth_mm) & (np.abs(theta) <= self.half_angle_rad) & (y >= 0)


@dataclass(frozen=True)
class PolarGrid:
    """Scan-line samples: ``n_r`` depths (step ``dr_mm``, from 0) by ``n_theta`` beam angles."""

    sector: Sector
    dr_mm: float
    dtheta_rad: float

    @property
    def n_r(self) -> int:
        return int(np.floor(self.sector.depth_mm / self.dr_mm)) + 1

    @property
    def n_theta(self) -> int:
        return int(np.floor(2.0 * self.sector.half_angle_rad / self.dtheta_rad)) + 1

    def radii(self) -> np.ndarray:
        return np.arange(self.n_r, dtype=np.float64) * self.dr_mm

    def angles(self) -> np.ndarray:
        return -self.sector.half_angle_rad + np.arange(self.n_theta, dtype=np.float64) * self.dtheta_rad

    def probe_coords(self) -> tuple[np.ndarray, np.ndarray]:
        """(X, Y) of every sample, each (n_r, n_theta)."""
        r = self.radii()[:, None]
        th = self.angles()[None, :]
        return r * np.sin(th), r * np.cos(th)

    def fractional_index(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probe (X, Y) -> fractional (theta index, r index), as cv2.remap's (map_x, map_y)."""
        r = np.sqrt(x * x + y * y)
        th = np.arctan2(x, y)
        return (th + float(self.sector.half_angle_rad)) * (1.0 / self.dtheta_rad), r * (1.0 / self.dr_mm)


@dataclass(frozen=True)
class PixelGrid:
    """An image raster in probe coordinates: pixel (row i, col j) has its centre at
    X = (j - (width - 1) / 2) * spacing_x, Y = y0 + i * spacing_y."""

    height: int
    width: int
    spacing_x_mm: float
    spacing_y_mm: float
    y0_mm: float

    def probe_coords(self) -> tuple[np.ndarray, np.ndarray]:
        """(X, Y) of every pixel centre, each (height, width)."""
        cols = (np.arange(self.width) - (self.width - 1) / 2.0) * self.spacing_x_mm
        rows = self.y0_mm + np.arange(self.height) * self.spacing_y_mm
        return np.broadcast_to(cols[None, :], (self.height, self.width)), np.broadcast_to(
            rows[:, None], (self.height, self.width)
        )

    def to_pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probe (X, Y) -> continuous pixel coordinates (col, row), pixel centres at integers."""
        return x / self.spacing_x_mm + (self.width - 1) / 2.0, (y - self.y0_mm) / self.spacing_y_mm

    def scaled(self, factor: int) -> PixelGrid:
        """A grid ``factor`` times finer whose factor x factor blocks average back onto this grid."""
        sx = self.spacing_x_mm / factor
        sy = self.spacing_y_mm / factor
        return PixelGrid(
            height=self.height * factor,
            width=self.width * factor,
            spacing_x_mm=sx,
            spacing_y_mm=sy,
            y0_mm=self.y0_mm - (factor - 1) / 2.0 * sy,
        )
