"""``--backbone-weights key=PATH value=PATH``: each file checked against its trunk, recorded with sha256.

The ImageNet-like files are built from the tiny model's own trunk modules (key names and shapes), with
torchvision's classifier head added and the value trunk's first convolution at 3 input channels.
"""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import save_file

from gdkvm.errors import ConfigError, DataError
from gdkvm.models.registry import build_model
from gdkvm.models.weights import (
    encoder_trunks,
    load_backbone_weights,
    load_imagenet_backbones,
    parse_backbone_weights,
)


def imagenet_like(trunk, seed: int) -> dict[str, torch.Tensor]:
    """Random tensors named like the trunk's state dict, 3-channel conv1, plus fc.* (ignored on load)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in trunk.state_dict().items():
        shape = list(v.shape)
        if k == "conv1.weight":
            shape[1] = 3
        out[k] = v.clone() if k.endswith("num_batches_tracked") else torch.randn(shape, generator=g)
    out["fc.weight"] = torch.randn(10, 4, generator=g)
    out["fc.bias"] = torch.zeros(10)
    return out


@pytest.fixture
def files(tmp_path, one_cpu_thread):
    model = build_model("full", "tiny")
    trunks = encoder_trunks(model)
    key = imagenet_like(trunks["key"][1], seed=1)
    value = imagenet_like(trunks["value"][1], seed=2)
    torch.save(key, tmp_path / "r50.pth")
    save_file(value, str(tmp_path / "r18.safetensors"))
    return model, tmp_path / "r50.pth", key, tmp_path / "r18.safetensors", value


def test_trunk_roles_of_the_model(one_cpu_thread):
    trunks = encoder_trunks(build_model("full", "tiny"))
    assert {r: (m, t.arch) for r, (m, t) in trunks.items()} == {
        "key": ("key_encoder", "resnet50"), "value": ("value_encoder.backbone", "resnet18")}


def test_named_trunks_load_and_record_sha256(files):
    model, kpath, key, vpath, value = files
    records = load_backbone_weights(model, {"key": str(kpath), "value": str(vpath)})
    assert [(r["trunk"], r["module"], r["arch"]) for r in records] == [
        ("key", "key_encoder", "resnet50"), ("value", "value_encoder.backbone", "resnet18")]
    assert records[0]["sha256"] == hashlib.sha256(kpath.read_bytes()).hexdigest()
    assert records[1]["sha256"] == hashlib.sha256(vpath.read_bytes()).hexdigest()
    assert torch.equal(model.key_encoder.layer3[0].conv3.weight, key["layer3.0.conv3.weight"])
    conv1 = model.value_encoder.backbone.conv1.weight  # image channels from the file, mask channels zero
    assert torch.equal(conv1[:, :3], value["conv1.weight"]) and not conv1[:, 3:].any()


def test_wrong_trunk_lists_missing_and_unexpected_keys_in_one_line(files):
    model, kpath, _, vpath, _ = files
    with pytest.raises(DataError) as err:
        load_backbone_weights(model, {"key": str(vpath)})  # a ResNet-18 file for the ResNet-50 trunk
    msg = str(err.value)
    assert "\n" not in msg and "r18.safetensors" in msg and "key encoder" in msg
    assert "looks like resnet18" in msg and "140 missing key(s): layer1.0.bn3.bias" in msg
    with pytest.raises(DataError, match=r"value encoder.*looks like resnet50.*unexpected key\(s\): layer1.0.bn3"):
        load_backbone_weights(model, {"value": str(kpath)})


def test_bare_path_keeps_matching_by_architecture(files):
    model, kpath, key, _, _ = files
    records = load_backbone_weights(model, str(kpath))
    assert [r["trunk"] for r in records] == ["key"]
    assert load_imagenet_backbones(model, [kpath]) == ["key_encoder <- r50.pth"]


def test_parse_backbone_weights():
    assert parse_backbone_weights(None) is None
    assert parse_backbone_weights(["a.pth"]) == "a.pth"
    assert parse_backbone_weights(["key=a.pth", "value=b.pth"]) == {"key": "a.pth", "value": "b.pth"}
    assert parse_backbone_weights(["run=1/a.pth"]) == "run=1/a.pth"  # only key= / value= name a trunk
    for bad, match in ((["key=a", "key=b"], "given twice"), (["a", "value=b"], "cannot be combined"),
                       (["a", "b"], "2 bare paths"), (["value="], "no path")):
        with pytest.raises(ConfigError, match=match):
            parse_backbone_weights(bad)


def test_train_config_checks_the_mapping():
    from gdkvm.engine.config import TrainConfig

    TrainConfig(data="d", backbone_weights={"key": "a.pth"}).validate()
    with pytest.raises(ConfigError, match="unknown trunk 'query'"):
        TrainConfig(data="d", backbone_weights={"query": "a.pth"}).validate()
