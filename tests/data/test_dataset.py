"""ClipDataset: item format and augmentation determined by (seed, epoch, index)."""

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gdkvm.data.dataset import ClipDataset
from gdkvm.data.store import open_store, prepare_camus
from tests.data.fixtures import write_camus_dataset


@pytest.fixture(scope="module")
def train_split(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clips")
    write_camus_dataset(tmp / "raw", patients=4, splits=(2, 1, 1))
    prepare_camus(tmp / "raw" / "CAMUS_public", tmp / "out", size=24, labels="all")
    return open_store(tmp / "out" / "camus", "train")


def test_item_format(train_split):
    ds = ClipDataset(train_split)
    assert len(ds) == 4
    item = ds[1]
    assert item["images"].shape == (10, 1, 24, 24) and item["images"].dtype == torch.float32
    assert 0.0 <= item["images"].min() and item["images"].max() <= 1.0
    assert item["masks"].shape == (10, 24, 24) and item["masks"].dtype == torch.int64
    assert item["labeled"].dtype == torch.bool and item["labeled"].all()
    assert item["index"] == 1 and item["case_id"] == train_split.manifest["case_id"][1]
    assert torch.equal(item["images"][:, 0], torch.from_numpy(np.array(train_split.images[1])).float() / 255)
    assert torch.equal(item["masks"], torch.from_numpy(np.array(train_split.masks[1])).long())
    assert ds[-1]["index"] == 3
    with pytest.raises(IndexError):
        ds[4]


def test_augmentation_depends_only_on_seed_epoch_index(train_split):
    a = ClipDataset(train_split, augment=True, seed=7)
    b = ClipDataset(train_split, augment=True, seed=7)
    for i in range(len(a)):
        assert torch.equal(a[i]["images"], b[i]["images"]) and torch.equal(a[i]["masks"], b[i]["masks"])
    per_epoch = []
    for epoch in range(4):
        a.set_epoch(epoch)
        per_epoch.append(torch.stack([a[i]["images"] for i in range(len(a))]))
    assert any(not torch.equal(per_epoch[0], x) for x in per_epoch[1:])
    a.set_epoch(0)
    assert torch.equal(torch.stack([a[i]["images"] for i in range(len(a))]), per_epoch[0])
    other_seed = ClipDataset(train_split, augment=True, seed=8)
    assert any(not torch.equal(other_seed[i]["images"], b[i]["images"]) for i in range(len(a)))
    for i in range(len(a)):
        assert set(a[i]["masks"].unique().tolist()) <= {0, 1, 2, 3}


def test_dataloader_order_does_not_matter(train_split):
    ds = ClipDataset(train_split, augment=True, seed=3)
    ds.set_epoch(2)
    direct = {i: ds[i]["images"] for i in range(len(ds))}
    loader = DataLoader(ds, batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(0))
    for batch in loader:
        for k, index in enumerate(batch["index"].tolist()):
            assert torch.equal(batch["images"][k], direct[index])
        assert batch["images"].shape[1:] == (10, 1, 24, 24)


def test_pickles_by_path_not_by_array(train_split):
    ds = ClipDataset(train_split, augment=True, seed=5)
    ds.set_epoch(3)
    blob = pickle.dumps(ds)
    assert len(blob) < train_split.images.nbytes // 4
    clone = pickle.loads(blob)
    assert clone.epoch == 3 and len(clone) == len(ds)
    assert torch.equal(clone[2]["images"], ds[2]["images"]) and torch.equal(clone[2]["masks"], ds[2]["masks"])
