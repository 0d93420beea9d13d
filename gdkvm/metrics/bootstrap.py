"""Percentile-bootstrap confidence intervals over evaluation items (frames, videos or patients).

Resample the unit that is independent: pass ``groups`` (e.g. patient ids) to resample whole groups, each
contributing its within-group mean, as the re-release protocol asks for patient-level CIs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from gdkvm.metrics.errors import MetricError

Statistic = Callable[..., float]


def _validate(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise MetricError(f"bootstrap: n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise MetricError(f"bootstrap: alpha must be in (0, 1), got {alpha}")


def _group_means(values: np.ndarray, groups: Sequence[object] | None) -> np.ndarray:
    """Collapse finite values to one mean per group (or keep them as they are without groups)."""
    if groups is None:
        return values[np.isfinite(values)]
    labels = np.asarray(groups, dtype=object).ravel()
    if labels.shape != values.shape:
        raise MetricError(f"bootstrap: groups has {labels.size} labels for {values.size} values")
    keep = np.isfinite(values)
    values, labels = values[keep], labels[keep]
    _, index = np.unique(labels.astype(str), return_inverse=True)
    sums = np.bincount(index, weights=values)
    counts = np.bincount(index)
    return sums / counts


def _resampled_stats(data: np.ndarray, stat: Statistic, idx: np.ndarray) -> np.ndarray:
    """stat over each row of data[idx]; uses the axis argument of numpy reductions when available."""
    samples = data[idx]  # (n_boot, n)
    try:
        out = np.asarray(stat(samples, axis=1), dtype=np.float64)
        if out.shape == (idx.shape[0],):
            return out
    except TypeError:
        pass
    return np.array([stat(row) for row in samples], dtype=np.float64)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    stat: Statistic = np.mean,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: Sequence[object] | None = None,
) -> tuple[float, float, float]:
    """Percentile bootstrap of ``stat`` over items.

    NaN/inf values are dropped first (an N/A item carries no information).

    Args:
        values: (N,) per-item values.
        stat: statistic of a 1-D array (called with ``axis=1`` on a 2-D array when it supports it).
        n_boot: number of resamples.
        alpha: 1 - confidence level; the interval is the alpha/2 and 1 - alpha/2 quantiles.
        seed: seed of numpy's default generator; the same seed gives the same interval.
        groups: optional (N,) labels; items are first averaged per group and groups are resampled.
    Returns:
        (estimate, low, high) with estimate = stat(all kept items or group means).
    """
    _validate(n_boot, alpha)
    data = _group_means(np.asarray(values, dtype=np.float64).ravel(), groups)
    if data.size == 0:
        raise MetricError("bootstrap: no finite values to resample")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, data.size, size=(n_boot, data.size))
    boot = _resampled_stats(data, stat, idx)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(stat(data)), float(low), float(high)


def paired_bootstrap_diff(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    stat: Statistic = np.mean,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap of stat(a) - stat(b) for two methods scored on the same cases.

    Cases are resampled jointly (the same indices for a and b), which keeps the pairing. Pairs with a
    non-finite value on either side are dropped.

    Args:
        a, b: (N,) per-case values of method A and method B, aligned by case.
        stat, n_boot, alpha, seed: as in :func:`bootstrap_ci`.
    Returns:
        (estimate, low, high) of stat(a) - stat(b); an interval excluding 0 suggests a real difference.
    """
    _validate(n_boot, alpha)
    xa = np.asarray(a, dtype=np.float64).ravel()
    xb = np.asarray(b, dtype=np.float64).ravel()
    if xa.shape != xb.shape:
        raise MetricError(f"paired bootstrap: a has {xa.size} cases, b has {xb.size}")
    keep = np.isfinite(xa) & np.isfinite(xb)
    xa, xb = xa[keep], xb[keep]
    if xa.size == 0:
        raise MetricError("paired bootstrap: no case with finite values for both methods")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, xa.size, size=(n_boot, xa.size))
    boot = _resampled_stats(xa, stat, idx) - _resampled_stats(xb, stat, idx)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(stat(xa) - stat(xb)), float(low), float(high)
