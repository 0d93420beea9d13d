"""Shared pytest setup for the gdkvm test suite."""

import sys
from pathlib import Path

import pytest

# Let test modules import shared helpers as `tests.<pkg>.<module>` (e.g. tests.data.fixtures).
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

PHANTOM_PATIENTS = 4  # seed 0: patients 2 and 4 are stored ES -> ED and list ES tracings first


@pytest.fixture(scope="session")
def phantom(tmp_path_factory):
    """A small synthetic phantom (CAMUS + EchoNet formats, exact truth), written once per session."""
    from gdkvm.data.synthetic import write_phantom

    return write_phantom(tmp_path_factory.mktemp("phantom") / "synthetic", patients=PHANTOM_PATIENTS, seed=0)


@pytest.fixture
def one_cpu_thread():
    """Other processes share this machine's cores; one intra-op thread avoids oversubscription stalls (the
    benchmark tests use it)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A CLI command run in-process sets torch's thread count (``--threads``, or the CPU default when
    OMP_NUM_THREADS is unset); put it back so that no test depends on the order the tests ran in."""
    import torch

    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def module_one_thread():
    """One intra-op thread for a whole test module (``pytestmark = pytest.mark.usefixtures(...)``).

    The tiny models gain nothing from two threads, and on a busy 2-core machine two OpenMP threads wait on
    each other for every operator, which makes the tests many times slower.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def prepared_store(tmp_path_factory):
    """Path of a tiny prepared CAMUS dataset folder (train/, val/, test/ and store.json), built once."""
    from tests.engine.fixtures import build_store

    return build_store(tmp_path_factory)
