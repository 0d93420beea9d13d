"""``build_report``: collect the inputs, write tables, figures, ``report.md`` and ``index.html``.

Output layout (the whole folder appears atomically; a rebuild replaces it)::

    <out>/index.html            self-contained page (figures embedded, no network)
    <out>/report.md             the same content in Markdown, linking figures/*.png
    <out>/report.json           what was built and what is missing (machine-readable)
    <out>/tables/<name>.md|tex|csv
    <out>/figures/<name>.png
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from gdkvm import __version__
from gdkvm.errors import GdkvmError
from gdkvm.report.collect import ReportData, collect
from gdkvm.report.html import Block, render_html
from gdkvm.report.plots import FigureInfo, all_figures
from gdkvm.report.tables import PHANTOM_WARNING, ReportTable, all_tables
from gdkvm.utils.atomic import atomic_dir

MARKER = "report.json"
TITLE = "GDKVM reproduction report"
FIGURE_SECTIONS: tuple[tuple[str, str], ...] = (
    ("curves", "Training curves"),
    ("fig5", "Fig. 5: speed vs accuracy"),
    ("fig6", "Figs. 6 / 11: EF regression and Bland-Altman"),
    ("fig7", "Fig. 7: qualitative overlays"),
    ("fig9", "Fig. 9: memory gates over training"),
    ("scaling", "Scaling with video length"),
)
TABLE_SECTIONS: tuple[tuple[str, str], ...] = (
    ("runs", "Runs"),
    ("table1_segmentation", "Table 1: segmentation"),
    ("table2_ef_camus", "Table 2: EF on CAMUS"),
    ("table5_ef_echonet", "Table 5: EF on EchoNet-Dynamic"),
    ("table3_ablation_components", "Table 3: ablation of components"),
    ("table4_ablation_update_rules", "Table 4: ablation of state update rules"),
    ("ablation_seeds", "Ablations over seeds and key stabilisers"),
    ("bench_fps", "Benchmarks"),
)


@dataclass
class ReportResult:
    """What :func:`build_report` wrote (final paths) and what it could not build."""

    out_dir: Path
    index_html: Path
    report_md: Path
    tables: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    runs: int = 0
    evaluated_runs: int = 0
    #: one line per run: the prepared store used and how it was found (or why none was)
    stores: list[str] = field(default_factory=list)


def _check_out_dir(out_dir: Path, runs_dir: Path) -> None:
    """Refuse to replace a folder that is not an earlier report (the whole folder gets swapped)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise GdkvmError(f"{out_dir}: exists and is not a folder")
    if out_dir.resolve() == runs_dir.resolve() or runs_dir.resolve().is_relative_to(out_dir.resolve()):
        raise GdkvmError(f"{out_dir}: the report folder must not contain the runs folder {runs_dir}")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise GdkvmError(f"{out_dir}: folder is not empty and holds no {MARKER} (not an earlier report); "
                         "refusing to replace it, pick another --out")


def _provenance_blocks(data: ReportData) -> list[Block]:
    labels = sorted({r.source.label for r in data.runs})
    blocks = []
    if any(r.source.phantom for r in data.runs):
        blocks.append(Block("warning", "Synthetic data: " + PHANTOM_WARNING))
    if any(r.source.phantom is None for r in data.runs):
        blocks.append(Block("warning", "Some runs use a store whose provenance is not recorded (real data or the "
                                       "synthetic phantom?): their rows say 'provenance unknown'."))
    if labels:
        blocks.append(Block("p", "Data of our runs: " + "; ".join(labels) + "."))
    return blocks


def document(data: ReportData, tables: list[ReportTable], figures: list[FigureInfo], missing: list[str],
             generated: str, sources: dict[str, str]) -> list[Block]:
    """The report as blocks, in reading order."""
    evaluated = sum(1 for r in data.runs if r.evals)
    blocks = [Block("h1", TITLE),
              Block("p", f"Generated {generated} by gdkvm {__version__}. Inputs: runs {sources['runs']}, benchmarks "
                         f"{sources['bench']}, paper numbers {sources['paper']}. {len(data.runs)} run folder(s), "
                         f"{evaluated} evaluated; {len(data.fps)} fps and {len(data.scaling)} scaling benchmark "
                         "row(s)."),
              Block("p", "Paper: Wang et al., GDKVM, ICCV 2025 (arXiv 2512.10252). Paper rows are transcribed from "
                         "its tables; 'ours' rows come from the run folders. See docs/report.md for how to read "
                         "each table and figure."),
              *_provenance_blocks(data),
              Block("h2", "Missing")]
    if missing:
        blocks.append(Block("missing", f"{len(missing)} item(s) could not be read or built; everything else "
                                       "was built:", items=list(missing)))
    else:
        blocks.append(Block("p", "Nothing missing."))
    by_name = {t.name: t for t in tables}
    blocks.append(Block("h2", "Tables"))
    for name, _heading in TABLE_SECTIONS:
        if name in by_name:
            blocks.append(Block("table", table=by_name[name]))
    blocks.append(Block("h2", "Figures"))
    for kind, heading in FIGURE_SECTIONS:
        chosen = [f for f in figures if f.kind == kind]
        blocks.append(Block("h3", heading))
        if not chosen:
            blocks.append(Block("p", "Not drawn (see Missing)."))
        for fig in chosen:
            blocks.append(Block("figure", figure=fig))
    return blocks


def render_markdown(blocks: list[Block]) -> str:
    """``report.md``: the blocks as Markdown; tables inline, figures as links to figures/*.png."""
    out: list[str] = []
    for block in blocks:
        if block.kind == "h1":
            out += [f"# {block.text}", ""]
        elif block.kind == "h2":
            out += [f"## {block.text}", ""]
        elif block.kind == "h3":
            out += [f"### {block.text}", ""]
        elif block.kind == "p":
            out += [block.text, ""]
        elif block.kind == "warning":
            out += [f"> **Warning.** {block.text}", ""]
        elif block.kind == "missing":
            out += [block.text, ""] + [f"- {item}" for item in block.items] + [""]
        elif block.kind == "table" and block.table is not None:
            t = block.table
            out += [t.to_markdown(), f"Files: `tables/{t.name}.md`, `tables/{t.name}.tex`, `tables/{t.name}.csv`", ""]
        elif block.kind == "figure" and block.figure is not None:
            f = block.figure
            out += [f"**{f.title}**", "", f"![{f.title}](figures/{f.file})", "", f.caption, ""]
    return "\n".join(out).rstrip() + "\n"


def build_report(runs_dir: str | Path, out_dir: str | Path, bench_dir: str | Path = "results/bench",
                 paper_dir: str | Path | None = None, data_dir: str | Path | None = None) -> ReportResult:
    """Build the report of every run under ``runs_dir`` into ``out_dir``.

    Reads only files (run folders, their prepared stores, benchmark CSVs, paper CSVs). Anything absent
    or malformed is listed under "Missing" in the report and in :attr:`ReportResult.missing`; the rest
    is still built. ``paper_dir`` None: the paper's numbers shipped with gdkvm. ``data_dir``: a folder
    searched for each run's store by its recorded id when it is not at its recorded path. ``out_dir`` is replaced as a whole, atomically, and only if it is empty, absent, or
    an earlier report.

    Raises:
        GdkvmError: ``runs_dir`` does not exist, or ``out_dir`` is a folder that is not a report.
    """
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    if not runs_dir.is_dir():
        raise GdkvmError(f"{runs_dir}: runs folder not found")
    _check_out_dir(out_dir, runs_dir)
    data = collect(runs_dir, bench_dir, paper_dir, data_dir)
    tables = all_tables(data)  # may add to data.missing
    missing = list(data.missing)
    generated = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    sources = {"runs": str(runs_dir), "bench": str(bench_dir),
               "paper": str(paper_dir) if paper_dir is not None else "numbers shipped with gdkvm"}
    with atomic_dir(out_dir) as tmp:
        (tmp / "tables").mkdir()
        figures_dir = tmp / "figures"
        figures_dir.mkdir()
        for table in tables:
            (tmp / "tables" / f"{table.name}.md").write_text(table.to_markdown(), encoding="utf-8")
            (tmp / "tables" / f"{table.name}.tex").write_text(table.to_latex(), encoding="utf-8")
            (tmp / "tables" / f"{table.name}.csv").write_text(table.to_csv(), encoding="utf-8")
        figures = all_figures(data, figures_dir, missing)
        blocks = document(data, tables, figures, missing, generated, sources)
        (tmp / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
        (tmp / "index.html").write_text(render_html(TITLE, blocks, figures_dir), encoding="utf-8")
        manifest = {"generated": generated, "gdkvm_version": __version__, "inputs": sources,
                    "tables": [f"tables/{t.name}.{ext}" for t in tables for ext in ("md", "tex", "csv")],
                    "figures": [f"figures/{f.file}" for f in figures], "missing": missing,
                    "runs": [r.name for r in data.runs]}
        (tmp / MARKER).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return ReportResult(
        out_dir=out_dir, index_html=out_dir / "index.html", report_md=out_dir / "report.md",
        tables=[out_dir / p for p in manifest["tables"]], figures=[out_dir / p for p in manifest["figures"]],
        missing=missing, runs=len(data.runs), evaluated_runs=sum(1 for r in data.runs if r.evals),
        stores=[f"{r.name}: {r.source.found}" for r in data.runs])
