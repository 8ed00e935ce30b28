"""Hyperparameter optimisation: the :class:`Tuner`, :class:`Assessor` and :class:`Advisor` interfaces.

Built-in algorithms are looked up by their NNI names (``"TPE"``, ``"Evolution"``, ``"Hyperband"``,
``"Medianstop"``, ...) with :func:`create_algorithm`, or imported from ``nni_pl.hpo.tuners`` /
``nni_pl.hpo.assessors``. ``nni-pl algo list`` prints them all; :func:`register_algorithm` adds yours
under a name (``nni-pl algo register``).

Helpers for writing an algorithm: :func:`extract_scalar` and :func:`to_loss` (metrics),
:func:`make_rng` (seeded random streams), :func:`param_key` (the identity of a parameter set).

Example:
    >>> from nni_pl.hpo import create_algorithm
    >>> create_algorithm("tuner", "Random", class_args={"seed": 0}).seed
    0
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
    ALIASES,
    BUILTIN_ADVISORS,
    BUILTIN_ASSESSORS,
    BUILTIN_TUNERS,
    create_algorithm,
    resolve_class,
)
from nni_pl.hpo._user_registry import read as registered_algorithms
from nni_pl.hpo._user_registry import register as register_algorithm
from nni_pl.hpo._user_registry import unregister as unregister_algorithm
from nni_pl.hpo.tuners._common import make_rng, param_key

__all__ = [
    "ALIASES",
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
    "make_rng",
    "param_key",
    "register_algorithm",
    "registered_algorithms",
    "resolve_class",
    "to_loss",
    "unregister_algorithm",
    "validate_optimize_mode",
]
