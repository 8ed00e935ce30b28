"""Auto compression: search pruners/quantizers and their config_list with an HPO experiment (NNI 2.5's
``nni.algorithms.compression.pytorch.auto_compress``).

Names resolve lazily: importing this package imports neither torch nor the experiment engine.

Example:
    >>> from nni_pl.compression.auto import AutoCompressionSearchSpaceGenerator
    >>> g = AutoCompressionSearchSpaceGenerator()
    >>> g.add_config("l1", [{"sparsity": {"_type": "choice", "_value": [0.25, 0.5]}, "op_types": ["Conv2d"]}])
    >>> list(g.dumps())
    ['algorithm_name']
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AbstractAutoCompressionModule": "interface",
    "AutoCompressionSearchSpaceGenerator": "search_space",
    "parse_parameters": "search_space",
    "AutoCompressEngine": "engine",
    "compress_and_evaluate": "engine",
    "AutoCompressionExperiment": "experiment",
    "PRUNER_DICT": "constants",
    "QUANTIZER_DICT": "constants",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
