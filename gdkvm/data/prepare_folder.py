"""A generic folder of echo recordings and LV masks -> prepared store (:func:`prepare_folder`).

Layout of ``root`` (docs/store.md, "Bring your own data")::

    root/videos/<case>.{avi,mp4,nii.gz,nii}     one recording per case
    root/masks/<case>/<frame>.png               0 = background, 1 = LV; any frames, 0-based numbers
    root/masks/<case>.nii.gz (or .nii)          or a label map per frame (all-background frames = unlabelled)
    root/splits.csv                             optional: case,split (train/val/test)
    root/meta.csv                               optional: case,fps,spacing_row_mm,spacing_col_mm,view,ef

A clip runs from the first to the last labelled frame of a case, ``frames`` frames sampled by the
``sampling`` rule as the CAMUS preparer does between ED and ES; clip positions that land on a labelled
frame carry its mask (the first and last always do). The end with the larger LV area is taken as ED.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gdkvm.data.prepare_toolkit import (
    bad_case,
    check_common_options,
    check_up_to_date,
    first_names,
    format_indices,
    is_phantom_root,
    relative_path,
    resize_frame,
)
from gdkvm.data.sampling import SamplingRule, sample_indices
from gdkvm.data.store import (
    SPLITS,
    BadCase,
    PrepareSummary,
    Progress,
    StoreClip,
    write_store,
)
from gdkvm.errors import ConfigError, DataError

__all__ = ["FOLDER_VIDEO_SUFFIXES", "META_COLUMNS", "FolderPrepareOptions", "prepare_folder"]

FOLDER_VIDEO_SUFFIXES: tuple[str, ...] = (".avi", ".mp4", ".nii.gz", ".nii")
MASK_NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
META_COLUMNS: tuple[str, ...] = ("fps", "spacing_row_mm", "spacing_col_mm", "view", "ef")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
FOLDER_VOLUME_METHODS = {"mm": "single-plane-disks-mL", "px": "single-plane-disks-px3"}
_FRAME_NAME = re.compile(r"\d+")


@dataclass(frozen=True)
class FolderPrepareOptions:
    """How clips of a generic folder are built (all of it is recorded in store.json). ``seed`` drives
    the split by case when the folder has no splits.csv; ``name`` is the dataset folder under ``out``."""

    size: int = 128
    frames: int = 10
    sampling: SamplingRule = "floor"
    seed: int = 0
    name: str = "folder"


@dataclass
class _Case:
    name: str
    videos: list[Path] = field(default_factory=list)
    mask_dirs: list[Path] = field(default_factory=list)
    mask_niftis: list[Path] = field(default_factory=list)
    mask_files: list[Path] = field(default_factory=list)  # the PNGs of mask_dirs[0], or the NIfTI

    @property
    def video(self) -> Path:
        return self.videos[0]


def _strip_suffix(name: str, suffixes: tuple[str, ...]) -> str | None:
    low = name.lower()
    for sfx in suffixes:
        if low.endswith(sfx) and len(name) > len(sfx):
            return name[: -len(sfx)]
    return None


def _list_cases(root: Path) -> tuple[dict[str, _Case], dict[str, DataError], list[str]]:
    """The usable cases under ``root/videos`` and ``root/masks``, the layout problem of each other case, notes."""
    videos_dir, masks_dir = root / "videos", root / "masks"
    if not videos_dir.is_dir():
        raise DataError(videos_dir, "folder not found (expected videos/<case>.{avi,mp4,nii.gz,nii})")
    cases: dict[str, _Case] = {}
    ignored: list[str] = []
    for path in sorted(videos_dir.iterdir()):
        if path.name.startswith("."):
            continue
        name = _strip_suffix(path.name, FOLDER_VIDEO_SUFFIXES) if path.is_file() else None
        if name is None:
            ignored.append(f"videos/{path.name}")
            continue
        cases.setdefault(name, _Case(name)).videos.append(path)
    if masks_dir.is_dir():
        for path in sorted(masks_dir.iterdir()):
            if path.name.startswith("."):
                continue
            if path.is_dir():
                cases.setdefault(path.name, _Case(path.name)).mask_dirs.append(path)
                continue
            name = _strip_suffix(path.name, MASK_NIFTI_SUFFIXES)
            if name is None:
                ignored.append(f"masks/{path.name}")
                continue
            cases.setdefault(name, _Case(name)).mask_niftis.append(path)
    problems: dict[str, DataError] = {}
    good: dict[str, _Case] = {}
    for name in sorted(cases):
        case = cases[name]
        masks = case.mask_dirs + case.mask_niftis
        if not case.videos:
            problems[name] = DataError(masks[0], f"masks without a video (expected videos/{name}.avi, .mp4, "
                                                 ".nii.gz or .nii)")
        elif len(case.videos) > 1:
            problems[name] = DataError(case.videos[1], f"case {name!r} has {len(case.videos)} videos: "
                                       + ", ".join(p.name for p in case.videos))
        elif not masks:
            problems[name] = DataError(case.video, f"no masks (expected masks/{name}/<frame>.png or "
                                                   f"masks/{name}.nii.gz)")
        elif len(masks) > 1:
            problems[name] = DataError(masks[1], f"case {name!r} has {len(masks)} mask sources: "
                                       + ", ".join(p.name for p in masks))
        else:
            if case.mask_dirs:
                case.mask_files = sorted(
                    p for p in case.mask_dirs[0].iterdir() if p.is_file() and not p.name.startswith(".")
                )
            else:
                case.mask_files = list(case.mask_niftis)
            good[name] = case
    notes = []
    if ignored:
        notes.append(f"{len(ignored)} file(s) with an unsupported name ignored: {first_names(ignored)}")
    return good, problems, notes


# ----------------------------------------------------------------------------------------------
# splits.csv and meta.csv


def _read_csv(path: Path, required: tuple[str, ...], optional: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a small CSV as dicts of stripped strings; a one-line DataError for a malformed file."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(path, f"unreadable CSV ({type(e).__name__})") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)} (header: {','.join(header) or 'empty'})")
    unknown = [c for c in header if c not in required + optional]
    if unknown:
        raise DataError(path, f"unknown column(s) {', '.join(unknown)}; valid: {', '.join(required + optional)}")
    return rows


def _read_splits(path: Path) -> dict[str, str]:
    splits: dict[str, str] = {}
    for line, row in enumerate(_read_csv(path, ("case", "split"), ()), start=2):
        case, split = row["case"], row["split"].lower()
        if not case:
            raise DataError(path, f"line {line}: empty case name")
        if split not in SPLITS:
            raise DataError(path, f"line {line}: split {row['split']!r} for case {case!r} is not one of "
                                  f"{', '.join(SPLITS)}")
        if case in splits:
            raise DataError(path, f"line {line}: case {case!r} listed twice")
        splits[case] = split
    return splits


def _read_meta(path: Path) -> dict[str, dict[str, Any]]:
    meta: dict[str, dict[str, Any]] = {}
    for line, row in enumerate(_read_csv(path, ("case",), META_COLUMNS), start=2):
        case = row["case"]
        if not case:
            raise DataError(path, f"line {line}: empty case name")
        if case in meta:
            raise DataError(path, f"line {line}: case {case!r} listed twice")
        values: dict[str, Any] = {}
        for column in ("fps", "spacing_row_mm", "spacing_col_mm", "ef"):
            text = row.get(column, "")
            if not text:
                continue
            try:
                value = float(text)
            except ValueError:
                raise DataError(path, f"line {line}: {column} {text!r} is not a number") from None
            low = 0.0 if column == "ef" else 1e-12
            if not (math.isfinite(value) and low <= value and (column != "ef" or value <= 100.0)):
                bound = "in 0..100" if column == "ef" else "positive"
                raise DataError(path, f"line {line}: {column} {text!r} must be {bound}")
            values[column] = value
        if ("spacing_row_mm" in values) != ("spacing_col_mm" in values):
            raise DataError(path, f"line {line}: give both spacing_row_mm and spacing_col_mm, or neither")
        values["view"] = row.get("view", "")
        meta[case] = values
    return meta


def seeded_split(cases: list[str], seed: int) -> dict[str, str]:
    """Split case names 80/10/10 (train/val/test) by a seeded permutation; at least one case in each
    split from 3 cases on, all in train below that. The same names and seed give the same split."""
    names = sorted(cases)
    n = len(names)
    if n < 3:
        return dict.fromkeys(names, "train")
    n_val = max(1, int(math.floor(SPLIT_FRACTIONS[1] * n + 0.5)))
    n_test = max(1, int(math.floor(SPLIT_FRACTIONS[2] * n + 0.5)))
    order = np.random.default_rng(seed).permutation(n)
    out = {}
    for rank, k in enumerate(order.tolist()):
        out[names[k]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return out


# ----------------------------------------------------------------------------------------------
# masks


def _check_labels(path: Path, labels: np.ndarray, where: str = "") -> None:
    if np.issubdtype(labels.dtype, np.floating) and not np.isfinite(labels).all():
        raise DataError(path, f"{where}NaN or infinite values in the mask")
    values = np.unique(labels)
    extra = [v for v in values.tolist() if v not in (0, 1)]
    if extra:
        shown = ", ".join(f"{v:g}" for v in extra[:5]) + (" ..." if len(extra) > 5 else "")
        raise DataError(path, f"{where}labels other than 0/1: {shown} (0 = background, 1 = LV)")


def _read_png_masks(case: _Case, n_frames: int, shape: tuple[int, int]) -> dict[int, tuple[np.ndarray, Path]]:
    """{frame: (mask (H, W) uint8, file)} from ``masks/<case>/<frame>.png``."""
    import cv2

    out: dict[int, tuple[np.ndarray, Path]] = {}
    for path in case.mask_files:
        stem = path.name[:-4] if path.name.lower().endswith(".png") else None
        if stem is None or not _FRAME_NAME.fullmatch(stem):
            raise DataError(path, "not a mask file name: expected <frame>.png with a 0-based frame number")
        frame = int(stem)
        if frame >= n_frames:
            raise DataError(path, f"frame {frame} is past the end of the video ({n_frames} frames, 0..{n_frames - 1})")
        if frame in out:
            raise DataError(path, f"frame {frame} has two mask files ({out[frame][1].name}, {path.name})")
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if mask is None:
            raise DataError(path, "unreadable PNG")
        if mask.ndim == 3:
            colour = mask[..., :3]
            if not (colour == colour[..., :1]).all():
                raise DataError(path, "colour mask: expected a single-channel label image (0 = background, 1 = LV)")
            mask = colour[..., 0]
        if mask.shape != shape:
            raise DataError(path, f"mask is {mask.shape[0]}x{mask.shape[1]} px, the video {shape[0]}x{shape[1]}")
        _check_labels(path, mask)
        out[frame] = (mask.astype(np.uint8), path)
    return out


def _read_nifti_masks(path: Path, n_frames: int, shape: tuple[int, int]) -> dict[int, tuple[np.ndarray, Path]]:
    """{frame: (mask, file)} for the frames of ``masks/<case>.nii.gz`` that hold any LV (X, Y, T layout)."""
    import nibabel as nib

    try:
        data = np.asarray(nib.load(str(path)).dataobj)
    except Exception as e:  # nibabel raises several types for truncated/corrupt files
        raise DataError(path, f"unreadable NIfTI ({type(e).__name__})") from None
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise DataError(path, f"expected an (X, Y, T) label map, got shape {data.shape}")
    labels = np.transpose(data, (2, 1, 0))
    if labels.shape[1:] != shape:
        raise DataError(path, f"mask is {labels.shape[1]}x{labels.shape[2]} px, the video {shape[0]}x{shape[1]}")
    if labels.shape[0] > n_frames:
        raise DataError(path, f"{labels.shape[0]} mask frames: past the end of the video ({n_frames} frames)")
    if labels.shape[0] < n_frames:
        raise DataError(path, f"{labels.shape[0]} mask frames, the video has {n_frames}")
    _check_labels(path, labels)
    labels = labels.astype(np.uint8)
    return {t: (labels[t], path) for t in range(n_frames) if labels[t].any()}


def _mask_root(case: _Case) -> Path:
    return case.mask_dirs[0] if case.mask_dirs else case.mask_niftis[0]


# ----------------------------------------------------------------------------------------------
# one case


def _folder_clip(
    case: _Case, opts: FolderPrepareOptions, meta: dict[str, Any], source: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Read, check, sample and resize one case -> (images, masks, labeled, manifest row)."""
    from gdkvm.metrics.clinical import safe_single_plane_ef
    from gdkvm.predict.inputs import read_recording

    try:
        rec = read_recording(case.video, default_fps=math.nan)
    except DataError:
        raise
    except Exception as e:  # a decoder failing in an unexpected way is still an unreadable file
        raise DataError(case.video, f"unreadable video ({type(e).__name__})") from None
    n_frames, height, width = rec.frames.shape
    if case.mask_dirs:
        found = _read_png_masks(case, n_frames, (height, width))
    else:
        found = _read_nifti_masks(case.mask_niftis[0], n_frames, (height, width))
    for frame, (mask, path) in sorted(found.items()):
        if not mask.any():
            raise DataError(path, f"empty LV mask at frame {frame} (no pixel is 1)")
    if len(found) < 2:
        raise DataError(_mask_root(case), f"{len(found)} labelled frame(s); at least 2 are needed (the clip runs "
                                          "from the first to the last labelled frame)")
    first, last = min(found), max(found)
    indices = sample_indices(first, last, opts.frames, opts.sampling)
    size = opts.size
    images = np.stack([resize_frame(rec.frames[i], size, nearest=False) for i in indices])
    masks = np.zeros((opts.frames, size, size), dtype=np.uint8)
    labeled = np.zeros(opts.frames, dtype=bool)
    for pos, frame in enumerate(indices.tolist()):
        if frame in found:
            mask, path = found[frame]
            masks[pos] = resize_frame(mask, size, nearest=True)
            labeled[pos] = True
            if not masks[pos].any():
                raise DataError(path, f"LV mask at frame {frame} vanishes when resized to {size}")
    first_mask, last_mask = found[first][0].astype(bool), found[last][0].astype(bool)
    ed_first = int(first_mask.sum()) >= int(last_mask.sum())
    ed_frame, es_frame = (first, last) if ed_first else (last, first)
    if "spacing_row_mm" in meta:
        spacing: tuple[float, float] | None = (meta["spacing_row_mm"], meta["spacing_col_mm"])
    elif rec.spacing is not None and all(math.isfinite(s) and s > 0 for s in rec.spacing):
        spacing = rec.spacing
    else:
        spacing = None
    unit = "mm" if spacing is not None else "px"
    ed_mask, es_mask = (first_mask, last_mask) if ed_first else (last_mask, first_mask)
    volumes = safe_single_plane_ef(ed_mask, es_mask, spacing)
    fps = meta.get("fps", rec.fps)
    row = {
        "case_id": case.name,
        "patient": case.name,
        "view": meta.get("view", ""),
        "source": source,
        "frame_indices": format_indices(indices),
        "n_source_frames": n_frames,
        "ed_index": ed_frame,
        "es_index": es_frame,
        "phase_first": "ED" if ed_first else "ES",
        "source_height": height,
        "source_width": width,
        "spacing_row_mm": spacing[0] * height / size if spacing else math.nan,
        "spacing_col_mm": spacing[1] * width / size if spacing else math.nan,
        "spacing_unit": unit,
        "ef": meta.get("ef", math.nan),
        "edv": math.nan,
        "esv": math.nan,
        "image_quality": "",
        "fps": fps if fps is not None and math.isfinite(fps) else math.nan,
        "gt_edv": volumes.edv,
        "gt_esv": volumes.esv,
        "gt_ef": volumes.ef,
        "gt_volume_method": FOLDER_VOLUME_METHODS[unit],
    }
    return images, masks, labeled, row


def _check_folder_options(opts: FolderPrepareOptions) -> None:
    check_common_options(opts.size, opts.sampling, opts.frames)
    if isinstance(opts.seed, bool) or not isinstance(opts.seed, int):
        raise ConfigError(f"seed must be an integer, got {opts.seed!r}")
    if not isinstance(opts.name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", opts.name):
        raise ConfigError(f"dataset name must be a plain folder name (letters, digits, _ . -), got {opts.name!r}")


def _files_digest(hashes: list[str]) -> str:
    return hashlib.sha256(json.dumps(hashes).encode()).hexdigest()


def prepare_folder(
    root: str | Path,
    out: str | Path,
    *,
    size: int = 128,
    frames: int = 10,
    sampling: SamplingRule = "floor",
    seed: int = 0,
    name: str = "folder",
    strict: bool = False,
    progress: Progress | None = None,
) -> PrepareSummary:
    """Build ``out/<name>/{train,val,test}`` from a generic folder of recordings and LV masks.

    See the module docstring for the layout. Splits come from ``root/splits.csv`` when present (cases it
    does not list are ignored, with a note) or else from :func:`seeded_split` over the usable cases.
    ``root/meta.csv`` supplies fps, pixel spacing (mm, source resolution), view and the reference EF;
    without it fps is the video's, spacing the NIfTI header's (pixel units for AVI/MP4).
    Bad cases (mask size differs from the video, labels other than 0/1, a frame number past the end,
    an unreadable file, fewer than 2 labelled frames, ...) are skipped and listed with a one-line
    problem, or raise :class:`DataError` with nothing written (``strict=True``). store.json records the
    resolved source root (``source_root``) and the SHA-256 of every input file (``input_files``).
    """
    start = time.perf_counter()
    opts = FolderPrepareOptions(size=size, frames=frames, sampling=sampling, seed=seed, name=name)
    _check_folder_options(opts)
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(root, "folder not found")
    cases, layout, notes = _list_cases(root)
    problems = list(layout.values())
    splits_path, meta_path = root / "splits.csv", root / "meta.csv"
    if splits_path.is_file():
        listed = _read_splits(splits_path)
        split_of = {c: s for c, s in listed.items() if c in cases}
        problems += [DataError(splits_path, f"case {c!r} is listed but videos/ has no such case")
                     for c in listed if c not in cases and c not in layout]
        unlisted = sorted(set(cases) - set(listed))
        if unlisted:
            notes.append(f"{len(unlisted)} case(s) not in splits.csv ignored: {first_names(unlisted)}")
        split_source = "splits.csv"
    else:
        split_of = seeded_split(list(cases), opts.seed)
        if 0 < len(split_of) < 3:
            notes.append(f"only {len(split_of)} usable case(s): all in train (val and test need 3 cases or more)")
        split_source = f"seeded 80/10/10, seed {opts.seed}"
    meta = _read_meta(meta_path) if meta_path.is_file() else {}
    unknown_meta = sorted(set(meta) - set(cases) - set(layout))
    if unknown_meta:
        notes.append(f"{len(unknown_meta)} meta.csv row(s) for no case ignored: {first_names(unknown_meta)}")
    if strict and problems:
        raise problems[0]
    jobs = [(split_of[c], cases[c]) for c in sorted(split_of)]
    inputs = [p for p in (splits_path, meta_path) if p.is_file()]
    inputs += [f for _, case in jobs for f in (case.video, *case.mask_files)]
    total = len(inputs) + len(jobs)
    report = progress or (lambda done, total: None)
    options = asdict(opts)
    hashes, digest, _, existing = check_up_to_date(opts.name, inputs, total, report, options, root, out, strict,
                                                   start, source_root=root)
    if existing is not None:
        return existing

    bad: list[BadCase] = [bad_case(e, root) for e in problems]

    def clips() -> Iterator[StoreClip]:
        for k, (split, case) in enumerate(jobs, start=1):
            try:
                images, masks, labeled, row = _folder_clip(case, opts, meta.get(case.name, {}), opts.name)
            except DataError as e:
                if strict:
                    raise
                bad.append(bad_case(e, root))
            else:
                mask_hash = _files_digest([hashes[f] for f in case.mask_files])
                row["source_sha256"] = f"{hashes[case.video]};{mask_hash}"
                yield StoreClip(split, images, masks, labeled, row)
            report(len(inputs) + k, total)

    summary = write_store(
        out, opts.name, clips(), frames=opts.frames, size=opts.size, source=root.name, options=options,
        inputs_sha256=digest, bad_cases=bad, notes=notes, phantom=is_phantom_root(root), source_root=root,
        extra={
            "split_source": split_source,
            "input_files": {relative_path(p, root): h for p, h in sorted(hashes.items())},
        },
    )
    summary.elapsed_s = time.perf_counter() - start
    return summary
