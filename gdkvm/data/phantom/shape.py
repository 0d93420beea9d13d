"""The 3D left-ventricle shape model: one per patient, deforming along the cardiac cycle.

Heart coordinates (mm): the long axis ``z`` runs from the cavity apex (z = 0) to the mitral plane
(z = L(m)); ``x`` is the lateral direction of the apical 4-chamber plane (septum at negative x) and ``y``
the lateral direction of the 2-chamber plane. At height z the cavity cross-section is an ellipse

    ((x - cx) / a)^2 + (y / b)^2 <= 1,   a = A0 p(s) (1 - m g k(s)),   b = B0 p(s) (1 - m q g k(s)),

with s = z / L(m), p the truncated prolate profile, k the radial-shortening profile (apical sparing) and
m in [0, 1] the contraction level (0 at ED, 1 at ES). The septum moves less than the lateral wall, which
shifts the centre: cx = -zeta (A0 p - a). The epicardium is the cavity offset by the wall thickness w(m),
closed by an elliptic cap of depth kappa * w below the apex; w(m) keeps the myocardial volume constant.

Cross-section areas are pi * a * b, so the cavity volume is an exact 1D integral; it is a polynomial in
m whose coefficients are moments of the profiles (docs/phantom.md derives it).

A view cuts the shape with a plane (:meth:`LVShape.cut`): through the long axis at angle omega, or, for a
foreshortened view (:class:`Foreshortening`), offset from the axis and tilted against it. Each image row
of such a plane lies in one short-axis slice, so the cut is an exact ellipse-line intersection per row.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

_QUAD_NODES = 400


@functools.lru_cache(maxsize=1)
def _unit_quadrature() -> tuple[np.ndarray, np.ndarray]:
    """Nodes s and weights on [0, 1] after the substitution s = v^2 (smooths the sqrt-like apex)."""
    v, wv = np.polynomial.legendre.leggauss(_QUAD_NODES)
    v = 0.5 * (v + 1.0)
    wv = 0.5 * wv
    return v * v, wv * 2.0 * v


@dataclass(frozen=True)
class Foreshortening:
    """How a view plane misses the LV long axis (the apical view of an off-apex probe position).

    The plane at angle omega normally contains the long axis; here it is first rotated by ``tilt_deg``
    about its own lateral direction e = (cos omega, sin omega, 0) through the point of the axis at the
    end-diastolic mitral plane (z = L0), then shifted by ``offset_mm`` along its normal
    n = (-sin omega, cos omega, 0). In-plane coordinates (u, w): u along e, w along the tilted axis
    direction (cos tilt) z - (sin tilt) n, with w = z at the pivot. The plane point (u, w) is

        u e + nu(w) n + z(w) ez,   z(w) = L0 - (L0 - w) cos(tilt),   nu(w) = offset + (L0 - w) sin(tilt),

    so every row w lies in the short-axis slice z(w) at the distance nu(w) from the axis: the plane
    passes |offset| mm from the axis at the mitral plane and |offset + L0 tan(tilt)| mm from the apex.
    (u, w) is an isometry of the plane (image geometry is not distorted). The neutral value is the plane
    through the axis, where w = z.
    """

    offset_mm: float = 0.0
    tilt_deg: float = 0.0

    @property
    def neutral(self) -> bool:
        return self.offset_mm == 0.0 and self.tilt_deg == 0.0

    def heart(self, w: np.ndarray, pivot_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """(z, nu) in heart coordinates of the plane rows at in-plane heights ``w`` (pivot_mm = L0)."""
        tilt = math.radians(self.tilt_deg)
        below = pivot_mm - np.asarray(w, dtype=np.float64)
        return pivot_mm - below * math.cos(tilt), self.offset_mm + below * math.sin(tilt)

    def row_of(self, z: np.ndarray | float, pivot_mm: float) -> np.ndarray:
        """In-plane height w of the row lying in the short-axis slice at heart height ``z``."""
        return pivot_mm - (pivot_mm - np.asarray(z, dtype=np.float64)) / math.cos(math.radians(self.tilt_deg))


@dataclass(frozen=True)
class LVShape:
    """Parameters of one patient's LV (lengths in mm, ratios dimensionless)."""

    length_mm: float  # L0: apex -> mitral plane at ED
    radius_x_mm: float  # A0: widest cavity semi-axis in the 4CH direction at ED
    radius_y_mm: float  # B0: widest cavity semi-axis in the 2CH direction at ED
    truncation: float  # t: the mitral plane lies t * c above the equator of the spheroid
    apex_power: float  # beta: profile p(s) = (1 - u^2)^(beta / 2)
    radial_shortening: float  # g: radial shortening at ES where k(s) = 1
    long_ratio: float  # lambda: base descent at ES is lambda * g of the length
    ratio_y: float  # q: radial shortening in y relative to x
    apical_sparing: float  # sigma: k(0) = sigma, k(1) = 1
    septal_share: float  # zeta: centre shift towards the septum per unit of shortening
    wall_mm: float  # w0: wall thickness at ED
    apex_wall_ratio: float  # kappa: apical cap depth relative to the wall thickness

    # ------------------------------------------------------------------ profiles (s in [0, 1])
    def profile(self, s: np.ndarray) -> np.ndarray:
        """Normalised radius p(s): 0 at the apex, 1 at the equator, sqrt(1 - t^2)^beta at the base."""
        u = np.asarray(s) * (1.0 + self.truncation) - 1.0
        return np.clip(1.0 - u * u, 0.0, None) ** (0.5 * self.apex_power)

    def shortening_profile(self, s: np.ndarray) -> np.ndarray:
        """Radial shortening weight k(s): ``apical_sparing`` at the apex rising smoothly to 1 at the base."""
        s = np.clip(np.asarray(s), 0.0, 1.0)
        smooth = s * s * (3.0 - 2.0 * s)
        return self.apical_sparing + (1.0 - self.apical_sparing) * smooth

    def length(self, m: np.ndarray | float) -> np.ndarray:
        """Cavity length L(m) = L0 (1 - lambda g m): the base descends towards the still apex."""
        return self.length_mm * (1.0 - self.long_ratio * self.radial_shortening * np.asarray(m, dtype=np.float64))

    def semi_axes(self, z: np.ndarray, m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cx, a, b) of the cavity cross-section at heights z; a = b = 0 outside [0, L(m)]."""
        z = np.asarray(z, dtype=np.float64)
        length = float(self.length(m))
        s = z / length
        inside = (s >= 0.0) & (s <= 1.0)
        p = self.profile(np.clip(s, 0.0, 1.0))
        k = self.shortening_profile(s) * self.radial_shortening * m
        a_ed = self.radius_x_mm * p
        a = a_ed * (1.0 - k)
        b = self.radius_y_mm * p * (1.0 - self.ratio_y * k)
        cx = -self.septal_share * (a_ed - a)
        return np.where(inside, cx, 0.0), np.where(inside, a, 0.0), np.where(inside, b, 0.0)

    # ------------------------------------------------------------------ exact volumes
    @functools.cached_property
    def _moments(self) -> dict[str, float]:
        s, w = _unit_quadrature()
        p = self.profile(s)
        k = self.shortening_profile(s)
        return {
            "K0": float(np.sum(w * p * p)),
            "K1": float(np.sum(w * p * p * k)),
            "K2": float(np.sum(w * p * p * k * k)),
            "P0": float(np.sum(w * p)),
            "P1": float(np.sum(w * p * k)),
        }

    def volume_mm3(self, m: np.ndarray | float) -> np.ndarray:
        """Exact cavity volume: V(m) = pi A0 B0 L(m) [K0 - m g (1+q) K1 + m^2 g^2 q K2]."""
        m = np.asarray(m, dtype=np.float64)
        mo = self._moments
        g, q = self.radial_shortening, self.ratio_y
        poly = mo["K0"] - m * g * (1.0 + q) * mo["K1"] + (m * g) ** 2 * q * mo["K2"]
        return np.pi * self.radius_x_mm * self.radius_y_mm * self.length(m) * poly

    def volume_ml(self, m: np.ndarray | float) -> np.ndarray:
        """Exact cavity volume in mL."""
        return self.volume_mm3(m) / 1000.0

    @property
    def edv_ml(self) -> float:
        return float(self.volume_ml(0.0))

    @property
    def esv_ml(self) -> float:
        return float(self.volume_ml(1.0))

    @property
    def ef_percent(self) -> float:
        edv, esv = self.edv_ml, self.esv_ml
        return 100.0 * (edv - esv) / edv

    # ------------------------------------------------------------------ myocardium
    def myocardial_volume_mm3(self, m: np.ndarray | float, wall: np.ndarray | float) -> np.ndarray:
        """Volume between the epicardium (cavity offset by ``wall`` plus the apical cap) and the cavity."""
        m = np.asarray(m, dtype=np.float64)
        wall = np.asarray(wall, dtype=np.float64)
        mo = self._moments
        g, q = self.radial_shortening, self.ratio_y
        perimeter_a = self.radius_x_mm * (mo["P0"] - m * g * mo["P1"])
        perimeter_b = self.radius_y_mm * (mo["P0"] - m * q * g * mo["P1"])
        shell = np.pi * self.length(m) * (wall * (perimeter_a + perimeter_b) + wall * wall)
        cap = 2.0 / 3.0 * np.pi * self.apex_wall_ratio * wall**3
        return shell + cap

    @functools.cached_property
    def _wall_table(self) -> tuple[np.ndarray, np.ndarray]:
        m = np.linspace(0.0, 1.0, 401)
        target = float(self.myocardial_volume_mm3(0.0, self.wall_mm))
        lo = np.zeros_like(m)
        hi = np.full_like(m, 5.0 * self.wall_mm)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            small = self.myocardial_volume_mm3(m, mid) < target
            lo = np.where(small, mid, lo)
            hi = np.where(small, hi, mid)
        return m, 0.5 * (lo + hi)

    def wall_thickness(self, m: np.ndarray | float) -> np.ndarray:
        """Wall thickness w(m) that keeps the myocardial volume equal to its ED value.

        Solved by bisection on a grid of 401 contraction levels and interpolated (error ~1e-6 mm).
        """
        grid, wall = self._wall_table
        return np.interp(np.asarray(m, dtype=np.float64), grid, wall)

    # ------------------------------------------------------------------ 3D membership and plane cuts
    def contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, m: float) -> np.ndarray:
        """Boolean mask of points (mm, heart coordinates) inside the cavity at contraction m."""
        cx, a, b = self.semi_axes(z, m)
        a = np.maximum(a, 1e-9)
        b = np.maximum(b, 1e-9)
        length = float(self.length(m))
        z = np.asarray(z)
        return (z >= 0) & (z <= length) & (((x - cx) / a) ** 2 + (y / b) ** 2 <= 1.0)

    def cut(self, z: np.ndarray, m: float, omega: float, wall: float, extra: float = 0.0,
            plane: Foreshortening | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Intersection of a view plane with the cavity and with the offset surface.

        Without ``plane`` (or with a neutral one) the plane contains the z axis and the direction
        (cos omega, sin omega) of the short-axis plane (omega = 0: apical 4-chamber, omega = pi/2:
        2-chamber), and ``z`` (n,) are heights along the axis. With a foreshortening ``plane``, ``z`` are
        the in-plane heights w of its rows (see :class:`Foreshortening`). In-plane lateral coordinate l
        along (cos omega, sin omega). Returns four (n,) arrays (c, h, c_epi, h_epi): the cavity occupies
        |l - c| <= h and the surface offset by ``wall + extra`` occupies |l - c_epi| <= h_epi (including
        the apical cap of depth kappa * (wall + extra) below z = 0). Zero half-widths mean "not cut".
        """
        if plane is not None and not plane.neutral:
            return self._oblique_cut(np.asarray(z, dtype=np.float64), m, omega, wall + extra, plane)
        z = np.asarray(z, dtype=np.float64)
        cx, a, b = self.semi_axes(z, m)
        c, h = _ellipse_chord(cx, a, b, omega)
        offset = wall + extra
        length = float(self.length(m))
        in_lv = (z >= 0.0) & (z <= length)
        ce, he = _ellipse_chord(cx, a + offset, b + offset, omega)
        cap_depth = self.apex_wall_ratio * offset
        in_cap = (z < 0.0) & (z >= -cap_depth)
        cap_half = offset * np.sqrt(np.clip(1.0 - (z / max(cap_depth, 1e-9)) ** 2, 0.0, None))
        h_epi = np.where(in_lv, he, np.where(in_cap, cap_half, 0.0))
        c_epi = np.where(in_lv, ce, 0.0)
        return np.where(in_lv, c, 0.0), np.where(in_lv, h, 0.0), c_epi, h_epi

    def _oblique_cut(self, w: np.ndarray, m: float, omega: float, offset: float, plane: Foreshortening
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The cut of :meth:`cut` by a foreshortened plane: per row, the line at distance nu from the axis
        intersected with the slice's ellipses (cavity, offset surface) or the circle of the apical cap."""
        length = float(self.length(m))
        z, nu = plane.heart(w, self.length_mm)
        z = np.where(np.abs(z - length) < 1e-9, length, z)  # the mitral row itself, despite rounding
        cx, a, b = self.semi_axes(z, m)
        in_lv = (z >= 0.0) & (z <= length)
        c, h = _line_chord(cx, a, b, omega, nu)
        ce, he = _line_chord(cx, a + offset, b + offset, omega, nu)
        cap_depth = self.apex_wall_ratio * offset
        in_cap = (z < 0.0) & (z >= -cap_depth)
        cap_radius2 = offset * offset * np.clip(1.0 - (z / max(cap_depth, 1e-9)) ** 2, 0.0, None)
        cap_half = np.sqrt(np.clip(cap_radius2 - nu * nu, 0.0, None))  # the cap's sections are circles
        h_epi = np.where(in_lv, he, np.where(in_cap, cap_half, 0.0))
        c_epi = np.where(in_lv, ce, 0.0)
        return np.where(in_lv, c, 0.0), np.where(in_lv, h, 0.0), c_epi, h_epi

    def plane_length(self, m: float, plane: Foreshortening | None = None) -> float:
        """In-plane height of the mitral plane at contraction m: L(m) for a plane through the axis."""
        if plane is None or plane.neutral:
            return float(self.length(m))
        return float(plane.row_of(float(self.length(m)), self.length_mm))

    def plane_floor(self, plane: Foreshortening | None = None) -> float:
        """In-plane height of the row through the apex slice z = 0 (0 for a plane through the axis)."""
        if plane is None or plane.neutral:
            return 0.0
        return float(plane.row_of(0.0, self.length_mm))

    def keep_annulus(self, plane: Foreshortening, share: float = 0.5) -> Foreshortening:
        """``plane`` with its offset reduced where needed so that it passes the axis within ``share`` of the
        smaller semi-axis at the end-systolic mitral plane (minus the septal shift): a sonographer keeps the
        mitral valve in view, so no beat loses the LV from the image. The tilt is kept."""
        if plane.neutral:
            return plane
        z1 = float(self.length(1.0))
        w1 = plane.row_of(z1, self.length_mm)
        _, nu = plane.heart(np.array([w1]), self.length_mm)
        cx, a, b = self.semi_axes(np.array([z1]), 1.0)
        limit = max(share * min(float(a[0]), float(b[0])) - abs(float(cx[0])), 0.0)
        nu1 = float(nu[0])
        if abs(nu1) <= limit:
            return plane
        return Foreshortening(offset_mm=math.copysign(limit, nu1) - (nu1 - plane.offset_mm), tilt_deg=plane.tilt_deg)

    def cut_apex(self, m: float, omega: float, plane: Foreshortening | None = None, offset: float | None = None
                 ) -> float:
        """Lowest in-plane height where the plane cuts the cavity (``offset`` None) or the surface offset
        by ``offset`` mm (with its apical cap): the apex the view shows. Found on a 0.05 mm grid and
        refined by bisection to 1e-6 mm; 0 (the true apex) for a plane through the axis and the cavity."""
        if (plane is None or plane.neutral) and offset is None:
            return 0.0
        wall = 0.0 if offset is None else offset
        cap = self.apex_wall_ratio * wall
        lo = self.plane_floor(plane) - 2.0 * cap - 1.0
        hi = self.plane_length(m, plane)

        def half(w: np.ndarray) -> np.ndarray:
            _, h, _, he = self.cut(w, m, omega, wall, plane=plane)
            return h if offset is None else he

        grid = np.arange(lo, hi, 0.05)
        hit = np.flatnonzero(half(grid) > 0.0)
        if hit.size == 0:
            return hi
        k = int(hit[0])
        if k == 0:
            return float(grid[0])
        a, b = float(grid[k - 1]), float(grid[k])
        for _ in range(40):
            mid = 0.5 * (a + b)
            if half(np.array([mid]))[0] > 0.0:
                b = mid
            else:
                a = mid
        return b


def _ellipse_chord(cx: np.ndarray, a: np.ndarray, b: np.ndarray, omega: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre and half-length of the chord cut from ellipse ((x-cx)/a)^2 + (y/b)^2 <= 1 by the line
    through the origin with direction (cos omega, sin omega)."""
    co, so = np.cos(omega), np.sin(omega)
    a = np.maximum(a, 1e-9)
    b = np.maximum(b, 1e-9)
    qa = co * co / (a * a) + so * so / (b * b)
    qb = cx * co / (a * a)
    qc = cx * cx / (a * a) - 1.0
    disc = np.clip(qb * qb - qa * qc, 0.0, None)
    return qb / qa, np.sqrt(disc) / qa


def _line_chord(cx: np.ndarray, a: np.ndarray, b: np.ndarray, omega: float, nu: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Centre and half-length (along e = (cos omega, sin omega)) of the chord cut from the ellipse
    ((x-cx)/a)^2 + (y/b)^2 <= 1 by the line {l e + nu n}, n = (-sin omega, cos omega); half-length 0
    where the line misses the ellipse. With x = l co - nu so, y = l so + nu co the condition reads
    qa l^2 - 2 qb l + qc <= 0."""
    co, so = np.cos(omega), np.sin(omega)
    a = np.maximum(a, 1e-9)
    b = np.maximum(b, 1e-9)
    ia, ib = 1.0 / (a * a), 1.0 / (b * b)
    shift = nu * so + cx  # x - cx = l co - shift
    qa = co * co * ia + so * so * ib
    qb = co * shift * ia - so * co * nu * ib
    qc = shift * shift * ia + (nu * co) ** 2 * ib - 1.0
    disc = np.clip(qb * qb - qa * qc, 0.0, None)
    return qb / qa, np.sqrt(disc) / qa


def solve_radial_shortening(shape: LVShape, ef_percent: float, max_shortening: float) -> float:
    """The radial shortening g that gives ``ef_percent`` (bisection; clipped to [0.02, max_shortening])."""
    lo, hi = 0.02, max_shortening
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        ef = _with(shape, radial_shortening=mid).ef_percent
        if ef < ef_percent:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _with(shape: LVShape, **changes: float) -> LVShape:
    from dataclasses import replace

    return replace(shape, **changes)


def sample_shape(rng: np.random.Generator, ef_percent: float) -> LVShape:
    """Draw a patient's LV with a target EF (%): low EF comes with a dilated, thinner-walled ventricle."""
    dilation = float(np.clip((55.0 - ef_percent) / 40.0, 0.0, 1.0)) * rng.uniform(0.6, 1.0)
    radius = rng.uniform(20.0, 25.0) * (1.0 + 0.28 * dilation)
    shape = LVShape(
        length_mm=rng.uniform(72.0, 92.0) * (1.0 + 0.12 * dilation),
        radius_x_mm=radius * rng.uniform(0.97, 1.06),
        radius_y_mm=radius * rng.uniform(0.92, 1.02),
        truncation=rng.uniform(0.62, 0.78),
        apex_power=rng.uniform(0.85, 1.05),
        radial_shortening=0.3,
        long_ratio=rng.uniform(0.32, 0.45),
        ratio_y=rng.uniform(0.9, 1.08),
        apical_sparing=rng.uniform(0.45, 0.7),
        septal_share=rng.uniform(0.15, 0.35),
        wall_mm=rng.uniform(8.0, 10.5) * (1.0 - 0.2 * dilation),
        apex_wall_ratio=rng.uniform(0.7, 0.9),
    )
    max_g = 0.72 / max(1.0, shape.ratio_y)
    g = solve_radial_shortening(shape, ef_percent, max_g)
    return _with(shape, radial_shortening=g)
