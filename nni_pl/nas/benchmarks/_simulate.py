"""Multi-trial NAS against a benchmark table instead of training: :func:`simulate` (NNI's "simulate" path).

A :class:`Benchmark` is a search space and, for each architecture of it, the recorded training runs (one per
seed). :func:`simulate` drives a strategy through its tuner interface (the one the experiment's manager uses:
``update_search_space``, ``generate_parameters``, ``receive_trial_result``, ``trial_end``) and answers each
proposed architecture from the table, so a whole search takes seconds and its quality can be measured over
many seeds.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nni_pl._checks import check_choice, check_int, check_seed, fail
from nni_pl.errors import NoMoreTrialError, WaitForResults

__all__ = ["Benchmark", "SimulatedTrial", "SimulationResult", "get_benchmark", "simulate"]

_OWNER = "simulate"


@dataclass(frozen=True)
class _Run:
    metric: float | None
    test: float | None
    time: float


class Benchmark:
    """A tabular benchmark: a search space of choices and the recorded runs of its architectures.

    Args:
        name: how it is shown.
        search_space: NNI's JSON search space (one ``choice`` per label).
        runs: per architecture, its runs: ``(metric, test_metric, training_time)`` (``None`` metrics are failed
            runs).
        metric: the name of the metric the strategy sees (e.g. ``"valid_acc"``), ``test_metric`` the one reported
            beside it for the best architecture so far (e.g. ``"test_acc"``).
        optimize_mode: whether bigger or smaller ``metric`` is better.

    Example:
        >>> space = {"op": {"_type": "choice", "_value": ["a", "b"]}}
        >>> bench = Benchmark("toy", space, [({"op": "a"}, [(1.0, 0.9, 10.0)]), ({"op": "b"}, [(2.0, 1.8, 20.0)])])
        >>> bench.runs_of({"op": "b"})[0].test
        1.8
    """

    def __init__(
        self,
        name: str,
        search_space: Mapping[str, Any],
        runs: Iterable[tuple[Mapping[str, Any], Iterable[tuple[float | None, float | None, float]]]],
        *,
        metric: str = "valid_acc",
        test_metric: str = "test_acc",
        optimize_mode: str = "maximize",
    ) -> None:
        self.name = name
        self.search_space = dict(search_space)
        self.metric, self.test_metric = metric, test_metric
        self.optimize_mode = check_choice(
            "Benchmark", "optimize_mode", optimize_mode, ("maximize", "minimize")
        )
        self._runs: dict[str, list[_Run]] = {}
        for arch, rs in runs:
            self._runs.setdefault(_key(arch), []).extend(_Run(*r) for r in rs)

    def __len__(self) -> int:
        return len(self._runs)

    def __repr__(self) -> str:
        return f"Benchmark({self.name!r}, {len(self)} architectures, metric={self.metric!r})"

    def runs_of(self, arch: Mapping[str, Any]) -> list[_Run]:
        """The recorded runs of ``arch`` (``[]`` if the table does not have it)."""
        return self._runs.get(_key(arch), [])

    def best(self) -> tuple[float, float | None]:
        """The best seed-averaged ``metric`` of the table, and that architecture's averaged test metric."""
        sign = 1 if self.optimize_mode == "maximize" else -1
        best = (-math.inf, None)
        for runs in self._runs.values():
            m, t = _mean(r.metric for r in runs), _mean(r.test for r in runs)
            if m is not None and sign * m > best[0]:
                best = (sign * m, t)
        return sign * best[0], best[1]


def _key(arch: Mapping[str, Any]) -> str:
    return json.dumps(dict(arch), sort_keys=True)


def _mean(values: Iterable[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


# ------------------------------------------------------------------------------------------------ built-in tables
def _digits(metric: str, database: str | None) -> Benchmark:
    from nni_pl.nas.benchmarks.digits import EDGES, OPS, query_digits_trial_stats

    return _from_query(
        "digits",
        {e: {"_type": "choice", "_value": list(OPS)} for e in EDGES},
        query_digits_trial_stats(None, None, database=database),
        metric,
    )


def _nasbench201(
    metric: str, database: str | None, dataset: str = "cifar100", num_epochs: int = 200
) -> Benchmark:
    from nni_pl.nas.benchmarks.nasbench201 import EDGES, OPS, query_nb201_trial_stats

    return _from_query(
        f"nasbench201-{dataset}-{num_epochs}",
        {e: {"_type": "choice", "_value": list(OPS)} for e in EDGES},
        query_nb201_trial_stats(None, num_epochs, dataset, database=database),
        metric,
    )


def _from_query(
    name: str, space: dict[str, Any], records: Iterable[dict[str, Any]], metric: str
) -> Benchmark:
    grouped: dict[str, tuple[dict[str, Any], list[tuple[Any, Any, float]]]] = {}
    for r in records:
        if metric not in r:
            fields = sorted(k for k, v in r.items() if isinstance(v, float))
            fail(_OWNER, "metric", f"the {name} records have no {metric!r}; choose one of {fields}")
        arch = r["config"]["arch"]
        entry = grouped.setdefault(_key(arch), (arch, []))
        entry[1].append((r[metric], r.get("test_acc"), r.get("training_time") or 0.0))
    if not grouped:
        fail(_OWNER, "benchmark", f"the {name} database holds no trials for these settings")
    mode = "minimize" if metric.endswith("loss") or metric.endswith("time") else "maximize"
    return Benchmark(name, space, grouped.values(), metric=metric, optimize_mode=mode)


_BUILTIN: dict[str, Callable[..., Benchmark]] = {"digits": _digits, "nasbench201": _nasbench201}


@functools.lru_cache(maxsize=8)
def _cached(name: str, metric: str, database: str | None, options: tuple[tuple[str, Any], ...]) -> Benchmark:
    return _BUILTIN[name](metric, database, **dict(options))


def get_benchmark(
    name: str, *, metric: str = "valid_acc", database: str | os.PathLike[str] | None = None, **options: Any
) -> Benchmark:
    """A built-in benchmark as a :class:`Benchmark` (read once, then cached).

    Args:
        name: ``"digits"`` (shipped) or ``"nasbench201"`` (options ``dataset="cifar100"``, ``num_epochs=200``;
            needs its database).
        metric: the stats field the strategy optimises (``valid_acc``; a ``*_loss`` is minimised).
        database: the database file, where not the default.

    Example:
        >>> bench = get_benchmark("digits")
        >>> len(bench), bench.metric
        (729, 'valid_acc')
    """
    check_choice(_OWNER, "benchmark", name, tuple(_BUILTIN))
    return _cached(name, metric, None if database is None else str(database), tuple(sorted(options.items())))


# ------------------------------------------------------------------------------------------------ the simulation
@dataclass
class SimulatedTrial:
    """One trial of a simulation: the architecture, the metric the strategy saw (``None``: failed, e.g. not in the
    table), that run's test metric and training time."""

    arch: dict[str, Any]
    value: float | None
    test_value: float | None
    training_time: float


@dataclass
class SimulationResult:
    """What :func:`simulate` returns.

    Attributes:
        trials: every trial, in order.
        trajectory: after each trial, the best ``value`` so far (NaN before the first success).
        test_trajectory: after each trial, the test metric of the best-so-far architecture's run.
        elapsed: after each trial, the summed training time of the trials so far (what the search would have
            cost), in seconds.
        benchmark: the table's name; ``optimize_mode``: the direction of ``value``.
    """

    trials: list[SimulatedTrial] = field(default_factory=list)
    trajectory: list[float] = field(default_factory=list)
    test_trajectory: list[float] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)
    benchmark: str = ""
    optimize_mode: str = "maximize"

    @property
    def best(self) -> SimulatedTrial | None:
        """The trial with the best ``value`` (the first of equals), or ``None``."""
        sign = 1 if self.optimize_mode == "maximize" else -1
        done = [t for t in self.trials if t.value is not None]
        return max(done, key=lambda t: sign * t.value) if done else None  # type: ignore[operator]


def simulate(
    space_or_benchmark: Any,
    strategy: Any,
    max_trials: int = 100,
    seed: int | None = None,
    *,
    benchmark: str | Benchmark | None = None,
    reduction: str = "sample",
) -> SimulationResult:
    """Run a multi-trial strategy with results looked up in a benchmark table instead of training.

    The strategy is driven through its tuner interface (a :class:`~nni_pl.nas.strategy.Strategy` is wrapped in
    :class:`~nni_pl.nas.strategy.StrategyTuner`, as ``NasExperiment`` does; an HPO
    :class:`~nni_pl.hpo.Tuner` is used as is), one trial at a time, until ``max_trials`` or the strategy has
    nothing more to propose.

    Args:
        space_or_benchmark: a :class:`Benchmark`, a built-in's name (``"digits"``, ``"nasbench201"``), or a search
            space whose labels end with the benchmark's keys (NNI JSON, or a model space such as
            ``nni_pl.nas.hub.NasBench201``: label ``"cell/0_1"`` is looked up as ``"0_1"``) with ``benchmark=``.
        strategy: a multi-trial strategy (``Random``, ``GridSearch``, ``RegularizedEvolution``, ``TPE``,
            ``PolicyBasedRL``, your own) or a tuner. Its ``optimize_mode`` must be the benchmark's.
        max_trials: the most trials to run.
        seed: replaces a strategy's seed (so the same seed gives the same run; a tuner keeps its own) and picks
            the recorded runs.
        benchmark: the table to look a search space's architectures up in (with a search space only).
        reduction: ``"sample"``: each trial gets one recorded run, picked at random (the noise of real training);
            ``"mean"``: the average over the recorded runs.

    Returns:
        The :class:`SimulationResult`: trials, best-so-far trajectory, its test metric, the summed training time.

    Example:
        >>> from nni_pl.nas.benchmarks import simulate
        >>> from nni_pl.nas.strategy import RegularizedEvolution
        >>> result = simulate("digits", RegularizedEvolution(population_size=10, sample_size=3), max_trials=30, seed=0)
        >>> len(result.trajectory), result.trajectory[-1] >= result.trajectory[0]
        (30, True)
    """
    max_trials = check_int(_OWNER, "max_trials", max_trials, minimum=1)
    seed = check_seed(_OWNER, seed)
    reduction = check_choice(_OWNER, "reduction", reduction, ("sample", "mean"))
    table, space, to_key = _resolve(space_or_benchmark, benchmark)
    tuner = _as_tuner(strategy, seed, table.optimize_mode)
    tuner.update_search_space(space)
    rng = random.Random(seed)
    sign = 1 if table.optimize_mode == "maximize" else -1
    result = SimulationResult(benchmark=table.name, optimize_mode=table.optimize_mode)
    best_value, best_test, spent = -math.inf, math.nan, 0.0
    for parameter_id in range(max_trials):
        try:
            params = tuner.generate_parameters(parameter_id)
        except NoMoreTrialError:
            break
        except WaitForResults:  # one trial at a time: every result is in, so it would wait for ever
            fail(_OWNER, "strategy", f"{type(strategy).__name__} waits for results while none is running")
        runs = table.runs_of(to_key(params))
        value, test, cost = _answer(runs, reduction, rng)
        spent += cost
        if value is None:
            tuner.trial_end(parameter_id, False)
        else:
            tuner.receive_trial_result(parameter_id, params, value)
            tuner.trial_end(parameter_id, True)
            if sign * value > best_value:
                best_value, best_test = sign * value, math.nan if test is None else test
        result.trials.append(SimulatedTrial(dict(params), value, test, cost))
        result.trajectory.append(sign * best_value if math.isfinite(best_value) else math.nan)
        result.test_trajectory.append(best_test)
        result.elapsed.append(spent)
    return result


def _answer(runs: list[_Run], reduction: str, rng: random.Random) -> tuple[float | None, float | None, float]:
    if not runs:
        return None, None, 0.0
    if reduction == "mean":
        return (
            _mean(r.metric for r in runs),
            _mean(r.test for r in runs),
            sum(r.time for r in runs) / len(runs),
        )
    run = runs[rng.randrange(len(runs))]
    return run.metric, run.test, run.time


def _resolve(
    space_or_benchmark: Any, benchmark: str | Benchmark | None
) -> tuple[Benchmark, dict[str, Any], Callable[[Mapping[str, Any]], dict[str, Any]]]:
    def same(arch: Mapping[str, Any]) -> dict[str, Any]:
        return dict(arch)

    if isinstance(space_or_benchmark, (str, Benchmark)):
        if benchmark is not None:
            fail(
                _OWNER,
                "benchmark",
                "give it only with a search space, not with a benchmark as the first argument",
            )
        table = (
            space_or_benchmark
            if isinstance(space_or_benchmark, Benchmark)
            else get_benchmark(space_or_benchmark)
        )
        return table, table.search_space, same
    if benchmark is None:
        fail(
            _OWNER,
            "benchmark",
            f"a search space ({type(space_or_benchmark).__name__}) needs benchmark= naming the table to look its "
            "architectures up in, e.g. benchmark='nasbench201'",
        )
    table = benchmark if isinstance(benchmark, Benchmark) else get_benchmark(benchmark)
    if isinstance(space_or_benchmark, Mapping):
        space = dict(space_or_benchmark)
    elif hasattr(space_or_benchmark, "named_modules"):  # a model space
        from nni_pl.nas.space import search_space_of

        space = search_space_of(space_or_benchmark)
    else:
        fail(
            _OWNER,
            "space_or_benchmark",
            f"must be a Benchmark, a benchmark name, a search space dict or a model space, got {space_or_benchmark!r}",
        )
    keys = {label: label.rsplit("/", 1)[-1] for label in space}
    missing = sorted(set(table.search_space) - set(keys.values()))
    if missing:
        fail(
            _OWNER,
            "space_or_benchmark",
            f"the space's labels {sorted(space)} do not cover the {table.name} keys {missing}; "
            f"name the choices so their labels end with {sorted(table.search_space)}",
        )

    def to_key(arch: Mapping[str, Any]) -> dict[str, Any]:
        return {keys[k]: v for k, v in arch.items() if keys.get(k) in table.search_space}

    return table, space, to_key


def _as_tuner(strategy: Any, seed: int | None, mode: str) -> Any:
    from nni_pl.hpo import Tuner
    from nni_pl.nas.strategy import Strategy, StrategyTuner

    if isinstance(strategy, Strategy):
        if strategy.optimize_mode != mode:
            fail(
                _OWNER,
                "strategy",
                f"{type(strategy).__name__} has optimize_mode={strategy.optimize_mode!r} but the benchmark's metric "
                f"is to {mode}; build it with optimize_mode={mode!r}",
            )
        if seed is not None:
            strategy.seed = seed
        return StrategyTuner(strategy=strategy, optimize_mode=mode)
    if isinstance(strategy, Tuner):  # a tuner keeps its own seed
        return strategy
    fail(
        _OWNER,
        "strategy",
        f"must be a NAS strategy (e.g. RegularizedEvolution()) or a tuner, got {strategy!r}",
    )
