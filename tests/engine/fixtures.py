"""A tiny prepared CAMUS store from the synthetic phantom, shared by the engine and CLI tests.

Built once per test session: 4 phantom patients (both views), prepared at 64 x 64 with 6 frames per
clip, giving train/val/test splits of 4/2/2 clips (the EchoNet store, one video per patient, 2/1/1). ``tests/engine/conftest.py`` exposes it as the
``prepared_store`` fixture; other test folders wrap :func:`build_store` in their own fixture.
"""

from __future__ import annotations

from pathlib import Path

import pytest

STORE_SIZE = 64
STORE_FRAMES = 6
_CACHE: dict[str, Path] = {}


def build_phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The raw synthetic phantom (CAMUS_public/ and EchoNet-Dynamic/), written on first use."""
    key = f"phantom:{tmp_path_factory.getbasetemp()}"
    if key not in _CACHE:
        from gdkvm.data.synthetic import write_phantom

        _CACHE[key] = write_phantom(tmp_path_factory.mktemp("engine-phantom") / "raw", patients=4, seed=0).root
    return _CACHE[key]


def build_store(tmp_path_factory: pytest.TempPathFactory, dataset: str = "camus") -> Path:
    """``<tmp>/prepared/<dataset>`` (the prepared dataset folder), built on first use."""
    key = f"{dataset}:{tmp_path_factory.getbasetemp()}"
    if key not in _CACHE:
        from gdkvm.data.store import prepare_camus, prepare_echonet
        from gdkvm.data.synthetic import CAMUS_DIR, ECHONET_DIR

        raw = build_phantom(tmp_path_factory)
        out = tmp_path_factory.mktemp(f"engine-store-{dataset}") / "prepared"
        if dataset == "camus":
            summary = prepare_camus(raw / CAMUS_DIR, out, size=STORE_SIZE, frames=STORE_FRAMES)
        else:
            summary = prepare_echonet(raw / ECHONET_DIR, out, size=STORE_SIZE, frames=STORE_FRAMES)
        assert not summary.bad_cases, summary.bad_cases
        assert min(summary.counts.values()) > 0, summary.counts
        _CACHE[key] = summary.out_dir
    return _CACHE[key]


def tiny_config(store: Path, **overrides):
    """A TrainConfig small enough for CPU tests: tiny preset, batch 2, CPU, few iterations."""
    from gdkvm.engine.config import TrainConfig

    base = dict(data=str(store), variant="full", preset="tiny", iterations=4, batch_size=2, lr=1e-3,
                device="cpu", val_every=1000, ckpt_every=1000, seed=0)
    base.update(overrides)
    return TrainConfig(**base).validate()
