"""Multi-trial NAS strategies: :class:`Random`, :class:`GridSearch`, :class:`RegularizedEvolution`,
:class:`TPE`, :class:`PolicyBasedRL`; write your own by overriding :meth:`Strategy.propose`.

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
from nni_pl.nas.strategy.evolution import RegularizedEvolution
from nni_pl.nas.strategy.grid import GridSearch
from nni_pl.nas.strategy.random import Random
from nni_pl.nas.strategy.rl import PolicyBasedRL
from nni_pl.nas.strategy.tpe import TPE

#: NNI's name for the TPE strategy.
TPEStrategy = TPE

__all__ = [
    "TPE",
    "Engine",
    "GridSearch",
    "PolicyBasedRL",
    "Random",
    "RegularizedEvolution",
    "Strategy",
    "StrategyTuner",
    "TPEStrategy",
    "TrialRecord",
    "simulate",
]
