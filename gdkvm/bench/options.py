"""Benchmark options: the device, precisions, frame sizes, lists given on the command line, CPU threads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from gdkvm.errors import ConfigError, unknown_name

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "cuda:N")  # see gdkvm.utils.device


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
