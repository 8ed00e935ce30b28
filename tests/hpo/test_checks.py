"""The shared argument checks (nni_pl/_checks.py): one rule per check, and the field named as the user wrote it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from nni_pl._checks import (
    ArgumentError,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_optimize_mode,
    check_seed,
)
from nni_pl.errors import ConfigError
from nni_pl.hpo import create_algorithm, validate_optimize_mode
from nni_pl.hpo.assessors.medianstop import MedianstopAssessor
from nni_pl.hpo.tuners.tpe import TPETuner


@pytest.mark.parametrize(
    ("kind", "name", "cls", "args", "field", "rule"),
    [
        (
            "tuner",
            "TPE",
            TPETuner,
            {"n_startup_jobs": -1},
            "n_startup_jobs",
            "must be an integer >= 0, got -1",
        ),
        ("tuner", "TPE", TPETuner, {"seed": "7"}, "seed", "must be a non-negative integer or null, got '7'"),
        (
            "tuner",
            "TPE",
            TPETuner,
            {"optimize_mode": "max"},
            "optimize_mode",
            "must be 'maximize' or 'minimize', got 'max'",
        ),
        (
            "assessor",
            "Medianstop",
            MedianstopAssessor,
            {"start_step": -2},
            "start_step",
            "must be an integer >= 0, got -2",
        ),
    ],
)
def test_bad_argument_is_named_after_the_class_in_python_and_the_field_in_a_config(
    kind, name, cls, args, field, rule
) -> None:
    with pytest.raises(ConfigError, match=rf"^argument '{cls.__name__}\.{field}': {rule}") as python:
        cls(**args)
    assert python.value.field == f"{cls.__name__}.{field}"
    with pytest.raises(ConfigError, match=rf"^config field '{kind}\.classArgs\.{field}': {rule}") as config:
        create_algorithm(kind, name, class_args=args)
    assert config.value.field == f"{kind}.classArgs.{field}"
    with pytest.raises(ConfigError, match=rf"'advisor\.classArgs\.{field}'"):  # the caller's prefix is kept
        create_algorithm(kind, name, class_args=args, field="advisor")


def test_argument_error_relabels_keep_the_reason_and_pickle() -> None:
    error = ArgumentError("TPETuner", "gamma", "must be a number > 0, got 0")
    assert (
        isinstance(error, ConfigError)
        and str(error) == "argument 'TPETuner.gamma': must be a number > 0, got 0"
    )
    nested = error.nested(object(), "tpe_args")
    assert nested.field == "object.tpe_args.gamma" and nested.reason == error.reason
    config = nested.in_config("tuner.classArgs")
    assert str(config) == "config field 'tuner.classArgs.tpe_args.gamma': must be a number > 0, got 0"
    again = pickle.loads(pickle.dumps(config))
    assert (type(again), str(again), again.field) == (ArgumentError, str(config), config.field)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check_int("T", "n", 2.0, minimum=1), "must be an integer >= 1, got 2.0"),
        (lambda: check_int("T", "n", True, minimum=0), "must be an integer >= 0, got True"),
        (
            lambda: check_int("T", "n", 100, minimum=1, maximum=99),
            "must be an integer between 1 and 99, got 100",
        ),
        (
            lambda: check_int("T", "n", 5, maximum=4, hint="e.g. n: 3"),
            "must be an integer <= 4, got 5; e.g. n: 3",
        ),
        (lambda: check_number("T", "x", float("nan")), "must be a finite number, got nan"),
        (lambda: check_number("T", "x", float("inf"), low=0), "must be a number >= 0, got inf"),
        (lambda: check_number("T", "x", 0, low=0, low_open=True), "must be a number > 0, got 0"),
        (lambda: check_number("T", "x", 1, high=1, high_open=True), "must be a number < 1, got 1"),
        (lambda: check_number("T", "x", "0.5", low=0, high=1), "must be a number >= 0 and <= 1, got '0.5'"),
        (lambda: check_number("T", "x", np.True_), "must be a finite number, got"),
        (
            lambda: check_number("T", "x", 2, low=0, high=1, rule="a probability"),
            "must be a probability, got 2",
        ),
        (lambda: check_bool("T", "b", 1), r"must be true or false, got 1 \(int\)"),
        (lambda: check_choice("T", "c", "c", ("a", "b")), "must be 'a' or 'b', got 'c'"),
        (lambda: check_choice("T", "c", "d", ("a", "b", "c")), "must be 'a', 'b' or 'c', got 'd'"),
        (lambda: check_optimize_mode("T", "Maximize"), "must be 'maximize' or 'minimize', got 'Maximize'"),
        (lambda: check_seed("T", -1), "must be a non-negative integer or null, got -1"),
    ],
)
def test_checks_refuse_with_the_rule_and_the_value(call, message) -> None:
    with pytest.raises(ArgumentError, match=rf"^argument 'T\.\w+': {message}"):
        call()


def test_checks_return_normalised_values() -> None:
    assert check_int("T", "n", np.int64(3), minimum=1) == 3 and type(check_int("T", "n", np.int64(3))) is int
    assert check_number("T", "x", 2) == 2.0 and check_number("T", "x", float("inf"), allow_inf=True) == float(
        "inf"
    )
    assert check_bool("T", "b", np.bool_(True)) is True
    assert check_seed("T", None) is None and check_seed("T", np.uint8(4)) == 4
    assert check_int(TPETuner, "n", 1) == 1  # an owner may be a class, an instance or a name


def test_validate_optimize_mode_keeps_its_field_argument() -> None:
    assert validate_optimize_mode("minimize") == "minimize"
    with pytest.raises(
        ConfigError, match=r"^config field 'experiment\.mode': must be 'maximize' or 'minimize'"
    ):
        validate_optimize_mode("best", field="experiment.mode")
