"""Cross-check of the three segmentation-metric modes against medpy and MONAI themselves.

medpy and MONAI are test dependencies (the ``dev`` extra, which ``make setup`` installs): the imports below
are plain imports, so a missing oracle fails this module loudly instead of skipping it.

Which oracle each mode must equal (docs/metrics.md section 2):

| mode | Dice / IoU | HD | HD95 | ASD | asd_pooled |
|---|---|---|---|---|---|
| clean | medpy ``dc`` / ``jc`` | medpy ``hd`` | MONAI ``compute_hausdorff_distance(percentile=95, spacing)`` | MONAI ``compute_average_surface_distance(symmetric=True, spacing)`` = medpy 0.5.2 ``assd`` | same as ASD |
| memsam | medpy ``dc`` / ``jc`` up to the 1e-5 smoothing | medpy ``hd`` | medpy ``hd95`` | medpy 0.4.0 ``assd`` = mean(medpy ``asd(p, r)``, ``asd(r, p)``) = mean of the two MONAI ``symmetric=False`` ASDs | medpy 0.5.2 ``assd`` |
| gdkvm-legacy | MONAI ``compute_dice`` / ``compute_iou`` | MONAI HD (no percentile) | MONAI HD95 | MONAI symmetric ASD | same as ASD |

Distances in ``clean`` and ``memsam`` use the spacing; ``gdkvm-legacy`` ignores it, so its oracle gets none.
"""

from __future__ import annotations

import math
import warnings
from importlib.metadata import version

import medpy.metric.binary as medpy_binary
import numpy as np
import pytest
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
)
from scipy import ndimage

from gdkvm.metrics import segmentation_metrics

SPACINGS = [None, (1.0, 1.0), (0.7, 0.3), (0.154, 0.308), (2.5, 0.9)]

# MONAI computes in float32; medpy and gdkvm in float64.
MONAI_RTOL = 1e-5
MEDPY_RTOL = 1e-10


def _random_blob(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=rng.uniform(1.5, 4.0))
    mask = noise > np.quantile(noise, rng.uniform(0.55, 0.9))
    mask[0, :] |= rng.random() < 0.3  # sometimes touch the image border
    return mask


def _thin_shape(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """1-2 px wide lines, diagonals, rings and single pixels: surfaces of very different sizes."""
    height, width = shape
    mask = np.zeros(shape, dtype=bool)
    kind = rng.integers(4)
    if kind == 0:  # horizontal or vertical line, 1 or 2 px thick
        thick = int(rng.integers(1, 3))
        if rng.random() < 0.5:
            row = int(rng.integers(1, height - 2))
            mask[row:row + thick, rng.integers(0, width // 3):rng.integers(width // 2, width)] = True
        else:
            col = int(rng.integers(1, width - 2))
            mask[rng.integers(0, height // 3):rng.integers(height // 2, height), col:col + thick] = True
    elif kind == 1:  # diagonal
        n = min(height, width)
        start = rng.integers(0, n // 3)
        idx = np.arange(start, rng.integers(n // 2, n))
        mask[idx, idx] = True
    elif kind == 2:  # ring
        yy, xx = np.mgrid[:height, :width]
        cy, cx, radius = height / 2 + rng.uniform(-3, 3), width / 2 + rng.uniform(-3, 3), rng.uniform(4, 10)
        dist = np.hypot(yy - cy, xx - cx)
        mask = (dist > radius - 1) & (dist < radius + 0.5)
    else:  # scattered single pixels
        mask[rng.integers(0, height, 6), rng.integers(0, width, 6)] = True
    return mask


def _pairs(seed: int, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    pairs = []
    for k in range(n):
        shape = (int(rng.integers(24, 48)), int(rng.integers(24, 48)))
        makers = (_random_blob, _thin_shape)
        pred = makers[k % 2](rng, shape)
        ref = makers[(k // 2) % 2](rng, shape)
        if pred.any() and ref.any():
            pairs.append((pred, ref))
    return pairs


RANDOM_PAIRS = _pairs(seed=12, n=40)
CASES = [(i, s) for i in range(len(RANDOM_PAIRS)) for s in SPACINGS]


def _t(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(mask[None, None].astype(np.float32))


def _monai_hd(pred, ref, spacing, percentile=None) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = compute_hausdorff_distance(_t(pred), _t(ref), include_background=True, percentile=percentile,
                                         spacing=None if spacing is None else list(spacing))
    return float(out.item())


def _monai_asd(pred, ref, spacing, symmetric) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = compute_average_surface_distance(_t(pred), _t(ref), include_background=True, symmetric=symmetric,
                                               spacing=None if spacing is None else list(spacing))
    return float(out.item())


def _same(actual: float, expected: float, rtol: float) -> bool:
    """Equal within rtol (plus a tiny absolute slack), NaN == NaN, inf == inf."""
    if math.isnan(expected) or math.isinf(expected):
        return (math.isnan(actual) and math.isnan(expected)) or actual == expected
    return math.isclose(actual, expected, rel_tol=rtol, abs_tol=1e-9)


def test_oracle_versions():
    """The pooled-assd statements below are about medpy >= 0.5; MONAI's functions moved in 1.0."""
    major, minor = (int(v) for v in version("medpy").split(".")[:2])
    assert (major, minor) >= (0, 5), f"medpy {version('medpy')}: assd pools both directions only from 0.5"
    assert int(version("monai").split(".")[0]) >= 1


def test_shapes_cover_thin_and_unequal_surfaces():
    """The random set holds pairs where the two ASD definitions really differ (else the test proves little)."""
    rel = []
    for pred, ref in RANDOM_PAIRS:
        out = segmentation_metrics(pred, ref, (0.7, 0.3), "memsam")
        rel.append(abs(out["asd"] - out["asd_pooled"]) / out["asd_pooled"])
    assert max(rel) > 0.2


@pytest.mark.parametrize(("index", "spacing"), CASES)
def test_clean_matches_medpy_and_monai(index, spacing):
    pred, ref = RANDOM_PAIRS[index]
    out = segmentation_metrics(pred, ref, spacing, "clean")
    assert _same(out["dice"], medpy_binary.dc(pred, ref), MEDPY_RTOL)
    assert _same(out["iou"], medpy_binary.jc(pred, ref), MEDPY_RTOL)
    assert _same(out["hd"], medpy_binary.hd(pred, ref, voxelspacing=spacing), MEDPY_RTOL)
    assert _same(out["hd95"], _monai_hd(pred, ref, spacing, percentile=95), MONAI_RTOL)
    assert _same(out["asd"], _monai_asd(pred, ref, spacing, symmetric=True), MONAI_RTOL)
    assert _same(out["asd"], medpy_binary.assd(pred, ref, voxelspacing=spacing), MEDPY_RTOL)  # medpy 0.5.2
    assert out["asd_pooled"] == out["asd"]


@pytest.mark.parametrize(("index", "spacing"), CASES)
def test_memsam_matches_medpy(index, spacing):
    pred, ref = RANDOM_PAIRS[index]
    out = segmentation_metrics(pred, ref, spacing, "memsam")
    # MemSAM's own Dice/IoU carry a 1e-5 smoothing term; on non-empty masks that moves them < 1e-6.
    assert abs(out["dice"] - medpy_binary.dc(pred, ref)) < 1e-6
    assert abs(out["iou"] - medpy_binary.jc(pred, ref)) < 1e-6
    assert _same(out["hd"], medpy_binary.hd(pred, ref, voxelspacing=spacing), MEDPY_RTOL)
    assert _same(out["hd95"], medpy_binary.hd95(pred, ref, voxelspacing=spacing), MEDPY_RTOL)
    # medpy 0.4.0 assd: the mean of the two directed means (medpy asd is directed in every version)
    medpy04_assd = np.mean([medpy_binary.asd(pred, ref, voxelspacing=spacing),
                            medpy_binary.asd(ref, pred, voxelspacing=spacing)])
    assert _same(out["asd"], float(medpy04_assd), MEDPY_RTOL)
    monai_directed = np.mean([_monai_asd(pred, ref, spacing, symmetric=False),
                              _monai_asd(ref, pred, spacing, symmetric=False)])
    assert _same(out["asd"], float(monai_directed), MONAI_RTOL)
    # medpy 0.5.2 assd pools both directions: that is asd_pooled, not asd
    assert _same(out["asd_pooled"], medpy_binary.assd(pred, ref, voxelspacing=spacing), MEDPY_RTOL)
    assert _same(out["asd_pooled"], _monai_asd(pred, ref, spacing, symmetric=True), MONAI_RTOL)


@pytest.mark.parametrize(("index", "spacing"), CASES)
def test_legacy_matches_monai_in_pixels(index, spacing):
    pred, ref = RANDOM_PAIRS[index]
    out = segmentation_metrics(pred, ref, spacing, "gdkvm-legacy")
    assert out["unit"] == "px"
    assert _same(out["dice"], float(compute_dice(_t(pred), _t(ref), include_background=True).item()), MONAI_RTOL)
    assert _same(out["iou"], float(compute_iou(_t(pred), _t(ref), include_background=True).item()), MONAI_RTOL)
    assert _same(out["hd"], _monai_hd(pred, ref, None), MONAI_RTOL)
    assert _same(out["hd95"], _monai_hd(pred, ref, None, percentile=95), MONAI_RTOL)
    assert _same(out["asd"], _monai_asd(pred, ref, None, symmetric=True), MONAI_RTOL)
    assert out["asd_pooled"] == out["asd"]


def _box(shape=(20, 24), rows=slice(4, 11), cols=slice(5, 15)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return mask


EMPTY = np.zeros((20, 24), dtype=bool)
EMPTY_CASES = {"pred_empty": (EMPTY, _box()), "ref_empty": (_box(), EMPTY), "both_empty": (EMPTY, EMPTY)}


@pytest.mark.parametrize("case", sorted(EMPTY_CASES))
def test_legacy_empty_masks_match_monai(case):
    """Legacy mode returns what MONAI returns on empty masks (NaN / inf included)."""
    pred, ref = EMPTY_CASES[case]
    out = segmentation_metrics(pred, ref, (0.5, 0.5), "gdkvm-legacy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {
            "dice": float(compute_dice(_t(pred), _t(ref), include_background=True).item()),
            "iou": float(compute_iou(_t(pred), _t(ref), include_background=True).item()),
            "hd": _monai_hd(pred, ref, None),
            "hd95": _monai_hd(pred, ref, None, percentile=95),
            "asd": _monai_asd(pred, ref, None, symmetric=True),
            "asd_pooled": _monai_asd(pred, ref, None, symmetric=True),
        }
    for key, value in expected.items():
        assert _same(out[key], value, MONAI_RTOL), (key, out[key], value)


@pytest.mark.parametrize("case", sorted(EMPTY_CASES))
def test_memsam_empty_masks(case):
    """medpy raises on an empty mask (MemSAM then stops); memsam mode gives NaN distances instead, and
    MemSAM's smoothed Dice/IoU (its own formula, not medpy's dc/jc, which give NaN/1 for two empty masks)."""
    pred, ref = EMPTY_CASES[case]
    for fn in (medpy_binary.hd95, medpy_binary.assd, medpy_binary.asd):
        with pytest.raises(RuntimeError):
            fn(pred, ref)
    out = segmentation_metrics(pred, ref, (0.5, 0.5), "memsam")
    for key in ("hd", "hd95", "asd", "asd_pooled"):
        assert math.isnan(out[key])
    if case == "both_empty":
        assert out["dice"] == 1.0 and out["iou"] == 1.0
    else:
        assert out["dice"] < 1e-5 and out["iou"] < 1e-5
        assert medpy_binary.dc(pred, ref) == 0.0 and medpy_binary.jc(pred, ref) == 0.0


def test_memsam_asd_differs_from_medpy_05_on_a_thin_shape():
    """A short one-pixel line just inside the edge of a filled box: its few surface pixels are close to the
    box edge and the box's many surface pixels are far from it. The medpy 0.4.0 assd weighs the two
    directions equally, medpy 0.5's weighs the pixels: they differ by about 45 %, so numbers scored with
    medpy 0.5 cannot be compared with MemSAM's medpy-0.4 ones."""
    ref = _box((40, 40), slice(5, 35), slice(5, 35))
    pred = np.zeros((40, 40), dtype=bool)
    pred[6, 8:14] = True
    out = segmentation_metrics(pred, ref, (1.0, 1.0), "memsam")
    medpy05 = medpy_binary.assd(pred, ref, voxelspacing=(1.0, 1.0))
    assert _same(out["asd_pooled"], medpy05, MEDPY_RTOL)
    assert abs(out["asd"] - medpy05) / medpy05 > 0.4
