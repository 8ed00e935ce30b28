"""The built-in tuners, importable by class (the experiment looks them up by NNI name).

Each class is imported on first use, so an experiment with ``tuner: Random`` does not pay for the
model-based tuners' scipy imports.

Example:
    >>> from nni_pl.hpo.tuners import TPETuner
    >>> tuner = TPETuner(optimize_mode="minimize", seed=0)
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "AnnealTuner": "anneal",
    "AutoTuner": "auto",
    "BatchTuner": "batch",
    "BOHB": "bohb",
    "DNGOTuner": "dngo",
    "EvolutionTuner": "evolution",
    "GPTuner": "gp",
    "GridSearchTuner": "gridsearch",
    "Hyperband": "hyperband",
    "MetisTuner": "metis",
    "NetworkMorphismTuner": "network_morphism",
    "PBTTuner": "pbt",
    "PPOTuner": "ppo",
    "RandomTuner": "random",
    "RegularizedEvolutionTuner": "regularized_evolution",
    "SMACTuner": "smac",
    "TPETuner": "tpe",
}
__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
