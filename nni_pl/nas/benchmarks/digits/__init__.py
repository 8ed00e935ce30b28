"""nni-pl's own tabular benchmark: every architecture of a small NAS-Bench-201-style space, trained on digits.

The space: a cell of 4 nodes whose 6 edges each take one of ``none``, ``skip_connect``, ``linear`` (ReLU then a
16x16 linear layer), between a ``Linear(64, 16)`` stem and a ``Linear(16, 10)`` classifier: 729 architectures,
each trained 12 epochs with 3 seeds on scikit-learn's ``load_digits`` (1078 training, 359 validation, 360 test
images), with the metrics after every epoch. The database ships with nni-pl (generated once by
``python -m nni_pl.nas.benchmarks.digits.db_gen``), so :func:`query_digits_trial_stats` and
:func:`~nni_pl.nas.benchmarks.simulate` work offline, in seconds.

Example:
    >>> from nni_pl.nas.benchmarks.digits import query_digits_trial_stats
    >>> len(list(query_digits_trial_stats(None, reduction="mean")))
    729
"""

from nni_pl.nas.benchmarks.digits.constants import EDGES, LINEAR, NONE, NUM_EPOCHS, OPS, SKIP_CONNECT
from nni_pl.nas.benchmarks.digits.model import DigitsIntermediateStats, DigitsTrialConfig, DigitsTrialStats
from nni_pl.nas.benchmarks.digits.query import DATABASE, query_digits_trial_stats

__all__ = [
    "DATABASE",
    "EDGES",
    "LINEAR",
    "NONE",
    "NUM_EPOCHS",
    "OPS",
    "SKIP_CONNECT",
    "DigitsIntermediateStats",
    "DigitsTrialConfig",
    "DigitsTrialStats",
    "query_digits_trial_stats",
]
