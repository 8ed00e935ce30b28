from __future__ import annotations

import pytest

from nni_pl.errors import ConfigError, NoMoreTrialError
from nni_pl.hpo import HistoryEntry, create_algorithm
from nni_pl.hpo.tuners import RandomTuner

from .conftest import ALL_TYPES, NESTED, assert_valid


def _run(tuner: RandomTuner, n: int, start: int = 0) -> list[dict]:
    return [tuner.generate_parameters(i) for i in range(start, start + n)]


def test_random_values_in_space_with_nni_types(all_types_space):
    tuner = RandomTuner(seed=0)
    tuner.update_search_space(ALL_TYPES)
    for params in _run(tuner, 300):
        assert_valid(all_types_space, params)


def test_random_randint_never_returns_high_and_covers_range():
    tuner = RandomTuner(seed=1)
    tuner.update_search_space({"k": {"_type": "randint", "_value": [0, 3]}})
    assert sorted(p["k"] for p in _run(tuner, 3)) == [0, 1, 2]
    with pytest.raises(NoMoreTrialError, match="all 3 points"):
        tuner.generate_parameters(3)


SIXTY = {  # the space: 60 points, on which NNI's Random repeated 27 of 70 suggestions
    "bs": {"_type": "choice", "_value": [16, 32, 64, 128]},
    "layers": {"_type": "randint", "_value": [1, 4]},
    "drop": {"_type": "quniform", "_value": [0, 0.4, 0.1]},
}


def test_random_finite_space_each_point_once_then_no_more_trials():
    tuner = RandomTuner(seed=0)
    tuner.update_search_space(SIXTY)
    points = []
    with pytest.raises(NoMoreTrialError, match="all 60 points of the finite search space"):
        for i in range(70):
            points.append(tuner.generate_parameters(i))
            tuner.receive_trial_result(i, points[-1], 0.5)
    keys = {(p["bs"], p["layers"], p["drop"]) for p in points}
    assert len(points) == len(keys) == 60
    with pytest.raises(NoMoreTrialError):  # and it stays so
        tuner.generate_parameters(71)


def test_random_customised_and_imported_points_are_not_suggested():
    space = {"x": {"_type": "choice", "_value": list(range(6))}}
    tuner = RandomTuner(seed=4)
    tuner.update_search_space(space)
    tuner.import_data([{"parameter": {"x": 0}, "value": 1.0}, {"parameter": {"x": 1}, "value": None}])
    tuner.receive_trial_result(99, {"x": 2}, 0.3, customized=True)  # a trial the user added by hand
    rest = sorted(p["x"] for p in _run(tuner, 3))
    assert rest == [3, 4, 5]
    with pytest.raises(NoMoreTrialError):
        tuner.generate_parameters(3)


def test_random_resume_suggests_only_the_rest_of_a_finite_space():
    first = RandomTuner(seed=6)
    first.update_search_space(SIXTY)
    before = _run(first, 30)
    history = [
        HistoryEntry(
            i, p, value=0.1 if i % 3 == 0 else None, finished=i % 3 != 2
        )  # results, failures, running
        for i, p in enumerate(before)
    ] + [HistoryEntry(None, {"bs": 16, "layers": 1, "drop": 0.0}, value=0.2, source="customized")]
    resumed = RandomTuner(seed=6)
    resumed.update_search_space(SIXTY)
    resumed.resume(history)
    taken = {(p["bs"], p["layers"], p["drop"]) for p in [h.parameters for h in history]}
    after = []
    with pytest.raises(NoMoreTrialError):
        for i in range(30, 100):
            after.append(resumed.generate_parameters(i))
    keys = [(p["bs"], p["layers"], p["drop"]) for p in after]
    assert not set(keys) & taken
    assert len(set(keys)) == len(keys) == 60 - len(taken)


def test_random_nested_only_samples_chosen_branch(nested_space):
    tuner = RandomTuner(seed=2)
    tuner.update_search_space(nested_space)
    names = set()
    for params in _run(tuner, 200):
        assert_valid(nested_space, params)
        layer = params["layer"]
        names.add(layer["_name"])
        expected = {
            "empty": {"_name"},
            "conv": {"_name", "kernel_size", "stride"},
            "block": {"_name", "width", "act"},
        }
        assert set(layer) == expected[layer["_name"]]
    assert names == {"empty", "conv", "block"}


def test_random_same_seed_same_suggestions_different_seed_differs():
    a, b, c = RandomTuner(seed=7), RandomTuner(seed=7), RandomTuner(seed=8)
    for t in (a, b, c):
        t.update_search_space(NESTED)
    pa, pb, pc = _run(a, 20), _run(b, 20), _run(c, 20)
    assert pa == pb
    assert pa != pc


def test_random_ignores_results_and_imports():
    tuner = RandomTuner(seed=3)
    tuner.update_search_space(ALL_TYPES)
    params = tuner.generate_parameters(0)
    tuner.receive_trial_result(0, params, 0.5)
    tuner.import_data([{"parameter": params, "value": 1.0}])
    tuner.trial_end(0, True)
    assert_valid(ALL_TYPES, tuner.generate_parameters(1))


def test_random_resume_does_not_repeat_earlier_suggestions():
    first = RandomTuner(seed=5)
    first.update_search_space({"x": {"_type": "uniform", "_value": [0, 1]}})
    before = _run(first, 5)
    history = [HistoryEntry(i, p, value=0.1) for i, p in enumerate(before)]

    resumed = RandomTuner(seed=5)
    resumed.update_search_space({"x": {"_type": "uniform", "_value": [0, 1]}})
    resumed.resume(history)
    after = _run(resumed, 5, start=5)
    assert not {p["x"] for p in after} & {p["x"] for p in before}

    again = RandomTuner(seed=5)
    again.update_search_space({"x": {"_type": "uniform", "_value": [0, 1]}})
    again.resume(history)
    assert _run(again, 5, start=5) == after  # still reproducible


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seed": -1}, "RandomTuner.seed"),
        ({"seed": "42"}, "non-negative integer"),
        ({"seed": 1.5}, "RandomTuner.seed"),
        ({"optimize_mode": "max"}, "'maximize' or 'minimize'"),
    ],
)
def test_random_rejects_bad_class_args(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        RandomTuner(**kwargs)


def test_random_builtin_name_resolves():
    tuner = create_algorithm("tuner", "Random", class_args={"optimize_mode": "minimize", "seed": 3})
    assert isinstance(tuner, RandomTuner)
    with pytest.raises(ConfigError, match=r"tuner\.classArgs\.seed"):
        create_algorithm("tuner", "Random", class_args={"seed": -3})


def _score(params: dict) -> float:
    return float(params["a"] * params["b"])


def test_random_experiment_ends_with_the_space_exhausted(tmp_path):
    from nni_pl.experiment import Experiment
    from nni_pl.experiment import store as st

    exp = Experiment(
        trial=_score,
        search_space={
            "a": {"_type": "choice", "_value": [1, 2, 3]},
            "b": {"_type": "randint", "_value": [0, 2]},
        },
        tuner={"name": "Random", "classArgs": {"seed": 0}},
        max_trial_number=20,
        trial_concurrency=2,
        experiment_working_directory=tmp_path,
        start_method="fork",  # spawned workers cannot import this module: tests/hpo is the package "hpo"
    )
    exp.run(display=False)
    points = sorted((t.parameters["a"], t.parameters["b"]) for t in exp.trials())
    assert points == [(a, b) for a in (1, 2, 3) for b in (0, 1)]  # 6 of the 20 allowed: each point once
    assert exp.get_status() == st.EXP_DONE
    assert exp.store.get_experiment(exp.id).message == "the search space is exhausted"
