"""`gdkvm predict`: segment whole echo recordings, detect ED/ES per beat, estimate EF."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gdkvm.cli.common import (
    DEVICE_OPTION_HELP,
    ThreadsOpt,
    console,
    err_console,
    progress_tasks,
    start_long_command,
)


def predict(
    inputs: Annotated[list[Path], typer.Argument(help="AVI/MP4 videos, CAMUS NIfTI sequences, or folders of them.")],
    run: Annotated[Path | None, typer.Option("--run", help="Trained run folder (see --checkpoint).")] = None,
    weights: Annotated[Path | None, typer.Option(
        "--weights", help="A gdkvm checkpoint file (.safetensors) to use without a run folder.")] = None,
    checkpoint: Annotated[str, typer.Option(
        "--checkpoint", help="With --run: auto (best, else last) | best | last.")] = "auto",
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("results/predict"),
    size: Annotated[int | None, typer.Option(
        "--size", help="Model input size (default: the checkpoint's input_size, else the run's training size).")] = None,
    device: Annotated[str, typer.Option("--device", help=DEVICE_OPTION_HELP)] = "auto",
    fps: Annotated[float, typer.Option("--fps", help="Frame rate when the file does not say.")] = 50.0,
    video: Annotated[bool, typer.Option("--video/--no-video", help="Write the overlay video.")] = True,
    allow_growing_memory: Annotated[
        bool, typer.Option("--allow-growing-memory", help="Run a softmax-memory model on long recordings.")
    ] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Segment every frame of whole recordings and estimate EF per heartbeat.

    For each input it writes the LV masks (NIfTI for NIfTI input, compressed NumPy otherwise), an overlay
    video and PNG (contour, ED/ES marked), the area curve with detected ED/ES, and a JSON summary; a
    `summary.csv` covers all inputs. A CAMUS half sequence (ED -> ES, under one beat) takes its ED/ES
    frames from the Info_<view>.cfg beside it; any other recording shorter than one beat gets EF
    "unavailable" with the reason. Each recording gets a quality verdict (flags such as empty or tiny
    masks, a mask on the sector edge, EF outside 5-90 %, beat lengths outside 0.3-2 s, low confidence);
    EF per beat counts only beats that pass. Files from a folder keep their sub-folder under --out, so
    names never collide. When a FileList.csv (EchoNet) or Info_<view>.cfg (CAMUS) sits next to an input,
    its reference EF is shown beside ours. The exit code is 1 if any input failed (the others are still processed).

    Without --run or --weights the shipped phantom-trained weights (gdkvm/weights/) are used.

    [bold]Examples[/]

      gdkvm predict --run results/runs/echonet-full-tiny data/synthetic/EchoNet-Dynamic/Videos --out results/predict
      gdkvm predict --run results/runs/camus-full-tiny patient0001_4CH_half_sequence.nii.gz
      gdkvm predict --weights model.safetensors --size 112 video.avi
      gdkvm predict video.avi --out results/predict     (shipped weights)
    """
    from gdkvm.predict.run import predict_many
    from gdkvm.predict.segmenter import load_segmenter

    start_long_command(device, "fp32", threads)
    loaded = load_segmenter(run, device=device, size=size, allow_growing_memory=allow_growing_memory,
                            weights=weights, checkpoint=checkpoint)
    segmenter = loaded.segmenter
    console.print(f"{loaded.source} (input {segmenter.size}x{segmenter.size}, device {segmenter.device})")
    with progress_tasks() as add_task:

        def on_start(path, i, n):
            update = add_task(f"[{i + 1}/{n}] {path.name}", None)
            return lambda done, total: update(done, total)

        outcomes = predict_many(list(inputs), segmenter, out, size=segmenter.size, default_fps=fps,
                                overlay_video=video, on_start=on_start)
    table = Table(title=f"gdkvm predict -> {out}", header_style="bold")
    for col in ("input", "frames", "beats", "ED frames", "ES frames", "EF per beat (%)", "mean EF (%)", "quality"):
        table.add_column(col)
    for o in outcomes:
        if not o.ok:
            table.add_row(o.input.name, "-", "-", "-", "-", f"[red]failed: {o.error}[/]", "-", "[red]failed[/]")
            continue
        s = o.summary
        efs = ", ".join(f"{b['ef']:.1f}" for b in s["beats"]) or "-"
        mean = f"{s['mean_ef']:.1f}" if s["mean_ef"] is not None else f"[yellow]unavailable: {s['ef_unavailable_reason']}[/]"
        if s.get("reference_ef") is not None:
            mean += f" (reference {s['reference_ef']:.1f})"
        q = s.get("quality", {})
        verdict = "ok" if q.get("ok") else "[yellow]flagged: " + "; ".join(q.get("flags", [])) + "[/]"
        table.add_row(o.input.name, str(s["frames"]), str(s["n_beats"]), str(s["ed_frames"]),
                      str(s["es_frames"]), efs, mean, verdict)
    console.print(table)
    for o in outcomes:
        for note in o.summary.get("notes", []):
            console.print(f"[dim]{o.input.name}: {note}[/]")
    failed = [o for o in outcomes if not o.ok]
    flagged = sum(1 for o in outcomes if o.ok and not o.summary.get("quality", {}).get("ok", True))
    console.print(f"{len(outcomes) - len(failed)} of {len(outcomes)} recording(s) done, {flagged} flagged, "
                  f"{len(failed)} failed")
    if failed:
        for o in failed:
            err_console.print(f"[bold red]error:[/] {o.error}")
        raise typer.Exit(1)
