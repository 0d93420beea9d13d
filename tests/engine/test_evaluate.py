"""Evaluation of a run: documented tables, ED/ES bookkeeping, EF, and one-line errors."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from gdkvm.engine.evaluate import (
    ef_table,
    evaluate_run,
    frame_phases,
    frame_table,
    scored_frames,
    summarize_ef,
    video_table,
)
from gdkvm.engine.train import train_run
from gdkvm.errors import DataError, GdkvmError
from tests.engine.fixtures import STORE_FRAMES, build_store, tiny_config

FRAME_COLUMNS = ["case_id", "patient", "view", "video", "frame", "source_frame", "phase", "dice", "iou", "hd",
                 "hd95", "asd", "unit", "status", "pred_area_px", "ref_area_px"]
VIDEO_COLUMNS = ["case_id", "patient", "view", "video", "n_frames", "dice", "iou", "hd95", "asd", "dice_ed",
                 "iou_ed", "hd95_ed", "asd_ed", "dice_es", "iou_es", "hd95_es", "asd_es", "unit"]
EF_COLUMNS = ["method", "unit_id", "patient", "view", "ef_pred", "ef_ref", "ef_manifest", "edv_pred", "esv_pred",
              "edv_ref", "esv_ref", "volume_unit"]


@pytest.fixture(scope="module")
def trained_run(prepared_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-runs")
    return train_run(tiny_config(prepared_store, iterations=2), out).run_dir


def test_evaluate_writes_documented_tables(trained_run, prepared_store):
    from gdkvm.data.store import open_store

    test = open_store(prepared_store, "test")
    n, t, h, w = test.images.shape
    result = evaluate_run(trained_run, "test", device="cpu", n_boot=50)
    out = trained_run / "eval" / "test"
    assert result.out_dir == out
    assert {p.name for p in out.iterdir()} == {"per_frame.csv", "per_video.csv", "ef.csv", "summary.json",
                                               "predictions.npy"}
    frames = pd.read_csv(out / "per_frame.csv")
    videos = pd.read_csv(out / "per_video.csv")
    ef = pd.read_csv(out / "ef.csv")
    assert list(frames.columns) == FRAME_COLUMNS
    assert list(videos.columns) == VIDEO_COLUMNS
    assert list(ef.columns) == EF_COLUMNS
    assert len(frames) == int(test.labeled.sum()) == n * t  # CAMUS: every frame labelled, every one scored
    assert (frames["phase"] == "ED").sum() == n and (frames["phase"] == "ES").sum() == n
    assert set(frames.loc[frames["phase"] == "ED", "frame"]) == {0}
    assert set(frames.loc[frames["phase"] == "ES", "frame"]) == {t - 1}
    assert set(frames["unit"]) == {"mm"}  # CAMUS spacing is known
    assert len(videos) == n
    assert set(ef["method"]) == {"biplane-simpson", "biplane-simpson-clean", "area-length"}
    assert (ef["method"] == "biplane-simpson").sum() == test.manifest["patient"].nunique()

    preds = np.load(out / "predictions.npy")
    assert preds.shape == (n, t, h, w) and preds.dtype == np.uint8 and set(np.unique(preds)) <= {0, 1}
    areas = preds.reshape(n, t, -1).sum(-1)
    assert areas[frames["video"], frames["frame"]].tolist() == frames["pred_area_px"].tolist()

    summary = json.loads((out / "summary.json").read_text())
    assert summary["split"] == "test" and summary["mode"] == "clean" and summary["n_videos"] == n
    assert summary["checkpoint"] == "checkpoint_best.safetensors"
    assert set(summary["segmentation"]) == {"overall", "ED", "ES"}
    for block in summary["segmentation"].values():
        for metric in ("dice", "iou", "hd95", "asd"):
            assert {"mean", "std", "n", "ci_low", "ci_high"} <= set(block[metric])
    overall = summary["segmentation"]["overall"]["dice"]
    assert overall["mean"] == pytest.approx(frames["dice"].mean())
    assert {"pred_vs_ref_masks", "pred_vs_manifest", "ref_masks_vs_manifest"} <= set(summary["ef"]["biplane-simpson"])


def test_legacy_mode_scores_first_and_last_frame_in_its_own_folder(trained_run):
    result = evaluate_run(trained_run, "test", device="cpu", mode="gdkvm-legacy", n_boot=20)
    assert result.out_dir.name == "test-gdkvm-legacy"
    assert set(result.per_frame["frame"]) == {0, STORE_FRAMES - 1}
    assert set(result.per_frame["unit"]) == {"px"}


def test_evaluate_on_an_echonet_store_uses_pixels_and_single_plane(trained_run, tmp_path_factory):
    echonet = build_store(tmp_path_factory, "echonet")
    result = evaluate_run(trained_run, "test", data=echonet, device="cpu", n_boot=20)
    # EchoNet clips carry masks at their first and last frame only, and no pixel spacing
    phases = result.per_frame["phase"]
    assert len(phases) == 2 * len(result.per_video) == (phases == "ED").sum() + (phases == "ES").sum()
    assert (phases == "ED").sum() == (phases == "ES").sum()
    assert set(result.per_frame["unit"]) == {"px"}
    assert set(result.ef["method"]) == {"single-plane-simpson", "single-plane-simpson-clean", "area-length"}
    assert result.summary["dataset"] == "echonet"


def test_reference_masks_as_predictions_score_perfectly(prepared_store):
    from gdkvm.data.store import open_store

    test = open_store(prepared_store, "test")
    ref = np.asarray(test.masks) == 1
    frames = frame_table(ref, test.masks, np.asarray(test.labeled), test.manifest, "clean")
    assert np.allclose(frames["dice"], 1.0) and np.allclose(frames["hd95"], 0.0)
    videos = video_table(frames)
    assert np.allclose(videos[["dice", "dice_ed", "dice_es"]], 1.0)
    ef = ef_table(ref, test.masks, np.asarray(test.labeled), test.manifest, "camus")
    biplane = ef[ef["method"] == "biplane-simpson"]
    assert len(biplane) == 1 and biplane["volume_unit"].tolist() == ["mL"]
    assert np.allclose(ef["ef_pred"], ef["ef_ref"], equal_nan=True)
    agreement = summarize_ef(ef)["area-length"]["pred_vs_ref_masks"]
    assert agreement["bias"] == pytest.approx(0.0) and agreement["mae"] == pytest.approx(0.0)
    # EchoNet-style: single-plane Simpson per clip instead of biplane
    single = ef_table(ref, test.masks, np.asarray(test.labeled), test.manifest, "echonet")
    assert set(single["method"]) == {"single-plane-simpson", "single-plane-simpson-clean", "area-length"}
    assert set(single.loc[single["method"] == "single-plane-simpson", "volume_unit"]) == {"px^3"}


def test_frame_selection_and_phases():
    labeled = np.array([False, True, True, True, False])
    assert scored_frames(labeled, "clean").tolist() == [1, 2, 3]
    assert scored_frames(labeled, "gdkvm-legacy").tolist() == []
    assert scored_frames(np.array([True, True, True]), "gdkvm-legacy").tolist() == [0, 2]
    assert frame_phases(labeled) == {1: "ED", 3: "ES"}
    assert frame_phases(labeled, "ES") == {1: "ES", 3: "ED"}  # MemSAM-style earlier->later clips
    assert frame_phases(np.zeros(3, dtype=bool)) == {}


def test_bad_run_folders_are_one_line_errors(trained_run, tmp_path):
    with pytest.raises(GdkvmError) as info:
        evaluate_run(tmp_path / "nope", device="cpu")
    assert "run folder not found" in str(info.value)

    half = tmp_path / "half"
    half.mkdir()
    (half / "metrics.jsonl").write_text("")
    with pytest.raises(GdkvmError) as info:
        evaluate_run(half, device="cpu")
    assert "config.yaml" in str(info.value) and "\n" not in str(info.value)

    no_ckpt = tmp_path / "no-ckpt"
    no_ckpt.mkdir()
    shutil.copy(trained_run / "config.yaml", no_ckpt / "config.yaml")
    with pytest.raises(GdkvmError) as info:
        evaluate_run(no_ckpt, device="cpu")
    assert "checkpoint" in str(info.value)

    other = tmp_path / "other-variant"
    other.mkdir()
    text = (trained_run / "config.yaml").read_text().replace("variant: full", "variant: delta")
    (other / "config.yaml").write_text(text)
    shutil.copy(trained_run / "checkpoint_last.safetensors", other / "checkpoint_last.safetensors")
    with pytest.raises(DataError) as info:
        evaluate_run(other, device="cpu")
    assert "variant 'full'" in str(info.value) and "'delta'" in str(info.value)
    assert not (other / "eval").exists()


def test_resume_refuses_a_checkpoint_of_another_variant(trained_run, tmp_path):
    run = tmp_path / "swap"
    shutil.copytree(trained_run, run)
    import yaml

    from gdkvm.engine.config import load_train_config

    cfg = load_train_config(run / "config.yaml")
    raw = yaml.safe_load((run / "config.yaml").read_text())
    raw["train"]["variant"] = "delta"
    raw["train"]["name"] = "swap"
    (run / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(GdkvmError) as info:
        train_run(cfg.with_overrides(variant="delta", name="swap", iterations=3), tmp_path, resume=True)
    assert "variant" in str(info.value) and "\n" not in str(info.value)


def test_validation_dice_by_hand():
    from gdkvm.engine.inference import mean_frame_dice

    masks = np.zeros((1, 3, 2, 2), dtype=np.uint8)
    masks[0, 0, 0] = 1  # 2 px
    masks[0, 1] = 1  # 4 px
    pred = np.zeros((1, 3, 2, 2), dtype=bool)
    pred[0, 0, 0, 0] = True  # Dice 2*1/(1+2) = 2/3
    pred[0, 1] = True  # Dice 1
    # frame 2: both empty -> 1 (but unlabelled frames are ignored)
    assert mean_frame_dice(pred, masks, np.array([[True, True, False]])) == pytest.approx((2 / 3 + 1) / 2)
    assert mean_frame_dice(pred, masks, np.array([[True, True, True]])) == pytest.approx((2 / 3 + 2) / 3)
    assert np.isnan(mean_frame_dice(pred, masks, np.zeros((1, 3), dtype=bool)))
