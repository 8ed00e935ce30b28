"""GP, Metis and DNGO on spaces NNI's versions refused: string choices, the normal types, nested choices."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from nni_pl.errors import NoMoreTrialError, SearchSpaceError
from nni_pl.hpo import param_key
from nni_pl.hpo.tuners import RandomTuner
from nni_pl.hpo.tuners._numeric import EPS, INACTIVE, UnitCube
from nni_pl.hpo.tuners._store import ObservationStore
from nni_pl.hpo.tuners.dngo import DNGOTuner
from nni_pl.hpo.tuners.gp import GPTuner
from nni_pl.hpo.tuners.metis import MetisTuner
from nni_pl.space import SearchSpace

from .conftest import ALL_TYPES, NESTED, assert_valid, optimise

MIXED = {
    "optimizer": {"_type": "choice", "_value": ["adam", "sgd", "rmsprop"]},
    "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
    "decay": {"_type": "qnormal", "_value": [0, 1, 0.1]},
    "layers": {"_type": "randint", "_value": [1, 6]},
    "bias": {"_type": "choice", "_value": [True, False, None]},
    "head": {
        "_type": "choice",
        "_value": [
            {"_name": "linear"},
            {
                "_name": "mlp",
                "width": {"_type": "quniform", "_value": [16, 128, 16]},
                "act": {"_type": "choice", "_value": ["relu", "gelu"]},
            },
        ],
    },
}

# small settings: a few random points, then cheap model suggestions
TUNERS: dict[str, Callable[..., Any]] = {
    "GP": lambda **kw: GPTuner(
        cold_start_num=5, selection_num_warm_up=500, selection_num_starting_points=5, **kw
    ),
    "Metis": lambda **kw: MetisTuner(cold_start_num=5, selection_num_starting_points=100, **kw),
    "DNGO": lambda **kw: DNGOTuner(sample_size=300, trials_per_update=5, num_epochs_per_training=50, **kw),
}
CLASSES = {"GP": GPTuner, "Metis": MetisTuner, "DNGO": DNGOTuner}


def _mixed_loss(p: dict[str, Any]) -> float:
    head = p["head"]
    return (
        {"adam": 0.0, "sgd": 0.4, "rmsprop": 0.2}[p["optimizer"]]
        + 0.1 * (np.log10(p["lr"]) + 2.5) ** 2
        + 0.2 * abs(p["decay"])
        + 0.05 * abs(p["layers"] - 3)
        + (0.1 if p["bias"] is None else 0.0)
        + (0.3 if head["_name"] == "linear" else 0.01 * abs(head["width"] - 64) / 16)
    )


@pytest.mark.parametrize("name", list(TUNERS))
def test_bo_mixed_space_suggestions_are_valid_distinct_points(name):
    space = SearchSpace.parse(MIXED)
    tuner = TUNERS[name](optimize_mode="minimize", seed=0)
    tuner.update_search_space(MIXED)
    keys = set()
    pending: list[tuple[int, dict[str, Any]]] = []
    for i in range(25):
        params = tuner.generate_parameters(i)
        assert_valid(space, params)
        key = param_key(space, params)
        assert key not in keys, (i, params)
        keys.add(key)
        pending.append((i, params))
        if i % 4 != 3:  # two trials at a time now and then: the constant liar sees pending points
            for pid, p in pending:
                tuner.receive_trial_result(pid, p, _mixed_loss(p))
            pending.clear()


def _choice_bowl(p: dict[str, Any]) -> float:
    """Best option ``"b"`` near ``x = 0.3``; the other options are worse everywhere."""
    offset, centre = {"a": (0.3, 0.8), "b": (0.0, 0.3), "c": (0.5, 0.5), "d": (0.2, 0.9)}[p["opt"]]
    return offset + (p["x"] - centre) ** 2


CHOICE_BOWL = {
    "opt": {"_type": "choice", "_value": ["a", "b", "c", "d"]},
    "x": {"_type": "uniform", "_value": [0, 1]},
}


@pytest.mark.parametrize("name", list(TUNERS))
def test_bo_string_choice_beats_random_search(name):
    wins = []
    for seed in range(5):
        model = min(
            optimise(TUNERS[name](optimize_mode="minimize", seed=seed), CHOICE_BOWL, _choice_bowl, 25)
        )
        random = min(optimise(RandomTuner(seed=seed), CHOICE_BOWL, _choice_bowl, 25))
        wins.append(model < random)
    assert sum(wins) >= 3, wins


@pytest.mark.parametrize("name", list(TUNERS))
def test_bo_nni_types_only_refuses_a_string_choice(name):
    space = SearchSpace.parse(
        {"lr": {"_type": "uniform", "_value": [0, 1]}, "act": {"_type": "choice", "_value": ["relu", "tanh"]}}
    )
    cls = CLASSES[name]
    cls.check_search_space(space)  # the class accepts it: the flag is per instance
    with pytest.raises(SearchSpaceError, match=rf"'act'.*{cls.__name__} needs numeric choice options") as err:
        cls(nni_types_only=True).update_search_space(space)
    assert err.value.path == "act"
    cls(nni_types_only=True).update_search_space({"lr": {"_type": "uniform", "_value": [0, 1]}})


FINITE = {
    "opt": {"_type": "choice", "_value": ["a", "b", "c"]},
    "flag": {"_type": "choice", "_value": [True, False]},
    "head": {
        "_type": "choice",
        "_value": [
            {"_name": "none"},
            {"_name": "mlp", "act": {"_type": "choice", "_value": ["relu", "gelu"]}},
        ],
    },
}


@pytest.mark.parametrize("name", list(TUNERS))
def test_bo_finite_categorical_space_ends_after_its_size(name):
    space = SearchSpace.parse(FINITE)
    size = int(space.size)
    assert size == 3 * 2 * 3
    tuner = TUNERS[name](optimize_mode="minimize", seed=1)
    tuner.update_search_space(FINITE)
    keys = set()
    for i in range(size):
        params = tuner.generate_parameters(i)
        assert_valid(space, params)
        keys.add(param_key(space, params))
        tuner.receive_trial_result(i, params, float(len(str(params))))
    assert len(keys) == size
    with pytest.raises(NoMoreTrialError):
        tuner.generate_parameters(size)


@pytest.mark.parametrize("raw", [ALL_TYPES, NESTED, MIXED], ids=["all_types", "nested", "mixed"])
def test_unit_cube_every_type_round_trip(raw):
    space = SearchSpace.parse(raw)
    store = ObservationStore(space)
    cube = UnitCube(store)
    rng = np.random.default_rng(0)
    points = cube.sample(rng, 300)
    np.testing.assert_allclose(cube.snap(points), points)  # prior draws are decodable points
    for u in rng.random((300, cube.d)):
        params = cube.decode(u)
        space.check(params)
        np.testing.assert_allclose(cube.encode(params), cube.snap(u[None])[0], atol=1e-9)
    fixed = cube.fixed(points)
    assert fixed is not None
    for k, j in enumerate(cube.columns):
        if store.dims[j].param.TYPE in ("normal", "qnormal", "lognormal", "qlognormal"):
            assert points[:, k].min() >= EPS and points[:, k].max() <= 1 - EPS


def test_unit_cube_inactive_dimensions_sit_at_a_fixed_point():
    store = ObservationStore(SearchSpace.parse(MIXED))
    cube = UnitCube(store)
    linear = cube.encode({**_POINT, "head": {"_name": "linear"}})
    mlp = cube.encode({**_POINT, "head": {"_name": "mlp", "width": 32, "act": "gelu"}})
    assert linear is not None and mlp is not None
    width = cube.columns.index(next(j for j, d in enumerate(store.dims) if d.name == "head/mlp/width"))
    act = [k for k, j in enumerate(cube.columns) if store.dims[j].name == "head/mlp/act"]
    assert linear[width] == INACTIVE and not linear[act].any()  # all-zeros one-hot
    assert mlp[act].tolist() == [0.0, 1.0]
    differs = np.flatnonzero(linear != mlp)
    assert {store.dims[cube.columns[k]].name for k in differs} == {"head", "head/mlp/width", "head/mlp/act"}
    # a local search moves neither one-hot axes nor inactive dimensions
    fixed = cube.fixed(np.vstack([linear, mlp]))
    assert fixed is not None
    assert fixed[0, width] and not fixed[1, width]
    assert fixed[:, act].all()
    lr = cube.columns.index(next(j for j, d in enumerate(store.dims) if d.name == "lr"))
    assert not fixed[:, lr].any()


def test_unit_cube_numeric_space_has_no_fixed_axes():
    store = ObservationStore(
        SearchSpace.parse(
            {"x": {"_type": "uniform", "_value": [0, 1]}, "c": {"_type": "choice", "_value": [1, 2, 4]}}
        )
    )
    cube = UnitCube(store)
    assert cube.d == 2 and cube.fixed(cube.sample(np.random.default_rng(0), 4)) is None


_POINT = {"optimizer": "sgd", "lr": 1e-3, "decay": 0.2, "layers": 2, "bias": None}


def test_unit_cube_neighbours_stay_near_change_a_choice_at_times_and_decode_exactly():
    store = ObservationStore(SearchSpace.parse(MIXED))
    cube = UnitCube(store)
    start = cube.encode({**_POINT, "head": {"_name": "mlp", "width": 32, "act": "gelu"}})
    assert start is not None
    near = cube.neighbours(np.random.default_rng(0), start[None, :], 2000)
    assert 1500 < len(near) <= 2000  # the points that snapped back onto the start are left out
    assert not (np.abs(near - start).max(axis=1) < 1e-12).any()
    np.testing.assert_allclose(cube.snap(near), near)  # snapped: every point decodes exactly to itself
    lr = cube.columns.index(next(j for j, d in enumerate(store.dims) if d.name == "lr"))
    assert np.median(np.abs(near[:, lr] - start[lr])) < 0.1  # small steps on ordered axes
    onehot = [k for k, j in enumerate(cube.columns) if store.dims[j].name == "optimizer"]
    changed = (near[:, onehot] != start[onehot]).any(axis=1).mean()
    assert 0.02 < changed < 0.5  # about one choice in the number of dimensions changes
    space = SearchSpace.parse(MIXED)
    heads = set()
    for u in near[:200]:
        params = cube.decode(u)
        assert_valid(space, params)
        heads.add(params["head"]["_name"])
    assert heads == {"linear", "mlp"}  # a nested choice may change branch, its new dimensions become active
