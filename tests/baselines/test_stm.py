"""Space-time memory baseline: registry, sizes, affinity readout, growing memory, fp32 bank and ImageNet
weights (the behaviour shared by every model is in tests/models/test_conformance.py)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from baselines.stm import STM, STMConfig, STMState, build_stm, stm_config
from gdkvm.errors import ConfigError
from gdkvm.models.backbone import ResNetTrunk
from gdkvm.models.registry import build_model, count_model_parameters, get_variant, list_variants
from gdkvm.models.weights import load_imagenet_backbones


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads on a shared 2-core machine; restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_registered_and_built_by_preset():
    assert "stm" in list_variants()
    spec = get_variant("stm")
    assert spec.builder is build_stm and spec.paper_label == "-" and spec.memory_rule is None
    model = build_model("stm", preset="tiny")
    assert isinstance(model, STM) and model.variant == "stm" and model.num_objects == 1
    assert model.config == stm_config("tiny")
    assert build_model("stm", "tiny", similarity="dot").config.similarity == "dot"


def test_sizes_per_preset():
    with torch.device("meta"):
        paper = build_stm("paper")
    assert paper.key_encoder.arch == "resnet50" and paper.key_encoder.width == 64
    assert 30e6 <= count_model_parameters("stm", "paper") <= 40e6
    assert count_model_parameters("stm", "tiny") < 2_000_000


def test_unknown_preset_and_bad_fields_are_one_line_errors():
    for call in (lambda: build_model("stm", preset="huge"), lambda: build_stm("huge")):
        with pytest.raises(ConfigError, match=r"^unknown preset 'huge'; valid: paper, small, tiny$"):
            call()
    with pytest.raises(ConfigError, match=r"stm config: unknown field\(s\) \['keydim'\]"):
        build_stm("tiny", keydim=3)
    with pytest.raises(ConfigError, match="similarity 'cos' is not one of"):
        STMConfig(similarity="cos")
    with pytest.raises(ConfigError, match="key_backbone 'vgg' is not one of"):
        STMConfig(key_backbone="vgg")


@pytest.mark.parametrize("similarity", ["l2", "dot"])
def test_readout_is_softmax_attention_over_every_memory_pixel(similarity):
    torch.manual_seed(0)
    model = build_stm("tiny", num_objects=2, similarity=similarity).double()
    b, ck, cv, o, h, w, frames = 2, 16, 32, 2, 2, 3, 3
    keys = torch.randn(b, ck, frames * h * w, dtype=torch.float64)
    values = torch.randn(b, o, cv, frames * h * w, dtype=torch.float64)
    query = torch.randn(b, ck, h, w, dtype=torch.float64)
    out = model.read(STMState(keys=keys, values=values, frames=frames), query)
    # reference: one query pixel at a time, similarity from the definitions
    q = query.flatten(2)
    ref = torch.empty(b, o, cv, h * w, dtype=torch.float64)
    for i in range(b):
        for j in range(h * w):
            if similarity == "l2":
                sim = -((keys[i] - q[i, :, j : j + 1]) ** 2).sum(dim=0)
            else:
                sim = (keys[i] * q[i, :, j : j + 1]).sum(dim=0)
            weights = torch.softmax(sim / ck**0.5, dim=0)
            ref[i, :, :, j] = (values[i] * weights).sum(dim=-1)
    torch.testing.assert_close(out, ref.view(b, o, cv, h, w))
    empty = model.init_state(b, torch.device("cpu"), torch.float64)
    assert torch.equal(model.read(empty, query), torch.zeros(b, o, cv, h, w, dtype=torch.float64))


def test_bank_grows_by_one_frame_of_keys_and_values():
    # every frame adds its keys (shared by objects) and one value map per object, h * w pixels each; the
    # conformance test checks that the stepper's state grows by exactly this
    model = build_stm("tiny", num_objects=3)
    cfg = model.config
    assert not model.constant_state and model.memory_name == "-"
    assert model.state_growth_bytes(2, 64, 48) == 2 * (cfg.key_dim + 3 * cfg.value_dim) * (4 * 3) * 4
    assert model.state_growth_bytes(2, 64, 48, torch.float64) == 2 * model.state_growth_bytes(2, 64, 48)
    assert model.state_growth_bytes(2, 64, 48, torch.bfloat16) == model.state_growth_bytes(2, 64, 48)


def test_autocast_keeps_memory_in_fp32():
    model = build_stm("tiny").eval()
    stepper = model.stepper()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = [stepper.step(torch.rand(1, 1, 32, 32)) for _ in range(3)]
    assert all(o.dtype == torch.float32 and torch.isfinite(o).all() for o in out)
    assert stepper.state.keys.dtype == stepper.state.values.dtype == torch.float32


def test_imagenet_weights_load_into_the_value_encoder(tmp_path):
    torch.manual_seed(6)
    model = build_stm("tiny", value_backbone_width=64)
    source = ResNetTrunk("resnet18", in_channels=3, width=64)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(state, str(tmp_path / "resnet18.safetensors"))
    lines = load_imagenet_backbones(model, [tmp_path / "resnet18.safetensors"])
    assert lines == ["value_encoder <- resnet18.safetensors"]
    conv1 = model.value_encoder.conv1.weight
    assert torch.equal(conv1[:, :3], state["conv1.weight"]) and not conv1[:, 3:].any()
    assert torch.equal(model.value_encoder.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])


