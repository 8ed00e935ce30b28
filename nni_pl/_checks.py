"""Argument checks shared by every algorithm: tuners, assessors, advisors and NAS strategies.

Each check returns the value (normalised: ``int``, ``float``, ``bool``) or raises :class:`ArgumentError`,
a :class:`~nni_pl.errors.ConfigError` that names the argument the way the user wrote it:

- built in Python, ``RegularizedEvolution(population_size=0)`` reports ``RegularizedEvolution.population_size``
  (the owner is the class the user constructed);
- built from a config, whoever builds it relabels the error with where the value was read:
  :func:`nni_pl.hpo.create_algorithm` reports ``tuner.classArgs.population_size`` (see
  :meth:`ArgumentError.in_config`), and an object built from another's argument reports the path through it
  (``TPE.tpe_args.gamma``, see :meth:`ArgumentError.nested`).

The checks never import numpy (a numpy bool counts as a bool), so a module that only validates its
arguments stays light to import.

Example:
    >>> from nni_pl._checks import ArgumentError, check_int
    >>> class Evolution:
    ...     def __init__(self, *, population_size: int = 10) -> None:
    ...         self.population_size = check_int(self, "population_size", population_size, minimum=1)
    >>> try:
    ...     Evolution(population_size=0)
    ... except ArgumentError as e:
    ...     print(e)
    ...     print(e.in_config("tuner.classArgs"))
    argument 'Evolution.population_size': must be an integer >= 1, got 0
    config field 'tuner.classArgs.population_size': must be an integer >= 1, got 0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, NoReturn

from nni_pl.errors import ConfigError

__all__ = [
    "ArgumentError",
    "check_bool",
    "check_choice",
    "check_int",
    "check_number",
    "check_optimize_mode",
    "check_seed",
    "fail",
    "owner_name",
]


class ArgumentError(ConfigError):
    """An invalid constructor argument, named as the user wrote it.

    Args:
        owner: the class the user constructed (``"RegularizedEvolution"``), or the config path the value
            was read from (``"tuner.classArgs"``, with ``config=True``); ``""`` for none.
        argument: the argument's path below the owner: ``"population_size"``, ``"tpe_args.gamma"``.
        reason: what is wrong, echoing the value, and how to fix it.
        config: whether ``owner`` is a config path (the message then reads ``config field ...``).

    Attributes:
        field: the full name, ``f"{owner}.{argument}"``.
    """

    def __init__(self, owner: str, argument: str, reason: str, *, config: bool = False) -> None:
        self.owner, self.argument, self.reason, self.config = owner, argument, reason, config
        field = f"{owner}.{argument}" if owner else argument
        super().__init__(field, reason)
        if not config:
            self.args = (f"argument {field!r}: {reason}",)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable despite the keyword-only argument
        return (_rebuild, (self.owner, self.argument, self.reason, self.config))

    def in_config(self, prefix: str) -> ArgumentError:
        """The same error for a value read from a config at ``prefix``, e.g. ``"tuner.classArgs"``."""
        return ArgumentError(prefix, self.argument, self.reason, config=True)

    def nested(self, owner: object, under: str) -> ArgumentError:
        """The same error for an object built from ``owner``'s argument ``under`` (e.g. ``"tpe_args"``)."""
        return ArgumentError(owner_name(owner), f"{under}.{self.argument}", self.reason)


def _rebuild(owner: str, argument: str, reason: str, config: bool) -> ArgumentError:
    return ArgumentError(owner, argument, reason, config=config)


def owner_name(owner: object) -> str:
    """How errors name ``owner``: a string as given, a class by its name, an instance by its class's name."""
    if isinstance(owner, str):
        return owner
    if owner is None:
        return ""
    return owner.__name__ if isinstance(owner, type) else type(owner).__name__


def fail(owner: object, name: str, reason: str) -> NoReturn:
    """Raise :class:`ArgumentError` for ``owner``'s argument ``name`` (a rule no check below covers)."""
    raise ArgumentError(owner_name(owner), name, reason)


def _with_hint(reason: str, hint: str) -> str:
    return f"{reason}; {hint}" if hint else reason


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and not _is_numpy_bool(value)


def _is_numpy_bool(value: Any) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")  # numpy 2, 1


def check_int(
    owner: object,
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    hint: str = "",
) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) in ``[minimum, maximum]``.

    Example:
        >>> check_int("Hyperband", "eta", 1, minimum=2, hint="e.g. eta: 3")
        Traceback (most recent call last):
        ...
        nni_pl._checks.ArgumentError: argument 'Hyperband.eta': must be an integer >= 2, got 1; e.g. eta: 3
    """
    ok = _is_int(value) and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        if minimum is not None and maximum is not None:
            rule = f"an integer between {minimum} and {maximum}"
        elif minimum is not None:
            rule = f"an integer >= {minimum}"
        elif maximum is not None:
            rule = f"an integer <= {maximum}"
        else:
            rule = "an integer"
        fail(owner, name, _with_hint(f"must be {rule}, got {value!r}", hint))
    return int(value)


def check_number(
    owner: object,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
    rule: str = "",
    hint: str = "",
) -> float:
    """``value`` as a ``float`` if it is a real number (not a bool, never NaN) within the bounds.

    Args:
        low, high: the bounds (``None``: unbounded); ``low_open`` / ``high_open`` exclude them.
        allow_inf: accept an infinite value (within the bounds).
        rule: the rule in words, replacing the one built from the bounds (``"a probability in [0, 1]"``).
        hint: appended after ``;``, e.g. ``"e.g. lr: 0.001"``.

    Example:
        >>> check_number("PPOTuner", "gamma", 1.5, low=0, high=1)
        Traceback (most recent call last):
        ...
        nni_pl._checks.ArgumentError: argument 'PPOTuner.gamma': must be a number >= 0 and <= 1, got 1.5
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not _is_numpy_bool(value)
    x = float(value) if ok else math.nan
    ok = ok and not math.isnan(x) and (allow_inf or math.isfinite(x))
    if ok and low is not None:
        ok = x > low if low_open else x >= low
    if ok and high is not None:
        ok = x < high if high_open else x <= high
    if not ok:
        if not rule:
            bounds = []
            if low is not None:
                bounds.append(f"{'>' if low_open else '>='} {low:g}")
            if high is not None:
                bounds.append(f"{'<' if high_open else '<='} {high:g}")
            rule = " and ".join(["a number" + (f" {bounds[0]}" if bounds else ""), *bounds[1:]])
            if not bounds and not allow_inf:
                rule = "a finite number"
        fail(owner, name, _with_hint(f"must be {rule}, got {value!r}", hint))
    return x


def check_bool(owner: object, name: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False`` (a numpy bool too); ``1`` or ``"true"`` are refused.

    Example:
        >>> check_bool("GridSearch", "shuffle", "yes")
        Traceback (most recent call last):
        ...
        nni_pl._checks.ArgumentError: argument 'GridSearch.shuffle': must be true or false, got 'yes' (str)
    """
    if not (isinstance(value, bool) or _is_numpy_bool(value)):
        fail(owner, name, f"must be true or false, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_choice(owner: object, name: str, value: Any, options: Sequence[Any], *, hint: str = "") -> Any:
    """``value`` if it is one of ``options`` (compared with ``==``, so spell it exactly).

    Example:
        >>> check_choice("RegularizedEvolution", "on_failure", "retry", ("ignore", "worst"))
        Traceback (most recent call last):
        ...
        nni_pl._checks.ArgumentError: argument 'RegularizedEvolution.on_failure': must be 'ignore' or 'worst', got 'retry'
    """
    if value not in options:
        names = [repr(o) for o in options]
        either = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        fail(owner, name, _with_hint(f"must be {either}, got {value!r}", hint))
    return value


def check_optimize_mode(owner: object, value: Any) -> str:
    """``value`` if it is ``"maximize"`` or ``"minimize"`` (the argument ``optimize_mode``)."""
    return str(check_choice(owner, "optimize_mode", value, ("maximize", "minimize")))


def check_seed(owner: object, value: Any) -> int | None:
    """``value`` if it is ``None`` or a non-negative integer (the argument ``seed``)."""
    if value is None:
        return None
    if not _is_int(value) or value < 0:
        fail(owner, "seed", f"must be a non-negative integer or null, got {value!r}; e.g. seed: 42")
    return int(value)
