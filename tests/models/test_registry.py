"""Variant registry: paper rows -> configs, presets, errors, and open registration for other modules."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from gdkvm.errors import ConfigError
from gdkvm.models import registry
from gdkvm.models.config import PRESETS, preset_config
from gdkvm.models.gdkvm import GDKVM
from gdkvm.models.interface import SegmentationModelBase
from gdkvm.models.registry import (
    VariantSpec,
    build_model,
    get_variant,
    list_variants,
    model_config,
    register_variant,
)

# Table 3 ticks (LKVA, GDR, KPFF) and Table 4 recurrences, read off the paper, mapped to (rule, kpff)
EXPECTED = {
    "lkva": ("Table 3", "linear", False),
    "lkva-kpff": ("Table 3", "linear", True),
    "lkva-gdr": ("Table 3", "gdr", False),
    "full": ("Table 3", "gdr", True),
    "linear": ("Table 4", "linear", True),
    "delta": ("Table 4", "delta", True),
    "wo-alpha": ("Table 4", "gdr-wo-alpha", True),
    "wo-beta": ("Table 4", "gdr-wo-beta", True),
    "gdr": ("Table 4", "gdr", True),
    "gka": (None, "gka", True),
    "softmax-memory": (None, "softmax", True),
}


def test_all_variants_registered():
    assert set(EXPECTED) <= set(list_variants())
    assert list_variants() == sorted(list_variants())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_variant_maps_to_paper_row(name):
    table, rule, kpff = EXPECTED[name]
    spec = get_variant(name)
    assert spec.name == name
    assert spec.paper_table == table
    assert (spec.paper_mdice is None) == (table is None)
    cfg = model_config(name, "tiny")
    assert (cfg.memory_rule, cfg.kpff) == (rule, kpff)
    assert (spec.memory_rule, spec.kpff) == (rule, kpff)


def test_gdr_row_is_the_full_network():
    assert model_config("gdr", "paper") == model_config("full", "paper")
    # the paper reports one number for this network in both tables
    assert get_variant("gdr").paper_mdice == get_variant("full").paper_mdice
    # and Table 4's baseline (linear + KPFF) is Table 3's LKVA + KPFF row
    assert get_variant("linear").paper_mdice == get_variant("lkva-kpff").paper_mdice


def test_build_model_applies_preset_and_overrides():
    model = build_model("lkva", "tiny", num_objects=2, decay_form="official")
    assert isinstance(model, GDKVM)
    assert model.variant == "lkva"
    assert model.kpff is None
    assert model.config == preset_config("tiny").replace(memory_rule="linear", kpff=False, num_objects=2,
                                                         decay_form="official")
    with torch.device("meta"):
        paper = build_model("full", "paper")
    assert paper.config == preset_config("paper")


def test_unknown_names_list_valid_ones():
    with pytest.raises(ConfigError) as info:
        get_variant("fulll")
    msg = str(info.value)
    assert msg.startswith("unknown variant 'fulll'; valid: ")
    for name in EXPECTED:
        assert name in msg
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'; valid: paper, small, tiny"):
        build_model("full", "huge")
    with pytest.raises(ConfigError, match="unknown field"):
        build_model("full", "tiny", not_a_field=1)
    assert PRESETS == ("paper", "tiny", "small")


@dataclasses.dataclass(frozen=True)
class _ConstantConfig:
    width: int


class _ConstantStepper:
    frames = 0

    def reset(self) -> None: ...

    def step(self, frame, first_frame_mask=None): ...

    def state_bytes(self) -> int:
        return 0


class _Constant(SegmentationModelBase):
    """A stand-in model with the declared interface (the registry checks every model it builds)."""

    def __init__(self, width: int):
        super().__init__()
        self.config = _ConstantConfig(width)
        self.num_objects = 1
        self.conv = nn.Conv2d(1, width, 1)

    def stepper(self) -> _ConstantStepper:
        return _ConstantStepper()


def test_other_modules_can_register_builders():
    calls = []

    def build_constant(preset: str, **overrides) -> nn.Module:
        calls.append((preset, overrides))
        return _Constant(width=4 if preset == "tiny" else 64)

    @register_variant
    def test_only_constant() -> VariantSpec:
        return VariantSpec(name="test-only-constant", description="a stand-in baseline", builder=build_constant)

    try:
        assert "test-only-constant" in list_variants()
        model = build_model("test-only-constant", "paper", depth=3)
        assert isinstance(model, _Constant) and model.conv.out_channels == 64
        assert model.variant == "test-only-constant"
        assert calls == [("paper", {"depth": 3})]
        spec = get_variant("test-only-constant")
        assert spec.memory_rule is None and spec.kpff is None and spec.paper_label == "-"
        with pytest.raises(ConfigError, match="not a GDKVM variant"):
            model_config("test-only-constant")

        with pytest.raises(ConfigError, match="already registered"):
            register_variant(name="test-only-constant")(lambda: spec)
    finally:
        registry._REGISTRY.pop("test-only-constant", None)
    assert "test-only-constant" not in list_variants()


def test_spec_name_must_match_registration():
    @register_variant(name="test-only-misnamed")
    def misnamed() -> VariantSpec:
        return VariantSpec(name="something-else", description="")

    try:
        with pytest.raises(ConfigError, match="returned a spec named 'something-else'"):
            get_variant("test-only-misnamed")
    finally:
        registry._REGISTRY.pop("test-only-misnamed", None)


def test_variant_fields_cannot_be_overridden():
    with pytest.raises(ConfigError, match="variant 'full' sets memory_rule itself"):
        build_model("full", "tiny", memory_rule="linear")


def test_package_reexports():
    import gdkvm.models as models

    assert models.GDKVM is GDKVM and models.build_model is build_model
    with pytest.raises(AttributeError):
        models.not_there  # noqa: B018
