"""Clip-consistent augmentation with torch ops only (paper §4.1, plus a scanner-variety profile).

The paper's four transforms, each applied with its own probability (0.5 by default): random scaling
(zoom about the centre, cropped or zero-padded back to the input size), random rotation, gamma, and
contrast. The ``robust`` profile (:meth:`AugmentConfig.robust`, used to train the shipped weights) adds
what differs between scanners, operators and patients: a shift of the view, overall gain, depth-decaying
near-field haze, a wider or narrower resolution cell (blur), multiplicative speckle-like noise, and echo
dropout (angular shadows from the probe at the top centre that darken part of the scene), and it widens
the paper's ranges. One set of random parameters is drawn per clip and applied to every frame, so the
motion between frames is untouched (only the speckle noise is drawn anew per frame). Geometry uses
``affine_grid``/``grid_sample``: bilinear for images, nearest for masks (label values are never mixed).
A ``torch.Generator`` drives all randomness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal, get_args

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
    # scanner variety (off in the paper profile)
    p_shift: float = 0.0
    max_shift: float = 0.1  # fraction of the image size, per axis
    p_gain: float = 0.0
    gain_range: tuple[float, float] = (0.6, 1.4)
    p_haze: float = 0.0
    haze_range: tuple[float, float] = (0.03, 0.25)  # added grey at the top, decaying with depth
    p_blur: float = 0.0
    blur_range: tuple[float, float] = (0.5, 1.6)  # Gaussian sigma in pixels
    p_speckle: float = 0.0
    speckle_range: tuple[float, float] = (0.1, 0.45)  # std of the multiplicative noise
    p_dropout: float = 0.0
    dropout_shadows: tuple[int, int] = (1, 3)
    dropout_depth: tuple[float, float] = (0.4, 0.95)  # fraction of the echo removed in a shadow

    @classmethod
    def disabled(cls) -> AugmentConfig:
        """Every probability 0: augmentation is the identity."""
        return cls(p_scale=0.0, p_rotate=0.0, p_gamma=0.0, p_contrast=0.0)

    @classmethod
    def robust(cls) -> AugmentConfig:
        """The profile for models meant to work on other scanners than the training data's."""
        return cls(p_scale=0.7, scale_range=(0.75, 1.25), p_rotate=0.6, max_degrees=20.0, p_gamma=0.6,
                   gamma_range=(0.5, 2.0), p_contrast=0.6, contrast_range=(0.6, 1.5), p_shift=0.6, p_gain=0.6,
                   p_haze=0.4, p_blur=0.4, p_speckle=0.4, p_dropout=0.5)

    @property
    def uses_scanner_variety(self) -> bool:
        return any(p > 0 for p in (self.p_shift, self.p_gain, self.p_haze, self.p_blur, self.p_speckle,
                                   self.p_dropout))


AugmentProfile = Literal["paper", "robust"]
AUGMENT_PROFILES: tuple[str, ...] = get_args(AugmentProfile)


def augment_profile(name: str) -> AugmentConfig:
    """The :class:`AugmentConfig` of a named profile (``paper`` or ``robust``)."""
    if name == "paper":
        return AugmentConfig()
    if name == "robust":
        return AugmentConfig.robust()
    from gdkvm.errors import unknown_name

    raise unknown_name("augmentation profile", name, AUGMENT_PROFILES)


@dataclass(frozen=True)
class AugmentParams:
    """The parameters drawn for one clip; ``None`` means the transform is not applied."""

    scale: float | None
    degrees: float | None
    gamma: float | None
    contrast: float | None
    shift: tuple[float, float] | None = None  # (dx, dy) as fractions of the width / height
    gain: float | None = None
    haze: float | None = None
    blur: float | None = None
    speckle: float | None = None
    speckle_seed: int | None = None
    shadows: tuple[tuple[float, float, float, float], ...] | None = None  # (angle, half width, start, depth)


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
    params = AugmentParams(scale=scale, degrees=degrees, gamma=gamma, contrast=contrast)
    if not config.uses_scanner_variety:
        return params
    # scanner variety: a second fixed block of draws, so the paper profile's stream is unchanged
    v = torch.rand(24, generator=generator, dtype=torch.float64).tolist()
    shift = None
    if v[0] < config.p_shift:
        shift = (uniform(v[1], -config.max_shift, config.max_shift), uniform(v[2], -config.max_shift, config.max_shift))
    gain = uniform(v[4], *config.gain_range) if v[3] < config.p_gain else None
    haze = uniform(v[6], *config.haze_range) if v[5] < config.p_haze else None
    blur = uniform(v[8], *config.blur_range) if v[7] < config.p_blur else None
    speckle = uniform(v[10], *config.speckle_range) if v[9] < config.p_speckle else None
    speckle_seed = int(v[11] * 2**31) if speckle is not None else None
    shadows = None
    if v[12] < config.p_dropout:
        low, high = config.dropout_shadows
        count = low + min(int(v[13] * (high - low + 1)), high - low)
        shadows = tuple(
            (uniform(v[14 + 3 * i], -0.6, 0.6),  # beam angle (radians from straight down)
             uniform(v[15 + 3 * i], 0.03, 0.12),  # half width (radians)
             uniform(v[16 + 3 * i], 0.2, 0.7),  # depth where it starts (fraction of the height)
             uniform(v[23], *config.dropout_depth))
            for i in range(count)
        )
    return replace(params, shift=shift, gain=gain, haze=haze, blur=blur, speckle=speckle,
                   speckle_seed=speckle_seed, shadows=shadows)


def _affine_theta(height: int, width: int, scale: float, degrees: float, dtype: torch.dtype,
                  shift: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """(1, 2, 3) ``affine_grid`` matrix mapping output to input coordinates for a zoom by ``scale`` and a
    rotation by ``degrees`` about the image centre, in pixel-true (aspect-corrected) geometry, then a
    shift of the content by ``shift`` (dx, dy) fractions of the width and height."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    # pixel coords p = D n with D = diag(W/2, H/2); input = R(-angle) p / scale; back to normalised.
    inv = torch.tensor([[cos, sin], [-sin, cos]], dtype=torch.float64) / scale
    d = torch.diag(torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64))
    linear = torch.linalg.inv(d) @ inv @ d
    theta = torch.zeros(1, 2, 3, dtype=torch.float64)
    theta[0, :, :2] = linear
    # output n -> input linear (n - 2 shift): the content moves by +shift (normalised units span 2)
    theta[0, :, 2] = -linear @ (2.0 * torch.tensor(shift, dtype=torch.float64))
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
    if params.scale is not None or params.degrees is not None or params.shift is not None:
        t, _, h, w = images.shape
        theta = _affine_theta(h, w, params.scale or 1.0, params.degrees or 0.0, images.dtype,
                              params.shift or (0.0, 0.0)).expand(t, 2, 3)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        warped = F.grid_sample(
            masks[:, None].to(images.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
        masks = warped[:, 0].round().to(masks.dtype)
    images = _scanner(images, params)
    if params.gamma is not None or params.contrast is not None:
        images = _intensity(images, params.gamma, params.contrast)
    return images, masks


def _scanner(images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """Blur, shadows, speckle, gain and haze on (T, C, H, W) images in [0, 1] (identity if none is set)."""
    if all(x is None for x in (params.blur, params.shadows, params.speckle, params.gain, params.haze)):
        return images
    t, c, h, w = images.shape
    out = images
    if params.blur is not None:
        out = _gaussian_blur(out, params.blur)
    rows = (torch.arange(h, dtype=images.dtype) + 0.5) / h  # depth from the top, in (0, 1)
    if params.shadows is not None:
        cols = (torch.arange(w, dtype=images.dtype) + 0.5) / w - 0.5
        angle = torch.atan2(cols[None, :] * (w / h), rows[:, None])  # beam angle seen from the top centre
        keep = torch.ones(h, w, dtype=images.dtype)
        for centre, half, start, depth in params.shadows:
            across = ((angle - centre).abs() / half).clamp(max=4.0)
            along = torch.sigmoid((rows[:, None] - start) * 25.0)
            keep = keep * (1.0 - depth * torch.exp(-0.5 * across**2 * 4.0) * along)
        out = out * keep
    if params.speckle is not None:
        g = torch.Generator().manual_seed(params.speckle_seed or 0)
        noise = torch.randn(t, 1, h, w, generator=g, dtype=images.dtype)
        noise = _gaussian_blur(noise, 0.7) * 1.6  # correlated over about a pixel, std about 1 again
        out = out * (1.0 + params.speckle * noise).clamp(min=0.0)
    if params.gain is not None:
        out = out * params.gain
    if params.haze is not None:
        out = out + params.haze * torch.exp(-rows / 0.25)[:, None]
    return out.clamp(0.0, 1.0)


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (T, C, H, W) with ``sigma`` pixels (reflect padding)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    t, c, h, w = images.shape
    flat = images.reshape(t * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return flat.reshape(t, c, h, w)


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
