"""Fused Triton kernel for one frame of the gated-delta-rule memory (write, then read).

``gdr_step`` (alias ``gdr_step_triton``) has exactly the signature and semantics of
:func:`gdkvm.kernels.reference.gdr_step_reference`::

    S_t = alpha * (S_{t-1} - beta * K^T K S_{t-1}) + beta * K^T V      (erase=True)
    S_t = alpha * S_{t-1} + beta * K^T V                                (erase=False)
    O   = Q S_t                                                         (query given)

with ``S: [B, H, Ck, Dv]``, ``K: [B, N, Ck]``, ``V: [B, N, H*Dv]``, ``Q: [B, Nq, Ck]``, elementwise gate maps
broadcastable to ``[B, H, Ck, Dv]`` (``None`` = 1) and ``O: [B, Nq, H*Dv]``. Outputs are in the state's
dtype, like the reference; all arithmetic inside the kernel is fp32 (``tl.dot`` with
``input_precision="ieee"``, so no TF32), whatever the input dtypes.

One program owns one (batch, head) pair and one ``BV``-wide slice of that head's value columns, for all
``Ck`` rows (grid ``(B*H, cdiv(Dv, BV))``). It keeps the state tile in registers and

1. streams the frame's pixels in ``BN``-row blocks, accumulating ``G = K^T K`` (``Ck x Ck``) and
   ``U = K^T V`` (``Ck x BV``); ``K^T (K S) = (K^T K) S`` so the erase term costs one small ``G @ S``
   at the end instead of a product per pixel block;
2. forms ``S_t`` and stores it;
3. streams the query pixels and writes ``O = Q S_t`` from the tile still in registers.

Backward: :class:`_GdrStepFunction` recomputes the step through the torch reference under autograd and
differentiates that (the update is a handful of matmuls, so the recompute costs about one forward).
Double backward is not supported.

Interpreter: ``triton.jit`` picks compiled or interpreted mode when it decorates a function, reading
``TRITON_INTERPRET`` at that moment. To make that choice independent of import order (another module may
import this one long before a test turns the interpreter on), the kernel is decorated on first launch,
once per mode, by :func:`forward_kernel`.

Nothing outside ``gdkvm/kernels/`` imports Triton; importing this module raises ImportError when Triton is
missing, which the dispatcher in ``gdkvm/kernels/__init__.py`` treats as "use the reference".
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from gdkvm.kernels.reference import KernelInputError, gdr_step_reference

__all__ = [
    "MAX_KEY_DIM",
    "available",
    "block_sizes",
    "forward_kernel",
    "gdr_step",
    "gdr_step_triton",
]

#: Largest Ck the kernel takes (the model uses 64). The ``Ck x Ck`` Gram tile is a dot operand: at Ck = 128
#: it alone needs 64 KiB of shared memory in fp32, past what consumer GPUs give a block. Larger Ck, float64
#: states and empty tensors run the torch reference instead (same results, no kernel).
MAX_KEY_DIM = 64
_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def available() -> bool:
    """Whether the kernel can run here: Triton imports (it did, or this module would not) and CUDA is up."""
    return torch.cuda.is_available()


# Triton-language body of the kernel. Not decorated here: forward_kernel() wraps it for the current mode.
# Only tl *builtins* may be used (tl.full, not tl.zeros / tl.sum / tl.cdiv ...): the helpers in
# triton/language/standard.py are themselves jit functions, decorated when triton is imported, and they
# break the interpreter if TRITON_INTERPRET is turned on after that import.
def gdr_step_fwd_kernel(
    state,
    key,
    value,
    query,
    alpha,
    beta,
    readout,
    new_state,
    N,
    NQ,
    CK,
    DV,
    H,
    s_sb,
    s_sh,
    s_sk,
    s_sv,
    s_kb,
    s_kn,
    s_kk,
    s_vb,
    s_vn,
    s_vc,
    s_qb,
    s_qn,
    s_qk,
    s_ab,
    s_ah,
    s_ak,
    s_av,
    s_bb,
    s_bh,
    s_bk,
    s_bv,
    s_ob,
    s_on,
    s_oc,
    s_nb,
    s_nh,
    s_nk,
    s_nv,
    HAS_QUERY: tl.constexpr,
    HAS_ALPHA: tl.constexpr,
    HAS_BETA: tl.constexpr,
    ERASE: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
):
    # Offsets are int64 from the batch index on; pixel offsets stay int32 (the wrapper checks they fit).
    i_bh = tl.program_id(0).to(tl.int64)
    i_v = tl.program_id(1)
    i_b = i_bh // H
    i_h = i_bh % H
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < CK
    m_v = o_v < DV
    m_kv = m_k[:, None] & m_v[None, :]
    c_v = i_h * DV + o_v  # this head's channels in the [.., H*Dv] value / readout layout

    s = tl.load(
        state + i_b * s_sb + i_h * s_sh + o_k[:, None] * s_sk + o_v[None, :] * s_sv, mask=m_kv, other=0.0
    ).to(tl.float32)

    # Pass 1 over the frame's pixels: G = K^T K (only with the erase term) and U = K^T V.
    gram = tl.full([BK, BK], 0.0, tl.float32)
    kv = tl.full([BK, BV], 0.0, tl.float32)
    for n0 in range(0, N, BN):
        o_n = n0 + tl.arange(0, BN)
        m_n = o_n < N
        k = tl.load(
            key + i_b * s_kb + o_n[:, None] * s_kn + o_k[None, :] * s_kk,
            mask=m_n[:, None] & m_k[None, :],
            other=0.0,
        ).to(tl.float32)
        v = tl.load(
            value + i_b * s_vb + o_n[:, None] * s_vn + c_v[None, :] * s_vc,
            mask=m_n[:, None] & m_v[None, :],
            other=0.0,
        ).to(tl.float32)
        k_t = tl.trans(k)
        kv += tl.dot(k_t, v, input_precision="ieee")
        if ERASE:
            gram += tl.dot(k_t, k, input_precision="ieee")

    if HAS_BETA:
        b = tl.load(
            beta + i_b * s_bb + i_h * s_bh + o_k[:, None] * s_bk + o_v[None, :] * s_bv, mask=m_kv, other=0.0
        ).to(tl.float32)
        kv = b * kv
    if ERASE:
        erase = tl.dot(gram, s, input_precision="ieee")
        if HAS_BETA:
            erase = b * erase
        s = s - erase
    if HAS_ALPHA:
        a = tl.load(
            alpha + i_b * s_ab + i_h * s_ah + o_k[:, None] * s_ak + o_v[None, :] * s_av, mask=m_kv, other=0.0
        ).to(tl.float32)
        s = a * s
    s = s + kv
    tl.store(
        new_state + i_b * s_nb + i_h * s_nh + o_k[:, None] * s_nk + o_v[None, :] * s_nv,
        s.to(new_state.dtype.element_ty),
        mask=m_kv,
    )

    # Pass 2 over the query pixels: O = Q S_t from the tile still in registers. Rows of S_t past Ck are
    # zero (masked loads), so padded query columns contribute nothing.
    if HAS_QUERY:
        for n0 in range(0, NQ, BN):
            o_n = n0 + tl.arange(0, BN)
            m_n = o_n < NQ
            q = tl.load(
                query + i_b * s_qb + o_n[:, None] * s_qn + o_k[None, :] * s_qk,
                mask=m_n[:, None] & m_k[None, :],
                other=0.0,
            ).to(tl.float32)
            o = tl.dot(q, s, input_precision="ieee")
            tl.store(
                readout + i_b * s_ob + o_n[:, None] * s_on + c_v[None, :] * s_oc,
                o.to(readout.dtype.element_ty),
                mask=m_n[:, None] & m_v[None, :],
            )


_JITTED: dict[bool, Any] = {}


def forward_kernel(interpret: bool | None = None) -> Any:
    """The forward kernel, jit-wrapped for the given mode (default: what ``TRITON_INTERPRET`` says now).

    Returns a ``triton.JITFunction`` (compiled mode; also what ``triton.compile`` takes) or the
    interpreter's function object. Built once per mode and cached, so compiled binaries are reused.
    This builds the same objects ``triton.jit`` would, but without reading the mode from the
    environment at import time.
    """
    if interpret is None:
        interpret = bool(triton.knobs.runtime.interpret)
    if interpret not in _JITTED:
        options = {"do_not_specialize": ["N", "NQ"]}
        if interpret:
            from triton.runtime.interpreter import InterpretedFunction  # needs numpy

            _JITTED[interpret] = InterpretedFunction(gdr_step_fwd_kernel, **options)
        else:
            _JITTED[interpret] = triton.JITFunction(gdr_step_fwd_kernel, **options)
    return _JITTED[interpret]


@functools.lru_cache(maxsize=64)
def block_sizes(key_dim: int, head_dim: int, *, interpret: bool = False) -> tuple[int, int, int]:
    """Block sizes ``(BN, BK, BV)`` for Ck = ``key_dim`` and Dv = ``head_dim``.

    ``BK`` covers all of Ck (a power of two, at least 16 because ``tl.dot`` needs every dimension >= 16 on
    GPUs). On a GPU ``BN`` is 64 and ``BV`` is at most 32 (one paper-size head), which keeps the shared
    memory at 72 KiB for Ck = 64 in fp32 and gives a small grid more programs. The interpreter runs the
    programs one after another in Python, where fewer, bigger blocks are faster: there ``BV`` covers a
    whole head and ``BN`` is 128.
    """
    bk = max(16, triton.next_power_of_2(key_dim))
    bv = max(16, triton.next_power_of_2(head_dim))
    if interpret:
        return 128, bk, bv
    return 64, bk, min(bv, 32)


def _gate_view(name: str, gate: Tensor | None, state: Tensor) -> Tensor | None:
    """Expand a gate map to the state's shape without copying (broadcast dims get stride 0)."""
    if gate is None:
        return None
    # expand() succeeds exactly when the gate broadcasts to the state's shape (and is cheaper than
    # torch.broadcast_shapes on this per-frame path).
    if gate.dim() > state.dim():
        view = None
    else:
        try:
            view = gate.expand(state.shape)
        except RuntimeError:
            view = None
    if view is None:
        raise KernelInputError(
            f"gdr_step: {name} has shape {tuple(gate.shape)}, not broadcastable to {tuple(state.shape)}"
        )
    if gate.device != state.device:
        if gate.dim() != 0:  # torch lets 0-dim CPU tensors mix with CUDA ones; so does the reference
            raise KernelInputError(f"gdr_step: {name} is on {gate.device}, the state on {state.device}")
        view = gate.to(state.device).expand(state.shape)
    return view


def _frame_span(t: Tensor) -> int:
    """Largest element offset inside one batch entry of a ``[B, N, C]`` tensor."""
    return sum((size - 1) * abs(stride) for size, stride in zip(t.shape[1:], t.stride()[1:], strict=True))


def _check_inputs(state: Tensor, key: Tensor, value: Tensor, query: Tensor | None) -> None:
    def check(cond: bool, what: str) -> None:
        if not cond:
            raise KernelInputError(what)

    check(state.dim() == 4, f"gdr_step: state has shape {tuple(state.shape)}, expected [B, H, Ck, Dv]")
    b, h, ck, dv = state.shape
    frames = [("key", key, ck), ("value", value, h * dv)]
    if query is not None:
        frames.append(("query", query, ck))
    for name, t, channels in frames:
        check(
            t.dim() == 3 and t.shape[0] == b and t.shape[2] == channels,
            f"gdr_step: {name} has shape {tuple(t.shape)}, expected [{b}, N, {channels}]",
        )
        check(t.device == state.device, f"gdr_step: {name} is on {t.device}, the state on {state.device}")
        check(t.is_floating_point(), f"gdr_step: {name} has dtype {t.dtype}, expected a float dtype")
    check(key.shape[1] == value.shape[1], f"gdr_step: key has {key.shape[1]} pixels, value {value.shape[1]}")


def _launch(
    state: Tensor,
    key: Tensor,
    value: Tensor,
    query: Tensor | None,
    alpha: Tensor | None,
    beta: Tensor | None,
    erase: bool,
) -> tuple[Tensor | None, Tensor]:
    """Allocate the outputs and run the kernel (no autograd); ``alpha`` / ``beta`` are the state-shaped
    views of ``_gate_view`` (or None)."""
    b, h, ck, dv = state.shape
    interpret = bool(triton.knobs.runtime.interpret)
    if not interpret and state.device.type != "cuda":
        raise KernelInputError(
            f"gdr_step_triton: tensors are on {state.device}; the kernel needs CUDA (or TRITON_INTERPRET=1)"
        )
    bn, bk, bv = block_sizes(ck, dv, interpret=interpret)
    new_state = torch.empty(state.shape, dtype=state.dtype, device=state.device)
    readout = None
    if query is not None:
        readout = torch.empty((b, query.shape[1], h * dv), dtype=state.dtype, device=state.device)
    # Absent optional tensors: pass the state as a never-dereferenced placeholder (constexpr flags off).
    q_arg = state if query is None else query
    o_arg = state if readout is None else readout
    a_arg = state if alpha is None else alpha
    b_arg = state if beta is None else beta
    q_strides = (0, 0, 0) if query is None else query.stride()
    o_strides = (0, 0, 0) if readout is None else readout.stride()
    kernel = forward_kernel(interpret)
    grid = (b * h, triton.cdiv(dv, bv))
    with _launch_device(state.device, interpret):
        kernel[grid](
            state,
            key,
            value,
            q_arg,
            a_arg,
            b_arg,
            o_arg,
            new_state,
            key.shape[1],
            0 if query is None else query.shape[1],
            ck,
            dv,
            h,
            *state.stride(),
            *key.stride(),
            *value.stride(),
            *q_strides,
            *a_arg.stride(),
            *b_arg.stride(),
            *o_strides,
            *new_state.stride(),
            HAS_QUERY=query is not None,
            HAS_ALPHA=alpha is not None,
            HAS_BETA=beta is not None,
            ERASE=erase,
            BN=bn,
            BK=bk,
            BV=bv,
        )
    return readout, new_state


def _launch_device(device: torch.device, interpret: bool) -> contextlib.AbstractContextManager:
    """Triton launches on the *current* CUDA device: make it the tensors' one (no-op when it already is)."""
    if interpret or device.index is None or device.index == torch.cuda.current_device():
        return contextlib.nullcontext()
    return torch.cuda.device(device)


class _GdrStepFunction(torch.autograd.Function):
    """Triton forward; backward by recomputing the torch reference and differentiating it."""

    @staticmethod
    def forward(ctx, state, key, value, query, alpha, beta, erase):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        ctx.erase = erase
        ctx.save_for_backward(state, key, value, query, alpha, beta)
        return _launch(state, key, value, query, alpha, beta, erase)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, d_readout, d_state):  # type: ignore[override]
        saved = ctx.saved_tensors
        wants = ctx.needs_input_grad[:6]
        with torch.enable_grad():
            leaves = [
                None if t is None else t.detach().requires_grad_(bool(w))
                for t, w in zip(saved, wants, strict=True)
            ]
            readout, new_state = gdr_step_reference(*leaves, erase=ctx.erase)
            outputs, grads = [], []
            if readout is not None and d_readout is not None:
                outputs.append(readout)
                grads.append(d_readout)
            if d_state is not None:
                outputs.append(new_state)
                grads.append(d_state)
            targets = [t for t, w in zip(leaves, wants, strict=True) if w and t is not None]
            if not outputs or not targets:
                return (None,) * 7
            found = iter(torch.autograd.grad(outputs, targets, grads, allow_unused=True))
        result = [next(found) if w and t is not None else None for t, w in zip(leaves, wants, strict=True)]
        return (*result, None)


@torch.compiler.disable  # the launch is host-side Python; torch.compile graph-breaks around it
def gdr_step_triton(
    state: Tensor,
    key: Tensor,
    value: Tensor,
    query: Tensor | None,
    alpha: Tensor | None,
    beta: Tensor | None,
    *,
    erase: bool = True,
) -> tuple[Tensor | None, Tensor]:
    """One fused memory step on the Triton kernel: write the frame, then read ``S_t`` with ``query``.

    Same contract as :func:`gdkvm.kernels.reference.gdr_step_reference`.

    Args:
        state: ``[B, H, Ck, Dv]`` previous state ``S_{t-1}`` (fp32 recommended; fp16/bf16 accepted).
        key: ``[B, N, Ck]``; value: ``[B, N, H*Dv]`` (any float dtype, any strides).
        query: ``[B, Nq, Ck]`` or None (no readout).
        alpha, beta: gate maps broadcastable to ``[B, H, Ck, Dv]`` (stride-0 broadcast, no copy), or None
            for 1.
        erase: apply the delta-rule erase term ``K^T K S`` (False for linear and gdr-wo-beta).

    Returns:
        ``(readout [B, Nq, H*Dv] or None, new_state [B, H, Ck, Dv])``, both in the state's dtype.
        Differentiable w.r.t. every tensor input (backward through the torch reference).

    Raises:
        KernelInputError: wrong ranks, shapes, devices or a gate that does not broadcast to the state.
    """
    _check_inputs(state, key, value, query)
    alpha_x = _gate_view("alpha", alpha, state)
    beta_x = _gate_view("beta", beta, state)
    frames = (key, value) if query is None else (key, value, query)
    if (
        state.dtype not in _KERNEL_DTYPES
        or state.shape[2] > MAX_KEY_DIM
        or state.numel() == 0
        or any(_frame_span(t) >= 2**31 for t in frames)  # the kernel's pixel offsets are int32
    ):
        return gdr_step_reference(state, key, value, query, alpha, beta, erase=erase)
    # The kernel reads the gates through their stride-0 state-shaped views; under autograd the expand is
    # differentiated by torch, so the gradients still come back in each gate's own shape.
    inputs = (state, key, value, query, alpha_x, beta_x)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        return _GdrStepFunction.apply(*inputs, bool(erase))
    return _launch(*inputs, bool(erase))  # inference (the streaming path): no autograd node


#: The name the dispatcher (``gdkvm.kernels.gdr_step``) looks up.
gdr_step = gdr_step_triton
