"""``gdkvm report``: tables beside the paper, figures, one HTML page and one Markdown page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gdkvm.cli.common import console, debug_enabled, err_console


def report(
    runs: Annotated[Path, typer.Option("--runs", help="Folder of run folders (gdkvm train / evaluate).")] = Path(
        "results/runs"),
    out: Annotated[Path, typer.Option("--out", help="Report folder (replaced as a whole).")] = Path("results/report"),
    bench: Annotated[Path, typer.Option("--bench", help="Folder of benchmark CSVs (gdkvm bench).")] = Path(
        "results/bench"),
    paper: Annotated[Path | None, typer.Option(
        "--paper", help="Folder of the paper's numbers (CSV; default: the numbers shipped with gdkvm).")] = None,
    data: Annotated[Path | None, typer.Option(
        "--data", help="Folder to search for each run's prepared store by its recorded id, when the store is "
                       "not at the path the run recorded (moved runs).")] = None,
) -> None:
    """Build the report: Tables 1-5 beside the paper's, Fig. 5/6/7/9-style figures, curves and scaling plots.

    Writes OUT/index.html (self-contained), OUT/report.md, OUT/tables/ (md, tex, csv) and OUT/figures/.

    Whatever cannot be read (unevaluated runs, old benchmark CSVs, ...) is listed under "Missing" and printed.

    [bold]Examples[/]

      gdkvm report

      gdkvm report --runs results/runs --out results/report --bench results/bench
    """
    from gdkvm.errors import GdkvmError
    from gdkvm.report.build import build_report

    try:
        result = build_report(runs, out, bench_dir=bench, paper_dir=paper, data_dir=data)
    except GdkvmError as e:
        if debug_enabled():
            raise
        err_console.print(f"[bold red]error:[/] {e}", soft_wrap=True, highlight=False)
        raise typer.Exit(code=1) from None
    lines = [
        f"page:     {result.index_html}",
        f"markdown: {result.report_md}",
        f"tables:   {len(result.tables)} files in {result.out_dir / 'tables'} (Markdown, LaTeX, CSV)",
        f"figures:  {len(result.figures)} PNGs in {result.out_dir / 'figures'}",
        f"runs:     {result.runs} read, {result.evaluated_runs} evaluated",
    ]
    console.print("[bold]report built[/]")
    for line in lines:
        console.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)
    for line in result.stores:
        console.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)
    for path in result.figures:
        console.print(f"  figure: {path}", soft_wrap=True, markup=False, highlight=False)
    if result.missing:
        console.print(f"[yellow]missing ({len(result.missing)})[/]: listed in the report's Missing section")
        for line in result.missing:
            console.print(f"  - {line}", soft_wrap=True, markup=False, highlight=False)
    else:
        console.print("nothing missing")
