"""Querying NAS-Bench-201: :func:`query_nb201_trial_stats`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from nni_pl._checks import check_bool, check_choice, check_int, fail
from nni_pl.nas.benchmarks._db import check_reduction, open_benchmark, run_query
from nni_pl.nas.benchmarks.nasbench201.constants import DATASETS, EDGES, OPS
from nni_pl.nas.benchmarks.nasbench201.model import Nb201IntermediateStats, Nb201TrialConfig, Nb201TrialStats

__all__ = ["query_nb201_trial_stats"]

_OWNER = "query_nb201_trial_stats"


def query_nb201_trial_stats(
    arch: Mapping[str, str] | None,
    num_epochs: int | None,
    dataset: str | None,
    reduction: str | None = None,
    include_intermediates: bool = False,
    *,
    database: str | os.PathLike[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """The trials of NAS-Bench-201 that match, as dicts in NNI's record format.

    Args:
        arch: ``{"0_1": op, "0_2": op, "0_3": op, "1_2": op, "1_3": op, "2_3": op}`` with ops of
            :data:`~nni_pl.nas.benchmarks.nasbench201.OPS`; ``None`` matches every architecture.
        num_epochs: 12 or 200; ``None`` matches both.
        dataset: ``cifar10-valid``, ``cifar10``, ``cifar100`` or ``imagenet16-120``; ``None`` matches all.
        reduction: ``None`` (or ``"none"``): one record per trial (seed); ``"mean"``: one per config, the
            stats averaged over its seeds (no ``id``, no ``seed``).
        include_intermediates: add ``intermediates``, the per-epoch records (averaged per epoch with ``"mean"``).
        database: the database file (or its folder); default ``$NASBENCHMARK_DIR/nasbench201.db``
            (``~/.nni/nasbenchmark``).

    Returns:
        A generator of dicts: ``id``, ``config`` (``arch``, ``num_epochs``, ``num_channels``, ``num_cells``,
        ``dataset``, ``id``), ``seed`` and the fields of :class:`~nni_pl.nas.benchmarks.nasbench201.Nb201TrialStats`.

    Raises:
        BenchmarkNotFoundError: the database file is missing (the message says how to generate it).
        ArgumentError: an argument is invalid.

    Example:
        >>> from nni_pl.nas.benchmarks.nasbench201 import query_nb201_trial_stats
        >>> arch = {"0_1": "avg_pool_3x3", "0_2": "conv_1x1", "1_2": "skip_connect",
        ...         "0_3": "conv_1x1", "1_3": "skip_connect", "2_3": "skip_connect"}
        >>> for t in query_nb201_trial_stats(arch, 200, "cifar100"):  # doctest: +SKIP
        ...     print(t["config"]["dataset"], t["seed"], t["test_acc"])
    """
    conditions = []
    if arch is not None:
        conditions.append(Nb201TrialConfig.arch == check_arch(arch))
    if num_epochs is not None:
        conditions.append(
            Nb201TrialConfig.num_epochs == check_int(_OWNER, "num_epochs", num_epochs, minimum=1)
        )
    if dataset is not None:
        conditions.append(Nb201TrialConfig.dataset == check_choice(_OWNER, "dataset", dataset, DATASETS))
    reduction = check_reduction(_OWNER, reduction)
    include = check_bool(_OWNER, "include_intermediates", include_intermediates)
    db = open_benchmark("nasbench201", database)
    return run_query(
        db, Nb201TrialStats, Nb201TrialConfig, Nb201IntermediateStats, conditions, reduction, include
    )


def check_arch(arch: Any, owner: str = _OWNER) -> dict[str, str]:
    """``arch`` as a plain dict if it names an op of :data:`OPS` for each of the six edges."""
    if not isinstance(arch, Mapping) or set(arch) != set(EDGES) or any(v not in OPS for v in arch.values()):
        fail(
            owner,
            "arch",
            f"must map each of the edges {list(EDGES)} to one of {list(OPS)}, got {arch!r}",
        )
    return dict(arch)
