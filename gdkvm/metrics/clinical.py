"""LV volumes and ejection fraction from binary masks, and EF agreement statistics.

Volume methods (see ``docs/metrics.md``):

* method of disks (Simpson) with the diameters of the official CAMUS EF script, re-implemented here from
  its description: :func:`disk_diameters`, :func:`volume_single_plane`, :func:`volumes_biplane`,
  :func:`biplane_ef` (per patient, maximum step size over the four masks), :func:`single_plane_ef`;
* area-length, the legacy GDKVM surrogate: :func:`area_length_volume`, :func:`legacy_ef_fraction`.

Volumes are in mL when a spacing in mm is given (mm^3 / 1000) and in px^3 when ``spacing`` is None
(pixels taken as 1 x 1, no /1000); EF is unit-free. A mask from which no volume can be measured raises
:class:`VolumeError`; the ``safe_*`` variants return NaN instead so that one bad prediction does not stop
an evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from skimage.measure import find_contours, label, regionprops

from gdkvm.metrics.errors import MetricError, VolumeError
from gdkvm.metrics.surface import as_binary_mask, check_spacing

N_DISKS = 20
#: The mitral-base chord must be within this many degrees of horizontal (directional, see _find_base).
BASE_MAX_ANGLE_DEG = 45.0
#: Every contour point between the chord's ends must lie within this distance (px) of the chord.
BASE_MAX_DEVIATION_PX = 8.0
#: The walk along the disk normal starts this far (px) from the long axis and moves in these steps.
WALK_START_PX = 8.0
WALK_STEP_PX = 0.5


# ---------------------------------------------------------------------------------------------------
# Method of disks


def _to_isotropic(mask: np.ndarray, spacing: tuple[float, float]) -> tuple[np.ndarray, float]:
    """Nearest-neighbour resample so both axes get the finer spacing; returns (mask, new spacing)."""
    finer = min(spacing)
    height, width = mask.shape
    new_h = int(np.rint(height * (spacing[0] / finer)))
    new_w = int(np.rint(width * (spacing[1] / finer)))
    return mask[np.ix_(_nearest_index(height, new_h), _nearest_index(width, new_w))], finer


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel for a nearest resize of n_in -> n_out samples.

    Output pixel o samples the input at (o + 0.5) * n_in / n_out. The position is accumulated one step at a
    time, as Pillow's nearest resize (used by the official script) does, so exact-half ties fall the same way.
    """
    scale = n_in / n_out
    positions = np.cumsum(np.concatenate([[0.5 * scale], np.full(n_out - 1, scale)]))
    return np.minimum(positions.astype(np.int64), n_in - 1)


def _chord_ok(contour: np.ndarray, j: np.ndarray, i: int) -> np.ndarray:
    """For candidate start indices ``j`` (all < i), whether every contour point strictly between j and i
    lies within BASE_MAX_DEVIATION_PX of the line through contour[j] and contour[i]."""
    lo = int(j.min()) + 1
    between = contour[lo:i]  # (m, 2)
    if between.shape[0] == 0:
        return np.ones(j.shape, dtype=bool)
    chord = contour[j] - contour[i]  # (c, 2)
    rel = contour[i][None, :] - between  # (m, 2)
    cross = chord[:, None, 0] * rel[None, :, 1] - chord[:, None, 1] * rel[None, :, 0]  # (c, m)
    dist = np.abs(cross) / np.hypot(chord[:, 0], chord[:, 1])[:, None]
    # Only the points after each candidate's own start count.
    index = np.arange(lo, i)[None, :]
    relevant = index > j[:, None]
    return np.all((dist <= BASE_MAX_DEVIATION_PX) | ~relevant, axis=1)


def _find_base(contour: np.ndarray) -> tuple[int, int]:
    """Longest acceptable mitral-base chord (j, i), j < i, over contour indices.

    The chord is acceptable when the vector from point i back to point j is within 45 degrees of the +x
    axis (|atan2(dy, dx)| <= 45; this direction test is the official one and matches the orientation of
    skimage contours around an LV whose base is at the bottom) and every point between them is close to
    it. Ties keep the first chord in (i, j) order. Candidates are checked longest first, which gives the
    same answer as the exhaustive scan at a fraction of its cost.
    """
    best_length, best = 0.0, None
    for i in range(2, len(contour)):
        diff = contour[:i] - contour[i]
        angle = np.abs(np.degrees(np.arctan2(diff[:, 0], diff[:, 1])))
        length = np.hypot(diff[:, 0], diff[:, 1])
        cand = np.nonzero((angle <= BASE_MAX_ANGLE_DEG) & (length > best_length))[0]
        if cand.size == 0:
            continue
        cand = cand[np.lexsort((cand, -length[cand]))]  # longest first, then smallest j
        for start in range(0, cand.size, 64):
            chunk = cand[start : start + 64]
            ok = _chord_ok(contour, chunk, i)
            if ok.any():
                j = int(chunk[np.argmax(ok)])
                best_length, best = float(length[j]), (j, i)
                break
    if best is None:
        raise VolumeError("mask: no mitral-base chord found on the LV contour")
    return best


def _walk_to_edge(mask: np.ndarray, origins: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Distance (px) from each origin along ``direction`` to the first sample outside the mask or image.

    Samples are taken at 8, 8.5, 9, ... px and rounded to the nearest pixel. origins: (k, 2) (row, col).
    """
    height, width = mask.shape
    n_steps = int(np.ceil((np.hypot(height, width) + 2.0) / WALK_STEP_PX)) + 1
    dist = WALK_START_PX + WALK_STEP_PX * np.arange(n_steps)  # (s,)
    pos = np.rint(origins[:, None, :] + dist[None, :, None] * direction[None, None, :]).astype(np.int64)
    r, c = pos[..., 0], pos[..., 1]
    inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
    hit = np.zeros(inside.shape, dtype=bool)
    hit[inside] = mask[r[inside], c[inside]]
    first_out = np.argmin(hit, axis=1)  # every row has an outside sample at the end
    return dist[first_out]


def disk_diameters(
    mask: np.ndarray, spacing: Sequence[float] | None = None
) -> tuple[np.ndarray, float, float]:
    """The 20 disk diameters of the official CAMUS EF algorithm.

    Steps: resample to isotropic spacing (nearest), take the first 0.5-level contour, find the mitral base
    (longest chord within 45 degrees of horizontal whose in-between contour points are within 8 px),
    take the contour point halfway between its ends (by index) as base midpoint and the contour point
    farthest from it as apex, then at fractions k/20 (k = 0..19) of the midpoint->apex line walk both ways
    along the normal from 8 px in 0.5 px steps until leaving the mask or image.

    Args:
        mask: (H, W) bool LV mask.
        spacing: (sy, sx) pixel size in mm; None for pixel units (1, 1).
    Returns:
        (diameters (20,), step_size, long_axis_length): diameters and L in mm (px when spacing is None),
        step_size = L / 20.
    Raises:
        VolumeError: empty mask, no contour, no base chord, or zero long axis.
    """
    binary = as_binary_mask(mask, "mask")
    checked = check_spacing(spacing)
    if not binary.any():
        raise VolumeError("mask: empty, no LV to measure")
    iso, iso_spacing = _to_isotropic(binary, checked if checked is not None else (1.0, 1.0))
    contours = find_contours(iso.astype(np.float64), 0.5)
    if not contours or len(contours[0]) < 3:
        raise VolumeError("mask: no usable 0.5-level contour")
    contour = contours[0]
    j, i = _find_base(contour)
    # Python's round (half to even) on the half index span, as in the reference script.
    mid = contour[int(j + round((i - j) / 2))]
    to_mid = np.hypot(*(contour - mid).T)
    apex = contour[int(np.argmax(to_mid))]
    length_px = float(to_mid.max())
    if length_px <= 0:
        raise VolumeError("mask: zero long-axis length")
    axis = apex - mid
    normal = np.array([-axis[1], axis[0]]) / np.hypot(axis[0], axis[1])
    origins = mid[None, :] + (np.arange(N_DISKS) / N_DISKS)[:, None] * axis[None, :]
    widths = _walk_to_edge(iso, origins, normal) + _walk_to_edge(iso, origins, -normal)
    diameters = widths * iso_spacing
    long_axis = length_px * iso_spacing
    return diameters, long_axis / N_DISKS, long_axis


def _volume_scale(spacing: Sequence[float] | None) -> float:
    """Factor from (unit of spacing)^3 to the reported unit: mm^3 -> mL, or 1 for px^3."""
    return 1e-3 if spacing is not None else 1.0


def volume_single_plane(mask: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Single-plane method of disks, V = pi/4 * sum(d_i^2) * h, with h = L/20 of this mask.

    Args:
        mask: (H, W) bool LV mask in an apical view.
        spacing: (sy, sx) in mm (result in mL) or None (result in px^3).
    """
    diameters, step, _ = disk_diameters(mask, spacing)
    return float(np.pi / 4 * np.sum(diameters**2) * step * _volume_scale(spacing))


def volumes_biplane(
    mask_2ch: np.ndarray,
    mask_4ch: np.ndarray,
    spacing_2ch: Sequence[float] | None,
    spacing_4ch: Sequence[float] | None,
    step: float | None = None,
) -> float:
    """Biplane method of disks at one instant, V = pi/4 * sum(a_i * b_i) * h.

    Args:
        mask_2ch: (H, W) bool LV mask, apical two-chamber view (diameters a_i).
        mask_4ch: (H', W') bool LV mask, apical four-chamber view (diameters b_i).
        spacing_2ch, spacing_4ch: (sy, sx) in mm (result in mL), or both None (result in px^3).
        step: disk height h in mm (px); default the larger of the two views' L/20.
    """
    if (spacing_2ch is None) != (spacing_4ch is None):
        raise MetricError("spacing_2ch/spacing_4ch: give both spacings or neither")
    a, step_2ch, _ = disk_diameters(mask_2ch, spacing_2ch)
    b, step_4ch, _ = disk_diameters(mask_4ch, spacing_4ch)
    h = max(step_2ch, step_4ch) if step is None else float(step)
    return float(np.pi / 4 * np.sum(a * b) * h * _volume_scale(spacing_2ch))


def ef_from_volumes(edv: float, esv: float) -> float:
    """Ejection fraction in percent, 100 * (EDV - ESV) / EDV; NaN when EDV is not positive or not finite."""
    edv, esv = float(edv), float(esv)
    if not (np.isfinite(edv) and np.isfinite(esv)) or edv <= 0:
        return float("nan")
    return 100.0 * (edv - esv) / edv


@dataclass(frozen=True)
class EFResult:
    """Volumes and EF of one patient or clip. Volumes in mL (px^3 without spacing); EF in percent."""

    edv: float
    esv: float
    ef: float
    step: float
    swapped: bool
    method: str


def biplane_ef(
    ed_2ch: np.ndarray,
    es_2ch: np.ndarray,
    ed_4ch: np.ndarray,
    es_4ch: np.ndarray,
    spacing_2ch: Sequence[float] | None,
    spacing_4ch: Sequence[float] | None,
    step_rule: str = "official",
) -> EFResult:
    """Per-patient biplane Simpson EF as in the official CAMUS script.

    ``step_rule="official"``: one step size, the maximum L/20 over the four masks, is used for both EDV and
    ESV (the official script's rule). Because the long axis shortens in systole, this inflates ESV by about
    L_ED / L_ES and biases EF low (on the phantom, by 5-8 EF points against the exact 3D volumes).
    ``step_rule="per-instant"``: each instant uses the larger L/20 of its two views (the ASE practice);
    on the phantom it matches the exact EF within about 1 point. EDV and ESV are swapped when ESV > EDV.
    No rounding (the official script rounds to integer mL and EF, MemSAM to 2 decimals).

    Args:
        ed_2ch, es_2ch: (H, W) bool LV masks of the two-chamber view at ED and ES.
        ed_4ch, es_4ch: (H', W') bool LV masks of the four-chamber view at ED and ES.
        spacing_2ch, spacing_4ch: (sy, sx) in mm, or both None for pixel units.
    """
    if (spacing_2ch is None) != (spacing_4ch is None):
        raise MetricError("spacing_2ch/spacing_4ch: give both spacings or neither")
    d_ed_2, s1, _ = disk_diameters(ed_2ch, spacing_2ch)
    d_es_2, s2, _ = disk_diameters(es_2ch, spacing_2ch)
    d_ed_4, s3, _ = disk_diameters(ed_4ch, spacing_4ch)
    d_es_4, s4, _ = disk_diameters(es_4ch, spacing_4ch)
    if step_rule == "official":
        step = step_ed = step_es = max(s1, s2, s3, s4)
    elif step_rule == "per-instant":
        step_ed, step_es = max(s1, s3), max(s2, s4)
        step = step_ed
    else:
        raise MetricError(f"step_rule: expected 'official' or 'per-instant', got {step_rule!r}")
    scale = _volume_scale(spacing_2ch)
    edv = float(np.pi / 4 * np.sum(d_ed_2 * d_ed_4) * step_ed * scale)
    esv = float(np.pi / 4 * np.sum(d_es_2 * d_es_4) * step_es * scale)
    swapped = esv > edv
    if swapped:
        edv, esv = esv, edv
    return EFResult(edv, esv, ef_from_volumes(edv, esv), step, swapped, "biplane-simpson")


def single_plane_ef(ed: np.ndarray, es: np.ndarray, spacing: Sequence[float] | None = None) -> EFResult:
    """Single-plane Simpson EF of one view (e.g. EchoNet A4C, pixel units).

    Each mask uses its own step size L/20 (a shared step would bias ESV when ED and ES have different
    long axes); EDV and ESV are swapped when ESV > EDV. ``step`` in the result is the ED step.
    """
    d_ed, step_ed, _ = disk_diameters(ed, spacing)
    d_es, step_es, _ = disk_diameters(es, spacing)
    scale = _volume_scale(spacing)
    edv = float(np.pi / 4 * np.sum(d_ed**2) * step_ed * scale)
    esv = float(np.pi / 4 * np.sum(d_es**2) * step_es * scale)
    swapped = esv > edv
    if swapped:
        edv, esv = esv, edv
    return EFResult(edv, esv, ef_from_volumes(edv, esv), step_ed, swapped, "single-plane-simpson")


# ---------------------------------------------------------------------------------------------------
# Area-length (legacy GDKVM surrogate)


def area_length_volume(mask: np.ndarray, largest_component: bool = False) -> float:
    """Single-plane area-length volume, V = 8 A^2 / (3 pi L), in px^3.

    A is the pixel count and L the major-axis length of the fitted ellipse (skimage
    ``axis_major_length``), both in pixels. By default all foreground pixels form one region, exactly as
    the legacy trainer's ``regionprops`` on the unlabelled mask; ``largest_component=True`` keeps only the
    largest 8-connected component.

    Raises:
        VolumeError: empty mask or zero major axis (a single pixel).
    """
    binary = as_binary_mask(mask, "mask")
    if not binary.any():
        raise VolumeError("mask: empty, no LV to measure")
    regions = regionprops(label(binary, connectivity=2) if largest_component else binary.astype(np.uint8))
    region = max(regions, key=lambda r: r.area)
    length = float(region.axis_major_length)
    if length <= 0:
        raise VolumeError("mask: zero major-axis length")
    area = float(region.area)
    return 8.0 * area**2 / (3.0 * np.pi * length)


def legacy_ef_fraction(ed: np.ndarray, es: np.ndarray) -> float:
    """The legacy GDKVM trainer's EF: (V_ED - V_ES) / (V_ED + 1e-6) with area-length volumes.

    A FRACTION (multiply by 100 for percent). As in the trainer, an empty or degenerate mask counts as
    volume 0 instead of raising, and EDV/ESV are not swapped.
    """
    v_ed = safe_area_length_volume(ed)
    v_es = safe_area_length_volume(es)
    v_ed = 0.0 if np.isnan(v_ed) else v_ed
    v_es = 0.0 if np.isnan(v_es) else v_es
    return (v_ed - v_es) / (v_ed + 1e-6)


# ---------------------------------------------------------------------------------------------------
# NaN-returning variants for evaluation loops


def safe_volume_single_plane(mask: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """:func:`volume_single_plane`, or NaN when the mask is unmeasurable (empty, no base, ...)."""
    try:
        return volume_single_plane(mask, spacing)
    except VolumeError:
        return float("nan")


def safe_area_length_volume(mask: np.ndarray, largest_component: bool = False) -> float:
    """:func:`area_length_volume`, or NaN when the mask is empty or degenerate."""
    try:
        return area_length_volume(mask, largest_component)
    except VolumeError:
        return float("nan")


def _nan_result(method: str) -> EFResult:
    nan = float("nan")
    return EFResult(nan, nan, nan, nan, False, method)


def safe_biplane_ef(
    ed_2ch: np.ndarray,
    es_2ch: np.ndarray,
    ed_4ch: np.ndarray,
    es_4ch: np.ndarray,
    spacing_2ch: Sequence[float] | None,
    spacing_4ch: Sequence[float] | None,
    step_rule: str = "official",
) -> EFResult:
    """:func:`biplane_ef`, or an all-NaN result when any of the four masks is unmeasurable."""
    try:
        return biplane_ef(ed_2ch, es_2ch, ed_4ch, es_4ch, spacing_2ch, spacing_4ch, step_rule=step_rule)
    except VolumeError:
        return _nan_result("biplane-simpson")


def safe_single_plane_ef(ed: np.ndarray, es: np.ndarray, spacing: Sequence[float] | None = None) -> EFResult:
    """:func:`single_plane_ef`, or an all-NaN result when either mask is unmeasurable."""
    try:
        return single_plane_ef(ed, es, spacing)
    except VolumeError:
        return _nan_result("single-plane-simpson")


# ---------------------------------------------------------------------------------------------------
# Agreement statistics


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


#: The agreement blocks of an evaluation's ``ef`` summary (gdkvm.engine.evaluate.summarize_ef) and the one
#: label each gets in the terminal table and in the report. "method bias": the EF method on the reference
#: masks against the dataset's own EF, i.e. the bias of the volume routine itself, shown beside each
#: comparison with the dataset EF.
EF_REFERENCES: dict[str, str] = {"pred_vs_ref_masks": "reference masks", "pred_vs_manifest": "dataset EF",
                                 "ref_masks_vs_manifest": "method bias"}


def ef_agreement(pred: Sequence[float] | np.ndarray, ref: Sequence[float] | np.ndarray) -> dict[str, float | int]:
    """Agreement between predicted and reference EF under three conventions.

    Pairs with a NaN/inf on either side are dropped first (``n`` kept, ``n_dropped`` removed).

    Standard (re-release, Bland-Altman with d = pred - ref): ``pearson_r``, ``bias`` = mean(d),
    ``sd`` = sample SD of d (ddof=1), ``loa_low``/``loa_high`` = bias -/+ 1.96 sd, ``mae`` = mean|d|,
    ``rmse``.
    MemSAM ``utils/tools.py``: ``memsam_bias`` = mean|ref - pred| (really the MAE), ``memsam_std`` =
    np.std(pred) (spread of the predictions, ddof=0), ``memsam_corr`` = Pearson r.
    Legacy GDKVM trainer: ``legacy_bias`` = mean(pred - ref), ``legacy_std`` = np.std(d) (ddof=0),
    ``legacy_corr`` = Pearson r.

    Args:
        pred, ref: (N,) EF values in the same unit (percent or fraction).
    Returns:
        dict of the keys above; statistics that need more points than are left are NaN.
    """
    p = np.asarray(pred, dtype=np.float64).ravel()
    r = np.asarray(ref, dtype=np.float64).ravel()
    if p.shape != r.shape:
        raise MetricError(f"pred/ref: lengths differ, {p.size} vs {r.size}")
    keep = np.isfinite(p) & np.isfinite(r)
    p, r = p[keep], r[keep]
    n = int(p.size)
    nan = float("nan")
    d = p - r
    corr = _pearson(p, r)
    mean_d = float(d.mean()) if n else nan
    sd = float(np.std(d, ddof=1)) if n >= 2 else nan
    return {
        "n": n,
        "n_dropped": int((~keep).sum()),
        "pearson_r": corr,
        "bias": mean_d,
        "sd": sd,
        "loa_low": mean_d - 1.96 * sd,
        "loa_high": mean_d + 1.96 * sd,
        "mae": float(np.abs(d).mean()) if n else nan,
        "rmse": float(np.sqrt(np.mean(d**2))) if n else nan,
        "memsam_bias": float(np.abs(r - p).mean()) if n else nan,
        "memsam_std": float(np.std(p)) if n else nan,
        "memsam_corr": corr,
        "legacy_bias": mean_d,
        "legacy_std": float(np.std(d)) if n else nan,
        "legacy_corr": corr,
    }


# ---------------------------------------------------------------------------------------------------
# Resolution-robust ("clean") disk measurements

#: Masks are measured on a grid whose long side is at least this many pixels.
MEASURE_MIN_SIDE = 448


def upsample_for_disks(mask: np.ndarray, spacing: Sequence[float] | None,
                       factor: int | None = None) -> tuple[np.ndarray, tuple[float, float] | None, int]:
    """Upsample a mask so the disk routine's fixed pixel constants stop dominating small cavities.

    The diameter walk starts 8 px from the long axis, so on a 112-128 px frame every disk is at least
    16 px wide and end-systolic cavities are overestimated (on the phantom: EF 4-9 points low). The mask
    is upsampled by an integer factor f (linear interpolation of the 0/1 mask, threshold 0.5), by default
    the smallest that makes its long side >= MEASURE_MIN_SIDE. Returns (mask, spacing / f or None, f); px^3 volumes on the new grid
    are f^3 times those of the input grid.
    """
    import cv2

    mask = as_binary_mask(mask, "mask")
    if factor is None:
        factor = max(1, int(np.ceil(MEASURE_MIN_SIDE / max(mask.shape))))
    if factor > 1:
        mask = cv2.resize(mask.astype(np.float32), None, fx=factor, fy=factor,
                          interpolation=cv2.INTER_LINEAR) > 0.5
    new_spacing = None if spacing is None else (float(spacing[0]) / factor, float(spacing[1]) / factor)
    return mask, new_spacing, factor


def clean_volume_single_plane(mask: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Single-plane disk volume measured on the upsampled grid, in the input grid's units; NaN if unmeasurable."""
    up, sp, factor = upsample_for_disks(mask, spacing)
    vol = safe_volume_single_plane(up, sp)
    return vol if spacing is not None else vol / factor**3


def clean_single_plane_ef(ed: np.ndarray, es: np.ndarray, spacing: Sequence[float] | None = None) -> EFResult:
    """Single-plane EF from :func:`clean_volume_single_plane` at ED and ES (NaN when unmeasurable)."""
    edv, esv = clean_volume_single_plane(ed, spacing), clean_volume_single_plane(es, spacing)
    return EFResult(edv, esv, ef_from_volumes(edv, esv), float("nan"), False, "single-plane-simpson-clean")


def clean_biplane_ef(
    ed_2ch: np.ndarray,
    es_2ch: np.ndarray,
    ed_4ch: np.ndarray,
    es_4ch: np.ndarray,
    spacing_2ch: Sequence[float] | None,
    spacing_4ch: Sequence[float] | None,
) -> EFResult:
    """Biplane EF on upsampled masks with the per-instant step (see :func:`biplane_ef`); NaN when unmeasurable.

    Both views are upsampled by the same factor so pixel-unit volumes stay comparable.
    """
    side = max(max(np.shape(m)) for m in (ed_2ch, es_2ch, ed_4ch, es_4ch))
    factor = max(1, int(np.ceil(MEASURE_MIN_SIDE / side)))
    ups = [upsample_for_disks(m, s, factor)
           for m, s in ((ed_2ch, spacing_2ch), (es_2ch, spacing_2ch), (ed_4ch, spacing_4ch), (es_4ch, spacing_4ch))]
    res = safe_biplane_ef(ups[0][0], ups[1][0], ups[2][0], ups[3][0], ups[0][1], ups[2][1], step_rule="per-instant")
    if spacing_2ch is None:
        f3 = float(ups[0][2]) ** 3
        res = EFResult(res.edv / f3, res.esv / f3, res.ef, res.step, res.swapped, res.method)
    return EFResult(res.edv, res.esv, res.ef, res.step, res.swapped, "biplane-simpson-clean")
