"""The fused Triton gdr step against the torch reference (Triton interpreter on CPU, compiled on CUDA).

Every case uses fresh random inputs, NaN-poisoned output allocations and relative-RMS error checks.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import pytest
import torch
import triton  # noqa: F401  (a dev dependency: a missing or broken Triton fails here, never skips)

import gdkvm.kernels as kernels
from gdkvm.kernels import gdr_triton
from gdkvm.kernels.reference import KernelInputError, gdr_step_reference

F32, BF16, F16 = torch.float32, torch.bfloat16, torch.float16


def assert_close(name: str, ref: torch.Tensor, got: torch.Tensor, ratio: float) -> None:
    """Pass when max |ref - got| <= 1e-6 or RMS(ref - got) / RMS(ref) < ratio (fla's metric); no NaN."""
    assert got.shape == ref.shape, f"{name}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    assert not torch.isnan(got).any(), f"{name}: NaN in the kernel output (unwritten or bad values)"
    diff = (ref.double() - got.double()).abs()
    if diff.max().item() <= 1e-6:
        return
    err = diff.square().mean().sqrt().item() / max(ref.double().square().mean().sqrt().item(), 1e-30)
    assert err < ratio, f"{name}: relative RMS error {err:.3e} >= {ratio:.1e}"


@dataclass(frozen=True)
class Case:
    batch: int
    heads: int
    pixels: int
    query_pixels: int | None  # None: no readout
    key_dim: int
    head_dim: int
    gates: str  # "none", "scalar", "head" ([B, H, Ck, 1], the model's), "full" ([B, H, Ck, Dv]), "alpha-only"
    erase: bool = True
    dtype: torch.dtype = F32  # key / value / query
    state_dtype: torch.dtype = F32
    blocks: tuple[int, int] | None = None  # (BN, BV) override to force several masked blocks

    def __str__(self) -> str:
        q = "noQ" if self.query_pixels is None else f"Nq{self.query_pixels}"
        parts = [
            f"B{self.batch}H{self.heads}",
            f"N{self.pixels}",
            q,
            f"Ck{self.key_dim}",
            f"Dv{self.head_dim}",
        ]
        parts += [f"gates-{self.gates}", "erase" if self.erase else "no-erase"]
        parts += [f"{str(self.dtype)[6:]}-state-{str(self.state_dtype)[6:]}"]
        if self.blocks:
            parts.append(f"BN{self.blocks[0]}BV{self.blocks[1]}")
        return "-".join(parts)


def make_inputs(case: Case, device: torch.device, seed: int):
    """Softmax keys and queries (as in the model), randn values and state, gates in (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    b, h, ck, dv = case.batch, case.heads, case.key_dim, case.head_dim

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    state = randn(b, h, ck, dv).to(case.state_dtype)
    key = randn(b, case.pixels, ck).mul(2).softmax(-1).to(case.dtype)
    value = randn(b, case.pixels, h * dv).to(case.dtype)
    query = None
    if case.query_pixels is not None:
        query = randn(b, case.query_pixels, ck).mul(2).softmax(-1).to(case.dtype)
    gate_shape = {"scalar": (), "head": (b, h, ck, 1), "full": (b, h, ck, dv), "alpha-only": (b, h, ck, 1)}
    alpha = beta = None
    if case.gates in gate_shape:
        alpha = torch.rand(gate_shape[case.gates], generator=g)
        if case.gates != "alpha-only":
            beta = torch.rand(gate_shape[case.gates], generator=g)
    tensors = (state, key, value, query, alpha, beta)
    return tuple(None if t is None else t.to(device) for t in tensors)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch):
    """Return a function that makes the kernel use (BN, BV) blocks for the rest of the test."""

    def use(blocks: tuple[int, int] | None) -> None:
        if blocks is None:
            return
        original = gdr_triton.block_sizes

        def forced(key_dim: int, head_dim: int, *, interpret: bool = False) -> tuple[int, int, int]:
            return blocks[0], original(key_dim, head_dim, interpret=interpret)[1], blocks[1]

        monkeypatch.setattr(gdr_triton, "block_sizes", forced)

    return use


FORWARD_CASES = [
    # paper layout: 8 heads of 32 value channels, Ck 64, a 12 x 10 frame, the model's [B, H, Ck, 1] gates
    Case(1, 8, 120, 120, 64, 32, "head"),
    # N = 8*8+5, Nq != N, Ck and Dv not powers of two, 16-wide blocks: 5 pixel blocks, 2 value blocks
    Case(2, 2, 69, 37, 48, 24, "full", blocks=(16, 16)),
    Case(2, 3, 77, 50, 16, 16, "scalar", blocks=(32, 16)),
    Case(3, 1, 10, 7, 8, 8, "none"),  # Ck, Dv < 16: padded to the 16-wide dot minimum
    Case(2, 2, 45, 45, 64, 32, "alpha-only", erase=False),  # gdr-wo-beta form
    Case(2, 2, 45, None, 32, 32, "head"),  # write only
    Case(2, 2, 130, 130, 64, 32, "head", dtype=BF16),  # bf16 activations, fp32 state (AMP)
    Case(1, 2, 69, 69, 64, 32, "head", dtype=F16, state_dtype=F16),
    Case(1, 2, 69, 69, 64, 32, "head", dtype=BF16, state_dtype=BF16),
]


@pytest.mark.parametrize("case", FORWARD_CASES, ids=str)
def test_forward_matches_reference(case: Case, triton_device, nan_poison, small_blocks):
    small_blocks(case.blocks)
    state, key, value, query, alpha, beta = make_inputs(case, triton_device, seed=1)
    readout, new_state = gdr_triton.gdr_step(state, key, value, query, alpha, beta, erase=case.erase)

    # the reference computes in the state's dtype; for half states compare both against float64 math
    # (the kernel computes in fp32 and rounds once, the half reference rounds after every op)
    exact = case.state_dtype == F32
    ref_dtype = F32 if exact else torch.float64
    as_ref = [None if t is None else t.to(ref_dtype) for t in (state, key, value, query, alpha, beta)]
    ref_readout, ref_state = gdr_step_reference(*as_ref, erase=case.erase)
    ratio = {F32: 1e-5, F16: 1e-3, BF16: 1e-2}[case.state_dtype]  # fp16 / bf16: output rounding

    assert new_state.dtype == state.dtype
    assert_close("new_state", ref_state, new_state, ratio)
    if query is None:
        assert readout is None
    else:
        assert readout.dtype == state.dtype
        assert_close("readout", ref_readout, readout, ratio)


def test_non_contiguous_inputs(triton_device, nan_poison):
    """Strided views (transposed storage, sliced channels, expanded gates) need no copies."""
    g = torch.Generator().manual_seed(2)
    b, h, ck, dv, n = 2, 2, 32, 16, 40
    state = torch.randn(b, h, dv, ck, generator=g).transpose(2, 3)
    key = torch.randn(b, ck, n, generator=g).softmax(1).transpose(1, 2)
    value = torch.randn(b, n, 3 * h * dv, generator=g)[..., 1::3]
    query = torch.randn(n, b, ck, generator=g).softmax(-1).transpose(0, 1)
    alpha = torch.rand(1, h, ck, 1, generator=g)
    beta = torch.rand(b, 1, 1, dv, generator=g)
    inputs = [t.to(triton_device) for t in (state, key, value, query, alpha, beta)]
    assert not any(t.is_contiguous() for t in inputs[:4])
    readout, new_state = gdr_triton.gdr_step(*inputs)
    ref_readout, ref_state = gdr_step_reference(*inputs)
    assert_close("new_state", ref_state, new_state, 1e-5)
    assert_close("readout", ref_readout, readout, 1e-5)


BACKWARD_CASES = [
    Case(2, 2, 69, 40, 48, 24, "head"),
    Case(1, 2, 50, 50, 32, 16, "full", blocks=(16, 16)),
    Case(2, 1, 30, None, 16, 16, "scalar"),
    Case(2, 2, 33, 33, 16, 16, "alpha-only", erase=False),
]


@pytest.mark.parametrize("case", BACKWARD_CASES, ids=str)
def test_backward_matches_reference(case: Case, triton_device, nan_poison, small_blocks):
    small_blocks(case.blocks)
    inputs = make_inputs(case, triton_device, seed=3)
    names = ("state", "key", "value", "query", "alpha", "beta")
    present = [(n, t) for n, t in zip(names, inputs, strict=True) if t is not None]
    g = torch.Generator().manual_seed(4)

    def run(step):
        leaves = [None if t is None else t.clone().requires_grad_(True) for t in inputs]
        readout, new_state = step(*leaves, erase=case.erase)
        loss = (new_state * torch.randn(new_state.shape, generator=g).to(new_state)).sum()
        if readout is not None:
            loss = loss + (readout * torch.randn(readout.shape, generator=g).to(readout)).sum()
        loss.backward()
        return {n: leaf.grad for n, leaf in zip(names, leaves, strict=True) if leaf is not None}

    state = g.get_state()
    grads = run(gdr_triton.gdr_step)
    g.set_state(state)  # the same upstream gradients for both
    ref_grads = run(gdr_step_reference)
    for name, _ in present:
        assert grads[name] is not None, f"no gradient for {name}"
        assert_close(f"d{name}", ref_grads[name], grads[name], 1e-5)


def test_backward_through_several_frames(triton_device, nan_poison):
    """Training use: the state flows through three fused steps; gradients reach every frame's inputs."""
    g = torch.Generator().manual_seed(5)
    b, h, ck, dv, n, frames = 2, 2, 32, 16, 24, 3
    s0 = torch.randn(b, h, ck, dv, generator=g).to(triton_device)
    keys = torch.randn(frames, b, n, ck, generator=g).softmax(-1).to(triton_device)
    values = torch.randn(frames, b, n, h * dv, generator=g).to(triton_device)
    gates = torch.rand(2, frames, b, h, ck, 1, generator=g).to(triton_device)

    def run(step):
        leaves = [t.clone().requires_grad_(True) for t in (s0, keys, values, gates)]
        state, total = leaves[0], 0.0
        for t in range(frames):
            query = leaves[1][(t + 1) % frames]
            readout, state = step(state, leaves[1][t], leaves[2][t], query, leaves[3][0, t], leaves[3][1, t])
            total = total + readout.square().mean()
        total.backward()
        return total.detach(), [leaf.grad for leaf in leaves]

    loss, grads = run(gdr_triton.gdr_step)
    ref_loss, ref_grads = run(gdr_step_reference)
    assert_close("loss", ref_loss, loss, 1e-5)
    for name, ref, got in zip(("state", "keys", "values", "gates"), ref_grads, grads, strict=True):
        assert_close(f"d{name}", ref, got, 1e-5)


def test_nan_poison_fixture_is_active(nan_poison):
    assert torch.isnan(torch.empty(3)).all()
    assert torch.isnan(torch.empty_like(torch.zeros(2))).all()
    assert torch.isnan(torch.zeros(1).new_empty(4)).all()


def test_signature_and_dispatch_name(monkeypatch: pytest.MonkeyPatch):
    assert inspect.signature(gdr_triton.gdr_step_triton) == inspect.signature(gdr_step_reference)
    assert gdr_triton.gdr_step is gdr_triton.gdr_step_triton
    assert gdr_triton.available() == torch.cuda.is_available()
    monkeypatch.setenv(kernels.TRITON_ENV, "1")
    monkeypatch.setattr(kernels, "_triton_module", None)
    monkeypatch.setattr(kernels, "_triton_tried", False)
    assert kernels.gdr_backend("cuda") == "triton"  # the dispatcher finds and imports this module


def test_bad_inputs_raise_kernel_input_error():
    state = torch.zeros(1, 2, 8, 4)
    key, value = torch.zeros(1, 5, 8), torch.zeros(1, 5, 8)
    with pytest.raises(KernelInputError, match="alpha has shape"):
        gdr_triton.gdr_step(state, key, value, None, torch.ones(1, 2, 8, 3), None)
    with pytest.raises(KernelInputError, match="key has shape"):
        gdr_triton.gdr_step(state, torch.zeros(1, 5, 7), value, None, None, None)
    with pytest.raises(KernelInputError, match="pixels"):
        gdr_triton.gdr_step(state, key, torch.zeros(1, 6, 8), None, None, None)


def test_float64_state_runs_the_reference():
    """Float64 has no kernel; the call still has the reference's exact result (no Triton launch)."""
    g = torch.Generator().manual_seed(6)
    args = (
        torch.randn(1, 2, 8, 4, generator=g, dtype=torch.float64),
        torch.rand(1, 5, 8, generator=g, dtype=torch.float64),
        torch.randn(1, 5, 8, generator=g, dtype=torch.float64),
        torch.rand(1, 3, 8, generator=g, dtype=torch.float64),
        None,
        torch.rand(1, 2, 8, 1, generator=g, dtype=torch.float64),
    )
    readout, new_state = gdr_triton.gdr_step(*args)
    ref_readout, ref_state = gdr_step_reference(*args)
    assert torch.equal(readout, ref_readout) and torch.equal(new_state, ref_state)


def test_key_dim_above_limit_runs_the_reference():
    g = torch.Generator().manual_seed(7)
    ck = gdr_triton.MAX_KEY_DIM + 16
    args = (
        torch.randn(1, 1, ck, 4, generator=g),
        torch.rand(1, 5, ck, generator=g),
        torch.randn(1, 5, 4, generator=g),
        torch.rand(1, 3, ck, generator=g),
        torch.rand(1, 1, ck, 1, generator=g),
        None,
    )
    readout, new_state = gdr_triton.gdr_step(*args)
    ref_readout, ref_state = gdr_step_reference(*args)
    assert torch.equal(readout, ref_readout) and torch.equal(new_state, ref_state)


def test_cpu_tensors_without_interpreter_raise(monkeypatch: pytest.MonkeyPatch):
    if torch.cuda.is_available():
        pytest.skip("CPU-only check: with CUDA present this call is valid on CUDA tensors")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    state = torch.zeros(1, 1, 16, 16)
    with pytest.raises(KernelInputError, match="needs CUDA"):
        gdr_triton.gdr_step(state, torch.zeros(1, 4, 16), torch.zeros(1, 4, 16), None, None, None)


def test_inference_path_skips_autograd_and_matches_the_training_path(triton_device, nan_poison):
    """Without inputs that need gradients the wrapper launches directly (no autograd node); the forward
    values are the same as through the autograd Function."""
    case = Case(2, 2, 45, 45, 32, 16, "head")
    inputs = make_inputs(case, triton_device, seed=6)
    readout, new_state = gdr_triton.gdr_step(*inputs)
    assert new_state.grad_fn is None and readout.grad_fn is None
    leaves = [None if t is None else t.clone().requires_grad_(True) for t in inputs]
    readout_g, new_state_g = gdr_triton.gdr_step(*leaves)
    assert new_state_g.grad_fn is not None
    assert torch.equal(new_state_g.detach(), new_state) and torch.equal(readout_g.detach(), readout)


def test_launch_moves_to_the_tensors_gpu_only_when_needed(monkeypatch: pytest.MonkeyPatch):
    """Triton launches on the current CUDA device; tensors on another GPU get a device guard (checked
    without a GPU: the guard object is built, not entered)."""
    import contextlib

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    guard = gdr_triton._launch_device(torch.device("cuda", 1), interpret=False)
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    for device, interpret in ((torch.device("cuda", 0), False), (torch.device("cuda"), False),
                              (torch.device("cuda", 1), True)):
        assert isinstance(gdr_triton._launch_device(device, interpret), contextlib.nullcontext)
