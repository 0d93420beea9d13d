"""Per-frame lookup tables of the LV cut in one view plane, sampled along the long axis.

Evaluating the shape model at every pixel is costly; the cut only depends on z, so it is tabulated once
per frame on a fine z grid (fixed per view) and read back by linear interpolation. Points whose z does not
change between frames (the scan-line samples) precompute their interpolation weights once
(:class:`ZIndex`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gdkvm.data.phantom.shape import Foreshortening, LVShape

_DZ_MM = 0.1

# Column order of ProfileTable.values.
CAV_C, CAV_H, EPI_C, EPI_H, PERI_IN_C, PERI_IN_H, PERI_OUT_C, PERI_OUT_H = range(8)


@dataclass(frozen=True)
class ZAxis:
    """The z grid of the tables of one view: z_i = z0 + i * dz, i < n."""

    z0: float
    dz: float
    n: int

    @staticmethod
    def for_shape(shape: LVShape) -> ZAxis:
        z0 = -3.0 * shape.wall_mm - 12.0
        z1 = shape.length_mm + 2.0
        return ZAxis(z0=z0, dz=_DZ_MM, n=int(np.ceil((z1 - z0) / _DZ_MM)) + 1)

    def values(self) -> np.ndarray:
        return self.z0 + self.dz * np.arange(self.n)


@dataclass(frozen=True)
class ZIndex:
    """Precomputed linear-interpolation positions of points z on a ZAxis."""

    idx: np.ndarray  # intp, same shape as z
    frac: np.ndarray  # float32

    @staticmethod
    def of(axis: ZAxis, z: np.ndarray) -> ZIndex:
        pos = (np.asarray(z, dtype=np.float32) - np.float32(axis.z0)) / np.float32(axis.dz)
        pos = np.clip(pos, 0.0, axis.n - 1.001)
        idx = pos.astype(np.intp)
        return ZIndex(idx=idx, frac=pos - idx.astype(np.float32))


@dataclass(frozen=True)
class ProfileTable:
    """The view-plane cut of cavity, epicardium and pericardial band at one contraction level.

    ``values[k, i]`` is column k (module constants) at z = axis.z0 + i * axis.dz; ``slopes`` holds the
    forward differences. Outside the LV the half-widths are 0.
    """

    m: float
    length_mm: float
    wall_mm: float
    cap_mm: float
    axis: ZAxis
    values: np.ndarray  # (8, n) float32
    slopes: np.ndarray  # (8, n) float32
    shared_centre: bool  # cavity, epicardium and pericardium cuts share their centre (true for 2CH/4CH)
    floor_mm: float = 0.0  # in-plane height of the apex slice z = 0 (below 0 only in a tilted plane)

    def sample(self, z: np.ndarray | ZIndex, columns: tuple[int, ...]) -> list[np.ndarray]:
        """Linear interpolation of the requested columns at heights z (array or precomputed ZIndex)."""
        where = z if isinstance(z, ZIndex) else ZIndex.of(self.axis, z)
        out = []
        for col in columns:
            value = np.take(self.values[col], where.idx)
            value += np.take(self.slopes[col], where.idx) * where.frac
            out.append(value)
        return out


def build_table(shape: LVShape, axis: ZAxis, m: float, omega: float, peri_gap_mm: float, peri_thick_mm: float,
                plane: Foreshortening | None = None) -> ProfileTable:
    """Tabulate the cut of the LV at contraction ``m`` by the view plane at angle ``omega`` (through the
    long axis, or foreshortened by ``plane``; the axis then holds in-plane heights)."""
    wall = float(shape.wall_thickness(m))
    z = axis.values()
    c, h, ce, he = shape.cut(z, m, omega, wall, plane=plane)
    _, _, cpi, hpi = shape.cut(z, m, omega, wall, extra=peri_gap_mm, plane=plane)
    _, _, cpo, hpo = shape.cut(z, m, omega, wall, extra=peri_gap_mm + peri_thick_mm, plane=plane)
    shared = bool(np.allclose(c, ce, atol=1e-4) and np.allclose(c, cpi, atol=1e-4) and np.allclose(c, cpo, atol=1e-4))
    if shared:
        ce = cpi = cpo = c
    values = np.stack([c, h, ce, he, cpi, hpi, cpo, hpo]).astype(np.float32)
    values[:, 0] = 0.0
    values[:, -1] = 0.0
    slopes = np.zeros_like(values)
    slopes[:, :-1] = values[:, 1:] - values[:, :-1]
    return ProfileTable(
        m=float(m), length_mm=shape.plane_length(m, plane), wall_mm=wall, cap_mm=shape.apex_wall_ratio * wall,
        axis=axis, values=values, slopes=slopes, shared_centre=shared, floor_mm=shape.plane_floor(plane),
    )
