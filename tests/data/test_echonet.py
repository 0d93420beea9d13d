"""EchoNet reader: CSV validation, tracing grouping, ED/ES by area, masks, video decode, bad cases."""

import numpy as np
import pytest
from skimage.draw import polygon as sk_polygon

from gdkvm.data import echonet
from gdkvm.errors import DataError
from tests.data.fixtures import (
    EchoVideoSpec,
    echonet_background,
    ellipse_tracing,
    write_avi,
    write_echonet_dataset,
)

ORPHAN = "0X4F8859C8AB4DA9CB"  # the real dataset's tracing without a FileList row
HEADER = "FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split\n"


def test_find_root(tmp_path):
    root = write_echonet_dataset(tmp_path / "raw", [EchoVideoSpec("V1")])
    assert echonet.find_echonet_root(root) == root.resolve()
    with pytest.raises(DataError, match="not a dataset folder of EchoNet-Dynamic .expected FileList.csv") as err:
        echonet.find_echonet_root(tmp_path)
    assert f"found below it at {root}" in str(err.value) and "--search-below" in str(err.value)
    assert echonet.find_echonet_root(tmp_path / "raw", search_below=True) == root.resolve()
    assert echonet.find_echonet_root(tmp_path, search_below=True) == root.resolve()
    with pytest.raises(DataError, match="no EchoNet-Dynamic dataset found"):
        echonet.find_echonet_root(root / "Videos", search_below=True)
    deep = write_echonet_dataset(tmp_path / "x" / "y" / "z", [EchoVideoSpec("V1")])
    with pytest.raises(DataError, match="no EchoNet-Dynamic dataset found there or up to 2 levels below it"):
        echonet.find_echonet_root(tmp_path / "x", search_below=True)
    assert echonet.find_echonet_root(tmp_path / "x" / "y", search_below=True) == deep.resolve()


def test_filelist_rows_validated(tmp_path):
    path = tmp_path / "FileList.csv"
    path.write_text(
        HEADER
        + "A,55.0,30,70,112,112,50,40,TRAIN\n"
        + "B,abc,30,70,112,112,50,40,VAL\n"
        + "C,55.0,30,70,112,112,50,40,HOLDOUT\n"
        + "A,55.0,30,70,112,112,50,40,TEST\n"
        + "D.avi,60.5,20,50,112,112,50,,TEST\n"
    )
    entries, problems = echonet.read_filelist(path)
    assert list(entries) == ["A"]
    assert entries["A"].split == "train" and entries["A"].n_frames == 40 and entries["A"].ef == 55.0
    messages = [str(p) for p in problems]
    assert all(str(path) in m and "\n" not in m for m in messages)
    assert any("line 3: non-numeric EF 'abc' (B)" in m for m in messages)
    assert any("unknown Split 'HOLDOUT'" in m for m in messages)
    assert any("duplicate FileName A" in m for m in messages)
    assert any("non-numeric NumberOfFrames" in m and "(D)" in m for m in messages)


def test_filelist_header_and_missing_file(tmp_path):
    path = tmp_path / "FileList.csv"
    path.write_text("FileName,EF,Split\nA,50,TRAIN\n")
    with pytest.raises(DataError, match="missing column"):
        echonet.read_filelist(path)
    with pytest.raises(DataError, match="file not found"):
        echonet.read_filelist(tmp_path / "nope.csv")


def test_tracings_header_is_exact(tmp_path):
    path = tmp_path / "VolumeTracings.csv"
    path.write_text("FileName,X1,Y1,X2,Y2,FrameIndex\nA.avi,1,2,3,4,5\n")
    with pytest.raises(DataError, match="header FileName,X1,Y1,X2,Y2,FrameIndex is not"):
        echonet.read_tracings(path)


def _tracing_lines(name, frame, rows):
    return [f"{name}.avi,{x1},{y1},{x2},{y2},{frame}" for x1, y1, x2, y2 in rows]


def test_tracings_grouping_repeats_and_bad_counts(tmp_path):
    rows_a = ellipse_tracing(56, 20, 70, 20)
    rows_b = ellipse_tracing(56, 25, 60, 14)
    lines = ["FileName,X1,Y1,X2,Y2,Frame"]
    lines += (
        _tracing_lines("A", 10, rows_a) + _tracing_lines("A", 10, rows_b) + _tracing_lines("A", 3, rows_b)
    )
    lines += _tracing_lines("B", 4, rows_a[:20]) + _tracing_lines("B", 9, rows_b)  # 20 rows: odd count
    lines += _tracing_lines("C", 4, rows_a)
    lines += ["C.avi,1,2,x,4,9"] + _tracing_lines("C", 9, rows_b)[1:]
    lines += _tracing_lines("D", 4, rows_a[:2]) + _tracing_lines("D", 9, rows_b)  # 2 rows: no polygon
    path = tmp_path / "VolumeTracings.csv"
    path.write_text("\n".join(lines) + "\n")
    table = echonet.read_tracings(path)
    assert list(table.videos) == ["A", "B"]
    frames = table.videos["A"]
    assert [t.frame for t in frames] == [10, 3]
    assert [t.n_rows for t in frames] == [42, 21]
    assert table.multi_tracing_frames == 1 and table.odd_row_frames == 1
    assert np.allclose(frames[0].coords, np.concatenate([rows_a, rows_b]))  # every row of the frame kept
    assert [t.n_rows for t in table.videos["B"]] == [20, 21]
    assert all(t.rows == "first" for t in frames)  # the default policy
    assert sorted(table.problems) == ["C", "D"]
    assert "non-numeric X2 'x'" in str(table.problems["C"])
    assert str(table.problems["D"]) == (
        f"{path}: D.avi frame 4: 2 row(s), a tracing needs at least 11 of its 21 (long axis and 20 chords)"
    )
    assert [t.rows for t in echonet.read_tracings(path, "first").videos["A"]] == ["first", "first"]
    with pytest.raises(ValueError, match="unknown tracing_rows 'some'"):
        echonet.read_tracings(path, "some")


def test_polygon_rows_per_policy():
    rows_a = ellipse_tracing(56, 20, 70, 20)
    rows_b = ellipse_tracing(56, 25, 60, 14)
    both = np.concatenate([rows_a, rows_b])  # a frame traced twice: 42 rows
    every = echonet.FrameTracing(frame=3, coords=both, rows="all")
    x, y = every.polygon()
    assert x.shape == y.shape == (82,)  # 41 chords: rows 2..42 (the second long axis included)
    assert np.allclose(x[:41], both[1:, 0]) and np.allclose(x[41:], both[:0:-1, 2])
    assert np.allclose(y[:41], both[1:, 1]) and np.allclose(y[41:], both[:0:-1, 3])
    first = echonet.FrameTracing(frame=3, coords=both, rows="first")
    x, y = first.polygon()
    single = echonet.FrameTracing(frame=3, coords=rows_a)
    assert (
        x.shape == (40,) and np.array_equal(x, single.polygon()[0]) and np.array_equal(y, single.polygon()[1])
    )
    assert first.area() == single.area() and np.array_equal(first.mask((112, 112)), single.mask((112, 112)))
    exact = echonet.FrameTracing(frame=3, coords=rows_a, rows="exact")
    assert np.array_equal(exact.polygon()[0], single.polygon()[0])
    # the disk volume always comes from the first tracing's 21 rows
    assert every.disk_volume() == first.disk_volume() == single.disk_volume() > 0
    # odd counts: 25 rows -> 24 chords under 'all', the first 21 rows under 'first'; 20 rows -> 19 chords
    odd = np.concatenate([rows_a, rows_b[1:5]])
    assert echonet.FrameTracing(0, odd, "all").polygon()[0].shape == (48,)
    assert echonet.FrameTracing(0, odd, "first").polygon()[0].shape == (40,)
    assert echonet.FrameTracing(0, odd, "all").disk_volume() == single.disk_volume()
    short = echonet.FrameTracing(0, rows_a[:20], "first")
    assert short.polygon()[0].shape == (38,) and short.area() > 0
    assert np.isnan(short.disk_volume())


def test_polygon_mask_area_and_disks():
    rows = ellipse_tracing(56, 20, 70, 20)
    tracing = echonet.FrameTracing(frame=0, coords=rows)
    assert tracing.rows == "first" and tracing.n_rows == 21  # the default policy
    x, y = tracing.polygon()
    assert np.allclose(x[:20], rows[1:, 0]) and np.allclose(x[20:], rows[:0:-1, 2])
    assert np.allclose(y[:20], rows[1:, 1]) and np.allclose(y[20:], rows[:0:-1, 3])
    mask = tracing.mask((112, 112))
    rr, cc = sk_polygon(np.rint(y).astype(int), np.rint(x).astype(int), (112, 112))
    expected = np.zeros((112, 112), np.uint8)
    expected[rr, cc] = 1
    assert np.array_equal(mask, expected)
    assert abs(mask.sum() - tracing.area()) / tracing.area() < 0.1
    # ellipse with semi-axes 35 x 20: area pi*a*b; chords sample it, so a few percent off
    assert tracing.area() == pytest.approx(np.pi * 35 * 20, rel=0.05)
    # method of disks on an ellipse of revolution: V = 4/3 pi a b^2
    assert tracing.disk_volume() == pytest.approx(4 / 3 * np.pi * 35 * 20**2, rel=0.02)


def test_coordinates_outside_the_frame_are_clipped():
    rows = ellipse_tracing(56, -10, 140, 70)  # spills past every border
    mask = echonet.FrameTracing(frame=0, coords=rows).mask((112, 112))
    assert mask.shape == (112, 112) and mask.any() and set(np.unique(mask).tolist()) <= {0, 1}


def test_index_joins_and_counts_problems(tmp_path):
    specs = [
        EchoVideoSpec("V1"),
        EchoVideoSpec("V2", es_first=True, split="VAL"),
        EchoVideoSpec("V3", split="TEST"),
    ]
    root = write_echonet_dataset(
        tmp_path,
        specs,
        extra_filelist=["UNTRACED,50,20,40,112,112,50,30,TRAIN", "BADROW,abc,20,40,112,112,50,30,TRAIN"],
        extra_tracings=_tracing_lines(ORPHAN, 2, ellipse_tracing(56, 20, 70, 20))
        + _tracing_lines("BADROW", 2, ellipse_tracing(56, 20, 70, 20)),
    )
    (root / "Videos" / "V3.avi").unlink()
    index = echonet.index_echonet(root)
    assert [e.info.file_name for e in index.entries] == ["V1", "V2"]
    assert index.untraced == ["UNTRACED"]
    # a tracing without any FileList row is listed apart, not a problem; one whose FileList row is
    # malformed is covered by that row's problem
    assert index.orphan_tracings == [ORPHAN]
    messages = [str(p) for p in index.problems]
    assert len(messages) == 2
    assert any("non-numeric EF 'abc' (BADROW)" in m for m in messages)
    assert any(m.endswith("V3.avi: video file not found") for m in messages)
    assert not any(ORPHAN in m for m in messages)


def _drop_tracing_line(root, name, frame, k):
    """Delete the k-th CSV row of ``name``'s traced ``frame``."""
    path = root / "VolumeTracings.csv"
    lines = path.read_text().splitlines()
    hits = [i for i, ln in enumerate(lines) if ln.startswith(f"{name}.avi,") and ln.endswith(f",{frame}")]
    del lines[hits[k]]
    path.write_text("\n".join(lines) + "\n")


def _quirky_dataset(parent):
    """V1 plain; V2 ED frame traced twice (42 rows); V3 ES frame 25 rows; V4 ES frame 20 rows."""
    specs = [
        EchoVideoSpec("V1"),
        EchoVideoSpec("V2", repeats_ed=2),
        EchoVideoSpec("V3", split="VAL"),
        EchoVideoSpec("V4", split="TEST", es_first=True),
    ]
    extra = _tracing_lines("V3", 20, ellipse_tracing(56, 25, 60, 14)[1:5])
    root = write_echonet_dataset(parent, specs, extra_tracings=extra)
    _drop_tracing_line(root, "V4", 20, -1)
    return root


def _row_counts(index):
    return {e.info.file_name: [t.n_rows for t in e.tracings] for e in index.entries}


def test_index_tracing_rows_all(tmp_path):
    index = echonet.index_echonet(_quirky_dataset(tmp_path), "all")
    assert index.tracing_rows == "all" and not index.problems and not index.skipped_rows
    assert _row_counts(index) == {"V1": [21, 21], "V2": [42, 21], "V3": [21, 25], "V4": [20, 21]}
    assert (index.multi_tracing_frames, index.odd_row_frames) == (1, 2)
    entry = {e.info.file_name: e for e in index.entries}
    assert entry["V2"].tracings[0].polygon()[0].shape == (82,)
    assert entry["V3"].tracings[1].polygon()[0].shape == (48,)
    assert entry["V4"].tracings[0].polygon()[0].shape == (38,)
    case = echonet.load_echonet_case(entry["V4"])
    assert (case.ed_frame, case.es_frame) == (5, 20)
    assert np.isnan(case.es_tracing.disk_volume()) and case.ed_tracing.disk_volume() > 0


def test_index_tracing_rows_first(tmp_path):
    index = echonet.index_echonet(_quirky_dataset(tmp_path), "first")
    assert _row_counts(index)["V2"] == [42, 21]  # every row is still held
    v2 = next(e for e in index.entries if e.info.file_name == "V2")
    assert v2.tracings[0].rows == "first" and v2.tracings[0].polygon()[0].shape == (40,)
    assert (index.multi_tracing_frames, index.odd_row_frames, index.skipped_rows) == (1, 2, [])


def test_index_tracing_rows_exact_skips(tmp_path):
    root = _quirky_dataset(tmp_path)
    (root / "Videos" / "V3.avi").unlink()  # a skipped video needs no AVI
    index = echonet.index_echonet(root, "exact")
    assert _row_counts(index) == {"V1": [21, 21]}
    assert index.skipped_rows == ["V2", "V3", "V4"] and not index.problems
    assert (index.multi_tracing_frames, index.odd_row_frames) == (0, 0)


def test_ed_chosen_by_area_even_when_listed_second(tmp_path):
    root = write_echonet_dataset(tmp_path, [EchoVideoSpec("V1", ed=6, es=21, es_first=True)])
    entry = echonet.index_echonet(root).entries[0]
    assert entry.tracings[0].frame == 21  # ES rows come first in the file
    case = echonet.load_echonet_case(entry)
    assert (case.ed_frame, case.es_frame) == (6, 21)
    assert case.ed_mask.sum() > case.es_mask.sum()
    assert case.video.shape == (30, 112, 112) and case.video.dtype == np.uint8
    for f in (0, 6, 29):
        assert abs(int(case.video[f].mean()) - echonet_background(f)) <= 3


def test_ed_es_by_first_tracing_when_es_is_traced_twice(tmp_path):
    # V1's ES frame 20 (60 x 15 ellipse) traced twice: the 42-row polygon's shoelace area (~2x) and its
    # hollow mask would both misorder ED/ES; the first tracing's area does not
    es_rows = ellipse_tracing(56, 25, 60, 15)
    root = write_echonet_dataset(
        tmp_path, [EchoVideoSpec("V1")], extra_tracings=_tracing_lines("V1", 20, es_rows)
    )
    entry = echonet.index_echonet(root, "all").entries[0]
    ed_t, es_t = entry.tracings
    assert (ed_t.frame, es_t.n_rows) == (5, 42)
    assert es_t.area() > ed_t.area() and es_t.mask((112, 112)).sum() < 0.5 * ed_t.mask((112, 112)).sum()
    case = echonet.load_echonet_case(entry)
    assert (case.ed_frame, case.es_frame) == (5, 20)
    assert es_t.first_tracing_area() == pytest.approx(echonet.FrameTracing(20, es_rows).area(), rel=1e-5)


def test_clip_forms(tmp_path):
    root = write_echonet_dataset(tmp_path, [EchoVideoSpec("V1", ed=25, es=3)])
    case = echonet.load_echonet_case(echonet.index_echonet(root).entries[0])
    idx, ed_first = echonet.clip_indices(case, 10, "floor", "ed-es")
    assert ed_first and idx[0] == 25 and idx[-1] == 3 and np.all(idx < 30)
    idx, ed_first = echonet.clip_indices(case, 10, "floor", "earlier-later")
    assert not ed_first and idx[0] == 3 and idx[-1] == 25 and np.all(np.diff(idx) >= 0)


def test_disk_ef_matches_filelist_ef(tmp_path):
    root = write_echonet_dataset(tmp_path, [EchoVideoSpec("V1", es_first=True)])
    index = echonet.index_echonet(root)
    case = echonet.load_echonet_case(index.entries[0])
    edv, esv = case.ed_tracing.disk_volume(), case.es_tracing.disk_volume()
    assert 100 * (edv - esv) / edv == pytest.approx(case.info.ef, abs=1e-3)


def test_video_that_does_not_decode(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"RIFF" + b"\x00" * 200)
    with pytest.raises(DataError, match="video does not decode") as err:
        echonet.load_video(bad)
    assert err.value.path == bad
    with pytest.raises(DataError, match="video file not found"):
        echonet.load_video(tmp_path / "missing.avi")


def test_traced_frame_beyond_decoded_video(tmp_path):
    root = write_echonet_dataset(tmp_path, [EchoVideoSpec("V1", ed=5, es=20)])
    write_avi(root / "Videos" / "V1.avi", np.zeros((12, 112, 112), np.uint8))
    entry = echonet.index_echonet(root).entries[0]
    with pytest.raises(DataError, match="traced frame 20 >= decoded frame count 12"):
        echonet.load_echonet_case(entry)


def test_wrong_number_of_traced_frames(tmp_path):
    extra = _tracing_lines("V1", 28, ellipse_tracing(56, 20, 60, 10))
    root = write_echonet_dataset(tmp_path, [EchoVideoSpec("V1")], extra_tracings=extra)
    index = echonet.index_echonet(root)
    assert not index.entries
    assert "V1.avi has 3 traced frame(s) (5, 20, 28), expected 2" in str(index.problems[0])


def test_values_that_must_not_pass_strict(tmp_path):
    """A 3-row traced frame (names the video), EF outside 0-100 %, a wrong NumberOfFrames."""
    root = write_echonet_dataset(tmp_path, [EchoVideoSpec("V1", ed=5, es=20), EchoVideoSpec("V2", ed=5, es=20),
                                            EchoVideoSpec("V3", ed=5, es=20)])
    for _k in range(18):  # V1's ES frame keeps 3 of its 21 rows
        _drop_tracing_line(root, "V1", 20, 0)
    filelist = root / "FileList.csv"
    lines = filelist.read_text().splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("V2"))
    cols = lines[i].split(",")
    cols[1] = "358.65"
    lines[i] = ",".join(cols)
    filelist.write_text("\n".join(lines) + "\n")
    index = echonet.index_echonet(root)
    problems = " | ".join(map(str, index.problems))
    assert "V1.avi frame 20: 3 row(s)" in problems and "EF 358.65 is outside 0-100 %" in problems
    assert [e.info.file_name for e in index.entries] == ["V3"]
    write_avi(root / "Videos" / "V3.avi", np.zeros((25, 112, 112), np.uint8))
    with pytest.raises(DataError, match=r"V3.avi: decodes to 25 frames, but FileList.csv NumberOfFrames says 30"):
        echonet.load_echonet_case(index.entries[0])
