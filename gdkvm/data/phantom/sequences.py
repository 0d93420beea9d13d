"""Render a patient's acquisitions: the CAMUS half sequences (ED -> ES) and the EchoNet video.

Frame times are exact: the CAMUS half sequence samples systole at the patient's frame rate with ED on
the first and ES on the last frame; the EchoNet video samples ``echonet_frames`` frames at 50 fps from a
random starting phase, so it holds several beats whose ED/ES instants fall between frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gdkvm.data.phantom.patient import ECHONET_FPS, PatientSpec
from gdkvm.data.phantom.render import ViewRenderer
from gdkvm.data.phantom.tracing import tracing_segments
from gdkvm.errors import DataError


@dataclass(frozen=True)
class CamusSequence:
    """One CAMUS view as stored on disk (frames already in file order)."""

    images: np.ndarray  # (T, H, W) uint8
    labels: np.ndarray  # (T, H, W) uint8
    volumes_ml: np.ndarray  # (T,) exact LV volume of each stored frame
    ed_index: int  # 0-based, in stored order
    es_index: int
    spacing_xy_mm: tuple[float, float]  # (sx along columns, sy along rows)


@dataclass(frozen=True)
class EchonetVideo:
    """One EchoNet-style video with its exact timing truth and the two traced frames."""

    frames: np.ndarray  # (T, 112, 112) uint8
    volumes_ml: np.ndarray  # (T,)
    ed_frames: list[int]  # every ED instant inside the video (nearest frame)
    es_frames: list[int]
    beats: list[tuple[int, int]]  # complete (ED, ES) pairs of the same beat
    traced: tuple[int, int]  # (ED, ES) frames of the first complete beat
    tracings: dict[int, np.ndarray]  # frame -> (21, 4) rows


def camus_sequence(spec: PatientSpec, view: str, rng: np.random.Generator) -> CamusSequence:
    """Render the half sequence of ``view`` ("2CH" or "4CH")."""
    setup = spec.setups[view]
    renderer = ViewRenderer(spec.shape, setup, rng)
    n = spec.camus_frames
    phase = np.arange(n) / spec.camus_fps / spec.cycle.period_s
    contraction = spec.cycle.contraction(phase)
    opening = spec.cycle.mitral_opening(phase)
    images = np.stack([renderer.image(float(m), float(o)) for m, o in zip(contraction, opening, strict=True)])
    labels = np.stack([renderer.labels(float(m)) for m in contraction])
    volumes = spec.shape.volume_ml(contraction)
    ed, es = 0, n - 1
    if spec.camus_reversed:
        images, labels, volumes = images[::-1].copy(), labels[::-1].copy(), volumes[::-1].copy()
        ed, es = n - 1, 0
    px = setup.output_pixels
    return CamusSequence(images=images, labels=labels, volumes_ml=volumes, ed_index=ed, es_index=es,
                         spacing_xy_mm=(px.spacing_x_mm, px.spacing_y_mm))


def _event_frames(start_phase: float, event_phase: float, period_s: float, n_frames: int, fps: float
                  ) -> dict[int, int]:
    """Beat number k -> nearest frame of the instant with phase k + event_phase, for instants inside."""
    out = {}
    duration_beats = n_frames / fps / period_s
    for k in range(0, int(math.ceil(start_phase + duration_beats)) + 1):
        t = (k + event_phase - start_phase) * period_s
        frame = int(round(t * fps))
        if t >= -0.5 / fps and 0 <= frame < n_frames:
            out[k] = frame
    return out


def echonet_video(spec: PatientSpec, rng: np.random.Generator) -> EchonetVideo:
    """Render the EchoNet video and locate every ED/ES instant in it."""
    setup = spec.setups["ECHONET"]
    renderer = ViewRenderer(spec.shape, setup, rng)
    n = spec.echonet_frames
    cycle = spec.cycle
    phase = spec.echonet_start_phase + np.arange(n) / ECHONET_FPS / cycle.period_s
    contraction = cycle.contraction(phase)
    opening = cycle.mitral_opening(phase)
    frames = np.stack([renderer.image(float(m), float(o)) for m, o in zip(contraction, opening, strict=True)])
    eds = _event_frames(spec.echonet_start_phase, 0.0, cycle.period_s, n, ECHONET_FPS)
    ess = _event_frames(spec.echonet_start_phase, cycle.es_phase, cycle.period_s, n, ECHONET_FPS)
    beats = [(eds[k], ess[k]) for k in sorted(eds) if k in ess]
    if not beats:
        raise DataError(f"{spec.echonet_name}.avi", "the video holds no complete ED -> ES beat; use more beats")
    traced = beats[0]
    tracings = {
        f: tracing_segments(spec.shape, setup.anatomy.omega, float(contraction[f]), setup.pose, setup.output_pixels,
                            plane=setup.anatomy.plane)
        for f in traced
    }
    return EchonetVideo(
        frames=frames,
        volumes_ml=spec.shape.volume_ml(contraction),
        ed_frames=sorted(eds.values()),
        es_frames=sorted(ess.values()),
        beats=beats,
        traced=traced,
        tracings=tracings,
    )
