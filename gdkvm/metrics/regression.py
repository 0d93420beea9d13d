"""Least-squares agreement line between predicted and reference EF, with confidence bands (statsmodels OLS).

``ols_fit(ref, pred, grid)`` fits pred = intercept + slope * ref and returns the 95 % confidence interval
of the slope and the intercept and of the mean prediction along ``grid`` (the band the report draws).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RegressionFit:
    """The fitted line and its 95 % confidence intervals; ``band_*`` are (len(grid),) along ``grid``."""

    slope: float
    intercept: float
    slope_ci: tuple[float, float]
    intercept_ci: tuple[float, float]
    r: float
    n: int
    grid: np.ndarray
    band_low: np.ndarray
    band_high: np.ndarray


def ols_fit(ref: np.ndarray, pred: np.ndarray, grid: np.ndarray, alpha: float = 0.05) -> RegressionFit | None:
    """OLS of ``pred`` (n,) on ``ref`` (n,); None when fewer than 3 points or either side is constant."""
    import statsmodels.api as sm

    ref = np.asarray(ref, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    if ref.size < 3 or np.std(ref) == 0 or np.std(pred) == 0:
        return None
    result = sm.OLS(pred, sm.add_constant(ref)).fit()
    ci = result.conf_int(alpha)
    band = result.get_prediction(sm.add_constant(grid, has_constant="add")).conf_int(alpha=alpha)
    return RegressionFit(
        slope=float(result.params[1]), intercept=float(result.params[0]),
        slope_ci=(float(ci[1, 0]), float(ci[1, 1])), intercept_ci=(float(ci[0, 0]), float(ci[0, 1])),
        r=float(np.corrcoef(ref, pred)[0, 1]), n=int(ref.size), grid=grid,
        band_low=band[:, 0], band_high=band[:, 1],
    )
