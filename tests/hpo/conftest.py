"""Shared fixtures of the HPO tests: spaces covering every ``_type`` and nested choices."""

from __future__ import annotations

import math
from typing import Any

import pytest

from nni_pl.space import Choice, SearchSpace

ALL_TYPES = {
    "c": {"_type": "choice", "_value": ["a", 2, None, {"k": 1}]},
    "ri": {"_type": "randint", "_value": [-2, 3]},
    "u": {"_type": "uniform", "_value": [-1.0, 1.0]},
    "qu": {"_type": "quniform", "_value": [2, 10, 5]},
    "quf": {"_type": "quniform", "_value": [0, 1, 0.1]},
    "lu": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
    "qlu": {"_type": "qloguniform", "_value": [1, 1000, 7]},
    "n": {"_type": "normal", "_value": [0, 2]},
    "qn": {"_type": "qnormal", "_value": [10, 3, 2]},
    "ln": {"_type": "lognormal", "_value": [0, 1]},
    "qln": {"_type": "qlognormal", "_value": [1, 1, 0.5]},
}

NESTED = {
    "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
    "layer": {
        "_type": "choice",
        "_value": [
            {"_name": "empty"},
            {"_name": "conv", "kernel_size": {"_type": "choice", "_value": [1, 3, 5]}, "stride": 1},
            {
                "_name": "block",
                "width": {"_type": "randint", "_value": [8, 64]},
                "act": {
                    "_type": "choice",
                    "_value": [
                        {"_name": "relu"},
                        {"_name": "leaky", "slope": {"_type": "uniform", "_value": [0, 0.3]}},
                    ],
                },
            },
        ],
    },
}


def assert_valid(space: SearchSpace | dict[str, Any], params: dict[str, Any]) -> None:
    """``params`` is a point of ``space`` and every numeric value has the Python type NNI gives it."""
    space = SearchSpace.parse(space)
    space.check(params)
    flat = space.flatten(params)
    for dim in space.dimensions():
        if dim.key not in flat:
            continue
        p, v = dim.param, flat[dim.key]
        if isinstance(p, Choice):
            continue
        assert not isinstance(v, bool), (dim.name, v)
        if p.integer_valued:
            assert type(v) is int, (dim.name, v)
        else:
            assert type(v) is float and math.isfinite(v), (dim.name, v)
        if p.TYPE == "randint":
            assert p.low <= v < p.high


@pytest.fixture
def all_types_space() -> SearchSpace:
    return SearchSpace.parse(ALL_TYPES)


@pytest.fixture
def nested_space() -> SearchSpace:
    return SearchSpace.parse(NESTED)


def optimise(tuner: Any, space: Any, fn: Any, n: int) -> list[float]:
    """Drive ``tuner`` for ``n`` sequential trials as the manager does (suggest, result, trial end); the values."""
    tuner.update_search_space(space)
    values = []
    for i in range(n):
        params = tuner.generate_parameters(i)
        value = fn(params)
        tuner.receive_trial_result(i, params, value)
        tuner.trial_end(i, True)
        values.append(value)
    return values


QUAD = {"x": {"_type": "uniform", "_value": [-5, 5]}, "y": {"_type": "uniform", "_value": [-5, 5]}}


def quad(p: dict[str, Any]) -> float:
    """A smooth bowl with its minimum 0 at (1.3, -2.1)."""
    return (p["x"] - 1.3) ** 2 + (p["y"] + 2.1) ** 2


def _neg_quad(params: dict[str, Any]) -> float:
    return -quad(params)


def run_quad_experiment(tmp_path: Any, tuner: dict[str, Any]) -> list[Any]:
    """Maximise -quad with ``tuner`` through a real experiment (8 function trials, 2 at a time); checks that it
    ends DONE with every trial SUCCEEDED and returns the trials."""
    from nni_pl.experiment import Experiment
    from nni_pl.experiment import store as st

    exp = Experiment(
        trial=_neg_quad,
        search_space=QUAD,
        tuner=tuner,
        max_trial_number=8,
        trial_concurrency=2,
        experiment_working_directory=tmp_path,
        start_method="fork",  # spawned workers cannot import this module: tests/hpo is the package "hpo"
    )
    exp.run(display=False)
    trials = exp.trials()
    assert exp.get_status() == st.EXP_DONE
    assert len(trials) == 8 and all(t.status == st.SUCCEEDED for t in trials)
    return trials
