"""Scanner effects beyond the convolution model, applied on the scan-line (polar) grid or the final image.

- ``incidence``: how squarely each interface faces the beam. A boundary reflects specularly: bright where
  its normal points along the beam (rows of the polar grid), faint where it runs along the beam. The
  normal is the gradient of the smoothed log-echogenicity, in mm (axial step dr, lateral step r dtheta).
- ``side_lobe_haze``: energy of bright tissue received through the side lobes, smeared laterally into
  the neighbouring dark cavities.
- ``shadow_gain``: rib and lung shadows, angular bands that lose signal beyond a depth.
- ``burn_overlay``: depth markers along the fan edge and small text blobs in the corners, as scanners
  leave them in exported frames.

docs/phantom.md (section 5b) gives the model and the calibration.
"""

from __future__ import annotations

import cv2
import numpy as np

from gdkvm.data.phantom.difficulty import Shadow
from gdkvm.data.phantom.geometry import PixelGrid, PolarGrid

_EDGE_BLUR_MM = 0.8  # smoothing of log-echo before the interface gradient
_WALL_BLUR_MM = 3.0  # smoothing that gives the orientation of a whole wall
_EDGE_REF_PER_MM = 1.2  # log-echo gradient counted as a full interface


def _blur_mm(field: np.ndarray, grid: PolarGrid, sigma_mm: float) -> np.ndarray:
    """Gaussian blur of an (n_r, n_theta) polar field by ``sigma_mm`` (lateral sigma at mid depth)."""
    r_mid = 0.5 * grid.sector.depth_mm
    sy = sigma_mm / grid.dr_mm
    sx = max(sigma_mm / (r_mid * grid.dtheta_rad), 0.3)
    return cv2.GaussianBlur(field, (0, 0), sigmaX=sx, sigmaY=sy, borderType=cv2.BORDER_REFLECT)


def _gradient_mm(field: np.ndarray, grid: PolarGrid) -> tuple[np.ndarray, np.ndarray]:
    """(d/dr, d/(r dtheta)) of a polar field, per mm."""
    g_r = cv2.Sobel(field, cv2.CV_32F, 0, 1, ksize=3) * np.float32(1.0 / (8.0 * grid.dr_mm))
    r = np.maximum(grid.radii(), 5.0).astype(np.float32)[:, None]
    g_t = cv2.Sobel(field, cv2.CV_32F, 1, 0, ksize=3) / (np.float32(8.0 * grid.dtheta_rad) * r)
    return g_r, g_t


def incidence(echo: np.ndarray, grid: PolarGrid, specular_gain: float, parallel_loss: float) -> np.ndarray:
    """Multiplicative factor (n_r, n_theta) float32 on the echogenicity ``echo`` of one frame.

    ``1 + specular_gain * edge * cos^6`` brightens interfaces facing the beam (edge in [0, 1] is the
    interface strength, cos the cosine between its normal and the beam), and ``1 - parallel_loss * wall *
    sin^2`` dims walls whose (wall-scale) normal is across the beam.
    """
    log_e = np.log(np.maximum(echo, 1e-3)).astype(np.float32)
    factor = np.ones_like(log_e)
    if specular_gain > 0:
        g_r, g_t = _gradient_mm(_blur_mm(log_e, grid, _EDGE_BLUR_MM), grid)
        mag2 = g_r * g_r + g_t * g_t
        cos2 = g_r * g_r / (mag2 + np.float32(1e-6))
        edge = np.clip(np.sqrt(mag2) * np.float32(1.0 / _EDGE_REF_PER_MM), 0.0, 1.0)
        factor += np.float32(specular_gain) * edge * cos2 * cos2 * cos2
    if parallel_loss > 0:
        g_r, g_t = _gradient_mm(_blur_mm(log_e, grid, _WALL_BLUR_MM), grid)
        mag2 = g_r * g_r + g_t * g_t
        sin2 = g_t * g_t / (mag2 + np.float32(1e-6))
        wall = np.clip(np.sqrt(mag2) * np.float32(2.0 / _EDGE_REF_PER_MM), 0.0, 1.0)
        factor *= 1.0 - np.float32(parallel_loss) * wall * sin2
    return factor


def side_lobe_haze(tissue_env: np.ndarray, grid: PolarGrid, level_db: float, lateral_mm: float) -> np.ndarray:
    """Haze amplitude (n_r, n_theta): the tissue envelope smeared over ``lateral_mm`` across the beams
    (and 1.5 mm along them), scaled by ``level_db``."""
    r_mid = 0.5 * grid.sector.depth_mm
    sx = max(lateral_mm / (r_mid * grid.dtheta_rad), 0.5)
    sy = 1.5 / grid.dr_mm
    smeared = cv2.GaussianBlur(tissue_env, (0, 0), sigmaX=sx, sigmaY=sy, borderType=cv2.BORDER_REFLECT)
    return smeared * np.float32(10.0 ** (level_db / 20.0))


def shadow_gain(grid: PolarGrid, shadows: tuple[Shadow, ...]) -> np.ndarray:
    """Amplitude gain (n_r, n_theta) of the acoustic shadows (1 where none)."""
    gain = np.ones((grid.n_r, grid.n_theta), np.float32)
    r = grid.radii()[:, None]
    th = grid.angles()[None, :]
    for s in shadows:
        across = np.exp(-0.5 * ((th - s.theta_rad) / (0.5 * s.width_rad)) ** 4)  # flat-topped band
        along = np.clip((r - s.start_mm) / 4.0, 0.0, 1.0)
        loss = 1.0 - 10.0 ** (-s.loss_db / 20.0)
        gain *= (1.0 - loss * across * along).astype(np.float32)
    return gain


def burn_overlay(image: np.ndarray, pixels: PixelGrid, grid: PolarGrid, rng: np.random.Generator) -> None:
    """Burn depth markers and text blobs into ``image`` (H, W) float32 in place (grey 0-255).

    The markers sit just outside the right edge of the fan every 10 mm (every 50 mm larger); the blobs
    in the top corners, outside the fan, so no overlay covers the heart.
    """
    h, w = image.shape
    level = float(rng.uniform(170.0, 240.0))
    edge = grid.sector.half_angle_rad + np.deg2rad(2.5)
    dot = max(1, round(0.006 * h))
    for depth in np.arange(10.0, grid.sector.depth_mm, 10.0):
        x = depth * np.sin(edge)
        y = depth * np.cos(edge)
        col, row = pixels.to_pixel(np.array([x]), np.array([y]))
        c, rr = int(round(float(col[0]))), int(round(float(row[0])))
        size = 2 * dot if depth % 50.0 == 0 else dot
        if 0 <= rr < h and 0 <= c < w:
            image[max(rr - size // 2, 0):rr + size // 2 + 1, max(c - size // 2, 0):c + size // 2 + 1] = level
    for _ in range(int(rng.integers(1, 4))):
        bh = max(2, round(h * rng.uniform(0.015, 0.03)))
        bw = max(4, round(w * rng.uniform(0.05, 0.14)))
        left = bool(rng.random() < 0.5)
        r0 = int(rng.integers(1, max(2, round(0.12 * h))))
        c0 = int(rng.integers(1, max(2, round(0.06 * w)))) if left else w - bw - int(rng.integers(1, max(2, round(0.06 * w))))
        glyphs = (rng.random((bh, bw)) < 0.45).astype(np.float32) * level
        region = image[r0:r0 + bh, c0:c0 + bw]
        np.maximum(region, glyphs[:region.shape[0], :region.shape[1]], out=region)
