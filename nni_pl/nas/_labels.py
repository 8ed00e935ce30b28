"""Labels, architecture values and the NAS error: what every mutation primitive shares.

Example:
    >>> from nni_pl.nas._labels import match_value
    >>> match_value("k", [3, 3], [(1, 1), (3, 3)])
    (3, 3)
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from nni_pl.errors import NniPlError

__all__ = [
    "ArchitectureError",
    "NoContextError",
    "canonical",
    "check_label_use",
    "label_scope",
    "lookup",
    "match_value",
    "register_label",
    "to_json_value",
]


class ArchitectureError(NniPlError, ValueError):
    """An architecture (or a label) does not fit the model space.

    Args:
        label: the label concerned ("" when the whole architecture is wrong).
        message: what is wrong, echoing the value, and how to fix it.
    """

    def __init__(self, label: str, message: str) -> None:
        self.label = label
        super().__init__(f"label {label!r}: {message}" if label else message)


class NoContextError(NniPlError, RuntimeError):
    """A primitive that needs a model space being built (``ModelParameterChoice``) was used outside one."""


# --------------------------------------------------------------------------------------------- values


def canonical(value: Any) -> str:
    """A JSON key for ``value`` (tuples read as lists) used to compare choice values."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def to_json_value(value: Any) -> Any:
    """``value`` as it reads after a JSON round trip (tuples become lists)."""
    return json.loads(canonical(value))


_NO_ALIAS = object()


def _index_alias(value: Any, values: Sequence[Any], kind: str | None) -> Any:
    """The candidate that NNI 3.0's integer spelling ``value`` stands for, or ``_NO_ALIAS``.

    NNI 3.0 writes a list-built ``LayerChoice``'s pick as the candidate's index (``{"conv": 0}``) and a one-input
    ``InputChoice``'s as the input's index (``{"skip": 1}``); nni-pl's values are the names ``"0"``, ``"1"``, ...
    and index lists ``[1]``. The integer is read so only where it cannot mean anything else: index ``i`` of a
    LayerChoice whose ``i``-th candidate is named ``str(i)`` (a dict-built one with other keys keeps requiring
    its keys), and ``[i]`` of an InputChoice that allows it. A ValueChoice's values are never reinterpreted.
    """
    if kind not in ("LayerChoice", "InputChoice") or isinstance(value, bool) or not isinstance(value, int):
        return _NO_ALIAS
    if kind == "LayerChoice":
        if 0 <= value < len(values) and values[value] == str(value):
            return values[value]
        return _NO_ALIAS
    for v in values:
        if isinstance(v, (list, tuple)) and list(v) == [value]:
            return v
    return _NO_ALIAS


def match_value(label: str, value: Any, values: Sequence[Any], *, kind: str | None = None) -> Any:
    """The element of ``values`` equal to ``value`` (after JSON normalisation); ArchitectureError otherwise.

    ``kind`` (``"LayerChoice"``, ``"InputChoice"``, ...) names the decision; for the first two an integer may
    also be NNI 3.0's candidate index (see :func:`_index_alias`).
    """
    alias = _index_alias(value, values, kind)
    if alias is not _NO_ALIAS:
        return alias
    try:
        key = canonical(value)
    except (TypeError, ValueError):
        key = None
    for v in values:
        if canonical(v) == key:
            return v
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for v in values:  # 3 == 3.0 after a trip through other tools
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == value:
                return v
    raise ArchitectureError(
        label,
        f"value {value!r} is not one of the allowed values {[to_json_value(v) for v in values]}; pick one of them",
    )


def lookup(arch: Mapping[str, Any], label: str, values: Sequence[Any], *, kind: str | None = None) -> Any:
    """The candidate that ``arch`` picks for ``label`` (checked against ``values``; ``kind`` as for match_value)."""
    if label not in arch:
        raise ArchitectureError(
            label,
            f"the architecture has no value for this label (allowed values: "
            f"{[to_json_value(v) for v in values]}); add it — space.search_space() lists every label",
        )
    return match_value(label, arch[label], values, kind=kind)


# --------------------------------------------------------------------------------------------- labels


class _LabelScope:
    """Counters for automatic labels and the registry of labels seen while one model space is built."""

    def __init__(self, check: bool) -> None:
        self.counters: dict[str, int] = {}
        self.registry: dict[str, tuple[str, str]] = {}
        self.auto: set[str] = set()
        self.explicit: set[str] = set()
        self.check = check
        #: ModelParameterChoice decisions made while the space is built: label -> candidates
        self.parameters: dict[str, list[Any]] = {}

    def new_label(self, kind: str) -> str:
        while True:  # skip numbers a user took explicitly
            self.counters[kind] = self.counters.get(kind, 0) + 1
            label = f"{kind}_{self.counters[kind]}"
            if label not in self.explicit:
                break
        if self.check:
            self.auto.add(label)
        return label


_local = threading.local()
_GLOBAL_SCOPE = _LabelScope(check=False)


def _scopes() -> list[_LabelScope]:
    if not hasattr(_local, "scopes"):
        _local.scopes = []
    return _local.scopes


def _scope() -> _LabelScope:
    stack = _scopes()
    return stack[-1] if stack else _GLOBAL_SCOPE


@contextlib.contextmanager
def label_scope() -> Iterator[_LabelScope]:
    """Number automatic labels from 1 again, and check explicit labels for conflicts, inside the block.

    :class:`~nni_pl.nas.ModelSpace` opens one around its ``__init__``, which is why the same space built twice
    (here and in a trial process) gets the same labels. The scope also collects the space's
    ``ModelParameterChoice`` decisions.
    """
    scope = _LabelScope(check=True)
    _scopes().append(scope)
    try:
        yield scope
    finally:
        _scopes().pop()


def register_model_parameter(label: str | None, candidates: Sequence[Any], what: str) -> str:
    """Record a ``ModelParameterChoice`` of the model space being built; return its label.

    Raises:
        NoContextError: no model space is being built (``what`` names the caller in the message).
    """
    scope = _scope()
    if not scope.check:
        raise NoContextError(
            f"{what} was used outside a model space: call it inside the __init__ of a ModelSpace subclass "
            "(or of a class decorated with @model_wrapper), whose construction it changes"
        )
    label = _make_label(label, "modelparameterchoice")
    register_label(label, "ModelParameterChoice", candidates)
    scope.parameters.setdefault(label, list(candidates))
    return label


def _make_label(label: str | None, kind: str) -> str:
    if label is None:
        return _scope().new_label(kind)
    if not isinstance(label, str) or not label:
        raise ArchitectureError(str(label), f"a label must be a non-empty string, got {label!r}")
    scope = _scope()
    if scope.check:
        if label in scope.auto:
            raise ArchitectureError(
                label,
                "this label was already given automatically to another choice; choose a different label",
            )
        scope.explicit.add(label)
    return label


def register_label(label: str, kind: str, values: Sequence[Any] | str) -> None:
    """Record that ``label`` is a ``kind`` decision over ``values``; a different earlier use is an error."""
    scope = _scope()
    if not scope.check:
        return
    sig = values if isinstance(values, str) else canonical([to_json_value(v) for v in values])
    check_label_use(scope.registry, label, kind, sig)


def check_label_use(registry: dict[str, tuple[str, str]], label: str, kind: str, sig: str) -> None:
    """Shared labels must be the same kind of choice over the same values."""
    old = registry.get(label)
    if old is None:
        registry[label] = (kind, sig)
    elif old != (kind, sig):
        raise ArchitectureError(
            label,
            f"the label is used twice for different choices: a {old[0]} over {old[1]} and a {kind} over {sig}; "
            "the same label means the same decision, so give one of them another label",
        )


def _check_prior(label: str, prior: Sequence[float] | None, n: int) -> list[float] | None:
    """NNI's ``prior``: one probability per candidate, summing to 1 (kept, not used by the built-in strategies)."""
    if prior is None:
        return None
    p = [float(x) for x in prior]
    if len(p) != n or any(x < 0 for x in p) or abs(sum(p) - 1.0) > 1e-6:
        raise ArchitectureError(
            label,
            f"prior must be {n} non-negative probabilities summing to 1 (one per candidate), got {list(prior)}",
        )
    return p
