"""Benchmark CSV files: append rows atomically under a fixed header, and read them back checked.

Every benchmark CSV starts with ``schema_version`` and ``bench`` (:data:`gdkvm.bench.stamp.STAMP_COLUMNS`);
a reader accepts a file only when its ``bench`` kind is one it knows and its ``schema_version`` is the one
this gdkvm writes for that kind, so an older file is reported instead of being misread.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gdkvm.errors import ConfigError, DataError, GdkvmError
from gdkvm.utils.atomic import atomic_write_text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def read_csv_header(path: Path) -> list[str]:
    """The header row of a CSV file ([] when the file is empty)."""
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """All data rows of a CSV file as dicts of strings."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_csv_rows(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Path:
    """Append ``rows`` to the CSV at ``path`` (created with ``columns`` as header), atomically.

    An existing file must have exactly this header (same schema), otherwise ConfigError and the file is
    left untouched. The whole new content is written to a temporary file and renamed over ``path``.
    Every row must use only names from ``columns``; missing ones are written empty.
    """
    path = Path(path)
    columns = list(columns)
    for row in rows:
        extra = sorted(set(row) - set(columns))
        if extra:
            raise GdkvmError(f"{path}: row has columns {extra} that are not in the schema")
    existing = ""
    if path.exists():
        header = read_csv_header(path)
        if header != columns:
            raise ConfigError(
                f"{path}: existing CSV has a different column schema (found {len(header)} columns, expected "
                f"{len(columns)}); move it away or pass another --out"
            )
        existing = path.read_text(encoding="utf-8")
        if existing and not existing.endswith("\n"):
            existing += "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if not existing:
        writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    atomic_write_text(path, existing + buffer.getvalue())
    return path


def bench_schemas() -> dict[str, int]:
    """``{bench kind: schema_version this gdkvm writes}`` for the kinds with a reader here, taken from
    the bench modules themselves (so a format change there shows up here)."""
    from gdkvm.bench.fps import FPS_SCHEMA_VERSION
    from gdkvm.bench.kernels import KERNELS_SCHEMA_VERSION
    from gdkvm.bench.scaling import SCALING_SCHEMA_VERSION

    return {"fps": int(FPS_SCHEMA_VERSION), "scaling": int(SCALING_SCHEMA_VERSION),
            "kernels": int(KERNELS_SCHEMA_VERSION)}


@dataclass(frozen=True)
class BenchFile:
    """One benchmark CSV read back: its kind (``fps``, ``scaling``, ``kernels``) and rows as strings
    (empty string for an empty cell), one column per header name."""

    path: Path
    kind: str
    rows: Any  # pandas.DataFrame of str


def read_bench_csv(path: Path, schemas: dict[str, int] | None = None) -> BenchFile:
    """A benchmark CSV, checked: it has ``schema_version`` and ``bench`` columns, holds rows of one kind,
    and that kind's schema version is the one in ``schemas`` (default :func:`bench_schemas`).

    Raises:
        DataError: unreadable, empty, older format (no schema columns), mixed kinds, an unknown kind, or
            another schema version; the message says which and how to regenerate the file.
    """
    import pandas as pd

    path = Path(path)
    schemas = bench_schemas() if schemas is None else schemas
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:  # empty / binary / malformed file
        raise DataError(path, f"unreadable benchmark CSV ({type(e).__name__})") from None
    if "schema_version" not in frame.columns or "bench" not in frame.columns:
        raise DataError(path, "benchmark CSV from an older format (no schema_version/bench column); "
                              "re-run `gdkvm bench` to regenerate it")
    if frame.empty:
        raise DataError(path, "benchmark CSV holds no rows")
    kinds = sorted(set(frame["bench"]))
    if len(kinds) != 1:
        raise DataError(path, f"mixes benchmark kinds {kinds}")
    kind = kinds[0]
    if kind not in schemas:
        raise DataError(path, f"unknown benchmark kind {kind!r}")
    versions = sorted(set(frame["schema_version"]))
    if versions != [str(schemas[kind])]:
        raise DataError(path, f"{kind} benchmark schema_version {', '.join(versions)} is not the one this gdkvm "
                              f"reads ({schemas[kind]}); re-run `gdkvm bench {kind}`")
    return BenchFile(path, kind, frame)
