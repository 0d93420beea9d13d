"""Mask surfaces and surface distances, shared by the three segmentation-metric modes.

A surface is the set of foreground pixels with at least one 4-connected background neighbour (pixels
outside the image count as background): ``mask XOR binary_erosion(mask, 3x3 cross)``. This is what the
re-release protocol, medpy (connectivity 1) and MONAI (scipy's default structure) all use.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from gdkvm.metrics.errors import MetricError

CROSS_3X3 = ndimage.generate_binary_structure(2, 1)


def as_binary_mask(mask: np.ndarray, name: str) -> np.ndarray:
    """Return ``mask`` as a 2-D bool array; raise :class:`MetricError` unless it is 2-D and 0/1 valued.

    Args:
        mask: (H, W) bool or numeric array holding only 0 and 1 (use ``binarize`` for probabilities).
        name: what to call the array in the error message.
    """
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise MetricError(f"{name}: expected a 2-D (H, W) mask, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise MetricError(f"{name}: mask must be binary (0/1 or bool); threshold probabilities with binarize()")
    return arr.astype(bool)


def check_spacing(spacing: Sequence[float] | None, name: str = "spacing") -> tuple[float, float] | None:
    """Validate a (sy, sx) pixel spacing: two finite positive numbers, or None for pixel units."""
    if spacing is None:
        return None
    values = tuple(float(v) for v in np.asarray(spacing, dtype=float).ravel())
    if len(values) != 2:
        raise MetricError(f"{name}: expected (sy, sx), got {spacing!r}")
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise MetricError(f"{name}: spacing must be finite and > 0, got {spacing!r}")
    return values[0], values[1]


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface pixels of a bool mask: ``mask XOR erosion(mask, 3x3 cross)``, border counted as background.

    Args:
        mask: (H, W) bool.
    Returns:
        (H, W) bool, True on the one-pixel-thick inner boundary.
    """
    return mask ^ ndimage.binary_erosion(mask, structure=CROSS_3X3, border_value=0)


def directed_distances(
    source_surface: np.ndarray, target_surface: np.ndarray, spacing: tuple[float, float]
) -> np.ndarray:
    """Distance from every source-surface pixel to the nearest target-surface pixel.

    Args:
        source_surface: (H, W) bool, non-empty.
        target_surface: (H, W) bool, non-empty.
        spacing: (sy, sx) used to scale the Euclidean distance transform.
    Returns:
        (n_source,) float64 distances in the unit of ``spacing``.
    """
    field = ndimage.distance_transform_edt(~target_surface, sampling=spacing)
    return np.asarray(field[source_surface], dtype=np.float64)


def field_of_view_diagonal(shape: tuple[int, int], spacing: tuple[float, float]) -> float:
    """Largest centre-to-centre distance in an (H, W) image: sqrt(((H-1)*sy)^2 + ((W-1)*sx)^2)."""
    height, width = shape
    return float(np.hypot((height - 1) * spacing[0], (width - 1) * spacing[1]))
