"""scripts/bench_gpu.sh, the GPU runbook, run here on the CPU with tiny settings so its flags stay valid."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_gpu.sh"


def run_script(tmp_path: Path, *stages: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ, PY=sys.executable, DEVICE="cpu", PRESET="tiny", SIZE="64", FRAMES="2", WARMUP="1",
        BATCHES="1", KERNEL_SHAPES="2x16x16x32x4", SCALING_FRAMES="2,3", SCALING_PRESET="tiny",
        OUT=str(tmp_path / "bench"),
    )
    return subprocess.run(["bash", str(SCRIPT), *stages], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.timeout(600)
def test_runbook_stages_write_their_csvs(tmp_path):
    proc = run_script(tmp_path, "kernels", "fps", "graphs", "scaling")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    written = sorted(p.name for p in (tmp_path / "bench").iterdir())
    prefixes = {name.split("-cpu-")[0] for name in written}
    assert prefixes == {"kernels", "fps", "scaling"}, written
    rows = []
    for name in written:
        if name.endswith(".csv"):
            with open(tmp_path / "bench" / name, newline="") as f:
                rows += list(csv.DictReader(f))
    graph_rows = [r for r in rows if str(r.get("cuda_graphs")).lower() == "true"]
    assert graph_rows and all(r["status"] == "unavailable: CUDA graphs need a GPU" for r in graph_rows)
    assert sum(r["status"] == "ok" for r in rows) >= 10


def test_unknown_stage_fails_before_running_anything(tmp_path):
    proc = run_script(tmp_path, "fps", "nonsense")
    assert proc.returncode == 2
    assert "unknown stage 'nonsense'" in proc.stderr
    assert not (tmp_path / "bench").exists()
