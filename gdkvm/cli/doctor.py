"""`gdkvm doctor`: report the environment and what is prepared."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gdkvm.cli.common import console
from gdkvm.doctor import collect_report


def doctor(
    data: Annotated[
        Path, typer.Option("--data", help="Prepared-store folder to inspect.")
    ] = Path("data/prepared"),
    check_triton: Annotated[
        bool,
        typer.Option(
            "--check-triton/--no-check-triton",
            help="Run a tiny Triton kernel under the interpreter (a few seconds).",
        ),
    ] = True,
) -> None:
    """Print torch / triton / CUDA versions, whether the Triton interpreter works, and prepared datasets.

    [bold]Examples[/]

      gdkvm doctor
      gdkvm doctor --data data/prepared --no-check-triton
    """
    report = collect_report(data, check_triton=check_triton)
    table = Table(title="gdkvm doctor", show_header=True, header_style="bold")
    table.add_column("item")
    table.add_column("value")
    table.add_column("status")
    for item in report:
        style = {"ok": "green", "warn": "yellow", "missing": "red"}.get(item.status, "")
        table.add_row(item.name, item.value, f"[{style}]{item.status}[/]" if style else item.status)
    console.print(table)
