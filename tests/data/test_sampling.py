"""Frame sampling: both ends kept, floor vs rint, cyclic wrap for ED > ES."""

import math
from fractions import Fraction

import numpy as np
import pytest

from gdkvm.data.sampling import sample_indices


@pytest.mark.parametrize("rule", ["floor", "rint"])
def test_both_ends_kept_for_every_gap(rule):
    for first in (0, 3):
        for gap in range(1, 401):
            idx = sample_indices(first, first + gap, 10, rule)
            assert idx.shape == (10,) and idx.dtype == np.int64
            assert idx[0] == first and idx[-1] == first + gap, (gap, idx)
            assert np.all(np.diff(idx) >= 0)


def test_floor_rule_is_the_exact_mathematical_floor():
    for gap in range(1, 200):
        expected = [math.floor(Fraction(7) + Fraction(i * gap, 9)) for i in range(10)]
        assert sample_indices(7, 7 + gap, 10, "floor").tolist() == expected


def test_rint_rule_matches_linspace():
    for gap in range(1, 200):
        expected = (5 + np.rint(np.linspace(0, gap, 10))).astype(int).tolist()
        assert sample_indices(5, 5 + gap, 10, "rint").tolist() == expected


def test_rules_differ_somewhere_and_short_gaps_repeat():
    differs = [
        g for g in range(1, 60) if not np.array_equal(sample_indices(0, g), sample_indices(0, g, rule="rint"))
    ]
    assert differs
    short = sample_indices(0, 4)
    assert len(set(short.tolist())) == 5  # gap 4 < 9: every frame used, some twice


@pytest.mark.parametrize("rule", ["floor", "rint"])
def test_cyclic_forward_when_es_precedes_ed(rule):
    idx = sample_indices(25, 3, 10, rule, n_frames=30)
    assert idx[0] == 25 and idx[-1] == 3
    steps = np.diff(idx) % 30
    assert steps.sum() == (3 - 25) % 30 and np.all(steps <= 2)
    assert np.all((idx >= 0) & (idx < 30))
    # without wrap the cyclic form equals the linear one
    assert sample_indices(4, 20, 10, rule, n_frames=30).tolist() == sample_indices(4, 20, 10, rule).tolist()


def test_invalid_requests():
    with pytest.raises(ValueError, match="after"):
        sample_indices(5, 5)
    with pytest.raises(ValueError, match="after"):
        sample_indices(9, 2)
    with pytest.raises(ValueError, match="same"):
        sample_indices(4, 4, n_frames=10)
    with pytest.raises(ValueError, match="outside"):
        sample_indices(4, 12, n_frames=10)
    with pytest.raises(ValueError, match="unknown sampling rule"):
        sample_indices(0, 9, rule="nearest")
