"""``gdkvm evaluate``: score a trained run on a split and print the metrics table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gdkvm.cli.common import (
    DEVICE_OPTION_HELP,
    CheckpointChoice,
    Mode,
    OldBatchOpt,
    Split,
    ThreadsOpt,
    console,
    progress_callback,
    renamed_option,
    start_long_command,
)
from gdkvm.utils.device import check_device_name


def _fmt(value: Any, scale: float = 1.0, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{scale * float(value):.{digits}f}"


def _cell(entry: dict[str, Any], scale: float) -> str:
    mean = _fmt(entry.get("mean"), scale)
    low, high = _fmt(entry.get("ci_low"), scale, 1), _fmt(entry.get("ci_high"), scale, 1)
    return mean if low == "-" else f"{mean} [dim][{low}, {high}][/]"


def segmentation_table(summary: dict[str, Any]) -> Table:
    """Metrics as rows, overall / ED / ES as columns: mean and bootstrap 95% CI (Dice, IoU x100)."""
    unit = summary.get("unit") or "px"
    title = (f"{summary['run']} on {summary['dataset']}/{summary['split']} "
             f"({summary['mode']}, {summary['checkpoint']}, {summary['n_videos']} videos)")
    blocks = summary["segmentation"]
    table = Table(title=title, header_style="bold", caption="mean [95% CI, patients resampled]")
    table.add_column("metric", no_wrap=True)
    for phase in blocks:
        table.add_column(phase, justify="right", no_wrap=True)
    table.add_row("frames", *(str(b["n_frames"]) for b in blocks.values()))
    rows = (("Dice x100", "dice", 100.0), ("IoU x100", "iou", 100.0),
            (f"HD95 ({unit})", "hd95", 1.0), (f"ASD ({unit})", "asd", 1.0))
    for label, key, scale in rows:
        table.add_row(label, *(_cell(b[key], scale) for b in blocks.values()))
    return table


def ef_table(summary: dict[str, Any]) -> Table | None:
    """EF agreement per method (the report's names: biplane-simpson, single-plane-simpson, area-length)
    and reference (the report's labels, :data:`gdkvm.metrics.clinical.EF_REFERENCES`): n, Pearson r,
    bias, SD (ddof=1), MAE. Limits of agreement and the MemSAM-style numbers are in summary.json."""
    from gdkvm.metrics.clinical import EF_REFERENCES

    if not summary.get("ef"):
        return None
    table = Table(title="ejection fraction (%), prediction - reference", header_style="bold",
                  caption="method bias: EF of the reference masks (same method) vs the dataset's EF")
    for col in ("method", "reference", "n", "r", "bias", "SD", "MAE"):
        table.add_column(col, justify="left" if col in ("method", "reference") else "right", no_wrap=True)
    for method, block in summary["ef"].items():
        for key, label in EF_REFERENCES.items():
            a = block[key]
            table.add_row(method, label, str(a.get("n")),
                          _fmt(a.get("pearson_r"), digits=3), _fmt(a.get("bias"), digits=1),
                          _fmt(a.get("sd"), digits=1), _fmt(a.get("mae"), digits=1))
    return table


def evaluate(
    run: Annotated[Path, typer.Option("--run", help="Training run folder (config.yaml + checkpoint).")],
    split: Annotated[Split, typer.Option("--split", help="Split to score.")] = "test",
    data: Annotated[Path | None, typer.Option(
        "--data", help="A prepared dataset folder to score instead of the run's own store, or a folder to search "
                       "below for the run's store by its recorded id (default: the run's recorded store).")] = None,
    mode: Annotated[Mode, typer.Option("--mode", help="Metric protocol (docs/metrics.md).")] = "clean",
    checkpoint: Annotated[CheckpointChoice, typer.Option("--checkpoint", help="auto: best, else last.")] = "auto",
    device: Annotated[str, typer.Option("--device", help=DEVICE_OPTION_HELP)] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Clips streamed side by side.")] = 8,
    old_batch: OldBatchOpt = None,
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples for the 95% CIs.")] = 1000,
    threads: ThreadsOpt = None,
) -> None:
    """Stream a split through the model frame by frame and write per-frame / per-video / EF tables.

    Output: RUN/eval/SPLIT/ (clean) or RUN/eval/SPLIT-MODE/ with per_frame.csv, per_video.csv, ef.csv,
    summary.json and predictions.npy.

    [bold]Examples[/]

      gdkvm evaluate --run results/runs/camus-full-paper

      gdkvm evaluate --run results/runs/camus-full-paper --split val --mode memsam
    """
    from gdkvm.engine.evaluate import evaluate_run, find_eval_store
    from gdkvm.engine.inference import precision_name

    batch_size = renamed_option("--batch-size", batch_size, 8, "--batch", old_batch)
    device = check_device_name(device)
    start_long_command(device, lambda dev: precision_name(dev, True), threads)  # checks CUDA before any work
    found = find_eval_store(run, data)
    console.print(found.line(), soft_wrap=True, markup=False, highlight=False)
    with progress_callback(f"evaluate {split}") as update:
        result = evaluate_run(run, split, data=found, mode=mode, checkpoint=checkpoint,
                              device=device, batch=batch_size, n_boot=n_boot,
                              progress=lambda done, total: update(done, total))
    from gdkvm.engine.evaluate import _json_safe

    summary = _json_safe(result.summary)
    console.print(segmentation_table(summary))
    ef = ef_table(summary)
    if ef is not None:
        console.print(ef)
    console.print(f"tables written to {result.out_dir}", soft_wrap=True)
