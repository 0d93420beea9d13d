"""Space-time memory baseline: registry, interface, affinity readout, clip == stream, growing memory,
gradients, prompts, ImageNet weights and checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from baselines.stm import STM, STMConfig, STMState, build_stm, stm_config
from gdkvm.cli.main import app
from gdkvm.errors import ConfigError, GdkvmError
from gdkvm.models.backbone import ResNetTrunk
from gdkvm.models.modules import soft_aggregate
from gdkvm.models.registry import build_model, count_model_parameters, get_variant, list_variants
from gdkvm.models.weights import (
    load_imagenet_backbones,
    load_model,
    read_checkpoint_metadata,
    save_checkpoint,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads on a shared 2-core machine; restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def calibrated(model: nn.Module, clip: torch.Tensor) -> nn.Module:
    """Eval-mode model whose BatchNorm statistics come from ``clip`` (random init would saturate)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(clip)
    return model.eval()


def stream(model: STM, clip: torch.Tensor, prompt=None) -> tuple[torch.Tensor, list[int]]:
    stepper = model.stepper()
    outs, sizes = [], []
    for t in range(clip.shape[1]):
        outs.append(stepper.step(clip[:, t], first_frame_mask=prompt if t == 0 else None))
        sizes.append(stepper.state_bytes())
    assert stepper.frames == clip.shape[1]
    return torch.stack(outs, dim=1), sizes


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


def test_forward_shape_and_background_channel():
    torch.manual_seed(1)
    model = build_stm("tiny", num_objects=2).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 1, 64, 48))
    assert logits.shape == (2, 3, 3, 64, 48) and logits.dtype == torch.float32
    prob = torch.softmax(logits, dim=2)
    torch.testing.assert_close(prob.sum(dim=2), torch.ones(2, 3, 64, 48))
    # channel 0 is the background: an empty first-frame prompt is background everywhere
    with torch.no_grad():
        empty = model(torch.rand(2, 2, 1, 64, 48), first_frame_mask=torch.zeros(2, 64, 48, dtype=torch.long))
    assert (empty[:, 0].argmax(dim=1) == 0).all()


def test_stepper_equals_clip_and_memory_grows_linearly():
    torch.manual_seed(2)
    clip = torch.rand(2, 5, 1, 64, 64, dtype=torch.float64)
    model = calibrated(build_stm("tiny").double(), clip)
    with torch.no_grad():
        whole = model(clip)
        streamed, sizes = stream(model, clip)
    assert whole.shape == (2, 5, 2, 64, 64)
    # the comparison is only meaningful if the logits are not all clamped by the soft aggregation
    assert (whole.abs() < 15).float().mean() > 0.5
    torch.testing.assert_close(streamed, whole, rtol=1e-9, atol=1e-9)
    # every frame adds its keys (shared by objects) and one value map per object, in float64 here
    cfg = model.config
    per_frame = 2 * (cfg.key_dim + model.num_objects * cfg.value_dim) * (64 // 16) * (64 // 16) * 8
    assert sizes == [per_frame * (t + 1) for t in range(5)]


def test_memory_carries_information_across_frames():
    torch.manual_seed(3)
    clip = torch.rand(1, 3, 1, 32, 32, dtype=torch.float64)
    model = calibrated(build_stm("tiny").double(), clip)
    changed = clip.clone()
    changed[:, 0] = torch.rand(1, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        a, b = model(clip), model(changed)
    assert not torch.allclose(a[:, 2], b[:, 2])  # frame 2 sees frame 0 through the memory


def test_gradients_reach_every_parameter():
    torch.manual_seed(4)
    model = build_stm("tiny").train()
    clip = torch.rand(1, 3, 1, 64, 64)
    target = (torch.rand(1, 3, 64, 64) > 0.5).long()
    logits = model(clip)
    loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(0, 1))
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_first_frame_prompt():
    torch.manual_seed(5)
    clip = torch.rand(2, 4, 1, 32, 32, dtype=torch.float64)
    model = calibrated(build_stm("tiny").double(), clip)
    prompt = (torch.rand(2, 1, 32, 32) > 0.5).double()
    with torch.no_grad():
        plain = model(clip)
        prompted = model(clip, first_frame_mask=prompt)
        labels = model(clip, first_frame_mask=prompt[:, 0].long())
        streamed, _ = stream(model, clip, prompt)
    torch.testing.assert_close(prompted[:, 0], soft_aggregate(prompt))
    assert not torch.allclose(prompted[:, 1:], plain[:, 1:])  # the prompt is written into memory
    torch.testing.assert_close(labels, prompted)
    torch.testing.assert_close(streamed, prompted, rtol=1e-9, atol=1e-9)


def test_stepper_checks_and_reset():
    model = build_stm("tiny").eval()
    stepper = model.stepper()
    frame = torch.rand(1, 1, 32, 32)
    assert stepper.state_bytes() == 0
    with pytest.raises(GdkvmError, match="labels must be in 0..1"):
        stepper.step(frame, first_frame_mask=torch.full((1, 32, 32), 2))
    with torch.no_grad():
        stepper.step(frame)
    with pytest.raises(GdkvmError, match="only allowed on the first frame"):
        stepper.step(frame, first_frame_mask=torch.zeros(1, 1, 32, 32))
    with pytest.raises(GdkvmError, match="like the previous frames"):
        stepper.step(torch.rand(1, 1, 48, 48))
    stepper.reset()
    assert stepper.frames == 0 and stepper.state_bytes() == 0
    with torch.no_grad():
        stepper.step(torch.rand(1, 1, 48, 48))
    assert stepper.frames == 1


def test_autocast_keeps_memory_in_fp32():
    model = build_stm("tiny").eval()
    stepper = model.stepper()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = [stepper.step(torch.rand(1, 1, 32, 32)) for _ in range(3)]
    assert all(o.dtype == torch.float32 and torch.isfinite(o).all() for o in out)
    assert stepper.state.keys.dtype == stepper.state.values.dtype == torch.float32


@pytest.mark.parametrize(
    "clip,problem",
    [
        (torch.rand(1, 2, 32, 32), "got shape (1, 2, 32, 32)"),
        (torch.zeros(1, 2, 1, 32, 32, dtype=torch.uint8), "got dtype torch.uint8"),
        (torch.rand(1, 2, 1, 40, 32), "got H x W = 40 x 32"),
    ],
    ids=["4d", "uint8", "not-16"],
)
def test_bad_clips_raise_one_line(clip, problem):
    model = build_stm("tiny")
    with pytest.raises(GdkvmError) as info:
        model(clip)
    msg = str(info.value)
    assert "expected a float tensor of shape (B, T, 1, H, W) with H and W divisible by 16" in msg
    assert problem in msg and "\n" not in msg


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


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(7)
    model = build_model("stm", "tiny", similarity="dot").eval()
    path = save_checkpoint(model, tmp_path / "ckpt.safetensors")
    meta = read_checkpoint_metadata(path)
    assert meta["variant"] == "stm" and meta["model_class"] == "baselines.stm:STM"
    back = load_model(path, variant="stm").eval()
    assert isinstance(back, STM) and back.config == model.config and back.variant == "stm"
    clip = torch.rand(1, 3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(clip), model(clip), rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]


def test_variants_command_lists_it():
    result = CliRunner().invoke(app, ["variants"])
    assert result.exit_code == 0, result.output
    assert "stm" in result.output
