"""`gdkvm predict`: segment whole echo recordings, detect ED/ES per beat, estimate EF."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gdkvm.cli.common import console, err_console, make_progress


def predict(
    inputs: Annotated[list[Path], typer.Argument(help="AVI/MP4 videos, CAMUS NIfTI sequences, or folders of them.")],
    run: Annotated[Path, typer.Option("--run", help="Trained run folder (uses checkpoint_best, else _last).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("results/predict"),
    size: Annotated[int | None, typer.Option("--size", help="Model input size (default: the run's training size).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda")] = "auto",
    fps: Annotated[float, typer.Option("--fps", help="Frame rate when the file does not say.")] = 50.0,
    video: Annotated[bool, typer.Option("--video/--no-video", help="Write the overlay video.")] = True,
    allow_growing_memory: Annotated[
        bool, typer.Option("--allow-growing-memory", help="Run a softmax-memory model on long recordings.")
    ] = False,
) -> None:
    """Segment every frame of whole recordings and estimate EF per heartbeat.

    For each input it writes the LV masks (NIfTI for NIfTI input, compressed NumPy otherwise), an overlay
    video and PNG (contour, ED/ES marked), the area curve with detected ED/ES, and a JSON summary; a
    `summary.csv` covers all inputs. A CAMUS half sequence (ED -> ES, under one beat) takes its ED/ES
    frames from the Info_<view>.cfg beside it; any other recording shorter than one beat gets EF
    "unavailable" with the reason. The exit code is 1 if any input failed (the others are still processed).

    [bold]Examples[/]

      gdkvm predict --run results/runs/echonet-full-tiny data/synthetic/EchoNet-Dynamic/Videos --out results/predict
      gdkvm predict --run results/runs/camus-full-tiny patient0001_4CH_half_sequence.nii.gz
    """
    from gdkvm.predict.run import predict_many
    from gdkvm.predict.segmenter import load_segmenter

    segmenter, ckpt = load_segmenter(run, device=device, size=size, allow_growing_memory=allow_growing_memory)
    console.print(f"model: {ckpt} (input {segmenter.size}x{segmenter.size}, device {segmenter.device})")
    with make_progress() as progress:
        task_ids: dict[Path, int] = {}

        def on_start(path, i, n):
            task = progress.add_task(f"[{i + 1}/{n}] {path.name}", total=None, info="")
            task_ids[path] = task

            def update(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            return update

        outcomes = predict_many(list(inputs), segmenter, out, size=segmenter.size, default_fps=fps,
                                overlay_video=video, on_start=on_start)
    table = Table(title=f"gdkvm predict -> {out}", header_style="bold")
    for col in ("input", "frames", "beats", "ED frames", "ES frames", "EF per beat (%)", "mean EF (%)"):
        table.add_column(col)
    for o in outcomes:
        if not o.ok:
            table.add_row(o.input.name, "-", "-", "-", "-", f"[red]failed: {o.error}[/]", "-")
            continue
        s = o.summary
        efs = ", ".join(f"{b['ef']:.1f}" for b in s["beats"]) or "-"
        mean = f"{s['mean_ef']:.1f}" if s["mean_ef"] is not None else f"[yellow]unavailable: {s['ef_unavailable_reason']}[/]"
        table.add_row(o.input.name, str(s["frames"]), str(s["n_beats"]), str(s["ed_frames"]),
                      str(s["es_frames"]), efs, mean)
    console.print(table)
    for o in outcomes:
        for note in o.summary.get("notes", []):
            console.print(f"[dim]{o.input.name}: {note}[/]")
    failed = [o for o in outcomes if not o.ok]
    if failed:
        for o in failed:
            err_console.print(f"[bold red]error:[/] {o.error}")
        raise typer.Exit(1)
