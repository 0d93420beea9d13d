"""Memory rules of GDKVM behind one interface: ``init_state``, ``read``, ``write`` (+ fused ``write_read``).

Shapes (B = batch x objects, N = H*W pixels of one frame, Ck key channels, Cv value channels, H heads,
Dv = Cv / H):

* ``key`` / ``query``: ``[B, N, Ck]`` (softmax over channels per pixel upstream; only the linear
  normalised readout relies on non-negative keys, and gka L2-normalises them itself; softmax attention
  takes the pre-softmax keys, ``raw_keys = True``, and L2-normalises them);
* ``value`` and every readout: ``[B, N, Cv]``, head h owning channels ``h*Dv .. (h+1)*Dv - 1``;
* states are dicts of tensors. The GDR family keeps ``S: [B, H, Ck, Dv]`` (the transpose of the paper's
  ``Cv x Ck`` state, split into value heads); gka keeps ``H: [B, H, Ck, Ck]`` and ``M: [B, H, Ck, Dv]``;
  softmax keeps every ``K: [B, T*N, Ck]`` and ``V: [B, T*N, Cv]``.

Order of use per frame t in the model's default ``step_order="paper"`` (the paper and the released
code): encode ``v_t`` from the previous frame's mask, ``state_t = write(state_{t-1}, k_t, v_t)``, then
``read(state_t, k_t)`` with the same keys, in one fused call ``write_read(state_{t-1}, k_t, v_t, q)``,
which returns ``(read(state_t, q), state_t)``. ``step_order="read-first"`` (gdkvm 0.1) calls
``read(state_{t-1}, q_t)``, segments, then ``write(state_{t-1}, k_t, v_t)``. The math of every rule is in
``docs/memory.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdkvm import kernels
from gdkvm.errors import ConfigError, unknown_name
from gdkvm.kernels.reference import KernelInputError
from gdkvm.models.memory_gates import FrameGates, StateGates, check_decay_form

MemoryRuleName = Literal["linear", "delta", "gdr", "gdr-wo-alpha", "gdr-wo-beta", "gka", "softmax"]
MEMORY_RULES: tuple[str, ...] = get_args(MemoryRuleName)

State = dict[str, Tensor]
GateOverride = Callable[[Tensor], tuple[Tensor | None, Tensor | None]]


class MemoryInputError(KernelInputError):
    """A key, value or query given to a memory rule has the wrong shape."""


class MemoryRule(nn.Module):
    """Base class: a memory state plus read and write.

    Args:
        key_dim: Ck. value_dim: Cv (a multiple of ``heads``). heads: value heads H (gate granularity).
        decay_form: ``"exp"`` (decay in (0, 1)) or ``"official"`` (the released code's negative
            log-gate used as a multiplier); ignored by rules without a decay gate.
        **kwargs: rule-specific options (see each rule); unknown ones raise ConfigError.
    """

    name: ClassVar[str] = ""
    constant_state: ClassVar[bool] = True
    #: Whether the rule sums raw key outer products over pixels, so the model scales keys by 1/sqrt(N)
    #: (see GDKVM._scale_keys); False where the rule normalises itself (softmax, gka).
    sums_over_pixels: ClassVar[bool] = True
    #: Why one step of this rule must not be captured in a CUDA graph ("" = it may be).
    graph_capture_blocker: ClassVar[str] = ""
    #: Whether the rule takes the pre-softmax keys (the key projection itself) instead of the keys
    #: softmax-normalised over channels (see GDKVM.encode_image); True for softmax attention.
    raw_keys: ClassVar[bool] = False

    def __init__(self, key_dim: int, value_dim: int, heads: int = 8, decay_form: str = "exp", **kwargs: Any):
        super().__init__()
        if kwargs:
            raise ConfigError(f"memory rule '{self.name}': unknown option(s) {sorted(kwargs)}")
        for label, v in (("key_dim", key_dim), ("value_dim", value_dim), ("heads", heads)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"memory rule '{self.name}': {label} must be a positive integer, got {v!r}")
        if value_dim % heads:
            raise ConfigError(
                f"memory rule '{self.name}': value_dim {value_dim} is not divisible by heads {heads}"
            )
        self.key_dim = key_dim
        self.value_dim = value_dim
        self.heads = heads
        self.head_dim = value_dim // heads
        self.decay_form = check_decay_form(decay_form)
        self.last_gate_stats: dict[str, Tensor] = {}

    # -- interface -----------------------------------------------------------------------------------
    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype = torch.float32) -> State:
        """The empty memory for ``batch`` sequences (reads from it return zeros).

        Recurrent states (every rule but softmax) are kept in at least fp32: a bf16/fp16 ``dtype`` is
        promoted, so the state does not accumulate rounding error over frames under AMP. Readouts have
        the state's dtype.
        """
        raise NotImplementedError

    def read(self, state: State, query: Tensor) -> Tensor:
        """``query [B, N, Ck]`` -> readout ``[B, N, Cv]`` from ``state`` (not modified)."""
        raise NotImplementedError

    def write(self, state: State, key: Tensor, value: Tensor) -> State:
        """Write one frame (``key [B, N, Ck]``, ``value [B, N, Cv]``); returns a new state dict."""
        raise NotImplementedError

    def write_read(
        self, state: State, key: Tensor, value: Tensor, next_query: Tensor
    ) -> tuple[Tensor, State]:
        """Fused ``write`` then ``read``: ``(read(new_state, next_query), new_state)``.

        In the model's paper step order the query is the written frame's own keys (write S_t, then read it
        with K_t); any query works, e.g. the next frame's.
        """
        new_state = self.write(state, key, value)
        return self.read(new_state, next_query), new_state

    def state_bytes(self, state: State) -> int:
        """Bytes held by the state's tensors."""
        return sum(t.numel() * t.element_size() for t in state.values())

    def gate_parameters(self) -> dict[str, list[nn.Parameter]]:
        """The parameters producing each gate, ``{"alpha": [...], "beta": [...]}``, for gradient statistics.

        A rule's gates live in its child module ``gates`` (:mod:`gdkvm.models.memory_gates`): alpha comes
        from ``a_proj``, ``A_log`` and ``dt_bias``, beta from ``b_proj``. Empty for rules without gates.
        """
        gates = dict(self.named_children()).get("gates")
        if gates is None:
            return {}
        out: dict[str, list[nn.Parameter]] = {}
        for label, sources in (("alpha", ("a_proj", "A_log", "dt_bias")), ("beta", ("b_proj",))):
            params = [p for n, p in gates.named_parameters() if n.partition(".")[0] in sources]
            if params:
                out[label] = params
        return out

    def extra_repr(self) -> str:
        return f"name={self.name}, key_dim={self.key_dim}, value_dim={self.value_dim}, heads={self.heads}"

    # -- helpers -------------------------------------------------------------------------------------
    def _check(self, t: Tensor, what: str, channels: int, batch: int) -> None:
        if t.dim() != 3 or t.shape[0] != batch or t.shape[2] != channels:
            raise MemoryInputError(
                f"memory rule '{self.name}': {what} has shape {tuple(t.shape)}, expected [{batch}, N, {channels}]"
            )

    def _check_kv(self, key: Tensor, value: Tensor, batch: int) -> None:
        self._check(key, "key", self.key_dim, batch)
        self._check(value, "value", self.value_dim, batch)
        if key.shape[1] != value.shape[1]:
            raise MemoryInputError(
                f"memory rule '{self.name}': key has {key.shape[1]} pixels but value has {value.shape[1]}"
            )


def _gate_stats(alpha: Tensor | None, beta: Tensor | None) -> dict[str, Tensor]:
    stats: dict[str, Tensor] = {}
    for label, gate in (("alpha", alpha), ("beta", beta)):
        if gate is None:
            continue
        g = gate.detach()
        stats[label] = g.squeeze(-1) if g.dim() == 4 and g.shape[-1] == 1 else g
        stats[f"{label}_mean"] = g.float().mean()
    return stats


class _GatedDeltaFamily(MemoryRule):
    """Shared code of linear, delta, gdr and its ablations: ``S_t = step(S_{t-1}, K_t, V_t, alpha, beta)``.

    Attribute ``gate_override`` (default None): a callable ``S_{t-1} [B, H, Ck, Dv] -> (alpha, beta)``
    replacing the learned gates (None entries mean 1); used by tests and analyses.
    """

    use_alpha: ClassVar[bool] = False
    use_beta: ClassVar[bool] = False
    erase: ClassVar[bool] = True

    def __init__(self, key_dim: int, value_dim: int, heads: int = 8, decay_form: str = "exp", **kwargs: Any):
        super().__init__(key_dim, value_dim, heads, decay_form, **kwargs)
        self.gates: StateGates | None = None
        if self.use_alpha or self.use_beta:
            self.gates = StateGates(
                value_dim, heads, use_alpha=self.use_alpha, use_beta=self.use_beta, decay_form=decay_form
            )
        self.gate_override: GateOverride | None = None

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype = torch.float32) -> State:
        # a recurrent state never accumulates in half precision
        dt = torch.promote_types(dtype, torch.float32)
        return {"S": torch.zeros(batch, self.heads, self.key_dim, self.head_dim, device=device, dtype=dt)}

    def gate_maps(self, prev: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """``(alpha, beta)`` for the write from ``S_{t-1}``, or None (= 1): ``[B, H, Ck, 1]`` each, except
        the official-form alpha, a full ``[B, H, Ck, Dv]`` map tiled across heads as released."""
        if self.gate_override is not None:
            return self.gate_override(prev)
        if self.gates is None:
            return None, None
        return self.gates(prev)

    def read(self, state: State, query: Tensor) -> Tensor:
        s = state["S"]
        self._check(query, "query", self.key_dim, s.shape[0])
        return kernels.gdr_read(s, query)

    def _step(
        self, state: State, key: Tensor, value: Tensor, query: Tensor | None
    ) -> tuple[Tensor | None, Tensor]:
        s = state["S"]
        self._check_kv(key, value, s.shape[0])
        if query is not None:
            self._check(query, "query", self.key_dim, s.shape[0])
        alpha, beta = self.gate_maps(s)
        self.last_gate_stats = _gate_stats(alpha, beta)
        return kernels.gdr_step(s, key, value, query, alpha, beta, erase=self.erase)

    def write(self, state: State, key: Tensor, value: Tensor) -> State:
        return {"S": self._step(state, key, value, None)[1]}

    def write_read(
        self, state: State, key: Tensor, value: Tensor, next_query: Tensor
    ) -> tuple[Tensor, State]:
        readout, new_s = self._step(state, key, value, next_query)
        assert readout is not None
        return readout, {"S": new_s}


class LinearMemory(_GatedDeltaFamily):
    """``linear`` (paper Eq. 3, Table 4 baseline): ``S_t = S_{t-1} + K_t^T V_t``, ``O = Q S``.

    Option ``normalize=True`` gives Eq. 2's normalised readout ``O = Q S / (Q z + eps)`` with
    ``z_t = z_{t-1} + sum_n k_n`` (stored as ``z: [B, Ck]``; meaningful for non-negative keys).
    """

    name = "linear"
    erase = False

    def __init__(
        self,
        key_dim: int,
        value_dim: int,
        heads: int = 8,
        decay_form: str = "exp",
        *,
        normalize: bool = False,
        eps: float = 1e-6,
        **kwargs: Any,
    ):
        super().__init__(key_dim, value_dim, heads, decay_form, **kwargs)
        self.normalize = bool(normalize)
        self.eps = eps

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype = torch.float32) -> State:
        state = super().init_state(batch, device, dtype)
        if self.normalize:
            state["z"] = torch.zeros(batch, self.key_dim, device=device, dtype=state["S"].dtype)
        return state

    def _normalise(self, readout: Tensor, z: Tensor, query: Tensor) -> Tensor:
        denom = torch.einsum("bnk,bk->bn", query.to(z.dtype), z) + self.eps
        return readout / denom.unsqueeze(-1)

    def read(self, state: State, query: Tensor) -> Tensor:
        out = super().read(state, query)
        return self._normalise(out, state["z"], query) if self.normalize else out

    def write(self, state: State, key: Tensor, value: Tensor) -> State:
        new_state = super().write(state, key, value)
        if self.normalize:
            new_state["z"] = state["z"] + key.to(state["z"].dtype).sum(dim=1)
        return new_state

    def write_read(
        self, state: State, key: Tensor, value: Tensor, next_query: Tensor
    ) -> tuple[Tensor, State]:
        readout, new_state = super().write_read(state, key, value, next_query)
        if self.normalize:
            new_state["z"] = state["z"] + key.to(state["z"].dtype).sum(dim=1)
            readout = self._normalise(readout, new_state["z"], next_query)
        return readout, new_state


class DeltaMemory(_GatedDeltaFamily):
    """``delta`` (Table 4 sanity check): ``S_t = S_{t-1} - K_t^T (K_t S_{t-1}) + K_t^T V_t``."""

    name = "delta"


class GatedDeltaMemory(_GatedDeltaFamily):
    """``gdr`` (paper Eq. 5): ``S_t = alpha * (S_{t-1} - beta * K_t^T K_t S_{t-1}) + beta * K_t^T V_t``."""

    name = "gdr"
    use_alpha = True
    use_beta = True


class GatedDeltaNoAlphaMemory(_GatedDeltaFamily):
    """``gdr-wo-alpha`` (Table 4): ``S_t = S_{t-1} - beta * K_t^T K_t S_{t-1} + beta * K_t^T V_t``."""

    name = "gdr-wo-alpha"
    use_beta = True


class GatedDeltaNoBetaMemory(_GatedDeltaFamily):
    """``gdr-wo-beta`` (Table 4): ``S_t = alpha * S_{t-1} + K_t^T V_t`` (no erase term)."""

    name = "gdr-wo-beta"
    use_alpha = True
    erase = False


class KalmanMemory(MemoryRule):
    """``gka``: gated-KalmaNet block ridge regression over all past frames (gka.md §5).

    ``H_t = gamma_t H_{t-1} + K^T W K``, ``M_t = gamma_t M_{t-1} + K^T W V`` per head; read
    ``Y = s (alpha Q A^-1 + (1 - alpha) Q / ||H||_F) M`` with ``A = H + a ||H||_F I``, then the per-head
    RMSNorm of gka.md 5.7 (the official layer's output norm): ``O_h = Y_h / sqrt(mean_d Y_h^2 + norm_eps)
    * w``, ``w [Dv]`` learned (init 1), shared by the heads as in the official ``RMSNorm(head_dim)``.
    The ridge branch ``Q A^-1 M`` is invariant to the scale of the write weights, but the plain linear
    readout ``Q M`` grows with N times the sum of the decays (gka.md 5.7) and, mixed as is, outweighs the
    ridge prediction whatever alpha says (about 20x its size at init with 256 pixels a frame). So the
    linear branch is divided by ``sqrt(||H||_F^2 + eps^2)`` (= lambda / a, the same write mass the
    regulariser uses): both branches are then scale-invariant, the linear one at most the ridge one's
    size for any key spectrum (equal for rank-1 keys, 1/sqrt(Ck) of it for isotropic keys), and alpha
    (about 0.88 at init) makes the ridge prediction dominate, as the spec intends. The output norm then
    fixes the readout's scale. Keys and queries are L2-normalised per pixel inside ``read`` /
    ``write``. Gates: :class:`FrameGates`.

    Options: ``ridge`` (a, 0.02), ``scale`` (s, default ``Ck ** -0.5``), ``eps`` (1e-6: norm floor,
    beta offset, L2 eps), ``mix_bias_init`` (2.0), ``output_norm`` (True; False gives the raw ``Y``),
    ``norm_eps`` (1e-6). Only ``decay_form="exp"`` is valid (H must stay PSD). The state is kept in at
    least fp32. An empty memory still reads exact zeros (the norm maps 0 to 0).
    """

    name = "gka"
    sums_over_pixels = False
    # A failed capture can leave the CUDA context unusable for the rows after it, so it is not attempted.
    graph_capture_blocker = "its batched Cholesky solve is not known to be CUDA-graph capture-safe"

    def __init__(
        self,
        key_dim: int,
        value_dim: int,
        heads: int = 8,
        decay_form: str = "exp",
        *,
        ridge: float = 0.02,
        scale: float | None = None,
        eps: float = 1e-6,
        mix_bias_init: float = 2.0,
        output_norm: bool = True,
        norm_eps: float = 1e-6,
        **kwargs: Any,
    ):
        super().__init__(key_dim, value_dim, heads, decay_form, **kwargs)
        if decay_form != "exp":
            raise ConfigError(f"memory rule 'gka': decay_form '{decay_form}' is not supported (only 'exp')")
        if not ridge > 0:
            raise ConfigError(f"memory rule 'gka': ridge must be > 0, got {ridge!r}")
        self.ridge = float(ridge)
        self.scale = key_dim**-0.5 if scale is None else float(scale)
        self.eps = float(eps)
        self.gates = FrameGates(key_dim, value_dim, heads, eps=eps, mix_bias_init=mix_bias_init)
        self.norm_eps = float(norm_eps)
        self.norm_weight: nn.Parameter | None = None
        if output_norm:
            self.norm_weight = nn.Parameter(torch.ones(self.head_dim))

    def normalise_heads(self, readout: Tensor) -> Tensor:
        """Per-head RMSNorm of a raw readout ``[B, Nq, H*Dv]`` (identity without ``output_norm``)."""
        if self.norm_weight is None:
            return readout
        b, nq, _ = readout.shape
        with torch.autocast(device_type=readout.device.type, enabled=False):
            y = readout.view(b, nq, self.heads, self.head_dim)
            y = y * torch.rsqrt(y.square().mean(dim=-1, keepdim=True) + self.norm_eps)
            return (y * self.norm_weight.to(y.dtype)).reshape(b, nq, self.value_dim)

    def linear_branch(self, hess: Tensor, moment: Tensor, query: Tensor) -> Tensor:
        """The normalised linear readout ``s Q M / sqrt(||H||_F^2 + eps^2)`` per head: H ``[B, H, Ck, Ck]``,
        M ``[B, H, Ck, Dv]``, L2-normalised query ``[B, Nq, Ck]`` -> ``[B, Nq, H*Dv]`` in at least fp32.
        Exactly zero for the empty memory (M = 0)."""
        b, nq, _ = query.shape
        dt = torch.promote_types(hess.dtype, torch.float32)
        with torch.autocast(device_type=hess.device.type, enabled=False):
            mass = torch.sqrt(hess.to(dt).square().sum(dim=(-2, -1)) + self.eps**2)  # [B, H]
            out = torch.einsum("bnk,bhkv->bnhv", query.to(dt), moment.to(dt)) / mass[:, None, :, None]
        return (self.scale * out).reshape(b, nq, self.value_dim)

    def mix_branches(self, ridge: Tensor, linear: Tensor, alpha: Tensor) -> Tensor:
        """``alpha * ridge + (1 - alpha) * linear``: readouts ``[B, Nq, H*Dv]``, alpha ``[B, H, Nq]``."""
        b, nq, _ = ridge.shape
        a = alpha.transpose(1, 2).unsqueeze(-1).to(ridge.dtype)  # [B, Nq, H, 1]
        mixed = a * ridge.view(b, nq, self.heads, -1) + (1 - a) * linear.view(b, nq, self.heads, -1)
        return mixed.reshape(b, nq, self.value_dim)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype = torch.float32) -> State:
        dt = torch.promote_types(dtype, torch.float32)
        h, ck = self.heads, self.key_dim
        return {
            "H": torch.zeros(batch, h, ck, ck, device=device, dtype=dt),
            "M": torch.zeros(batch, h, ck, self.head_dim, device=device, dtype=dt),
        }

    def _unit(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=-1, eps=self.eps)

    def write_gates(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(gamma [B, H], beta [B, H, N], w [B, H, N])`` for a frame; ``key`` already L2-normalised."""
        gamma = self.gates.decay(key, value)
        beta, weight = self.gates.write_weight(key, value)
        return gamma, beta, weight

    def _record(self, gamma: Tensor, beta: Tensor) -> None:
        self.last_gate_stats = {
            "gamma": gamma.detach(),
            "gamma_mean": gamma.detach().float().mean(),
            "beta": beta.detach().mean(dim=-1),
            "beta_mean": beta.detach().float().mean(),
        }

    def read(self, state: State, query: Tensor) -> Tensor:
        self._check(query, "query", self.key_dim, state["H"].shape[0])
        q = self._unit(query)
        alpha = self.gates.readout_mix(q)
        self.last_gate_stats["readout_mix_mean"] = alpha.detach().float().mean()
        ridge = kernels.gka_read(state["H"], state["M"], q, None, ridge=self.ridge, scale=self.scale, eps=self.eps)
        return self.normalise_heads(self.mix_branches(ridge, self.linear_branch(state["H"], state["M"], q), alpha))

    def write(self, state: State, key: Tensor, value: Tensor) -> State:
        self._check_kv(key, value, state["H"].shape[0])
        k = self._unit(key)
        gamma, beta, weight = self.write_gates(k, value)
        self._record(gamma, beta)
        new_h, new_m = kernels.gka_write(state["H"], state["M"], k, value, weight, gamma)
        return {"H": new_h, "M": new_m}

    def write_read(
        self, state: State, key: Tensor, value: Tensor, next_query: Tensor
    ) -> tuple[Tensor, State]:
        self._check_kv(key, value, state["H"].shape[0])
        self._check(next_query, "query", self.key_dim, state["H"].shape[0])
        k, q = self._unit(key), self._unit(next_query)
        gamma, beta, weight = self.write_gates(k, value)
        self._record(gamma, beta)
        alpha = self.gates.readout_mix(q)
        self.last_gate_stats["readout_mix_mean"] = alpha.detach().float().mean()
        readout, new_h, new_m = kernels.gka_step(
            state["H"],
            state["M"],
            k,
            value,
            q,
            weight,
            gamma,
            None,  # the pure ridge prediction; mixed with the normalised linear branch below
            ridge=self.ridge,
            scale=self.scale,
            eps=self.eps,
        )
        assert readout is not None
        mixed = self.mix_branches(readout, self.linear_branch(new_h, new_m, q), alpha)
        return self.normalise_heads(mixed), {"H": new_h, "M": new_m}


class SoftmaxMemory(MemoryRule):
    """``softmax``: keep every past key/value; ``O = softmax(sim(Q, K) / tau) V`` (XMem/Cutie style).

    The rule takes **pre-softmax** keys (``raw_keys = True``: the model skips its softmax over
    channels for it). Softmax-over-channels keys are non-negative with ``q.k`` in [0, 1], so at a fixed
    ``tau = sqrt(Ck)`` the logits span at most ``1 / 8`` and the attention is almost uniform (max/min
    weight ratio at most ``e^(1/8) = 1.13``), so the rule could not pick out the matching pixel.

    Options:
        ``normalize`` (default True): L2-normalise keys and queries per pixel, so ``sim`` is the cosine
        similarity in [-1, 1] (keys are stored normalised);
        ``similarity``: ``"dot"`` (``q.k``, default) or ``"l2"`` (negative squared distance
        ``2 q.k - |k|^2``, the ``|q|^2`` term cancels in the softmax; with ``normalize`` it equals
        ``"dot"``);
        ``temperature``: the initial tau (default 0.1 with ``normalize``, else ``sqrt(Ck)``);
        ``learn_temperature`` (default True): tau is learned, as ``log_scale = log(1 / tau)`` (a
        parameter, clamped to ``1 / tau <= 100``); False keeps it fixed (a buffer).

    Single-head over the full Ck; ``heads`` and ``decay_form`` are unused. The memory grows by N pixels
    per frame (``constant_state = False``).
    """

    name = "softmax"
    constant_state = False
    sums_over_pixels = False
    raw_keys = True
    #: Upper bound of the learned logit scale 1 / tau (as in CLIP), so the attention cannot collapse.
    max_scale: ClassVar[float] = 100.0

    def __init__(
        self,
        key_dim: int,
        value_dim: int,
        heads: int = 8,
        decay_form: str = "exp",
        *,
        similarity: str = "dot",
        temperature: float | None = None,
        normalize: bool = True,
        learn_temperature: bool = True,
        eps: float = 1e-6,
        **kwargs: Any,
    ):
        super().__init__(key_dim, value_dim, heads, decay_form, **kwargs)
        if similarity not in ("dot", "l2"):
            raise unknown_name("softmax similarity", similarity, ("dot", "l2"))
        self.similarity = similarity
        self.normalize = bool(normalize)
        self.eps = float(eps)
        if temperature is None:
            temperature = 0.1 if self.normalize else key_dim**0.5
        if not temperature > 0:
            raise ConfigError(f"memory rule 'softmax': temperature must be > 0, got {temperature!r}")
        if 1.0 / temperature > self.max_scale:
            raise ConfigError(
                f"memory rule 'softmax': temperature must be >= {1.0 / self.max_scale}, got {temperature!r}"
            )
        log_scale = torch.tensor(-math.log(float(temperature)))
        if learn_temperature:
            self.log_scale = nn.Parameter(log_scale)
            self.log_scale._no_weight_decay = True  # type: ignore[attr-defined]
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def temperature(self) -> float:
        """The current tau (``1 / exp(log_scale)``, after the clamp)."""
        return float(1.0 / self._scale().detach())

    def _scale(self) -> Tensor:
        return self.log_scale.clamp(max=math.log(self.max_scale)).exp()

    def _prepare(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=-1, eps=self.eps) if self.normalize else x

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype = torch.float32) -> State:
        return {
            "K": torch.zeros(batch, 0, self.key_dim, device=device, dtype=dtype),
            "V": torch.zeros(batch, 0, self.value_dim, device=device, dtype=dtype),
        }

    def _logit_inputs(self, keys: Tensor, query: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(scaled query, additive bias [B, 1, Nk] or None)``: logits are ``q' K^T + bias``."""
        q = self._prepare(query.to(keys.dtype)) * self._scale().to(keys.dtype)
        if self.similarity == "dot":
            return q, None
        # -|q - k|^2 / tau = (2 q.k - |k|^2) / tau + const(q)
        bias = -(keys.square().sum(dim=-1) * self._scale().to(keys.dtype)).unsqueeze(1)
        return 2.0 * q, bias

    def attention(self, state: State, query: Tensor) -> Tensor:
        """The attention weights ``[B, Nq, T*N]`` of ``read`` (rows sum to 1; for analyses and tests)."""
        keys = state["K"]
        self._check(query, "query", self.key_dim, keys.shape[0])
        q, bias = self._logit_inputs(keys, query)
        logits = q @ keys.transpose(1, 2)
        if bias is not None:
            logits = logits + bias
        return torch.softmax(logits, dim=-1)

    def read(self, state: State, query: Tensor) -> Tensor:
        keys, values = state["K"], state["V"]
        self._check(query, "query", self.key_dim, keys.shape[0])
        if keys.shape[1] == 0:
            return query.new_zeros(query.shape[0], query.shape[1], self.value_dim, dtype=values.dtype)
        q, bias = self._logit_inputs(keys, query)
        # the learned scale is folded into q: scaled_dot_product_attention takes only a float scale
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=bias, scale=1.0)

    def write(self, state: State, key: Tensor, value: Tensor) -> State:
        keys, values = state["K"], state["V"]
        self._check_kv(key, value, keys.shape[0])
        return {
            "K": torch.cat([keys, self._prepare(key.to(keys.dtype))], dim=1),
            "V": torch.cat([values, value.to(values.dtype)], dim=1),
        }


_RULES: dict[str, type[MemoryRule]] = {
    cls.name: cls
    for cls in (
        LinearMemory,
        DeltaMemory,
        GatedDeltaMemory,
        GatedDeltaNoAlphaMemory,
        GatedDeltaNoBetaMemory,
        KalmanMemory,
        SoftmaxMemory,
    )
}
assert tuple(_RULES) == MEMORY_RULES


def build_memory(
    name: str, key_dim: int, value_dim: int, heads: int = 8, decay_form: str = "exp", **kwargs: Any
) -> MemoryRule:
    """Build the memory rule ``name`` (one of :data:`MEMORY_RULES`); rule options go in ``kwargs``."""
    cls = _RULES.get(name)
    if cls is None:
        raise unknown_name("memory rule", name, MEMORY_RULES)
    return cls(key_dim, value_dim, heads, decay_form, **kwargs)


__all__ = [
    "MEMORY_RULES",
    "MemoryRuleName",
    "DeltaMemory",
    "GatedDeltaMemory",
    "GatedDeltaNoAlphaMemory",
    "GatedDeltaNoBetaMemory",
    "KalmanMemory",
    "LinearMemory",
    "MemoryInputError",
    "MemoryRule",
    "SoftmaxMemory",
    "State",
    "build_memory",
]
