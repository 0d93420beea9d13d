"""One self-contained ``index.html``: inline CSS, figures as base64 PNG data URIs, no scripts, no links.

The page is rendered from the same list of :class:`Block` as ``report.md``, so both always say the same.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from gdkvm.report.plots import FigureInfo
from gdkvm.report.tables import ReportTable

#: Table geometry, used by the CSS below and by the width check in tests/report: the page's content
#: is at most PAGE_PX - 2 * PAGE_PAD_PX wide; table text is TABLE_FONT_PX; a text cell wraps between
#: words at WRAP_CH characters ("0" widths), a header at HEADER_CH; numbers never wrap, and a
#: "value ± spread" cell puts the spread on a second line; each cell has CELL_PAD_EM on either side.
PAGE_PX = 1200
PAGE_PAD_PX = 32
TABLE_FONT_PX = 13
WRAP_CH = 18
HEADER_CH = 9
CELL_PAD_EM = 0.45

CSS = f"""
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto; max-width: {PAGE_PX}px;
       padding: 1.5em {PAGE_PAD_PX}px; color: #1d1d1f; line-height: 1.45; }}
h1 {{ font-size: 1.7em; border-bottom: 2px solid #444; padding-bottom: .2em; }}
h2 {{ font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #bbb; padding-bottom: .15em; }}
h3 {{ font-size: 1.05em; margin-top: 1.4em; }}
p.caption, li.note {{ color: #333; font-size: .92em; }}
div.warning {{ background: #fff4e0; border-left: 5px solid #e69500; padding: .6em 1em; margin: 1em 0; }}
div.missing {{ background: #fdecec; border-left: 5px solid #c62828; padding: .6em 1em; margin: 1em 0; }}
div.missing li {{ font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85em; }}
div.tablewrap {{ overflow-x: auto; }}
table {{ border-collapse: collapse; font-size: {TABLE_FONT_PX}px; margin: .5em 0 .3em 0; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .25em {CELL_PAD_EM}em; text-align: left; vertical-align: top; }}
td div.w {{ max-width: {WRAP_CH}ch; overflow-wrap: break-word; white-space: normal; }}
th div.w {{ max-width: {HEADER_CH}ch; overflow-wrap: break-word; white-space: normal; }}
th {{ background: #f1f1f3; border-bottom: 2px solid #888; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
tr.ours td {{ background: #f3f8ff; }}
figure {{ margin: 1.2em 0; }}
figure img {{ max-width: 100%; border: 1px solid #ddd; }}
figcaption {{ font-size: .9em; color: #333; max-width: 60em; }}
nav ul {{ columns: 2; font-size: .9em; }}
"""


@dataclass
class Block:
    """One piece of the report: ``kind`` is ``h1``, ``h2``, ``h3``, ``p``, ``warning``, ``missing``
    (a list of notes), ``table`` or ``figure``."""

    kind: str
    text: str = ""
    items: list[str] = field(default_factory=list)
    table: ReportTable | None = None
    figure: FigureInfo | None = None


def _anchor(text: str) -> str:
    return "".join(ch.lower() if ch.isalnum() else "-" for ch in text).strip("-")


def _table_html(table: ReportTable) -> str:
    out = [f"<h3 id=\"{_anchor(table.name)}\">{html.escape(table.title)}</h3>",
           f"<p class=\"caption\">{html.escape(table.caption)}</p>", "<div class=\"tablewrap\"><table>", "<tr>"]
    out += [f"<th><div class=\"w\">{html.escape(c.header)}</div></th>" for c in table.columns]
    out.append("</tr>")
    rows = table.display_rows()
    methods = table.rows["method"].astype(str).tolist() if "method" in table.rows.columns else []
    for i, cells in enumerate(rows):
        ours = i < len(methods) and methods[i].startswith("ours")
        out.append("<tr class=\"ours\">" if ours else "<tr>")
        for column, cell in zip(table.columns, cells, strict=True):
            if column.digits is not None:  # numbers stay on one line (the ± spread on a second one)
                text = html.escape(cell)
                if column.pm is not None:
                    text = text.replace(" ± ", "<br>± ")
                out.append(f"<td class=\"num\">{text}</td>")
            else:
                out.append(f"<td><div class=\"w\">{html.escape(cell)}</div></td>")
        out.append("</tr>")
    if not rows:
        out.append(f"<tr><td colspan=\"{len(table.columns)}\">(no rows)</td></tr>")
    out.append("</table></div>")
    if table.notes:
        out.append("<ul>" + "".join(f"<li class=\"note\">{html.escape(n)}</li>" for n in table.notes) + "</ul>")
    files = ", ".join(f"tables/{table.name}.{ext}" for ext in ("md", "tex", "csv"))
    out.append(f"<p class=\"caption\">Files: {html.escape(files)}</p>")
    return "\n".join(out)


def _figure_html(figure: FigureInfo, figures_dir: Path) -> str:
    data = base64.b64encode((figures_dir / figure.file).read_bytes()).decode("ascii")
    return (f"<figure id=\"{_anchor(figure.file)}\"><h3>{html.escape(figure.title)}</h3>"
            f"<img alt=\"{html.escape(figure.title)}\" src=\"data:image/png;base64,{data}\">"
            f"<figcaption>{html.escape(figure.caption)} (figures/{html.escape(figure.file)})</figcaption></figure>")


def render_html(title: str, blocks: list[Block], figures_dir: Path) -> str:
    """The whole page. Figures are read from ``figures_dir`` and embedded; nothing is fetched."""
    body = []
    toc = [b for b in blocks if b.kind == "h2"]
    for block in blocks:
        text = html.escape(block.text)
        if block.kind == "h1":
            body.append(f"<h1>{text}</h1>")
            if toc:
                body.append("<nav><ul>" + "".join(f"<li><a href=\"#{_anchor(b.text)}\">{html.escape(b.text)}</a></li>"
                                                  for b in toc) + "</ul></nav>")
        elif block.kind in ("h2", "h3"):
            body.append(f"<{block.kind} id=\"{_anchor(block.text)}\">{text}</{block.kind}>")
        elif block.kind == "p":
            body.append(f"<p>{text}</p>")
        elif block.kind == "warning":
            body.append(f"<div class=\"warning\">{text}</div>")
        elif block.kind == "missing":
            items = "".join(f"<li>{html.escape(i)}</li>" for i in block.items)
            body.append(f"<div class=\"missing\"><p>{text}</p><ul>{items}</ul></div>")
        elif block.kind == "table" and block.table is not None:
            body.append(_table_html(block.table))
        elif block.kind == "figure" and block.figure is not None:
            body.append(_figure_html(block.figure, figures_dir))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
