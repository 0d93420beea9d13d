"""The declared interface of every registered segmentation model, and the check that a model has it.

Every variant that :func:`gdkvm.models.registry.build_model` returns (the GDKVM variants, the ``release``
models, the ``stm`` and ``unet`` baselines) is a :class:`SegmentationModel`; training, evaluation,
prediction, export, checkpoints and the benchmarks drive them through these members only:

===========================  ======================================================================
member                       meaning
===========================  ======================================================================
``model(clip, first_frame_mask=None)``  clip (B, T, 1, H, W) float in [0, 1], H, W % 16 == 0 -> logits
                             (B, T, O + 1, H, W), channel 0 the background
``forward_with_aux(clip)``   (logits, {name: tensor}) for models with auxiliary training heads
                             (``has_aux_outputs``); a one-line GdkvmError for the others
``stepper()``                a fresh :class:`FrameStepper` (``step``, ``reset``, ``frames``,
                             ``state_bytes``) that gives the clip forward's logits frame by frame
``config``                   the architecture, a dataclass (stored in checkpoints)
``variant``                  the registry name it was built as (None when built by hand)
``num_objects``              O, the objects segmented besides the background
``accepts_prompt``           whether a first-frame prompt mask is taken (the release model refuses it)
``frame_wise``               whether every frame is segmented on its own (no temporal memory: U-Net)
``has_aux_outputs``          whether ``forward_with_aux`` exists (trained with its auxiliary loss)
``constant_state``           whether the carried state keeps one size however many frames it saw
``state_growth_bytes(...)``  bytes the carried state grows by per frame (0 for a constant state)
``graph_capture_blocker``    "" when one frame step can be captured as a CUDA graph, else why not
``memory_name``              the memory rule's name, ``"-"`` for models without a memory rule
``memory_module``            the :class:`gdkvm.models.memory.MemoryRule` module, or None
``freezes_batchnorm``        whether the BatchNorm layers keep their statistics in train mode
===========================  ======================================================================

:class:`SegmentationModelBase` gives the defaults (a model without a memory rule, a constant state, a
prompt taken, no auxiliary outputs, no CUDA-graph step); each model class declares what differs.
:func:`check_model` (run by the registry on every build) raises a one-line ConfigError naming the class
and the missing member, so code elsewhere never probes a model with ``getattr``/``hasattr``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from gdkvm.errors import ConfigError, GdkvmError

if TYPE_CHECKING:
    from gdkvm.models.memory import MemoryRule

__all__ = [
    "MODEL_MEMBERS",
    "STEPPER_MEMBERS",
    "FrameStepper",
    "SegmentationModel",
    "SegmentationModelBase",
    "check_model",
    "state_element_bytes",
]


@runtime_checkable
class FrameStepper(Protocol):
    """Streaming inference over one video: ``step`` one frame at a time, carrying the model's state."""

    @property
    def frames(self) -> int:
        """Frames processed since the last reset."""
        ...

    def reset(self) -> None:
        """Forget the video: the next frame is a first frame."""
        ...

    def step(self, frame: Tensor, first_frame_mask: Tensor | None = None) -> Tensor:
        """frame (B, 1, H, W) float in [0, 1] -> logits (B, O + 1, H, W); a prompt only on the first frame."""
        ...

    def state_bytes(self) -> int:
        """Bytes of the carried state (0 before the first frame)."""
        ...


@runtime_checkable
class SegmentationModel(Protocol):
    """What every registered model provides (see the module docstring for each member)."""

    config: Any
    variant: str | None
    num_objects: int
    accepts_prompt: bool
    frame_wise: bool
    has_aux_outputs: bool

    @property
    def constant_state(self) -> bool: ...

    @property
    def graph_capture_blocker(self) -> str: ...

    @property
    def memory_name(self) -> str: ...

    @property
    def memory_module(self) -> MemoryRule | None: ...

    @property
    def freezes_batchnorm(self) -> bool: ...

    def __call__(self, clip: Tensor, first_frame_mask: Tensor | None = None) -> Tensor: ...

    def forward(self, clip: Tensor, first_frame_mask: Tensor | None = None) -> Tensor: ...

    def forward_with_aux(self, clip: Tensor) -> tuple[Tensor, dict[str, Tensor]]: ...

    def stepper(self) -> FrameStepper: ...

    def state_growth_bytes(self, batch: int, height: int, width: int,
                           dtype: torch.dtype = torch.float32) -> int: ...


#: The members :func:`check_model` requires of a model and of its stepper, in the order they are reported.
MODEL_MEMBERS: tuple[str, ...] = (
    "config", "variant", "num_objects", "accepts_prompt", "frame_wise", "has_aux_outputs", "constant_state",
    "graph_capture_blocker", "memory_name", "memory_module", "freezes_batchnorm", "forward",
    "forward_with_aux", "stepper", "state_growth_bytes",
)
STEPPER_MEMBERS: tuple[str, ...] = ("frames", "reset", "step", "state_bytes")


def state_element_bytes(dtype: torch.dtype) -> int:
    """Bytes per number of a carried state kept in ``dtype`` promoted to at least fp32 (as the models do)."""
    return torch.empty((), dtype=torch.promote_types(dtype, torch.float32)).element_size()


class SegmentationModelBase(nn.Module):
    """The defaults of :class:`SegmentationModel`; a model class subclasses this and declares what differs.

    Defaults: prompts taken, temporal (not frame-wise), no auxiliary outputs, no memory rule (``"-"``), a
    constant-size state, no BatchNorm freezing, and no CUDA-graph step.
    """

    accepts_prompt: ClassVar[bool] = True
    frame_wise: ClassVar[bool] = False
    has_aux_outputs: ClassVar[bool] = False
    variant: str | None = None

    @property
    def memory_module(self) -> MemoryRule | None:
        """The memory rule module (None: the model has none)."""
        return None

    @property
    def memory_name(self) -> str:
        """The memory rule's name, or ``"-"`` without one."""
        memory = self.memory_module
        return "-" if memory is None else memory.name

    @property
    def constant_state(self) -> bool:
        """Whether the carried state keeps one size however many frames it saw."""
        memory = self.memory_module
        return True if memory is None else memory.constant_state

    @property
    def graph_capture_blocker(self) -> str:
        """Why one frame step cannot be captured as a CUDA graph (a phrase after ``unavailable:``); "" if it can."""
        return f"CUDA graphs need a GDKVM memory model ({type(self).__name__} has none)"

    @property
    def freezes_batchnorm(self) -> bool:
        """Whether the BatchNorm layers keep their statistics in train mode (then need no synchronisation)."""
        return False

    def state_growth_bytes(self, batch: int, height: int, width: int, dtype: torch.dtype = torch.float32) -> int:
        """Bytes the carried state grows by per frame of ``batch`` frames (B, 1, height, width) run in
        ``dtype``; 0 for a constant-size state."""
        return 0

    def forward_with_aux(self, clip: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Models with auxiliary heads override this; the others have none to return."""
        raise GdkvmError(f"{type(self).__name__}: the model has no auxiliary outputs (has_aux_outputs is False)")


def _missing(obj: object, members: tuple[str, ...]) -> list[str]:
    # the interface's own check: the one place that looks members up by name
    return [name for name in members if not hasattr(obj, name)]


def check_model(model: object) -> None:
    """Raise a one-line ConfigError unless ``model`` implements :class:`SegmentationModel`.

    Checks every member of :data:`MODEL_MEMBERS`, that ``config`` is a dataclass (checkpoints store it),
    the declared values' types, and that ``model.stepper()`` implements :class:`FrameStepper`.
    """
    name = type(model).__name__
    missing = _missing(model, MODEL_MEMBERS)
    if missing:
        raise ConfigError(f"{name} does not implement the model interface: missing {', '.join(missing)}")
    assert isinstance(model, SegmentationModel)
    if not dataclasses.is_dataclass(model.config) or isinstance(model.config, type):
        raise ConfigError(f"{name} does not implement the model interface: config is not a dataclass instance")
    declared = {"accepts_prompt": bool, "frame_wise": bool, "has_aux_outputs": bool, "constant_state": bool,
                "freezes_batchnorm": bool, "graph_capture_blocker": str, "memory_name": str, "num_objects": int}
    for member, kind in declared.items():
        value = getattr(model, member)
        if not isinstance(value, kind):
            raise ConfigError(f"{name} does not implement the model interface: {member} is "
                              f"{type(value).__name__}, expected {kind.__name__}")
    if not model.memory_name:
        raise ConfigError(f"{name} does not implement the model interface: memory_name is empty (use '-')")
    stepper = model.stepper()
    missing = _missing(stepper, STEPPER_MEMBERS)
    if missing:
        raise ConfigError(f"{name}.stepper() returns {type(stepper).__name__}, which does not implement the "
                          f"stepper interface: missing {', '.join(missing)}")
