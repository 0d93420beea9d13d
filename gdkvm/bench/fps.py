"""``gdkvm bench fps``: streaming inference speed of a variant, ours vs the faithful reference path.

One row per (batch, dtype, mode) in ``results/bench/fps-<device>-<precisions>-<commit>.csv``. Modes
(defined precisely in docs/benchmarks.md):

* ``model-only``: the stepper over frames already on the device, float in [0, 1], at model size;
* ``end-to-end``: per frame, exactly what ``gdkvm predict`` and ``gdkvm evaluate`` run, the frame
  pipeline's :meth:`gdkvm.engine.frames.FrameStream.step`: uint8 frames at the native size on the host
  -> bilinear resize (OpenCV, uint8) to the model size -> float in [0, 1] -> device -> stepper under
  the pipeline's precision policy -> LV probability -> host -> mask -> nearest resize (OpenCV) to the
  native size; bf16 end-to-end rows need CUDA (the pipeline runs float32 on the CPU);
* ``reference``: model-only, on the released-style reference path (:mod:`gdkvm.bench.reference_path`),
  fp32, eager, with our speed-up over it and the agreement of the masks.

Each configuration streams ``warmup`` untimed frames, then ``iters`` videos of ``frames`` frames from a
fresh state, every step timed on its own. Frames/s is ``batch * timed steps / sum of the step times``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from gdkvm import kernels
from gdkvm.bench.common import (
    DTYPES,
    STAMP_COLUMNS,
    STATUS_OK,
    StepTimer,
    TensorMemoryTracker,
    bench_csv_path,
    check_size,
    cpu_threads,
    environment_stamp,
    failure_status,
    free_device_memory,
    is_recordable_failure,
    module_bytes,
    precision_context,
    precision_unavailable,
    resolve_device,
    summarize_ms,
    utc_timestamp,
    write_csv_rows,
)
from gdkvm.bench.reference_path import GDR_FAMILY, build_reference_model, reference_unavailable
from gdkvm.engine.frames import FramePipeline, to_model_input
from gdkvm.errors import ConfigError, unknown_name
from gdkvm.models.interface import SegmentationModel

FPS_SCHEMA_VERSION = 1
FPS_COLUMNS: tuple[str, ...] = (
    *STAMP_COLUMNS,
    "variant",
    "preset",
    "memory_rule",
    "size",
    "native_size",
    "batch",
    "dtype",
    "mode",
    "compile",
    "cuda_graphs",
    "memory_backend",
    "warmup",
    "frames",
    "iters",
    "frames_per_s",
    "ms_per_frame",
    "step_ms_median",
    "step_ms_p90",
    "params",
    "gflops_per_frame",
    "peak_mem_bytes",
    "peak_mem_method",
    "state_bytes",
    "speedup_vs_reference",
    "mask_agreement",
    "status",
    "note",
)
MODES: tuple[str, ...] = ("model-only", "end-to-end", "reference")

#: GDKVM's published speed: 37 FPS on one RTX 3090 (paper Sec. 4.2; gdkvm/report/paper/fig5_speed_params.csv).
PAPER_FPS = 37.0
#: GPU targets (docs/benchmarks.md): paper preset, 256 x 256, bf16, on an H100.
TARGET_STREAMING_FPS = 10 * PAPER_FPS
TARGET_BATCHED_FPS = 3000.0
TARGET_SPEEDUP_VS_REFERENCE = 3.0
TARGET_CONDITIONS = {"preset": "paper", "size": 256, "dtype": "bf16"}

GRAPHS_NEED_GPU = "unavailable: CUDA graphs need a GPU"
END_TO_END_BF16_NEEDS_CUDA = (
    "unavailable: the frame pipeline (predict, evaluate) runs bf16 autocast on CUDA only, fp32 elsewhere"
)
GRAPHS_NEED_CONSTANT_STATE = (
    "unavailable: CUDA graphs need a constant-size memory (softmax grows every frame)"
)
COMPILED_CHILDREN = (
    "key_encoder",
    "pix_proj",
    "key_proj",
    "kpff",
    "value_encoder",
    "pixel_fuser",
    "object_summarizer",
    "object_transformer",
    "decoder",
)


@dataclass
class FpsConfig:
    """Options of ``gdkvm bench fps`` (see the CLI help and docs/benchmarks.md)."""

    variant: str = "full"
    preset: str = "paper"
    size: int = 256
    native_size: tuple[int, int] = (112, 112)
    frames: int = 100
    batches: tuple[int, ...] = (1, 16)
    dtypes: tuple[str, ...] = ("fp32", "bf16")
    device: str = "auto"
    compile: bool = False
    cuda_graphs: bool = False
    warmup: int = 10
    iters: int = 1
    reference: bool = True
    out: Path = Path("results/bench")
    seed: int = 0
    threads: int | None = None
    mask_frames: int = 8

    def validate(self) -> None:
        check_size("--size", self.size)
        if len(self.native_size) != 2 or min(self.native_size) < 1:
            raise ConfigError(f"--native-size: expected two positive sides, got {self.native_size}")
        for name in ("frames", "iters"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name}: must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ConfigError(f"--warmup: must be >= 0, got {self.warmup}")
        if not self.batches or min(self.batches) < 1:
            raise ConfigError(f"--batch-sizes: every batch must be >= 1, got {self.batches}")
        for d in self.dtypes:
            if d not in DTYPES:
                raise unknown_name("dtype", d, tuple(DTYPES))


@dataclass(frozen=True)
class TargetCheck:
    """One GPU target next to the measured value (``passed`` None when not measured)."""

    name: str
    target: float
    measured: float | None
    unit: str
    passed: bool | None
    note: str = ""


@dataclass
class FpsResult:
    """Rows written, where, messages for the user (warnings, agreement), and the GPU target checks."""

    rows: list[dict[str, Any]]
    csv_path: Path
    messages: list[str] = field(default_factory=list)
    targets: list[TargetCheck] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ step engines
class EagerStep:
    """The model's own :class:`Stepper` under no-grad inference and the row's precision."""

    def __init__(self, model: nn.Module, device: torch.device, dtype: str):
        self.model, self.device, self.dtype = model, device, dtype
        self.stepper = model.stepper()

    def reset(self) -> None:
        self.stepper = self.model.stepper()

    def step(self, frame: Tensor) -> Tensor:
        """frame (B, 1, S, S) float on the device -> logits (B, O + 1, S, S)."""
        with torch.inference_mode(), precision_context(self.device, self.dtype):
            return self.stepper.step(frame)

    def state_bytes(self) -> int:
        return self.stepper.state_bytes()


class PipelineEngine:
    """End-to-end: the frame pipeline that predict and evaluate run (:class:`gdkvm.engine.frames.FramePipeline`).

    ``fp32`` rows run it with ``amp`` off, ``bf16`` rows with ``amp`` on (bf16 autocast on CUDA).
    """

    def __init__(self, model: nn.Module, device: torch.device, dtype: str, size: int):
        self.pipeline = FramePipeline(model, device, size, amp=dtype != "fp32")
        self.stream = self.pipeline.stream()

    def reset(self) -> None:
        self.stream = self.pipeline.stream()

    def step(self, frames: Tensor) -> np.ndarray:
        """uint8 frames (B, H, W) on the host at the native size -> uint8 LV masks (B, H, W) on the host."""
        out = self.stream.step(frames.numpy(), native=True).native
        assert out is not None  # asked for with native=True
        return out

    def state_bytes(self) -> int:
        return self.stream.state_bytes()


def end_to_end_unavailable(device: torch.device, dtype: str) -> str | None:
    """Why the end-to-end pipeline cannot run at ``dtype`` on ``device`` (None: it can)."""
    return END_TO_END_BF16_NEEDS_CUDA if dtype != "fp32" and device.type != "cuda" else None


def graphs_unavailable(model: SegmentationModel, device: torch.device) -> str | None:
    """Why a frame step of ``model`` cannot be captured as a CUDA graph on ``device`` (None: it can).

    Capture needs CUDA and a model whose declared ``graph_capture_blocker`` is empty (a GDKVM memory
    model with a constant-size state and a capture-safe memory rule; the baselines declare why not).
    """
    if device.type != "cuda":
        return GRAPHS_NEED_GPU
    blocker = model.graph_capture_blocker
    return f"unavailable: {blocker}" if blocker else None


class GraphStep:
    """One whole frame step (encode, read, segment, encode value, write) captured as a CUDA graph.

    The recurrent state lives in static buffers that the captured step overwrites with the next state,
    so each ``replay`` advances the video by one frame; ``reset`` zeroes them (the empty memory).
    Needs CUDA and a constant-size memory rule.
    """

    def __init__(
        self, model: nn.Module, batch: int, size: int, device: torch.device, dtype: str, warm: int = 3
    ):
        why = graphs_unavailable(model, device)
        if why is not None:
            raise ConfigError(why)
        from gdkvm.models.gdkvm import STRIDE

        self.model, self.device, self.dtype = model, device, dtype
        self.frame = torch.rand(batch, 1, size, size, device=device)
        self.state = model.init_state(batch, (size // STRIDE, size // STRIDE), device, torch.float32)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warm):
                self._body()
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self._body()
        self.reset()

    def _buffers(self) -> list[Tensor]:
        s = self.state
        return [*s.memory.values(), s.sensory, s.prev_mask] + (
            [s.obj_memory] if s.obj_memory is not None else []
        )

    def _body(self) -> Tensor:
        with torch.inference_mode(), precision_context(self.device, self.dtype, cache=False):
            feats = self.model.encode_image(self.frame)
            logits, new = self.model.advance(self.state, feats)
            s = self.state
            for key, t in s.memory.items():
                t.copy_(new.memory[key])
            s.sensory.copy_(new.sensory)
            s.prev_mask.copy_(new.prev_mask)
            if s.obj_memory is not None and new.obj_memory is not None:
                s.obj_memory.copy_(new.obj_memory)
        return logits

    def reset(self) -> None:
        with torch.inference_mode():
            for t in self._buffers():
                t.zero_()

    def step(self, frame: Tensor) -> Tensor:
        """Copy ``frame`` into the static input and replay; the returned logits are overwritten next step."""
        with torch.inference_mode():
            self.frame.copy_(frame)
        self.graph.replay()
        return self.logits

    def state_bytes(self) -> int:
        return self.model.state_bytes(self.state)


# ------------------------------------------------------------------------------------------ frames
def make_host_frames(frames: int, batch: int, native: tuple[int, int], seed: int, pin: bool = False) -> Tensor:
    """Synthetic uint8 frames (T, B, H, W): smoothed noise (never all zeros), reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    h, w = native
    coarse = torch.rand(frames * batch, 1, max(h // 8, 2), max(w // 8, 2), generator=g)
    fine = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    noise = torch.rand(frames * batch, 1, h, w, generator=g)
    img = (0.8 * fine + 0.2 * noise).clamp(0, 1).mul(255).round().to(torch.uint8)
    img = img.view(frames, batch, h, w)
    return img.pin_memory() if pin else img


def preprocess(frames_u8: Tensor, size: int) -> Tensor:
    """uint8 frames (..., B, H, W) on the host -> float32 (..., B, 1, size, size) in [0, 1] on the host,
    resized and converted as the frame pipeline does (:func:`gdkvm.engine.frames.to_model_input`)."""
    lead = frames_u8.shape[:-2]
    x = to_model_input(frames_u8.reshape(-1, *frames_u8.shape[-2:]).numpy(), size)
    return x.view(*lead, 1, size, size)


# ------------------------------------------------------------------------------------------ measuring
@dataclass
class StreamOutcome:
    """What one configuration's stream measured."""

    step_ms: list[float]
    total_s: float
    peak_mem_bytes: int | None
    peak_mem_method: str
    state_bytes: int
    masks: Tensor | None  # (F, B, S, S) uint8 on the CPU: first frames of the first video (model-only)


@contextlib.contextmanager
def torch_memory_backend() -> Iterator[None]:
    """Temporarily force the torch memory step (``GDKVM_TRITON=0``), e.g. so FLOP counting sees matmuls."""
    old = os.environ.get(kernels.TRITON_ENV)
    os.environ[kernels.TRITON_ENV] = "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(kernels.TRITON_ENV, None)
        else:
            os.environ[kernels.TRITON_ENV] = old


def step_flops(model: nn.Module, size: int, device: torch.device) -> int:
    """FLOPs of one streaming step (fp32, batch 1, the second frame) counted by ``FlopCounterMode``.

    Counts matrix products, convolutions and attention (element-wise ops are not counted), with the
    torch memory step so the memory's matmuls are included.
    """
    frame = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    stepper = model.stepper()
    with torch_memory_backend(), torch.inference_mode():
        stepper.step(frame)
        counter = FlopCounterMode(display=False)
        with counter:
            stepper.step(frame)
    return int(counter.get_total_flops())


def _cpu_step_peak(engine: Any, fn: Callable[[], Any], weights: int) -> int:
    """Weights + carried state + the peak of bytes allocated by one (untimed) step."""
    before = engine.state_bytes()
    with TensorMemoryTracker() as tracker:
        fn()
    return weights + before + tracker.peak_bytes


def run_stream(
    engine: Any,
    mode: str,
    model: nn.Module,
    host_frames: Tensor,
    device_frames: Tensor | None,
    cfg: FpsConfig,
    device: torch.device,
    held_bytes: int = 0,
    peak_since_capture: bool = False,
) -> StreamOutcome:
    """Warm up, then time ``cfg.iters`` videos of ``cfg.frames`` steps of ``engine`` in ``mode``.

    host_frames: uint8 (T, B, H, W) on the host (end-to-end input, streamed through the
    :class:`PipelineEngine`); device_frames: float (T, B, 1, S, S) on the device (model-only and
    reference input). ``held_bytes``: device memory the benchmark holds outside
    this configuration (the other model's weights), subtracted from the CUDA peak. ``peak_since_capture``:
    the caller reset the CUDA peak before building a graph engine; keep it (a replay allocates nothing, so
    the activations only show in the peak of the warm-up and capture). Tests monkeypatch this function to
    inject failures.
    """
    n = host_frames.shape[0]

    def one_step(i: int) -> Any:
        if mode == "end-to-end":
            return engine.step(host_frames[i % n])
        assert device_frames is not None
        return engine.step(device_frames[i % n])

    engine.reset()
    for i in range(cfg.warmup):
        one_step(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        if not peak_since_capture:
            torch.cuda.reset_peak_memory_stats(device)
    step_ms: list[float] = []
    total_s = 0.0
    kept: list[Tensor] = []
    for it in range(cfg.iters):
        engine.reset()
        timer = StepTimer(device)
        for i in range(cfg.frames):
            with timer.region():
                out = one_step(i)
            if it == 0 and mode != "end-to-end" and i < cfg.mask_frames:
                kept.append(out.argmax(dim=1).to(torch.uint8))
        ms = timer.milliseconds()
        step_ms += ms
        total_s += (
            sum(ms) / 1e3
        )  # per-step regions tile the stream; gaps between them (mask keeping) excluded
    state_bytes = engine.state_bytes()
    if device.type == "cuda":
        held = held_bytes + (0 if device_frames is None else device_frames.numel() * device_frames.element_size())
        peak: int | None = torch.cuda.max_memory_allocated(device) - held
        method = "cuda max_memory_allocated minus preloaded frames and the other model's weights"
        if peak_since_capture:
            method += " (from before the graph's warm-up and capture)"
    else:
        peak = _cpu_step_peak(engine, lambda: one_step(cfg.frames), module_bytes(model))
        method = "tracked tensors: weights + carried state + one step's allocations"
    masks = torch.stack(kept).cpu() if kept else None
    return StreamOutcome(step_ms, total_s, peak, method, state_bytes, masks)


# ------------------------------------------------------------------------------------------ the benchmark
def compile_in_place(model: nn.Module) -> list[str]:
    """``nn.Module.compile()`` on the model's heavy children (the memory step stays eager); their names."""
    done = []
    children = dict(model.named_children())
    for name in COMPILED_CHILDREN:
        if name in children:
            children[name].compile()
            done.append(name)
    return done


def _memory_rule(model: SegmentationModel) -> str:
    return model.memory_name


def _memory_backend(model: SegmentationModel, device: torch.device) -> str:
    if isinstance(model.memory_module, GDR_FAMILY):
        return kernels.gdr_backend(device.type)
    return "torch"


def _agreement(ours: Tensor | None, ref: Tensor | None) -> float | None:
    if ours is None or ref is None or ours.shape != ref.shape:
        return None
    return float((ours == ref).float().mean())


def _targets(rows: list[dict[str, Any]], cfg: FpsConfig) -> list[TargetCheck]:
    """The GPU targets of docs/benchmarks.md next to this run's rows."""

    def ok(r: dict[str, Any]) -> bool:
        return r["status"] == STATUS_OK and r["mode"] == "model-only" and r["dtype"] == "bf16"

    differs = []
    if cfg.preset != TARGET_CONDITIONS["preset"]:
        differs.append(f"preset {cfg.preset}")
    if cfg.size != TARGET_CONDITIONS["size"]:
        differs.append(f"size {cfg.size}")
    if TARGET_CONDITIONS["dtype"] not in cfg.dtypes:
        differs.append("no bf16")
    note = f"targets are for paper/256/bf16 on an H100; this run: {', '.join(differs)}" if differs else ""
    single = [r["frames_per_s"] for r in rows if ok(r) and r["batch"] == 1]
    batched = [r["frames_per_s"] for r in rows if ok(r) and r["batch"] > 1]
    speed = [
        r["speedup_vs_reference"]
        for r in rows
        if ok(r) and r["batch"] == 1 and r["speedup_vs_reference"] is not None
    ]

    def check(name: str, target: float, values: list[float], unit: str) -> TargetCheck:
        best = max(values) if values else None
        return TargetCheck(name, target, best, unit, None if best is None else best >= target, note)

    return [
        check("streaming batch-1 (bf16, model-only)", TARGET_STREAMING_FPS, single, "frames/s"),
        check("batched throughput (bf16, model-only)", TARGET_BATCHED_FPS, batched, "frames/s"),
        check("speed-up over the reference path (bf16, batch 1)", TARGET_SPEEDUP_VS_REFERENCE, speed, "x"),
    ]


def _availability(
    cfg: FpsConfig, model: nn.Module, device: torch.device
) -> tuple[str | None, dict[str, str | None], list[str]]:
    """Why CUDA graphs / each dtype cannot run here (None: they can), and the lines to tell the user."""
    notes = []
    graphs_why = None
    if cfg.cuda_graphs:
        if device.type != "cuda":
            graphs_why = GRAPHS_NEED_GPU
            notes.append(
                "warning: --cuda-graphs needs a GPU; rows recorded as unavailable, eager rows still run"
            )
        else:
            graphs_why = graphs_unavailable(model, device)
            if graphs_why is not None:
                notes.append(f"warning: --cuda-graphs: {graphs_why.removeprefix('unavailable: ')}")
    dtype_why = {d: precision_unavailable(device, d) for d in cfg.dtypes}
    for d, why in dtype_why.items():
        if why is not None:
            notes.append(f"warning: --dtype {d}: {why}")
        elif d != "fp32" and device.type == "cpu":
            notes.append(f"note: --dtype {d} on the CPU: model-only rows run under CPU autocast; end-to-end "
                         f"rows are unavailable (predict's frame pipeline runs fp32 on the CPU)")
    return graphs_why, dtype_why, notes


def _plan(cfg: FpsConfig, graphs_why: str | None) -> list[tuple[int, str, str, bool]]:
    """The configurations (batch, dtype, mode, CUDA graphs) in run order; the reference first per batch."""
    plan: list[tuple[int, str, str, bool]] = []
    for b in cfg.batches:
        if cfg.reference:
            plan.append((b, "fp32", "reference", False))
        for d in cfg.dtypes:
            plan += [(b, d, mode, False) for mode in ("model-only", "end-to-end")]
            if cfg.cuda_graphs:  # end-to-end times predict's pipeline, which runs no CUDA graph
                plan.append((b, d, "model-only", True))
    return plan


def _measure(
    net: nn.Module,
    mode: str,
    batch: int,
    dtype: str,
    graphs: bool,
    host_all: Tensor,
    cfg: FpsConfig,
    device: torch.device,
    held_bytes: int = 0,
) -> tuple[str, StreamOutcome | None]:
    """Stream one configuration: ``("ok", outcome)``, or ``(failure status, None)`` (OOM above all).

    Its tensors (engine, preloaded frames) are freed when it returns. ``held_bytes``: see run_stream.
    """
    try:
        host = host_all[:, :batch]
        device_frames = None if mode == "end-to-end" else preprocess(host, cfg.size).to(device)
        if mode == "end-to-end":
            engine: Any = PipelineEngine(net, device, dtype, cfg.size)
        elif graphs:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            engine = GraphStep(net, batch, cfg.size, device, dtype)
        else:
            engine = EagerStep(net, device, dtype)
        return STATUS_OK, run_stream(engine, mode, net, host, device_frames, cfg, device,
                                     held_bytes=held_bytes, peak_since_capture=graphs)
    except Exception as e:  # one configuration failing must not stop the others
        if not is_recordable_failure(e):
            raise
        return failure_status(e), None


def _compare_with_reference(rows: list[dict[str, Any]], masks: dict[tuple, Tensor | None]) -> list[str]:
    """Fill ``speedup_vs_reference`` (reference median step time / ours, same batch) and ``mask_agreement``
    of the model-only rows; warnings where fp32 masks disagree."""
    by_key = {(r["batch"], r["dtype"], r["mode"], r["cuda_graphs"]): r for r in rows}
    messages = []
    for r in rows:
        if r["mode"] != "model-only" or r["status"] != STATUS_OK:
            continue
        ref_key = (r["batch"], "fp32", "reference", False)
        ref_row = by_key.get(ref_key)
        if ref_row is None or ref_row["status"] != STATUS_OK or not r["step_ms_median"] > 0:
            continue
        # medians, not means: one stalled step (another process on the CPU) must not fake a speed-up
        r["speedup_vs_reference"] = ref_row["step_ms_median"] / r["step_ms_median"]
        agree = _agreement(
            masks.get((r["batch"], r["dtype"], "model-only", r["cuda_graphs"])), masks.get(ref_key)
        )
        r["mask_agreement"] = agree
        if r["dtype"] == "fp32" and agree is not None and agree < 0.999:
            messages.append(
                f"warning: batch {r['batch']} fp32: our masks agree with the reference path on only "
                f"{100 * agree:.2f}% of pixels; the speed-up does not count"
            )
    return messages


def run_fps(cfg: FpsConfig, progress: Callable[[int, int, str], None] | None = None) -> FpsResult:
    """Run the FPS benchmark and append its rows to the stamped CSV under ``cfg.out``.

    Raises ConfigError for bad options (including ``--device cuda`` without a GPU); failures of single
    configurations (out of memory, unavailable precision or CUDA graphs) become row statuses.
    """
    with cpu_threads(cfg.threads):
        return _run_fps(cfg, progress)


def _run_fps(
    cfg: FpsConfig,
    progress: Callable[[int, int, str], None] | None = None,
) -> FpsResult:
    cfg.validate()
    device = resolve_device(cfg.device)
    stamp = environment_stamp(device)
    from gdkvm.models.registry import build_model

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.variant, cfg.preset).to(device).eval()  # checked against SegmentationModel
    messages: list[str] = []
    params = sum(p.numel() for p in model.parameters())
    base = {
        "schema_version": FPS_SCHEMA_VERSION,
        "bench": "fps",
        **stamp.columns(),
        "variant": cfg.variant,
        "preset": cfg.preset,
        "memory_rule": _memory_rule(model),
        "size": cfg.size,
        "native_size": f"{cfg.native_size[0]}x{cfg.native_size[1]}",
        "warmup": cfg.warmup,
        "frames": cfg.frames,
        "iters": cfg.iters,
        "params": params,
    }
    gflops = step_flops(model, cfg.size, device) / 1e9

    reference = None
    ref_why = None
    ref_gflops = None
    if cfg.reference:
        ref_why = reference_unavailable(model)
        if ref_why is None:
            reference = build_reference_model(model)
            ref_gflops = step_flops(reference, cfg.size, device) / 1e9
    if cfg.compile:
        compiled = compile_in_place(model)
        messages.append(
            f"torch.compile: {', '.join(compiled)} (compiled during warm-up; the memory step is eager)"
        )
    graphs_why, dtype_why, notes = _availability(cfg, model, device)
    messages += notes
    plan = _plan(cfg, graphs_why)

    host_all = make_host_frames(cfg.frames, max(cfg.batches), cfg.native_size, cfg.seed)
    rows: list[dict[str, Any]] = []
    masks: dict[tuple[int, str, str, bool], Tensor | None] = {}
    for done, (b, d, mode, graphs) in enumerate(plan):
        if progress is not None:
            progress(done, len(plan), f"batch {b} {d} {mode}{' graphs' if graphs else ''}")
        row = dict(
            base,
            timestamp=utc_timestamp(),
            batch=b,
            dtype=d,
            mode=mode,
            cuda_graphs=graphs,
            compile=cfg.compile and mode != "reference",
            gflops_per_frame=gflops,
            note="",
        )
        net = model
        if mode == "reference":
            row["memory_backend"] = "einsum (released-style)"
            row["gflops_per_frame"] = ref_gflops
            row["note"] = "fp32 eager, released-style per-frame einsum memory"
            net = reference
        else:
            row["memory_backend"] = _memory_backend(model, device)
        why = None
        if mode == "reference" and reference is None:
            why = f"unavailable: {ref_why}"
        elif mode != "reference" and dtype_why[d] is not None:
            why = dtype_why[d]
        elif mode == "end-to-end" and end_to_end_unavailable(device, d) is not None:
            why = end_to_end_unavailable(device, d)
        elif graphs and graphs_why is not None:
            why = graphs_why
        if why is not None:
            rows.append(dict(row, status=why))
            continue
        other = reference if net is model else model
        held = module_bytes(other) if other is not None and device.type == "cuda" else 0
        status, out = _measure(net, mode, b, d, graphs, host_all, cfg, device, held_bytes=held)
        if out is None:
            free_device_memory(device)  # after the exception (and its frames) is gone
            rows.append(dict(row, status=status))
            continue
        stats = summarize_ms(out.step_ms)
        fps = b * stats.count / out.total_s if out.total_s > 0 else float("nan")
        row.update(
            frames_per_s=fps,
            ms_per_frame=1e3 / fps if fps == fps and fps > 0 else float("nan"),
            step_ms_median=stats.median_ms,
            step_ms_p90=stats.p90_ms,
            peak_mem_bytes=out.peak_mem_bytes,
            peak_mem_method=out.peak_mem_method,
            state_bytes=out.state_bytes,
            status=STATUS_OK,
        )
        if d != "fp32" and device.type == "cpu":
            row["note"] = "CPU autocast"
        masks[(b, d, mode, graphs)] = out.masks
        rows.append(row)
    if progress is not None:
        progress(len(plan), len(plan), "done")

    messages += _compare_with_reference(rows, masks)

    precision = "-".join(cfg.dtypes)
    csv_path = write_csv_rows(bench_csv_path(cfg.out, "fps", stamp, precision), FPS_COLUMNS, rows)
    targets = _targets(rows, cfg) if device.type == "cuda" else []
    return FpsResult(rows=rows, csv_path=csv_path, messages=messages, targets=targets)
