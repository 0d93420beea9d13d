"""``--device`` names: one parser and one resolver for every command (train, evaluate, ablate, bench, predict).

Accepted names: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` and ``cuda:N``. Anything else,
or a CUDA device on a machine without one, is a one-line :class:`~gdkvm.errors.ConfigError` (the CLI prints
it as one red line) instead of a torch error from deep inside a command.
"""

from __future__ import annotations

import re

import torch

from gdkvm.errors import ConfigError

__all__ = ["DEVICE_CHOICES", "DEVICE_HELP", "NO_CUDA_MESSAGE", "check_device_name", "resolve_device"]

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
