"""Prepared store: contents, spacing, idempotence, bad cases (strict and not), verification, reading."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from gdkvm.data import camus
from gdkvm.data.store import SPLITS, open_store, prepare_camus, prepare_echonet, verify_store
from gdkvm.errors import ConfigError, DataError
from gdkvm.utils.atomic import sha256_file
from tests.data.fixtures import (
    CamusCaseSpec,
    EchoVideoSpec,
    camus_frame_value,
    echonet_background,
    write_camus_case,
    write_camus_dataset,
    write_echonet_dataset,
    write_nifti,
)


def _tree_hashes(folder):
    return {
        p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _listing(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def test_camus_store_contents(tmp_path):
    root = write_camus_dataset(tmp_path / "raw", patients=5, splits=(3, 1, 1), reversed_patients=(2,))
    summary = prepare_camus(tmp_path / "raw" / "CAMUS_public", tmp_path / "out", size=32)
    assert summary.counts == {"train": 6, "val": 2, "test": 2} and not summary.bad_cases
    assert summary.out_dir == tmp_path / "out" / "camus"
    train = open_store(tmp_path / "out" / "camus" / "train")
    assert (train.dataset, train.split, len(train)) == ("camus", "train", 6)
    assert train.images.shape == (6, 10, 32, 32) and train.images.dtype == np.uint8
    assert train.masks.shape == (6, 10, 32, 32) and set(np.unique(train.masks).tolist()) == {0, 1}
    assert train.labeled.shape == (6, 10) and train.labeled.all()
    assert isinstance(train.images, np.memmap)
    for pos, row in train.manifest.iterrows():
        patient, view = row["patient"], row["view"]
        case = camus.load_camus_case(root, patient, view)
        raw = camus.read_nifti_sequence(camus.case_files(root, patient, view).gt)[0]  # file order
        frames = [int(f) for f in row["frame_indices"].split()]
        assert len(frames) == 10
        if patient == "patient0002":  # stored ES -> ED: ED is the last file frame
            assert (row["ed_index"], row["es_index"]) == (case.n_frames - 1, 0)
            assert frames[0] == case.n_frames - 1 and frames[-1] == 0
        else:
            assert (row["ed_index"], row["es_index"]) == (0, case.n_frames - 1)
            assert frames[0] == 0 and frames[-1] == case.n_frames - 1
        for t, f in enumerate(frames):
            expected = cv2.resize((raw[f] == 1).astype(np.uint8), (32, 32), interpolation=cv2.INTER_NEAREST)
            assert np.array_equal(train.masks[pos, t], expected)
        # intensities outside the LV identify the oriented step: ED first, rising to ES
        steps = [int(np.median(train.images[pos, t][train.masks[pos, t] == 0])) for t in range(10)]
        oriented = case.source_index(np.array(frames)) if case.reversed else np.array(frames)
        assert steps == [camus_frame_value(int(i)) for i in oriented]
        # spacing (sy, sx) = (0.2, 0.3) from zooms (sx, sy) = (0.3, 0.2), scaled by old/new size
        assert row["spacing_row_mm"] == pytest.approx(case.spacing[0] * 24 / 32)
        assert row["spacing_col_mm"] == pytest.approx(case.spacing[1] * 20 / 32)
        assert row["spacing_unit"] == "mm" and row["source"] == "camus"
        assert row["ef"] == case.info.ef and row["image_quality"] == "Good"
        img_sha = sha256_file(camus.case_files(root, patient, view).image)
        assert row["source_sha256"].split(";")[0] == img_sha
    meta = json.loads((tmp_path / "out" / "camus" / "store.json").read_text())
    assert meta["counts"] == summary.counts and meta["options"]["size"] == 32
    assert set(meta["files"]) == {
        f"{s}/{n}" for s in SPLITS for n in ("images.npy", "masks.npy", "labeled.npy", "manifest.csv")
    }
    verify_store(tmp_path / "out" / "camus")


def test_all_labels_and_memsam_split(tmp_path):
    write_camus_dataset(tmp_path / "raw", patients=10, splits=(8, 1, 1))
    summary = prepare_camus(
        tmp_path / "raw" / "CAMUS_public", tmp_path / "out", size=24, labels="all", split="memsam", sampling="rint"
    )
    assert summary.counts == {"train": 14, "val": 2, "test": 4}
    test = open_store(tmp_path / "out" / "camus", "test")
    assert set(test.manifest["patient"]) == {"patient0009", "patient0010"}
    assert set(np.unique(test.masks).tolist()) == {0, 1, 2, 3}


def test_rerun_is_idempotent_and_options_rebuild(tmp_path):
    write_camus_dataset(tmp_path / "raw", patients=4, splits=(2, 1, 1))
    out = tmp_path / "out"
    first = prepare_camus(tmp_path / "raw" / "CAMUS_public", out, size=24)
    before = _tree_hashes(out)
    again = prepare_camus(tmp_path / "raw" / "CAMUS_public", out, size=24)
    assert again.up_to_date and not first.up_to_date and again.counts == first.counts
    assert _tree_hashes(out) == before
    # a fresh build into another folder gives the same bytes
    prepare_camus(tmp_path / "raw" / "CAMUS_public", tmp_path / "out2", size=24)
    assert _tree_hashes(tmp_path / "out2") == before
    # changed options or inputs rebuild
    assert not prepare_camus(tmp_path / "raw" / "CAMUS_public", out, size=16).up_to_date
    assert not prepare_camus(tmp_path / "raw" / "CAMUS_public", out, size=16, sampling="rint").up_to_date
    write_camus_case(tmp_path / "raw" / "CAMUS_public", "patient0001", "2CH", CamusCaseSpec(n_frames=9))
    rebuilt = prepare_camus(tmp_path / "raw" / "CAMUS_public", out, size=16, sampling="rint")
    assert not rebuilt.up_to_date
    row = open_store(out / "camus", "train").manifest.iloc[0]
    assert row["case_id"] == "patient0001_2CH" and row["n_source_frames"] == 9
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_store_records_the_dataset_folder_it_read(tmp_path, monkeypatch):
    root = write_camus_dataset(tmp_path / "raw", patients=4, splits=(2, 1, 1))
    monkeypatch.chdir(tmp_path)
    summary = prepare_camus(Path("raw") / "CAMUS_public", tmp_path / "out", size=16)  # a relative root
    meta = json.loads((tmp_path / "out" / "camus" / "store.json").read_text())
    assert meta["source_root"] == str(root.resolve()) and Path(meta["source_root"]).is_absolute()
    assert summary.source_root == root.resolve()
    assert prepare_camus(root, tmp_path / "out", size=16).source_root == root.resolve()
    # the same files read from another folder: the store records the new folder
    moved = tmp_path / "moved" / "CAMUS_public"
    shutil.copytree(root, moved)
    again = prepare_camus(moved, tmp_path / "out", size=16)
    assert not again.up_to_date and again.counts == summary.counts
    meta = json.loads((tmp_path / "out" / "camus" / "store.json").read_text())
    assert meta["source_root"] == str(moved.resolve())
    assert prepare_camus(moved, tmp_path / "out", size=16).up_to_date
    # a parent folder is refused unless searching below is asked for
    with pytest.raises(DataError, match="--search-below"):
        prepare_camus(tmp_path / "moved", tmp_path / "out2", size=16)
    assert not (tmp_path / "out2").exists()
    found = prepare_camus(tmp_path / "moved", tmp_path / "out2", size=16, search_below=True)
    assert found.source_root == moved.resolve()


def _break_inputs(root):
    """Three bad CAMUS cases: truncated image, GT shape mismatch, empty LV mask."""
    files = camus.case_files(root, "patient0001", "2CH")
    data = files.image.read_bytes()
    files.image.write_bytes(data[: len(data) // 2])
    files = camus.case_files(root, "patient0002", "4CH")
    write_nifti(files.gt, np.zeros((6, 24, 21), np.uint8), (0.3, 0.2))
    files = camus.case_files(root, "patient0003", "2CH")
    case = camus.load_camus_case(root, "patient0003", "2CH")
    labels = case.labels.copy()
    labels[2][labels[2] == 1] = 0
    write_nifti(files.gt, labels, (0.3, 0.2))
    return {
        "patient0001_2CH_half_sequence.nii.gz": "cannot read NIfTI",
        "patient0002_4CH_half_sequence_gt.nii.gz": "does not match image",
        "patient0003_2CH_half_sequence_gt.nii.gz": "empty LV mask at frame 2",
    }


def test_bad_cases_skipped_and_listed(tmp_path):
    root = write_camus_dataset(tmp_path / "raw", patients=4, splits=(2, 1, 1))
    expected = _break_inputs(root)
    (root / "database_split" / "subgroup_testing.txt").write_text("patient0004\npatient0042\n")
    summary = prepare_camus(root, tmp_path / "out", size=24)
    problems = {b.file.rsplit("/", 1)[-1]: b.problem for b in summary.bad_cases}
    for name, problem in expected.items():
        assert problem in problems[name]
    assert any(
        b.file == "CAMUS_public/database_nifti/patient0042" and "patient folder not found" in b.problem
        for b in summary.bad_cases
    )
    assert len(summary.bad_cases) == 4
    assert summary.counts == {"train": 2, "val": 1, "test": 2}
    meta = json.loads((tmp_path / "out" / "camus" / "store.json").read_text())
    assert len(meta["bad_cases"]) == 4
    assert all(str(tmp_path) not in b["file"] for b in meta["bad_cases"])  # relative paths only
    # --strict does not accept an existing store that skipped bad cases
    before = _tree_hashes(tmp_path / "out")
    with pytest.raises(DataError, match="patient0042: patient folder not found"):
        prepare_camus(root, tmp_path / "out", size=24, strict=True)
    assert _tree_hashes(tmp_path / "out") == before


def test_strict_fails_on_first_bad_case_and_leaves_nothing(tmp_path):
    root = write_camus_dataset(tmp_path / "raw", patients=4, splits=(2, 1, 1))
    _break_inputs(root)
    out = tmp_path / "new" / "out"
    with pytest.raises(DataError, match="cannot read NIfTI") as err:
        prepare_camus(root, out, size=24, strict=True)
    assert err.value.path.name == "patient0001_2CH_half_sequence.nii.gz"
    assert not (tmp_path / "new").exists()
    # an existing store is left exactly as it was
    good = write_camus_dataset(tmp_path / "good", patients=4, splits=(2, 1, 1))
    prepare_camus(good, tmp_path / "out", size=24)
    before = _tree_hashes(tmp_path / "out")
    with pytest.raises(DataError):
        prepare_camus(root, tmp_path / "out", size=24, strict=True)
    assert _tree_hashes(tmp_path / "out") == before
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_missing_dataset_and_bad_options(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        prepare_camus(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(DataError, match="no EchoNet-Dynamic dataset found"):
        prepare_echonet(tmp_path, tmp_path / "out")
    write_camus_dataset(tmp_path / "raw", patients=4, splits=(2, 1, 1))
    with pytest.raises(ConfigError, match="unknown label set 'rv'"):
        prepare_camus(tmp_path / "raw" / "CAMUS_public", tmp_path / "out", labels="rv")
    with pytest.raises(ConfigError, match="size"):
        prepare_camus(tmp_path / "raw" / "CAMUS_public", tmp_path / "out", size=3)
    (tmp_path / "raw" / "CAMUS_public" / "database_split" / "subgroup_training.txt").unlink()
    with pytest.raises(DataError, match="subgroup_training.txt: split file not found"):
        prepare_camus(tmp_path / "raw" / "CAMUS_public", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_verify_store_names_the_changed_file(tmp_path):
    write_camus_dataset(tmp_path / "raw", patients=4, splits=(2, 1, 1))
    prepare_camus(tmp_path / "raw" / "CAMUS_public", tmp_path / "out", size=16)
    masks = tmp_path / "out" / "camus" / "val" / "masks.npy"
    data = bytearray(masks.read_bytes())
    data[-1] ^= 1
    masks.write_bytes(bytes(data))
    with pytest.raises(DataError, match="SHA-256 does not match") as err:
        verify_store(tmp_path / "out" / "camus")
    assert err.value.path == masks
    # a corrupted store is rebuilt, not trusted
    assert not prepare_camus(tmp_path / "raw" / "CAMUS_public", tmp_path / "out", size=16).up_to_date
    verify_store(tmp_path / "out" / "camus")


def test_open_store_errors(tmp_path):
    with pytest.raises(DataError, match="prepared split folder not found"):
        open_store(tmp_path / "camus" / "train")
    write_camus_dataset(tmp_path / "raw", patients=4, splits=(2, 1, 1))
    prepare_camus(tmp_path / "raw" / "CAMUS_public", tmp_path / "out", size=16)
    (tmp_path / "out" / "camus" / "test" / "labeled.npy").unlink()
    with pytest.raises(DataError, match="labeled.npy: file not found"):
        open_store(tmp_path / "out" / "camus", "test")
    manifest = tmp_path / "out" / "camus" / "val" / "manifest.csv"
    manifest.write_text(manifest.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError, match="0 rows but images.npy holds 2 clips"):
        open_store(tmp_path / "out" / "camus", "val")


def test_echonet_store(tmp_path):
    specs = [
        EchoVideoSpec("V1", ed=5, es=20),
        EchoVideoSpec("V2", ed=8, es=14, es_first=True, split="VAL"),
        EchoVideoSpec("V3", ed=26, es=4, split="TEST", repeats_ed=2),
    ]
    write_echonet_dataset(tmp_path / "raw", specs, extra_filelist=["UNTRACED,50,20,40,112,112,50,30,TRAIN"])
    summary = prepare_echonet(tmp_path / "raw" / "EchoNet-Dynamic", tmp_path / "out", size=64)
    assert summary.counts == {"train": 1, "val": 1, "test": 1} and summary.untraced == 1
    assert any("repeated tracings" in n for n in summary.notes)
    for split, spec in zip(SPLITS, specs, strict=True):
        store = open_store(tmp_path / "out" / "echonet", split)
        row = store.manifest.iloc[0]
        assert row["case_id"] == spec.name and row["spacing_unit"] == "px" and np.isnan(row["spacing_row_mm"])
        assert (row["ed_index"], row["es_index"], row["phase_first"]) == (spec.ed, spec.es, "ED")
        frames = [int(f) for f in row["frame_indices"].split()]
        assert frames[0] == spec.ed and frames[-1] == spec.es
        assert store.labeled[0].tolist() == [True] + [False] * 8 + [True]
        # the default tracing_rows='first' keeps V3's twice-traced ED mask whole (see the test below for 'all')
        assert not store.masks[0, 1:9].any() and store.masks[0, 0].sum() > store.masks[0, 9].sum() > 0
        for t, f in enumerate(frames):
            background = int(np.median(store.images[0, t][:4]))
            assert abs(background - echonet_background(f)) <= 3
    test_row = open_store(tmp_path / "out" / "echonet", "test").manifest.iloc[0]
    assert test_row["frame_indices"] == "26 26 27 28 29 0 1 2 3 4"  # cyclic forward ED=26 -> ES=4 wraps at 30


def test_echonet_earlier_later_and_bad_cases(tmp_path):
    specs = [EchoVideoSpec("V1", ed=18, es=6), EchoVideoSpec("V2"), EchoVideoSpec("V3"), EchoVideoSpec("V4")]
    root = write_echonet_dataset(
        tmp_path / "raw",
        specs,
        extra_filelist=["V5,abc,20,40,112,112,50,30,TRAIN"],
        extra_tracings=["0X4F8859C8AB4DA9CB.avi,1,2,3,4,5"] * 21,
    )
    (root / "Videos" / "V2.avi").write_bytes(b"not a video")
    (root / "Videos" / "V3.avi").unlink()
    lines = (root / "VolumeTracings.csv").read_text().splitlines()
    # V4: shrink its ES polygon to a sliver that rasterises to nothing
    lines = [
        ln
        if not ln.startswith("V4.avi") or not ln.endswith(",20")
        else ",".join(ln.split(",")[:1] + ["56.2", "50.2", "56.3", "50.3", "20"])
        for ln in lines
    ]
    (root / "VolumeTracings.csv").write_text("\n".join(lines) + "\n")
    summary = prepare_echonet(tmp_path / "raw" / "EchoNet-Dynamic", tmp_path / "out", size=32, clip="earlier-later")
    assert summary.counts == {"train": 1, "val": 0, "test": 0}
    text = "\n".join(str(b) for b in summary.bad_cases)
    assert "EchoNet-Dynamic/Videos/V2.avi: video does not decode" in text
    assert "EchoNet-Dynamic/Videos/V3.avi: video file not found" in text
    assert "EchoNet-Dynamic/VolumeTracings.csv: V4.avi frame 20: empty LV mask" in text
    assert "EchoNet-Dynamic/FileList.csv: line" in text and "non-numeric EF 'abc' (V5)" in text
    assert "0X4F8859C8AB4DA9CB" not in text  # a tracing without a FileList row is a note, not a bad case
    assert summary.notes == ["1 tracing(s) without a FileList row ignored: 0X4F8859C8AB4DA9CB.avi",
                             "split 'val' has 0 cases", "split 'test' has 0 cases"]
    assert summary.empty_splits == ["val", "test"]
    row = open_store(tmp_path / "out" / "echonet", "train").manifest.iloc[0]
    assert row["phase_first"] == "ES" and row["frame_indices"].split()[0] == "6"
    empty = open_store(tmp_path / "out" / "echonet", "val")
    assert empty.images.shape == (0, 10, 32, 32) and empty.labeled.shape == (0, 10)
    with pytest.raises(DataError):
        prepare_echonet(tmp_path / "raw" / "EchoNet-Dynamic", tmp_path / "out2", size=32, strict=True)
    assert not (tmp_path / "out2").exists()


ORPHAN = "0X4F8859C8AB4DA9CB"  # the real dataset's tracing without a FileList row (and no video)


def _echonet_tracing_lines(name, frame, rows):
    return [f"{name}.avi,{x1},{y1},{x2},{y2},{frame}" for x1, y1, x2, y2 in rows]


def test_echonet_orphan_tracing_is_a_note_even_when_strict(tmp_path):
    orphan = _echonet_tracing_lines(
        ORPHAN, 7, [[56, 20, 56, 90]] + [[50, 20 + k, 62, 20 + k] for k in range(20)]
    )
    write_echonet_dataset(tmp_path / "raw", [EchoVideoSpec("V1")], extra_tracings=orphan)
    summary = prepare_echonet(tmp_path / "raw" / "EchoNet-Dynamic", tmp_path / "out", size=32, strict=True)
    assert summary.counts == {"train": 1, "val": 0, "test": 0} and summary.bad_cases == []
    notes = [f"1 tracing(s) without a FileList row ignored: {ORPHAN}.avi", "split 'val' has 0 cases",
             "split 'test' has 0 cases"]
    assert summary.notes == notes
    meta = json.loads((tmp_path / "out" / "echonet" / "store.json").read_text())
    assert meta["orphan_tracings"] == [ORPHAN] and meta["notes"] == notes and meta["bad_cases"] == []
    assert meta["skipped_tracing_rows"] == [] and meta["options"]["tracing_rows"] == "first"
    again = prepare_echonet(tmp_path / "raw" / "EchoNet-Dynamic", tmp_path / "out", size=32, strict=True)
    assert again.up_to_date and again.notes == notes


def _echonet_quirky(parent):
    """V1 plain; V2 ED frame traced twice (42 rows); V3 ES frame 25 rows; V4 ED frame 20 rows."""
    specs = [
        EchoVideoSpec("V1"),
        EchoVideoSpec("V2", repeats_ed=2),
        EchoVideoSpec("V3", split="VAL"),
        EchoVideoSpec("V4", split="TEST"),
    ]
    es_rows = np.array([[56.0, 25.0, 56.0, 85.0]] + [[48.0, 30.0 + k, 64.0, 30.0 + k] for k in range(4)])
    root = write_echonet_dataset(parent, specs, extra_tracings=_echonet_tracing_lines("V3", 20, es_rows[1:]))
    path = root / "VolumeTracings.csv"
    lines = path.read_text().splitlines()
    v4_ed = [i for i, ln in enumerate(lines) if ln.startswith("V4.avi,") and ln.endswith(",5")]
    del lines[v4_ed[-1]]  # V4's ED frame keeps 20 rows
    path.write_text("\n".join(lines) + "\n")
    return root


def test_echonet_tracing_rows_all_and_first(tmp_path):
    root = _echonet_quirky(tmp_path / "raw")
    out = tmp_path / "out"
    summary = prepare_echonet(root, out, size=112, tracing_rows="all", strict=True)
    assert summary.counts == {"train": 2, "val": 1, "test": 1} and summary.bad_cases == []
    assert summary.notes == [
        "1 traced frame(s) held repeated tracings (42/63/84 rows); tracing_rows='all': every row after the "
        "first made the mask polygon (echonet/dynamic, GDKVM re-release), whose even-odd fill leaves these "
        "masks largely hollow; ED/ES and gt volumes use the first 21 rows",
        "2 traced frame(s) have a row count that is not a multiple of 21; tracing_rows='all': every row after "
        "the first made the mask polygon (echonet/dynamic, GDKVM re-release); ED/ES and gt volumes use the "
        "first 21 rows (1 frame(s) with fewer than 21 rows: all rows for ED/ES, gt volumes NaN)",
    ]
    train = open_store(out / "echonet", "train")
    v1, v2 = train.manifest["case_id"].tolist(), train.masks[:, 0]
    assert v1 == ["V1", "V2"]
    # the 42-row polygon (two identical tracings, joined through the second long axis) differs from 21 rows
    assert not np.array_equal(v2[0], v2[1])
    assert train.manifest["gt_edv"].iloc[1] == pytest.approx(train.manifest["gt_edv"].iloc[0])
    v4 = open_store(out / "echonet", "test").manifest.iloc[0]
    assert np.isnan(v4["gt_edv"]) and np.isnan(v4["gt_ef"]) and v4["gt_esv"] > 0
    v3 = open_store(out / "echonet", "val").manifest.iloc[0]
    assert v3["gt_ef"] == pytest.approx(v3["ef"], abs=1e-3)  # disk volumes use the first 21 rows only

    first = prepare_echonet(root, out, size=112, tracing_rows="first")
    assert not first.up_to_date  # the policy is part of the cache key
    assert first.notes[0] == (
        "1 traced frame(s) held repeated tracings (42/63/84 rows); tracing_rows='first': the first 21 rows "
        "made the mask polygon (all rows when fewer); ED/ES and gt volumes use the first 21 rows"
    )
    train = open_store(out / "echonet", "train")
    assert np.array_equal(train.masks[0, 0], train.masks[1, 0])  # V2's ED = its first tracing = V1's ED
    assert train.options["tracing_rows"] == "first"
    assert prepare_echonet(root, out, size=112).up_to_date  # 'first' is the default


def test_echonet_tracing_rows_exact_skips_not_bad_cases(tmp_path):
    root = _echonet_quirky(tmp_path / "raw")
    summary = prepare_echonet(root, tmp_path / "out", size=32, tracing_rows="exact", strict=True)
    assert summary.counts == {"train": 1, "val": 0, "test": 0} and summary.bad_cases == []
    assert summary.notes == [
        "3 video(s) skipped by tracing_rows='exact' (MemSAM): a traced frame without exactly 21 rows "
        "(store.json skipped_tracing_rows): V2.avi, V3.avi, V4.avi",
        "split 'val' has 0 cases", "split 'test' has 0 cases",
    ]
    meta = json.loads((tmp_path / "out" / "echonet" / "store.json").read_text())
    assert meta["skipped_tracing_rows"] == ["V2", "V3", "V4"] and meta["untraced"] == []
    assert meta["options"] == {
        "size": 32,
        "sampling": "floor",
        "clip": "ed-es",
        "frames": 10,
        "tracing_rows": "exact",
        "gray": "channel",
        "mask_fill": "skimage",
        "protocol": None,
    }
    assert open_store(tmp_path / "out" / "echonet", "train").manifest["case_id"].tolist() == ["V1"]
    with pytest.raises(ConfigError, match="unknown tracing-rows policy 'most'"):
        prepare_echonet(root, tmp_path / "out2", tracing_rows="most")


def test_echonet_frame_with_two_rows_is_a_bad_case(tmp_path):
    root = write_echonet_dataset(tmp_path / "raw", [EchoVideoSpec("V1"), EchoVideoSpec("V2")])
    path = root / "VolumeTracings.csv"
    lines = path.read_text().splitlines()
    v2_es = [i for i, ln in enumerate(lines) if ln.startswith("V2.avi,") and ln.endswith(",20")]
    for i in reversed(v2_es[2:]):
        del lines[i]
    path.write_text("\n".join(lines) + "\n")
    for policy in ("all", "first", "exact"):
        summary = prepare_echonet(tmp_path / "raw" / "EchoNet-Dynamic", tmp_path / policy, size=32, tracing_rows=policy)
        assert summary.counts["train"] == 1
        assert [str(b) for b in summary.bad_cases] == [
            "EchoNet-Dynamic/VolumeTracings.csv: V2.avi frame 20: 2 row(s), a tracing needs at least 11 "
            "of its 21 (long axis and 20 chords)"
        ]
        with pytest.raises(DataError, match="V2.avi frame 20: 2 row"):
            prepare_echonet(
                tmp_path / "raw" / "EchoNet-Dynamic", tmp_path / f"{policy}-strict", size=32, tracing_rows=policy, strict=True
            )
