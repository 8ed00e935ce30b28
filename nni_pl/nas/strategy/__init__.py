"""Multi-trial NAS strategies: :class:`Random`, :class:`GridSearch`, :class:`RegularizedEvolution`,
:class:`TPE`, :class:`PolicyBasedRL`; one-shot ones (:mod:`nni_pl.nas.strategy.oneshot`): :class:`DARTS`,
:class:`GumbelDARTS`, :class:`ENAS`, :class:`RandomOneShot` (``SPOS``), :class:`Proxyless`; write your own by overriding :meth:`Strategy.propose`, or run any
HPO tuner as a strategy by overriding :meth:`TunerBackedStrategy.make_tuner`.

Importing this package does not import torch (nor numpy): a NAS experiment's manager process runs the
strategy through :class:`StrategyTuner` and pays only for what the strategy uses (torch for
:class:`PolicyBasedRL`'s policy, or to build a model space whose choices constrain each other).

Example:
    >>> from nni_pl.nas.strategy import RegularizedEvolution, simulate
    >>> space = {"op": {"_type": "choice", "_value": ["conv3", "conv5", "pool"]},
    ...          "width": {"_type": "choice", "_value": [16, 32, 64]}}
    >>> runs = simulate(RegularizedEvolution(population_size=4, sample_size=2), space,
    ...                 lambda arch: arch["width"] / 64, budget=6, seed=0)
    >>> len(runs)
    6
"""

from nni_pl.nas.strategy._base import Engine, Strategy, TrialRecord, simulate
from nni_pl.nas.strategy._tuner import StrategyTuner
from nni_pl.nas.strategy._tuner_backed import TunerBackedStrategy
from nni_pl.nas.strategy.evolution import RegularizedEvolution
from nni_pl.nas.strategy.grid import GridSearch
from nni_pl.nas.strategy.oneshot import (
    DARTS,
    ENAS,
    SPOS,
    GumbelDARTS,
    OneShotStrategy,
    Proxyless,
    RandomOneShot,
)
from nni_pl.nas.strategy.random import Random
from nni_pl.nas.strategy.rl import PolicyBasedRL
from nni_pl.nas.strategy.tpe import TPE

#: NNI's name for the TPE strategy.
TPEStrategy = TPE

__all__ = [
    "DARTS",
    "ENAS",
    "SPOS",
    "TPE",
    "Engine",
    "GridSearch",
    "GumbelDARTS",
    "OneShotStrategy",
    "PolicyBasedRL",
    "Proxyless",
    "Random",
    "RandomOneShot",
    "RegularizedEvolution",
    "Strategy",
    "StrategyTuner",
    "TPEStrategy",
    "TrialRecord",
    "TunerBackedStrategy",
    "simulate",
]
