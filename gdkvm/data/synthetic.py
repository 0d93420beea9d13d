"""The synthetic echo phantom: CAMUS- and EchoNet-Dynamic-format data with exact ground truth.

``write_phantom`` draws ``patients`` hearts (one 3D LV shape model each, see gdkvm/data/phantom/ and
docs/phantom.md) and writes, byte-deterministically for a seed::

    <out>/CAMUS_public/database_nifti/patientNNNN/...     2CH and 4CH half sequences, ED/ES frames, cfg
    <out>/CAMUS_public/database_split/subgroup_*.txt      80/10/10 split
    <out>/CAMUS_public/README_PHANTOM.txt
    <out>/EchoNet-Dynamic/FileList.csv, VolumeTracings.csv, Videos/<FileName>.avi (one video per patient)
    <out>/phantom_truth.json                              exact volumes, EF, ED/ES frames, volume curves

The folder appears atomically (built next to ``out`` and renamed into place).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gdkvm.data.phantom import writers
from gdkvm.data.phantom.difficulty import DEFAULT_DIFFICULTY, get_difficulty
from gdkvm.data.phantom.patient import CAMUS_VIEWS, ECHONET_FPS, ECHONET_SIZE, sample_patient
from gdkvm.data.phantom.render import ViewSetup
from gdkvm.data.phantom.sequences import camus_sequence, echonet_video
from gdkvm.data.phantom.shape import LVShape
from gdkvm.data.phantom.tracing import biplane_volume_ml, disk_volume, long_axis_mm
from gdkvm.errors import ConfigError, DataError, GdkvmError
from gdkvm.utils.atomic import atomic_dir

CAMUS_DIR = "CAMUS_public"
ECHONET_DIR = "EchoNet-Dynamic"
TRUTH_FILE = "phantom_truth.json"
TRUTH_SCHEMA = "gdkvm-phantom-truth/1"
CAMUS_SPLITS = ("training", "validation", "testing")
ECHONET_SPLITS = {"training": "TRAIN", "validation": "VAL", "testing": "TEST"}
MIN_ECHONET_BEATS = 1.8
# The phantom's look: 1 = gdkvm 0.1 (the ``easy`` difficulty today), 2 = the difficulty levels,
# 3 = foreshortened views (the view plane offset from / tilted against the long axis; easy unchanged).
PHANTOM_VERSION = 3
_SPLIT_STREAM = 0  # rng stream of the split; patients use streams 1..N


@dataclass(frozen=True)
class PhantomResult:
    """Where ``write_phantom`` put things."""

    root: Path
    camus_root: Path
    echonet_root: Path
    truth_path: Path
    patients: int


def split_assignment(patients: int, seed: int) -> list[str]:
    """CAMUS split name per patient (index 0 = patient0001): 80/10/10 by a seeded permutation, with at
    least one patient in each split when there are 3 or more."""
    n_val = int(round(0.1 * patients))
    n_test = int(round(0.1 * patients))
    if patients >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(patients)
    names = ["training"] * patients
    for rank, idx in enumerate(order):
        if rank < n_val:
            names[idx] = "validation"
        elif rank < n_val + n_test:
            names[idx] = "testing"
    return names


def _r(x: float, digits: int = 4) -> float:
    return round(float(x), digits)


def _plane_record(shape: LVShape, setup: ViewSetup) -> dict[str, Any]:
    """How the view plane misses the long axis, and the LV length it shows at ED and ES (mm)."""
    anat = setup.anatomy
    return {
        "offset_mm": _r(anat.plane.offset_mm),
        "tilt_deg": _r(anat.plane.tilt_deg),
        "lv_length_mm": [_r(long_axis_mm(shape, anat.omega, m, anat.plane)) for m in (0.0, 1.0)],
    }


def _write_patient(root: Path, seed: int, index: int, echonet_beats: float, split: str, difficulty: str,
                   foreshortening: bool = True) -> dict[str, Any]:
    """Render and write one patient's files under ``root``; return its truth and CSV rows."""
    level = get_difficulty(difficulty)
    spec, rng = sample_patient(seed, index, echonet_beats, level if foreshortening else level.without_foreshortening())
    rng_2ch, rng_4ch, rng_echo = rng.spawn(3)
    name = spec.name
    folder = root / CAMUS_DIR / "database_nifti" / name
    folder.mkdir(parents=True)
    shape = spec.shape
    edv, esv = shape.edv_ml, shape.esv_ml
    ef = 100.0 * (edv - esv) / edv
    views: dict[str, Any] = {}
    for view, view_rng in zip(CAMUS_VIEWS, (rng_2ch, rng_4ch), strict=True):
        seq = camus_sequence(spec, view, view_rng)
        sx, sy = seq.spacing_xy_mm
        stem = f"{name}_{view}"
        # nibabel order (X = cols, Y = rows, T)
        writers.write_nifti(folder / f"{stem}_half_sequence.nii.gz", seq.images.transpose(2, 1, 0), (sx, sy, 1.0))
        writers.write_nifti(folder / f"{stem}_half_sequence_gt.nii.gz", seq.labels.transpose(2, 1, 0),
                            (sx, sy, 1.0))
        for phase, idx in (("ED", seq.ed_index), ("ES", seq.es_index)):
            writers.write_nifti(folder / f"{stem}_{phase}.nii.gz", seq.images[idx].T, (sx, sy))
            writers.write_nifti(folder / f"{stem}_{phase}_gt.nii.gz", seq.labels[idx].T, (sx, sy))
        n = len(seq.images)
        cfg = writers.camus_cfg_text(ed=seq.ed_index + 1, es=seq.es_index + 1, nb_frame=n, sex=spec.sex,
                                     age=spec.age, quality=spec.quality[view], ef=ef, frame_rate=spec.camus_fps)
        (folder / f"Info_{view}.cfg").write_text(cfg)
        views[view] = {
            "ED": seq.ed_index + 1,
            "ES": seq.es_index + 1,
            "NbFrame": n,
            "ed_index": seq.ed_index,
            "es_index": seq.es_index,
            "image_quality": spec.quality[view],
            "spacing_xy_mm": [sx, sy],
            "size_hw": list(seq.images.shape[1:]),
            "volume_ml": [_r(v) for v in seq.volumes_ml],
            "plane": _plane_record(shape, spec.setups[view]),
        }
    planes = {v: spec.setups[v].anatomy.plane for v in CAMUS_VIEWS}
    biplane = [biplane_volume_ml(shape, m, planes["4CH"], planes["2CH"]) for m in (0.0, 1.0)]
    video = echonet_video(spec, rng_echo)
    video_dir = root / ECHONET_DIR / "Videos"
    video_dir.mkdir(parents=True, exist_ok=True)
    writers.write_avi(video_dir / f"{spec.echonet_name}.avi", video.frames, ECHONET_FPS)
    ed_f, es_f = video.traced
    order = (es_f, ed_f) if spec.echonet_es_first else (ed_f, es_f)
    tracing_rows = [
        (f"{spec.echonet_name}.avi", *(float(v) for v in row), frame)
        for frame in order for row in video.tracings[frame]
    ]
    tracing_ef = 100.0 * (1.0 - disk_volume(video.tracings[es_f]) / disk_volume(video.tracings[ed_f]))
    echonet_split = ECHONET_SPLITS[split]
    filelist_row = (spec.echonet_name, _r(ef), _r(esv), _r(edv), ECHONET_SIZE, ECHONET_SIZE, int(ECHONET_FPS),
                    len(video.frames), echonet_split)
    return {
        "name": name,
        "camus": {
            "split": split,
            "EDV": edv,
            "ESV": esv,
            "EF": ef,
            "lv_length_mm": [_r(shape.length(0.0)), _r(shape.length(1.0))],
            "biplane_EDV": biplane[0],
            "biplane_ESV": biplane[1],
            "biplane_EF": 100.0 * (1.0 - biplane[1] / biplane[0]),
            "heart_rate_bpm": spec.cycle.heart_rate_bpm,
            "frame_rate": spec.camus_fps,
            "reversed": spec.camus_reversed,
            "sex": spec.sex,
            "age": spec.age,
            "views": views,
            "echonet": spec.echonet_name,
        },
        "echonet_name": spec.echonet_name,
        "echonet": {
            "patient": name,
            "split": echonet_split,
            "EDV": edv,
            "ESV": esv,
            "EF": ef,
            "heart_rate_bpm": spec.cycle.heart_rate_bpm,
            "fps": ECHONET_FPS,
            "number_of_frames": len(video.frames),
            "image_quality": spec.quality["ECHONET"],
            "ed_frames": video.ed_frames,
            "es_frames": video.es_frames,
            "beats": [{"ed": ed, "es": es} for ed, es in video.beats],
            "traced": {"ed": ed_f, "es": es_f, "es_listed_first": spec.echonet_es_first},
            "tracing_ef": tracing_ef,
            "plane": _plane_record(shape, spec.setups["ECHONET"]),
            "volume_ml": [_r(v) for v in video.volumes_ml],
        },
        "filelist_row": filelist_row,
        "tracing_rows": tracing_rows,
    }


def _write_patient_job(args: tuple[str, int, int, float, str, str, bool]) -> dict[str, Any]:
    root, seed, index, beats, split, difficulty, foreshortening = args
    return _write_patient(Path(root), seed, index, beats, split, difficulty, foreshortening)


def _init_worker() -> None:
    """One OpenCV thread per worker process: the pool already uses the cores."""
    import cv2

    cv2.setNumThreads(1)


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / TRUTH_FILE).is_file():
        raise DataError(out, f"folder is not empty and holds no {TRUTH_FILE}; refusing to replace it")


def write_phantom(out: Path, patients: int = 20, seed: int = 0, *, echonet_beats: float = 2.5,
                  workers: int = 1, progress: Callable[[int, int], None] | None = None,
                  difficulty: str = DEFAULT_DIFFICULTY, foreshortening: bool = True) -> PhantomResult:
    """Write the synthetic phantom to ``out`` (replacing a previous phantom there) and return its paths.

    Args:
        out: output folder; must not exist, be empty, or hold a previous phantom (phantom_truth.json).
        patients: number of patients; each gives 2 CAMUS views and 1 EchoNet video.
        seed: the same seed gives byte-identical files.
        echonet_beats: length of each EchoNet video in heart beats (>= 1.8, so it holds a full ED -> ES).
        workers: processes rendering patients in parallel (results do not depend on it).
        progress: called as ``progress(done, total)`` after each patient.
        difficulty: how real and how hard the images look: ``easy`` (the gdkvm 0.1 phantom), ``medium``,
            ``realistic`` (default, calibrated on real EchoNet-Dynamic statistics) or ``hard``. The hearts,
            volumes and file layout are the same at every level.
        foreshortening: False puts every view plane through the true apex, as phantom version 2 did; the
            images and masks are then byte-identical to version 2's (the truth file gains the plane fields).
    """
    out = Path(out)
    if patients < 1:
        raise ConfigError(f"patients must be >= 1, got {patients}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if not echonet_beats >= MIN_ECHONET_BEATS:
        raise ConfigError(f"echonet_beats must be >= {MIN_ECHONET_BEATS}, got {echonet_beats}")
    get_difficulty(difficulty)
    _check_target(out)
    splits = split_assignment(patients, seed)
    try:
        with atomic_dir(out) as tmp:
            tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; give the folder the usual mode
            jobs = [(str(tmp), seed, i + 1, float(echonet_beats), splits[i], difficulty, foreshortening)
                    for i in range(patients)]
            records = _run_jobs(jobs, workers, progress)
            _write_tables(tmp, records, splits, seed, echonet_beats, difficulty, foreshortening)
    except GdkvmError:
        raise
    except OSError as exc:
        raise DataError(out, f"could not write the phantom: {exc}") from exc
    return PhantomResult(root=out, camus_root=out / CAMUS_DIR, echonet_root=out / ECHONET_DIR,
                         truth_path=out / TRUTH_FILE, patients=patients)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _run_jobs(jobs: list[tuple[str, int, int, float, str, str, bool]], workers: int,
              progress: Callable[[int, int], None] | None) -> list[dict[str, Any]]:
    total = len(jobs)
    records: list[dict[str, Any]] = []
    if workers == 1 or total == 1:
        for done, job in enumerate(jobs, start=1):
            records.append(_write_patient_job(job))
            if progress is not None:
                progress(done, total)
        return records
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, total), mp_context=context, initializer=_init_worker) as pool:
        for done, record in enumerate(pool.map(_write_patient_job, jobs), start=1):
            records.append(record)
            if progress is not None:
                progress(done, total)
    return records


def _write_tables(root: Path, records: list[dict[str, Any]], splits: list[str], seed: int,
                  echonet_beats: float, difficulty: str, foreshortening: bool = True) -> None:
    camus = root / CAMUS_DIR
    split_dir = camus / "database_split"
    split_dir.mkdir(parents=True)
    for split in CAMUS_SPLITS:
        names = [r["name"] for r, s in zip(records, splits, strict=True) if s == split]
        (split_dir / f"subgroup_{split}.txt").write_text("".join(f"{n}\n" for n in names))
    (camus / "README_PHANTOM.txt").write_text(
        "Synthetic echocardiography phantom written by gdkvm (not patient data); exact truth in ../phantom_truth.json.\n"
    )
    echonet = root / ECHONET_DIR
    names = [r["echonet_name"] for r in records]
    if len(set(names)) != len(names):
        raise DataError(echonet, "duplicate EchoNet file names drawn; use another seed")
    (echonet / "FileList.csv").write_text(writers.csv_text(writers.FILELIST_COLUMNS,
                                                           [r["filelist_row"] for r in records]))
    (echonet / "VolumeTracings.csv").write_text(
        writers.csv_text(writers.TRACING_COLUMNS, [row for r in records for row in r["tracing_rows"]]))
    truth = {
        "schema": TRUTH_SCHEMA,
        "seed": seed,
        "patients": len(records),
        "echonet_beats": echonet_beats,
        "difficulty": difficulty,
        "foreshortening": foreshortening,
        "phantom_version": PHANTOM_VERSION,
        "units": {"EDV": "mL", "ESV": "mL", "EF": "percent", "volume_ml": "mL", "frames": "0-based",
                  "lv_length_mm": "mm at [ED, ES]", "offset_mm": "mm", "tilt_deg": "degrees"},
        "camus": {r["name"]: r["camus"] for r in records},
        "echonet": {r["echonet_name"]: r["echonet"] for r in records},
    }
    (root / TRUTH_FILE).write_text(json.dumps(truth, indent=1) + "\n")


def load_truth(root: Path) -> dict:
    """Parse ``root/phantom_truth.json`` (``root`` = the folder ``write_phantom`` wrote)."""
    path = Path(root) / TRUTH_FILE
    if not path.is_file():
        raise DataError(path, "phantom truth file not found")
    try:
        truth = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"unreadable phantom truth: {exc}") from exc
    if not isinstance(truth, dict) or truth.get("schema") != TRUTH_SCHEMA:
        raise DataError(path, f"not a phantom truth file (expected schema {TRUTH_SCHEMA!r})")
    return truth

