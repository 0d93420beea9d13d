"""Reader for the public CAMUS NIfTI release (``CAMUS_public``), datasets.md §1.

Layout::

    CAMUS_public/
      database_nifti/patientNNNN/Info_{2CH,4CH}.cfg
      database_nifti/patientNNNN/patientNNNN_{2CH,4CH}_half_sequence{,_gt}.nii.gz
      database_split/subgroup_{training,validation,testing}.txt

nibabel returns the half sequence as (X=cols, Y=rows, T); this module hands out (T, H, W) arrays and the
pixel spacing in (row, col) = (sy, sx) order. Each view of a patient is one case (``patient0001_4CH``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from gdkvm.data.cfg import CamusInfo, parse_cfg
from gdkvm.errors import DataError

CAMUS_DIRNAME = "CAMUS_public"
VIEWS: tuple[str, ...] = ("2CH", "4CH")
LABEL_NAMES = {0: "background", 1: "lv_endocardium", 2: "lv_myocardium", 3: "left_atrium"}
LV_LABEL = 1
SPLIT_FILES = {
    "train": "subgroup_training.txt",
    "val": "subgroup_validation.txt",
    "test": "subgroup_testing.txt",
}
_PATIENT_RE = re.compile(r"^patient(\d+)$")

LabelSet = Literal["lv", "all"]
LABEL_SETS: tuple[str, ...] = get_args(LabelSet)


def is_camus_folder(folder: Path) -> bool:
    """True when ``folder`` is a CAMUS dataset folder (it holds ``database_nifti/``)."""
    return (folder / "database_nifti").is_dir()


def find_camus_root(root: str | Path, *, search_below: bool = False) -> Path:
    """The CAMUS dataset folder ``root`` (absolute, resolved): the folder holding ``database_nifti/``.

    With ``search_below`` a single CAMUS folder up to two levels below ``root`` is taken when ``root`` is
    not one. Otherwise (or when none or several are found) a one-line :class:`DataError` says what was
    expected (see :func:`gdkvm.data.prepare_toolkit.find_dataset_folder`).
    """
    from gdkvm.data.prepare_toolkit import find_dataset_folder

    return find_dataset_folder(root, is_dataset=is_camus_folder, dataset="CAMUS",
                               expected="database_nifti/", usual_name=CAMUS_DIRNAME,
                               search_below=search_below)


def patient_number(name: str) -> int:
    """``'patient0042'`` -> 42."""
    match = _PATIENT_RE.match(name)
    if match is None:
        raise ValueError(f"not a CAMUS patient name: {name!r}")
    return int(match.group(1))


def list_patients(root: Path) -> list[str]:
    """Patient folder names under ``root/database_nifti``, sorted by patient number."""
    nifti = Path(root) / "database_nifti"
    if not nifti.is_dir():
        raise DataError(nifti, "folder not found")
    names = [p.name for p in nifti.iterdir() if p.is_dir() and _PATIENT_RE.match(p.name)]
    if not names:
        raise DataError(nifti, "no patientNNNN folders")
    return sorted(names, key=patient_number)


def read_official_split(root: Path) -> dict[str, list[str]]:
    """The official patient split from ``database_split/subgroup_*.txt`` as {train, val, test} lists.

    A patient listed twice (in one file or across files) is an error.
    """
    split_dir = Path(root) / "database_split"
    splits: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for split, filename in SPLIT_FILES.items():
        path = split_dir / filename
        if not path.is_file():
            raise DataError(path, "split file not found")
        names = []
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            name = raw.strip()
            if not name:
                continue
            if not _PATIENT_RE.match(name):
                raise DataError(path, f"line {number}: not a patient name: {name[:40]!r}")
            if name in seen:
                raise DataError(path, f"line {number}: {name} already listed in {seen[name]}")
            seen[name] = filename
            names.append(name)
        splits[split] = sorted(names, key=patient_number)
    return splits


def memsam_split(patients: list[str]) -> dict[str, list[str]]:
    """MemSAM's sequential 70/10/20 split by patient number (500 patients: 1-350 / 351-400 / 401-500)."""
    ordered = sorted(patients, key=patient_number)
    n = len(ordered)
    n_train = n * 7 // 10
    n_val = n // 10
    return {
        "train": ordered[:n_train],
        "val": ordered[n_train : n_train + n_val],
        "test": ordered[n_train + n_val :],
    }


@dataclass(frozen=True)
class CamusFiles:
    """The three files one CAMUS case (patient + view) is read from."""

    cfg: Path
    image: Path
    gt: Path


def case_files(root: Path, patient: str, view: str) -> CamusFiles:
    """Paths of the cfg, half-sequence image and half-sequence GT of one case (not checked)."""
    folder = Path(root) / "database_nifti" / patient
    return CamusFiles(
        cfg=folder / f"Info_{view}.cfg",
        image=folder / f"{patient}_{view}_half_sequence.nii.gz",
        gt=folder / f"{patient}_{view}_half_sequence_gt.nii.gz",
    )


def _load_nifti(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """The raw array of a NIfTI file and its in-plane spacing (sy, sx) in mm (header zooms are (sx, sy, ...)).

    A missing, unreadable or truncated file, or an invalid spacing, raises :class:`DataError`.
    """
    import nibabel as nib

    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
        zooms = tuple(float(z) for z in image.header.get_zooms())
    except Exception as e:  # nibabel, gzip and zlib raise many types for corrupt files
        detail = " ".join(str(e).split())[:120]
        raise DataError(path, f"cannot read NIfTI ({type(e).__name__}: {detail})") from None
    if len(zooms) < 2 or not all(np.isfinite(zooms[:2])) or min(zooms[:2]) <= 0:
        raise DataError(path, f"invalid pixel spacing {zooms[:2]}")
    return data, (zooms[1], zooms[0])


def read_nifti_sequence(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """Load a half-sequence NIfTI as a (T, H, W) array plus the pixel spacing (sy, sx) in mm.

    nibabel stores (X=cols, Y=rows, T) and ``get_zooms()`` gives (sx, sy, ...); a trailing
    singleton 4th axis is dropped. Unreadable or truncated files raise :class:`DataError`.
    """
    data, spacing = _load_nifti(path)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(path, f"expected a 3-D (X, Y, T) volume, got shape {tuple(data.shape)}")
    return np.ascontiguousarray(data.transpose(2, 1, 0)), spacing


def phase_gt_path(root: Path, patient: str, view: str, phase: str) -> Path:
    """``patientXXXX_<view>_<ED|ES>_gt.nii.gz``: the single-frame GT the official CAMUS EF script reads."""
    return Path(root) / "database_nifti" / patient / f"{patient}_{view}_{phase}_gt.nii.gz"


def read_phase_gt(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """Load a single-frame ED/ES GT NIfTI as an (H, W) label map plus its spacing (sy, sx) in mm.

    Stored as (X, Y) or (X, Y, 1); problems raise :class:`DataError` naming the file.
    """
    data, spacing = _load_nifti(path)
    while data.ndim > 2 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 2:
        raise DataError(path, f"expected a 2-D (X, Y) frame, got shape {tuple(data.shape)}")
    return _to_label_map(path, np.ascontiguousarray(data.T)), spacing


def _to_uint8_image(path: Path, data: np.ndarray) -> np.ndarray:
    if data.dtype == np.uint8:
        return data
    values = data.astype(np.float64)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 255:
        raise DataError(path, f"image values outside 0..255 (dtype {data.dtype})")
    return np.rint(values).astype(np.uint8)


def _to_label_map(path: Path, data: np.ndarray) -> np.ndarray:
    values = np.unique(data)
    bad = [v for v in values.tolist() if v not in LABEL_NAMES]
    if bad:
        raise DataError(path, f"unexpected label values {bad[:5]} (valid: 0, 1, 2, 3)")
    return data.astype(np.uint8)


@dataclass(frozen=True)
class CamusCase:
    """One CAMUS view, oriented ED -> ES.

    Attributes:
        images: (T, H, W) uint8, frame 0 nearest to ED.
        labels: (T, H, W) uint8 label map (0 bg, 1 LV endocardium, 2 myocardium, 3 left atrium).
        ed_index, es_index: 0-based frames of ED and ES in the oriented arrays (ed_index < es_index).
        reversed: True when the file ran ES -> ED and was flipped along time; oriented frame ``i`` is
            then file frame ``T - 1 - i`` (see :meth:`source_index`).
        spacing: (sy, sx) mm per pixel (row, col).
    """

    case_id: str
    patient: str
    view: str
    images: np.ndarray
    labels: np.ndarray
    ed_index: int
    es_index: int
    reversed: bool
    spacing: tuple[float, float]
    info: CamusInfo
    files: CamusFiles

    @property
    def n_frames(self) -> int:
        return int(self.images.shape[0])

    def source_index(self, oriented: np.ndarray | int) -> np.ndarray:
        """Map oriented frame indices back to frame indices in the NIfTI file."""
        idx = np.asarray(oriented, dtype=np.int64)
        return (self.n_frames - 1 - idx) if self.reversed else idx


def load_camus_case(root: Path, patient: str, view: str) -> CamusCase:
    """Read one case (patient + view), check it, and orient it ED -> ES.

    Checks: the cfg parses, both NIfTI files read, image and GT shapes (and spacings) agree,
    the frame count equals ``NbFrame``, GT values are valid labels. Any problem raises
    :class:`DataError` naming the offending file.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown CAMUS view {view!r}; valid: {', '.join(VIEWS)}")
    files = case_files(root, patient, view)
    folder = files.cfg.parent
    if not folder.is_dir():
        raise DataError(folder, "patient folder not found")
    info = parse_cfg(files.cfg)
    raw_images, spacing = read_nifti_sequence(files.image)
    raw_labels, gt_spacing = read_nifti_sequence(files.gt)
    if raw_images.shape != raw_labels.shape:
        raise DataError(
            files.gt, f"shape (T, H, W) {raw_labels.shape} does not match image {raw_images.shape}"
        )
    if not np.allclose(spacing, gt_spacing, rtol=1e-4, atol=1e-6):
        raise DataError(files.gt, f"spacing {gt_spacing} does not match image spacing {spacing}")
    if raw_images.shape[0] != info.nb_frame:
        raise DataError(
            files.image, f"{raw_images.shape[0]} frames but NbFrame={info.nb_frame} in {files.cfg.name}"
        )
    images = _to_uint8_image(files.image, raw_images)
    labels = _to_label_map(files.gt, raw_labels)
    ed, es = info.ed - 1, info.es - 1
    flipped = ed > es
    if flipped:
        images = np.ascontiguousarray(images[::-1])
        labels = np.ascontiguousarray(labels[::-1])
        last = info.nb_frame - 1
        ed, es = last - ed, last - es
    return CamusCase(
        case_id=f"{patient}_{view}",
        patient=patient,
        view=view,
        images=images,
        labels=labels,
        ed_index=ed,
        es_index=es,
        reversed=flipped,
        spacing=spacing,
        info=info,
        files=files,
    )


def select_labels(labels: np.ndarray, label_set: LabelSet) -> np.ndarray:
    """``'lv'``: binary LV endocardium mask {0, 1}; ``'all'``: the label map unchanged {0..3}."""
    if label_set == "lv":
        return (labels == LV_LABEL).astype(np.uint8)
    if label_set == "all":
        return labels.astype(np.uint8)
    raise ValueError(f"unknown label set {label_set!r}; valid: lv, all")
