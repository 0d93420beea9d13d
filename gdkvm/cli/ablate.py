"""``gdkvm ablate``: reproduce the paper's Table 3 or Table 4 (train + evaluate each row)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gdkvm.cli.common import (
    DEVICE_OPTION_HELP,
    PresetName,
    Split,
    ThreadsOpt,
    console,
    progress_callback,
    start_long_command,
)
from gdkvm.utils.device import check_device_name


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def ablate(
    table: Annotated[int, typer.Option("--table", help="Paper table: 3 (components) or 4 (update rules).")],
    data: Annotated[Path, typer.Option("--data", help="Prepared dataset folder (PREPARED/<dataset>).")],
    preset: Annotated[PresetName, typer.Option("--preset", help="Model size preset.")] = "tiny",
    iterations: Annotated[int | None, typer.Option("--iterations", help="Training iterations per row (default: 1500).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Global batch (default: 10).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="AdamW learning rate (default: 1e-4).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (default: 0).")] = None,
    device: Annotated[str, typer.Option("--device", help=DEVICE_OPTION_HELP)] = "auto",
    val_every: Annotated[int | None, typer.Option("--val-every", help="Validate every N iterations (default: 250).")] = None,
    split: Annotated[Split, typer.Option("--split", help="Split the rows are scored on.")] = "test",
    out: Annotated[Path, typer.Option("--out", help="Folder holding the run folders.")] = Path("results/runs"),
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples.")] = 1000,
    seeds: Annotated[str, typer.Option("--seeds", help="Comma-separated training seeds, one run each, e.g. 0,1,2.")] = "0",
    key_scale: Annotated[str, typer.Option("--key-scale", help="Comma-separated key stabilisers of the GDKVM rows: sqrt-pixels (default) | none (as printed) | frobenius.")] = "sqrt-pixels",
    baselines: Annotated[bool, typer.Option("--baselines", help="Also train and score the unet and stm baselines.")] = False,
    rows: Annotated[str | None, typer.Option("--rows", help="Comma-separated rows to run (default: all), e.g. full,unet; the reference row (full / gdr) is always added.")] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Train and evaluate every row of a paper ablation table and print ours next to the paper's mDice.

    Re-running skips rows that already have an evaluation, evaluates rows whose training finished and
    resumes rows whose training was interrupted.

    [bold]Examples[/]

      gdkvm ablate --table 3 --data data/prepared/camus --preset tiny --iterations 200

      gdkvm ablate --table 4 --data data/prepared/camus --preset paper

      gdkvm ablate --table 4 --data data/prepared/camus --preset tiny --seeds 0,1,2 --key-scale sqrt-pixels,none,frobenius

      gdkvm ablate --table 3 --baselines --rows unet --data data/prepared/camus --preset tiny --seeds 0,1,2,3,4,5

    With several seeds or stabilisers it also writes <out>/ablation-table<N>-<dataset>-<preset>.csv: per row and
    stabiliser the mean and SD of mDice over seeds and the paired bootstrap 95% CI (by patient) of the Dice
    difference from the reference row (full / gdr).
    """
    from gdkvm.engine.ablate import (
        ablation_plan,
        run_ablation,
        select_rows,
        summarise_ablation,
        summary_path,
        write_ablation_summary,
    )
    from gdkvm.engine.config import TrainConfig
    from gdkvm.errors import ConfigError

    try:
        seed_list = tuple(int(x) for x in seeds.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--seeds: expected comma-separated integers, got {seeds!r}") from None
    if seed is not None:
        seed_list = (seed,)
    scales = tuple(x.strip() for x in key_scale.split(",") if x.strip())
    row_list = None if rows is None else tuple(x.strip() for x in rows.split(",") if x.strip())
    ablation_plan(table, seed_list, scales, baselines, row_list)  # every option checked before any training
    base = TrainConfig(data=str(data), device=check_device_name(device)).with_overrides(
        iterations=iterations, batch_size=batch_size, lr=lr, val_every=val_every,
        ckpt_every=val_every)
    from gdkvm.engine.inference import precision_name

    start_long_command(base.device, lambda dev: precision_name(dev, base.amp), threads, preset=preset,
                       paper_detail=f"ResNet-50 encoder, {base.iterations} iterations per row")
    rows = run_ablation(table, data, preset=preset, out=out, base=base, split=split, n_boot=n_boot,
                        seeds=seed_list, key_scales=scales, baselines=baselines, rows=row_list, log=console.print,
                        progress_factory=lambda desc, total: progress_callback(desc, total=total))
    unit = next((r.unit for r in rows if r.unit), "px")
    view = Table(title=f"Table {table}: {data.name}/{split}, preset {preset}", header_style="bold",
                 caption=f"mDice/mIoU x100, distances in {unit}; paper = CAMUS, paper preset, 1500 iterations")
    for col in ("variant", "paper row", "paper mDice", "our mDice", "mIoU", "HD95", "ASD"):
        view.add_column(col, justify="left" if col in ("variant", "paper row") else "right")
    for r in rows:
        view.add_row(r.variant, r.paper_row, _num(r.paper_mdice), _num(100 * r.dice), _num(100 * r.iou),
                     _num(r.hd95), _num(r.asd))
    console.print(view)
    for r in rows:
        console.print(f"[dim]{r.variant}: {r.status}, {r.run_dir}[/]", soft_wrap=True)
    if len(seed_list) > 1 or len(scales) > 1 or baselines or row_list is not None:
        summary = summarise_ablation(rows, table, data.name, preset, split=split, n_boot=max(n_boot, 200))
        path = write_ablation_summary(summary, summary_path(
            out, table, data.name, preset, None if row_list is None else select_rows(table, row_list, baselines)))
        view = Table(title=f"Table {table} over seeds {','.join(map(str, seed_list))}", header_style="bold",
                     caption="mDice x100; diff = row - reference, paired bootstrap 95% CI by patient")
        for col in ("variant", "key scale", "seeds", "diverged", "mDice", "SD", "diff", "95% CI", "resolved"):
            view.add_column(col, justify="left" if col in ("variant", "key scale") else "right")
        for _, r in summary.iterrows():
            ci = "-" if not math.isfinite(r["diff_ci_low"]) else f"{r['diff_ci_low']:.2f} .. {r['diff_ci_high']:.2f}"
            view.add_row(str(r["variant"]), str(r["key_scale"]), str(r["n_seeds"]), str(r["n_diverged"]),
                         _num(r["mdice"]), _num(r["mdice_sd"]), _num(r["diff"]), ci, "yes" if r["resolved"] else "no")
        console.print(view)
        console.print(f"summary: {path}", soft_wrap=True)
