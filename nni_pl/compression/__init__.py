"""Model compression: pruners that produce masks, the speed-up that turns masks into a smaller model, analysis
utilities (``nni_pl.compression.utils``) and auto compression (``nni_pl.compression.auto``).

Names are resolved lazily so that ``import nni_pl.compression`` does not import torch.

Example:
    >>> from nni_pl.compression import Evaluator
    >>> Evaluator.__name__
    'Evaluator'
"""

from __future__ import annotations

import importlib
from typing import Any

_UTILS = "nni_pl.compression.utils"
_AUTO = "nni_pl.compression.auto"

_LAZY = {
    "Evaluator": "nni_pl.compression.evaluator",
    # compression utilities (NNI's nni.compression.pytorch.utils)
    "ChannelDependency": _UTILS,
    "GroupDependency": _UTILS,
    "SensitivityAnalysis": _UTILS,
    "count_flops_params": _UTILS,
    "fix_mask_conflict": _UTILS,
    "not_safe_to_prune": _UTILS,
    # auto compression (NNI's nni.algorithms.compression.pytorch.auto_compress)
    "AbstractAutoCompressionModule": _AUTO,
    "AutoCompressionExperiment": _AUTO,
    "AutoCompressionSearchSpaceGenerator": _AUTO,
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nni_pl.compression' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
