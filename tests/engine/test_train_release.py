"""Training the ``release`` variant: its sensory and query auxiliary losses are part of the step, and the
run evaluates."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from gdkvm.engine.train import build_training_model, gate_statistics, train_run
from gdkvm.models.release import release_config
from tests.engine.fixtures import tiny_config


def _train_records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


@pytest.fixture(scope="module")
def release_run(prepared_store, tmp_path_factory):
    cfg = tiny_config(prepared_store, variant="release", iterations=3, augment=False)
    return cfg, train_run(cfg, tmp_path_factory.mktemp("release-runs"))


def test_release_training_adds_the_aux_loss(release_run):
    cfg, result = release_run
    assert result.finished and result.iteration == 3
    records = _train_records(result.run_dir)
    assert [r["iteration"] for r in records] == [1, 2, 3]
    levels = release_config(cfg.preset).transformer_blocks + 1
    for r in records:
        assert r["aux_total"] > 0 and math.isfinite(r["aux_total"])
        sensory = r["aux_sensory_ce"] + r["aux_sensory_dice"]
        query = r["aux_query_ce"] + r["aux_query_dice"]
        assert sensory > 0 and query > 0
        assert r["aux_total"] == pytest.approx(sensory + query, rel=1e-5)
        # weight 0.01 on CE + Dice of two frames, for the sensory head and each of the L + 1 query levels
        assert sensory < 0.05 and query < 0.05 * levels
        assert r["loss"] == pytest.approx(r["ce"] + r["dice_loss"] + r["aux_total"], rel=1e-5)
        assert r["gates"] == {}  # no MemoryRule in the release model: gate statistics are skipped
    # the sensory aux head gets gradients only from the aux loss; AdamW skips parameters without a
    # gradient, so it moved only because the aux term went into the backward pass
    init = build_training_model(cfg).state_dict()
    trained = load_file(str(result.run_dir / "checkpoint_last.safetensors"))
    assert not torch.equal(init["sensory_aux.weight"], trained["sensory_aux.weight"])
    last_head = f"object_transformer.aux_heads.{levels - 1}.1.weight"  # read by the query aux loss only
    assert not torch.equal(init[last_head], trained[last_head])


def test_other_variants_log_no_aux_terms(prepared_store, tmp_path):
    result = train_run(tiny_config(prepared_store, iterations=1, augment=False), tmp_path)
    record = _train_records(result.run_dir)[0]
    assert not any(k.startswith("aux") for k in record)
    assert record["loss"] == pytest.approx(record["ce"] + record["dice_loss"], rel=1e-6)


def test_gate_statistics_skip_the_release_model():
    from gdkvm.models.registry import build_model

    assert gate_statistics(build_model("release", "tiny")) == {}


def test_release_run_evaluates(release_run):
    from typer.testing import CliRunner

    from gdkvm.cli.main import app

    _, result = release_run
    out = CliRunner().invoke(app, ["evaluate", "--run", str(result.run_dir), "--device", "cpu", "--n-boot", "20"])
    assert out.exit_code == 0, out.output
    assert "tables written to" in out.output
    summary = json.loads((result.run_dir / "eval" / "test" / "summary.json").read_text())
    assert summary
