"""Weights in and out: self-describing safetensors checkpoints and torchvision ImageNet backbones.

Checkpoint format (``save_checkpoint``): a safetensors file holding the model's state dict, with
metadata (all strings)::

    format         "gdkvm-checkpoint/1"
    gdkvm_version  package version; code_version adds the git commit when known
    model_class    "gdkvm.models.gdkvm:GDKVM" (import path of the model class)
    config_class   "gdkvm.models.config:ModelConfig"
    config         the config as JSON (``gdkvm.config.to_dict``)
    variant        registry name, or "" when unknown
    + any extra_metadata (JSON-encoded unless already a string)

``load_model(path)`` takes the model and config classes from the variant registry by the stored
``variant`` (``model_class``/``config_class`` are informative only and never imported; an old
checkpoint without a variant is mapped by its model family name), parses ``config`` into that
config class and loads the tensors after checking every key and shape. A GDKVM config without
``step_order`` (saved before that field) loads as ``"read-first"``. Every mismatch is a one-line
DataError naming what was expected and what was found.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from gdkvm import __version__
from gdkvm.config import from_dict, to_dict
from gdkvm.errors import ConfigError, DataError, GdkvmError
from gdkvm.models.backbone import ResNetTrunk, architecture_signature, trunk_signature, widen_first_conv
from gdkvm.models.interface import check_model
from gdkvm.utils.atomic import atomic_path

CHECKPOINT_FORMAT = "gdkvm-checkpoint/1"
_RESERVED = ("format", "gdkvm_version", "code_version", "model_class", "config_class", "config", "variant")
_SHOW = 4  # how many names a one-line error lists before "(+N more)"


def _names(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_SHOW])
    return shown + (f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def describe_mismatch(expected: Mapping[str, Tensor], got: Mapping[str, Tensor],
                      optional: Iterable[str] = ()) -> str | None:
    """A one-line description of how ``got`` differs from ``expected`` (keys and shapes), or None.

    Keys in ``optional`` may be absent from ``got`` without counting as missing.
    """
    optional = set(optional)
    missing = set(expected) - set(got) - optional
    unexpected = set(got) - set(expected)
    wrong = [k for k in sorted(set(expected) & set(got)) if tuple(expected[k].shape) != tuple(got[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_names(unexpected)}")
    if wrong:
        shown = "; ".join(f"{k} expected {_shape(expected[k])} got {_shape(got[k])}" for k in wrong[:_SHOW])
        more = f" (+{len(wrong) - _SHOW} more)" if len(wrong) > _SHOW else ""
        parts.append(f"{len(wrong)} shape mismatch(es): {shown}{more}")
    return "; ".join(parts) if parts else None


# ----------------------------------------------------------------------------- state-dict files
def read_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file or a ``.pth``/``.pt`` state dict (``torch.load(weights_only=True)``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            return load_file(str(path), device="cpu")
        if suffix in (".pth", ".pt", ".bin"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise DataError(path, f"unknown weights format '{suffix}'; expected .safetensors, .pth or .pt")
    except GdkvmError:
        raise
    except pickle.UnpicklingError:
        raise DataError(path, "cannot read weights: not a plain tensor state dict "
                        "(torch.load with weights_only=True refused it)") from None
    except (SafetensorError, RuntimeError, OSError, ValueError, EOFError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(path, f"cannot read weights: {first_line}") from None
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise DataError(path, "expected a state dict (a mapping from names to tensors)")
    return dict(obj)


# ----------------------------------------------------------------------------- ImageNet backbones
def load_resnet_weights(trunk: ResNetTrunk, path: str | Path, what: str = "backbone") -> None:
    """Load a torchvision ResNet state dict (``fc.*`` and ``layer4.*`` ignored) into ``trunk``.

    A trunk with more than 3 input channels (the value encoder) gets the ImageNet conv1 weights on the
    image channels and zeros on the extra ones. Any other missing/unexpected key or shape mismatch is a
    one-line DataError.
    """
    path = Path(path)
    source = {k: v for k, v in read_state_dict_file(path).items()
              if not (k.startswith("fc.") or k.startswith("layer4."))}
    target = trunk.state_dict()
    conv1 = source.get("conv1.weight")
    if (conv1 is not None and conv1.ndim == 4 and trunk.in_channels > conv1.shape[1] == 3
            and conv1.shape[0] == target["conv1.weight"].shape[0] and conv1.shape[2:] == target["conv1.weight"].shape[2:]):
        source["conv1.weight"] = widen_first_conv(conv1, trunk.in_channels)
    optional = [k for k in target if k.endswith("num_batches_tracked")]
    problem = describe_mismatch(target, source, optional=optional)
    if problem:
        block, depths = architecture_signature(set(source))
        looks = {("basic", (2, 2, 2)): "resnet18", ("bottleneck", (3, 4, 6)): "resnet50"}.get(
            (block, tuple(depths)), f"{block} blocks {list(depths)}")
        raise DataError(path, f"not a torchvision {trunk.arch} (width {trunk.width}) for the {what} "
                        f"(the file looks like {looks}): {problem}")
    trunk.load_state_dict(source, strict=False)


def load_imagenet_backbones(model: nn.Module, paths: Iterable[str | Path]) -> list[str]:
    """Load torchvision ImageNet weights into every encoder of ``model`` whose architecture matches.

    Each file's architecture (ResNet-18 or -50) is read from its key names and the file goes into the
    key encoder and/or the value encoder with that architecture. Returns lines like
    ``"key_encoder <- resnet50.pth"``. A file that fits no encoder, or whose shapes do not match (e.g.
    the narrow ``tiny`` preset), is a one-line DataError. :func:`load_backbone_weights` names the trunk
    of each file instead (``--backbone-weights key=PATH value=PATH``).
    """
    records = load_backbone_weights(model, [str(p) for p in paths], checksum=False)
    return [f"{r['module']} <- {Path(r['path']).name}" for r in records]


#: Trunk names of ``--backbone-weights NAME=PATH``: the key (image) encoder and the value (mask) encoder.
BACKBONE_TRUNKS: tuple[str, ...] = ("key", "value")

#: What a ``backbone_weights`` setting may be: None, a bare path (every trunk whose architecture matches
#: the file, the meaning of gdkvm <= 0.x's single ``--backbone-weights PATH``) or ``{trunk: path}``.
BackboneSpec = str | Mapping[str, str] | None


def encoder_trunks(model: nn.Module) -> dict[str, tuple[str, ResNetTrunk]]:
    """``{"key": (module name, trunk), "value": ...}``: the ResNet trunks of ``model`` by role.

    The role is the first part of the module name without ``_encoder`` (``key_encoder`` -> key,
    ``value_encoder.backbone`` -> value).
    """
    out: dict[str, tuple[str, ResNetTrunk]] = {}
    for name, module in model.named_modules():
        if isinstance(module, ResNetTrunk):
            role = name.split(".")[0].removesuffix("_encoder")
            out.setdefault(role, (name, module))
    return out


def parse_backbone_weights(items: Iterable[str] | None) -> BackboneSpec:
    """``--backbone-weights`` values -> the config's ``backbone_weights``.

    ``["key=a.pth", "value=b.pth"]`` -> ``{"key": "a.pth", "value": "b.pth"}``; a single bare
    ``["r50.pth"]`` -> ``"r50.pth"`` (matched to the trunks by architecture, as before). Only
    ``key=`` / ``value=`` prefixes name a trunk, so paths holding ``=`` still work as bare paths. A trunk
    named twice, two bare paths, or a bare path mixed with named ones is a one-line ConfigError.
    """
    items = list(items or [])
    named: dict[str, str] = {}
    bare: list[str] = []
    for item in items:
        head, sep, tail = str(item).partition("=")
        if sep and head.strip() in BACKBONE_TRUNKS:
            trunk = head.strip()
            if not tail.strip():
                raise ConfigError(f"--backbone-weights {item!r}: no path after '{trunk}='")
            if trunk in named:
                raise ConfigError(f"--backbone-weights: trunk '{trunk}' given twice "
                                  f"({named[trunk]!r} and {tail!r})")
            named[trunk] = tail
        elif not str(item).strip():
            raise ConfigError("--backbone-weights: empty path")
        else:
            bare.append(str(item))
    if bare and named:
        raise ConfigError(f"--backbone-weights: a bare PATH ({bare[0]!r}) cannot be combined with "
                          f"{'/'.join(f'{t}=PATH' for t in named)}; name every trunk (key=PATH value=PATH)")
    if len(bare) > 1:
        raise ConfigError(f"--backbone-weights: {len(bare)} bare paths; name the trunks instead: "
                          "--backbone-weights key=PATH --backbone-weights value=PATH")
    if bare:
        return bare[0]
    return named or None


def check_backbone_spec(spec: object, where: str = "backbone_weights") -> None:
    """One-line ConfigError unless ``spec`` is None, a non-empty path or ``{key|value: path}``."""
    if spec is None or (isinstance(spec, str) and spec.strip()):
        return
    if isinstance(spec, Mapping) and spec:
        for trunk, path in spec.items():
            if trunk not in BACKBONE_TRUNKS:
                raise ConfigError(f"{where}: unknown trunk {trunk!r}; expected one of {list(BACKBONE_TRUNKS)}")
            if not isinstance(path, str) or not path.strip():
                raise ConfigError(f"{where}: trunk '{trunk}' needs a path, got {path!r}")
        return
    raise ConfigError(f"{where}: expected a path or a mapping {{key: PATH, value: PATH}}, got {spec!r}")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_backbone_weights(model: nn.Module, spec: BackboneSpec | Iterable[str], checksum: bool = True
                          ) -> list[dict[str, str]]:
    """Load ImageNet ResNet weights into ``model``'s trunks as ``spec`` says; returns what was loaded.

    ``spec``: ``{"key": PATH, "value": PATH}`` (each file checked against that trunk's architecture:
    missing / unexpected keys and shape mismatches in one DataError line), a bare path or a list of bare
    paths (each file into every trunk with the same architecture, read from its key names), or None.
    Each record: ``trunk``, ``module``, ``arch``, ``path`` (absolute) and ``sha256`` (with ``checksum``).
    """
    if spec is None:
        return []
    if not isinstance(spec, (list, tuple, Path)):
        check_backbone_spec(spec)
    trunks = encoder_trunks(model)
    if not trunks:
        raise ConfigError(f"{type(model).__name__} has no ResNet encoder to load ImageNet weights into")
    plan: list[tuple[str, Path]] = []  # (trunk role, file)
    if isinstance(spec, Mapping):
        for role, raw in spec.items():
            if role not in trunks:
                raise ConfigError(f"backbone weights for trunk '{role}': {type(model).__name__} has no {role} "
                                  f"encoder (trunks: {', '.join(trunks)})")
            plan.append((role, Path(raw)))
    else:
        for raw in [spec] if isinstance(spec, (str, Path)) else list(spec):
            path = Path(raw)
            signature = architecture_signature(set(read_state_dict_file(path)))
            matches = [role for role, (_, trunk) in trunks.items() if trunk_signature(trunk) == signature]
            if not matches:
                have = ", ".join(f"{n} ({t.arch})" for n, t in trunks.values())
                raise DataError(path, f"ResNet with {signature[0]} blocks {list(signature[1])} matches no encoder; "
                                f"expected one of: {have} (or name the trunk: key=PATH / value=PATH)")
            plan += [(role, path) for role in matches]
    records = []
    for role, path in plan:
        module, trunk = trunks[role]
        load_resnet_weights(trunk, path, what=f"{role} encoder ({module})")
        record = {"trunk": role, "module": module, "arch": trunk.arch, "path": str(path.resolve())}
        if checksum:
            record["sha256"] = file_sha256(path)
        records.append(record)
    return records


# ----------------------------------------------------------------------------- checkpoints
def code_version() -> str:
    """The package version, plus ``+g<commit>`` when the source tree is a git checkout with commits."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return __version__
    sha = out.stdout.strip()
    return f"{__version__}+g{sha}" if out.returncode == 0 and sha else __version__


def _qualname(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


#: Model family name (the class name stored in old checkpoints' model_class) -> a variant that builds it.
_FAMILY_VARIANTS = {"GDKVM": "full"}


def _family(metadata: Mapping[str, str], path: Path) -> tuple[type, type]:
    """(model class, config class) for a checkpoint, taken from the variant registry, never from the file.

    The stored ``variant`` picks the registered builder; a checkpoint without a known variant falls back
    to the model family name in ``model_class`` when the registry knows it (only the class name is
    compared; the module path in the file is never imported).
    """
    from gdkvm.models.registry import build_model, get_variant, list_variants

    variant = metadata.get("variant", "")
    if variant not in list_variants():
        family = metadata.get("model_class", "").rpartition(":")[2].rpartition(".")[2]
        if family not in _FAMILY_VARIANTS:
            raise DataError(path, f"checkpoint variant '{variant or 'unknown'}' is not registered in this "
                            f"version of gdkvm (see `gdkvm variants`)")
        variant = _FAMILY_VARIANTS[family]
    if get_variant(variant).builder is None:  # a GDKVM variant: no probe build needed
        from gdkvm.models.config import ModelConfig
        from gdkvm.models.gdkvm import GDKVM

        return GDKVM, ModelConfig
    with torch.device("meta"):
        probe = build_model(variant, "tiny")
    return type(probe), type(probe.config)


def _parse_config(config_cls: type, raw: str, path: Path) -> Any:
    """The stored config JSON as ``config_cls``; old GDKVM configs without ``step_order`` ran read-first."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise DataError(path, "checkpoint config metadata is not valid JSON") from None
    if not isinstance(data, dict):
        raise DataError(path, "checkpoint config metadata is not a JSON object")
    fields = {f.name for f in dataclasses.fields(config_cls)}
    if "step_order" in fields and "step_order" not in data:
        data["step_order"] = "read-first"  # trained before the paper's step order existed
    try:
        return from_dict(config_cls, data, where=f"{path.name}: config")
    except ConfigError as e:
        raise DataError(path, f"checkpoint config does not fit this version of gdkvm: {e}") from None


def save_checkpoint(model: nn.Module, path: str | Path, extra_metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``model``'s weights, config and code version to a safetensors file, atomically.

    ``model`` must implement :class:`gdkvm.models.interface.SegmentationModel` (its dataclass ``config``
    rebuilds it in :func:`load_model`); otherwise a one-line ConfigError names the missing member.
    ``extra_metadata`` values are stored as strings (JSON for non-strings); reserved keys are refused.
    """
    path = Path(path)
    check_model(model)
    config = model.config
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "gdkvm_version": __version__,
        "code_version": code_version(),
        "model_class": _qualname(model),
        "config_class": _qualname(config),
        "config": json.dumps(to_dict(config), sort_keys=True),
        "variant": model.variant or "",
    }
    for key, value in (extra_metadata or {}).items():
        if key in _RESERVED:
            raise ConfigError(f"extra_metadata key '{key}' is reserved; reserved: {', '.join(_RESERVED)}")
        metadata[str(key)] = value if isinstance(value, str) else json.dumps(to_dict(value), sort_keys=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def read_checkpoint_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a gdkvm checkpoint; a file that is not one is a one-line DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise DataError(path, f"not a safetensors checkpoint ({str(e).strip().splitlines()[0]})") from None
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise DataError(path, f"not a gdkvm checkpoint: format {metadata.get('format')!r}, "
                        f"expected {CHECKPOINT_FORMAT!r}")
    return metadata


def check_variant(path: str | Path, expected: str) -> None:
    """Raise a one-line DataError unless the checkpoint at ``path`` was saved from variant ``expected``."""
    got = read_checkpoint_metadata(path).get("variant", "")
    if got != expected:
        raise DataError(path, f"checkpoint is variant '{got or 'unknown'}', expected variant '{expected}'")


def load_state_dict_checked(model: nn.Module, state: Mapping[str, Tensor], source: str | Path) -> None:
    """``model.load_state_dict(state)`` after a key/shape check that fails with one line naming ``source``."""
    problem = describe_mismatch(model.state_dict(), state)
    if problem:
        raise DataError(source, f"weights do not match {type(model).__name__}: {problem}")
    model.load_state_dict(state, strict=True)


def load_model(path: str | Path, map_location: str | torch.device = "cpu", variant: str | None = None) -> nn.Module:
    """Rebuild the model saved by :func:`save_checkpoint` and load its weights (eval mode not set).

    ``variant``: if given, the checkpoint must have been saved from that variant.
    """
    path = Path(path)
    metadata = read_checkpoint_metadata(path)
    if variant is not None:
        check_variant(path, variant)
    model_cls, config_cls = _family(metadata, path)
    config = _parse_config(config_cls, metadata.get("config", ""), path)
    model = model_cls(config)
    if metadata.get("variant"):
        model.variant = metadata["variant"]
    state = load_file(str(path), device=str(map_location))
    load_state_dict_checked(model, state, path)
    return model.to(map_location)


# ----------------------------------------------------------------------------- shipped weights
SHIPPED_WEIGHTS_NAME = "gdkvm-phantom.safetensors"


def shipped_weights_path() -> Path:
    """Where the package's shipped checkpoint lives (``gdkvm/weights/``; it may be absent)."""
    return Path(__file__).resolve().parents[1] / "weights" / SHIPPED_WEIGHTS_NAME


def shipped_model_card_path() -> Path:
    """The model card beside the shipped checkpoint."""
    return shipped_weights_path().with_name("MODEL_CARD.md")
