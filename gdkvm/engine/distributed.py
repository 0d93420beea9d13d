"""Distributed data parallel (DDP) plumbing: torchrun launch, process group, reductions.

``gdkvm train --nproc N`` re-launches itself through ``python -m torch.distributed.run`` as a
subprocess; each worker finds ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` in its environment and joins
one process group (NCCL on GPU, gloo on CPU). The same code path runs with ``WORLD_SIZE=1`` and no
process group at all.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from gdkvm.errors import ConfigError, GdkvmError

#: Collective timeout of the process group (see init_distributed).
PROCESS_GROUP_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job; ``world_size == 1`` means no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_dist_info() -> DistInfo:
    """Read torchrun's environment variables (defaults: a single process)."""
    try:
        return DistInfo(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )
    except ValueError as e:
        raise ConfigError(f"torchrun environment: bad RANK/WORLD_SIZE/LOCAL_RANK ({e})") from None


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    """``auto`` -> CUDA when available else CPU; under DDP on CUDA (``cuda``), the local rank's GPU.

    Unknown names and CUDA without CUDA are one-line ConfigErrors (:mod:`gdkvm.utils.device`)."""
    from gdkvm.utils.device import resolve_device as _resolve

    info = info or DistInfo()
    if info.enabled and str(name).strip().lower().startswith("cuda:"):
        raise ConfigError(f"--device {name}: a distributed run puts each rank on its own GPU; use --device cuda")
    return _resolve(name, local_rank=info.local_rank)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun set up (no-op for a single process); return this rank's info."""
    info = env_dist_info()
    if not info.enabled or dist.is_initialized():
        return info
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # Only rank 0 validates while the others wait in a collective; a whole-split validation can outlast
    # the default 10-minute collective timeout (NCCL), which would kill the job.
    dist.init_process_group(backend=backend, timeout=PROCESS_GROUP_TIMEOUT)
    return info


def shutdown_distributed() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (identity for one process); returns a new tensor."""
    out = value.detach().clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def barrier() -> None:
    """Wait for every rank (no-op for one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: object, src: int = 0) -> object:
    """Send a picklable object from ``src`` to every rank (identity for one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def local_batch_size(global_batch: int, world_size: int) -> int:
    """The per-rank batch; the global batch must split evenly."""
    if global_batch % world_size:
        raise ConfigError(
            f"--batch-size {global_batch} does not split evenly over {world_size} processes"
        )
    return global_batch // world_size


def free_port() -> int:
    """An unused TCP port on localhost for the rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_command(nproc: int, module_args: Sequence[str], port: int | None = None) -> list[str]:
    """The ``python -m torch.distributed.run`` command that runs ``python -m <module_args>`` N times."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc_per_node={nproc}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port or free_port()}",
        "-m",
        *module_args,
    ]


def without_option(argv: Sequence[str], flag: str) -> list[str]:
    """``argv`` without the option ``flag`` and its value (``flag VALUE`` or ``flag=VALUE``, every time it
    appears before a ``--``), e.g. the user's command line minus the launcher flag ``--nproc`` for the
    torchrun workers, which re-run that same command line."""
    out: list[str] = []
    args = list(argv)
    k = 0
    while k < len(args):
        arg = args[k]
        if arg == "--":
            out += args[k:]
            break
        if arg == flag:
            k += 2
            continue
        if not arg.startswith(flag + "="):
            out.append(arg)
        k += 1
    return out


def launch_torchrun(nproc: int, module_args: Sequence[str], env: dict[str, str] | None = None) -> None:
    """Run the torchrun command as a subprocess and wait; a failed worker is a one-line GdkvmError."""
    cmd = torchrun_command(nproc, module_args)
    full_env = dict(os.environ)
    full_env.setdefault("OMP_NUM_THREADS", "1")
    if env:
        full_env.update(env)
    proc = subprocess.run(cmd, env=full_env)
    if proc.returncode != 0:
        raise GdkvmError(f"distributed training with {nproc} processes failed (exit code {proc.returncode})")
