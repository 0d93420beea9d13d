"""Atomically written files and folders get the umask's usual mode, not mkstemp/mkdtemp's private one."""

import json
import os
import stat

import pytest
import torch

from gdkvm.utils.atomic import atomic_dir, atomic_write_text, current_umask, dir_mode, file_mode


@pytest.fixture
def umask():
    """Set the process umask for one test (restored after)."""
    previous = os.umask(0o022)
    os.umask(previous)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_current_umask_reads_without_changing(umask):
    umask(0o027)
    assert current_umask() == 0o027
    assert current_umask() == 0o027  # unchanged by reading
    assert file_mode() == 0o640 and dir_mode() == 0o750


def test_json_text_and_folder_are_0644_0755_under_umask_022(umask, tmp_path):
    umask(0o022)
    target = tmp_path / "summary.json"
    atomic_write_text(target, json.dumps({"a": 1}))
    assert _mode(target) == 0o644
    atomic_write_text(target, "{}")  # replacing keeps the usual mode too
    assert _mode(target) == 0o644
    with atomic_dir(tmp_path / "store") as d:
        (d / "x.txt").write_text("1")
    assert _mode(tmp_path / "store") == 0o755
    with atomic_dir(tmp_path / "store") as d:  # swapping an existing folder
        (d / "y.txt").write_text("2")
    assert _mode(tmp_path / "store") == 0o755


def test_checkpoint_and_trainer_state_are_0644(umask, tmp_path):
    from gdkvm.engine.checkpoint import save_trainer_state
    from gdkvm.models.registry import build_model
    from gdkvm.models.weights import save_checkpoint

    umask(0o022)
    model = build_model("lkva", "tiny")
    ckpt = save_checkpoint(model, tmp_path / "checkpoint_last.safetensors")
    assert _mode(ckpt) == 0o644
    save_trainer_state(tmp_path / "trainer_state.pt", {"iteration": 1, "x": torch.zeros(2)})
    assert _mode(tmp_path / "trainer_state.pt") == 0o644


def test_a_strict_umask_is_respected(umask, tmp_path):
    umask(0o077)
    atomic_write_text(tmp_path / "a.txt", "x")
    assert _mode(tmp_path / "a.txt") == 0o600
    with atomic_dir(tmp_path / "d"):
        pass
    assert _mode(tmp_path / "d") == 0o700
