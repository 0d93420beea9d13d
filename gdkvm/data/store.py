"""The prepared store: fixed-size clips of uint8 frames and masks, one folder per dataset and split.

Layout (written by :func:`write_store`, which the CAMUS, EchoNet and generic-folder preparers use)::

    <out>/<dataset>/store.json                 options, counts, bad cases, SHA-256 of every file
    <out>/<dataset>/<split>/images.npy         (N, T, H, W) uint8
    <out>/<dataset>/<split>/masks.npy          (N, T, H, W) uint8 ({0,1} LV only, {0..3} all labels)
    <out>/<dataset>/<split>/labeled.npy        (N, T) bool, which clip positions carry a mask
    <out>/<dataset>/<split>/manifest.csv       one row per case (MANIFEST_COLUMNS)

with ``<dataset>`` e.g. camus, echonet or folder and ``<split>`` in {train, val, test}; docs/store.md
describes every array, manifest column and store.json field. The dataset folder is written
atomically; re-running a preparer with the same inputs and options leaves it untouched.

The preparers live in :mod:`gdkvm.data.prepare_camus`, :mod:`gdkvm.data.prepare_echonet` and
:mod:`gdkvm.data.prepare_folder`, and the steps they share in :mod:`gdkvm.data.prepare_toolkit`; ``prepare_camus``, ``prepare_echonet``, ``prepare_folder`` and their
option classes can still be imported from here.

Manifest volumes: ``ef``/``edv``/``esv`` are the dataset's own reference values (CAMUS cfg ``EF``, plus
``LVedv``/``LVesv`` in the 2019 release only; EchoNet FileList; folder meta.csv ``ef``).
``gt_edv``/``gt_esv``/``gt_ef`` are computed from the ground truth at source resolution, as MemSAM
does: CAMUS per patient by the official biplane method of disks on the ED/ES LV masks of both views
(mL; NaN when a view is missing or unmeasurable), read from the ``<patient>_<view>_{ED,ES}_gt.nii.gz``
files the official script reads (the half-sequence GT frames where those files are absent; store.json
notes say where either happens or the two differ), EchoNet by the single-plane method of disks on the
tracing chords (pixel^3 units), a folder case by the single-plane method of disks on its first and
last labelled masks (mL with a known spacing, else pixel^3).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from gdkvm import __version__
from gdkvm.errors import ConfigError, DataError
from gdkvm.utils.atomic import atomic_dir, sha256_file

Split = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = get_args(Split)
DATASETS: tuple[str, ...] = ("camus", "echonet", "folder")
STORE_FORMAT = 1
STORE_FILE = "store.json"
SPLIT_FILES = ("images.npy", "masks.npy", "labeled.npy", "manifest.csv")
MANIFEST_COLUMNS = (
    "case_id",
    "patient",
    "view",
    "source",
    "split",
    "frame_indices",
    "n_source_frames",
    "ed_index",
    "es_index",
    "phase_first",
    "source_height",
    "source_width",
    "spacing_row_mm",
    "spacing_col_mm",
    "spacing_unit",
    "ef",
    "edv",
    "esv",
    "image_quality",
    "fps",
    "gt_edv",
    "gt_esv",
    "gt_ef",
    "gt_volume_method",
    "source_sha256",
)
_TEXT_COLUMNS = (
    "case_id",
    "patient",
    "view",
    "source",
    "split",
    "frame_indices",
    "phase_first",
    "spacing_unit",
    "image_quality",
    "gt_volume_method",
    "source_sha256",
)
CAMUS_VOLUME_METHOD = "biplane-simpson-camus-mL"
ECHONET_VOLUME_METHOD = "single-plane-disks-tracing-px3"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BadCase:
    """A skipped input: the file (relative to the dataset's parent folder) and a one-line problem."""

    file: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}"


@dataclass
class PrepareSummary:
    """What a prepare run did. ``up_to_date`` is True when an identical store existed and was kept."""

    dataset: str
    out_dir: Path
    counts: dict[str, int]
    bad_cases: list[BadCase] = field(default_factory=list)
    untraced: int = 0
    notes: list[str] = field(default_factory=list)
    up_to_date: bool = False
    elapsed_s: float = 0.0
    #: The dataset folder that was read (absolute, resolved), as recorded in store.json ``source_root``.
    source_root: Path | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def empty_splits(self) -> list[str]:
        """The splits that hold no case (each has a store.json note, :func:`empty_split_note`)."""
        return [s for s in SPLITS if not self.counts.get(s)]


def check_size_frames(size: int, frames: int) -> None:
    """Check a store's clip geometry: ``size`` an integer in 16..4096, ``frames`` an integer >= 2
    (:class:`ConfigError` otherwise)."""
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 4096:
        raise ConfigError(f"size must be an integer in 16..4096, got {size!r}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise ConfigError(f"frames must be an integer >= 2, got {frames!r}")


def empty_split_note(split: str) -> str:
    """The store.json note recorded for a split that received no case."""
    return f"split '{split}' has 0 cases"


# ----------------------------------------------------------------------------------------------
# writing


def _write_npy_from_raw(raw: Path, target: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Turn a raw C-order byte file into ``target`` .npy (same bytes as ``np.save``)."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    with open(target, "wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        with open(raw, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 22)
    raw.unlink()


class _SplitWriter:
    """Streams clips of one split to disk so a large dataset never sits in memory at once."""

    def __init__(self, folder: Path, frames: int, size: int):
        self.folder = folder
        folder.mkdir(parents=True)
        self.frames, self.size = frames, size
        self._images = open(folder / ".images.raw", "wb")
        self._masks = open(folder / ".masks.raw", "wb")
        self.labeled: list[np.ndarray] = []
        self.rows: list[dict[str, Any]] = []

    def add(self, images: np.ndarray, masks: np.ndarray, labeled: np.ndarray, row: dict[str, Any]) -> None:
        shape = (self.frames, self.size, self.size)
        if images.shape != shape or masks.shape != shape or images.dtype != np.uint8:
            raise ValueError(
                f"clip {row.get('case_id')!r}: images {images.shape} {images.dtype} / masks {masks.shape} "
                f"must both be {shape} (images uint8)"
            )
        if np.shape(labeled) != (self.frames,):
            raise ValueError(f"clip {row.get('case_id')!r}: labeled must have shape ({self.frames},)")
        self._images.write(np.ascontiguousarray(images).tobytes())
        self._masks.write(np.ascontiguousarray(masks, dtype=np.uint8).tobytes())
        self.labeled.append(np.asarray(labeled, dtype=bool))
        self.rows.append(row)

    def abort(self) -> None:
        self._images.close()
        self._masks.close()

    def close(self) -> None:
        self.abort()
        n = len(self.rows)
        shape = (n, self.frames, self.size, self.size)
        _write_npy_from_raw(self.folder / ".images.raw", self.folder / "images.npy", shape, np.uint8)
        _write_npy_from_raw(self.folder / ".masks.raw", self.folder / "masks.npy", shape, np.uint8)
        labeled = np.stack(self.labeled) if n else np.zeros((0, self.frames), dtype=bool)
        np.save(self.folder / "labeled.npy", labeled)
        manifest = pd.DataFrame(self.rows, columns=list(MANIFEST_COLUMNS))
        manifest.to_csv(self.folder / "manifest.csv", index=False, lineterminator="\n")


@contextlib.contextmanager
def _remove_created_dirs_on_error(path: Path) -> Iterator[None]:
    """On an exception, remove the (empty) folders of ``path`` that did not exist beforehand."""
    created = []
    probe = Path(os.path.abspath(path))
    while not probe.exists():
        created.append(probe)
        probe = probe.parent
    try:
        yield
    except BaseException:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _split_file_hashes(dataset_dir: Path) -> dict[str, str]:
    return {f"{s}/{name}": sha256_file(dataset_dir / s / name) for s in SPLITS for name in SPLIT_FILES}


def read_store_meta(dataset_dir: str | Path) -> dict[str, Any]:
    """The parsed ``store.json`` of a prepared dataset folder; missing or malformed -> DataError."""
    path = Path(dataset_dir) / STORE_FILE
    if not path.is_file():
        raise DataError(path, "file not found (not a prepared dataset folder?)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, f"unreadable store metadata ({type(e).__name__})") from None
    if (
        not isinstance(meta, dict)
        or meta.get("format") != STORE_FORMAT
        or not isinstance(meta.get("files"), dict)
    ):
        raise DataError(path, f"not a gdkvm store file of format {STORE_FORMAT}")
    return meta


def verify_store(dataset_dir: str | Path) -> dict[str, Any]:
    """Check every split file against the SHA-256 recorded in store.json; return the metadata.

    Raises :class:`DataError` naming the first missing or changed file.
    """
    dataset_dir = Path(dataset_dir)
    meta = read_store_meta(dataset_dir)
    for rel, expected in sorted(meta["files"].items()):
        path = dataset_dir / rel
        if not path.is_file():
            raise DataError(path, "file listed in store.json is missing")
        if sha256_file(path) != expected:
            raise DataError(path, "SHA-256 does not match store.json (file changed or corrupt)")
    return meta


def _write_store_json(
    tmp: Path,
    dataset: str,
    source: str,
    options: dict[str, Any],
    inputs: str,
    counts: dict[str, int],
    bad: list[BadCase],
    untraced: list[str],
    notes: list[str],
    phantom: bool = False,
    extra: dict[str, Any] | None = None,
    source_root: Path | None = None,
) -> None:
    """Write ``store.json`` into the dataset's temporary folder; ``extra``: dataset-specific lists."""
    meta = {
        "format": STORE_FORMAT,
        "dataset": dataset,
        "source": source,
        **({"source_root": str(source_root)} if source_root is not None else {}),
        "phantom": phantom,
        "gdkvm_version": __version__,
        "options": options,
        "inputs_sha256": inputs,
        "counts": counts,
        "bad_cases": [asdict(b) for b in bad],
        "untraced": untraced,
        "notes": notes,
        "files": _split_file_hashes(tmp),
        **(extra or {}),
    }
    (tmp / STORE_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@contextlib.contextmanager
def _split_writers(tmp: Path, frames: int, size: int) -> Iterator[dict[str, _SplitWriter]]:
    """One writer per split under ``tmp``; closed on success, aborted (partial files removed) on any error."""
    writers = {s: _SplitWriter(tmp / s, frames, size) for s in SPLITS}
    try:
        yield writers
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for w in writers.values():
        w.close()


@dataclass(frozen=True)
class StoreClip:
    """One case for :func:`write_store`.

    Attributes:
        split: ``train``, ``val`` or ``test``.
        images: (T, S, S) uint8 frames, T = the store's ``frames``, S = its ``size``.
        masks: (T, S, S) label maps (written as uint8; 0 at unlabelled positions).
        labeled: (T,) bool, the clip positions that carry a ground-truth mask.
        row: the manifest values; keys from MANIFEST_COLUMNS (``split`` is filled in from ``split``),
            missing ones are written empty (NaN for numbers).
    """

    split: str
    images: np.ndarray
    masks: np.ndarray
    labeled: np.ndarray
    row: dict[str, Any]


_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def write_store(
    out: str | Path,
    dataset: str,
    clips: Iterable[StoreClip],
    *,
    frames: int,
    size: int,
    source: str,
    options: dict[str, Any],
    inputs_sha256: str,
    bad_cases: list[BadCase] | None = None,
    untraced: list[str] | None = None,
    notes: list[str] | None = None,
    phantom: bool = False,
    extra: dict[str, Any] | None = None,
    source_root: str | Path | None = None,
) -> PrepareSummary:
    """Write the prepared store ``out/<dataset>/`` (layout and fields: docs/store.md) atomically.

    ``clips`` is consumed once and streamed to disk split by split, so it may be a generator over a
    dataset that does not fit in memory. ``bad_cases``, ``untraced`` and ``notes`` are read only after
    ``clips`` is exhausted: a generator may append the cases it skips and the notes it makes. Every split
    folder is written (empty arrays where a split has no clip), then ``store.json`` with the SHA-256 of
    each split file; ``options``, ``inputs_sha256`` (digest of the inputs, which decides whether a rerun
    is up to date), ``source``, ``phantom`` and ``extra`` (more top-level fields) are recorded as given;
    ``source_root``, the dataset folder read, is recorded absolute and resolved. A split that receives no
    clip gets a note (:func:`empty_split_note`).

    An exception raised while ``clips`` is iterated leaves ``out/<dataset>`` as it was (an existing store
    is kept, partial files and newly created folders are removed) and propagates.
    Returns the summary (``elapsed_s`` 0: the caller times its own work).
    """
    if not isinstance(dataset, str) or not _DATASET_NAME.fullmatch(dataset):
        raise ConfigError(f"dataset name must be a plain folder name (letters, digits, _ . -), got {dataset!r}")
    check_size_frames(size, frames)
    resolved_root = None if source_root is None else Path(source_root).expanduser().resolve()
    dataset_dir = Path(out) / dataset
    counts = dict.fromkeys(SPLITS, 0)
    columns = set(MANIFEST_COLUMNS)
    with _remove_created_dirs_on_error(Path(out)), atomic_dir(dataset_dir) as tmp:
        with _split_writers(tmp, frames, size) as writers:
            for clip in clips:
                if clip.split not in SPLITS:
                    raise ValueError(f"clip {clip.row.get('case_id')!r}: split {clip.split!r} not in {SPLITS}")
                unknown = sorted(set(clip.row) - columns)
                if unknown:
                    raise ValueError(f"clip {clip.row.get('case_id')!r}: unknown manifest column(s) {unknown}")
                writers[clip.split].add(clip.images, clip.masks, clip.labeled, {**clip.row, "split": clip.split})
                counts[clip.split] += 1
        bad, untraced_list, note_list = list(bad_cases or []), list(untraced or []), list(notes or [])
        note_list += [empty_split_note(s) for s in SPLITS if counts[s] == 0]
        _write_store_json(tmp, dataset, source, options, inputs_sha256, counts, bad, untraced_list, note_list,
                          phantom=phantom, extra=extra, source_root=resolved_root)
    return PrepareSummary(
        dataset=dataset,
        out_dir=dataset_dir,
        counts=counts,
        bad_cases=bad,
        untraced=len(untraced_list),
        notes=note_list,
        source_root=resolved_root,
    )


# ----------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class PreparedSplit:
    """One split of a prepared dataset, arrays memory-mapped read-only.

    Attributes:
        images: (N, T, H, W) uint8.
        masks: (N, T, H, W) uint8 label maps.
        labeled: (N, T) bool, clip positions that carry a ground-truth mask.
        manifest: one row per case, MANIFEST_COLUMNS.
    """

    path: Path
    dataset: str
    split: str
    images: np.ndarray
    masks: np.ndarray
    labeled: np.ndarray
    manifest: pd.DataFrame

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def options(self) -> dict[str, Any]:
        """The prepare options recorded in the dataset's store.json."""
        return dict(read_store_meta(self.path.parent).get("options", {}))


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # ValueError / OSError for a truncated or foreign file
        raise DataError(path, f"not a readable .npy array ({type(e).__name__})") from None


def open_store(path: str | Path, split: str | None = None) -> PreparedSplit:
    """Open ``<out>/<dataset>/<split>`` (or ``path``=dataset folder plus ``split``) read-only.

    Shapes and dtypes are checked against each other; problems raise :class:`DataError` naming the file.
    """
    folder = Path(path) if split is None else Path(path) / split
    if not folder.is_dir():
        raise DataError(folder, "prepared split folder not found")
    split_name = folder.name
    if split_name not in SPLITS:
        raise DataError(folder, f"not a split folder (expected one of {', '.join(SPLITS)})")
    meta = read_store_meta(folder.parent)
    images = _load_npy(folder / "images.npy")
    masks = _load_npy(folder / "masks.npy")
    labeled = _load_npy(folder / "labeled.npy")
    if images.ndim != 4 or images.dtype != np.uint8:
        raise DataError(
            folder / "images.npy", f"expected (N, T, H, W) uint8, got {images.shape} {images.dtype}"
        )
    if masks.shape != images.shape or masks.dtype != np.uint8:
        raise DataError(
            folder / "masks.npy", f"expected {images.shape} uint8, got {masks.shape} {masks.dtype}"
        )
    if labeled.shape != images.shape[:2] or labeled.dtype != np.bool_:
        raise DataError(
            folder / "labeled.npy", f"expected {images.shape[:2]} bool, got {labeled.shape} {labeled.dtype}"
        )
    manifest_path = folder / "manifest.csv"
    if not manifest_path.is_file():
        raise DataError(manifest_path, "file not found")
    try:
        manifest = pd.read_csv(
            manifest_path,
            dtype=dict.fromkeys(_TEXT_COLUMNS, str),
            keep_default_na=False,
            na_values={c: [""] for c in MANIFEST_COLUMNS if c not in _TEXT_COLUMNS},
        )
    except Exception as e:
        raise DataError(manifest_path, f"cannot parse CSV ({type(e).__name__})") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError(manifest_path, f"missing column(s) {', '.join(missing)}")
    if len(manifest) != images.shape[0]:
        raise DataError(manifest_path, f"{len(manifest)} rows but images.npy holds {images.shape[0]} clips")
    return PreparedSplit(
        path=folder,
        dataset=str(meta.get("dataset", folder.parent.name)),
        split=split_name,
        images=images,
        masks=masks,
        labeled=labeled,
        manifest=manifest,
    )


# ----------------------------------------------------------------------------------------------
# the preparers, importable from here as before they moved to their own modules

_MOVED = {
    "prepare_camus": "gdkvm.data.prepare_camus",
    "CamusPrepareOptions": "gdkvm.data.prepare_camus",
    "prepare_echonet": "gdkvm.data.prepare_echonet",
    "EchonetPrepareOptions": "gdkvm.data.prepare_echonet",
    "prepare_folder": "gdkvm.data.prepare_folder",
    "FolderPrepareOptions": "gdkvm.data.prepare_folder",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
