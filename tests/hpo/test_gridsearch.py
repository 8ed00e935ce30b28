from __future__ import annotations

import json

import pytest

from nni_pl.errors import ConfigError, NoMoreTrialError, SearchSpaceError
from nni_pl.hpo import HistoryEntry, create_algorithm
from nni_pl.hpo.tuners import GridSearchTuner
from nni_pl.space import SearchSpace

from .conftest import assert_valid

GRID = {
    "opt": {
        "_type": "choice",
        "_value": ["sgd", {"_name": "adam", "beta": {"_type": "quniform", "_value": [0.8, 0.99, 0.05]}}],
    },
    "layers": {"_type": "randint", "_value": [1, 4]},
    "bs": {"_type": "qloguniform", "_value": [16, 128, 16]},
}


def _drain(tuner: GridSearchTuner, start: int = 0) -> list[dict]:
    out = []
    for i in range(start, start + 10_000):
        try:
            out.append(tuner.generate_parameters(i))
        except NoMoreTrialError:
            return out
    raise AssertionError("grid never ended")


def _keys(points: list[dict]) -> list[str]:
    return [json.dumps(p, sort_keys=True) for p in points]


def test_gridsearch_exhausts_without_duplicates_then_raises():
    space = SearchSpace.parse(GRID)
    tuner = GridSearchTuner()
    tuner.update_search_space(GRID)
    points = _drain(tuner)
    assert len(points) == space.size == len(set(_keys(points)))
    for p in points:
        assert_valid(space, p)
    assert {p["layers"] for p in points} == {1, 2, 3}
    with pytest.raises(NoMoreTrialError):
        tuner.generate_parameters(999)


def test_gridsearch_quniform_grid_matches_nni_formula():
    tuner = GridSearchTuner()
    tuner.update_search_space({"x": {"_type": "quniform", "_value": [2, 10, 5]}})
    assert [p["x"] for p in _drain(tuner)] == [2, 5, 10]


def test_gridsearch_nested_grid_and_constants():
    space = {
        "layer": {
            "_type": "choice",
            "_value": [
                {"_name": "empty"},
                {"_name": "conv", "k": {"_type": "choice", "_value": [1, 3]}, "stride": 2},
            ],
        }
    }
    tuner = GridSearchTuner()
    tuner.update_search_space(space)
    assert _drain(tuner) == [
        {"layer": {"_name": "empty"}},
        {"layer": {"_name": "conv", "k": 1, "stride": 2}},
        {"layer": {"_name": "conv", "k": 3, "stride": 2}},
    ]


@pytest.mark.parametrize("type_", ["uniform", "loguniform", "normal", "qnormal", "lognormal", "qlognormal"])
def test_gridsearch_rejects_infinite_types(type_):
    values = [1, 2, 1] if type_.startswith("q") else [1, 2]
    tuner = GridSearchTuner()
    with pytest.raises(SearchSpaceError, match="GridSearch does not support"):
        tuner.update_search_space({"x": {"_type": type_, "_value": values}})
    with pytest.raises(SearchSpaceError, match="does not support"):
        GridSearchTuner.check_search_space(
            SearchSpace.parse(
                {
                    "c": {
                        "_type": "choice",
                        "_value": [{"_name": "a", "x": {"_type": type_, "_value": values}}],
                    }
                }
            )
        )


def test_gridsearch_resume_skips_finished_and_unfinished_points():
    tuner = GridSearchTuner()
    tuner.update_search_space(GRID)
    everything = _drain(tuner)
    done = [
        HistoryEntry(0, everything[0], value=0.3),
        HistoryEntry(1, everything[5], value=None, finished=False),
    ]

    resumed = GridSearchTuner()
    resumed.update_search_space(GRID)
    resumed.resume(done)
    rest = _drain(resumed, start=2)
    assert len(rest) == len(everything) - 2
    assert not set(_keys(rest)) & set(_keys([everything[0], everything[5]]))


def test_gridsearch_import_data_marks_points_used_even_before_space():
    tuner = GridSearchTuner()
    tuner.import_data([{"parameter": {"x": 1.0}, "value": 0.5}])  # 1.0 == grid value 1
    tuner.update_search_space({"x": {"_type": "choice", "_value": [1, 2, 3]}})
    tuner.import_data([{"parameter": {"x": 3}, "value": None}, {"parameter": {"x": 99}, "value": 1}])
    assert _drain(tuner) == [{"x": 2}]


def test_gridsearch_ignores_results_and_accepts_seed():
    tuner = create_algorithm("tuner", "GridSearch", class_args={"seed": 3})
    tuner.update_search_space({"x": {"_type": "randint", "_value": [0, 2]}})
    p = tuner.generate_parameters(0)
    tuner.receive_trial_result(0, p, float("nan"))
    assert _drain(tuner, 1) == [{"x": 1}]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"seed": -2}, "GridSearchTuner.seed"), ({"optimize_mode": "best"}, "optimize_mode")],
)
def test_gridsearch_rejects_bad_class_args(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GridSearchTuner(**kwargs)
