"""The training loop on a tiny phantom store: learning, exact resume, faults and bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import gdkvm.engine.train as train_mod
from gdkvm.engine.checkpoint import load_trainer_state
from gdkvm.engine.losses import segmentation_loss, supervised_frames
from gdkvm.engine.train import NonFiniteLossError, build_training_model, train_run
from gdkvm.errors import ConfigError, DataError, GdkvmError
from gdkvm.utils.atomic import sha256_file
from tests.engine.fixtures import tiny_config

REPO_ROOT = Path(__file__).resolve().parents[2]


def _train_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


def _fixed_batch(store: Path) -> dict:
    from gdkvm.data.dataset import ClipDataset
    from gdkvm.data.store import open_store

    clips = ClipDataset(open_store(store, "train"), augment=False)
    items = [clips[0], clips[1]]
    return {k: torch.stack([it[k] for it in items]) for k in ("images", "masks", "labeled")}


@torch.no_grad()
def _loss_on(model: torch.nn.Module, batch: dict) -> float:
    model.train()  # batch statistics in BatchNorm, as during training
    logits = model(batch["images"])
    return segmentation_loss(logits, batch["masks"], supervised_frames(batch["labeled"], "ends")).total().item()


def test_training_lowers_the_loss_and_writes_the_run(prepared_store, tmp_path):
    cfg = tiny_config(prepared_store, iterations=8, augment=False, val_every=4)
    result = train_run(cfg, tmp_path)
    run = result.run_dir
    assert result.finished and result.iteration == 8
    for name in ("config.yaml", "metrics.jsonl", "checkpoint_last.safetensors", "checkpoint_best.safetensors",
                 "trainer_state.pt", "train_done.json"):
        assert (run / name).is_file(), name

    batch = _fixed_batch(prepared_store)
    before = _loss_on(build_training_model(cfg), batch)
    model = build_training_model(cfg)
    model.load_state_dict(load_file(str(run / "checkpoint_last.safetensors")))
    after = _loss_on(model, batch)
    assert after < 0.9 * before, (before, after)

    records = _train_records(run)
    assert [r["iteration"] for r in records] == list(range(1, 9))
    assert all(r["frames"] == 4 for r in records)  # 2 clips x first/last frame
    gates = records[-1]["gates"]  # GDR logs alpha/beta distributions for Fig. 9
    for key in ("alpha", "beta", "alpha_grad", "beta_grad"):
        assert gates[key]["n"] > 0 and len(gates[key]["hist"]) == 16
    assert 0.0 < gates["alpha"]["min"] <= gates["alpha"]["max"] <= 1.0
    vals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [v["iteration"] for v in vals if v["kind"] == "val"] == [4, 8]


def test_resume_is_bit_identical_on_cpu(prepared_store, tmp_path):
    cfg = tiny_config(prepared_store, iterations=5, val_every=2)
    whole = train_run(cfg.with_overrides(name="whole"), tmp_path)
    first = train_run(cfg.with_overrides(name="split"), tmp_path, max_steps=3)
    assert not first.finished and first.iteration == 3
    assert not (first.run_dir / "train_done.json").exists()
    second = train_run(cfg.with_overrides(name="split"), tmp_path, resume=True)
    assert second.start_iteration == 3 and second.finished

    a = load_file(str(whole.run_dir / "checkpoint_last.safetensors"))
    b = load_file(str(second.run_dir / "checkpoint_last.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in _train_records(whole.run_dir)] == [r["loss"] for r in _train_records(second.run_dir)]
    assert whole.best_dice == second.best_dice and whole.best_iteration == second.best_iteration


def test_nan_loss_stops_with_one_line_error_and_keeps_the_checkpoint(prepared_store, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = train_mod.segmentation_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        sums = real(*args, **kwargs)
        if calls["n"] == 3:
            sums.ce = sums.ce * float("nan")
        return sums

    monkeypatch.setattr(train_mod, "segmentation_loss", poisoned)
    cfg = tiny_config(prepared_store, iterations=4, ckpt_every=2)
    run = tmp_path / cfg.run_name
    with pytest.raises(NonFiniteLossError) as info:
        train_run(cfg, tmp_path)
    message = str(info.value)
    assert "\n" not in message and "iteration 3" in message and "nan" in message.lower()

    state = load_trainer_state(run / "trainer_state.pt")
    assert state["iteration"] == 2
    from gdkvm.models.weights import load_model, read_checkpoint_metadata

    assert read_checkpoint_metadata(run / "checkpoint_last.safetensors")["iteration"] == "2"
    weights = load_file(str(run / "checkpoint_last.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    load_model(run / "checkpoint_last.safetensors")  # loads cleanly

    monkeypatch.setattr(train_mod, "segmentation_loss", real)
    resumed = train_run(cfg, tmp_path, resume=True)
    assert resumed.start_iteration == 2 and resumed.finished
    assert [r["iteration"] for r in _train_records(run)] == [1, 2, 3, 4]


def test_bad_runs_and_stores_are_one_line_errors(prepared_store, tmp_path):
    cfg = tiny_config(prepared_store, iterations=1)
    with pytest.raises(GdkvmError) as info:
        train_run(cfg, tmp_path, resume=True)
    assert "run folder not found" in str(info.value)

    train_run(cfg, tmp_path)
    with pytest.raises(GdkvmError) as info:
        train_run(cfg, tmp_path)
    assert "already exists" in str(info.value) and "--resume" in str(info.value)

    with pytest.raises(ConfigError) as info:
        train_run(cfg.with_overrides(seed=5), tmp_path, resume=True)
    assert "seed" in str(info.value)

    broken = tmp_path / "broken" / "camus"
    shutil.copytree(prepared_store, broken)
    images = broken / "train" / "images.npy"
    data = bytearray(images.read_bytes())
    data[-1] ^= 0xFF
    images.write_bytes(bytes(data))
    with pytest.raises(DataError) as info:
        train_run(tiny_config(broken, name="on-broken"), tmp_path)
    assert "SHA-256" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "on-broken").exists()

    with pytest.raises(DataError):
        train_run(tiny_config(tmp_path / "nowhere" / "camus", name="nowhere"), tmp_path)


def test_sigkill_loses_at_most_the_steps_since_the_last_checkpoint(prepared_store, tmp_path):
    # Long enough that the child cannot finish between its first checkpoint and the kill, even when this
    # process stalls for seconds on a busy machine; the resume below runs only the remaining steps.
    iterations = 200
    cmd = [sys.executable, "-m", "gdkvm.cli.main", "train", "--data", str(prepared_store), "--variant", "full",
           "--preset", "tiny", "--iterations", str(iterations), "--batch-size", "2", "--ckpt-every", "2",
           "--val-every", "1000", "--device", "cpu", "--out", str(tmp_path), "--name", "killed"]
    run = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run / "trainer_state.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "train_done.json").exists()
    saved = load_trainer_state(run / "trainer_state.pt")["iteration"]
    assert 2 <= saved < iterations and saved % 2 == 0

    final = saved + 4  # --iterations may change on resume; finishing all 200 would only cost time
    cfg = tiny_config(prepared_store, iterations=final, ckpt_every=2, name="killed")
    resumed = train_run(cfg, tmp_path, resume=True)
    assert resumed.start_iteration == saved and resumed.finished
    assert json.loads((run / "train_done.json").read_text())["iteration"] == final
    assert [r["iteration"] for r in _train_records(run)] == list(range(1, final + 1))
    assert not [p for p in run.iterdir() if ".tmp" in p.name]
    assert sha256_file(run / "checkpoint_last.safetensors")


def test_weights_gone_non_finite_are_not_checkpointed(prepared_store, tmp_path, monkeypatch):
    """An optimizer step that leaves NaN in the weights: the save refuses, the last finite checkpoint stays."""
    calls = {"n": 0}
    real = torch.nn.utils.clip_grad_norm_

    def clip_then_poison(params, *args, **kwargs):
        params = list(params)
        norm = real(params, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            with torch.no_grad():
                params[0].fill_(float("nan"))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_then_poison)
    cfg = tiny_config(prepared_store, iterations=4, ckpt_every=1, name="poisoned")
    with pytest.raises(NonFiniteLossError, match="iteration 2: weights hold NaN"):
        train_run(cfg, tmp_path)
    run = tmp_path / "poisoned"
    assert read_iteration(run) == "1" and load_trainer_state(run / "trainer_state.pt")["iteration"] == 1
    weights = load_file(str(run / "checkpoint_last.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real)
    assert train_run(cfg, tmp_path, resume=True).finished


def read_iteration(run: Path) -> str:
    from gdkvm.models.weights import read_checkpoint_metadata

    return read_checkpoint_metadata(run / "checkpoint_last.safetensors")["iteration"]


def test_failed_first_start_can_be_retried(prepared_store, tmp_path):
    """A bad --backbone-weights leaves no run behind; a retry (plain or --resume with a new path) works."""
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a state dict")
    cfg = tiny_config(prepared_store, iterations=2, ckpt_every=2, name="retry", backbone_weights=str(bad))
    with pytest.raises(DataError, match="bad.pth"):
        train_run(cfg, tmp_path)
    assert not (tmp_path / "retry" / "config.yaml").exists()
    # an older version left config.yaml behind: that folder has no checkpoint, so it is not a run yet
    (tmp_path / "retry").mkdir(exist_ok=True)
    train_mod._write_run_config(cfg, train_mod.RunPaths(tmp_path / "retry"), build_training_model(cfg),
                                train_mod.env_dist_info())
    good = tiny_config(prepared_store, iterations=2, ckpt_every=2, name="retry")
    assert train_run(good, tmp_path, resume=True).finished
    with pytest.raises(GdkvmError, match="already exists"):
        train_run(good, tmp_path)


def test_ctrl_c_says_where_to_resume(prepared_store, tmp_path, monkeypatch, capsys):
    def interrupted(self, max_steps=None):
        self.iteration = 3
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod.Trainer, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_run(tiny_config(prepared_store, name="ctrl-c"), tmp_path)
    assert "interrupted at iteration 3; resume with --resume" in capsys.readouterr().err
