"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot, no display).

Every function writes PNG files into ``out_dir`` and returns :class:`FigureInfo` entries (file name,
title, caption); a figure whose input is absent is not drawn and the reason goes into ``missing``.

* :func:`fps_vs_dice` (paper Fig. 5), :func:`ef_agreement_plots` (Figs. 6 and 11),
  :func:`qualitative_overlays` (Fig. 7), :func:`gate_distributions` (Fig. 9),
  :func:`gates_by_variant` (seaborn violins), :func:`training_curves`, :func:`scaling_plots` (the
  benchmark's own :func:`gdkvm.bench.scaling.draw_scaling`).

All are drawn inside :func:`gdkvm.report.style.figure_style`, one fixed seaborn theme.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from gdkvm.metrics.regression import ols_fit
from gdkvm.report.collect import EvalData, ReportData, RunData
from gdkvm.report.style import figure_style

DPI = 110
# Colour-blind-safe overlay palette (Okabe-Ito blue and orange, distinct for red-green colour blindness and in
# lightness; overlap white, the "sum" of the two)
GT_COLOR = (0, 114, 178)
PRED_COLOR = (230, 159, 0)
OVERLAP_COLOR = (255, 255, 255)
OVERLAY_ALPHA = 0.45
MAX_HEATMAP_COLUMNS = 300
VALUE_BINS = 64
#: Label positions (points) around Fig. 5's bubbles, cycled so that labels of coinciding points separate.
LABEL_OFFSETS = ((16, 14), (16, -16), (-16, 14), (-16, -16), (0, 22), (0, -22), (24, 0), (-24, 0))


@dataclass(frozen=True)
class FigureInfo:
    """One written figure: its file name inside the figures folder, a title and a caption."""

    file: str
    title: str
    caption: str
    kind: str


def safe_name(text: str) -> str:
    """A file-name-safe form of a run name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "run"


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, format="png", dpi=DPI)


def _provenance_suffix(run: RunData) -> str:
    return f" [{run.source.label}]"


# ------------------------------------------------------------------------------ Fig. 5


#: Fig. 5 point groups: (legend label, marker, face colour, hatch). Our points on the synthetic phantom or
#: timed on a CPU are drawn as hatched triangles so they never read as results beside the paper's GPU point.
FIG5_GROUPS: dict[str, tuple[str, str, str, str]] = {
    "paper": ("paper: published (GPU, RTX 3090, real data)", "D", "C0", ""),
    "ours": ("ours: GPU, real data", "o", "C2", ""),
    "not-comparable": ("ours: synthetic phantom and/or CPU (not comparable with the paper)", "^", "0.75", "////"),
}


def fig5_points(data: ReportData, missing: list[str]) -> list[dict]:
    """The points of Fig. 5: the paper's printed GDKVM point and each evaluated run of ours that has an fps
    benchmark row of its variant. Each point: ``label``, ``fps``, ``mdice``, ``params_m``, ``ours`` and
    ``group`` (a key of :data:`FIG5_GROUPS`: ``paper``, ``ours``, or ``not-comparable`` for a run on the
    synthetic phantom, of unknown provenance, or timed on a CPU), with ``why`` naming the reasons."""
    from gdkvm.report.tables import _primary_rows, pick_fps_row

    points: list[dict] = []
    fig5 = data.paper.get("fig5_speed_params")
    if fig5 is not None and not fig5.empty:
        for (method, dataset), group in fig5.groupby(["method", "dataset"], sort=False):
            values = dict(zip(group["metric"], group["value"], strict=True))
            if {"fps", "params_m", "mDice"} <= set(values):
                points.append({"label": f"{method} (paper, {dataset})", "fps": values["fps"], "mdice": values["mDice"],
                               "params_m": values["params_m"], "ours": False, "group": "paper", "why": []})
    for _, r in _primary_rows(data).iterrows():
        bench = pick_fps_row(data.fps, str(r["variant"]), str(r["preset"]))
        if bench is None:
            missing.append(f"Fig. 5: run {r['run']} has no fps benchmark row for variant '{r['variant']}' "
                           "(run `gdkvm bench fps`), so it is not in the bubble chart")
            continue
        why = []
        phantom = r["phantom"]
        if not isinstance(phantom, (bool, np.bool_)):
            why.append("provenance unknown")
        elif phantom:
            why.append("synthetic phantom")
        device_type = str(bench.get("device_type", "") or "").lower()
        if device_type == "cpu" or (device_type in ("", "nan") and "cpu" in str(bench["device_name"]).lower()):
            why.append("CPU")
        points.append({"label": f"{r['run']} ({r['variant']}/{bench['preset']}, {bench['dtype']}, "
                                f"{bench['device_name']}) [{r['data_label']}]",
                       "fps": bench["fps"], "mdice": r["mdice"], "params_m": bench["params_m"], "ours": True,
                       "group": "not-comparable" if why else "ours", "why": why})
    return [p for p in points if np.isfinite(p["fps"]) and np.isfinite(p["mdice"])]


def draw_fig5(points: list[dict]) -> Figure:
    """The bubble chart of :func:`fig5_points`' points (x: FPS, log; y: mDice; area ~ parameters); one
    marker style per group of :data:`FIG5_GROUPS`, named in the legend's first entries."""
    fig = _new_figure(8.5, 5.5)
    ax = fig.add_subplot()
    sizes = [p["params_m"] if np.isfinite(p["params_m"]) else 1.0 for p in points]
    scale = 1000.0 / max(max(sizes), 1e-9)
    groups = list(dict.fromkeys(p["group"] for p in points))
    handles = []
    for key in FIG5_GROUPS:
        if key in groups:
            label, marker, face, hatch = FIG5_GROUPS[key]
            handles.append(Patch(facecolor=face, edgecolor="black", hatch=hatch, label=label) if hatch else
                           Line2D([], [], ls="", marker=marker, ms=9, color=face, markeredgecolor="black", label=label))
    for i, p in enumerate(points):
        _label, marker, face, hatch = FIG5_GROUPS[p["group"]]
        color = f"C{(i % 7) + 3}" if p["group"] == "ours" else face
        area = max(scale * (p["params_m"] if np.isfinite(p["params_m"]) else 1.0), 30.0)
        ax.scatter(p["fps"], p["mdice"], s=area, color=color, alpha=0.55, edgecolors="black", marker=marker,
                   hatch=hatch or None, linestyles="--" if hatch else "-", label=p["group"])
        tag = f" ({', '.join(p['why'])})" if p["why"] else ""
        handles.append(Line2D([], [], ls="", marker=marker, ms=8, color=color, markeredgecolor="black", alpha=0.7,
                              label=f"{i + 1}. {p['label']}: {_fmt_params(p['params_m'])}{tag}"))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("frames per second (log scale)")
    ax.set_ylabel("mDice (%)")
    ax.grid(alpha=0.3, which="both")
    _pad_limits(ax, [p["fps"] for p in points], [p["mdice"] for p in points])
    _number_points(ax, [(p["fps"], p["mdice"]) for p in points])
    fig.legend(handles=handles, loc="outside lower center", fontsize=7.5, frameon=False)
    ax.set_title("Speed vs accuracy (bubble area ~ parameters)")
    return fig


def fps_vs_dice(data: ReportData, out_dir: Path, missing: list[str]) -> list[FigureInfo]:
    """Bubble chart FPS (x) vs mDice (y), bubble area ~ parameters: the paper's printed GDKVM point and
    each of our evaluated runs that has an fps benchmark row of its variant (:func:`fig5_points`)."""
    points = fig5_points(data, missing)
    if not points:
        missing.append("Fig. 5: no point to draw (no paper fig5 CSV and no run with both an evaluation and an "
                       "fps benchmark row)")
        return []
    fig = draw_fig5(points)
    name = "fig5_fps_vs_dice.png"
    _save(fig, out_dir / name)
    caption = ("Paper Fig. 5 style. Only GDKVM's point (37 FPS, 35.2 M parameters, mDice 95.11, RTX 3090) is printed "
               "in the paper; the other methods' FPS are only drawn there, so they are not shown. Our points: FPS "
               "from results/bench (device and precision in the legend), mDice from our test evaluation, "
               "parameters from the benchmark row. Hatched grey triangles: runs on the synthetic phantom (or of "
               "unknown provenance) or timed on a CPU; they are not comparable with the paper's point, whatever "
               "their position.")
    return [FigureInfo(name, "Fig. 5: FPS vs mDice", caption, "fig5")]


def _number_points(ax, xy: list[tuple[float, float]], near: float = 0.06) -> None:
    """Write 1, 2, ... next to the points; points closer than ``near`` (axes fraction) to an earlier one
    get the next free position around it, so labels of coinciding points do not overlap."""
    to_axes = ax.transData + ax.transAxes.inverted()
    placed: list[tuple[np.ndarray, int]] = []
    for i, (x, y) in enumerate(xy):
        here = np.asarray(to_axes.transform((x, y)))
        taken = sum(1 for where, _ in placed if np.hypot(*(where - here)) < near)
        dx, dy = LABEL_OFFSETS[taken % len(LABEL_OFFSETS)]
        placed.append((here, i))
        ax.annotate(str(i + 1), (x, y), xytext=(dx, dy), textcoords="offset points", ha="center", va="center",
                    fontsize=9, weight="bold", arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "0.35",
                                                           "shrinkA": 4, "shrinkB": 2})


def _fmt_params(value: float) -> str:
    return f"{value:.2f} M params" if np.isfinite(value) else "params unknown"


def _pad_limits(ax, xs: list[float], ys: list[float]) -> None:
    xs_a, ys_a = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    lo, hi = xs_a.min(), xs_a.max()
    ax.set_xlim(lo / 2.0, hi * 2.0)
    ylo, yhi = ys_a.min(), ys_a.max()
    pad = max((yhi - ylo) * 0.15, 1.0)
    ax.set_ylim(ylo - pad, yhi + pad)


# ------------------------------------------------------------------------------ Figs. 6 / 11


def ef_agreement_plots(data: ReportData, out_dir: Path, missing: list[str]) -> list[FigureInfo]:
    """Per run with EF data: linear regression (pred vs reference-mask EF) and Bland-Altman, one row
    per EF method."""
    infos = []
    for run in data.runs:
        ev = run.primary_eval()
        if ev is None or ev.ef is None:
            continue
        ef = ev.ef.copy()
        ef["ef_pred"] = pd.to_numeric(ef["ef_pred"], errors="coerce")
        ef["ef_ref"] = pd.to_numeric(ef["ef_ref"], errors="coerce")
        ef = ef[np.isfinite(ef["ef_pred"]) & np.isfinite(ef["ef_ref"])]
        methods = sorted((m for m, g in ef.groupby("method") if len(g) >= 2),
                         key=lambda m: (m == "area-length", m))  # the Simpson methods first
        if not methods:
            missing.append(f"Figs. 6/11: run {run.name} has fewer than 2 measurable EF pairs per method "
                           f"in {ev.path / 'ef.csv'}; no EF plot")
            continue
        fig = _new_figure(12.0, 3.8 * len(methods))
        axes = fig.subplots(len(methods), 3, squeeze=False, width_ratios=(1.0, 1.0, 0.3))
        for row, method in enumerate(methods):
            g = ef[ef["method"] == method]
            _regression_panel(axes[row][0], g["ef_ref"].to_numpy(), g["ef_pred"].to_numpy(), method)
            _bland_altman_panel(axes[row][1], g["ef_ref"].to_numpy(), g["ef_pred"].to_numpy(), method)
            _difference_density(axes[row][2], axes[row][1], g["ef_pred"].to_numpy() - g["ef_ref"].to_numpy())
        fig.suptitle(f"LV EF agreement: {run.label}, {ev.split}/{ev.mode}{_provenance_suffix(run)}", fontsize=11)
        name = f"fig6_ef_{safe_name(run.name)}.png"
        _save(fig, out_dir / name)
        caption = (f"Paper Figs. 6/11 style for {run.label} on {run.source.label}, {ev.split} split. Left: predicted EF "
                   "against EF from the reference masks (same volume routine), with the identity (dashed) and the "
                   "least-squares line with its 95% confidence band (statsmodels OLS). Middle: Bland-Altman, difference "
                   "pred - ref against their mean, with the bias and bias ± 1.96 SD (sample SD). Right: the "
                   "distribution of the differences (seaborn kernel density estimate, Scott's bandwidth) on the "
                   "Bland-Altman axis, so a skewed or two-peaked error shows. One row per EF method.")
        infos.append(FigureInfo(name, f"Fig. 6/11: EF agreement, {run.name}", caption, "fig6"))
    if not infos:
        missing.append("Figs. 6/11: no evaluated run with EF data (ef.csv)")
    return infos


def _regression_panel(ax, ref: np.ndarray, pred: np.ndarray, method: str) -> None:
    ax.scatter(ref, pred, s=18, alpha=0.7, color="C0", edgecolors="none")
    lo = float(min(ref.min(), pred.min()))
    hi = float(max(ref.max(), pred.max()))
    pad = max((hi - lo) * 0.05, 1.0)
    grid = np.array([lo - pad, hi + pad])
    ax.plot(grid, grid, "--", color="gray", lw=1, label="identity")
    text = f"n = {ref.size}"
    fit = ols_fit(ref, pred, np.linspace(grid[0], grid[1], 50))
    if fit is not None:
        ax.fill_between(fit.grid, fit.band_low, fit.band_high, color="C3", alpha=0.15, lw=0,
                        label="95% CI of the fit")
        ax.plot(fit.grid, fit.slope * fit.grid + fit.intercept, color="C3", lw=1.5,
                label=f"fit: y = {fit.slope:.2f}x + {fit.intercept:.1f} (slope CI {fit.slope_ci[0]:.2f}-"
                      f"{fit.slope_ci[1]:.2f})")
        text += f", r = {fit.r:.3f}"
    ax.set_xlim(grid)
    ax.set_ylim(grid)
    ax.set_xlabel("reference EF (%)")
    ax.set_ylabel("predicted EF (%)")
    ax.set_title(f"{method}: regression ({text})", fontsize=10)
    ax.legend(fontsize=8, loc="best", framealpha=0.6)
    ax.grid(alpha=0.3)


def _bland_altman_panel(ax, ref: np.ndarray, pred: np.ndarray, method: str) -> None:
    mean = (ref + pred) / 2.0
    diff = pred - ref
    bias = float(diff.mean())
    sd = float(diff.std(ddof=1)) if diff.size > 1 else 0.0
    ax.scatter(mean, diff, s=18, alpha=0.7, color="C0", edgecolors="none")
    for value, style, label in ((bias, "-", f"bias {bias:.2f}"), (bias + 1.96 * sd, "--", f"+1.96 SD {bias + 1.96 * sd:.2f}"),
                                (bias - 1.96 * sd, "--", f"-1.96 SD {bias - 1.96 * sd:.2f}")):
        ax.axhline(value, linestyle=style, color="C3" if style == "-" else "gray", lw=1.2, label=label)
    lo = min(0.0, float(diff.min()), bias - 1.96 * sd)
    hi = max(0.0, float(diff.max()), bias + 1.96 * sd)
    pad = max(0.12 * (hi - lo), 0.5)
    ax.set_ylim(lo - pad, hi + 2.5 * pad)  # room at the top for the legend
    ax.axhline(0.0, color="black", lw=0.5)
    ax.set_xlabel("mean of predicted and reference EF (%)")
    ax.set_ylabel("predicted - reference EF (%)")
    ax.set_title(f"{method}: Bland-Altman (SD {sd:.2f})", fontsize=10)
    ax.legend(fontsize=8, loc="upper right", ncol=3, framealpha=0.6)
    ax.grid(alpha=0.3)


def _difference_density(ax, ba_ax, diff: np.ndarray) -> None:
    """Kernel density of the EF differences (pred - ref), on the Bland-Altman panel's y axis."""
    import seaborn as sns

    diff = diff[np.isfinite(diff)]
    ax.set_ylim(ba_ax.get_ylim())
    if diff.size >= 3 and np.ptp(diff) > 0:
        sns.kdeplot(y=diff, ax=ax, fill=True, color="C0", alpha=0.35, linewidth=1.2, cut=0)
        sns.rugplot(y=diff, ax=ax, color="C0", height=0.06, alpha=0.6)
        ax.axhline(float(diff.mean()), color="C3", lw=1.2)
        ax.set_title("differences (kde)", fontsize=9)
    else:
        ax.text(0.5, 0.5, "too few distinct\ndifferences\nfor a density", ha="center", va="center",
                transform=ax.transAxes, fontsize=8, color="gray")
    ax.set_ylim(ba_ax.get_ylim())
    ax.set_xlabel("density")
    ax.set_ylabel("")
    ax.tick_params(labelleft=False)


# ------------------------------------------------------------------------------ Fig. 7


def overlay(image: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3): grey image with ground truth blue, prediction orange, overlap white.

    Args:
        image: (H, W) uint8; gt, pred: (H, W) bool.
    """
    rgb = np.repeat(np.asarray(image, dtype=np.float32)[..., None], 3, axis=2)
    for mask, color in ((gt & ~pred, GT_COLOR), (pred & ~gt, PRED_COLOR), (gt & pred, OVERLAP_COLOR)):
        rgb[mask] = (1 - OVERLAY_ALPHA) * rgb[mask] + OVERLAY_ALPHA * np.asarray(color, dtype=np.float32)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _pick_cases(ev: EvalData, n_videos: int, count: int = 3) -> list[tuple[int, str]]:
    """(video index, label) for the best, median and worst clip by mean Dice (distinct clips)."""
    pv = ev.per_video
    if pv is None or pv.empty:
        return [(i, "") for i in range(min(count, n_videos))]
    pv = pv.assign(dice=pd.to_numeric(pv["dice"], errors="coerce")).dropna(subset=["dice"])
    pv = pv[(pv["video"] >= 0) & (pv["video"] < n_videos)].sort_values("dice", ascending=False, kind="stable")
    if pv.empty:
        return [(i, "") for i in range(min(count, n_videos))]
    picks: list[tuple[int, str]] = []
    for pos, why in ((0, "best"), (len(pv) // 2, "median"), (len(pv) - 1, "worst")):
        video = int(pv.iloc[pos]["video"])
        if video not in [p[0] for p in picks]:
            picks.append((video, f"{why} clip, mean {100 * float(pv.iloc[pos]['dice']):.1f}"))
    return picks[:count]


def _scored_frames(ev: EvalData, video: int, labeled: np.ndarray) -> list[tuple[int, str, float]]:
    """(frame, phase, Dice) of the first and last scored frame of a clip."""
    pf = ev.per_frame
    if pf is not None and not pf.empty:
        rows = pf[pf["video"] == video].sort_values("frame")
        if not rows.empty:
            chosen = rows.iloc[[0, -1]] if len(rows) > 1 else rows.iloc[[0]]
            return [(int(r["frame"]), str(r.get("phase", "")), float(r["dice"])) for _, r in chosen.iterrows()]
    idx = np.flatnonzero(labeled)
    if idx.size == 0:
        return []
    ends = sorted({int(idx[0]), int(idx[-1])})
    return [(t, "", math.nan) for t in ends]


def qualitative_overlays(data: ReportData, out_dir: Path, missing: list[str]) -> list[FigureInfo]:
    """Per evaluated run: best / median / worst test clip, first and last scored frame, overlays."""
    from gdkvm.data.store import open_store
    from gdkvm.errors import GdkvmError

    infos = []
    for run in data.runs:
        ev = run.primary_eval()
        if ev is None or ev.predictions is None or run.source.store_dir is None:
            continue
        try:
            store = open_store(run.source.store_dir, ev.split)
            pred = np.load(ev.predictions, mmap_mode="r", allow_pickle=False)
        except (GdkvmError, ValueError, OSError) as e:
            missing.append(f"Fig. 7: run {run.name}: cannot read store or predictions ({e})")
            continue
        if pred.shape != store.images.shape:
            missing.append(f"Fig. 7: run {run.name}: predictions {pred.shape} do not match the store's "
                           f"{ev.split} images {store.images.shape} (store changed since evaluation?)")
            continue
        cases = _pick_cases(ev, pred.shape[0])
        panels = []
        for video, why in cases:
            labeled = np.asarray(store.labeled[video])
            for frame, phase, dice in _scored_frames(ev, video, labeled):
                gt = np.asarray(store.masks[video, frame]) == 1
                img = overlay(np.asarray(store.images[video, frame]), gt, np.asarray(pred[video, frame]) > 0)
                meta = store.manifest.iloc[video]
                title = f"{meta['case_id']}" + (f" ({why})" if why else "")
                title += f"\nframe {frame}" + (f" {phase}" if phase else "")
                if np.isfinite(dice):
                    title += f", Dice {100 * dice:.1f}"
                panels.append((img, title))
        if not panels:
            missing.append(f"Fig. 7: run {run.name}: no labelled frame to show")
            continue
        cols = 2 if len(panels) >= 2 else 1
        rows = math.ceil(len(panels) / cols)
        fig = _new_figure(3.2 * cols + 0.4, 3.4 * rows + 0.8)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, (img, title) in zip(axes.ravel(), panels, strict=False):
            ax.imshow(img, interpolation="nearest")
            ax.set_title(title, fontsize=8.5)
        handles = [Patch(color=np.array(c) / 255, label=lab) for c, lab in
                   ((GT_COLOR, "ground truth only"), (PRED_COLOR, "prediction only"), (OVERLAP_COLOR, "overlap"))]
        fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
        fig.suptitle(f"{run.label}, {ev.split}{_provenance_suffix(run)}", fontsize=9.5)
        name = f"fig7_overlays_{safe_name(run.name)}.png"
        _save(fig, out_dir / name)
        caption = (f"Paper Fig. 7 style for {run.label} on {run.source.label}: the best, median and worst {ev.split} "
                   "clip by mean Dice over its scored frames, first and last scored frame. Blue: ground truth only, orange: prediction "
                   "only, white: overlap (a colour-blind-safe palette).")
        infos.append(FigureInfo(name, f"Fig. 7: qualitative, {run.name}", caption, "fig7"))
    return infos


# ------------------------------------------------------------------------------ Fig. 9


def gate_value_range(gates: pd.DataFrame, margin: float = 0.15) -> tuple[float, float]:
    """The value range shown for one gate: the envelope of the per-step 5% and 95% quantiles widened by
    ``margin`` of its span, within the overall min and max (a few outliers would otherwise squeeze the
    bulk of the distribution into one row of the heat map)."""
    lo_all, hi_all = float(gates["min"].min()), float(gates["max"].max())
    lo_q, hi_q = float(gates["q05"].min()), float(gates["q95"].max())
    if not (np.isfinite(lo_q) and np.isfinite(hi_q)) or hi_q <= lo_q:
        return lo_all, hi_all
    pad = margin * (hi_q - lo_q)
    return max(lo_all, lo_q - pad), min(hi_all, hi_q + pad)


def gate_heatmap(gates: pd.DataFrame, bins: int = VALUE_BINS, max_columns: int = MAX_HEATMAP_COLUMNS,
                 value_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Density of one gate's values over training steps, from the per-step 16-bin histograms.

    Each step's histogram covers its own [min, max]; its counts are spread over a common value grid
    (``value_range``, default the overall [min, max]) in proportion to overlap, mass outside the range is
    left out, steps are pooled into at most ``max_columns`` columns and each column is normalised to
    sum 1.

    Returns:
        density (bins, columns), column edges in iterations (columns + 1,), value edges (bins + 1,).
    """
    usable = gates.dropna(subset=["min", "max"])
    usable = usable[usable["hist"].map(lambda h: isinstance(h, list) and len(h) > 0)]
    if usable.empty:
        return np.zeros((bins, 0)), np.zeros(1), np.zeros(bins + 1)
    lo, hi = value_range or (float(usable["min"].min()), float(usable["max"].max()))
    if hi <= lo:
        hi = lo + 1e-6
    value_edges = np.linspace(lo, hi, bins + 1)
    iterations = usable["iteration"].to_numpy(dtype=float)
    n_cols = min(max_columns, len(usable))
    col_edges = np.linspace(iterations.min() - 0.5, iterations.max() + 0.5, n_cols + 1)
    density = np.zeros((bins, n_cols))
    for it, smin, smax, hist in zip(iterations, usable["min"], usable["max"], usable["hist"], strict=True):
        counts = np.asarray(hist, dtype=float)
        if smax <= smin:
            src_edges = np.array([smin, smin + (hi - lo) / bins])
            counts = np.array([counts.sum()])
        else:
            src_edges = np.linspace(smin, smax, counts.size + 1)
        left = np.maximum(src_edges[:-1, None], value_edges[None, :-1])
        right = np.minimum(src_edges[1:, None], value_edges[None, 1:])
        overlap = np.clip(right - left, 0, None) / np.diff(src_edges)[:, None]
        col = min(int(np.searchsorted(col_edges, it, side="right")) - 1, n_cols - 1)
        density[:, col] += counts @ overlap
    totals = density.sum(axis=0, keepdims=True)
    density = np.divide(density, totals, out=np.zeros_like(density), where=totals > 0)
    return density, col_edges, value_edges


def _gate_panel(ax, gates: pd.DataFrame, name: str) -> None:
    value_range = gate_value_range(gates)
    density, col_edges, value_edges = gate_heatmap(gates, value_range=value_range)
    if density.shape[1]:
        ax.imshow(density, origin="lower", aspect="auto", cmap="Greys",
                  extent=(col_edges[0], col_edges[-1], value_edges[0], value_edges[-1]),
                  vmax=np.quantile(density[density > 0], 0.98) if (density > 0).any() else None)
    it = gates["iteration"]
    ax.plot(it, gates["mean"], color="C3", lw=1.2, label="mean")
    ax.plot(it, gates["q05"], color="C0", lw=0.8, ls="--", label="5% / 95% quantile")
    ax.plot(it, gates["q95"], color="C0", lw=0.8, ls="--")
    ax.set_ylim(*value_range)
    ax.set_xlabel("training iteration")
    ax.set_ylabel(f"{name} value")
    ax.set_title(f"distribution of {name} (darker = denser)", fontsize=10)


def _grad_panel(ax, by_gate: dict[str, pd.DataFrame], names: list[str]) -> None:
    """Mean and 5-95% band of each gradient; the second one on its own (right) axis, since their
    scales can differ by orders of magnitude."""
    axes = [ax, ax.twinx()] if len(names) > 1 else [ax]
    for i, (name, axis) in enumerate(zip(names, axes, strict=False)):
        g = by_gate[name]
        axis.fill_between(g["iteration"], g["q05"], g["q95"], color=f"C{i}", alpha=0.2)
        axis.plot(g["iteration"], g["mean"], color=f"C{i}", lw=1.2)
        axis.axhline(0, color="gray", lw=0.6)
        axis.set_ylabel(f"{name} (mean, 5-95% band)", color=f"C{i}")
        axis.tick_params(axis="y", colors=f"C{i}")
        bound = float(np.nanmax(np.abs(g[["q05", "q95", "mean"]].to_numpy(dtype=float)))) if len(g) else 0.0
        if np.isfinite(bound) and bound > 0:
            axis.set_ylim(-1.1 * bound, 1.1 * bound)
    ax.set_xlabel("training iteration")
    ax.set_title("gradients of the gate parameters", fontsize=10)


def _grad_corr_panel(ax, a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str]) -> None:
    merged = a[["iteration", "mean"]].merge(b[["iteration", "mean"]], on="iteration", suffixes=("_a", "_b"))
    merged = merged.dropna()
    ax.scatter(merged["mean_a"], merged["mean_b"], s=10, alpha=0.6, c=merged["iteration"], cmap="viridis")
    r = math.nan
    if len(merged) > 2 and merged["mean_a"].std() > 0 and merged["mean_b"].std() > 0:
        r = float(np.corrcoef(merged["mean_a"], merged["mean_b"])[0, 1])
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.ticklabel_format(axis="both", style="sci", scilimits=(-2, 3), useMathText=True)
    ax.set_xlabel(f"mean {names[0]} per step")
    ax.set_ylabel(f"mean {names[1]} per step")
    ax.set_title(f"gradient correlation (Pearson r = {r:.3f}; colour = iteration)", fontsize=10)
    ax.grid(alpha=0.3)


def gate_distributions(data: ReportData, out_dir: Path, missing: list[str]) -> list[FigureInfo]:
    """Per run with logged gate statistics: the alpha/beta (or gamma) distribution over training steps,
    their gradients and the per-step gradient correlation (paper Fig. 9)."""
    infos = []
    for run in data.runs:
        if run.gates.empty:
            continue
        by_gate = {name: g.sort_values("iteration") for name, g in run.gates.groupby("gate", sort=True)}
        values = [n for n in by_gate if not n.endswith("_grad")]
        grads = [n for n in by_gate if n.endswith("_grad")]
        values = sorted(values, key=lambda n: (not n.endswith("alpha"), not n.endswith("beta"), n))[:3]
        panels = len(values) + (1 if grads else 0) + (1 if len(grads) >= 2 else 0)
        cols = 2
        rows = math.ceil(panels / cols)
        fig = _new_figure(11.0, 3.9 * rows)
        axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
        for ax in axes[panels:]:
            ax.axis("off")
        k = 0
        for name in values:
            _gate_panel(axes[k], by_gate[name], name)
            k += 1
        if grads:
            _grad_panel(axes[k], by_gate, grads[:2])
            k += 1
        if len(grads) >= 2:
            _grad_corr_panel(axes[k], by_gate[grads[0]], by_gate[grads[1]], (grads[0], grads[1]))
        if values:
            fig.legend(handles=[Line2D([], [], color="C3", lw=1.2, label="mean"),
                                Line2D([], [], color="C0", lw=0.8, ls="--", label="5% and 95% quantiles"),
                                Patch(color="0.3", label="density of values at each step")],
                       loc="outside lower center", ncol=3, fontsize=8, frameon=False)
        fig.suptitle(f"Memory gates over training: {run.label}{_provenance_suffix(run)}", fontsize=11)
        name = f"fig9_gates_{safe_name(run.name)}.png"
        _save(fig, out_dir / name)
        caption = (f"Paper Fig. 9 style for {run.label}: per-step distribution of the gates of the last memory write "
                   "(from the 16-bin histograms in metrics.jsonl, each step normalised), with mean and 5%/95% quantiles; "
                   "the gradients of the parameters producing each gate; and the per-step correlation of their "
                   "mean gradients. alpha is the decay as the model applies it (our default: in (0, 1)), beta the "
                   "write strength; the paper's Fig. 9 plots raw parameter values, so ranges differ.")
        infos.append(FigureInfo(name, f"Fig. 9: gates, {run.name}", caption, "fig9"))
    gated = [r for r in data.runs if r.variant in ("full", "gdr", "lkva-gdr", "wo-alpha", "wo-beta", "gka")]
    for run in gated:
        if run.gates.empty:
            missing.append(f"Fig. 9: run {run.name} ({run.variant}) logged no gate statistics in metrics.jsonl")
    return infos


#: How many of the last logged steps of a run make up its "final gates" sample, and how many points a
#: step's 16-bin histogram is expanded into.
GATE_TAIL_STEPS = 10
GATE_POINTS_PER_STEP = 200


def gate_sample(gates: pd.DataFrame, points: int = GATE_POINTS_PER_STEP) -> np.ndarray:
    """Values that reproduce one gate's logged histograms (each step's counts over its [min, max]).

    Every step contributes ``points`` values: bin i gets ``round(points * count_i / total)`` of them,
    evenly spaced inside the bin, so the sample's density is the histogram's (piecewise uniform)
    and nothing is random.

    Returns:
        (n,) float array; empty when no step has a histogram.
    """
    out: list[np.ndarray] = []
    for smin, smax, hist in zip(gates["min"], gates["max"], gates["hist"], strict=True):
        if not isinstance(hist, list) or not hist or not (np.isfinite(smin) and np.isfinite(smax)):
            continue
        counts = np.asarray(hist, dtype=float)
        if counts.sum() <= 0:
            continue
        if smax <= smin:
            out.append(np.full(points, float(smin)))
            continue
        edges = np.linspace(smin, smax, counts.size + 1)
        shares = np.rint(points * counts / counts.sum()).astype(int)
        for lo, hi, k in zip(edges[:-1], edges[1:], shares, strict=True):
            if k > 0:
                out.append(lo + (hi - lo) * (np.arange(k) + 0.5) / k)
    return np.concatenate(out) if out else np.zeros(0)


def final_gate_table(runs: list[RunData], tail: int = GATE_TAIL_STEPS) -> pd.DataFrame:
    """Long table (variant, run, gate, value) of the alpha/beta gates at the end of training: the
    :func:`gate_sample` of each run's last ``tail`` logged steps (layers' gates of one name pooled)."""
    parts = []
    for run in runs:
        if run.gates.empty:
            continue
        short = run.gates["gate"].str.split(".").str[-1]
        for gate in ("alpha", "beta"):
            g = run.gates[short == gate]
            if g.empty:
                continue
            last = sorted(g["iteration"].unique())[-tail:]
            values = gate_sample(g[g["iteration"].isin(last)])
            if values.size:
                parts.append(pd.DataFrame({"variant": run.variant, "run": run.name, "gate": gate, "value": values}))
    if not parts:
        return pd.DataFrame(columns=["variant", "run", "gate", "value"])
    return pd.concat(parts, ignore_index=True)


def gates_by_variant(data: ReportData, out_dir: Path, missing: list[str]) -> list[FigureInfo]:
    """Violin plots (seaborn, with the quartiles inside) of the final alpha and beta gates, one violin per
    variant (its runs pooled), one panel per gate."""
    import seaborn as sns

    table = final_gate_table(data.runs)
    if table.empty:
        return []
    gates = [g for g in ("alpha", "beta") if (table["gate"] == g).any()]
    variants = sorted(table["variant"].unique())
    fig = _new_figure(max(5.5, 1.3 * len(variants) + 2.5) * len(gates), 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(gates), squeeze=False)[0])
    for ax, gate in zip(axes, gates, strict=True):
        sub = table[table["gate"] == gate]
        sns.violinplot(data=sub, x="variant", y="value", order=[v for v in variants if (sub["variant"] == v).any()],
                       hue="variant", legend=False, palette="colorblind", inner="quart", cut=0,
                       density_norm="width", linewidth=1.0, ax=ax)
        runs = sub.groupby("variant")["run"].nunique()
        ax.set_xticks(ax.get_xticks(), labels=[f"{t.get_text()}\n({runs.get(t.get_text(), 0)} run(s))"
                                               for t in ax.get_xticklabels()])
        ax.set_xlabel("variant")
        ax.set_ylabel(f"{gate} value")
        ax.set_title(f"{gate} at the end of training", fontsize=10)
    fig.suptitle("Memory gates by variant (last logged steps of each run)", fontsize=11)
    name = "fig9_gates_by_variant.png"
    _save(fig, out_dir / name)
    caption = (f"Distribution of the gates of the last memory write over each run's last {GATE_TAIL_STEPS} logged "
               "training steps, rebuilt from the 16-bin histograms in metrics.jsonl (evenly spaced values inside "
               "each bin), the runs of a variant pooled. Lines inside a violin: quartiles. alpha is the decay as "
               "applied (in (0, 1) by default), beta the write strength. Variants without gates (linear, delta, "
               "softmax memories) have no violin.")
    return [FigureInfo(name, "Fig. 9: gates by variant", caption, "fig9")]


# ------------------------------------------------------------------------------ training curves


def _smooth(values: np.ndarray, span: int) -> np.ndarray:
    return pd.Series(values).ewm(span=max(span, 1), adjust=False).mean().to_numpy()


def training_curves(data: ReportData, out_dir: Path, missing: list[str]) -> list[FigureInfo]:
    """Loss and validation Dice against iteration: one figure per run and one comparing all runs."""
    infos = []
    with_curves = [r for r in data.runs if not r.train.empty]
    for run in data.runs:
        if run.train.empty:
            missing.append(f"training curves: run {run.name} has no logged training step")
    for run in with_curves:
        fig = _new_figure(10.0, 3.6)
        ax_loss, ax_val = fig.subplots(1, 2)
        _loss_axis(ax_loss, [run], single=True)
        _val_axis(ax_val, [run])
        fig.suptitle(f"Training: {run.label}{_provenance_suffix(run)}", fontsize=11)
        name = f"curves_{safe_name(run.name)}.png"
        _save(fig, out_dir / name)
        infos.append(FigureInfo(name, f"Training curves, {run.name}",
                                f"Loss (CE + soft Dice, raw and exponentially smoothed) and validation Dice "
                                f"against iteration for {run.label} on {run.source.label}.", "curves"))
    if len(with_curves) > 1:
        fig = _new_figure(11.0, 4.6 + 0.22 * math.ceil(len(with_curves) / 2))
        ax_loss, ax_val = fig.subplots(1, 2)
        _loss_axis(ax_loss, with_curves, single=False)
        _val_axis(ax_val, with_curves)
        handles = [Line2D([], [], color=f"C{i % 10}", label=f"{r.label} [{r.source.label}]")
                   for i, r in enumerate(with_curves)]
        fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=7.5, frameon=False)
        fig.suptitle("Training curves of all runs", fontsize=11)
        name = "curves_all.png"
        _save(fig, out_dir / name)
        infos.append(FigureInfo(name, "Training curves, all runs",
                                "Smoothed loss and validation Dice of every run, one colour per run.", "curves"))
    return infos


def _loss_axis(ax, runs: list[RunData], single: bool) -> None:
    for i, run in enumerate(runs):
        it = run.train["iteration"].to_numpy()
        loss = run.train["loss"].to_numpy(dtype=float)
        span = max(len(loss) // 20, 1)
        color = f"C{i % 10}"
        if single:
            ax.plot(it, loss, color=color, alpha=0.3, lw=0.8, label="loss")
            ax.plot(it, _smooth(loss, span), color=color, lw=1.6, label=f"smoothed (EMA span {span})")
        else:
            ax.plot(it, _smooth(loss, span), color=color, lw=1.3)
    finite = np.concatenate([r.train["loss"].to_numpy(dtype=float) for r in runs])
    finite = finite[np.isfinite(finite)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 20:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss")
    ax.set_title("loss", fontsize=10)
    ax.grid(alpha=0.3)
    if single:
        ax.legend(fontsize=8)


def _val_axis(ax, runs: list[RunData]) -> None:
    drawn = False
    for i, run in enumerate(runs):
        if run.val.empty:
            continue
        ax.plot(run.val["iteration"], 100 * run.val["dice"], marker="o", ms=3, color=f"C{i % 10}", lw=1.3)
        drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no validation logged\n(no val split, or val_every > iterations)", ha="center",
                va="center", transform=ax.transAxes, fontsize=9, color="gray")
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation Dice (%)")
    ax.set_title("validation Dice", fontsize=10)
    ax.grid(alpha=0.3)


# ------------------------------------------------------------------------------ scaling


def scaling_plots(data: ReportData, out_dir: Path, missing: list[str]) -> list[FigureInfo]:
    """The scaling benchmark's figure (:func:`gdkvm.bench.scaling.draw_scaling`, the same one ``gdkvm
    bench scaling`` writes), one per (device, dtype) group of the scaling rows."""
    from gdkvm.bench.scaling import draw_scaling

    sc = data.scaling
    if sc.empty:
        missing.append("scaling plot: no scaling benchmark rows (run `gdkvm bench scaling`)")
        return []
    sc = sc[sc["ok"]]
    if sc.empty:
        missing.append("scaling plot: every scaling benchmark row failed (status not ok)")
        return []
    infos = []
    for k, ((device, dtype), group) in enumerate(sc.groupby(["device_name", "dtype"], sort=True)):
        rows = group.rename(columns={"rule": "memory_rule", "ms_at_t": "ms_per_frame_at_t"}).to_dict("records")
        methods = sorted({str(m) for m in group["peak_mem_method"].dropna() if str(m)})
        fig = draw_scaling(rows, f"Scaling with video length ({device}, {dtype}; files: "
                                 f"{', '.join(sorted(set(group['file'])))})", "; ".join(methods) or "method not recorded")
        name = "scaling.png" if k == 0 else f"scaling_{k}.png"
        _save(fig, out_dir / name)
        infos.append(FigureInfo(name, f"Scaling: {device}, {dtype}",
                                "From the scaling benchmark (the figure `gdkvm bench scaling` draws): the cost of frame "
                                "T (median of the last steps up to T), the bytes of the carried state after T frames, "
                                "and the peak memory, per memory rule. Constant-state rules stay flat; the softmax "
                                "memory keeps every frame and grows (and is only streamed up to a cap).", "scaling"))
    return infos


def all_figures(data: ReportData, out_dir: Path, missing: list[str]) -> list[FigureInfo]:
    """Every figure of the report, written into ``out_dir`` (which must exist), in the fixed style of
    :func:`gdkvm.report.style.figure_style` (the user's matplotlibrc does not apply)."""
    infos: list[FigureInfo] = []
    with figure_style():
        for make in (training_curves, fps_vs_dice, ef_agreement_plots, qualitative_overlays, gate_distributions,
                     gates_by_variant, scaling_plots):
            infos += make(data, out_dir, missing)
    return infos
