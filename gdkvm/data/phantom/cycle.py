"""The cardiac cycle of the phantom: contraction level and mitral opening as functions of phase.

The phase runs over [0, 1) per beat with end-diastole (ED) at phase 0. The contraction level ``m`` is 0
at ED and 1 at end-systole (ES); the shape model maps ``m`` to the cavity geometry, so the LV volume is
largest at ED and smallest at ES. See docs/phantom.md for the piecewise form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CardiacCycle:
    """Timing of one beat, in seconds.

    Order inside a beat: systole (ED -> ES, cosine ramp of m from 0 to 1), isovolumic relaxation
    (m stays 1), rapid filling (cosine from 1 down to ``diastasis_level``), diastasis (slow drift to
    ``0.85 * diastasis_level``), atrial contraction (cosine down to 0 at the next ED).
    """

    heart_rate_bpm: float
    systole_s: float
    relaxation_s: float
    filling_s: float
    atrial_s: float
    diastasis_level: float

    @property
    def period_s(self) -> float:
        return 60.0 / self.heart_rate_bpm

    @property
    def es_phase(self) -> float:
        """Phase of end-systole (end of ejection) within the beat."""
        return self.systole_s / self.period_s

    def contraction(self, phase: np.ndarray | float) -> np.ndarray:
        """Contraction level m in [0, 1] for phases (any shape; taken modulo 1)."""
        t = np.mod(np.asarray(phase, dtype=np.float64), 1.0) * self.period_s
        ts, tr, tf, ta, md = self.systole_s, self.relaxation_s, self.filling_s, self.atrial_s, self.diastasis_level
        period = self.period_s
        t_fill = ts + tr
        t_dia = t_fill + tf
        t_atr = period - ta
        m_end = 0.85 * md
        systole = 0.5 * (1.0 - np.cos(np.pi * np.clip(t / ts, 0.0, 1.0)))
        filling = md + (1.0 - md) * 0.5 * (1.0 + np.cos(np.pi * np.clip((t - t_fill) / tf, 0.0, 1.0)))
        span = max(t_atr - t_dia, 1e-9)
        diastasis = md + (m_end - md) * np.clip((t - t_dia) / span, 0.0, 1.0)
        atrial = m_end * 0.5 * (1.0 + np.cos(np.pi * np.clip((t - t_atr) / ta, 0.0, 1.0)))
        return np.select(
            [t <= ts, t <= t_fill, t <= t_dia, t <= t_atr],
            [systole, np.ones_like(t), filling, diastasis],
            default=atrial,
        )

    def mitral_opening(self, phase: np.ndarray | float) -> np.ndarray:
        """Mitral valve opening in [0, 1]: closed through systole and relaxation, open in diastole."""
        t = np.mod(np.asarray(phase, dtype=np.float64), 1.0) * self.period_s
        period = self.period_s
        t_open = self.systole_s + self.relaxation_s
        knots = np.array(
            [0.0, t_open, t_open + 0.04, t_open + 0.8 * self.filling_s, period - self.atrial_s,
             period - self.atrial_s + 0.05, period - 0.03, period]
        )
        knots = np.maximum.accumulate(np.minimum(knots, period))
        values = np.array([0.0, 0.0, 1.0, 0.45, 0.45, 0.85, 0.0, 0.0])
        return np.interp(t, knots, values)


def sample_cycle(rng: np.random.Generator, heart_rate_bpm: float) -> CardiacCycle:
    """Draw a plausible beat for a heart rate: systole shortens slowly, diastole absorbs the rest."""
    period = 60.0 / heart_rate_bpm
    systole = (0.47 - 0.0017 * heart_rate_bpm) * rng.uniform(0.93, 1.07)
    relax = 0.05 * rng.uniform(0.8, 1.2)
    filling = 0.17 * rng.uniform(0.85, 1.15)
    atrial = 0.11 * rng.uniform(0.85, 1.15)
    room = 0.97 * period - systole
    rest = relax + filling + atrial
    if rest > room:
        scale = room / rest
        relax, filling, atrial = relax * scale, filling * scale, atrial * scale
    return CardiacCycle(
        heart_rate_bpm=float(heart_rate_bpm),
        systole_s=float(systole),
        relaxation_s=float(relax),
        filling_s=float(filling),
        atrial_s=float(atrial),
        diastasis_level=float(rng.uniform(0.2, 0.35)),
    )


def with_systole(cycle: CardiacCycle, systole_s: float) -> CardiacCycle:
    """The same beat with systole set to ``systole_s`` (used to align ES with a frame of the half sequence)."""
    period = cycle.period_s
    rest = cycle.relaxation_s + cycle.filling_s + cycle.atrial_s
    room = 0.97 * period - systole_s
    scale = min(1.0, room / rest)
    return CardiacCycle(
        heart_rate_bpm=cycle.heart_rate_bpm,
        systole_s=float(systole_s),
        relaxation_s=cycle.relaxation_s * scale,
        filling_s=cycle.filling_s * scale,
        atrial_s=cycle.atrial_s * scale,
        diastasis_level=cycle.diastasis_level,
    )
