"""Typed model configuration and the size presets ``paper``, ``tiny`` and ``small``.

A :class:`ModelConfig` fully describes a GDKVM network: building ``GDKVM(cfg)`` twice gives the same
architecture, and a checkpoint stores ``to_dict(cfg)`` so the model rebuilds from the file alone.
Variants (``gdkvm.models.registry``) are presets plus a few overrides (memory rule, KPFF on/off).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

from gdkvm.errors import ConfigError, unknown_name

PresetName = Literal["paper", "tiny", "small"]
PRESETS: tuple[str, ...] = get_args(PresetName)

#: The encoder trunks (:mod:`gdkvm.models.backbone`); the one definition of the name set.
BackboneName = Literal["resnet18", "resnet50"]
KeyScale = Literal["sqrt-pixels", "frobenius", "none"]
KEY_SCALES: tuple[str, ...] = get_args(KeyScale)
StepOrder = Literal["paper", "read-first"]
STEP_ORDERS: tuple[str, ...] = get_args(StepOrder)
DecayForm = Literal["exp", "official"]
DECAY_FORMS: tuple[str, ...] = get_args(DecayForm)


_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


def _as_bool(name: str, value: Any) -> bool:
    """A switch of the model config: true/false, 1/0 or yes/no (as ``--model-set`` and YAML give them)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"model config: {name} must be true or false (or 1/0, yes/no), got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes and switches of one GDKVM network.

    Channel names follow the paper: ``key_dim`` = Ck, ``value_dim`` = Cv. All maps below the image
    resolution are at stride 16 (memory, sensory, object transformer), 8 and 4 (decoder skips).
    """

    # memory
    memory_rule: str = "gdr"
    decay_form: DecayForm = "exp"
    # "sqrt-pixels": keys enter the linear/delta/gdr memory scaled by 1/sqrt(N) (N pixels per frame), so
    # K^T K has spectral norm <= 1 (the delta erase stays a contraction) and the readout is a pixel average;
    # "none": the paper's Eqs. 3-5 summed over pixels as written (unstable beyond a few pixels: see docs/model.md).
    # "frobenius": keys scaled by 1 / ||K_t||_F per frame (also makes the erase a contraction, without
    # tying the scale to the pixel count).
    key_scale: KeyScale = "sqrt-pixels"
    # order of one frame's memory steps. "paper" (Sec. 3.1, Eq. 3, and the released code): encode the value
    # from the frame's image and the *previous* frame's mask, write S_t, then read S_t with the same key K_t.
    # "read-first" (gdkvm before 0.2): read S_{t-1} with K_t, segment, then encode the value from the
    # frame's own prediction and write.
    step_order: StepOrder = "paper"
    memory_heads: int = 8
    key_dim: int = 64
    value_dim: int = 256
    # encoders
    key_backbone: BackboneName = "resnet50"
    key_backbone_width: int = 64
    value_backbone: BackboneName = "resnet18"
    value_backbone_width: int = 64
    freeze_bn: bool = False
    kpff: bool = True
    pixel_dim: int = 256
    sensory_dim: int = 256
    # object transformer (Cutie's object queries); embed_dim is also the decoder's stride-16 width
    object_transformer: bool = True
    embed_dim: int = 256
    num_queries: int = 16
    transformer_blocks: int = 3
    transformer_heads: int = 8
    transformer_ff_dim: int = 2048
    # decoder widths at stride 8 and 4
    decoder_dims: tuple[int, int] = (128, 128)
    # objects (the left ventricle alone by default)
    num_objects: int = 1

    def __post_init__(self) -> None:
        from gdkvm.models.memory import MEMORY_RULES

        object.__setattr__(self, "decoder_dims", tuple(self.decoder_dims))
        for f in dataclasses.fields(self):
            if f.type in ("bool", bool):
                object.__setattr__(self, f.name, _as_bool(f.name, getattr(self, f.name)))

        if self.memory_rule not in MEMORY_RULES:
            raise unknown_name("memory rule", self.memory_rule, MEMORY_RULES)
        if self.key_scale not in KEY_SCALES:
            raise ConfigError(f"model config: key_scale {self.key_scale!r} is not one of {list(KEY_SCALES)}")
        if self.step_order not in STEP_ORDERS:
            raise ConfigError(f"model config: step_order {self.step_order!r} is not one of {list(STEP_ORDERS)}")
        if self.decay_form not in DECAY_FORMS:
            raise ConfigError(f"model config: decay_form {self.decay_form!r} is not one of {list(DECAY_FORMS)}")
        for name in ("key_backbone", "value_backbone"):
            if getattr(self, name) not in get_args(BackboneName):
                raise ConfigError(
                    f"model config: {name} {getattr(self, name)!r} is not one of {list(get_args(BackboneName))}"
                )
        positive = (
            "memory_heads key_dim value_dim key_backbone_width value_backbone_width pixel_dim "
            "sensory_dim embed_dim num_queries transformer_heads transformer_ff_dim num_objects"
        ).split()
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model config: {name} must be a positive integer, got {value!r}")
        if self.transformer_blocks < 0:
            raise ConfigError(f"model config: transformer_blocks must be >= 0, got {self.transformer_blocks}")
        if len(self.decoder_dims) != 2 or any(d < 1 for d in self.decoder_dims):
            raise ConfigError(f"model config: decoder_dims must be two positive widths, got {self.decoder_dims}")
        if self.value_dim % self.memory_heads:
            raise ConfigError(
                f"model config: value_dim {self.value_dim} must be divisible by memory_heads {self.memory_heads}"
            )
        if self.object_transformer:
            if self.embed_dim % self.transformer_heads:
                raise ConfigError(
                    f"model config: embed_dim {self.embed_dim} must be divisible by "
                    f"transformer_heads {self.transformer_heads}"
                )
            if self.num_queries % 2:
                raise ConfigError(
                    f"model config: num_queries must be even (half foreground, half background), "
                    f"got {self.num_queries}"
                )

    def replace(self, **overrides: Any) -> ModelConfig:
        """A copy with ``overrides`` applied; an unknown field name is a one-line ConfigError."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"model config: unknown field(s) {unknown}; valid: {sorted(names)}")
        return dataclasses.replace(self, **overrides)


def paper_config() -> ModelConfig:
    """The paper's sizes (Cutie-base widths): ResNet-50 keys (Ck=64), ResNet-18 values (Cv=256)."""
    return ModelConfig()


def tiny_config() -> ModelConfig:
    """Narrow widths for CPU tests and the demo (well under 2M parameters)."""
    return ModelConfig(
        memory_heads=4,
        key_dim=16,
        value_dim=32,
        key_backbone_width=16,
        value_backbone_width=8,
        pixel_dim=32,
        sensory_dim=32,
        embed_dim=32,
        num_queries=8,
        transformer_blocks=1,
        transformer_heads=4,
        transformer_ff_dim=64,
        decoder_dims=(16, 16),
    )


def small_config() -> ModelConfig:
    """CPU-trainable widths with a ResNet-18 key trunk (about 1.9M parameters, 7.6 MB in fp32): the
    preset of the shipped phantom-trained weights (``gdkvm/weights``)."""
    return tiny_config().replace(
        key_backbone="resnet18",
        key_backbone_width=32,
        value_backbone_width=16,
        key_dim=32,
        value_dim=64,
        pixel_dim=64,
        sensory_dim=64,
        embed_dim=64,
        transformer_ff_dim=128,
        decoder_dims=(32, 32),
    )


def preset_config(preset: str) -> ModelConfig:
    """The config of a named preset (``paper``, ``tiny`` or ``small``); an unknown name lists the valid ones."""
    if preset == "paper":
        return paper_config()
    if preset == "tiny":
        return tiny_config()
    if preset == "small":
        return small_config()
    raise unknown_name("preset", preset, PRESETS)
