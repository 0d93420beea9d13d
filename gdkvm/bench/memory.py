"""Memory measurement: bytes of tensors and modules, and the CPU's stand-in for the CUDA allocator peak.

On CUDA the allocator's own peak (``torch.cuda.max_memory_allocated``) is used by the callers; on the CPU
PyTorch has no allocator statistics, so :class:`TensorMemoryTracker` counts the bytes of every tensor
storage created by an operator while it is active and still alive (a ``TorchDispatchMode`` plus a
finaliser on each storage), and callers add the bytes that were alive before (weights, carried state).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


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
