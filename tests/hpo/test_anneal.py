from __future__ import annotations

import math

import numpy as np
import pytest

from nni_pl.errors import ConfigError
from nni_pl.hpo import create_algorithm
from nni_pl.hpo.tuners import AnnealTuner, RandomTuner

from .conftest import ALL_TYPES, assert_valid, optimise

QUAD = {"x": {"_type": "uniform", "_value": [-5, 5]}, "y": {"_type": "loguniform", "_value": [1e-3, 10]}}


def _fn(p: dict) -> float:
    return (p["x"] - 1.3) ** 2 + math.log10(p["y"]) ** 2


def test_anneal_all_types_values_in_space(all_types_space):
    rng = np.random.default_rng(0)
    tuner = AnnealTuner(seed=0)
    tuner.update_search_space(ALL_TYPES)
    for i in range(150):
        params = tuner.generate_parameters(i)
        assert_valid(all_types_space, params)
        tuner.receive_trial_result(i, params, float(rng.normal()))


def test_anneal_nested_returns_nni_form(nested_space):
    tuner = AnnealTuner(optimize_mode="minimize", seed=1)
    tuner.update_search_space(nested_space)
    picked = []
    for i in range(80):
        params = tuner.generate_parameters(i)
        assert_valid(nested_space, params)
        assert isinstance(params["layer"], dict) and "_name" in params["layer"]
        layer = params["layer"]
        loss = (
            0.0
            if layer["_name"] == "conv" and layer["kernel_size"] == 3
            else 0.5
            if layer["_name"] == "conv"
            else 1.0
        )
        tuner.receive_trial_result(i, params, loss)
        picked.append(loss == 0.0)
    assert sum(picked[-30:]) >= 15  # anneals towards the best branch and option (random: ~3 in 30)


def test_anneal_same_seed_same_suggestions():
    a, b, c = (optimise(AnnealTuner(optimize_mode="minimize", seed=s), QUAD, _fn, 30) for s in (2, 2, 3))
    assert a == b and a != c


def test_anneal_beats_random_on_average():
    ann = [min(optimise(AnnealTuner(optimize_mode="minimize", seed=s), QUAD, _fn, 60)) for s in range(5)]
    rnd = [min(optimise(RandomTuner(seed=s), QUAD, _fn, 60)) for s in range(5)]
    assert np.mean(ann) < np.mean(rnd)


def test_anneal_neighbourhood_shrinks_around_best():
    tuner = AnnealTuner(seed=0)  # maximize
    tuner.update_search_space({"x": {"_type": "uniform", "_value": [0, 100]}})
    tuner.import_data([{"parameter": {"x": float(x)}, "value": -abs(x - 70)} for x in range(0, 101, 2)])
    xs = np.array([tuner.generate_parameters(i)["x"] for i in range(50)])
    # 51 observations: window width 100 / (1 + 5.1) ~ 16 around one of the best few (68..72)
    assert np.all((xs > 50) & (xs < 90))


def test_anneal_nan_results_and_import():
    tuner = AnnealTuner(seed=4)
    values = optimise(tuner, QUAD, lambda p: math.nan if p["x"] > 0 else -_fn(p), 40)
    assert any(math.isnan(v) for v in values)
    assert all(loss == math.inf for p, loss in tuner.observations() if p["x"] > 0)


@pytest.mark.parametrize(
    ("kwargs", "field"), [({"optimize_mode": "min"}, "optimize_mode"), ({"seed": "s"}, "seed")]
)
def test_anneal_rejects_bad_class_args(kwargs, field):
    with pytest.raises(ConfigError, match=rf"'AnnealTuner\.{field}'"):
        AnnealTuner(**kwargs)
    with pytest.raises(ConfigError, match=rf"'tuner\.classArgs\.{field}'"):
        create_algorithm("tuner", "Anneal", class_args=kwargs)
