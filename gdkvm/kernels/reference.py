"""Plain-torch oracles for one frame of the memory rules (differentiable, any float dtype, any device).

These are the references that every fused kernel (``gdr_triton.py``) is tested against, and the
implementation the model runs wherever no kernel applies (CPU, ``GDKVM_TRITON=0``, gka). The math and
the layout conventions are derived in ``docs/memory.md``; the short version:

* One frame has N pixels. ``key`` / ``query`` are ``[B, N, Ck]`` (one key per pixel, shared by all heads),
  ``value`` and the readout are ``[B, N, H*Dv]`` (the model's channel layout: head h owns the value
  channels ``h*Dv .. (h+1)*Dv - 1``). B folds batch x objects.
* The gated-delta-rule state is stored key-first per head, ``S[b, h] in R^{Ck x Dv}`` (``[B, H, Ck, Dv]``);
  it is the transpose of the paper's ``Cv x Ck`` state, split into its H value blocks.
* A *step* is "write this frame, then read with the next query": ``(Q_next S_t, S_t)`` from ``S_{t-1}``.
  That is the only fusion the segmentation loop allows (the values of frame t exist only after frame t
  has been read and segmented), and it is also fla's "write then read" token order.

All computation happens in the state's dtype with autocast disabled, so an fp32 state stays fp32 under
AMP; the other inputs are cast to it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gdkvm.errors import GdkvmError

__all__ = [
    "KernelInputError",
    "gdr_read_reference",
    "gdr_write_reference",
    "gdr_step_reference",
    "gka_read_reference",
    "gka_write_reference",
    "gka_step_reference",
]


class KernelInputError(GdkvmError):
    """A memory-step input has the wrong rank, shape or batch size."""


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise KernelInputError(what)


def _check_frame(name: str, t: Tensor, batch: int, channels: int, op: str) -> None:
    _check(
        t.dim() == 3 and t.shape[0] == batch and t.shape[2] == channels,
        f"{op}: {name} has shape {tuple(t.shape)}, expected [{batch}, N, {channels}]",
    )


def _no_autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, enabled=False)


# ----------------------------------------------------------------------------------------------------
# gated delta rule family
# ----------------------------------------------------------------------------------------------------


def gdr_read_reference(state: Tensor, query: Tensor) -> Tensor:
    """Readout ``O = Q S`` of a gated-delta-rule state.

    Args:
        state: ``[B, H, Ck, Dv]`` key-first state.
        query: ``[B, Nq, Ck]`` query keys.

    Returns:
        ``[B, Nq, H*Dv]`` readout in the state's dtype.
    """
    _check(state.dim() == 4, f"gdr_read: state has shape {tuple(state.shape)}, expected [B, H, Ck, Dv]")
    b, h, ck, dv = state.shape
    _check_frame("query", query, b, ck, "gdr_read")
    with _no_autocast(state.device):
        out = torch.einsum("bnk,bhkv->bnhv", query.to(state.dtype), state)
    return out.reshape(b, query.shape[1], h * dv)


def gdr_write_reference(
    state: Tensor,
    key: Tensor,
    value: Tensor,
    alpha: Tensor | None = None,
    beta: Tensor | None = None,
    *,
    erase: bool = True,
) -> Tensor:
    """State update of one frame (paper Eq. 5 and its ablations), without readout.

    ``erase=True``:  ``S_t = alpha * (S - beta * K^T K S) + beta * K^T V``  (gdr, delta, gdr-wo-alpha)
    ``erase=False``: ``S_t = alpha * S + beta * K^T V``                     (linear, gdr-wo-beta)

    ``*`` is elementwise. ``alpha`` / ``beta`` are elementwise gate maps broadcastable to
    ``[B, H, Ck, Dv]`` (the learned gates are ``[B, H, Ck, 1]``, constant along each head's value
    columns); ``None`` means 1 everywhere.

    Args:
        state: ``[B, H, Ck, Dv]`` previous state ``S_{t-1}``.
        key: ``[B, N, Ck]`` keys of the frame.
        value: ``[B, N, H*Dv]`` values of the frame.
        alpha, beta: gate maps (see above) or None.
        erase: whether the delta-rule erase term ``K^T K S`` is applied.

    Returns:
        ``[B, H, Ck, Dv]`` new state ``S_t`` (a new tensor).
    """
    _check(state.dim() == 4, f"gdr_write: state has shape {tuple(state.shape)}, expected [B, H, Ck, Dv]")
    b, h, ck, dv = state.shape
    _check_frame("key", key, b, ck, "gdr_write")
    _check_frame("value", value, b, h * dv, "gdr_write")
    _check(
        key.shape[1] == value.shape[1], f"gdr_write: key has {key.shape[1]} pixels, value {value.shape[1]}"
    )
    dt = state.dtype
    with _no_autocast(state.device):
        k = key.to(dt)
        v = value.to(dt).reshape(b, value.shape[1], h, dv)
        kv = torch.einsum("bnk,bnhv->bhkv", k, v)  # K^T V, per head
        write = kv if beta is None else beta.to(dt) * kv
        if erase:
            gram = torch.einsum("bnk,bnj->bkj", k, k)  # K^T K, shared by the heads (Ck x Ck)
            kks = torch.einsum("bkj,bhjv->bhkv", gram, state)  # K^T (K S)
            kept = state - (kks if beta is None else beta.to(dt) * kks)
        else:
            kept = state
        if alpha is not None:
            kept = alpha.to(dt) * kept
        return kept + write


def gdr_step_reference(
    state: Tensor,
    key: Tensor,
    value: Tensor,
    query: Tensor | None,
    alpha: Tensor | None,
    beta: Tensor | None,
    *,
    erase: bool = True,
) -> tuple[Tensor | None, Tensor]:
    """One fused memory step: write the frame, then read the new state with ``query``.

    ``S_t = gdr_write_reference(S_{t-1}, key, value, alpha, beta, erase=erase)`` and
    ``O = query S_t``. In the segmentation loop ``query`` is the *next* frame's query keys, so the
    write of frame t and the read of frame t+1 are one call (see docs/memory.md, "fused step").

    Args:
        state: ``[B, H, Ck, Dv]`` previous state.
        key: ``[B, N, Ck]``; value: ``[B, N, H*Dv]``.
        query: ``[B, Nq, Ck]`` or None (no readout).
        alpha, beta: gate maps broadcastable to ``[B, H, Ck, Dv]``, or None for 1.
        erase: apply the delta-rule erase term (False for linear and gdr-wo-beta).

    Returns:
        ``(readout [B, Nq, H*Dv] or None, new_state [B, H, Ck, Dv])``.
    """
    new_state = gdr_write_reference(state, key, value, alpha, beta, erase=erase)
    readout = None if query is None else gdr_read_reference(new_state, query)
    return readout, new_state


# ----------------------------------------------------------------------------------------------------
# gated KalmaNet (block ridge regression)
# ----------------------------------------------------------------------------------------------------


def _gka_dtype(t: Tensor) -> torch.dtype:
    # the solve is never done below fp32 (gka.md 5.7); float64 stays float64 for the tests
    return torch.promote_types(t.dtype, torch.float32)


def gka_write_reference(
    hess: Tensor, moment: Tensor, key: Tensor, value: Tensor, weight: Tensor, gamma: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Accumulate one frame into the ridge-regression statistics.

    ``H_t = gamma H_{t-1} + K^T W K`` and ``M_t = gamma M_{t-1} + K^T W V`` per head, with
    ``W = diag(weight)`` over the frame's pixels. ``M`` is stored key-first (the transpose of gka.md's
    ``V^T W K``).

    Args:
        hess: ``[B, H, Ck, Ck]`` previous ``H``.
        moment: ``[B, H, Ck, Dv]`` previous ``M``.
        key: ``[B, N, Ck]`` keys (the rule L2-normalises them first).
        value: ``[B, N, H*Dv]`` values.
        weight: ``[B, H, N]`` non-negative per-pixel write weights.
        gamma: ``[B, H]`` decay in (0, 1], or None for no decay.

    Returns:
        ``(H_t [B, H, Ck, Ck], M_t [B, H, Ck, Dv])``.
    """
    _check(hess.dim() == 4 and hess.shape[2] == hess.shape[3], f"gka_write: H has shape {tuple(hess.shape)}")
    b, h, ck, _ = hess.shape
    _check(
        moment.dim() == 4 and moment.shape[:3] == (b, h, ck),
        f"gka_write: M has shape {tuple(moment.shape)}, expected [{b}, {h}, {ck}, Dv]",
    )
    dv = moment.shape[3]
    _check_frame("key", key, b, ck, "gka_write")
    _check_frame("value", value, b, h * dv, "gka_write")
    n = key.shape[1]
    _check(value.shape[1] == n, f"gka_write: key has {n} pixels, value {value.shape[1]}")
    _check(
        tuple(weight.shape) == (b, h, n),
        f"gka_write: weight has shape {tuple(weight.shape)}, expected [{b}, {h}, {n}]",
    )
    dt = _gka_dtype(hess)
    with _no_autocast(hess.device):
        k = key.to(dt)
        w = weight.to(dt)
        v = value.to(dt).reshape(b, n, h, dv)
        kw = k.unsqueeze(1) * w.unsqueeze(-1)  # [B, H, N, Ck]
        new_h = torch.einsum("bhnk,bnj->bhkj", kw, k)
        new_m = torch.einsum("bhnk,bnhv->bhkv", kw, v)
        if gamma is None:
            return hess.to(dt) + new_h, moment.to(dt) + new_m
        g = gamma.to(dt)[..., None, None]
        return g * hess.to(dt) + new_h, g * moment.to(dt) + new_m


def gka_read_reference(
    hess: Tensor,
    moment: Tensor,
    query: Tensor,
    alpha: Tensor | None,
    *,
    ridge: float = 0.02,
    scale: float | None = None,
    eps: float = 1e-6,
) -> Tensor:
    """Ridge readout: ``X = Q (H + lambda I)^-1``, ``Q~ = Q + alpha (X - Q)``, ``O = scale * Q~ M``.

    ``lambda = ridge * sqrt(||H||_F^2 + eps^2)`` per (batch, head); the eps floor keeps the empty
    memory (H = 0) solvable, and then ``M = 0`` makes the readout exactly zero. Solved with a batched
    Cholesky factorisation in at least fp32 (``cholesky_ex`` avoids a host sync).

    Args:
        hess: ``[B, H, Ck, Ck]``; moment: ``[B, H, Ck, Dv]``.
        query: ``[B, Nq, Ck]`` (L2-normalised by the rule).
        alpha: readout mix in [0, 1] broadcastable to ``[B, H, Nq]`` (``1`` = pure ridge prediction,
            ``0`` = plain linear readout ``Q M``), or None for 1.
        ridge: the ratio ``a`` of the adaptive regulariser.
        scale: output scale ``s``; None means ``Ck ** -0.5``.
        eps: floor inside the Frobenius norm.

    Returns:
        ``[B, Nq, H*Dv]`` readout in at least fp32.
    """
    _check(hess.dim() == 4 and hess.shape[2] == hess.shape[3], f"gka_read: H has shape {tuple(hess.shape)}")
    b, h, ck, _ = hess.shape
    dv = moment.shape[3]
    _check_frame("query", query, b, ck, "gka_read")
    nq = query.shape[1]
    s = ck**-0.5 if scale is None else scale
    dt = _gka_dtype(hess)
    with _no_autocast(hess.device):
        hm = hess.to(dt)
        q = query.to(dt)
        lam = ridge * torch.sqrt(hm.square().sum(dim=(-2, -1)) + eps * eps)  # [B, H]
        eye = torch.eye(ck, dtype=dt, device=hm.device)
        a_mat = 0.5 * (hm + hm.transpose(-1, -2)) + lam[..., None, None] * eye
        chol, _ = torch.linalg.cholesky_ex(a_mat)
        rhs = q.transpose(1, 2).unsqueeze(1).expand(b, h, ck, nq)
        x = torch.cholesky_solve(rhs, chol).transpose(-1, -2)  # [B, H, Nq, Ck]
        qh = q.unsqueeze(1)
        q_mix = x if alpha is None else qh + alpha.to(dt).unsqueeze(-1) * (x - qh)
        out = s * torch.einsum("bhnk,bhkv->bnhv", q_mix, moment.to(dt))
    return out.reshape(b, nq, h * dv)


def gka_step_reference(
    hess: Tensor,
    moment: Tensor,
    key: Tensor,
    value: Tensor,
    query: Tensor | None,
    weight: Tensor,
    gamma: Tensor | None,
    alpha: Tensor | None,
    *,
    ridge: float = 0.02,
    scale: float | None = None,
    eps: float = 1e-6,
) -> tuple[Tensor | None, Tensor, Tensor]:
    """One gka step: ``gka_write_reference`` of the frame, then ``gka_read_reference`` with ``query``.

    Shapes as in those two functions. Returns ``(readout [B, Nq, H*Dv] or None, H_t, M_t)``.
    """
    new_h, new_m = gka_write_reference(hess, moment, key, value, weight, gamma)
    if query is None:
        return None, new_h, new_m
    return gka_read_reference(new_h, new_m, query, alpha, ridge=ridge, scale=scale, eps=eps), new_h, new_m
