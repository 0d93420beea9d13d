"""`gdkvm train --backbone-weights key=PATH --backbone-weights value=PATH`: both trunks loaded, each file's
path and sha256 in config.yaml (kept on --resume); a file for the wrong trunk is a one-line error."""

from __future__ import annotations

import hashlib

import pytest
import torch
import yaml
from typer.testing import CliRunner

from gdkvm.cli.main import app
from gdkvm.errors import DataError
from gdkvm.models.registry import build_model
from gdkvm.models.weights import encoder_trunks
from tests.models.test_backbone_per_trunk import imagenet_like

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("module_one_thread")


def test_two_trunks_recorded_with_sha256(prepared_store, tmp_path):
    trunks = encoder_trunks(build_model("full", "tiny"))
    torch.save(imagenet_like(trunks["key"][1], 1), tmp_path / "r50.pth")
    torch.save(imagenet_like(trunks["value"][1], 2), tmp_path / "r18.pth")
    common = ["train", "--data", str(prepared_store), "--preset", "tiny", "--device", "cpu", "--out",
              str(tmp_path / "runs"), "--name", "bw", "--batch-size", "2"]
    weights = ["--backbone-weights", f"key={tmp_path / 'r50.pth'}", "--backbone-weights", f"value={tmp_path / 'r18.pth'}"]
    result = runner.invoke(app, [*common, "--iterations", "1", *weights])
    assert result.exit_code == 0, result.output
    cfg_file = tmp_path / "runs" / "bw" / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text())
    assert cfg["train"]["backbone_weights"] == {"key": str(tmp_path / "r50.pth"), "value": str(tmp_path / "r18.pth")}
    recorded = {r["trunk"]: r for r in cfg["backbone_weights"]}
    for trunk, name in (("key", "r50.pth"), ("value", "r18.pth")):
        assert recorded[trunk]["path"] == str((tmp_path / name).resolve())
        assert recorded[trunk]["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    result = runner.invoke(app, [*common, "--iterations", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(cfg_file.read_text())["backbone_weights"] == cfg["backbone_weights"]

    swapped = ["--backbone-weights", f"key={tmp_path / 'r18.pth'}"]
    result = runner.invoke(app, [*common[:-4], "--name", "bad", "--batch-size", "2", "--iterations", "1", *swapped])
    assert isinstance(result.exception, DataError)
    assert "key encoder" in str(result.exception) and "missing key(s)" in str(result.exception)
    assert not (tmp_path / "runs" / "bad" / "config.yaml").exists()
