"""Querying the digits benchmark: :func:`query_digits_trial_stats`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from nni_pl._checks import check_bool, check_int, fail
from nni_pl.nas.benchmarks._db import check_reduction, open_benchmark, run_query
from nni_pl.nas.benchmarks.digits.constants import EDGES, OPS
from nni_pl.nas.benchmarks.digits.model import DigitsIntermediateStats, DigitsTrialConfig, DigitsTrialStats

__all__ = ["DATABASE", "query_digits_trial_stats"]

_OWNER = "query_digits_trial_stats"

#: the database shipped with nni-pl.
DATABASE = Path(__file__).with_name("digits.db")


def query_digits_trial_stats(
    arch: Mapping[str, str] | None,
    num_epochs: int | None = None,
    reduction: str | None = None,
    include_intermediates: bool = False,
    *,
    database: str | os.PathLike[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """The trials of the digits benchmark that match, as dicts in NAS-Bench-201's record format.

    Args:
        arch: ``{"0_1": op, "0_2": op, "0_3": op, "1_2": op, "1_3": op, "2_3": op}`` with ops of
            :data:`~nni_pl.nas.benchmarks.digits.OPS` (``none``, ``skip_connect``, ``linear``); ``None`` matches all.
        num_epochs: 12 (the one schedule); ``None`` matches it.
        reduction: ``None`` (or ``"none"``): one record per seed; ``"mean"``: one per architecture, averaged
            over the three seeds (no ``id``, no ``seed``).
        include_intermediates: add ``intermediates``, the metrics after each epoch.
        database: another database file in this format; default: the one shipped with nni-pl.

    Example:
        >>> from nni_pl.nas.benchmarks.digits import query_digits_trial_stats
        >>> arch = {"0_1": "linear", "0_2": "skip_connect", "0_3": "none",
        ...         "1_2": "linear", "1_3": "skip_connect", "2_3": "linear"}
        >>> runs = list(query_digits_trial_stats(arch, include_intermediates=True))
        >>> [r["seed"] for r in runs], len(runs[0]["intermediates"]), runs[0]["config"]["dataset"]
        ([0, 1, 2], 12, 'digits')
        >>> mean = next(query_digits_trial_stats(arch, reduction="mean"))
        >>> 80 < mean["valid_acc"] <= 100
        True
    """
    conditions = []
    if arch is not None:
        conditions.append(DigitsTrialConfig.arch == check_arch(arch))
    if num_epochs is not None:
        conditions.append(
            DigitsTrialConfig.num_epochs == check_int(_OWNER, "num_epochs", num_epochs, minimum=1)
        )
    reduction = check_reduction(_OWNER, reduction)
    include = check_bool(_OWNER, "include_intermediates", include_intermediates)
    db = open_benchmark("digits", DATABASE if database is None else database)
    return run_query(
        db, DigitsTrialStats, DigitsTrialConfig, DigitsIntermediateStats, conditions, reduction, include
    )


def check_arch(arch: Any, owner: str = _OWNER) -> dict[str, str]:
    """``arch`` as a plain dict if it names an op of :data:`OPS` for each of the six edges."""
    if not isinstance(arch, Mapping) or set(arch) != set(EDGES) or any(v not in OPS for v in arch.values()):
        fail(owner, "arch", f"must map each of the edges {list(EDGES)} to one of {list(OPS)}, got {arch!r}")
    return dict(arch)
