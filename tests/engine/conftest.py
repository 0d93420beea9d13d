"""Fixtures of the engine tests: every engine test runs on one intra-op thread (tests/conftest.py)."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def _engine_one_thread(module_one_thread):
    yield
