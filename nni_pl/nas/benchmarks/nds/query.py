"""Querying NDS: :func:`query_nds_trial_stats`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from nni_pl._checks import check_bool, check_choice, check_int, fail
from nni_pl.nas.benchmarks._db import check_reduction, open_benchmark, run_query
from nni_pl.nas.benchmarks.nds.constants import DATASETS, GENERATORS, MODEL_FAMILIES, PROPOSERS
from nni_pl.nas.benchmarks.nds.model import NdsIntermediateStats, NdsTrialConfig, NdsTrialStats

__all__ = ["query_nds_trial_stats"]

_OWNER = "query_nds_trial_stats"


def query_nds_trial_stats(
    model_family: str | None,
    proposer: str | None,
    generator: str | None,
    model_spec: Mapping[str, Any] | None,
    cell_spec: Mapping[str, Any] | None,
    dataset: str | None,
    num_epochs: int | None = None,
    reduction: str | None = None,
    include_intermediates: bool = False,
    *,
    database: str | os.PathLike[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """The trials of NDS that match, as dicts in NNI's record format; ``None`` is a wildcard for any argument.

    Args:
        model_family: ``nas_cell``, ``residual_bottleneck``, ``residual_basic`` or ``vanilla``.
        proposer: ``nasnet``, ``darts``, ``enas``, ``pnas``, ``amoeba``, ``vanilla``, ``resnext-a``, ``resnext-b``,
            ``resnet`` or ``resnet-b``.
        generator: ``random``, ``fix_w_d`` or ``tune_lr_wd``.
        model_spec: the whole model spec (see :class:`~nni_pl.nas.benchmarks.nds.NdsTrialConfig`).
        cell_spec: the whole cell spec (``{}`` for the families without cells).
        dataset: ``cifar10`` or ``imagenet``.
        num_epochs: epochs of training.
        reduction: ``None`` (or ``"none"``): one record per trial; ``"mean"``: one per config, averaged (no ``id``,
            ``seed``).
        include_intermediates: add ``intermediates``, the per-epoch records.
        database: the database file (or its folder); default ``$NASBENCHMARK_DIR/nds.db``.

    Raises:
        BenchmarkNotFoundError: the database file is missing (the message says how to generate it).
        ArgumentError: an argument is invalid.

    Example:
        >>> from nni_pl.nas.benchmarks.nds import query_nds_trial_stats
        >>> model_spec = {"ds": [1, 12, 12, 12], "ss": [1, 1, 2, 2], "ws": [16, 24, 24, 40]}
        >>> for t in query_nds_trial_stats("residual_basic", "resnet", "random", model_spec, {}, "cifar10"):  # doctest: +SKIP
        ...     print(t["final_test_acc"])
    """
    conditions = []
    for name, value, options in (
        ("model_family", model_family, MODEL_FAMILIES),
        ("proposer", proposer, PROPOSERS),
        ("generator", generator, GENERATORS),
        ("dataset", dataset, DATASETS),
    ):
        if value is not None:
            conditions.append(getattr(NdsTrialConfig, name) == check_choice(_OWNER, name, value, options))
    for name, spec in (("model_spec", model_spec), ("cell_spec", cell_spec)):
        if spec is not None:
            if not isinstance(spec, Mapping):
                fail(_OWNER, name, f"must be a dict (or None for any), got {spec!r}")
            conditions.append(getattr(NdsTrialConfig, name) == dict(spec))
    if num_epochs is not None:
        conditions.append(NdsTrialConfig.num_epochs == check_int(_OWNER, "num_epochs", num_epochs, minimum=1))
    reduction = check_reduction(_OWNER, reduction)
    include = check_bool(_OWNER, "include_intermediates", include_intermediates)
    db = open_benchmark("nds", database)
    return run_query(db, NdsTrialStats, NdsTrialConfig, NdsIntermediateStats, conditions, reduction, include)
