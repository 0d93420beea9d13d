"""``--device`` names: one parser and one resolver for every command (train, evaluate, ablate, bench, predict).

Accepted names: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` and ``cuda:N``. Anything else,
or a CUDA device on a machine without one, is a one-line :class:`~gdkvm.errors.ConfigError` (the CLI prints
it as one red line) instead of a torch error from deep inside a command.
"""

from __future__ import annotations

import os
import re

import torch

from gdkvm.errors import ConfigError

__all__ = [
    "DEFAULT_MAX_CPU_THREADS", "DEVICE_CHOICES", "DEVICE_HELP", "NO_CUDA_MESSAGE", "THREADS_ENV",
    "apply_cpu_threads", "check_device_name", "default_cpu_threads", "describe_device", "resolve_device",
]

#: The accepted forms, as the error message and the option help list them.
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda", "cuda:N")
DEVICE_HELP = "auto (CUDA if available, else CPU) | cpu | cuda | cuda:N"
NO_CUDA_MESSAGE = "CUDA is not available on this machine; use --device cpu or auto"

_CUDA_INDEX = re.compile(r"cuda:(\d+)")


def check_device_name(name: object) -> str:
    """``name`` normalised (surrounding spaces dropped, lower case) when it is a device name gdkvm accepts;
    otherwise ConfigError ``unknown device 'gpu': choose auto, cpu, cuda, cuda:N``. Needs no GPU."""
    text = str(getattr(name, "value", name)).strip().lower()
    if text in ("auto", "cpu", "cuda") or _CUDA_INDEX.fullmatch(text):
        return text
    raise ConfigError(f"unknown device '{name}': choose {', '.join(DEVICE_CHOICES)}")


def resolve_device(name: object, local_rank: int | None = None) -> torch.device:
    """The torch device for a ``--device`` name.

    ``auto`` -> CUDA when available, else the CPU. ``cuda`` -> GPU ``local_rank`` (a torchrun rank's own
    GPU, modulo the GPU count) or the current GPU; ``cuda:N`` -> GPU N, which must exist. A CUDA name on a
    machine without CUDA is the one-line ConfigError :data:`NO_CUDA_MESSAGE`.
    """
    text = check_device_name(name)
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(NO_CUDA_MESSAGE)
    count = torch.cuda.device_count()
    match = _CUDA_INDEX.fullmatch(text)
    if match is None:
        index = torch.cuda.current_device() if local_rank is None else local_rank % max(count, 1)
        return torch.device("cuda", index)
    index = int(match.group(1))
    if index >= count:
        raise ConfigError(f"--device {text}: this machine has {count} CUDA device(s) (cuda:0 .. cuda:{count - 1})")
    return torch.device("cuda", index)


#: Set by the user (or torchrun), this environment variable leaves torch's thread count alone.
THREADS_ENV = "OMP_NUM_THREADS"
#: The default intra-op thread count on the CPU is min(this, CPU count): more threads than that mostly
#: oversubscribe a shared machine (one kernel timing went from 0.7 ms with one thread to 80 ms with torch's
#: default on a busy host).
DEFAULT_MAX_CPU_THREADS = 4


def default_cpu_threads() -> int:
    """min(4, the CPU count), at least 1."""
    return max(1, min(DEFAULT_MAX_CPU_THREADS, os.cpu_count() or 1))


def apply_cpu_threads(threads: int | None, device: torch.device | str = "cpu") -> int:
    """Set torch's intra-op thread count and return the count in force.

    ``threads`` given (``--threads N``, N >= 1, else ConfigError): that count, on any device. Otherwise, on
    the CPU and without ``OMP_NUM_THREADS`` in the environment: :func:`default_cpu_threads`. Else torch's
    own choice stays.
    """
    if threads is not None:
        if isinstance(threads, bool) or int(threads) < 1:
            raise ConfigError(f"--threads: must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
    elif torch.device(device).type == "cpu" and not os.environ.get(THREADS_ENV, "").strip():
        torch.set_num_threads(default_cpu_threads())
    return torch.get_num_threads()


def describe_device(device: torch.device | str) -> str:
    """``cpu`` or ``cuda:0 (NVIDIA H200)``: the resolved device as the long commands print it."""
    device = torch.device(device)
    if device.type != "cuda":
        return str(device)
    index = torch.cuda.current_device() if device.index is None else device.index
    try:
        name = torch.cuda.get_device_name(index)
    except Exception:  # noqa: BLE001 - the name is decoration only
        return f"cuda:{index}"
    return f"cuda:{index} ({name})"
