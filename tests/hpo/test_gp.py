from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from nni_pl.errors import ConfigError, SearchSpaceError
from nni_pl.hpo import HistoryEntry
from nni_pl.hpo.tuners import RandomTuner
from nni_pl.hpo.tuners._gp import GaussianProcess, acquisition, maximize_batch
from nni_pl.hpo.tuners._numeric import UnitCube
from nni_pl.hpo.tuners._store import ObservationStore
from nni_pl.hpo.tuners.gp import GPTuner
from nni_pl.space import SearchSpace
from nni_pl.testing import TunerTestCase

from .conftest import QUAD, assert_valid, optimise, quad, run_quad_experiment

NUMERIC = {
    "ri": {"_type": "randint", "_value": [-2, 3]},
    "u": {"_type": "uniform", "_value": [-1.0, 1.0]},
    "qu": {"_type": "quniform", "_value": [2, 10, 5]},
    "quf": {"_type": "quniform", "_value": [0, 1, 0.1]},
    "lu": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
    "qlu": {"_type": "qloguniform", "_value": [1, 1000, 7]},
    "c": {"_type": "choice", "_value": [16, 32.0, 0.5, 128]},
    "one": {"_type": "choice", "_value": [3]},
}
FAST = {"selection_num_warm_up": 2000, "selection_num_starting_points": 10}


def _branin(p: dict) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


BRANIN = {"x1": {"_type": "uniform", "_value": [-5, 10]}, "x2": {"_type": "uniform", "_value": [0, 15]}}


class TestGPConformance(TunerTestCase):
    tuner_class = GPTuner
    tuner_kwargs = {"cold_start_num": 2, "selection_num_warm_up": 200, "selection_num_starting_points": 2}
    n_suggestions = 6


def test_gp_values_and_types_in_space():
    space = SearchSpace.parse(NUMERIC)
    rng = np.random.default_rng(0)
    tuner = GPTuner(seed=0, cold_start_num=4, **FAST)
    tuner.update_search_space(NUMERIC)
    for i in range(20):
        params = tuner.generate_parameters(i)
        assert_valid(space, params)
        assert params["c"] in (16, 32.0, 0.5, 128) and type(params["c"]) is type(
            NUMERIC["c"]["_value"][NUMERIC["c"]["_value"].index(params["c"])]
        )
        assert params["one"] == 3
        tuner.receive_trial_result(i, params, float(rng.normal()) + params["u"])


def test_gp_same_seed_same_suggestions():
    runs = [optimise(GPTuner(optimize_mode="minimize", seed=s, **FAST), QUAD, quad, 14) for s in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_gp_cold_start_is_random_then_modelled(monkeypatch):
    fits = []
    original = GaussianProcess.fit
    monkeypatch.setattr(GaussianProcess, "fit", lambda self, *a: fits.append(len(a[0])) or original(self, *a))
    tuner = GPTuner(optimize_mode="minimize", seed=0, cold_start_num=5, **FAST)
    tuner.update_search_space(QUAD)
    first = [tuner.generate_parameters(i) for i in range(5)]  # nothing reported yet: all random
    assert not fits
    for i, p in enumerate(first[:4]):
        tuner.receive_trial_result(i, p, quad(p))
    tuner.generate_parameters(10)  # 4 results < cold_start_num
    assert not fits
    tuner.receive_trial_result(4, first[4], quad(first[4]))
    tuner.generate_parameters(11)
    assert fits == [5 + 1]  # the 5 results and the pending point of id 10 (with the liar)


@pytest.mark.parametrize("utility", ["ei", "ucb", "poi"])
def test_gp_every_acquisition_optimises(utility):
    values = optimise(
        GPTuner(optimize_mode="minimize", utility=utility, seed=1, cold_start_num=5, **FAST), QUAD, quad, 20
    )
    assert min(values) < 0.5
    assert min(values[5:]) < min(values[:5])


def test_gp_acquisition_formulas():
    mu, sd = np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.5, 1e-9])
    ei, _ = acquisition("ei", mu, sd, 1.0)
    # EI of N(0, 1) below 1: E[max(1 - Y, 0)] = Phi(1) + phi(1)
    assert ei[0] == pytest.approx(0.8413447460685429 + 0.24197072451914337)
    assert ei[1] == pytest.approx(0.5 * 0.3989422804014327)
    assert ei[2] == pytest.approx(0.0, abs=1e-12)
    poi, _ = acquisition("poi", mu, sd, 1.0, xi=0.5)
    assert poi[0] == pytest.approx(0.6914624612740131)  # P(Y < 0.5)
    ucb, _ = acquisition("ucb", mu, sd, 1.0, kappa=2.0)
    assert ucb.tolist() == pytest.approx([2.0, 0.0, -2.0])


def test_gp_model_matches_scikit_learn_and_its_gradients():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern

    rng = np.random.default_rng(0)
    u = rng.random((25, 3))
    y = np.sin(4 * u).sum(1) * 10 + 3
    for nu in (1.5, 2.5, math.inf, 0.5):
        gp = GaussianProcess(nu=nu).fit(u, y, rng)
        kernel = ConstantKernel(gp.amplitude, "fixed") * Matern(gp.length, "fixed", nu=nu)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = GaussianProcessRegressor(kernel, alpha=gp.jitter, normalize_y=True).fit(u, y)
        x = rng.random((7, 3))
        mu, sd = gp.predict(x)
        ref_mu, ref_sd = ref.predict(x, return_std=True)
        np.testing.assert_allclose(mu, ref_mu, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(sd, ref_sd, rtol=1e-4, atol=1e-6)
        _, _, dmu, dsd = gp.predict_grad(x)
        h = 1e-6
        for j in range(3):
            step = np.zeros(3)
            step[j] = h
            (mp, sp), (mm, sm) = gp.predict(x + step), gp.predict(x - step)
            np.testing.assert_allclose(dmu[:, j], (mp - mm) / (2 * h), rtol=1e-3, atol=1e-3)
            np.testing.assert_allclose(dsd[:, j], (sp - sm) / (2 * h), rtol=1e-3, atol=1e-3)


def test_maximize_batch_finds_each_local_maximum():
    centres = np.array([[0.2, 0.3], [0.8, 0.7]])

    def fun(u):
        d = u[:, None, :] - centres[None]
        w = np.exp(-(d**2).sum(-1) / 0.02)
        return w.sum(1), -(w[:, :, None] * d / 0.01).sum(1)

    u, values = maximize_batch(fun, np.array([[0.1, 0.1], [0.9, 0.9], [0.25, 0.35]]))
    np.testing.assert_allclose(u, centres[[0, 1, 0]], atol=1e-3)
    assert values == pytest.approx([1.0, 1.0, 1.0], abs=1e-3)


def test_unit_cube_round_trip_and_snap():
    space = SearchSpace.parse(NUMERIC)
    store = ObservationStore(space)
    cube = UnitCube(store)
    assert cube.d == 7  # the one-option choice is not an axis
    rng = np.random.default_rng(0)
    points = cube.sample(rng, 200)
    np.testing.assert_allclose(cube.snap(points), points)  # prior samples are already decodable points
    for u in rng.random((200, cube.d)):
        params = cube.decode(u)
        assert_valid(space, params)
        np.testing.assert_allclose(cube.encode(params), cube.snap(u[None])[0], atol=1e-9)
    # a choice decodes to the nearest option by value; randint never returns high
    k_c = next(i for i, j in enumerate(cube.columns) if store.dims[j].name == "c")
    k_ri = next(i for i, j in enumerate(cube.columns) if store.dims[j].name == "ri")
    u = np.full(cube.d, 0.5)
    u[k_c], u[k_ri] = 0.0, 1.0
    assert cube.decode(u)["c"] == 0.5 and cube.decode(u)["ri"] == 2


def test_gp_constant_liar_spreads_pending_suggestions():
    def spread(with_liar: bool, seed: int) -> float:
        tuner = GPTuner(seed=seed, **FAST)
        optimise(tuner, {"x": {"_type": "uniform", "_value": [-10, 10]}}, lambda p: -((p["x"] - 2) ** 2), 12)
        xs = []
        for k in range(6):  # six trials running at once
            xs.append(tuner.generate_parameters(100 + k)["x"])
            if not with_liar:
                tuner._pending.clear()
        return float(np.std(xs))

    plain = [spread(False, s) for s in range(3)]
    liar = [spread(True, s) for s in range(3)]
    assert all(b > 3 * a for a, b in zip(plain, liar)), (plain, liar)
    assert min(liar) > 0.05


def test_gp_nan_and_inf_results_count_as_worst():
    def fn(p):
        return math.nan if p["x"] > 0 else -((p["x"] + 2.0) ** 2)

    tuner = GPTuner(seed=5, cold_start_num=6, **FAST)
    values = optimise(tuner, {"x": {"_type": "uniform", "_value": [-5, 5]}}, fn, 20)
    assert sum(math.isnan(v) for v in values[6:]) <= 3
    assert max(v for v in values if not math.isnan(v)) > -0.05


def test_gp_import_data_and_resume_feed_the_model():
    # y varies too: along an axis the data never moves, every length scale is equally likely
    points = zip(np.linspace(-5, 5, 12), np.resize([-2.0, 0.5, -4.0], 12), strict=True)
    data = [{"parameter": {"x": x, "y": y}, "value": -quad({"x": x, "y": y})} for x, y in points]
    tuner = GPTuner(seed=0, **FAST)
    tuner.update_search_space(QUAD)
    tuner.import_data(
        [
            *data,
            {"parameter": {"x": 99.0, "y": 0.0}, "value": 1.0},
            {"parameter": {"x": 0.0, "y": 0.0}, "value": None},
        ]
    )
    assert len(tuner.observations()) == 12  # out-of-space and value-less records are skipped
    params = tuner.generate_parameters(0)  # past cold_start_num: modelled
    assert abs(params["x"] - 1.3) < 1.5

    resumed = GPTuner(seed=0, **FAST)
    resumed.update_search_space(QUAD)
    history = [HistoryEntry(i, d["parameter"], d["value"]) for i, d in enumerate(data)]
    history.append(HistoryEntry(12, {"x": 0.0, "y": 0.0}, None, finished=False))
    resumed.resume(history)
    assert len(resumed.observations()) == 12 and 12 in resumed._pending
    resumed.generate_parameters(13)
    resumed.receive_trial_result(12, {"x": 0.0, "y": 0.0}, -4.0)
    assert len(resumed.observations()) == 13


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ({"_type": "normal", "_value": [0, 1]}, "normal"),
        ({"_type": "qlognormal", "_value": [0, 1, 1]}, "qlognormal"),
        ({"_type": "choice", "_value": ["relu", "tanh"]}, "numeric choice"),
        (
            {
                "_type": "choice",
                "_value": [{"_name": "a"}, {"_name": "b", "z": {"_type": "uniform", "_value": [0, 1]}}],
            },
            "nested",
        ),
    ],
)
def test_gp_nni_types_only_rejects_what_nni_rejected(spec, name):
    space = SearchSpace.parse({"ok": {"_type": "uniform", "_value": [0, 1]}, "bad": spec})
    GPTuner.check_search_space(space)  # accepted by default
    GPTuner().update_search_space(space)
    with pytest.raises(SearchSpaceError, match=r"'bad'.*GPTuner") as err:
        GPTuner(nni_types_only=True).update_search_space(space)
    assert err.value.path == "bad"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"optimize_mode": "max"}, "optimize_mode"),
        ({"utility": "lcb"}, "utility"),
        ({"kappa": -1}, "kappa"),
        ({"kappa": "5"}, "kappa"),
        ({"xi": math.nan}, "xi"),
        ({"nu": 0}, "nu"),
        ({"alpha": -1e-6}, "alpha"),
        ({"cold_start_num": -1}, "cold_start_num"),
        ({"cold_start_num": 2.5}, "cold_start_num"),
        ({"selection_num_warm_up": 0}, "selection_num_warm_up"),
        ({"selection_num_starting_points": True}, "selection_num_starting_points"),
        ({"seed": -3}, "seed"),
        ({"choice_spacing": "log"}, "choice_spacing"),
    ],
)
def test_gp_invalid_class_args(kwargs, field):
    with pytest.raises(ConfigError, match=f"GPTuner.{field}"):
        GPTuner(**kwargs)


def test_gp_accepts_nni_spellings_of_numbers():
    tuner = GPTuner(
        kappa=5.0, xi=0.01, nu=math.inf, alpha=0, cold_start_num=3, selection_num_starting_points=0
    )
    values = optimise(tuner, QUAD, quad, 6)
    assert len(values) == 6


def test_gp_beats_random_on_branin():
    gp = [
        min(optimise(GPTuner(optimize_mode="minimize", seed=s, **FAST), BRANIN, _branin, 25))
        for s in range(3)
    ]
    rnd = [min(optimise(RandomTuner(seed=s), BRANIN, _branin, 25)) for s in range(3)]
    assert np.mean(gp) < 0.5 * np.mean(rnd)
    assert np.mean(gp) - 0.397887 < 0.1


def test_gp_end_to_end_through_an_experiment(tmp_path):
    trials = run_quad_experiment(
        tmp_path, {"name": "GP", "classArgs": {"cold_start_num": 3, "seed": 0, **FAST}}
    )
    assert len({(t.parameters["x"], t.parameters["y"]) for t in trials}) == 8


def test_gp_hyperprior_gradient_and_length_scales_kept_off_the_bounds():
    """The MAP objective's analytic gradient matches finite differences; on data that does not vary along
    an axis, maximum likelihood sends that length scale to its upper bound (the model is then sure of
    regions it never saw) while the prior keeps it moderate."""
    from scipy.optimize import approx_fprime

    from nni_pl.hpo.tuners._gp import _NegativeLogLikelihood

    rng = np.random.default_rng(3)
    u = rng.random((12, 2))
    y = np.sin(6 * u[:, 0])  # flat along axis 1
    yn = (y - y.mean()) / y.std()
    objective = _NegativeLogLikelihood(u, yn, 2.5, 1e-6, hyperprior=True)
    theta = np.array([0.3, math.log(0.4), math.log(2.0)])
    _, grad = objective(theta)
    numeric = approx_fprime(theta, lambda t: objective(t)[0], 1e-6)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-4)

    mle = GaussianProcess(nu=2.5).fit(u, y, np.random.default_rng(0))
    map_ = GaussianProcess(nu=2.5, hyperprior=True).fit(u, y, np.random.default_rng(0))
    assert mle.length[1] > 50  # at (or near) the bound of 100
    assert map_.length[1] < 10 and map_.length[0] < 1


def test_gp_tuner_hyperprior_is_the_default_and_false_is_nnis_fit():
    from nni_pl.hpo.tuners import GPTuner

    assert GPTuner()._gp.hyperprior is True
    assert GPTuner(hyperprior=False)._gp.hyperprior is False
    with pytest.raises(ConfigError, match="hyperprior"):
        GPTuner(hyperprior="yes")  # type: ignore[arg-type]


def test_numeric_choice_options_evenly_spaced_by_rank_or_linear_in_value_as_nni():
    from nni_pl.hpo.tuners import GPTuner

    space = {
        "lr": {"_type": "choice", "_value": [0.1, 1e-5, 1e-3, 0.01, 1e-4]},
        "x": {"_type": "uniform", "_value": [0, 1]},
    }
    rank, value = GPTuner(seed=0), GPTuner(seed=0, choice_spacing="value")
    for tuner in (rank, value):
        tuner.update_search_space(space)
    lrs = [0.1, 1e-5, 1e-3, 0.01, 1e-4]
    at_rank = [rank._cube.encode({"lr": v, "x": 0.5})[0] for v in lrs]
    at_value = [value._cube.encode({"lr": v, "x": 0.5})[0] for v in lrs]
    np.testing.assert_allclose(at_rank, [1.0, 0.0, 0.5, 0.75, 0.25])
    np.testing.assert_allclose(at_value, [(v - 1e-5) / (0.1 - 1e-5) for v in lrs])
    assert max(at_value[1], at_value[2], at_value[4]) < 0.01  # NNI's spacing: three options within 1%
    for u, v in zip(at_rank, lrs):  # every option decodes back from its own point
        assert rank._cube.decode(np.array([u, 0.5]))["lr"] == v
    assert GPTuner()._cube is None and GPTuner().choice_spacing == "rank"


def test_gp_rank_spacing_finds_the_best_of_a_log_spread_choice():
    """A loss that only a distinct step per decade can resolve: rank spacing finds the best learning rate."""
    from nni_pl.hpo.tuners import GPTuner

    lrs = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    space = {"lr": {"_type": "choice", "_value": lrs}, "x": {"_type": "uniform", "_value": [0, 1]}}

    def loss(p):
        return (math.log10(p["lr"]) + 4.0) ** 2 + (p["x"] - 0.3) ** 2

    found = []
    for seed in range(3):
        best = min(optimise(GPTuner(optimize_mode="minimize", seed=seed, cold_start_num=4), space, loss, 16))
        found.append(best)
    assert max(found) < 0.05  # lr = 1e-4 (the (x - 0.3)^2 term is what is left)
