"""One acquisition (view) of the phantom: frames of the echocardiogram and their label maps.

Static per view: the probe pose, the scan-line grid, the scatterer field (attached to tissue), the
stationary clutter and the tissue textures. Per frame: the LV cut is tabulated at the contraction level,
every scan-line sample is mapped back to its tissue position (motion.py) to pick up its scatterers, the
echogenicity is evaluated (anatomy.py) and the image is formed (speckle.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gdkvm.data.phantom import effects, speckle
from gdkvm.data.phantom.anatomy import LABEL_MYO, FrameState, ViewAnatomy, frame_state, tissue_maps
from gdkvm.data.phantom.difficulty import ViewLook
from gdkvm.data.phantom.geometry import PixelGrid, PolarGrid, Pose
from gdkvm.data.phantom.motion import material_coords
from gdkvm.data.phantom.profiles import ZAxis, ZIndex
from gdkvm.data.phantom.shape import LVShape

_TEXTURE_STEP_MM = 1.0


@dataclass(frozen=True)
class ViewSetup:
    """Everything that defines one acquisition besides the heart itself."""

    anatomy: ViewAnatomy
    pose: Pose
    grid: PolarGrid  # scan-line samples
    pixels: PixelGrid  # raster the scan conversion writes (may be finer than the output)
    downscale: int  # output = pixels averaged over downscale x downscale blocks
    imaging: speckle.ImagingParams
    chest_wall_mm: float  # depth of the layered chest wall in front of the heart
    myo_texture_sigma: float  # log-amplitude spread of the myocardial texture
    background_texture_sigma: float
    look: ViewLook = ViewLook()  # the difficulty's scanner effects (neutral: none)

    @property
    def output_pixels(self) -> PixelGrid:
        if self.downscale == 1:
            return self.pixels
        p = self.pixels
        f = self.downscale
        sx, sy = p.spacing_x_mm * f, p.spacing_y_mm * f
        return PixelGrid(p.height // f, p.width // f, sx, sy, p.y0_mm + (f - 1) / 2.0 * p.spacing_y_mm)


def _smooth_lognormal(rng: np.random.Generator, shape: tuple[int, int], corr: float, sigma: float) -> np.ndarray:
    """exp(sigma * unit-variance Gaussian field with correlation ``corr`` samples), float32."""
    field = rng.standard_normal(shape, dtype=np.float32)
    field = cv2.GaussianBlur(field, (0, 0), sigmaX=corr, sigmaY=corr, borderType=cv2.BORDER_REFLECT)
    field /= np.float32(field.std() + 1e-6)
    return np.exp(np.float32(sigma) * field - np.float32(0.5 * sigma * sigma)).astype(np.float32)


class ViewRenderer:
    """Renders frames and labels of one view of one patient (deterministic given the rng)."""

    def __init__(self, shape: LVShape, setup: ViewSetup, rng: np.random.Generator):
        self.shape = shape
        self.setup = setup
        grid, imaging = setup.grid, setup.imaging
        x, y = grid.probe_coords()
        u, z = setup.pose.to_heart(x, y)
        self._u = u.astype(np.float32)
        self._z = z.astype(np.float32)
        self._axis = ZAxis.for_shape(shape)
        self._zindex = ZIndex.of(self._axis, self._z)
        base_lo = float(shape.length(1.0)) - 35.0
        self._valve_region = np.flatnonzero(((self._z > base_lo) & (self._z < shape.length_mm + 15.0)).ravel())
        self._depth = grid.radii().astype(np.float32)
        n_shape = (grid.n_r, grid.n_theta)
        noise_rng, field_rng = rng.spawn(2)
        self._noise_rng = noise_rng
        # one noise field twice the grid size, read at a random offset per frame (cheaper than fresh draws)
        self._noise_bank = speckle.receiver_noise(noise_rng, (2 * grid.n_r, 2 * grid.n_theta), grid, imaging)
        self._scatter = speckle.complex_white(field_rng, n_shape, smooth=speckle.SCATTER_SMOOTH)
        self._psf = speckle.PSF(grid, imaging)
        clutter = speckle.complex_white(field_rng, n_shape)
        clutter = cv2.GaussianBlur(clutter, (0, 0), sigmaX=2.5 * speckle.psf_sigmas(grid, imaging)[0],
                                   sigmaY=speckle.psf_sigmas(grid, imaging)[1])
        clutter /= np.float32(np.sqrt(np.mean(np.sum(clutter * clutter, axis=2))))
        self._clutter = clutter * speckle.clutter_amplitude(grid, imaging)[:, :, None]
        # tissue textures on a coarse heart-plane grid, sampled through the motion map
        self._tex_origin = (float(u.min()) - 20.0, float(z.min()) - 20.0)
        tex_shape = (int((z.max() - z.min() + 40.0) / _TEXTURE_STEP_MM) + 1,
                     int((u.max() - u.min() + 40.0) / _TEXTURE_STEP_MM) + 1)
        self._textures = np.stack([  # channel 0: myocardium, channel 1: extra-cardiac tissue
            _smooth_lognormal(field_rng, tex_shape, 2.5, setup.myo_texture_sigma),
            _smooth_lognormal(field_rng, tex_shape, 5.0, setup.background_texture_sigma),
        ], axis=2)
        self._chest = self._chest_profile(field_rng)
        self._chest_rows = int(np.flatnonzero(self._chest > 0).max(initial=-1)) + 1
        self._gain = speckle.depth_gain(grid, imaging)
        look = setup.look
        if look.shadows:
            self._gain = self._gain * effects.shadow_gain(grid, look.shadows)
        if look.sidelobe_db is not None:
            self._haze_bank = speckle.receiver_noise(noise_rng, (2 * grid.n_r, 2 * grid.n_theta), grid, imaging)
        self._noise_amp = speckle.noise_amplitude(grid, imaging)
        self._maps = speckle.scan_conversion_maps(grid, setup.pixels)
        self._ref = frame_state(shape, setup.anatomy, self._axis, 0.0, 0.0)
        self._overlay_seed = int(field_rng.integers(2**31)) if look.overlay else 0
        self._ref_db = self._reference_db()

    # ------------------------------------------------------------------ static pieces
    def _chest_profile(self, rng: np.random.Generator) -> np.ndarray:
        """Layered echogenicity of the chest wall along depth (n_r,), 0 below ``chest_wall_mm``."""
        r = self._depth
        depth = self.setup.chest_wall_mm
        edges = np.sort(rng.uniform(1.0, depth, size=4))
        levels = rng.uniform(0.3, 1.6, size=5)
        idx = np.searchsorted(edges, r)
        layers = levels[np.minimum(idx, 4)].astype(np.float32)
        taper = np.clip((depth - r) / 2.0, 0.0, 1.0)
        return (layers * taper).astype(np.float32)

    def _sample_textures(self, big_u: np.ndarray, big_z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mx = (big_u - np.float32(self._tex_origin[0])) / np.float32(_TEXTURE_STEP_MM)
        my = (big_z - np.float32(self._tex_origin[1])) / np.float32(_TEXTURE_STEP_MM)
        both = cv2.remap(self._textures, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return both[:, :, 0], both[:, :, 1]

    def _signal(self, st: FrameState, with_effects: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Tissue echo (PSF-blurred, gained, before clutter/noise) and the echogenicity map.

        ``with_effects=False`` leaves out the look's incidence effects (the grey-level anchor uses it)."""
        big_u, big_z = material_coords(self._u, self._z, st.table, self._ref.table, self._zindex)
        tex_myo, tex_bg = self._sample_textures(big_u, big_z)
        _, echo = tissue_maps(self.setup.anatomy, st, self._u, self._z, zindex=self._zindex, myo_texture=tex_myo,
                              background_texture=tex_bg, valve_region=self._valve_region)
        rows = self._chest_rows  # the chest wall replaces the anatomy in the first rows
        echo[:rows] = self._chest[:rows, None] * tex_bg[:rows]
        look = self.setup.look
        if with_effects and (look.specular_gain > 0 or look.parallel_loss > 0):
            echo = echo * effects.incidence(echo, self.setup.grid, look.specular_gain, look.parallel_loss)
        px, py = self.setup.pose.to_probe(big_u, big_z)
        map_x, map_y = self.setup.grid.fractional_index(px, py)
        scat = cv2.remap(self._scatter, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        scat *= echo[:, :, None]
        tissue = self._psf.apply(scat)
        tissue *= self._gain[:, :, None]
        return tissue, echo

    def _reference_db(self) -> float:
        """Median log-envelope of the myocardium at ED: the gray-level anchor of this acquisition."""
        tissue, _ = self._signal(self._ref, with_effects=False)
        labels, _ = tissue_maps(self.setup.anatomy, self._ref, self._u, self._z, zindex=self._zindex,
                                with_echo=False)
        env = speckle.envelope(tissue)[labels == LABEL_MYO]
        return float(np.median(20.0 * np.log10(env + 1e-6)))

    # ------------------------------------------------------------------ public
    def state(self, m: float, opening: float) -> FrameState:
        return frame_state(self.shape, self.setup.anatomy, self._axis, m, opening)

    def image(self, m: float, opening: float) -> np.ndarray:
        """One frame at contraction ``m`` and valve opening ``opening``: (H, W) uint8 on the output raster."""
        st = self.state(m, opening)
        tissue, _ = self._signal(st)
        i0 = int(self._noise_rng.integers(tissue.shape[0]))
        j0 = int(self._noise_rng.integers(tissue.shape[1]))
        noise = self._noise_bank[i0:i0 + tissue.shape[0], j0:j0 + tissue.shape[1]] * self._noise_amp[:, :, None]
        total = tissue + self._clutter + noise
        look = self.setup.look
        if look.sidelobe_db is not None:
            haze = effects.side_lobe_haze(speckle.envelope(tissue), self.setup.grid, look.sidelobe_db, 6.0)
            i0 = int(self._noise_rng.integers(tissue.shape[0]))
            j0 = int(self._noise_rng.integers(tissue.shape[1]))
            total += self._haze_bank[i0:i0 + tissue.shape[0], j0:j0 + tissue.shape[1]] * haze[:, :, None]
        gray = speckle.log_compress(speckle.envelope(total), self._ref_db, self.setup.imaging)
        img = speckle.scan_convert(gray, self._maps)
        out = self.setup.output_pixels
        if self.setup.downscale > 1:
            img = cv2.resize(img, (out.width, out.height), interpolation=cv2.INTER_AREA)
        if look.overlay:
            # the same markers on every frame of the acquisition
            effects.burn_overlay(img, out, self.setup.grid, np.random.default_rng(self._overlay_seed))
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)

    def labels(self, m: float, pixels: PixelGrid | None = None) -> np.ndarray:
        """Ground-truth labels (H, W) uint8 at contraction ``m`` on ``pixels`` (default: the output raster)."""
        pixels = pixels or self.setup.output_pixels
        x, y = pixels.probe_coords()
        u, z = self.setup.pose.to_heart(x, y)
        st = self.state(m, 0.0)
        labels, _ = tissue_maps(self.setup.anatomy, st, u, z, with_echo=False)
        return labels
