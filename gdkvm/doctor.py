"""Environment report for `gdkvm doctor`: versions, devices, Triton interpreter, prepared stores."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from gdkvm import __version__

_TRITON_PROBE = """
import os
os.environ["TRITON_INTERPRET"] = "1"
import torch, triton, triton.language as tl

@triton.jit
def _add(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=m) + tl.load(y_ptr + offs, mask=m), mask=m)

x = torch.arange(10, dtype=torch.float32); y = torch.ones(10); out = torch.full((10,), float("nan"))
_add[(1,)](x, y, out, 10, BLOCK=16)
assert torch.equal(out, x + 1), out
print("ok")
"""


@dataclass(frozen=True)
class ReportItem:
    """One line of the doctor table."""

    name: str
    value: str
    status: str  # "ok" | "warn" | "missing" | "info"


def _triton_interpreter_works() -> tuple[bool, str]:
    """Run a tiny kernel under TRITON_INTERPRET=1 in a subprocess (the flag must be set before import)."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _TRITON_PROBE], env=env, capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        return False, "timed out"
    if proc.returncode == 0 and "ok" in proc.stdout:
        return True, "kernel ran on CPU"
    last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
    return False, last[:120]


def collect_report(data_root: Path, check_triton: bool = True) -> list[ReportItem]:
    """Gather the doctor table rows."""
    items = [
        ReportItem("gdkvm", __version__, "info"),
        ReportItem("python", platform.python_version(), "info"),
        ReportItem("platform", f"{platform.system()} {platform.machine()}", "info"),
    ]
    import torch

    items.append(ReportItem("torch", torch.__version__, "ok"))
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        items.append(ReportItem("CUDA", f"{torch.version.cuda} ({names})", "ok"))
        items.append(ReportItem("bf16", str(torch.cuda.is_bf16_supported()), "info"))
    else:
        items.append(ReportItem("CUDA", "not available (CPU only: kernels use the torch reference)", "warn"))
    try:
        import triton

        items.append(ReportItem("triton", triton.__version__, "ok"))
        if check_triton:
            ok, msg = _triton_interpreter_works()
            items.append(ReportItem("triton interpreter", msg, "ok" if ok else "warn"))
    except ImportError:
        items.append(ReportItem("triton", "not installed (pip install 'gdkvm[triton]')", "warn"))
    for mod in ("nibabel", "cv2", "safetensors", "skimage"):
        try:
            m = __import__(mod)
            items.append(ReportItem(mod, getattr(m, "__version__", "?"), "ok"))
        except ImportError:
            items.append(ReportItem(mod, "not installed", "missing"))
    for dataset in ("camus", "echonet"):
        store = data_root / dataset / "store.json"
        if store.is_file():
            items.append(ReportItem(f"prepared {dataset}", str(store.parent), "ok"))
        else:
            items.append(ReportItem(f"prepared {dataset}", f"none under {data_root}", "missing"))
    if data_root.is_dir():  # other stores, e.g. from `gdkvm prepare folder`
        for store in sorted(data_root.glob("*/store.json")):
            if store.parent.name not in ("camus", "echonet"):
                items.append(ReportItem(f"prepared {store.parent.name}", str(store.parent), "ok"))
    return items
