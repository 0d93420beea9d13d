"""``gdkvm bench kernels``: one frame's memory step (write, then read), per backend, in microseconds.

Backends:

* ``torch``: :func:`gdkvm.kernels.reference.gdr_step_reference` (what the model runs on the CPU);
* ``triton``: the fused kernel ``gdkvm.kernels.gdr_triton.gdr_step_triton`` (CUDA only; on the CPU the
  row says ``unavailable: needs CUDA``: the Triton interpreter is a correctness tool, its time means
  nothing);
* ``fla``: fla's ``fused_recurrent_gated_delta_rule`` on the same state shape (one key head shared by
  ``H`` value heads, the frame's N pixels as N tokens). It computes a **different function** (N
  sequential per-pixel updates instead of GDKVM's one block update per frame), so only its time is
  comparable; CUDA only.

Shapes are ``BxNxCkxCvxH``: B = batch x objects, N = pixels of a frame at stride 16, Ck key channels,
Cv value channels, H value heads. Bytes moved (for the achieved bandwidth) = reading K, V, Q, S, alpha,
beta and writing O and S_new once each (fla: its q, k, v, g, beta, initial state, output, final state).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gdkvm.bench.common import (
    DTYPES,
    STAMP_COLUMNS,
    STATUS_OK,
    cpu_threads,
    environment_stamp,
    failure_status,
    free_device_memory,
    is_recordable_failure,
    parse_name_list,
    resolve_device,
    summarize_ms,
    time_calls,
    utc_timestamp,
    write_csv_rows,
)
from gdkvm.errors import ConfigError
from gdkvm.kernels import triton_enabled
from gdkvm.kernels.reference import gdr_step_reference

KERNELS_SCHEMA_VERSION = 2
KERNEL_COLUMNS: tuple[str, ...] = (
    *STAMP_COLUMNS,
    "backend",
    "shape",
    "batch",
    "pixels",
    "key_dim",
    "value_dim",
    "heads",
    "dtype",
    "state_dtype",
    "warmup",
    "iters",
    "calls_per_block",
    "us_median",
    "us_p90",
    "bytes_moved",
    "gb_per_s",
    "speedup_vs_torch",
    "rel_err",
    "status",
    "note",
)
BACKENDS: tuple[str, ...] = ("torch", "triton", "fla")
#: GDKVM's paper shapes: 8 = batch x objects; N = 256, 576, 2304 pixels (256, 384, 768 px frames).
DEFAULT_SHAPES = "8x256x64x256x8,8x576x64x256x8,8x2304x64x256x8"
#: GPU target: the fused step at least this many times faster than the torch step.
TARGET_FUSED_SPEEDUP = 2.0
#: Largest relative error of the fused step against the torch reference (both fp32 inside).
MAX_REL_ERR = 1e-3
FLA_NOTE = (
    "fla computes N sequential per-pixel updates, not GDKVM's block update: time comparable, outputs not"
)


@dataclass(frozen=True)
class KernelShape:
    """One memory-step shape (see the module docstring)."""

    batch: int
    pixels: int
    key_dim: int
    value_dim: int
    heads: int

    @property
    def head_dim(self) -> int:
        return self.value_dim // self.heads

    @property
    def label(self) -> str:
        return f"{self.batch}x{self.pixels}x{self.key_dim}x{self.value_dim}x{self.heads}"


def parse_shapes(text: str) -> tuple[KernelShape, ...]:
    """``"8x576x64x256x8,2x16x16x32x4"`` -> shapes; ConfigError for malformed ones."""
    shapes = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        parts = item.lower().split("x")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 5 or min(values) < 1:
            raise ConfigError(f"--shapes: '{item}' is not BxNxCkxCvxH with five positive integers")
        shape = KernelShape(*values)
        if shape.value_dim % shape.heads:
            raise ConfigError(f"--shapes: '{item}': Cv={shape.value_dim} is not divisible by H={shape.heads}")
        shapes.append(shape)
    if not shapes:
        raise ConfigError("--shapes: expected at least one BxNxCkxCvxH shape")
    return tuple(shapes)


@dataclass
class KernelsConfig:
    """Options of ``gdkvm bench kernels``."""

    shapes: tuple[KernelShape, ...] = field(default_factory=lambda: parse_shapes(DEFAULT_SHAPES))
    dtypes: tuple[str, ...] = ("fp32", "bf16")
    backends: tuple[str, ...] = BACKENDS
    device: str = "auto"
    warmup: int = 10
    iters: int = 100
    block: int = 10
    sets: int = 4
    out: Path = Path("results/bench")
    seed: int = 0
    threads: int | None = None

    def validate(self) -> None:
        parse_name_list("--dtype", self.dtypes, tuple(DTYPES))
        parse_name_list("--backends", self.backends, BACKENDS)
        if self.iters < 1 or self.warmup < 0 or self.sets < 1 or self.block < 1:
            raise ConfigError(
                f"--iters/--warmup/--sets/--block: need iters >= 1, warmup >= 0, sets >= 1, block >= 1; got "
                f"{self.iters}, {self.warmup}, {self.sets}, {self.block}"
            )


@dataclass(frozen=True)
class KernelTarget:
    shape: str
    dtype: str
    speedup: float
    passed: bool


@dataclass
class KernelsResult:
    rows: list[dict[str, Any]]
    csv_path: Path
    targets: list[KernelTarget] = field(default_factory=list)


def make_inputs(shape: KernelShape, dtype: torch.dtype, device: torch.device, seed: int) -> dict[str, Tensor]:
    """Random inputs like the model's: softmax keys/queries, Gaussian values, fp32 state and gates.

    key, query: ``[B, N, Ck]`` in ``dtype``; value: ``[B, N, Cv]`` in ``dtype``; state
    ``[B, H, Ck, Dv]`` fp32; alpha in (0.5, 1) and beta in (0, 1), ``[B, H, Ck, 1]`` fp32.
    """
    g = torch.Generator().manual_seed(seed)
    b, n, ck, cv, h = shape.batch, shape.pixels, shape.key_dim, shape.value_dim, shape.heads
    out = {
        "state": 0.1 * torch.randn(b, h, ck, shape.head_dim, generator=g),
        "key": torch.softmax(torch.randn(b, n, ck, generator=g), dim=-1).to(dtype),
        "value": torch.randn(b, n, cv, generator=g).to(dtype),
        "query": torch.softmax(torch.randn(b, n, ck, generator=g), dim=-1).to(dtype),
        "alpha": 0.5 + 0.5 * torch.rand(b, h, ck, 1, generator=g),
        "beta": torch.rand(b, h, ck, 1, generator=g),
    }
    return {k: v.to(device) for k, v in out.items()}


def step_bytes(inputs: dict[str, Tensor], readout: Tensor, new_state: Tensor) -> int:
    """Bytes read (K, V, Q, S, alpha, beta) plus bytes written (O, S_new), each once."""
    read = sum(
        inputs[k].numel() * inputs[k].element_size()
        for k in ("key", "value", "query", "state", "alpha", "beta")
    )
    return read + readout.numel() * readout.element_size() + new_state.numel() * new_state.element_size()


def rel_err(out: Tensor, ref: Tensor) -> float:
    """``||out - ref|| / ||ref||`` in float64."""
    ref64 = ref.double()
    return float((out.double() - ref64).norm() / ref64.norm().clamp_min(1e-30))


def _torch_step(x: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    readout, new_state = gdr_step_reference(
        x["state"], x["key"], x["value"], x["query"], x["alpha"], x["beta"]
    )
    assert readout is not None
    return readout, new_state


def triton_step() -> tuple[Callable[[dict[str, Tensor]], tuple[Tensor, Tensor]] | None, str]:
    """The fused step as a callable, or None and why it is unavailable here."""
    if not torch.cuda.is_available():
        return None, "unavailable: needs CUDA"
    if not triton_enabled():
        return None, "unavailable: disabled by GDKVM_TRITON=0"
    try:
        module = importlib.import_module("gdkvm.kernels.gdr_triton")
    except ImportError as e:
        return None, f"unavailable: {e}"
    if not module.available():
        return None, "unavailable: needs CUDA"

    def step(x: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        readout, new_state = module.gdr_step_triton(
            x["state"], x["key"], x["value"], x["query"], x["alpha"], x["beta"], erase=True
        )
        return readout, new_state

    return step, ""


def fla_inputs(x: dict[str, Tensor], shape: KernelShape) -> dict[str, Any]:
    """Our inputs in fla's layout: one key head, H value heads (GVA), N tokens, per-head scalar gates."""
    b, n, h = shape.batch, shape.pixels, shape.heads
    alpha = x["alpha"].mean(dim=(2, 3))  # [B, H]: fla's decay is one scalar per head and token
    beta = x["beta"].mean(dim=(2, 3))
    return {
        "q": x["query"].unsqueeze(2),
        "k": x["key"].unsqueeze(2),
        "v": x["value"].view(b, n, h, shape.head_dim),
        "g": alpha.log().unsqueeze(1).expand(b, n, h).contiguous(),
        "beta": beta.unsqueeze(1).expand(b, n, h).contiguous().to(x["value"].dtype),
        "scale": 1.0,
        "initial_state": x["state"],
        "output_final_state": True,
    }


def fla_step() -> tuple[Callable[[dict[str, Any]], tuple[Tensor, Tensor]] | None, str]:
    """fla's fused recurrent GDR kernel, or None and why it is unavailable here."""
    if not torch.cuda.is_available():
        return None, "unavailable: fla's Triton kernels need CUDA"
    try:
        from fla.ops.gated_delta_rule import fused_recurrent_gated_delta_rule
    except ImportError as e:
        return None, f"unavailable: fla not installed ({e})"

    def step(kw: dict[str, Any]) -> tuple[Tensor, Tensor]:
        o, ht = fused_recurrent_gated_delta_rule(**kw)
        return o, ht

    return step, ""


def _fla_bytes(kw: dict[str, Any], o: Tensor, ht: Tensor) -> int:
    read = sum(kw[k].numel() * kw[k].element_size() for k in ("q", "k", "v", "g", "beta", "initial_state"))
    return read + o.numel() * o.element_size() + ht.numel() * ht.element_size()


def backend_steps(device: torch.device) -> dict[str, tuple[Callable[[Any], Any] | None, str]]:
    """The non-reference backends for ``device``: ``{name: (step or None, why unavailable)}``."""
    if device.type != "cuda":
        return {
            "triton": (None, "unavailable: needs CUDA"),
            "fla": (None, "unavailable: fla's Triton kernels need CUDA"),
        }
    return {"triton": triton_step(), "fla": fla_step()}


def _cycle(step: Callable[[Any], Any], inputs: list[Any]) -> Callable[[int], Any]:
    """``fn(i)`` running ``step`` on input set ``i mod len(inputs)`` (rotating sets keeps caches honest)."""

    def fn(i: int) -> Any:
        return step(inputs[i % len(inputs)])

    return fn


def run_kernels(cfg: KernelsConfig, progress: Callable[[int, int, str], None] | None = None) -> KernelsResult:
    """Time every (shape, dtype, backend); append rows to ``kernels-<device>-<precisions>-<commit>.csv``."""
    with cpu_threads(cfg.threads):
        return _run_kernels(cfg, progress)


def _run_kernels(
    cfg: KernelsConfig, progress: Callable[[int, int, str], None] | None = None
) -> KernelsResult:
    cfg.validate()
    device = resolve_device(cfg.device)
    stamp = environment_stamp(device)
    steps = backend_steps(device)
    tri, tri_why = steps["triton"]
    fla, fla_why = steps["fla"]
    backends = [b for b in BACKENDS if b in cfg.backends]  # torch first: the others' speed-up needs it
    rows: list[dict[str, Any]] = []
    targets: list[KernelTarget] = []
    plan = [(s, d) for s in cfg.shapes for d in cfg.dtypes]
    for done, (shape, dname) in enumerate(plan):
        if progress is not None:
            progress(done, len(plan), f"{shape.label} {dname}")
        base = {
            "schema_version": KERNELS_SCHEMA_VERSION,
            "bench": "kernels",
            **stamp.columns(),
            "shape": shape.label,
            "batch": shape.batch,
            "pixels": shape.pixels,
            "key_dim": shape.key_dim,
            "value_dim": shape.value_dim,
            "heads": shape.heads,
            "dtype": dname,
            "state_dtype": "fp32",
            "warmup": cfg.warmup,
            "iters": cfg.iters,
            "calls_per_block": min(cfg.block, cfg.iters),
            "note": "",
        }
        try:
            sets = [make_inputs(shape, DTYPES[dname], device, cfg.seed + i) for i in range(cfg.sets)]
            ref_out, ref_state = _torch_step(sets[0])
        except Exception as e:
            if not is_recordable_failure(e):
                raise
            status = failure_status(e)
        else:
            status = None
        if status is not None:
            free_device_memory(device)
            rows += [dict(base, timestamp=utc_timestamp(), backend=b, status=status) for b in backends]
            continue
        torch_us = None
        for backend in backends:
            row = dict(base, timestamp=utc_timestamp(), backend=backend)
            if backend == "torch":
                fn = _cycle(_torch_step, sets)
                bytes_moved: int | None = step_bytes(sets[0], ref_out, ref_state)
            elif backend == "triton":
                if tri is None:
                    rows.append(dict(row, status=tri_why))
                    continue
                fn = _cycle(tri, sets)
                bytes_moved = step_bytes(sets[0], ref_out, ref_state)
            else:
                if fla is None:
                    rows.append(dict(row, status=fla_why, note=FLA_NOTE))
                    continue
                fla_sets = [fla_inputs(x, shape) for x in sets]
                row["note"] = FLA_NOTE
                fn = _cycle(fla, fla_sets)
                bytes_moved = None
            try:
                out = fn(0)
                if backend == "triton":
                    row["rel_err"] = max(rel_err(out[0], ref_out), rel_err(out[1], ref_state))
                if backend == "fla":
                    bytes_moved = _fla_bytes(fla_sets[0], *out)
                ms = time_calls(fn, device, cfg.warmup, cfg.iters, cfg.block)
            except Exception as e:
                if not is_recordable_failure(e, also=(ValueError, AssertionError)):
                    raise
                failed = failure_status(e)
            else:
                failed = None
            if failed is not None:
                free_device_memory(device)
                rows.append(dict(row, status=failed))
                continue
            stats = summarize_ms(ms)
            us = stats.median_ms * 1e3
            row.update(
                us_median=us,
                us_p90=stats.p90_ms * 1e3,
                bytes_moved=bytes_moved,
                gb_per_s=bytes_moved / (us * 1e-6) / 1e9 if bytes_moved and us > 0 else None,
                status=STATUS_OK,
            )
            if backend == "torch":
                torch_us = us
            elif torch_us:
                row["speedup_vs_torch"] = torch_us / us
            if backend == "triton" and row.get("rel_err") is not None and row["rel_err"] > MAX_REL_ERR:
                row["status"] = (
                    f"failed: output differs from the torch reference (rel err {row['rel_err']:.2e})"
                )
            rows.append(row)
            if backend == "triton" and row["status"] == STATUS_OK and torch_us:
                speed = torch_us / us
                targets.append(KernelTarget(shape.label, dname, speed, speed >= TARGET_FUSED_SPEEDUP))
        sets = fla_sets = fn = None  # free this shape's inputs before the next  # noqa: F841
    if progress is not None:
        progress(len(plan), len(plan), "done")
    name = f"kernels-{stamp.device_slug}-{'-'.join(cfg.dtypes)}-{stamp.commit}.csv"
    csv_path = write_csv_rows(Path(cfg.out) / name, KERNEL_COLUMNS, rows)
    return KernelsResult(rows=rows, csv_path=csv_path, targets=targets if device.type == "cuda" else [])
