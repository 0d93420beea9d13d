"""Torch dataset over one prepared split: one item is one clip.

Augmentation randomness is a pure function of (seed, epoch, index), so an item is the same whatever
the worker, the order or the number of DataLoader workers. Call :meth:`ClipDataset.set_epoch` before
each epoch (with persistent workers, recreate the iterator so workers see the new epoch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from gdkvm.data.augment import AugmentConfig, augment_clip
from gdkvm.data.store import PreparedSplit, open_store


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A torch.Generator seeded from (seed, epoch, index) through numpy's SeedSequence mixing."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0]
    generator = torch.Generator()
    generator.manual_seed(int(state) & ((1 << 63) - 1))
    return generator


class ClipDataset(Dataset):
    """Clips of a :class:`PreparedSplit` as tensors.

    Item dict:
        images: (T, 1, H, W) float32 in [0, 1].
        masks: (T, H, W) int64 label maps (zeros where ``labeled`` is False).
        labeled: (T,) bool, positions that carry a ground-truth mask.
        index: int, position in the split.
        case_id: str.
    """

    def __init__(
        self, split: PreparedSplit, augment: bool = False, seed: int = 0, config: AugmentConfig | None = None
    ):
        self.split = split
        self.augment = augment
        self.seed = int(seed)
        self.config = config or AugmentConfig()
        self.epoch = 0
        self._case_ids = split.manifest["case_id"].astype(str).tolist()

    def __getstate__(self) -> dict[str, Any]:
        # Pickled for spawn-started DataLoader workers: send the store path, not the memory-mapped arrays
        # (pickling a memmap copies its whole content).
        state = self.__dict__.copy()
        state["split"] = self.split.path
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.split = open_store(state["split"])

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"clip index {index} out of range for {n} clips")
        index = index % n
        images = (
            torch.from_numpy(np.array(self.split.images[index], dtype=np.float32)).div_(255.0).unsqueeze(1)
        )
        masks = torch.from_numpy(np.array(self.split.masks[index], dtype=np.int64))
        labeled = torch.from_numpy(np.array(self.split.labeled[index], dtype=bool))
        if self.augment:
            generator = item_generator(self.seed, self.epoch, index)
            images, masks = augment_clip(images, masks, generator, self.config)
        return {
            "images": images.contiguous(),
            "masks": masks.contiguous(),
            "labeled": labeled,
            "index": index,
            "case_id": self._case_ids[index],
        }
