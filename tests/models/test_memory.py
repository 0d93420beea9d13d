"""Memory rules against independent naive loops, closed forms and flash-linear-attention's reference."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gdkvm.errors import ConfigError, GdkvmError
from gdkvm.kernels.reference import gdr_step_reference
from gdkvm.models.memory import MEMORY_RULES, MemoryInputError, build_memory
from gdkvm.models.memory_gates import state_gates

F64 = torch.float64
CPU = torch.device("cpu")
GDR_FAMILY = ("linear", "delta", "gdr", "gdr-wo-alpha", "gdr-wo-beta")


def _frames(seed: int, batch: int, frames: int, pixels: int, ck: int, cv: int):
    """Random keys (softmax over channels, like the model's), values and queries in float64."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(frames, batch, pixels, ck, generator=g, dtype=F64).softmax(-1)
    values = torch.randn(frames, batch, pixels, cv, generator=g, dtype=F64)
    queries = torch.randn(frames, batch, pixels, ck, generator=g, dtype=F64).softmax(-1)
    return keys, values, queries


def _rule(name: str, ck: int = 6, cv: int = 8, heads: int = 2, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_memory(name, ck, cv, heads=heads, **kw).double()


def _to_full(s: torch.Tensor) -> torch.Tensor:
    """[B, H, Ck, Dv] per-head state -> [B, Ck, H*Dv] full key-first matrix."""
    b, h, ck, dv = s.shape
    return s.permute(0, 2, 1, 3).reshape(b, ck, h * dv)


def _to_heads(s: torch.Tensor, heads: int) -> torch.Tensor:
    b, ck, cv = s.shape
    return s.reshape(b, ck, heads, cv // heads).permute(0, 2, 1, 3)


def _full_gate(gate: torch.Tensor | None, b: int, h: int, ck: int, dv: int) -> torch.Tensor:
    if gate is None:
        return torch.ones(b, ck, h * dv, dtype=F64)
    return _to_full(gate.expand(b, h, ck, dv))


def _run_rule(rule, keys, values, queries):
    """Stream the frames through the rule: read(state_{t-1}, q_t), then write(state_{t-1}, k_t, v_t)."""
    state = rule.init_state(keys.shape[1], CPU, F64)
    outs = []
    for t in range(keys.shape[0]):
        outs.append(rule.read(state, queries[t]))
        state = rule.write(state, keys[t], values[t])
    return torch.stack(outs), state


# ----------------------------------------------------------------------------------------------------
# construction and interface
# ----------------------------------------------------------------------------------------------------


def test_build_rejects_unknown_names_and_options():
    with pytest.raises(ConfigError, match="unknown memory rule 'nope'.*gdr"):
        build_memory("nope", 4, 8)
    with pytest.raises(ConfigError, match="unknown option"):
        build_memory("gdr", 4, 8, heads=2, normalise=True)
    with pytest.raises(ConfigError, match="not divisible"):
        build_memory("gdr", 4, 10, heads=4)
    with pytest.raises(ConfigError, match="decay form"):
        build_memory("gdr", 4, 8, heads=2, decay_form="log")
    with pytest.raises(ConfigError, match="only 'exp'"):
        build_memory("gka", 4, 8, heads=2, decay_form="official")
    with pytest.raises(ConfigError, match="similarity"):
        build_memory("softmax", 4, 8, similarity="cos")


@pytest.mark.parametrize("name", MEMORY_RULES)
def test_empty_memory_reads_zero_and_write_is_pure(name):
    rule = _rule(name)
    keys, values, queries = _frames(1, 3, 2, 5, 6, 8)
    state = rule.init_state(3, CPU, F64)
    out = rule.read(state, queries[0])
    assert out.shape == (3, 5, 8)
    assert torch.equal(out, torch.zeros_like(out))
    state1 = rule.write(state, keys[0], values[0])
    before = {k: v.clone() for k, v in state1.items()}
    state2 = rule.write(state1, keys[1], values[1])
    assert state2 is not state1
    for k, v in state1.items():  # the input state is untouched
        assert torch.equal(v, before[k])
    assert rule.constant_state == (name != "softmax")


@pytest.mark.parametrize("name", MEMORY_RULES)
def test_bad_shapes_raise(name):
    rule = _rule(name)
    state = rule.init_state(2, CPU, F64)
    with pytest.raises(MemoryInputError, match="key has shape"):
        rule.write(state, torch.rand(2, 5, 7, dtype=F64), torch.rand(2, 5, 8, dtype=F64))
    with pytest.raises(GdkvmError, match="pixels"):
        rule.write(state, torch.rand(2, 5, 6, dtype=F64), torch.rand(2, 4, 8, dtype=F64))
    with pytest.raises(GdkvmError, match="query has shape"):
        rule.read(state, torch.rand(3, 5, 6, dtype=F64))


@pytest.mark.parametrize("name", MEMORY_RULES)
def test_recurrent_states_stay_fp32_under_autocast(name):
    rule = build_memory(name, 6, 8, heads=2)
    keys, values, queries = (x.float() for x in _frames(25, 2, 2, 5, 6, 8))
    state = rule.init_state(2, CPU, torch.bfloat16)
    expected = torch.bfloat16 if name == "softmax" else torch.float32
    assert all(t.dtype == expected for t in state.values())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        state = rule.write(state, keys[0].bfloat16(), values[0].bfloat16())
        out = rule.read(state, queries[1].bfloat16())
    assert all(t.dtype == expected for t in state.values())
    assert out.shape == (2, 5, 8) and bool(torch.isfinite(out).all())


# ----------------------------------------------------------------------------------------------------
# the gated delta rule family vs an explicit per-pixel loop
# ----------------------------------------------------------------------------------------------------


def _naive_family(rule, keys, values, queries, erase: bool):
    """Per-frame, per-pixel update with full Ck x Cv gate matrices built from the rule's gate function."""
    frames, b, n, ck = keys.shape
    cv, h = values.shape[-1], rule.heads
    s = torch.zeros(b, ck, cv, dtype=F64)
    outs = []
    for t in range(frames):
        outs.append(queries[t] @ s)  # read before write
        alpha, beta = rule.gate_maps(_to_heads(s, h))
        a = _full_gate(alpha, b, h, ck, cv // h)
        be = _full_gate(beta, b, h, ck, cv // h)
        erase_term = torch.zeros_like(s)
        write_term = torch.zeros_like(s)
        for i in range(n):
            k = keys[t, :, i]  # [B, Ck]
            v = values[t, :, i]  # [B, Cv]
            old = torch.einsum("bk,bkv->bv", k, s)  # k^T S: the value the memory predicts for k
            erase_term += k[:, :, None] * old[:, None, :]
            write_term += k[:, :, None] * v[:, None, :]
        s = a * (s - be * erase_term) + be * write_term if erase else a * s + be * write_term
    return torch.stack(outs), s


@pytest.mark.parametrize(
    "name,decay_form",
    [(n, "exp") for n in GDR_FAMILY] + [("gdr", "official"), ("gdr-wo-beta", "official")],
)
def test_gdr_family_matches_naive_loop(name, decay_form):
    rule = _rule(name, decay_form=decay_form, seed=3)
    keys, values, queries = _frames(2, 2, 4, 5, 6, 8)
    outs, state = _run_rule(rule, keys, values, queries)
    ref_outs, ref_s = _naive_family(rule, keys, values, queries, erase=type(rule).erase)
    torch.testing.assert_close(outs, ref_outs, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(_to_full(state["S"]), ref_s, rtol=1e-10, atol=1e-12)
    assert ref_s.abs().max() > 0.1  # the comparison is not between zeros


@pytest.mark.parametrize("name", GDR_FAMILY)
def test_write_read_equals_write_then_read(name):
    rule = _rule(name, seed=4)
    keys, values, queries = _frames(5, 2, 3, 4, 6, 8)
    state = rule.init_state(2, CPU, F64)
    for t in range(2):
        fused, fused_state = rule.write_read(state, keys[t], values[t], queries[t + 1])
        plain_state = rule.write(state, keys[t], values[t])
        torch.testing.assert_close(fused, rule.read(plain_state, queries[t + 1]), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(fused_state["S"], plain_state["S"], rtol=1e-12, atol=1e-12)
        state = fused_state


def test_linear_is_cumulative_sum_of_kv():
    rule = _rule("linear")
    keys, values, queries = _frames(6, 2, 5, 4, 6, 8)
    outs, state = _run_rule(rule, keys, values, queries)
    kv = torch.einsum("tbnk,tbnv->tbkv", keys, values)
    cum = torch.cumsum(kv, dim=0)
    torch.testing.assert_close(_to_full(state["S"]), cum[-1], rtol=1e-12, atol=1e-12)
    for t in range(1, 5):
        torch.testing.assert_close(outs[t], queries[t] @ cum[t - 1], rtol=1e-12, atol=1e-12)


def test_linear_normalised_readout_is_eq2():
    rule = _rule("linear", normalize=True)
    keys, values, queries = _frames(7, 2, 4, 3, 6, 8)
    outs, _ = _run_rule(rule, keys, values, queries)
    t = 3  # O = sum_i (q . k_i) v_i / sum_j (q . k_j) over all pixels of frames 0..t-1
    past_k = keys[:t].permute(1, 0, 2, 3).reshape(2, -1, 6)
    past_v = values[:t].permute(1, 0, 2, 3).reshape(2, -1, 8)
    sim = queries[t] @ past_k.transpose(1, 2)
    expected = (sim @ past_v) / (sim.sum(-1, keepdim=True) + rule.eps)
    torch.testing.assert_close(outs[t], expected, rtol=1e-10, atol=1e-12)
    _, fused_state = rule.write_read(rule.init_state(2, CPU, F64), keys[0], values[0], queries[1])
    assert "z" in fused_state


def test_delta_overwrites_with_orthonormal_keys():
    rule = _rule("delta", ck=8, cv=6, heads=3)
    g = torch.Generator().manual_seed(8)
    basis, _ = torch.linalg.qr(torch.randn(2, 8, 5, generator=g, dtype=F64))
    keys = basis.transpose(1, 2)  # [B, N=5, Ck=8] with orthonormal rows
    v1 = torch.randn(2, 5, 6, generator=g, dtype=F64)
    v2 = torch.randn(2, 5, 6, generator=g, dtype=F64)
    state = rule.write(rule.init_state(2, CPU, F64), keys, v1)
    torch.testing.assert_close(rule.read(state, keys), v1, rtol=1e-10, atol=1e-12)
    state = rule.write(state, keys, v2)
    torch.testing.assert_close(rule.read(state, keys), v2, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------------------
# Table 4 ablations as gate specialisations
# ----------------------------------------------------------------------------------------------------


def _ones(s: torch.Tensor) -> torch.Tensor:
    return torch.ones(*s.shape[:3], 1, dtype=s.dtype)


def _assert_same_stream(rule_a, rule_b, seed: int):
    keys, values, queries = _frames(seed, 2, 4, 5, 6, 8)
    out_a, st_a = _run_rule(rule_a, keys, values, queries)
    out_b, st_b = _run_rule(rule_b, keys, values, queries)
    torch.testing.assert_close(out_a, out_b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(st_a["S"], st_b["S"], rtol=1e-12, atol=1e-12)


def test_gdr_with_alpha_one_is_wo_alpha():
    gdr = _rule("gdr", seed=1)
    wo_alpha = _rule("gdr-wo-alpha", seed=2)
    wo_alpha.gates.b_proj.load_state_dict(gdr.gates.b_proj.state_dict())
    gdr.gate_override = lambda s: (None, gdr.gates(s)[1])
    _assert_same_stream(gdr, wo_alpha, seed=11)


def test_wo_alpha_with_beta_one_is_delta():
    wo_alpha = _rule("gdr-wo-alpha")
    wo_alpha.gate_override = lambda s: (None, _ones(s))
    _assert_same_stream(wo_alpha, _rule("delta"), seed=12)


def test_wo_beta_with_alpha_one_is_linear():
    wo_beta = _rule("gdr-wo-beta")
    wo_beta.gate_override = lambda s: (_ones(s), None)
    _assert_same_stream(wo_beta, _rule("linear"), seed=13)


def test_gdr_with_both_gates_one_is_delta():
    gdr = _rule("gdr")
    gdr.gate_override = lambda s: (_ones(s), _ones(s))
    _assert_same_stream(gdr, _rule("delta"), seed=14)


# ----------------------------------------------------------------------------------------------------
# gates: decay forms, statistics, gradients
# ----------------------------------------------------------------------------------------------------


def test_decay_forms():
    torch.manual_seed(5)
    exp_rule = build_memory("gdr", 6, 8, heads=2).double()
    off_rule = build_memory("gdr", 6, 8, heads=2, decay_form="official").double()
    # the official form has the release's bias-free b_proj; the exp rule's bias is at its init, 0
    assert torch.equal(exp_rule.gates.b_proj.bias, torch.zeros(2, dtype=F64))
    missing = off_rule.load_state_dict(exp_rule.state_dict(), strict=False)
    assert missing.missing_keys == [] and missing.unexpected_keys == ["gates.b_proj.bias"]
    keys, values, _ = _frames(15, 2, 2, 5, 6, 8)
    s = exp_rule.write(exp_rule.init_state(2, CPU, F64), keys[0], values[0])["S"]
    a_exp, b_exp = exp_rule.gate_maps(s)
    a_off, b_off = off_rule.gate_maps(s)
    assert a_exp.shape == (2, 2, 6, 1) and a_off.shape == (2, 2, 6, 4)
    assert bool(((a_exp > 0) & (a_exp < 1)).all())
    assert bool((a_off < 0).all())
    # official = the log-gate g, tiled across heads: value channel c takes head c % H
    log_a = torch.log(a_exp).squeeze(-1)  # [B, H, Ck]
    tiled = log_a.permute(0, 2, 1).repeat(1, 1, 4)  # [B, Ck, Cv]
    torch.testing.assert_close(_to_full(a_off), tiled, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b_off, b_exp)
    # the log-gate follows the GDN parametrisation g = -exp(A_log) softplus(a + dt_bias)
    gates = exp_rule.gates
    logits = torch.einsum("bhkd,ghd->bgk", s, gates.a_proj.weight.view(2, 2, 4))
    g = -torch.exp(gates.A_log)[:, None] * F.softplus(logits + gates.dt_bias[:, None])
    torch.testing.assert_close(log_a, g, rtol=1e-10, atol=1e-12)


def _released_gdr_write(full_s, key, value, a_weight, b_weight, a_log, dt_bias, heads):
    """Transcription of the released GDKVM step on the full ``[B, Ck, Cv]`` state (torch semantics)."""
    cv = full_s.shape[-1]
    beta = torch.sigmoid(full_s @ b_weight.T)  # b_proj without bias: [B, Ck, H]
    beta = beta.repeat_interleave(cv // heads, dim=2)  # [B, Ck, Cv]
    alpha = -a_log.exp() * F.softplus(full_s @ a_weight.T + dt_bias)  # [B, Ck, H]
    alpha = alpha.repeat(1, 1, cv // heads)  # tiled across heads: [B, Ck, Cv]
    v_old = torch.einsum("bnk,bkv->bnv", key, full_s)
    eraser = beta * torch.einsum("bnk,bnv->bkv", key, v_old)
    new = beta * torch.einsum("bnk,bnv->bkv", key, value)
    return alpha * (full_s - eraser) + new


def test_official_form_matches_the_release():
    """decay_form="official": alpha tiled with repeat, beta interleaved, bias-free b_proj, A ~ U(0, 16)."""
    b, ck, h, dv, n = 2, 5, 3, 2, 4  # Dv not a multiple of H, so the tiling mixes heads inside a head
    rule = _rule("gdr", ck=ck, cv=h * dv, heads=h, decay_form="official", seed=26)
    gates = rule.gates
    assert gates.b_proj.bias is None
    g = torch.Generator().manual_seed(27)
    s_prev = torch.randn(b, h, ck, dv, generator=g, dtype=F64) * 0.3
    alpha, beta = rule.gate_maps(s_prev)
    assert alpha.shape == (b, h, ck, dv) and beta.shape == (b, h, ck, 1)
    full = _to_full(s_prev)
    ref_alpha = (-gates.A_log.exp() * F.softplus(full @ gates.a_proj.weight.T + gates.dt_bias)).repeat(1, 1, dv)
    torch.testing.assert_close(_to_full(alpha), ref_alpha, rtol=1e-12, atol=1e-12)
    for hi in range(h):  # the explicit index map alpha[b, h, k, d] = g[b, (h * Dv + d) % H, k]
        for d in range(dv):
            head = (hi * dv + d) % h
            torch.testing.assert_close(alpha[:, hi, :, d], ref_alpha[:, :, head], rtol=0, atol=0)
    key = torch.randn(b, n, ck, generator=g, dtype=F64).softmax(-1)
    value = torch.randn(b, n, h * dv, generator=g, dtype=F64)
    query = torch.randn(b, n, ck, generator=g, dtype=F64).softmax(-1)
    out, new_state = rule.write_read({"S": s_prev}, key, value, query)
    expected = _released_gdr_write(
        full, key, value, gates.a_proj.weight, gates.b_proj.weight, gates.A_log, gates.dt_bias, h
    )
    torch.testing.assert_close(_to_full(new_state["S"]), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, query @ expected, rtol=1e-12, atol=1e-12)
    # the release's init of A: U(0, 16), so some heads start below the exp form's floor of 1
    torch.manual_seed(0)
    a = build_memory("gdr", 4, 64, heads=64, decay_form="official").gates.A_log.exp()
    assert bool(((a > 0) & (a <= 16)).all()) and bool((a < 1).any())


def test_decay_init_ranges():
    torch.manual_seed(0)
    gates = build_memory("gdr", 4, 64, heads=64).gates
    a = gates.A_log.exp()
    dt = F.softplus(gates.dt_bias)
    assert bool(((a >= 1) & (a <= 16)).all())
    assert bool(((dt >= 1e-3 * 0.999) & (dt <= 0.1 * 1.001)).all())


def test_gate_stats_are_detached_summaries():
    rule = build_memory("gdr", 6, 8, heads=2)
    keys, values, _ = _frames(16, 2, 2, 5, 6, 8)
    state = rule.init_state(2, CPU)
    state = rule.write(state, keys[0].float(), values[0].float())
    stats = rule.last_gate_stats
    assert set(stats) == {"alpha", "beta", "alpha_mean", "beta_mean"}
    assert stats["alpha"].shape == (2, 2, 6) and not stats["alpha"].requires_grad
    assert float(stats["beta_mean"]) == pytest.approx(float(stats["beta"].mean()))
    assert build_memory("delta", 6, 8, heads=2).last_gate_stats == {}


@pytest.mark.parametrize("decay_form", ["exp", "official"])
def test_gradcheck_through_gate_projections(decay_form):
    """d(readout)/d(projection parameters) through two frames: gates of frame 2 come from S_1."""
    g = torch.Generator().manual_seed(17)
    b, h, ck, dv, n = 1, 2, 3, 2, 4
    keys = torch.randn(2, b, n, ck, generator=g, dtype=F64).softmax(-1)
    values = torch.randn(2, b, n, h * dv, generator=g, dtype=F64)
    query = torch.randn(b, n, ck, generator=g, dtype=F64).softmax(-1)
    s0 = torch.randn(b, h, ck, dv, generator=g, dtype=F64)
    params = (
        torch.randn(h, h * dv, generator=g, dtype=F64) * 0.5,  # a_weight
        torch.randn(h, h * dv, generator=g, dtype=F64) * 0.5,  # b_weight
        torch.randn(h, generator=g, dtype=F64) * 0.1,  # b_bias
        torch.rand(h, generator=g, dtype=F64).add(1).log(),  # A_log
        torch.randn(h, generator=g, dtype=F64) * 0.5,  # dt_bias
    )
    params = tuple(p.requires_grad_(True) for p in params)

    def two_frames(a_w, b_w, b_b, a_log, dt_bias):
        s = s0
        for t in range(2):
            alpha, beta = state_gates(s, a_w, b_w, b_b, a_log, dt_bias, decay_form)
            out, s = gdr_step_reference(s, keys[t], values[t], query, alpha, beta)
        return out, s

    assert torch.autograd.gradcheck(two_frames, params)


@pytest.mark.parametrize("name", ["gdr", "gdr-wo-alpha", "gdr-wo-beta", "gka"])
def test_gradients_reach_every_gate_parameter(name):
    rule = _rule(name, seed=6)
    keys, values, queries = _frames(18, 2, 3, 5, 6, 8)
    state = rule.init_state(2, CPU, F64)
    loss = 0.0
    probe = torch.randn(3, 2, 5, 8, generator=torch.Generator().manual_seed(31), dtype=F64)
    for t in range(3):  # a random linear probe: gka's RMS-normalised readout has a constant sum of squares
        loss = loss + (rule.read(state, queries[t]) * probe[t]).sum()
        state = rule.write(state, keys[t], values[t])
    loss.backward()
    for pname, p in rule.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


# ----------------------------------------------------------------------------------------------------
# state size
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MEMORY_RULES)
def test_state_size_vs_number_of_frames(name):
    rule = _rule(name)
    keys, values, _ = _frames(19, 2, 20, 3, 6, 8)
    sizes = {}
    state = rule.init_state(2, CPU, F64)
    for t in range(20):
        state = rule.write(state, keys[t], values[t])
        sizes[t + 1] = rule.state_bytes(state)
    if name == "softmax":
        assert sizes[20] > sizes[2]
        assert sizes[20] == 2 * 20 * 3 * (6 + 8) * 8
    else:
        assert sizes[20] == sizes[2] > 0


# ----------------------------------------------------------------------------------------------------
# softmax and gka vs direct computations
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("similarity", ["dot", "l2"])
def test_softmax_matches_naive_attention(similarity, normalize):
    rule = _rule("softmax", similarity=similarity, normalize=normalize)
    g = torch.Generator().manual_seed(20)
    keys = torch.randn(3, 2, 4, 6, generator=g, dtype=F64)  # raw (pre-softmax) keys, as the model gives
    values = torch.randn(3, 2, 4, 8, generator=g, dtype=F64)
    queries = torch.randn(3, 2, 4, 6, generator=g, dtype=F64)
    outs, _ = _run_rule(rule, keys, values, queries)
    tau = rule.temperature  # the parameter is initialised in fp32
    assert tau == pytest.approx(0.1 if normalize else 6**0.5)  # the default initial temperatures
    prep = (lambda x: x / x.norm(dim=-1, keepdim=True)) if normalize else (lambda x: x)
    for t in range(1, 3):
        for b in range(2):
            past_k = prep(keys[:t, b].reshape(-1, 6))
            past_v = values[:t, b].reshape(-1, 8)
            for i in range(4):
                q = prep(queries[t, b, i])
                if similarity == "dot":
                    logits = past_k @ q / tau
                else:
                    logits = -((past_k - q) ** 2).sum(-1) / tau
                expected = torch.softmax(logits, 0) @ past_v
                torch.testing.assert_close(outs[t, b, i], expected, rtol=1e-10, atol=1e-12)


def test_softmax_attends_to_the_matching_entry_at_init():
    """A query equal to one stored key puts far more weight on it than on the other entries."""
    ck, n = 64, 256  # paper sizes: Ck = 64 channels, 256 pixels per frame
    rule = build_memory("softmax", ck, 8, heads=2)
    g = torch.Generator().manual_seed(30)
    keys = torch.randn(1, n, ck, generator=g)  # raw key projections
    state = rule.write(rule.init_state(1, CPU), keys, torch.randn(1, n, 8, generator=g))
    match = 17
    weights = rule.attention(state, keys[:, match : match + 1])[0, 0]  # [N]
    assert weights.sum().item() == pytest.approx(1.0)
    others = torch.cat([weights[:match], weights[match + 1 :]])
    assert weights[match] / others.max() > 5
    assert weights[match] > 0.5  # not nearly uniform (uniform would be 1 / 256)
    # the readout is this attention applied to the values
    torch.testing.assert_close(
        rule.read(state, keys[:, match : match + 1]), weights[None, None] @ state["V"], rtol=1e-5, atol=1e-6
    )
    # the old setting (softmax-over-channels keys, q.k / sqrt(Ck), fixed) cannot attend: near uniform
    old = build_memory("softmax", ck, 8, heads=2, normalize=False, learn_temperature=False)
    soft = keys.softmax(-1)
    old_state = old.write(old.init_state(1, CPU), soft, torch.randn(1, n, 8, generator=g))
    old_w = old.attention(old_state, soft[:, match : match + 1])[0, 0]
    assert old_w.max() / old_w.min() < 1.5


def test_softmax_temperature_is_learned():
    rule = _rule("softmax")
    assert dict(rule.named_parameters()).keys() == {"log_scale"}
    keys, values, queries = (torch.randn(2, 2, 5, s, dtype=F64) for s in (6, 8, 6))
    state = rule.write(rule.init_state(2, CPU, F64), keys[0], values[0])
    state = rule.write(state, keys[1], values[1])
    rule.read(state, queries[0]).square().sum().backward()
    grad = rule.log_scale.grad
    assert grad is not None and torch.isfinite(grad) and grad.abs() > 0
    # gradient through the scaled attention equals a finite difference of the readout
    assert torch.autograd.gradcheck(
        lambda ls: torch.softmax(
            ls.exp() * F.normalize(queries[0], dim=-1) @ state["K"].transpose(1, 2), -1
        ) @ state["V"],
        (rule.log_scale.detach().clone().requires_grad_(True),),
    )
    fixed = _rule("softmax", learn_temperature=False)
    assert not list(fixed.parameters()) and "log_scale" in dict(fixed.named_buffers())
    with pytest.raises(ConfigError, match="temperature"):
        build_memory("softmax", 4, 8, temperature=0.0)


def test_gka_matches_direct_ridge_solve():
    ck, cv, h, n, frames, b = 6, 8, 2, 5, 4, 2
    rule = _rule("gka", ck=ck, cv=cv, heads=h, seed=9)
    keys, values, queries = _frames(21, b, frames, n, ck, cv)
    state = rule.init_state(b, CPU, F64)
    gammas, weights = [], []
    for t in range(frames):
        out = rule.read(state, queries[t])
        if t == 0:
            assert torch.equal(out, torch.zeros_like(out))
        else:
            # direct float64 ridge solve over frames 0..t-1 with explicit decay products and weights
            q = F.normalize(queries[t], dim=-1)
            alpha = rule.gates.readout_mix(q)  # [B, H, N]
            dv = cv // h
            expected = torch.zeros(b, n, cv, dtype=F64)
            for bi in range(b):
                for hi in range(h):
                    hess = torch.zeros(ck, ck, dtype=F64)
                    mom = torch.zeros(dv, ck, dtype=F64)  # V^T W K, as in gka.md
                    for tau in range(t):
                        eta = torch.prod(
                            torch.stack(
                                [gammas[j][bi, hi] for j in range(tau + 1, t)] + [torch.ones((), dtype=F64)]
                            )
                        )
                        k = F.normalize(keys[tau, bi], dim=-1)
                        v = values[tau, bi, :, hi * dv : (hi + 1) * dv]
                        w = torch.diag(weights[tau][bi, hi])
                        hess = hess + eta * k.T @ w @ k
                        mom = mom + eta * v.T @ w @ k
                    mass = torch.linalg.matrix_norm(hess)
                    x = torch.linalg.solve(hess + 0.02 * mass * torch.eye(ck, dtype=F64), q[bi].T).T
                    # the ridge prediction mixed with the linear readout divided by ||H||_F
                    a = alpha[bi, hi][:, None]
                    q_mix = a * x + (1 - a) * q[bi] / mass
                    y = ck**-0.5 * q_mix @ mom.T  # [N, Dv]: the raw readout
                    # gka.md 5.7: per-head RMSNorm of the readout (weight at its init, 1)
                    y = y / torch.sqrt(y.square().mean(dim=-1, keepdim=True) + 1e-6)
                    expected[bi, :, hi * dv : (hi + 1) * dv] = y
            err = (out - expected).norm() / expected.norm()
            assert err < 1e-6, f"frame {t}: relative error {err:.2e}"
        k = F.normalize(keys[t], dim=-1)
        gamma, _, w = rule.write_gates(k, values[t])
        gammas.append(gamma.detach())
        weights.append(w.detach())
        state = rule.write(state, keys[t], values[t])
    assert all(bool(((g > 0) & (g <= 1)).all()) for g in gammas)


def test_gka_readout_is_rms_normalised_per_head():
    """gka.md 5.7: each head's readout has RMS 1 (times the learned weight), whatever the memory's size."""
    ck, cv, h, n, b = 6, 8, 2, 40, 2
    rule = _rule("gka", ck=ck, cv=cv, heads=h, seed=13)
    raw = _rule("gka", ck=ck, cv=cv, heads=h, seed=13, output_norm=False)
    assert set(dict(rule.named_parameters())) - set(dict(raw.named_parameters())) == {"norm_weight"}
    keys, values, queries = _frames(32, b, 3, n, ck, cv)
    state = rule.init_state(b, CPU, F64)
    for t in range(3):
        state = rule.write(state, keys[t], values[t])
    out = rule.read(state, queries[0])
    y = raw.read(state, queries[0])  # same gates (same seed): the raw mixed readout
    rms = out.view(b, n, h, cv // h).square().mean(-1).sqrt()
    ms = y.view(b, n, h, cv // h).square().mean(-1)
    torch.testing.assert_close(rms, torch.sqrt(ms / (ms + 1e-6)), rtol=1e-9, atol=0)  # 1 up to the norm's eps
    assert float(rms.detach().median()) > 0.999
    y_heads = y.view(b, n, h, cv // h)
    expected = y_heads / torch.sqrt(y_heads.square().mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(out, expected.reshape(b, n, cv), rtol=1e-12, atol=1e-12)
    # writing every pixel twice doubles H and M: both branches (the ridge one and the linear one divided
    # by ||H||_F) and so the raw readout are unchanged, while the unnormalised Q M doubles
    state2 = rule.init_state(b, CPU, F64)
    for t in range(3):
        state2 = rule.write(state2, torch.cat([keys[t]] * 2, 1), torch.cat([values[t]] * 2, 1))
    torch.testing.assert_close(raw.read(state2, queries[0]), y, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(state2["M"], 2 * state["M"], rtol=1e-9, atol=1e-12)
    assert 0.99 < rule.read(state2, queries[0]).norm() / out.norm() < 1.01
    # scaling the moments (values at fixed gates) by c scales the raw readout by c, not the normalised one
    state3 = {"H": state["H"], "M": 50.0 * state["M"]}
    torch.testing.assert_close(raw.read(state3, queries[0]), 50.0 * y, rtol=1e-9, atol=1e-12)
    y50 = 50.0 * y_heads
    normalised50 = y50 / torch.sqrt(y50.square().mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(rule.read(state3, queries[0]), normalised50.reshape(b, n, cv), rtol=1e-12, atol=1e-12)
    assert (rule.read(state3, queries[0]) - out).norm() < 1e-2 * out.norm()
    # the learned weight scales every head's channels alike
    with torch.no_grad():
        rule.norm_weight.mul_(3.0)
    torch.testing.assert_close(rule.read(state, queries[0]), 3.0 * out, rtol=1e-12, atol=1e-12)


def test_gka_write_read_equals_write_then_read():
    rule = _rule("gka", seed=10)
    keys, values, queries = _frames(22, 2, 3, 4, 6, 8)
    state = rule.write(rule.init_state(2, CPU, F64), keys[0], values[0])
    fused, fused_state = rule.write_read(state, keys[1], values[1], queries[2])
    plain_state = rule.write(state, keys[1], values[1])
    torch.testing.assert_close(fused, rule.read(plain_state, queries[2]), rtol=1e-12, atol=1e-12)
    for k in ("H", "M"):
        torch.testing.assert_close(fused_state[k], plain_state[k], rtol=1e-12, atol=1e-12)


def test_gka_readout_gradcheck_on_inputs():
    """Exact ridge gradient through Cholesky, including the lambda = a ||H||_F path."""
    rule = _rule("gka", ck=3, cv=4, heads=2, seed=12)
    keys, values, queries = _frames(23, 1, 2, 4, 3, 4)
    k0, v0 = keys[0].clone().requires_grad_(True), values[0].clone().requires_grad_(True)
    k1, q = keys[1].clone().requires_grad_(True), queries[1].clone().requires_grad_(True)

    def fn(k0, v0, k1, q):
        state = rule.write(rule.init_state(1, CPU, F64), k0, v0)
        state = rule.write(state, k1, values[1])
        return rule.read(state, q)

    assert torch.autograd.gradcheck(fn, (k0, v0, k1, q))


# ----------------------------------------------------------------------------------------------------
# N = 1: gdr is one step of flash-linear-attention's naive gated delta rule
# ----------------------------------------------------------------------------------------------------


def _fla_naive_recurrent():
    """Load fla's naive reference from its file, without importing the fla package (Triton probing)."""
    spec = importlib.util.find_spec("fla")
    assert spec is not None and spec.submodule_search_locations, "fla-core is not installed in the venv"
    path = Path(next(iter(spec.submodule_search_locations))) / "ops" / "gated_delta_rule" / "naive.py"
    assert path.is_file(), f"{path} missing"
    mod_spec = importlib.util.spec_from_file_location("_fla_gdr_naive", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.naive_recurrent_gated_delta_rule


def test_gdr_single_pixel_matches_fla_naive():
    naive = _fla_naive_recurrent()
    b, frames, h, ck, dv = 2, 7, 3, 5, 4
    g = torch.Generator().manual_seed(24)
    k = F.normalize(torch.randn(b, frames, ck, generator=g, dtype=F64), dim=-1)  # one pixel per frame
    q = F.normalize(torch.randn(b, frames, ck, generator=g, dtype=F64), dim=-1)
    v = torch.randn(b, frames, h, dv, generator=g, dtype=F64)
    log_g = F.logsigmoid(torch.randn(b, frames, h, generator=g, dtype=F64))  # scalar log-decay per head
    beta = torch.rand(b, frames, h, generator=g, dtype=F64).sigmoid()

    rule = _rule("gdr", ck=ck, cv=h * dv, heads=h)
    frame = {"t": 0}

    def constant_per_head(s):  # alpha = exp(g), beta: scalars per (frame, head) broadcast to Ck x Dv
        t = frame["t"]
        return log_g[:, t].exp()[:, :, None, None].expand_as(s), beta[:, t][:, :, None, None].expand_as(s)

    rule.gate_override = constant_per_head
    state = rule.init_state(b, CPU, F64)
    outs = []
    for t in range(frames):  # fla writes token t, then reads it: our fused write_read
        frame["t"] = t
        out, state = rule.write_read(state, k[:, t : t + 1], v[:, t].reshape(b, 1, h * dv), q[:, t : t + 1])
        outs.append(out[:, 0].reshape(b, h, dv))
    ours = torch.stack(outs, dim=1)  # [B, T, H, Dv]

    expand = (b, frames, h, ck)
    o_ref, s_ref = naive(
        q=q[:, :, None].expand(expand).float(),
        k=k[:, :, None].expand(expand).float(),
        v=v.float(),
        beta=beta.float(),
        g=log_g.float(),
        scale=1.0,
        output_final_state=True,
    )
    torch.testing.assert_close(ours.float(), o_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state["S"].float(), s_ref, rtol=1e-5, atol=1e-5)
    assert o_ref.abs().max() > 0.1


def test_gka_ridge_branch_dominates_the_readout_at_init():
    """gka.md 5.7: the ridge prediction is scale-free but the plain linear readout Q M grows with the
    pixels written, so mixed as is it outweighs the ridge prediction. Measured at init at the paper
    sizes (Ck 64, Cv 256, 8 heads, 256 pixels a frame, 3 frames): the mixed-in linear branch
    (1 - alpha) * lin must stay below the mixed-in ridge branch alpha * ridge for every head."""
    from gdkvm import kernels

    ck, cv, h, n, b = 64, 256, 8, 256, 1
    rule = _rule("gka", ck=ck, cv=cv, heads=h, seed=14)
    keys, values, queries = _frames(33, b, 4, n, ck, cv)
    state = rule.init_state(b, CPU, F64)
    for t in range(3):
        state = rule.write(state, keys[t], values[t])
    q = F.normalize(queries[3], dim=-1)
    alpha = rule.gates.readout_mix(q).detach()  # [B, H, N], about sigmoid(2) = 0.88 at init
    a = alpha.transpose(1, 2).unsqueeze(-1)
    with torch.no_grad():
        ridge = kernels.gka_read(state["H"], state["M"], q, None, ridge=rule.ridge, scale=rule.scale)
        lin = rule.linear_branch(state["H"], state["M"], q)
        raw_lin = rule.scale * torch.einsum("bnk,bhkv->bnhv", q, state["M"])  # Q M without the 1/||H||_F
    heads = lambda x: x.reshape(b, n, h, -1)  # noqa: E731
    per_head = lambda x: x.square().sum(dim=(0, 1, 3)).sqrt()  # noqa: E731  Frobenius norm per head
    ridge_part = per_head(a * heads(ridge))
    lin_part = per_head((1 - a) * heads(lin))
    raw_part = per_head((1 - a) * raw_lin)
    ratio = lin_part / ridge_part
    assert bool((ratio < 0.5).all()), ratio  # the ridge prediction dominates every head
    # what the unnormalised Q M would have done: outweigh the ridge prediction in every head (1.6x-4.3x here)
    assert bool((raw_part / ridge_part > 1).all())
    # and the readout the rule returns is that mix, normalised per head
    with torch.no_grad():
        mixed = heads(a * heads(ridge) + (1 - a) * heads(lin))
        want = mixed / torch.sqrt(mixed.square().mean(-1, keepdim=True) + 1e-6)
        torch.testing.assert_close(rule.read(state, queries[3]), want.reshape(b, n, cv), rtol=1e-9, atol=1e-9)
