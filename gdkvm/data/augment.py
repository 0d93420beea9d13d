"""Clip-consistent augmentation with torch ops only (paper §4.1).

Four transforms, each applied with its own probability (0.5 by default): random scaling (zoom about
the centre, cropped or zero-padded back to the input size), random rotation, gamma, and contrast.
One set of random parameters is drawn per clip and applied to every frame, so the motion between
frames is untouched. Geometry uses ``affine_grid``/``grid_sample``: bilinear for images, nearest for
masks (label values are never mixed). A ``torch.Generator`` drives all randomness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the four transforms. Ranges are (low, high), sampled uniformly
    (gamma log-uniformly); rotation is uniform in [-max_degrees, max_degrees]."""

    p_scale: float = 0.5
    scale_range: tuple[float, float] = (0.85, 1.15)
    p_rotate: float = 0.5
    max_degrees: float = 15.0
    p_gamma: float = 0.5
    gamma_range: tuple[float, float] = (0.7, 1.5)
    p_contrast: float = 0.5
    contrast_range: tuple[float, float] = (0.8, 1.2)

    @classmethod
    def disabled(cls) -> AugmentConfig:
        """Every probability 0: augmentation is the identity."""
        return cls(p_scale=0.0, p_rotate=0.0, p_gamma=0.0, p_contrast=0.0)


@dataclass(frozen=True)
class AugmentParams:
    """The parameters drawn for one clip; ``None`` means the transform is not applied."""

    scale: float | None
    degrees: float | None
    gamma: float | None
    contrast: float | None


def sample_params(generator: torch.Generator, config: AugmentConfig) -> AugmentParams:
    """Draw one clip's parameters. Always consumes 8 uniforms, so streams stay aligned across configs."""
    u = torch.rand(8, generator=generator, dtype=torch.float64).tolist()

    def uniform(x: float, low: float, high: float) -> float:
        return low + (high - low) * x

    scale = uniform(u[1], *config.scale_range) if u[0] < config.p_scale else None
    degrees = uniform(u[3], -config.max_degrees, config.max_degrees) if u[2] < config.p_rotate else None
    gamma = None
    if u[4] < config.p_gamma:
        low, high = (math.log(g) for g in config.gamma_range)
        gamma = math.exp(uniform(u[5], low, high))
    contrast = uniform(u[7], *config.contrast_range) if u[6] < config.p_contrast else None
    return AugmentParams(scale=scale, degrees=degrees, gamma=gamma, contrast=contrast)


def _affine_theta(height: int, width: int, scale: float, degrees: float, dtype: torch.dtype) -> torch.Tensor:
    """(1, 2, 3) ``affine_grid`` matrix mapping output to input coordinates for a zoom by ``scale`` and a
    rotation by ``degrees`` about the image centre, in pixel-true (aspect-corrected) geometry."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    # pixel coords p = D n with D = diag(W/2, H/2); input = R(-angle) p / scale; back to normalised.
    inv = torch.tensor([[cos, sin], [-sin, cos]], dtype=torch.float64) / scale
    d = torch.diag(torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64))
    linear = torch.linalg.inv(d) @ inv @ d
    theta = torch.zeros(1, 2, 3, dtype=torch.float64)
    theta[0, :, :2] = linear
    return theta.to(dtype)


def apply_params(
    images: torch.Tensor, masks: torch.Tensor, params: AugmentParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``params`` to a clip.

    Args:
        images: (T, C, H, W) float in [0, 1].
        masks: (T, H, W) integer label maps.
    Returns:
        (images, masks) of the same shapes and dtypes.
    """
    if params.scale is not None or params.degrees is not None:
        t, _, h, w = images.shape
        theta = _affine_theta(h, w, params.scale or 1.0, params.degrees or 0.0, images.dtype).expand(t, 2, 3)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        warped = F.grid_sample(
            masks[:, None].to(images.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
        masks = warped[:, 0].round().to(masks.dtype)
    if params.gamma is not None or params.contrast is not None:
        images = _intensity(images, params.gamma, params.contrast)
    return images, masks


def _intensity(images: torch.Tensor, gamma: float | None, contrast: float | None) -> torch.Tensor:
    """Gamma, then contrast about the clip mean (one scalar, so every frame gets the same map).

    Applied frame by frame: vectorised kernels round a frame's pixels differently depending on where
    the frame starts in memory, and identical frames must stay bit-identical.
    """
    mean = None
    if contrast is not None:
        source = images.clamp(0.0, 1.0).pow(gamma) if gamma is not None else images
        mean = float(source.double().mean())
    frames = []
    for frame in images:
        out = frame.clone()
        if gamma is not None:
            out = out.clamp(0.0, 1.0).pow(gamma)
        if mean is not None:
            out = ((out - mean) * contrast + mean).clamp(0.0, 1.0)
        frames.append(out)
    return torch.stack(frames)


def augment_clip(
    images: torch.Tensor,
    masks: torch.Tensor,
    generator: torch.Generator,
    config: AugmentConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one parameter set from ``generator`` and apply it to every frame of the clip.

    images: (T, C, H, W) float in [0, 1]; masks: (T, H, W) integer. Returns the same shapes/dtypes.
    """
    params = sample_params(generator, config or AugmentConfig())
    return apply_params(images, masks, params)
