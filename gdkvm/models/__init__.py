"""The GDKVM network: backbones, KPFF, memory rules, the object transformer and the variant registry.

The names below are re-exported lazily (importing ``gdkvm.models.config`` does not pull in the network):

* ``GDKVM``, ``Stepper`` (``gdkvm.models.gdkvm``): the model and its streaming driver;
* ``ModelConfig``, ``PRESETS``, ``preset_config`` (``gdkvm.models.config``);
* ``build_model``, ``get_variant``, ``list_variants``, ``register_variant``, ``VariantSpec``
  (``gdkvm.models.registry``);
* ``save_checkpoint``, ``load_model``, ``load_imagenet_backbones`` (``gdkvm.models.weights``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GDKVM": "gdkvm.models.gdkvm",
    "Stepper": "gdkvm.models.gdkvm",
    "ModelConfig": "gdkvm.models.config",
    "PRESETS": "gdkvm.models.config",
    "preset_config": "gdkvm.models.config",
    "build_model": "gdkvm.models.registry",
    "get_variant": "gdkvm.models.registry",
    "list_variants": "gdkvm.models.registry",
    "register_variant": "gdkvm.models.registry",
    "VariantSpec": "gdkvm.models.registry",
    "save_checkpoint": "gdkvm.models.weights",
    "load_model": "gdkvm.models.weights",
    "load_imagenet_backbones": "gdkvm.models.weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gdkvm.models' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)
