"""Worker for the DDP test, run under torchrun: one training iteration, recording the gradients.

Usage: ``python -m torch.distributed.run --nproc_per_node N -m tests.engine.ddp_worker STORE OUT NAME``.
Rank 0 saves the gradients the optimizer sees at its first step to ``OUT/NAME.grads.pt``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from gdkvm.engine.train import train_run
from tests.engine.fixtures import tiny_config


def record_first_step_gradients(path: Path) -> None:
    """Patch AdamW.step so that rank 0 saves the parameters' gradients of the first step to ``path``."""
    real_step = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        if os.environ.get("RANK", "0") == "0" and not path.exists():
            grads = [p.grad.detach().clone() for group in self.param_groups for p in group["params"]]
            torch.save(grads, path)
        return real_step(self, *args, **kwargs)

    torch.optim.AdamW.step = step


def ddp_config(store: Path, name: str):
    """The shared recipe of the distributed and the single-process run: one step of a global batch of 2.

    BatchNorm is frozen: on CPU there is no SyncBatchNorm, so batch statistics would differ per rank.
    """
    return tiny_config(store, name=name, iterations=1, batch_size=2, model_overrides={"freeze_bn": True})


def main(store: str, out: str, name: str) -> None:
    record_first_step_gradients(Path(out) / f"{name}.grads.pt")
    train_run(ddp_config(Path(store), name), out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
