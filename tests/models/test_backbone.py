"""ResNet trunks: torchvision key names and shapes, strides, and ImageNet weight loading from local files."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from gdkvm.errors import DataError
from gdkvm.models.backbone import ResNetTrunk, architecture_signature
from gdkvm.models.config import preset_config
from gdkvm.models.gdkvm import GDKVM
from gdkvm.models.weights import load_imagenet_backbones, load_resnet_weights

ARCHS = {  # blocks per layer1..layer4 and block type, from He et al. 2015 (Table 1)
    "resnet18": ((2, 2, 2, 2), "basic"),
    "resnet50": ((3, 4, 6, 3), "bottleneck"),
}


def torchvision_shapes(arch: str, width: int = 64, in_channels: int = 3, with_head: bool = False) -> dict:
    """Independent generator of torchvision's ResNet state-dict names and shapes.

    Written from the architecture description (not from gdkvm code): stem conv 7x7 + BN; stage i has
    planes = width * 2**i; a basic block is conv3x3-BN-conv3x3-BN, a bottleneck 1x1-3x3-1x1 (x4)
    with BNs; the first block of a stage gets ``downsample.0`` (1x1 conv) + ``downsample.1`` (BN) when
    the stride or channel count changes. ``with_head`` adds layer4 and the 1000-way fc.
    """
    depths, kind = ARCHS[arch]
    expansion = 4 if kind == "bottleneck" else 1
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, ch: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (ch,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (width, in_channels, 7, 7)
    bn("bn1", width)
    in_ch = width
    n_layers = 4 if with_head else 3
    for layer in range(n_layers):
        planes = width * 2**layer
        out_ch = planes * expansion
        for block in range(depths[layer]):
            p = f"layer{layer + 1}.{block}"
            if kind == "basic":
                shapes[f"{p}.conv1.weight"] = (planes, in_ch, 3, 3)
                bn(f"{p}.bn1", planes)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
            else:
                shapes[f"{p}.conv1.weight"] = (planes, in_ch, 1, 1)
                bn(f"{p}.bn1", planes)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
                shapes[f"{p}.conv3.weight"] = (out_ch, planes, 1, 1)
                bn(f"{p}.bn3", out_ch)
            stride = 2 if (layer > 0 and block == 0) else 1
            if block == 0 and (stride != 1 or in_ch != out_ch):
                shapes[f"{p}.downsample.0.weight"] = (out_ch, in_ch, 1, 1)
                bn(f"{p}.downsample.1", out_ch)
            in_ch = out_ch
    if with_head:
        shapes["fc.weight"] = (1000, in_ch)
        shapes["fc.bias"] = (1000,)
    return shapes


def n_params(shapes: dict) -> int:
    total = 0
    for k, s in shapes.items():
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        n = 1
        for d in s:
            n *= d
        total += n
    return total


def fake_torchvision_state(arch: str, width: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with torchvision's names (including layer4 and fc, which must be ignored)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, s in torchvision_shapes(arch, width, with_head=True).items():
        out[k] = torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(s, generator=g)
    return out


@pytest.mark.parametrize(
    "arch,published", [("resnet18", 11_689_512), ("resnet50", 25_557_032)], ids=["resnet18", "resnet50"]
)
def test_generator_matches_published_torchvision_sizes(arch, published):
    # the published parameter counts of torchvision's full networks validate the independent generator
    assert n_params(torchvision_shapes(arch, with_head=True)) == published


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("width,in_channels", [(64, 3), (16, 5)], ids=["imagenet", "narrow-5ch"])
def test_trunk_keys_and_shapes_are_torchvision(arch, width, in_channels):
    with torch.device("meta"):
        trunk = ResNetTrunk(arch, in_channels=in_channels, width=width)
    got = {k: tuple(v.shape) for k, v in trunk.state_dict().items()}
    assert got == torchvision_shapes(arch, width, in_channels)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_trunk_strides_and_channels(arch):
    trunk = ResNetTrunk(arch, width=8).eval()
    f4, f8, f16 = trunk(torch.randn(2, 3, 64, 96))
    expansion = 4 if arch == "resnet50" else 1
    assert f4.shape == (2, 8 * expansion, 16, 24)
    assert f8.shape == (2, 16 * expansion, 8, 12)
    assert f16.shape == (2, 32 * expansion, 4, 6)
    assert trunk.out_channels == (f4.shape[1], f8.shape[1], f16.shape[1])


def test_architecture_signature_from_keys():
    assert architecture_signature(set(torchvision_shapes("resnet50", with_head=True))) == ("bottleneck", (3, 4, 6))
    assert architecture_signature(set(torchvision_shapes("resnet18"))) == ("basic", (2, 2, 2))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_torchvision_file_ignores_head_and_layer4(tmp_path, suffix):
    state = fake_torchvision_state("resnet18", width=16)
    path = tmp_path / f"r18{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    trunk = ResNetTrunk("resnet18", width=16)
    load_resnet_weights(trunk, path)
    loaded = trunk.state_dict()
    for k, v in loaded.items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, state[k]), k


def test_missing_num_batches_tracked_is_accepted(tmp_path):
    state = {k: v for k, v in fake_torchvision_state("resnet18", width=8).items()
             if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    trunk = ResNetTrunk("resnet18", width=8)
    load_resnet_weights(trunk, tmp_path / "old.pth")
    assert torch.equal(trunk.layer3[1].bn2.running_var, state["layer3.1.bn2.running_var"])


def test_value_encoder_conv1_gets_zero_extra_channels(tmp_path):
    state = fake_torchvision_state("resnet18", width=16)
    torch.save(state, tmp_path / "r18.pth")
    trunk = ResNetTrunk("resnet18", in_channels=5, width=16)
    load_resnet_weights(trunk, tmp_path / "r18.pth")
    w = trunk.conv1.weight.detach()
    assert torch.equal(w[:, :3], state["conv1.weight"])
    assert torch.count_nonzero(w[:, 3:]) == 0


def test_mismatching_file_fails_with_one_line(tmp_path):
    state = fake_torchvision_state("resnet18", width=16)
    state.pop("layer2.0.downsample.0.weight")
    state["layer1.0.conv1.weight"] = torch.zeros(16, 16, 5, 5)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(DataError) as info:
        load_resnet_weights(ResNetTrunk("resnet18", width=16), tmp_path / "bad.pth")
    msg = str(info.value)
    assert "\n" not in msg
    assert "bad.pth" in msg
    assert "layer2.0.downsample.0.weight" in msg and "missing" in msg
    assert "extra.weight" in msg and "unexpected" in msg
    assert "layer1.0.conv1.weight expected (16, 16, 3, 3) got (16, 16, 5, 5)" in msg


def test_width_mismatch_fails(tmp_path):
    torch.save(fake_torchvision_state("resnet18", width=16), tmp_path / "r18.pth")
    with pytest.raises(DataError, match="shape mismatch"):
        load_resnet_weights(ResNetTrunk("resnet18", width=8), tmp_path / "r18.pth")


def test_unreadable_and_unknown_files(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot read weights"):
        load_resnet_weights(ResNetTrunk("resnet18", width=8), tmp_path / "junk.pth")
    (tmp_path / "w.npz").write_bytes(b"")
    with pytest.raises(DataError, match="unknown weights format"):
        load_resnet_weights(ResNetTrunk("resnet18", width=8), tmp_path / "w.npz")


def test_imagenet_files_go_to_matching_encoders(tmp_path):
    # tiny preset: narrow ResNet-50 key encoder (width 16), ResNet-18 value encoder (width 8)
    model = GDKVM(preset_config("tiny"))
    r50 = fake_torchvision_state("resnet50", width=16, seed=1)
    r18 = fake_torchvision_state("resnet18", width=8, seed=2)
    torch.save(r50, tmp_path / "r50.pth")
    save_file(r18, str(tmp_path / "r18.safetensors"))
    lines = load_imagenet_backbones(model, [tmp_path / "r50.pth", tmp_path / "r18.safetensors"])
    assert lines == ["key_encoder <- r50.pth", "value_encoder.backbone <- r18.safetensors"]
    assert torch.equal(model.key_encoder.layer3[5].conv3.weight, r50["layer3.5.conv3.weight"])
    assert torch.equal(model.value_encoder.backbone.layer2[0].conv1.weight, r18["layer2.0.conv1.weight"])
    # a real-width (64) ImageNet file does not fit the narrow encoder
    torch.save(fake_torchvision_state("resnet18", width=64), tmp_path / "big.pth")
    with pytest.raises(DataError, match="not a torchvision resnet18"):
        load_imagenet_backbones(model, [tmp_path / "big.pth"])
