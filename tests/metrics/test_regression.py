"""The EF agreement line: statsmodels OLS against the closed-form least-squares formulas."""

import numpy as np
import pytest
from scipy import stats

from gdkvm.metrics.regression import ols_fit


def test_fit_and_band_match_the_textbook_formulas():
    rng = np.random.default_rng(0)
    ref = rng.uniform(20, 75, 40)
    pred = 3.0 + 0.9 * ref + rng.normal(0, 4, 40)
    grid = np.array([10.0, 45.0, 80.0])
    fit = ols_fit(ref, pred, grid)
    slope, intercept = np.polyfit(ref, pred, 1)
    assert fit.slope == pytest.approx(slope) and fit.intercept == pytest.approx(intercept)
    n = ref.size
    resid = pred - (intercept + slope * ref)
    s = np.sqrt(resid @ resid / (n - 2))
    sxx = np.sum((ref - ref.mean()) ** 2)
    t = stats.t.ppf(0.975, n - 2)
    half = t * s * np.sqrt(1.0 / n + (grid - ref.mean()) ** 2 / sxx)
    mean = intercept + slope * grid
    np.testing.assert_allclose(fit.band_low, mean - half, rtol=1e-9)
    np.testing.assert_allclose(fit.band_high, mean + half, rtol=1e-9)
    se_slope = s / np.sqrt(sxx)
    assert fit.slope_ci == pytest.approx((slope - t * se_slope, slope + t * se_slope))
    assert fit.r == pytest.approx(np.corrcoef(ref, pred)[0, 1])
    assert np.argmin(fit.band_high - fit.band_low) == 1  # narrowest near the mean of the references


def test_no_fit_for_too_few_or_constant_points():
    assert ols_fit(np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.array([0.0, 1.0])) is None
    assert ols_fit(np.full(5, 50.0), np.arange(5.0), np.array([0.0, 1.0])) is None
