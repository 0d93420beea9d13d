"""CAMUS -> prepared store (:func:`prepare_camus`); the store format is in :mod:`gdkvm.data.store`."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from gdkvm.data import camus
from gdkvm.data.prepare_echonet import Protocol, protocol_note, resolve_protocol
from gdkvm.data.prepare_toolkit import (
    bad_case,
    check_common_options,
    check_up_to_date,
    first_names,
    format_indices,
    is_phantom_root,
    optional_float,
    resize_frame,
)
from gdkvm.data.sampling import SamplingRule, sample_indices
from gdkvm.data.store import (
    CAMUS_VOLUME_METHOD,
    SPLITS,
    BadCase,
    PrepareSummary,
    Progress,
    StoreClip,
    write_store,
)
from gdkvm.errors import DataError, unknown_name

__all__ = ["CAMUS_DEFAULTS", "CAMUS_PROTOCOLS", "CAMUS_SPLITS", "CamusPrepareOptions", "CamusSplit", "prepare_camus"]

#: How CAMUS patients are split: official (database_split/*.txt) or memsam (sequential 70/10/20).
CamusSplit = Literal["official", "memsam"]
CAMUS_SPLITS: tuple[str, ...] = get_args(CamusSplit)

#: ``gdkvm``: the GDKVM re-release's CAMUS PNGs: ED -> ES with ``rint`` sampling, 256 px, LV only, the
#: official patient split. ``memsam``: MemSAM (``utils/preprocess_camus.py``, ``load_video_and_mask_file``):
#: ``floor`` sampling, 256 px, LV only, the sequential 70/10/20 patient split. CAMUS frames are grey
#: already. Not reproduced: MemSAM resamples the *images* nearest (SimpleITK); here images are always
#: resized bilinear (the re-release uses PIL bilinear, here OpenCV bilinear).
CAMUS_PROTOCOLS: dict[str, dict[str, Any]] = {
    "gdkvm": {"sampling": "rint", "size": 256, "frames": 10, "labels": "lv", "split": "official"},
    "memsam": {"sampling": "floor", "size": 256, "frames": 10, "labels": "lv", "split": "memsam"},
}

#: Without a protocol.
CAMUS_DEFAULTS: dict[str, Any] = {"sampling": "floor", "size": 256, "frames": 10, "labels": "lv",
                                  "split": "official"}


@dataclass(frozen=True)
class CamusPrepareOptions:
    """How CAMUS clips are built (all of it is recorded in store.json); ``protocol``: the
    :data:`CAMUS_PROTOCOLS` entry the options came from, or None."""

    size: int = 256
    labels: camus.LabelSet = "lv"
    sampling: SamplingRule = "floor"
    split: CamusSplit = "official"
    frames: int = 10
    protocol: Protocol | None = None


def _check_camus_options(opts: CamusPrepareOptions) -> None:
    check_common_options(opts.size, opts.sampling, opts.frames)
    if opts.labels not in camus.LABEL_SETS:
        raise unknown_name("label set", str(opts.labels), camus.LABEL_SETS)
    if opts.split not in CAMUS_SPLITS:
        raise unknown_name("CAMUS split", str(opts.split), CAMUS_SPLITS)


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
    images = np.stack([resize_frame(case.images[i], size, nearest=False) for i in oriented])
    masks = np.stack([resize_frame(m, size, nearest=True) for m in masks])
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
        "frame_indices": format_indices(source),
        "n_source_frames": case.n_frames,
        "ed_index": info.ed - 1,
        "es_index": info.es - 1,
        "phase_first": "ED",
        "source_height": height,
        "source_width": width,
        "spacing_row_mm": case.spacing[0] * height / size,
        "spacing_col_mm": case.spacing[1] * width / size,
        "spacing_unit": "mm",
        "ef": optional_float(info.ef),
        "edv": optional_float(info.edv),
        "esv": optional_float(info.esv),
        "image_quality": info.image_quality or "",
        "fps": optional_float(info.frame_rate),
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
            notes.append(f"{len(cases)} case(s): {text}: {first_names(cases)}")
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
    protocol: Protocol | None = None,
    size: int | None = None,
    labels: camus.LabelSet | None = None,
    sampling: SamplingRule | None = None,
    split: CamusSplit | None = None,
    frames: int | None = None,
    strict: bool = False,
    progress: Progress | None = None,
    search_below: bool = False,
) -> PrepareSummary:
    """Build ``out/camus/{train,val,test}`` from a CAMUS NIfTI release.

    Each case (patient + view) is oriented ED -> ES, ``frames`` frames are sampled from ED to ES
    inclusive (``sampling`` rule), images are resized bilinear and masks nearest to ``size`` x ``size``;
    every clip position is labelled. Spacing is carried as (sy, sx) * old_size / size.

    ``root`` is the CAMUS dataset folder (the one holding ``database_nifti/``, e.g. ``CAMUS_public``);
    with ``search_below`` a single such folder up to two levels below it is taken instead
    (:func:`~gdkvm.data.prepare_toolkit.find_dataset_folder`). The folder read is recorded, absolute and
    resolved, as store.json ``source_root``. Bad cases are skipped and listed
    (``strict=False``) or raise :class:`DataError` with nothing written (``strict=True``).
    ``progress(done, total)`` is called as inputs are hashed and cases are written.

    ``protocol`` (``'gdkvm'`` or ``'memsam'``, :data:`CAMUS_PROTOCOLS`) sets sampling, size, frames,
    labels and split as that source does; an explicit (not None) option overrides it. Without a protocol
    unset options take :data:`CAMUS_DEFAULTS`.
    """
    start = time.perf_counter()
    values, overridden = resolve_protocol(
        protocol, CAMUS_PROTOCOLS, CAMUS_DEFAULTS,
        {"size": size, "labels": labels, "sampling": sampling, "split": split, "frames": frames},
    )
    opts = CamusPrepareOptions(**values, protocol=protocol)
    _check_camus_options(opts)
    root = camus.find_camus_root(root, search_below=search_below)
    base = root.parent
    jobs, global_files, notes, missing = _camus_jobs(root, opts.split)
    notes[:0] = protocol_note(protocol, CAMUS_PROTOCOLS, values, overridden)
    if strict and missing:
        raise missing[0]
    files_of = {(p, v): camus.case_files(root, p, v) for _, p in jobs for v in camus.VIEWS}
    inputs = list(global_files) + [f for cf in files_of.values() for f in (cf.cfg, cf.image, cf.gt)]
    total = len(inputs) + len(files_of)
    report = progress or (lambda done, total: None)
    options = asdict(opts)
    hashes, digest, _, existing = check_up_to_date("camus", inputs, total, report, options, base, out,
                                                   strict, start, source_root=root)
    if existing is not None:
        return existing

    bad: list[BadCase] = [bad_case(e, base) for e in missing]

    def clips() -> Iterator[StoreClip]:
        done = len(inputs)
        mask_sources: list[tuple[str, str]] = []
        for s, patient in jobs:
            cases: dict[str, camus.CamusCase] = {}
            built = []
            for view in camus.VIEWS:
                try:
                    case = camus.load_camus_case(root, patient, view)
                    built.append(_camus_clip(case, opts))
                    cases[view] = case
                    notes.extend(f"{patient}/Info_{view}.cfg: {w}" for w in case.info.warnings)
                except DataError as e:
                    if strict:
                        raise
                    bad.append(bad_case(e, base))
                done += 1
                report(done, total)
            volumes, sources = _camus_biplane(root, cases)
            mask_sources += sources
            for images, masks, labeled, row in built:
                cf = files_of[(patient, row["view"])]
                row.update(volumes, source_sha256=f"{hashes[cf.image]};{hashes[cf.gt]}")
                yield StoreClip(s, images, masks, labeled, row)
        notes.extend(_reference_source_notes(mask_sources))

    summary = write_store(out, "camus", clips(), frames=opts.frames, size=opts.size, source=root.name,
                          options=options, inputs_sha256=digest, bad_cases=bad, notes=notes,
                          phantom=is_phantom_root(root), source_root=root)
    summary.elapsed_s = time.perf_counter() - start
    return summary

