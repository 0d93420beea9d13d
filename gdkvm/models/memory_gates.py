"""Learned gates of the memory rules: the alpha/beta projections (GDR family) and the gka gates.

Decay parametrisation (Gated DeltaNet, used by both): from logits ``a`` (one per head and gate position),
``g = -exp(A_log) * softplus(a + dt_bias) <= 0`` with per-head parameters ``A_log`` and ``dt_bias``.

* ``decay_form="exp"`` (default): the multiplier is ``alpha = exp(g)``, a proper decay in (0, 1].
* ``decay_form="official"``: the multiplier is ``g`` itself, a negative number (the released GDKVM code
  multiplies the state by the log-gate without ``exp``). Kept to compare with the official behaviour,
  and released in every detail: alpha is expanded over the value channels as the release's
  ``alpha.repeat(1, 1, 1, Cv // H)`` does (channel c takes head ``c % H``, see :func:`tile_heads`),
  ``b_proj`` has no bias and ``A ~ U(0, 16)``.

Init: ``A ~ U(1, 16)`` (``U(0, 16)`` for the official form, as released), ``A_log = log A``; ``dt``
log-uniform in [1e-3, 0.1] floored at 1e-4 and ``dt_bias = softplus^-1(dt)``. Both are flagged
``_no_weight_decay``.

GDR-family gates (:class:`StateGates`) are projected from the previous state ``S_{t-1}``, as in the paper
(§3.3) and the official code: every one of the Ck rows of the full ``Ck x Cv`` state goes through
``Linear(Cv -> heads)``, giving logits per (key row, head). beta (and alpha in the exp form) is constant
along the head's Dv value columns (the release's ``repeat_interleave``: channel c takes head ``c // Dv``),
so it is a ``Ck x Cv`` map with shape ``[B, H, Ck, 1]`` (broadcast over Dv). The official-form alpha is
tiled across the heads instead (channel c takes head ``c % H``), a full map ``[B, H, Ck, Dv]``.
Parameters: ``2 * Cv * heads + 3 * heads`` (4,120 at paper size; ``2 * Cv * heads + 2 * heads`` for the
official form, whose b_proj has no bias).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdkvm.errors import unknown_name

DECAY_FORMS: tuple[str, ...] = ("exp", "official")


def check_decay_form(decay_form: str) -> str:
    """Return ``decay_form`` if it is one of :data:`DECAY_FORMS`, else raise ConfigError."""
    if decay_form not in DECAY_FORMS:
        raise unknown_name("decay form", decay_form, DECAY_FORMS)
    return decay_form


def gdn_decay_parameters(
    heads: int,
    *,
    a_min: float = 1.0,
    a_max: float = 16.0,
    dt_min: float = 1e-3,
    dt_max: float = 0.1,
    dt_floor: float = 1e-4,
) -> tuple[Tensor, Tensor]:
    """Initial ``(A_log [heads], dt_bias [heads])`` of the Gated-DeltaNet decay (global torch RNG)."""
    a = torch.empty(heads).uniform_(a_min, a_max)
    dt = torch.exp(torch.rand(heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=dt_floor)
    dt_bias = dt + torch.log(-torch.expm1(-dt))  # inverse of softplus
    return torch.log(a), dt_bias


def log_decay(a_logits: Tensor, a_log: Tensor, dt_bias: Tensor) -> Tensor:
    """``g = -exp(A_log) * softplus(a_logits + dt_bias)``; ``A_log``/``dt_bias`` broadcast against the logits."""
    return -torch.exp(a_log) * F.softplus(a_logits + dt_bias)


def decay_multiplier(g: Tensor, decay_form: str) -> Tensor:
    """The state multiplier from the log-gate ``g``: ``exp(g)`` (``"exp"``) or ``g`` (``"official"``)."""
    if decay_form == "exp":
        return torch.exp(g)
    if decay_form == "official":
        return g
    raise unknown_name("decay form", decay_form, DECAY_FORMS)


def tile_heads(gate: Tensor, head_dim: int) -> Tensor:
    """The release's ``repeat`` expansion of a per-head gate: ``[B, H, Ck]`` -> ``[B, H, Ck, Dv]``.

    In the full ``Ck x Cv`` layout the release tiles the H head values along the channels
    (``alpha.repeat(1, 1, 1, Cv // H)``), so value channel ``c = h * Dv + d`` takes head ``c % H``:
    ``out[b, h, k, d] = gate[b, (h * Dv + d) % H, k]``.
    """
    heads = gate.shape[1]
    idx = (torch.arange(heads * head_dim, device=gate.device) % heads).view(heads, head_dim)
    return gate[:, idx].permute(0, 1, 3, 2)  # [B, H, Dv, Ck] -> [B, H, Ck, Dv]


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    dt = torch.float32
    for t in tensors:
        dt = torch.promote_types(dt, t.dtype)
    return dt


def state_gates(
    state: Tensor,
    a_weight: Tensor | None,
    b_weight: Tensor | None,
    b_bias: Tensor | None,
    a_log: Tensor | None,
    dt_bias: Tensor | None,
    decay_form: str = "exp",
) -> tuple[Tensor | None, Tensor | None]:
    """Functional form of :class:`StateGates` (used directly by the gradient tests).

    Args:
        state: ``[B, H, Ck, Dv]`` previous state ``S_{t-1}``.
        a_weight: ``[H, H*Dv]`` decay projection (``nn.Linear`` layout) or None (no alpha).
        b_weight: ``[H, H*Dv]`` write-strength projection or None (no beta); ``b_bias``: ``[H]`` or None.
        a_log, dt_bias: ``[H]`` decay parameters (needed when ``a_weight`` is given).
        decay_form: ``"exp"`` or ``"official"``.

    Returns:
        ``(alpha, beta)`` in at least fp32, or None when its weight is None: beta ``[B, H, Ck, 1]``;
        alpha ``[B, H, Ck, 1]`` (exp form) or the full tiled map ``[B, H, Ck, Dv]`` (official form,
        :func:`tile_heads`).
    """
    b, h, ck, dv = state.shape
    params = [p for p in (a_weight, b_weight) if p is not None]
    dt = _compute_dtype(state, *params)
    with torch.autocast(device_type=state.device.type, enabled=False):
        s = state.to(dt)
        alpha = beta = None
        if a_weight is not None:
            assert a_log is not None and dt_bias is not None
            logits = torch.einsum("bhkd,ghd->bgk", s, a_weight.to(dt).view(-1, h, dv))
            g = log_decay(logits, a_log.to(dt)[:, None], dt_bias.to(dt)[:, None])
            mult = decay_multiplier(g, decay_form)
            alpha = tile_heads(mult, dv) if decay_form == "official" else mult.unsqueeze(-1)
        if b_weight is not None:
            logits = torch.einsum("bhkd,ghd->bgk", s, b_weight.to(dt).view(-1, h, dv))
            if b_bias is not None:
                logits = logits + b_bias.to(dt)[:, None]
            beta = torch.sigmoid(logits).unsqueeze(-1)
    return alpha, beta


class StateGates(nn.Module):
    """alpha (decay) and beta (write strength) maps projected from the previous state.

    Args:
        value_dim: Cv (a multiple of ``heads``).
        heads: number of value heads H (gate granularity along Cv).
        use_alpha, use_beta: which gates exist (the Table 4 ablations drop one).
        decay_form: ``"exp"`` or ``"official"`` (module docstring; the official form also takes the
            release's init: b_proj without bias, ``A ~ U(0, 16)``).
    """

    def __init__(
        self, value_dim: int, heads: int, *, use_alpha: bool, use_beta: bool, decay_form: str = "exp"
    ):
        super().__init__()
        self.decay_form = check_decay_form(decay_form)
        self.a_proj = nn.Linear(value_dim, heads, bias=False) if use_alpha else None
        self.b_proj = None
        official = self.decay_form == "official"
        if use_beta:
            self.b_proj = nn.Linear(value_dim, heads, bias=not official)
            if self.b_proj.bias is not None:
                nn.init.zeros_(self.b_proj.bias)
        if use_alpha:
            a_log, dt_bias = gdn_decay_parameters(heads, a_min=0.0 if official else 1.0)
            self.A_log = nn.Parameter(a_log)
            self.dt_bias = nn.Parameter(dt_bias)
            self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
            self.dt_bias._no_weight_decay = True  # type: ignore[attr-defined]
        else:
            self.A_log = None
            self.dt_bias = None

    def forward(self, state: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """``state [B, H, Ck, Dv]`` -> ``(alpha | None, beta | None)`` as :func:`state_gates` returns them."""
        return state_gates(
            state,
            None if self.a_proj is None else self.a_proj.weight,
            None if self.b_proj is None else self.b_proj.weight,
            None if self.b_proj is None else self.b_proj.bias,
            self.A_log,
            self.dt_bias,
            self.decay_form,
        )


class FrameGates(nn.Module):
    """Gates of the gka rule, all from the current frame (the ridge state itself is gate-free).

    * decay ``gamma [B, H]``: ``Linear(Ck + Cv -> H)`` of the pixel-mean of ``[key, value]`` through the
      Gated-DeltaNet log-decay, ``gamma = exp(g)`` (only the exp form: H must stay positive semidefinite);
    * write weights ``w [B, H, N]``: ``beta = sigmoid(Linear(Ck + Cv -> H)([k_n, v_n]))`` per pixel,
      ``w = (beta + eps)^2`` (the official GKA scales k and v by ``beta + eps``);
    * readout mix ``alpha [B, H, Nq]``: ``sigmoid(Linear(Ck -> H)(q_n))`` per query pixel, bias
      initialised to ``mix_bias_init`` (2.0, alpha ~ 0.88: mostly the ridge prediction).

    Parameters: ``2 * H * (Ck + Cv) + H * Ck + 4 * H`` (5,664 at paper size).
    """

    def __init__(
        self, key_dim: int, value_dim: int, heads: int, *, eps: float = 1e-6, mix_bias_init: float = 2.0
    ):
        super().__init__()
        self.eps = eps
        self.a_proj = nn.Linear(key_dim + value_dim, heads, bias=False)
        self.b_proj = nn.Linear(key_dim + value_dim, heads, bias=True)
        nn.init.zeros_(self.b_proj.bias)
        self.mix_proj = nn.Linear(key_dim, heads, bias=True)
        nn.init.constant_(self.mix_proj.bias, mix_bias_init)
        a_log, dt_bias = gdn_decay_parameters(heads)
        self.A_log = nn.Parameter(a_log)
        self.dt_bias = nn.Parameter(dt_bias)
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.dt_bias._no_weight_decay = True  # type: ignore[attr-defined]

    def _linear(self, x: Tensor, layer: nn.Linear) -> Tensor:
        dt = _compute_dtype(x, layer.weight)
        with torch.autocast(device_type=x.device.type, enabled=False):
            bias = None if layer.bias is None else layer.bias.to(dt)
            return F.linear(x.to(dt), layer.weight.to(dt), bias)

    def decay(self, key: Tensor, value: Tensor) -> Tensor:
        """``key [B, N, Ck]``, ``value [B, N, Cv]`` -> ``gamma [B, H]`` in (0, 1]."""
        pooled = torch.cat([key.mean(dim=1), value.to(key.dtype).mean(dim=1)], dim=-1)
        logits = self._linear(pooled, self.a_proj)
        g = log_decay(logits, self.A_log.to(logits.dtype), self.dt_bias.to(logits.dtype))
        return torch.exp(g)

    def write_weight(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Per-pixel ``(beta, w)``, each ``[B, H, N]``, with ``w = (beta + eps)^2``."""
        feats = torch.cat([key, value.to(key.dtype)], dim=-1)
        beta = torch.sigmoid(self._linear(feats, self.b_proj)).transpose(1, 2)
        return beta, (beta + self.eps) ** 2

    def readout_mix(self, query: Tensor) -> Tensor:
        """``query [B, Nq, Ck]`` -> ``alpha [B, H, Nq]`` in (0, 1)."""
        return torch.sigmoid(self._linear(query, self.mix_proj)).transpose(1, 2)


def gate_parameter_count(module: nn.Module) -> int:
    """Number of learnable parameters of a gate module (for docs and tests)."""
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "DECAY_FORMS",
    "FrameGates",
    "StateGates",
    "check_decay_form",
    "decay_multiplier",
    "gate_parameter_count",
    "gdn_decay_parameters",
    "log_decay",
    "state_gates",
    "tile_heads",
]
