"""Checkpoints rebuild models from the variant registry only: stored import paths never select code,
old checkpoints still load, and a GDKVM config without step_order loads as read-first."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from gdkvm.errors import DataError
from gdkvm.models.gdkvm import GDKVM
from gdkvm.models.registry import build_model
from gdkvm.models.weights import CHECKPOINT_FORMAT, load_model, read_checkpoint_metadata, save_checkpoint


def _rewrite(src, dst, **changes):
    """Copy checkpoint ``src`` to ``dst`` with metadata fields changed (None deletes a field)."""
    from safetensors.torch import load_file

    meta = read_checkpoint_metadata(src)
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    save_file(load_file(str(src)), str(dst), metadata=meta)
    return dst


@pytest.fixture
def ckpt(tmp_path, one_cpu_thread):
    model = build_model("full", "tiny")
    return save_checkpoint(model, tmp_path / "m.safetensors"), model


def test_stored_import_path_is_never_called(ckpt, tmp_path, monkeypatch):
    path, model = ckpt
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    bad = _rewrite(path, tmp_path / "bad.safetensors", model_class="gdkvm.engine.checkpoint:os.system",
                   config_class="gdkvm.engine.checkpoint:os.system")
    back = load_model(bad)
    assert calls == [] and type(back) is GDKVM and back.variant == "full"
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


def test_unknown_variant_with_crafted_class_is_refused(ckpt, tmp_path):
    path, _ = ckpt
    bad = _rewrite(path, tmp_path / "bad.safetensors", variant="no-such-variant",
                   model_class="gdkvm.engine.checkpoint:os.system")
    with pytest.raises(DataError, match="bad.safetensors.*not registered"):
        load_model(bad)


def test_old_checkpoint_without_variant_maps_by_family(ckpt, tmp_path):
    path, _ = ckpt
    old = _rewrite(path, tmp_path / "old.safetensors", variant="")
    assert type(load_model(old)) is GDKVM


def test_config_without_step_order_loads_read_first(ckpt, tmp_path):
    path, _ = ckpt
    cfg = json.loads(read_checkpoint_metadata(path)["config"])
    if "step_order" not in cfg:
        pytest.fail("ModelConfig has no step_order field: the compat rule has nothing to test")
    assert cfg["step_order"] == "paper"
    del cfg["step_order"]
    old = _rewrite(path, tmp_path / "old.safetensors", config=json.dumps(cfg))
    assert load_model(old).config.step_order == "read-first"
    assert load_model(path).config.step_order == "paper"


def test_config_not_an_object_is_one_line(ckpt, tmp_path):
    path, _ = ckpt
    bad = _rewrite(path, tmp_path / "bad.safetensors", config="[1, 2]")
    with pytest.raises(DataError, match="bad.safetensors.*not a JSON object"):
        load_model(bad)
    assert read_checkpoint_metadata(bad)["format"] == CHECKPOINT_FORMAT
