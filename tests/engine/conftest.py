"""Fixtures of the engine tests."""

from pathlib import Path

import pytest
import torch

from tests.engine.fixtures import build_store


@pytest.fixture(scope="module", autouse=True)
def single_torch_thread():
    """Run the engine tests on one intra-op thread.

    The tiny model gains nothing from two threads, and on a busy 2-core machine two OpenMP threads
    wait on each other for every operator, which makes the tests many times slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def prepared_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a tiny prepared CAMUS dataset folder (holds train/, val/, test/ and store.json)."""
    return build_store(tmp_path_factory)
