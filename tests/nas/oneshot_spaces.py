"""Model spaces for the one-shot tests (importable by trial processes)."""

from __future__ import annotations

from nni_pl.nas import InputChoice, LayerChoice, ModelSpace, Repeat, ValueChoice, nn


class DigitsConvSpace(ModelSpace):
    """A small conv net on 8x8 digits: kernel size and width as ValueChoices, an op LayerChoice, a skip
    InputChoice and a Repeat depth."""

    def __init__(self) -> None:
        super().__init__()
        k = ValueChoice([3, 5], label="kernel")
        width = ValueChoice([8, 16], label="width")
        self.stem = nn.Conv2d(1, width, k, padding=k // 2)
        self.bn = nn.BatchNorm2d(width)
        self.op = LayerChoice(
            {
                "conv": nn.Conv2d(width, width, 3, padding=1),
                "pool": nn.MaxPool2d(3, 1, 1),
                "id": nn.Identity(),
            },
            label="op",
        )
        self.skip = InputChoice(2, 1, label="skip")
        self.blocks = Repeat(
            lambda i: nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU()), (1, 2), label="depth"
        )
        self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="act")
        self.head = nn.Linear(width * 64, 10)

    def forward(self, x):
        x = self.act(self.bn(self.stem(x)))
        x = self.skip([x, self.op(x)])
        x = self.blocks(x)
        return self.head(x.flatten(1))


class DigitsLayerSpace(ModelSpace):
    """LayerChoice and InputChoice only."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.op = LayerChoice(
            {
                "conv5": nn.Sequential(nn.Conv2d(16, 16, 5, padding=2), nn.ReLU()),
                "conv3": nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()),
                "id": nn.Identity(),
            },
            label="op",
        )
        self.op2 = LayerChoice(
            {"conv3": nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()), "id": nn.Identity()},
            label="op2",
        )
        self.skip = InputChoice(2, 1, label="skip")
        self.head = nn.Linear(16 * 64, 10)

    def forward(self, x):
        x = self.stem(x).relu()
        y = self.op2(self.op(x))
        return self.head(self.skip([x, y]).flatten(1))


class StridedSpace(ModelSpace):
    """A stride that changes with the choice: sampling strategies only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=ValueChoice([1, 2], label="stride"))
        self.head = nn.LazyLinear(10)

    def forward(self, x):
        return self.head(self.conv(x).flatten(1))
