"""A hub of small, CPU-sized model spaces: NAS-Bench-201, a DARTS cell space, a ProxylessNAS/MobileNetV2 space.

Each space is a :class:`~nni_pl.nas.ModelSpace` sized for tests and laptops (a few thousand to a few tens of
thousands of parameters at the defaults, 8x8 to 32x32 images); widen it with its arguments.

Example:
    >>> import torch
    >>> from nni_pl.nas import random_arch
    >>> from nni_pl.nas.hub import NasBench201
    >>> space = NasBench201(in_channels=1, num_labels=10)
    >>> len(space.search_space())
    6
    >>> space.freeze(random_arch(space, seed=0))(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from nni_pl.nas.hub.darts import DARTS
from nni_pl.nas.hub.nasbench201 import NasBench201
from nni_pl.nas.hub.proxyless import MobileNetV2Space, ProxylessNAS

__all__ = ["DARTS", "MobileNetV2Space", "NasBench201", "ProxylessNAS"]
