"""Pruners (NNI names and arguments), the config_list and the mask format.

Example:
    >>> from nni_pl.compression.pruning import L1NormPruner, LevelPruner
    >>> LevelPruner.__name__
    'LevelPruner'
"""

from __future__ import annotations

import importlib
from typing import Any

_SCHEDULED = (
    "AGPPruner",
    "AMCPruner",
    "AutoCompressPruner",
    "LinearPruner",
    "LotteryTicketPruner",
    "ScheduledPruner",
    "SimulatedAnnealingPruner",
)

__all__ = [
    *_SCHEDULED,
    "ADMMPruner",
    "ActivationAPoZRankPruner",
    "ActivationMeanRankPruner",
    "FPGMPruner",
    "L1NormPruner",
    "L2NormPruner",
    "LevelPruner",
    "MovementPruner",
    "Pruner",
    "SlimPruner",
    "TaylorFOWeightPruner",
    "apply_masks",
    "load_masks",
    "save_masks",
    "sparsity_of",
]

_LAZY = {
    "Pruner": "nni_pl.compression.pruning.base",
    "apply_masks": "nni_pl.compression.pruning.masks",
    "load_masks": "nni_pl.compression.pruning.masks",
    "save_masks": "nni_pl.compression.pruning.masks",
    "sparsity_of": "nni_pl.compression.pruning.masks",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SCHEDULED:
        return getattr(importlib.import_module("nni_pl.compression.pruning.scheduled"), name)
    if name in __all__:
        return getattr(importlib.import_module("nni_pl.compression.pruning.basic"), name)
    raise AttributeError(f"module 'nni_pl.compression.pruning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
