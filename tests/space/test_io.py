"""Search-space files: load .json/.yml/.yaml, dump, and lossless dump -> parse round trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nni_pl._files import dump_yaml, load_structured
from nni_pl.errors import SearchSpaceError
from nni_pl.space import Choice, LogUniform, SearchSpace, Uniform

NESTED = {
    "lr": {"_type": "loguniform", "_value": [1e-5, 0.1]},
    "layer": {
        "_type": "choice",
        "_value": [
            {"_name": "empty"},
            {"_name": "conv", "kernel_size": {"_type": "choice", "_value": [1, 2, 3, 5]}, "act": "relu"},
        ],
    },
    "tag": {"_type": "choice", "_value": ["1e-5", "yes", "null", "x\ty", None, [1, {"k": 2.5}]]},
}


# --- loading files ---------------------------------------------------------------------------------------------


def test_load_json_file_with_tabs_and_scientific_notation(tmp_path: Path) -> None:
    path = tmp_path / "search_space.json"
    path.write_text('{\n\t"lr": {\n\t\t"_type": "loguniform",\n\t\t"_value": [1e-5, 1E-1]\n\t},\n'
                    '\t"opt": {"_type": "choice", "_value": ["a\tb"]}\n}\n')  # fmt: skip
    space = SearchSpace.load(path)
    assert space["lr"] == LogUniform(1e-5, 0.1)
    assert space["opt"] == Choice(("a\tb",))


@pytest.mark.parametrize("suffix", [".yml", ".yaml"])
def test_load_yaml_file_scientific_notation(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"space{suffix}"
    path.write_text(
        "lr:\n  _type: loguniform\n  _value: [1e-5, 1e-1]\nwd: {_type: uniform, _value: [0, 3E-4]}\n"
    )
    space = SearchSpace.load(str(path))  # str paths work too
    assert space["lr"] == LogUniform(1e-5, 0.1)
    assert space["wd"] == Uniform(0, 3e-4)


def test_load_tab_indented_json_named_yaml(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text('{\n\t"a": {\n\t\t"_type": "choice",\n\t\t"_value": [1, 2]\n\t}\n}\n')
    assert SearchSpace.load(path)["a"] == Choice((1, 2))


def test_load_empty_file_is_empty_space(tmp_path: Path) -> None:
    path = tmp_path / "empty.yml"
    path.write_text("")
    assert len(SearchSpace.load(path)) == 0


def test_load_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(
        SearchSpaceError, match=rf"search space: file not found, got '{missing}'; check the path"
    ):
        SearchSpace.load(missing)


@pytest.mark.parametrize(("name", "text"), [("bad.json", '{"a": '), ("bad.yml", "a: [1\n")])
def test_load_syntax_error_names_file(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(
        SearchSpaceError,
        match=rf"(?s)search space: file '{path}' is neither valid JSON nor YAML.*; check the syntax",
    ):
        SearchSpace.load(path)


def test_load_invalid_content_names_parameter(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"batch": {"_type": "randint", "_value": [64]}}')
    with pytest.raises(SearchSpaceError, match=r"parameter 'batch': randint takes 2 values"):
        SearchSpace.load(path)


# --- dumping ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".json", ".yml", ".yaml"])
def test_dump_load_round_trip(tmp_path: Path, suffix: str) -> None:
    space = SearchSpace.parse(NESTED)
    path = tmp_path / f"out{suffix}"
    space.dump(path)
    text = path.read_text()
    if suffix == ".json":
        assert json.loads(text) == NESTED
    else:
        assert not text.lstrip().startswith("{")  # block YAML, not JSON
    loaded = SearchSpace.load(path)
    assert loaded == space
    assert loaded.to_json() == NESTED


def test_dump_yaml_quotes_strings_that_look_like_numbers() -> None:
    # the YAML loader reads 1e-5 as a float, so the dumper must quote the string "1e-5"
    text = dump_yaml({"a": ["1e-5", 1e-5, "2E3", "+1e+3"]})
    assert load_structured(text, hint="x.yml") == {"a": ["1e-5", 1e-5, "2E3", "+1e+3"]}


def test_dumps_is_json_text() -> None:
    space = SearchSpace.parse(NESTED)
    assert json.loads(space.dumps()) == NESTED
    assert "\n" not in space.dumps(indent=None)


def test_to_json_is_a_fresh_copy() -> None:
    space = SearchSpace.parse(NESTED)
    out = space.to_json()
    out["tag"]["_value"][5][1]["k"] = 99
    assert space.to_json() == NESTED


# --- property: every generated space round-trips losslessly ----------------------------------------------------

_names = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=8)
_keys = _names.filter(lambda s: not s.startswith("_"))
_finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
_number = st.one_of(st.integers(min_value=-1000, max_value=1000), _finite)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), _finite, _names)
_json = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=3)),
    max_leaves=6,
)


@st.composite
def _bounds(draw: st.DrawFn, *, positive: bool = False, strict: bool = False) -> tuple[Any, Any]:
    lo = draw(_number)
    if positive:
        lo = abs(lo) + 1e-3
    span = draw(_number.map(abs))
    if strict or isinstance(lo, int):
        span = int(span) + 1 if strict else span
    hi = lo + span
    return lo, hi


@st.composite
def _numeric_spec(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["randint", "uniform", "quniform", "loguniform", "qloguniform",
                                 "normal", "qnormal", "lognormal", "qlognormal"]))  # fmt: skip
    q = draw(st.one_of(st.integers(1, 100), st.floats(min_value=1e-3, max_value=100)))
    if kind == "randint":
        lo = draw(st.integers(-1000, 1000))
        return {"_type": kind, "_value": [lo, lo + draw(st.integers(1, 1000))]}
    if kind in ("uniform", "quniform", "loguniform", "qloguniform"):
        lo, hi = draw(_bounds(positive=kind.endswith("loguniform")))
        return {"_type": kind, "_value": [lo, hi, q] if kind.startswith("q") else [lo, hi]}
    # exp(mu + several sigma) must stay a float for the log-normal types
    mu = draw(st.integers(-20, 20) | st.floats(-20, 20)) if "lognormal" in kind else draw(_number)
    sigma = draw(st.one_of(st.integers(1, 100), st.floats(min_value=1e-3, max_value=100)))
    return {"_type": kind, "_value": [mu, sigma, q] if kind.startswith("q") else [mu, sigma]}


def _spec(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    options: st.SearchStrategy[Any] = _json.filter(
        lambda v: "_name" not in json.dumps(v) and "_type" not in json.dumps(v)
    )
    if depth > 0:
        branch = st.builds(
            lambda name, params: {"_name": name, **params},
            _names,
            st.dictionaries(_keys, st.one_of(_spec(depth - 1), _scalar), max_size=3),
        )
        options = st.one_of(options, branch)
    choice = (
        st.lists(options, min_size=1, max_size=4)
        .filter(_distinct_names)
        .map(lambda opts: {"_type": "choice", "_value": opts})
    )
    return st.one_of(_numeric_spec(), choice)


def _distinct_names(opts: list[Any]) -> bool:
    names = [o["_name"] for o in opts if isinstance(o, dict) and "_name" in o]
    return len(names) == len(set(names))


_spaces = st.dictionaries(_names, _spec(depth=2), max_size=5)


@given(raw=_spaces)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_property_to_json_and_text(raw: dict[str, Any]) -> None:
    space = SearchSpace.parse(raw)
    assert space.to_json() == raw
    assert json.dumps(space.to_json(), sort_keys=True) == json.dumps(
        raw, sort_keys=True
    )  # 1 stays 1, 1.0 stays 1.0
    assert SearchSpace.parse(space.dumps()) == space
    assert SearchSpace.parse(dump_yaml(space.to_json())) == space


@given(raw=_spaces)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_property_files(raw: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("rt")
    space = SearchSpace.parse(raw)
    for suffix in (".json", ".yaml"):
        path = folder / f"space{suffix}"
        space.dump(path)
        loaded = SearchSpace.load(path)
        assert loaded == space
        assert loaded.to_json() == raw
