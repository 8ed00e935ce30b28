"""Channel dependency groups: layers whose output channels must be pruned identically.

Two layers are coupled when their outputs meet in a residual addition or a multiplication (e.g.
squeeze-excitation), when a batch norm follows a conv, and through depthwise convolutions (input channel
``i`` is output channel ``i``). Concatenation lays channels side by side and does not couple.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from nni_pl.compression.speedup._analysis import ChannelAnalysis

__all__ = ["ChannelSet", "channel_groups", "channel_sets"]


@dataclass(frozen=True)
class ChannelSet:
    """Channels that speed-up keeps or removes together.

    Attributes:
        size: number of channels.
        members: ``(module name, offset)``: channel ``i`` of the set is output channel ``offset + i`` of the
            module (a Conv/Linear producing it, a depthwise conv or norm carrying it).
        chunks: grouped convolutions reading or writing these channels cut them into ``chunks`` equal blocks;
            speed-up removes channels only when every block loses equally many (1: no constraint).

    Example: ``a = Conv2d(1, 16, 3)`` feeding ``Conv2d(16, 32, 3, groups=4)`` gives a set of 16 channels
    with members ``[("a", 0)]`` and ``chunks=4``: pruning 3 channels of each block of 4 lets speed-up remove 12.
    """

    size: int
    members: tuple[tuple[str, int], ...]
    chunks: int = 1


def channel_sets(model: nn.Module, dummy_input: Any) -> list[ChannelSet]:
    """Every set of channels that is kept or removed together (see :class:`ChannelSet`), in no fixed order.

    Args:
        model: the model (traced with ``torch.fx``).
        dummy_input: an input tensor (or tuple of positional inputs) of the right shape.
    """
    return [
        ChannelSet(size, tuple(members), chunks)
        for size, members, chunks in ChannelAnalysis(model, dummy_input).channel_sets()
    ]


def channel_groups(model: nn.Module, dummy_input: Any) -> list[list[str]]:
    """Return the groups (two or more module names each) whose output channels are coupled.

    Members are Conv/Linear layers whose output (or, for depthwise convs, input and output) carries the
    channels, and the batch/instance norms that carry them; groups are in graph order. Prune a group's
    members with the same channel indices so speed-up can remove them.

    Args:
        model: the model (traced with ``torch.fx`` in train and in eval mode; the sets cover both graphs).
        dummy_input: an input tensor (or tuple of positional inputs) of the right shape.

    Example:
        >>> import torch, torchvision
        >>> groups = channel_groups(torchvision.models.resnet18().eval(), torch.randn(1, 3, 64, 64))
        >>> ["conv1", "bn1", "layer1.0.conv2", "layer1.0.bn2", "layer1.1.conv2", "layer1.1.bn2"] == groups[0]
        True
    """
    return ChannelAnalysis(model, dummy_input).groups()
