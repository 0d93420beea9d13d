"""Training data order as a pure function of (seed, sample counter).

Sample number ``k`` (counting from 0 over the whole run, ``k = iteration * global_batch + slot``) is
clip ``perm_e[k mod N]`` of epoch ``e = k // N``, where ``perm_e`` is a permutation seeded by
(seed, e). Augmentation is seeded by (seed, e, clip index) inside :class:`ClipDataset`. Nothing
depends on how many iterations ran before, on the number of DataLoader workers or on a restart, so a
resumed run sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Sampler


@lru_cache(maxsize=8)
def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The clip order of one epoch: a permutation of ``range(n)`` seeded by (seed, epoch)."""
    return np.random.default_rng([int(seed), int(epoch), 0x67646B76]).permutation(n)


def sample_clip(seed: int, k: int, n: int) -> tuple[int, int]:
    """``(clip index, epoch)`` of sample number ``k`` in a split of ``n`` clips."""
    if n < 1:
        raise ValueError("cannot sample from an empty split")
    epoch = k // n
    return int(epoch_permutation(seed, epoch, n)[k % n]), epoch


class CountedClips(Dataset):
    """Dataset indexed by the global sample counter ``k`` (see module docstring).

    Wraps a dataset with ``set_epoch(e)`` and ``__getitem__(index)`` (:class:`ClipDataset`).
    """

    def __init__(self, clips: Any, seed: int):
        self.clips = clips
        self.seed = int(seed)

    def __len__(self) -> int:  # unbounded in principle; the sampler decides which k are drawn
        return 2**62

    def __getitem__(self, k: int) -> dict[str, Any]:
        index, epoch = sample_clip(self.seed, int(k), len(self.clips))
        self.clips.set_epoch(epoch)
        return self.clips[index]


class RankSampler(Sampler[int]):
    """The sample counters this rank draws for iterations ``start .. stop - 1``.

    Iteration ``i`` uses counters ``i*B .. i*B + B - 1`` of the global batch ``B``; rank ``r`` of ``W``
    takes the contiguous slice ``r*B/W .. (r+1)*B/W - 1``. Batch the loader with ``B / W``.
    """

    def __init__(self, start: int, stop: int, global_batch: int, rank: int = 0, world_size: int = 1):
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} does not split over {world_size} ranks")
        self.start, self.stop = int(start), int(stop)
        self.global_batch, self.rank, self.world_size = int(global_batch), int(rank), int(world_size)
        self.local = self.global_batch // self.world_size

    def __iter__(self) -> Iterator[int]:
        for it in range(self.start, self.stop):
            base = it * self.global_batch + self.rank * self.local
            yield from range(base, base + self.local)

    def __len__(self) -> int:
        return max(self.stop - self.start, 0) * self.local
