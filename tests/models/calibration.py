"""Test helper shared by the model tests: BatchNorm statistics taken from one clip."""

from __future__ import annotations

import torch
from torch import nn


def calibrate_batchnorm(model: nn.Module, clip: torch.Tensor) -> nn.Module:
    """Put ``model`` in eval mode with BatchNorm statistics computed from ``clip`` (B, T, 1, H, W).

    Random initial statistics would saturate the soft aggregation, so numeric comparisons use this.
    """
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one pass sets the statistics
    model.train()
    with torch.no_grad():
        model(clip)
    return model.eval()
