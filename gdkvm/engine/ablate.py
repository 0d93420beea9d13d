"""The paper's ablation tables as runs: train and evaluate every row, resumably.

Table 3 (components, CAMUS): ``lkva``, ``lkva-kpff``, ``lkva-gdr``, ``full``.
Table 4 (state update rules): ``linear``, ``delta``, ``wo-alpha``, ``wo-beta``, ``gdr``.

Each row is one run folder ``<out>/table<N>-<dataset>-<variant>-<preset>``. A row whose evaluation
``summary.json`` exists is skipped; a row with a finished training is only evaluated; a row with a
partial training is resumed. The paper's mDice comes from the registry's :class:`VariantSpec`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gdkvm.engine.checkpoint import RunPaths
from gdkvm.engine.config import TrainConfig
from gdkvm.engine.evaluate import evaluate_run, read_summary
from gdkvm.engine.train import train_run
from gdkvm.errors import ConfigError

TABLES: dict[int, tuple[str, ...]] = {
    3: ("lkva", "lkva-kpff", "lkva-gdr", "full"),
    4: ("linear", "delta", "wo-alpha", "wo-beta", "gdr"),
}


@dataclass
class AblationRow:
    """One row of an ablation table: the paper's numbers and ours (Dice/IoU as fractions)."""

    variant: str
    paper_row: str
    paper_mdice: float | None
    run_dir: Path
    status: str
    dice: float = math.nan
    iou: float = math.nan
    hd95: float = math.nan
    asd: float = math.nan
    unit: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "paper_row": self.paper_row, "paper_mdice": self.paper_mdice,
                "mdice": 100 * self.dice, "miou": 100 * self.iou, "hd95": self.hd95, "asd": self.asd,
                "unit": self.unit, "status": self.status, "run_dir": str(self.run_dir)}


def table_variants(table: int) -> tuple[str, ...]:
    """The variants of paper table 3 or 4."""
    if table not in TABLES:
        raise ConfigError(f"unknown ablation table {table}; valid: {', '.join(map(str, TABLES))}")
    return TABLES[table]


def row_run_name(table: int, dataset: str, variant: str, preset: str) -> str:
    return f"table{table}-{dataset}-{variant}-{preset}"


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
    log: Callable[[str], None] | None = None,
    progress_factory: Callable[[str, int], Any] | None = None,
) -> list[AblationRow]:
    """Train and evaluate every row of ``table`` on the prepared dataset ``data``.

    Args:
        base: training options shared by the rows (iterations, batch, lr, seed, device, ...); its
            ``data``, ``variant``, ``preset`` and ``name`` are set per row.
        progress_factory: ``progress_factory(description, total)`` returning a context manager that
            yields a progress callback (the CLI passes rich's); None trains silently.
    Returns:
        One :class:`AblationRow` per variant, in the paper's order.
    """
    from gdkvm.models.registry import get_variant

    log = log or (lambda _msg: None)
    variants = table_variants(table)
    base = base or TrainConfig(data=str(data))
    dataset = Path(data).name
    rows = []
    for variant in variants:
        spec = get_variant(variant)
        name = row_run_name(table, dataset, variant, preset)
        cfg = replace(base, data=str(data), variant=variant, preset=preset, name=name).validate()
        paths = RunPaths(Path(out) / name)
        summary = read_summary(paths.root, split, mode)
        status = "done earlier"
        if summary is None:
            if not paths.done.is_file():
                resume = paths.config.is_file()
                log(f"{'resuming' if resume else 'training'} {variant} -> {paths.root}")
                if progress_factory is not None:
                    with progress_factory(f"train {variant}", cfg.iterations) as update:
                        train_run(cfg, out, resume=resume, progress=update, log=log)
                else:
                    train_run(cfg, out, resume=resume, log=log)
            log(f"evaluating {variant} on {split}")
            summary = evaluate_run(paths.root, split, mode=mode, device=cfg.device, amp=cfg.amp,
                                   n_boot=n_boot).summary
            status = "new"
        rows.append(AblationRow(
            variant=variant, paper_row=spec.paper_row or "-", paper_mdice=spec.paper_mdice, run_dir=paths.root,
            status=status, dice=_metric(summary, "dice"), iou=_metric(summary, "iou"),
            hd95=_metric(summary, "hd95"), asd=_metric(summary, "asd"), unit=str(summary.get("unit") or ""),
        ))
    return rows
