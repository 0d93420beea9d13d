"""Ultrasound image formation on scan-line (polar) samples.

The received signal of one frame is modelled in complex baseband:

    s(r, theta) = g(r, theta) * [PSF * (E . S)](r, theta) + clutter(r, theta) + noise(r, theta)

with S a complex Gaussian scatterer field attached to the tissue, E the echogenicity (amplitude) map,
PSF a separable Gaussian (axial along r, lateral in angle, so the lateral resolution in mm degrades with
depth as in a phased array), g the residual depth attenuation after time-gain compensation and the
edge-of-sector sensitivity loss. The envelope |s| is Rayleigh distributed in homogeneous tissue (fully
developed speckle); it is log-compressed to 8-bit gray and scan-converted to the Cartesian image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gdkvm.data.phantom.geometry import PixelGrid, PolarGrid


@dataclass(frozen=True)
class ImagingParams:
    """Scanner and image-quality settings of one acquisition."""

    psf_axial_mm: float  # Gaussian sigma of the pulse envelope
    psf_lateral_rad: float  # Gaussian sigma of the beam profile (angle), far field
    psf_lateral_min_mm: float  # the beam is never narrower than this (finite aperture)
    attenuation_db_per_mm: float  # residual signal loss with depth after TGC
    tgc_db_per_mm: float  # receive gain slope: electronic noise grows with depth at this rate
    noise_db: float  # noise amplitude at r = 0, dB relative to myocardium
    clutter_near_db: float  # near-field reverberation amplitude at r = 0
    clutter_decay_mm: float
    haze_db: float  # stationary clutter floor everywhere
    dynamic_range_db: float
    gray_myocardium: float  # gray level of the myocardium's median log-envelope
    edge_loss: float  # fractional amplitude loss at the sector edge


def complex_white(rng: np.random.Generator, shape: tuple[int, int], smooth: float = 0.0) -> np.ndarray:
    """Complex Gaussian field as float32 (n_r, n_theta, 2) with unit mean power per sample.

    ``smooth`` > 0 low-pass filters it (sigma in samples) before renormalising, so that bilinear
    resampling at sub-sample positions keeps a nearly uniform variance.
    """
    field = rng.standard_normal((shape[0], shape[1], 2), dtype=np.float32)
    if smooth > 0:
        k = _gauss_kernel(smooth)
        field = cv2.sepFilter2D(field, -1, k, k, borderType=cv2.BORDER_REFLECT)
    power = float(np.mean(np.sum(field * field, axis=2)))
    return field / np.float32(np.sqrt(power))


def receiver_noise(rng: np.random.Generator, shape: tuple[int, int], grid: PolarGrid, params: ImagingParams
                   ) -> np.ndarray:
    """Band-limited complex receiver noise (…, 2) with unit mean power: white noise through the
    receive filter (the axial PSF) and a narrower lateral smoothing."""
    noise = rng.standard_normal((shape[0], shape[1], 2), dtype=np.float32)
    sx, sy = psf_sigmas(grid, params)
    noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=0.5 * sx, sigmaY=sy, borderType=cv2.BORDER_REFLECT)
    return noise / np.float32(np.sqrt(np.mean(np.sum(noise * noise, axis=2))))


SCATTER_SMOOTH = 0.7  # pre-smoothing (samples) of the scatterer field, see complex_white


def psf_sigmas(grid: PolarGrid, params: ImagingParams) -> tuple[float, float]:
    """Far-field PSF sigmas in samples: (lateral in lines, axial in depth samples)."""
    return params.psf_lateral_rad / grid.dtheta_rad, params.psf_axial_mm / grid.dr_mm


def lateral_sigmas(grid: PolarGrid, params: ImagingParams) -> np.ndarray:
    """Lateral PSF sigma in lines for every depth (n_r,): a fixed beam angle in the far field, but
    never narrower than ``params.psf_lateral_min_mm`` (finite aperture) near the transducer."""
    r = np.maximum(grid.radii(), grid.dr_mm)
    sigma_rad = np.sqrt(params.psf_lateral_rad**2 + (params.psf_lateral_min_mm / r) ** 2)
    return np.minimum(sigma_rad / grid.dtheta_rad, 0.5 * grid.n_theta)


def _gauss_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(3.5 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def _variance_gain(sigma: float) -> float:
    """Variance of a unit-variance field pre-smoothed by SCATTER_SMOOTH, after blurring by ``sigma``
    (one dimension, discrete kernels): sum((k0 * k)^2) / sum(k0^2)."""
    k0 = _gauss_kernel(SCATTER_SMOOTH)
    both = np.convolve(k0, _gauss_kernel(sigma))
    return float(np.sum(both.astype(np.float64) ** 2) / np.sum(k0.astype(np.float64) ** 2))


def _bands(sigmas: np.ndarray) -> list[tuple[int, int, float]]:
    """Group consecutive rows whose sigmas agree within ~10 %: (start, stop, sigma)."""
    key = np.round(np.log(sigmas) / np.log(1.1)).astype(int)
    cuts = np.flatnonzero(np.diff(key)) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [len(sigmas)]])
    return [(int(a), int(b), float(np.exp(np.mean(np.log(sigmas[a:b]))))) for a, b in zip(starts, stops, strict=True)]


class PSF:
    """Separable PSF on the polar grid: Gaussian axial pulse, depth-dependent Gaussian beam width.

    ``apply`` blurs a complex (n_r, n_theta, 2) field and scales every depth so that a pre-smoothed
    unit-power scatterer field comes out with unit mean power.
    """

    def __init__(self, grid: PolarGrid, params: ImagingParams):
        _, axial = psf_sigmas(grid, params)
        self._axial = _gauss_kernel(axial)
        self._one = np.ones(1, np.float32)
        self._bands = _bands(lateral_sigmas(grid, params))
        self._lateral = {b: _gauss_kernel(b[2]) for b in self._bands}
        gain = np.empty(grid.n_r, np.float64)
        for band in self._bands:
            gain[band[0]:band[1]] = _variance_gain(band[2])
        self.norm = (1.0 / np.sqrt(gain * _variance_gain(axial))).astype(np.float32)

    def apply(self, field: np.ndarray) -> np.ndarray:
        out = cv2.sepFilter2D(field, -1, self._one, self._axial, borderType=cv2.BORDER_REFLECT)
        for band in self._bands:
            a, b, _ = band
            out[a:b] = cv2.sepFilter2D(out[a:b], -1, self._lateral[band], self._one, borderType=cv2.BORDER_REFLECT)
        out *= self.norm[:, None, None]
        return out


def depth_gain(grid: PolarGrid, params: ImagingParams) -> np.ndarray:
    """Signal gain g(r, theta) (n_r, n_theta): residual attenuation times edge-of-sector loss."""
    r = grid.radii()[:, None]
    th = grid.angles()[None, :] / grid.sector.half_angle_rad
    atten = 10.0 ** (-params.attenuation_db_per_mm * r / 20.0)
    edge = 1.0 - params.edge_loss * th**4
    return (atten * edge).astype(np.float32)


def noise_amplitude(grid: PolarGrid, params: ImagingParams) -> np.ndarray:
    """Electronic-noise amplitude after TGC, (n_r, 1): grows with depth."""
    r = grid.radii()[:, None]
    return (10.0 ** ((params.noise_db + params.tgc_db_per_mm * r) / 20.0)).astype(np.float32)


def clutter_amplitude(grid: PolarGrid, params: ImagingParams) -> np.ndarray:
    """Stationary clutter amplitude (n_r, 1): near-field reverberation plus a uniform haze."""
    r = grid.radii()[:, None]
    near = 10.0 ** (params.clutter_near_db / 20.0) * np.exp(-r / params.clutter_decay_mm)
    return (near + 10.0 ** (params.haze_db / 20.0)).astype(np.float32)


def envelope(field: np.ndarray) -> np.ndarray:
    """Magnitude of a complex (…, 2) field."""
    return cv2.magnitude(field[..., 0], field[..., 1])


def log_compress(env: np.ndarray, ref_db: float, params: ImagingParams) -> np.ndarray:
    """Envelope -> gray levels in [0, 255] (float32): ``ref_db`` maps to ``gray_myocardium``."""
    db = 20.0 * np.log10(env + np.float32(1e-6))
    gray = params.gray_myocardium + (db - ref_db) * np.float32(255.0 / params.dynamic_range_db)
    return np.clip(gray, 0.0, 255.0).astype(np.float32)


def scan_conversion_maps(grid: PolarGrid, pixels: PixelGrid) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps taking a polar image (n_r, n_theta) onto the pixel grid; outside the fan the
    maps point off the polar image, so remap with a constant 0 border blanks it."""
    x, y = pixels.probe_coords()
    map_x, map_y = grid.fractional_index(x, y)
    outside = (y < 0) | (np.hypot(x, y) > grid.sector.depth_mm)
    map_x = np.where(outside, -10.0, map_x)
    return map_x.astype(np.float32), map_y.astype(np.float32)


def scan_convert(polar: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Resample a polar image (n_r, n_theta) onto the Cartesian grid of ``maps`` (bilinear, 0 outside)."""
    return cv2.remap(polar, maps[0], maps[1], interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)
