"""The GDKVM network: paper size, memory rules, constant state, frozen BatchNorm, autocast, config errors and
checkpoint mismatches (the behaviour every registered model shares, stepper == clip, gradients, prompts and
the checkpoint round trip included, is in tests/models/test_conformance.py)."""

from __future__ import annotations

import pytest
import torch

from gdkvm.errors import DataError, GdkvmError
from gdkvm.models.config import ModelConfig, preset_config
from gdkvm.models.gdkvm import GDKVM
from gdkvm.models.memory import MEMORY_RULES, build_memory
from gdkvm.models.registry import build_model, count_model_parameters, get_variant, list_variants
from gdkvm.models.weights import load_model, read_checkpoint_metadata, save_checkpoint
from tests.models.calibration import calibrate_batchnorm

PAPER_PARAMS = 35.2e6  # GDKVM's size reported in the paper (Sec. 4.2)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tiny models gain nothing from intra-op threads, and on a shared 2-core machine OpenMP spinning
    makes them up to 10x slower; restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def calibrated(model: GDKVM, clip: torch.Tensor) -> GDKVM:
    """Eval-mode model whose BatchNorm statistics come from ``clip`` (random init would saturate)."""
    return calibrate_batchnorm(model, clip)


def tiny(rule: str = "gdr", **overrides) -> GDKVM:
    return GDKVM(preset_config("tiny").replace(memory_rule=rule, **overrides))


def stream(model: GDKVM, clip: torch.Tensor, prompt=None) -> tuple[torch.Tensor, list[int]]:
    stepper = model.stepper()
    outs, sizes = [], []
    for t in range(clip.shape[1]):
        outs.append(stepper.step(clip[:, t], first_frame_mask=prompt if t == 0 else None))
        sizes.append(stepper.state_bytes())
    return torch.stack(outs, dim=1), sizes


def test_paper_preset_matches_paper_parameter_count():
    n = count_model_parameters("full", "paper")
    assert abs(n - PAPER_PARAMS) <= 0.05 * PAPER_PARAMS, n


def test_memory_is_built_by_build_memory_with_config():
    model = GDKVM(preset_config("tiny").replace(decay_form="official"))
    reference = build_memory("gdr", 16, 32, heads=4, decay_form="official")
    assert type(model.memory) is type(reference)
    assert model.memory.decay_form == "official"
    assert (model.memory.key_dim, model.memory.value_dim, model.memory.heads) == (16, 32, 4)


def test_every_memory_rule_is_a_registered_variant():
    """The conformance test runs every registered variant, so it covers every memory rule."""
    assert {get_variant(v).memory_rule for v in list_variants()} >= set(MEMORY_RULES)


def test_declared_state_follows_the_memory_rule():
    growing = tiny("softmax")
    cfg = growing.config
    assert not growing.constant_state and growing.memory_name == "softmax"
    # softmax attention keeps every frame's keys and values: per object, per stride-16 pixel, fp32
    assert growing.state_growth_bytes(2, 64, 48) == 2 * 1 * (4 * 3) * (cfg.key_dim + cfg.value_dim) * 4
    assert "softmax grows every frame" in growing.graph_capture_blocker
    flat = tiny("gdr")
    assert flat.constant_state and flat.state_growth_bytes(2, 64, 48) == 0 and flat.graph_capture_blocker == ""
    assert flat.memory_module is flat.memory and flat.memory_name == "gdr"
    assert tiny("gdr", freeze_bn=True).freezes_batchnorm and not flat.freezes_batchnorm


def test_gate_parameters_name_the_sources_of_each_gate():
    memory = tiny("gdr").memory
    by_id = {id(p): n for n, p in memory.named_parameters()}
    gates = memory.gate_parameters()
    assert {k: sorted(by_id[id(p)] for p in v) for k, v in gates.items()} == {
        "alpha": ["gates.A_log", "gates.a_proj.weight", "gates.dt_bias"], "beta": ["gates.b_proj.bias", "gates.b_proj.weight"]}
    assert tiny("linear").memory.gate_parameters() == {}
    assert set(tiny("gdr-wo-beta").memory.gate_parameters()) == {"alpha"}


def test_train_mode_matches_with_frozen_batchnorm():
    torch.manual_seed(4)
    clip = torch.rand(1, 3, 1, 32, 32, dtype=torch.float64)
    model = tiny("gdr", freeze_bn=True).double().train()
    assert model.training and not model.key_encoder.bn1.training
    whole = model(clip)
    streamed, _ = stream(model, clip)
    torch.testing.assert_close(streamed, whole, rtol=1e-9, atol=1e-9)


def test_autocast_keeps_state_in_fp32():
    model = tiny("gdr").eval()
    stepper = model.stepper()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = [stepper.step(torch.rand(1, 1, 32, 32)) for _ in range(3)]
    assert all(o.dtype == torch.float32 and torch.isfinite(o).all() for o in out)
    state = stepper.state
    assert state.sensory.dtype == state.prev_mask.dtype == state.obj_memory.dtype == torch.float32
    assert state.memory["S"].dtype == torch.float32


def test_object_transformer_can_be_switched_off():
    on = count_model_parameters("full", "tiny")
    off = count_model_parameters("full", "tiny", object_transformer=False)
    assert off < on
    model = build_model("full", "tiny", object_transformer=False).eval()
    assert model.object_transformer is None and model.object_summarizer is None
    with torch.no_grad():
        assert model(torch.rand(1, 2, 1, 32, 32)).shape == (1, 2, 2, 32, 32)


def test_bad_config_values():
    with pytest.raises(GdkvmError, match="unknown memory rule 'nope'; valid: delta, gdr"):
        ModelConfig(memory_rule="nope")
    with pytest.raises(GdkvmError, match="divisible by memory_heads"):
        preset_config("tiny").replace(value_dim=30)
    with pytest.raises(GdkvmError, match=r"unknown field\(s\) \['widht'\]"):
        preset_config("tiny").replace(widht=3)


def test_checkpoint_mismatch_is_one_line(tmp_path):
    from safetensors.torch import load_file, save_file

    model = build_model("full", "tiny")
    path = save_checkpoint(model, tmp_path / "ckpt.safetensors")
    meta = read_checkpoint_metadata(path)
    state = load_file(str(path))
    state["pix_proj.weight"] = torch.zeros(1, 1, 1, 1)
    state.pop("decoder.pred.bias")
    save_file(state, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(DataError) as info:
        load_model(tmp_path / "bad.safetensors")
    msg = str(info.value)
    assert "\n" not in msg
    assert "missing key(s): decoder.pred.bias" in msg
    assert "pix_proj.weight expected (32, 256, 1, 1) got (1, 1, 1, 1)" in msg
    (tmp_path / "plain.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a safetensors checkpoint"):
        load_model(tmp_path / "plain.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(DataError, match="not a gdkvm checkpoint"):
        load_model(tmp_path / "other.safetensors")
