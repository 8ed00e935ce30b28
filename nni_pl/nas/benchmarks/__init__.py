"""NAS benchmarks: NAS-Bench-101, NAS-Bench-201, NDS and nni-pl's own digits table, queried in NNI's record format,
and :func:`simulate`, which runs a multi-trial strategy against a table instead of training.

The databases are SQLite files found in ``$NASBENCHMARK_DIR`` (default ``~/.nni/nasbenchmark``) or given by path
(``database=``); each benchmark's ``db_gen`` module converts its official release into one. The digits table ships
with nni-pl. Query modules import peewee only (no torch).

Example:
    >>> from nni_pl.nas.benchmarks import simulate
    >>> from nni_pl.nas.strategy import Random
    >>> result = simulate("digits", Random(), max_trials=20, seed=1)
    >>> round(result.trajectory[-1], 1) >= round(result.trajectory[0], 1)
    True
"""

from nni_pl.nas.benchmarks._db import DEFAULT_DIR, BenchmarkNotFoundError, benchmark_dir, database_path
from nni_pl.nas.benchmarks._simulate import (
    Benchmark,
    SimulatedTrial,
    SimulationResult,
    get_benchmark,
    simulate,
)
from nni_pl.nas.benchmarks.digits import query_digits_trial_stats
from nni_pl.nas.benchmarks.nasbench101 import query_nb101_trial_stats
from nni_pl.nas.benchmarks.nasbench201 import query_nb201_trial_stats
from nni_pl.nas.benchmarks.nds import query_nds_trial_stats

__all__ = [
    "DEFAULT_DIR",
    "Benchmark",
    "BenchmarkNotFoundError",
    "SimulatedTrial",
    "SimulationResult",
    "benchmark_dir",
    "database_path",
    "get_benchmark",
    "query_digits_trial_stats",
    "query_nb101_trial_stats",
    "query_nb201_trial_stats",
    "query_nds_trial_stats",
    "simulate",
]
