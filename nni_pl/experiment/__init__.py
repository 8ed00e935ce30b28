"""Experiments: config, store, the manager loop and the Python API.

Example:
    >>> from nni_pl.experiment import Experiment, ExperimentConfig   # doctest: +SKIP
    >>> Experiment("config.yml").run()                                # doctest: +SKIP
"""

from nni_pl.experiment.config import AlgorithmConfig, ExperimentConfig, LocalConfig
from nni_pl.experiment.experiment import Experiment, stop_experiment
from nni_pl.experiment.store import ExperimentRow, MetricRow, Store, TrialRow

__all__ = [
    "AlgorithmConfig",
    "Experiment",
    "ExperimentConfig",
    "ExperimentRow",
    "LocalConfig",
    "MetricRow",
    "Store",
    "TrialRow",
    "stop_experiment",
]
