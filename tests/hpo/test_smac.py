from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nni_pl.errors import ConfigError, NoMoreTrialError, SearchSpaceError
from nni_pl.hpo import HistoryEntry, create_algorithm
from nni_pl.hpo.tuners import RandomTuner, SMACTuner
from nni_pl.space import SearchSpace
from nni_pl.testing import TunerTestCase

from .conftest import NESTED, assert_valid, optimise

QUAD = {"x": {"_type": "uniform", "_value": [-5, 5]}, "y": {"_type": "uniform", "_value": [-5, 5]}}
SMAC_TYPES = {
    "c": {"_type": "choice", "_value": ["a", 2, None, {"k": 1}]},
    "ri": {"_type": "randint", "_value": [-2, 3]},
    "u": {"_type": "uniform", "_value": [-1.0, 1.0]},
    "qu": {"_type": "quniform", "_value": [2, 10, 5]},
    "quf": {"_type": "quniform", "_value": [0, 1, 0.1]},
    "lu": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
}
# a cheap mixed problem: 6 choices of 8 options, an integer and a log-scale number
MIXED = {
    **{f"c{i}": {"_type": "choice", "_value": [f"o{k}" for k in range(8)]} for i in range(6)},
    "n": {"_type": "randint", "_value": [0, 20]},
    "lr": {"_type": "loguniform", "_value": [1e-5, 1]},
}


def _quad(p: dict) -> float:
    return (p["x"] - 1.3) ** 2 + (p["y"] + 2.1) ** 2


def _mixed(p: dict) -> float:
    return (
        sum(abs(int(p[f"c{i}"][1:]) - i) for i in range(6))
        + abs(p["n"] - 13) / 4
        + abs(math.log10(p["lr"]) + 3)
    )


def test_smac_declares_nni_types_and_rejects_others():
    assert SMACTuner.supported_types == {"choice", "randint", "uniform", "loguniform", "quniform"}
    for bad in ("normal", "qloguniform", "lognormal", "qnormal", "qlognormal"):
        space = SearchSpace.parse(
            {"x": {"_type": bad, "_value": [1, 2, 1] if bad.startswith("q") else [1, 2]}}
        )
        with pytest.raises(SearchSpaceError, match=f"tuner SMAC does not support _type '{bad}'"):
            SMACTuner().update_search_space(space)
    with pytest.raises(SearchSpaceError, match="'layer/b/x'"):
        SMACTuner.check_search_space(
            SearchSpace.parse(
                {
                    "layer": {
                        "_type": "choice",
                        "_value": [
                            {"_name": "a"},
                            {"_name": "b", "x": {"_type": "normal", "_value": [0, 1]}},
                        ],
                    }
                }
            )
        )


def test_smac_values_in_space_with_the_right_types():
    rng = np.random.default_rng(0)
    tuner = SMACTuner(seed=0)
    tuner.update_search_space(SMAC_TYPES)
    for i in range(30):
        params = tuner.generate_parameters(i)
        assert_valid(SMAC_TYPES, params)
        tuner.receive_trial_result(i, params, float(rng.normal()))


def test_smac_nested_space_learns_the_good_branch(nested_space):
    def fn(p):
        layer = p["layer"]
        if layer["_name"] != "block":
            return 5.0
        return (
            abs(layer["width"] - 40) / 10
            + abs(layer["act"].get("slope", 0.0) - 0.2)
            + math.log10(p["lr"]) ** 2 / 100
        )

    tuner = SMACTuner(optimize_mode="minimize", seed=1)
    tuner.update_search_space(nested_space)
    picked = []
    for i in range(40):
        params = tuner.generate_parameters(i)
        assert_valid(nested_space, params)
        tuner.receive_trial_result(i, params, fn(params))
        picked.append(params["layer"]["_name"])
    assert picked[-20:].count("block") >= 14  # random: about a third


def test_smac_same_seed_same_suggestions():
    runs = [optimise(SMACTuner(optimize_mode="minimize", seed=s), QUAD, _quad, 15) for s in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_smac_beats_random_on_a_mixed_problem():
    smac = [min(optimise(SMACTuner(optimize_mode="minimize", seed=s), MIXED, _mixed, 40)) for s in range(4)]
    rnd = [min(optimise(RandomTuner(seed=s), MIXED, _mixed, 40)) for s in range(4)]
    assert np.mean(smac) < 0.7 * np.mean(rnd)
    assert sum(a < b for a, b in zip(smac, rnd)) >= 3


def test_smac_beats_random_on_a_continuous_problem():
    smac = [min(optimise(SMACTuner(optimize_mode="minimize", seed=s), QUAD, _quad, 30)) for s in range(4)]
    rnd = [min(optimise(RandomTuner(seed=s), QUAD, _quad, 30)) for s in range(4)]
    assert np.mean(smac) < 0.5 * np.mean(rnd)


def _spread(tuner: SMACTuner, n_pending: int) -> float:
    optimise(tuner, {"x": {"_type": "uniform", "_value": [-10, 10]}}, lambda p: -(p["x"] ** 2), 15)
    tuner.random_fraction = 0.0  # only model suggestions
    pending = [tuner.generate_parameters(100 + k)["x"] for k in range(n_pending)]
    return float(np.std(pending))


def test_smac_constant_liar_spreads_pending_suggestions():
    with_liar = [_spread(SMACTuner(seed=s), 8) for s in range(3)]
    # the same tuner state, but results of pending trials forgotten: suggestions pile up near the best
    without = []
    for s in range(3):
        tuner = SMACTuner(seed=s)
        optimise(tuner, {"x": {"_type": "uniform", "_value": [-10, 10]}}, lambda p: -(p["x"] ** 2), 15)
        tuner.random_fraction = 0.0
        xs = []
        for k in range(8):
            xs.append(tuner.generate_parameters(100 + k)["x"])
            tuner._pending.clear()
        without.append(float(np.std(xs)))
    assert np.mean(with_liar) > 1.5 * np.mean(without)


def test_smac_pending_points_are_not_suggested_twice():
    tuner = SMACTuner(seed=0, config_dedup=True)
    space = {"a": {"_type": "choice", "_value": list(range(6))}, "b": {"_type": "randint", "_value": [0, 4]}}
    tuner.update_search_space(space)
    for i in range(10):
        p = tuner.generate_parameters(i)
        tuner.receive_trial_result(i, p, float(p["a"] + p["b"]))
    pending = [tuner.generate_parameters(10 + k) for k in range(8)]
    keys = {(p["a"], p["b"]) for p in pending}
    assert len(keys) == 8


@pytest.mark.parametrize("dedup", [True, False])
def test_smac_finite_space_raises_when_exhausted(dedup):
    tuner = SMACTuner(seed=0, config_dedup=dedup)
    space = {"a": {"_type": "choice", "_value": ["x", "y", "z"]}, "b": {"_type": "randint", "_value": [0, 4]}}
    tuner.update_search_space(space)
    seen = []
    with pytest.raises(NoMoreTrialError, match="all 12 points"):
        for i in range(200):
            p = tuner.generate_parameters(i)
            tuner.receive_trial_result(i, p, float(i % 5))
            seen.append((p["a"], p["b"]))
    assert len(set(seen)) == len(seen) == 12


@pytest.mark.parametrize("dedup", [True, False])
def test_smac_never_repeats_a_point_whatever_config_dedup(dedup):
    space = {
        "a": {"_type": "choice", "_value": list(range(10))},
        "b": {"_type": "choice", "_value": list(range(10))},
    }

    model = SMACTuner(seed=0, optimize_mode="minimize", config_dedup=dedup)
    model.random_fraction = 0.0
    values = optimise(model, space, lambda p: float(abs(p["a"] - 3) + abs(p["b"] - 7)), 40)
    assert min(values) == 0.0
    assert len({(p["a"], p["b"]) for p, _ in model.observations()}) == 40  # the model never repeats

    # random draws neither (NNI's config_dedup=False let them repeat a finished point)
    tuner = SMACTuner(seed=0, config_dedup=dedup)
    tuner.random_fraction = 1.0
    optimise(tuner, space, lambda p: 0.0, 60)
    assert len({(p["a"], p["b"]) for p, _ in tuner.observations()}) == 60


def test_smac_nan_and_inf_results_count_as_worst():
    def fn(p):
        return math.nan if p["x"] > 0 else -((p["x"] + 2.0) ** 2)

    tuner = SMACTuner(seed=5)
    values = optimise(tuner, {"x": {"_type": "uniform", "_value": [-5, 5]}}, fn, 30)
    assert sum(math.isnan(v) for v in values[-15:]) <= 5  # it steers away from the diverging half
    everything_fails = SMACTuner(seed=1)
    values = optimise(everything_fails, QUAD, lambda p: {"default": math.inf}, 12)
    assert len(values) == 12


def test_smac_import_data_and_resume_feed_the_model():
    data = [
        {"parameter": {"x": x, "y": -2.0}, "value": -_quad({"x": x, "y": -2.0})}
        for x in np.linspace(-5, 5, 15)
    ]
    tuner = SMACTuner(seed=0)
    tuner.update_search_space(QUAD)
    tuner.import_data(
        [
            *data,
            {"parameter": {"x": 99.0, "y": 0.0}, "value": 1.0},
            {"parameter": {"x": 0.0, "y": 0.0}, "value": None},
        ]
    )
    assert len(tuner.observations()) == 15
    tuner.random_fraction = 0.0
    suggestions = [tuner.generate_parameters(i) for i in range(4)]
    assert np.mean([abs(p["x"] - 1.3) for p in suggestions]) < 2.0  # modelled from the imported data

    resumed = SMACTuner(seed=0)
    resumed.update_search_space(QUAD)
    history = [HistoryEntry(i, d["parameter"], d["value"]) for i, d in enumerate(data)]
    history.append(HistoryEntry(15, {"x": 0.0, "y": 0.0}, None, finished=False))
    resumed.resume(history)
    assert len(resumed.observations()) == 15 and 15 in resumed._pending
    assert_valid(QUAD, resumed.generate_parameters(16))
    resumed.receive_trial_result(15, {"x": 0.0, "y": 0.0}, -4.0)
    assert len(resumed.observations()) == 16


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimize_mode": "Minimize"}, "SMACTuner.optimize_mode"),
        ({"config_dedup": "true"}, "SMACTuner.config_dedup"),
        ({"config_dedup": 1}, "SMACTuner.config_dedup"),
        ({"seed": -1}, "SMACTuner.seed"),
    ],
)
def test_smac_rejects_bad_class_args(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SMACTuner(**kwargs)


def test_smac_builtin_name_with_nni_class_args():
    tuner = create_algorithm("tuner", "SMAC", class_args={"optimize_mode": "maximize", "config_dedup": True})
    assert isinstance(tuner, SMACTuner) and tuner.config_dedup
    tuner.update_search_space(NESTED)
    assert_valid(NESTED, tuner.generate_parameters(0))


class TestSMACConformance(TunerTestCase):
    tuner_class = SMACTuner
    n_suggestions = 16


class TestSMACDedupConformance(TunerTestCase):
    tuner_class = SMACTuner
    tuner_kwargs = {"config_dedup": True}
    n_suggestions = 16


def _smac_trial(params):
    return -_mixed(params)


def test_smac_end_to_end_with_concurrent_trials(tmp_path):
    from nni_pl.experiment import Experiment
    from nni_pl.experiment import store as st

    exp = Experiment(
        trial=_smac_trial,
        search_space=MIXED,
        tuner={"name": "SMAC", "classArgs": {"optimize_mode": "maximize", "seed": 0}},
        max_trial_number=14,
        trial_concurrency=3,
        experiment_working_directory=tmp_path,
        start_method="fork",  # spawned workers cannot import this module: tests/hpo is the package "hpo"
    )
    exp.run(display=False)
    trials = exp.trials()
    assert exp.get_status() == st.EXP_DONE
    assert len(trials) == 14 and all(t.status == st.SUCCEEDED for t in trials)
    assert len({json.dumps(t.parameters, sort_keys=True) for t in trials}) == 14
