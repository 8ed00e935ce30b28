"""Channel dependency groups: layers whose output channels must be pruned identically.

Two layers are coupled when their outputs meet in a residual addition or a multiplication (e.g.
squeeze-excitation), when a batch norm follows a conv, and through depthwise convolutions (input channel
``i`` is output channel ``i``). Concatenation lays channels side by side and does not couple.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from nni_pl.compression.speedup._analysis import ChannelAnalysis

__all__ = ["channel_groups"]


def channel_groups(model: nn.Module, dummy_input: Any) -> list[list[str]]:
    """Return the groups (two or more module names each) whose output channels are coupled.

    Members are Conv/Linear layers whose output (or, for depthwise convs, input and output) carries the
    channels, and the batch/instance norms that carry them; groups are in graph order. Prune a group's
    members with the same channel indices so speed-up can remove them.

    Args:
        model: the model (traced with ``torch.fx`` in its current train/eval mode).
        dummy_input: an input tensor (or tuple of positional inputs) of the right shape.

    Example:
        >>> import torch, torchvision
        >>> groups = channel_groups(torchvision.models.resnet18().eval(), torch.randn(1, 3, 64, 64))
        >>> ["conv1", "bn1", "layer1.0.conv2", "layer1.0.bn2", "layer1.1.conv2", "layer1.1.bn2"] == groups[0]
        True
    """
    return ChannelAnalysis(model, dummy_input).groups()
