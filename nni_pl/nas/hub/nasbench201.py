"""NAS-Bench-201's search space, small: one cell topology over five ops, shared by every cell of the network."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nni_pl.nas.cells import NasBench201Cell, ZeroOp
from nni_pl.nas.space import ModelSpace

__all__ = ["OPS", "NasBench201"]


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution, batch norm: NAS-Bench-201's conv ops."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, kernel_size, stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class _Pool(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.pre = ReLUConvBN(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.pre(x))


def _skip(c_in: int, c_out: int) -> nn.Module:
    return nn.Identity() if c_in == c_out else ReLUConvBN(c_in, c_out, 1)


OPS: dict[str, Callable[[int, int], nn.Module]] = {
    "none": lambda c_in, c_out: ZeroOp(c_in, c_out),
    "skip_connect": _skip,
    "conv_1x1": lambda c_in, c_out: ReLUConvBN(c_in, c_out, 1),
    "conv_3x3": lambda c_in, c_out: ReLUConvBN(c_in, c_out, 3),
    "avg_pool_3x3": _Pool,
}
"""The five NAS-Bench-201 ops, as factories ``fn(in_channels, out_channels)``."""


class _ResBlock(nn.Module):
    """The fixed residual reduction block between stacks (stride 2, channels doubled)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + self.shortcut(x)


class NasBench201(ModelSpace):
    """NAS-Bench-201 (Dong & Yang, 2020), small: 15,625 architectures, the cell labels ``cell/{j}_{t}``.

    Stem, three stacks of ``num_modules_per_stack`` cells (channels ``C``, ``2C``, ``4C``) joined by residual
    reduction blocks, global pooling and a linear classifier. Every cell has the label ``"cell"``: one topology
    for the whole network, as in the benchmark (whose query keys are ``0_1, 0_2, 1_2, 0_3, 1_3, 2_3``).

    Args:
        stem_out_channels: ``C`` (16 in the benchmark).
        num_modules_per_stack: cells per stack (5 in the benchmark).
        num_labels: classes.
        in_channels: image channels.

    Example:
        >>> import torch
        >>> space = NasBench201(stem_out_channels=4, num_modules_per_stack=1)
        >>> space(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        stem_out_channels: int = 4,
        num_modules_per_stack: int = 1,
        num_labels: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        c = stem_out_channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        layers: list[nn.Module] = []
        for stack in range(3):
            if stack > 0:
                layers.append(_ResBlock(c, c * 2))
                c *= 2
            layers.extend(NasBench201Cell(OPS, c, c, label="cell") for _ in range(num_modules_per_stack))
        self.cells = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.cells(self.stem(x))))
