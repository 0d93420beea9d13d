"""Where a run's prepared store is: its identity at train time and how to find it again later.

``gdkvm train`` records the store in the run's ``config.yaml`` (section ``store``, see
:func:`store_record`): the absolute resolved path, the path relative to the run folder, and the store's
identity (``data_id`` = SHA-256 of store.json's ``files`` map, plus ``dataset``, ``phantom`` and
``inputs_sha256``). ``gdkvm evaluate`` and ``gdkvm report`` find the store again with
:func:`locate_store`: the recorded path, then relative to the run folder and its parents, then by
``data_id`` under a search folder (``--data``); a store whose ``data_id`` differs from the recorded one
is skipped. Runs trained before the ``store`` section existed have only ``train.data`` (maybe relative
to the folder ``train`` ran in); it is tried the same way, without the identity check.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gdkvm.errors import GdkvmError

STORE_FILE = "store.json"
#: How deep below a ``--data`` search folder store.json files are looked for.
SEARCH_DEPTH = 4
#: How many trailing components of a recorded path are tried below the run folder and its parents.
TAIL_PARTS = 4


def data_id(meta: dict[str, Any]) -> str:
    """The store's identity: SHA-256 of its ``files`` map (split file -> SHA-256), canonical JSON."""
    files = meta.get("files") if isinstance(meta, dict) else None
    text = json.dumps(files if isinstance(files, dict) else {}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_meta(store_dir: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((store_dir / STORE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def store_record(store_dir: str | Path, run_dir: str | Path) -> dict[str, Any]:
    """The ``store`` section of a run's config.yaml for the prepared store at ``store_dir``."""
    path = Path(store_dir).resolve()
    meta = _read_meta(path) or {}
    try:
        relative = os.path.relpath(path, Path(run_dir).resolve())
    except ValueError:  # another drive on Windows
        relative = None
    phantom = meta.get("phantom")
    return {"path": str(path), "relative_to_run": relative, "data_id": data_id(meta),
            "dataset": meta.get("dataset"), "phantom": phantom if isinstance(phantom, bool) else None,
            "inputs_sha256": meta.get("inputs_sha256")}


@dataclass(frozen=True)
class FoundStore:
    """A located store: its folder, how it was found (one line), and its store.json."""

    path: Path
    how: str
    meta: dict[str, Any]

    def line(self) -> str:
        return f"store: {self.path} ({self.how})"


def _tails(path: Path) -> list[Path]:
    parts = path.parts[1:] if path.is_absolute() else path.parts
    return [Path(*parts[-k:]) for k in range(min(len(parts), TAIL_PARTS), 0, -1)]


def _search(root: Path, want: str) -> Path | None:
    """A folder at most SEARCH_DEPTH levels below ``root`` (itself included) whose store has ``want``."""
    level = [root]
    for _ in range(SEARCH_DEPTH + 1):
        nxt = []
        for folder in level:
            if (folder / STORE_FILE).is_file():
                meta = _read_meta(folder)
                if meta is not None and data_id(meta) == want:
                    return folder
            try:
                nxt += sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
        level = nxt
    return None


def locate_store(run_dir: str | Path, config: dict[str, Any], search: str | Path | None = None) -> FoundStore:
    """The prepared store of a run, from its parsed ``config.yaml`` (``train`` and ``store`` sections).

    Order: the recorded absolute path; the recorded path relative to the run folder; the recorded data
    path (or its trailing folders) below the run folder and each of its parents; a folder below
    ``search`` whose store has the recorded ``data_id``. With a ``data_id`` recorded, a candidate with
    another id is skipped. Raises a one-line :class:`GdkvmError` naming every path tried.
    """
    run_dir = Path(run_dir).resolve()
    record = config.get("store") if isinstance(config.get("store"), dict) else {}
    train = config.get("train") if isinstance(config.get("train"), dict) else config
    data = str(train.get("data") or "")
    want = record.get("data_id") if isinstance(record.get("data_id"), str) else None
    candidates: list[tuple[Path, str]] = []
    recorded = Path(str(record.get("path") or data)) if (record.get("path") or data) else None
    if recorded is not None:
        candidates.append((recorded, "recorded path" if recorded.is_absolute() else "recorded path, from the current folder"))
    if isinstance(record.get("relative_to_run"), str):
        candidates.append((run_dir / record["relative_to_run"], "recorded path relative to the run folder"))
    if recorded is not None:
        # without an id to check against, only the whole recorded (relative) path: a bare 'camus' below
        # some parent folder could be another store
        tails = _tails(recorded) if want else ([] if recorded.is_absolute() else [recorded])
        for base in (run_dir, *run_dir.parents):
            for tail in tails:
                candidates.append((base / tail, f"'{tail}' below {base}"))
    tried: list[str] = []
    seen: set[str] = set()
    for path, how in candidates:
        key = os.path.normpath(str(path))
        if key in seen:
            continue
        seen.add(key)
        if not (path / STORE_FILE).is_file():
            tried.append(key)
            continue
        meta = _read_meta(path)
        if meta is None:
            tried.append(f"{key} (unreadable store.json)")
            continue
        if want is not None and data_id(meta) != want:
            tried.append(f"{key} (another store: data_id differs)")
            continue
        return FoundStore(path.resolve(), how, meta)
    if search is not None and want is not None:
        found = _search(Path(search), want)
        if found is not None:
            return FoundStore(found.resolve(), f"found by data_id {want[:12]} under {search}", _read_meta(found) or {})
        tried.append(f"{search}/** (no store with data_id {want[:12]})")
    elif search is not None:
        tried.append(f"{search} (the run records no data_id to search by)")
    shown = tried if len(tried) <= 8 else [*tried[:7], f"... {len(tried) - 7} more"]
    hint = "" if search is not None else "; pass --data FOLDER to search for it by id"
    raise GdkvmError(f"{run_dir}: prepared store not found; tried {', '.join(shown) or 'nothing (no data path recorded)'}"
                     f"{hint}")
