"""What a failed benchmark configuration becomes: a row status (``ok``, ``oom``, ``failed: ...``)."""

from __future__ import annotations

import torch

from gdkvm.errors import GdkvmError

#: Status strings of benchmark rows (a row's ``status`` starts with one of these).
STATUS_OK = "ok"
STATUS_OOM = "oom"


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



def free_device_memory(device: torch.device) -> None:
    """Release cached blocks after a failure (OOM) so the next configuration starts clean."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
