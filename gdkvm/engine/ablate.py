"""The paper's ablation tables as runs: train and evaluate every row, resumably.

Table 3 (components, CAMUS): ``lkva``, ``lkva-kpff``, ``lkva-gdr``, ``full``.
Table 4 (state update rules): ``linear``, ``delta``, ``wo-alpha``, ``wo-beta``, ``gdr``.
Optionally the ``unet`` and ``stm`` baselines are added as rows.

Each row is trained once per seed and, for the GDKVM rows, once per key stabiliser (``key_scale``:
``sqrt-pixels`` is the default, ``none`` the equations as printed, ``frobenius`` the per-frame
1/||K||_F scaling). One run folder per (row, stabiliser, seed):
``<out>/table<N>-<dataset>-<variant>-<preset>[-ks-<key_scale>][-seed<s>]`` (the suffixes only where not the
default, so single-seed folders keep their old names). A run whose evaluation ``summary.json`` exists is
skipped; one with a finished training is only evaluated; one with a partial training is resumed. A run
whose loss or gradient became NaN/inf is a result, not a crash (the paper's unstable rows are the point of
``--key-scale none``): it is recorded as diverged (``diverged.json`` in its folder, so a rerun does not
train it again), its metrics are NaN, and the table goes on. The paper's mDice comes from the registry's
:class:`VariantSpec`.

:func:`summarise_ablation` turns the runs into one line per (row, stabiliser): mean and SD of the test Dice
over seeds, and the paired bootstrap CI, by patient, of the Dice difference from the table's reference row
(``full`` / ``gdr`` under the same stabiliser), with each patient's Dice averaged over frames and seeds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gdkvm.engine import run_files
from gdkvm.engine.checkpoint import RunPaths
from gdkvm.engine.config import TrainConfig
from gdkvm.engine.evaluate import eval_dir, evaluate_run, read_summary
from gdkvm.engine.train import NonFiniteLossError, train_run
from gdkvm.errors import ConfigError, GdkvmError
from gdkvm.metrics.bootstrap import paired_bootstrap_diff
from gdkvm.metrics.errors import MetricError
from gdkvm.utils.atomic import atomic_path, atomic_write_text

TABLES: dict[int, tuple[str, ...]] = {
    3: ("lkva", "lkva-kpff", "lkva-gdr", "full"),
    4: ("linear", "delta", "wo-alpha", "wo-beta", "gdr"),
}
#: The row every other row of a table is compared with.
REFERENCE_ROW: dict[int, str] = {3: "full", 4: "gdr"}
BASELINE_ROWS: tuple[str, ...] = ("unet", "stm")
DEFAULT_KEY_SCALE = "sqrt-pixels"
SUMMARY_COLUMNS: tuple[str, ...] = (
    "table", "dataset", "preset", "variant", "paper_row", "paper_mdice", "key_scale", "n_seeds", "seeds",
    "n_patients", "mdice", "mdice_sd", "reference", "diff", "diff_ci_low", "diff_ci_high", "resolved",
    "n_diverged",
)
#: Written in a run folder whose training diverged (NaN/inf loss or gradient).
DIVERGED_FILE = "diverged.json"


@dataclass
class AblationRow:
    """One row of an ablation table: the paper's numbers and ours (Dice/IoU as fractions)."""

    variant: str
    paper_row: str
    paper_mdice: float | None
    run_dir: Path
    status: str
    seed: int = 0
    key_scale: str = DEFAULT_KEY_SCALE
    dice: float = math.nan
    iou: float = math.nan
    hd95: float = math.nan
    asd: float = math.nan
    unit: str = ""

    @property
    def diverged(self) -> bool:
        """True when this run's training stopped on a NaN/inf loss or gradient (its metrics are NaN)."""
        return self.status.startswith("diverged")

    def as_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "paper_row": self.paper_row, "paper_mdice": self.paper_mdice,
                "seed": self.seed, "key_scale": self.key_scale, "mdice": 100 * self.dice, "miou": 100 * self.iou, "hd95": self.hd95, "asd": self.asd,
                "unit": self.unit, "status": self.status, "run_dir": str(self.run_dir)}


def table_variants(table: int) -> tuple[str, ...]:
    """The variants of paper table 3 or 4."""
    if table not in TABLES:
        raise ConfigError(f"unknown ablation table {table}; valid: {', '.join(map(str, TABLES))}")
    return TABLES[table]


def row_run_name(table: int, dataset: str, variant: str, preset: str, key_scale: str = DEFAULT_KEY_SCALE,
                 seed: int = 0) -> str:
    """The run folder name of one (row, stabiliser, seed); defaults add no suffix."""
    name = f"table{table}-{dataset}-{variant}-{preset}"
    if key_scale != DEFAULT_KEY_SCALE:
        name += f"-ks-{key_scale}"
    if seed != 0:
        name += f"-seed{seed}"
    return name


def select_rows(table: int, rows: tuple[str, ...] | None, baselines: bool = False) -> tuple[str, ...]:
    """The rows to run, in the paper's order: all of ``table`` (and the baselines) when ``rows`` is None,
    else ``rows`` plus the table's reference row, which every difference is measured from.

    Raises:
        ConfigError: a name that is not a row of ``table`` (or a baseline, when ``baselines`` is set).
    """
    available = table_variants(table) + (BASELINE_ROWS if baselines else ())
    if rows is None:
        return available
    unknown = [r for r in rows if r not in available]
    if unknown or not rows:
        hint = "" if baselines or not set(unknown) & set(BASELINE_ROWS) else " (add --baselines for unet/stm)"
        raise ConfigError(f"ablation: rows {unknown or list(rows)} are not rows of table {table}; "
                          f"valid: {', '.join(available)}{hint}")
    wanted = set(rows) | {REFERENCE_ROW[table]}
    return tuple(r for r in available if r in wanted)


def ablation_plan(table: int, seeds: tuple[int, ...] = (0,), key_scales: tuple[str, ...] = (DEFAULT_KEY_SCALE,),
                  baselines: bool = False, rows: tuple[str, ...] | None = None) -> list[tuple[str, str, int]]:
    """Every (variant, key_scale, seed) to run, in the paper's row order; checked before any training.

    Baselines have no key memory, so they run under the default stabiliser only. ``rows`` restricts the
    plan to those rows (and the reference row, see :func:`select_rows`).
    """
    from gdkvm.models.config import KEY_SCALES
    from gdkvm.models.registry import get_variant

    selected = select_rows(table, rows, baselines)
    variants = [v for v in selected if v not in BASELINE_ROWS]
    chosen_baselines = [v for v in selected if v in BASELINE_ROWS]
    if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ConfigError(f"ablation: seeds must be distinct non-negative integers, got {list(seeds)}")
    if not key_scales or len(set(key_scales)) != len(key_scales):
        raise ConfigError(f"ablation: key scales must be distinct, got {list(key_scales)}")
    for scale in key_scales:
        if scale not in KEY_SCALES:
            raise ConfigError(f"ablation: key scale {scale!r} is not one of {list(KEY_SCALES)}")
    plan = [(v, k, s) for k in key_scales for v in variants for s in seeds]
    for name in chosen_baselines:
        get_variant(name)  # a missing baseline is a one-line error before any work
    plan += [(b, DEFAULT_KEY_SCALE, s) for b in chosen_baselines for s in seeds]
    return plan


def _metric(summary: dict[str, Any], key: str) -> float:
    value = summary["segmentation"]["overall"][key]["mean"]
    return math.nan if value is None else float(value)


def run_ablation(
    table: int,
    data: str | Path,
    *,
    preset: str = "tiny",
    out: str | Path = "results/runs",
    base: TrainConfig | None = None,
    split: str = "test",
    mode: str = "clean",
    n_boot: int = 1000,
    seeds: tuple[int, ...] = (0,),
    key_scales: tuple[str, ...] = (DEFAULT_KEY_SCALE,),
    baselines: bool = False,
    rows: tuple[str, ...] | None = None,
    log: Callable[[str], None] | None = None,
    progress_factory: Callable[[str, int], Any] | None = None,
) -> list[AblationRow]:
    """Train and evaluate every row of ``table`` on the prepared dataset ``data``, per seed and stabiliser.

    Args:
        base: training options shared by the rows (iterations, batch, lr, device, ...); its ``data``,
            ``variant``, ``preset``, ``name`` and ``seed`` are set per run, and ``key_scale`` is added to its
            model overrides for the GDKVM rows.
        seeds: training seeds (one run each); key_scales: stabilisers of the GDKVM rows;
        baselines: also run the ``unet`` and ``stm`` baselines.
        rows: only these rows (plus the reference row); None runs them all.
        progress_factory: ``progress_factory(description, total)`` returning a context manager that
            yields a progress callback (the CLI passes rich's); None trains silently.
    Returns:
        One :class:`AblationRow` per run, in :func:`ablation_plan` order.
    """
    from gdkvm.models.registry import get_variant

    log = log or (lambda _msg: None)
    plan = ablation_plan(table, tuple(seeds), tuple(key_scales), baselines, rows)
    base = base or TrainConfig(data=str(data))
    dataset = Path(data).name
    if split not in ("train", "val", "test"):
        raise ConfigError(f"ablation: split {split!r} is not one of ['train', 'val', 'test']")
    rows = []
    for variant, key_scale, seed in plan:
        spec = get_variant(variant)
        name = row_run_name(table, dataset, variant, preset, key_scale, seed)
        overrides = dict(base.model_overrides)
        if spec.builder is None and key_scale != DEFAULT_KEY_SCALE:
            overrides["key_scale"] = key_scale
        cfg = replace(base, data=str(data), variant=variant, preset=preset, name=name, seed=seed,
                      model_overrides=overrides).validate()
        paths = RunPaths(Path(out) / name)
        summary = read_summary(paths.root, split, mode)
        status = "done earlier"
        label = f"{variant} ({key_scale}, seed {seed})"
        diverged = read_divergence(paths.root)
        if summary is None and diverged is None and not paths.done.is_file():
            resume = paths.config.is_file()
            log(f"{'resuming' if resume else 'training'} {label} -> {paths.root}")
            try:
                if progress_factory is not None:
                    with progress_factory(f"train {label}", cfg.iterations) as update:
                        train_run(cfg, out, resume=resume, progress=update, log=log)
                else:
                    train_run(cfg, out, resume=resume, log=log)
            except NonFiniteLossError as err:
                diverged = record_divergence(paths.root, str(err))
                log(f"{label} diverged: {diverged} (recorded, the table goes on)")
                status = "diverged"
        elif diverged is not None:
            status = "diverged earlier"
        if diverged is not None:
            rows.append(AblationRow(
                variant=variant, paper_row=spec.paper_row or "-", paper_mdice=spec.paper_mdice,
                run_dir=paths.root, status=f"{status}: {diverged}", seed=seed, key_scale=key_scale,
            ))
            continue
        if summary is None:
            log(f"evaluating {label} on {split}")
            summary = evaluate_run(paths.root, split, mode=mode, device=cfg.device, amp=cfg.amp,
                                   n_boot=n_boot).summary
            status = "new"
        rows.append(AblationRow(
            variant=variant, paper_row=spec.paper_row or "-", paper_mdice=spec.paper_mdice, run_dir=paths.root,
            status=status, seed=seed, key_scale=key_scale, dice=_metric(summary, "dice"), iou=_metric(summary, "iou"),
            hd95=_metric(summary, "hd95"), asd=_metric(summary, "asd"), unit=str(summary.get("unit") or ""),
        ))
    return rows


def record_divergence(run_dir: Path, message: str) -> str:
    """Mark ``run_dir`` as diverged (atomically) and return the one-line reason stored."""
    reason = " ".join(message.split())
    atomic_write_text(Path(run_dir) / DIVERGED_FILE, json.dumps({"diverged": True, "reason": reason}) + "\n")
    return reason


def read_divergence(run_dir: Path) -> str | None:
    """The stored reason if ``run_dir`` diverged in an earlier ablation, else None."""
    path = Path(run_dir) / DIVERGED_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise GdkvmError(f"{path}: unreadable divergence record ({err}); delete it to train the run again") from None
    return str(data.get("reason", "NaN/inf loss")) if isinstance(data, dict) else "NaN/inf loss"


def _patient_dice(rows: list[AblationRow], split: str, mode: str) -> pd.Series:
    """Per-patient Dice of a group of runs (same row and stabiliser): mean over each run's scored frames,
    then over the runs (seeds) that did not diverge. Index: patient id (empty when every run diverged)."""
    per_run = []
    for row in (r for r in rows if not r.diverged):
        path = eval_dir(row.run_dir, split, mode) / run_files.PER_FRAME_FILE
        frame = pd.read_csv(path, dtype={"patient": str})
        dice = pd.to_numeric(frame["dice"], errors="coerce")
        per_run.append(dice.groupby(frame["patient"]).mean())
    if not per_run:
        return pd.Series(dtype=np.float64)
    return pd.concat(per_run, axis=1).mean(axis=1)


def summarise_ablation(rows: list[AblationRow], table: int, dataset: str, preset: str, *, split: str = "test",
                       mode: str = "clean", n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One line per (row, stabiliser) with SUMMARY_COLUMNS (Dice x100).

    ``diff`` is the mean over patients of (row - reference) Dice x100 and ``diff_ci_*`` its paired
    percentile bootstrap 95% CI over patients; ``resolved`` is True when the CI excludes 0. Baselines are
    compared with the reference row under the default stabiliser.
    """
    groups: dict[tuple[str, str], list[AblationRow]] = {}
    for row in rows:
        groups.setdefault((row.variant, row.key_scale), []).append(row)
    reference = REFERENCE_ROW[table]
    patient = {key: _patient_dice(members, split, mode) for key, members in groups.items()}
    lines = []
    for (variant, key_scale), members in groups.items():
        ref_key = (reference, key_scale if (reference, key_scale) in groups else DEFAULT_KEY_SCALE)
        dice = np.array([m.dice for m in members], dtype=np.float64) * 100
        line: dict[str, Any] = {
            "table": table, "dataset": dataset, "preset": preset, "variant": variant,
            "paper_row": members[0].paper_row, "paper_mdice": members[0].paper_mdice, "key_scale": key_scale,
            "n_seeds": len(members), "seeds": " ".join(str(m.seed) for m in members),
            "n_patients": int(patient[(variant, key_scale)].notna().sum()),
            "mdice": float(np.nanmean(dice)) if np.isfinite(dice).any() else math.nan,
            "mdice_sd": float(np.nanstd(dice, ddof=1)) if np.isfinite(dice).sum() > 1 else math.nan,
            "reference": f"{ref_key[0]} ({ref_key[1]})", "diff": math.nan, "diff_ci_low": math.nan,
            "diff_ci_high": math.nan, "resolved": False, "n_diverged": sum(m.diverged for m in members),
        }
        if ref_key in patient and ref_key != (variant, key_scale) and len(patient[(variant, key_scale)]) \
                and len(patient[ref_key]):
            a, b = patient[(variant, key_scale)].align(patient[ref_key], join="inner")
            try:
                est, low, high = paired_bootstrap_diff(a.to_numpy() * 100, b.to_numpy() * 100, n_boot=n_boot,
                                                       seed=seed)
            except MetricError:
                pass
            else:
                line.update(diff=est, diff_ci_low=low, diff_ci_high=high, resolved=bool(low > 0 or high < 0))
        lines.append(line)
    return pd.DataFrame(lines, columns=list(SUMMARY_COLUMNS))


def summary_path(out: str | Path, table: int, dataset: str, preset: str, rows: tuple[str, ...] | None = None) -> Path:
    """Where :func:`write_ablation_summary` puts a table's summary CSV (beside the run folders); ``rows``
    as given to :func:`select_rows` (None: the whole table)."""
    return Path(out) / run_files.ablation_summary_name(table, dataset, preset, rows)


def write_ablation_summary(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the summary CSV atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n", float_format="%.4f")
    return path
