"""`gdkvm bench fps` library: CSV schema and atomic writes, stamps, reference-path agreement, failure rows.

Everything runs on the CPU with the tiny preset at 64 x 64 and a handful of frames; nothing asserts a
timing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from gdkvm.bench import common, fps
from gdkvm.bench.common import TensorMemoryTracker, read_csv_rows, write_csv_rows
from gdkvm.bench.fps import FPS_COLUMNS, FpsConfig, run_fps
from gdkvm.bench.reference_path import ReferenceUnavailable, ReleasedStyleMemory, build_reference_model
from gdkvm.errors import ConfigError, GdkvmError
from gdkvm.models.registry import build_model

STAMP_COLUMNS = (
    "schema_version",
    "bench",
    "timestamp",
    "commit",
    "torch_version",
    "triton_version",
    "cuda_version",
    "device_type",
    "device_name",
    "cpu_threads",
)


pytestmark = pytest.mark.usefixtures("one_cpu_thread")  # tests/conftest.py


def tiny_cfg(tmp_path: Path, **kw) -> FpsConfig:
    base = dict(
        preset="tiny",
        size=64,
        native_size=(48, 80),
        frames=2,
        warmup=1,
        batches=(1,),
        dtypes=("fp32",),
        device="cpu",
        out=tmp_path,
        mask_frames=2,
    )
    base.update(kw)
    return FpsConfig(**base)


# ------------------------------------------------------------------------------------------ CSV
def test_csv_schema_append_and_mismatch(tmp_path):
    path = tmp_path / "x.csv"
    cols = ["schema_version", "a", "b"]
    write_csv_rows(path, cols, [{"schema_version": 1, "a": 1.5, "b": "x"}])
    write_csv_rows(path, cols, [{"schema_version": 1, "a": None, "b": True}])
    lines = path.read_text().splitlines()
    assert lines == ["schema_version,a,b", "1,1.5,x", "1,,true"]
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="different column schema"):
        write_csv_rows(path, ["schema_version", "a"], [{"a": 2}])
    with pytest.raises(GdkvmError, match="not in the schema"):
        write_csv_rows(path, cols, [{"zzz": 1}])
    assert path.read_bytes() == before


def test_csv_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "x.csv"
    cols = ["schema_version", "a"]
    write_csv_rows(path, cols, [{"schema_version": 1, "a": 1}])
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_csv_rows(path, cols, [{"schema_version": 1, "a": 2}])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv"]  # no temporary file left behind


# ------------------------------------------------------------------------------------------ helpers
def test_parsers_and_summary():
    assert common.parse_int_list("--batch", "1, 16,1") == (1, 16)
    with pytest.raises(ConfigError, match="--batch"):
        common.parse_int_list("--batch", "1,x")
    with pytest.raises(ConfigError, match=">= 1"):
        common.parse_int_list("--batch", "0")
    with pytest.raises(ConfigError, match="unknown dtype 'fp64'"):
        common.parse_name_list("--dtype", "fp32,fp64", ("fp32", "bf16"))
    s = common.summarize_ms([4.0, 1.0, 3.0, 2.0])
    assert (s.median_ms, s.mean_ms, s.p90_ms, s.count) == (2.5, 2.5, 4.0, 4)
    assert common.slugify("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"


def test_tensor_memory_tracker_counts_live_storages_once():
    x = torch.ones(1000)
    with TensorMemoryTracker() as tracker:
        a = x * 2  # 4000 bytes
        view = a[:10]  # a view: no new storage
        a.add_(1)  # in place: no new storage
        b = a + 1  # 4000 more
        del b  # freed: the peak stays, the live total drops
        c = torch.zeros(500)  # 2000
    assert tracker.peak_bytes == 8000
    assert tracker.current == 6000
    del a, view, c
    assert tracker.current == 0


# ------------------------------------------------------------------------------------------ the benchmark
def test_fps_rows_carry_stamps_and_agree_with_reference(tmp_path):
    result = run_fps(tiny_cfg(tmp_path, batches=(1, 2), dtypes=("fp32", "bf16")))
    rows = result.rows
    assert {(r["batch"], r["dtype"], r["mode"]) for r in rows} == {
        (b, d, m) for b in (1, 2) for d in ("fp32", "bf16") for m in ("model-only", "end-to-end")
    } | {(1, "fp32", "reference"), (2, "fp32", "reference")}
    weights = sum(p.numel() * 4 for p in build_model("full", "tiny").parameters())
    # predict's frame pipeline runs fp32 on the CPU, so there is no bf16 end-to-end row to time here
    for r in [r for r in rows if (r["mode"], r["dtype"]) == ("end-to-end", "bf16")]:
        assert r["status"] == fps.END_TO_END_BF16_NEEDS_CUDA
    rows = [r for r in rows if (r["mode"], r["dtype"]) != ("end-to-end", "bf16")]
    for r in rows:
        assert r["status"] == "ok", r
        for col in STAMP_COLUMNS:
            assert r[col] not in (None, ""), col
        assert r["frames_per_s"] > 0 and r["step_ms_median"] > 0
        assert r["peak_mem_bytes"] > weights  # weights + state + activations
        assert r["gflops_per_frame"] > 0
    ours_fp32 = [r for r in rows if r["mode"] == "model-only" and r["dtype"] == "fp32"]
    assert all(r["mask_agreement"] == 1.0 and r["speedup_vs_reference"] > 0 for r in ours_fp32)
    ref = next(r for r in rows if r["mode"] == "reference")
    assert ref["memory_backend"].startswith("einsum") and ref["gflops_per_frame"] > 0
    # the CSV on disk holds exactly these rows under the fixed schema
    path = result.csv_path
    stamp = common.environment_stamp(torch.device("cpu"))
    assert path.name == f"fps-{stamp.device_slug}-fp32-bf16-{stamp.commit}.csv"
    assert common.read_csv_header(path) == list(FPS_COLUMNS)
    on_disk = read_csv_rows(path)
    assert len(on_disk) == len(result.rows) and all(
        d["schema_version"] == str(fps.FPS_SCHEMA_VERSION) for d in on_disk
    )


@pytest.mark.parametrize("variant", ["full", "linear", "delta", "wo-alpha", "wo-beta"])
@pytest.mark.parametrize("decay_form", ["exp", "official"])
def test_reference_path_gives_the_same_masks(variant, decay_form):
    torch.manual_seed(0)
    model = build_model(variant, "tiny", decay_form=decay_form).eval()
    ref = build_reference_model(model)
    assert isinstance(ref.memory, ReleasedStyleMemory) and ref is not model
    ours_sd, ref_sd = model.state_dict(), ref.state_dict()
    assert ours_sd.keys() == ref_sd.keys() and all(torch.equal(ours_sd[k], ref_sd[k]) for k in ours_sd)
    writes = []
    original = ref.memory.write
    ref.memory.write = lambda *a, **k: writes.append(1) or original(*a, **k)
    a, b = model.stepper(), ref.stepper()
    g = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        for _ in range(4):
            x = torch.rand(2, 1, 64, 64, generator=g)
            la, lb = a.step(x), b.step(x)
            assert ((la - lb).norm() / lb.norm()).item() < 1e-4
            assert torch.equal(la.argmax(1), lb.argmax(1))
    assert len(writes) == 4  # the released-style memory really ran


def test_released_style_write_matches_rule_on_random_state():
    torch.manual_seed(0)
    model = build_model("full", "tiny").eval()
    rule = model.memory
    ref = ReleasedStyleMemory.from_rule(rule)
    g = torch.Generator().manual_seed(3)
    state = {"S": torch.randn(3, rule.heads, rule.key_dim, rule.head_dim, generator=g)}
    key = torch.softmax(torch.randn(3, 20, rule.key_dim, generator=g), dim=-1)
    value = torch.randn(3, 20, rule.value_dim, generator=g)
    with torch.no_grad():
        expected = rule.write(state, key, value)["S"]
        got = ref.write(state, key, value)["S"]
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)
        assert torch.allclose(ref.read(state, key), rule.read(state, key), rtol=1e-5, atol=1e-6)


def test_reference_unavailable_for_gka(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(ReferenceUnavailable, match="no 'gka' memory"):
        build_reference_model(build_model("gka", "tiny"))
    rows = run_fps(tiny_cfg(tmp_path, variant="gka", frames=1, warmup=0)).rows
    ref = next(r for r in rows if r["mode"] == "reference")
    assert ref["status"].startswith("unavailable: the released code has no 'gka' memory")
    assert all(r["status"] == "ok" for r in rows if r["mode"] != "reference")


@pytest.mark.parametrize("error", [MemoryError("cpu"), torch.OutOfMemoryError("CUDA out of memory")])
def test_oom_is_recorded_and_the_next_size_runs(tmp_path, monkeypatch, error):
    real = fps.run_stream

    def flaky(engine, mode, model, host_frames, device_frames, cfg, device, **kw):
        if host_frames.shape[1] == 2:
            raise error
        return real(engine, mode, model, host_frames, device_frames, cfg, device, **kw)

    monkeypatch.setattr(fps, "run_stream", flaky)
    result = run_fps(tiny_cfg(tmp_path, batches=(1, 2, 3), frames=1, warmup=0, reference=False))
    status = {(r["batch"], r["mode"]): r["status"] for r in result.rows}
    assert status == {
        (1, "model-only"): "ok",
        (1, "end-to-end"): "ok",
        (2, "model-only"): "oom",
        (2, "end-to-end"): "oom",
        (3, "model-only"): "ok",
        (3, "end-to-end"): "ok",
    }
    assert [r["status"] for r in read_csv_rows(result.csv_path)].count("oom") == 2


def test_cuda_unavailable_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as info:
        run_fps(tiny_cfg(tmp_path, device="cuda"))
    msg = str(info.value)
    assert msg == "CUDA is not available on this machine; use --device cpu or auto"
    assert not list(tmp_path.iterdir())


def test_cuda_graphs_and_bf16_unavailable_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    result = run_fps(
        tiny_cfg(tmp_path, dtypes=("fp32", "bf16"), frames=1, warmup=0, cuda_graphs=True, reference=False)
    )
    by = {(r["dtype"], r["mode"], r["cuda_graphs"]): r["status"] for r in result.rows}
    assert by[("fp32", "model-only", False)] == "ok" and by[("fp32", "end-to-end", False)] == "ok"
    assert by[("fp32", "model-only", True)] == "unavailable: CUDA graphs need a GPU"
    assert by[("bf16", "model-only", False)].startswith("unavailable: this torch build has no cpu autocast")
    assert any(m.startswith("warning: --cuda-graphs needs a GPU") for m in result.messages)
    assert any("--dtype bf16" in m for m in result.messages)


def test_compile_flag_compiles_the_network_modules(tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(
        torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self).__name__)
    )
    result = run_fps(tiny_cfg(tmp_path, frames=1, warmup=0, compile=True))
    assert "ResNetTrunk" in compiled and "MaskDecoder" in compiled
    assert all(r["compile"] is (r["mode"] != "reference") for r in result.rows)
    assert any(m.startswith("torch.compile:") for m in result.messages)


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("full", None),
        ("unet", "unavailable: CUDA graphs need a GDKVM memory model (UNet has none)"),
        ("stm", "unavailable: CUDA graphs need a GDKVM memory model (STM has none)"),
        ("softmax-memory", fps.GRAPHS_NEED_CONSTANT_STATE),
        ("gka", "unavailable: CUDA graphs with the gka memory: its batched Cholesky solve"),
    ],
)
def test_graph_capture_availability_on_a_cuda_device(variant, expected):
    """Decided from the model alone (nothing runs on the device), so it is checked here without a GPU."""
    from gdkvm.models.registry import build_model

    model = build_model(variant, "tiny")
    why = fps.graphs_unavailable(model, torch.device("cuda", 0))
    if expected is None:
        assert why is None
    else:
        assert why is not None and why.startswith(expected)
    assert fps.graphs_unavailable(model, torch.device("cpu")) == fps.GRAPHS_NEED_GPU


def test_triton_compile_error_is_a_row_not_a_crash(tmp_path, monkeypatch):
    import triton
    real = fps.run_stream

    def broken(engine, mode, model, host_frames, device_frames, cfg, device, **kw):
        if mode == "end-to-end":
            raise triton.compiler.errors.CompilationError("k.py", None, "out of shared memory")
        return real(engine, mode, model, host_frames, device_frames, cfg, device, **kw)

    monkeypatch.setattr(fps, "run_stream", broken)
    rows = run_fps(tiny_cfg(tmp_path, frames=1, warmup=0, reference=False)).rows
    status = {r["mode"]: r["status"] for r in rows}
    assert status["model-only"] == "ok"
    assert status["end-to-end"].startswith("failed: CompilationError")


def test_a_bug_in_the_benchmark_still_raises(tmp_path, monkeypatch):
    def buggy(*a, **kw):
        raise KeyError("bug")

    monkeypatch.setattr(fps, "run_stream", buggy)
    with pytest.raises(KeyError):
        run_fps(tiny_cfg(tmp_path, frames=1, warmup=0, reference=False))
