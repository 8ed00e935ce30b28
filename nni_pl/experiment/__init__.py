"""Experiments: config, store, the manager loop and the Python API (NNI 2.5's ``nni.experiment``).

Example:
    >>> from nni_pl.experiment import Experiment
    >>> Experiment("config.yml").run()                                # doctest: +SKIP
    >>> experiment = Experiment("local")
    >>> experiment.config.trial_command = "python3 mnist.py"
    >>> experiment.run(8080)                                          # doctest: +SKIP

    The two skipped lines run a real experiment (``config.yml`` and ``mnist.py`` are yours); see
    :mod:`nni_pl.experiment.experiment` for one that runs here.
"""

from nni_pl._imports import lazy_exports
from nni_pl.experiment.config import AlgorithmConfig, ExperimentConfig, LocalConfig
from nni_pl.experiment.data import TrialHyperParameters, TrialJob, TrialMetricData, TrialResult
from nni_pl.experiment.experiment import Experiment, stop_experiment
from nni_pl.experiment.store import ExperimentRow, MetricRow, Store, TrialRow

# NNI's ``nni.experiment.RemoteConfig``; imported on first use, so a local experiment never loads it
__getattr__, __dir__ = lazy_exports(
    __name__,
    {"RemoteConfig": "nni_pl.training.remote_config", "RemoteMachineConfig": "nni_pl.training.remote_config"},
)

__all__ = [
    "AlgorithmConfig",
    "Experiment",
    "ExperimentConfig",
    "ExperimentRow",
    "LocalConfig",
    "MetricRow",
    "RemoteConfig",
    "RemoteMachineConfig",
    "Store",
    "TrialHyperParameters",
    "TrialJob",
    "TrialMetricData",
    "TrialResult",
    "TrialRow",
    "stop_experiment",
]
