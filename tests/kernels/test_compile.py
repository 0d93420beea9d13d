"""Ahead-of-time compile of the gdr kernel for sm_80 and sm_90, on a machine without a GPU.

The Triton interpreter (used by test_gdr_triton.py on CPU) accepts things the GPU compiler rejects (dot
dimensions below 16, over-sized shared memory), so this test runs the real NVIDIA pipeline
(TTIR -> TTGIR -> LLIR -> PTX -> cubin, with the ptxas that ships in the Triton wheel; no driver and no
libcuda needed) for the block sizes the wrapper launches on a GPU. It runs in a child process without
``TRITON_INTERPRET`` and with a private Triton cache, so every run really compiles.

Checked per case: all stages produced and the cubin is non-empty; the PTX targets the requested
architecture; no TF32 anywhere (every dot is ``input_precision="ieee"``); the shared memory fits 99 KiB,
the smallest per-block limit among sm_80 .. sm_90 parts (sm_86 / sm_89).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import triton  # noqa: F401  (a dev dependency: a missing or broken Triton fails here, never skips)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_BUDGET = 99 * 1024

# (label, arch, input dtype, state dtype, Ck, Dv, constexpr flags)
CASES = [
    ("sm80-fp32", 80, "fp32", "fp32", 64, 32, {}),
    ("sm90-fp32", 90, "fp32", "fp32", 64, 32, {}),
    ("sm80-bf16-in-fp32-state", 80, "bf16", "fp32", 64, 32, {}),
    ("sm90-bf16-in-fp32-state", 90, "bf16", "fp32", 64, 32, {}),
    ("sm80-fp32-Ck16-Dv16", 80, "fp32", "fp32", 16, 16, {}),
    ("sm80-fp32-delta-no-gates", 80, "fp32", "fp32", 64, 32, {"HAS_ALPHA": False, "HAS_BETA": False}),
    (
        "sm90-bf16-Dv64-write-only-no-gates",
        90,
        "bf16",
        "bf16",
        64,
        64,
        {"HAS_QUERY": False, "HAS_ALPHA": False, "HAS_BETA": False, "ERASE": False},
    ),
]

# Runs in the child: compiles every case, prints one JSON object.
COMPILE_SCRIPT = r"""
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from gdkvm.kernels import gdr_triton

cases = json.loads(sys.argv[1])
kernel = gdr_triton.forward_kernel(interpret=False)
assert isinstance(kernel, triton.JITFunction), type(kernel)
inputs, states = ("key", "value", "query"), ("state", "alpha", "beta", "readout", "new_state")
flags = ("HAS_QUERY", "HAS_ALPHA", "HAS_BETA", "ERASE", "BN", "BK", "BV")
results = {}
for label, arch, in_dtype, state_dtype, ck, dv, overrides in cases:
    bn, bk, bv = gdr_triton.block_sizes(ck, dv, interpret=False)
    constexprs = dict(HAS_QUERY=True, HAS_ALPHA=True, HAS_BETA=True, ERASE=True, BN=bn, BK=bk, BV=bv)
    constexprs.update(overrides)
    signature, attrs = {}, {}
    for i, name in enumerate(kernel.arg_names):
        if name in flags:
            signature[name] = "constexpr"
        elif name in inputs or name in states:
            signature[name] = "*" + (in_dtype if name in inputs else state_dtype)
            attrs[(i,)] = [["tt.divisibility", 16]]  # what the JIT assumes for fresh torch allocations
        else:
            signature[name] = "i32"
    compiled = triton.compile(
        ASTSource(kernel, signature, constexprs=constexprs, attrs=attrs),
        target=GPUTarget("cuda", arch, 32),
    )
    ptx = compiled.asm["ptx"]
    results[label] = {
        "stages": sorted(compiled.asm),
        "cubin_bytes": len(compiled.asm["cubin"]),
        "ptx_target": [line.split()[1] for line in ptx.splitlines() if line.startswith(".target")],
        "tf32": "tf32" in compiled.asm["ttir"] or "tf32" in ptx,
        "shared": compiled.metadata.shared,
        "name": compiled.metadata.name,
        "blocks": [bn, bk, bv],
    }
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("triton-home")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(cache / "cache"), TRITON_HOME=str(cache))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", COMPILE_SCRIPT, json.dumps(CASES)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, f"AOT compile failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_kernel_compiles_to_cubin(case, compiled):
    label, arch = case[0], case[1]
    result = compiled[label]
    assert result["name"] == "gdr_step_fwd_kernel"
    assert {"ttir", "ttgir", "llir", "ptx", "cubin"} <= set(result["stages"])
    assert result["cubin_bytes"] > 0
    assert result["ptx_target"] and result["ptx_target"][0].rstrip(",").startswith(f"sm_{arch}")
    assert not result["tf32"], "a dot lowered to TF32; the state math must stay IEEE fp32"
    assert 0 < result["shared"] <= SHARED_BUDGET, f"shared memory {result['shared']} B > {SHARED_BUDGET} B"
    assert all(b >= 16 for b in result["blocks"])
