"""The built-in tuners, importable by class (the experiment looks them up by NNI name).

Example:
    >>> from nni_pl.hpo.tuners import TPETuner
    >>> tuner = TPETuner(optimize_mode="minimize", seed=0)
"""

from nni_pl.hpo.tuners.anneal import AnnealTuner
from nni_pl.hpo.tuners.gridsearch import GridSearchTuner
from nni_pl.hpo.tuners.random import RandomTuner
from nni_pl.hpo.tuners.tpe import TPETuner

__all__ = ["AnnealTuner", "GridSearchTuner", "RandomTuner", "TPETuner"]
