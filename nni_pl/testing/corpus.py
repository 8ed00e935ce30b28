"""The edge-case search spaces the conformance suite runs every tuner on.

Each :class:`SpaceCase` is NNI JSON. A tuner is run on the part of a case it declares it supports
(:func:`supported_part` keeps the top-level parameters its ``check_search_space`` accepts), and the
parameters it does not support must be rejected with a :class:`~nni_pl.errors.SearchSpaceError` that
names them.

Example:
    >>> from nni_pl.hpo.tuners.gridsearch import GridSearchTuner
    >>> kept, dropped = supported_part(GridSearchTuner, CORPUS_BY_NAME["randint"].space)
    >>> sorted(kept), sorted(dropped)
    (['ri', 'ri_single', 'ri_two'], [])
    >>> kept, dropped = supported_part(GridSearchTuner, CORPUS_BY_NAME["log_types"].space)
    >>> sorted(kept), sorted(dropped)
    (['qlu_float', 'qlu_int'], ['lu', 'lu_narrow'])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nni_pl.errors import SearchSpaceError
from nni_pl.space import SearchSpace

__all__ = [
    "CORPUS",
    "CORPUS_BY_NAME",
    "FINITE_CASES",
    "NESTED_PROBE",
    "SEED_SPACE",
    "STRING_CHOICE_PROBE",
    "TYPE_PROBES",
    "SpaceCase",
    "supported_part",
]


def _p(type_: str, *values: Any) -> dict[str, Any]:
    return {"_type": type_, "_value": list(values)}


@dataclass(frozen=True)
class SpaceCase:
    """A named search space (NNI JSON) with the edge cases it exercises.

    Attributes:
        name: short identifier, used in failure messages.
        space: the search space, as NNI JSON.
        about: what the case is for.
    """

    name: str
    space: Mapping[str, Any]
    about: str = ""


_NESTED_DEEP = {
    "model": _p(
        "choice",
        {"_name": "linear"},
        {
            "_name": "mlp",
            "layers": _p("randint", 1, 4),
            "act": _p("choice", "relu", "tanh"),
            "dropout": _p("uniform", 0, 0.5),
        },
        {
            "_name": "conv",
            "const": 7,
            "meta": {"tag": [1, None]},
            "block": _p(
                "choice",
                {"_name": "plain", "width": _p("quniform", 8, 64, 8)},
                {
                    "_name": "residual",
                    "width": _p("quniform", 8, 64, 8),
                    "norm": _p(
                        "choice",
                        {"_name": "bn", "momentum": _p("uniform", 0.9, 0.99)},
                        {"_name": "none"},
                    ),
                },
            ),
        },
    ),
    "lr": _p("loguniform", 1e-4, 1e-1),
}

_NESTED_FINITE = {
    "arch": _p(
        "choice",
        {"_name": "a"},
        {"_name": "b", "k": _p("choice", 1, 3), "stride": 2},
        {
            "_name": "c",
            "inner": _p("choice", {"_name": "x"}, {"_name": "y", "w": _p("randint", 0, 2)}),
        },
    ),
}

CORPUS: tuple[SpaceCase, ...] = (
    SpaceCase(
        "mixed_choice",
        {
            "c": _p(
                "choice",
                None,
                True,
                False,
                "relu",
                "",
                "1",
                0,
                1,
                2.5,
                -3,
                [1, 2],
                {"a": 1, "b": [None, "x"]},
                [],
                {},
            ),
            "flags": _p("choice", True, False),
        },
        "choice options of every JSON type (null, bools, strings, numbers, lists, dicts) must come back exactly",
    ),
    SpaceCase(
        "numeric_choice",
        {
            "c_int": _p("choice", 16, 32, 64),
            "c_float": _p("choice", 0.1, 0.5, 1.0),
            "c_mixed": _p("choice", 1, 2.5, -4),
            "c_single": _p("choice", 7),
            "c_scale": _p("choice", -1e-3, 1e3),
        },
        "numeric options come back as written: 1.0 stays a float, 16 stays an int; a one-option choice",
    ),
    SpaceCase(
        "string_choice",
        {"act": _p("choice", "relu", "tanh", "sigmoid"), "opt": _p("choice", "adam")},
        "plain categorical choices",
    ),
    SpaceCase(
        "equal_bounds",
        {
            "u": _p("uniform", 1, 1),
            "qu_int": _p("quniform", 3, 3, 1),
            "qu_float": _p("quniform", 0.5, 0.5, 0.1),
            "lu": _p("loguniform", 2, 2),
            "qlu": _p("qloguniform", 4, 4, 2),
        },
        "low == high: a single value (exp(log(2)) is not exactly 2: a tuner must clip)",
    ),
    SpaceCase(
        "clipping_q",
        {
            "qu_clip": _p("quniform", 2, 10, 5),
            "qu_clip_float": _p("quniform", 0.15, 1.05, 0.5),
            "qlu_clip": _p("qloguniform", 3, 100, 10),
        },
        "q-types whose bounds are not multiples of q: values are clipped onto the bounds",
    ),
    SpaceCase(
        "randint",
        {"ri_single": _p("randint", 3, 4), "ri_two": _p("randint", 0, 2), "ri": _p("randint", -5, 5)},
        "randint [low, high) never returns high and returns ints; [3, 4] has one value",
    ),
    SpaceCase(
        "q_float",
        {
            "quf": _p("quniform", 0, 1, 0.1),
            "quf_neg": _p("quniform", -1, 1, 0.25),
            "qu_mixed": _p("quniform", 0, 10.0, 2),
            "qlu_float": _p("qloguniform", 0.1, 10, 0.1),
        },
        "float q: values on multiples of q, as floats (also when only one bound is a float)",
    ),
    SpaceCase(
        "q_int",
        {
            "qui": _p("quniform", 0, 100, 10),
            "qui_one": _p("quniform", -3, 3, 1),
            "qlui": _p("qloguniform", 1, 1000, 7),
        },
        "integer low, high and q: values are ints on multiples of q",
    ),
    SpaceCase(
        "uniform",
        {"u": _p("uniform", -1, 1), "u_pos": _p("uniform", 0, 10)},
        "plain continuous parameters",
    ),
    SpaceCase(
        "log_types",
        {
            "lu": _p("loguniform", 1e-5, 1e-1),
            "lu_narrow": _p("loguniform", 0.5, 0.6),
            "qlu_int": _p("qloguniform", 1, 1000, 7),
            "qlu_float": _p("qloguniform", 0.1, 10, 0.1),
        },
        "log-scaled types stay inside their bounds",
    ),
    SpaceCase(
        "normal_types",
        {
            "n": _p("normal", 0, 1),
            "qn_int": _p("qnormal", 10, 3, 2),
            "qn_float": _p("qnormal", 0, 1, 0.1),
            "ln": _p("lognormal", 0, 1),
            "qln_float": _p("qlognormal", 1, 1, 0.5),
            "qln_int": _p("qlognormal", 2, 1, 1),
        },
        "the four unbounded types: finite floats, ints for integer q, qlognormal >= 0",
    ),
    SpaceCase(
        "scales",
        {
            "u_big": _p("uniform", 1e6, 1e9),
            "u_tiny": _p("uniform", 1e-9, 1e-8),
            "u_neg": _p("uniform", -1e5, -1e3),
            "lu_wide": _p("loguniform", 1e-10, 1e10),
            "ri_big": _p("randint", -1000000, 1000000),
            "qu_big_int": _p("quniform", 0, 1000000, 1000),
            "qu_big_float": _p("quniform", 0, 1e6, 1000),
            "qlu_tiny": _p("qloguniform", 1e-6, 1e-3, 1e-6),
            "n_big": _p("normal", 1e6, 1e3),
            "n_tiny": _p("normal", 0, 1e-6),
        },
        "very large and very small scales (normalisation, float precision)",
    ),
    SpaceCase(
        "nested_deep",
        _NESTED_DEEP,
        "nested choices with _name three levels deep, constants inside branches, an empty branch",
    ),
    SpaceCase("nested_finite", _NESTED_FINITE, "nested choices over finite types only (grid-searchable)"),
)

CORPUS_BY_NAME: dict[str, SpaceCase] = {case.name: case for case in CORPUS}

#: Small finite spaces a tuner that exhausts finite spaces must run out of (without duplicates).
FINITE_CASES: tuple[SpaceCase, ...] = (
    SpaceCase(
        "finite_mixed",
        {
            "c": _p("choice", None, "a", 2.5),
            "ri": _p("randint", 3, 5),
            "qu": _p("quniform", 2, 10, 5),
        },
        "a mixed choice, randint and a clipping quniform: 18 points",
    ),
    SpaceCase(
        "finite_numeric",
        {
            "cn": _p("choice", 1, 2.5, -3),
            "qlu": _p("qloguniform", 1, 2, 1),
            "quf": _p("quniform", 0, 0.2, 0.1),
        },
        "a numeric choice, qloguniform and float-q quniform: 18 points",
    ),
    SpaceCase("finite_nested", _NESTED_FINITE, "nested choices: 6 points"),
)

#: A space with plenty of randomness in every type, for the same-seed / different-seed checks.
SEED_SPACE: dict[str, Any] = {
    "u": _p("uniform", -5, 5),
    "lu": _p("loguniform", 1e-4, 1),
    "ri": _p("randint", 0, 1000),
    "qu": _p("quniform", 0, 100, 1),
    "c": _p("choice", *range(10)),
    "cs": _p("choice", "a", "b", "c", "d", "e", "f"),
    "n": _p("normal", 0, 1),
}

#: One parameter of each kind, to probe what ``check_search_space`` rejects.
TYPE_PROBES: dict[str, dict[str, Any]] = {
    "choice": _p("choice", 1, 2, 3),
    "randint": _p("randint", 0, 10),
    "uniform": _p("uniform", 0, 1),
    "quniform": _p("quniform", 0, 10, 2),
    "loguniform": _p("loguniform", 1e-3, 1),
    "qloguniform": _p("qloguniform", 1, 100, 1),
    "normal": _p("normal", 0, 1),
    "qnormal": _p("qnormal", 0, 5, 1),
    "lognormal": _p("lognormal", 0, 1),
    "qlognormal": _p("qlognormal", 1, 1, 1),
}
#: A nested choice whose branches use only ``choice`` (so only nesting itself can be unsupported).
NESTED_PROBE: dict[str, Any] = _p("choice", {"_name": "a"}, {"_name": "b", "k": _p("choice", 1, 2)})
#: A choice with non-numeric options.
STRING_CHOICE_PROBE: dict[str, Any] = _p("choice", "relu", "tanh")


def supported_part(tuner_cls: Any, space: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Split ``space`` into the top-level parameters ``tuner_cls`` accepts and those it rejects.

    Each parameter is checked on its own with ``tuner_cls.check_search_space``.

    Returns:
        ``(kept, dropped)``: the accepted part of the space (NNI JSON) and, for each rejected
        parameter, the :class:`SearchSpaceError` message.
    """
    kept: dict[str, Any] = {}
    dropped: dict[str, str] = {}
    for name, spec in space.items():
        sub = SearchSpace.parse({name: spec})
        try:
            tuner_cls.check_search_space(sub)
        except SearchSpaceError as e:
            dropped[name] = str(e)
        else:
            kept[name] = spec
    return kept, dropped
