"""Parsing and validating NNI search spaces (NNI v2.5 docs, search-space spec L17501-17639)."""

from __future__ import annotations

import json

import pytest

from nni_pl.errors import NniPlError, SearchSpaceError
from nni_pl.space import (
    ALL_TYPES,
    Branch,
    Choice,
    LogNormal,
    LogUniform,
    Normal,
    QLogNormal,
    QLogUniform,
    QNormal,
    QUniform,
    Randint,
    SearchSpace,
    Uniform,
)

ALL_TEN = {
    "c": ({"_type": "choice", "_value": [16, 32, 64]}, Choice((16, 32, 64))),
    "ri": ({"_type": "randint", "_value": [1, 5]}, Randint(1, 5)),
    "u": ({"_type": "uniform", "_value": [0.1, 0.5]}, Uniform(0.1, 0.5)),
    "qu": ({"_type": "quniform", "_value": [0, 10, 2.5]}, QUniform(0, 10, 2.5)),
    "lu": ({"_type": "loguniform", "_value": [0.0001, 0.1]}, LogUniform(0.0001, 0.1)),
    "qlu": ({"_type": "qloguniform", "_value": [1, 100, 10]}, QLogUniform(1, 100, 10)),
    "n": ({"_type": "normal", "_value": [0, 1]}, Normal(0, 1)),
    "qn": ({"_type": "qnormal", "_value": [0, 5, 2]}, QNormal(0, 5, 2)),
    "ln": ({"_type": "lognormal", "_value": [0, 1]}, LogNormal(0, 1)),
    "qln": ({"_type": "qlognormal", "_value": [0, 1, 0.5]}, QLogNormal(0, 1, 0.5)),
}


def _space(spec: dict) -> SearchSpace:
    return SearchSpace.parse({"p": spec})


# --- valid spaces --------------------------------------------------------------------------------------------


def test_parse_all_ten_types() -> None:
    space = SearchSpace.parse({name: spec for name, (spec, _) in ALL_TEN.items()})
    assert len(space) == 10
    assert {space[name].TYPE for name in space} == set(ALL_TYPES)
    for name, (spec, expected) in ALL_TEN.items():
        assert space[name] == expected
        assert space[name].to_json() == spec


def test_parse_nni_quickstart_space() -> None:
    # NNI docs L738-743
    space = SearchSpace.parse(
        {
            "dropout_rate": {"_type": "uniform", "_value": [0.1, 0.5]},
            "conv_size": {"_type": "choice", "_value": [2, 3, 5, 7]},
            "hidden_size": {"_type": "choice", "_value": [124, 512, 1024]},
            "learning_rate": {"_type": "uniform", "_value": [0.0001, 0.1]},
        }
    )
    assert list(space) == ["dropout_rate", "conv_size", "hidden_size", "learning_rate"]
    assert space.contains(
        {"conv_size": 2, "hidden_size": 124, "learning_rate": 0.0307, "dropout_rate": 0.2029}
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [([0, 10, 2.5], [0, 2.5, 5.0, 7.5, 10.0]), ([2, 10, 5], [2, 5, 10])],
    ids=["q2.5", "q5-clipped-low"],
)
def test_parse_quniform_doc_examples(value: list, expected: list) -> None:
    # NNI docs L17551: [0, 10, 2.5] -> {0, 2.5, 5.0, 7.5, 10.0}; [2, 10, 5] -> {2, 5, 10}
    assert _space({"_type": "quniform", "_value": value})["p"].grid() == expected


def test_parse_quniform_int_bounds_and_q_give_ints() -> None:
    grid = _space({"_type": "quniform", "_value": [2, 10, 5]})["p"].grid()
    assert all(type(v) is int for v in grid)
    grid = _space({"_type": "quniform", "_value": [0, 10, 2.5]})["p"].grid()
    assert all(type(v) is float for v in grid)


def test_parse_randint_whole_floats_become_ints() -> None:
    assert _space({"_type": "randint", "_value": [1.0, 4.0]})["p"] == Randint(1, 4)


def test_parse_uniform_equal_bounds_allowed() -> None:
    assert _space({"_type": "uniform", "_value": [1, 1]})["p"] == Uniform(1, 1)


def test_parse_nested_choice_with_name() -> None:
    space = SearchSpace.parse(
        {
            "layer": {
                "_type": "choice",
                "_value": [
                    {"_name": "empty"},
                    {
                        "_name": "conv",
                        "kernel_size": {"_type": "choice", "_value": [1, 2, 3, 5]},
                        "bias": True,
                    },
                ],
            }
        }
    )
    layer = space["layer"]
    assert isinstance(layer, Choice) and layer.is_nested
    empty, conv = layer.options
    assert isinstance(empty, Branch) and empty.name == "empty" and dict(empty.params) == {}
    assert isinstance(conv, Branch) and conv.name == "conv"
    assert conv.params["kernel_size"] == Choice((1, 2, 3, 5))
    assert conv.params["bias"] is True  # a constant is passed through


def test_parse_choice_of_mixed_json_values() -> None:
    options = [1, 2.5, "auto", None, True, [1, 2], {"optimizer": "Adam", "learning_rate": 0.00001}]
    space = _space({"_type": "choice", "_value": options})
    assert space["p"].to_json() == {"_type": "choice", "_value": options}
    assert not space["p"].is_nested  # dicts without _name are plain values (BatchTuner style)


def test_parse_batch_tuner_combined_params() -> None:
    # NNI docs L1085-1096: dict options without _name are plain values
    space = SearchSpace.parse(
        {
            "combine_params": {
                "_type": "choice",
                "_value": [
                    {"optimizer": "Adam", "learning_rate": 0.00001},
                    {"optimizer": "Adam", "learning_rate": 0.0001},
                    {"optimizer": "SGD", "learning_rate": 0.01},
                ],
            }
        }
    )
    assert space.size == 3
    assert space.contains({"combine_params": {"optimizer": "SGD", "learning_rate": 0.01}})


def test_parse_empty_space() -> None:
    assert len(SearchSpace.parse({})) == 0
    assert len(SearchSpace.parse("{}")) == 0
    assert SearchSpace.parse("") == SearchSpace.parse({})


def test_parse_accepts_an_existing_space() -> None:
    space = _space({"_type": "uniform", "_value": [0, 1]})
    assert SearchSpace.parse(space) is space


def test_parse_bytes() -> None:
    assert SearchSpace.parse(b'{"p": {"_type": "randint", "_value": [0, 3]}}')["p"] == Randint(0, 3)


# --- text forms: JSON with tabs / scientific notation, YAML ------------------------------------------------------


def test_parse_json_with_tabs_inside_and_outside_strings() -> None:
    text = '{\t"opt":\t{"_type":\t"choice", "_value": ["a\tb", "c"]}}'
    space = SearchSpace.parse(text)
    assert space["opt"] == Choice(("a\tb", "c"))


def test_parse_json_scientific_notation() -> None:
    space = SearchSpace.parse(
        '{"lr": {"_type": "loguniform", "_value": [1e-5, 2E3]}, "wd": {"_type": "uniform", "_value": [1E-6, 1.5e-2]}}'
    )
    assert space["lr"] == LogUniform(1e-5, 2000.0)
    assert space["wd"] == Uniform(1e-6, 0.015)


def test_parse_yaml_scientific_notation_is_a_float() -> None:
    # PyYAML alone reads `1e-5` as the string "1e-5" (YAML 1.1 wants 1.0e-5); the loader must not
    import yaml

    assert yaml.safe_load("x: 1e-5") == {"x": "1e-5"}
    text = (
        "lr:\n  _type: loguniform\n  _value: [1e-5, 1E-1]\nbig:\n  _type: uniform\n  _value: [-2e3, +3e+3]\n"
    )
    space = SearchSpace.parse(text)
    assert space["lr"] == LogUniform(1e-5, 0.1)
    assert space["big"] == Uniform(-2000.0, 3000.0)


def test_parse_yaml_keeps_quoted_scientific_strings() -> None:
    space = SearchSpace.parse("p: {_type: choice, _value: ['1e-5', 1e-5]}")
    assert space["p"].to_json()["_value"] == ["1e-5", 1e-5]


def test_parse_inline_yaml_from_docs() -> None:
    # NNI docs L15922-15929 (inline searchSpace in the v2 config), written as flow YAML
    text = (
        "{batch_size: {_type: choice, _value: [16, 32, 64]}, "
        "learning_rate: {_type: loguniform, _value: [0.0001, 0.1]}}"
    )
    space = SearchSpace.parse(text)
    assert space["batch_size"] == Choice((16, 32, 64))
    assert space["learning_rate"] == LogUniform(0.0001, 0.1)


def test_parse_block_yaml_nested_choice() -> None:
    text = """
layer:
  _type: choice
  _value:
    - _name: empty
    - _name: conv
      kernel_size: {_type: choice, _value: [1, 3]}
"""
    space = SearchSpace.parse(text)
    assert [o.name for o in space["layer"].options] == ["empty", "conv"]


def test_parse_invalid_text_raises_search_space_error() -> None:
    with pytest.raises(
        SearchSpaceError, match=r"(?s)search space: is neither valid JSON nor YAML.*; check the syntax"
    ):
        SearchSpace.parse('{"p": {"_type": "choice", ')
    with pytest.raises(SearchSpaceError, match="neither valid JSON nor YAML"):
        SearchSpace.parse("a: [1\n")


# --- invalid spaces: every rule names the parameter, echoes the value and says how to fix ------------------------

INVALID = [
    pytest.param(
        {"p": {"_type": "choic", "_value": [1, 2]}},
        r"parameter 'p': unknown _type 'choic' \(did you mean 'choice'\?\); use one of choice, randint",
        id="unknown-type-suggestion",
    ),
    pytest.param(
        {"p": {"_type": "loguniorm", "_value": [1, 2]}},
        r"parameter 'p': unknown _type 'loguniorm' \(did you mean 'loguniform'\?\)",
        id="unknown-type-loguniform",
    ),
    pytest.param(
        {"p": {"_type": "gaussian", "_value": [0, 1]}},
        r"parameter 'p': unknown _type 'gaussian'; use one of choice, randint, uniform",
        id="unknown-type-no-suggestion",
    ),
    pytest.param(
        {"p": {"_typ": "choice", "_value": [1]}},
        r"parameter 'p': unknown key '_typ' \(did you mean '_type'\?\), got \{\"_typ\": \"choice\", "
        r"\"_value\": \[1\]\}; a parameter has only '_type' and '_value'",
        id="misspelled-type-key",
    ),
    pytest.param(
        {"p": {"_type": "choice", "_values": [1]}},
        r"parameter 'p': unknown key '_values' \(did you mean '_value'\?\)",
        id="misspelled-value-key",
    ),
    pytest.param(
        {"p": {"_type": "choice"}},
        r"parameter 'p': missing '_value', got \{\"_type\": \"choice\"\}; write \{\"_type\": \"choice\", \"_value\"",
        id="missing-value",
    ),
    pytest.param(
        {"p": {"_value": [1, 2]}},
        r"parameter 'p': missing '_type', got \{\"_value\": \[1, 2\]\}; write",
        id="missing-type",
    ),
    pytest.param(
        {"p": [0.1, 0.5]},
        r"parameter 'p': each parameter must be a dict with '_type' and '_value', got \[0.1, 0.5\]; write",
        id="param-not-a-dict",
    ),
    pytest.param(
        {"p": {"_type": "choice", "_value": 3}},
        r"parameter 'p': _value of choice must be a list, got 3; write e.g.",
        id="value-not-a-list",
    ),
    pytest.param(
        {"p": {"_type": "randint", "_value": [10]}},
        r"parameter 'p': randint takes 2 values, got 1: \[10\]; give \[low, high\] "
        r"\(the one-value form \[upper\] is NNI v1's; write \[0, 10\]\)",
        id="randint-v1-one-value",
    ),
    pytest.param(
        {"p": {"_type": "uniform", "_value": [0, 1, 2]}},
        r"parameter 'p': uniform takes 2 values, got 3: \[0, 1, 2\]; give \[low, high\]",
        id="uniform-three-values",
    ),
    pytest.param(
        {"p": {"_type": "quniform", "_value": [0, 1]}},
        r"parameter 'p': quniform takes 3 values, got 2: \[0, 1\]; give \[low, high, q\]",
        id="quniform-two-values",
    ),
    pytest.param(
        {"p": {"_type": "qlognormal", "_value": [0, 1]}},
        r"parameter 'p': qlognormal takes 3 values, got 2: \[0, 1\]; give \[mu, sigma, q\]",
        id="qlognormal-two-values",
    ),
    pytest.param(
        {"p": {"_type": "normal", "_value": []}},
        r"parameter 'p': normal takes 2 values, got 0: \[\]; give \[mu, sigma\]",
        id="normal-no-values",
    ),
    pytest.param(
        {"p": {"_type": "uniform", "_value": [5, 1]}},
        r"parameter 'p': uniform needs `low <= high`, got low=5, high=1; swap the bounds",
        id="uniform-low-above-high",
    ),
    pytest.param(
        {"p": {"_type": "quniform", "_value": [10, 0, 1]}},
        r"parameter 'p': quniform needs `low <= high`, got low=10, high=0; swap the bounds",
        id="quniform-low-above-high",
    ),
    pytest.param(
        {"p": {"_type": "randint", "_value": [5, 1]}},
        r"parameter 'p': randint needs `low < high` \(the upper bound is exclusive\), got \[5, 1\]; swap the bounds",
        id="randint-low-above-high",
    ),
    pytest.param(
        {"p": {"_type": "randint", "_value": [3, 3]}},
        r"parameter 'p': randint needs `low < high` .*, got \[3, 3\]; for the single value 3 write \[3, 4\]",
        id="randint-low-equals-high",
    ),
    pytest.param(
        {"p": {"_type": "randint", "_value": [0.5, 4]}},
        r"parameter 'p': randint bounds must be integers, got low=0.5; use whole numbers, or quniform",
        id="randint-fractional-low",
    ),
    pytest.param(
        {"p": {"_type": "randint", "_value": [0, 4.5]}},
        r"parameter 'p': randint bounds must be integers, got high=4.5; use whole numbers",
        id="randint-fractional-high",
    ),
    pytest.param(
        {"p": {"_type": "loguniform", "_value": [0, 1]}},
        r"parameter 'p': loguniform needs positive bounds \(it samples in log space\), got low=0; "
        r"use a positive low, or uniform",
        id="loguniform-zero",
    ),
    pytest.param(
        {"p": {"_type": "loguniform", "_value": [-1, 1]}},
        r"parameter 'p': loguniform needs positive bounds .*, got low=-1; use a positive low",
        id="loguniform-negative",
    ),
    pytest.param(
        {"p": {"_type": "qloguniform", "_value": [0, 100, 1]}},
        r"parameter 'p': qloguniform needs positive bounds .*, got low=0; use a positive low",
        id="qloguniform-zero",
    ),
    pytest.param(
        {"p": {"_type": "normal", "_value": [0, 0]}},
        r"parameter 'p': normal needs `sigma > 0`, got sigma=0; use a positive standard deviation",
        id="normal-sigma-zero",
    ),
    pytest.param(
        {"p": {"_type": "lognormal", "_value": [0, -1]}},
        r"parameter 'p': lognormal needs `sigma > 0`, got sigma=-1; use a positive standard deviation",
        id="lognormal-sigma-negative",
    ),
    pytest.param(
        {"p": {"_type": "qnormal", "_value": [0, -0.5, 1]}},
        r"parameter 'p': qnormal needs `sigma > 0`, got sigma=-0.5",
        id="qnormal-sigma-negative",
    ),
    pytest.param(
        {"p": {"_type": "quniform", "_value": [0, 1, 0]}},
        r"parameter 'p': quniform needs `q > 0`, got q=0; use a positive step",
        id="quniform-q-zero",
    ),
    pytest.param(
        {"p": {"_type": "qloguniform", "_value": [1, 10, -1]}},
        r"parameter 'p': qloguniform needs `q > 0`, got q=-1; use a positive step",
        id="qloguniform-q-negative",
    ),
    pytest.param(
        {"p": {"_type": "qnormal", "_value": [0, 1, 0]}},
        r"parameter 'p': qnormal needs `q > 0`, got q=0",
        id="qnormal-q-zero",
    ),
    pytest.param(
        {"p": {"_type": "qlognormal", "_value": [0, 1, -2]}},
        r"parameter 'p': qlognormal needs `q > 0`, got q=-2",
        id="qlognormal-q-negative",
    ),
    pytest.param(
        {"p": {"_type": "choice", "_value": []}},
        r"parameter 'p': choice needs at least one option, got \[\]; list the options, e.g. \[16, 32, 64\]",
        id="empty-choice",
    ),
    pytest.param(
        {"p": {"_type": "uniform", "_value": [True, 5]}},
        r"parameter 'p': uniform low must be a number, got true \(bool\); write it as a plain number",
        id="bool-bound",
    ),
    pytest.param(
        {"p": {"_type": "normal", "_value": [0, False]}},
        r"parameter 'p': normal sigma must be a number, got false \(bool\)",
        id="bool-sigma",
    ),
    pytest.param(
        {"p": {"_type": "quniform", "_value": [0, 10, True]}},
        r"parameter 'p': quniform q must be a number, got true \(bool\)",
        id="bool-q",
    ),
    pytest.param(
        {"p": {"_type": "randint", "_value": [0, "10"]}},
        r"parameter 'p': randint high must be a number, got \"10\" \(str\); write it as a plain number",
        id="string-bound",
    ),
    pytest.param(
        {"p": {"_type": "uniform", "_value": [None, 1]}},
        r"parameter 'p': uniform low must be a number, got null \(NoneType\)",
        id="null-bound",
    ),
    pytest.param(
        {"p": {"_type": "uniform", "_value": [float("nan"), 1]}},
        r"parameter 'p': uniform low must be finite, got nan; use a finite number",
        id="nan-bound",
    ),
    pytest.param(
        {"p": {"_type": "uniform", "_value": [0, float("inf")]}},
        r"parameter 'p': uniform high must be finite, got inf; use a finite number",
        id="inf-bound",
    ),
    pytest.param(
        {"p": {"_type": "choice", "_value": [1, {2, 3}]}},
        r"parameter 'p\[1\]': choice options must be JSON-serialisable, got \{2, 3\} \(set\); use numbers, strings",
        id="set-option",
    ),
    pytest.param(
        {"p": {"_type": "choice", "_value": [object()]}},
        r"parameter 'p\[0\]': choice options must be JSON-serialisable, got <object object at .*> \(object\); use",
        id="object-option",
    ),
    pytest.param(
        {"p": {"_type": "choice", "_value": [0.1, float("nan")]}},
        r"parameter 'p\[1\]': choice options must be JSON-serialisable, got nan \(float\)",
        id="nan-option",
    ),
    pytest.param(
        {"p": {"_type": "choice", "_value": [[1, float("inf")]]}},
        r"parameter 'p\[0\]': choice options must be JSON-serialisable, got \[1, inf\] \(list\)",
        id="inf-inside-list-option",
    ),
    pytest.param(
        {"p": {"_type": "choice", "_value": [{"kernel": {"_type": "choice", "_value": [1, 3]}}]}},
        r"parameter 'p\[0\]': an option holding nested parameters needs a '_name' key, got "
        r"\{\"kernel\": \{\"_type\": \"choice\", \"_value\": \[1, 3\]\}\}; add \"_name\": \"<branch name>\"",
        id="nested-without-name",
    ),
    pytest.param(
        {"p": {"_type": "choice", "_value": [{"_name": "a"}, {"_name": "b"}, {"_name": "a", "x": 1}]}},
        r"parameter 'p': nested options need distinct _name values, got _name=\"a\" twice; rename one of them",
        id="duplicate-name",
    ),
    pytest.param(
        {"p": {"_type": "choice", "_value": [{"_name": {1, 2}}]}},
        r"parameter 'p\[0\]': a nested option's _name must be JSON-serialisable, got \{1, 2\} \(set\)",
        id="unserialisable-name",
    ),
    pytest.param(
        {
            "p": {
                "_type": "choice",
                "_value": [{"_name": "a", "c": {"k": {"_type": "uniform", "_value": [0, 1]}}}],
            }
        },
        r"parameter 'p/a/c': nested parameters must sit directly under a _name option, got .*; flatten it",
        id="spec-buried-in-constant",
    ),
    pytest.param(
        {"p": {"_type": "choice", "_value": [{"_name": "a", "c": {1, 2}}]}},
        r"parameter 'p/a/c': a constant in a nested option must be JSON-serialisable, got \{1, 2\} \(set\)",
        id="unserialisable-constant",
    ),
    pytest.param(
        {1: {"_type": "choice", "_value": [1]}},
        r"parameter '1': parameter names must be non-empty strings, got 1; quote the name",
        id="int-name",
    ),
    pytest.param(
        {"": {"_type": "choice", "_value": [1]}},
        r"^search space: parameter names must be non-empty strings, got ''; quote the name",
        id="empty-name",
    ),
]


@pytest.mark.parametrize(("raw", "message"), INVALID)
def test_parse_invalid_raises_with_path_value_and_fix(raw: dict, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=message) as info:
        SearchSpace.parse(raw)
    assert str(info.value).startswith("search space")
    assert isinstance(info.value, NniPlError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "source",
    [[1, 2], "[1, 2]", 42, "just text"],
    ids=["list", "json-list", "int", "yaml-scalar"],
)
def test_parse_not_a_dict(source: object) -> None:
    with pytest.raises(
        SearchSpaceError,
        match=r"^search space: must be a dict of parameter name -> \{_type, _value\}, got .*; an empty space is \{\}",
    ):
        SearchSpace.parse(source)  # type: ignore[arg-type]


def test_parse_error_inside_nested_branch_names_full_path() -> None:
    raw = {
        "layer": {
            "_type": "choice",
            "_value": [{"_name": "conv", "kernel": {"_type": "randint", "_value": [3, 1]}}],
        }
    }
    with pytest.raises(
        SearchSpaceError, match=r"parameter 'layer/conv/kernel': randint needs `low < high`"
    ) as info:
        SearchSpace.parse(raw)
    assert info.value.path == "layer/conv/kernel"


def test_parse_error_deeply_nested_path() -> None:
    raw = {
        "a": {
            "_type": "choice",
            "_value": [
                {
                    "_name": "x",
                    "b": {
                        "_type": "choice",
                        "_value": [{"_name": "y", "c": {"_type": "loguniform", "_value": [0, 1]}}],
                    },
                }
            ],
        }
    }
    with pytest.raises(SearchSpaceError, match=r"parameter 'a/x/b/y/c': loguniform needs positive bounds"):
        SearchSpace.parse(raw)


def test_parse_unknown_type_with_non_string_type() -> None:
    with pytest.raises(SearchSpaceError, match=r"parameter 'p': unknown _type True; use one of"):
        _space({"_type": True, "_value": [1]})


def test_search_space_error_message_format() -> None:
    err = SearchSpaceError("lr", "`low <= high` must hold", "got [0.1, 0.01]", "swap the bounds")
    assert (
        str(err) == "search space parameter 'lr': `low <= high` must hold, got [0.1, 0.01]; swap the bounds"
    )
    assert err.path == "lr"
    assert str(SearchSpaceError("", "bad")) == "search space: bad"


def test_parse_spec_json_round_trips_through_json_module() -> None:
    raw = {name: spec for name, (spec, _) in ALL_TEN.items()}
    space = SearchSpace.parse(json.dumps(raw))
    assert space.to_json() == raw
