"""predict is never silently wrong: bad files fail one by one (the batch goes on), output names never
collide, suspicious results are flagged, and the model/size come from the checkpoint or the run folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gdkvm.cli.main import app
from gdkvm.errors import ConfigError, DataError
from gdkvm.predict.phases import Beat
from gdkvm.predict.quality import assess
from gdkvm.predict.run import predict_many
from gdkvm.predict.segmenter import resolve_device, training_size
from tests.predict.test_predict import pulsing_lv, threshold_segmenter, write_avi


def _nifti(path, data, zooms=None):
    import nibabel as nib

    img = nib.Nifti1Image(data, np.eye(4))
    if zooms:
        img.header.set_zooms(zooms)
    nib.save(img, str(path))
    return path


def test_batch_goes_on_and_names_do_not_collide(tmp_path):
    frames, _, _ = pulsing_lv(100, size=64)
    (tmp_path / "in" / "sub").mkdir(parents=True)
    write_avi(tmp_path / "in" / "X.avi", frames)
    write_avi(tmp_path / "in" / "sub" / "X.avi", frames[:80])
    import cv2

    cv2.imwrite(str(tmp_path / "in" / "bad.png"), frames[0])
    (tmp_path / "in" / "bad.png").rename(tmp_path / "in" / "bad.avi")
    outcomes = {o.input.relative_to(tmp_path / "in").as_posix(): o
                for o in predict_many([tmp_path / "in"], threshold_segmenter, tmp_path / "out")}
    assert outcomes["X.avi"].ok and outcomes["sub/X.avi"].ok
    bad = outcomes["bad.avi"]
    assert not bad.ok and "bad.avi" in bad.error and "not an AVI" in bad.error and "\n" not in bad.error
    top = json.loads((tmp_path / "out" / "X_summary.json").read_text())
    sub = json.loads((tmp_path / "out" / "sub" / "X_summary.json").read_text())
    assert (top["frames"], sub["frames"]) == (100, 80)
    csv = (tmp_path / "out" / "summary.csv").read_text()
    assert "failed:" in csv and "bad.avi" in csv


def test_same_name_from_two_folders_given_as_files(tmp_path):
    frames, _, _ = pulsing_lv(60, size=64)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        write_avi(tmp_path / d / "X.avi", frames)
    outcomes = predict_many([tmp_path / "a" / "X.avi", tmp_path / "b" / "X.avi"], threshold_segmenter,
                            tmp_path / "out")
    written = sorted({str(f.relative_to(tmp_path / "out")) for o in outcomes for f in o.files
                      if f.name == "X_summary.json"})
    assert len(written) == 2


def test_a_writer_error_fails_that_file_only(tmp_path, monkeypatch):
    frames, _, _ = pulsing_lv(60, size=64)
    write_avi(tmp_path / "one.avi", frames)
    write_avi(tmp_path / "two.avi", frames)
    import gdkvm.predict.run as run_mod

    real = run_mod.write_masks

    def full_disk(rec, masks, out_dir):
        if rec.name == "one":
            raise OSError(28, "No space left on device", str(out_dir / "one_lv_mask.npz"))
        return real(rec, masks, out_dir)

    monkeypatch.setattr(run_mod, "write_masks", full_disk)
    one, two = predict_many([tmp_path / "one.avi", tmp_path / "two.avi"], threshold_segmenter, tmp_path / "out")
    assert not one.ok and "one.avi" in one.error and "No space left" in one.error
    assert two.ok


@pytest.mark.parametrize("case", ["all-nan", "part-nan", "1x1"])
def test_bad_nifti_values_fail_naming_the_file(tmp_path, case):
    data = np.random.default_rng(0).random((64, 64, 10)).astype(np.float32)
    if case == "all-nan":
        data[:] = np.nan
    elif case == "part-nan":
        data[3:9, 3:9, 2] = np.nan
    else:
        data = data[:1, :1]
    path = _nifti(tmp_path / f"{case}.nii.gz", data)
    (o,) = predict_many([path], threshold_segmenter, tmp_path / "out")
    assert not o.ok and f"{case}.nii.gz" in o.error
    assert ("NaN" in o.error) if case != "1x1" else ("1x1" in o.error)


def test_truncated_avi_is_not_ok(tmp_path):
    frames, _, _ = pulsing_lv(100, size=64)
    path = tmp_path / "cut.avi"
    write_avi(path, frames)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 10])
    (o,) = predict_many([path], threshold_segmenter, tmp_path / "out")
    flagged = o.ok and not o.summary["quality"]["ok"]
    assert (not o.ok and "cut.avi" in o.error) or flagged, (o.error, o.summary.get("quality"))


def test_single_frame_nifti_is_written_and_flagged(tmp_path):
    frames, _, _ = pulsing_lv(1, size=64)
    path = _nifti(tmp_path / "patient0001_4CH_ED.nii.gz", frames[0].T.copy(), zooms=(0.3, 0.3))
    (o,) = predict_many([path], threshold_segmenter, tmp_path / "out")
    assert o.ok, o.error
    assert not o.summary["quality"]["ok"] and "no complete beat" in o.summary["quality"]["flags"]
    import nibabel as nib

    assert nib.load(str(tmp_path / "out" / "patient0001_4CH_ED_lv_mask.nii.gz")).shape == (64, 64)


def test_quality_flags_and_beats_that_pass():
    rng = np.random.default_rng(0)
    frames = (rng.random((100, 64, 64)) * 200 + 20).astype(np.uint8)
    masks = np.zeros((100, 64, 64), np.uint8)
    masks[:, 20:40, 20:40] = 1
    good, wild = Beat(10, 25, 100.0, 45.0), Beat(60, 75, 100.0, 443.0)  # EF 55 % and -343 %
    q = assess(frames, masks, 50.0, [good, wild], [10, 60], confidence=0.95)
    assert q.beats == [good] and not q.ok and any("implausible EF -343.0" in f for f in q.flags)
    q = assess(frames, masks, 50.0, [good], [10, 160], confidence=0.95)  # next ED 3 s later
    assert q.beats == [] and any("beat length 3.00 s" in f for f in q.flags)
    q = assess(frames, masks, 50.0, [good], [10], confidence=0.95)
    assert q.ok and q.beats == [good]
    assert any("low mean confidence" in f for f in assess(frames, masks, 50.0, [good], [10], 0.4).flags)
    edge = masks.copy()
    edge[:, 0:30, 20:40] = 1
    assert any("sector edge" in f for f in assess(frames, edge, 50.0, [good], [10]).flags)
    tiny = np.zeros_like(masks)
    tiny[:, 30:32, 30:32] = 1
    assert any("tiny masks" in f for f in assess(frames, tiny, 50.0, [good], [10]).flags)
    assert any("empty masks" in f for f in assess(frames, np.zeros_like(masks), 50.0, [], []).flags)


def test_implausible_ef_is_left_out_of_the_mean(tmp_path):
    """An oracle whose ES masks are inflated gives negative EF: flagged, and not averaged in."""
    frames, _, es = pulsing_lv(150, size=64)

    def inflating(fr, progress=None):
        m = threshold_segmenter(fr)
        for e in es:
            m[max(e - 3, 0):e + 4, 5:60, 5:60] = 1
        return m

    (o,) = predict_many([_avi(tmp_path, frames)], inflating, tmp_path / "out")
    assert o.ok and not o.summary["quality"]["ok"]
    assert all(5 <= b["ef"] <= 90 for b in o.summary["beats"])


def _avi(tmp_path, frames, name="v.avi"):
    write_avi(tmp_path / name, frames)
    return tmp_path / name


def test_training_size_from_the_run_folder_not_the_current_folder(tmp_path, monkeypatch):
    from gdkvm.data.store import STORE_FORMAT

    proj = tmp_path / "proj"
    run, store = proj / "results" / "runs" / "r", proj / "prepared" / "x"
    run.mkdir(parents=True)
    store.mkdir(parents=True)
    (store / "store.json").write_text(json.dumps({"format": STORE_FORMAT, "files": {}, "options": {"size": 64}}))
    (run / "config.yaml").write_text("train:\n  data: prepared/x\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert training_size(run) == 64
    (run / "config.yaml").write_text("- not\n- a mapping\n")
    with pytest.raises(ConfigError, match="config.yaml"):
        training_size(run)
    (run / "config.yaml").write_bytes(b"train:\n  data: \xff\xfe\n")
    with pytest.raises(ConfigError, match="config.yaml.*UTF-8"):
        training_size(run)


@pytest.mark.parametrize("device", ["foo", "gpu"])
def test_bad_device_is_one_line(device):
    with pytest.raises(ConfigError, match=f"^unknown device '{device}': choose auto, cpu, cuda, cuda:N$"):
        resolve_device(device)


def test_cuda_without_gpu_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="^CUDA is not available on this machine; use --device cpu or auto$"):
        resolve_device("cuda")


@pytest.fixture
def small_ckpt(tmp_path, one_cpu_thread):
    from gdkvm.models.registry import build_model
    from gdkvm.models.weights import save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(build_model("full", "tiny"), tmp_path / "w" / "gdkvm-phantom.safetensors",
                           {"input_size": 32, "weights_name": "test-random"})


def test_shipped_weights_are_used_without_run(tmp_path, small_ckpt, monkeypatch):
    import gdkvm.models.weights as weights

    monkeypatch.setattr(weights, "shipped_weights_path", lambda: small_ckpt)
    frames, _, _ = pulsing_lv(12, size=48)
    video = _avi(tmp_path, frames)
    result = CliRunner().invoke(app, ["predict", str(video), "--out", str(tmp_path / "out"), "--no-video",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "using the shipped weights 'test-random'" in result.output and "MODEL_CARD.md" in result.output
    assert "input 32x32" in result.output
    masks = np.load(tmp_path / "out" / "v_lv_mask.npz")["masks"]
    assert masks.shape == frames.shape


def test_missing_shipped_weights_is_one_line(tmp_path, monkeypatch):
    import gdkvm.models.weights as weights

    monkeypatch.setattr(weights, "shipped_weights_path", lambda: tmp_path / "none.safetensors")
    frames, _, _ = pulsing_lv(12, size=48)
    result = CliRunner().invoke(app, ["predict", str(_avi(tmp_path, frames)), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert isinstance(result.exception, DataError) and "shipped weights are not installed" in str(result.exception)


def test_weights_file_needs_a_size_when_it_has_none(tmp_path, one_cpu_thread):
    from gdkvm.models.registry import build_model
    from gdkvm.models.weights import save_checkpoint
    from gdkvm.predict.segmenter import load_segmenter

    ckpt = save_checkpoint(build_model("full", "tiny"), tmp_path / "m.safetensors")
    with pytest.raises(ConfigError, match="m.safetensors has no input_size.*--size"):
        load_segmenter(weights=ckpt, device="cpu")
    assert load_segmenter(weights=ckpt, device="cpu", size=48).segmenter.size == 48


def test_run_checkpoint_choice_and_variant_check(tmp_path, small_ckpt):
    import shutil

    from gdkvm.predict.segmenter import load_segmenter

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(small_ckpt, run / "checkpoint_last.safetensors")
    with pytest.raises(DataError, match="checkpoint_best.safetensors"):
        load_segmenter(run, device="cpu", checkpoint="best")
    assert load_segmenter(run, device="cpu", checkpoint="last").checkpoint.name == "checkpoint_last.safetensors"
    (run / "config.yaml").write_text("train:\n  variant: gdr\n  data: nowhere\n")
    with pytest.raises(DataError, match="expected variant 'gdr'"):
        load_segmenter(run, device="cpu")


def test_reference_ef_from_a_filelist_beside_the_videos(tmp_path):
    frames, _, _ = pulsing_lv(60, size=64)
    (tmp_path / "Videos").mkdir()
    write_avi(tmp_path / "Videos" / "0XAB.avi", frames)
    (tmp_path / "FileList.csv").write_text("FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split\n"
                                           "0XAB,61.5,20,52,64,64,50,60,TRAIN\n")
    (o,) = predict_many([tmp_path / "Videos"], threshold_segmenter, tmp_path / "out")
    assert o.ok and o.summary["reference_ef"] == pytest.approx(61.5)
    assert o.summary["reference_source"].endswith("FileList.csv")
    assert "61.5" in (tmp_path / "out" / "summary.csv").read_text()


def test_sector_edge_flag_ignores_dark_blood_joined_to_the_outside_by_dropout():
    """Realistic frames have a black cavity joined to the black outside by a wall dropout; the sector is
    still the fan, so a mask inside the cavity is not on its edge, and one that leaves the fan is."""
    rng = np.random.default_rng(1)
    h = w = 96
    yy, xx = np.mgrid[0:h, 0:w]
    fan = (np.hypot(xx - w / 2, yy) < 90) & (np.abs(np.arctan2(xx - w / 2, yy + 1e-6)) < 0.6)
    frames = np.where(fan, rng.integers(40, 200, (30, h, w)), 0).astype(np.uint8)
    cavity = (np.hypot((xx - 48) / 12, (yy - 50) / 20) < 1)
    channel = (np.abs(yy - 50) < 3) & (xx > 48)  # a dropout from the cavity out through the lateral wall
    frames[:, cavity | (channel & fan)] = 0
    frames[:, 5, 90] = 220  # a depth marker outside the fan
    inside = np.zeros((30, h, w), np.uint8)
    inside[:, cavity] = 1
    good = Beat(5, 15, 100.0, 45.0)
    assert not any("sector edge" in f for f in assess(frames, inside, 50.0, [good], [5]).flags)
    leaving = inside.copy()
    leaving[:, 40:60, 40:95] = 1  # out of the fan on the right
    assert any("sector edge" in f for f in assess(frames, leaving, 50.0, [good], [5]).flags)
