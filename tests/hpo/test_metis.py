from __future__ import annotations

import math

import numpy as np
import pytest

from nni_pl.errors import ConfigError, SearchSpaceError
from nni_pl.hpo import HistoryEntry
from nni_pl.hpo.tuners import RandomTuner
from nni_pl.hpo.tuners._gp import GaussianProcess
from nni_pl.hpo.tuners._numeric import single_threaded
from nni_pl.hpo.tuners.metis import MetisTuner
from nni_pl.space import SearchSpace
from nni_pl.testing import TunerTestCase

from .conftest import QUAD, assert_valid, quad, run_quad_experiment

SPACE = {
    "ri": {"_type": "randint", "_value": [1, 9]},
    "u": {"_type": "uniform", "_value": [-1.0, 1.0]},
    "qu": {"_type": "quniform", "_value": [0, 10, 2.5]},
    "c": {"_type": "choice", "_value": [0.1, 1, 10]},
}
FAST = {"selection_num_starting_points": 100}


def _optimise(tuner, space, fn, n: int, reasons: list | None = None) -> list[float]:
    tuner.update_search_space(space)
    values = []
    for i in range(n):
        params = tuner.generate_parameters(i)
        if reasons is not None:
            reasons.append(tuner.last_reason)
        value = fn(params)
        tuner.receive_trial_result(i, params, value)
        values.append(value)
    return values


class TestMetisConformance(TunerTestCase):
    tuner_class = MetisTuner
    tuner_kwargs = {"cold_start_num": 2, "selection_num_starting_points": 10}
    n_suggestions = 6


def test_metis_values_and_types_in_space():
    space = SearchSpace.parse(SPACE)
    tuner = MetisTuner(seed=0, cold_start_num=4, **FAST)
    reasons: list = []
    _optimise(tuner, SPACE, lambda p: assert_valid(space, p) or p["u"] * p["ri"] - p["c"], 18, reasons)
    assert set(reasons[4:]) - {"random"}  # the model made some of them


def test_metis_same_seed_same_suggestions():
    runs = [
        _optimise(MetisTuner(optimize_mode="minimize", seed=s, **FAST), QUAD, quad, 14) for s in (3, 3, 4)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_metis_cold_start_then_the_decision_rule():
    reasons: list = []
    _optimise(
        MetisTuner(seed=0, cold_start_num=6, exploration_probability=0.0, **FAST), QUAD, quad, 14, reasons
    )
    assert reasons[:6] == ["random"] * 6
    # never exploring: the GP's optimum, unless it was already tried (then the best candidate)
    assert reasons[6:].count("exploitation_gp") >= 4
    assert "random" not in reasons[6:]

    reasons = []
    _optimise(
        MetisTuner(seed=0, cold_start_num=6, exploration_probability=1.0, **FAST), QUAD, quad, 14, reasons
    )
    assert "exploitation_gp" not in reasons[6:]
    assert {"exploration", "exploitation_gmm"} & set(reasons[6:])

    reasons = []  # no candidates: the optimum or, with exploration_probability, a random point
    _optimise(
        MetisTuner(seed=0, cold_start_num=6, no_candidates=True, exploration_probability=1.0, **FAST),
        QUAD,
        quad,
        10,
        reasons,
    )
    assert reasons[6:] == ["random"] * 4


def test_metis_mixture_candidate_after_twelve_results():
    reasons: list = []
    _optimise(
        MetisTuner(optimize_mode="minimize", seed=2, exploration_probability=1.0, **FAST),
        QUAD,
        quad,
        30,
        reasons,
    )
    assert "exploitation_gmm" in reasons[12:]
    assert "exploitation_gmm" not in reasons[:12]


def test_metis_finds_outliers_to_resample():
    rng = np.random.default_rng(0)
    xs = rng.uniform(-5, 5, size=(60, 2))
    data = [{"parameter": {"x": x, "y": y}, "value": -quad({"x": x, "y": y})} for x, y in xs]
    data[7]["value"] += 25.0  # a noisy result the others contradict
    tuner = MetisTuner(seed=0, no_resampling=False, exploration_probability=1.0, **FAST)
    tuner.update_search_space(QUAD)
    tuner.import_data(data)
    store, cube = tuner._store, tuner._cube
    keys, samples = tuner._data(store, cube)
    agg = np.array([np.median(s) for s in samples])
    with single_threaded():  # as inside the tuner: no BLAS threads fighting over 2 x 2 matrices
        gp = GaussianProcess(nu=1.5).fit(keys, agg, np.random.default_rng(0))
        cands = tuner._candidates(
            gp, cube, store, keys, samples, agg, cube.sample(np.random.default_rng(1), 100)
        )
    resample = [c for c in cands if c.reason == "resampling"]
    assert resample, [c.reason for c in cands]
    outlier = cube.encode(data[7]["parameter"])
    assert any(np.allclose(c.u, outlier) for c in resample)
    # no_resampling (the default) never proposes one
    tuner.no_resampling = True
    with single_threaded():
        cands = tuner._candidates(
            gp, cube, store, keys, samples, agg, cube.sample(np.random.default_rng(1), 100)
        )
    assert all(c.reason != "resampling" for c in cands)


def test_metis_resampling_may_repeat_a_point_and_aggregates_by_median():
    tuner = MetisTuner(seed=0, no_resampling=False, **FAST)
    tuner.update_search_space(QUAD)
    point = {"x": 1.0, "y": 1.0}
    tuner.import_data([{"parameter": point, "value": v} for v in (1.0, 5.0, 2.0)])
    keys, samples = tuner._data(tuner._store, tuner._cube)
    assert len(keys) == 1 and sorted(samples[0]) == [-5.0, -2.0, -1.0]  # maximised: losses are negated


def test_metis_constant_liar_spreads_pending_suggestions():
    tuner = MetisTuner(seed=0, **FAST)
    _optimise(tuner, {"x": {"_type": "uniform", "_value": [-10, 10]}}, lambda p: -((p["x"] - 2) ** 2), 12)
    xs = [tuner.generate_parameters(100 + k)["x"] for k in range(6)]
    assert len(set(xs)) == 6
    assert np.std(xs) > 1.0


def test_metis_nan_and_inf_results_count_as_worst():
    def fn(p):
        return math.inf if p["x"] > 0 else -((p["x"] + 2.0) ** 2)

    tuner = MetisTuner(seed=5, exploration_probability=0.5, **FAST)
    values = _optimise(tuner, {"x": {"_type": "uniform", "_value": [-5, 5]}}, fn, 24)
    losses = [loss for _, loss in tuner.observations()]
    assert sum(math.isinf(v) for v in losses) == sum(math.isinf(v) for v in values)
    assert max(v for v in values if math.isfinite(v)) > -0.1


def test_metis_import_data_and_resume():
    data = [
        {"parameter": {"x": x, "y": -2.0}, "value": -quad({"x": x, "y": -2.0})}
        for x in np.linspace(-5, 5, 12)
    ]
    tuner = MetisTuner(seed=0, exploration_probability=0.0, **FAST)
    tuner.update_search_space(QUAD)
    tuner.import_data([*data, {"parameter": {"x": 99.0, "y": 0.0}, "value": 1.0}])
    assert len(tuner.observations()) == 12
    params = tuner.generate_parameters(0)
    assert tuner.last_reason == "exploitation_gp" and abs(params["x"] - 1.3) < 1.5

    resumed = MetisTuner(seed=0, **FAST)
    resumed.update_search_space(QUAD)
    history = [HistoryEntry(i, d["parameter"], d["value"]) for i, d in enumerate(data)]
    history.append(HistoryEntry(12, {"x": 0.0, "y": 0.0}, None, finished=False))
    resumed.resume(history)
    assert len(resumed.observations()) == 12 and 12 in resumed._pending
    assert resumed.generate_parameters(13) != {"x": 0.0, "y": 0.0}


@pytest.mark.parametrize(
    "spec",
    [
        {"_type": "loguniform", "_value": [1e-3, 1]},
        {"_type": "normal", "_value": [0, 1]},
        {"_type": "choice", "_value": [1, "two"]},
        {"_type": "choice", "_value": [{"_name": "a"}, {"_name": "b"}]},
    ],
)
def test_metis_nni_types_only_rejects_what_nni_rejected(spec):
    space = SearchSpace.parse({"ok": {"_type": "uniform", "_value": [0, 1]}, "bad": spec})
    MetisTuner.check_search_space(space)  # accepted by default
    MetisTuner().update_search_space(space)
    with pytest.raises(SearchSpaceError, match=r"'bad'.*MetisTuner") as err:
        MetisTuner(nni_types_only=True).update_search_space(space)
    assert err.value.path == "bad"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"optimize_mode": "minimise"}, "optimize_mode"),
        ({"no_resampling": "yes"}, "no_resampling"),
        ({"no_candidates": 1}, "no_candidates"),
        ({"selection_num_starting_points": 0}, "selection_num_starting_points"),
        ({"cold_start_num": -1}, "cold_start_num"),
        ({"exploration_probability": 1.5}, "exploration_probability"),
        ({"exploration_probability": "0.9"}, "exploration_probability"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_metis_invalid_class_args(kwargs, field):
    with pytest.raises(ConfigError, match=f"MetisTuner.{field}"):
        MetisTuner(**kwargs)


def test_metis_beats_random_on_average():
    metis = [
        min(_optimise(MetisTuner(optimize_mode="minimize", seed=s, **FAST), QUAD, quad, 25)) for s in range(3)
    ]
    rnd = [min(_optimise(RandomTuner(seed=s), QUAD, quad, 25)) for s in range(3)]
    assert np.mean(metis) < 0.5 * np.mean(rnd)


def test_metis_end_to_end_through_an_experiment(tmp_path):
    run_quad_experiment(
        tmp_path, {"name": "MetisTuner", "classArgs": {"cold_start_num": 3, "seed": 0, **FAST}}
    )
