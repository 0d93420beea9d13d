"""Timing of streamed steps and kernel calls (see docs/benchmarks.md).

On CUDA every timed region is bracketed by CUDA events recorded on the current stream, and the elapsed
times are read after one synchronisation at the end; on the CPU the region is bracketed by
``time.perf_counter`` with ``torch.cpu.synchronize()`` before each reading. Warm-up calls always run first
and are never timed.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch


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
