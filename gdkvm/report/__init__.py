"""Paper-style report: tables beside the paper's numbers, figures, one HTML and one Markdown page.

- :mod:`gdkvm.report.collect`: read run folders, benchmark CSVs and the paper CSVs into tidy tables,
  with a list of plain-language notes on what is missing.
- :mod:`gdkvm.report.tables`: Tables 1-5 as :class:`~gdkvm.report.tables.ReportTable` (Markdown,
  LaTeX, CSV).
- :mod:`gdkvm.report.plots`: the figures (matplotlib, Agg backend).
- :mod:`gdkvm.report.html`: one self-contained ``index.html``.
- :mod:`gdkvm.report.build`: :func:`build_report`, which writes everything atomically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gdkvm.report.build import ReportResult, build_report

__all__ = ["ReportResult", "build_report"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the package does not pull in matplotlib.
    if name in __all__:
        from gdkvm.report import build

        return getattr(build, name)
    raise AttributeError(name)
