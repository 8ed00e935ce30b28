"""A DARTS-style cell space, tiny: normal and reduction cells of :class:`~nni_pl.nas.Cell` with 2 ops per node."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from nni_pl.nas.cells import Cell
from nni_pl.nas.space import ModelSpace

__all__ = ["DARTS", "DARTS_OPS"]


class _ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel_size: int = 1, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, kernel_size, stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class _SepConv(nn.Sequential):
    """ReLU, depthwise ``k x k`` (dilated), pointwise, batch norm (one stage of DARTS' two, to stay small)."""

    def __init__(self, c: int, kernel_size: int, dilation: int = 1) -> None:
        pad = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c, c, kernel_size, padding=pad, dilation=dilation, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c),
        )


DARTS_OPS: dict[str, Callable[[int], nn.Module]] = {
    "max_pool_3x3": lambda c: nn.MaxPool2d(3, stride=1, padding=1),
    "avg_pool_3x3": lambda c: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    "skip_connect": lambda c: nn.Identity(),
    "sep_conv_3x3": lambda c: _SepConv(c, 3),
    "sep_conv_5x5": lambda c: _SepConv(c, 5),
    "dil_conv_3x3": lambda c: _SepConv(c, 3, dilation=2),
    "dil_conv_5x5": lambda c: _SepConv(c, 5, dilation=2),
}
"""DARTS' seven ops (without ``none``), as factories ``fn(channels)``; all keep the spatial size."""


class _DartsCell(nn.Module):
    """Pre-process the two predecessors to ``c`` channels (and halve them in a reduction cell), then a Cell."""

    def __init__(
        self, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool, num_nodes: int, label: str
    ) -> None:
        super().__init__()
        stride = 2 if reduction else 1
        self.pre0 = _ReLUConvBN(c_pp, c, 1, stride=stride * (2 if reduction_prev else 1))
        self.pre1 = _ReLUConvBN(c_p, c, 1, stride=stride)
        ops = {name: functools.partial(f, c) for name, f in DARTS_OPS.items()}
        self.cell = Cell(ops, num_nodes, num_ops_per_node=2, num_predecessors=2, merge_op="all", label=label)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        return self.cell([self.pre0(s0), self.pre1(s1)])


class DARTS(ModelSpace):
    """The DARTS space (Liu et al., 2019), tiny: all normal cells share label ``"normal"``, reductions ``"reduce"``.

    Each cell has ``num_nodes`` nodes of two ops, each op chosen from :data:`DARTS_OPS` on a chosen earlier
    tensor (labels ``normal/op_{i}_{k}`` and ``normal/input_{i}_{k}``, ``i`` from 2). Reduction cells sit at
    1/3 and 2/3 of the ``num_cells`` cells. Unlike DARTS, a reduction cell halves its inputs while
    pre-processing them, so its ops never depend on which input they read.

    Args:
        width: channels per node in the first cells (16 in DARTS' search).
        num_cells: cells in the network (8 in DARTS' search).
        num_nodes: nodes per cell (4 in DARTS).
        num_labels: classes.
        in_channels: image channels.

    Example:
        >>> import torch
        >>> space = DARTS(width=4, num_cells=3, num_nodes=2)
        >>> space(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        width: int = 4,
        num_cells: int = 3,
        num_nodes: int = 2,
        num_labels: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        c = width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 3 * c, 3, padding=1, bias=False), nn.BatchNorm2d(3 * c)
        )
        c_pp, c_p = 3 * c, 3 * c
        reduction_prev = False
        self.cells = nn.ModuleList()
        reductions = {num_cells // 3, 2 * num_cells // 3} if num_cells >= 3 else set()
        for i in range(num_cells):
            reduction = i in reductions
            if reduction:
                c *= 2
            label = "reduce" if reduction else "normal"
            self.cells.append(_DartsCell(c_pp, c_p, c, reduction, reduction_prev, num_nodes, label))
            reduction_prev = reduction
            c_pp, c_p = c_p, c * num_nodes
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c_p, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.head(s1))
