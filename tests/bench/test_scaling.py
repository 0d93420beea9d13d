"""`gdkvm bench scaling`: constant-state rules stay flat, softmax grows by exactly its stored keys/values."""

from __future__ import annotations

import pytest

from gdkvm.bench import scaling
from gdkvm.bench.common import read_csv_header, read_csv_rows
from gdkvm.bench.scaling import SCALING_COLUMNS, ScalingConfig, run_scaling
from gdkvm.errors import ConfigError
from gdkvm.models.config import preset_config
from gdkvm.models.memory import MEMORY_RULES

SIZE = 64


pytestmark = pytest.mark.usefixtures("one_cpu_thread")  # tests/conftest.py


def test_state_flat_for_constant_rules_and_growing_for_softmax(tmp_path):
    cfg = ScalingConfig(
        frames=(2, 4, 6),
        preset="tiny",
        size=SIZE,
        device="cpu",
        warmup=0,
        window=2,
        max_softmax_frames=4,
        out=tmp_path,
    )
    result = run_scaling(cfg)
    rows = {(r["memory_rule"], r["frames"]): r for r in result.rows}
    assert set(rows) == {(rule, t) for rule in MEMORY_RULES for t in (2, 4, 6)}
    for rule in MEMORY_RULES:
        if rule == "softmax":
            continue
        states = [rows[(rule, t)]["state_bytes"] for t in (2, 4, 6)]
        assert all(rows[(rule, t)]["status"] == "ok" for t in (2, 4, 6))
        assert states[0] == states[1] == states[2] > 0, rule
        peaks = [rows[(rule, t)]["peak_mem_bytes"] for t in (2, 4, 6)]
        assert max(peaks) <= 1.10 * min(peaks), rule
    # softmax keeps every frame's keys (Ck) and values (Cv) for each of the (SIZE/16)^2 pixels, in fp32
    cfg_tiny = preset_config("tiny")
    per_frame = (SIZE // 16) ** 2 * (cfg_tiny.key_dim + cfg_tiny.value_dim) * 4
    assert rows[("softmax", 4)]["state_bytes"] - rows[("softmax", 2)]["state_bytes"] == 2 * per_frame
    assert rows[("softmax", 6)]["status"].startswith("skipped: the softmax memory grows")
    assert rows[("softmax", 6)].get("state_bytes") is None
    # the PASS/FAIL checks: gdr and gka flat, softmax grows
    verdicts = {(c.rule, c.metric): c.passed for c in result.checks}
    assert verdicts == {
        ("gdr", "state_bytes"): True,
        ("gdr", "peak_mem_bytes"): True,
        ("gka", "state_bytes"): True,
        ("gka", "peak_mem_bytes"): True,
        ("softmax", "state_bytes"): True,
    }
    assert all(line.line().startswith("PASS") for line in result.checks)
    # files: the CSV with the fixed schema, and a PNG plot
    assert read_csv_header(result.csv_path) == list(SCALING_COLUMNS)
    assert len(read_csv_rows(result.csv_path)) == len(result.rows)
    assert result.png_path is not None and result.png_path.name == result.csv_path.stem + ".png"
    data = result.png_path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_oom_in_one_rule_records_it_and_the_next_rule_runs(tmp_path, monkeypatch):
    real = scaling._step

    def flaky(stepper, frame):
        if stepper.model.memory.name == "gdr" and stepper.frames >= 3:
            raise MemoryError("fake")
        return real(stepper, frame)

    monkeypatch.setattr(scaling, "_step", flaky)
    cfg = ScalingConfig(
        frames=(2, 5), rules=("gdr", "gka"), preset="tiny", size=SIZE, device="cpu", warmup=0, out=tmp_path
    )
    result = run_scaling(cfg)
    status = {(r["memory_rule"], r["frames"]): r["status"] for r in result.rows}
    assert status == {("gdr", 2): "ok", ("gdr", 5): "oom", ("gka", 2): "ok", ("gka", 5): "ok"}


def test_bad_options(tmp_path):
    with pytest.raises(ConfigError, match="unknown memory rule 'nope'"):
        run_scaling(ScalingConfig(rules=("nope",), out=tmp_path))
    with pytest.raises(ConfigError, match="--size"):
        run_scaling(ScalingConfig(size=40, out=tmp_path))
    assert not list(tmp_path.iterdir())
