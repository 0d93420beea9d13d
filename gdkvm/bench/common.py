"""Shared benchmark plumbing, re-exported from the small modules that each do one job.

* :mod:`gdkvm.bench.options`: devices, precisions, frame sizes, comma-separated option lists, CPU threads;
* :mod:`gdkvm.bench.failures`: row statuses (``ok``, ``oom``, ``failed: ...``) and recovering from a failure;
* :mod:`gdkvm.bench.timing`: timed regions (CUDA events / ``perf_counter``) and their summary;
* :mod:`gdkvm.bench.memory`: tensor and module bytes, the CPU tensor-memory tracker;
* :mod:`gdkvm.bench.stamp`: the environment stamp of every row and the CSV file names;
* :mod:`gdkvm.bench.csv_rows`: appending rows to a benchmark CSV and reading one back, checked.

Import from here or from the module itself; both name the same objects.
"""

from __future__ import annotations

from gdkvm.bench.csv_rows import (
    BenchFile,
    bench_schemas,
    read_bench_csv,
    read_csv_header,
    read_csv_rows,
    write_csv_rows,
)
from gdkvm.bench.failures import (
    STATUS_OK,
    STATUS_OOM,
    failure_status,
    free_device_memory,
    is_oom,
    is_recordable_failure,
    is_triton_error,
)
from gdkvm.bench.memory import TensorMemoryTracker, module_bytes, tensor_bytes
from gdkvm.bench.options import (
    DEVICES,
    DTYPES,
    check_size,
    cpu_threads,
    parse_int_list,
    parse_name_list,
    precision_context,
    precision_unavailable,
    resolve_device,
)
from gdkvm.bench.stamp import (
    STAMP_COLUMNS,
    EnvStamp,
    bench_csv_path,
    cpu_name,
    device_name,
    device_slug,
    environment_stamp,
    git_commit,
    package_version,
    slugify,
    utc_timestamp,
)
from gdkvm.bench.timing import StepTimer, TimeSummary, summarize_ms, synchronize, time_calls

__all__ = [
    "DEVICES", "DTYPES", "STAMP_COLUMNS", "STATUS_OK", "STATUS_OOM", "BenchFile", "EnvStamp", "StepTimer",
    "TensorMemoryTracker", "TimeSummary", "bench_csv_path", "bench_schemas", "check_size", "cpu_name",
    "cpu_threads", "device_name", "device_slug", "environment_stamp", "failure_status", "free_device_memory",
    "git_commit", "is_oom", "is_recordable_failure", "is_triton_error", "module_bytes", "package_version",
    "parse_int_list", "parse_name_list", "precision_context", "precision_unavailable", "read_bench_csv",
    "read_csv_header", "read_csv_rows", "resolve_device", "slugify", "summarize_ms", "synchronize",
    "tensor_bytes", "time_calls", "utc_timestamp", "write_csv_rows",
]
