"""A ProxylessNAS / MobileNetV2-style space: inverted residual blocks with kernel and expansion choices, searched depth."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from nni_pl.nas import nn
from nni_pl.nas.mutables import Repeat, ValueChoice
from nni_pl.nas.space import ModelSpace

__all__ = ["InvertedResidual", "MobileNetV2Space", "ProxylessNAS"]


class InvertedResidual(torch.nn.Module):
    """MobileNetV2's block: 1x1 expansion, ``k x k`` depthwise, 1x1 projection; a residual when shapes allow.

    ``kernel_size`` and ``expand_ratio`` may be ValueChoices (the hidden width is ``in_channels * expand_ratio``).
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, kernel_size: Any, expand_ratio: Any
    ) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        self.layers = torch.nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(
                hidden, hidden, kernel_size, stride, padding=kernel_size // 2, groups=hidden, bias=False
            ),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.use_residual else out


class ProxylessNAS(ModelSpace):
    """ProxylessNAS (Cai et al., 2019) / MobileNetV2 space, small.

    A stem, then stages of inverted residual blocks: stage ``s`` repeats its block ``s{s}/depth`` times (1 to
    ``max_depth``); block ``b`` of it chooses ``s{s}_b{b}/kernel`` from ``kernel_sizes`` and
    ``s{s}_b{b}/expand`` from ``expand_ratios``. The first block of a stage changes width and stride; the
    others are residual. A 1x1 conv, global pooling, dropout and a linear classifier close the network.

    Args:
        num_labels: classes.
        in_channels: image channels.
        stem_channels: width of the stem.
        stage_channels: output width of each stage.
        stage_strides: stride of each stage's first block.
        max_depth: most blocks per stage.
        kernel_sizes: depthwise kernel sizes to choose from.
        expand_ratios: expansion ratios to choose from.
        last_channels: width of the final 1x1 conv.
        dropout: dropout before the classifier.

    Example:
        >>> import torch
        >>> space = ProxylessNAS()
        >>> space(torch.zeros(2, 3, 16, 16)).shape
        torch.Size([2, 10])
        >>> space.search_space()["s0/depth"]
        {'_type': 'choice', '_value': [1, 2]}
    """

    def __init__(
        self,
        num_labels: int = 10,
        in_channels: int = 3,
        stem_channels: int = 8,
        stage_channels: Sequence[int] = (8, 12, 16),
        stage_strides: Sequence[int] = (1, 2, 2),
        max_depth: int = 2,
        kernel_sizes: Sequence[int] = (3, 5),
        expand_ratios: Sequence[int] = (2, 4),
        last_channels: int = 32,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(stage_channels) != len(stage_strides):
            raise ValueError(
                f"stage_channels and stage_strides need one entry per stage, got {list(stage_channels)} "
                f"and {list(stage_strides)}"
            )
        self.stem = torch.nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels),
            nn.ReLU6(),
        )
        stages: list[torch.nn.Module] = []
        c_in = stem_channels
        for s, (c_out, stride) in enumerate(zip(stage_channels, stage_strides)):

            def block(
                b: int, s: int = s, c_in: int = c_in, c_out: int = c_out, stride: int = stride
            ) -> torch.nn.Module:
                return InvertedResidual(
                    c_in if b == 0 else c_out,
                    c_out,
                    stride if b == 0 else 1,
                    ValueChoice(list(kernel_sizes), label=f"s{s}_b{b}/kernel"),
                    ValueChoice(list(expand_ratios), label=f"s{s}_b{b}/expand"),
                )

            stages.append(Repeat(block, (1, max_depth), label=f"s{s}/depth"))
            c_in = c_out
        self.stages = torch.nn.Sequential(*stages)
        self.head = torch.nn.Sequential(
            nn.Conv2d(c_in, last_channels, 1, bias=False),
            nn.BatchNorm2d(last_channels),
            nn.ReLU6(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
        )
        self.classifier = nn.Linear(last_channels, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.stages(self.stem(x))))


MobileNetV2Space = ProxylessNAS
"""The same space under the MobileNetV2 name."""
