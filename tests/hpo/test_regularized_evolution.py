from __future__ import annotations

import math

import numpy as np
import pytest

from nni_pl.errors import ConfigError, NoMoreTrialError
from nni_pl.hpo import HistoryEntry, create_algorithm
from nni_pl.hpo.tuners import RandomTuner, RegularizedEvolutionTuner
from nni_pl.space import SearchSpace
from nni_pl.testing import TunerTestCase

from .conftest import ALL_TYPES, NESTED, assert_valid, optimise

QUAD = {"x": {"_type": "uniform", "_value": [-5, 5]}, "y": {"_type": "uniform", "_value": [-5, 5]}}


def _quad(p: dict) -> float:
    return (p["x"] - 1.3) ** 2 + (p["y"] + 2.1) ** 2


def _new(**kwargs) -> RegularizedEvolutionTuner:
    return RegularizedEvolutionTuner(
        **{"optimize_mode": "minimize", "population_size": 10, "sample_size": 5, **kwargs}
    )


def test_regevo_defaults_follow_nni():
    tuner = RegularizedEvolutionTuner()
    assert (tuner.optimize_mode, tuner.population_size, tuner.sample_size) == ("maximize", 100, 25)


def test_regevo_all_types_values_in_space(all_types_space):
    rng = np.random.default_rng(0)
    tuner = RegularizedEvolutionTuner(population_size=5, sample_size=2, seed=0)
    tuner.update_search_space(ALL_TYPES)
    for i in range(60):
        params = tuner.generate_parameters(i)
        assert_valid(all_types_space, params)
        tuner.receive_trial_result(i, params, float(rng.normal()))


def test_regevo_queue_drops_the_oldest_member():
    tuner = _new(population_size=4)
    tuner.update_search_space(QUAD)
    given = []
    for i in range(9):
        p = tuner.generate_parameters(i)
        tuner.receive_trial_result(i, p, _quad(p))
        given.append(p)
    assert [m[0] for m in tuner.population()] == given[-4:]  # the best of them died of old age too


def test_regevo_children_mutate_the_best_of_the_sample():
    space = SearchSpace.parse({f"c{i}": {"_type": "choice", "_value": list(range(10))} for i in range(6)})
    # a sample of 50 from 6 holds the best almost surely
    tuner = _new(population_size=6, sample_size=50, seed=0)
    tuner.update_search_space(space)
    for i in range(6):
        p = tuner.generate_parameters(i)
        tuner.receive_trial_result(i, p, float(sum(p.values())))
    # several members can share the lowest sum: the child mutates one of them (one key changed)
    low = min(loss for _, loss in tuner.population())
    bests = [space.flatten(p) for p, loss in tuner.population() if loss == low]
    fc = space.flatten(tuner.generate_parameters(6))
    assert any(sum(fb[k] != fc[k] for k in fb) == 1 for fb in bests)


def test_regevo_nested_space_learns_the_good_branch(nested_space):
    def fn(p):
        layer = p["layer"]
        if layer["_name"] != "block":
            return 5.0
        return abs(layer["width"] - 40) / 10 + abs(layer["act"].get("slope", 0.0) - 0.2)

    tuner = _new(seed=1)
    tuner.update_search_space(nested_space)
    picked = []
    for i in range(100):
        params = tuner.generate_parameters(i)
        assert_valid(nested_space, params)
        tuner.receive_trial_result(i, params, fn(params))
        picked.append(params["layer"]["_name"])
    assert picked[-40:].count("block") >= 25  # random: about a third


def test_regevo_same_seed_same_suggestions():
    runs = [optimise(_new(seed=s), QUAD, _quad, 30) for s in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


# a cheap discrete problem: 6 choices of 8 options and an integer, each with its own best value
DISCRETE = {
    **{f"c{i}": {"_type": "choice", "_value": [f"o{k}" for k in range(8)]} for i in range(6)},
    "n": {"_type": "randint", "_value": [0, 20]},
}


def _discrete(p: dict) -> float:
    return sum(abs(int(p[f"c{i}"][1:]) - i) for i in range(6)) + abs(p["n"] - 13) / 4


def test_regevo_beats_random_on_average():
    # 20 paired seeds (~1 s): evolution wins ~90% of pairs, so 6 pairs could lose two by chance
    evo = [min(optimise(_new(seed=s), DISCRETE, _discrete, 80)) for s in range(20)]
    rnd = [min(optimise(RandomTuner(seed=s), DISCRETE, _discrete, 80)) for s in range(20)]
    assert np.mean(evo) < 0.6 * np.mean(rnd)
    assert sum(e < r for e, r in zip(evo, rnd)) >= 15


def test_regevo_failed_initial_member_is_replaced_but_a_failed_child_is_not():
    tuner = _new(population_size=2)
    tuner.update_search_space(QUAD)
    tuner.generate_parameters(0)
    tuner.trial_end(0, False, status="FAILED")  # an initial random member failed
    assert tuner._owed == 2
    for i in range(1, 3):
        p = tuner.generate_parameters(i)
        tuner.receive_trial_result(i, p, _quad(p))
    tuner.generate_parameters(3)  # a child
    tuner.trial_end(3, False, status="TIMEOUT")
    assert tuner._owed == 0 and 3 not in tuner._pending


def test_regevo_population_smaller_than_concurrency_does_not_fail():
    tuner = _new(population_size=2, sample_size=2)
    tuner.update_search_space(QUAD)
    first = [tuner.generate_parameters(i) for i in range(8)]  # NNI raised NoMoreTrialError here
    assert len({(p["x"], p["y"]) for p in first}) == 8
    for i, p in enumerate(first):
        tuner.receive_trial_result(i, p, _quad(p))
    assert [m[0] for m in tuner.population()] == first[-2:]
    for i in range(8, 20):
        assert_valid(QUAD, tuner.generate_parameters(i))


def test_regevo_nan_results_count_as_worst():
    # seeded: 10 draws with replacement from 3 members miss the best one with probability (2/3)^10 = 1.7%
    tuner = _new(population_size=3, sample_size=10, optimize_mode="maximize", seed=0)
    tuner.update_search_space(QUAD)
    for i, value in enumerate([math.nan, {"default": 0.5}, math.inf]):
        p = tuner.generate_parameters(i)
        tuner.receive_trial_result(i, p, value)
    good = tuner.population()[1][0]
    child = tuner.generate_parameters(3)
    assert child["x"] == good["x"] or child["y"] == good["y"]


def test_regevo_finite_space_raises_when_exhausted():
    tuner = _new(population_size=2, sample_size=2)
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


def test_regevo_import_data_and_resume():
    data = [
        {"parameter": {"x": x, "y": -2.0}, "value": _quad({"x": x, "y": -2.0})} for x in np.linspace(-5, 5, 6)
    ]
    tuner = _new(population_size=4)
    tuner.update_search_space(QUAD)
    tuner.import_data([*data, {"parameter": {"x": 0.0}, "value": 1.0}])
    assert [m[0] for m in tuner.population()] == [d["parameter"] for d in data[-4:]]
    assert tuner._owed == 0

    resumed = _new(population_size=10)
    resumed.update_search_space(QUAD)
    history = [HistoryEntry(i, d["parameter"], d["value"]) for i, d in enumerate(data)]
    history.append(HistoryEntry(6, {"x": 0.0, "y": 0.0}, None, finished=False))
    history.append(HistoryEntry(7, {"x": 1.0, "y": 0.0}, None, finished=True))  # failed before the restart
    resumed.resume(history)
    assert len(resumed.population()) == 6 and 6 in resumed._pending and 7 not in resumed._pending
    assert resumed._owed == 2
    resumed.receive_trial_result(6, {"x": 0.0, "y": 0.0}, 4.0)
    assert resumed.population()[-1][0] == {"x": 0.0, "y": 0.0}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimize_mode": "MAXIMIZE"}, "RegularizedEvolutionTuner.optimize_mode"),
        ({"population_size": 0}, "RegularizedEvolutionTuner.population_size"),
        ({"sample_size": 0}, "RegularizedEvolutionTuner.sample_size"),
        ({"sample_size": "5"}, "RegularizedEvolutionTuner.sample_size"),
        ({"seed": 1.5}, "RegularizedEvolutionTuner.seed"),
    ],
)
def test_regevo_rejects_bad_class_args(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        RegularizedEvolutionTuner(**kwargs)


def test_regevo_builtin_name_with_nni_class_args():
    tuner = create_algorithm(
        "tuner",
        "RegularizedEvolutionTuner",
        class_args={"optimize_mode": "maximize", "population_size": 50, "sample_size": 10},
    )
    assert isinstance(tuner, RegularizedEvolutionTuner) and tuner.sample_size == 10
    tuner.update_search_space(NESTED)
    assert_valid(NESTED, tuner.generate_parameters(0))


class TestRegularizedEvolutionConformance(TunerTestCase):
    tuner_class = RegularizedEvolutionTuner
    tuner_kwargs = {"population_size": 4, "sample_size": 2}
