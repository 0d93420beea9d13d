"""ResNet-18 / ResNet-50 trunks cut after layer3 (stride 16), with torchvision's parameter names.

torchvision is not a dependency, so the two residual networks are written here. The module tree and
therefore the state-dict keys (``conv1.weight``, ``bn1.running_mean``, ``layer1.0.conv1.weight``,
``layer2.0.downsample.0.weight``, ...) are the same as torchvision's ``resnet18`` / ``resnet50`` up to
``layer3``, so an ImageNet state dict saved from torchvision loads after dropping ``layer4.*`` and
``fc.*`` (see ``gdkvm.models.weights``). ``width`` scales every stage (64 is the standard network;
the ``tiny`` preset uses 8 or 16) without changing any key name. Bottleneck blocks put the stride on
the 3x3 convolution (torchvision's "ResNet v1.5").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gdkvm.models.config import BackboneName

# Blocks per stage for layer1..layer3 (layer4 is never built).
_DEPTHS: dict[str, tuple[int, int, int]] = {"resnet18": (2, 2, 2), "resnet50": (3, 4, 6)}


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(in_ch, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetTrunk(nn.Module):
    """conv1 .. layer3 of a ResNet: an image (B, in_channels, H, W) -> stride-4, -8 and -16 features.

    Args:
        arch: ``"resnet18"`` or ``"resnet50"``.
        in_channels: input channels (3 for images; more for the value encoder's image + masks).
        width: channels of the first stage (64 in the standard networks).
        freeze_bn: keep every BatchNorm in eval mode (running statistics frozen, affine still trained),
            as Cutie does with ImageNet-initialised encoders.
    """

    def __init__(self, arch: BackboneName, in_channels: int = 3, width: int = 64, freeze_bn: bool = False):
        super().__init__()
        if arch not in _DEPTHS:
            raise ValueError(f"unknown backbone {arch!r}")
        block: type[BasicBlock] | type[Bottleneck] = BasicBlock if arch == "resnet18" else Bottleneck
        self.arch = arch
        self.in_channels = in_channels
        self.width = width
        self.freeze_bn = freeze_bn
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._in = width
        depths = _DEPTHS[arch]
        self.layer1 = self._make_layer(block, width, depths[0], stride=1)
        self.layer2 = self._make_layer(block, width * 2, depths[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, depths[2], stride=2)
        del self._in
        e = block.expansion
        #: channels of the (stride 4, stride 8, stride 16) outputs
        self.out_channels: tuple[int, int, int] = (width * e, width * 2 * e, width * 4 * e)
        self.reset_parameters()

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        out_ch = planes * block.expansion  # type: ignore[attr-defined]
        if stride != 1 or self._in != out_ch:
            downsample = nn.Sequential(_conv1x1(self._in, out_ch, stride), nn.BatchNorm2d(out_ch))
        layers = [block(self._in, planes, stride, downsample)]
        self._in = out_ch
        layers += [block(self._in, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def reset_parameters(self) -> None:
        """He (fan-out) init for convolutions, BatchNorm at identity (torchvision's defaults)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> ResNetTrunk:
        """Switch train/eval mode; with ``freeze_bn`` the BatchNorm layers always stay in eval mode."""
        super().train(mode)
        if self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, in_channels, H, W) -> (f4, f8, f16) with shapes (B, out_channels[i], H/s, W/s)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f4 = self.layer1(x)
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        return f4, f8, f16


def build_backbone(arch: BackboneName, in_channels: int = 3, width: int = 64, freeze_bn: bool = False) -> ResNetTrunk:
    """Build a randomly initialised ResNet trunk (see :class:`ResNetTrunk`)."""
    return ResNetTrunk(arch, in_channels=in_channels, width=width, freeze_bn=freeze_bn)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (works on meta-device modules too)."""
    return sum(p.numel() for p in module.parameters())


def architecture_signature(keys: list[str] | set[str]) -> tuple[str, tuple[int, ...]]:
    """(block type, blocks per layer1..layer3) read from a ResNet state dict's key names.

    ``("bottleneck", (3, 4, 6))`` for a ResNet-50, ``("basic", (2, 2, 2))`` for a ResNet-18.
    """
    depths = []
    for layer in ("layer1", "layer2", "layer3"):
        idx = {int(k.split(".")[1]) for k in keys if k.startswith(f"{layer}.") and k.split(".")[1].isdigit()}
        depths.append(max(idx) + 1 if idx else 0)
    block = "bottleneck" if any(k.endswith(".conv3.weight") and k.startswith("layer") for k in keys) else "basic"
    return block, tuple(depths)


def trunk_signature(trunk: ResNetTrunk) -> tuple[str, tuple[int, ...]]:
    """(block type, blocks per layer1..layer3) of a built trunk."""
    return ("basic" if trunk.arch == "resnet18" else "bottleneck"), _DEPTHS[trunk.arch]


@torch.no_grad()
def widen_first_conv(weight: Tensor, in_channels: int) -> Tensor:
    """Pad an ImageNet conv1 weight (out, 3, 7, 7) with zero input channels up to ``in_channels``.

    Used for the value encoder, whose input is image + masks: the extra channels start at zero so the
    loaded network initially ignores them (Cutie does the same).
    """
    out, have, kh, kw = weight.shape
    pad = weight.new_zeros(out, in_channels - have, kh, kw)
    return torch.cat([weight, pad], dim=1)
