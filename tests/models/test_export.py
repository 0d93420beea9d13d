"""`gdkvm export`: the traced per-frame step, looped over a clip from the zero state, gives the eager
Stepper's logits and masks (TorchScript: equal; ONNX Runtime: Dice >= 0.999) for gdr, linear and gka (its Cholesky unrolled for ONNX)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gdkvm.errors import ConfigError
from gdkvm.models.export import export_step, read_spec, step_module
from gdkvm.models.registry import build_model
from gdkvm.models.weights import save_checkpoint

SIZE, FRAMES = 32, 4
VARIANTS = ["full", "linear", "gka"]  # memory rules gdr, linear, gka
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def tiny(variant: str):
    torch.manual_seed(0)
    return build_model(variant, "tiny").eval()


def clip() -> torch.Tensor:
    return torch.rand(FRAMES, 1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def eager_logits(model) -> list[torch.Tensor]:
    stepper = model.stepper()
    with torch.no_grad():
        return [stepper.step(frame) for frame in clip()]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


@pytest.mark.parametrize("variant", VARIANTS)
def test_torchscript_step_reproduces_eager(variant, tmp_path, one_cpu_thread):
    model = tiny(variant)
    expected = eager_logits(model)
    spec = export_step(model, tmp_path / "step.pt", "torchscript", SIZE)
    assert read_spec(tmp_path / "step.pt")["state_names"] == spec.state_names
    step = torch.jit.load(str(tmp_path / "step.pt"))
    state = [torch.zeros(shape) for shape in spec.state_shapes]
    with torch.no_grad():
        for frame, want in zip(clip(), expected, strict=True):
            logits, *state = step(frame, *state)
            torch.testing.assert_close(logits, want, rtol=1e-5, atol=1e-5)
            assert torch.equal(logits.argmax(1), want.argmax(1))


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_step_reproduces_eager(variant, tmp_path, one_cpu_thread):
    ort = pytest.importorskip("onnxruntime")
    model = tiny(variant)
    expected = eager_logits(model)
    spec = export_step(model, tmp_path / "step.onnx", "onnx", SIZE)
    session = ort.InferenceSession(str(tmp_path / "step.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == spec.inputs
    state = [np.zeros(shape, dtype=np.float32) for shape in spec.state_shapes]
    for frame, want in zip(clip(), expected, strict=True):
        logits, *state = session.run(None, dict(zip(spec.inputs, [frame.numpy(), *state], strict=True)))
        np.testing.assert_allclose(logits, want.numpy(), atol=1e-4)
        assert dice(logits.argmax(1) == 1, want.argmax(1).numpy() == 1) >= 0.999


def test_unrolled_cholesky_matches_torch():
    from gdkvm.models.export import _unrolled_cholesky, _unrolled_cholesky_solve

    a = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = a @ a.transpose(-1, -2) + 0.1 * torch.eye(8, dtype=torch.float64)
    rhs = torch.randn(2, 3, 8, 5, dtype=torch.float64)
    chol = torch.linalg.cholesky(a)
    torch.testing.assert_close(_unrolled_cholesky(a), chol)
    torch.testing.assert_close(_unrolled_cholesky_solve(rhs, chol), torch.cholesky_solve(rhs, chol))


def test_what_does_not_export(tmp_path, one_cpu_thread):
    with pytest.raises(ConfigError, match="'softmax' cannot be exported.*grows"):
        step_module(tiny("softmax-memory"), SIZE)
    with pytest.raises(ConfigError, match="GDKVM variants"):
        step_module(tiny("unet"), SIZE)
    with pytest.raises(ConfigError, match="multiple of 16"):
        step_module(tiny("full"), 40)


def test_cli_exports_a_run(tmp_path, one_cpu_thread):
    from gdkvm.cli.main import app

    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(tiny("linear"), run / "checkpoint_last.safetensors")
    out = tmp_path / "step.pt"
    result = CliRunner().invoke(app, ["export", "--run", str(run), "--format", "torchscript", "--out", str(out),
                                      "--size", str(SIZE)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and json.loads((tmp_path / "step.pt.json").read_text())["memory_rule"] == "linear"
    result = CliRunner().invoke(app, ["export", "--run", str(run), "--out", str(out)])
    assert isinstance(result.exception, ConfigError) and "--size" in str(result.exception)
