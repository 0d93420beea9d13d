"""A full disk names the file (never a bare Errno 28 or torch's "unexpected pos"); a killed atomic_dir's
hidden temp folder is cleaned on the next run."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from gdkvm.engine.checkpoint import save_trainer_state
from gdkvm.errors import DataError
from gdkvm.utils.atomic import atomic_dir, atomic_write_text


def test_disk_full_names_the_target(tmp_path, monkeypatch):
    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(DataError, match=r"out\.txt: cannot write: No space left on device \(errno 28\)"):
        atomic_write_text(tmp_path / "out.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_trainer_state_write_failure_is_one_line(tmp_path, monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(DataError, match="trainer_state.pt: cannot write the trainer state") as info:
        save_trainer_state(tmp_path / "trainer_state.pt", {"iteration": 1})
    assert "\n" not in str(info.value)
    assert not (tmp_path / "trainer_state.pt").exists()


def test_stale_temp_folder_of_a_killed_run_is_removed(tmp_path):
    stale = tmp_path / ".camus.abc123.tmp"
    (stale / "train").mkdir(parents=True)
    with atomic_dir(tmp_path / "camus") as tmp:
        (tmp / "store.json").write_text("{}")
    assert not stale.exists() and (tmp_path / "camus" / "store.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["camus"]
