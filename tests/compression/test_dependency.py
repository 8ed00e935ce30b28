from __future__ import annotations

import pytest
import torch
from torch import nn

from nni_pl.compression.speedup import SpeedupError, channel_groups


class Block(nn.Module):
    """A resnet18 basic block (optionally with a projection shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.b1 = Block(8, 8)
        self.b2 = Block(8, 16, stride=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.b2(self.b1(torch.relu(self.bn(self.stem(x)))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


X = torch.randn(1, 3, 16, 16)


def test_channel_groups_resnet_blocks_couple_residual_adds() -> None:
    groups = channel_groups(TinyResNet().eval(), X)
    assert ["stem", "bn", "b1.conv2", "b1.bn2"] in groups
    assert ["b1.conv1", "b1.bn1"] in groups
    assert ["b2.conv2", "b2.bn2", "b2.down.0", "b2.down.1"] in groups or [
        "b2.down.0",
        "b2.down.1",
        "b2.conv2",
        "b2.bn2",
    ] in groups
    assert all("fc" not in g for g in groups)


def test_channel_groups_concat_does_not_couple() -> None:
    class Cat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.b = nn.Conv2d(3, 4, 1)
            self.c = nn.Conv2d(8, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(torch.cat([self.a(x), self.b(x)], 1))

    assert channel_groups(Cat(), X) == []


def test_channel_groups_depthwise_and_squeeze_excitation_couple() -> None:
    class DwSE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.expand = nn.Conv2d(3, 8, 1)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.fc1 = nn.Conv2d(8, 2, 1)
            self.fc2 = nn.Conv2d(2, 8, 1)
            self.proj = nn.Conv2d(8, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.dw(torch.relu(self.expand(x)))
            s = torch.sigmoid(self.fc2(torch.relu(self.fc1(y.mean((2, 3), keepdim=True)))))
            return self.proj(y * s)

    assert channel_groups(DwSE(), X) == [["expand", "dw", "fc2"]]


def test_channel_groups_torchvision_resnet18() -> None:
    torchvision = pytest.importorskip("torchvision")
    groups = channel_groups(torchvision.models.resnet18().eval(), torch.randn(1, 3, 32, 32))
    assert groups[0] == ["conv1", "bn1", "layer1.0.conv2", "layer1.0.bn2", "layer1.1.conv2", "layer1.1.bn2"]
    assert ["layer2.0.conv2", "layer2.0.bn2", "layer2.0.downsample.0", "layer2.0.downsample.1"] in [
        g[:4] for g in groups
    ]


def test_untraceable_forward_names_the_model() -> None:
    class Bad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:
                return self.conv(x)
            return x

    with pytest.raises(SpeedupError, match=r"cannot trace Bad\.forward"):
        channel_groups(Bad(), X)


def test_untraceable_submodule_is_kept_as_one_call() -> None:
    class Gate(nn.Module):  # data-dependent control flow: fx cannot trace through it
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > -1e9 else -x

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.act = Gate()
            self.b = nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.a(x)) + self.b(x)

    assert channel_groups(Net(), X) == [["a", "b"]]
