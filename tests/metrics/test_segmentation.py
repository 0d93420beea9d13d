"""Segmentation metrics on hand-made masks whose surface distances are known in closed form.

Expected values are derived from the geometry in each test (the multiset of surface distances), then
reduced with the formula of each protocol; they are not produced by running the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gdkvm.errors import ConfigError
from gdkvm.metrics import (
    MetricError,
    aggregate_legacy,
    binarize,
    pooled_dice,
    segmentation_metrics,
    segmentation_metrics_batch,
    summarize,
)

MODES = ("clean", "memsam", "gdkvm-legacy")


def square(shape: tuple[int, int], top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def translated_square_distances(side: int, shift: int) -> np.ndarray:
    """Directed distances (px) from the surface ring of a side x side square to the ring of the same
    square translated by ``shift`` px along one axis (2 * shift < side - 1).

    Ring rows parallel to the shift: cells 0..shift-1 are shift-m px from the other ring's corner, the
    rest lie on it (0). Trailing side (interior cells): shift px to the other ring's parallel side.
    Leading side (interior cell k = 1..side-2, inside the other square): min(k, side-1-k, shift).
    """
    parallel = [shift - m for m in range(shift)] + [0] * (side - shift)
    trailing = [shift] * (side - 2)
    leading = [min(k, side - 1 - k, shift) for k in range(1, side - 1)]
    return np.array(parallel * 2 + trailing + leading, dtype=float)


# --------------------------------------------------------------------------- overlap


def test_dice_iou_known_overlap_all_modes():
    # Two 10x10 squares overlapping in a 10x6 strip: TP=60, FP=FN=40.
    pred = square((32, 32), 5, 5, 10)
    ref = square((32, 32), 5, 9, 10)
    tp, fp, fn = 60, 40, 40
    for mode in ("clean", "gdkvm-legacy"):
        out = segmentation_metrics(pred, ref, mode=mode)
        assert out["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert out["iou"] == pytest.approx(tp / (tp + fp + fn))
    mem = segmentation_metrics(pred, ref, mode="memsam")
    assert mem["dice"] == pytest.approx((2 * tp + 1e-5) / (2 * tp + fp + fn + 1e-5), rel=1e-12)
    assert mem["iou"] == pytest.approx((tp + 1e-5) / (tp + fp + fn + 1e-5), rel=1e-12)


def test_identical_masks_are_perfect():
    mask = square((20, 20), 3, 4, 9)
    for mode in MODES:
        out = segmentation_metrics(mask, mask, mode=mode)
        assert out["dice"] == pytest.approx(1.0)
        assert out["iou"] == pytest.approx(1.0)
        assert out["hd"] == out["hd95"] == out["asd"] == 0.0
        assert out["status"] == "ok"


# --------------------------------------------------------------------------- distances


@pytest.mark.parametrize("mode", MODES)
def test_translated_square_hd95_and_asd(mode):
    side, shift = 40, 3
    pred = square((64, 64), 10, 10, side)
    ref = square((64, 64), 10, 10 + shift, side)
    d = translated_square_distances(side, shift)  # the same multiset in both directions (symmetry)
    assert d.size == 4 * (side - 1)
    assert d.sum() == pytest.approx(2 * shift * (side - 1))  # so each directed mean is shift / 2
    expected_hd95 = {
        "clean": max(np.percentile(d, 95), np.percentile(d, 95)),
        "memsam": np.percentile(np.concatenate([d, d]), 95),
        "gdkvm-legacy": max(np.percentile(d, 95), np.percentile(d, 95)),
    }[mode]
    out = segmentation_metrics(pred, ref, mode=mode)
    assert expected_hd95 == shift  # the shift dominates the top 5 % of distances
    assert out["hd95"] == pytest.approx(expected_hd95)
    assert out["hd"] == pytest.approx(shift)
    assert out["asd"] == pytest.approx(shift / 2)
    assert out["unit"] == "px"


@pytest.mark.parametrize("mode", ["clean", "memsam"])
def test_anisotropic_spacing_vertical_shift_uses_sy(mode):
    # A vertical shift of 3 rows: the largest distance is 3 rows * sy, whatever sx is (sx <= sy here
    # and below, so the columns never offer a shorter path to the farthest surface pixels).
    pred = square((64, 64), 10, 10, 40)
    ref = square((64, 64), 13, 10, 40)
    out = segmentation_metrics(pred, ref, spacing=(2.0, 0.5), mode=mode)
    assert out["unit"] == "mm"
    assert out["hd"] == pytest.approx(3 * 2.0)
    assert out["hd95"] == pytest.approx(3 * 2.0)
    iso = segmentation_metrics(pred, ref, spacing=(2.0, 2.0), mode=mode)
    assert iso["hd95"] == pytest.approx(6.0)
    assert iso["asd"] == pytest.approx(2.0 * 3 / 2)  # isotropic spacing scales every distance by 2
    legacy = segmentation_metrics(pred, ref, spacing=(2.0, 0.5), mode="gdkvm-legacy")
    assert legacy["unit"] == "px" and legacy["hd95"] == pytest.approx(3.0)  # legacy ignores spacing


@pytest.mark.parametrize("mode", MODES)
def test_concentric_discs_distance_is_radius_difference(mode):
    yy, xx = np.mgrid[:101, :101]
    r2 = (yy - 50) ** 2 + (xx - 50) ** 2
    outer, inner = r2 <= 30**2, r2 <= 20**2
    out = segmentation_metrics(outer, inner, mode=mode)
    # Discretisation moves each surface by under a pixel.
    assert out["hd"] == pytest.approx(10.0, abs=1.0)
    assert out["hd95"] == pytest.approx(10.0, abs=1.0)
    assert out["asd"] == pytest.approx(10.0, abs=1.0)
    # Dice of concentric discs: 2 * pi r2^2 / (pi r1^2 + pi r2^2).
    assert out["dice"] == pytest.approx(2 * 20**2 / (30**2 + 20**2), abs=0.01)


def test_memsam_and_clean_differ_on_an_outlier_in_the_expected_direction():
    # ref: a 21x21 square. pred: the same square plus a 1-px-wide bar of 9 pixels, D = 15 columns to
    # the right of the square, beside its interior rows. Every bar pixel is its own surface pixel, and
    # its nearest ref surface pixel is straight left on the ref's right column, so it is D px away.
    side, bar, gap = 21, 9, 15
    ref = square((48, 64), 5, 5, side)
    pred = ref.copy()
    right_col = 5 + side - 1
    pred[10 : 10 + bar, right_col + gap] = True
    ring = 4 * (side - 1)
    pred_to_ref = np.array([0.0] * ring + [float(gap)] * bar)
    ref_to_pred = np.zeros(ring)

    clean = segmentation_metrics(pred, ref, mode="clean")
    memsam = segmentation_metrics(pred, ref, mode="memsam")
    legacy = segmentation_metrics(pred, ref, mode="gdkvm-legacy")

    clean_hd95 = max(np.percentile(pred_to_ref, 95), np.percentile(ref_to_pred, 95))
    memsam_hd95 = np.percentile(np.concatenate([pred_to_ref, ref_to_pred]), 95)
    clean_asd = (bar * gap) / (ring + bar + ring)  # pooled mean
    memsam_asd = (bar * gap / (ring + bar) + 0.0) / 2  # mean of the directed means
    assert clean["hd95"] == pytest.approx(clean_hd95)
    assert memsam["hd95"] == pytest.approx(memsam_hd95)
    assert clean["asd"] == pytest.approx(clean_asd)
    assert memsam["asd"] == pytest.approx(memsam_asd)
    assert legacy["hd95"] == pytest.approx(clean_hd95) and legacy["asd"] == pytest.approx(clean_asd)
    # Documented direction: pooling dilutes a one-sided outlier, so memsam reports less.
    assert memsam["hd95"] < clean["hd95"]
    assert memsam["asd"] < clean["asd"]
    assert clean["hd"] == memsam["hd"] == gap


# --------------------------------------------------------------------------- empty masks


def test_empty_rules_clean():
    shape, spacing = (30, 40), (0.5, 0.25)
    full = square(shape, 5, 5, 8)
    empty = np.zeros(shape, dtype=bool)
    both = segmentation_metrics(empty, empty, spacing, mode="clean")
    assert all(math.isnan(both[k]) for k in ("dice", "iou", "hd", "hd95", "asd"))
    assert both["status"] == "both_empty"
    diagonal = math.hypot(29 * 0.5, 39 * 0.25)
    for pred, ref in ((full, empty), (empty, full)):
        one = segmentation_metrics(pred, ref, spacing, mode="clean")
        assert one["dice"] == 0.0 and one["iou"] == 0.0
        assert one["hd"] == one["hd95"] == one["asd"] == pytest.approx(diagonal)
        assert one["status"] == "one_empty" and one["unit"] == "mm"


def test_empty_rules_memsam():
    full = square((30, 40), 5, 5, 8)
    empty = np.zeros_like(full)
    both = segmentation_metrics(empty, empty, mode="memsam")
    # 1e-5 / 1e-5: MemSAM's smoothing scores two empty masks as a perfect match.
    assert both["dice"] == pytest.approx(1.0) and both["iou"] == pytest.approx(1.0)
    assert math.isnan(both["hd95"]) and math.isnan(both["asd"])
    one = segmentation_metrics(full, empty, mode="memsam")
    assert one["dice"] == pytest.approx(1e-5 / (64 + 1e-5))
    assert one["iou"] == pytest.approx(1e-5 / (64 + 1e-5))
    assert math.isnan(one["hd95"]) and math.isnan(one["asd"]) and math.isnan(one["hd"])


def test_empty_rules_legacy_and_aggregate():
    full = square((30, 40), 5, 5, 8)
    empty = np.zeros_like(full)
    pred_empty = segmentation_metrics(empty, full, mode="gdkvm-legacy")
    assert pred_empty["dice"] == 0.0 and pred_empty["iou"] == 0.0
    assert math.isnan(pred_empty["hd95"]) and pred_empty["asd"] == math.inf
    ref_empty = segmentation_metrics(full, empty, mode="gdkvm-legacy")
    assert math.isnan(ref_empty["dice"]) and math.isnan(ref_empty["iou"])
    assert math.isnan(ref_empty["hd95"]) and ref_empty["asd"] == math.inf
    both = segmentation_metrics(empty, empty, mode="gdkvm-legacy")
    assert all(math.isnan(both[k]) for k in ("dice", "iou", "hd95", "asd"))

    assert aggregate_legacy([0.8, math.nan, 0.6]) == pytest.approx(0.7)  # NaN items are skipped
    assert aggregate_legacy([1.0, math.inf, 3.0]) == 0.0  # an inf mean is replaced with 0
    assert aggregate_legacy([math.nan, math.nan]) == 0.0
    assert aggregate_legacy([]) == 0.0


# --------------------------------------------------------------------------- helpers


def test_binarize_thresholds():
    prob = np.array([0.5, 0.55, 0.6, 0.61])
    assert binarize(prob, "clean").tolist() == [False, True, True, True]
    assert binarize(prob, "gdkvm-legacy").tolist() == [False, True, True, True]
    assert binarize(prob, "memsam").tolist() == [False, False, False, True]
    with pytest.raises(ConfigError):
        binarize(prob, "medpy")


def test_pooled_dice_pools_pixels():
    pred = np.zeros((2, 20, 20), dtype=bool)
    ref = np.zeros_like(pred)
    pred[0, 0, 0:10] = True  # frame 0: 10 px vs 10 px, 5 shared
    ref[0, 0, 5:15] = True
    pred[1, 5:11, 5:10] = True  # frame 1: the same 30 px
    ref[1, 5:11, 5:10] = True
    inter, union = 5 + 30, 15 + 30
    assert pooled_dice(pred, ref) == pytest.approx(2 * inter / (union + inter))  # 0.875
    assert pooled_dice(pred, ref) != pytest.approx((0.5 + 1.0) / 2)  # not the per-frame mean
    assert math.isnan(pooled_dice(np.zeros((2, 4, 4)), np.zeros((2, 4, 4))))


def test_batch_table_and_summary():
    a = square((32, 32), 5, 5, 10)
    b = square((32, 32), 5, 9, 10)
    empty = np.zeros_like(a)
    preds = np.stack([a, a, empty])
    refs = np.stack([b, empty, empty])
    table = segmentation_metrics_batch(preds, refs, spacing=[(1, 1), (2, 2), (1, 1)], item_ids=["x", "y", "z"])
    assert list(table.columns) == ["item", "dice", "iou", "hd", "hd95", "asd", "asd_pooled", "unit", "status", "mode"]
    assert table["item"].tolist() == ["x", "y", "z"]
    assert table["status"].tolist() == ["ok", "one_empty", "both_empty"]
    assert table.loc[1, "hd95"] == pytest.approx(math.hypot(31 * 2, 31 * 2))
    summary = summarize(table)
    assert summary["n_total"] == 3 and summary["n_one_empty"] == 1 and summary["n_both_empty"] == 1
    assert summary["dice_mean"] == pytest.approx((0.6 + 0.0) / 2)  # the both-empty item is N/A

    legacy = segmentation_metrics_batch(preds, refs, mode="gdkvm-legacy")
    legacy_summary = summarize(legacy)
    assert legacy_summary["dice_mean"] == pytest.approx(0.6)  # empty-reference items are NaN, skipped
    assert legacy_summary["asd_mean"] == 0.0  # the inf from the one-empty item zeroes the aggregate


def test_bad_inputs_raise_metric_errors():
    a = square((10, 10), 1, 1, 4)
    with pytest.raises(MetricError, match="shapes differ"):
        segmentation_metrics(a, a[:9])
    with pytest.raises(MetricError, match="binary"):
        segmentation_metrics(a * 0.7, a)
    with pytest.raises(MetricError, match="2-D"):
        segmentation_metrics(a[None], a[None])
    with pytest.raises(MetricError, match="spacing"):
        segmentation_metrics(a, a, spacing=(1.0, -1.0))
    with pytest.raises(ConfigError, match="metric mode"):
        segmentation_metrics(a, a, mode="monai")
    with pytest.raises(MetricError):
        segmentation_metrics_batch(np.stack([a, a]), np.stack([a, a]), spacing=[(1, 1)] * 3)
