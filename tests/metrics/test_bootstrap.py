"""Percentile bootstrap: coverage of the estimate, shrinking with n, determinism, groups, pairing."""

from __future__ import annotations

import numpy as np
import pytest

from gdkvm.metrics import MetricError, bootstrap_ci, paired_bootstrap_diff


def test_ci_contains_estimate_and_narrows_with_n():
    rng = np.random.default_rng(123)
    small = rng.normal(70.0, 10.0, size=20)
    large = rng.normal(70.0, 10.0, size=800)
    est_s, lo_s, hi_s = bootstrap_ci(small, n_boot=1000)
    est_l, lo_l, hi_l = bootstrap_ci(large, n_boot=1000)
    assert est_s == pytest.approx(small.mean()) and est_l == pytest.approx(large.mean())
    assert lo_s < est_s < hi_s and lo_l < est_l < hi_l
    # The width of a mean's CI scales like sd / sqrt(n): sqrt(800 / 20) = 6.3 times narrower.
    assert (hi_l - lo_l) < (hi_s - lo_s) / 3
    # For a normal sample the 95 % percentile CI is about mean -/+ 1.96 sd / sqrt(n).
    half = 1.96 * large.std(ddof=1) / np.sqrt(large.size)
    assert (hi_l - lo_l) / 2 == pytest.approx(half, rel=0.15)


def test_deterministic_for_a_seed():
    values = np.arange(30, dtype=float) ** 1.5
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)


def test_other_statistics_and_nan_dropping():
    values = [1.0, 2.0, 3.0, 4.0, 100.0, np.nan]
    est, lo, hi = bootstrap_ci(values, stat=np.median, n_boot=500)
    assert est == pytest.approx(3.0) and lo <= est <= hi
    est, lo, hi = bootstrap_ci(values, stat=lambda x: float(np.percentile(x, 50)), n_boot=200)
    assert est == pytest.approx(3.0)  # a statistic without an axis argument takes the slow path


def test_groups_are_resampled_as_units():
    values = [1.0, 1.0, 1.0, 1.0, 5.0]
    groups = ["p1", "p1", "p1", "p1", "p2"]
    est, lo, hi = bootstrap_ci(values, groups=groups, n_boot=500)
    assert est == pytest.approx(3.0)  # mean of the patient means (1 and 5), not of the rows (1.8)
    assert lo == pytest.approx(1.0) and hi == pytest.approx(5.0)  # only 1, 3 or 5 are possible


def test_paired_difference():
    rng = np.random.default_rng(5)
    b = rng.normal(0.85, 0.05, size=200)
    exact = paired_bootstrap_diff(b + 0.02, b, n_boot=500)
    assert exact == pytest.approx((0.02, 0.02, 0.02))  # a constant per-case gain has no spread
    a = b + 0.02 + rng.normal(0, 0.01, size=200)
    est, lo, hi = paired_bootstrap_diff(a, b, n_boot=1000)
    assert lo < est < hi and lo > 0  # the pairing removes the large between-case spread of b
    unpaired_half_width = 1.96 * np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert (hi - lo) / 2 < unpaired_half_width / 3


def test_bad_inputs():
    with pytest.raises(MetricError, match="no finite"):
        bootstrap_ci([np.nan, np.inf])
    with pytest.raises(MetricError, match="alpha"):
        bootstrap_ci([1.0, 2.0], alpha=1.5)
    with pytest.raises(MetricError, match="n_boot"):
        bootstrap_ci([1.0, 2.0], n_boot=0)
    with pytest.raises(MetricError, match="groups"):
        bootstrap_ci([1.0, 2.0], groups=["a"])
    with pytest.raises(MetricError):
        paired_bootstrap_diff([1.0, 2.0], [1.0])
