"""Strategy sanity on toy spaces: exhaustion, dedup, seeds, and model-based beating random on average."""

from __future__ import annotations

import itertools
import math
import re
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest

from nni_pl.errors import ConfigError, NoMoreTrialError, SearchSpaceError, WaitForResults
from nni_pl.hpo import HistoryEntry, create_algorithm
from nni_pl.nas.strategy import (
    TPE,
    GridSearch,
    PolicyBasedRL,
    Random,
    RegularizedEvolution,
    Strategy,
    StrategyTuner,
    TunerBackedStrategy,
    simulate,
)

SMALL = {
    "op": {"_type": "choice", "_value": ["conv3", "conv5", "pool"]},
    "width": {"_type": "choice", "_value": [16, 32]},
    "inputs": {"_type": "choice", "_value": [[0], [1], [0, 1]]},
}

# 6 labels x 5 options (15,625 architectures); the score rewards one hidden option per label, plus a pair bonus
_rng = np.random.default_rng(123)
_TABLE = _rng.random((6, 5))
TOY = {f"l{i}": {"_type": "choice", "_value": [f"o{j}" for j in range(5)]} for i in range(6)}


def toy(arch: dict) -> float:
    idx = [int(arch[f"l{i}"][1:]) for i in range(6)]
    score = sum(_TABLE[i, j] for i, j in enumerate(idx))
    return float(score + (0.5 if idx[0] == idx[1] else 0.0))


def key(arch: dict) -> str:
    return repr(sorted(arch.items()))


def test_grid_exhausts_without_duplicates() -> None:
    runs = simulate(GridSearch(), SMALL, lambda a: 0.0, budget=100, seed=0)
    assert len(runs) == 18
    assert len({key(a) for a, _ in runs}) == 18


def test_grid_shuffle_is_seeded_and_grid_order_without_shuffle() -> None:
    a = [x for x, _ in simulate(GridSearch(), SMALL, lambda a: 0.0, budget=18, seed=1)]
    b = [x for x, _ in simulate(GridSearch(), SMALL, lambda a: 0.0, budget=18, seed=1)]
    c = [x for x, _ in simulate(GridSearch(), SMALL, lambda a: 0.0, budget=18, seed=2)]
    assert a == b and a != c
    plain = [x for x, _ in simulate(GridSearch(shuffle=False), SMALL, lambda a: 0.0, budget=2)]
    assert plain == [
        {"op": "conv3", "width": 16, "inputs": [0]},
        {"op": "conv3", "width": 16, "inputs": [1]},
    ]


def test_grid_rejects_infinite_space() -> None:
    space = {"lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]}}
    with pytest.raises(SearchSpaceError, match=r"'lr'.*finite"):
        simulate(GridSearch(), space, lambda a: 0.0, budget=3)


@pytest.mark.parametrize(
    "make", [lambda: Random(dedup=True), lambda: RegularizedEvolution(population_size=4, sample_size=2)]
)
def test_dedup_exhausts_a_finite_space(make) -> None:
    runs = simulate(make(), SMALL, lambda a: float(a["width"]), budget=50, seed=3)
    assert len(runs) == 18
    assert len({key(a) for a, _ in runs}) == 18


def test_tpe_exhausts_without_duplicates() -> None:
    runs = simulate(TPE(n_startup_jobs=3), SMALL, lambda a: float(a["width"]), budget=50, seed=3)
    assert len(runs) == 18 and len({key(a) for a, _ in runs}) == 18


def test_random_without_dedup_repeats() -> None:
    runs = simulate(Random(dedup=False), {"op": SMALL["op"]}, lambda a: 0.0, budget=20, seed=0)
    assert len(runs) == 20
    assert len({key(a) for a, _ in runs}) == 3


@pytest.mark.parametrize(
    "make",
    [
        lambda: Random(),
        lambda: GridSearch(),
        lambda: RegularizedEvolution(population_size=5, sample_size=3, mutation_prob=0.3),
        lambda: TPE(n_startup_jobs=5),
    ],
)
def test_same_seed_same_run(make) -> None:
    a = simulate(make(), TOY, toy, budget=15, seed=7)
    b = simulate(make(), TOY, toy, budget=15, seed=7)
    c = simulate(make(), TOY, toy, budget=15, seed=8)
    assert a == b
    assert a != c


def _mean_best(make, budget: int, seeds: range) -> float:
    return float(
        np.mean([max(v for _, v in simulate(make(), TOY, toy, budget=budget, seed=s)) for s in seeds])
    )


def test_evolution_and_tpe_beat_random_on_average() -> None:
    seeds = range(12)
    rand = _mean_best(lambda: Random(), 40, seeds)
    evo = _mean_best(
        lambda: RegularizedEvolution(population_size=10, sample_size=4, mutation_prob=0.2), 40, seeds
    )
    tpe = _mean_best(lambda: TPE(n_startup_jobs=8), 40, seeds)
    assert evo > rand, (evo, rand)
    assert tpe > rand, (tpe, rand)


def test_evolution_population_ages_and_parent_is_tournament_best() -> None:
    s = RegularizedEvolution(population_size=3, sample_size=3, mutation_prob=1.0, dedup=False, seed=0)
    s.setup({"x": {"_type": "choice", "_value": list(range(10))}})
    for i, x in enumerate([1, 9, 5, 2]):
        s.tell(i, float(x), arch={"x": x})
    assert [r.arch["x"] for r in s.population(s.history)] == [9, 5, 2]  # the oldest (1) left
    assert s.score(max(s.population(s.history), key=s.score)) == 9.0


def test_evolution_on_failure_worst_keeps_failed_members() -> None:
    s = RegularizedEvolution(population_size=4, sample_size=2, on_failure="worst", seed=0)
    s.setup(SMALL)
    s.tell(0, None, arch={"op": "pool", "width": 16, "inputs": [0]})
    s.tell(1, 1.0, arch={"op": "pool", "width": 32, "inputs": [0]})
    pop = s.population(s.history)
    assert len(pop) == 2 and s.score(pop[0]) == -math.inf
    ignore = RegularizedEvolution(population_size=4, sample_size=2, seed=0)
    ignore.setup(SMALL)
    ignore.tell(0, None, arch={"op": "pool", "width": 16, "inputs": [0]})
    assert ignore.population(ignore.history) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sample_size": 30, "population_size": 10}, "sample_size"),
        ({"mutation_prob": 1.5}, "mutation_prob"),
        ({"on_failure": "retry"}, "on_failure"),
        ({"population_size": 0}, "population_size"),
    ],
)
def test_evolution_argument_errors(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        RegularizedEvolution(**kwargs)


def test_minimize_mode() -> None:
    runs = simulate(
        RegularizedEvolution(population_size=6, sample_size=3, mutation_prob=0.3, optimize_mode="minimize"),
        TOY,
        lambda a: -toy(a),
        budget=40,
        seed=0,
    )
    rand = simulate(Random(), TOY, lambda a: -toy(a), budget=40, seed=0)
    assert min(v for _, v in runs) <= min(v for _, v in rand) + 0.5


def test_failed_evaluations_count_and_are_recorded() -> None:
    def fn(arch):
        if arch["op"] == "pool":
            raise RuntimeError("shape mismatch")
        return 1.0

    runs = simulate(Random(), SMALL, fn, budget=18, seed=0)
    assert len(runs) == 18
    assert sum(v is None for _, v in runs) == 6


def test_policy_based_rl_learns_in_batches_and_stops_after_max_collect() -> None:
    space = {
        "a": {"_type": "choice", "_value": [0, 1, 2, 3]},
        "b": {"_type": "choice", "_value": [0, 1, 2, 3]},
    }
    strategy = PolicyBasedRL(max_collect=2, trial_per_collect=3, ppo_args={"epochs_per_update": 1}, seed=0)
    runs = simulate(strategy, space, lambda a: float(a["a"] + a["b"]), budget=100, seed=0)
    assert len(runs) == 6
    assert strategy._tuner.updates == 2
    again = simulate(
        PolicyBasedRL(max_collect=2, trial_per_collect=3, ppo_args={"epochs_per_update": 1}),
        space,
        lambda a: float(a["a"] + a["b"]),
        budget=100,
        seed=0,
    )
    assert runs == again


def test_policy_based_rl_waits_for_its_batch() -> None:
    tuner = StrategyTuner(strategy=PolicyBasedRL(trial_per_collect=2, seed=0))
    tuner.update_search_space(SMALL)
    tuner.generate_parameters(0)
    tuner.generate_parameters(1)
    with pytest.raises(WaitForResults):
        tuner.generate_parameters(2)


def test_strategy_tuner_drives_ask_tell_and_exhausts() -> None:
    tuner = StrategyTuner(strategy=GridSearch(shuffle=False).to_config())
    tuner.update_search_space({"op": SMALL["op"]})
    archs = [tuner.generate_parameters(i) for i in range(3)]
    assert [a["op"] for a in archs] == ["conv3", "conv5", "pool"]
    tuner.receive_trial_result(0, archs[0], {"default": 0.5, "loss": 1.0})
    tuner.trial_end(0, True)
    tuner.trial_end(1, False)
    with pytest.raises(NoMoreTrialError):
        tuner.generate_parameters(3)
    h = tuner.strategy.history
    assert [r.status for r in h] == ["succeeded", "failed", "running"]
    assert h[0].value == 0.5


def test_strategy_tuner_resume_rebuilds_history_and_dedups() -> None:
    tuner = StrategyTuner(strategy=Random(seed=0).to_config())
    tuner.update_search_space({"op": SMALL["op"]})
    tuner.resume(
        [
            HistoryEntry(0, {"op": "conv3"}, 0.1),
            HistoryEntry(1, {"op": "pool"}, None, finished=False),  # re-run by the engine
            HistoryEntry(None, {"op": "conv5"}, 0.3, source="customized"),
        ]
    )
    # the unfinished trial comes back as running: the engine re-runs it, so it is never proposed again
    assert sorted(r.arch["op"] for r in tuner.strategy.history) == ["conv3", "conv5", "pool"]
    with pytest.raises(NoMoreTrialError):
        tuner.generate_parameters(2)
    tuner.receive_trial_result(1, {"op": "pool"}, 0.2)  # the re-run of trial 1 reports under its old id
    pool = tuner.strategy.record_of(1)
    assert pool is not None and pool.status == "succeeded" and pool.value == 0.2
    assert len(tuner.strategy.history) == 3


def test_strategy_tuner_checks_optimize_mode_and_config() -> None:
    with pytest.raises(ConfigError, match="optimize_mode"):
        StrategyTuner(strategy=Random(optimize_mode="minimize"), optimize_mode="maximize")
    with pytest.raises(ConfigError, match="strategy"):
        StrategyTuner(strategy={"kwargs": {}})
    with pytest.raises(ConfigError, match="not a Strategy"):
        Strategy.from_config({"class": "nni_pl.hpo.tuners.tpe:TPETuner"})


@pytest.mark.parametrize(
    "strategy",
    [
        Random(dedup=False, seed=3),
        GridSearch(shuffle=False),
        RegularizedEvolution(population_size=7, sample_size=2, seed=1),
        TPE(n_startup_jobs=4, tpe_args={"multivariate": False}),
        PolicyBasedRL(max_collect=2, trial_per_collect=3),
    ],
)
def test_to_config_round_trip(strategy) -> None:
    cfg = strategy.to_config()
    again = Strategy.from_config(cfg)
    assert type(again) is type(strategy)
    assert again.to_config() == cfg


def test_custom_strategy_overrides_only_propose() -> None:
    class Cycle(Strategy):
        def propose(self, history):
            options = self.space["op"].options
            return {"op": options[len(history) % len(options)]} if len(history) < 4 else None

    runs = simulate(Cycle(), {"op": SMALL["op"]}, lambda a: 1.0, budget=10)
    assert [a["op"] for a, _ in runs] == ["conv3", "conv5", "pool", "conv3"]


def test_nested_choice_is_rejected() -> None:
    space = {
        "opt": {"_type": "choice", "_value": [{"_name": "sgd", "lr": {"_type": "choice", "_value": [0.1]}}]}
    }
    with pytest.raises(SearchSpaceError, match="nested"):
        simulate(Random(), space, lambda a: 0.0, budget=2)


def test_random_and_tpe_accept_continuous_evaluator_arguments() -> None:
    space = {"op": SMALL["op"], "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]}}
    for strategy in (Random(), TPE(n_startup_jobs=2)):
        runs = simulate(strategy, space, lambda a: -abs(math.log10(a["lr"]) + 2), budget=6, seed=0)
        assert len(runs) == 6 and all(1e-4 <= a["lr"] <= 1e-1 for a, _ in runs)


# --- architecture filter (constraints between choices, NNI's model_filter) ------------------------------------------
def _no_pool_wide(arch: dict) -> bool:
    return not (arch["op"] == "pool" and arch["width"] == 32)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Random(),
        lambda: GridSearch(),
        lambda: RegularizedEvolution(population_size=4, sample_size=2),
        lambda: TPE(n_startup_jobs=3),
        lambda: PolicyBasedRL(trial_per_collect=3, ppo_args={"epochs_per_update": 1}),
    ],
)
def test_rejected_architectures_never_run(make) -> None:
    strategy = make()
    strategy.arch_filter = _no_pool_wide
    runs = simulate(strategy, SMALL, lambda a: float(a["width"]), budget=15, seed=0)
    assert len(runs) == 15
    assert all(_no_pool_wide(a) for a, _ in runs)
    rejected = [r for r in strategy.history if r.trial_id is None]
    assert all(r.status == "failed" and not _no_pool_wide(r.arch) for r in rejected)


def test_dedup_strategies_exhaust_the_valid_architectures() -> None:
    strategy = Random()
    strategy.arch_filter = _no_pool_wide
    runs = simulate(strategy, SMALL, lambda a: 0.0, budget=100, seed=0)
    assert len(runs) == 15 and len({key(a) for a, _ in runs}) == 15


def test_filter_that_rejects_everything_ends_the_search() -> None:
    strategy = Random(dedup=False)
    strategy.arch_filter = lambda arch: False
    strategy.max_rejections = 20
    assert simulate(strategy, SMALL, lambda a: 0.0, budget=5, seed=0) == []


# --- the NAS/HPO seam: light imports, argument names, the tuner-backed base -----------------------------------


def test_strategy_import_and_nas_manager_need_no_torch() -> None:
    # what a NAS experiment's manager process does: import the strategies, build StrategyTuner from the
    # stored config, propose and learn; only PolicyBasedRL (its policy) or a constrained space need torch
    code = textwrap.dedent(
        """
        import sys
        import nni_pl.nas.strategy
        heavy = lambda: sorted({"torch", "numpy", "lightning"} & set(sys.modules))
        print(heavy())
        from nni_pl.hpo import create_algorithm
        from nni_pl.nas.strategy import RegularizedEvolution
        strategy = RegularizedEvolution(population_size=2, sample_size=1, seed=0)
        tuner = create_algorithm(
            "tuner",
            class_name="nni_pl.nas.strategy.StrategyTuner",
            class_args={"strategy": strategy.to_config(), "optimize_mode": "maximize"},
        )
        tuner.update_search_space({"op": {"_type": "choice", "_value": ["conv", "pool", "skip"]}})
        for i in range(3):
            tuner.receive_trial_result(i, tuner.generate_parameters(i), float(i))
        print(heavy())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out == ["[]", "['numpy']"]  # numpy for the strategy's random stream, once it runs


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: RegularizedEvolution(population_size=0), "RegularizedEvolution.population_size"),
        (lambda: RegularizedEvolution(on_failure="retry"), "RegularizedEvolution.on_failure"),
        (lambda: Random(dedup=1), "Random.dedup"),
        (lambda: GridSearch(seed=-1), "GridSearch.seed"),
        (lambda: TPE(optimize_mode="max"), "TPE.optimize_mode"),
        (lambda: TPE(n_startup_jobs=-1), "TPE.n_startup_jobs"),
        (lambda: TPE(tpe_args={"constant_liar_type": "median"}), "TPE.tpe_args.constant_liar_type"),
        (lambda: PolicyBasedRL(ppo_args={"lr": 0}), "PolicyBasedRL.ppo_args.lr"),
    ],
)
def test_strategy_argument_errors_name_the_class_argument(make, field) -> None:
    with pytest.raises(ConfigError, match=rf"^argument '{re.escape(field)}': ") as info:
        make()
    assert info.value.field == field and "classArgs" not in str(info.value)


def test_strategy_argument_error_from_a_config_names_the_config_field() -> None:
    config = RegularizedEvolution().to_config()
    config["kwargs"]["population_size"] = 0
    with pytest.raises(
        ConfigError, match=r"'strategy\.kwargs\.population_size': must be an integer >= 1, got 0"
    ):
        Strategy.from_config(config)
    with pytest.raises(ConfigError, match=r"'StrategyTuner\.strategy\.kwargs\.population_size'"):
        StrategyTuner(strategy=config)
    with pytest.raises(
        ConfigError, match=r"config field 'tuner\.classArgs\.strategy\.kwargs\.population_size': must be"
    ):
        create_algorithm(
            "tuner",
            class_name="nni_pl.nas.strategy.StrategyTuner",
            class_args={"strategy": config, "optimize_mode": "maximize"},
        )
    with pytest.raises(ConfigError, match=r"'tuner\.classArgs\.strategy\.class'.*has no class 'Nope'"):
        create_algorithm(
            "tuner",
            class_name="nni_pl.nas.strategy.StrategyTuner",
            class_args={"strategy": {"class": "nni_pl.nas.strategy:Nope"}, "optimize_mode": "maximize"},
        )
    with pytest.raises(
        ConfigError, match=r"'strategy\.kwargs'.*unexpected keyword argument 'populaton_size'"
    ):
        Strategy.from_config(
            {"class": "nni_pl.nas.strategy:RegularizedEvolution", "kwargs": {"populaton_size": 3}}
        )


class _AnnealStrategy(TunerBackedStrategy):
    """Any HPO tuner as a strategy: override make_tuner only."""

    def __init__(self, *, optimize_mode: str = "maximize", seed: int | None = None) -> None:
        super().__init__(optimize_mode=optimize_mode, seed=seed)
        self.build_tuner()

    def make_tuner(self) -> Any:
        from nni_pl.hpo.tuners import AnnealTuner

        return AnnealTuner(optimize_mode=self.optimize_mode, seed=self.seed)


def test_tuner_backed_strategy_learns_from_every_result_and_ends_with_the_space() -> None:
    strategy = _AnnealStrategy(seed=0)
    runs = simulate(strategy, SMALL, lambda a: float(a["width"]), budget=100, seed=0)
    assert len(runs) == 18 and len({key(a) for a, _ in runs}) == 18  # every architecture once, then done

    # results of trials it did not propose (a resumed experiment) reach the tuner: it never proposes them
    archs = [dict(zip(SMALL, values)) for values in itertools.product(*(s["_value"] for s in SMALL.values()))]
    tuner = StrategyTuner(strategy=_AnnealStrategy(seed=1).to_config())
    tuner.update_search_space(SMALL)
    first = tuner.strategy.tuner
    tuner.resume(
        [HistoryEntry(parameter_id=i, parameters=a, value=float(i)) for i, a in enumerate(archs[1:])]
    )
    assert tuner.generate_parameters(17) == archs[0]
    with pytest.raises(NoMoreTrialError):
        tuner.generate_parameters(18)
    tuner.update_search_space(SMALL)
    assert tuner.strategy.tuner is not first  # a fresh tuner for a fresh search
