"""`gdkvm bench kernels`: the torch step is timed on the CPU, Triton and fla are recorded unavailable there;
the bookkeeping of an accelerated backend (speed-up, error check, OOM) is exercised with a stand-in."""

from __future__ import annotations

import pytest
import torch

from gdkvm.bench import kernels
from gdkvm.bench.common import read_csv_header
from gdkvm.bench.kernels import KERNEL_COLUMNS, KernelsConfig, parse_shapes, run_kernels
from gdkvm.errors import ConfigError
from gdkvm.kernels.reference import gdr_step_reference

SHAPE = "2x32x16x32x4"  # B x N x Ck x Cv x H


pytestmark = pytest.mark.usefixtures("one_cpu_thread")  # tests/conftest.py


def test_cpu_rows_torch_timed_triton_and_fla_unavailable(tmp_path):
    cfg = KernelsConfig(
        shapes=parse_shapes(SHAPE),
        dtypes=("fp32", "bf16"),
        device="cpu",
        warmup=1,
        iters=3,
        out=tmp_path,
        threads=2,
    )
    result = run_kernels(cfg)
    assert torch.get_num_threads() == 1  # --threads applies to the run only
    assert {r["cpu_threads"] for r in result.rows} == {"2"}
    by = {(r["dtype"], r["backend"]): r for r in result.rows}
    assert set(by) == {(d, b) for d in ("fp32", "bf16") for b in ("torch", "triton", "fla")}
    b, n, ck, cv, h = 2, 32, 16, 32, 4
    for dtype, size in (("fp32", 4), ("bf16", 2)):
        row = by[(dtype, "torch")]
        assert row["status"] == "ok" and row["us_median"] > 0
        # K, V, Q in the row's dtype; S, alpha, beta, O and S_new in fp32
        expected = (2 * b * n * ck + b * n * cv) * size + (
            2 * b * h * ck * (cv // h) + 2 * b * h * ck + b * n * cv
        ) * 4
        assert row["bytes_moved"] == expected
        assert row["gb_per_s"] == pytest.approx(expected / (row["us_median"] * 1e-6) / 1e9)
        assert by[(dtype, "triton")]["status"] == "unavailable: needs CUDA"
        assert by[(dtype, "fla")]["status"] == "unavailable: fla's Triton kernels need CUDA"
    assert read_csv_header(result.csv_path) == list(KERNEL_COLUMNS)
    assert result.targets == []  # GPU targets are only judged on a GPU


def test_accelerated_backend_bookkeeping(tmp_path, monkeypatch):
    """A stand-in 'triton' backend: exact on one shape, wrong on another, out of memory on a third."""
    calls = {"n": 0}

    def fake_triton(x):
        calls["n"] += 1
        n = x["key"].shape[1]
        if n == 48:
            raise torch.OutOfMemoryError("fake")
        readout, state = gdr_step_reference(
            x["state"], x["key"], x["value"], x["query"], x["alpha"], x["beta"]
        )
        return (readout * 1.1 if n == 40 else readout), state

    monkeypatch.setattr(
        kernels,
        "backend_steps",
        lambda device: {"triton": (fake_triton, ""), "fla": (None, "unavailable: test")},
    )
    cfg = KernelsConfig(
        shapes=parse_shapes("2x32x16x32x4,2x40x16x32x4,2x48x16x32x4,2x56x16x32x4"),
        dtypes=("fp32",),
        backends=("triton", "torch"),
        device="cpu",
        warmup=0,
        iters=2,
        out=tmp_path,
    )
    rows = {(r["pixels"], r["backend"]): r for r in run_kernels(cfg).rows}
    good = rows[(32, "triton")]
    assert good["status"] == "ok" and good["rel_err"] == 0.0 and good["speedup_vs_torch"] > 0
    assert rows[(40, "triton")]["status"].startswith("failed: output differs from the torch reference")
    assert rows[(48, "triton")]["status"] == "oom"
    assert rows[(56, "triton")]["status"] == "ok"  # the next shape still ran
    assert calls["n"] > 0


def test_parse_shapes():
    assert parse_shapes("8x576x64x256x8")[0].head_dim == 32
    with pytest.raises(ConfigError, match="BxNxCkxCvxH"):
        parse_shapes("8x576x64")
    with pytest.raises(ConfigError, match="not divisible"):
        parse_shapes("8x576x64x250x8")


def test_time_calls_blocks_queue_calls_and_report_per_call_time(monkeypatch):
    """``--block N``: N calls per timed region; each value is that region's time over its calls."""
    from gdkvm.bench import common, timing

    regions: list[int] = []
    calls: list[int] = []

    class FakeTimer:
        def __init__(self, device):
            self.n = 0

        def region(self):
            import contextlib

            @contextlib.contextmanager
            def cm():
                before = len(calls)
                yield
                regions.append(len(calls) - before)

            return cm()

        def milliseconds(self):
            return [10.0 * n for n in regions]  # 10 ms per call

    monkeypatch.setattr(timing, "StepTimer", FakeTimer)  # time_calls lives in gdkvm.bench.timing
    ms = common.time_calls(calls.append, torch.device("cpu"), warmup=2, iters=25, block=10)
    assert calls == [0, 1] + list(range(25))  # warm-up calls, then the timed ones with running indices
    assert regions == [10, 10, 5]
    assert ms == [10.0, 10.0, 10.0]


def test_block_is_recorded_and_validated(tmp_path):
    cfg = KernelsConfig(shapes=parse_shapes(SHAPE), dtypes=("fp32",), backends=("torch",), device="cpu",
                        warmup=0, iters=6, block=4, out=tmp_path)
    (row,) = run_kernels(cfg).rows
    assert row["status"] == "ok" and row["calls_per_block"] == 4
    with pytest.raises(ConfigError, match="block >= 1"):
        KernelsConfig(block=0).validate()
