"""Conformance suites that every tuner and assessor, built-in or yours, passes.

Like Optuna's ``optuna.testing``, the suites ship in the package: a test module subclasses
:class:`TunerTestCase` (or :class:`AssessorTestCase`) once per algorithm and pytest runs every check,
with no plugin and no fixtures. The checks drive the algorithm as the experiment manager does, on a
corpus of edge-case search spaces (:mod:`nni_pl.testing.corpus`) cut to what the tuner declares it
supports (``supported_types``, ``supports_nested``, ``numeric_choices_only``)::

    from nni_pl.testing import TunerTestCase

    class TestMyTuner(TunerTestCase):
        tuner_class = MyTuner            # or override make_tuner(self, **overrides)
        tuner_kwargs = {"optimize_mode": "maximize"}

    class TestMyAssessor(AssessorTestCase):
        assessor_class = MyAssessor
        assessor_kwargs = {"optimize_mode": "maximize"}

:class:`TrainingServiceTestCase` does the same for training services (:mod:`nni_pl.testing.training`): a
subclass says how to build the service, and the suite runs real trials through it and the engine.

Class attributes of the test case say what the tuner promises beyond the basics:
``finite_space_exemption`` / ``reevaluates`` (the documented reason a tuner may repeat points of a
finite space; by default each point once, then ``NoMoreTrialError``), ``deterministic`` (the seed
does not matter), ``extra_keys`` (keys such as ``TRIAL_BUDGET`` beside the space's), ``space_override`` (a special space, e.g. BatchTuner's
``combine_params``), ``n_suggestions`` (lower it for slow tuners). A failed check raises
:class:`AssertionError` that names the call, the parameters and the broken rule.

Example:
    >>> from nni_pl.hpo.tuners.random import RandomTuner
    >>> class TestRandom(TunerTestCase):
    ...     tuner_class = RandomTuner
    >>> TestRandom().test_corpus_suggestions_are_valid()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nni_pl.testing.assessors import AssessorTestCase
    from nni_pl.testing.training import (
        SERVICE_TRIAL_COMMAND,
        TrainingServiceTestCase,
        service_trial,
        service_trial_nas_spec,
    )
    from nni_pl.testing.tuners import TunerTestCase, check_parameters, parameter_problems

__all__ = [
    "SERVICE_TRIAL_COMMAND",
    "AssessorTestCase",
    "TrainingServiceTestCase",
    "TunerTestCase",
    "check_parameters",
    "parameter_problems",
    "service_trial",
    "service_trial_nas_spec",
]

# Imported on first use: every trial of the training-service suite runs ``python -m
# nni_pl.testing._service_trial``, which must not pay for numpy, the store and the manager.
_EXPORTS = {
    "AssessorTestCase": "nni_pl.testing.assessors",
    "TunerTestCase": "nni_pl.testing.tuners",
    "check_parameters": "nni_pl.testing.tuners",
    "parameter_problems": "nni_pl.testing.tuners",
    "SERVICE_TRIAL_COMMAND": "nni_pl.testing.training",
    "TrainingServiceTestCase": "nni_pl.testing.training",
    "service_trial": "nni_pl.testing.training",
    "service_trial_nas_spec": "nni_pl.testing.training",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nni_pl.testing' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
