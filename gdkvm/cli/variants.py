"""``gdkvm variants``: the registered model variants as a table."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from gdkvm.cli.common import console
from gdkvm.errors import unknown_name
from gdkvm.models.config import PRESETS


def _format_params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def variants(
    preset: Annotated[
        str, typer.Option("--preset", "-p", help=f"Size preset for the parameter counts: {' | '.join(PRESETS)}.")
    ] = "tiny",
) -> None:
    """List the model variants: the paper row each reproduces, its memory rule, KPFF, and size.

    [bold]Examples[/]: [cyan]gdkvm variants[/], [cyan]gdkvm variants --preset paper[/]
    """
    from gdkvm.models.registry import count_model_parameters, get_variant, list_variants

    if preset not in PRESETS:
        raise unknown_name("preset", preset, PRESETS)
    table = Table(title=f"GDKVM variants (preset: {preset})", header_style="bold")
    table.add_column("variant", style="cyan", no_wrap=True)
    table.add_column("paper row")
    table.add_column("paper mDice", justify="right")
    table.add_column("memory rule", min_width=12)
    table.add_column("KPFF", justify="center")
    table.add_column("parameters", justify="right", no_wrap=True)
    for name in list_variants():
        spec = get_variant(name)
        kpff = "-" if spec.kpff is None else ("yes" if spec.kpff else "no")
        mdice = "-" if spec.paper_mdice is None else f"{spec.paper_mdice:.2f}"
        params = count_model_parameters(name, preset)
        table.add_row(name, spec.paper_label, mdice, spec.memory_rule or "-", kpff, _format_params(params))
    console.print(table)
    if preset == "paper":
        console.print("[dim]The paper reports 35.2M parameters for GDKVM (full).[/]")
