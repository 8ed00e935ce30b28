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

from nni_pl.testing.assessors import AssessorTestCase
from nni_pl.testing.tuners import TunerTestCase, check_parameters, parameter_problems

__all__ = ["AssessorTestCase", "TunerTestCase", "check_parameters", "parameter_problems"]
