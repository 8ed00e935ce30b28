from __future__ import annotations

import math

import numpy as np
import pytest

from nni_pl.errors import ConfigError, NoMoreTrialError
from nni_pl.hpo import HistoryEntry, create_algorithm
from nni_pl.hpo.tuners import RandomTuner, TPETuner

from .conftest import ALL_TYPES, NESTED, assert_valid, optimise

QUAD = {"x": {"_type": "uniform", "_value": [-5, 5]}, "y": {"_type": "uniform", "_value": [-5, 5]}}


def _quad(p: dict) -> float:
    return (p["x"] - 1.3) ** 2 + (p["y"] + 2.1) ** 2


def test_tpe_all_types_values_in_space(all_types_space):
    rng = np.random.default_rng(0)
    tuner = TPETuner(seed=0, n_startup_jobs=5)
    tuner.update_search_space(ALL_TYPES)
    for i in range(60):
        params = tuner.generate_parameters(i)
        assert_valid(all_types_space, params)
        tuner.receive_trial_result(i, params, float(rng.normal()))


@pytest.mark.parametrize("multivariate", [True, False])
def test_tpe_nested_space_only_chosen_branch(nested_space, multivariate):
    def fn(p):  # best: block with leaky act of slope 0.2 and width 40
        layer = p["layer"]
        if layer["_name"] != "block":
            return 5.0
        slope = layer["act"].get("slope", 0.0)
        return abs(layer["width"] - 40) / 10 + abs(slope - 0.2) + math.log10(p["lr"]) ** 2 / 100

    tuner = TPETuner(optimize_mode="minimize", seed=1, multivariate=multivariate)
    tuner.update_search_space(nested_space)
    picked = []
    for i in range(80):
        params = tuner.generate_parameters(i)
        assert_valid(nested_space, params)
        assert (
            "slope" not in params["layer"].get("act", {"_name": "relu"})
            or params["layer"]["act"]["_name"] == "leaky"
        )
        tuner.receive_trial_result(i, params, fn(params))
        picked.append(params["layer"]["_name"])
    assert picked[-30:].count("block") >= 15  # it learnt which branch is good (random: ~10)


def test_tpe_same_seed_same_suggestions():
    runs = [optimise(TPETuner(optimize_mode="minimize", seed=s), QUAD, _quad, 25) for s in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_tpe_beats_random_on_average():
    tpe = [min(optimise(TPETuner(optimize_mode="minimize", seed=s), QUAD, _quad, 40)) for s in range(5)]
    rnd = [min(optimise(RandomTuner(seed=s), QUAD, _quad, 40)) for s in range(5)]
    assert np.mean(tpe) < 0.5 * np.mean(rnd)
    assert sum(t < r for t, r in zip(tpe, rnd)) >= 4


def test_tpe_maximize_is_default_and_dict_metrics_work():
    tuner = TPETuner(seed=2)
    values = optimise(tuner, QUAD, lambda p: {"default": -_quad(p), "other": 1}, 40)
    assert max(values[-10:], key=lambda v: v["default"])["default"] > -1.0
    assert min(loss for _, loss in tuner.observations()) < 1.0


def _spread_after(parallel: bool, seed: int) -> float:
    tuner = TPETuner(seed=seed, parallel_optimize=parallel)
    optimise(tuner, {"x": {"_type": "uniform", "_value": [-10, 10]}}, lambda p: -(p["x"] ** 2), 15)
    pending = [tuner.generate_parameters(100 + k)["x"] for k in range(10)]  # 10 concurrent trials
    return float(np.std(pending))


def test_tpe_constant_liar_spreads_parallel_suggestions():
    plain = [_spread_after(False, s) for s in range(6)]
    liar = [_spread_after(True, s) for s in range(6)]
    assert np.mean(liar) > 2 * np.mean(plain)
    assert sum(b > a for a, b in zip(plain, liar)) >= 5


def test_tpe_trial_end_without_result_drops_pending():
    tuner = TPETuner(seed=0, parallel_optimize=True)
    optimise(tuner, QUAD, lambda p: -_quad(p), 12)
    params = tuner.generate_parameters(50)
    assert 50 in tuner._pending
    tuner.trial_end(50, success=False)
    assert 50 not in tuner._pending
    tuner.receive_trial_result(51, params, -1.0)  # a result for a customised trial still counts
    assert len(tuner.observations()) == 13


def test_tpe_nan_and_inf_results_count_as_worst():
    def fn(p):
        return math.nan if p["x"] > 0 else -((p["x"] + 2.0) ** 2)

    tuner = TPETuner(seed=5)
    values = optimise(tuner, {"x": {"_type": "uniform", "_value": [-5, 5]}}, fn, 50)
    losses = [loss for _, loss in tuner.observations()]
    assert sum(math.isnan(v) for v in values) == sum(math.isinf(v) for v in losses) > 0
    assert sum(math.isnan(v) for v in values[-20:]) <= 4  # it steers away from the diverging half


def test_tpe_import_data_and_resume_feed_the_model():
    data = [
        {"parameter": {"x": x, "y": -2.0}, "value": -_quad({"x": x, "y": -2.0})}
        for x in np.linspace(-5, 5, 15)
    ]
    tuner = TPETuner(seed=0)
    tuner.update_search_space(QUAD)
    tuner.import_data(
        [
            *data,
            {"parameter": {"x": 99.0, "y": 0.0}, "value": 1.0},
            {"parameter": {"x": 0.0, "y": 0.0}, "value": None},
        ]
    )
    assert len(tuner.observations()) == 15  # out-of-space and value-less records are skipped
    suggestions = [tuner.generate_parameters(i)["y"] for i in range(5)]  # past n_startup_jobs: modelled
    assert np.mean(np.abs(np.array(suggestions) + 2.0)) < 2.0

    resumed = TPETuner(seed=0, parallel_optimize=True)
    resumed.update_search_space(QUAD)
    history = [HistoryEntry(i, d["parameter"], d["value"]) for i, d in enumerate(data)]
    history.append(HistoryEntry(15, {"x": 0.0, "y": 0.0}, None, finished=False))
    resumed.resume(history)
    assert len(resumed.observations()) == 15
    assert 15 in resumed._pending
    resumed.receive_trial_result(15, {"x": 0.0, "y": 0.0}, -4.0)
    assert len(resumed.observations()) == 16


def test_tpe_finite_space_raises_when_exhausted():
    tuner = TPETuner(seed=0, n_startup_jobs=2)
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


def test_tpe_update_search_space_keeps_matching_observations():
    tuner = TPETuner(seed=0)
    optimise(tuner, QUAD, lambda p: -_quad(p), 12)
    tuner.update_search_space(
        {"x": {"_type": "uniform", "_value": [0, 5]}, "y": {"_type": "uniform", "_value": [-5, 5]}}
    )
    kept = tuner.observations()
    assert 0 < len(kept) < 12 and all(p["x"] >= 0 for p, _ in kept)
    assert_valid(
        {"x": {"_type": "uniform", "_value": [0, 5]}, "y": {"_type": "uniform", "_value": [-5, 5]}},
        tuner.generate_parameters(99),
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimize_mode": "Maximize"}, "TPETuner.optimize_mode"),
        ({"parallel_optimize": "yes"}, "TPETuner.parallel_optimize"),
        ({"constant_liar_type": "median"}, "'min', 'max' or 'mean'"),
        ({"n_startup_jobs": -1}, "TPETuner.n_startup_jobs"),
        ({"n_ei_candidates": 0}, "TPETuner.n_ei_candidates"),
        ({"multivariate": 1}, "TPETuner.multivariate"),
        ({"seed": -5}, "TPETuner.seed"),
    ],
)
def test_tpe_rejects_bad_class_args(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TPETuner(**kwargs)


def test_tpe_builtin_name_with_nni_class_args():
    tuner = create_algorithm(
        "tuner",
        "TPE",
        class_args={"optimize_mode": "maximize", "parallel_optimize": True, "constant_liar_type": "mean"},
    )
    assert isinstance(tuner, TPETuner) and tuner.parallel_optimize and tuner.constant_liar_type == "mean"
    tuner.update_search_space(NESTED)
    assert_valid(NESTED, tuner.generate_parameters(0))


@pytest.mark.parametrize("tuner_cls", ["TPE", "Anneal"])
def test_model_tuners_degenerate_and_unbounded_dimensions(tuner_cls):
    space = {
        "same": {"_type": "uniform", "_value": [1.5, 1.5]},
        "one": {"_type": "randint", "_value": [4, 5]},
        "qsame": {"_type": "quniform", "_value": [3, 3, 1]},
        "n": {"_type": "normal", "_value": [100, 0.5]},
        "qln": {"_type": "qlognormal", "_value": [-2, 1, 1]},  # mostly 0
    }
    tuner = create_algorithm("tuner", tuner_cls, class_args={"seed": 0, "optimize_mode": "minimize"})
    tuner.update_search_space(space)
    for i in range(40):
        p = tuner.generate_parameters(i)
        assert_valid(space, p)
        assert (p["same"], p["one"], p["qsame"]) == (1.5, 4, 3)
        tuner.receive_trial_result(i, p, abs(p["n"] - 100.2) + p["qln"])
    assert abs(min(tuner.observations(), key=lambda o: o[1])[0]["n"] - 100.2) < 0.1


def test_default_constant_liar_is_the_worst_result_in_either_direction():
    assert TPETuner(optimize_mode="maximize").constant_liar_type == "min"
    assert TPETuner(optimize_mode="minimize").constant_liar_type == "max"
    assert TPETuner(optimize_mode="minimize", constant_liar_type="min").constant_liar_type == "min"
    tuner = TPETuner(optimize_mode="minimize", parallel_optimize=True, seed=0, n_startup_jobs=2)
    tuner.update_search_space({"x": {"_type": "uniform", "_value": [0, 1]}})
    for i, v in enumerate([0.3, 0.9]):
        tuner.generate_parameters(i)
        tuner.receive_trial_result(i, {"x": v}, v)
    tuner.generate_parameters(2)  # pending: lied about with the worst loss, 0.9
    store = tuner._require_store()
    assert tuner._liar_loss(store) == 0.9


def test_store_column_orders_stay_equal_to_a_stable_sort_as_observations_arrive():
    """The orders the store keeps by insertion equal np.argsort (stable, NaN last) after every add,
    across the matrix growing, with ties and inactive (NaN) dimensions; subsets keep their row order."""
    from nni_pl.hpo.tuners._store import ObservationStore
    from nni_pl.space import SearchSpace

    space = SearchSpace.parse(
        {
            "u": {"_type": "quniform", "_value": [0, 4, 1]},  # many ties
            "c": {
                "_type": "choice",
                "_value": [{"_name": "a", "x": {"_type": "uniform", "_value": [0, 1]}}, {"_name": "b"}],
            },
        }
    )
    store = ObservationStore(space)
    rng = np.random.default_rng(0)
    for i in range(150):
        store.add(space.sample(rng), float(i), float(i))
        if i in (0, 3, 40, 63, 64, 65, 149):  # before and after the matrix doubles at 64 and 128
            np.testing.assert_array_equal(store.column_orders(), np.argsort(store.x.T, axis=1, kind="stable"))
    rows = rng.random(len(store)) < 0.3
    np.testing.assert_array_equal(
        store.subset_orders([0, 2], rows), np.argsort(store.x[rows][:, [0, 2]].T, axis=1, kind="stable")
    )


def test_parzen_log_pdf_quadratic_form_equals_the_per_dimension_sum():
    """Two or more continuous columns are evaluated as one matrix product; it agrees with the
    per-dimension kernel sum (one continuous column plus a choice takes the per-dimension path)."""
    from scipy.special import logsumexp

    from nni_pl.hpo.tuners._parzen import ParzenMixture, default_weights
    from nni_pl.hpo.tuners._store import ObservationStore
    from nni_pl.space import SearchSpace

    space = SearchSpace.parse(
        {
            "a": {"_type": "uniform", "_value": [-2, 3]},
            "b": {"_type": "loguniform", "_value": [1e-4, 1]},
            "n": {"_type": "normal", "_value": [1, 2]},
            "c": {"_type": "choice", "_value": ["p", "q", "r"]},
        }
    )
    store = ObservationStore(space)
    codecs = store.codecs
    rng = np.random.default_rng(1)
    obs = np.array([store.encode(space.sample(rng)) for _ in range(300)])
    model = ParzenMixture(codecs, obs, default_weights(len(obs)))
    cand = model.sample(rng, 40)
    points = [c.evaluation_points(cand[:, k]) for k, c in enumerate(codecs)]
    terms = np.zeros((40, len(obs) + 1))
    for codec, kern, pts in zip(codecs, model.kernels, points):
        if codec.kind == "cat":
            terms += np.log(kern.table[:, pts[0].astype(int)].T)
        else:
            z = (pts[0][:, None] - kern.mus) / kern.sigmas
            terms += -0.5 * z * z - kern.log_norm
    expected = logsumexp(terms + model.log_weights, axis=1)
    np.testing.assert_allclose(model.log_pdf(points, 40), expected, rtol=0, atol=1e-9)


def test_parzen_model_built_only_for_evaluation_gives_the_same_bits():
    """TPE's "bad" mixture skips the cumulative probabilities of kernels far from both bounds; its log
    densities are bit-for-bit those of a fully built mixture (kernels near and far from bounds, quantised)."""
    from scipy.special import ndtr

    from nni_pl.hpo.tuners._parzen import _NO_TAIL, ParzenMixture, default_weights
    from nni_pl.hpo.tuners._store import ObservationStore
    from nni_pl.space import SearchSpace

    assert ndtr(_NO_TAIL) == 1.0 and 1.0 - ndtr(-_NO_TAIL) == 1.0
    space = SearchSpace.parse(
        {
            "a": {"_type": "uniform", "_value": [0, 1]},
            "q": {"_type": "quniform", "_value": [0, 10, 0.5]},
            "b": {"_type": "loguniform", "_value": [1e-4, 1]},
            "n": {"_type": "normal", "_value": [1, 2]},
        }
    )
    store = ObservationStore(space)
    rng = np.random.default_rng(5)
    obs = np.array([store.encode(space.sample(rng)) for _ in range(600)])
    obs[:20, 0] = np.linspace(0.0, 0.002, 20)  # crowded at a bound: narrow kernels next to it
    full = ParzenMixture(store.codecs, obs, default_weights(len(obs)))
    lean = ParzenMixture(store.codecs, obs, default_weights(len(obs)), sampled=False)
    assert any((k.log_z != 0).any() and (k.log_z == 0).any() for k in full.kernels)  # both cases occur
    for kf, kl in zip(full.kernels, lean.kernels):
        assert np.array_equal(kf.log_z, kl.log_z) and np.array_equal(kf.log_norm, kl.log_norm)
    cand = full.sample(rng, 30)
    points = [c.evaluation_points(cand[:, k]) for k, c in enumerate(store.codecs)]
    assert np.array_equal(full.log_pdf(points, 30), lean.log_pdf(points, 30))
    with pytest.raises(RuntimeError, match="sampled=False"):
        lean.sample(rng, 1)


def test_parzen_sample_draws_what_generator_choice_draws():
    from nni_pl.hpo.tuners._parzen import ParzenMixture
    from nni_pl.hpo.tuners._store import ObservationStore
    from nni_pl.space import SearchSpace

    space = SearchSpace.parse({"c": {"_type": "choice", "_value": list(range(7))}})
    store = ObservationStore(space)
    obs = np.array([[i % 7] for i in range(40)], dtype=float)
    weights = np.random.default_rng(0).random(40)
    model = ParzenMixture(store.codecs, obs, weights)
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    got = model.sample(a, 50)[:, 0]
    ks = b.choice(len(model.weights), size=50, p=model.weights)  # the components, as rng.choice draws them
    cum = np.cumsum(model.kernels[0].table[ks], axis=1)
    expected = np.minimum((cum < b.random(50)[:, None] * cum[:, -1:]).sum(axis=1), 6)
    assert np.array_equal(got, expected) and a.random() == b.random()
