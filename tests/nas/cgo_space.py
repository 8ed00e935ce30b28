"""A 4-architecture space on flattened digits for the CGO engine tests (imported by the merged trial process)."""

from __future__ import annotations

import torch

from nni_pl.nas import LayerChoice, ModelSpace, nn


class CgoSpace(ModelSpace):
    """One choice among four heads on 64 features; with ``broken=True`` the head ``"d"`` has a shape error."""

    def __init__(self, broken: bool = False) -> None:
        super().__init__()
        self.head = LayerChoice(
            {
                "a": nn.Linear(64, 10),
                "b": nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)),
                "c": nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)),
                "d": nn.Linear(63 if broken else 64, 10),
            },
            label="head",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1))
