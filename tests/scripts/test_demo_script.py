"""scripts/demo.sh (what `make demo` runs), end to end with tiny settings: every stage writes its outputs,
the three side-by-side trainings finish, and a failed training stops the demo with its log's end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo.sh"
VARIANTS = ("full", "wo-alpha", "linear")


def run_demo(out: Path, iterations: int, patients: int = 6) -> subprocess.CompletedProcess:
    env = dict(os.environ, GDKVM=str(Path(sys.executable).parent / "gdkvm"), DEMO_PATIENTS=str(patients),
               DEMO_ITERATIONS=str(iterations), DEMO_SIZE="64", DEMO_BENCH_FRAMES="4", DEMO_SCALING_FRAMES="10,20",
               OMP_NUM_THREADS="1")
    return subprocess.run(["bash", str(SCRIPT), str(out)], env=env, capture_output=True, text=True, timeout=900,
                          cwd=SCRIPT.parents[1])


@pytest.mark.timeout(900)
def test_the_demo_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    proc = run_demo(out, iterations=2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for variant in VARIANTS:
        run = out / "runs" / f"camus-{variant}-tiny"
        assert (run / "train_done.json").is_file(), variant
        summary = json.loads((run / "eval" / "test" / "summary.json").read_text())
        assert 0.0 <= summary["segmentation"]["overall"]["dice"]["mean"] <= 1.0
        assert "train 2/2" in (out / "logs" / f"train-{variant}.log").read_text()
    assert "train full wo-alpha linear side by side" in proc.stdout
    assert len(list((out / "predict").glob("*_summary.json"))) == 4
    assert any((out / "bench").glob("fps-*.csv")) and any((out / "bench").glob("scaling-*.csv"))
    assert (out / "report" / "index.html").is_file()


@pytest.mark.timeout(600)
def test_a_failed_training_stops_the_demo_with_its_log(tmp_path):
    proc = run_demo(tmp_path / "demo", iterations=0, patients=4)  # 0 iterations: every `gdkvm train` refuses to start
    assert proc.returncode != 0
    assert "train full failed" in proc.stderr and "iterations" in proc.stderr
    assert not (tmp_path / "demo" / "report").exists()
