"""`gdkvm prepare folder`: a hand-built folder of AVI / NIfTI recordings with PNG / NIfTI LV masks goes through
prepare (library and CLI), a 2-iteration `gdkvm train`, `gdkvm evaluate` and `gdkvm report`; each kind of bad case gives a
one-line DataError naming the file, skipped and listed, or fatal with --strict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gdkvm.cli.main import app
from gdkvm.data.prepare_folder import prepare_folder, seeded_split
from gdkvm.data.sampling import sample_indices
from gdkvm.data.store import open_store, read_store_meta, verify_store
from gdkvm.errors import DataError
from tests.data.fixtures import write_nifti

runner = CliRunner()
N_FRAMES, HEIGHT, WIDTH = 12, 48, 40
PNG_FRAMES = (2, 5, 9)  # labelled frames of the AVI cases
NII_FRAMES = (1, 4, 10)  # labelled (non-empty) frames of the NIfTI label maps


pytestmark = pytest.mark.usefixtures("module_one_thread")


def phantom_clip(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames, LV masks), both (T, H, W) uint8: a dark elliptic cavity that contracts and relaxes in speckled
    tissue, the phantom's look in miniature."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = np.zeros((N_FRAMES, HEIGHT, WIDTH), np.uint8)
    masks = np.zeros_like(frames)
    for t in range(N_FRAMES):
        k = 1.0 - 0.35 * math.sin(math.pi * t / (N_FRAMES - 1))
        r = ((rows - HEIGHT * 0.45) / (HEIGHT * 0.3 * k)) ** 2 + ((cols - WIDTH / 2) / (WIDTH * 0.22 * k)) ** 2
        lv = r <= 1.0
        tissue = np.clip(rng.normal(150, 25, (HEIGHT, WIDTH)), 0, 255)
        frames[t] = np.where(lv, 30, tissue).astype(np.uint8)
        masks[t] = lv
    return frames, masks


def write_avi(path: Path, frames: np.ndarray, fps: float = 25.0) -> None:
    """MJPG AVI, or MPEG-4 part 2 for a ``.mp4`` name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix == ".mp4" else "MJPG"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (WIDTH, HEIGHT), True)
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()


def write_png_masks(folder: Path, masks: np.ndarray, frames=PNG_FRAMES) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in frames:
        assert cv2.imwrite(str(folder / f"{f}.png"), masks[f])


def build_folder(root: Path, avi_cases=("c0", "c1", "c2"), nii_cases=("n0", "n1"), mp4_cases=()) -> Path:
    """``root/videos`` + ``root/masks``: AVI (and MP4) cases with PNG masks on PNG_FRAMES, NIfTI cases with
    NIfTI label maps labelled on NII_FRAMES (other frames all background)."""
    for k, case in enumerate((*avi_cases, *mp4_cases)):
        frames, masks = phantom_clip(k)
        write_avi(root / "videos" / f"{case}.{'mp4' if case in mp4_cases else 'avi'}", frames)
        write_png_masks(root / "masks" / case, masks)
    for k, case in enumerate(nii_cases):
        frames, masks = phantom_clip(100 + k)
        write_nifti(root / "videos" / f"{case}.nii.gz", frames, (0.3, 0.25))
        labels = np.zeros_like(masks)
        labels[list(NII_FRAMES)] = masks[list(NII_FRAMES)]
        write_nifti(root / "masks" / f"{case}.nii.gz", labels, (0.3, 0.25))
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return build_folder(tmp_path_factory.mktemp("byo") / "echo", avi_cases=("c0", "c1"), mp4_cases=("c2",))


def test_prepare_folder_writes_a_store_from_the_first_to_the_last_labelled_frame(folder, tmp_path):
    (folder / "meta.csv").write_text("case,fps,spacing_row_mm,spacing_col_mm,view,ef\nc0,30,0.5,0.4,A4C,61.5\n")
    try:
        summary = prepare_folder(folder, tmp_path / "prepared", size=32, frames=6, seed=3)
        again = prepare_folder(folder, tmp_path / "prepared", size=32, frames=6, seed=3)
    finally:
        (folder / "meta.csv").unlink()
    assert again.up_to_date and again.counts == summary.counts
    assert not summary.bad_cases, summary.bad_cases
    assert summary.counts == {"train": 3, "val": 1, "test": 1}
    assert summary.out_dir == tmp_path / "prepared" / "folder"
    meta = verify_store(summary.out_dir)
    assert meta["dataset"] == "folder" and meta["source_root"] == str(folder.resolve())
    assert meta["options"] == {"size": 32, "frames": 6, "sampling": "floor", "seed": 3, "name": "folder"}
    assert {"videos/c0.avi", "videos/c2.mp4", "masks/c0/2.png", "masks/n1.nii.gz", "meta.csv"} <= set(meta["input_files"])
    assert meta["split_source"].startswith("seeded")
    split_of = seeded_split(["c0", "c1", "c2", "n0", "n1"], 3)
    rows = {}
    for split in ("train", "val", "test"):
        store = open_store(summary.out_dir, split)
        for pos, row in store.manifest.iterrows():
            assert split_of[row["case_id"]] == split
            rows[row["case_id"]] = (store, pos, row)
    assert set(rows) == {"c0", "c1", "c2", "n0", "n1"}

    store, pos, row = rows["c1"]
    expected = sample_indices(PNG_FRAMES[0], PNG_FRAMES[-1], 6, "floor")
    assert row["frame_indices"] == " ".join(map(str, expected))
    assert store.labeled[pos].tolist() == [int(i) in PNG_FRAMES for i in expected]
    _, masks = phantom_clip(1)
    for t, frame in enumerate(expected.tolist()):
        want = cv2.resize(masks[frame], (32, 32), interpolation=cv2.INTER_NEAREST) if frame in PNG_FRAMES else 0
        assert np.array_equal(store.masks[pos, t], np.broadcast_to(want, (32, 32)))
    # the cavity is largest at the clip's first labelled frame here (frame 2 vs 9): ED first
    assert row["phase_first"] == "ED" and row["spacing_unit"] == "px" and math.isnan(row["ef"])
    assert row["source_height"] == HEIGHT and row["n_source_frames"] == N_FRAMES

    _, _, c0 = rows["c0"]
    assert c0["view"] == "A4C" and c0["fps"] == 30 and c0["ef"] == 61.5 and c0["spacing_unit"] == "mm"
    assert c0["spacing_row_mm"] == pytest.approx(0.5 * HEIGHT / 32) and c0["gt_volume_method"] == "single-plane-disks-mL"
    store, pos, n0 = rows["n0"]
    expected = sample_indices(NII_FRAMES[0], NII_FRAMES[-1], 6, "floor")
    assert store.labeled[pos].tolist() == [int(i) in NII_FRAMES for i in expected]
    assert n0["spacing_unit"] == "mm" and n0["spacing_row_mm"] == pytest.approx(0.25 * HEIGHT / 32)


def test_splits_csv_decides_the_split_and_unlisted_cases_are_noted(folder, tmp_path):
    (folder / "splits.csv").write_text("case,split\nc0,train\nc1,train\nn0,val\nn1,test\n")
    try:
        summary = prepare_folder(folder, tmp_path / "out", size=32, frames=4)
    finally:
        (folder / "splits.csv").unlink()
    assert summary.counts == {"train": 2, "val": 1, "test": 1}
    assert any("not in splits.csv" in n and "c2" in n for n in summary.notes)
    assert read_store_meta(summary.out_dir)["split_source"] == "splits.csv"
    assert open_store(summary.out_dir, "val").manifest["case_id"].tolist() == ["n0"]


def test_prepare_folder_cli_then_train_and_evaluate(folder, tmp_path):
    out = tmp_path / "prepared"
    result = runner.invoke(app, ["prepare", "folder", "--root", str(folder), "--out", str(out), "--size", "64",
                                 "--frames", "6", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "prepared folder" in result.output
    doctor = runner.invoke(app, ["doctor", "--data", str(out), "--no-check-triton"])
    assert "prepared folder" in doctor.output
    data = out / "folder"
    result = runner.invoke(app, ["train", "--data", str(data), "--preset", "tiny", "--device", "cpu",
                                 "--iterations", "2", "--batch-size", "2", "--val-every", "1", "--ckpt-every", "1",
                                 "--out", str(tmp_path / "runs"), "--name", "byo"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "byo"
    assert json.loads((run / "train_done.json").read_text())["iteration"] == 2
    result = runner.invoke(app, ["evaluate", "--run", str(run), "--device", "cpu", "--n-boot", "20"])
    assert result.exit_code == 0, result.output
    assert "Dice x100" in result.output
    summary = json.loads((run / "eval" / "test" / "summary.json").read_text())
    assert summary["dataset"] == "folder"
    report = tmp_path / "report"
    result = runner.invoke(app, ["report", "--runs", str(tmp_path / "runs"), "--out", str(report),
                                 "--bench", str(tmp_path / "no-bench")])
    assert result.exit_code == 0, result.output
    assert (report / "index.html").is_file() and "byo" in (report / "report.md").read_text()


def test_prepare_folder_help_has_an_example():
    result = runner.invoke(app, ["prepare", "folder", "--help"])
    assert result.exit_code == 0
    assert "Examples" in result.output and "--root" in result.output and "splits.csv" in result.output


# ---------------------------------------------------------------------------------------------- bad cases


def _mask_too_big(root: Path) -> str:
    _, masks = phantom_clip(0)
    cv2.imwrite(str(root / "masks" / "c0" / "5.png"), np.zeros((HEIGHT + 2, WIDTH), np.uint8))
    return "masks/c0/5.png", "mask is 50x40 px, the video 48x40"


def _labels_not_binary(root: Path) -> str:
    _, masks = phantom_clip(0)
    cv2.imwrite(str(root / "masks" / "c0" / "5.png"), masks[5] * 255)
    return "masks/c0/5.png", "labels other than 0/1: 255"


def _frame_past_end(root: Path) -> str:
    _, masks = phantom_clip(0)
    cv2.imwrite(str(root / "masks" / "c0" / "12.png"), masks[0])
    return "masks/c0/12.png", "frame 12 is past the end of the video (12 frames"


def _unreadable_video(root: Path) -> str:
    (root / "videos" / "c0.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage")
    return "videos/c0.avi", ""


def _unreadable_png(root: Path) -> str:
    (root / "masks" / "c0" / "5.png").write_bytes(b"not a png")
    return "masks/c0/5.png", "unreadable PNG"


def _one_labelled_frame(root: Path) -> str:
    for f in PNG_FRAMES[1:]:
        (root / "masks" / "c0" / f"{f}.png").unlink()
    return "masks/c0", "1 labelled frame(s); at least 2 are needed"


def _nifti_mask_wrong_size(root: Path) -> str:
    write_nifti(root / "masks" / "n0.nii.gz", np.zeros((N_FRAMES, HEIGHT, WIDTH + 4), np.uint8), (0.3, 0.25))
    return "masks/n0.nii.gz", "mask is 48x44 px, the video 48x40"


def _nifti_mask_too_many_frames(root: Path) -> str:
    _, masks = phantom_clip(100)
    write_nifti(root / "masks" / "n0.nii.gz", np.concatenate([masks, masks[:2]]), (0.3, 0.25))
    return "masks/n0.nii.gz", "14 mask frames: past the end of the video (12 frames)"


def _no_masks(root: Path) -> str:
    for p in (root / "masks" / "c0").iterdir():
        p.unlink()
    (root / "masks" / "c0").rmdir()
    return "videos/c0.avi", "no masks"


BAD = {
    "mask-size": _mask_too_big,
    "labels": _labels_not_binary,
    "frame-past-end": _frame_past_end,
    "unreadable-video": _unreadable_video,
    "unreadable-png": _unreadable_png,
    "one-labelled-frame": _one_labelled_frame,
    "nifti-mask-size": _nifti_mask_wrong_size,
    "nifti-mask-frames": _nifti_mask_too_many_frames,
    "no-masks": _no_masks,
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_case_is_listed_or_fatal_with_strict(kind, tmp_path):
    root = build_folder(tmp_path / "echo", avi_cases=("c0", "c1", "c2"), nii_cases=("n0",))
    file, problem = BAD[kind](root)
    summary = prepare_folder(root, tmp_path / "out", size=32, frames=4)
    assert [b.file for b in summary.bad_cases] == [file], summary.bad_cases
    assert problem in summary.bad_cases[0].problem and "\n" not in summary.bad_cases[0].problem
    assert summary.total == 3
    assert read_store_meta(summary.out_dir)["bad_cases"] == [{"file": file, "problem": summary.bad_cases[0].problem}]

    with pytest.raises(DataError) as err:
        prepare_folder(root, tmp_path / "strict", size=32, frames=4, strict=True)
    assert file in str(err.value) and problem in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "strict").exists()


def test_strict_cli_error_and_listed_bad_cases(tmp_path):
    root = build_folder(tmp_path / "echo", avi_cases=("c0", "c1", "c2"), nii_cases=())
    _labels_not_binary(root)
    base = ["prepare", "folder", "--root", str(root), "--size", "32", "--frames", "4"]
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "skipped bad cases" in result.output and "masks/c0/5.png" in result.output
    strict = runner.invoke(app, [*base, "--out", str(tmp_path / "strict"), "--strict"])
    assert isinstance(strict.exception, DataError) and "labels other than 0/1" in str(strict.exception)


def test_malformed_splits_and_meta_are_one_line_errors(tmp_path):
    root = build_folder(tmp_path / "echo", avi_cases=("c0", "c1", "c2"), nii_cases=())
    (root / "splits.csv").write_text("case,split\nc0,training\n")
    with pytest.raises(DataError, match=r"splits.csv: line 2: split 'training' for case 'c0' is not one of"):
        prepare_folder(root, tmp_path / "out")
    (root / "splits.csv").write_text("case,split\nc0,train\nc1,val\nc2,test\nc9,test\n")
    summary = prepare_folder(root, tmp_path / "out", size=32, frames=4)
    assert [str(b) for b in summary.bad_cases] == ["splits.csv: case 'c9' is listed but videos/ has no such case"]
    (root / "meta.csv").write_text("case,fps\nc0,fast\n")
    with pytest.raises(DataError, match=r"meta.csv: line 2: fps 'fast' is not a number"):
        prepare_folder(root, tmp_path / "out")
    (root / "meta.csv").write_text("case,heart_rate\n")
    with pytest.raises(DataError, match=r"unknown column\(s\) heart_rate"):
        prepare_folder(root, tmp_path / "out")
    with pytest.raises(DataError, match=r"videos: folder not found"):
        prepare_folder(tmp_path, tmp_path / "out")


def test_seeded_split_sizes():
    assert seeded_split(["a", "b"], 0) == {"a": "train", "b": "train"}
    for n in (3, 5, 10, 23):
        split = seeded_split([f"c{k}" for k in range(n)], 7)
        counts = {s: list(split.values()).count(s) for s in ("train", "val", "test")}
        assert counts["val"] >= 1 and counts["test"] >= 1 and sum(counts.values()) == n
        assert counts["val"] == max(1, round(n / 10 + 1e-9))
    assert seeded_split(["x", "y", "z", "w"], 1) == seeded_split(["w", "z", "y", "x"], 1)
