"""The one frame pipeline (gdkvm/engine/frames.py) shared by evaluate, predict and ``bench fps`` end-to-end.

Tiny models with random weights on the CPU: every comparison is between two routes through the code on
the same frames, so no number is hard-coded.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from gdkvm.bench import fps
from gdkvm.engine import frames as frames_mod
from gdkvm.engine.frames import FramePipeline, FrameStream, masks_to_native, resize_frames
from gdkvm.engine.inference import autocast_context, precision_name, predict_clips
from gdkvm.errors import GdkvmError
from gdkvm.models.registry import build_model
from gdkvm.predict.segmenter import ModelSegmenter

pytestmark = pytest.mark.usefixtures("one_cpu_thread")  # tests/conftest.py

CPU = torch.device("cpu")
SIZE = 64


def tiny(variant: str = "full") -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(variant, "tiny").eval()


def echo_like(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """uint8 frames with a bright disc on noise, so the random model's masks are neither empty nor full."""
    rng = np.random.default_rng(seed)
    h, w = shape[-2:]
    yy, xx = np.mgrid[:h, :w]
    disc = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 3) ** 2) * 150.0
    return np.clip(disc + rng.normal(60, 30, shape), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ resizing
def test_resize_round_trip_shapes_and_values():
    clip = echo_like((5, 50, 70))
    small = resize_frames(clip, SIZE)
    assert small.shape == (5, SIZE, SIZE) and small.dtype == np.uint8
    assert resize_frames(clip[None], (32, 48)).shape == (1, 5, 32, 48)
    assert resize_frames(small, SIZE) is small  # already at the model size: untouched
    masks = small > 128
    back = masks_to_native(masks, (50, 70))
    assert back.shape == (5, 50, 70) and back.dtype == np.uint8
    assert set(np.unique(back)) <= {0, 1}
    assert masks_to_native(np.ones((2, SIZE, SIZE), bool), (50, 70)).all()  # nearest keeps full masks full
    assert not masks_to_native(np.zeros((2, SIZE, SIZE), bool), (50, 70)).any()
    # a constant frame stays that constant under the bilinear resize
    assert (resize_frames(np.full((1, 50, 70), 77, np.uint8), SIZE) == 77).all()
    with pytest.raises(GdkvmError, match="must be uint8"):
        resize_frames(clip.astype(np.float32), SIZE)


def test_step_rejects_frames_of_the_wrong_rank():
    stream = FramePipeline(tiny(), CPU, SIZE).stream()
    with pytest.raises(GdkvmError, match=r"expected uint8 frames \(B, H, W\)"):
        stream.step(np.zeros((1, 1, 8, 8), np.uint8))


# ------------------------------------------------------------------------------------------ one code path
def test_stream_equals_batch():
    """Batched clips (evaluate's route) give the masks of the same clips streamed alone (predict's route)."""
    model = tiny()
    clips = echo_like((3, 4, 50, 70))
    pipe = FramePipeline(model, CPU, SIZE)
    batched = list(pipe.clip(clips, native=True))
    assert len(batched) == 4 and batched[0].prob.shape == (3, SIZE, SIZE)
    assert batched[0].native.shape == (3, 50, 70)
    for b in range(3):
        stream = pipe.stream()
        for t in range(4):
            one = stream.step(clips[b, t], native=True)  # one (H, W) frame -> B = 1
            np.testing.assert_allclose(one.prob[0], batched[t].prob[b], rtol=0, atol=1e-5)
            assert np.array_equal(one.mask[0], batched[t].mask[b])
            assert np.array_equal(one.native[0], batched[t].native[b])
    # a single (T, H, W) clip is the same loop over FrameStream.step, exactly
    stream = pipe.stream()
    for t, out in enumerate(pipe.clip(clips[1])):
        assert np.array_equal(out.prob, stream.step(clips[1, t]).prob)


def test_predict_and_evaluate_give_identical_masks_on_the_same_frames():
    model = tiny()
    # frames at the model size (a prepared store): predict's masks are evaluate's clean-mode masks
    clips = echo_like((2, 5, SIZE, SIZE), seed=1)
    evaluated = predict_clips(model, clips, CPU, batch=1, threshold=0.5)
    seg = ModelSegmenter(model, SIZE, CPU)
    for b in range(2):
        predicted = seg(clips[b])
        assert predicted.any() and not predicted.all()
        assert np.array_equal(predicted.astype(bool), evaluated[b])
    # native-size frames: predict = evaluate on the pipeline's resize, mapped back with its nearest resize
    native = echo_like((5, 50, 70), seed=2)
    evaluated = predict_clips(model, resize_frames(native, SIZE)[None], CPU, threshold=0.5)[0]
    assert np.array_equal(seg(native), masks_to_native(evaluated, (50, 70)))
    # the confidence is the mean LV probability over the pixels called LV
    probs = predict_clips(model, resize_frames(native, SIZE)[None], CPU)[0]
    assert seg.last_confidence == pytest.approx(float(probs[evaluated].mean()), rel=1e-6)


def test_predict_clips_restores_the_train_mode_and_keeps_its_outputs():
    model = tiny().train()
    clips = echo_like((3, 2, SIZE, SIZE))
    probs = predict_clips(model, clips, CPU, batch=2)
    assert model.training
    assert probs.shape == clips.shape and probs.dtype == np.float32
    assert ((probs >= 0) & (probs <= 1)).all()
    masks = predict_clips(model, clips, CPU, batch=2, threshold=0.5)
    assert masks.dtype == bool and np.array_equal(masks, probs > 0.5)


# ------------------------------------------------------------------------------------------ precision
def test_fp32_on_the_cpu_whatever_amp_says():
    assert isinstance(autocast_context(CPU, amp=True), contextlib.nullcontext)
    assert precision_name(CPU, True) == "fp32" and precision_name(torch.device("cuda"), True) == "bf16 autocast"
    assert precision_name(torch.device("cuda"), False) == "fp32"
    model = tiny()
    seen: list[tuple[bool, torch.dtype]] = []
    real = model.stepper

    class Spy:
        def __init__(self):
            self.inner = real()

        def step(self, x):
            logits = self.inner.step(x)
            seen.append((torch.is_autocast_enabled("cpu"), logits.dtype))
            return logits

        def state_bytes(self):
            return self.inner.state_bytes()

    model.stepper = Spy
    frames = echo_like((3, 50, 70))
    with_amp = [o.prob for o in FramePipeline(model, CPU, SIZE, amp=True).clip(frames)]
    without = [o.prob for o in FramePipeline(model, CPU, SIZE, amp=False).clip(frames)]
    assert seen and all(not enabled and dtype == torch.float32 for enabled, dtype in seen)
    assert all(np.array_equal(a, b) for a, b in zip(with_amp, without, strict=True))
    assert with_amp[0].dtype == np.float32


# ------------------------------------------------------------------------------------------ the benchmark
def test_bench_end_to_end_times_the_pipeline_predict_runs(tmp_path, monkeypatch):
    calls: list[tuple[int, ...]] = []
    real = FrameStream.step

    def counting(self, frames, native=False):
        calls.append(tuple(np.asarray(frames).shape))
        assert native  # end-to-end maps the masks back to the native size, as predict does
        return real(self, frames, native)

    monkeypatch.setattr(frames_mod.FrameStream, "step", counting)
    cfg = fps.FpsConfig(preset="tiny", size=SIZE, native_size=(48, 80), frames=3, warmup=2, iters=2,
                        batches=(2,), dtypes=("fp32",), device="cpu", out=tmp_path, reference=False)
    rows = fps.run_fps(cfg).rows
    assert {r["mode"]: r["status"] for r in rows} == {"model-only": "ok", "end-to-end": "ok"}
    # warm-up + timed steps + the one untimed step that measures the CPU peak; model-only never calls it
    assert len(calls) == cfg.warmup + cfg.frames * cfg.iters + 1
    assert set(calls) == {(2, 48, 80)}


def test_bench_end_to_end_masks_are_predicts_masks():
    model = tiny()
    host = fps.make_host_frames(4, 1, (48, 80), seed=3)  # (T, B, H, W) uint8 torch
    engine = fps.PipelineEngine(model, CPU, "fp32", SIZE)
    bench = np.stack([engine.step(host[t])[0] for t in range(4)])
    assert np.array_equal(bench, ModelSegmenter(model, SIZE, CPU)(host[:, 0].numpy()))
    assert engine.state_bytes() > 0
