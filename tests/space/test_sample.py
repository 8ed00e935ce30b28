"""Sampling with NNI's formulas (NNI v2.5 docs L17531-17585): reproducibility and statistical sanity."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from nni_pl.space import SearchSpace

N = 20_000


def _draws(spec: dict, n: int = N, seed: int = 0) -> list:
    space = SearchSpace.parse({"p": spec})
    rng = np.random.default_rng(seed)
    return [space.sample(rng)["p"] for _ in range(n)]


def _on_multiple(value: float, q: float) -> bool:
    ratio = value / q
    return abs(ratio - round(ratio)) < 1e-9


FULL = {
    "c": {"_type": "choice", "_value": [16, 32, "x", None]},
    "ri": {"_type": "randint", "_value": [1, 5]},
    "u": {"_type": "uniform", "_value": [0.1, 0.5]},
    "qu": {"_type": "quniform", "_value": [0, 10, 2.5]},
    "lu": {"_type": "loguniform", "_value": [0.0001, 0.1]},
    "qlu": {"_type": "qloguniform", "_value": [1, 100, 10]},
    "n": {"_type": "normal", "_value": [0, 1]},
    "qn": {"_type": "qnormal", "_value": [0, 5, 2]},
    "ln": {"_type": "lognormal", "_value": [0, 1]},
    "qln": {"_type": "qlognormal", "_value": [0, 1, 0.5]},
    "layer": {
        "_type": "choice",
        "_value": [
            {"_name": "empty"},
            {"_name": "conv", "kernel_size": {"_type": "choice", "_value": [1, 2, 3, 5]}, "stride": 1},
        ],
    },
}


# --- reproducibility --------------------------------------------------------------------------------------------


def test_sample_same_seed_same_sequence() -> None:
    space = SearchSpace.parse(FULL)
    rng_a, rng_b = np.random.default_rng(42), np.random.default_rng(42)
    first = [space.sample(rng_a) for _ in range(50)]
    second = [space.sample(rng_b) for _ in range(50)]
    assert first == second


def test_sample_different_seeds_differ() -> None:
    space = SearchSpace.parse(FULL)
    a = [space.sample(np.random.default_rng(1)) for _ in range(5)]
    b = [space.sample(np.random.default_rng(2)) for _ in range(5)]
    assert a != b


def test_sample_reparsed_space_gives_same_values() -> None:
    space = SearchSpace.parse(FULL)
    again = SearchSpace.parse(space.to_json())
    assert space.sample(np.random.default_rng(7)) == again.sample(np.random.default_rng(7))


def test_sample_is_plain_json_and_inside_the_space() -> None:
    space = SearchSpace.parse(FULL)
    rng = np.random.default_rng(3)
    for _ in range(500):
        params = space.sample(rng)
        assert json.loads(json.dumps(params)) == params  # Python types only, no numpy scalars
        space.check(params)


# --- per-type statistics -------------------------------------------------------------------------------------------


def test_sample_randint_excludes_high_and_covers_all() -> None:
    values = _draws({"_type": "randint", "_value": [-2, 3]}, n=5000)
    assert set(values) == {-2, -1, 0, 1, 2}
    assert all(type(v) is int for v in values)
    counts = Counter(values)
    assert min(counts.values()) > 5000 / 5 * 0.85  # roughly uniform


def test_sample_uniform_within_bounds_with_expected_mean() -> None:
    values = np.array(_draws({"_type": "uniform", "_value": [0.1, 0.5]}))
    assert values.min() >= 0.1 and values.max() <= 0.5
    assert values.mean() == pytest.approx(0.3, abs=0.005)


@pytest.mark.parametrize(
    ("value", "expected"),
    [([0, 10, 2.5], {0.0, 2.5, 5.0, 7.5, 10.0}), ([2, 10, 5], {2, 5, 10})],
    ids=["q2.5", "q5"],
)
def test_sample_quniform_doc_examples(value: list, expected: set) -> None:
    assert set(_draws({"_type": "quniform", "_value": value}, n=5000)) == expected


def test_sample_quniform_multiples_of_q_unless_clipped() -> None:
    low, high, q = 0.3, 2.0, 0.25
    values = _draws({"_type": "quniform", "_value": [low, high, q]}, n=5000)
    assert all(low <= v <= high for v in values)
    off_grid = {v for v in values if not _on_multiple(v, q)}
    assert off_grid == {low}  # round(0.3 / 0.25) * 0.25 = 0.25 is clipped up to low
    assert max(values) == 2.0


def test_sample_quniform_ints_when_all_ints() -> None:
    values = _draws({"_type": "quniform", "_value": [2, 16, 1]}, n=3000)
    assert all(type(v) is int for v in values)
    assert set(values) == set(range(2, 17))
    floats = _draws({"_type": "quniform", "_value": [0.1, 1, 0.1]}, n=3000)
    assert all(type(v) is float for v in floats)
    assert set(floats) == {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0}  # no 0.30000000000000004


def test_sample_loguniform_median_near_geometric_mean() -> None:
    low, high = 1e-4, 1e-1
    values = np.array(_draws({"_type": "loguniform", "_value": [low, high]}))
    assert values.min() >= low and values.max() <= high
    assert np.median(values) == pytest.approx(math.sqrt(low * high), rel=0.1)
    # uniform in log space: each decade gets about a third of the draws
    decades = Counter(np.floor(np.log10(values)).astype(int))
    for decade in (-4, -3, -2):
        assert decades[decade] / N == pytest.approx(1 / 3, abs=0.02)


def test_sample_qloguniform_multiples_of_q_unless_clipped() -> None:
    values = _draws({"_type": "qloguniform", "_value": [1, 100, 10]}, n=5000)
    assert all(type(v) is int for v in values)
    assert all(1 <= v <= 100 for v in values)
    assert {v for v in values if v % 10} == {1}  # round(x / 10) * 10 == 0 is clipped to low
    # log-uniform prior: small values are much more frequent than large ones
    counts = Counter(values)
    assert counts[1] + counts[10] > counts[90] + counts[100]


def test_sample_normal_mean_and_std() -> None:
    values = np.array(_draws({"_type": "normal", "_value": [3.0, 2.0]}))
    assert values.mean() == pytest.approx(3.0, abs=0.05)
    assert values.std() == pytest.approx(2.0, rel=0.03)


def test_sample_qnormal_multiples_of_q_unclipped() -> None:
    values = np.array(_draws({"_type": "qnormal", "_value": [0, 5, 2]}))
    assert all(type(v) is int for v in values.tolist())
    assert all(v % 2 == 0 for v in values.tolist())
    assert values.mean() == pytest.approx(0, abs=0.15)
    assert values.min() < -10 and values.max() > 10  # unbounded, no clip
    floats = _draws({"_type": "qnormal", "_value": [1, 0.3, 0.1]}, n=2000)
    assert all(_on_multiple(v, 0.1) for v in floats)


def test_sample_lognormal_positive_with_log_moments() -> None:
    values = np.array(_draws({"_type": "lognormal", "_value": [1.0, 0.5]}))
    assert (values > 0).all()
    logs = np.log(values)
    assert logs.mean() == pytest.approx(1.0, abs=0.02)
    assert logs.std() == pytest.approx(0.5, rel=0.03)


def test_sample_qlognormal_non_negative_multiples() -> None:
    values = _draws({"_type": "qlognormal", "_value": [-1, 1, 0.5]})
    assert all(v >= 0 for v in values)
    assert all(_on_multiple(v, 0.5) for v in values)
    assert 0.0 in values  # round(exp(x) / q) * q reaches 0 for small draws
    ints = _draws({"_type": "qlognormal", "_value": [2, 1, 3]}, n=2000)
    assert all(type(v) is int and v % 3 == 0 and v >= 0 for v in ints)


def test_sample_choice_is_roughly_uniform() -> None:
    values = _draws({"_type": "choice", "_value": ["a", "b", "c", "d"]})
    counts = Counter(values)
    assert set(counts) == {"a", "b", "c", "d"}
    for count in counts.values():
        assert count / N == pytest.approx(0.25, abs=0.02)


# --- choice values and nested branches ---------------------------------------------------------------------------


def test_sample_choice_mixed_json_values() -> None:
    options = [1, 2.5, "auto", None, True, [1, 2], {"optimizer": "Adam", "lr": 1e-5}]
    values = _draws({"_type": "choice", "_value": options}, n=700)
    seen = [json.dumps(v, sort_keys=True) for v in values]
    assert set(seen) == {json.dumps(o, sort_keys=True) for o in options}
    assert any(v is None for v in values)
    assert any(v is True for v in values)


def test_sample_choice_returns_fresh_copies() -> None:
    space = SearchSpace.parse({"p": {"_type": "choice", "_value": [[1, 2]]}})
    first = space.sample(np.random.default_rng(0))
    first["p"].append(3)
    assert space.sample(np.random.default_rng(0)) == {"p": [1, 2]}
    assert space.to_json()["p"]["_value"] == [[1, 2]]


def test_sample_nested_choice_only_chosen_branch_keys() -> None:
    space = SearchSpace.parse({"layer": FULL["layer"]})
    rng = np.random.default_rng(0)
    names = Counter()
    for _ in range(400):
        layer = space.sample(rng)["layer"]
        names[layer["_name"]] += 1
        if layer["_name"] == "empty":
            assert layer == {"_name": "empty"}
        else:
            assert set(layer) == {"_name", "kernel_size", "stride"}
            assert layer["kernel_size"] in (1, 2, 3, 5)
            assert layer["stride"] == 1  # constants pass through
    assert set(names) == {"empty", "conv"}


def test_sample_doubly_nested_choice() -> None:
    space = SearchSpace.parse(
        {
            "model": {
                "_type": "choice",
                "_value": [
                    {
                        "_name": "mlp",
                        "act": {
                            "_type": "choice",
                            "_value": [
                                {"_name": "relu"},
                                {"_name": "leaky", "slope": {"_type": "uniform", "_value": [0, 0.3]}},
                            ],
                        },
                    },
                    {"_name": "linear"},
                ],
            }
        }
    )
    rng = np.random.default_rng(5)
    seen = set()
    for _ in range(300):
        params = space.sample(rng)
        space.check(params)
        model = params["model"]
        if model["_name"] == "mlp":
            seen.add(model["act"]["_name"])
            if model["act"]["_name"] == "leaky":
                assert 0 <= model["act"]["slope"] <= 0.3
                assert set(model["act"]) == {"_name", "slope"}
        else:
            assert model == {"_name": "linear"}
    assert seen == {"relu", "leaky"}
