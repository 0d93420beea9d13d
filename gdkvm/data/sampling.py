"""Choose the frames of a clip: ``n`` indices from a first to a last frame, both ends included.

Two rules (datasets.md §1a, §1b, §2b), both evaluated on the forward gap ``g = last - first``
(``(last - first) mod n_frames`` when the clip wraps cyclically):

- ``floor`` (MemSAM): ``first + floor(i * g / (n - 1))``, i = 0..n-1. Computed in exact integer
  arithmetic, so the last index is always ``first + g`` (no float round-down).
- ``rint`` (GDKVM re-release): ``first + rint(linspace(0, g, n))``.

Repeated indices occur when ``g < n - 1``.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

SamplingRule = Literal["floor", "rint"]
SAMPLING_RULES: tuple[str, ...] = get_args(SamplingRule)


def sample_indices(
    first: int,
    last: int,
    n: int = 10,
    rule: SamplingRule = "floor",
    n_frames: int | None = None,
) -> np.ndarray:
    """Return ``n`` frame indices (int64, shape (n,)) running forward from ``first`` to ``last``.

    Without ``n_frames`` the clip is linear and needs ``last > first``. With ``n_frames`` the clip
    runs forward cyclically modulo ``n_frames`` (``last < first`` wraps past the end of the video);
    every index is then reduced modulo ``n_frames``.
    """
    if n < 2:
        raise ValueError(f"need at least 2 samples, got {n}")
    if rule not in SAMPLING_RULES:
        raise ValueError(f"unknown sampling rule {rule!r}; valid: {', '.join(SAMPLING_RULES)}")
    if n_frames is None:
        gap = last - first
        if gap < 1:
            raise ValueError(f"last frame {last} must come after first frame {first}")
    else:
        if not (0 <= first < n_frames and 0 <= last < n_frames):
            raise ValueError(f"frames {first}, {last} outside 0..{n_frames - 1}")
        gap = (last - first) % n_frames
        if gap < 1:
            raise ValueError(f"first and last frame are the same ({first})")
    steps = np.arange(n, dtype=np.int64)
    if rule == "floor":
        offsets = (steps * gap) // (n - 1)
    else:
        offsets = np.rint(np.linspace(0.0, float(gap), n)).astype(np.int64)
    indices = first + offsets
    if n_frames is not None:
        indices = indices % n_frames
    return indices.astype(np.int64)
