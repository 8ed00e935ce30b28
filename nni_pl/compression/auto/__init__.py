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

from nni_pl._imports import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
