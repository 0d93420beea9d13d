"""The training recipe as a frozen dataclass.

Defaults follow the paper (§4.1): AdamW, learning rate 1e-4, batch 10, 1500 iterations, global
gradient-norm clip 3, cross-entropy + soft Dice with equal weight, 10-frame clips, augmentations with
probability 0.5. Supervision defaults to the first and last frame of each clip (GDKVM's sparse
supervision); ``supervision="full"`` uses every labelled frame. Things the paper leaves open (weight
decay, learning-rate schedule, validation cadence) are documented choices here and in docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from gdkvm.config import from_dict, load_yaml, to_dict
from gdkvm.errors import ConfigError

Supervision = Literal["ends", "full"]
DeviceName = str  # auto | cpu | cuda | cuda:N, checked by gdkvm.utils.device.check_device_name
Schedule = Literal["constant", "cosine"]

SUPERVISIONS: tuple[str, ...] = get_args(Supervision)
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "cuda:N")
SCHEDULES: tuple[str, ...] = get_args(Schedule)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run; saved as ``config.yaml`` in the run folder.

    ``data`` is a prepared dataset folder (``PREPARED/<dataset>`` holding ``train/``, ``val/``,
    ``test/``); ``variant`` and ``preset`` name the model in :mod:`gdkvm.models.registry`.
    ``batch_size`` is the *global* batch; under DDP it is split evenly across ranks.
    """

    data: str
    variant: str = "full"
    preset: str = "paper"
    name: str = ""
    iterations: int = 1500
    batch_size: int = 10
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Schedule = "constant"
    warmup: int = 0
    grad_clip: float = 3.0
    ce_weight: float = 1.0
    dice_weight: float = 1.0
    supervision: Supervision = "ends"
    augment: bool = True
    # "paper": the paper's four transforms; "robust": plus scanner variety (gdkvm.data.augment)
    augment_profile: str = "paper"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N (gdkvm.utils.device)
    amp: bool = True
    val_every: int = 250
    ckpt_every: int = 250
    val_split: str = "val"
    max_val_videos: int = 0
    workers: int = 0
    # ImageNet ResNet weights: None; a bare path (into every trunk whose architecture matches the file);
    # or {key: PATH, value: PATH} naming the trunks (`--backbone-weights key=PATH value=PATH`)
    backbone_weights: str | dict[str, str] | None = None
    log_gates: bool = True
    model_overrides: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> TrainConfig:
        """Check ranges and names; return ``self`` so calls can chain. Raises :class:`ConfigError`."""
        positive = {
            "iterations": self.iterations,
            "batch_size": self.batch_size,
            "val_every": self.val_every,
            "ckpt_every": self.ckpt_every,
        }
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"train config: {key} must be >= 1, got {value}")
        if not self.lr > 0:
            raise ConfigError(f"train config: lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"train config: weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip <= 0:
            raise ConfigError(f"train config: grad_clip must be > 0, got {self.grad_clip}")
        if self.ce_weight < 0 or self.dice_weight < 0 or self.ce_weight + self.dice_weight == 0:
            raise ConfigError("train config: ce_weight and dice_weight must be >= 0 and not both 0")
        if self.supervision not in SUPERVISIONS:
            raise ConfigError(f"train config: supervision {self.supervision!r} not in {list(SUPERVISIONS)}")
        from gdkvm.utils.device import check_device_name

        check_device_name(self.device)  # one-line "unknown device ..." before anything runs
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train config: schedule {self.schedule!r} not in {list(SCHEDULES)}")
        from gdkvm.data.augment import AUGMENT_PROFILES

        if self.augment_profile not in AUGMENT_PROFILES:
            raise ConfigError(f"train config: augment_profile {self.augment_profile!r} not in {list(AUGMENT_PROFILES)}")
        from gdkvm.models.weights import check_backbone_spec

        check_backbone_spec(self.backbone_weights, "train config: backbone_weights")
        if self.warmup < 0 or self.workers < 0 or self.max_val_videos < 0:
            raise ConfigError("train config: warmup, workers and max_val_videos must be >= 0")
        return self

    @property
    def dataset_name(self) -> str:
        """The dataset folder's name (``camus``, ``echonet``, ...)."""
        return Path(self.data).name

    @property
    def run_name(self) -> str:
        """``name`` if given, else ``<dataset>-<variant>-<preset>``."""
        return self.name or f"{self.dataset_name}-{self.variant}-{self.preset}"

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A copy with the given fields replaced (``None`` values are ignored), validated."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **changes).validate()

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-friendly dict."""
        return to_dict(self)


# Fields that may be changed when a run is resumed. Those in the first group do not change the
# training trajectory; lr, grad_clip and amp do (on purpose, e.g. to get past a diverging loss), and
# a longer ``iterations`` continues the same trajectory only with the constant schedule.
RESUME_FREE_FIELDS: frozenset[str] = frozenset(
    {"val_every", "ckpt_every", "workers", "device", "max_val_videos", "data", "log_gates"}
    | {"iterations", "lr", "grad_clip", "amp"}
)


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a run's ``config.yaml`` (the ``train`` section or a flat mapping) into a TrainConfig."""
    raw = load_yaml(path)
    if isinstance(raw, dict) and "train" in raw:
        raw = raw["train"]
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of train options")
    return from_dict(TrainConfig, raw, where=str(path)).validate()
