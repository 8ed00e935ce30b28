"""Hyperparameter optimisation: the :class:`Tuner` and :class:`Assessor` interfaces and the built-ins.

Built-in algorithms are looked up by their NNI names (``"TPE"``, ``"Random"``, ``"Anneal"``,
``"GridSearch"``, ``"Medianstop"``) with :func:`create_algorithm`, or imported from
``nni_pl.hpo.tuners`` / ``nni_pl.hpo.assessors``.
"""

from nni_pl.errors import NoMoreTrialError
from nni_pl.hpo._base import (
    Assessor,
    AssessResult,
    HistoryEntry,
    Tuner,
    extract_scalar,
    to_loss,
    validate_optimize_mode,
)
from nni_pl.hpo._registry import BUILTIN_ASSESSORS, BUILTIN_TUNERS, create_algorithm, resolve_class

__all__ = [
    "BUILTIN_ASSESSORS",
    "BUILTIN_TUNERS",
    "AssessResult",
    "Assessor",
    "HistoryEntry",
    "NoMoreTrialError",
    "Tuner",
    "create_algorithm",
    "extract_scalar",
    "resolve_class",
    "to_loss",
    "validate_optimize_mode",
]
