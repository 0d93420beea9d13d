"""The preparation toolkit: what the CAMUS, EchoNet and folder preparers share beside the store format.

:mod:`gdkvm.data.store` is the store *format* (writing, reading, verifying); this module holds the steps a
preparer takes around it: find the dataset folder (:func:`find_dataset_folder`), check the common options
(:func:`check_common_options`), hash the inputs and reuse an identical store (:func:`check_up_to_date`),
resize frames (:func:`resize_frame`), turn a :class:`~gdkvm.errors.DataError` into a listed bad case
(:func:`bad_case`) and format manifest values and notes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from gdkvm import __version__
from gdkvm.data.sampling import SAMPLING_RULES
from gdkvm.data.store import (
    SPLITS,
    STORE_FILE,
    BadCase,
    PrepareSummary,
    Progress,
    check_size_frames,
    verify_store,
)
from gdkvm.errors import DataError, GdkvmError, unknown_name
from gdkvm.utils.atomic import sha256_file

__all__ = [
    "SEARCH_BELOW_FLAG",
    "SEARCH_DEPTH",
    "bad_case",
    "check_common_options",
    "check_up_to_date",
    "find_dataset_folder",
    "first_names",
    "format_indices",
    "is_phantom_root",
    "optional_float",
    "relative_path",
    "resize_frame",
]

#: The CLI flag of ``gdkvm prepare camus|echonet`` that allows looking below ``--root`` for the dataset.
SEARCH_BELOW_FLAG = "--search-below"
#: How many folder levels below ``root`` :func:`find_dataset_folder` looks with ``search_below``.
SEARCH_DEPTH = 2


# ----------------------------------------------------------------------------------------------
# the dataset folder


def _folders_below(root: Path, depth: int) -> list[Path]:
    """Sub-folders of ``root`` down to ``depth`` levels, level by level, each level sorted by name."""
    found: list[Path] = []
    level = [root]
    for _ in range(depth):
        nxt: list[Path] = []
        for folder in level:
            try:
                nxt += sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
        found += nxt
        level = nxt
    return found


def find_dataset_folder(
    root: str | Path,
    *,
    is_dataset: Callable[[Path], bool],
    dataset: str,
    expected: str,
    usual_name: str | None = None,
    search_below: bool = False,
) -> Path:
    """The dataset folder a preparer reads: ``root`` itself, absolute and resolved.

    ``is_dataset(folder)`` tells whether a folder is one (e.g. it holds ``database_nifti/``); ``dataset``
    names it in messages ("CAMUS"), ``expected`` says what must be in it ("database_nifti/") and
    ``usual_name`` is the folder's name in the dataset's release ("CAMUS_public"), for the message.

    ``root`` must be the dataset folder. With ``search_below`` the folders up to :data:`SEARCH_DEPTH`
    levels below ``root`` are searched too when ``root`` is not one; exactly one match is taken (two or
    more raise an error listing them, so an unrelated copy is never picked silently). Without it a
    ``root`` that is not a dataset folder raises a one-line :class:`DataError` saying what was expected and,
    when a dataset lies below, naming it and the :data:`SEARCH_BELOW_FLAG` flag.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(root, "folder not found")
    if not root.is_dir():
        raise DataError(root, "not a folder")
    if is_dataset(root):
        return root.resolve()
    below = [p for p in _folders_below(root, SEARCH_DEPTH) if is_dataset(p)]
    if search_below and len(below) == 1:
        return below[0].resolve()
    usual = f", as in {usual_name}/" if usual_name else ""
    what = f"not a dataset folder of {dataset} (expected {expected} in it{usual})"
    if search_below and below:
        shown = ", ".join(str(p) for p in below[:3]) + (f" (+{len(below) - 3} more)" if len(below) > 3 else "")
        raise DataError(root, f"{what}; {len(below)} {dataset} datasets found below it ({shown}): pass the one "
                              f"to read as --root")
    if below:
        raise DataError(root, f"{what}; one was found below it at {below[0]}: pass --root {below[0]}, or add "
                              f"{SEARCH_BELOW_FLAG} to use the folder found below")
    depth = f" or up to {SEARCH_DEPTH} levels below it" if search_below else ""
    raise DataError(root, f"{what}; no {dataset} dataset found there{depth}")


def is_phantom_root(root: Path) -> bool:
    """True when a raw dataset folder was written by gdkvm's synthetic phantom (its marker files)."""
    return (root / "README_PHANTOM.txt").is_file() or (root.parent / "phantom_truth.json").is_file()


# ----------------------------------------------------------------------------------------------
# options, bad cases and manifest values


def check_common_options(size: int, sampling: str, frames: int) -> None:
    """Check the options every preparer takes: ``size`` in 16..4096, a known ``sampling`` rule
    (:data:`gdkvm.data.sampling.SAMPLING_RULES`), ``frames`` >= 2. Raises :class:`ConfigError`."""
    check_size_frames(size, frames)
    if sampling not in SAMPLING_RULES:
        raise unknown_name("sampling rule", str(sampling), SAMPLING_RULES)


def resize_frame(frame: np.ndarray, size: int, nearest: bool) -> np.ndarray:
    """(H, W) uint8 -> (size, size) uint8; bilinear for images, nearest for label maps (``nearest``)."""
    import cv2

    if frame.shape == (size, size):
        return frame.copy()
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(frame, (size, size), interpolation=interpolation)


def relative_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (posix) when below it, else as given."""
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(base)).as_posix()
    except ValueError:
        return str(path)


def bad_case(error: DataError, base: Path) -> BadCase:
    """The listed bad case of a skipped input: its file relative to ``base`` and the error's problem."""
    file = relative_path(error.path, base) if error.path is not None else ""
    return BadCase(file=file, problem=error.problem)


def format_indices(indices: np.ndarray) -> str:
    """(T,) source frame numbers -> the manifest's ``frame_indices`` text, e.g. ``"0 2 4"``."""
    return " ".join(str(int(i)) for i in indices)


def optional_float(value: float | None) -> float:
    """A manifest number: ``value`` as float, NaN for None."""
    return float("nan") if value is None else float(value)


def first_names(names: list[str], limit: int = 5, suffix: str = "") -> str:
    """The first ``limit`` names (each + ``suffix``), comma-separated, then "(+N more)" for the rest."""
    shown = ", ".join(f"{n}{suffix}" for n in names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


# ----------------------------------------------------------------------------------------------
# up to date?


def _hash_files(paths: list[Path], progress: Callable[[int], None]) -> dict[Path, str]:
    """SHA-256 of each file (``'missing'`` for absent ones), hashed on a few threads."""

    def one(path: Path) -> str:
        return sha256_file(path) if path.is_file() else "missing"

    hashes: dict[Path, str] = {}
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for k, (path, digest) in enumerate(zip(paths, pool.map(one, paths), strict=True), start=1):
            hashes[path] = digest
            progress(k)
    return hashes


def _inputs_digest(hashes: dict[Path, str], base: Path) -> str:
    listing = sorted([relative_path(p, base), h] for p, h in hashes.items())
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def _existing_summary(dataset_dir: Path, dataset: str, options: dict[str, Any], inputs: str,
                      source_root: Path | None) -> PrepareSummary | None:
    """The summary of an identical existing store (same dataset, options, inputs, gdkvm version and, when
    given, source folder), or None when it must be (re)built."""
    if not (dataset_dir / STORE_FILE).is_file():
        return None
    try:
        meta = verify_store(dataset_dir)
    except (DataError, GdkvmError):
        return None
    same = (
        meta.get("dataset") == dataset
        and meta.get("options") == options
        and meta.get("inputs_sha256") == inputs
        and meta.get("gdkvm_version") == __version__
        and (source_root is None or meta.get("source_root") == str(source_root))
    )
    if not same:
        return None
    recorded = meta.get("source_root")
    return PrepareSummary(
        dataset=dataset,
        out_dir=dataset_dir,
        counts={s: int(meta["counts"][s]) for s in SPLITS},
        bad_cases=[BadCase(**b) for b in meta.get("bad_cases", [])],
        untraced=len(meta.get("untraced", [])),
        notes=list(meta.get("notes", [])),
        up_to_date=True,
        source_root=Path(recorded) if isinstance(recorded, str) else None,
    )


def check_up_to_date(
    dataset: str, inputs: list[Path], total: int, report: Progress, options: dict[str, Any], base: Path,
    out: str | Path, strict: bool, start: float, source_root: Path | None = None,
) -> tuple[dict[Path, str], str, Path, PrepareSummary | None]:
    """Hash the inputs and look for a store ``out/<dataset>`` built from the same inputs and options.

    Progress steps 1..len(inputs) of ``total`` go to ``report(done, total)``; input paths are digested
    relative to ``base``; ``start`` (``time.perf_counter()`` at the start of the preparer) times a reused
    store; ``source_root`` (the dataset folder read) must also match the recorded one when given.
    Returns (hashes, inputs digest, dataset folder, the existing summary or None); under ``strict`` a
    store that has bad cases is rebuilt (so that they raise).
    """
    hashes = _hash_files(inputs, lambda k: report(k, total))
    digest = _inputs_digest(hashes, base)
    dataset_dir = Path(out) / dataset
    existing = _existing_summary(dataset_dir, dataset, options, digest, source_root)
    if existing is not None and not (strict and existing.bad_cases):
        report(total, total)
        existing.elapsed_s = time.perf_counter() - start
        return hashes, digest, dataset_dir, existing
    return hashes, digest, dataset_dir, None
