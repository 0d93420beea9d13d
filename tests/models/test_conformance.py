"""One conformance test over every registered variant: the behaviour the model interface
(:mod:`gdkvm.models.interface`) promises, for GDKVM, the release model, STM and the U-Net alike.

Registered and built by preset, declared capabilities, forward shape and background channel, stepper ==
clip (with the declared state size), gradients to every parameter, first-frame prompt rules, one-line
errors for bad clips, the checkpoint round trip, and the ``gdkvm variants`` listing. Tiny preset, 32 x 32
frames, one intra-op thread.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typer.testing import CliRunner

from gdkvm.cli.main import app
from gdkvm.errors import ConfigError, DataError, GdkvmError
from gdkvm.models import registry
from gdkvm.models.interface import FrameStepper, SegmentationModel, SegmentationModelBase, check_model
from gdkvm.models.modules import soft_aggregate
from gdkvm.models.registry import VariantSpec, build_model, get_variant, list_variants
from gdkvm.models.weights import check_variant, load_model, read_checkpoint_metadata, save_checkpoint
from tests.models.calibration import calibrate_batchnorm

pytestmark = pytest.mark.usefixtures("module_one_thread")

VARIANTS = list_variants()
OBJECTS = 2  # two objects besides the background, so per-object code paths are exercised
SIZE = 32


def one_line_error(call, match: str, kind: type[Exception] = GdkvmError) -> str:
    """Run ``call``; it must raise ``kind`` with a one-line message containing ``match``."""
    with pytest.raises(kind) as info:
        call()
    msg = str(info.value)
    assert match in msg and "\n" not in msg, msg
    return msg


@functools.cache
def plain(variant: str) -> nn.Module:
    """The variant at the tiny preset in eval mode (shared by the tests that do not change it)."""
    torch.manual_seed(0)
    return build_model(variant, "tiny").eval()


@functools.cache
def with_objects(variant: str) -> nn.Module:
    """The variant at the tiny preset with ``OBJECTS`` objects, in eval mode (not changed by the tests)."""
    torch.manual_seed(2)
    return build_model(variant, "tiny", num_objects=OBJECTS).eval()


@functools.cache
def calibrated(variant: str) -> tuple[nn.Module, Tensor]:
    """A float64 eval-mode model with ``OBJECTS`` objects whose BatchNorm statistics come from its clip
    (random statistics would saturate the soft aggregation), and that clip (2, 3, 1, 32, 32)."""
    torch.manual_seed(1)
    model = build_model(variant, "tiny", num_objects=OBJECTS).double()
    clip = torch.rand(2, 3, 1, SIZE, SIZE, dtype=torch.float64)
    return calibrate_batchnorm(model, clip), clip


def stream(model: nn.Module, clip: Tensor, prompt: Tensor | None = None) -> tuple[Tensor, list[int]]:
    """The clip through a fresh stepper: logits (B, T, O + 1, H, W) and the state bytes after each frame."""
    stepper = model.stepper()
    outs, sizes = [], []
    with torch.no_grad():
        for t in range(clip.shape[1]):
            outs.append(stepper.step(clip[:, t], first_frame_mask=prompt if t == 0 else None))
            sizes.append(stepper.state_bytes())
    assert stepper.frames == clip.shape[1]
    return torch.stack(outs, dim=1), sizes


@pytest.mark.parametrize("variant", VARIANTS)
def test_registered_and_built_by_preset(variant):
    assert get_variant(variant).name == variant
    model = plain(variant)
    assert model.variant == variant and model.num_objects == 1
    assert sum(p.numel() for p in model.parameters()) < 2_000_000  # tiny: fast on a CPU
    two = with_objects(variant)
    assert two.variant == variant and two.num_objects == two.config.num_objects == OBJECTS
    one_line_error(lambda: build_model(variant, "huge"), "unknown preset 'huge'; valid: paper, small, tiny",
                   ConfigError)
    one_line_error(lambda: build_model(variant, "tiny", not_a_field=1), "unknown field(s) ['not_a_field']",
                   ConfigError)


@pytest.mark.parametrize("variant", VARIANTS)
def test_conforms_to_the_interface(variant):
    model = plain(variant)
    check_model(model)
    assert isinstance(model, SegmentationModel) and isinstance(model, SegmentationModelBase)
    assert dataclasses.is_dataclass(model.config)
    stepper = model.stepper()
    assert isinstance(stepper, FrameStepper) and stepper.frames == 0 and stepper.state_bytes() == 0
    # the declared memory agrees with the registry and with the memory module
    memory = model.memory_module
    assert model.memory_name == (get_variant(variant).memory_rule or "-")
    assert (memory is None) == (model.memory_name == "-")
    if memory is not None:
        assert model.constant_state == memory.constant_state
    assert model.constant_state == (model.state_growth_bytes(1, SIZE, SIZE) == 0)
    assert not (model.frame_wise and not model.constant_state)
    assert model.freezes_batchnorm is False  # the presets train their BatchNorm layers
    blocker = model.graph_capture_blocker
    if blocker:
        assert type(model).__name__ in blocker or model.memory_name in blocker, blocker
    else:
        assert memory is not None and model.constant_state and not memory.graph_capture_blocker
    clip = torch.rand(1, 2, 1, SIZE, SIZE)
    if model.has_aux_outputs:
        with torch.no_grad():
            logits, aux = model.forward_with_aux(clip)
            torch.testing.assert_close(logits, model(clip))
        assert aux and all(isinstance(v, Tensor) and v.shape[:2] == (1, 2) for v in aux.values())
    else:
        one_line_error(lambda: model.forward_with_aux(clip), "has no auxiliary outputs")


def test_check_model_names_the_class_and_missing_member(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class Sizes:
        num_objects: int = 1

    class NoStepper(SegmentationModelBase):
        def __init__(self, config: object = Sizes()):
            super().__init__()
            self.config = config
            self.num_objects = 1

    msg = one_line_error(lambda: check_model(nn.Conv2d(1, 1, 1)), "Conv2d does not implement the model "
                         "interface: missing config, variant, num_objects", ConfigError)
    assert "stepper" in msg
    one_line_error(lambda: check_model(NoStepper()), "NoStepper does not implement the model interface: "
                   "missing stepper", ConfigError)
    one_line_error(lambda: check_model(NoStepper(config={"num_objects": 1})), "NoStepper does not implement "
                   "the model interface: missing stepper", ConfigError)
    NoStepper.stepper = lambda self: object()
    one_line_error(lambda: check_model(NoStepper(config={"num_objects": 1})), "config is not a dataclass",
                   ConfigError)
    one_line_error(lambda: check_model(NoStepper()), "NoStepper.stepper() returns object, which does not "
                   "implement the stepper interface: missing frames, reset, step, state_bytes", ConfigError)
    del NoStepper.stepper
    # the registry checks every model it builds
    monkeypatch.setitem(registry._REGISTRY, "no-stepper", lambda: VariantSpec(
        name="no-stepper", description="test", builder=lambda preset, **kw: NoStepper()))
    one_line_error(lambda: build_model("no-stepper"), "NoStepper does not implement the model interface: "
                   "missing stepper", ConfigError)


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_shape_and_background_channel(variant):
    model = with_objects(variant)
    clip = torch.rand(2, 2, 1, SIZE, 48)
    with torch.no_grad():
        logits = model(clip)
    assert logits.shape == (2, 2, OBJECTS + 1, SIZE, 48) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    if not model.accepts_prompt:  # the background check needs a prompt; refusing one is tested below
        return
    labels = torch.zeros(2, SIZE, 48, dtype=torch.long)
    labels[:, :, 24:] = 2  # left half background, right half object 2
    with torch.no_grad():
        first = model(clip, first_frame_mask=labels)[:, 0]
    assert torch.equal(first.argmax(dim=1), labels)  # channel 0 is the background, channel o object o


@pytest.mark.parametrize("variant", VARIANTS)
def test_stepper_equals_clip_with_the_declared_state(variant):
    model, clip = calibrated(variant)
    b, t, _, h, w = clip.shape
    with torch.no_grad():
        whole = model(clip)
    streamed, sizes = stream(model, clip)
    assert whole.shape == (b, t, OBJECTS + 1, h, w)
    # the comparison is only meaningful if the logits are not all clamped by the soft aggregation
    assert (whole.abs() < 15).float().mean() > 0.5
    torch.testing.assert_close(streamed, whole, rtol=1e-9, atol=1e-9)
    growth = model.state_growth_bytes(b, h, w, torch.float64)
    assert [later - earlier for earlier, later in zip(sizes[:-1], sizes[1:], strict=True)] == [growth] * (t - 1)
    assert (sizes[0] == 0) == model.frame_wise
    # each video of the batch has its own state: another second video leaves the first one's rows exactly
    # as they were (same batch size, so the same kernels: a batch of one may round differently, and the
    # release's hard attention mask, agg >= max, can turn such a rounding into a visible change), and one
    # video alone carries half the state
    neighbour = torch.rand(clip[1:].shape, dtype=clip.dtype, generator=torch.Generator().manual_seed(5))
    swapped, _ = stream(model, torch.cat([clip[:1], neighbour]))
    torch.testing.assert_close(swapped[:1], whole[:1], rtol=0, atol=0)
    _, alone_sizes = stream(model, clip[:1])
    assert [2 * n for n in alone_sizes] == sizes
    # an earlier frame changes later outputs exactly when the model has a temporal state
    changed = clip.clone()
    changed[:, 0] = torch.rand(b, 1, h, w, dtype=clip.dtype, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        other = model(changed)
    if model.frame_wise:
        torch.testing.assert_close(other[:, 1:], whole[:, 1:], rtol=0, atol=0)
    else:
        assert not torch.allclose(other[:, 2], whole[:, 2])
    # reset starts a new video, which may have another size
    stepper = model.stepper()
    with torch.no_grad():
        stepper.step(clip[:, 0])
        stepper.reset()
        assert stepper.frames == 0 and stepper.state_bytes() == 0
        out = stepper.step(torch.rand(1, 1, 48, 48, dtype=clip.dtype))
    assert out.shape == (1, OBJECTS + 1, 48, 48) and stepper.frames == 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_reach_every_parameter(variant):
    torch.manual_seed(4)
    model = build_model(variant, "tiny").train()
    clip = torch.rand(1, 3, 1, SIZE, SIZE)
    target = (torch.rand(1, 3, SIZE, SIZE) > 0.5).long()
    if model.has_aux_outputs:
        logits, aux = model.forward_with_aux(clip)
        extra = sum(a.float().mean() for a in aux.values())
    else:
        logits, extra = model(clip), 0.0
    loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(0, 1)) + extra
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("variant", VARIANTS)
def test_first_frame_prompt_rules(variant):
    model, clip = calibrated(variant)
    b, _, _, h, w = clip.shape
    labels = torch.randint(0, OBJECTS + 1, (b, h, w), generator=torch.Generator().manual_seed(5))
    prompt = torch.stack([labels == o for o in range(1, OBJECTS + 1)], dim=1).double()
    stepper = model.stepper()
    frame = clip[:1, 0]
    if not model.accepts_prompt:
        one_line_error(lambda: model(clip, first_frame_mask=prompt), "first_frame_mask is not supported")
        one_line_error(lambda: stepper.step(frame, first_frame_mask=prompt[:1]), "first_frame_mask is not supported")
        return
    with torch.no_grad():
        unprompted = model(clip)
        prompted = model(clip, first_frame_mask=prompt)
        by_labels = model(clip, first_frame_mask=labels)
    streamed, _ = stream(model, clip, prompt)
    torch.testing.assert_close(prompted[:, 0], soft_aggregate(prompt))
    assert torch.equal(prompted[:, 0].argmax(1), labels)
    torch.testing.assert_close(by_labels, prompted)
    torch.testing.assert_close(streamed, prompted, rtol=1e-9, atol=1e-9)
    if model.frame_wise:  # nothing remembers the prompt
        torch.testing.assert_close(prompted[:, 1:], unprompted[:, 1:], rtol=0, atol=0)
    else:  # the prompt is carried into the later frames
        assert not torch.allclose(prompted[:, 1:], unprompted[:, 1:])
    # the prompt is checked, and only allowed on a first frame
    one_line_error(lambda: stepper.step(frame, first_frame_mask=torch.zeros(1, OBJECTS, 16, 16)),
                   f"expected (B=1, O={OBJECTS}, H={h}, W={w})")
    one_line_error(lambda: stepper.step(frame, first_frame_mask=torch.full((1, h, w), OBJECTS + 1)),
                   f"labels must be in 0..{OBJECTS}")
    with torch.no_grad():
        stepper.step(frame)
        one_line_error(lambda: stepper.step(frame, first_frame_mask=prompt[:1]), "only allowed on the first frame")
        stepper.reset()
        torch.testing.assert_close(stepper.step(frame, first_frame_mask=prompt[:1]), prompted[:1, 0])


BAD_CLIPS = [
    (torch.rand(1, 2, SIZE, SIZE), "got shape (1, 2, 32, 32)"),
    (torch.rand(1, 2, 3, SIZE, SIZE), "got shape (1, 2, 3, 32, 32)"),
    (torch.zeros(1, 2, 1, SIZE, SIZE, dtype=torch.uint8), "got dtype torch.uint8"),
    (torch.rand(1, 2, 1, 40, SIZE), "got H x W = 40 x 32"),
    (torch.rand(1, 0, 1, SIZE, SIZE), "got shape (1, 0, 1, 32, 32)"),
    ([[0.0]], "got list"),
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_bad_clips_raise_one_line(variant):
    model = plain(variant)
    expected = "clip: expected a float tensor of shape (B, T, 1, H, W) with H and W divisible by 16"
    for clip, problem in BAD_CLIPS:
        assert problem in one_line_error(lambda clip=clip: model(clip), expected)
    stepper = model.stepper()
    one_line_error(lambda: stepper.step(torch.rand(1, 2, 1, SIZE, SIZE)),
                   "frame: expected a float tensor of shape (B, 1, H, W) with H and W divisible by 16, "
                   "got shape (1, 2, 1, 32, 32)")
    assert stepper.frames == 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_checkpoint_round_trip(variant, tmp_path):
    model = with_objects(variant)
    path = save_checkpoint(model, tmp_path / "ckpt.safetensors", extra_metadata={"iteration": 7, "note": "x"})
    meta = read_checkpoint_metadata(path)
    assert meta["variant"] == variant and meta["iteration"] == "7" and meta["note"] == "x"
    assert meta["model_class"] == f"{type(model).__module__}:{type(model).__qualname__}"
    back = load_model(path, variant=variant).eval()
    assert type(back) is type(model) and back.config == model.config and back.variant == variant
    check_model(back)
    clip = torch.rand(1, 2, 1, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(back(clip), model(clip), rtol=0, atol=0)
    other = "unet" if variant != "unet" else "full"
    one_line_error(lambda: check_variant(path, other),
                   f"checkpoint is variant '{variant}', expected variant '{other}'", DataError)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]  # no temp files left


def test_variants_command_lists_every_variant():
    result = CliRunner().invoke(app, ["variants"])
    assert result.exit_code == 0, result.output
    listed = {line.split("│")[1].strip() for line in result.output.splitlines() if line.count("│") > 2}
    assert set(VARIANTS) <= listed, listed
