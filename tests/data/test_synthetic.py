"""The synthetic echo phantom: on-disk layout, exact truth, determinism, and echo-like image statistics.

Uses the session ``phantom`` fixture (tests/conftest.py: 5 patients, seed 0) and writes a few more tiny
phantoms into tmp_path.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest

from gdkvm.data import synthetic
from gdkvm.data.phantom import speckle
from gdkvm.data.phantom.cycle import sample_cycle
from gdkvm.data.phantom.geometry import PolarGrid, Sector
from gdkvm.data.phantom.shape import LVShape, sample_shape
from gdkvm.data.synthetic import load_truth, write_phantom
from gdkvm.errors import ConfigError, DataError, GdkvmError

VIEWS = ("2CH", "4CH")
RAYLEIGH_CV = math.sqrt(4.0 / math.pi - 1.0)  # std/mean of a Rayleigh amplitude
MAX_HALF_ANGLE_DEG = 42.0  # widest sector the generator draws


# ---------------------------------------------------------------------------------------------- helpers
def _patient_files(name: str) -> set[str]:
    files = {f"Info_{v}.cfg" for v in VIEWS}
    for v in VIEWS:
        for part in ("ED", "ES", "half_sequence"):
            files |= {f"{name}_{v}_{part}.nii.gz", f"{name}_{v}_{part}_gt.nii.gz"}
    return files


def _nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    image = nib.load(str(path))
    return np.asarray(image.dataobj), tuple(float(z) for z in image.header.get_zooms())


def _thw(path: Path) -> np.ndarray:
    """A half sequence as (T, H, W)."""
    return _nifti(path)[0].transpose(2, 1, 0)


def _cfg(path: Path) -> dict[str, str]:
    pairs = [line.split(":", 1) for line in path.read_text().splitlines() if line.strip()]
    return {k.strip(): v.strip() for k, v in pairs}


def _csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _decode(path: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return np.stack(frames)


def _tracings(root: Path) -> dict[str, dict[int, np.ndarray]]:
    """video -> {frame: (21, 4) rows} in file order (dicts keep insertion order)."""
    out: dict[str, dict[int, list]] = {}
    for row in _csv(root / "VolumeTracings.csv")[1]:
        frames = out.setdefault(row["FileName"], {})
        frames.setdefault(int(row["Frame"]), []).append([float(row[k]) for k in ("X1", "Y1", "X2", "Y2")])
    return {v: {f: np.array(r) for f, r in fr.items()} for v, fr in out.items()}


def _disk_volume(rows: np.ndarray) -> float:
    """Single-plane method of disks, V = pi/4 * sum d_i^2 * L / 20 (written here independently)."""
    length = math.dist(rows[0, :2], rows[0, 2:])
    d = np.linalg.norm(rows[1:, 2:] - rows[1:, :2], axis=1)
    return math.pi / 4.0 * float(np.sum(d**2)) * length / len(d)


def _polygon_area(rows: np.ndarray) -> float:
    """Shoelace area of the EchoNet polygon: X1..  of the chords, then X2 reversed."""
    chords = rows[1:]
    xs = np.concatenate([chords[:, 0], chords[::-1, 2]])
    ys = np.concatenate([chords[:, 1], chords[::-1, 3]])
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))


def _outside_fan(shape: tuple[int, int], sx: float, sy: float, margin_px: float = 2.0) -> np.ndarray:
    """Pixels certainly outside any drawn sector: farther from the beam axis than the widest fan allows
    (apex at the top centre, at most 2 mm above the first row)."""
    h, w = shape
    x = (np.arange(w) - (w - 1) / 2.0)[None, :] * sx
    y = np.arange(h)[:, None] * sy + 2.0
    return np.abs(x) > y * math.tan(math.radians(MAX_HALF_ANGLE_DEG)) + margin_px * sx


def _erode(mask: np.ndarray, size: int = 5) -> np.ndarray:
    return cv2.erode(mask.astype(np.uint8), np.ones((size, size), np.uint8)).astype(bool)


def _highpass(img: np.ndarray) -> np.ndarray:
    img = img.astype(np.float32)
    return img - cv2.GaussianBlur(img, (0, 0), 3.0)


# ---------------------------------------------------------------------------------------------- layout
def test_layout_matches_the_real_datasets(phantom):
    truth = load_truth(phantom.root)
    names = [f"patient{i:04d}" for i in range(1, phantom.patients + 1)]
    nifti = phantom.camus_root / "database_nifti"
    assert sorted(p.name for p in nifti.iterdir()) == names
    for name in names:
        assert {p.name for p in (nifti / name).iterdir()} == _patient_files(name)
    assert (phantom.camus_root / "README_PHANTOM.txt").is_file()
    assert not list(phantom.root.rglob("MANDATORY_CITATION.md"))
    split_dir = phantom.camus_root / "database_split"
    assert sorted(p.name for p in split_dir.iterdir()) == [
        "subgroup_testing.txt", "subgroup_training.txt", "subgroup_validation.txt"]
    splits = {s: split_dir.joinpath(f"subgroup_{s}.txt").read_text().split() for s in synthetic.CAMUS_SPLITS}
    assert sorted(sum(splits.values(), [])) == names  # disjoint and complete
    assert all(len(v) >= 1 for v in splits.values())
    assert len(splits["training"]) >= len(names) - 2
    for split, members in splits.items():
        assert all(truth["camus"][n]["split"] == split for n in members)

    columns, rows = _csv(phantom.echonet_root / "FileList.csv")
    assert columns == ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]
    assert len(rows) == phantom.patients
    videos = sorted(p.name for p in (phantom.echonet_root / "Videos").iterdir())
    assert videos == sorted(f"{r['FileName']}.avi" for r in rows)
    for row in rows:
        assert len(row["FileName"]) == 18 and row["FileName"].startswith("0X")
        assert all(c in "0123456789ABCDEF" for c in row["FileName"][2:])
        assert (row["FrameHeight"], row["FrameWidth"], row["FPS"]) == ("112", "112", "50")
        patient = truth["echonet"][row["FileName"]]["patient"]
        assert row["Split"] == synthetic.ECHONET_SPLITS[truth["camus"][patient]["split"]]
    columns, _ = _csv(phantom.echonet_root / "VolumeTracings.csv")
    assert columns == ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]


def test_camus_cfg_and_nifti(phantom):
    truth = load_truth(phantom.root)
    reversed_seen = 0
    for name, record in truth["camus"].items():
        folder = phantom.camus_root / "database_nifti" / name
        reversed_seen += record["reversed"]
        for view in VIEWS:
            info = record["views"][view]
            cfg = _cfg(folder / f"Info_{view}.cfg")
            assert list(cfg) == ["ED", "ES", "NbFrame", "Sex", "Age", "ImageQuality", "EF", "FrameRate"]
            n = int(cfg["NbFrame"])
            ed, es = int(cfg["ED"]), int(cfg["ES"])
            assert (ed, es) == ((n, 1) if record["reversed"] else (1, n))
            assert (ed - 1, es - 1) == (info["ed_index"], info["es_index"])
            assert int(cfg["EF"]) == round(record["EF"]) and cfg["ImageQuality"] in ("Good", "Medium", "Poor")

            seq, zooms = _nifti(folder / f"{name}_{view}_half_sequence.nii.gz")
            gt, gt_zooms = _nifti(folder / f"{name}_{view}_half_sequence_gt.nii.gz")
            h, w = info["size_hw"]
            assert seq.shape == gt.shape == (w, h, n)  # nibabel order (X = cols, Y = rows, T)
            assert seq.dtype == gt.dtype == np.uint8
            assert 300 <= h <= 360 and 220 <= w <= 300
            sx, sy = info["spacing_xy_mm"]
            assert zooms == gt_zooms == pytest.approx((sx, sy, 1.0), rel=1e-6)
            assert sx != pytest.approx(sy, rel=0.05)  # anisotropic pixels
            for phase, idx in (("ED", info["ed_index"]), ("ES", info["es_index"])):
                frame, fz = _nifti(folder / f"{name}_{view}_{phase}.nii.gz")
                label, _ = _nifti(folder / f"{name}_{view}_{phase}_gt.nii.gz")
                assert frame.shape == (w, h) and fz == pytest.approx((sx, sy), rel=1e-6)
                np.testing.assert_array_equal(frame, seq[:, :, idx])
                np.testing.assert_array_equal(label, gt[:, :, idx])
    assert reversed_seen >= 1  # seed 0 stores patient0002 ES -> ED


def test_labels_and_lv_area_shrinks_in_systole(phantom):
    truth = load_truth(phantom.root)
    for name, record in truth["camus"].items():
        for view in VIEWS:
            info = record["views"][view]
            gt = _thw(phantom.camus_root / "database_nifti" / name / f"{name}_{view}_half_sequence_gt.nii.gz")
            assert set(np.unique(gt)) <= {0, 1, 2, 3}
            ed, es = gt[info["ed_index"]], gt[info["es_index"]]
            assert set(np.unique(ed)) == {0, 1, 2, 3}
            assert (ed == 1).sum() > (es == 1).sum() * 1.05
            # the stored volume curve is monotone from ED to ES
            vol = np.array(info["volume_ml"])
            step = 1 if info["ed_index"] == 0 else -1
            assert np.all(np.diff(vol[::step]) <= 1e-6)


# ---------------------------------------------------------------------------------------------- truth
def test_truth_is_consistent(phantom):
    truth = load_truth(phantom.root)
    assert truth["patients"] == phantom.patients
    filelist = {r["FileName"]: r for r in _csv(phantom.echonet_root / "FileList.csv")[1]}
    for name, record in truth["camus"].items():
        edv, esv = record["EDV"], record["ESV"]
        assert record["EF"] == pytest.approx(100.0 * (edv - esv) / edv, rel=1e-12)
        assert 15.0 - 1e-6 <= record["EF"] <= 80.0 + 1e-6
        for view in VIEWS:
            info = record["views"][view]
            assert info["volume_ml"][info["ed_index"]] == pytest.approx(edv, abs=1e-3)
            assert info["volume_ml"][info["es_index"]] == pytest.approx(esv, abs=1e-3)
        video = truth["echonet"][record["echonet"]]
        assert video["patient"] == name
        assert (video["EDV"], video["ESV"], video["EF"]) == (edv, esv, record["EF"])
        row = filelist[record["echonet"]]
        for col in ("EF", "ESV", "EDV"):
            assert float(row[col]) == pytest.approx(video[col], rel=1e-5)
        assert int(row["NumberOfFrames"]) == video["number_of_frames"] == len(video["volume_ml"])


def test_echonet_beats_lie_inside_the_video(phantom):
    truth = load_truth(phantom.root)
    for video in truth["echonet"].values():
        n = video["number_of_frames"]
        vol = np.array(video["volume_ml"])
        stroke = video["EDV"] - video["ESV"]
        assert video["beats"] and len(video["ed_frames"]) >= 2  # longer than one beat
        assert all(0 <= f < n for f in video["ed_frames"] + video["es_frames"])
        for beat in video["beats"]:
            assert 0 <= beat["ed"] < beat["es"] < n
            # nearest frames to the exact instants sit at the extremes of the volume curve
            assert (vol[beat["ed"]] - video["ESV"]) / stroke > 0.97
            assert (vol[beat["es"]] - video["ESV"]) / stroke < 0.03
        assert vol.max() <= video["EDV"] + 1e-3 and vol.min() >= video["ESV"] - 1e-3
        first = video["beats"][0]
        assert (video["traced"]["ed"], video["traced"]["es"]) == (first["ed"], first["es"])
        period_frames = video["fps"] * 60.0 / video["heart_rate_bpm"]
        assert np.diff(video["ed_frames"]) == pytest.approx(period_frames, abs=1.0)


# ---------------------------------------------------------------------------------------------- EchoNet
def test_avi_decodes_to_the_filelist(phantom):
    for row in _csv(phantom.echonet_root / "FileList.csv")[1]:
        path = phantom.echonet_root / "Videos" / f"{row['FileName']}.avi"
        cap = cv2.VideoCapture(str(path))
        assert int(cap.get(cv2.CAP_PROP_FOURCC)) == cv2.VideoWriter_fourcc(*"MJPG")
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(50.0)
        cap.release()
        frames = _decode(path)
        assert frames.shape == (int(row["NumberOfFrames"]), 112, 112, 3)
        diff = np.abs(frames[..., 0].astype(int) - frames[..., 1].astype(int))
        assert diff.mean() < 1.0  # gray stored as three (nearly) equal channels


def test_tracings_give_the_exact_ef(phantom):
    truth = load_truth(phantom.root)
    tracings = _tracings(phantom.echonet_root)
    assert sorted(tracings) == sorted(f"{v}.avi" for v in truth["echonet"])
    es_first_seen = 0
    for video, frames in tracings.items():
        record = truth["echonet"][video[:-4]]
        assert len(frames) == 2 and all(len(rows) == 21 for rows in frames.values())
        (first, rows_a), (second, rows_b) = frames.items()
        # ED/ES by polygon area, never by row order
        ed, es = (first, second) if _polygon_area(rows_a) > _polygon_area(rows_b) else (second, first)
        assert (ed, es) == (record["traced"]["ed"], record["traced"]["es"])
        assert (first == es) == record["traced"]["es_listed_first"]
        es_first_seen += first == es
        for rows in frames.values():
            axis = rows[0, 2:] - rows[0, :2]
            assert axis[1] > 0  # from the apex (top) down to the mitral plane
            chords = rows[1:, 2:] - rows[1:, :2]
            cosines = chords @ axis / (np.linalg.norm(chords, axis=1) * np.linalg.norm(axis))
            assert np.abs(cosines).max() < 1e-3  # perpendicular to the long axis
            assert rows.min() >= -1.0 and rows.max() <= 113.0
        ef = 100.0 * (1.0 - _disk_volume(frames[es]) / _disk_volume(frames[ed]))
        assert ef == pytest.approx(record["tracing_ef"], abs=1e-3)  # the CSV rounds the coordinates
        # the tracings follow the imaged (possibly foreshortened) plane: their EF is the single-plane EF
        # of that cut, and on the plane through the axis the same estimate is close to the exact EF
        index = int(record["patient"][len("patient"):])
        spec, _ = synthetic.sample_patient(truth["seed"], index, truth["echonet_beats"], truth["difficulty"])
        anat = spec.setups["ECHONET"].anatomy
        assert ef == pytest.approx(_cut_disk_ef(spec, anat.omega, anat.plane, ed, es), abs=1.5)
        assert _cut_disk_ef(spec, anat.omega, None, ed, es) == pytest.approx(record["EF"], abs=4.0)
    assert 0 < es_first_seen < len(tracings)


def _cut_disk_ef(spec, omega: float, plane, ed: int, es: int) -> float:
    """Single-plane disks (diameter = the cut chord) stacked along the plane's long axis, from the exact
    cut at the contraction of the ED and ES video frames (written here from LVShape.cut alone)."""
    shape, cycle = spec.shape, spec.cycle
    volumes = []
    for frame in (ed, es):
        m = float(cycle.contraction(spec.echonet_start_phase + frame / synthetic.ECHONET_FPS / cycle.period_s))
        w = np.linspace(-30.0, shape.plane_length(m, plane), 4000)
        _, h, _, _ = shape.cut(w, m, omega, float(shape.wall_thickness(m)), plane=plane)
        volumes.append(float(np.sum(math.pi * h * h)) * (w[1] - w[0]))
    return 100.0 * (1.0 - volumes[1] / volumes[0])


def test_tracing_polygon_covers_the_dark_cavity(phantom):
    truth = load_truth(phantom.root)
    tracings = _tracings(phantom.echonet_root)
    for video, frames in tracings.items():
        ed = truth["echonet"][video[:-4]]["traced"]["ed"]
        image = _decode(phantom.echonet_root / "Videos" / video)[ed, :, :, 0].astype(float)
        rows = frames[ed][1:]
        poly = np.concatenate([rows[:, :2], rows[::-1, 2:]])
        mask = np.zeros((112, 112), np.uint8)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
        inside = _erode(mask, 3)
        ring = cv2.dilate(mask, np.ones((7, 7), np.uint8)).astype(bool) & ~cv2.dilate(
            mask, np.ones((3, 3), np.uint8)).astype(bool)
        assert image[inside].mean() < 0.5 * image[ring].mean()  # dark blood inside, bright wall around


# ---------------------------------------------------------------------------------------------- images
def test_images_look_like_echo(phantom):
    truth = load_truth(phantom.root)
    for name, record in truth["camus"].items():
        for view in VIEWS:
            info = record["views"][view]
            folder = phantom.camus_root / "database_nifti" / name
            img = _thw(folder / f"{name}_{view}_half_sequence.nii.gz")[info["ed_index"]].astype(float)
            gt = _thw(folder / f"{name}_{view}_half_sequence_gt.nii.gz")[info["ed_index"]]
            sx, sy = info["spacing_xy_mm"]
            outside = _outside_fan(img.shape, sx, sy)
            # outside the fan: black but for the sparse scanner overlays (depth dots, text blobs)
            assert outside.mean() > 0.1 and np.mean(img[outside] > 2) < 0.03
            near_axis = ~_outside_fan(img.shape, sx, sy, margin_px=-40)
            assert img[near_axis].mean() > 8  # not an empty fan (realistic gain is low)
            blood = img[_erode(gt == 1)]
            myo = img[_erode(gt == 2)]
            assert blood.mean() < 0.4 * myo.mean() and myo.mean() - blood.mean() > 25
            cv = myo.std() / myo.mean()  # log-compressed speckle plus texture
            assert 0.1 < cv < 1.2  # realistic walls are patchy: specular peaks and dropout
    for video in truth["echonet"]:
        frame = _decode(phantom.echonet_root / "Videos" / f"{video}.avi")[0, :, :, 0]
        outside = frame[_outside_fan(frame.shape, 1.0, 1.0, margin_px=2.5)]
        assert np.mean(outside > 8) < 0.02  # JPEG ringing and the overlays only


def test_envelope_speckle_is_rayleigh():
    grid = PolarGrid(Sector(depth_mm=120.0, half_angle_rad=math.radians(37.0)), dr_mm=0.25,
                     dtheta_rad=math.radians(0.3))
    params = speckle.ImagingParams(
        psf_axial_mm=0.38, psf_lateral_rad=math.radians(0.65), psf_lateral_min_mm=0.8,
        attenuation_db_per_mm=0.0, tgc_db_per_mm=0.0, noise_db=-200.0, clutter_near_db=-200.0,
        clutter_decay_mm=10.0, haze_db=-200.0, dynamic_range_db=60.0, gray_myocardium=128.0, edge_loss=0.0)
    field = speckle.complex_white(np.random.default_rng(7), (grid.n_r, grid.n_theta), smooth=speckle.SCATTER_SMOOTH)
    env = speckle.envelope(speckle.PSF(grid, params).apply(field))
    deep = env[grid.n_r // 4:]  # avoid the strongly smoothed near field
    assert deep.std() / deep.mean() == pytest.approx(RAYLEIGH_CV, abs=0.03)
    assert np.mean(deep**2) == pytest.approx(1.0, rel=0.1)  # the PSF normalisation keeps unit power


def test_speckle_moves_with_the_tissue(phantom):
    truth = load_truth(phantom.root)
    correlations = []
    firsts = []
    for name in truth["camus"]:
        for view in VIEWS:
            folder = phantom.camus_root / "database_nifti" / name
            img = _thw(folder / f"{name}_{view}_half_sequence.nii.gz")
            gt = _thw(folder / f"{name}_{view}_half_sequence_gt.nii.gz")
            for t in range(len(img) - 1):
                tissue = _erode(gt[t] == 2) & _erode(gt[t + 1] == 2)
                a, b = _highpass(img[t])[tissue], _highpass(img[t + 1])[tissue]
                correlations.append(np.corrcoef(a, b)[0, 1])
            firsts.append(_highpass(img[0]))
    assert np.mean(correlations) > 0.5
    # different patients carry unrelated speckle
    h = min(f.shape[0] for f in firsts)
    w = min(f.shape[1] for f in firsts)
    a, b = firsts[0][:h, :w], firsts[2][:h, :w]
    both = (a != 0) & (b != 0)
    assert abs(np.corrcoef(a[both], b[both])[0, 1]) < 0.1


# ---------------------------------------------------------------------------------------------- model
def _prolate(**changes: float) -> LVShape:
    base = dict(length_mm=80.0, radius_x_mm=22.0, radius_y_mm=20.0, truncation=0.7, apex_power=1.0,
                radial_shortening=0.3, long_ratio=0.4, ratio_y=1.0, apical_sparing=0.5, septal_share=0.2,
                wall_mm=9.0, apex_wall_ratio=0.8)
    base.update(changes)
    return LVShape(**base)


def test_volume_matches_the_truncated_spheroid_formula():
    # no contraction: a truncated prolate spheroid, V = pi a b c (2/3 + t - t^3/3), c = L / (1 + t)
    shape = _prolate()
    t = shape.truncation
    c = shape.length_mm / (1.0 + t)
    expected = math.pi * 22.0 * 20.0 * c * (2.0 / 3.0 + t - t**3 / 3.0)
    assert float(shape.volume_mm3(0.0)) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("m", [0.0, 1.0])
def test_volume_matches_voxel_counting(m):
    shape = sample_shape(np.random.default_rng(3), 55.0)
    h = 0.4
    x = np.arange(-40.0, 40.0, h) + h / 2
    xx, yy = np.meshgrid(x, x, indexing="ij")
    counted = h**3 * sum(
        int(shape.contains(xx, yy, np.full_like(xx, z), m).sum())
        for z in np.arange(0.0, shape.length_mm + 1.0, h) + h / 2
    )
    assert float(shape.volume_mm3(m)) == pytest.approx(counted, rel=5e-3)


def test_biplane_disks_from_the_two_view_cuts_match_the_volume():
    shape = sample_shape(np.random.default_rng(5), 60.0)
    for m in (0.0, 1.0):
        length = float(shape.length(m))
        n = 400
        z = (np.arange(n) + 0.5) / n * length
        wall = float(shape.wall_thickness(m))
        _, h4, _, _ = shape.cut(z, m, 0.0, wall)
        _, h2, _, _ = shape.cut(z, m, math.pi / 2, wall)
        biplane = math.pi * float(np.sum(h4 * h2)) * length / n
        assert biplane == pytest.approx(float(shape.volume_mm3(m)), rel=0.02)


def test_ef_target_and_wall_thickening():
    rng = np.random.default_rng(11)
    for target in (15.0, 35.0, 60.0, 80.0):
        shape = sample_shape(rng, target)
        assert shape.ef_percent == pytest.approx(target, abs=0.05)
        w0, w1 = shape.wall_thickness(np.array([0.0, 1.0]))
        assert w1 > w0  # systolic thickening
        assert float(shape.myocardial_volume_mm3(1.0, w1)) == pytest.approx(
            float(shape.myocardial_volume_mm3(0.0, w0)), rel=1e-4)


def test_cycle_contraction():
    rng = np.random.default_rng(2)
    for hr in (50.0, 80.0, 110.0):
        cycle = sample_cycle(rng, hr)
        phase = np.linspace(0.0, 1.0, 2001)
        m = cycle.contraction(phase)
        assert m.min() >= 0.0 and m.max() <= 1.0
        assert cycle.contraction(0.0) == 0.0 and cycle.contraction(cycle.es_phase) == pytest.approx(1.0)
        assert np.all(np.diff(m[phase <= cycle.es_phase]) >= 0)  # ejection is monotone
        assert cycle.mitral_opening(cycle.es_phase * 0.5) == 0.0  # closed in systole
        assert cycle.mitral_opening(np.linspace(cycle.es_phase, 1.0, 200)).max() > 0.9  # opens in diastole


# ---------------------------------------------------------------------------------------------- writing
def test_same_seed_same_bytes_and_workers_do_not_matter(phantom, tmp_path):
    # patient files depend only on (seed, patient index): a 2-patient run in 2 processes must reproduce
    # the session phantom's first two patients byte for byte
    again = write_phantom(tmp_path / "again", patients=2, seed=0, workers=2)
    for rel in ("CAMUS_public/database_nifti/patient0002/patient0002_4CH_half_sequence.nii.gz",
                "CAMUS_public/database_nifti/patient0001/patient0001_2CH_ES_gt.nii.gz",
                "CAMUS_public/database_nifti/patient0002/Info_2CH.cfg"):
        assert (again.root / rel).read_bytes() == (phantom.root / rel).read_bytes(), rel
    videos = sorted(p.name for p in (again.echonet_root / "Videos").iterdir())
    assert len(videos) == 2
    for name in videos:
        assert (again.echonet_root / "Videos" / name).read_bytes() == (
            phantom.echonet_root / "Videos" / name).read_bytes()
    # the tracings CSV lists patients in order, so the short run's file is a byte prefix of the long one's
    short = (again.echonet_root / "VolumeTracings.csv").read_bytes()
    assert (phantom.echonet_root / "VolumeTracings.csv").read_bytes().startswith(short)
    truth_a, truth_b = load_truth(again.root), load_truth(phantom.root)
    for name in ("patient0001", "patient0002"):
        a, b = dict(truth_a["camus"][name]), dict(truth_b["camus"][name])
        a.pop("split"), b.pop("split")
        assert a == b


def test_other_seed_differs_and_progress_is_reported(phantom, tmp_path):
    calls = []
    other = write_phantom(tmp_path / "other", patients=1, seed=1, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 1)]
    rel = "CAMUS_public/database_nifti/patient0001/patient0001_4CH_half_sequence.nii.gz"
    assert (other.root / rel).read_bytes() != (phantom.root / rel).read_bytes()
    mine = sorted((other.echonet_root / "Videos").iterdir())
    theirs = {p.name for p in (phantom.echonet_root / "Videos").iterdir()}
    assert mine[0].name not in theirs
    split_dir = other.camus_root / "database_split"
    assert split_dir.joinpath("subgroup_training.txt").read_text() == "patient0001\n"  # too few to split
    assert split_dir.joinpath("subgroup_testing.txt").read_text() == ""
    # a previous phantom in the target folder is replaced as a whole
    (other.root / "stale.txt").write_text("old")
    write_phantom(other.root, patients=1, seed=2)
    assert load_truth(other.root)["seed"] == 2 and not (other.root / "stale.txt").exists()


def test_output_path_that_is_a_file_raises(tmp_path):
    target = tmp_path / "phantom"
    target.write_text("not a folder")
    with pytest.raises(GdkvmError, match="not a folder"):
        write_phantom(target, patients=1)
    assert target.read_text() == "not a folder"


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="refusing"):
        write_phantom(target, patients=1)
    assert (target / "keep.txt").read_text() == "x"


def test_failure_midway_leaves_no_partial_folder(tmp_path, monkeypatch):
    real = synthetic._write_patient

    def failing(root, seed, index, beats, split, difficulty, foreshortening=True):
        if index == 2:
            raise RuntimeError("boom")
        return real(root, seed, index, beats, split, difficulty, foreshortening)

    monkeypatch.setattr(synthetic, "_write_patient", failing)
    with pytest.raises(RuntimeError, match="boom"):
        write_phantom(tmp_path / "phantom", patients=3)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ConfigError):
        write_phantom(tmp_path / "p", patients=0)
    with pytest.raises(ConfigError):
        write_phantom(tmp_path / "p", patients=1, echonet_beats=1.0)
    with pytest.raises(ConfigError):
        write_phantom(tmp_path / "p", patients=1, workers=0)
    assert list(tmp_path.iterdir()) == []


def test_load_truth_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_truth(tmp_path)
    (tmp_path / synthetic.TRUTH_FILE).write_text('{"schema": "something else"}')
    with pytest.raises(DataError, match="schema"):
        load_truth(tmp_path)
