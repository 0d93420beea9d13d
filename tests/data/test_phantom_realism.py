"""The phantom's difficulty levels and its calibration on real EchoNet-Dynamic statistics."""

import math

import numpy as np
import pytest

from gdkvm.data.phantom import effects
from gdkvm.data.phantom.difficulty import DIFFICULTIES, Shadow, ViewLook, draw_look, get_difficulty
from gdkvm.data.phantom.geometry import PolarGrid, Sector
from gdkvm.data.phantom.patient import sample_patient
from gdkvm.data.phantom.realism import REAL_ECHONET, STAT_NAMES, compare, echonet_statistics, frame_statistics
from gdkvm.data.synthetic import load_truth, write_phantom
from gdkvm.errors import ConfigError

CALIBRATION_PATIENTS = 10


@pytest.fixture(scope="module")
def levels(tmp_path_factory):
    """The same 10 hearts written at the easy and the realistic level."""
    root = tmp_path_factory.mktemp("levels")
    return {level: write_phantom(root / level, patients=CALIBRATION_PATIENTS, seed=0, workers=2, difficulty=level)
            for level in ("easy", "realistic")}


def test_realistic_phantom_matches_the_real_echonet_statistics(levels):
    table = compare(echonet_statistics(levels["realistic"].echonet_root)).set_index("statistic")
    assert table["match"].all(), table.to_string()


def test_easy_phantom_is_the_unrealistic_one(levels):
    """The calibration is not vacuous: the old look misses most targets (heart too high, blood too grey,
    walls too bright and too complete)."""
    table = compare(echonet_statistics(levels["easy"].echonet_root)).set_index("statistic")
    assert table["match"].sum() <= 2, table.to_string()
    assert table.loc["centroid_y", "mean"] < REAL_ECHONET["centroid_y"] - 0.08
    assert table.loc["band_dark", "mean"] < REAL_ECHONET["band_dark"] - 0.08


def test_difficulty_changes_the_look_but_not_the_hearts(levels):
    easy, real = load_truth(levels["easy"].root), load_truth(levels["realistic"].root)
    assert easy["difficulty"] == "easy" and real["difficulty"] == "realistic"
    for name, record in easy["camus"].items():
        other = real["camus"][name]
        assert other["EF"] == record["EF"] and other["echonet"] == record["echonet"]
        assert other["views"]["4CH"]["ED"] == record["views"]["4CH"]["ED"]
    for video, record in easy["echonet"].items():
        assert real["echonet"][video]["ed_frames"] == record["ed_frames"]
    easy_names = sorted(p.name for p in (levels["easy"].echonet_root / "Videos").iterdir())
    real_names = sorted(p.name for p in (levels["realistic"].echonet_root / "Videos").iterdir())
    assert easy_names == real_names


def test_easy_draws_the_neutral_look_for_every_view():
    spec, _ = sample_patient(0, 1, 2.5, "easy")
    assert all(setup.look.neutral for setup in spec.setups.values())
    spec, _ = sample_patient(0, 1, 2.5, "realistic")
    assert not any(setup.look.neutral for setup in spec.setups.values())


def test_harder_levels_draw_stronger_effects():
    rng = np.random.default_rng(3)
    mean = {}
    for name in ("medium", "realistic", "hard"):
        looks = [draw_look(rng, DIFFICULTIES[name], "4CH") for _ in range(200)]
        mean[name] = (np.mean([lk.parallel_loss for lk in looks]), np.mean([lk.standoff_mm for lk in looks]))
    assert mean["medium"][0] < mean["realistic"][0] < mean["hard"][0]
    assert mean["medium"][1] < mean["realistic"][1] < mean["hard"][1]


def test_unknown_difficulty_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown phantom difficulty 'extreme'"):
        get_difficulty("extreme")
    with pytest.raises(ConfigError):
        write_phantom(tmp_path / "p", patients=1, difficulty="extreme")
    assert not (tmp_path / "p").exists()


def test_frame_statistics_on_a_drawn_frame():
    frame = np.full((112, 112), 100, np.uint8)
    mask = np.zeros((112, 112), np.uint8)
    mask[40:80, 40:70] = 1
    frame[mask > 0] = 10
    frame[30:40, 30:80] = 0  # a dark strip in the ring above the cavity
    stats = frame_statistics(frame, mask)
    assert stats.centroid_y == pytest.approx((59.5 + 0.5) / 112)
    assert stats.blood_mean == pytest.approx(10.0)
    assert 0.0 < stats.band_dark < 0.5 and stats.band_p90 == pytest.approx(100.0)
    with pytest.raises(ValueError, match="empty"):
        frame_statistics(frame, np.zeros_like(mask))


def test_statistic_names_cover_the_targets():
    assert set(STAT_NAMES) == set(REAL_ECHONET)


def _grid() -> PolarGrid:
    return PolarGrid(Sector(depth_mm=120.0, half_angle_rad=math.radians(36.0)), dr_mm=0.3,
                     dtheta_rad=math.radians(0.4))


def test_interfaces_facing_the_beam_are_brighter_than_walls_along_it():
    grid = _grid()
    echo = np.full((grid.n_r, grid.n_theta), 0.01, np.float32)
    mid = grid.n_theta // 2
    echo[200:230, :] = 1.0  # a band across the beams (normal along the beam)
    echo[260:, mid - 10:mid + 10] = 1.0  # a band along one beam (normal across the beams)
    factor = effects.incidence(echo, grid, specular_gain=5.0, parallel_loss=0.7)
    across = factor[198:203, mid + 40].max()  # the proximal interface of the crossing band
    along = factor[320:330, mid - 11:mid + 11].max()
    assert across > 3.0
    assert along < 1.5
    assert factor[320:330, mid - 10:mid - 6].min() < 0.8  # the wall along the beam is dimmed


def test_shadow_gain_darkens_only_behind_the_rib():
    grid = _grid()
    gain = effects.shadow_gain(grid, (Shadow(theta_rad=0.0, width_rad=0.2, start_mm=20.0, loss_db=20.0),))
    mid = grid.n_theta // 2
    r = grid.radii()
    assert gain[r < 15.0].min() == pytest.approx(1.0)
    assert gain[r > 30.0, mid].max() == pytest.approx(0.1, abs=0.01)
    assert gain[r > 30.0, 0].min() > 0.99


def test_neutral_look_is_the_default():
    assert ViewLook().neutral and not ViewLook(overlay=True).neutral
