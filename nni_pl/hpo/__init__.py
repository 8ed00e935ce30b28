"""Hyperparameter optimisation: the :class:`Tuner`, :class:`Assessor` and :class:`Advisor` interfaces.

Built-in algorithms are looked up by their NNI names (``"TPE"``, ``"Evolution"``, ``"Hyperband"``,
``"Medianstop"``, ...) with :func:`create_algorithm`, or imported from ``nni_pl.hpo.tuners`` /
``nni_pl.hpo.assessors``. ``nni-pl algo list`` prints them all.
"""

from nni_pl.errors import NoMoreTrialError, WaitForResults
from nni_pl.hpo._base import (
    Advisor,
    Assessor,
    AssessResult,
    HistoryEntry,
    Tuner,
    extract_scalar,
    to_loss,
    validate_optimize_mode,
)
from nni_pl.hpo._registry import (
    BUILTIN_ADVISORS,
    BUILTIN_ASSESSORS,
    BUILTIN_TUNERS,
    create_algorithm,
    resolve_class,
)

__all__ = [
    "BUILTIN_ADVISORS",
    "BUILTIN_ASSESSORS",
    "BUILTIN_TUNERS",
    "Advisor",
    "AssessResult",
    "Assessor",
    "HistoryEntry",
    "NoMoreTrialError",
    "Tuner",
    "WaitForResults",
    "create_algorithm",
    "extract_scalar",
    "resolve_class",
    "to_loss",
    "validate_optimize_mode",
]
