"""Plain-torch kernel references and the dispatch point."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch
import torch.nn.functional as F

import gdkvm.kernels as kernels
from gdkvm.errors import ConfigError
from gdkvm.kernels.reference import (
    KernelInputError,
    gdr_read_reference,
    gdr_step_reference,
    gdr_write_reference,
    gka_read_reference,
    gka_step_reference,
    gka_write_reference,
)
from gdkvm.models.memory import build_memory

F64 = torch.float64
CPU = torch.device("cpu")


def _inputs(seed: int, b: int = 2, h: int = 2, ck: int = 5, dv: int = 3, n: int = 6, nq: int = 4):
    g = torch.Generator().manual_seed(seed)
    state = torch.randn(b, h, ck, dv, generator=g, dtype=F64)
    key = torch.randn(b, n, ck, generator=g, dtype=F64).softmax(-1)
    value = torch.randn(b, n, h * dv, generator=g, dtype=F64)
    query = torch.randn(b, nq, ck, generator=g, dtype=F64).softmax(-1)
    alpha = torch.rand(b, h, ck, dv, generator=g, dtype=F64)
    beta = torch.rand(b, h, ck, dv, generator=g, dtype=F64)
    return state, key, value, query, alpha, beta


# ----------------------------------------------------------------------------------------------------
# gdr reference
# ----------------------------------------------------------------------------------------------------


def test_gdr_step_matches_explicit_per_head_formula():
    state, key, value, query, alpha, beta = _inputs(0)
    out, new = gdr_step_reference(state, key, value, query, alpha, beta)
    b, h, ck, dv = state.shape
    for bi in range(b):
        for hi in range(h):
            s = state[bi, hi]
            k = key[bi]
            v = value[bi, :, hi * dv : (hi + 1) * dv]
            expected = alpha[bi, hi] * (s - beta[bi, hi] * (k.T @ (k @ s))) + beta[bi, hi] * (k.T @ v)
            torch.testing.assert_close(new[bi, hi], expected, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(out[bi, :, hi * dv : (hi + 1) * dv], query[bi] @ expected)
    no_erase = gdr_write_reference(state, key, value, alpha, beta, erase=False)
    kv = torch.einsum("bnk,bnhv->bhkv", key, value.view(b, -1, h, dv))
    torch.testing.assert_close(no_erase, alpha * state + beta * kv, rtol=1e-12, atol=1e-12)


def test_gdr_gates_broadcast_and_none():
    state, key, value, query, alpha, beta = _inputs(1)
    head_alpha = alpha[..., :1]  # [B, H, Ck, 1], the learned gates' shape
    expanded = head_alpha.expand_as(state)
    torch.testing.assert_close(
        gdr_write_reference(state, key, value, head_alpha, beta),
        gdr_write_reference(state, key, value, expanded.contiguous(), beta),
    )
    ones = torch.ones_like(state)
    torch.testing.assert_close(
        gdr_write_reference(state, key, value, None, None), gdr_write_reference(state, key, value, ones, ones)
    )
    out, _ = gdr_step_reference(state, key, value, None, alpha, beta)
    assert out is None


def test_gdr_step_equals_memory_rule_read_and_write():
    rule = build_memory("gdr", 5, 6, heads=2).double()
    state, key, value, query, _, _ = _inputs(2)
    alpha, beta = rule.gate_maps(state)
    out, new = gdr_step_reference(state, key, value, query, alpha, beta)
    rule_state = rule.write({"S": state}, key, value)
    torch.testing.assert_close(new, rule_state["S"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, rule.read(rule_state, query), rtol=1e-12, atol=1e-12)
    fused, fused_state = rule.write_read({"S": state}, key, value, query)
    torch.testing.assert_close(fused, out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused_state["S"], new, rtol=1e-12, atol=1e-12)


def test_gdr_reference_gradcheck_all_inputs():
    inputs = tuple(t.requires_grad_(True) for t in _inputs(3, b=1, h=2, ck=3, dv=2, n=3, nq=2))
    assert torch.autograd.gradcheck(lambda *xs: gdr_step_reference(*xs), inputs)


def test_gdr_reference_keeps_state_dtype_under_autocast():
    state, key, value, query, alpha, beta = (t.float() for t in _inputs(4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, new = gdr_step_reference(state, key.bfloat16(), value.bfloat16(), query, alpha, beta)
    assert out.dtype == torch.float32 and new.dtype == torch.float32
    ref_out, ref_new = gdr_step_reference(
        state, key.bfloat16().float(), value.bfloat16().float(), query, alpha, beta
    )
    torch.testing.assert_close(new, ref_new)
    torch.testing.assert_close(out, ref_out)


def test_gdr_reference_rejects_bad_shapes():
    state, key, value, query, alpha, beta = _inputs(5)
    with pytest.raises(KernelInputError, match="value has shape"):
        gdr_step_reference(state, key, value[..., :-1], query, alpha, beta)
    with pytest.raises(KernelInputError, match="state has shape"):
        gdr_step_reference(state[0], key, value, query, alpha, beta)
    with pytest.raises(KernelInputError, match="query has shape"):
        gdr_read_reference(state, query[..., :-1])


# ----------------------------------------------------------------------------------------------------
# dispatch
# ----------------------------------------------------------------------------------------------------


def test_dispatch_falls_back_to_reference_on_cpu():
    assert kernels.gdr_backend("cpu") == "torch"
    state, key, value, query, alpha, beta = _inputs(6)
    out, new = kernels.gdr_step(state, key, value, query, alpha, beta)
    ref_out, ref_new = gdr_step_reference(state, key, value, query, alpha, beta)
    assert torch.equal(out, ref_out) and torch.equal(new, ref_new)
    assert torch.equal(kernels.gdr_write(state, key, value, alpha, beta), ref_new)


@pytest.fixture
def fresh_dispatch(monkeypatch):
    """Forget any cached backend import for the duration of a test."""
    monkeypatch.setattr(kernels, "_triton_module", None)
    monkeypatch.setattr(kernels, "_triton_tried", False)
    return monkeypatch


def test_dispatch_selects_triton_only_when_present_and_enabled(fresh_dispatch):
    fake = types.ModuleType("gdkvm.kernels.gdr_triton")
    fake.gdr_step = lambda *a, **k: ("triton", None)
    fresh_dispatch.setitem(sys.modules, "gdkvm.kernels.gdr_triton", fake)
    fresh_dispatch.delenv("GDKVM_TRITON", raising=False)
    assert kernels.gdr_backend("cuda") == "triton"
    assert kernels.gdr_backend("cpu") == "torch"
    fresh_dispatch.setenv("GDKVM_TRITON", "0")
    assert kernels.gdr_backend("cuda") == "torch"
    fresh_dispatch.setenv("GDKVM_TRITON", "yes")
    with pytest.raises(ConfigError, match="GDKVM_TRITON"):
        kernels.gdr_backend("cuda")


def test_dispatch_survives_missing_triton_module(fresh_dispatch):
    def failing_import(name, *args, **kwargs):
        raise ModuleNotFoundError(f"No module named '{name}'")

    fresh_dispatch.setattr(kernels.importlib, "import_module", failing_import)
    fresh_dispatch.delenv("GDKVM_TRITON", raising=False)
    assert kernels.gdr_backend("cuda") == "torch"


def test_importing_and_running_memory_never_imports_triton():
    code = (
        "import sys, torch\n"
        "from gdkvm.models.memory import build_memory\n"
        "r = build_memory('gdr', 4, 8, heads=2)\n"
        "s = r.init_state(1, torch.device('cpu'))\n"
        "k = torch.rand(1, 3, 4).softmax(-1)\n"
        "s = r.write(s, k, torch.rand(1, 3, 8)); r.read(s, k)\n"
        "print('triton' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# ----------------------------------------------------------------------------------------------------
# gka reference
# ----------------------------------------------------------------------------------------------------


def _gka_frames(seed: int, frames: int = 3, b: int = 2, h: int = 2, ck: int = 4, dv: int = 3, n: int = 5):
    g = torch.Generator().manual_seed(seed)
    keys = F.normalize(torch.randn(frames, b, n, ck, generator=g, dtype=F64), dim=-1)
    values = torch.randn(frames, b, n, h * dv, generator=g, dtype=F64)
    weights = torch.rand(frames, b, h, n, generator=g, dtype=F64)
    gammas = torch.rand(frames, b, h, generator=g, dtype=F64) * 0.5 + 0.5
    query = F.normalize(torch.randn(b, n, ck, generator=g, dtype=F64), dim=-1)
    alpha = torch.rand(b, h, n, generator=g, dtype=F64)
    return keys, values, weights, gammas, query, alpha


def _gka_accumulate(keys, values, weights, gammas):
    frames, b, n, ck = keys.shape
    h = weights.shape[2]
    dv = values.shape[-1] // h
    hess = torch.zeros(b, h, ck, ck, dtype=F64)
    mom = torch.zeros(b, h, ck, dv, dtype=F64)
    for t in range(frames):
        hess, mom = gka_write_reference(hess, mom, keys[t], values[t], weights[t], gammas[t])
    return hess, mom


def test_gka_recurrence_matches_batch_sums():
    keys, values, weights, gammas, _, _ = _gka_frames(7)
    hess, mom = _gka_accumulate(keys, values, weights, gammas)
    frames, b, n, ck = keys.shape
    h, dv = weights.shape[2], values.shape[-1] // weights.shape[2]
    for bi in range(b):
        for hi in range(h):
            eh = torch.zeros(ck, ck, dtype=F64)
            em = torch.zeros(ck, dv, dtype=F64)
            for tau in range(frames):
                eta = gammas[tau + 1 :, bi, hi].prod()
                k = keys[tau, bi]
                w = torch.diag(weights[tau, bi, hi])
                eh += eta * k.T @ w @ k
                em += eta * k.T @ w @ values[tau, bi, :, hi * dv : (hi + 1) * dv]
            torch.testing.assert_close(hess[bi, hi], eh, rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(mom[bi, hi], em, rtol=1e-12, atol=1e-14)


def test_gka_read_solves_the_normal_equations():
    keys, values, weights, gammas, query, _ = _gka_frames(8)
    hess, mom = _gka_accumulate(keys, values, weights, gammas)
    out = gka_read_reference(hess, mom, query, None, ridge=0.02, scale=1.0)  # alpha = 1: pure ridge
    lam = 0.02 * torch.linalg.matrix_norm(hess)  # [B, H]
    a_mat = hess + lam[..., None, None] * torch.eye(hess.shape[-1], dtype=F64)
    # S^T = A^-1 M solves A S^T = M; the readout is Q S^T per head
    s_t = torch.linalg.solve(a_mat, mom)
    b, h, ck, dv = mom.shape
    expected = torch.einsum("bnk,bhkv->bnhv", query, s_t).reshape(b, -1, h * dv)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


def test_gka_ridge_readout_is_invariant_to_weight_scale():
    keys, values, weights, gammas, query, _ = _gka_frames(9)
    h1, m1 = _gka_accumulate(keys, values, weights, gammas)
    h2, m2 = _gka_accumulate(keys, values, weights * 7.5, gammas)
    out1 = gka_read_reference(h1, m1, query, None, eps=0.0)
    out2 = gka_read_reference(h2, m2, query, None, eps=0.0)
    torch.testing.assert_close(out1, out2, rtol=1e-10, atol=1e-12)


def test_gka_mix_and_empty_memory():
    keys, values, weights, gammas, query, alpha = _gka_frames(10)
    hess, mom = _gka_accumulate(keys, values, weights, gammas)
    s = 0.5
    ridge = gka_read_reference(hess, mom, query, None, scale=s)
    linear = torch.einsum("bnk,bhkv->bnhv", query, mom).reshape(ridge.shape) * s
    mixed = gka_read_reference(hess, mom, query, alpha, scale=s)
    b, h, n = alpha.shape
    a = alpha.transpose(1, 2).unsqueeze(-1).expand(b, n, h, mom.shape[-1]).reshape(ridge.shape)
    torch.testing.assert_close(mixed, linear + a * (ridge - linear), rtol=1e-10, atol=1e-12)
    zero = gka_read_reference(torch.zeros_like(hess), torch.zeros_like(mom), query, alpha)
    assert torch.equal(zero, torch.zeros_like(zero))


def test_gka_step_is_write_then_read_and_gradchecks():
    keys, values, weights, gammas, query, alpha = _gka_frames(11, frames=2, b=1, h=1, ck=3, dv=2, n=4)
    hess, mom = gka_write_reference(
        torch.zeros(1, 1, 3, 3, dtype=F64),
        torch.zeros(1, 1, 3, 2, dtype=F64),
        keys[0],
        values[0],
        weights[0],
        None,
    )
    out, h2, m2 = gka_step_reference(hess, mom, keys[1], values[1], query, weights[1], gammas[1], alpha)
    h_ref, m_ref = gka_write_reference(hess, mom, keys[1], values[1], weights[1], gammas[1])
    torch.testing.assert_close(h2, h_ref)
    torch.testing.assert_close(m2, m_ref)
    torch.testing.assert_close(out, gka_read_reference(h_ref, m_ref, query, alpha))

    leaves = tuple(
        t.clone().requires_grad_(True)
        for t in (hess, mom, keys[1], values[1], query, weights[1], gammas[1], alpha)
    )
    assert torch.autograd.gradcheck(lambda *xs: gka_step_reference(*xs)[0], leaves)


def test_gka_reference_rejects_bad_weight_shape():
    keys, values, weights, gammas, _, _ = _gka_frames(12)
    hess = torch.zeros(2, 2, 4, 4, dtype=F64)
    mom = torch.zeros(2, 2, 4, 3, dtype=F64)
    with pytest.raises(KernelInputError, match="weight has shape"):
        gka_write_reference(hess, mom, keys[0], values[0], weights[0, :, :1], gammas[0])
