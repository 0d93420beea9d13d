"""Frame-wise U-Net baseline: registry, sizes and config errors (the behaviour shared by every model, frame-wise
outputs and prompts included, is in tests/models/test_conformance.py)."""

from __future__ import annotations

import pytest
import torch

from baselines.unet import UNet, UNetConfig, build_unet, unet_config
from gdkvm.errors import ConfigError
from gdkvm.models.registry import build_model, count_model_parameters, get_variant, list_variants


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads on a shared 2-core machine; restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_registered_and_built_by_preset():
    assert "unet" in list_variants()
    spec = get_variant("unet")
    assert spec.builder is build_unet and spec.paper_label == "-" and spec.memory_rule is None
    model = build_model("unet", preset="tiny")
    assert isinstance(model, UNet) and model.variant == "unet" and model.num_objects == 1
    assert model.config == unet_config("tiny")
    two = build_model("unet", preset="tiny", num_objects=2)
    assert two.config.num_objects == 2 and two.head.out_channels == 3


def test_sizes_per_preset():
    # the classic width-64 U-Net: every weight counted by hand from the layer widths
    widths = [64 * 2**i for i in range(5)]

    def double_conv(cin: int, cout: int) -> int:
        return cin * cout * 9 + cout * cout * 9 + 4 * cout  # two bias-free convs + two BatchNorms (w, b)

    expected = double_conv(1, 64)
    expected += sum(double_conv(widths[i], widths[i + 1]) for i in range(4))
    expected += sum(widths[i + 1] * widths[i] * 4 + widths[i] + double_conv(2 * widths[i], widths[i])
                    for i in range(4))
    expected += 64 * 2 + 2  # 1x1 head to background + 1 object
    assert count_model_parameters("unet", "paper") == expected
    assert 7e6 <= expected <= 32e6
    assert count_model_parameters("unet", "tiny") < 2_000_000


def test_unknown_preset_and_field_are_one_line_errors():
    for call in (lambda: build_model("unet", preset="huge"), lambda: build_unet("huge")):
        with pytest.raises(ConfigError, match=r"^unknown preset 'huge'; valid: paper, small, tiny$"):
            call()
    with pytest.raises(ConfigError, match=r"unet config: unknown field\(s\) \['widht'\]"):
        build_unet("tiny", widht=3)
    with pytest.raises(ConfigError, match="depth must be at most 4"):
        UNetConfig(depth=5)
    with pytest.raises(ConfigError, match="base_width must be a positive integer"):
        UNetConfig(base_width=0)


