"""ModelParameterChoice: a choice that is a plain value while the model space is built (NNI 2.x)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from nni_pl.nas._labels import ArchitectureError, _check_prior, lookup, register_model_parameter

__all__ = ["ModelParameterChoice"]

_V = TypeVar("_V")


def _first(candidates: Sequence[_V]) -> _V:
    """The first candidate (``ModelParameterChoice.FIRST``)."""
    return candidates[0]


def _last(candidates: Sequence[_V]) -> _V:
    """The last candidate (``ModelParameterChoice.LAST``)."""
    return candidates[-1]


def ModelParameterChoice(
    candidates: Sequence[_V],
    *,
    prior: Sequence[float] | None = None,
    default: Callable[[Sequence[_V]], _V] | _V | None = None,
    label: str | None = None,
) -> _V:
    """Choose one of ``candidates`` for a plain attribute of the model; returns the value itself, not a choice.

    Unlike :class:`~nni_pl.nas.ValueChoice` the result is an ordinary value, usable in ``if``, ``range``, or any
    function (``torch.zeros(1, dim)``). The decision joins the space's search space; while the space is built
    the value is ``default`` (a candidate, or a function of the candidates such as ``ModelParameterChoice.LAST``;
    the first candidate when not given), and inside :func:`~nni_pl.nas.fixed_arch` (or when a trial builds its
    model) it is the architecture's value. Because it changes how ``__init__`` runs,
    :meth:`ModelSpace.freeze <nni_pl.nas.ModelSpace.freeze>` builds such a space again rather than copying it,
    and one-shot strategies cannot search it.

    Args:
        candidates: the values (JSON-able).
        prior: accepted for NNI compatibility and ignored.
        default: the value used while the space is built, or a function picking it from the candidates.
        label: the decision's name; generated (``modelparameterchoice_1``, ...) when not given.

    Raises:
        NoContextError: called outside the ``__init__`` of a :class:`~nni_pl.nas.ModelSpace`.

    Example:
        >>> import torch
        >>> from nni_pl.nas import ModelParameterChoice, ModelSpace, fixed_arch
        >>> class Net(ModelSpace):
        ...     def __init__(self):
        ...         super().__init__()
        ...         dim = ModelParameterChoice([4, 8], label="dim")
        ...         self.token = torch.nn.Parameter(torch.zeros(1, dim))
        >>> Net().search_space()
        {'dim': {'_type': 'choice', '_value': [4, 8]}}
        >>> Net().freeze({"dim": 8}).token.shape
        torch.Size([1, 8])
    """
    if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence) or not candidates:
        raise ArchitectureError(
            str(label or ""), f"ModelParameterChoice needs a non-empty list of candidates, got {candidates!r}"
        )
    from nni_pl.nas.space import current_fixed_arch

    label = register_model_parameter(label, candidates, "ModelParameterChoice")
    _check_prior(label, prior, len(candidates))
    arch = current_fixed_arch()
    if arch is not None:
        return lookup(arch, label, candidates)
    if default is None:
        return candidates[0]
    if any(default is c or default == c for c in candidates):
        return default  # type: ignore[return-value]
    if callable(default):
        return default(candidates)
    raise ArchitectureError(
        label,
        f"default {default!r} is neither one of the candidates {list(candidates)} nor a function of them",
    )


ModelParameterChoice.FIRST = _first  # type: ignore[attr-defined]
ModelParameterChoice.LAST = _last  # type: ignore[attr-defined]
