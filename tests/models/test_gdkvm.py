"""The GDKVM network: size, clip wrapper == streaming stepper, state size, gradients, prompts, bad input,
and self-describing checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gdkvm.errors import DataError, GdkvmError
from gdkvm.models.config import ModelConfig, preset_config
from gdkvm.models.gdkvm import GDKVM
from gdkvm.models.memory import MEMORY_RULES, build_memory
from gdkvm.models.modules import soft_aggregate
from gdkvm.models.registry import build_model, count_model_parameters, list_variants
from gdkvm.models.weights import check_variant, load_model, read_checkpoint_metadata, save_checkpoint

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
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one pass sets the statistics
    model.train()
    with torch.no_grad():
        model(clip)
    return model.eval()


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


def test_tiny_preset_is_small_for_every_variant():
    for name in list_variants():
        assert count_model_parameters(name, "tiny") < 2_000_000, name


def test_memory_is_built_by_build_memory_with_config():
    model = GDKVM(preset_config("tiny").replace(decay_form="official"))
    reference = build_memory("gdr", 16, 32, heads=4, decay_form="official")
    assert type(model.memory) is type(reference)
    assert model.memory.decay_form == "official"
    assert (model.memory.key_dim, model.memory.value_dim, model.memory.heads) == (16, 32, 4)


@pytest.mark.parametrize("rule", MEMORY_RULES)
def test_stepper_equals_clip_wrapper(rule):
    torch.manual_seed(0)
    clip = torch.rand(2, 5, 1, 64, 64, dtype=torch.float64)
    model = calibrated(tiny(rule).double(), clip)
    with torch.no_grad():
        whole = model(clip)
        streamed, sizes = stream(model, clip)
    assert whole.shape == (2, 5, 2, 64, 64)
    # the comparison is only meaningful if the logits are not all clamped by the soft aggregation
    assert (whole.abs() < 15).float().mean() > 0.5
    torch.testing.assert_close(streamed, whole, rtol=1e-9, atol=1e-9)
    if model.memory.constant_state:
        assert len(set(sizes)) == 1, sizes
    else:
        assert rule == "softmax"
        assert all(b > a for a, b in zip(sizes[:-1], sizes[1:], strict=True)), sizes


def test_stepper_state_size_independent_of_length():
    model = tiny("gdr").eval()
    stepper = model.stepper()
    with torch.no_grad():
        stepper.step(torch.rand(1, 1, 32, 32))
        first = stepper.state_bytes()
        for _ in range(12):
            stepper.step(torch.rand(1, 1, 32, 32))
    assert stepper.frames == 13
    assert stepper.state_bytes() == first > 0


def test_forward_backward_reaches_gates_and_kpff():
    torch.manual_seed(0)
    model = tiny("gdr").train()
    clip = torch.rand(1, 10, 1, 128, 128)
    target = (torch.rand(1, 10, 128, 128) > 0.5).long()
    logits = model(clip)
    assert logits.shape == (1, 10, 2, 128, 128)
    loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(0, 1))
    loss.backward()
    assert torch.isfinite(loss)
    gates = dict(model.memory.named_parameters())
    assert {"gates.a_proj.weight", "gates.b_proj.weight", "gates.A_log", "gates.dt_bias"} <= set(gates)
    for name, p in list(gates.items()) + list(model.kpff.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


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


def test_first_frame_prompt():
    torch.manual_seed(1)
    clip = torch.rand(2, 4, 1, 32, 32, dtype=torch.float64)
    model = calibrated(tiny("gdr").double(), clip)
    prompt = (torch.rand(2, 1, 32, 32) > 0.5).double()
    with torch.no_grad():
        plain = model(clip)
        prompted = model(clip, first_frame_mask=prompt)
        labels = model(clip, first_frame_mask=prompt[:, 0].long())
        streamed, _ = stream(model, clip, prompt)
    torch.testing.assert_close(prompted[:, 0], soft_aggregate(prompt))
    assert torch.equal(prompted[:, 0].argmax(1), prompt[:, 0].long())
    assert not torch.allclose(prompted[:, 1:], plain[:, 1:])  # the prompt is written into memory
    torch.testing.assert_close(labels, prompted)
    torch.testing.assert_close(streamed, prompted, rtol=1e-9, atol=1e-9)


def test_prompt_only_on_first_frame_and_checked():
    model = tiny().eval()
    stepper = model.stepper()
    frame = torch.rand(1, 1, 32, 32)
    with pytest.raises(GdkvmError, match=r"expected \(B=1, O=1, H=32, W=32\)"):
        stepper.step(frame, first_frame_mask=torch.zeros(1, 1, 16, 16))
    with pytest.raises(GdkvmError, match="labels must be in 0..1"):
        stepper.step(frame, first_frame_mask=torch.full((1, 32, 32), 2))
    with torch.no_grad():
        stepper.step(frame)
    with pytest.raises(GdkvmError, match="only allowed on the first frame"):
        stepper.step(frame, first_frame_mask=torch.zeros(1, 1, 32, 32))
    with pytest.raises(GdkvmError, match=r"like the previous frames"):
        stepper.step(torch.rand(1, 1, 48, 48))


def test_multiple_objects():
    torch.manual_seed(2)
    clip = torch.rand(1, 3, 1, 32, 48, dtype=torch.float64)
    model = calibrated(tiny("gdr", num_objects=3).double(), clip)
    with torch.no_grad():
        whole = model(clip)
        streamed, _ = stream(model, clip)
    assert whole.shape == (1, 3, 4, 32, 48)
    torch.testing.assert_close(streamed, whole, rtol=1e-9, atol=1e-9)


def test_object_transformer_can_be_switched_off():
    on = count_model_parameters("full", "tiny")
    off = count_model_parameters("full", "tiny", object_transformer=False)
    assert off < on
    model = build_model("full", "tiny", object_transformer=False).eval()
    assert model.object_transformer is None and model.object_summarizer is None
    with torch.no_grad():
        assert model(torch.rand(1, 2, 1, 32, 32)).shape == (1, 2, 2, 32, 32)


@pytest.mark.parametrize(
    "clip,problem",
    [
        (torch.rand(1, 2, 32, 32), "got shape (1, 2, 32, 32)"),
        (torch.rand(1, 2, 3, 32, 32), "got shape (1, 2, 3, 32, 32)"),
        (torch.zeros(1, 2, 1, 32, 32, dtype=torch.uint8), "got dtype torch.uint8"),
        (torch.rand(1, 2, 1, 40, 32), "got H x W = 40 x 32"),
        (torch.rand(1, 0, 1, 32, 32), "got shape (1, 0, 1, 32, 32)"),
        ([[0.0]], "got list"),
    ],
    ids=["4d", "rgb", "uint8", "not-16", "empty", "list"],
)
def test_bad_clips_raise_one_line(clip, problem):
    model = tiny()
    with pytest.raises(GdkvmError) as info:
        model(clip)
    msg = str(info.value)
    assert "expected a float tensor of shape (B, T, 1, H, W) with H and W divisible by 16" in msg
    assert problem in msg and "\n" not in msg


def test_bad_config_values():
    with pytest.raises(GdkvmError, match="unknown memory rule 'nope'; valid: delta, gdr"):
        ModelConfig(memory_rule="nope")
    with pytest.raises(GdkvmError, match="divisible by memory_heads"):
        preset_config("tiny").replace(value_dim=30)
    with pytest.raises(GdkvmError, match=r"unknown field\(s\) \['widht'\]"):
        preset_config("tiny").replace(widht=3)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(3)
    model = build_model("wo-alpha", "tiny", decay_form="exp").eval()
    path = save_checkpoint(model, tmp_path / "ckpt.safetensors", extra_metadata={"epoch": 7, "note": "x"})
    meta = read_checkpoint_metadata(path)
    assert meta["variant"] == "wo-alpha" and meta["epoch"] == "7" and meta["note"] == "x"
    back = load_model(path, variant="wo-alpha").eval()
    assert isinstance(back, GDKVM) and back.config == model.config and back.variant == "wo-alpha"
    clip = torch.rand(1, 3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(clip), model(clip), rtol=0, atol=0)
    with pytest.raises(DataError, match="checkpoint is variant 'wo-alpha', expected variant 'full'"):
        check_variant(path, "full")
    assert not [p for p in tmp_path.iterdir() if p.name != "ckpt.safetensors"]  # no temp files left


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
