"""The faithful reference path: our network with the memory computed the way the released GDKVM code does.

``gdkvm bench fps`` times this path in the same run as ours and prints our speed-up over it. It runs the
**same weights** (a copy of the benchmarked model) with one module swapped: the memory rule becomes a
:class:`ReleasedStyleMemory`, which follows the released code's per-frame recurrence
(``model/gdkvm01.py`` of github.com/wangrui2025/GDKVM @ 545eed3). It always runs in fp32, eager: no
autocast, no ``torch.compile``, no CUDA graphs, no Triton kernel.

What differs from our memory implementation (``gdkvm.models.memory`` + ``gdkvm.kernels``), per frame:

1. **State layout.** One full ``Ck x Cv`` matrix per (clip, object), the released layout; ours splits
   it into ``H`` value heads ``[H, Ck, Dv]``. The carried tensor is the same numbers (only the
   view differs), so the state is stored in our layout and viewed as ``Ck x Cv`` for the arithmetic.
2. **Erase term.** ``K^T (K S)`` as two einsums that materialise ``K S`` (``N x Cv``, every pixel's
   prediction) and then ``K^T`` of it, as released; ours forms the Gram matrix ``K^T K`` (``Ck x Ck``)
   once and multiplies it with ``S`` (fewer FLOPs when ``N > Ck``), or runs the fused Triton step on CUDA.
3. **Gates.** Recomputed every frame from ``S_{t-1}`` with the gate projections (as ours does), then
   copied to full ``Ck x Cv`` maps (a physical copy, as released: beta with ``repeat_interleave``, the
   official-form alpha with ``repeat``, tiled across heads; the exp-form alpha, which the release does
   not have, with ``repeat_interleave``) and applied with element-wise einsums followed by
   ``.contiguous()``; ours broadcasts ``[H, Ck, 1]`` gate views (a full map for the official alpha).
4. **Readout.** An einsum of the query keys with the full state, per frame.
5. **Precision and execution.** fp32 and eager always.

What is deliberately the same, so that both paths compute the same function (the benchmark checks that
their masks agree; a speed-up only counts if they do): the rest of the network (our encoders, KPFF,
object transformer and decoder modules and their weights), the first frame (our model writes it into an
empty memory with the rule's gates; the released code initialises ``S_0 = K_0^T V_0``), the decay form
of the model's config (``exp`` by default; the released code's negative log-gate is
``decay_form="official"``), and the model's step order: by default ``step_order="paper"``, as released
(encode the value from the previous frame's mask -> write ``S_t`` -> read ``S_t`` with the same keys
``K_t`` -> segment; the released-style memory runs the base class's ``write_read``, a write then a
read), or ``"read-first"`` (read ``S_{t-1}`` -> segment -> encode the value from the prediction ->
write).

Only the gated-delta-rule family (``linear``, ``delta``, ``gdr``, ``gdr-wo-alpha``, ``gdr-wo-beta``) has
a released-style form; gka and softmax have no released counterpart
(:class:`ReferenceUnavailable`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdkvm.errors import GdkvmError
from gdkvm.models.interface import SegmentationModel
from gdkvm.models.memory import (
    DeltaMemory,
    GatedDeltaMemory,
    GatedDeltaNoAlphaMemory,
    GatedDeltaNoBetaMemory,
    LinearMemory,
    MemoryRule,
    State,
)
from gdkvm.models.memory_gates import decay_multiplier, log_decay

#: The memory rules with a released-style form (the gated delta rule family).
GDR_FAMILY: tuple[type[MemoryRule], ...] = (
    LinearMemory,
    DeltaMemory,
    GatedDeltaMemory,
    GatedDeltaNoAlphaMemory,
    GatedDeltaNoBetaMemory,
)

__all__ = [
    "GDR_FAMILY",
    "ReferenceUnavailable",
    "ReleasedStyleMemory",
    "build_reference_model",
    "reference_unavailable",
]


class ReferenceUnavailable(GdkvmError):
    """The model has no released-style reference path (its memory rule is not in the GDR family)."""


def reference_unavailable(model: SegmentationModel) -> str | None:
    """Why ``model`` has no reference path (a sentence), or None when it has one.

    Only a model declaring a memory rule module (``memory_module``: the GDKVM variants) has one, and only
    for the GDR family without the normalised readout.
    """
    memory = model.memory_module
    if memory is None:
        return f"model {type(model).__name__} is not a GDKVM network with a memory rule"
    if not isinstance(memory, GDR_FAMILY):
        return f"the released code has no '{memory.name}' memory (only the gated delta rule family)"
    if _normalised(memory):
        return "the released code has no normalised linear readout (normalize=True)"
    return None


def _normalised(rule: MemoryRule) -> bool:
    """Whether ``rule`` is the linear memory with Eq. 2's normalised readout."""
    return isinstance(rule, LinearMemory) and rule.normalize


class ReleasedStyleMemory(MemoryRule):
    """A GDR-family memory step written as the released code's per-frame einsums (module docstring).

    Built from an existing rule (``from_rule``), sharing its gate parameters, so it computes the same
    function as that rule with the same weights. State layout and shapes are those of
    the GDR-family rules in :mod:`gdkvm.models.memory`: ``{"S": [B, H, Ck, Dv]}``, keys ``[B, N, Ck]``,
    values and readouts ``[B, N, H*Dv]``.
    """

    name = "released-style"

    def __init__(self, rule: MemoryRule):
        if not isinstance(rule, GDR_FAMILY):
            raise ReferenceUnavailable(f"the released code has no '{rule.name}' memory")
        super().__init__(rule.key_dim, rule.value_dim, rule.heads, rule.decay_form)
        self.name = f"released-style {rule.name}"
        self.rule_name = rule.name
        self.use_alpha = rule.use_alpha
        self.use_beta = rule.use_beta
        self.erase = rule.erase
        self.gates = rule.gates  # the same parameters (a_proj, b_proj, A_log, dt_bias)
        self.normalize = _normalised(rule)
        if self.normalize:
            raise ReferenceUnavailable("the released code has no normalised linear readout (normalize=True)")

    @classmethod
    def from_rule(cls, rule: MemoryRule) -> ReleasedStyleMemory:
        """The released-style form of ``rule`` (ReferenceUnavailable outside the GDR family)."""
        return cls(rule)

    # -- layout helpers: [B, H, Ck, Dv] <-> the released full state [B, Ck, Cv] ---------------------------
    def _full(self, s: Tensor) -> Tensor:
        b, h, ck, dv = s.shape
        return s.permute(0, 2, 1, 3).reshape(b, ck, h * dv)

    def _split(self, full: Tensor) -> Tensor:
        b, ck, cv = full.shape
        return full.reshape(b, ck, self.heads, self.head_dim).permute(0, 2, 1, 3).contiguous()

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype = torch.float32) -> State:
        return {
            "S": torch.zeros(
                batch,
                self.heads,
                self.key_dim,
                self.head_dim,
                device=device,
                dtype=torch.promote_types(dtype, torch.float32),
            )
        }

    def _gate_maps(self, full: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Full ``[B, Ck, Cv]`` alpha and beta maps from the previous full state (released style)."""
        alpha = beta = None
        gates = self.gates
        if self.use_beta:
            assert gates is not None and gates.b_proj is not None
            beta = torch.sigmoid(F.linear(full, gates.b_proj.weight, gates.b_proj.bias))  # [B, Ck, H]
            beta = beta.repeat_interleave(self.head_dim, dim=2)
        if self.use_alpha:
            assert gates is not None and gates.a_proj is not None
            logits = F.linear(full, gates.a_proj.weight)  # [B, Ck, H]
            g = log_decay(logits, gates.A_log, gates.dt_bias)
            alpha = decay_multiplier(g, self.decay_form)
            if self.decay_form == "official":  # the release's alpha.repeat(1, 1, 1, Cv // H)
                alpha = alpha.repeat(1, 1, self.head_dim)
            else:
                alpha = alpha.repeat_interleave(self.head_dim, dim=2)
        return alpha, beta

    def read(self, state: State, query: Tensor) -> Tensor:
        full = self._full(state["S"])
        self._check(query, "query", self.key_dim, full.shape[0])
        return torch.einsum("bnk,bkv->bnv", query.to(full.dtype), full).contiguous()

    def write(self, state: State, key: Tensor, value: Tensor) -> State:
        prev = self._full(state["S"])
        self._check_kv(key, value, prev.shape[0])
        k = key.to(prev.dtype)
        v = value.to(prev.dtype)
        alpha, beta = self._gate_maps(prev)
        new = torch.einsum("bnk,bnv->bkv", k, v).contiguous()  # K^T V
        if beta is not None:
            new = torch.einsum("bkv,bkv->bkv", beta, new).contiguous()
        old = prev
        if self.erase:
            v_old = torch.einsum("bnk,bkv->bnv", k, prev).contiguous()  # K S_{t-1}, per pixel
            eraser = torch.einsum("bnk,bnv->bkv", k, v_old)  # K^T K S_{t-1}
            if beta is not None:
                eraser = torch.einsum("bkv,bkv->bkv", beta, eraser).contiguous()
            old = prev - eraser
        if alpha is not None:
            old = torch.einsum("bkv,bkv->bkv", alpha, old).contiguous()
        return {"S": self._split(old + new)}


def build_reference_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (same weights, fp32, eval mode) whose memory is a :class:`ReleasedStyleMemory`.

    Raises ReferenceUnavailable for models whose memory rule has no released-style form.
    Copy before compiling ``model``: the reference must stay eager.
    """
    why = reference_unavailable(model)
    if why is not None:
        raise ReferenceUnavailable(why)
    ref = copy.deepcopy(model).float().eval()
    ref.memory = ReleasedStyleMemory.from_rule(ref.memory)
    return ref
