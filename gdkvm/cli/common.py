"""Shared CLI plumbing: the rich console, progress (a bar on a terminal, plain lines in a log), the
device/precision/threads line of the long commands, and error-to-exit-code handling."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal, get_args

import torch
import typer
from rich.console import Console, ConsoleDimensions
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gdkvm.data.augment import AugmentProfile
from gdkvm.data.camus import LabelSet
from gdkvm.data.echonet import ClipForm, GrayMode, MaskFill, TracingRows
from gdkvm.data.prepare_camus import CamusSplit
from gdkvm.data.prepare_echonet import Protocol
from gdkvm.data.sampling import SamplingRule
from gdkvm.data.store import Split
from gdkvm.engine.config import Supervision
from gdkvm.engine.evaluate import CheckpointChoice
from gdkvm.metrics.segmentation import Mode
from gdkvm.models.config import PresetName
from gdkvm.models.export import EXPORT_FORMATS
from gdkvm.utils.device import DEVICE_HELP, apply_cpu_threads, describe_device, resolve_device

# ----------------------------------------------------------------------------------------------
# choice sets: each command option with a fixed set of values is annotated with the library's Literal
# alias (typer turns a Literal into a choice), so every set is spelled once, where the library checks it.

#: ``export --format``; models/export.py keeps the set as a tuple, so the Literal is built from it here.
ExportFormat = Literal[EXPORT_FORMATS]  # type: ignore[valid-type]

#: option name -> the alias its choices come from (tests/cli/test_options.py checks every command).
CHOICES: dict[str, Any] = {
    "--labels": LabelSet,
    "--sampling": SamplingRule,
    "--split": Split,
    "--clip": ClipForm,
    "--gray": GrayMode,
    "--mask-fill": MaskFill,
    "--tracing-rows": TracingRows,
    "--protocol": Protocol,
    "--supervision": Supervision,
    "--augment-profile": AugmentProfile,
    "--mode": Mode,
    "--checkpoint": CheckpointChoice,
    "--preset": PresetName,
    "--format": ExportFormat,
}
#: Options whose set differs by command: (command path, option) -> alias.
COMMAND_CHOICES: dict[tuple[str, str], Any] = {("prepare camus", "--split"): CamusSplit}


def choices(alias: Any) -> tuple[str, ...]:
    """The values of a Literal alias, e.g. ``choices(Split) == ("train", "val", "test")``."""
    return tuple(get_args(alias))


def choice_list(alias: Any) -> str:
    """The values of a Literal alias for a help text: ``"train | val | test"``."""
    return " | ".join(choices(alias))


#: The ``--device`` option of every command: a plain string, checked by :mod:`gdkvm.utils.device` so that a
#: bad name ("gpu") or CUDA on a CPU machine is one line ("unknown device ...", "CUDA is not available ...").
DEVICE_OPTION_HELP = DEVICE_HELP + "."

#: The ``--threads`` option of the long commands (train, evaluate, predict, ablate, bench).
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        help="torch intra-op CPU threads (default on the CPU: min(4, CPU count) unless OMP_NUM_THREADS is set).",
    ),
]

#: The old spelling ``--batch`` of ``--batch-size`` (evaluate, export, bench scaling): hidden, still accepted.
OldBatchOpt = Annotated[int | None, typer.Option("--batch", hidden=True, help="Deprecated: use --batch-size.")]
#: The old spelling ``--batch`` of ``bench fps --batch-sizes`` (a comma list): hidden, still accepted.
OldBatchListOpt = Annotated[
    str | None, typer.Option("--batch", hidden=True, help="Deprecated: use --batch-sizes.")
]


def renamed_option(new: str, value: Any, default: Any, old: str, old_value: Any) -> Any:
    """The value of option ``new`` when its deprecated spelling ``old`` may have been given instead.

    ``old_value`` None: ``value``. Otherwise a one-line deprecation warning goes to stderr and
    ``old_value`` is used; giving both spellings (``value`` other than ``default``) raises
    :class:`~gdkvm.errors.ConfigError`.
    """
    if old_value is None:
        return value
    if value != default:
        from gdkvm.errors import ConfigError

        raise ConfigError(f"{old} is the old spelling of {new}; give {new} only")
    err_console.print(f"[yellow]warning:[/] {old} is deprecated; use {new}", soft_wrap=True)
    return old_value


#: Width of tables written to a file or pipe (rich would cut them at 80 columns); ``COLUMNS`` still wins.
LOG_WIDTH = 240


class _Console(Console):
    """A rich Console that is wide when it is not writing to a terminal, so tables in logs are not cut."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        columns = str(self._environ.get("COLUMNS", ""))
        if self._width is None and not self.is_terminal and not columns.isdigit():
            return ConsoleDimensions(max(size.width, LOG_WIDTH), size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console = _Console(highlight=False)
err_console = _Console(stderr=True, highlight=False)

#: ``ctx.meta`` key of the command line as given (after the program name), kept by the root app
#: (:mod:`gdkvm.cli.main`) so that ``train --nproc N`` can hand the same command line to its torchrun workers.
ARGV_META = "gdkvm.argv"

DEBUG_ENV = "GDKVM_DEBUG"
#: Seconds between two plain progress lines when stdout is not a terminal (default 30).
LOG_EVERY_ENV = "GDKVM_LOG_EVERY"
#: ``GDKVM_PROGRESS=0`` turns progress output off (bars and plain lines alike).
PROGRESS_ENV = "GDKVM_PROGRESS"
DEFAULT_LOG_EVERY_S = 30.0
#: A plain line is also printed each time another 10 % of the task is done.
LOG_EVERY_FRACTION = 0.1


def debug_enabled() -> bool:
    """True when tracebacks should be shown (``--debug`` or ``GDKVM_DEBUG=1``)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0", "false")


def log_every_seconds() -> float:
    """``GDKVM_LOG_EVERY`` (seconds, > 0), else 30."""
    text = os.environ.get(LOG_EVERY_ENV, "").strip()
    try:
        value = float(text)
    except ValueError:
        return DEFAULT_LOG_EVERY_S
    return value if value > 0 and math.isfinite(value) else DEFAULT_LOG_EVERY_S


def _clock_text(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class PlainProgress:
    """Progress of one task as plain text lines, for logs (nohup, SLURM, ``> file``).

    A line is printed at the first step, then whenever ``every_s`` seconds have passed since the last line
    or another 10 % of ``total`` is done, and at the end. ``clock`` and ``write`` are injectable for tests.
    """

    def __init__(self, description: str, total: int | None = None, *, every_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic, write: Callable[[str], None] | None = None):
        self.description = description
        self.total = total
        self.every_s = log_every_seconds() if every_s is None else every_s
        self.clock = clock
        self.write = write or (lambda line: console.print(line, soft_wrap=True, markup=False, highlight=False))
        self.done = 0
        self.info = ""
        self._start: tuple[float, int] | None = None  # (time, done) of the first update
        self._last_time: float | None = None
        self._last_done: int | None = None
        self._last_bucket = -1

    def _bucket(self, done: int) -> int:
        if not self.total:
            return -1
        return int(min(done / self.total, 1.0) / LOG_EVERY_FRACTION + 1e-9)

    def line(self, now: float) -> str:
        """The text of one progress line for the current state."""
        parts = [self.description]
        if self.total:
            parts.append(f"{self.done}/{self.total} ({100 * min(self.done / self.total, 1.0):.0f}%)")
        else:
            parts.append(str(self.done))
        if self.info:
            parts.append(self.info)
        start_time, start_done = self._start or (now, self.done)
        elapsed = now - start_time
        parts.append(f"elapsed {_clock_text(elapsed)}")
        steps = self.done - start_done
        if self.total and self.done < self.total and steps > 0 and elapsed > 0:
            parts.append(f"eta {_clock_text((self.total - self.done) * elapsed / steps)}")
        return parts[0] + " " + "  ".join(parts[1:])

    def update(self, done: int, total: int | None = None, info: str = "", **_: Any) -> None:
        now = self.clock()
        if total is not None:
            self.total = total
        self.done, self.info = int(done), info or self.info
        if self._start is None:
            self._start = (now, self.done)
            self._last_bucket = self._bucket(self.done)
            if self.done == 0 or (self.total and self.done >= self.total):
                return  # nothing done yet (or nothing left): the first real step prints
        bucket = self._bucket(self.done)
        due = (self._last_time is None
               or now - self._last_time >= self.every_s
               or bucket > self._last_bucket
               or bool(self.total and self.done >= self.total))
        if due and self.done != self._last_done:
            self.emit(now)
            self._last_bucket = max(self._last_bucket, bucket)

    def emit(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.write(self.line(now))
        self._last_time, self._last_done = now, self.done

    def finish(self) -> None:
        """Print the final state unless it was the last line printed."""
        if self._start is not None and self.done != self._last_done:
            self.emit()


def progress_is_plain() -> bool:
    """True when progress goes out as plain lines (stdout is not a terminal)."""
    return not console.is_terminal


def progress_enabled() -> bool:
    return os.environ.get(PROGRESS_ENV, "") not in ("0", "false", "off")


def make_progress(transient: bool = False) -> Progress:
    """A rich progress bar with count, percentage, elapsed time and ETA (for a terminal)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=transient,
    )


@contextlib.contextmanager
def progress_tasks() -> Iterator[Callable[[str, int | None], Callable[..., None]]]:
    """Yield ``add_task(description, total)`` returning ``update(done, total=None, info="")``.

    The one progress implementation of the CLI: on a terminal a rich bar per task, started at the first
    update (so an error raised before any work prints no empty bar); otherwise :class:`PlainProgress`
    lines. Library functions take such a callback so they stay free of rich.
    """
    enabled = progress_enabled()
    plain = progress_is_plain()
    bars: list[Progress] = []
    tasks: list[PlainProgress] = []

    def add_task(description: str, total: int | None = None) -> Callable[..., None]:
        if not enabled:
            return lambda *_a, **_k: None
        if plain:
            task = PlainProgress(description, total)
            tasks.append(task)
            return task.update
        first_total = total
        task_id: list[Any] = []

        def update(done: int, total: int | None = None, info: str = "", **_: Any) -> None:
            if not bars:
                bars.append(make_progress())
                bars[0].start()
            if not task_id:
                task_id.append(bars[0].add_task(description, total=first_total, info=""))
            kwargs: dict[str, Any] = {"completed": done, "info": info}
            if total is not None:
                kwargs["total"] = total
            bars[0].update(task_id[0], **kwargs)

        return update

    ok = False
    try:
        yield add_task
        ok = True
    finally:
        if bars:
            bars[0].stop()
        if ok:
            for task in tasks:
                task.finish()


@contextlib.contextmanager
def progress_callback(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """Yield ``update(done, total=None, info="")`` driving the progress of one task (see :func:`progress_tasks`)."""
    with progress_tasks() as add_task:
        yield add_task(description, total)


def start_long_command(
    device: str | torch.device,
    precision: str | Callable[[torch.device], str] = "fp32",
    threads: int | None = None,
    *,
    preset: str | None = None,
    paper_detail: str = "ResNet-50 encoder, 1500 iterations",
    smaller: str = "--preset tiny or --preset small",
    local_rank: int | None = None,
    quiet: bool = False,
) -> torch.device:
    """Resolve ``--device``, set the torch thread count and print one line such as
    ``device: cpu (fp32), torch threads: 2`` (``quiet``: print nothing, e.g. on a non-zero DDP rank).

    With ``preset == "paper"`` on the CPU it adds a one-line warning that the preset is sized for a GPU and
    names the smaller presets. Returns the resolved device.
    """
    dev = device if isinstance(device, torch.device) else resolve_device(device, local_rank=local_rank)
    n_threads = apply_cpu_threads(threads, dev)
    if quiet:
        return dev
    text = precision(dev) if callable(precision) else precision
    console.print(f"device: {describe_device(dev)} ({text}), torch threads: {n_threads}", soft_wrap=True,
                  markup=False)
    if preset == "paper" and dev.type == "cpu":
        console.print(f"[yellow]warning:[/] preset 'paper' is sized for a GPU ({paper_detail}) and can take "
                      f"hours on a CPU; for a CPU run use {smaller}", soft_wrap=True)
    return dev


def fail(message: str, code: int = 1) -> None:
    """Print a one-line red error and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}")
    sys.exit(code)
