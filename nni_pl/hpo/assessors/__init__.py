"""The built-in assessors, importable by class (the experiment looks them up by NNI name).

Each class is imported on first use.

Example:
    >>> from nni_pl.hpo.assessors import MedianstopAssessor
    >>> assessor = MedianstopAssessor(optimize_mode="maximize", start_step=3)
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "ASHAAssessor": "asha",
    "CurvefittingAssessor": "curvefitting",
    "MedianstopAssessor": "medianstop",
}
__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
