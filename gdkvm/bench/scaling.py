"""``gdkvm bench scaling``: time per frame and memory against video length, for every memory rule.

For each rule one model is built from the variant whose memory rule it is (:data:`RULE_VARIANTS`) and one
video of ``max(frames)`` frames is streamed at batch 1 in fp32; at every requested length T a row records

* ``ms_per_frame_mean``: mean step time over frames 1..T (what a T-frame video costs per frame) and
  ``ms_per_frame_at_t``: median of the last ``window`` step times up to T (the cost of frame T);
* ``state_bytes``: bytes of the carried state after T frames (memory rule + sensory + last mask + object
  memory), the device-independent measure of memory growth;
* ``peak_mem_bytes``: on CUDA the allocator peak since the stream started (minus the input frame pool);
  on the CPU weights + carried state + the tracked allocations of step T (:class:`TensorMemoryTracker`,
  that step untimed).

Constant-state rules (all but softmax) must stay flat; softmax keeps every frame's keys and values and
grows linearly, so it is only streamed up to ``max_softmax_frames``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gdkvm.bench.common import (
    STAMP_COLUMNS,
    STATUS_OK,
    EnvStamp,
    StepTimer,
    TensorMemoryTracker,
    check_size,
    cpu_threads,
    environment_stamp,
    failure_status,
    free_device_memory,
    is_recordable_failure,
    module_bytes,
    resolve_device,
    summarize_ms,
    utc_timestamp,
    write_csv_rows,
)
from gdkvm.bench.fps import make_host_frames, preprocess
from gdkvm.errors import ConfigError, unknown_name
from gdkvm.models.memory import MEMORY_RULES
from gdkvm.utils.atomic import atomic_path

SCALING_SCHEMA_VERSION = 1
SCALING_COLUMNS: tuple[str, ...] = (
    *STAMP_COLUMNS,
    "memory_rule",
    "variant",
    "preset",
    "size",
    "batch",
    "dtype",
    "frames",
    "ms_per_frame_mean",
    "ms_per_frame_at_t",
    "state_bytes",
    "peak_mem_bytes",
    "peak_mem_method",
    "status",
    "note",
)

#: The registered variant that builds each memory rule (all with KPFF, otherwise the same network).
RULE_VARIANTS: dict[str, str] = {
    "linear": "linear",
    "delta": "delta",
    "gdr-wo-alpha": "wo-alpha",
    "gdr-wo-beta": "wo-beta",
    "gdr": "gdr",
    "gka": "gka",
    "softmax": "softmax-memory",
}
assert set(RULE_VARIANTS) == set(MEMORY_RULES)

#: Rules whose memory must stay flat (the CPU PASS/FAIL line), and the allowed relative change.
FLAT_RULES: tuple[str, ...] = ("gdr", "gka")
FLAT_TOLERANCE = 0.10
GROWING_RULES: tuple[str, ...] = ("softmax",)
POOL_FRAMES = 16


@dataclass
class ScalingConfig:
    """Options of ``gdkvm bench scaling``."""

    frames: tuple[int, ...] = (10, 100, 1000)
    rules: tuple[str, ...] = MEMORY_RULES
    preset: str = "tiny"
    size: int = 128
    batch: int = 1
    device: str = "auto"
    max_softmax_frames: int = 1000
    warmup: int = 3
    window: int = 10
    out: Path = Path("results/bench")
    seed: int = 0
    threads: int | None = None

    def validate(self) -> None:
        check_size("--size", self.size)
        if not self.frames or min(self.frames) < 1:
            raise ConfigError(f"--frames: every length must be >= 1, got {self.frames}")
        for rule in self.rules:
            if rule not in RULE_VARIANTS:
                raise unknown_name("memory rule", rule, MEMORY_RULES)
        for name in ("batch", "max_softmax_frames", "window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ConfigError(f"--warmup: must be >= 0, got {self.warmup}")


@dataclass(frozen=True)
class MemoryCheck:
    """Memory of one rule at the shortest vs the longest measured length, against its expectation."""

    rule: str
    metric: str
    expectation: str  # "flat" or "grows"
    first_frames: int
    last_frames: int
    first_bytes: int
    last_bytes: int
    passed: bool

    @property
    def change(self) -> float:
        return self.last_bytes / self.first_bytes - 1.0 if self.first_bytes else float("inf")

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        want = f"within {FLAT_TOLERANCE:.0%}" if self.expectation == "flat" else "grows"
        return (
            f"{verdict}: {self.rule} {self.metric} {self.first_bytes:,} B at {self.first_frames} frames -> "
            f"{self.last_bytes:,} B at {self.last_frames} frames ({self.change:+.1%}; expected {want})"
        )


@dataclass
class ScalingResult:
    rows: list[dict[str, Any]]
    csv_path: Path
    png_path: Path | None
    checks: list[MemoryCheck] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def _step(stepper: Any, frame: Tensor) -> Tensor:
    """One streaming step (tests monkeypatch this to inject out-of-memory errors)."""
    with torch.inference_mode():
        return stepper.step(frame)


@dataclass
class _Point:
    frames: int
    mean_ms: float
    at_ms: float
    state_bytes: int
    peak_bytes: int | None


def stream_rule(
    model: nn.Module, pool: Tensor, lengths: list[int], cfg: ScalingConfig, device: torch.device
) -> tuple[list[_Point], str | None]:
    """Stream ``max(lengths)`` frames; measurements at each length, and the failure status if one happened.

    On a failure (out of memory above all) the points measured so far are kept and the status is
    returned so that the remaining lengths can record it.
    """
    warm = model.stepper()
    for i in range(cfg.warmup):
        _step(warm, pool[i % len(pool)])
    del warm
    pool_bytes = pool.numel() * pool.element_size()
    weights = module_bytes(model)
    stepper = model.stepper()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    timer = StepTimer(device)
    timed_upto: list[int] = []  # number of timed steps after frame t (index t - 1)
    points: list[_Point] = []
    wanted = set(lengths)
    try:
        for t in range(1, max(lengths) + 1):
            frame = pool[(t - 1) % len(pool)]
            if t in wanted and device.type == "cpu":
                before = stepper.state_bytes()
                with TensorMemoryTracker() as tracker:
                    _step(stepper, frame)
                peak: int | None = weights + before + tracker.peak_bytes
            else:
                with timer.region():
                    _step(stepper, frame)
                peak = None
            timed_upto.append(len(timer))
            if t in wanted:
                times = timer.milliseconds()[: timed_upto[-1]]
                if device.type == "cuda":
                    peak = torch.cuda.max_memory_allocated(device) - pool_bytes
                mean = summarize_ms(times).mean_ms
                at = summarize_ms(times[-cfg.window :]).median_ms
                points.append(_Point(t, mean, at, stepper.state_bytes(), peak))
    except Exception as e:
        if not is_recordable_failure(e):
            raise
        status = failure_status(e)
    else:
        return points, None
    del stepper
    free_device_memory(device)  # outside the handler: the traceback no longer pins the step's tensors
    return points, status


def _checks(rows: list[dict[str, Any]]) -> list[MemoryCheck]:
    checks = []
    metrics = ["state_bytes", "peak_mem_bytes"]
    for rule in FLAT_RULES + GROWING_RULES:
        ok = sorted(
            (r for r in rows if r["memory_rule"] == rule and r["status"] == STATUS_OK),
            key=lambda r: r["frames"],
        )
        if len(ok) < 2:
            continue
        first, last = ok[0], ok[-1]
        # softmax growth is judged on the carried state (its peak also holds the weights, large at small T)
        for metric in metrics if rule in FLAT_RULES else ["state_bytes"]:
            a, b = first[metric], last[metric]
            if a is None or b is None:
                continue
            if rule in FLAT_RULES:
                passed = abs(b - a) <= FLAT_TOLERANCE * a
                expectation = "flat"
            else:
                passed = b > (1 + FLAT_TOLERANCE) * a
                expectation = "grows"
            checks.append(
                MemoryCheck(
                    rule, metric, expectation, first["frames"], last["frames"], int(a), int(b), passed
                )
            )
    return checks


def draw_scaling(rows: Sequence[Mapping[str, Any]], title: str, peak_how: str) -> Any:
    """The scaling figure, drawn once for ``gdkvm bench scaling`` and for ``gdkvm report``: three panels
    (time of frame T, carried state, peak memory) against video length T, one curve per memory rule.

    Args:
        rows: benchmark rows with :data:`SCALING_COLUMNS` names (``memory_rule``, ``frames``,
            ``ms_per_frame_at_t``, ``state_bytes``, ``peak_mem_bytes``, ``status``); rows whose status is
            not ok are left out.
        title: the figure's title (device, precision, ...).
        peak_how: how peak memory was measured (shown in the third panel's title).
    Returns:
        a :class:`matplotlib.figure.Figure` on an Agg canvas (not saved). Rules whose curves coincide
        (every constant-state GDR-family rule carries the same bytes) are drawn with hollow markers of
        decreasing size, so each stays visible.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    fig = Figure(figsize=(15, 5.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    panels = [
        ("ms_per_frame_at_t", 1.0, "ms per frame", "time of frame T (median of the last frames)"),
        ("state_bytes", 1 / 1024, "KiB", "carried state after T frames"),
        ("peak_mem_bytes", 1 / 2**20, "MiB", f"peak memory ({peak_how})"),
    ]
    markers = "osD^v<>"
    styles = ["-", "--", "-.", ":"]
    ok = [r for r in rows if str(r.get("status", "")).startswith(STATUS_OK)]
    known = list(RULE_VARIANTS) + sorted({str(r["memory_rule"]) for r in ok} - set(RULE_VARIANTS))
    lengths: set[int] = set()
    values: dict[str, list[float]] = {key: [] for key, *_ in panels}
    for i, rule in enumerate(known):
        pts = sorted((r for r in ok if r["memory_rule"] == rule), key=lambda r: float(r["frames"]))
        if not pts:
            continue
        x = [int(float(r["frames"])) for r in pts]
        lengths.update(x)
        for ax, (key, scale, _, _) in zip(axes, panels, strict=True):
            y = [_number(r.get(key)) * scale for r in pts]
            values[key] += [v for v in y if v == v and v > 0]
            ax.plot(x, y, marker=markers[i % len(markers)], linestyle=styles[i % len(styles)], label=rule,
                    markersize=max(11 - i, 4), markerfacecolor="none", markeredgewidth=1.6, linewidth=1.5)
    ticks = sorted(lengths)
    for ax, (key, _, unit, panel_title) in zip(axes, panels, strict=True):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
        spread = values[key]
        if spread and max(spread) / min(spread) > 20:  # log only when the values span decades
            ax.set_yscale("log")
            unit += ", log"
        else:
            ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
            ax.set_ylim(bottom=0)  # a linear axis starts at zero, so small differences are not magnified
        ax.set_xlabel("video length T (frames, log scale)")
        ax.set_ylabel(unit)
        ax.set_title(panel_title, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 7), fontsize=9,
                   title="memory rule", title_fontsize=9, frameon=False)
    fig.suptitle(title)
    return fig


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None and value != "" else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def plot_scaling(rows: list[dict[str, Any]], stamp: EnvStamp, cfg: ScalingConfig, path: Path) -> Path:
    """:func:`draw_scaling` of this run's rows, written atomically to ``path`` in the report's style."""
    from gdkvm.report.style import figure_style

    peak_how = (
        "CUDA max_memory_allocated" if stamp.device_type == "cuda" else "tracked: weights + state + step"
    )
    title = (f"GDKVM memory scaling: {stamp.device_name}, preset {cfg.preset}, {cfg.size}x{cfg.size}, "
             f"batch {cfg.batch}, fp32, commit {stamp.commit}")
    with figure_style():
        fig = draw_scaling(rows, title, peak_how)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    return path


def run_scaling(cfg: ScalingConfig, progress: Callable[[int, int, str], None] | None = None) -> ScalingResult:
    """Run the scaling benchmark; append rows to ``scaling-<device>-<commit>.csv`` and draw the PNG."""
    with cpu_threads(cfg.threads):
        return _run_scaling(cfg, progress)


def _run_scaling(
    cfg: ScalingConfig, progress: Callable[[int, int, str], None] | None = None
) -> ScalingResult:
    cfg.validate()
    device = resolve_device(cfg.device)
    stamp = environment_stamp(device)
    from gdkvm.models.registry import build_model

    lengths = sorted(set(cfg.frames))
    host = make_host_frames(POOL_FRAMES, cfg.batch, (cfg.size, cfg.size), cfg.seed, pin=False)
    pool = preprocess(host, cfg.size).to(device)
    rows: list[dict[str, Any]] = []
    messages: list[str] = []
    for done, rule in enumerate(cfg.rules):
        if progress is not None:
            progress(done, len(cfg.rules), rule)
        variant = RULE_VARIANTS[rule]
        base = {
            "schema_version": SCALING_SCHEMA_VERSION,
            "bench": "scaling",
            **stamp.columns(),
            "memory_rule": rule,
            "variant": variant,
            "preset": cfg.preset,
            "size": cfg.size,
            "batch": cfg.batch,
            "dtype": "fp32",
            "note": "",
            "peak_mem_method": (
                "cuda max_memory_allocated minus frame pool"
                if device.type == "cuda"
                else "tracked tensors: weights + carried state + step T's allocations"
            ),
        }
        run_lengths = lengths
        skipped: list[int] = []
        if rule in GROWING_RULES:
            run_lengths = [t for t in lengths if t <= cfg.max_softmax_frames]
            skipped = [t for t in lengths if t > cfg.max_softmax_frames]
        status = None
        points: list[_Point] = []
        if run_lengths:
            try:
                torch.manual_seed(cfg.seed)
                model = build_model(variant, cfg.preset).to(device).eval()
                points, status = stream_rule(model, pool, run_lengths, cfg, device)
            except Exception as e:
                if not is_recordable_failure(e):
                    raise
                status = failure_status(e)
            finally:
                model = None  # noqa: F841
            if status is not None:
                free_device_memory(device)
        measured = {p.frames: p for p in points}
        for t in lengths:
            row = dict(base, timestamp=utc_timestamp(), frames=t)
            if t in skipped:
                row["status"] = (
                    f"skipped: the softmax memory grows with every frame; {t} > "
                    f"--max-softmax-frames {cfg.max_softmax_frames}"
                )
            elif t in measured:
                p = measured[t]
                row.update(
                    ms_per_frame_mean=p.mean_ms,
                    ms_per_frame_at_t=p.at_ms,
                    state_bytes=p.state_bytes,
                    peak_mem_bytes=p.peak_bytes,
                    status=STATUS_OK,
                )
            else:
                row["status"] = status or "failed: not reached"
            rows.append(row)
    if progress is not None:
        progress(len(cfg.rules), len(cfg.rules), "done")
    name = f"scaling-{stamp.device_slug}-{stamp.commit}"
    csv_path = write_csv_rows(Path(cfg.out) / f"{name}.csv", SCALING_COLUMNS, rows)
    png_path = None
    if any(r["status"] == STATUS_OK for r in rows):
        png_path = plot_scaling(rows, stamp, cfg, Path(cfg.out) / f"{name}.png")
    else:
        messages.append("no rule produced a measurement: no plot drawn")
    return ScalingResult(
        rows=rows, csv_path=csv_path, png_path=png_path, checks=_checks(rows), messages=messages
    )
