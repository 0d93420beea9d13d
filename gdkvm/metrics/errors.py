"""Errors raised by the metrics library (all are :class:`gdkvm.errors.GdkvmError`)."""

from __future__ import annotations

from gdkvm.errors import GdkvmError


class MetricError(GdkvmError):
    """Bad input to a metric: wrong shape, non-binary mask, invalid spacing or an empty sample."""


class VolumeError(MetricError):
    """A mask from which no LV volume can be measured (empty, no contour, no mitral base, zero length)."""
