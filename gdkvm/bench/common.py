"""Shared benchmark plumbing: devices and precisions, timers, memory measurement, stamps and CSV rows.

Timing (see docs/benchmarks.md): on CUDA every timed region is bracketed by CUDA events recorded on the
current stream, and the elapsed times are read after one synchronisation at the end; on the CPU the
region is bracketed by ``time.perf_counter`` with ``torch.cpu.synchronize()`` before each reading.
Warm-up calls always run first and are never timed.

Memory: on CUDA the allocator's own peak (``torch.cuda.max_memory_allocated``); on the CPU PyTorch has no
allocator statistics, so :class:`TensorMemoryTracker` counts the bytes of every tensor storage created
by an operator while it is active and still alive (a ``TorchDispatchMode`` plus a finaliser on each
storage), and callers add the bytes that were alive before (weights, carried state).
"""

from __future__ import annotations

import contextlib
import csv
import importlib.metadata
import io
import math
import platform
import re
import statistics
import subprocess
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from gdkvm.errors import ConfigError, GdkvmError, unknown_name
from gdkvm.utils.atomic import atomic_write_text

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "cuda:N")  # see gdkvm.utils.device

#: Status strings of benchmark rows (a row's ``status`` starts with one of these).
STATUS_OK = "ok"
STATUS_OOM = "oom"


# ---------------------------------------------------------------------------------------------- options
def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda``/``cuda:N`` without a GPU, or an unknown name, is a
    one-line ConfigError (:func:`gdkvm.utils.device.resolve_device`)."""
    from gdkvm.utils.device import resolve_device as _resolve

    return _resolve(name)


def parse_int_list(option: str, text: str | Sequence[int], minimum: int = 1) -> tuple[int, ...]:
    """``"1,16"`` -> ``(1, 16)``; every value must be an integer >= ``minimum`` (ConfigError otherwise)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    values: list[int] = []
    for item in items:
        raw = str(item).strip()
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{option}: expected comma-separated integers, got {text!r}") from None
        if value < minimum:
            raise ConfigError(f"{option}: every value must be >= {minimum}, got {value}")
        values.append(value)
    if not values:
        raise ConfigError(f"{option}: expected at least one value")
    return tuple(dict.fromkeys(values))


def parse_name_list(
    option: str, text: str | Sequence[str], valid: Sequence[str], kind: str | None = None
) -> tuple[str, ...]:
    """``"fp32,bf16"`` -> ``("fp32", "bf16")``, each checked against ``valid`` (ConfigError otherwise)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [str(x).strip() for x in items if str(x).strip()]
    if not names:
        raise ConfigError(f"{option}: expected at least one of {', '.join(valid)}")
    for name in names:
        if name not in valid:
            raise unknown_name(kind or option.lstrip("-"), name, valid)
    return tuple(dict.fromkeys(names))


def check_size(option: str, size: int, multiple: int = 16) -> int:
    """A frame side that the model accepts (positive multiple of ``multiple``), else ConfigError."""
    if size < multiple or size % multiple:
        raise ConfigError(f"{option}: must be a positive multiple of {multiple}, got {size}")
    return size


def precision_unavailable(device: torch.device, dtype: str) -> str | None:
    """Why ``dtype`` cannot run on ``device`` (a row status), or None when it can.

    fp32 always runs. bf16 runs under autocast: on CUDA when the GPU supports bf16, on the CPU when
    this torch build has CPU autocast.
    """
    if dtype not in DTYPES:
        raise unknown_name("dtype", dtype, tuple(DTYPES))
    if dtype == "fp32":
        return None
    if device.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            return f"unavailable: bf16 is not supported on {torch.cuda.get_device_name(device)}"
        return None
    if not torch.amp.is_autocast_available(device.type):
        return f"unavailable: this torch build has no {device.type} autocast for bf16"
    return None


def precision_context(
    device: torch.device, dtype: str, cache: bool = True
) -> contextlib.AbstractContextManager:
    """fp32: no autocast; bf16: ``torch.autocast(device.type, bfloat16)`` (``cache=False``: graph capture)."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype], cache_enabled=cache)


def is_oom(error: BaseException) -> bool:
    """Whether ``error`` is running out of memory (``torch.OutOfMemoryError`` or ``MemoryError``)."""
    return isinstance(error, (torch.OutOfMemoryError, MemoryError))


def is_triton_error(error: BaseException) -> bool:
    """Triton's compile and resource errors (``triton.TritonError`` derives from Exception directly)."""
    return any(c.__module__.split(".")[0] == "triton" for c in type(error).__mro__)


def is_recordable_failure(error: BaseException, also: tuple[type[BaseException], ...] = ()) -> bool:
    """Whether one benchmark configuration failing with ``error`` becomes a row status (the run goes on).

    Out of memory, runtime and domain errors, Triton compile/resource errors, and the types in ``also``;
    anything else (a bug in the benchmark itself) propagates.
    """
    return (
        is_oom(error)
        or isinstance(error, (RuntimeError, GdkvmError, *also))
        or is_triton_error(error)
    )


def failure_status(error: BaseException) -> str:
    """The row status for an exception: ``oom`` or ``failed: <Type>: <first line>``."""
    if is_oom(error):
        return STATUS_OOM
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    label = "" if isinstance(error, GdkvmError) else f"{type(error).__name__}: "
    return f"failed: {label}{first}"[:300]


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run with ``torch.set_num_threads(threads)`` (None: leave torch's default), restored afterwards."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ConfigError(f"--threads: must be >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def free_device_memory(device: torch.device) -> None:
    """Release cached blocks after a failure (OOM) so the next configuration starts clean."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device`` (CUDA stream or CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    else:
        torch.cpu.synchronize()


class StepTimer:
    """Times consecutive regions (one per streamed frame or kernel call).

    ``with timer.region(): ...`` times one region: CUDA events on GPU (elapsed read at the end, so
    the queue is not drained between regions), ``perf_counter`` after a synchronisation on the CPU.
    ``milliseconds()`` returns every region's time; ``total_seconds()`` the time from the first
    region's start to the last region's end (throughput).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._events: list[tuple[Any, Any]] = []
        self._wall: list[tuple[float, float]] = []

    @contextlib.contextmanager
    def region(self) -> Iterator[None]:
        if self.device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._events.append((start, end))
        else:
            torch.cpu.synchronize()
            t0 = time.perf_counter()
            yield
            torch.cpu.synchronize()
            self._wall.append((t0, time.perf_counter()))

    def __len__(self) -> int:
        return len(self._events) + len(self._wall)

    def milliseconds(self) -> list[float]:
        if self._events:
            torch.cuda.synchronize(self.device)
            return [s.elapsed_time(e) for s, e in self._events]
        return [(t1 - t0) * 1e3 for t0, t1 in self._wall]

    def total_seconds(self) -> float:
        if self._events:
            torch.cuda.synchronize(self.device)
            return self._events[0][0].elapsed_time(self._events[-1][1]) / 1e3
        if not self._wall:
            return 0.0
        return self._wall[-1][1] - self._wall[0][0]


def time_calls(
    fn: Callable[[int], Any], device: torch.device, warmup: int, iters: int, block: int = 1
) -> list[float]:
    """Run ``fn(i)`` ``warmup`` times untimed, then ``iters`` times timed in blocks of ``block`` calls.

    Returns one value per block: its time divided by its calls (ms per call). With ``block > 1`` the calls
    of a block are queued back to back, as a model's frame loop queues them, so on a GPU the value is the
    device time per call wherever that exceeds the host's launch cost; with ``block = 1`` on an idle GPU it
    is mostly the host's launch cost.
    """
    for i in range(warmup):
        fn(i)
    synchronize(device)
    block = max(1, min(block, iters))
    sizes = [block] * (iters // block) + ([iters % block] if iters % block else [])
    timer = StepTimer(device)
    i = 0
    for n in sizes:
        with timer.region():
            for _ in range(n):
                fn(i)
                i += 1
    return [ms / n for ms, n in zip(timer.milliseconds(), sizes, strict=True)]


@dataclass(frozen=True)
class TimeSummary:
    """Median, 90th percentile and mean of region times (ms), and how many there were."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    count: int


def summarize_ms(values: Sequence[float]) -> TimeSummary:
    """Summary statistics of a list of milliseconds (NaN when empty)."""
    if not values:
        nan = float("nan")
        return TimeSummary(nan, nan, nan, 0)
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return TimeSummary(statistics.median(ordered), p90, statistics.fmean(ordered), len(ordered))


# ---------------------------------------------------------------------------------------------- memory
def tensor_bytes(tensors: Iterable[torch.Tensor | None]) -> int:
    """Sum of ``numel * element_size`` over the given tensors (None entries ignored)."""
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return tensor_bytes(list(module.parameters()) + list(module.buffers()))


class TensorMemoryTracker(TorchDispatchMode):
    """Peak bytes of tensor storages created by operators while active (the CPU's stand-in for the
    CUDA allocator peak).

    Every operator output whose storage is not one of the operator's inputs' storages (so views and
    in-place results are not counted twice) adds its storage's ``nbytes``; a finaliser on the storage
    subtracts it when the last tensor using it dies. ``peak_bytes`` is the largest live total seen;
    bytes alive before the tracker started (weights, inputs, carried state) are not included.
    The interception slows every operator down: never time code under it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak_bytes = 0

    def _release(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {id(_storage(t)) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = _storage(t)
            if storage is None:
                continue
            key = id(storage)
            if key in inputs or key in self.live:
                continue
            nbytes = storage.nbytes()
            self.live[key] = nbytes
            self.current += nbytes
            self.peak_bytes = max(self.peak_bytes, self.current)
            weakref.finalize(storage, self._release, key)
        return out


def _storage(t: torch.Tensor) -> Any:
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # tensors without storage (meta, nested, ...)
        return None


# ---------------------------------------------------------------------------------------------- stamps
@dataclass(frozen=True)
class EnvStamp:
    """What every benchmark row carries about the machine and code (no hostname).

    ``cpu_threads`` is torch's intra-op thread count (CPU timings depend on it and on other load).
    """

    device_type: str
    device_name: str
    device_slug: str
    torch_version: str
    triton_version: str
    cuda_version: str
    commit: str
    cpu_threads: int

    def columns(self) -> dict[str, str]:
        return {
            "commit": self.commit,
            "torch_version": self.torch_version,
            "triton_version": self.triton_version,
            "cuda_version": self.cuda_version,
            "device_type": self.device_type,
            "device_name": self.device_name,
            "cpu_threads": str(self.cpu_threads),
        }


def slugify(text: str) -> str:
    """Lower-case ``a-z0-9`` words joined by ``-`` (for file names)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def device_name(device: torch.device) -> str:
    """Human name of the device: the GPU's name, or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def device_slug(device: torch.device) -> str:
    """File-name form of the device: ``nvidia-h100-80gb-hbm3``, ``cpu-amd-epyc``."""
    name = device_name(device)
    if device.type == "cuda":
        return slugify(name)
    name = re.sub(r"\((r|tm)\)|\bcpu\b|@.*$|\bprocessor\b|\d+-core", " ", name, flags=re.IGNORECASE)
    return "cpu-" + slugify(name) if slugify(name) != "unknown" else "cpu"


def git_commit(root: Path | None = None) -> str:
    """Short commit of the source tree (``git rev-parse --short HEAD``), ``unknown`` outside a repository."""
    root = root or Path(__file__).resolve().parents[2]
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{4,40}", commit) else "unknown"


def package_version(name: str) -> str:
    """Installed version of a distribution (without importing it), or ``none``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "none"


#: Columns every benchmark CSV starts with: the schema, which benchmark, and the environment stamp.
STAMP_COLUMNS: tuple[str, ...] = (
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


def environment_stamp(device: torch.device) -> EnvStamp:
    """Device, torch/triton/CUDA versions and the git commit."""
    return EnvStamp(
        device_type=device.type,
        device_name=device_name(device),
        device_slug=device_slug(device),
        torch_version=torch.__version__,
        triton_version=package_version("triton"),
        cuda_version=torch.version.cuda or "none",
        commit=git_commit(),
        cpu_threads=torch.get_num_threads(),
    )


def utc_timestamp() -> str:
    """Now, UTC, ISO 8601 to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def bench_csv_path(out: Path, bench: str, stamp: EnvStamp, precision: str | None = None) -> Path:
    """``out/<bench>-<device>[-<precision>]-<commit>.csv``."""
    parts = [bench, stamp.device_slug] + ([precision] if precision else []) + [stamp.commit]
    return Path(out) / ("-".join(parts) + ".csv")


# ---------------------------------------------------------------------------------------------- CSV
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def read_csv_header(path: Path) -> list[str]:
    """The header row of a CSV file ([] when the file is empty)."""
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """All data rows of a CSV file as dicts of strings."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_csv_rows(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Path:
    """Append ``rows`` to the CSV at ``path`` (created with ``columns`` as header), atomically.

    An existing file must have exactly this header (same schema), otherwise ConfigError and the file is
    left untouched. The whole new content is written to a temporary file and renamed over ``path``.
    Every row must use only names from ``columns``; missing ones are written empty.
    """
    path = Path(path)
    columns = list(columns)
    for row in rows:
        extra = sorted(set(row) - set(columns))
        if extra:
            raise GdkvmError(f"{path}: row has columns {extra} that are not in the schema")
    existing = ""
    if path.exists():
        header = read_csv_header(path)
        if header != columns:
            raise ConfigError(
                f"{path}: existing CSV has a different column schema (found {len(header)} columns, expected "
                f"{len(columns)}); move it away or pass another --out"
            )
        existing = path.read_text(encoding="utf-8")
        if existing and not existing.endswith("\n"):
            existing += "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if not existing:
        writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    atomic_write_text(path, existing + buffer.getvalue())
    return path
