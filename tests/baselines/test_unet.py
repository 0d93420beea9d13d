"""Frame-wise U-Net baseline: registry, interface, clip == stream, no state, gradients, prompts, checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from baselines.unet import UNet, UNetConfig, build_unet, unet_config
from gdkvm.cli.main import app
from gdkvm.errors import ConfigError, GdkvmError
from gdkvm.models.modules import soft_aggregate
from gdkvm.models.registry import build_model, count_model_parameters, get_variant, list_variants
from gdkvm.models.weights import load_model, read_checkpoint_metadata, save_checkpoint


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads on a shared 2-core machine; restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def calibrated(model: nn.Module, clip: torch.Tensor) -> nn.Module:
    """Eval-mode model whose BatchNorm statistics come from ``clip``."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(clip)
    return model.eval()


def stream(model: UNet, clip: torch.Tensor, prompt=None) -> tuple[torch.Tensor, list[int]]:
    stepper = model.stepper()
    outs, sizes = [], []
    for t in range(clip.shape[1]):
        outs.append(stepper.step(clip[:, t], first_frame_mask=prompt if t == 0 else None))
        sizes.append(stepper.state_bytes())
    assert stepper.frames == clip.shape[1]
    return torch.stack(outs, dim=1), sizes


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


def test_forward_shape_and_background_channel():
    torch.manual_seed(0)
    model = build_unet("tiny", num_objects=2).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 1, 64, 48))
    assert logits.shape == (2, 3, 3, 64, 48) and logits.dtype == torch.float32
    # channel 0 is the background: a (background, object 1, object 2) softmax over the head's outputs
    prob = torch.softmax(logits, dim=2)
    torch.testing.assert_close(prob.sum(dim=2), torch.ones(2, 3, 64, 48))


def test_stepper_equals_clip_and_keeps_no_state():
    torch.manual_seed(1)
    clip = torch.rand(2, 4, 1, 64, 64, dtype=torch.float64)
    model = calibrated(build_unet("tiny").double(), clip)
    with torch.no_grad():
        whole = model(clip)
        streamed, sizes = stream(model, clip)
        # frame-wise: each frame's output depends on that frame alone
        alone = torch.stack([model(clip[:, t : t + 1])[:, 0] for t in range(4)], dim=1)
    assert whole.shape == (2, 4, 2, 64, 64)
    assert whole.std() > 1e-3  # not a constant map
    torch.testing.assert_close(streamed, whole, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(alone, whole, rtol=1e-12, atol=1e-12)
    assert sizes == [0, 0, 0, 0]


def test_gradients_reach_every_parameter():
    torch.manual_seed(2)
    model = build_unet("tiny").train()
    clip = torch.rand(1, 3, 1, 64, 64)
    target = (torch.rand(1, 3, 64, 64) > 0.5).long()
    logits = model(clip)
    loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(0, 1))
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_first_frame_prompt_is_returned_and_changes_nothing_else():
    torch.manual_seed(3)
    clip = torch.rand(2, 3, 1, 32, 32, dtype=torch.float64)
    model = calibrated(build_unet("tiny").double(), clip)
    prompt = (torch.rand(2, 1, 32, 32) > 0.5).double()
    with torch.no_grad():
        plain = model(clip)
        prompted = model(clip, first_frame_mask=prompt)
        labels = model(clip, first_frame_mask=prompt[:, 0].long())
        streamed, _ = stream(model, clip, prompt)
    torch.testing.assert_close(prompted[:, 0], soft_aggregate(prompt))
    assert torch.equal(prompted[:, 0].argmax(1), prompt[:, 0].long())
    torch.testing.assert_close(prompted[:, 1:], plain[:, 1:], rtol=0, atol=0)
    torch.testing.assert_close(labels, prompted)
    torch.testing.assert_close(streamed, prompted, rtol=1e-12, atol=1e-12)


def test_stepper_prompt_rules_and_reset():
    model = build_unet("tiny").eval()
    stepper = model.stepper()
    frame = torch.rand(1, 1, 32, 32)
    with pytest.raises(GdkvmError, match=r"expected \(B=1, O=1, H=32, W=32\)"):
        stepper.step(frame, first_frame_mask=torch.zeros(1, 1, 16, 16))
    with torch.no_grad():
        stepper.step(frame)
    with pytest.raises(GdkvmError, match="only allowed on the first frame"):
        stepper.step(frame, first_frame_mask=torch.zeros(1, 1, 32, 32))
    stepper.reset()
    assert stepper.frames == 0
    with torch.no_grad():
        stepper.step(frame, first_frame_mask=torch.zeros(1, 1, 32, 32))
    assert stepper.frames == 1


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
    model = build_unet("tiny")
    with pytest.raises(GdkvmError) as info:
        model(clip)
    msg = str(info.value)
    assert "expected a float tensor of shape (B, T, 1, H, W) with H and W divisible by 16" in msg
    assert problem in msg and "\n" not in msg
    with pytest.raises(GdkvmError, match=r"frame: expected .* got shape \(1, 2, 1, 32, 32\)"):
        model.stepper().step(torch.rand(1, 2, 1, 32, 32))


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(4)
    model = build_model("unet", "tiny", num_objects=2).eval()
    path = save_checkpoint(model, tmp_path / "ckpt.safetensors", extra_metadata={"iteration": 3})
    meta = read_checkpoint_metadata(path)
    assert meta["variant"] == "unet" and meta["model_class"] == "baselines.unet:UNet"
    assert meta["config_class"] == "baselines.unet:UNetConfig"
    back = load_model(path, variant="unet").eval()
    assert isinstance(back, UNet) and back.config == model.config and back.variant == "unet"
    clip = torch.rand(1, 2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(clip), model(clip), rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]


def test_variants_command_lists_it():
    result = CliRunner().invoke(app, ["variants"])
    assert result.exit_code == 0, result.output
    assert "unet" in result.output
