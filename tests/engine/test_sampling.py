"""The training data order is a pure function of (seed, sample counter) and splits cleanly over ranks."""

import numpy as np
import pytest

from gdkvm.engine.sampling import CountedClips, RankSampler, sample_clip


def test_each_epoch_visits_every_clip_once():
    n = 7
    for epoch in range(3):
        seen = sorted(sample_clip(5, epoch * n + j, n)[0] for j in range(n))
        assert seen == list(range(n))
        assert {sample_clip(5, epoch * n + j, n)[1] for j in range(n)} == {epoch}


def test_order_depends_on_seed_and_epoch_only():
    n = 11
    a = [sample_clip(0, k, n) for k in range(3 * n)]
    b = [sample_clip(0, k, n) for k in reversed(range(3 * n))][::-1]
    assert a == b  # no hidden state: asking in another order gives the same answers
    assert [x[0] for x in a[:n]] != [x[0] for x in a[n : 2 * n]]  # epochs differ
    assert [sample_clip(1, k, n)[0] for k in range(n)] != [x[0] for x in a[:n]]


def test_ranks_partition_the_global_batch():
    global_batch, world = 6, 3
    single = list(RankSampler(2, 5, global_batch))
    ranks = [list(RankSampler(2, 5, global_batch, rank=r, world_size=world)) for r in range(world)]
    assert sorted(sum(ranks, [])) == single
    # per iteration, rank r holds the r-th contiguous slice of that iteration's counters
    for it in range(3):
        chunk = single[it * global_batch : (it + 1) * global_batch]
        for r in range(world):
            assert ranks[r][it * 2 : (it + 1) * 2] == chunk[r * 2 : (r + 1) * 2]
    with pytest.raises(ValueError):
        RankSampler(0, 1, 5, world_size=2)


def test_counted_clips_sets_the_epoch_before_reading():
    class Recorder:
        def __init__(self):
            self.epoch = None

        def __len__(self):
            return 4

        def set_epoch(self, e):
            self.epoch = e

        def __getitem__(self, i):
            return (i, self.epoch)

    clips = CountedClips(Recorder(), seed=3)
    index, epoch = clips[9]
    assert (index, epoch) == sample_clip(3, 9, 4)
    assert epoch == 2
    assert np.issubdtype(type(index), np.integer)
