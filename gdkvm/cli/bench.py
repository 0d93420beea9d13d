"""``gdkvm bench fps | scaling | kernels``: speed and memory benchmarks written to hardware-stamped CSVs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gdkvm.cli.common import (
    DEVICE_OPTION_HELP,
    OldBatchListOpt,
    OldBatchOpt,
    PresetName,
    ThreadsOpt,
    console,
    progress_callback,
    renamed_option,
    start_long_command,
)
from gdkvm.utils.device import check_device_name

bench_app = typer.Typer(
    help="Benchmarks: streaming FPS (ours vs the released-style reference), memory scaling with video "
    "length, and the per-frame memory kernel. Rows go to CSVs under results/bench named by hardware, "
    "precision and commit; definitions in docs/benchmarks.md.\n\n"
    "[bold]Examples[/]\n\n"
    "  gdkvm bench fps --preset tiny --size 128 --frames 30\n\n"
    "  gdkvm bench fps --preset paper --size 256 --dtype bf16 --batch-sizes 1,16 --cuda-graphs\n\n"
    "  gdkvm bench scaling --frames 10,100,1000 --preset tiny --size 64\n\n"
    "  gdkvm bench kernels --shapes 8x576x64x256x8",
    rich_markup_mode="rich",
    no_args_is_help=True,
)


DeviceOpt = Annotated[str, typer.Option("--device", help=DEVICE_OPTION_HELP)]
OutOpt = Annotated[
    Path,
    typer.Option(
        "--out",
        help="Folder for the CSV (rows are appended to a CSV of the same schema, hardware and commit).",
    ),
]


def _num(value: Any, fmt: str = ".1f", scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(float(value) * scale, fmt)


def _status(status: str) -> str:
    if status == "ok":
        return "[green]ok[/]"
    if status == "oom" or status.startswith("failed"):
        return f"[red]{status}[/]"
    return f"[yellow]{status}[/]"


_MODE_LABEL = {"model-only": "model", "end-to-end": "e2e", "reference": "ref"}


def _parse_native(text: str) -> tuple[int, int]:
    """``"112x112"`` (HxW) or ``"112"`` (square) -> (H, W); ConfigError otherwise."""
    from gdkvm.errors import ConfigError

    parts = text.lower().split("x")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or min(sides) < 1:
        raise ConfigError(f"--native-size: expected HxW or one side (positive integers), got {text!r}")
    return (sides[0], sides[-1])


@bench_app.command("fps")
def fps(
    variant: Annotated[str, typer.Option("--variant", help="Model variant (see `gdkvm variants`).")] = "full",
    preset: Annotated[PresetName, typer.Option("--preset", help="Size preset.")] = "paper",
    size: Annotated[int, typer.Option("--size", help="Model input side in pixels (multiple of 16).")] = 256,
    native_size: Annotated[
        str,
        typer.Option(
            "--native-size", help="Native frame size HxW of the end-to-end input/output (EchoNet: 112x112)."
        ),
    ] = "112x112",
    frames: Annotated[int, typer.Option("--frames", help="Timed frames per video.")] = 100,
    batch_sizes: Annotated[
        str, typer.Option("--batch-sizes", help="Batch sizes, comma-separated (1 = latency).")
    ] = "1,16",
    old_batch: OldBatchListOpt = None,
    dtype: Annotated[
        str, typer.Option("--dtype", help="Precisions: fp32, bf16 (autocast), comma-separated.")
    ] = "fp32,bf16",
    device: DeviceOpt = "auto",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the network's modules.")] = False,
    cuda_graphs: Annotated[
        bool, typer.Option("--cuda-graphs", help="Also time each step as a CUDA graph replay (GPU only).")
    ] = False,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed warm-up frames per configuration.")] = 10,
    iters: Annotated[
        int, typer.Option("--iters", help="Timed videos (of --frames frames) per configuration.")
    ] = 1,
    reference: Annotated[
        bool, typer.Option("--reference/--no-reference", help="Also time the released-style reference path.")
    ] = True,
    threads: ThreadsOpt = None,
    out: OutOpt = Path("results/bench"),
) -> None:
    """Streaming inference speed: frames/s, ms/frame, GFLOPs/frame and peak memory, model-only and
    end-to-end, fp32 and bf16, batch 1 and batched, with our speed-up over the released-style reference.

    [bold]Examples[/]: [cyan]gdkvm bench fps --preset tiny --size 128 --frames 30[/]
    """
    from gdkvm.bench.common import parse_int_list, parse_name_list
    from gdkvm.bench.fps import DTYPES, PAPER_FPS, FpsConfig, run_fps

    batch_sizes = renamed_option("--batch-sizes", batch_sizes, "1,16", "--batch", old_batch)
    cfg = FpsConfig(
        variant=variant,
        preset=preset,
        size=size,
        native_size=_parse_native(native_size),
        frames=frames,
        batches=parse_int_list("--batch-sizes", batch_sizes),
        dtypes=parse_name_list("--dtype", dtype, tuple(DTYPES)),
        device=check_device_name(device),
        compile=compile,
        cuda_graphs=cuda_graphs,
        warmup=warmup,
        iters=iters,
        reference=reference,
        out=out,
        threads=threads,
    )
    n_configs = len(cfg.batches) * len(cfg.dtypes)
    start_long_command(cfg.device, ", ".join(cfg.dtypes), threads, preset=cfg.preset,
                       paper_detail=f"ResNet-50 encoder at {cfg.size} px, {n_configs} batch/precision configurations",
                       smaller="--preset tiny (and a smaller --size)")
    with progress_callback("bench fps") as update:
        result = run_fps(cfg, progress=lambda done, total, info: update(done, total=total, info=info))
    rows = result.rows
    first = rows[0] if rows else {}
    table = Table(
        title=f"fps: {cfg.variant} ({cfg.preset}) {cfg.size}x{cfg.size} on {first.get('device_name', '?')}",
        header_style="bold",
        caption=f"native frames {cfg.native_size[0]}x{cfg.native_size[1]}; "
        f"{cfg.warmup} warm-up frames, {cfg.iters} x {cfg.frames} timed frames",
    )
    for col in ("batch", "dtype", "mode", "frames/s", "ms/frame", "peak MiB", "vs ref", "agree", "status"):
        table.add_column(col, justify="left" if col in ("dtype", "mode", "status") else "right")
    notes = []
    for r in rows:
        mode = _MODE_LABEL[r["mode"]] + ("+graphs" if r["cuda_graphs"] else "")
        agree = r.get("mask_agreement")
        speed = r.get("speedup_vs_reference")
        status = r["status"]
        if status not in ("ok", "oom"):
            notes.append(f"batch {r['batch']} {r['dtype']} {mode}: {status}")
        table.add_row(
            str(r["batch"]),
            r["dtype"],
            mode,
            _num(r.get("frames_per_s")),
            _num(r.get("ms_per_frame"), ".2f"),
            _num(r.get("peak_mem_bytes"), ".1f", 1 / 2**20),
            "-" if speed is None else f"{speed:.2f}x",
            "-" if agree is None else f"{100 * agree:.2f}%",
            _status(status.split(":")[0]),
        )
    console.print(table)
    for line in notes:
        console.print(f"[dim]{line}[/]", soft_wrap=True)
    gflops = next((r["gflops_per_frame"] for r in rows if r["mode"] != "reference"), None)
    ref_gflops = next((r["gflops_per_frame"] for r in rows if r["mode"] == "reference"), None)
    console.print(
        f"parameters {first.get('params', 0) / 1e6:.2f}M, {_num(gflops, '.3f')} GFLOPs/frame "
        f"(reference path {_num(ref_gflops, '.3f')}); paper: {PAPER_FPS:.0f} FPS on an RTX 3090"
    )
    for line in result.messages:
        console.print(
            f"[yellow]{line}[/]" if line.startswith("warning") else f"[dim]{line}[/]", soft_wrap=True
        )
    if result.targets:
        console.print("[bold]GPU targets[/] (docs/benchmarks.md):")
        for t in result.targets:
            verdict = (
                "[dim]not measured[/]"
                if t.passed is None
                else ("[green]PASS[/]" if t.passed else "[red]FAIL[/]")
            )
            console.print(
                f"  {verdict} {t.name}: {_num(t.measured, '.1f')} {t.unit} (target >= {t.target:g} {t.unit})"
            )
        if result.targets[0].note:
            console.print(f"  [dim]{result.targets[0].note}[/]")
        console.print("  [dim]fused step >= 2x the torch step: see `gdkvm bench kernels`[/]")
    console.print(f"wrote {result.csv_path}")


@bench_app.command("scaling")
def scaling(
    frames: Annotated[str, typer.Option("--frames", help="Video lengths, comma-separated.")] = "10,100,1000",
    rules: Annotated[str, typer.Option("--rules", help="Memory rules, comma-separated, or 'all'.")] = "all",
    preset: Annotated[PresetName, typer.Option("--preset", help="Size preset.")] = "tiny",
    size: Annotated[int, typer.Option("--size", help="Frame side in pixels (multiple of 16).")] = 128,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Clips streamed side by side.")] = 1,
    old_batch: OldBatchOpt = None,
    device: DeviceOpt = "auto",
    max_softmax_frames: Annotated[
        int,
        typer.Option(
            "--max-softmax-frames",
            help="Longest video for the growing softmax memory; longer rows are skipped.",
        ),
    ] = 1000,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed warm-up frames per rule.")] = 3,
    threads: ThreadsOpt = None,
    out: OutOpt = Path("results/bench"),
) -> None:
    """Time per frame and memory against video length for every memory rule (CSV + PNG plot).

    [bold]Examples[/]: [cyan]gdkvm bench scaling --frames 10,100,1000 --preset tiny --size 64[/]
    """
    from gdkvm.bench.common import parse_int_list, parse_name_list
    from gdkvm.bench.scaling import RULE_VARIANTS, ScalingConfig, run_scaling

    batch = renamed_option("--batch-size", batch_size, 1, "--batch", old_batch)
    rule_list = (
        tuple(RULE_VARIANTS)
        if rules.strip() == "all"
        else parse_name_list("--rules", rules, tuple(RULE_VARIANTS), "memory rule")
    )
    cfg = ScalingConfig(
        frames=parse_int_list("--frames", frames),
        rules=rule_list,
        preset=preset,
        size=size,
        batch=batch,
        device=check_device_name(device),
        max_softmax_frames=max_softmax_frames,
        warmup=warmup,
        out=out,
        threads=threads,
    )
    start_long_command(cfg.device, "fp32", threads)
    with progress_callback("bench scaling") as update:
        result = run_scaling(cfg, progress=lambda done, total, info: update(done, total=total, info=info))
    first = result.rows[0] if result.rows else {}
    table = Table(
        title=f"scaling: preset {cfg.preset}, {cfg.size}x{cfg.size}, batch {cfg.batch}, fp32 on "
        f"{first.get('device_name', '?')}",
        header_style="bold",
    )
    notes = []
    for col in ("rule", "frames", "ms/frame (mean)", "ms/frame at T", "state KiB", "peak MiB", "status"):
        table.add_column(col, justify="left" if col in ("rule", "status") else "right")
    for r in result.rows:
        table.add_row(
            r["memory_rule"],
            str(r["frames"]),
            _num(r.get("ms_per_frame_mean"), ".2f"),
            _num(r.get("ms_per_frame_at_t"), ".2f"),
            _num(r.get("state_bytes"), ".2f", 1 / 1024),
            _num(r.get("peak_mem_bytes"), ".2f", 1 / 2**20),
            _status(r["status"].split(":")[0]),
        )
        if r["status"] not in ("ok", "oom"):
            notes.append(f"{r['memory_rule']} {r['frames']} frames: {r['status']}")
    console.print(table)
    for line in notes:
        console.print(f"[dim]{line}[/]", soft_wrap=True)
    for check in result.checks:
        color = "green" if check.passed else "red"
        console.print(f"[{color}]memory {check.line()}[/]", soft_wrap=True)
    flat = [c for c in result.checks if c.expectation == "flat"]
    if flat and first.get("device_type") == "cpu":
        overall = "PASS" if all(c.passed for c in flat) else "FAIL"
        console.print(f"[bold]{overall}[/]: gdr/gka memory at the longest video within 10% of the shortest")
    for line in result.messages:
        console.print(f"[yellow]{line}[/]")
    console.print(f"wrote {result.csv_path}")
    if result.png_path is not None:
        console.print(f"wrote {result.png_path}")


@bench_app.command("kernels")
def kernels(
    shapes: Annotated[
        str,
        typer.Option(
            "--shapes",
            help="BxNxCkxCvxH shapes, comma-separated (B = batch x objects, N = pixels at stride 16).",
        ),
    ] = "8x256x64x256x8,8x576x64x256x8,8x2304x64x256x8",
    dtype: Annotated[
        str, typer.Option("--dtype", help="Key/value/query precisions (the state stays fp32).")
    ] = "fp32,bf16",
    backends: Annotated[
        str, typer.Option("--backends", help="torch, triton, fla (comma-separated).")
    ] = "torch,triton,fla",
    device: DeviceOpt = "auto",
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed calls per configuration.")] = 10,
    iters: Annotated[
        int, typer.Option("--iters", help="Timed calls per configuration (median reported).")
    ] = 100,
    block: Annotated[
        int,
        typer.Option(
            "--block",
            help="Calls queued back to back per timed block (1: time each call alone, which on an idle GPU "
            "measures the host's launch cost).",
        ),
    ] = 10,
    threads: ThreadsOpt = None,
    out: OutOpt = Path("results/bench"),
) -> None:
    """The per-frame memory step (write then read): Triton vs the torch reference (and fla), microseconds
    and achieved bandwidth.

    [bold]Examples[/]: [cyan]gdkvm bench kernels --shapes 8x576x64x256x8 --dtype fp32[/]
    """
    from gdkvm.bench.common import parse_name_list
    from gdkvm.bench.kernels import (
        BACKENDS,
        DTYPES,
        TARGET_FUSED_SPEEDUP,
        KernelsConfig,
        parse_shapes,
        run_kernels,
    )

    cfg = KernelsConfig(
        shapes=parse_shapes(shapes),
        dtypes=parse_name_list("--dtype", dtype, tuple(DTYPES)),
        backends=parse_name_list("--backends", backends, BACKENDS, "backend"),
        device=check_device_name(device),
        warmup=warmup,
        iters=iters,
        block=block,
        out=out,
        threads=threads,
    )
    start_long_command(cfg.device, ", ".join(cfg.dtypes), threads)
    with progress_callback("bench kernels") as update:
        result = run_kernels(cfg, progress=lambda done, total, info: update(done, total=total, info=info))
    first = result.rows[0] if result.rows else {}
    table = Table(
        title=f"memory step on {first.get('device_name', '?')}",
        header_style="bold",
        caption="bytes = K, V, Q, S, alpha, beta read + O, S_new written, once each",
    )
    notes = []
    for col in ("shape", "dtype", "backend", "us (median)", "GB/s", "vs torch", "rel err", "status"):
        table.add_column(col, justify="left" if col in ("shape", "dtype", "backend", "status") else "right")
    for r in result.rows:
        table.add_row(
            r["shape"],
            r["dtype"],
            r["backend"],
            _num(r.get("us_median"), ".1f"),
            _num(r.get("gb_per_s"), ".2f"),
            _num(r.get("speedup_vs_torch"), ".2f"),
            _num(r.get("rel_err"), ".1e"),
            _status(r["status"].split(":")[0]),
        )
        if r["status"] not in ("ok", "oom"):
            notes.append(f"{r['shape']} {r['dtype']} {r['backend']}: {r['status']}")
    console.print(table)
    for line in sorted(set(notes), key=notes.index):
        console.print(f"[dim]{line}[/]", soft_wrap=True)
    for t in result.targets:
        verdict = "[green]PASS[/]" if t.passed else "[red]FAIL[/]"
        console.print(
            f"{verdict} fused step {t.shape} {t.dtype}: {t.speedup:.2f}x the torch step "
            f"(target >= {TARGET_FUSED_SPEEDUP:g}x)"
        )
    console.print(f"wrote {result.csv_path}")
