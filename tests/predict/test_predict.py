"""`gdkvm predict` end to end: inputs, oracle segmentation of a pulsing LV, outputs, bad inputs."""

import json
import math

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gdkvm.cli.main import app
from gdkvm.errors import DataError
from gdkvm.predict.inputs import expand_inputs, read_recording
from gdkvm.predict.run import predict_many

FPS = 50.0


def pulsing_lv(n_frames: int, bpm: float = 72.0, size: int = 112, phase: float = 0.2):
    """A bright half-ellipse 'LV' (apex up, flat base) whose size follows a cardiac cycle.

    Returns frames (T, H, W) uint8 and the true ED (max) and ES (min) frames. Volume ~ a^2 c with width a
    and length c scaled by s(t) = 1 - 0.25 * (1 - cos) profile: ED at cycle phase 0, ES at phase 1/3.
    """
    period = 60.0 / bpm
    t = np.arange(n_frames) / FPS + phase * period
    u = np.mod(t, period) / period
    s = np.where(u < 1 / 3, 0.5 * (1 + np.cos(3 * np.pi * u)), 0.5 * (1 - np.cos(np.pi * (u - 1 / 3) * 1.5)))
    scale = 0.75 + 0.25 * s
    frames = np.zeros((n_frames, size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    base_y = 0.8 * size
    for i, k in enumerate(scale):
        a, c = 0.22 * size * k, 0.55 * size * k
        inside = (((xx - size / 2) / a) ** 2 + ((yy - base_y) / c) ** 2 <= 1) & (yy <= base_y)
        frames[i][inside] = 200
    ed = [round((k - phase) * period * FPS) for k in range(0, 20)]
    es = [round((k + 1 / 3 - phase) * period * FPS) for k in range(0, 20)]
    return frames, [e for e in ed if 0 <= e < n_frames], [e for e in es if 0 <= e < n_frames]


def write_avi(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, frames.shape[1:][::-1])
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    writer.release()


def threshold_segmenter(frames, progress=None):
    """Oracle for the synthetic LV: bright pixels are the cavity."""
    if progress:
        progress(len(frames), len(frames))
    return (frames > 100).astype(np.uint8)


def test_predict_detects_phases_and_ef(tmp_path):
    frames, ed, es = pulsing_lv(180)
    write_avi(tmp_path / "lv.avi", frames)
    outcomes = predict_many([tmp_path / "lv.avi"], threshold_segmenter, tmp_path / "out")
    (o,) = outcomes
    assert o.ok, o.error
    s = o.summary
    assert s["frames"] == 180 and s["fps"] == pytest.approx(FPS)
    for f in s["ed_frames"]:
        assert min(abs(f - e) for e in ed) <= 2
    for f in s["es_frames"]:
        assert min(abs(f - e) for e in es) <= 2
    assert s["n_beats"] >= 2
    # True EF of a half-spheroid scaled isotropically by k: 1 - k_es^3 / k_ed^3 with k_ed = 1, k_es = 0.75.
    true_ef = 100 * (1 - 0.75**3)
    assert s["mean_ef"] == pytest.approx(true_ef, abs=4.0)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["lv_curve.png", "lv_lv_mask.npz", "lv_overlay.avi", "lv_overlay.png", "lv_summary.json",
                     "summary.csv"]
    masks = np.load(tmp_path / "out" / "lv_lv_mask.npz")["masks"]
    assert masks.shape == frames.shape
    back = json.loads((tmp_path / "out" / "lv_summary.json").read_text())
    assert back["beats"][0]["ed_frame"] < back["beats"][0]["es_frame"]
    cap = cv2.VideoCapture(str(tmp_path / "out" / "lv_overlay.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 180
    cap.release()


def test_short_recording_reports_ef_unavailable(tmp_path):
    frames, _, _ = pulsing_lv(15, phase=0.05)
    write_avi(tmp_path / "short.avi", frames)
    (o,) = predict_many([tmp_path / "short.avi"], threshold_segmenter, tmp_path / "out")
    assert o.ok
    assert o.summary["mean_ef"] is None
    assert "shorter than one beat" in o.summary["ef_unavailable_reason"]


def test_bad_inputs_do_not_stop_others(tmp_path):
    frames, _, _ = pulsing_lv(120)
    write_avi(tmp_path / "good.avi", frames)
    (tmp_path / "broken.avi").write_bytes(b"RIFF\x00\x00not a video")
    (tmp_path / "empty.nii.gz").write_bytes(b"\x1f\x8b\x08truncated")
    outcomes = predict_many([tmp_path], threshold_segmenter, tmp_path / "out")
    status = {o.input.name: o for o in outcomes}
    assert status["good.avi"].ok
    assert not status["broken.avi"].ok and "broken.avi" in status["broken.avi"].error
    assert not status["empty.nii.gz"].ok and "unreadable NIfTI" in status["empty.nii.gz"].error
    summary = (tmp_path / "out" / "summary.csv").read_text()
    assert "failed:" in summary and "good.avi" in summary


def test_nifti_input_keeps_geometry(tmp_path):
    import nibabel as nib

    frames, _, _ = pulsing_lv(120, size=96)
    data = np.transpose(frames, (2, 1, 0))
    img = nib.Nifti1Image(data, np.diag([0.3, 0.25, 1, 1]))
    img.header.set_zooms((0.3, 0.25, 1.0))
    path = tmp_path / "patient0001_4CH_half_sequence.nii.gz"
    nib.save(img, str(path))
    rec = read_recording(path)
    assert rec.frames.shape == frames.shape and np.array_equal(rec.frames, frames)
    assert rec.spacing == pytest.approx((0.25, 0.3))
    (o,) = predict_many([path], threshold_segmenter, tmp_path / "out", overlay_video=False)
    assert o.ok, o.error
    assert o.summary["volume_unit"] == "mL"
    out = nib.load(str(tmp_path / "out" / "patient0001_4CH_half_sequence_lv_mask.nii.gz"))
    assert out.shape == data.shape
    assert np.array_equal(np.asarray(out.dataobj), (data > 100).astype(np.uint8))


def test_expand_inputs_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        expand_inputs([tmp_path / "missing.avi"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        expand_inputs([tmp_path / "notes.txt"])
    with pytest.raises(DataError, match="holds no AVI"):
        expand_inputs([tmp_path])


def test_cli_end_to_end_with_a_tiny_run(tmp_path):
    import torch

    from gdkvm.models.registry import build_model
    from gdkvm.models.weights import save_checkpoint

    torch.manual_seed(0)
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(build_model("full", preset="tiny"), run / "checkpoint_last.safetensors")
    frames, _, _ = pulsing_lv(40, size=112)
    write_avi(tmp_path / "clip.avi", frames)
    result = CliRunner().invoke(app, ["predict", "--run", str(run), str(tmp_path / "clip.avi"),
                                      "--out", str(tmp_path / "out"), "--size", "64", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "resized from 112x112 to the training size 64x64" in result.output
    assert (tmp_path / "out" / "clip_summary.json").is_file()
    masks = np.load(tmp_path / "out" / "clip_lv_mask.npz")["masks"]
    assert masks.shape == (40, 112, 112) and set(np.unique(masks)) <= {0, 1}


def test_cli_missing_checkpoint(tmp_path):
    (tmp_path / "run").mkdir()
    frames, _, _ = pulsing_lv(20)
    write_avi(tmp_path / "clip.avi", frames)
    result = CliRunner().invoke(app, ["predict", "--run", str(tmp_path / "run"), str(tmp_path / "clip.avi")])
    assert result.exit_code != 0
    assert "has no checkpoint" in str(result.exception) + result.output


def test_growing_memory_refused_on_long_input():
    import torch

    from gdkvm.models.registry import build_model
    from gdkvm.predict.segmenter import GROWING_MEMORY_FRAME_LIMIT, ModelSegmenter

    model = build_model("softmax-memory", preset="tiny")
    seg = ModelSegmenter(model, 64, torch.device("cpu"))
    frames = np.zeros((GROWING_MEMORY_FRAME_LIMIT + 1, 64, 64), np.uint8)
    with pytest.raises(DataError, match="allow-growing-memory"):
        seg(frames)
    assert math.isfinite(seg.growing_memory_cost(1000))


def test_frame_rate_from_camus_cfg_and_training_size(tmp_path):
    import json

    import nibabel as nib

    from gdkvm.predict.segmenter import training_size

    frames, _, _ = pulsing_lv(12, size=64)
    path = tmp_path / "patient0001_4CH_half_sequence.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(frames, (2, 1, 0)), np.eye(4)), str(path))
    assert read_recording(path, default_fps=50.0).fps == 50.0
    (tmp_path / "Info_4CH.cfg").write_text("ED: 1\nES: 12\nNbFrame: 12\nFrameRate: 37\n")
    assert read_recording(path, default_fps=50.0).fps == 37.0

    run, store = tmp_path / "run", tmp_path / "prepared" / "camus"
    run.mkdir()
    store.mkdir(parents=True)
    assert training_size(run) is None  # no config.yaml
    (run / "config.yaml").write_text(f"data: {store}\n")
    assert training_size(run) is None  # no store.json
    from gdkvm.data.store import STORE_FORMAT

    (store / "store.json").write_text(json.dumps({"format": STORE_FORMAT, "files": {}, "options": {"size": 96}}))
    assert training_size(run) == 96
    # the layout `gdkvm train` writes (train section, model section, versions)
    from gdkvm.engine.checkpoint import RunPaths
    from gdkvm.engine.config import TrainConfig
    from gdkvm.engine.distributed import env_dist_info
    from gdkvm.engine.train import _write_run_config
    from gdkvm.models.registry import build_model

    _write_run_config(TrainConfig(data=str(store)), RunPaths(run), build_model("full", "tiny"), env_dist_info())
    assert training_size(run) == 96
