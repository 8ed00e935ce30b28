"""The one exception hierarchy of nni-pl.

Every error a user can meet derives from :class:`NniPlError`, and its message says what was wrong,
echoes the value that was given and says how to fix it. Causes are chained with ``raise ... from e``.

Example:
    >>> from nni_pl.errors import SearchSpaceError
    >>> try:
    ...     raise SearchSpaceError("lr", "`low <= high` must hold", "got [0.1, 0.01]", "swap the bounds")
    ... except SearchSpaceError as e:
    ...     print(e)
    search space parameter 'lr': `low <= high` must hold, got [0.1, 0.01]; swap the bounds
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "ExperimentNotFoundError",
    "MissingDependencyError",
    "NniPlError",
    "NoMoreTrialError",
    "SearchSpaceError",
    "StoreError",
    "WaitForResults",
    "did_you_mean",
]


class NniPlError(Exception):
    """Base class of every nni-pl error."""


class SearchSpaceError(NniPlError, ValueError):
    """A search space (or a parameter set checked against one) is invalid.

    Args:
        path: where in the space the problem is, e.g. ``"layer/conv/kernel_size"`` ("" for the whole space).
        rule: the rule that was broken.
        got: the offending value, already formatted.
        fix: how to fix it.
    """

    def __init__(self, path: str, rule: str, got: str = "", fix: str = "") -> None:
        self.path = path
        where = f"search space parameter {path!r}" if path else "search space"
        msg = f"{where}: {rule}"
        if got:
            msg += f", {got}"
        if fix:
            msg += f"; {fix}"
        super().__init__(msg)


class ConfigError(NniPlError, ValueError):
    """An experiment config (or an algorithm's ``classArgs``) is invalid.

    Args:
        field: the config field in the user's spelling, e.g. ``"tuner.classArgs.optimize_mode"``.
        message: what is wrong, echoing the value, and how to fix it.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"config field {field!r}: {message}" if field else message)


class StoreError(NniPlError):
    """The experiment store cannot be opened or is inconsistent."""


class ExperimentNotFoundError(NniPlError, LookupError):
    """No experiment (or trial) with the given id exists where we looked."""


class MissingDependencyError(NniPlError, ImportError):
    """An optional back end is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the package {package!r}, which is not installed; "
            f"install it with: pip install 'nni-pl[{extra}]'"
        )


class NoMoreTrialError(NniPlError):
    """Raised by a tuner when its (finite) search space is exhausted."""


class WaitForResults(NniPlError):
    """Raised by a tuner that can suggest more only after running trials report (Hyperband's rungs,
    BOHB, PBT's generations). The manager asks again after the next trial ends; it is not an error."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""`` when nothing is close."""
    cands = list(candidates)
    lowered = {c.lower(): c for c in cands}
    if word.lower() in lowered:
        return f" (did you mean {lowered[word.lower()]!r}?)"
    import difflib  # only when a message is built: every trial process imports this module

    close = difflib.get_close_matches(word, cands, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
