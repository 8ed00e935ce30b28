"""Model compression: pruners that produce masks, and the speed-up that turns masks into a smaller model.

Names are resolved lazily so that ``import nni_pl.compression`` does not import torch.

Example:
    >>> from nni_pl.compression import Evaluator
    >>> Evaluator.__name__
    'Evaluator'
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Evaluator"]

_LAZY = {"Evaluator": "nni_pl.compression.evaluator"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nni_pl.compression' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
