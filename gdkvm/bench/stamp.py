"""The environment stamp every benchmark row carries (device, versions, commit, threads; no hostname),
and the file name of a benchmark CSV."""

from __future__ import annotations

import importlib.metadata
import platform
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch


@dataclass(frozen=True)
class EnvStamp:
    """What every benchmark row carries about the machine and code (no hostname).

    ``cpu_threads`` is torch's intra-op thread count (CPU timings depend on it and on other load).
    """

    device_type: str
    device_name: str
    device_slug: str
    torch_version: str
    triton_version: str
    cuda_version: str
    commit: str
    cpu_threads: int

    def columns(self) -> dict[str, str]:
        return {
            "commit": self.commit,
            "torch_version": self.torch_version,
            "triton_version": self.triton_version,
            "cuda_version": self.cuda_version,
            "device_type": self.device_type,
            "device_name": self.device_name,
            "cpu_threads": str(self.cpu_threads),
        }


def slugify(text: str) -> str:
    """Lower-case ``a-z0-9`` words joined by ``-`` (for file names)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def device_name(device: torch.device) -> str:
    """Human name of the device: the GPU's name, or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def device_slug(device: torch.device) -> str:
    """File-name form of the device: ``nvidia-h100-80gb-hbm3``, ``cpu-amd-epyc``."""
    name = device_name(device)
    if device.type == "cuda":
        return slugify(name)
    name = re.sub(r"\((r|tm)\)|\bcpu\b|@.*$|\bprocessor\b|\d+-core", " ", name, flags=re.IGNORECASE)
    return "cpu-" + slugify(name) if slugify(name) != "unknown" else "cpu"


def git_commit(root: Path | None = None) -> str:
    """Short commit of the source tree (``git rev-parse --short HEAD``), ``unknown`` outside a repository."""
    root = root or Path(__file__).resolve().parents[2]
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{4,40}", commit) else "unknown"


def package_version(name: str) -> str:
    """Installed version of a distribution (without importing it), or ``none``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "none"


#: Columns every benchmark CSV starts with: the schema, which benchmark, and the environment stamp.
STAMP_COLUMNS: tuple[str, ...] = (
    "schema_version",
    "bench",
    "timestamp",
    "commit",
    "torch_version",
    "triton_version",
    "cuda_version",
    "device_type",
    "device_name",
    "cpu_threads",
)


def environment_stamp(device: torch.device) -> EnvStamp:
    """Device, torch/triton/CUDA versions and the git commit."""
    return EnvStamp(
        device_type=device.type,
        device_name=device_name(device),
        device_slug=device_slug(device),
        torch_version=torch.__version__,
        triton_version=package_version("triton"),
        cuda_version=torch.version.cuda or "none",
        commit=git_commit(),
        cpu_threads=torch.get_num_threads(),
    )


def utc_timestamp() -> str:
    """Now, UTC, ISO 8601 to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def bench_csv_path(out: Path, bench: str, stamp: EnvStamp, precision: str | None = None) -> Path:
    """``out/<bench>-<device>[-<precision>]-<commit>.csv``."""
    parts = [bench, stamp.device_slug] + ([precision] if precision else []) + [stamp.commit]
    return Path(out) / ("-".join(parts) + ".csv")
