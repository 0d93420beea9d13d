"""Anatomy of one view plane: ground-truth labels and echogenicity (scattering strength) maps.

Everything is evaluated point-wise in heart-plane coordinates (u, z) of the current frame, so the same
function serves the label raster (image pixels) and the ultrasound simulation (scan-line samples).
Labels follow CAMUS: 0 background, 1 LV cavity, 2 LV myocardium, 3 left atrium. The image also shows
structures without labels: right ventricle and atrium (4CH), septa, valve leaflets, pericardium,
descending aorta, extra-cardiac tissue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gdkvm.data.phantom.difficulty import Papillary
from gdkvm.data.phantom.profiles import (
    CAV_C,
    CAV_H,
    EPI_C,
    EPI_H,
    PERI_IN_C,
    PERI_IN_H,
    PERI_OUT_C,
    PERI_OUT_H,
    ProfileTable,
    ZAxis,
    ZIndex,
    build_table,
)
from gdkvm.data.phantom.shape import Foreshortening, LVShape

LABEL_LV, LABEL_MYO, LABEL_LA = 1, 2, 3


@dataclass(frozen=True)
class Echogenicity:
    """Mean scattering amplitude per tissue, relative to myocardium (= 1)."""

    blood: float
    background: float
    pericardium: float
    valve: float
    thin_wall: float


@dataclass(frozen=True)
class Dropout:
    """A Gaussian patch of echo loss centred at (u, z) in heart coordinates; ``depth`` in [0, 1]."""

    u_mm: float
    z_mm: float
    su_mm: float
    sz_mm: float
    depth: float


@dataclass(frozen=True)
class ViewAnatomy:
    """The non-LV structures of one view and how bright each tissue is."""

    view: str  # "4CH" or "2CH"
    omega: float  # plane angle in the short-axis plane (0: 4CH, pi/2: 2CH)
    la_radius_mm: float  # LA lateral semi-axis at ED
    la_junction: float  # delta: LA centre lies delta * C below the mitral plane
    la_roof_mm: float  # z of the LA roof (fixed over the cycle)
    la_shift_mm: float  # LA centre offset from the annulus centre along u
    peri_gap_mm: float
    peri_thick_mm: float
    mitral_leaflets_mm: tuple[float, float]  # (septal/inferior hinge, lateral/anterior hinge)
    echo: Echogenicity
    dropouts: tuple[Dropout, ...]
    # right heart (4CH only; ignored in 2CH)
    rv_width_mm: float = 0.0
    rv_apex_mm: float = 0.0  # z of the RV apex
    rv_wall_mm: float = 3.5
    tv_offset_mm: float = 6.0  # tricuspid annulus lies this much closer to the apex
    ra_radius_mm: float = 0.0
    ra_roof_mm: float = 0.0
    septum_gap_depth: float = 0.0  # echo loss of the thin interatrial septum (fossa ovalis)
    aorta: tuple[float, float, float] | None = None  # descending aorta (u, z, radius) in mm
    # muscle inside the LV cavity (image only: the LV label runs behind it, as experts trace)
    papillary: tuple[Papillary, ...] = ()
    trabeculation: float = 0.0  # echo of the apical trabecular layer relative to myocardium
    # the view plane's miss of the long axis (neutral: the plane through the axis); with it, every z of
    # this module is the in-plane height w of shape.Foreshortening
    plane: Foreshortening = Foreshortening()


@dataclass(frozen=True)
class FrameState:
    """One frame of one view: the tabulated LV cut plus derived positions of the other structures."""

    table: ProfileTable
    opening: float  # mitral/tricuspid opening in [0, 1]
    annulus_c: float
    annulus_h: float
    annulus_he: float
    la_c: float  # LA half-length along z
    la_r: float
    la_zc: float
    la_uc: float
    ias_u: float  # interatrial septum position
    epi_apex: float = -np.inf  # in-plane height where the cut of the epicardium begins (set when foreshortened)


def frame_state(shape: LVShape, anat: ViewAnatomy, axis: ZAxis, m: float, opening: float) -> FrameState:
    """Tabulate the LV at contraction ``m`` and place the atria relative to the moving mitral plane."""
    plane = anat.plane
    table = build_table(shape, axis, m, anat.omega, anat.peri_gap_mm, anat.peri_thick_mm, plane=plane)
    length = table.length_mm
    c, h, ce, he = shape.cut(np.array([length]), m, anat.omega, table.wall_mm, plane=plane)
    c, h, ce, he = float(c[0]), float(h[0]), float(ce[0]), float(he[0])
    la_c = (anat.la_roof_mm - length) / (1.0 + anat.la_junction)
    epi_apex = -np.inf if plane.neutral else shape.cut_apex(m, anat.omega, plane, offset=table.wall_mm)
    return FrameState(
        table=table,
        opening=float(opening),
        annulus_c=c,
        annulus_h=h,
        annulus_he=he,
        la_c=la_c,
        la_r=anat.la_radius_mm * (1.0 + 0.08 * m),
        la_zc=length + anat.la_junction * la_c,
        la_uc=c + anat.la_shift_mm,
        ias_u=c - 0.5 * (h + he),
        epi_apex=epi_apex,
    )


def _segment_distance(u: np.ndarray, z: np.ndarray, p0: tuple[float, float], p1: tuple[float, float]) -> np.ndarray:
    du, dz = float(p1[0] - p0[0]), float(p1[1] - p0[1])
    inv_len2 = 1.0 / max(du * du + dz * dz, 1e-9)
    pu, pz = u - float(p0[0]), z - float(p0[1])
    t = np.clip((pu * du + pz * dz) * inv_len2, 0.0, 1.0)
    eu, ez = pu - t * du, pz - t * dz
    return np.sqrt(eu * eu + ez * ez)


def _leaflet(hinge: tuple[float, float], inward: float, opening: float, length: float) -> tuple[float, float]:
    """Free end of a valve leaflet: closed it points across the orifice (slightly towards the apex),
    open it points towards the apex along the wall. ``inward`` is +1 or -1 (direction of +u)."""
    angle = float(np.deg2rad(12.0 + 66.0 * opening))
    return hinge[0] + inward * length * np.cos(angle), hinge[1] - length * np.sin(angle)


def _ellipse_q(u: np.ndarray, z: np.ndarray, uc: float, zc: float, ru: float, rz: float) -> np.ndarray:
    """((u - uc) / ru)^2 + ((z - zc) / rz)^2."""
    du = (u - float(uc)) * (1.0 / float(ru))
    dz = (z - float(zc)) * (1.0 / float(rz))
    return du * du + dz * dz


def _band(q: np.ndarray, thickness_ratio: float) -> np.ndarray:
    return (q > 1.0) & (q <= (1.0 + thickness_ratio) ** 2)


def _paint(echo: np.ndarray, mask: np.ndarray, value: float | np.ndarray) -> None:
    """echo[mask] = value, done arithmetically (masked stores are slow on irregular masks)."""
    delta = np.subtract(value, echo, dtype=np.float32)
    delta *= mask
    echo += delta


def tissue_maps(anat: ViewAnatomy, st: FrameState, u: np.ndarray, z: np.ndarray, *,
                zindex: ZIndex | None = None, with_echo: bool = True, myo_texture: np.ndarray | None = None,
                background_texture: np.ndarray | None = None, valve_region: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (uint8, CAMUS codes) and, if ``with_echo``, echogenicity (float32) at points (u, z).

    u, z: arrays of equal shape (mm, heart-plane coordinates of the current frame). ``zindex``: the
    precomputed table positions of z (optional speed-up). The textures, if given, are multiplicative
    fields of the same shape already sampled in tissue coordinates. ``valve_region``: flat indices of
    the points that can hold a valve leaflet (default: all points).
    """
    u = np.asarray(u, dtype=np.float32)
    z = np.asarray(z, dtype=np.float32)
    tb = st.table
    where = zindex if zindex is not None else ZIndex.of(tb.axis, z)
    length = float(tb.length_mm)
    if tb.shared_centre:
        c, h, he = tb.sample(where, (CAV_C, CAV_H, EPI_H))
        ce = c
    else:
        c, h, ce, he = tb.sample(where, (CAV_C, CAV_H, EPI_C, EPI_H))
    upto_base = z <= length
    cav = upto_base & (z >= np.float32(tb.floor_mm)) & (np.abs(u - c) <= h)
    myo = upto_base & (np.abs(u - ce) <= he) & ~cav
    oblique = not anat.plane.neutral
    if oblique:  # rows of a foreshortened plane that pass beside the apex: no chord (h = 0) means no tissue
        cav &= h > 0
        myo &= he > 0
    beyond = ~upto_base
    la_q = _ellipse_q(u, z, st.la_uc, st.la_zc, st.la_r, st.la_c)
    la = beyond & (la_q <= 1.0)
    four = anat.view == "4CH"
    if four:
        la &= u >= st.ias_u + 1.5
    labels = cav.view(np.uint8) * np.uint8(LABEL_LV) + myo.view(np.uint8) * np.uint8(LABEL_MYO)
    labels += la.view(np.uint8) * np.uint8(LABEL_LA)
    if not with_echo:
        return labels, None

    e = anat.echo
    if background_texture is not None:
        echo = background_texture * np.float32(e.background)
    else:
        echo = np.full(u.shape, e.background, np.float32)
    # pericardium around the LV
    if tb.shared_centre:
        hpi, hpo = tb.sample(where, (PERI_IN_H, PERI_OUT_H))
        cpi = cpo = c
    else:
        cpi, hpi, cpo, hpo = tb.sample(where, (PERI_IN_C, PERI_IN_H, PERI_OUT_C, PERI_OUT_H))
    peri = (np.abs(u - cpo) <= hpo) & (np.abs(u - cpi) > hpi) & (z <= length + 3.0)
    if oblique:
        peri &= hpo > 0
    _paint(echo, peri, e.pericardium)
    # left atrium wall
    la_wall = beyond & _band(la_q, 2.5 / st.la_r) & ~la
    if four:
        la_wall &= u >= st.ias_u
    _paint(echo, la_wall, e.thin_wall)
    if valve_region is None:
        valve_region = np.arange(u.size)
    valves = (u.reshape(-1)[valve_region], z.reshape(-1)[valve_region], valve_region)
    if four:
        _paint_right_heart(anat, st, u, z, ce, he, echo, valves)
    if anat.aorta is not None:
        au, az, ar = anat.aorta
        dist = np.sqrt(_ellipse_q(u, z, au, az, 1.0, 1.0))
        _paint(echo, (dist > ar) & (dist <= ar + 2.0), e.thin_wall * 1.3)
        _paint(echo, dist <= ar, e.blood)
    _paint(echo, la, e.blood)
    _paint(echo, myo, np.float32(1.0) if myo_texture is None else myo_texture)
    _paint(echo, cav, e.blood)
    if anat.papillary or anat.trabeculation > 0:
        _paint_cavity_muscle(anat, length, u, z, c, h, cav, echo, myo_texture)
    _paint_mitral(anat, st, echo, valves)
    for d in anat.dropouts:
        gauss = np.exp(-0.5 * _ellipse_q(u, z, d.u_mm, d.z_mm, d.su_mm, d.sz_mm))
        echo *= 1.0 - d.depth * gauss
    return labels, echo


_TRABECULAR_LAYER_MM = 2.5
_TRABECULAR_ZONE = 0.3  # apical fraction of the LV length holding trabeculation


def _paint_cavity_muscle(anat: ViewAnatomy, length: float, u: np.ndarray, z: np.ndarray, c: np.ndarray,
                         h: np.ndarray, cav: np.ndarray, echo: np.ndarray, myo_texture: np.ndarray | None) -> None:
    """Papillary muscles (blobs attached to a wall at mid-cavity) and the apical trabecular layer, both
    placed relative to the current cavity chord so they move with the walls."""
    texture = np.float32(1.0) if myo_texture is None else myo_texture
    offset = u - c
    for p in anat.papillary:
        from_wall = h - p.side * offset  # distance from the wall on side p.side into the cavity
        q = ((from_wall - 0.4 * p.width_mm) * (2.0 / p.width_mm)) ** 2
        q += ((z - p.z_frac * length) * (2.0 / p.length_mm)) ** 2
        _paint(echo, cav & (q <= 1.0), np.float32(p.echo) * texture)
    if anat.trabeculation > 0:
        near_wall = np.clip(1.0 - (h - np.abs(offset)) * (1.0 / _TRABECULAR_LAYER_MM), 0.0, 1.0)
        apical = np.clip(1.0 - z * (1.0 / (_TRABECULAR_ZONE * length)), 0.0, 1.0)
        strands = np.clip(2.0 * (texture - 0.9), 0.0, 2.0)  # fragmented: only where the texture is high
        weight = near_wall * apical
        layer = cav & (weight > 0)
        _paint(echo, layer, echo + np.float32(anat.trabeculation) * weight * strands)


def _paint_right_heart(anat: ViewAnatomy, st: FrameState, u: np.ndarray, z: np.ndarray, ce: np.ndarray,
                       he: np.ndarray, echo: np.ndarray, valves: tuple[np.ndarray, np.ndarray, np.ndarray]
                       ) -> None:
    """RV (crescent beside the septum), RA, interatrial septum and tricuspid leaflets (4CH only)."""
    e = anat.echo
    m = st.table.m
    length = st.table.length_mm
    tv_z = length - anat.tv_offset_mm
    # a foreshortened plane misses the RV apex as it misses the LV apex: move it up by the same amount
    rv_apex = anat.rv_apex_mm + max(0.0, st.epi_apex + st.table.cap_mm)
    rv_span = max(tv_z - rv_apex, 1.0)
    width = anat.rv_width_mm * (1.0 - 0.22 * m)
    v = (ce - he) - u  # distance from the septal epicardium into the RV
    frac = np.clip((z - rv_apex) * (1.0 / rv_span), 0.0, 1.0)
    rv_w = width * frac**0.55
    in_span = (z >= rv_apex) & (z <= tv_z)
    cap = anat.rv_wall_mm * 1.5
    below = (z < rv_apex) & (z >= rv_apex - cap)
    cap_r = np.clip((rv_apex - z) * (1.0 / cap), 0.0, 1.0)
    cap_w = anat.rv_wall_mm * np.sqrt(1.0 - cap_r * cap_r)
    outer = in_span * (rv_w + anat.rv_wall_mm) + below * cap_w
    rv_region = (v > 0) & (v <= outer) & (z <= tv_z)
    rv_cav = in_span & (v > 0) & (v <= rv_w)
    peri = (v > outer + anat.peri_gap_mm) & (v <= outer + (anat.peri_gap_mm + anat.peri_thick_mm)) & (
        z >= rv_apex - cap) & (z <= tv_z + 3.0)
    _paint(echo, peri, e.pericardium)
    _paint(echo, rv_region, e.thin_wall)
    _paint(echo, rv_cav, e.blood)
    # right atrium and interatrial septum
    ra_c = (anat.ra_roof_mm - tv_z) / 1.6
    ra_zc = tv_z + 0.6 * ra_c
    ra_r = anat.ra_radius_mm * (1.0 + 0.06 * m)
    ra_uc = st.ias_u - 1.5 - 0.8 * ra_r
    ra_q = _ellipse_q(u, z, ra_uc, ra_zc, ra_r, ra_c)
    ra_side = (u <= st.ias_u - 1.5) & (z > tv_z)
    _paint(echo, ra_side & _band(ra_q, 2.5 / ra_r), e.thin_wall)
    roof = min(anat.la_roof_mm, anat.ra_roof_mm)
    ias_z = np.clip((z - length) * (1.0 / max(roof - length, 1.0)), 0.0, 1.0) - 0.5
    ias_gain = 1.0 - anat.septum_gap_depth * np.exp(ias_z * ias_z * (-0.5 / 0.15**2))
    ias = (np.abs(u - st.ias_u) <= 1.5) & (z > length) & (z < roof)
    _paint(echo, ias, e.thin_wall * ias_gain)
    _paint(echo, ra_side & (ra_q <= 1.0), e.blood)
    # tricuspid leaflets
    hinge_sep = (st.ias_u - 0.5 * (st.annulus_he - st.annulus_h), tv_z)  # septal epicardium at the base
    hinge_free = (hinge_sep[0] - width, tv_z)
    vu, vz, flat = valves
    flat_echo = echo.reshape(-1)
    for hinge, inward, length_frac in ((hinge_sep, -1.0, 0.45), (hinge_free, 1.0, 0.5)):
        tip = _leaflet(hinge, inward, st.opening, length_frac * width)
        flat_echo[flat[_segment_distance(vu, vz, hinge, tip) <= 0.9]] = e.valve


def _paint_mitral(anat: ViewAnatomy, st: FrameState, echo: np.ndarray,
                  valves: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    zl = st.table.length_mm
    left = (st.annulus_c - st.annulus_h, zl)
    right = (st.annulus_c + st.annulus_h, zl)
    vu, vz, flat = valves
    flat_echo = echo.reshape(-1)
    for hinge, inward, length in ((left, 1.0, anat.mitral_leaflets_mm[0]), (right, -1.0, anat.mitral_leaflets_mm[1])):
        tip = _leaflet(hinge, inward, st.opening, length)
        flat_echo[flat[_segment_distance(vu, vz, hinge, tip) <= 0.9]] = anat.echo.valve
