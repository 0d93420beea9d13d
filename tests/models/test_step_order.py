"""The order of one frame's steps: the paper's (value from the previous mask, write, read with K_t) by
default for every memory rule, gdkvm 0.1's read-first order as a named option; clip == streaming for both."""

from __future__ import annotations

import pytest
import torch

from gdkvm.errors import ConfigError
from gdkvm.models.config import preset_config
from gdkvm.models.gdkvm import GDKVM
from gdkvm.models.memory import MEMORY_RULES
from tests.models.test_gdkvm import calibrated


@pytest.fixture(autouse=True)
def _one_thread(one_cpu_thread):
    """Tiny models on one thread (see tests/conftest.py)."""


class Recorder:
    """Wraps a model's stages and records, per call, what went in and came out, in call order."""

    def __init__(self, model: GDKVM):
        self.events: list[tuple[str, dict]] = []
        self._wrap(model, "encode_value", lambda args, out: {"masks": args[2].clone(), "value": out[0].clone()})
        self._wrap(model.memory, "write_read", lambda args, out: {
            "state": {k: v.clone() for k, v in args[0].items()}, "key": args[1].clone(), "value": args[2].clone(),
            "query": args[3].clone(), "readout": out[0].clone(), "new_state": out[1]})
        self._wrap(model.memory, "read", lambda args, out: {"query": args[1].clone(), "readout": out.clone()})
        self._wrap(model.memory, "write", lambda args, out: {"key": args[1].clone()})
        self._wrap(model, "segment", lambda args, out: {"readout": args[1].clone(), "prob": out[1].clone()})

    def _wrap(self, owner, name, record):
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            out = original(*args, **kwargs)
            self.events.append((name, record(args, out)))
            return out

        setattr(owner, name, wrapped)

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


@pytest.mark.parametrize("rule", MEMORY_RULES)
def test_paper_order_for_every_rule(rule):
    """encode_value(previous mask) -> write_read(key = query = K_t) -> segment(readout of S_t), each frame."""
    torch.manual_seed(0)
    clip = torch.rand(1, 4, 1, 32, 32, dtype=torch.float64)
    model = calibrated(GDKVM(preset_config("tiny").replace(memory_rule=rule)).double(), clip)
    assert model.config.step_order == "paper"  # the default
    recorder = Recorder(model)
    with torch.no_grad():
        logits = model(clip)
    frames = clip.shape[1]
    # the stages of frame t run in this order, with the memory written exactly once before it is read
    assert [n for n in recorder.names() if n in ("encode_value", "write_read", "segment")] == \
        ["encode_value", "write_read", "segment"] * frames
    by_name: dict[str, list[dict]] = {}
    for name, event in recorder.events:
        by_name.setdefault(name, []).append(event)
    probs = torch.softmax(logits, dim=2)[0, :, 1:]  # (T, O, H, W)
    for t in range(frames):
        enc, step, seg = by_name["encode_value"][t], by_name["write_read"][t], by_name["segment"][t]
        expected_mask = torch.zeros_like(enc["masks"][0]) if t == 0 else probs[t - 1]
        torch.testing.assert_close(enc["masks"][0], expected_mask, rtol=1e-12, atol=1e-12)
        assert torch.equal(step["key"], step["query"])  # read with the same key K_t
        torch.testing.assert_close(step["readout"], model.memory.read(step["new_state"], step["query"]),
                                   rtol=1e-10, atol=1e-12)
        # the readout the decoder sees is the one of the state just written
        seen = seg["readout"].flatten(3).transpose(2, 3).reshape_as(step["readout"])  # (B*O, N, Cv)
        torch.testing.assert_close(seen, step["readout"], rtol=0, atol=0)
    # frame 0 is read from the memory written with frame 0's value: not an empty readout
    assert by_name["write_read"][0]["readout"].abs().max() > 0


@pytest.mark.parametrize("rule", ["gdr", "linear", "gka"])
def test_read_first_order_is_a_named_option(rule):
    """read(S_{t-1}) -> segment -> encode_value(this frame's mask) -> write; frame 0 reads an empty memory."""
    torch.manual_seed(1)
    clip = torch.rand(1, 3, 1, 32, 32, dtype=torch.float64)
    model = GDKVM(preset_config("tiny").replace(memory_rule=rule, step_order="read-first")).double()
    model = calibrated(model, clip)
    recorder = Recorder(model)
    with torch.no_grad():
        logits = model(clip)
    names = [n for n in recorder.names() if n in ("read", "segment", "encode_value", "write")]
    assert names == ["read", "segment", "encode_value", "write"] * 2 + ["read", "segment"]
    first_read = next(e for n, e in recorder.events if n == "read")
    assert first_read["readout"].abs().max() == 0
    probs = torch.softmax(logits, dim=2)[0, :, 1:]
    encodes = [e for n, e in recorder.events if n == "encode_value"]
    torch.testing.assert_close(encodes[0]["masks"][0], probs[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", ["paper", "read-first"])
def test_clip_equals_streaming_in_both_orders(order):
    torch.manual_seed(2)
    clip = torch.rand(2, 5, 1, 32, 32, dtype=torch.float64)
    model = calibrated(GDKVM(preset_config("tiny").replace(step_order=order)).double(), clip)
    with torch.no_grad():
        whole = model(clip)
        stepper = model.stepper()
        streamed = torch.stack([stepper.step(clip[:, t]) for t in range(clip.shape[1])], dim=1)
    torch.testing.assert_close(streamed, whole, rtol=1e-9, atol=1e-9)


def test_orders_differ_and_bad_order_is_refused():
    torch.manual_seed(3)
    clip = torch.rand(1, 3, 1, 32, 32, dtype=torch.float64)
    paper = calibrated(GDKVM(preset_config("tiny")).double(), clip)
    read_first = GDKVM(preset_config("tiny").replace(step_order="read-first")).double()
    read_first.load_state_dict(paper.state_dict())
    read_first.eval()
    with torch.no_grad():
        assert not torch.allclose(paper(clip), read_first(clip))
    with pytest.raises(ConfigError, match="step_order 'sideways'"):
        preset_config("tiny").replace(step_order="sideways")


def test_frobenius_key_scale_makes_the_erase_a_contraction():
    model = GDKVM(preset_config("tiny").replace(key_scale="frobenius"))
    keys = torch.softmax(torch.randn(3, 256, 16) * 4, dim=-1)
    scaled = model._scale_keys(keys)
    gram = scaled.transpose(1, 2) @ scaled
    assert torch.linalg.matrix_norm(gram, ord=2).max() <= 1 + 1e-6
    torch.testing.assert_close(torch.linalg.matrix_norm(scaled), torch.ones(3))
