"""Grid enumeration, sizes, membership checks and the flat view tuners use."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nni_pl.errors import SearchSpaceError
from nni_pl.space import Choice, QLogUniform, QUniform, Randint, SearchSpace

NESTED = {
    "layer": {
        "_type": "choice",
        "_value": [
            {"_name": "empty"},
            {"_name": "conv", "kernel_size": {"_type": "choice", "_value": [1, 3, 5]}, "stride": 2},
        ],
    },
    "bs": {"_type": "choice", "_value": [16, 32]},
}


# --- grid and size ----------------------------------------------------------------------------------------------


def test_grid_order_is_row_major_in_declaration_order() -> None:
    space = SearchSpace.parse(
        {
            "a": {"_type": "choice", "_value": ["x", "y"]},
            "b": {"_type": "randint", "_value": [0, 3]},
        }
    )
    assert list(space.grid()) == [
        {"a": "x", "b": 0},
        {"a": "x", "b": 1},
        {"a": "x", "b": 2},
        {"a": "y", "b": 0},
        {"a": "y", "b": 1},
        {"a": "y", "b": 2},
    ]
    assert space.size == 6 and space.is_finite


def test_grid_randint_is_all_ints_below_high() -> None:
    assert Randint(-1, 3).grid() == [-1, 0, 1, 2]
    assert Randint(-1, 3).size == 4


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((0, 10, 2.5), [0.0, 2.5, 5.0, 7.5, 10.0]),
        ((2, 10, 5), [2, 5, 10]),
        ((2, 16, 1), list(range(2, 17))),
        ((0.1, 1, 0.1), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
        ((0, 10, 3), [0, 3, 6, 9]),  # round(10 / 3) * 3 = 9: the clip never lands on 10
        ((2, 10, 3), [3, 6, 9]),  # round(2 / 3) * 3 = 3: the clip never lands on 2
        ((1, 10, 3), [1, 3, 6, 9]),  # round(1 / 3) * 3 = 0 is clipped up to 1
        ((2097152, 16777216, 1048576), [2097152 + i * 1048576 for i in range(15)]),  # RocksDB space, L19634
    ],
)
def test_grid_quniform_is_exactly_the_reachable_values(args: tuple, expected: list) -> None:
    param = QUniform(*args)
    assert param.grid() == expected
    assert param.size == len(expected)
    rng = np.random.default_rng(0)
    assert {param.sample(rng) for _ in range(4000)} == set(expected)


def test_grid_quniform_unreachable_bounds_are_not_members() -> None:
    param = QUniform(2, 10, 3)
    assert not param.contains(2) and not param.contains(10)
    assert param.contains(3) and param.contains(9)
    assert QUniform(1, 10, 3).contains(1)


def test_grid_qloguniform_clips_low() -> None:
    assert QLogUniform(1, 100, 10).grid() == [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


def test_grid_nested_choice_expands_branches() -> None:
    space = SearchSpace.parse(NESTED)
    grid = list(space.grid())
    assert grid == [
        {"layer": {"_name": "empty"}, "bs": 16},
        {"layer": {"_name": "empty"}, "bs": 32},
        {"layer": {"_name": "conv", "kernel_size": 1, "stride": 2}, "bs": 16},
        {"layer": {"_name": "conv", "kernel_size": 1, "stride": 2}, "bs": 32},
        {"layer": {"_name": "conv", "kernel_size": 3, "stride": 2}, "bs": 16},
        {"layer": {"_name": "conv", "kernel_size": 3, "stride": 2}, "bs": 32},
        {"layer": {"_name": "conv", "kernel_size": 5, "stride": 2}, "bs": 16},
        {"layer": {"_name": "conv", "kernel_size": 5, "stride": 2}, "bs": 32},
    ]
    assert space.size == len(grid) == 8
    assert all(space.contains(p) for p in grid)


def test_grid_choice_of_dicts_without_name_are_values() -> None:
    space = SearchSpace.parse({"p": {"_type": "choice", "_value": [{"a": 1}, {"a": 2}]}})
    assert list(space.grid()) == [{"p": {"a": 1}}, {"p": {"a": 2}}]


def test_grid_empty_space_has_one_empty_point() -> None:
    space = SearchSpace.parse({})
    assert list(space.grid()) == [{}]
    assert space.size == 1


@pytest.mark.parametrize(
    "spec",
    [
        {"_type": "uniform", "_value": [0, 1]},
        {"_type": "loguniform", "_value": [0.1, 1]},
        {"_type": "normal", "_value": [0, 1]},
        {"_type": "qnormal", "_value": [0, 1, 1]},
        {"_type": "lognormal", "_value": [0, 1]},
        {"_type": "qlognormal", "_value": [0, 1, 1]},
    ],
    ids=lambda s: s["_type"],
)
def test_grid_infinite_type_raises_naming_parameter(spec: dict) -> None:
    space = SearchSpace.parse({"ok": {"_type": "choice", "_value": [1]}, "lr": spec})
    assert not space.is_finite
    assert space.size == math.inf
    with pytest.raises(
        SearchSpaceError,
        match=rf"parameter 'lr': {spec['_type']} has infinitely many values .*; use choice, randint or quniform",
    ):
        space.grid()


def test_grid_nested_infinite_branch_is_not_finite() -> None:
    space = SearchSpace.parse(
        {"m": {"_type": "choice", "_value": [{"_name": "a", "lr": {"_type": "uniform", "_value": [0, 1]}}]}}
    )
    assert not space.is_finite
    assert space.size == math.inf


# --- membership ---------------------------------------------------------------------------------------------------


def test_check_accepts_sampled_values() -> None:
    space = SearchSpace.parse(NESTED)
    space.check({"layer": {"_name": "conv", "kernel_size": 3, "stride": 2}, "bs": 32})
    assert space.contains({"layer": {"_name": "empty"}, "bs": 16})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"layer": {"_name": "empty"}, "bs": 64},
            r"parameter 'bs': value is outside \{\"_type\": \"choice\", \"_value\": \[16, 32\]\}, got 64; "
            r"pick a value inside the space",
        ),
        (
            {"layer": {"_name": "conv", "kernel_size": 4, "stride": 2}, "bs": 16},
            r"parameter 'layer': value is outside .*, got \{\"_name\": \"conv\", \"kernel_size\": 4, \"stride\": 2\} "
            r"\(layer/conv/kernel_size=4 is outside \{\"_type\": \"choice\", \"_value\": \[1, 3, 5\]\}\)",
        ),
        (
            {"layer": {"_name": "conv", "kernel_size": 3}, "bs": 16},
            r"parameter 'layer': .*\(missing key 'stride' of option 'conv'\)",
        ),
        (
            {"layer": {"_name": "conv", "kernel_size": 3, "stride": 1}, "bs": 16},
            r"parameter 'layer': .*\(layer/conv/stride must be the constant 2\)",
        ),
        (
            {"layer": {"_name": "empty", "kernel_size": 3}, "bs": 16},
            r"parameter 'layer': .*\(unexpected key\(s\) \['kernel_size'\] in option 'empty'\)",
        ),
        (
            {"layer": {"_name": "pool"}, "bs": 16},
            r"parameter 'layer': value is outside .*, got \{\"_name\": \"pool\"\}; pick a value",
        ),
        ({"bs": 16}, r"parameter 'layer': is missing from the parameter set; give a value for every parameter"),
        (
            {"layer": {"_name": "empty"}, "bs": 16, "bss": 1},
            r"parameter 'bss': is not in the search space \(did you mean 'bs'\?\), got 1; known: layer, bs",
        ),
    ],
    ids=["bad-choice", "bad-nested-value", "missing-branch-key", "bad-constant", "extra-branch-key",
         "unknown-branch", "missing-param", "extra-param"],
)  # fmt: skip
def test_check_names_parameter_and_value(params: dict, message: str) -> None:
    space = SearchSpace.parse(NESTED)
    with pytest.raises(SearchSpaceError, match=message):
        space.check(params)
    assert not space.contains(params)


def test_check_not_a_dict() -> None:
    with pytest.raises(
        SearchSpaceError, match=r"a parameter set must be a dict, got \[1\]; pass \{name: value\}"
    ):
        SearchSpace.parse(NESTED).check([1])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "inside", "outside"),
    [
        ({"_type": "randint", "_value": [0, 3]}, [0, 2], [3, -1, 1.0, 1.5, True, "1"]),
        ({"_type": "uniform", "_value": [0, 1]}, [0, 0.5, 1, 1.0], [1.01, -0.1, float("nan"), True, None]),
        ({"_type": "quniform", "_value": [0, 10, 2.5]}, [0, 2.5, 7.5, 10.0], [3.0, 11, -2.5]),
        ({"_type": "quniform", "_value": [2, 10, 5]}, [2, 5, 10], [2.0, 0, 7, 15]),  # int-valued: ints only
        ({"_type": "loguniform", "_value": [0.001, 1]}, [0.001, 0.5, 1], [0, 2, -0.5]),
        ({"_type": "qloguniform", "_value": [1, 100, 10]}, [1, 10, 100], [5, 110, 0]),
        ({"_type": "normal", "_value": [0, 1]}, [-100, 0, 3.5], [float("inf"), "0", None]),
        ({"_type": "qnormal", "_value": [0, 1, 0.5]}, [-1.5, 0, 2.0], [0.2, 1.25]),
        ({"_type": "lognormal", "_value": [0, 1]}, [1e-9, 5], [0, -1]),
        ({"_type": "qlognormal", "_value": [0, 1, 2]}, [0, 2, 40], [-2, 3, 2.0]),
        (
            {"_type": "choice", "_value": [1, "a", None, [1, 2]]},
            [1, 1.0, "a", None, [1, 2]],
            [2, "b", [2, 1], True],
        ),
    ],
    ids=lambda v: v["_type"] if isinstance(v, dict) else None,
)
def test_contains_per_type(spec: dict, inside: list, outside: list) -> None:
    space = SearchSpace.parse({"p": spec})
    for value in inside:
        assert space.contains({"p": value}), value
    for value in outside:
        assert not space.contains({"p": value}), value


def test_choice_index_of_and_value_at() -> None:
    choice = SearchSpace.parse(NESTED)["layer"]
    assert isinstance(choice, Choice)
    assert choice.index_of({"_name": "conv", "kernel_size": 5, "stride": 2}) == 1
    assert choice.index_of({"_name": "nope"}) is None
    assert choice.value_at(0, np.random.default_rng(0)) == {"_name": "empty"}
    with pytest.raises(ValueError, match="needs an rng"):
        choice.value_at(1)


# --- flat view ----------------------------------------------------------------------------------------------------


def test_dimensions_parents_before_children() -> None:
    dims = SearchSpace.parse(NESTED).dimensions()
    assert [d.name for d in dims] == ["layer", "layer/conv/kernel_size", "bs"]
    kernel = dims[1]
    assert kernel.key == ("layer", "conv", "kernel_size")
    assert kernel.parent == ("layer",) and kernel.parent_index == 1
    assert dims[0].parent is None


def test_flatten_assemble_round_trip() -> None:
    space = SearchSpace.parse(NESTED)
    rng = np.random.default_rng(0)
    for _ in range(50):
        params = space.sample(rng)
        flat = space.flatten(params)
        assert space.assemble(flat) == params
    flat = space.flatten({"layer": {"_name": "conv", "kernel_size": 5, "stride": 2}, "bs": 32})
    assert flat == {("layer",): 1, ("layer", "conv", "kernel_size"): 2, ("bs",): 1}
    # an inactive branch's dimensions are absent
    assert space.flatten({"layer": {"_name": "empty"}, "bs": 16}) == {("layer",): 0, ("bs",): 0}


def test_flatten_rejects_unknown_choice_value() -> None:
    space = SearchSpace.parse(NESTED)
    with pytest.raises(SearchSpaceError, match=r"parameter 'bs': value is not one of the options, got 64"):
        space.flatten({"layer": {"_name": "empty"}, "bs": 64})
