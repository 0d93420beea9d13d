"""Draw one phantom patient: heart, beat, demographics, and the three acquisitions (CAMUS 2CH and 4CH,
EchoNet apical 4-chamber), each with its own probe pose, sector, raster and image quality.

All randomness comes from ``numpy.random.default_rng([seed, index])``: the same (seed, index) always
gives the same patient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from gdkvm.data.phantom.anatomy import Dropout, Echogenicity, ViewAnatomy
from gdkvm.data.phantom.cycle import CardiacCycle, sample_cycle, with_systole
from gdkvm.data.phantom.difficulty import (
    DEFAULT_DIFFICULTY,
    Difficulty,
    ViewLook,
    draw_look,
    get_difficulty,
    look_rng,
    plane_rng,
)
from gdkvm.data.phantom.geometry import PixelGrid, PolarGrid, Pose, Sector
from gdkvm.data.phantom.render import ViewSetup
from gdkvm.data.phantom.shape import Foreshortening, LVShape, sample_shape
from gdkvm.data.phantom.speckle import ImagingParams

QUALITIES = ("Good", "Medium", "Poor")
ECHONET_FPS = 50.0
ECHONET_SIZE = 112
CAMUS_VIEWS = ("2CH", "4CH")
_OMEGA = {"4CH": 0.0, "2CH": np.pi / 2}


@dataclass(frozen=True)
class PatientSpec:
    """Everything needed to render and describe one patient."""

    index: int  # 1-based
    shape: LVShape
    cycle: CardiacCycle
    sex: str
    age: int
    camus_fps: float
    camus_frames: int  # NbFrame of the half sequence (ED..ES inclusive)
    camus_reversed: bool  # half sequence stored ES -> ED
    quality: dict[str, str]  # per view: "2CH", "4CH", "ECHONET"
    setups: dict[str, ViewSetup]  # per view
    echonet_name: str  # 0X + 16 hex digits
    echonet_frames: int
    echonet_start_phase: float  # cardiac phase of video frame 0
    echonet_es_first: bool  # list the ES tracing before the ED tracing

    @property
    def name(self) -> str:
        return f"patient{self.index:04d}"


def _draw_ef(rng: np.random.Generator) -> float:
    """EF (%) over the clinical range: mostly preserved, 15 % hyperdynamic, 30 % reduced down to 15 %."""
    draw = rng.random()
    if draw < 0.55:
        return float(np.clip(rng.normal(60.0, 7.0), 45.0, 80.0))
    if draw < 0.7:
        return float(rng.uniform(65.0, 80.0))
    return float(rng.uniform(15.0, 50.0))


def _draw_quality(rng: np.random.Generator, base: str) -> str:
    if rng.random() < 0.7:
        return base
    i = QUALITIES.index(base) + (1 if rng.random() < 0.5 else -1)
    return QUALITIES[min(max(i, 0), 2)]


def _imaging(rng: np.random.Generator, quality: str, coarse: bool, look: ViewLook) -> ImagingParams:
    """Scanner settings; ``coarse`` mimics EchoNet's strong downsampling (wider effective PSF); ``look``
    shifts gain, dynamic range and clutter."""
    q = QUALITIES.index(quality)
    axial = rng.uniform(0.34, 0.44) * (1.8 if coarse else 1.0)
    lateral = float(np.deg2rad(rng.uniform(0.55, 0.8))) * (1.0 + 0.2 * q) * (1.7 if coarse else 1.0)
    return ImagingParams(
        psf_axial_mm=axial,
        psf_lateral_rad=lateral,
        psf_lateral_min_mm=rng.uniform(0.7, 1.0) * (1.5 if coarse else 1.0),
        attenuation_db_per_mm=rng.uniform(0.0, 0.025) + 0.01 * q,
        tgc_db_per_mm=rng.uniform(0.17, 0.22),
        noise_db=rng.uniform(-64.0, -58.0) + 5.0 * q,
        clutter_near_db=rng.uniform(-16.0, -10.0) + 4.5 * q + look.clutter_db,
        clutter_decay_mm=rng.uniform(14.0, 24.0),
        haze_db=rng.uniform(-44.0, -38.0) + 5.0 * q + look.clutter_db,
        dynamic_range_db=(rng.uniform(54.0, 62.0) - 3.0 * q) * look.dynamic_range_scale,
        gray_myocardium=rng.uniform(105.0, 130.0) - 8.0 * q + look.gain_gray,
        edge_loss=rng.uniform(0.2, 0.45),
    )


def _appearance(rng: np.random.Generator, shape: LVShape, anat: ViewAnatomy, quality: str, look: ViewLook,
                look_stream: np.random.Generator) -> ViewAnatomy:
    """Acquisition-dependent look of a view: tissue brightness and echo dropout (worse in poor images).

    ``look`` adds its dropouts (positions from ``look_stream``), cavity muscle and blood level."""
    q = QUALITIES.index(quality)
    echo = Echogenicity(
        blood=rng.uniform(0.006, 0.01) * (1.0 + 0.5 * q) * look.blood_scale,
        background=rng.uniform(0.12, 0.25),
        pericardium=rng.uniform(1.6, 2.6),
        valve=rng.uniform(0.9, 1.4),
        thin_wall=rng.uniform(0.45, 0.75),
    )
    # echo loss: lateral wall (4CH) or either wall (2CH, mostly anterior), deeper and more frequent when poor
    w0 = shape.wall_mm
    dropouts = []
    n_drop = [int(rng.random() < 0.5), 1, 1 + int(rng.random() < 0.5)][q]
    depth_range = [(0.2, 0.5), (0.4, 0.75), (0.6, 0.95)][q]
    for _ in range(n_drop):
        zd = rng.uniform(0.35, 0.85) * shape.length_mm
        side = 1.0 if (anat.view == "4CH" or rng.random() < 0.6) else -1.0
        dropouts.append(Dropout(u_mm=_mid_wall_u(shape, anat, zd, side), z_mm=zd, su_mm=rng.uniform(5.0, 9.0),
                                sz_mm=rng.uniform(8.0, 18.0), depth=rng.uniform(*depth_range)))
    if q == 2 or rng.random() < 0.2:  # apical near-field loss, mid-way through the wall the view shows there
        apex_z = -0.5 * w0 if anat.plane.neutral else 0.5 * (
            shape.cut_apex(0.0, anat.omega, anat.plane) + shape.cut_apex(0.0, anat.omega, anat.plane, offset=w0))
        dropouts.append(Dropout(u_mm=0.0, z_mm=apex_z, su_mm=rng.uniform(8.0, 14.0), sz_mm=rng.uniform(5.0, 9.0),
                                depth=rng.uniform(0.2, 0.6)))
    dropouts.extend(_look_dropouts(look_stream, shape, anat, look))
    return replace(anat, echo=echo, dropouts=tuple(dropouts), papillary=look.papillary,
                   trabeculation=look.trabeculation)


def _mid_wall_u(shape: LVShape, anat: ViewAnatomy, z_mm: float, side: float) -> float:
    """u of the middle of the wall on ``side`` (+1 lateral/anterior, -1 septal/inferior) at height z, at ED."""
    w0 = shape.wall_mm
    _, half, _, _ = shape.cut(np.array([z_mm]), 0.0, anat.omega, w0, plane=anat.plane)
    return side * (float(half[0]) + 0.5 * w0)


def _look_dropouts(rng: np.random.Generator, shape: LVShape, anat: ViewAnatomy, look: ViewLook) -> list[Dropout]:
    """The look's extra wall dropouts: anywhere along either wall, the lateral one more often, and the
    basal septum / mitral annulus region where real views often fade."""
    out = []
    for _ in range(look.extra_dropouts):
        zd = rng.uniform(0.2, 1.0) * shape.length_mm
        side = 1.0 if rng.random() < 0.65 else -1.0
        out.append(Dropout(u_mm=_mid_wall_u(shape, anat, zd, side), z_mm=zd, su_mm=rng.uniform(6.0, 12.0),
                           sz_mm=rng.uniform(10.0, 24.0), depth=rng.uniform(*look.dropout_depth)))
    return out


def _anatomy(rng: np.random.Generator, shape: LVShape, view: str) -> ViewAnatomy:
    """The structures around the LV in one view plane (appearance still neutral, see _appearance)."""
    omega = _OMEGA[view]
    w0 = shape.wall_mm
    length = shape.length_mm
    _, h_base, _, _ = shape.cut(np.array([length]), 0.0, omega, w0)
    h_base = float(h_base[0])
    la_radius = rng.uniform(17.0, 22.0) * (1.0 + 0.1 * (shape.radius_x_mm > 26.0))
    la_radius = max(la_radius, h_base + 2.0)
    junction = float(np.clip(math.sqrt(max(0.0, 1.0 - (h_base / la_radius) ** 2)), 0.35, 0.85))
    la_roof = length + (1.0 + junction) * rng.uniform(20.0, 26.0)
    septal, lateral = (1.1, 0.8) if view == "4CH" else (0.8, 1.1)
    leaflets = (septal * h_base * rng.uniform(0.95, 1.1), lateral * h_base * rng.uniform(0.95, 1.1))
    la_shift = rng.uniform(0.0, 4.0) if view == "4CH" else rng.uniform(-3.0, 3.0)
    aorta = None
    if rng.random() < 0.5:
        radius = rng.uniform(8.0, 11.0)
        aorta = (la_shift + rng.uniform(-5.0, 12.0), la_roof + radius + rng.uniform(4.0, 10.0), radius)
    neutral = Echogenicity(blood=0.01, background=0.2, pericardium=2.0, valve=1.0, thin_wall=0.6)
    common = dict(
        view=view, omega=omega, la_radius_mm=la_radius, la_junction=junction, la_roof_mm=la_roof,
        la_shift_mm=la_shift, peri_gap_mm=rng.uniform(1.0, 3.0), peri_thick_mm=rng.uniform(1.5, 3.0),
        mitral_leaflets_mm=leaflets, echo=neutral, dropouts=(), aorta=aorta,
    )
    if view == "2CH":
        return ViewAnatomy(**common)
    tv_offset = rng.uniform(4.0, 9.0)
    return ViewAnatomy(
        **common,
        rv_width_mm=rng.uniform(22.0, 32.0),
        rv_apex_mm=rng.uniform(0.25, 0.4) * length,
        rv_wall_mm=rng.uniform(3.0, 4.5),
        tv_offset_mm=tv_offset,
        ra_radius_mm=rng.uniform(15.0, 20.0),
        ra_roof_mm=length - tv_offset + rng.uniform(38.0, 50.0),
        septum_gap_depth=rng.uniform(0.3, 0.9),
    )


def _foreshortened(shape: LVShape, anat: ViewAnatomy, plane: Foreshortening) -> ViewAnatomy:
    """The view's anatomy in a plane that misses the long axis: the mitral leaflets scaled with the
    (narrower) annulus chord; the other structures follow the plane through the LV cut they hang on."""
    if plane.neutral:
        return anat
    plane = shape.keep_annulus(plane)
    w0 = shape.wall_mm
    _, h_axis, _, _ = shape.cut(np.array([shape.length_mm]), 0.0, anat.omega, w0)
    _, h_plane, _, _ = shape.cut(np.array([shape.length_mm]), 0.0, anat.omega, w0, plane=plane)
    scale = float(h_plane[0]) / max(float(h_axis[0]), 1e-6)
    leaflets = (anat.mitral_leaflets_mm[0] * scale, anat.mitral_leaflets_mm[1] * scale)
    return replace(anat, plane=plane, mitral_leaflets_mm=leaflets)


def _apex_front_mm(shape: LVShape, anat: ViewAnatomy) -> float:
    """How far the outer pericardium reaches below in-plane height 0: the pose puts this first tissue
    of the view at the probe's standoff, so a foreshortened view keeps the chest-to-heart distance."""
    front = shape.apex_wall_ratio * (shape.wall_mm + anat.peri_gap_mm + anat.peri_thick_mm)
    if anat.plane.neutral:
        return front
    return -shape.cut_apex(0.0, anat.omega, anat.plane, offset=shape.wall_mm + anat.peri_gap_mm + anat.peri_thick_mm)


def _far_extent_mm(anat: ViewAnatomy) -> float:
    """Largest z the acquisition must show: the atrial roofs (the aorta behind may be cut off)."""
    return max(anat.la_roof_mm, anat.ra_roof_mm)


def _pose_and_depth(rng: np.random.Generator, shape: LVShape, anat: ViewAnatomy, chest: float,
                    tilt_deg: tuple[float, float], apex_x: tuple[float, float], look: ViewLook
                    ) -> tuple[Pose, float]:
    """Probe pose and the depth the fan needs: the atria shown whole, times the look's depth factor."""
    front = _apex_front_mm(shape, anat)
    tilt = float(np.deg2rad(rng.uniform(*tilt_deg) + look.tilt_extra_deg))
    pose = Pose(apex_x_mm=rng.uniform(*apex_x),
                apex_y_mm=chest + front + rng.uniform(3.0, 12.0) + look.standoff_mm, tilt_rad=tilt)
    needed = pose.apex_y_mm + (_far_extent_mm(anat) + 4.0) * math.cos(tilt) + 6.0
    return pose, needed * look.depth_factor


def _camus_setup(rng: np.random.Generator, shape: LVShape, anat: ViewAnatomy, quality: str, look: ViewLook,
                 look_stream: np.random.Generator) -> ViewSetup:
    anat = _appearance(rng, shape, _foreshortened(shape, anat, look.plane), quality, look, look_stream)
    view = anat.view
    chest = rng.uniform(8.0, 13.0)
    tilt = (6.0, 16.0) if view == "4CH" else (-6.0, 8.0)
    pose, needed = _pose_and_depth(rng, shape, anat, chest, tilt, (-6.0, 4.0), look)
    height = int(rng.integers(300, 361))
    width = int(rng.integers(230, 286))
    depth = needed * rng.uniform(1.0, 1.08)
    y0 = rng.uniform(0.0, 2.0)
    sy = (depth - y0) / ((height - 1) * rng.uniform(0.95, 0.99))
    sx = sy * rng.uniform(1.15, 1.35)
    sector = Sector(depth_mm=depth, half_angle_rad=float(np.deg2rad(rng.uniform(34.0, 40.0))))
    imaging = _imaging(rng, quality, coarse=False, look=look)
    grid = PolarGrid(sector, dr_mm=imaging.psf_axial_mm / 1.3, dtheta_rad=imaging.psf_lateral_rad / 1.8)
    pixels = PixelGrid(height=height, width=width, spacing_x_mm=round(sx, 6), spacing_y_mm=round(sy, 6), y0_mm=y0)
    return ViewSetup(anatomy=anat, pose=pose, grid=grid, pixels=pixels, downscale=1, imaging=imaging,
                     chest_wall_mm=chest, myo_texture_sigma=rng.uniform(0.2, 0.35) * look.myo_texture_scale,
                     background_texture_sigma=rng.uniform(0.7, 1.0), look=look)


def _echonet_setup(rng: np.random.Generator, shape: LVShape, anat: ViewAnatomy, quality: str, look: ViewLook,
                   look_stream: np.random.Generator) -> ViewSetup:
    anat = _appearance(rng, shape, _foreshortened(shape, anat, look.plane), quality, look, look_stream)
    chest = rng.uniform(8.0, 13.0)
    pose, needed = _pose_and_depth(rng, shape, anat, chest, (2.0, 18.0), (-8.0, 6.0), look)
    depth = needed * rng.uniform(1.02, 1.15)
    spacing = depth / ECHONET_SIZE
    out = PixelGrid(height=ECHONET_SIZE, width=ECHONET_SIZE, spacing_x_mm=spacing, spacing_y_mm=spacing,
                    y0_mm=0.5 * spacing)
    sector = Sector(depth_mm=depth, half_angle_rad=float(np.deg2rad(rng.uniform(36.0, 42.0))))
    imaging = _imaging(rng, quality, coarse=True, look=look)
    grid = PolarGrid(sector, dr_mm=imaging.psf_axial_mm / 1.3, dtheta_rad=imaging.psf_lateral_rad / 1.7)
    return ViewSetup(anatomy=anat, pose=pose, grid=grid, pixels=out.scaled(2), downscale=2, imaging=imaging,
                     chest_wall_mm=chest, myo_texture_sigma=rng.uniform(0.2, 0.35) * look.myo_texture_scale,
                     background_texture_sigma=rng.uniform(0.7, 1.0), look=look)


def sample_patient(seed: int, index: int, echonet_beats: float,
                   difficulty: Difficulty | str = DEFAULT_DIFFICULTY) -> tuple[PatientSpec, np.random.Generator]:
    """Draw patient ``index`` (1-based) for ``seed`` at ``difficulty``; also returns the generator for
    the image noise. The heart and its file layout do not depend on the difficulty, only the looks do."""
    if isinstance(difficulty, str):
        difficulty = get_difficulty(difficulty)
    rng = np.random.default_rng([seed, index])
    looks_stream = look_rng(seed, index)
    planes_stream = plane_rng(seed, index)
    # the file-layout flags come first, so they stay put when the anatomy or imaging draws change
    reversed_half_sequence = bool(rng.random() < 0.1)
    es_first = bool(rng.random() < 0.5)
    ef = _draw_ef(rng)
    shape = sample_shape(rng, ef)
    cycle = sample_cycle(rng, rng.uniform(50.0, 110.0))
    fps = float(rng.uniform(35.0, 55.0))
    frames = int(np.clip(round(cycle.systole_s * fps) + 1, 8, 30))
    cycle = with_systole(cycle, (frames - 1) / fps)
    base = QUALITIES[int(rng.choice(3, p=[0.35, 0.45, 0.2]))]
    quality = {v: _draw_quality(rng, base) for v in (*CAMUS_VIEWS, "ECHONET")}
    acquisitions = (*CAMUS_VIEWS, "ECHONET")
    looks = {v: draw_look(looks_stream, difficulty, v, planes=planes_stream) for v in acquisitions}
    anatomy = {v: _anatomy(rng, shape, v) for v in CAMUS_VIEWS}
    setups = {v: _camus_setup(rng, shape, anatomy[v], quality[v], looks[v], looks_stream) for v in CAMUS_VIEWS}
    # the EchoNet video is another apical 4-chamber acquisition of the same heart
    setups["ECHONET"] = _echonet_setup(rng, shape, anatomy["4CH"], quality["ECHONET"], looks["ECHONET"],
                                       looks_stream)
    n_video = int(math.ceil(echonet_beats * cycle.period_s * ECHONET_FPS))
    spec = PatientSpec(
        index=index,
        shape=shape,
        cycle=cycle,
        sex="F" if rng.random() < 0.5 else "M",
        age=int(rng.integers(20, 91)),
        camus_fps=fps,
        camus_frames=frames,
        camus_reversed=reversed_half_sequence,
        quality=quality,
        setups=setups,
        echonet_name="0X" + rng.bytes(8).hex().upper(),
        echonet_frames=n_video,
        echonet_start_phase=float(rng.random()),
        echonet_es_first=es_first,
    )
    return spec, rng
