from __future__ import annotations

import math

import numpy as np
import pytest

from nni_pl.errors import ConfigError, NoMoreTrialError
from nni_pl.hpo import HistoryEntry, create_algorithm
from nni_pl.hpo.tuners import EvolutionTuner, RandomTuner, RegularizedEvolutionTuner
from nni_pl.hpo.tuners._evolution_base import mutate
from nni_pl.space import SearchSpace
from nni_pl.testing import TunerTestCase

from .conftest import ALL_TYPES, NESTED, assert_valid, optimise

QUAD = {"x": {"_type": "uniform", "_value": [-5, 5]}, "y": {"_type": "uniform", "_value": [-5, 5]}}


def _quad(p: dict) -> float:
    return (p["x"] - 1.3) ** 2 + (p["y"] + 2.1) ** 2


def _differences(space: SearchSpace, a: dict, b: dict) -> set:
    fa, fb = space.flatten(a), space.flatten(b)
    return {k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)}


def test_evolution_all_types_values_in_space(all_types_space):
    rng = np.random.default_rng(0)
    tuner = EvolutionTuner(seed=0, population_size=6)
    tuner.update_search_space(ALL_TYPES)
    for i in range(60):
        params = tuner.generate_parameters(i)
        assert_valid(all_types_space, params)
        tuner.receive_trial_result(i, params, float(rng.normal()))


def test_mutation_changes_one_active_parameter_and_redraws_a_switched_branch(nested_space):
    rng = np.random.default_rng(1)
    switched = 0
    for _ in range(300):
        parent = nested_space.sample(rng)
        child = mutate(nested_space, parent, rng)
        assert_valid(nested_space, child)
        diff = _differences(nested_space, parent, child)
        changed_choice = [
            k for k in diff if k in nested_space.flatten(parent) and k in nested_space.flatten(child)
        ]
        # exactly one parameter active in both changed; the others in diff belong to a switched branch
        assert len(changed_choice) == 1, (parent, child)
        key = changed_choice[0]
        for other in diff - {key}:
            assert other[: len(key)] == key  # a parameter of the old or the new branch under it
        switched += len(diff) > 1
    assert switched > 20  # branch switches happen and bring their own parameters


def test_mutation_of_a_single_value_space_returns_a_copy():
    space = SearchSpace.parse(
        {"a": {"_type": "choice", "_value": [1]}, "b": {"_type": "uniform", "_value": [2, 2]}}
    )
    parent = {"a": 1, "b": 2.0}
    child = mutate(space, parent, np.random.default_rng(0))
    assert child == parent and child is not parent


def test_evolution_nested_space_learns_the_good_branch(nested_space):
    def fn(p):
        layer = p["layer"]
        if layer["_name"] != "block":
            return 5.0
        return abs(layer["width"] - 40) / 10 + abs(layer["act"].get("slope", 0.0) - 0.2)

    tuner = EvolutionTuner(optimize_mode="minimize", population_size=10, seed=1)
    tuner.update_search_space(nested_space)
    picked = []
    for i in range(100):
        params = tuner.generate_parameters(i)
        assert_valid(nested_space, params)
        tuner.receive_trial_result(i, params, fn(params))
        picked.append(params["layer"]["_name"])
    assert picked[-40:].count("block") >= 25  # random: about a third


def test_evolution_first_population_is_random_then_children_of_members():
    space = SearchSpace.parse({f"c{i}": {"_type": "choice", "_value": list(range(10))} for i in range(6)})
    tuner = EvolutionTuner(optimize_mode="minimize", population_size=5, seed=3)
    tuner.update_search_space(space)
    for i in range(5):
        p = tuner.generate_parameters(i)
        tuner.receive_trial_result(i, p, float(sum(p.values())))
    members = [m[0] for m in tuner.population()]
    assert len(members) == 5
    child = tuner.generate_parameters(5)
    assert len(tuner.population()) == 4  # the loser of the tournament left
    assert any(len(_differences(space, m, child)) == 1 for m in members)
    tuner.receive_trial_result(5, child, float(sum(child.values())))
    assert len(tuner.population()) == 5


def test_evolution_same_seed_same_suggestions():
    runs = [
        optimise(EvolutionTuner(optimize_mode="minimize", population_size=5, seed=s), QUAD, _quad, 30)
        for s in (3, 3, 4)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_evolution_beats_random_on_average():
    evo = [
        min(optimise(EvolutionTuner(optimize_mode="minimize", population_size=10, seed=s), QUAD, _quad, 80))
        for s in range(6)
    ]
    rnd = [min(optimise(RandomTuner(seed=s), QUAD, _quad, 80)) for s in range(6)]
    assert np.mean(evo) < 0.5 * np.mean(rnd)
    assert sum(e < r for e, r in zip(evo, rnd)) >= 4


def test_evolution_failed_trial_is_replaced_by_a_random_individual():
    tuner = EvolutionTuner(population_size=3, seed=0)
    tuner.update_search_space(QUAD)
    for i in range(3):
        p = tuner.generate_parameters(i)
        tuner.receive_trial_result(i, p, -_quad(p))
    tuner.generate_parameters(3)
    assert tuner._owed == 0
    tuner.trial_end(3, False, status="FAILED")
    assert tuner._owed == 1 and 3 not in tuner._pending
    tuner.generate_parameters(4)  # the replacement: a random individual
    assert tuner._owed == 0
    # a trial that reported and was then early-stopped is not a failure
    p = tuner.generate_parameters(5)
    tuner.receive_trial_result(5, p, -1.0)
    tuner.trial_end(5, False, status="EARLY_STOPPED")
    assert tuner._owed == 0


def test_evolution_population_smaller_than_concurrency_does_not_fail():
    tuner = EvolutionTuner(population_size=2, seed=0)
    tuner.update_search_space(QUAD)
    first = [tuner.generate_parameters(i) for i in range(8)]  # 8 trials at once, nobody reported
    assert len({(p["x"], p["y"]) for p in first}) == 8
    for i, p in enumerate(first):
        tuner.receive_trial_result(i, p, -_quad(p))
    assert len(tuner.population()) == 2  # never more than population_size: the best stay
    assert sorted(m[1] for m in tuner.population()) == sorted(_quad(p) for p in first)[:2]
    for i in range(8, 20):
        assert_valid(QUAD, tuner.generate_parameters(i))


def test_evolution_nan_and_inf_results_count_as_worst():
    tuner = EvolutionTuner(population_size=4, seed=0)
    tuner.update_search_space(QUAD)
    for i, value in enumerate([math.nan, 1.0, math.inf, {"default": -math.inf}]):
        p = tuner.generate_parameters(i)
        tuner.receive_trial_result(i, p, value)
    losses = sorted(m[1] for m in tuner.population())
    assert losses[0] == -1.0 and all(math.isinf(v) for v in losses[1:])
    for i in range(4, 12):  # tournaments keep the finite member
        p = tuner.generate_parameters(i)
        tuner.receive_trial_result(i, p, 0.5)
    assert any(m[1] == -1.0 for m in tuner.population())


def test_evolution_finite_space_raises_when_exhausted():
    tuner = EvolutionTuner(population_size=2, seed=0)
    space = {"a": {"_type": "choice", "_value": ["x", "y", "z"]}, "b": {"_type": "randint", "_value": [0, 2]}}
    tuner.update_search_space(space)
    seen = []
    for i in range(6):
        p = tuner.generate_parameters(i)
        tuner.receive_trial_result(i, p, float(i))
        seen.append((p["a"], p["b"]))
    assert len(set(seen)) == 6
    with pytest.raises(NoMoreTrialError):
        tuner.generate_parameters(6)


def test_evolution_import_data_joins_the_population_and_resume_rebuilds_it():
    data = [
        {"parameter": {"x": x, "y": -2.0}, "value": -_quad({"x": x, "y": -2.0})}
        for x in np.linspace(-5, 5, 6)
    ]
    tuner = EvolutionTuner(population_size=4, seed=0)
    tuner.update_search_space(QUAD)
    tuner.import_data(
        [
            *data,
            {"parameter": {"x": 99.0, "y": 0.0}, "value": 1.0},
            {"parameter": {"x": 0.0, "y": 0.0}, "value": None},
        ]
    )
    assert len(tuner.observations()) == 6 and len(tuner.population()) == 4
    assert tuner._owed == 0  # the imports took the place of the random initial population
    child = tuner.generate_parameters(0)
    assert child["y"] == -2.0 or child["x"] in [d["parameter"]["x"] for d in data]  # a one-parameter mutation

    resumed = EvolutionTuner(population_size=10, seed=0)
    resumed.update_search_space(QUAD)
    history = [HistoryEntry(i, d["parameter"], d["value"]) for i, d in enumerate(data)]
    history.append(HistoryEntry(6, {"x": 0.0, "y": 0.0}, None, finished=False))
    resumed.resume(history)
    assert len(resumed.population()) == 6 and 6 in resumed._pending
    assert resumed._owed == 3  # 10 - 7 trials already generated
    resumed.receive_trial_result(6, {"x": 0.0, "y": 0.0}, -4.0)
    assert len(resumed.population()) == 7
    assert (0.0, 0.0) not in {
        (p["x"], p["y"]) for p in (resumed.generate_parameters(7 + i) for i in range(5))
    }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimize_mode": "max"}, "EvolutionTuner.optimize_mode"),
        ({"population_size": 0}, "EvolutionTuner.population_size"),
        ({"population_size": 2.5}, "EvolutionTuner.population_size"),
        ({"population_size": True}, "EvolutionTuner.population_size"),
        ({"seed": "x"}, "EvolutionTuner.seed"),
    ],
)
def test_evolution_rejects_bad_class_args(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        EvolutionTuner(**kwargs)


def test_evolution_builtin_name_with_nni_class_args():
    tuner = create_algorithm(
        "tuner", "Evolution", class_args={"optimize_mode": "minimize", "population_size": 100}
    )
    assert isinstance(tuner, EvolutionTuner) and tuner.population_size == 100
    tuner.update_search_space(NESTED)
    assert_valid(NESTED, tuner.generate_parameters(0))
    assert EvolutionTuner().population_size == 32


class TestEvolutionConformance(TunerTestCase):
    tuner_class = EvolutionTuner
    tuner_kwargs = {"population_size": 4}


@pytest.mark.parametrize("cls", [EvolutionTuner, RegularizedEvolutionTuner])
def test_evolutions_keep_only_members_inside_an_updated_space(cls):
    tuner = cls(population_size=6, seed=0)
    tuner.update_search_space(QUAD)
    for i in range(10):
        p = tuner.generate_parameters(i)
        tuner.receive_trial_result(i, p, -_quad(p))
    narrow = {"x": {"_type": "uniform", "_value": [0, 5]}, "y": {"_type": "uniform", "_value": [-5, 5]}}
    tuner.update_search_space(narrow)
    assert all(m[0]["x"] >= 0 for m in tuner.population())
    for i in range(10, 20):
        p = tuner.generate_parameters(i)
        assert_valid(narrow, p)
        tuner.receive_trial_result(i, p, -_quad(p))


def _evo_trial(params):
    return -((params["x"] - 1.3) ** 2) - (params["y"] + 2.1) ** 2


def test_evolution_end_to_end_with_more_trials_at_once_than_the_population(tmp_path):
    from nni_pl.experiment import Experiment
    from nni_pl.experiment import store as st

    exp = Experiment(
        trial=_evo_trial,
        search_space=QUAD,
        tuner={"name": "Evolution", "classArgs": {"population_size": 2, "seed": 0}},
        max_trial_number=12,
        trial_concurrency=4,  # NNI's tuner failed on its first generation here
        experiment_working_directory=tmp_path,
        start_method="fork",  # spawned workers cannot import this module: tests/hpo is the package "hpo"
    )
    exp.run(display=False)
    trials = exp.trials()
    assert exp.get_status() == st.EXP_DONE
    assert len(trials) == 12 and all(t.status == st.SUCCEEDED for t in trials)
