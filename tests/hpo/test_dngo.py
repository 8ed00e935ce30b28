from __future__ import annotations

import math

import numpy as np
import pytest

from nni_pl.errors import ConfigError, SearchSpaceError
from nni_pl.hpo import HistoryEntry
from nni_pl.hpo.tuners import RandomTuner
from nni_pl.hpo.tuners.dngo import DNGOTuner, _BayesianLinear
from nni_pl.space import SearchSpace
from nni_pl.testing import TunerTestCase

from .conftest import QUAD, assert_valid, optimise, quad, run_quad_experiment

NUMERIC = {
    "ri": {"_type": "randint", "_value": [-2, 3]},
    "u": {"_type": "uniform", "_value": [-1.0, 1.0]},
    "qu": {"_type": "quniform", "_value": [2, 10, 5]},
    "lu": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
    "qlu": {"_type": "qloguniform", "_value": [1, 1000, 7]},
    "c": {"_type": "choice", "_value": [16, 32.0, 0.5, 128]},
}
FAST = {"num_epochs_per_training": 60, "sample_size": 300}


class TestDNGOConformance(TunerTestCase):
    tuner_class = DNGOTuner
    tuner_kwargs = {"sample_size": 50, "trials_per_update": 3, "num_epochs_per_training": 20}
    n_suggestions = 6


def test_dngo_values_and_types_in_space():
    space = SearchSpace.parse(NUMERIC)
    rng = np.random.default_rng(0)
    tuner = DNGOTuner(seed=0, trials_per_update=5, **FAST)
    tuner.update_search_space(NUMERIC)
    for i in range(16):
        params = tuner.generate_parameters(i)
        assert_valid(space, params)
        tuner.receive_trial_result(i, params, float(rng.normal()) + params["u"])
    assert tuner._net is not None


def test_dngo_same_seed_same_suggestions_and_torch_left_alone():
    import torch

    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    runs = [optimise(DNGOTuner(optimize_mode="minimize", seed=s, **FAST), QUAD, quad, 14) for s in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert torch.equal(torch.rand(3), expected)  # the tuner did not consume the global torch RNG
    assert torch.get_num_threads() == threads


def test_dngo_cold_start_and_retraining_schedule(monkeypatch):
    trained, threads = [], []
    original = DNGOTuner._train

    def spy(self, torch, x, y):
        trained.append(len(x))
        threads.append(torch.get_num_threads())
        return original(self, torch, x, y)

    monkeypatch.setattr(DNGOTuner, "_train", spy)
    tuner = DNGOTuner(optimize_mode="minimize", seed=0, trials_per_update=4, **FAST)
    assert tuner.n_startup_jobs == 4  # min(trials_per_update, 10) random trials first
    optimise(tuner, QUAD, quad, 15)
    assert trained == [4, 8, 12]  # at cold start, then every trials_per_update results
    assert threads == [1, 1, 1]

    trained.clear()
    tuner = DNGOTuner(optimize_mode="minimize", seed=0, **FAST)  # trials_per_update=20
    optimise(tuner, QUAD, quad, 12)
    assert tuner.n_startup_jobs == 10 and trained == [10]


def test_bayesian_linear_regression_evidence_and_uncertainty():
    rng = np.random.default_rng(0)
    phi = np.hstack([rng.normal(size=(40, 3)), np.ones((40, 1))])
    w = np.array([1.0, -2.0, 0.5, 0.3])
    y = phi @ w + rng.normal(0, 0.1, size=40)
    blr = _BayesianLinear(phi, y)
    assert 1 / math.sqrt(blr.beta) == pytest.approx(0.1, rel=0.35)  # the noise level is recovered
    np.testing.assert_allclose(blr.coef, w, atol=0.1)
    near, far = np.array([[0.1, 0.2, -0.1, 1.0]]), np.array([[8.0, -9.0, 7.0, 1.0]])
    assert blr.predict(far)[1][0] > 2 * blr.predict(near)[1][0]


def test_dngo_constant_liar_spreads_pending_suggestions():
    def spread(with_liar: bool, seed: int) -> float:
        tuner = DNGOTuner(seed=seed, **FAST)
        optimise(tuner, {"x": {"_type": "uniform", "_value": [-10, 10]}}, lambda p: -((p["x"] - 2) ** 2), 12)
        xs = []
        for k in range(6):
            xs.append(tuner.generate_parameters(100 + k)["x"])
            if not with_liar:
                tuner._pending.clear()
        return float(np.std(xs))

    plain = [spread(False, s) for s in range(3)]
    liar = [spread(True, s) for s in range(3)]
    assert np.mean(liar) > 3 * np.mean(plain), (plain, liar)


def test_dngo_nan_and_inf_results_count_as_worst():
    def fn(p):
        return math.nan if p["x"] > 0 else -((p["x"] + 2.0) ** 2)

    tuner = DNGOTuner(seed=5, trials_per_update=5, **FAST)
    values = optimise(tuner, {"x": {"_type": "uniform", "_value": [-5, 5]}}, fn, 25)
    assert sum(math.isnan(v) for v in values[10:]) <= 5
    assert max(v for v in values if not math.isnan(v)) > -0.1


def test_dngo_import_data_and_resume():
    data = [
        {"parameter": {"x": x, "y": -2.0}, "value": -quad({"x": x, "y": -2.0})}
        for x in np.linspace(-5, 5, 15)
    ]
    tuner = DNGOTuner(seed=0, **FAST)
    tuner.update_search_space(QUAD)
    tuner.import_data([*data, {"parameter": {"x": 0.0, "y": 0.0}, "value": None}])
    assert len(tuner.observations()) == 15
    tuner.generate_parameters(0)
    assert tuner._net is not None and tuner._trained_on == 15  # trained on the imported results

    resumed = DNGOTuner(seed=0, **FAST)
    resumed.update_search_space(QUAD)
    history = [HistoryEntry(i, d["parameter"], d["value"]) for i, d in enumerate(data)]
    history.append(HistoryEntry(15, {"x": 0.0, "y": 0.0}, None, finished=False))
    resumed.resume(history)
    assert len(resumed.observations()) == 15 and 15 in resumed._pending
    assert resumed.generate_parameters(16) != {"x": 0.0, "y": 0.0}
    assert resumed._trained_on == 15


@pytest.mark.parametrize(
    "spec",
    [
        {"_type": "normal", "_value": [0, 1]},
        {"_type": "lognormal", "_value": [0, 1]},
        {"_type": "choice", "_value": ["a", "b"]},
        {"_type": "choice", "_value": [{"_name": "a"}, {"_name": "b"}]},
    ],
)
def test_dngo_nni_types_only_rejects_what_nni_rejected(spec):
    space = SearchSpace.parse({"ok": {"_type": "uniform", "_value": [0, 1]}, "bad": spec})
    DNGOTuner.check_search_space(space)  # accepted by default
    DNGOTuner().update_search_space(space)
    with pytest.raises(SearchSpaceError, match=r"'bad'.*DNGOTuner") as err:
        DNGOTuner(nni_types_only=True).update_search_space(space)
    assert err.value.path == "bad"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"optimize_mode": "best"}, "optimize_mode"),
        ({"sample_size": 0}, "sample_size"),
        ({"trials_per_update": 0}, "trials_per_update"),
        ({"num_epochs_per_training": 1.5}, "num_epochs_per_training"),
        ({"seed": "1"}, "seed"),
    ],
)
def test_dngo_invalid_class_args(kwargs, field):
    with pytest.raises(ConfigError, match=f"DNGOTuner.{field}"):
        DNGOTuner(**kwargs)


def test_dngo_beats_random_on_average():
    kwargs = {"num_epochs_per_training": 200, "trials_per_update": 5, "sample_size": 300}
    dngo = [
        min(optimise(DNGOTuner(optimize_mode="minimize", seed=s, **kwargs), QUAD, quad, 25)) for s in range(4)
    ]
    rnd = [min(optimise(RandomTuner(seed=s), QUAD, quad, 25)) for s in range(4)]
    assert np.mean(dngo) < 0.5 * np.mean(rnd)


def test_dngo_end_to_end_through_an_experiment(tmp_path):
    run_quad_experiment(tmp_path, {"name": "DNGO", "classArgs": {"trials_per_update": 3, "seed": 0, **FAST}})
