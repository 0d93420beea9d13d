"""Evaluation metrics: segmentation (three protocols), LV volumes / EF and agreement, bootstrap CIs.

Pure numpy / scipy / scikit-image / pandas; no torch. Definitions are in ``docs/metrics.md``.
"""

from gdkvm.metrics.bootstrap import bootstrap_ci, paired_bootstrap_diff
from gdkvm.metrics.clinical import (
    EFResult,
    area_length_volume,
    biplane_ef,
    disk_diameters,
    ef_agreement,
    ef_from_volumes,
    legacy_ef_fraction,
    safe_area_length_volume,
    safe_biplane_ef,
    safe_single_plane_ef,
    safe_volume_single_plane,
    single_plane_ef,
    volume_single_plane,
    volumes_biplane,
)
from gdkvm.metrics.errors import MetricError, VolumeError
from gdkvm.metrics.segmentation import (
    MODES,
    THRESHOLDS,
    aggregate_legacy,
    binarize,
    pooled_dice,
    segmentation_metrics,
    segmentation_metrics_batch,
    summarize,
)

__all__ = [
    "EFResult",
    "MODES",
    "MetricError",
    "THRESHOLDS",
    "VolumeError",
    "aggregate_legacy",
    "area_length_volume",
    "binarize",
    "biplane_ef",
    "bootstrap_ci",
    "disk_diameters",
    "ef_agreement",
    "ef_from_volumes",
    "legacy_ef_fraction",
    "paired_bootstrap_diff",
    "pooled_dice",
    "safe_area_length_volume",
    "safe_biplane_ef",
    "safe_single_plane_ef",
    "safe_volume_single_plane",
    "segmentation_metrics",
    "segmentation_metrics_batch",
    "single_plane_ef",
    "summarize",
    "volume_single_plane",
    "volumes_biplane",
]
