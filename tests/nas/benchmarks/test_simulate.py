"""simulate(): strategies driven through their tuner interface against a table, on the shipped digits benchmark."""

from __future__ import annotations

import math
import statistics
import time

import pytest

from nni_pl._checks import ArgumentError
from nni_pl.nas.benchmarks import Benchmark, get_benchmark, simulate
from nni_pl.nas.strategy import TPE, GridSearch, PolicyBasedRL, Random, RegularizedEvolution

SPACE = {"a": {"_type": "choice", "_value": [0, 1, 2]}, "b": {"_type": "choice", "_value": [0, 1]}}


def toy() -> Benchmark:
    runs = [
        ({"a": a, "b": b}, [(a + b, 10 * (a + b), 1.0), (a + b + 0.5, 10 * (a + b) + 5, 3.0)])
        for a in range(3)
        for b in range(2)
    ]
    runs = [r for r in runs if r[0] != {"a": 2, "b": 1}]  # one architecture the table lacks
    return Benchmark("toy", SPACE, runs)


def test_simulate_returns_trajectory_and_costs() -> None:
    result = simulate(toy(), GridSearch(shuffle=False), max_trials=100, seed=0, reduction="mean")
    assert len(result.trials) == 6  # the grid is exhausted
    assert result.trials[-1].value is None  # {"a": 2, "b": 1} is not in the table: a failed trial
    assert result.trajectory == [
        0.25,
        1.25,
        1.25,
        2.25,
        2.25,
        2.25,
    ]  # a then b, grid order: (0,0), (0,1), (1,0)...
    assert result.test_trajectory[-1] == pytest.approx(22.5)
    assert result.elapsed == [2.0, 4.0, 6.0, 8.0, 10.0, 10.0]
    assert result.best is not None and result.best.arch == {"a": 1, "b": 1}


def test_simulate_sample_picks_recorded_runs_reproducibly() -> None:
    a = simulate(toy(), Random(), max_trials=15, seed=3)
    b = simulate(toy(), Random(), max_trials=15, seed=3)
    assert [t.value for t in a.trials] == [t.value for t in b.trials]
    values = {t.value for t in a.trials if t.value is not None}
    assert any(v != int(v) for v in values) and any(
        v == int(v) for v in values
    )  # both seeds' runs were drawn
    assert all(x <= y for x, y in zip(a.trajectory, a.trajectory[1:]))


def test_simulate_digits_evolution_beats_random_on_average() -> None:
    bench = get_benchmark("digits")
    best_valid, best_test = bench.best()
    start = time.perf_counter()
    finals = {"evolution": [], "random": []}
    for seed in range(6):
        evo = RegularizedEvolution(population_size=10, sample_size=5)
        finals["evolution"].append(
            simulate("digits", evo, max_trials=60, seed=seed, reduction="mean").trajectory[-1]
        )
        finals["random"].append(
            simulate("digits", Random(), max_trials=60, seed=seed, reduction="mean").trajectory[-1]
        )
    elapsed = time.perf_counter() - start
    assert elapsed < 20
    regret = {k: statistics.mean(best_valid - v for v in vs) for k, vs in finals.items()}
    assert regret["evolution"] < regret["random"], regret
    assert all(v <= best_valid + 1e-9 for vs in finals.values() for v in vs)
    assert best_test is not None and 80 < best_test <= 100


@pytest.mark.parametrize("make", [lambda: TPE(n_startup_jobs=5), lambda: PolicyBasedRL(trial_per_collect=4)])
def test_simulate_drives_model_based_strategies(make) -> None:
    result = simulate("digits", make(), max_trials=12, seed=0)
    assert len(result.trials) == 12 and all(t.value is not None for t in result.trials)
    assert not math.isnan(result.trajectory[-1])


def test_simulate_grid_search_finds_the_optimum_of_a_subspace() -> None:
    from nni_pl.nas.benchmarks import query_digits_trial_stats
    from nni_pl.nas.benchmarks.digits import EDGES, OPS

    fixed = {"0_1": "linear", "0_2": "skip_connect", "1_2": "linear"}
    space = {e: {"_type": "choice", "_value": [fixed[e]] if e in fixed else list(OPS)} for e in EDGES}
    result = simulate(space, GridSearch(), max_trials=1000, seed=0, benchmark="digits", reduction="mean")
    assert len(result.trials) == 27
    means = [
        r["valid_acc"]
        for r in query_digits_trial_stats(None, reduction="mean")
        if fixed.items() <= r["config"]["arch"].items()
    ]
    assert len(means) == 27
    assert result.trajectory[-1] == pytest.approx(max(means))


def test_simulate_space_with_prefixed_labels() -> None:
    from nni_pl.nas.benchmarks.digits import EDGES, OPS

    space = {f"cell/{e}": {"_type": "choice", "_value": list(OPS)} for e in EDGES}
    result = simulate(space, Random(), max_trials=5, seed=0, benchmark="digits")
    assert all(t.value is not None for t in result.trials)
    assert set(result.trials[0].arch) == set(space)


def test_simulate_errors_are_named() -> None:
    with pytest.raises(ArgumentError, match=r"simulate\.strategy.*optimize_mode='minimize'"):
        simulate("digits", Random(optimize_mode="minimize"), max_trials=3)
    with pytest.raises(ArgumentError, match=r"simulate\.benchmark.*'cifar'"):
        simulate("cifar", Random(), max_trials=3)
    with pytest.raises(ArgumentError, match=r"simulate\.benchmark.*needs benchmark="):
        simulate(SPACE, Random(), max_trials=3)
    with pytest.raises(ArgumentError, match=r"do not cover the digits keys"):
        simulate(SPACE, Random(), max_trials=3, benchmark="digits")
    with pytest.raises(ArgumentError, match=r"simulate\.max_trials.*0"):
        simulate("digits", Random(), max_trials=0)
    with pytest.raises(ArgumentError, match=r"simulate\.metric.*'top5'"):
        get_benchmark("digits", metric="top5")
