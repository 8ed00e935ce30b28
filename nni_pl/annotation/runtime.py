"""What rewritten trial code calls to read the tuned values, from ``nni_pl.get_next_parameter()``.

An annotated assignment ``lr = 0.1`` becomes
``lr = nni_pl.annotation.value('train/lr/uniform') if nni_pl.annotation.given('train/lr/uniform') else 0.1``:
run standalone (no experiment), a value the parameters do not give (``NNI_PL_PARAMETERS`` may give some) is the
one the code assigns; in a trial a missing value is an error, since the tuner chose one.

Example:
    >>> given("train/lr/uniform")   # standalone, no NNI_PL_PARAMETERS: the code's own value is used
    False
    >>> index("train/pool/function_choice", ["max_pool(h)", "avg_pool(h)"], default=1)
    1
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nni_pl.errors import NniPlError

__all__ = ["given", "index", "value"]


def _parameters() -> dict[str, Any]:
    from nni_pl.trial import get_next_parameter

    return get_next_parameter()


def _missing(key: str, params: dict[str, Any]) -> NniPlError:
    return NniPlError(
        f"the trial's parameters have no {key!r} (they have {sorted(params)}); the search space was generated "
        "from other annotations than this code's: start a new experiment with useAnnotation: true"
    )


def given(key: str) -> bool:
    """Whether the parameters give ``key``; ``False`` only standalone (the code then keeps its own value).

    Raises:
        NniPlError: in a trial whose parameters lack ``key``.
    """
    from nni_pl.trial import current

    params = _parameters()
    if key in params:
        return True
    if current().standalone:
        return False
    raise _missing(key, params)


def value(key: str) -> Any:
    """The value the tuner chose for ``key``.

    Raises:
        NniPlError: the parameters lack ``key``.

    Example:
        >>> from nni_pl.trial import TrialContext, activate
        >>> activate(TrialContext(parameters={"train/lr/uniform": 0.05}))
        >>> value("train/lr/uniform")
        0.05
        >>> activate(None)
    """
    params = _parameters()
    if key not in params:
        raise _missing(key, params)
    return params[key]


def index(key: str, labels: Sequence[Any], default: int | None = None) -> int:
    """The position in ``labels`` (the options as the search space lists them) of the one the tuner chose.

    Args:
        key: the search-space key of a ``nni.choice`` or ``@nni.function_choice``.
        labels: the options' values in the search space (an expression's source text).
        default: returned standalone when the parameters lack ``key`` (the call the code itself makes).

    Raises:
        NniPlError: the chosen value is none of ``labels``, or the parameters lack ``key`` (in a trial, or with
            no ``default``).
    """
    params = _parameters()
    if key not in params:
        if default is not None and not given(key):
            return default
        raise _missing(key, params)
    chosen = params[key]
    for i, label in enumerate(labels):
        if label == chosen and isinstance(label, bool) == isinstance(chosen, bool):
            return i
    raise NniPlError(
        f"parameter {key!r}: the tuner chose {chosen!r}, which is none of the options {list(labels)}"
    )
