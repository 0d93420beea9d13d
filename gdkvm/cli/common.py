"""Shared CLI plumbing: the rich console, progress bars, and error-to-exit-code handling."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gdkvm.utils.device import DEVICE_HELP

#: The ``--device`` option of every command: a plain string, checked by :mod:`gdkvm.utils.device` so that a
#: bad name ("gpu") or CUDA on a CPU machine is one line ("unknown device ...", "CUDA is not available ...").
DEVICE_OPTION_HELP = DEVICE_HELP + "."

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

DEBUG_ENV = "GDKVM_DEBUG"


def debug_enabled() -> bool:
    """True when tracebacks should be shown (``--debug`` or ``GDKVM_DEBUG=1``)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0", "false")


def make_progress(transient: bool = False) -> Progress:
    """A rich progress bar with count, percentage, elapsed time and ETA."""
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
        disable=not console.is_terminal and os.environ.get("GDKVM_PROGRESS", "") == "0",
    )


@contextlib.contextmanager
def progress_callback(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """Yield ``update(done, total=None, info="")`` driving one progress bar.

    Library functions take such a callback so they stay free of rich; the CLI passes this one.
    """
    with make_progress() as progress:
        task = progress.add_task(description, total=total, info="")

        def update(done: int, total: int | None = None, info: str = "", **_: Any) -> None:
            kwargs: dict[str, Any] = {"completed": done, "info": info}
            if total is not None:
                kwargs["total"] = total
            progress.update(task, **kwargs)

        yield update


def fail(message: str, code: int = 1) -> None:
    """Print a one-line red error and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}")
    sys.exit(code)
