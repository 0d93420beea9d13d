"""scripts/validate_weights.py, the model card's measurement, on the session phantom (unseen hearts)."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "validate_weights.py"


def test_it_measures_the_shipped_weights_per_patient(phantom, tmp_path):
    out = tmp_path / "validation.csv"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(phantom.root), "--patients", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    frame = pd.read_csv(out, dtype={"patient": str})
    assert list(frame["patient"]) == ["patient0001", "patient0002"]
    assert frame["camus_frames"].min() >= 2 and (frame["camus_dice"] > 0.8).all()  # unseen, but a phantom heart
    assert (frame["echonet_dice"] > 0.8).all() and frame["exact_ef"].between(5, 95).all()
    assert "shipped weights" in proc.stdout and "vs plane_ef: MAE" in proc.stdout


def test_a_folder_without_truth_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "phantom_truth.json" in proc.stderr
