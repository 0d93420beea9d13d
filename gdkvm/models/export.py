"""Export one streaming step of a GDKVM model (frame + state in, logits + new state out) to TorchScript or ONNX.

The exported graph is :class:`StreamingStep`: exactly ``Stepper.step`` without the Python bookkeeping.
Its inputs are the frame ``(B, 1, H, W)`` float in [0, 1] and the carried state tensors; its outputs the
frame's logits ``(B, O + 1, H, W)`` (channel 0 background, LV = channel 1) and the new state tensors, in
the same order. The first frame gets an all-zero state (what ``GDKVM.init_state`` builds); a caller loops::

    state = [zeros(shape) for shape in spec["state_shapes"]]
    for frame in video:
        logits, *state = step(frame, *state)
        mask = logits.argmax(1) == 1

Shapes are fixed at export time (``batch`` and the ``size`` x ``size`` frame the model was trained at):
the graphs are traced (``torch.jit.trace`` / ``torch.onnx.export``), never scripted. Only rules with a
constant-size state export: ``softmax`` keeps every past frame's keys and values, so its state grows
and cannot be a fixed-shape graph input. ``gka``'s ridge solve (Cholesky) has no ONNX operator: for
ONNX it is traced as an unrolled Cholesky factorisation and substitution (O(Ck) small ops). A
first-frame prompt is not part of the step.
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gdkvm.errors import ConfigError
from gdkvm.models.gdkvm import GDKVM, STRIDE, RecurrentState
from gdkvm.utils.atomic import atomic_path

EXPORT_FORMATS: tuple[str, ...] = ("torchscript", "onnx")
SPEC_FORMAT = "gdkvm-export-step/1"
#: Memory rules whose step has no ONNX equivalent, with the reason (none at present: gka's Cholesky solve
#: is exported unrolled, see ``_onnx_friendly_linalg``).
ONNX_BLOCKERS: dict[str, str] = {}


@dataclass
class StepSpec:
    """What a caller of the exported step needs: names and shapes of every input and output."""

    variant: str
    memory_rule: str
    batch: int
    size: int
    num_objects: int
    state_names: list[str]
    state_shapes: list[list[int]]
    dtype: str = "float32"
    format: str = SPEC_FORMAT
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2)


class StreamingStep(nn.Module):
    """``forward(frame, *state) -> (logits, *new_state)``: one frame of ``GDKVM.advance`` (paper order or
    read-first, as the model's config says) with the state flattened to tensors (``state_names``)."""

    def __init__(self, model: GDKVM, state_names: list[str]):
        super().__init__()
        self.model = model
        self.state_names = list(state_names)

    def pack(self, state: RecurrentState) -> list[Tensor]:
        """A :class:`RecurrentState` as the tensor list of ``state_names``."""
        out = []
        for name in self.state_names:
            kind, _, key = name.partition(".")
            out.append(state.memory[key] if kind == "memory" else getattr(state, kind))
        return out

    def unpack(self, tensors: tuple[Tensor, ...] | list[Tensor]) -> RecurrentState:
        values = dict(zip(self.state_names, tensors, strict=True))
        memory = {n.partition(".")[2]: v for n, v in values.items() if n.startswith("memory.")}
        return RecurrentState(memory=memory, sensory=values["sensory"], prev_mask=values["prev_mask"],
                              obj_memory=values.get("obj_memory"))

    def forward(self, frame: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        feats = self.model.encode_image(frame)
        logits, new = self.model.advance(self.unpack(state), feats)
        return (logits, *self.pack(new))


def _initial_state(model: GDKVM, batch: int, size: int) -> RecurrentState:
    p = model.pixel_mean
    return model.init_state(batch, (size // STRIDE, size // STRIDE), p.device, p.dtype)


def step_module(model: nn.Module, size: int, batch: int = 1) -> tuple[StreamingStep, StepSpec, list[Tensor]]:
    """The eval-mode :class:`StreamingStep` of ``model``, its spec and the all-zero first state.

    One-line ConfigError for models that cannot export: not a GDKVM (the release model and the baselines
    carry another state), a growing (softmax) memory, or a frame size not a multiple of 16.
    """
    if not isinstance(model, GDKVM) or type(model).advance is not GDKVM.advance:
        raise ConfigError(f"export supports the GDKVM variants (see `gdkvm variants`); "
                          f"{type(model).__name__} carries another state")
    rule = model.config.memory_rule
    if not model.constant_state:
        raise ConfigError(f"memory rule '{rule}' cannot be exported as a fixed-shape step: its state grows "
                          "with every frame (keys and values of all past frames)")
    if size < STRIDE or size % STRIDE:
        raise ConfigError(f"export size {size}: must be a positive multiple of {STRIDE}")
    if batch < 1:
        raise ConfigError(f"export batch {batch}: must be >= 1")
    model = model.eval()
    state = _initial_state(model, batch, size)
    names = [f"memory.{k}" for k in sorted(state.memory)] + ["sensory", "prev_mask"]
    if state.obj_memory is not None:
        names.append("obj_memory")
    step = StreamingStep(model, names).eval()
    tensors = step.pack(state)
    spec = StepSpec(
        variant=model.variant or "", memory_rule=rule, batch=batch, size=size,
        num_objects=model.num_objects, state_names=names, state_shapes=[list(t.shape) for t in tensors],
        inputs=["frame", *[f"state.{n}" for n in names]], outputs=["logits", *[f"next.{n}" for n in names]],
    )
    return step, spec, tensors


def _example_frame(batch: int, size: int) -> Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, 1, size, size, generator=g)


def _example_state(step: StreamingStep, zeros: list[Tensor], batch: int, size: int) -> list[Tensor]:
    """A state after two frames: the graph is traced from non-zero state tensors."""
    state = list(zeros)
    with torch.no_grad():
        for i in range(2):
            state = list(step(_example_frame(batch, size) * (0.5 + 0.5 * i), *state)[1:])
    return state


def export_step(model: nn.Module, out: str | Path, fmt: str, size: int, batch: int = 1,
                opset: int = 17) -> StepSpec:
    """Write ``model``'s streaming step to ``out`` as ``fmt`` (torchscript | onnx) and ``out`` + ``.json``
    (the :class:`StepSpec`); both written atomically. Returns the spec."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
    step, spec, zeros = step_module(model, size, batch)
    if fmt == "onnx" and spec.memory_rule in ONNX_BLOCKERS:
        raise ConfigError(f"memory rule '{spec.memory_rule}' does not export to ONNX: "
                          f"{ONNX_BLOCKERS[spec.memory_rule]}")
    out = Path(out)
    frame = _example_frame(batch, size)
    state = _example_state(step, zeros, batch, size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python checks on (fixed) shapes
        if fmt == "torchscript":
            traced = torch.jit.trace(step, (frame, *state), check_trace=False)
            with atomic_path(out) as tmp:
                torch.jit.save(traced, str(tmp), _extra_files={"gdkvm_step.json": spec.to_json()})
        else:
            _export_onnx(step, (frame, *state), spec, out, opset)
    out.with_name(out.name + ".json").write_text(spec.to_json() + "\n", encoding="utf-8")
    return spec


def _unrolled_cholesky(a: Tensor) -> Tensor:
    """Lower Cholesky factor of SPD ``a [..., n, n]`` column by column, in plain ops ONNX has."""
    n = a.shape[-1]
    below = [(torch.arange(n, device=a.device) >= j).to(a.dtype) for j in range(n)]
    cols: list[Tensor] = []
    for j in range(n):
        v = a[..., :, j]
        if cols:
            left = torch.stack(cols, dim=-1)  # [..., n, j]
            v = v - (left @ left[..., j, :].unsqueeze(-1)).squeeze(-1)
        cols.append(v / torch.sqrt(v[..., j : j + 1]) * below[j])
    return torch.stack(cols, dim=-1)


def _unrolled_cholesky_solve(rhs: Tensor, chol: Tensor) -> Tensor:
    """``x`` with ``L L^T x = rhs`` (``rhs [..., n, m]``, ``chol`` lower), by unrolled substitutions."""
    n = chol.shape[-1]
    ys: list[Tensor] = []
    for i in range(n):  # L y = rhs
        r = rhs[..., i, :]
        if ys:
            r = r - (chol[..., i, :i].unsqueeze(-2) @ torch.stack(ys, dim=-2)).squeeze(-2)
        ys.append(r / chol[..., i, i : i + 1])
    xs: list[Tensor] = [ys[0]] * n
    for i in reversed(range(n)):  # L^T x = y
        r = ys[i]
        if i < n - 1:
            r = r - (chol[..., i + 1 :, i].unsqueeze(-2) @ torch.stack(xs[i + 1 :], dim=-2)).squeeze(-2)
        xs[i] = r / chol[..., i, i : i + 1]
    return torch.stack(xs, dim=-2)


@contextmanager
def _onnx_friendly_linalg():
    """Swap ``torch.linalg.cholesky_ex`` / ``torch.cholesky_solve`` (no ONNX operators) for unrolled
    versions while tracing, so the gka ridge solve exports (a graph of O(Ck) small ops)."""
    chol_ex, solve = torch.linalg.cholesky_ex, torch.cholesky_solve

    def cholesky_ex(a: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        return _unrolled_cholesky(a), torch.zeros(a.shape[:-2], dtype=torch.int32)

    torch.linalg.cholesky_ex, torch.cholesky_solve = cholesky_ex, _unrolled_cholesky_solve
    try:
        yield
    finally:
        torch.linalg.cholesky_ex, torch.cholesky_solve = chol_ex, solve


def _export_onnx(step: StreamingStep, args: tuple[Tensor, ...], spec: StepSpec, out: Path, opset: int) -> None:
    try:
        import onnx  # noqa: F401  (torch.onnx needs it)
    except ImportError:
        raise ConfigError("ONNX export needs the 'onnx' package: pip install onnx (onnxruntime to run it)") from None
    with atomic_path(out) as tmp:
        with _onnx_friendly_linalg():
            torch.onnx.export(step, args, str(tmp), input_names=spec.inputs, output_names=spec.outputs,
                              opset_version=opset, dynamo=False, do_constant_folding=True)
        import onnx

        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "gdkvm_step", spec.to_json()
        onnx.save(proto, str(tmp))


def read_spec(path: str | Path) -> dict[str, Any]:
    """The spec JSON written beside an exported step (``FILE.json``)."""
    path = Path(path)
    return json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))
