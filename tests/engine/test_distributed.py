"""DDP with 2 gloo processes gives the gradients of a single process on the same global batch."""

import json
import os
from pathlib import Path

import pytest
import torch

from gdkvm.engine.distributed import launch_torchrun, local_batch_size, torchrun_command
from gdkvm.errors import ConfigError, GdkvmError
from tests.engine.ddp_worker import ddp_config, record_first_step_gradients

REPO_ROOT = Path(__file__).resolve().parents[2]


def _first_record(run: Path) -> dict:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[0])


def test_two_gloo_processes_match_one_process(prepared_store, tmp_path, monkeypatch):
    env = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    monkeypatch.chdir(REPO_ROOT)
    launch_torchrun(2, ["tests.engine.ddp_worker", str(prepared_store), str(tmp_path), "ddp"], env=env)

    monkeypatch.setattr(torch.optim.AdamW, "step", torch.optim.AdamW.step)  # restores the original afterwards
    record_first_step_gradients(tmp_path / "single.grads.pt")
    from gdkvm.engine.train import train_run

    train_run(ddp_config(prepared_store, "single"), tmp_path)

    ddp = torch.load(tmp_path / "ddp.grads.pt", weights_only=True)
    single = torch.load(tmp_path / "single.grads.pt", weights_only=True)
    assert len(ddp) == len(single) > 0
    flat_ddp = torch.cat([g.flatten() for g in ddp])
    flat_single = torch.cat([g.flatten() for g in single])
    assert flat_single.norm() > 0
    # Float32 rounding alone moves this model's gradient by ~5e-4 relative to a float64 computation, so
    # the two runs agree to that order; a real bug (a rank's clips missing or counted twice, a missing
    # world-size factor) shows up as an error of order 0.1-1.
    rel = ((flat_ddp - flat_single).norm() / flat_single.norm()).item()
    print(f"relative gradient difference DDP(2) vs single: {rel:.2e}")
    assert rel < 1e-3

    a, b = _first_record(tmp_path / "ddp"), _first_record(tmp_path / "single")
    assert a["frames"] == b["frames"] == 4  # every rank's frames counted once in the global mean
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)
    config = (tmp_path / "ddp" / "config.yaml").read_text()
    assert "world_size: 2" in config


def test_launcher_pieces():
    cmd = torchrun_command(3, ["gdkvm.cli.main", "train"], port=1234)
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert "--nproc_per_node=3" in cmd and "--rdzv-endpoint=127.0.0.1:1234" in cmd
    assert cmd[-3:] == ["-m", "gdkvm.cli.main", "train"]
    assert local_batch_size(10, 2) == 5
    with pytest.raises(ConfigError):
        local_batch_size(10, 3)
    with pytest.raises(ConfigError):
        torchrun_command(0, ["x"])


def test_failed_workers_are_one_line_error(tmp_path):
    with pytest.raises(GdkvmError) as info:
        launch_torchrun(1, ["gdkvm.no_such_module"])
    assert "failed" in str(info.value) and "\n" not in str(info.value)


def test_process_group_gets_the_long_collective_timeout(monkeypatch):
    """Rank 0 validates alone while the others wait in a collective; the default 10-minute timeout would
    kill a whole-split validation, so the group is created with PROCESS_GROUP_TIMEOUT."""
    from datetime import timedelta

    import torch.distributed as dist

    from gdkvm.engine import distributed

    calls = []
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: calls.append(kw))
    info = distributed.init_distributed(torch.device("cpu"))
    assert info.world_size == 2
    assert calls == [{"backend": "gloo", "timeout": distributed.PROCESS_GROUP_TIMEOUT}]
    assert distributed.PROCESS_GROUP_TIMEOUT >= timedelta(hours=1)
