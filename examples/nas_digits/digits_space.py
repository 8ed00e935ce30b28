"""A tiny model space on scikit-learn's digits (8x8 images): 24 architectures, each trains in a second."""

from __future__ import annotations

import torch

from nni_pl.nas import LayerChoice, ModelSpace, ValueChoice, nn


class DigitsSpace(ModelSpace):
    """conv (3x3 or 5x5, 8/16/32 channels) -> activation (ReLU or Tanh) -> pool -> hidden layer (32/64) -> 10 classes.

    Example:
        >>> space = DigitsSpace()
        >>> sorted(space.search_space())
        ['act', 'conv', 'hidden', 'width']
        >>> space.freeze({"conv": "conv3", "width": 8, "act": "relu", "hidden": 32})(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        width = ValueChoice([8, 16, 32], label="width")
        self.conv = LayerChoice(
            {
                "conv3": nn.Conv2d(1, width, kernel_size=3, padding=1),
                "conv5": nn.Conv2d(1, width, kernel_size=5, padding=2),
            },
            label="conv",
        )
        self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="act")
        self.pool = nn.MaxPool2d(2)
        hidden = ValueChoice([32, 64], label="hidden")
        self.fc1 = nn.Linear(width * 16, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act(self.conv(x)))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))
