"""Querying NAS-Bench-101: :func:`query_nb101_trial_stats`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from nni_pl._checks import check_bool, check_int
from nni_pl.nas.benchmarks._db import check_reduction, open_benchmark, run_query
from nni_pl.nas.benchmarks.nasbench101.graph_util import check_arch, hash_module, infer_num_vertices
from nni_pl.nas.benchmarks.nasbench101.model import Nb101IntermediateStats, Nb101TrialConfig, Nb101TrialStats

__all__ = ["query_nb101_trial_stats"]

_OWNER = "query_nb101_trial_stats"


def query_nb101_trial_stats(
    arch: Mapping[str, Any] | None,
    num_epochs: int | None,
    isomorphism: bool = True,
    reduction: str | None = None,
    include_intermediates: bool = False,
    *,
    database: str | os.PathLike[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """The trials of NAS-Bench-101 that match, as dicts in NNI's record format.

    Args:
        arch: ``{"op1": ..., "input1": [0], ...}`` (see :class:`~nni_pl.nas.benchmarks.nasbench101.Nb101TrialConfig`);
            ``None`` matches every architecture.
        num_epochs: 4, 12, 36 or 108; ``None`` matches all.
        isomorphism: match every cell with the same graph-invariant hash (isomorphic cells), not only the same
            dict.
        reduction: ``None`` (or ``"none"``): one record per training run; ``"mean"``: one per config, averaged
            (no ``id``).
        include_intermediates: add ``intermediates`` (half-way and final evaluation).
        database: the database file (or its folder); default ``$NASBENCHMARK_DIR/nasbench101.db``.

    Returns:
        A generator of dicts: ``id``, ``config`` (``arch``, ``num_vertices``, ``hash``, ``num_epochs``, ``id``)
        and the fields of :class:`~nni_pl.nas.benchmarks.nasbench101.Nb101TrialStats`.

    Raises:
        BenchmarkNotFoundError: the database file is missing (the message says how to generate it).
        ArgumentError: an argument is invalid.

    Example:
        >>> from nni_pl.nas.benchmarks.nasbench101 import query_nb101_trial_stats
        >>> arch = {"op1": "conv3x3-bn-relu", "op2": "maxpool3x3", "op3": "conv3x3-bn-relu",
        ...         "op4": "conv3x3-bn-relu", "op5": "conv1x1-bn-relu", "input1": [0], "input2": [1],
        ...         "input3": [2], "input4": [0], "input5": [0, 3, 4], "input6": [2, 5]}
        >>> for t in query_nb101_trial_stats(arch, 108, include_intermediates=True):  # doctest: +SKIP
        ...     print(t["valid_acc"], len(t["intermediates"]))
    """
    conditions = []
    isomorphism = check_bool(_OWNER, "isomorphism", isomorphism)
    if arch is not None:
        arch = check_arch(arch, _OWNER)
        if isomorphism:
            conditions.append(Nb101TrialConfig.hash == hash_module(arch, infer_num_vertices(arch)))
        else:
            conditions.append(Nb101TrialConfig.arch == arch)
    if num_epochs is not None:
        conditions.append(
            Nb101TrialConfig.num_epochs == check_int(_OWNER, "num_epochs", num_epochs, minimum=1)
        )
    reduction = check_reduction(_OWNER, reduction)
    include = check_bool(_OWNER, "include_intermediates", include_intermediates)
    db = open_benchmark("nasbench101", database)
    return run_query(
        db, Nb101TrialStats, Nb101TrialConfig, Nb101IntermediateStats, conditions, reduction, include
    )
