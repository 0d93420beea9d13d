"""The one dispatch point for the memory kernels.

Callers (the memory rules) use only the functions here; they never import a backend module.

``gdr_step`` runs the fused Triton kernel ``gdkvm.kernels.gdr_triton.gdr_step`` when all hold:

1. the state tensor is on CUDA;
2. ``gdkvm.kernels.gdr_triton`` imports (it may not exist yet, and Triton may be missing);
3. the environment variable ``GDKVM_TRITON`` is unset or ``1`` (``0`` disables it).

Otherwise it runs :func:`gdkvm.kernels.reference.gdr_step_reference`. The Triton module must expose
``gdr_step`` with exactly the reference's signature and semantics. ``gka_step`` and the read/write
helpers always run the torch reference. Nothing outside this package imports Triton.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

from torch import Tensor

from gdkvm.errors import ConfigError
from gdkvm.kernels.reference import (
    KernelInputError,
    gdr_read_reference,
    gdr_step_reference,
    gka_read_reference,
    gka_step_reference,
    gka_write_reference,
)

__all__ = [
    "KernelInputError",
    "TRITON_ENV",
    "gdr_backend",
    "gdr_read",
    "gdr_step",
    "gdr_write",
    "gka_read",
    "gka_step",
    "gka_write",
    "triton_enabled",
]

TRITON_ENV = "GDKVM_TRITON"
_TRITON_MODULE_NAME = "gdkvm.kernels.gdr_triton"
_log = logging.getLogger(__name__)
_triton_module: ModuleType | None = None
_triton_tried = False


def triton_enabled() -> bool:
    """Whether ``GDKVM_TRITON`` allows the Triton backend (unset or ``1``: yes; ``0``: no)."""
    raw = os.environ.get(TRITON_ENV, "1").strip()
    if raw not in ("0", "1"):
        raise ConfigError(f"environment variable {TRITON_ENV}={raw!r}: expected 0 or 1")
    return raw == "1"


def _load_triton() -> ModuleType | None:
    """Import the Triton backend once; None when it (or Triton itself) is not importable."""
    global _triton_module, _triton_tried
    if not _triton_tried:
        _triton_tried = True
        try:
            _triton_module = importlib.import_module(_TRITON_MODULE_NAME)
        except ImportError as e:  # module not written yet, or triton not installed
            _log.info("gdr Triton kernel unavailable (%s); using the torch reference", e)
            _triton_module = None
    return _triton_module


def gdr_backend(device_type: str) -> str:
    """The backend ``gdr_step`` uses for tensors on ``device_type``: ``"triton"`` or ``"torch"``."""
    if device_type == "cuda" and triton_enabled() and _load_triton() is not None:
        return "triton"
    return "torch"


def gdr_step(
    state: Tensor,
    key: Tensor,
    value: Tensor,
    query: Tensor | None,
    alpha: Tensor | None,
    beta: Tensor | None,
    *,
    erase: bool = True,
) -> tuple[Tensor | None, Tensor]:
    """Fused write-then-read step of the gated-delta-rule family (see ``gdr_step_reference``).

    Args:
        state: ``[B, H, Ck, Dv]`` previous state ``S_{t-1}``.
        key: ``[B, N, Ck]``; value: ``[B, N, H*Dv]``.
        query: ``[B, Nq, Ck]`` (read ``query S_t``) or None.
        alpha, beta: gate maps broadcastable to ``[B, H, Ck, Dv]``, or None for 1.
        erase: apply the erase term ``K^T K S`` (False for linear and gdr-wo-beta).

    Returns:
        ``(readout [B, Nq, H*Dv] or None, S_t [B, H, Ck, Dv])``.
    """
    if gdr_backend(state.device.type) == "triton":
        assert _triton_module is not None
        return _triton_module.gdr_step(state, key, value, query, alpha, beta, erase=erase)
    return gdr_step_reference(state, key, value, query, alpha, beta, erase=erase)


def gdr_read(state: Tensor, query: Tensor) -> Tensor:
    """Readout ``query S`` (``[B, Nq, H*Dv]``) of a ``[B, H, Ck, Dv]`` state; torch only."""
    return gdr_read_reference(state, query)


def gdr_write(
    state: Tensor,
    key: Tensor,
    value: Tensor,
    alpha: Tensor | None,
    beta: Tensor | None,
    *,
    erase: bool = True,
) -> Tensor:
    """Write-only step: ``gdr_step`` without a query (dispatched the same way). Returns ``S_t``."""
    return gdr_step(state, key, value, None, alpha, beta, erase=erase)[1]


gka_write = gka_write_reference
gka_read = gka_read_reference
gka_step = gka_step_reference
