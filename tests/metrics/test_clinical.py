"""LV volumes, EF and agreement statistics on analytic shapes and hand-computed vectors.

Shapes: an LV in an apical view is modelled as half of a prolate spheroid cut at its equator, flat
mitral base at the bottom, apex at the top. In the view it is the half-ellipse
((x - x0) / a)^2 + ((y - yb) / c)^2 <= 1, y <= yb (image rows grow downwards).

Expected volumes. The true half-spheroid volume is 2/3 pi a^2 c. The method of disks samples the diameter
d(z) = 2a sqrt(1 - (z/c)^2) at z = k c / 20, k = 0..19 (from the base), with height h = c / 20, so
  V_disks = pi/4 sum_k d_k^2 h = pi a^2 c (1/20) sum_k (1 - k^2/400) = pi a^2 c * 13.825 / 20,
i.e. 0.69125 pi a^2 c, 3.7 % above the true volume: a property of the 20-disk rule, not of the code.
The ratio of two such volumes is exact, so EF from disks equals the true EF of the two spheroids.
Pixelisation adds under 1 % for the sizes used here (the contour lies half a pixel outside the pixel
centres and the walk advances in 0.5 px steps).

Geometry choices. The official algorithm takes the base midpoint ON the contour (half a pixel below the
last mask row) and its first disk (k = 0) walks along that edge, so it is sensitive to pixel parity and to
any tilt of the long axis (see test_k0_disk_sits_on_the_base_contour and docs/metrics.md). The shapes use
an even base row and an even half-width a, integer c (a one-pixel apex), so the long axis is exactly
vertical: with a even the halfway index of the base chord is the centre column.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gdkvm.metrics import (
    VolumeError,
    area_length_volume,
    biplane_ef,
    disk_diameters,
    ef_agreement,
    ef_from_volumes,
    legacy_ef_fraction,
    safe_area_length_volume,
    safe_biplane_ef,
    safe_single_plane_ef,
    safe_volume_single_plane,
    single_plane_ef,
    volume_single_plane,
    volumes_biplane,
)

DISK_FACTOR = 13.825 / 20  # (1/20) * sum_{k=0}^{19} (1 - k^2 / 400)
SHAPE, X0, YB = (280, 260), 130, 260


def half_spheroid_view(a: int, c: int, shape=SHAPE, x0=X0, yb=YB) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (((xx - x0) / a) ** 2 + ((yy - yb) / c) ** 2 <= 1) & (yy <= yb)


def full_ellipse(a: float, c: float, shape=(260, 200), center=(130, 100)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((xx - center[1]) / a) ** 2 + ((yy - center[0]) / c) ** 2 <= 1


ED = dict(a=100, c=250)
ES = dict(a=76, c=212)


@pytest.fixture(scope="module")
def ed_es():
    return half_spheroid_view(**ED), half_spheroid_view(**ES)


# --------------------------------------------------------------------------- method of disks


def test_disk_diameters_geometry(ed_es):
    ed, _ = ed_es
    diameters, step, length = disk_diameters(ed)
    # Long axis: from the base contour (row yb + 0.5) to the one-pixel apex contour (row yb - c - 0.5).
    assert length == pytest.approx(ED["c"] + 1)
    assert step == pytest.approx(length / 20)
    expected = 2 * ED["a"] * np.sqrt(1 - (np.arange(20) / 20) ** 2)
    assert diameters.shape == (20,)
    # Each walk ends 0..0.5 px past the mask edge (sampled at pixel centres, edge within 0.5 px of the
    # analytic one) and sample heights sit up to 0.5 px off the analytic k c / 20.
    assert np.all(np.abs(diameters - expected) <= 2.5)


def test_single_plane_volume_and_ef(ed_es):
    ed, es = ed_es
    for geo, mask in ((ED, ed), (ES, es)):
        volume = volume_single_plane(mask)  # px^3
        disks = DISK_FACTOR * math.pi * geo["a"] ** 2 * geo["c"]
        true = 2 / 3 * math.pi * geo["a"] ** 2 * geo["c"]
        assert volume == pytest.approx(disks, rel=0.015)
        assert volume > true  # the 20-disk rule overestimates a half spheroid
    true_ef = 100 * (1 - (ES["a"] ** 2 * ES["c"]) / (ED["a"] ** 2 * ED["c"]))
    result = single_plane_ef(ed, es)
    assert result.ef == pytest.approx(true_ef, abs=0.5)
    assert not result.swapped and result.method == "single-plane-simpson"


def test_spacing_gives_millilitres_and_anisotropic_resampling(ed_es):
    ed, _ = ed_es
    v_px = volume_single_plane(ed)
    # 0.3 mm isotropic pixels: mm^3 = px^3 * 0.3^3, then / 1000 for mL.
    assert volume_single_plane(ed, (0.3, 0.3)) == pytest.approx(v_px * 0.3**3 / 1000, rel=1e-9)
    # The same shape sampled every other row with sy = 2 sx is resampled back to the fine grid.
    fine_d, _, _ = disk_diameters(ed, (0.3, 0.3))
    coarse_d, _, length_mm = disk_diameters(ed[::2], (0.6, 0.3))
    assert length_mm == pytest.approx((ED["c"] + 1) * 0.3, abs=0.6)
    # d_0 is left out: it runs along the base contour, and after doubling the rows the base is two rows
    # thick and lands on an odd row, which shifts the midpoint by a pixel and cuts one side's walk short
    # (see test_k0_disk_sits_on_the_base_contour). The other 19 disks agree with the fine grid.
    assert np.all(np.abs(coarse_d[1:] - fine_d[1:]) <= 2.5 * 0.3)


def test_biplane_volume_two_widths():
    c, a2, a4 = 250, 100, 76
    two_ch = half_spheroid_view(a2, c)
    four_ch = half_spheroid_view(a4, c)
    volume = volumes_biplane(two_ch, four_ch, None, None)
    # Elliptic cross-sections: pi/4 * (2a s)(2b s) * h summed -> 0.69125 pi a b c.
    assert volume == pytest.approx(DISK_FACTOR * math.pi * a2 * a4 * c, rel=0.015)
    assert volume > 2 / 3 * math.pi * a2 * a4 * c


def test_biplane_ef_uses_the_maximum_step_for_both_volumes():
    c_ed, c_es = 250, 212
    masks = {
        "ed_2ch": half_spheroid_view(100, c_ed),
        "ed_4ch": half_spheroid_view(80, c_ed),
        "es_2ch": half_spheroid_view(76, c_es),
        "es_4ch": half_spheroid_view(60, c_es),
    }
    spacing = (0.3, 0.3)
    result = biplane_ef(**masks, spacing_2ch=spacing, spacing_4ch=spacing)
    # The longest long axis (ED, c_ed + 1 px) sets h for ED and ES alike, so c cancels in the ratio:
    # EF = 1 - (a_es b_es) / (a_ed b_ed); with each own step it would be the true spheroid EF instead.
    assert result.step == pytest.approx((c_ed + 1) * 0.3 / 20)
    shared_step_ef = 100 * (1 - (76 * 60) / (100 * 80))
    true_ef = 100 * (1 - (76 * 60 * c_es) / (100 * 80 * c_ed))
    assert result.ef == pytest.approx(shared_step_ef, abs=0.5)
    assert abs(result.ef - true_ef) > 5
    expected_esv = DISK_FACTOR * math.pi * 76 * 60 * c_ed * 0.3**3 / 1000  # mL, ES widths with ED's h
    assert result.esv == pytest.approx(expected_esv, rel=0.02)
    assert result.method == "biplane-simpson" and not result.swapped


def test_biplane_ef_swaps_when_esv_exceeds_edv():
    big = half_spheroid_view(100, 250)
    small = half_spheroid_view(76, 212)
    normal = biplane_ef(big, small, big, small, None, None)
    flipped = biplane_ef(small, big, small, big, None, None)
    assert flipped.swapped and not normal.swapped
    assert flipped.edv == pytest.approx(normal.edv) and flipped.esv == pytest.approx(normal.esv)
    assert flipped.ef == pytest.approx(normal.ef) and flipped.ef > 0


def test_k0_disk_sits_on_the_base_contour():
    # With the base on an odd row, the k = 0 walk starts at row yb + 0.5, which rounds (half to even)
    # to the row below the mask: both walks stop at their first 8 px sample, so d_0 = 16 px. This is
    # the official algorithm's behaviour and is kept on purpose.
    odd = half_spheroid_view(60, 150, shape=(200, 160), x0=80, yb=171)
    diameters, _, _ = disk_diameters(odd)
    assert diameters[0] == pytest.approx(16.0)
    assert diameters[1] == pytest.approx(2 * 60 * math.sqrt(1 - 0.05**2), abs=2.0)


def exhaustive_base(contour: np.ndarray) -> tuple[int, int]:
    """The mitral-base rule as a plain double loop over all pairs (the reference's O(n^3) scan)."""
    best, best_pair = 0.0, (-1, -1)
    for i in range(2, len(contour)):
        for j in range(i):
            dy, dx = contour[j] - contour[i]
            if abs(math.degrees(math.atan2(dy, dx))) > 45:
                continue
            norm = math.hypot(dy, dx)
            if norm == 0:
                continue
            ok = all(
                abs(dy * (contour[i][1] - p[1]) - dx * (contour[i][0] - p[0])) / norm <= 8
                for p in contour[j + 1 : i]
            )
            if ok and norm > best:
                best, best_pair = norm, (j, i)
    return best_pair


def test_base_search_matches_exhaustive_scan():
    from skimage.measure import find_contours

    from gdkvm.metrics.clinical import _find_base

    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[:72, :72]
    for _ in range(4):
        a, c, tilt = rng.uniform(10, 18), rng.uniform(25, 45), rng.uniform(-0.4, 0.4)
        x = (xx - 36) * math.cos(tilt) + (yy - 60) * math.sin(tilt)
        y = -(xx - 36) * math.sin(tilt) + (yy - 60) * math.cos(tilt)
        wobble = 1 + 0.08 * np.sin(3 * np.arctan2(y, x) + rng.uniform(0, 6))
        mask = ((x / a) ** 2 + (y / c) ** 2 <= wobble**2) & (y <= 0)
        contour = find_contours(mask.astype(float), 0.5)[0]
        assert _find_base(contour) == exhaustive_base(contour)


def test_ef_from_volumes():
    assert ef_from_volumes(120.0, 48.0) == pytest.approx(60.0)
    assert math.isnan(ef_from_volumes(0.0, 10.0))
    assert math.isnan(ef_from_volumes(math.nan, 10.0))


def test_unmeasurable_masks_raise_or_give_nan():
    empty = np.zeros((64, 64), dtype=bool)
    good = half_spheroid_view(40, 100, shape=(128, 128), x0=64, yb=110)
    with pytest.raises(VolumeError, match="empty"):
        disk_diameters(empty)
    with pytest.raises(VolumeError):
        volume_single_plane(empty, (0.3, 0.3))
    with pytest.raises(VolumeError):
        area_length_volume(empty)
    assert math.isnan(safe_volume_single_plane(empty))
    assert math.isnan(safe_area_length_volume(empty))
    assert math.isnan(safe_single_plane_ef(good, empty).ef)
    assert math.isnan(safe_biplane_ef(good, good, good, empty, None, None).edv)
    assert safe_single_plane_ef(good, good).ef == pytest.approx(0.0)


# --------------------------------------------------------------------------- area-length


def test_area_length_on_ellipse_is_the_spheroid_volume():
    # A = pi a c and the fitted major axis L = 2c give 8 A^2 / (3 pi L) = 4/3 pi a^2 c.
    for a, c in ((40, 100), (30, 80), (55, 110)):
        volume = area_length_volume(full_ellipse(a, c))
        assert volume == pytest.approx(4 / 3 * math.pi * a**2 * c, rel=0.01)


def test_area_length_regions_and_legacy_ef():
    ed = full_ellipse(40, 100)
    es = full_ellipse(30, 80)
    # Fraction, not percent: 1 - (30^2 * 80) / (40^2 * 100) = 0.55.
    assert legacy_ef_fraction(ed, es) == pytest.approx(0.55, abs=0.01)
    # An empty ES mask counts as volume 0 in the legacy trainer: EF -> V / (V + 1e-6).
    assert legacy_ef_fraction(ed, np.zeros_like(es)) == pytest.approx(1.0)
    # Two blobs: the legacy default treats all foreground as one region; largest_component keeps one.
    two = np.zeros((100, 200), dtype=bool)
    two[10:90, 10:50] = True  # 80 x 40
    two[40:50, 150:160] = True  # 10 x 10
    one = two.copy()
    one[40:50, 150:160] = False
    assert area_length_volume(two, largest_component=True) == pytest.approx(area_length_volume(one))
    assert area_length_volume(two) != pytest.approx(area_length_volume(one))


# --------------------------------------------------------------------------- agreement


def test_agreement_perfect_correlation_hand_values():
    ref = np.array([40.0, 50.0, 60.0, 55.0, 65.0, 10.0])
    pred = np.array([2 * v + 3 for v in ref[:5]] + [math.nan])
    out = ef_agreement(pred, ref)
    # d = pred - ref = ref + 3 = [43, 53, 63, 58, 68]; ref mean 54; squared deviations sum to 370.
    assert out["n"] == 5 and out["n_dropped"] == 1
    assert out["pearson_r"] == pytest.approx(1.0)
    assert out["bias"] == pytest.approx(57.0)
    assert out["sd"] == pytest.approx(math.sqrt(370 / 4))
    assert out["loa_low"] == pytest.approx(57 - 1.96 * math.sqrt(92.5))
    assert out["loa_high"] == pytest.approx(57 + 1.96 * math.sqrt(92.5))
    assert out["mae"] == pytest.approx(57.0)
    assert out["rmse"] == pytest.approx(math.sqrt((43**2 + 53**2 + 63**2 + 58**2 + 68**2) / 5))
    assert out["memsam_bias"] == pytest.approx(57.0)
    assert out["memsam_std"] == pytest.approx(2 * math.sqrt(370 / 5))  # std of pred = 2 * std of ref
    assert out["memsam_corr"] == pytest.approx(1.0)
    assert out["legacy_bias"] == pytest.approx(57.0)
    assert out["legacy_std"] == pytest.approx(math.sqrt(370 / 5))
    assert out["legacy_corr"] == pytest.approx(1.0)


def test_agreement_partial_correlation_hand_values():
    out = ef_agreement([1.0, 2.0, 3.0], [1.0, 3.0, 2.0])
    # Deviations p: -1, 0, 1; r: -1, 1, 0 -> r = 1 / sqrt(2 * 2). d = [0, -1, 1].
    assert out["pearson_r"] == pytest.approx(0.5)
    assert out["bias"] == pytest.approx(0.0)
    assert out["sd"] == pytest.approx(1.0)
    assert out["mae"] == pytest.approx(2 / 3)
    assert out["memsam_bias"] == pytest.approx(2 / 3)
    assert out["memsam_std"] == pytest.approx(math.sqrt(2 / 3))
    assert out["legacy_std"] == pytest.approx(math.sqrt(2 / 3))


def test_agreement_too_few_points_is_nan():
    out = ef_agreement([50.0, math.nan], [55.0, 60.0])
    assert out["n"] == 1 and out["bias"] == pytest.approx(-5.0)
    assert math.isnan(out["sd"]) and math.isnan(out["pearson_r"]) and math.isnan(out["loa_low"])
    empty = ef_agreement([], [])
    assert empty["n"] == 0 and math.isnan(empty["bias"]) and math.isnan(empty["mae"])


def test_biplane_step_rules_on_the_phantom(phantom):
    """On the phantom, the per-instant step matches a perfect biplane tracer of the imaged cuts (the truth's
    ``biplane_EF``: foreshortened planes move it from the exact 3D EF); the official max-over-four-masks
    step inflates ESV because the long axis shortens in systole."""
    import json

    import nibabel as nib

    from gdkvm.metrics.clinical import biplane_ef

    truth = json.loads(phantom.truth_path.read_text())["camus"]
    root = phantom.camus_root / "database_nifti"
    for patient, info in truth.items():
        masks = {}
        for view in ("2CH", "4CH"):
            for phase in ("ED", "ES"):
                img = nib.load(str(root / patient / f"{patient}_{view}_{phase}_gt.nii.gz"))
                zooms = img.header.get_zooms()
                masks[view, phase] = (np.asarray(img.dataobj).T == 1, (zooms[1], zooms[0]))
        args = (masks["2CH", "ED"][0], masks["2CH", "ES"][0], masks["4CH", "ED"][0], masks["4CH", "ES"][0],
                masks["2CH", "ED"][1], masks["4CH", "ED"][1])
        per_instant = biplane_ef(*args, step_rule="per-instant")
        official = biplane_ef(*args)
        assert per_instant.ef == pytest.approx(info["biplane_EF"], abs=2.0)
        assert per_instant.edv == pytest.approx(info["biplane_EDV"], rel=0.05)
        assert official.esv > per_instant.esv
        assert official.ef < per_instant.ef


def test_clean_biplane_recovers_exact_ef_at_low_resolution(phantom):
    """Downsampled to 96 px, the official routine is biased; the clean one stays near the EF of a perfect
    biplane tracer of the imaged cuts (the truth's ``biplane_EF``)."""
    import json

    import cv2
    import nibabel as nib

    from gdkvm.metrics.clinical import biplane_ef, clean_biplane_ef

    truth = json.loads(phantom.truth_path.read_text())["camus"]
    root = phantom.camus_root / "database_nifti"
    err_clean, err_official = [], []
    for patient, info in truth.items():
        args = []
        spacings = {}
        for view in ("2CH", "4CH"):
            for phase in ("ED", "ES"):
                img = nib.load(str(root / patient / f"{patient}_{view}_{phase}_gt.nii.gz"))
                zooms = img.header.get_zooms()
                mask = (np.asarray(img.dataobj).T == 1).astype(np.uint8)
                h, w = mask.shape
                args.append(cv2.resize(mask, (96, 96), interpolation=cv2.INTER_NEAREST).astype(bool))
                spacings[view] = (zooms[1] * h / 96, zooms[0] * w / 96)
        clean = clean_biplane_ef(args[0], args[1], args[2], args[3], spacings["2CH"], spacings["4CH"])
        official = biplane_ef(args[0], args[1], args[2], args[3], spacings["2CH"], spacings["4CH"])
        err_clean.append(abs(clean.ef - info["biplane_EF"]))
        err_official.append(abs(official.ef - info["biplane_EF"]))
        assert clean.method == "biplane-simpson-clean"
    assert max(err_clean) < 4.0, err_clean
    assert np.mean(err_clean) < np.mean(err_official)
