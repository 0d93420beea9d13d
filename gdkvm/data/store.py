"""The prepared store: fixed-size clips of uint8 frames and masks, one folder per dataset and split.

Layout written by :func:`prepare_camus` / :func:`prepare_echonet`::

    <out>/<dataset>/store.json                 options, counts, bad cases, SHA-256 of every file
    <out>/<dataset>/<split>/images.npy         (N, T, H, W) uint8
    <out>/<dataset>/<split>/masks.npy          (N, T, H, W) uint8 ({0,1} LV only, {0..3} all labels)
    <out>/<dataset>/<split>/labeled.npy        (N, T) bool, which clip positions carry a mask
    <out>/<dataset>/<split>/manifest.csv       one row per case (MANIFEST_COLUMNS)

with ``<dataset>`` in {camus, echonet} and ``<split>`` in {train, val, test}. The dataset folder is
written atomically; re-running with the same inputs and options leaves it untouched.

Manifest volumes: ``ef``/``edv``/``esv`` are the dataset's own reference values (CAMUS cfg ``EF``, plus
``LVedv``/``LVesv`` in the 2019 release only; EchoNet FileList). ``gt_edv``/``gt_esv``/``gt_ef`` are
computed from the ground truth at source resolution, as MemSAM does: CAMUS per patient by the official
biplane method of disks on the ED/ES LV masks of both views (mL; NaN when a view is missing or
unmeasurable), read from the ``<patient>_<view>_{ED,ES}_gt.nii.gz`` files the official script reads (the
half-sequence GT frames where those files are absent; store.json notes say where either happens or the
two differ), EchoNet by the single-plane method of disks on the tracing chords (pixel^3 units).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from gdkvm import __version__
from gdkvm.data import camus, echonet
from gdkvm.data.sampling import SAMPLING_RULES, sample_indices
from gdkvm.errors import ConfigError, DataError, unknown_name
from gdkvm.utils.atomic import atomic_dir, sha256_file

SPLITS: tuple[str, ...] = ("train", "val", "test")
DATASETS: tuple[str, ...] = ("camus", "echonet")
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


# ----------------------------------------------------------------------------------------------
# options and results


@dataclass(frozen=True)
class CamusPrepareOptions:
    """How CAMUS clips are built (all of it is recorded in store.json)."""

    size: int = 256
    labels: Literal["lv", "all"] = "lv"
    sampling: Literal["floor", "rint"] = "floor"
    split: Literal["official", "memsam"] = "official"
    frames: int = 10


@dataclass(frozen=True)
class EchonetPrepareOptions:
    """How EchoNet clips are built: ``clip='ed-es'`` (cyclic forward ED->ES, GDKVM re-release) or
    ``'earlier-later'`` (MemSAM: earlier traced frame first). ``tracing_rows`` picks the mask rows of
    traced frames that do not have exactly 21 rows: ``'all'`` (echonet/dynamic and the re-release:
    every row after the first), ``'first'`` (the first 21 rows) or ``'exact'`` (MemSAM: skip the
    video unless both traced frames have exactly 21 rows); see :mod:`gdkvm.data.echonet`."""

    size: int = 128
    sampling: Literal["floor", "rint"] = "floor"
    clip: Literal["ed-es", "earlier-later"] = "ed-es"
    frames: int = 10
    tracing_rows: Literal["all", "first", "exact"] = "first"


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

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _check_common(size: int, sampling: str, frames: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 4096:
        raise ConfigError(f"size must be an integer in 16..4096, got {size!r}")
    if sampling not in SAMPLING_RULES:
        raise unknown_name("sampling rule", str(sampling), SAMPLING_RULES)
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise ConfigError(f"frames must be an integer >= 2, got {frames!r}")


def _check_camus_options(opts: CamusPrepareOptions) -> None:
    _check_common(opts.size, opts.sampling, opts.frames)
    if opts.labels not in ("lv", "all"):
        raise unknown_name("label set", str(opts.labels), ("lv", "all"))
    if opts.split not in ("official", "memsam"):
        raise unknown_name("CAMUS split", str(opts.split), ("official", "memsam"))


def _check_echonet_options(opts: EchonetPrepareOptions) -> None:
    _check_common(opts.size, opts.sampling, opts.frames)
    if opts.clip not in echonet.CLIP_FORMS:
        raise unknown_name("clip form", str(opts.clip), echonet.CLIP_FORMS)
    if opts.tracing_rows not in echonet.TRACING_ROWS:
        raise unknown_name("tracing-rows policy", str(opts.tracing_rows), echonet.TRACING_ROWS)


# ----------------------------------------------------------------------------------------------
# writing


def _resize(frame: np.ndarray, size: int, nearest: bool) -> np.ndarray:
    """(H, W) uint8 -> (size, size) uint8; bilinear for images, nearest for label maps."""
    import cv2

    if frame.shape == (size, size):
        return frame.copy()
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(frame, (size, size), interpolation=interpolation)


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
        assert images.shape == shape and masks.shape == shape and images.dtype == np.uint8
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


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (posix) when below it, else as given."""
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(base)).as_posix()
    except ValueError:
        return str(path)


def _bad_case(error: DataError, base: Path) -> BadCase:
    file = _relative(error.path, base) if error.path is not None else ""
    return BadCase(file=file, problem=error.problem)


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
    listing = sorted([_relative(p, base), h] for p, h in hashes.items())
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


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


def _existing_summary(
    dataset_dir: Path, dataset: str, options: dict[str, Any], inputs: str
) -> PrepareSummary | None:
    """The summary of an identical existing store, or None when it must be (re)built."""
    if not (dataset_dir / STORE_FILE).is_file():
        return None
    try:
        meta = verify_store(dataset_dir)
    except DataError:
        return None
    same = (
        meta.get("dataset") == dataset
        and meta.get("options") == options
        and meta.get("inputs_sha256") == inputs
        and meta.get("gdkvm_version") == __version__
    )
    if not same:
        return None
    return PrepareSummary(
        dataset=dataset,
        out_dir=dataset_dir,
        counts={s: int(meta["counts"][s]) for s in SPLITS},
        bad_cases=[BadCase(**b) for b in meta.get("bad_cases", [])],
        untraced=len(meta.get("untraced", [])),
        notes=list(meta.get("notes", [])),
        up_to_date=True,
    )


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
) -> None:
    """Write ``store.json`` into the dataset's temporary folder; ``extra``: dataset-specific lists."""
    meta = {
        "format": STORE_FORMAT,
        "dataset": dataset,
        "source": source,
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


def _up_to_date(
    dataset: str, inputs: list[Path], total: int, report: Progress, options: dict[str, Any], base: Path,
    out: str | Path, strict: bool, start: float,
) -> tuple[dict[Path, str], str, Path, PrepareSummary | None]:
    """Hash the inputs (progress steps 1..len(inputs) of ``total``) and look for a store built from the same
    inputs and options. Returns (hashes, inputs digest, dataset folder, the existing summary or None);
    under ``strict`` a store that has bad cases is rebuilt (so that they raise)."""
    hashes = _hash_files(inputs, lambda k: report(k, total))
    digest = _inputs_digest(hashes, base)
    dataset_dir = Path(out) / dataset
    existing = _existing_summary(dataset_dir, dataset, options, digest)
    if existing is not None and not (strict and existing.bad_cases):
        report(total, total)
        existing.elapsed_s = time.perf_counter() - start
        return hashes, digest, dataset_dir, existing
    return hashes, digest, dataset_dir, None


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


def is_phantom_root(root: Path) -> bool:
    """True when a raw dataset folder was written by gdkvm's synthetic phantom (its marker files)."""
    return (root / "README_PHANTOM.txt").is_file() or (root.parent / "phantom_truth.json").is_file()


def _fmt_indices(indices: np.ndarray) -> str:
    return " ".join(str(int(i)) for i in indices)


def _opt_float(value: float | None) -> float:
    return float("nan") if value is None else float(value)


# ----------------------------------------------------------------------------------------------
# CAMUS


def _camus_clip(
    case: camus.CamusCase, opts: CamusPrepareOptions
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Sample, resize and check one CAMUS case -> (images, masks, labeled, manifest row)."""
    oriented = sample_indices(case.ed_index, case.es_index, opts.frames, opts.sampling)
    source = case.source_index(oriented)
    labels = case.labels[oriented]
    for pos, frame in enumerate(source.tolist()):
        if not (labels[pos] == camus.LV_LABEL).any():
            raise DataError(case.files.gt, f"empty LV mask at frame {frame}")
    masks = camus.select_labels(labels, opts.labels)
    size = opts.size
    images = np.stack([_resize(case.images[i], size, nearest=False) for i in oriented])
    masks = np.stack([_resize(m, size, nearest=True) for m in masks])
    for pos, frame in enumerate(source.tolist()):
        if not (masks[pos] == camus.LV_LABEL).any():
            raise DataError(case.files.gt, f"LV mask at frame {frame} vanishes when resized to {size}")
    height, width = case.images.shape[1:]
    info = case.info
    row = {
        "case_id": case.case_id,
        "patient": case.patient,
        "view": case.view,
        "source": "camus",
        "frame_indices": _fmt_indices(source),
        "n_source_frames": case.n_frames,
        "ed_index": info.ed - 1,
        "es_index": info.es - 1,
        "phase_first": "ED",
        "source_height": height,
        "source_width": width,
        "spacing_row_mm": case.spacing[0] * height / size,
        "spacing_col_mm": case.spacing[1] * width / size,
        "spacing_unit": "mm",
        "ef": _opt_float(info.ef),
        "edv": _opt_float(info.edv),
        "esv": _opt_float(info.esv),
        "image_quality": info.image_quality or "",
        "fps": _opt_float(info.frame_rate),
        "gt_edv": math.nan,
        "gt_esv": math.nan,
        "gt_ef": math.nan,
        "gt_volume_method": "",
    }
    return images, masks, np.ones(opts.frames, dtype=bool), row


def _reference_phase_masks(root: Path, case: camus.CamusCase) -> tuple[np.ndarray, np.ndarray, tuple[float, float], str]:
    """LV masks (H, W) at ED and ES for the reference volumes, their spacing, and where they came from.

    The official CAMUS EF script reads the single-frame ``<patient>_<view>_{ED,ES}_gt.nii.gz`` files, so
    those are used when both exist, read and match the sequence's frame shape (``"files"``, or
    ``"files-differ"`` when they are not the half-sequence GT frames at ED/ES); otherwise the
    half-sequence GT frames (``"sequence"``, or ``"sequence (unreadable ED/ES GT file)"``).
    """
    seq_ed = case.labels[case.ed_index] == camus.LV_LABEL
    seq_es = case.labels[case.es_index] == camus.LV_LABEL
    paths = [camus.phase_gt_path(root, case.patient, case.view, phase) for phase in ("ED", "ES")]
    if not all(p.is_file() for p in paths):
        return seq_ed, seq_es, case.spacing, "sequence"
    try:
        (ed, spacing), (es, _) = (camus.read_phase_gt(p) for p in paths)
    except DataError:
        return seq_ed, seq_es, case.spacing, "sequence (unreadable ED/ES GT file)"
    if ed.shape != seq_ed.shape or es.shape != seq_es.shape:
        return seq_ed, seq_es, case.spacing, "sequence (ED/ES GT file of another shape)"
    ed_mask, es_mask = ed == camus.LV_LABEL, es == camus.LV_LABEL
    same = np.array_equal(ed_mask, seq_ed) and np.array_equal(es_mask, seq_es)
    return ed_mask, es_mask, spacing, "files" if same else "files-differ"


def _first_names(names: list[str], limit: int = 5, suffix: str = "") -> str:
    """The first ``limit`` names (each + ``suffix``), comma-separated, then "(+N more)" for the rest."""
    shown = ", ".join(f"{n}{suffix}" for n in names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _reference_source_notes(sources: list[tuple[str, str]]) -> list[str]:
    """store.json notes on where the reference (gt_*) volumes' ED/ES masks came from, when not all from
    ED/ES GT files identical to the half-sequence GT frames."""
    notes = []
    for kind, text in (
        ("files-differ", "ED/ES GT files differ from the half-sequence GT frames; reference volumes use the files"),
        ("sequence", "no usable ED/ES GT files; reference volumes use the half-sequence GT frames"),
    ):
        cases = [case_id for case_id, source in sources if source.startswith(kind)]
        if cases:
            notes.append(f"{len(cases)} case(s): {text}: {_first_names(cases)}")
    return notes


def _camus_biplane(root: Path, cases: dict[str, camus.CamusCase]) -> tuple[dict[str, float], list[tuple[str, str]]]:
    """Biplane Simpson EDV/ESV (mL)/EF of one patient from its source-resolution GT ({} if unmeasurable),
    and the mask source of each view (see :func:`_reference_phase_masks`)."""
    from gdkvm.metrics.clinical import safe_biplane_ef

    if set(cases) != set(camus.VIEWS):
        return {}, []
    (e2, s2, sp2, src2), (e4, s4, sp4, src4) = (_reference_phase_masks(root, cases[v]) for v in ("2CH", "4CH"))
    result = safe_biplane_ef(e2, s2, e4, s4, sp2, sp4)
    sources = [(cases["2CH"].case_id, src2), (cases["4CH"].case_id, src4)]
    if not math.isfinite(result.ef):
        return {}, sources
    return {
        "gt_edv": result.edv,
        "gt_esv": result.esv,
        "gt_ef": result.ef,
        "gt_volume_method": CAMUS_VOLUME_METHOD,
    }, sources


def _camus_jobs(
    root: Path, split: str
) -> tuple[list[tuple[str, str]], list[Path], list[str], list[DataError]]:
    """(split, patient) jobs, the global input files, notes, and listed-but-missing patients."""
    on_disk = camus.list_patients(root)
    notes: list[str] = []
    global_files: list[Path] = []
    if split == "official":
        splits = camus.read_official_split(root)
        global_files = [root / "database_split" / name for name in camus.SPLIT_FILES.values()]
        listed = {p for names in splits.values() for p in names}
        ignored = sorted(set(on_disk) - listed, key=camus.patient_number)
        if ignored:
            notes.append(
                f"{len(ignored)} patient folder(s) in no split file were ignored (first: {ignored[0]})"
            )
    else:
        splits = camus.memsam_split(on_disk)
    present = set(on_disk)
    missing = [
        DataError(root / "database_nifti" / patient, "patient folder not found (listed in the split files)")
        for s in SPLITS
        for patient in splits[s]
        if patient not in present
    ]
    jobs = [(s, patient) for s in SPLITS for patient in splits[s] if patient in present]
    return jobs, global_files, notes, missing


def prepare_camus(
    root: str | Path,
    out: str | Path,
    *,
    size: int = 256,
    labels: Literal["lv", "all"] = "lv",
    sampling: Literal["floor", "rint"] = "floor",
    split: Literal["official", "memsam"] = "official",
    frames: int = 10,
    strict: bool = False,
    progress: Progress | None = None,
) -> PrepareSummary:
    """Build ``out/camus/{train,val,test}`` from a CAMUS NIfTI release.

    Each case (patient + view) is oriented ED -> ES, ``frames`` frames are sampled from ED to ES
    inclusive (``sampling`` rule), images are resized bilinear and masks nearest to ``size`` x ``size``;
    every clip position is labelled. Spacing is carried as (sy, sx) * old_size / size.

    ``root`` is the ``CAMUS_public`` folder or a folder containing it. Bad cases are skipped and listed
    (``strict=False``) or raise :class:`DataError` with nothing written (``strict=True``).
    ``progress(done, total)`` is called as inputs are hashed and cases are written.
    """
    start = time.perf_counter()
    opts = CamusPrepareOptions(size=size, labels=labels, sampling=sampling, split=split, frames=frames)
    _check_camus_options(opts)
    root = camus.find_camus_root(root)
    base = root.parent
    jobs, global_files, notes, missing = _camus_jobs(root, opts.split)
    if strict and missing:
        raise missing[0]
    files_of = {(p, v): camus.case_files(root, p, v) for _, p in jobs for v in camus.VIEWS}
    inputs = list(global_files) + [f for cf in files_of.values() for f in (cf.cfg, cf.image, cf.gt)]
    total = len(inputs) + len(files_of)
    report = progress or (lambda done, total: None)
    options = asdict(opts)
    hashes, digest, dataset_dir, existing = _up_to_date("camus", inputs, total, report, options, base, out,
                                                        strict, start)
    if existing is not None:
        return existing

    bad = [_bad_case(e, base) for e in missing]
    counts = dict.fromkeys(SPLITS, 0)
    mask_sources: list[tuple[str, str]] = []
    with _remove_created_dirs_on_error(Path(out)), atomic_dir(dataset_dir) as tmp:
        with _split_writers(tmp, opts.frames, opts.size) as writers:
            done = len(inputs)
            for s, patient in jobs:
                cases: dict[str, camus.CamusCase] = {}
                clips = []
                for view in camus.VIEWS:
                    try:
                        case = camus.load_camus_case(root, patient, view)
                        clips.append(_camus_clip(case, opts))
                        cases[view] = case
                        notes += [f"{patient}/Info_{view}.cfg: {w}" for w in case.info.warnings]
                    except DataError as e:
                        if strict:
                            raise
                        bad.append(_bad_case(e, base))
                    done += 1
                    report(done, total)
                volumes, sources = _camus_biplane(root, cases)
                mask_sources += sources
                for images, masks, labeled, row in clips:
                    cf = files_of[(patient, row["view"])]
                    row.update(volumes, split=s, source_sha256=f"{hashes[cf.image]};{hashes[cf.gt]}")
                    writers[s].add(images, masks, labeled, row)
                    counts[s] += 1
        notes += _reference_source_notes(mask_sources)
        _write_store_json(tmp, "camus", root.name, options, digest, counts, bad, [], notes,
                          phantom=is_phantom_root(root))
    return PrepareSummary(
        dataset="camus",
        out_dir=dataset_dir,
        counts=counts,
        bad_cases=bad,
        notes=notes,
        elapsed_s=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------------------------
# EchoNet


def _echonet_clip(
    case: echonet.EchoCase, opts: EchonetPrepareOptions, tracings_path: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Sample, resize and check one EchoNet video -> (images, masks, labeled, manifest row)."""
    indices, ed_first = echonet.clip_indices(case, opts.frames, opts.sampling, opts.clip)
    first_mask, last_mask = (case.ed_mask, case.es_mask) if ed_first else (case.es_mask, case.ed_mask)
    size = opts.size
    images = np.stack([_resize(case.video[i], size, nearest=False) for i in indices])
    masks = np.zeros((opts.frames, size, size), dtype=np.uint8)
    masks[0] = _resize(first_mask, size, nearest=True)
    masks[-1] = _resize(last_mask, size, nearest=True)
    for pos, frame in ((0, int(indices[0])), (opts.frames - 1, int(indices[-1]))):
        if not masks[pos].any():
            raise DataError(tracings_path, f"{case.case_id}.avi frame {frame}: empty LV mask")
    labeled = np.zeros(opts.frames, dtype=bool)
    labeled[[0, -1]] = True
    info = case.info
    # NaN when a traced frame has fewer than 21 rows (tracing_rows 'all'/'first'): NaN gt_* in the manifest
    gt_edv, gt_esv = case.ed_tracing.disk_volume(), case.es_tracing.disk_volume()
    if math.isfinite(gt_edv) and not gt_edv > 0:
        raise DataError(
            tracings_path, f"{case.case_id}.avi frame {case.ed_frame}: ED tracing has zero volume"
        )
    row = {
        "case_id": case.case_id,
        "patient": case.case_id,
        "view": "4CH",
        "source": "echonet",
        "split": info.split,
        "frame_indices": _fmt_indices(indices),
        "n_source_frames": case.n_frames,
        "ed_index": case.ed_frame,
        "es_index": case.es_frame,
        "phase_first": "ED" if ed_first else "ES",
        "source_height": int(case.video.shape[1]),
        "source_width": int(case.video.shape[2]),
        "spacing_row_mm": math.nan,
        "spacing_col_mm": math.nan,
        "spacing_unit": "px",
        "ef": info.ef,
        "edv": info.edv,
        "esv": info.esv,
        "image_quality": "",
        "fps": info.fps,
        "gt_edv": gt_edv,
        "gt_esv": gt_esv,
        "gt_ef": 100.0 * (gt_edv - gt_esv) / gt_edv if math.isfinite(gt_edv) else math.nan,
        "gt_volume_method": ECHONET_VOLUME_METHOD,
    }
    return images, masks, labeled, row


def _echonet_notes(index: echonet.EchoIndex) -> list[str]:
    """store.json notes on the tracing quirks: orphan tracings, multi-tracing and odd-count frames (what
    the ``tracing_rows`` policy did with them) and the videos that policy ``'exact'`` skipped."""
    notes = []
    if index.orphan_tracings:
        notes.append(
            f"{len(index.orphan_tracings)} tracing(s) without a FileList row ignored: "
            + _first_names(index.orphan_tracings, suffix=".avi")
        )
    if index.tracing_rows == "exact":
        if index.skipped_rows:
            notes.append(
                f"{len(index.skipped_rows)} video(s) skipped by tracing_rows='exact' (MemSAM): a traced "
                "frame without exactly 21 rows (store.json skipped_tracing_rows): "
                + _first_names(index.skipped_rows, suffix=".avi")
            )
        return notes
    used = {
        "all": "every row after the first made the mask polygon (echonet/dynamic, GDKVM re-release)",
        "first": "the first 21 rows made the mask polygon (all rows when fewer)",
    }[index.tracing_rows]
    first21 = "ED/ES and gt volumes use the first 21 rows"
    if index.multi_tracing_frames:
        hollow = ", whose even-odd fill leaves these masks largely hollow" * (index.tracing_rows == "all")
        notes.append(
            f"{index.multi_tracing_frames} traced frame(s) held repeated tracings (42/63/84 rows); "
            f"tracing_rows='{index.tracing_rows}': {used}{hollow}; {first21}"
        )
    if index.odd_row_frames:
        short = sum(t.n_rows < echonet.ROWS_PER_TRACING for e in index.entries for t in e.tracings)
        below = f" ({short} frame(s) with fewer than 21 rows: all rows for ED/ES, gt volumes NaN)"
        notes.append(
            f"{index.odd_row_frames} traced frame(s) have a row count that is not a multiple of 21; "
            f"tracing_rows='{index.tracing_rows}': {used}; {first21}" + (below if short else "")
        )
    return notes


def prepare_echonet(
    root: str | Path,
    out: str | Path,
    *,
    size: int = 128,
    sampling: Literal["floor", "rint"] = "floor",
    clip: Literal["ed-es", "earlier-later"] = "ed-es",
    frames: int = 10,
    tracing_rows: Literal["all", "first", "exact"] = "first",
    strict: bool = False,
    progress: Progress | None = None,
) -> PrepareSummary:
    """Build ``out/echonet/{train,val,test}`` from EchoNet-Dynamic (splits from FileList ``Split``).

    ED/ES come from the tracing areas; ``frames`` frames run ED -> ES (``clip='ed-es'``, cyclic
    forward) or earlier -> later traced frame (``'earlier-later'``). Frames are resized bilinear and
    masks nearest to ``size``; masks exist at clip positions 0 and ``frames - 1`` only.
    ``tracing_rows`` picks the polygon rows of traced frames that do not have exactly 21 rows
    (:class:`EchonetPrepareOptions`). Untraced videos, tracings without a FileList row and videos
    skipped by ``tracing_rows='exact'`` are skipped and listed (never fatal); bad cases are skipped and
    listed, or fatal with ``strict=True``.
    """
    start = time.perf_counter()
    opts = EchonetPrepareOptions(
        size=size, sampling=sampling, clip=clip, frames=frames, tracing_rows=tracing_rows
    )
    _check_echonet_options(opts)
    root = echonet.find_echonet_root(root)
    base = root.parent
    index = echonet.index_echonet(root, opts.tracing_rows)
    if strict and index.problems:
        raise index.problems[0]
    bad = [_bad_case(e, base) for e in index.problems]
    notes = _echonet_notes(index)
    inputs = [root / "FileList.csv", root / "VolumeTracings.csv"] + [e.video_path for e in index.entries]
    total = len(inputs) + len(index.entries)
    report = progress or (lambda done, total: None)
    options = asdict(opts)
    hashes, digest, dataset_dir, existing = _up_to_date("echonet", inputs, total, report, options, base, out,
                                                        strict, start)
    if existing is not None:
        return existing

    counts = dict.fromkeys(SPLITS, 0)
    tracings_path = root / "VolumeTracings.csv"
    with _remove_created_dirs_on_error(Path(out)), atomic_dir(dataset_dir) as tmp:
        with _split_writers(tmp, opts.frames, opts.size) as writers:
            for k, entry in enumerate(index.entries, start=1):
                try:
                    case = echonet.load_echonet_case(entry)
                    images, masks, labeled, row = _echonet_clip(case, opts, tracings_path)
                except DataError as e:
                    if strict:
                        raise
                    bad.append(_bad_case(e, base))
                else:
                    row["source_sha256"] = hashes[entry.video_path]
                    writers[entry.info.split].add(images, masks, labeled, row)
                    counts[entry.info.split] += 1
                report(len(inputs) + k, total)
        _write_store_json(tmp, "echonet", root.name, options, digest, counts, bad, index.untraced, notes,
                          phantom=is_phantom_root(root),
                          extra={"orphan_tracings": index.orphan_tracings,
                                 "skipped_tracing_rows": index.skipped_rows})
    return PrepareSummary(
        dataset="echonet",
        out_dir=dataset_dir,
        counts=counts,
        bad_cases=bad,
        untraced=len(index.untraced),
        notes=notes,
        elapsed_s=time.perf_counter() - start,
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
