"""Named model variants (timm-style registry): the paper's Table 3 / Table 4 rows and extras.

Each variant is a function decorated with :func:`register_variant` that returns a frozen
:class:`VariantSpec`: the paper row it reproduces, the mDice the paper reports for it, and either config
overrides applied to a size preset (GDKVM variants) or a ``builder`` callable (whole alternative models,
e.g. baselines registering from their own modules)::

    @register_variant
    def my_unet() -> VariantSpec:          # registered as "my-unet"
        return VariantSpec(name="my-unet", description="...", builder=build_my_unet)

``build_model("full", preset="paper")`` builds the network; ``list_variants()`` lists the names. Every
built model must implement :class:`gdkvm.models.interface.SegmentationModel` (checked on build).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gdkvm.errors import ConfigError, unknown_name
from gdkvm.models.config import PRESETS, ModelConfig, preset_config
from gdkvm.models.interface import check_model

__all__ = [
    "PRESETS",
    "VariantSpec",
    "build_model",
    "count_model_parameters",
    "get_variant",
    "list_variants",
    "model_config",
    "register_variant",
]

#: A builder for models outside GDKVM: ``builder(preset=..., **overrides) -> nn.Module``.
Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class VariantSpec:
    """One registered variant.

    Attributes:
        name: registry name (``--variant`` value).
        description: one line for listings.
        paper_table: e.g. ``"Table 3"``; None when the paper has no such row.
        paper_row: the row label as printed in the paper.
        paper_mdice: the paper's reported CAMUS mDice for that row (None if not in the paper).
        paper_inf_time_ms: the paper's reported inference time (Table 4 only).
        overrides: ModelConfig fields set on top of the preset (GDKVM variants).
        builder: for non-GDKVM models, ``builder(preset=..., **overrides) -> nn.Module``; None builds GDKVM.
    """

    name: str
    description: str
    paper_table: str | None = None
    paper_row: str | None = None
    paper_mdice: float | None = None
    paper_inf_time_ms: float | None = None
    overrides: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    builder: Builder | None = None

    @property
    def memory_rule(self) -> str | None:
        """The memory rule set by this variant (None for custom builders)."""
        return dict(self.overrides).get("memory_rule", "gdr" if self.builder is None else None)

    @property
    def kpff(self) -> bool | None:
        """Whether KPFF is on (None for custom builders)."""
        return dict(self.overrides).get("kpff", True if self.builder is None else None)

    @property
    def paper_label(self) -> str:
        """``"Table 3: LKVA + GDR + KPFF"`` or ``"-"``."""
        if self.paper_table is None:
            return "-"
        return f"{self.paper_table}: {self.paper_row}"


_REGISTRY: dict[str, Callable[[], VariantSpec]] = {}


def register_variant(fn: Callable[[], VariantSpec] | None = None, *, name: str | None = None) -> Any:
    """Register a function returning a :class:`VariantSpec` (usable as ``@register_variant`` or
    ``@register_variant(name="x")``). The name defaults to the function name with ``_`` -> ``-``.

    Registering the same name twice is a ConfigError (variants must be unambiguous).
    """

    def decorate(f: Callable[[], VariantSpec]) -> Callable[[], VariantSpec]:
        key = name or f.__name__.replace("_", "-")
        if key in _REGISTRY and _REGISTRY[key] is not f:
            raise ConfigError(f"variant '{key}' is already registered")
        _REGISTRY[key] = f
        return f

    return decorate(fn) if fn is not None else decorate


#: Packages of this project that register more variants when imported (``baselines/``), if present.
PLUGIN_PACKAGES: tuple[str, ...] = ("baselines", "gdkvm.models.release")


def _ensure_plugins() -> None:
    """Import this project's plugin packages so their variants are registered.

    Only a package that lives in this project's tree is imported (never a same-named third-party one).
    """
    root = Path(__file__).resolve().parents[2]
    for package in PLUGIN_PACKAGES:
        if package in sys.modules:
            continue
        found = importlib.util.find_spec(package)
        if found is None or found.origin is None:
            continue
        if Path(found.origin).resolve().is_relative_to(root):
            importlib.import_module(package)


def list_variants() -> list[str]:
    """All registered variant names, sorted."""
    _ensure_plugins()
    return sorted(_REGISTRY)


def get_variant(name: str) -> VariantSpec:
    """The spec of variant ``name``; an unknown name raises a ConfigError listing the valid ones."""
    _ensure_plugins()
    fn = _REGISTRY.get(name)
    if fn is None:
        raise unknown_name("variant", name, list(_REGISTRY))
    spec = fn()
    if spec.name != name:
        raise ConfigError(f"variant '{name}': its function returned a spec named '{spec.name}'")
    return spec


def model_config(variant: str, preset: str = "tiny", **overrides: Any) -> ModelConfig:
    """The ModelConfig of a GDKVM variant at a preset, with ``overrides`` applied last."""
    spec = get_variant(variant)
    if spec.builder is not None:
        raise ConfigError(f"variant '{variant}' is not a GDKVM variant (it has its own builder)")
    fixed = dict(spec.overrides)
    clash = sorted(set(fixed) & set(overrides))
    if clash:
        raise ConfigError(f"variant '{variant}' sets {', '.join(clash)} itself; pick another variant instead "
                          f"of overriding it")
    return preset_config(preset).replace(**fixed, **overrides)


def build_model(variant: str, preset: str = "tiny", **overrides: Any) -> nn.Module:
    """Build variant ``variant`` at size ``preset`` (``paper`` or ``tiny``), randomly initialised.

    GDKVM variants return a :class:`gdkvm.models.gdkvm.GDKVM` whose ``variant`` attribute is set;
    ``overrides`` are ModelConfig fields (e.g. ``num_objects=3``, ``decay_form="official"``). A model that
    does not implement :class:`gdkvm.models.interface.SegmentationModel` is a one-line ConfigError naming
    its class and the missing member.
    """
    spec = get_variant(variant)
    if preset not in PRESETS:
        raise unknown_name("preset", preset, PRESETS)
    if spec.builder is not None:
        model = spec.builder(preset=preset, **overrides)
    else:
        from gdkvm.models.gdkvm import GDKVM

        model = GDKVM(model_config(variant, preset, **overrides))
    check_model(model)
    model.variant = variant
    return model


def count_model_parameters(variant: str, preset: str = "tiny", **overrides: Any) -> int:
    """Parameter count of a variant at a preset, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = build_model(variant, preset, **overrides)
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- Table 3: components
@register_variant
def lkva() -> VariantSpec:
    return VariantSpec(
        name="lkva", description="linear key-value memory, no KPFF", paper_table="Table 3",
        paper_row="LKVA", paper_mdice=93.10, overrides=(("memory_rule", "linear"), ("kpff", False)))


@register_variant
def lkva_kpff() -> VariantSpec:
    return VariantSpec(
        name="lkva-kpff", description="linear key-value memory + KPFF", paper_table="Table 3",
        paper_row="LKVA + KPFF", paper_mdice=93.30, overrides=(("memory_rule", "linear"), ("kpff", True)))


@register_variant
def lkva_gdr() -> VariantSpec:
    return VariantSpec(
        name="lkva-gdr", description="gated delta rule memory, no KPFF", paper_table="Table 3",
        paper_row="LKVA + GDR", paper_mdice=94.49, overrides=(("memory_rule", "gdr"), ("kpff", False)))


@register_variant
def full() -> VariantSpec:
    return VariantSpec(
        name="full", description="GDKVM: gated delta rule memory + KPFF", paper_table="Table 3",
        paper_row="LKVA + GDR + KPFF", paper_mdice=95.11, overrides=(("memory_rule", "gdr"), ("kpff", True)))


# ---------------------------------------------------------------- Table 4: state updates (all with KPFF)
@register_variant
def linear() -> VariantSpec:
    return VariantSpec(
        name="linear", description="S_t = S_{t-1} + V_t K_t^T", paper_table="Table 4",
        paper_row="Baseline", paper_mdice=93.30, paper_inf_time_ms=151.61,
        overrides=(("memory_rule", "linear"), ("kpff", True)))


@register_variant
def delta() -> VariantSpec:
    return VariantSpec(
        name="delta", description="delta rule without gates", paper_table="Table 4",
        paper_row="Sanity Check", paper_mdice=74.68, paper_inf_time_ms=155.09,
        overrides=(("memory_rule", "delta"), ("kpff", True)))


@register_variant
def wo_alpha() -> VariantSpec:
    return VariantSpec(
        name="wo-alpha", description="gated delta rule without the decay alpha", paper_table="Table 4",
        paper_row="w/o alpha_t", paper_mdice=94.57, paper_inf_time_ms=158.77,
        overrides=(("memory_rule", "gdr-wo-alpha"), ("kpff", True)))


@register_variant
def wo_beta() -> VariantSpec:
    return VariantSpec(
        name="wo-beta", description="decayed linear memory (no write strength beta)", paper_table="Table 4",
        paper_row="w/o beta_t", paper_mdice=94.26, paper_inf_time_ms=156.90,
        overrides=(("memory_rule", "gdr-wo-beta"), ("kpff", True)))


@register_variant
def gdr() -> VariantSpec:
    return VariantSpec(
        name="gdr", description="gated delta rule (same network as 'full')", paper_table="Table 4",
        paper_row="GDR", paper_mdice=95.11, paper_inf_time_ms=160.62,
        overrides=(("memory_rule", "gdr"), ("kpff", True)))


# ---------------------------------------------------------------- beyond the paper
@register_variant
def gka() -> VariantSpec:
    return VariantSpec(
        name="gka", description="Gated KalmaNet ridge-regression memory + KPFF",
        overrides=(("memory_rule", "gka"), ("kpff", True)))


@register_variant
def softmax_memory() -> VariantSpec:
    return VariantSpec(
        name="softmax-memory", description="softmax attention over all past frames (grows with T) + KPFF",
        overrides=(("memory_rule", "softmax"), ("kpff", True)))
