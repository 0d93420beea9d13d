"""CAMUS reader: cfg keys, layout discovery, orientation, spacing order, splits and bad files."""

import gzip

import numpy as np
import pytest

from gdkvm.data import camus
from gdkvm.data.cfg import parse_cfg, parse_cfg_text
from gdkvm.errors import DataError
from tests.data.fixtures import (
    CamusCaseSpec,
    camus_frame_value,
    write_camus_case,
    write_camus_dataset,
    write_nifti,
)


def test_cfg_nifti_release_keys(tmp_path):
    path = tmp_path / "Info_4CH.cfg"
    path.write_text(
        "ED: 1\nES: 18\nNbFrame: 18\nSex: F\nAge: 56\nImageQuality: Good\nEF: 54\nFrameRate: 50\n"
    )
    info = parse_cfg(path)
    assert (info.ed, info.es, info.nb_frame) == (1, 18, 18)
    assert (info.sex, info.age, info.image_quality) == ("F", 56, "Good")
    assert info.ef == 54.0 and info.frame_rate == 50.0 and info.edv is None and info.extra == {}


def test_cfg_2019_keys():
    text = "ED: 13\nES: 1\nNbFrame: 13\nSex: M\nAge: 70\nImageQuality: Poor\nLVedv: 120.5\nLVesv: 60.25\nLVef: 50\n"
    info = parse_cfg_text(text)
    assert (info.ed, info.es) == (13, 1)
    assert (info.edv, info.esv, info.ef) == (120.5, 60.25, 50.0)
    assert info.frame_rate is None


@pytest.mark.parametrize(
    "text, problem",
    [
        ("ED: 1\nNbFrame: 5\n", "missing key(s) ES"),
        ("ED: one\nES: 5\nNbFrame: 5\n", "ED: expected an integer"),
        ("ED: 1\nES: 9\nNbFrame: 5\n", "ES=9 outside 1..NbFrame=5"),
        ("ED: 1\nES: 1\nNbFrame: 5\n", "same frame"),
        ("ED 1\nES: 5\nNbFrame: 5\n", "line 1: expected 'Key: value'"),
        ("ED: 1\nES: 5\nNbFrame: 5\nED: 2\n", "line 4: duplicate key 'ED' with another value"),
    ],
)
def test_cfg_errors_name_the_file(tmp_path, text, problem):
    path = tmp_path / "Info_2CH.cfg"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        parse_cfg(path)
    assert problem in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_cfg_tolerates_a_bom_repeats_and_bad_optional_values(tmp_path):
    """Other CAMUS readers ignore unreadable optional values; here they become None plus a warning."""
    path = tmp_path / "Info_2CH.cfg"
    path.write_bytes(b"\xef\xbb\xbfED: 1\nES: 5\nNbFrame: 5\nNbFrame: 5\nAge:\nEF: nan\nFrameRate: 48.4\n")
    info = parse_cfg(path)
    assert (info.ed, info.es, info.nb_frame) == (1, 5, 5)
    assert info.age is None and info.ef is None and info.frame_rate == 48.4
    assert info.warnings == ("EF: expected a finite number, got 'nan'; ignored",)
    assert parse_cfg_text("ED: 1\nES: 5\nNbFrame: 5\nEF: high\n").warnings == (
        "EF: expected a number, got 'high'; ignored",
    )


def test_cfg_warnings_reach_the_store_notes(tmp_path):
    from gdkvm.data.store import prepare_camus

    root = write_camus_dataset(tmp_path / "raw", patients=3, splits=(1, 1, 1))
    cfg = root / "database_nifti" / "patient0001" / "Info_4CH.cfg"
    cfg.write_text(cfg.read_text().replace("Age: ", "Age: unknown\nX: ") if "Age: " in cfg.read_text()
                   else cfg.read_text() + "Age: unknown\n")
    summary = prepare_camus(tmp_path / "raw" / "CAMUS_public", tmp_path / "out", size=32, strict=True)
    assert not summary.bad_cases
    assert any(n.startswith("patient0001/Info_4CH.cfg: Age: expected an integer") for n in summary.notes)


def test_root_must_be_the_dataset_folder(tmp_path):
    root = write_camus_dataset(tmp_path / "raw", patients=4, splits=(2, 1, 1))
    assert camus.find_camus_root(root) == root.resolve()
    # a parent folder is refused in one line that names the folder found below and the flag
    with pytest.raises(DataError) as err:
        camus.find_camus_root(tmp_path / "raw")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'raw'}: not a dataset folder of CAMUS")
    assert "database_nifti/" in message and f"--root {root}" in message and "--search-below" in message
    # searching below only when asked, two levels at most
    assert camus.find_camus_root(tmp_path / "raw", search_below=True) == root.resolve()
    assert camus.find_camus_root(tmp_path, search_below=True) == root.resolve()
    with pytest.raises(DataError, match="folder not found"):
        camus.find_camus_root(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no CAMUS dataset found there or up to 2 levels below it"):
        camus.find_camus_root(tmp_path / "empty", search_below=True)
    with pytest.raises(DataError, match="no CAMUS dataset found there$"):
        camus.find_camus_root(tmp_path / "empty")


def test_search_below_refuses_to_choose_between_two_copies(tmp_path):
    first = write_camus_dataset(tmp_path / "a", patients=3, splits=(1, 1, 1))
    second = write_camus_dataset(tmp_path / "b", patients=3, splits=(1, 1, 1))
    with pytest.raises(DataError, match="2 CAMUS datasets found below it") as err:
        camus.find_camus_root(tmp_path, search_below=True)
    assert str(first) in str(err.value) and str(second) in str(err.value)


def test_load_case_shapes_spacing_and_labels(tmp_path):
    root = tmp_path / "CAMUS_public"
    spec = CamusCaseSpec(n_frames=6, height=24, width=20, spacing_xy=(0.3, 0.2))
    written = write_camus_case(root, "patient0001", "4CH", spec)
    case = camus.load_camus_case(root, "patient0001", "4CH")
    assert case.case_id == "patient0001_4CH"
    assert case.images.shape == (6, 24, 20) and case.images.dtype == np.uint8
    assert np.array_equal(case.images, written["images"])
    assert np.array_equal(case.labels, written["labels"])
    assert set(np.unique(case.labels).tolist()) == {0, 1, 2, 3}
    # header zooms are (sx, sy) = (0.3, 0.2); the reader returns (row, col) = (sy, sx)
    assert case.spacing == pytest.approx((0.2, 0.3), rel=1e-6)
    assert (case.ed_index, case.es_index, case.reversed) == (0, 5, False)
    assert case.info.ef == 55.0
    lv = camus.select_labels(case.labels, "lv")
    assert set(np.unique(lv).tolist()) == {0, 1}
    assert np.array_equal(camus.select_labels(case.labels, "all"), case.labels)


def test_es_to_ed_sequence_is_flipped(tmp_path):
    root = tmp_path / "CAMUS_public"
    written = write_camus_case(root, "patient0002", "2CH", CamusCaseSpec(n_frames=7, reversed=True))
    assert (written["ed"], written["es"]) == (7, 1)  # cfg says ED = NbFrame
    case = camus.load_camus_case(root, "patient0002", "2CH")
    assert case.reversed and (case.ed_index, case.es_index) == (0, 6)
    # oriented frame t carries the ED->ES intensity of step t
    assert [int(case.images[t, 0, 0]) for t in range(7)] == [camus_frame_value(t) for t in range(7)]
    assert np.array_equal(case.images, written["images"][::-1])
    assert np.array_equal(case.labels[0], written["labels"][6])  # ED = last frame in the file
    assert case.source_index(np.arange(7)).tolist() == [6, 5, 4, 3, 2, 1, 0]
    # the ED mask (larger LV) comes first after orientation
    assert (case.labels[0] == 1).sum() > (case.labels[-1] == 1).sum()


def test_official_and_memsam_splits(tmp_path):
    root = write_camus_dataset(tmp_path, patients=6, splits=(3, 1, 2))
    split = camus.read_official_split(root)
    assert split == {
        "train": ["patient0001", "patient0002", "patient0003"],
        "val": ["patient0004"],
        "test": ["patient0005", "patient0006"],
    }
    names = [f"patient{i:04d}" for i in range(500, 0, -1)]
    memsam = camus.memsam_split(names)
    numbers = {k: [camus.patient_number(n) for n in v] for k, v in memsam.items()}
    assert numbers["train"] == list(range(1, 351))
    assert numbers["val"] == list(range(351, 401))
    assert numbers["test"] == list(range(401, 501))
    small = camus.memsam_split([f"patient{i:04d}" for i in range(1, 21)])
    assert [len(small[k]) for k in ("train", "val", "test")] == [14, 2, 4]


def test_split_file_problems(tmp_path):
    root = write_camus_dataset(tmp_path, patients=4, splits=(2, 1, 1))
    val = root / "database_split" / "subgroup_validation.txt"
    val.write_text("patient0001\n")
    with pytest.raises(DataError, match="already listed"):
        camus.read_official_split(root)
    val.unlink()
    with pytest.raises(DataError, match="split file not found") as err:
        camus.read_official_split(root)
    assert "subgroup_validation.txt" in str(err.value)


def _case_paths(root, patient="patient0001", view="2CH"):
    return camus.case_files(root, patient, view)


def test_truncated_nifti(tmp_path):
    root = tmp_path / "CAMUS_public"
    write_camus_case(root, "patient0001", "2CH")
    image = _case_paths(root).image
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read NIfTI") as err:
        camus.load_camus_case(root, "patient0001", "2CH")
    assert err.value.path == image and "\n" not in str(err.value)


def test_not_a_nifti(tmp_path):
    root = tmp_path / "CAMUS_public"
    write_camus_case(root, "patient0001", "2CH")
    gt = _case_paths(root).gt
    gt.write_bytes(gzip.compress(b"not a nifti header at all" * 20))
    with pytest.raises(DataError, match="cannot read NIfTI") as err:
        camus.load_camus_case(root, "patient0001", "2CH")
    assert err.value.path == gt


def test_shape_mismatch_between_image_and_gt(tmp_path):
    root = tmp_path / "CAMUS_public"
    write_camus_case(root, "patient0001", "2CH", CamusCaseSpec(n_frames=5))
    gt = _case_paths(root).gt
    write_nifti(gt, np.zeros((5, 24, 22), np.uint8), (0.3, 0.2))
    with pytest.raises(DataError, match="does not match image") as err:
        camus.load_camus_case(root, "patient0001", "2CH")
    assert err.value.path == gt


def test_frame_count_must_match_cfg(tmp_path):
    root = tmp_path / "CAMUS_public"
    write_camus_case(root, "patient0001", "2CH", CamusCaseSpec(n_frames=5))
    cfg = _case_paths(root).cfg
    cfg.write_text(cfg.read_text().replace("NbFrame: 5", "NbFrame: 6").replace("ES: 5", "ES: 6"))
    with pytest.raises(DataError, match="5 frames but NbFrame=6"):
        camus.load_camus_case(root, "patient0001", "2CH")


def test_invalid_label_values(tmp_path):
    root = tmp_path / "CAMUS_public"
    write_camus_case(root, "patient0001", "2CH", CamusCaseSpec(n_frames=5))
    gt = _case_paths(root).gt
    write_nifti(gt, np.full((5, 24, 20), 7, np.uint8), (0.3, 0.2))
    with pytest.raises(DataError, match="unexpected label values"):
        camus.load_camus_case(root, "patient0001", "2CH")


def test_missing_patient_and_files(tmp_path):
    root = write_camus_dataset(tmp_path, patients=4, splits=(2, 1, 1))
    with pytest.raises(DataError, match="patient folder not found"):
        camus.load_camus_case(root, "patient0099", "2CH")
    _case_paths(root).cfg.unlink()
    with pytest.raises(DataError, match="file not found") as err:
        camus.load_camus_case(root, "patient0001", "2CH")
    assert err.value.path.name == "Info_2CH.cfg"
