"""Trainer-state files: RNG round trip through weights_only loading, and clear errors on bad files."""

import random
from fractions import Fraction

import numpy as np
import pytest
import torch

from gdkvm.engine.checkpoint import (
    RunPaths,
    capture_rng_state,
    load_trainer_state,
    restore_rng_state,
    save_trainer_state,
)
from gdkvm.errors import DataError


def _draw() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random(), float(np.random.randn())


def test_rng_state_round_trip_through_weights_only_file(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's legacy state
    state = capture_rng_state()
    expected = _draw()
    path = tmp_path / "trainer_state.pt"
    save_trainer_state(path, {"iteration": 7, "model": {"w": torch.ones(2)}, "rng": state})
    _draw()  # move every generator on
    loaded = load_trainer_state(path)  # torch.load(weights_only=True) inside
    restore_rng_state(loaded["rng"])
    assert _draw() == expected
    assert loaded["iteration"] == 7
    assert torch.equal(loaded["model"]["w"], torch.ones(2))


def test_missing_trainer_state_is_one_line_data_error(tmp_path):
    with pytest.raises(DataError) as info:
        load_trainer_state(tmp_path / "trainer_state.pt")
    assert "\n" not in str(info.value)
    assert "trainer_state.pt" in str(info.value)


def test_truncated_trainer_state_is_data_error(tmp_path):
    path = tmp_path / "trainer_state.pt"
    save_trainer_state(path, {"iteration": 1, "model": {"w": torch.zeros(100)}, "rng": capture_rng_state()})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as info:
        load_trainer_state(path)
    assert "unreadable trainer state" in str(info.value)
    assert "\n" not in str(info.value)


def test_foreign_pickle_is_refused(tmp_path):
    path = tmp_path / "trainer_state.pt"
    torch.save({"iteration": 1, "model": {}, "x": Fraction(1, 3)}, path)  # not allowed by weights_only
    with pytest.raises(DataError):
        load_trainer_state(path)


def test_state_without_required_keys_is_refused(tmp_path):
    path = tmp_path / "trainer_state.pt"
    torch.save({"something": torch.ones(1)}, path)
    with pytest.raises(DataError) as info:
        load_trainer_state(path)
    assert "not a gdkvm trainer state" in str(info.value)


def test_stale_temporaries_are_removed(tmp_path):
    paths = RunPaths(tmp_path)
    stale = tmp_path / ".trainer_state.pt.abc123.tmp.pt"
    stale.write_bytes(b"partial")
    keep = tmp_path / "metrics.jsonl"
    keep.write_text("{}\n")
    removed = paths.remove_stale_temporaries()
    assert removed == [stale]
    assert not stale.exists() and keep.exists()
