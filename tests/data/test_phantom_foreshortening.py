"""Foreshortened views: the view plane offset from and tilted against the LV long axis.

The cut must stay exact (it is the label), reduce to the plane through the axis when the offset and tilt
are zero, shorten the LV the view shows, and be recorded in the truth. Uses the session ``phantom``
fixture (tests/conftest.py, realistic level) and otherwise draws patients without writing files.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from gdkvm.data.phantom.anatomy import LABEL_LV, frame_state, tissue_maps
from gdkvm.data.phantom.difficulty import DIFFICULTIES, draw_look, draw_plane, look_rng, plane_rng
from gdkvm.data.phantom.patient import CAMUS_VIEWS, sample_patient
from gdkvm.data.phantom.profiles import ZAxis
from gdkvm.data.phantom.shape import Foreshortening, LVShape, sample_shape
from gdkvm.data.phantom.tracing import biplane_volume_ml, cavity_outline, long_axis_mm
from gdkvm.data.synthetic import load_truth

PLANES = (Foreshortening(3.0, 0.0), Foreshortening(-2.0, 8.0), Foreshortening(1.5, -11.0))
OMEGAS = (0.0, math.pi / 2)


def _plane_points(shape: LVShape, plane: Foreshortening, omega: float, u: np.ndarray, w: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heart coordinates (x, y, z) of the plane points (u, w), written from the definition: the point is
    u e + nu(w) n + z(w) ez with e = (cos omega, sin omega, 0), n = (-sin omega, cos omega, 0)."""
    tilt = math.radians(plane.tilt_deg)
    z = shape.length_mm - (shape.length_mm - w) * math.cos(tilt)
    nu = plane.offset_mm + (shape.length_mm - w) * math.sin(tilt)
    x = u * math.cos(omega) - nu * math.sin(omega)
    y = u * math.sin(omega) + nu * math.cos(omega)
    return x, y, z


def _in_offset_surface(shape: LVShape, x, y, z, m: float, offset: float) -> np.ndarray:
    """Brute-force membership of the surface offset by ``offset`` mm (module docstring of shape.py): the
    slice ellipse with semi-axes a + offset, b + offset, closed by the elliptic cap below the apex."""
    cx, a, b = shape.semi_axes(z, m)
    in_lv = (z >= 0) & (z <= float(shape.length(m)))
    ellipse = ((x - cx) / (a + offset)) ** 2 + (y / (b + offset)) ** 2 <= 1.0
    depth = shape.apex_wall_ratio * offset
    cap = (z < 0) & (z >= -depth) & (x * x + y * y <= offset * offset * (1.0 - (z / depth) ** 2))
    return (in_lv & ellipse) | cap


@pytest.mark.parametrize("plane", PLANES)
def test_oblique_cut_equals_point_sampling_of_the_3d_model(plane):
    shape = sample_shape(np.random.default_rng(11), 50.0)
    u = np.linspace(-45.0, 45.0, 721)
    w = np.linspace(-25.0, shape.length_mm + 3.0, 181)
    big_w, big_u = np.meshgrid(w, u, indexing="ij")
    for omega in OMEGAS:
        for m in (0.0, 1.0):
            wall = float(shape.wall_thickness(m))
            c, h, ce, he = shape.cut(w, m, omega, wall, plane=plane)
            x, y, z = _plane_points(shape, plane, omega, big_u, big_w)
            cavity = shape.contains(x, y, z, m)
            cut = (np.abs(big_u - c[:, None]) <= h[:, None]) & (h[:, None] > 0)
            assert cavity.sum() > 1000
            assert np.array_equal(cavity, cut)
            epi = _in_offset_surface(shape, x, y, z, m, wall)
            epi_cut = (np.abs(big_u - ce[:, None]) <= he[:, None]) & (he[:, None] > 0)
            assert np.array_equal(epi, epi_cut)


def test_zero_offset_and_tilt_reproduce_the_axial_cut():
    shape = sample_shape(np.random.default_rng(3), 60.0)
    z = np.linspace(-20.0, shape.length_mm + 2.0, 900)
    for omega in OMEGAS:
        for m in (0.0, 0.6, 1.0):
            wall = float(shape.wall_thickness(m))
            axial = shape.cut(z, m, omega, wall, extra=2.0)
            # the neutral plane takes the old code path: bit for bit
            for got, want in zip(shape.cut(z, m, omega, wall, extra=2.0, plane=Foreshortening()), axial, strict=True):
                assert np.array_equal(got, want)
            # the general ellipse-line formula converges to it as the offset vanishes
            tiny = shape.cut(z, m, omega, wall, extra=2.0, plane=Foreshortening(offset_mm=1e-9))
            for got, want in zip(tiny, axial, strict=True):
                np.testing.assert_allclose(got, want, atol=1e-6)
            assert shape.cut_apex(m, omega, Foreshortening()) == 0.0
            assert shape.plane_length(m, Foreshortening()) == float(shape.length(m))


def test_foreshortened_labels_are_the_exact_cut_and_shorter():
    spec, _ = sample_patient(0, 1, 2.5, "realistic")
    shape = spec.shape
    axis = ZAxis.for_shape(shape)
    u = np.arange(-40.0, 40.0, 0.25)
    w = np.arange(-15.0, shape.length_mm + 4.0, 0.25)
    big_w, big_u = np.meshgrid(w, u, indexing="ij")
    for view in CAMUS_VIEWS:
        anat = spec.setups[view].anatomy
        assert not anat.plane.neutral
        for m in (0.0, 1.0):
            labels, _ = tissue_maps(anat, frame_state(shape, anat, axis, m, 0.0), big_u, big_w, with_echo=False)
            lv = labels == LABEL_LV
            x, y, z = _plane_points(shape, anat.plane, anat.omega, big_u, big_w)
            truth = shape.contains(x, y, z, m)
            wrong = lv != truth
            assert wrong.sum() <= 0.003 * truth.sum()  # only boundary points of the 0.1 mm profile table
            c, h, _, _ = shape.cut(big_w[wrong], m, anat.omega, float(shape.wall_thickness(m)), plane=anat.plane)
            assert np.all(np.abs(np.abs(big_u[wrong] - c) - h) < 0.5)
            # the same heart in the plane through the axis: a longer LV reaching down to the true apex
            axial = replace(anat, plane=Foreshortening())
            labels0, _ = tissue_maps(axial, frame_state(shape, axial, axis, m, 0.0), big_u, big_w, with_echo=False)
            lowest = big_w[lv].min()
            lowest0 = big_w[labels0 == LABEL_LV].min()
            assert lowest0 <= 0.25 and lowest > lowest0 + 1.0
            assert lowest == pytest.approx(shape.cut_apex(m, anat.omega, anat.plane), abs=0.3)
            assert long_axis_mm(shape, anat.omega, m, anat.plane) < long_axis_mm(shape, anat.omega, m) - 1.0


def test_easy_views_are_not_foreshortened_and_harder_levels_are_more():
    for index in (1, 2, 3):
        easy, _ = sample_patient(0, index, 2.5, "easy")
        assert all(setup.anatomy.plane.neutral for setup in easy.setups.values())
    shapes = [sample_shape(np.random.default_rng(i), 55.0) for i in range(12)]
    mean_loss = {}
    for name in ("medium", "realistic", "hard"):
        rng = np.random.default_rng(7)
        loss = []
        for shape in shapes:
            plane = shape.keep_annulus(draw_plane(rng, DIFFICULTIES[name]))
            loss.append(1.0 - long_axis_mm(shape, 0.0, 0.0, plane) / long_axis_mm(shape, 0.0, 0.0))
        mean_loss[name] = float(np.mean(loss))
    assert 0.0 < mean_loss["medium"] < mean_loss["realistic"] < mean_loss["hard"]


def test_plane_draws_leave_the_other_look_draws_alone():
    """The planes come from their own stream: with or without it, every other look draw is the same."""
    d = DIFFICULTIES["realistic"]
    for view in ("2CH", "4CH", "ECHONET"):
        separate = draw_look(look_rng(0, 4), d, view, planes=plane_rng(0, 4))
        shared = draw_look(look_rng(0, 4), d, view)
        assert not separate.plane.neutral
        assert replace(separate, plane=Foreshortening()) == replace(shared, plane=Foreshortening())


def test_every_view_keeps_the_mitral_annulus_at_end_systole():
    rng = np.random.default_rng(2)
    for i in range(10):
        shape = sample_shape(np.random.default_rng(100 + i), float(rng.uniform(20.0, 75.0)))
        for omega in OMEGAS:
            plane = shape.keep_annulus(draw_plane(rng, DIFFICULTIES["hard"]))
            _, h, _, _ = shape.cut(np.array([shape.plane_length(1.0, plane)]), 1.0, omega, shape.wall_mm, plane=plane)
            _, h0, _, _ = shape.cut(np.array([float(shape.length(1.0))]), 1.0, omega, shape.wall_mm)
            assert h[0] >= 0.8 * h0[0]
            left, right = cavity_outline(shape, omega, 1.0, plane=plane)
            assert np.all(right[:, 0] >= left[:, 0]) and right[-1, 0] - left[-1, 0] > 0


def test_biplane_of_foreshortened_cuts_underestimates_the_volume():
    rng = np.random.default_rng(4)
    for i in range(6):
        shape = sample_shape(np.random.default_rng(200 + i), float(rng.uniform(25.0, 70.0)))
        for m in (0.0, 1.0):
            exact = float(shape.volume_ml(m))
            assert biplane_volume_ml(shape, m) == pytest.approx(exact, rel=0.01)
            planes = [shape.keep_annulus(Foreshortening(float(rng.uniform(-3, 3)), s * float(rng.uniform(6, 12))))
                      for s in (-1.0, 1.0)]
            assert biplane_volume_ml(shape, m, *planes) < 0.99 * exact


def test_truth_records_each_views_plane(phantom):
    truth = load_truth(phantom.root)
    assert truth["phantom_version"] >= 3
    shown = []
    for index, (name, record) in enumerate(sorted(truth["camus"].items()), start=1):
        spec, _ = sample_patient(truth["seed"], index, truth["echonet_beats"], truth["difficulty"])
        assert spec.name == name
        true_length = record["lv_length_mm"]
        assert true_length == pytest.approx([float(spec.shape.length(0.0)), float(spec.shape.length(1.0))], abs=1e-3)
        for view, info in ((v, record["views"][v]) for v in CAMUS_VIEWS):
            plane = spec.setups[view].anatomy.plane
            assert info["plane"]["offset_mm"] == pytest.approx(plane.offset_mm, abs=1e-4)
            assert info["plane"]["tilt_deg"] == pytest.approx(plane.tilt_deg, abs=1e-4)
            assert not plane.neutral  # the fixture is realistic: every view misses the axis a little
            for k, m in enumerate((0.0, 1.0)):
                length = long_axis_mm(spec.shape, spec.setups[view].anatomy.omega, m, plane)
                assert info["plane"]["lv_length_mm"][k] == pytest.approx(length, abs=1e-3)
            shown.append(info["plane"]["lv_length_mm"][0] / true_length[0])
        video = truth["echonet"][record["echonet"]]
        plane = spec.setups["ECHONET"].anatomy.plane
        assert video["plane"]["tilt_deg"] == pytest.approx(plane.tilt_deg, abs=1e-4)
        assert video["plane"]["offset_mm"] == pytest.approx(plane.offset_mm, abs=1e-4)
        assert record["biplane_EF"] == pytest.approx(100.0 * (1 - record["biplane_ESV"] / record["biplane_EDV"]))
        planes = [spec.setups[v].anatomy.plane for v in ("4CH", "2CH")]
        assert record["biplane_EDV"] == pytest.approx(biplane_volume_ml(spec.shape, 0.0, *planes), rel=1e-9)
    assert np.mean(shown) < 1.0  # on average the views show a shorter LV than the true one


# SHA-256 of phantom version 2's files (seed 1, one patient, realistic), taken from the code before
# foreshortening landed (commit e236929); the shipped weights were trained on that version's images.
V2_SEED1_PATIENT1 = {
    "CAMUS_public/database_nifti/patient0001/patient0001_2CH_half_sequence.nii.gz":
        "a48e4ac3705745805068dac015976111487fc3177226ee7dc8bf70a00e933564",
    "CAMUS_public/database_nifti/patient0001/patient0001_4CH_half_sequence_gt.nii.gz":
        "82b638e239393929edbab9faf9758048f8c908bf7af2cfe87de5d5969d173b42",
    "CAMUS_public/database_nifti/patient0001/patient0001_4CH_ES.nii.gz":
        "6c216597399a009260fe3632612d2241bd501031e77d6fb19d0181b2d55d2f52",
    "EchoNet-Dynamic/Videos/0XB43DF18E6DEBE66E.avi": "c9c41d294527e4c8e9b2e89d7623c3532ce8cc70492acd458be3f1ab29f28bec",
    "EchoNet-Dynamic/VolumeTracings.csv": "0c652853dbf7dd68dc9e08827b7fed612f1553879278472fa9bc346e64474e9d",
}


def test_without_foreshortening_the_files_are_version_2s_byte_for_byte(tmp_path):
    import hashlib

    from gdkvm.data.synthetic import write_phantom

    flat = write_phantom(tmp_path / "flat", patients=1, seed=1, foreshortening=False)
    for rel, digest in V2_SEED1_PATIENT1.items():
        assert hashlib.sha256((flat.root / rel).read_bytes()).hexdigest() == digest, rel
    truth = load_truth(flat.root)
    assert truth["foreshortening"] is False
    planes = [v["plane"] for r in truth["camus"].values() for v in r["views"].values()]
    planes += [v["plane"] for v in truth["echonet"].values()]
    assert all(p["offset_mm"] == 0 and p["tilt_deg"] == 0 for p in planes)
    # the default (foreshortened) views of the same heart are other images
    tilted = write_phantom(tmp_path / "tilted", patients=1, seed=1)
    rel = "EchoNet-Dynamic/Videos/0XB43DF18E6DEBE66E.avi"
    assert (tilted.root / rel).read_bytes() != (flat.root / rel).read_bytes()
    assert load_truth(tilted.root)["foreshortening"] is True
