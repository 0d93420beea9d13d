"""How hard and how real the phantom looks: the ``--difficulty`` levels and the per-view look they draw.

``easy`` is the phantom of gdkvm 0.1 (an LV with clean walls, bright myocardium, the heart high in the
fan); it is byte-identical to it because every draw below comes from a separate random stream.
``realistic`` (the default) is calibrated on statistics of real EchoNet-Dynamic frames
(``realism.REAL_ECHONET``): the heart deeper in the fan with the atria partly cut, darker blood, dimmer
diffuse myocardium with bright specular interfaces where the wall faces the beam, walls that fade where
they run along the beam, papillary muscles and apical trabeculation, side-lobe haze in the cavities,
acoustic shadows, more dropout, scanner overlays, wider gain / dynamic-range / pose variety, and
foreshortened views (the plane misses the true apex; drawn from :func:`plane_rng`, see docs/phantom.md).
``medium`` sits halfway; ``hard`` pushes every effect further (poor acoustic windows).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from gdkvm.data.phantom.shape import Foreshortening
from gdkvm.errors import ConfigError

Range = tuple[float, float]


@dataclass(frozen=True)
class Shadow:
    """An acoustic shadow: beam angles around ``theta_rad`` (soft width ``width_rad``) lose ``loss_db``
    beyond ``start_mm`` (a rib or the lung edge in front of the heart)."""

    theta_rad: float
    width_rad: float
    start_mm: float
    loss_db: float


@dataclass(frozen=True)
class Papillary:
    """A papillary muscle inside the LV cavity, attached to one wall (``side`` -1 septal/inferior, +1
    lateral/anterior). ``z_frac``: centre height over the LV length; sizes in mm; ``echo`` relative to
    myocardium. It is not labelled: like the experts, the LV label runs behind it."""

    side: float
    z_frac: float
    length_mm: float
    width_mm: float
    echo: float


@dataclass(frozen=True)
class ViewLook:
    """The drawn look of one acquisition. The neutral value (all defaults) renders the easy phantom."""

    standoff_mm: float = 0.0  # extra distance from the chest wall to the LV apex (heart deeper in the fan)
    depth_factor: float = 1.0  # fan depth over the depth that shows the whole atria (< 1 cuts them)
    gain_gray: float = 0.0  # added to the myocardium's grey level
    dynamic_range_scale: float = 1.0
    blood_scale: float = 1.0  # blood echogenicity factor
    clutter_db: float = 0.0  # added to the near-field clutter and the haze floor
    specular_gain: float = 0.0  # amplitude gain of interfaces facing the beam (0: off)
    parallel_loss: float = 0.0  # diffuse loss of walls running along the beam, in [0, 1)
    sidelobe_db: float | None = None  # side-lobe haze level relative to the laterally smeared tissue
    extra_dropouts: int = 0
    dropout_depth: Range = (0.0, 0.0)
    papillary: tuple[Papillary, ...] = ()
    trabeculation: float = 0.0  # echo of the apical trabecular layer relative to myocardium
    shadows: tuple[Shadow, ...] = ()
    overlay: bool = False  # depth markers and text blobs burnt into the image
    tilt_extra_deg: float = 0.0
    myo_texture_scale: float = 1.0  # spread of the myocardial texture (patchier walls above 1)
    plane: Foreshortening = Foreshortening()  # how the view plane misses the long axis (foreshortening)

    @property
    def neutral(self) -> bool:
        return self == ViewLook()


@dataclass(frozen=True)
class Difficulty:
    """Ranges the look of every acquisition is drawn from (uniform unless said otherwise)."""

    name: str
    standoff_mm: Range = (0.0, 0.0)
    depth_factor: Range = (1.0, 1.0)
    gain_gray: Range = (0.0, 0.0)
    dynamic_range_scale: Range = (1.0, 1.0)
    blood_scale: Range = (1.0, 1.0)
    clutter_db: Range = (0.0, 0.0)
    specular_gain: Range = (0.0, 0.0)
    parallel_loss: Range = (0.0, 0.0)
    sidelobe_db: Range | None = None
    extra_dropouts: tuple[int, int] = (0, 0)  # inclusive range of the count
    dropout_depth: Range = (0.0, 0.0)
    papillary_prob: float = 0.0
    trabeculation: Range = (0.0, 0.0)
    shadow_prob: float = 0.0
    shadow_loss_db: Range = (0.0, 0.0)
    overlay_prob: float = 0.0
    tilt_extra_deg: Range = (0.0, 0.0)
    myo_texture_scale: Range = (1.0, 1.0)
    # foreshortening: |offset| (mm, at the mitral plane) and |tilt| (degrees) drawn uniformly with random signs
    plane_offset_mm: Range = (0.0, 0.0)
    plane_tilt_deg: Range = (0.0, 0.0)

    @property
    def is_easy(self) -> bool:
        return self.name == "easy"

    def without_foreshortening(self) -> Difficulty:
        """This level with every view plane through the true apex (phantom version 2's views); every other
        draw, and so every image and mask, is unchanged, because the planes have their own random stream."""
        return replace(self, plane_offset_mm=(0.0, 0.0), plane_tilt_deg=(0.0, 0.0))


DIFFICULTIES: dict[str, Difficulty] = {
    "easy": Difficulty("easy"),
    "medium": Difficulty(
        "medium", standoff_mm=(4.0, 16.0), depth_factor=(0.9, 1.02), gain_gray=(-25.0, 0.0),
        dynamic_range_scale=(0.9, 1.1), blood_scale=(0.6, 1.0), clutter_db=(-4.0, 0.0), specular_gain=(1.0, 2.5),
        parallel_loss=(0.15, 0.4), sidelobe_db=(-34.0, -28.0), extra_dropouts=(0, 1), dropout_depth=(0.3, 0.7),
        papillary_prob=0.5, trabeculation=(0.05, 0.2), shadow_prob=0.2, shadow_loss_db=(4.0, 10.0),
        overlay_prob=0.3, tilt_extra_deg=(-3.0, 3.0), myo_texture_scale=(1.0, 1.5),
        plane_offset_mm=(0.0, 3.0), plane_tilt_deg=(0.0, 7.0),
    ),
    "realistic": Difficulty(
        "realistic", standoff_mm=(10.0, 32.0), depth_factor=(0.8, 1.0), gain_gray=(-60.0, -30.0),
        dynamic_range_scale=(0.6, 0.9), blood_scale=(0.6, 1.2), clutter_db=(-6.0, 0.0), specular_gain=(4.0, 10.0),
        parallel_loss=(0.6, 0.92), sidelobe_db=(-28.0, -20.0), extra_dropouts=(2, 5), dropout_depth=(0.6, 0.97),
        papillary_prob=0.8, trabeculation=(0.1, 0.35), shadow_prob=0.4, shadow_loss_db=(6.0, 18.0),
        overlay_prob=0.5, tilt_extra_deg=(-6.0, 6.0), myo_texture_scale=(1.4, 2.2),
        plane_offset_mm=(0.0, 4.0), plane_tilt_deg=(3.0, 12.0),
    ),
    "hard": Difficulty(
        "hard", standoff_mm=(12.0, 36.0), depth_factor=(0.75, 1.0), gain_gray=(-65.0, -30.0),
        dynamic_range_scale=(0.7, 1.2), blood_scale=(0.4, 1.5), clutter_db=(-4.0, 6.0), specular_gain=(2.0, 6.0),
        parallel_loss=(0.7, 0.97), sidelobe_db=(-26.0, -18.0), extra_dropouts=(3, 6), dropout_depth=(0.5, 0.95),
        papillary_prob=0.9, trabeculation=(0.2, 0.5), shadow_prob=0.7, shadow_loss_db=(8.0, 24.0),
        overlay_prob=0.7, tilt_extra_deg=(-9.0, 9.0), myo_texture_scale=(1.6, 2.6),
        plane_offset_mm=(0.0, 6.0), plane_tilt_deg=(5.0, 17.0),
    ),
}
DEFAULT_DIFFICULTY = "realistic"


def get_difficulty(name: str) -> Difficulty:
    """The registered difficulty ``name`` (easy, medium, realistic, hard)."""
    try:
        return DIFFICULTIES[name]
    except KeyError:
        raise ConfigError(f"unknown phantom difficulty {name!r}: choose {', '.join(DIFFICULTIES)}") from None


def look_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of the looks of patient ``index``: separate from the anatomy's stream."""
    return np.random.default_rng([seed, index, 0x6C6F6F6B])


def plane_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of the view planes (foreshortening) of patient ``index``: separate from the
    anatomy's and from the other look draws, so adding it left every other draw where it was."""
    return np.random.default_rng([seed, index, 0x6C6F6F6B, 0x706C616E])


def draw_plane(rng: np.random.Generator, difficulty: Difficulty) -> Foreshortening:
    """Draw how one acquisition's plane misses the long axis (neutral for ``easy``)."""
    if difficulty.is_easy:
        return Foreshortening()
    offset = _uniform(rng, difficulty.plane_offset_mm) * float(rng.choice([-1.0, 1.0]))
    tilt = _uniform(rng, difficulty.plane_tilt_deg) * float(rng.choice([-1.0, 1.0]))
    return Foreshortening(offset_mm=offset, tilt_deg=tilt)


def _uniform(rng: np.random.Generator, span: Range) -> float:
    return float(rng.uniform(span[0], span[1])) if span[1] > span[0] else float(span[0])


def draw_look(rng: np.random.Generator, difficulty: Difficulty, view: str, half_angle_rad: float = 0.65,
              planes: np.random.Generator | None = None) -> ViewLook:
    """Draw the look of one acquisition of ``view`` ("2CH", "4CH" or "ECHONET"); its foreshortening
    comes from ``planes`` (:func:`plane_rng`; default: ``rng``, after the other draws)."""
    if difficulty.is_easy:
        return ViewLook()
    d = difficulty
    papillary: list[Papillary] = []
    if rng.random() < d.papillary_prob:
        # 4CH: the anterolateral muscle on the lateral wall; 2CH: one or both (anterior, inferior)
        sides = [1.0] if view != "2CH" else ([1.0, -1.0] if rng.random() < 0.6 else [float(rng.choice([-1.0, 1.0]))])
        for side in sides:
            papillary.append(Papillary(side=side, z_frac=_uniform(rng, (0.35, 0.55)),
                                       length_mm=_uniform(rng, (14.0, 24.0)), width_mm=_uniform(rng, (5.0, 9.0)),
                                       echo=_uniform(rng, (0.5, 1.0))))
    shadows: list[Shadow] = []
    if rng.random() < d.shadow_prob:
        edge = float(rng.choice([-1.0, 1.0]))  # lung edge at one side of the sector
        shadows.append(Shadow(theta_rad=edge * half_angle_rad * _uniform(rng, (0.85, 1.05)),
                              width_rad=_uniform(rng, (0.12, 0.3)), start_mm=_uniform(rng, (5.0, 30.0)),
                              loss_db=_uniform(rng, d.shadow_loss_db)))
        if rng.random() < 0.4:  # a rib across the fan
            shadows.append(Shadow(theta_rad=_uniform(rng, (-0.6, 0.6)) * half_angle_rad,
                                  width_rad=_uniform(rng, (0.06, 0.14)), start_mm=_uniform(rng, (6.0, 14.0)),
                                  loss_db=0.6 * _uniform(rng, d.shadow_loss_db)))
    return ViewLook(
        standoff_mm=_uniform(rng, d.standoff_mm),
        depth_factor=_uniform(rng, d.depth_factor),
        gain_gray=_uniform(rng, d.gain_gray),
        dynamic_range_scale=_uniform(rng, d.dynamic_range_scale),
        blood_scale=_uniform(rng, d.blood_scale),
        clutter_db=_uniform(rng, d.clutter_db),
        specular_gain=_uniform(rng, d.specular_gain),
        parallel_loss=_uniform(rng, d.parallel_loss),
        sidelobe_db=None if d.sidelobe_db is None else _uniform(rng, d.sidelobe_db),
        extra_dropouts=int(rng.integers(d.extra_dropouts[0], d.extra_dropouts[1] + 1)),
        dropout_depth=d.dropout_depth,
        papillary=tuple(papillary),
        trabeculation=_uniform(rng, d.trabeculation),
        shadows=tuple(shadows),
        overlay=bool(rng.random() < d.overlay_prob),
        tilt_extra_deg=_uniform(rng, d.tilt_extra_deg),
        myo_texture_scale=_uniform(rng, d.myo_texture_scale),
        plane=draw_plane(rng if planes is None else planes, d),
    )
