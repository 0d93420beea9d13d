"""`gdkvm bench fps | scaling | kernels` through the CLI: CSVs land in --out, bad input is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gdkvm.bench.common import read_csv_rows
from gdkvm.cli.main import app
from gdkvm.errors import ConfigError

runner = CliRunner()
GDKVM = Path(sys.executable).parent / "gdkvm"


pytestmark = pytest.mark.usefixtures("one_cpu_thread")  # tests/conftest.py


def test_bench_help_lists_subcommands():
    result = runner.invoke(app, ["bench", "--help"])
    assert result.exit_code == 0
    for name in ("fps", "scaling", "kernels"):
        assert name in result.output


def test_fps_writes_csv_and_warns_about_graphs_on_cpu(tmp_path):
    result = runner.invoke(
        app,
        [
            "bench",
            "fps",
            "--preset",
            "tiny",
            "--size",
            "64",
            "--frames",
            "2",
            "--warmup",
            "0",
            "--batch-sizes",
            "1",
            "--dtype",
            "fp32",
            "--device",
            "cpu",
            "--cuda-graphs",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    csvs = list(tmp_path.glob("fps-*-fp32-*.csv"))
    assert len(csvs) == 1
    rows = read_csv_rows(csvs[0])
    assert {r["mode"] for r in rows} == {"model-only", "end-to-end", "reference"}
    assert any(r["status"] == "unavailable: CUDA graphs need a GPU" for r in rows)
    out = " ".join(result.output.split())
    assert "warning: --cuda-graphs needs a GPU" in out and "GFLOPs/frame" in out and "wrote" in out
    assert "Traceback" not in result.output


def test_scaling_writes_csv_png_and_verdict(tmp_path):
    result = runner.invoke(
        app,
        [
            "bench",
            "scaling",
            "--frames",
            "2,3",
            "--rules",
            "gdr,softmax",
            "--preset",
            "tiny",
            "--size",
            "64",
            "--warmup",
            "0",
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("scaling-*.csv"))) == 1 and len(list(tmp_path.glob("scaling-*.png"))) == 1
    out = " ".join(result.output.split())
    assert "PASS: gdr/gka memory at the longest video within 10% of the shortest" in out


def test_kernels_writes_csv(tmp_path):
    result = runner.invoke(
        app,
        [
            "bench",
            "kernels",
            "--shapes",
            "2x32x16x32x4",
            "--dtype",
            "fp32",
            "--iters",
            "2",
            "--warmup",
            "0",
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = read_csv_rows(next(tmp_path.glob("kernels-*.csv")))
    assert [r["backend"] for r in rows] == ["torch", "triton", "fla"]
    assert "unavailable: needs CUDA" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fps", "--batch-sizes", "0"], "--batch-sizes: every value must be >= 1"),
        (["fps", "--batch", "0"], "--batch-sizes: every value must be >= 1"),  # the old spelling still works
        (["fps", "--batch", "2", "--batch-sizes", "4"], "--batch is the old spelling of --batch-sizes"),
        (["scaling", "--batch", "2", "--batch-size", "4"], "--batch is the old spelling of --batch-size"),
        (["fps", "--dtype", "fp64"], "unknown dtype 'fp64'"),
        (["fps", "--size", "50"], "--size: must be a positive multiple of 16"),
        (["fps", "--native-size", "1x2x3"], "--native-size: expected HxW"),
        (["scaling", "--rules", "gdr,nope"], "unknown memory rule 'nope'"),
        (["kernels", "--shapes", "8x9"], "is not BxNxCkxCvxH"),
    ],
)
def test_bad_options_raise_config_errors(tmp_path, args, message):
    result = runner.invoke(app, ["bench", *args, "--out", str(tmp_path)])
    assert isinstance(result.exception, ConfigError) and message in str(result.exception)
    assert not list(tmp_path.iterdir())


def test_cuda_request_without_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(app, ["bench", "fps", "--device", "cuda", "--out", str(tmp_path)])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == "CUDA is not available on this machine; use --device cpu or auto"


def test_cuda_request_without_gpu_is_one_line_exit_1(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", GDKVM_DEBUG="0")
    proc = subprocess.run(
        [str(GDKVM), "bench", "fps", "--device", "cuda", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "error: CUDA is not available on this machine; use --device cpu or auto" in " ".join(proc.stderr.split())
