"""Baselines: whole alternative models behind GDKVM's model interface, registered as variants.

Importing this package registers ``unet`` (frame-wise U-Net, no temporal memory) and ``stm`` (space-time
memory with a softmax readout over every past frame) in :mod:`gdkvm.models.registry`; the registry
imports it by itself, so ``build_model("stm", preset="tiny")`` and ``gdkvm train --variant unet`` work
without importing anything here. Both are written from scratch for this project (see README.md).
"""

from __future__ import annotations

from baselines.stm import STM, STMConfig, build_stm
from baselines.unet import UNet, UNetConfig, build_unet

__all__ = ["STM", "STMConfig", "UNet", "UNetConfig", "build_stm", "build_unet"]
