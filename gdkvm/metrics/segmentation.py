"""Per-item segmentation metrics (Dice, IoU, HD, HD95, ASD) in three modes.

* ``clean``: the re-release protocol (``gdkvm-rerelease-v1``). HD95 is the larger of the two directed
  95th percentiles (linear interpolation); ASD is the mean of the pooled distances of both directions;
  mm when a spacing is given, else px. Both masks empty: every metric NaN (N/A). Exactly one empty:
  Dice = IoU = 0 and HD = HD95 = ASD = the field-of-view diagonal.
* ``memsam``: MemSAM's ``eval_camus``/``eval_echonet`` with medpy's ``hd95``/``assd``. HD95 is the 95th
  percentile of the pooled distances of both directions (medpy ``hd95``, every version); ASD is the mean
  of the two directed means, which is **medpy 0.4.0's** ``assd`` (``mean(asd(a, b), asd(b, a))``).
  medpy >= 0.5 (0.5.2 checked) changed ``assd`` to the mean of the pooled distances: that value is the
  ``asd_pooled`` key. Dice and IoU carry a 1e-5 smoothing term. medpy raises on an empty mask; here the
  distances are NaN.
* ``gdkvm-legacy``: the historical GDKVM trainer (MONAI ``DiceMetric``, ``MeanIoU``,
  ``HausdorffDistanceMetric(percentile=95)``, ``SurfaceDistanceMetric(symmetric=True)``). Pixel units,
  spacing ignored. An empty reference gives NaN Dice/IoU; one empty mask gives HD95 NaN and ASD inf.
  Aggregate a column with :func:`aggregate_legacy`.

Every mode also returns ``asd_pooled``, the mean of the pooled distances of both directions (medpy >= 0.5
``assd``, MONAI ``symmetric=True``). It equals ``asd`` in ``clean`` and ``gdkvm-legacy``; in ``memsam`` it
is the pooled alternative to the medpy 0.4.0 ``asd``.

All modes share the surface definition of :mod:`gdkvm.metrics.surface`. See ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import pandas as pd

from gdkvm.errors import unknown_name
from gdkvm.metrics.errors import MetricError
from gdkvm.metrics.surface import (
    as_binary_mask,
    check_spacing,
    directed_distances,
    field_of_view_diagonal,
    surface,
)

Mode = Literal["clean", "memsam", "gdkvm-legacy"]
MODES: tuple[str, ...] = get_args(Mode)

#: Probability threshold per mode; a pixel is foreground when ``prob > threshold`` (strict).
THRESHOLDS: dict[str, float] = {"clean": 0.5, "memsam": 0.6, "gdkvm-legacy": 0.5}

#: MemSAM's smoothing term in Dice and IoU.
MEMSAM_SMOOTH = 1e-5

#: ``asd_pooled``: the pooled ASD of every mode (== ``asd`` except in ``memsam``, see the module docstring).
METRIC_KEYS: tuple[str, ...] = ("dice", "iou", "hd", "hd95", "asd", "asd_pooled")

NAN = float("nan")


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise unknown_name("metric mode", mode, MODES)
    return mode


def binarize(prob: np.ndarray, mode: Mode = "clean") -> np.ndarray:
    """Threshold probabilities into a bool mask: ``prob > 0.6`` for memsam, ``prob > 0.5`` otherwise.

    Args:
        prob: array of any shape with foreground probabilities (after the sigmoid).
        mode: one of ``clean``, ``memsam``, ``gdkvm-legacy``.
    Returns:
        bool array of the same shape.
    """
    return np.asarray(prob) > THRESHOLDS[_check_mode(mode)]


def _counts(pred: np.ndarray, ref: np.ndarray) -> tuple[int, int, int]:
    tp = int(np.count_nonzero(pred & ref))
    fp = int(np.count_nonzero(pred & ~ref))
    fn = int(np.count_nonzero(~pred & ref))
    return tp, fp, fn


def _clean(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float]) -> dict[str, float | str]:
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not has_pred and not has_ref:
        return {"dice": NAN, "iou": NAN, "hd": NAN, "hd95": NAN, "asd": NAN, "asd_pooled": NAN,
                "status": "both_empty"}
    if has_pred != has_ref:
        penalty = field_of_view_diagonal(pred.shape, spacing)
        return {"dice": 0.0, "iou": 0.0, "hd": penalty, "hd95": penalty, "asd": penalty, "asd_pooled": penalty,
                "status": "one_empty"}
    tp, fp, fn = _counts(pred, ref)
    pred_surface, ref_surface = surface(pred), surface(ref)
    d_pr = directed_distances(pred_surface, ref_surface, spacing)
    d_rp = directed_distances(ref_surface, pred_surface, spacing)
    pooled = float(np.concatenate([d_pr, d_rp]).mean())
    return {
        "dice": 2.0 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
        "hd": float(max(d_pr.max(), d_rp.max())),
        "hd95": float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))),
        "asd": pooled,
        "asd_pooled": pooled,
        "status": "ok",
    }


def _memsam(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float]) -> dict[str, float | str]:
    tp, fp, fn = _counts(pred, ref)
    out: dict[str, float | str] = {
        "dice": (2 * tp + MEMSAM_SMOOTH) / (2 * tp + fp + fn + MEMSAM_SMOOTH),
        "iou": (tp + MEMSAM_SMOOTH) / (tp + fp + fn + MEMSAM_SMOOTH),
    }
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not (has_pred and has_ref):
        # medpy raises on an empty mask (MemSAM then crashes); report the distances as NaN instead.
        out.update(hd=NAN, hd95=NAN, asd=NAN, asd_pooled=NAN,
                   status="both_empty" if has_pred == has_ref else "one_empty")
        return out
    pred_surface, ref_surface = surface(pred), surface(ref)
    d_pr = directed_distances(pred_surface, ref_surface, spacing)
    d_rp = directed_distances(ref_surface, pred_surface, spacing)
    out.update(
        hd=float(max(d_pr.max(), d_rp.max())),
        hd95=float(np.percentile(np.concatenate([d_pr, d_rp]), 95)),
        # medpy 0.4.0 assd: the two directed means weigh equally, whatever the surface sizes
        asd=float(np.mean([d_pr.mean(), d_rp.mean()])),
        # medpy >= 0.5 assd: every surface pixel of both masks weighs equally
        asd_pooled=float(np.concatenate([d_pr, d_rp]).mean()),
        status="ok",
    )
    return out


def _legacy(pred: np.ndarray, ref: np.ndarray) -> dict[str, float | str]:
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    tp, fp, fn = _counts(pred, ref)
    # MONAI ignore_empty=True: an empty reference makes Dice and IoU NaN (skipped by the aggregate).
    dice = 2.0 * tp / (2 * tp + fp + fn) if has_ref else NAN
    iou = tp / (tp + fp + fn) if has_ref else NAN
    if not has_pred and not has_ref:
        return {"dice": dice, "iou": iou, "hd": NAN, "hd95": NAN, "asd": NAN, "asd_pooled": NAN,
                "status": "both_empty"}
    if has_pred != has_ref:
        # MONAI fills the missing side's distances with inf: the percentile of an all-inf array
        # interpolates inf - inf = NaN, the maximum is inf, and the pooled mean is inf.
        return {"dice": dice, "iou": iou, "hd": float("inf"), "hd95": NAN, "asd": float("inf"),
                "asd_pooled": float("inf"), "status": "one_empty"}
    pred_surface, ref_surface = surface(pred), surface(ref)
    d_pr = directed_distances(pred_surface, ref_surface, (1.0, 1.0))
    d_rp = directed_distances(ref_surface, pred_surface, (1.0, 1.0))
    pooled = float(np.concatenate([d_pr, d_rp]).mean())
    return {
        "dice": dice,
        "iou": iou,
        "hd": float(max(d_pr.max(), d_rp.max())),
        "hd95": float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))),
        "asd": pooled,
        "asd_pooled": pooled,
        "status": "ok",
    }


def segmentation_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | None = None,
    mode: Mode = "clean",
) -> dict[str, float | str]:
    """Dice, IoU, HD, HD95 and ASD of one binary mask pair under one of the three protocols.

    Args:
        pred: (H, W) bool (or 0/1) predicted mask.
        ref: (H, W) bool (or 0/1) reference mask.
        spacing: (sy, sx) pixel size, e.g. in mm; None means pixel units. Ignored by ``gdkvm-legacy``.
        mode: ``clean`` (re-release), ``memsam`` (MemSAM + medpy) or ``gdkvm-legacy`` (MONAI).
    Returns:
        dict with float ``dice``, ``iou`` (fractions, not x100), ``hd``, ``hd95``, ``asd``, ``asd_pooled`` and the strings
        ``unit`` ("mm" when a spacing was used, else "px"), ``status`` ("ok", "one_empty",
        "both_empty") and ``mode``. The empty-mask values per mode are listed in the module docstring.
    """
    _check_mode(mode)
    pred_mask = as_binary_mask(pred, "pred")
    ref_mask = as_binary_mask(ref, "ref")
    if pred_mask.shape != ref_mask.shape:
        raise MetricError(f"pred/ref: shapes differ, {pred_mask.shape} vs {ref_mask.shape}")
    checked = check_spacing(spacing)
    if mode == "gdkvm-legacy":
        out, unit = _legacy(pred_mask, ref_mask), "px"
    else:
        use = checked if checked is not None else (1.0, 1.0)
        unit = "mm" if checked is not None else "px"
        out = _clean(pred_mask, ref_mask, use) if mode == "clean" else _memsam(pred_mask, ref_mask, use)
    out["unit"] = unit
    out["mode"] = mode
    return out


def segmentation_metrics_batch(
    preds: np.ndarray,
    refs: np.ndarray,
    spacing: Sequence[float] | Sequence[Sequence[float]] | None = None,
    mode: Mode = "clean",
    item_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per-item metrics for a stack of mask pairs, one row per item.

    Args:
        preds: (N, H, W) bool predicted masks.
        refs: (N, H, W) bool reference masks.
        spacing: one (sy, sx) for all items, an (N, 2) sequence with one per item, or None (px).
        mode: see :func:`segmentation_metrics`.
        item_ids: optional N names stored in an ``item`` column (default ``"0"``..``"N-1"``).
    Returns:
        DataFrame with columns item, dice, iou, hd, hd95, asd, asd_pooled, unit, status, mode.
    """
    preds = np.asarray(preds)
    refs = np.asarray(refs)
    if preds.ndim != 3 or preds.shape != refs.shape:
        raise MetricError(f"preds/refs: expected two (N, H, W) stacks of equal shape, got {preds.shape} and {refs.shape}")
    n = preds.shape[0]
    if spacing is None:
        spacings: list[Sequence[float] | None] = [None] * n
    else:
        arr = np.asarray(spacing, dtype=float)
        if arr.shape == (2,):
            spacings = [tuple(arr)] * n
        elif arr.shape == (n, 2):
            spacings = [tuple(row) for row in arr]
        else:
            raise MetricError(f"spacing: expected (sy, sx) or ({n}, 2), got shape {arr.shape}")
    ids = [str(i) for i in range(n)] if item_ids is None else [str(i) for i in item_ids]
    if len(ids) != n:
        raise MetricError(f"item_ids: expected {n} names, got {len(ids)}")
    rows = []
    for k in range(n):
        row = segmentation_metrics(preds[k], refs[k], spacings[k], mode)
        rows.append({"item": ids[k], **row})
    columns = ["item", *METRIC_KEYS, "unit", "status", "mode"]
    return pd.DataFrame(rows, columns=columns)


def aggregate_legacy(values: Sequence[float] | np.ndarray) -> float:
    """The legacy GDKVM trainer's aggregate of one metric over items.

    MONAI's mean reduction skips NaN items (inf is kept, so one inf makes the mean inf; all-NaN gives 0),
    then the trainer replaces a non-finite aggregate with 0.

    Args:
        values: (N,) per-item values of one metric from ``mode="gdkvm-legacy"``.
    Returns:
        the aggregate as a float.
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    kept = arr[~np.isnan(arr)]
    if kept.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        mean = float(kept.mean())
    return mean if np.isfinite(mean) else 0.0


def summarize(frame: pd.DataFrame) -> dict[str, float | int | str]:
    """Aggregate a :func:`segmentation_metrics_batch` table of one mode into means and counts.

    ``clean`` and ``memsam`` average over items ignoring NaN (both-empty items are N/A); ``gdkvm-legacy``
    uses :func:`aggregate_legacy`.

    Returns:
        dict with ``n_total``, ``n_one_empty``, ``n_both_empty``, ``<metric>_mean`` per metric, ``unit``
        and ``mode``.
    """
    modes = set(frame["mode"]) if len(frame) else {"clean"}
    units = set(frame["unit"]) if len(frame) else {"px"}
    if len(modes) != 1 or len(units) != 1:
        raise MetricError(f"summarize: table mixes modes {sorted(modes)} or units {sorted(units)}")
    mode = modes.pop()
    out: dict[str, float | int | str] = {
        "n_total": len(frame),
        "n_one_empty": int((frame["status"] == "one_empty").sum()) if len(frame) else 0,
        "n_both_empty": int((frame["status"] == "both_empty").sum()) if len(frame) else 0,
    }
    for key in METRIC_KEYS:
        col = frame[key].to_numpy(dtype=np.float64) if len(frame) else np.empty(0)
        if mode == "gdkvm-legacy":
            out[f"{key}_mean"] = aggregate_legacy(col)
        else:
            kept = col[~np.isnan(col)]
            out[f"{key}_mean"] = float(kept.mean()) if kept.size else NAN
    out["unit"] = units.pop()
    out["mode"] = mode
    return out


def pooled_dice(preds: np.ndarray, refs: np.ndarray) -> float:
    """EchoNet's pooled Dice over a set of frames: 2*sum(intersection) / (sum(union) + sum(intersection)).

    Equals 2*sum|P and R| / (sum|P| + sum|R|); it pools pixels, unlike a per-frame mean.

    Args:
        preds: (N, H, W) or (H, W) bool predicted masks.
        refs: reference masks of the same shape.
    Returns:
        the pooled Dice, NaN when every mask is empty.
    """
    p = np.asarray(preds)
    r = np.asarray(refs)
    if p.shape != r.shape:
        raise MetricError(f"preds/refs: shapes differ, {p.shape} vs {r.shape}")
    for name, arr in (("preds", p), ("refs", r)):
        if arr.dtype != bool and arr.size and not np.isin(arr, (0, 1)).all():
            raise MetricError(f"{name}: masks must be binary (0/1 or bool)")
    p = p.astype(bool)
    r = r.astype(bool)
    inter = int(np.count_nonzero(p & r))
    union = int(np.count_nonzero(p | r))
    if union == 0:
        return NAN
    return 2.0 * inter / (union + inter)
