"""What rewritten trial code calls: the tuned value of each annotation, read from ``nni_pl.get_next_parameter()``.

Run standalone (no experiment), an annotated value the parameters do not give (``NNI_PL_PARAMETERS`` may give
some) is the default the code assigns; in a trial a missing value is an error, since the tuner chose one.

Example:
    >>> value("mnist/lr/uniform", lambda: 0.1)   # standalone: the code's own value
    0.1
    >>> choice("mnist/act/choice", ["relu", "tanh"], ["relu", "tanh"], lambda: "relu")
    'relu'
    >>> function_choice("mnist/pool/function_choice", ["max(1, 2)", "min(1, 2)"],
    ...                 [lambda: max(1, 2), lambda: min(1, 2)], 1)
    1
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from nni_pl.errors import NniPlError

__all__ = ["choice", "function_choice", "value"]

_MISSING = object()


def _chosen(key: str) -> Any:
    from nni_pl.trial import current, get_next_parameter

    params = get_next_parameter()
    if key in params:
        return params[key]
    if current().standalone:
        return _MISSING
    raise NniPlError(
        f"the trial's parameters have no {key!r} (they have {sorted(params)}); the search space was generated "
        "from the annotations, so it was changed since: run the experiment again with useAnnotation: true"
    )


def _index(key: str, labels: Sequence[Any], chosen: Any) -> int:
    for i, label in enumerate(labels):
        if label == chosen and isinstance(label, bool) == isinstance(chosen, bool):
            return i
    raise NniPlError(
        f"parameter {key!r}: the tuner chose {chosen!r}, which is none of the options {list(labels)}"
    )


def value(key: str, default: Callable[[], Any]) -> Any:
    """The value the tuner chose for ``key`` (a numeric sampling function); standalone, ``default()``.

    Raises:
        NniPlError: in a trial whose parameters lack ``key``.
    """
    chosen = _chosen(key)
    return default() if chosen is _MISSING else chosen


def choice(key: str, labels: Sequence[Any], options: Sequence[Any], default: Callable[[], Any]) -> Any:
    """The option of ``nni.choice(...)`` whose label (its value in the search space) the tuner chose.

    Args:
        key: the search-space key.
        labels: each option as the search space lists it (the value, or the source text of an expression).
        options: the options' values, in the same order.
        default: the value the code assigns, used standalone.

    Raises:
        NniPlError: the chosen value is not a label, or (in a trial) the parameters lack ``key``.
    """
    chosen = _chosen(key)
    if chosen is _MISSING:
        return default()
    return options[_index(key, labels, chosen)]


def function_choice(
    key: str, labels: Sequence[str], candidates: Sequence[Callable[[], Any]], default: int
) -> Any:
    """Call the candidate of ``@nni.function_choice`` that the tuner chose; standalone, the one the code calls.

    Args:
        key: the search-space key.
        labels: each candidate call's source text (the options in the search space).
        candidates: the calls, each wrapped in a function of no arguments.
        default: the index of the call the code itself makes.
    """
    chosen = _chosen(key)
    index = default if chosen is _MISSING else _index(key, labels, chosen)
    return candidates[index]()
