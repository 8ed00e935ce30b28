"""Mutation primitives: the choices a model space is written with.

A *mutable* is an ordinary ``nn.Module`` (or, for :class:`ValueChoice`, a plain value object) that stands for
one or more decisions. Each decision has a *label* and a list of allowed values; an *architecture* is a dict
``label -> value``. In the space a mutable runs with its default (first) values, so a space can be called on
a batch; :func:`freeze_module` turns a mutable into the plain module the architecture picks.

Example:
    >>> import torch
    >>> from nni_pl.nas import LayerChoice
    >>> lc = LayerChoice({"small": torch.nn.Linear(4, 2), "id": torch.nn.Identity()}, label="op")
    >>> lc.names
    ['small', 'id']
    >>> type(lc.freeze({"op": "id"})).__name__
    'Identity'
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nni_pl.nas._labels import (
    ArchitectureError,
    _check_prior,
    _make_label,
    canonical,
    check_label_use,
    label_scope,
    lookup,
    match_value,
    register_label,
    to_json_value,
)
from nni_pl.nas._value import FrozenValue, ValueChoice, ValueExpr, expr_leaves, resolve

__all__ = [
    "ArchitectureError",
    "ChosenInputs",
    "FrozenValue",
    "InputChoice",
    "LayerChoice",
    "Mutable",
    "Repeat",
    "ValueChoice",
    "ValueExpr",
    "canonical",
    "check_label_use",
    "expr_leaves",
    "freeze_children",
    "freeze_module",
    "input_choice_values",
    "label_scope",
    "lookup",
    "match_value",
    "register_label",
    "resolve",
    "to_json_value",
]


# --------------------------------------------------------------------------------------------- module mutables


class Mutable(nn.Module):
    """Base class of the mutable modules (LayerChoice, InputChoice, Repeat, Cell, ...).

    A subclass says which decisions it owns (:meth:`own_choices`) and how to become a plain module
    (:meth:`_freeze`, which may consume the module's children); decisions of mutables nested inside it are
    found by walking its children.
    """

    label: str

    def own_choices(self) -> list[tuple[str, str, list[Any]]]:
        """``(label, kind, values)`` of the decisions this module makes itself (not its children's)."""
        return []

    def freeze(self, arch: Mapping[str, Any]) -> nn.Module:
        """The plain module that ``arch`` picks, mutables inside frozen too; ``self`` is left as it is."""
        return freeze_module(copy.deepcopy(self), arch)

    def _freeze(self, arch: Mapping[str, Any]) -> nn.Module:
        """Like :meth:`freeze` but may reuse (and change) ``self``'s children; for :func:`freeze_module`."""
        raise NotImplementedError

    def check_arch(self, arch: Mapping[str, Any]) -> None:
        """Raise ArchitectureError when ``arch`` breaks a constraint the choice lists cannot express."""


def freeze_module(
    module: nn.Module, arch: Mapping[str, Any], memo: dict[int, tuple[nn.Module, nn.Module]] | None = None
) -> nn.Module:
    """Freeze ``module`` *in place* where possible and return what replaces it.

    Mutables are replaced by their chosen module, layers built with ValueChoice arguments are rebuilt with the
    chosen values, ValueChoice attributes become :class:`FrozenValue` s. Work on a copy (``copy.deepcopy``) if
    the space must stay usable; :meth:`nni_pl.nas.ModelSpace.freeze` does.
    """
    memo = {} if memo is None else memo
    key = id(module)
    if key in memo:  # the entry keeps the key module alive, so its id cannot be reused meanwhile
        return memo[key][1]
    if isinstance(module, Mutable):
        out = module._freeze(arch)
        out = freeze_module(out, arch, memo) if out is not module else out
    elif getattr(module, "_nas_init", None) is not None:
        out = module._nas_rebuild(arch)  # type: ignore[operator]
        memo[key] = (module, out)
        out = freeze_module(out, arch, memo)
    else:
        freeze_children(module, arch, memo)
        base = type(module).__dict__.get("_nas_base")  # only a wrapper itself, not a user subclass of one
        if base is not None:  # a wrapped layer without choices: its plain torch class
            module.__dict__.pop("_nas_init", None)
            module.__class__ = base
        out = module
    memo[key] = (module, out)
    return out


def freeze_children(
    module: nn.Module, arch: Mapping[str, Any], memo: dict[int, tuple[nn.Module, nn.Module]] | None = None
) -> None:
    """Freeze every child of ``module`` and its ValueChoice attributes, in place."""
    memo = {} if memo is None else memo
    for name, child in list(module._modules.items()):
        if child is not None:
            module._modules[name] = freeze_module(child, arch, memo)
    for name, value in list(vars(module).items()):
        if isinstance(value, ValueExpr):
            module.__dict__[name] = FrozenValue(value.evaluate(arch))


def _candidate_names(candidates: Any) -> OrderedDict[str, nn.Module]:
    if isinstance(candidates, Mapping):
        items = [(str(k), v) for k, v in candidates.items()]
    elif isinstance(candidates, Sequence) and not isinstance(candidates, (str, bytes)):
        items = [(str(i), v) for i, v in enumerate(candidates)]
    else:
        raise ArchitectureError(
            "", f"LayerChoice candidates must be a list or dict of modules, got {candidates!r}"
        )
    if not items:
        raise ArchitectureError("", "LayerChoice needs at least one candidate")
    for name, m in items:
        if not isinstance(m, nn.Module):
            raise ArchitectureError(
                "", f"LayerChoice candidate {name!r} is {m!r}, not an nn.Module; wrap it in a module"
            )
    return OrderedDict(items)


class LayerChoice(Mutable):
    """Choose one of several candidate modules; reads like ``nn.ModuleList`` (list) or ``nn.ModuleDict`` (dict).

    The decision's values are the candidate names: the dict keys, or ``"0"``, ``"1"``, ... for a list. In the
    space the first candidate runs. A candidate may itself be (or contain) a ``LayerChoice``: its decision joins
    the search space and matters only when its parent picks it.

    Args:
        candidates: a list of modules, or a dict name -> module.
        prior: accepted for NNI compatibility and ignored.
        label: the decision's name; generated (``layerchoice_1``, ...) when not given.

    Example:
        >>> import torch
        >>> from nni_pl.nas import LayerChoice
        >>> lc = LayerChoice([torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(3, 8, 5, padding=2)])
        >>> lc(torch.zeros(1, 3, 8, 8)).shape
        torch.Size([1, 8, 8, 8])
        >>> len(lc), lc.names
        (2, ['0', '1'])
    """

    def __init__(
        self,
        candidates: Mapping[str, nn.Module] | Sequence[nn.Module],
        *,
        prior: Sequence[float] | None = None,
        label: str | None = None,
    ) -> None:
        super().__init__()
        named = _candidate_names(candidates)
        self.label = _make_label(label, "layerchoice")
        self.prior = _check_prior(self.label, prior, len(named))
        for name, m in named.items():  # a candidate may hold choices, LayerChoices included (NNI 2.2+)
            self.add_module(name, m)
        register_label(self.label, "LayerChoice", self.names)

    @property
    def names(self) -> list[str]:
        """The candidate names (the values of this decision)."""
        return list(self._modules.keys())

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self._modules.values())  # type: ignore[arg-type]

    def _key(self, idx: int | str) -> str:
        if isinstance(idx, int):
            names = self.names
            if not -len(names) <= idx < len(names):
                raise IndexError(
                    f"LayerChoice {self.label!r} has {len(names)} candidates, index {idx} is out of range"
                )
            return names[idx]
        if idx not in self._modules:
            raise KeyError(f"LayerChoice {self.label!r} has no candidate {idx!r}; candidates: {self.names}")
        return idx

    def __getitem__(self, idx: int | str) -> nn.Module:
        return self._modules[self._key(idx)]  # type: ignore[return-value]

    def __setitem__(self, idx: int | str, module: nn.Module) -> None:
        self._modules[self._key(idx)] = module

    def __delitem__(self, idx: int | str) -> None:
        if len(self) == 1:
            raise ArchitectureError(self.label, "cannot delete the last candidate of a LayerChoice")
        del self._modules[self._key(idx)]

    def own_choices(self) -> list[tuple[str, str, list[Any]]]:
        return [(self.label, "LayerChoice", self.names)]

    def _freeze(self, arch: Mapping[str, Any]) -> nn.Module:
        name = lookup(arch, self.label, self.names, kind="LayerChoice")
        return freeze_module(self._modules[name], arch)  # type: ignore[arg-type]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return next(iter(self))(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


_REDUCTIONS = ("sum", "mean", "concat", "none")


def _reduce(tensors: list[torch.Tensor], reduction: str) -> Any:
    if reduction == "none":
        return tensors
    if not tensors:
        return None
    if len(tensors) == 1:
        return tensors[0]
    if reduction == "sum":
        return torch.stack(tensors).sum(0)
    if reduction == "mean":
        return torch.stack(tensors).mean(0)
    return torch.cat(tensors, dim=1)


def input_choice_values(n_candidates: int, n_chosen: int | None) -> list[list[int]]:
    """The values of an InputChoice: sorted index lists of length ``n_chosen`` (any non-empty size if None)."""
    sizes = range(1, n_candidates + 1) if n_chosen is None else [n_chosen]
    return [list(c) for k in sizes for c in itertools.combinations(range(n_candidates), k)]


class InputChoice(Mutable):
    """Choose ``n_chosen`` of ``n_candidates`` input tensors and reduce them.

    Called with a list of ``n_candidates`` tensors. The decision's values are sorted lists of ``n_chosen``
    indices (``n_chosen=None``: any non-empty subset). In the space the first ``n_chosen`` inputs are used.

    Args:
        n_candidates: number of inputs to choose from.
        n_chosen: how many to choose (None: any number, at least one).
        reduction: ``"sum"``, ``"mean"``, ``"concat"`` (dim 1) or ``"none"`` (the list of chosen tensors).
        prior: accepted for NNI compatibility and ignored.
        label: the decision's name; generated (``inputchoice_1``, ...) when not given.

    Example:
        >>> import torch
        >>> from nni_pl.nas import InputChoice
        >>> ic = InputChoice(3, 2, reduction="concat", label="skip")
        >>> xs = [torch.zeros(1, 4), torch.ones(1, 4), torch.ones(1, 4)]
        >>> ic.freeze({"skip": [1, 2]})(xs).shape
        torch.Size([1, 8])
    """

    def __init__(
        self,
        n_candidates: int,
        n_chosen: int | None = 1,
        reduction: str = "sum",
        *,
        prior: Sequence[float] | None = None,
        label: str | None = None,
    ) -> None:
        super().__init__()
        self.label = _make_label(label, "inputchoice")
        if not isinstance(n_candidates, int) or n_candidates < 1:
            raise ArchitectureError(self.label, f"n_candidates must be an int >= 1, got {n_candidates!r}")
        if n_chosen is not None and (not isinstance(n_chosen, int) or not 1 <= n_chosen <= n_candidates):
            raise ArchitectureError(
                self.label,
                f"n_chosen must be None or an int in [1, n_candidates={n_candidates}], got {n_chosen!r}",
            )
        if reduction not in _REDUCTIONS:
            raise ArchitectureError(
                self.label, f"reduction must be one of {list(_REDUCTIONS)}, got {reduction!r}"
            )
        self.n_candidates = n_candidates
        self.n_chosen = n_chosen
        self.reduction = reduction
        self.prior = _check_prior(self.label, prior, len(self.values))
        register_label(self.label, "InputChoice", self.values)

    @property
    def values(self) -> list[list[int]]:
        return input_choice_values(self.n_candidates, self.n_chosen)

    def own_choices(self) -> list[tuple[str, str, list[Any]]]:
        return [(self.label, "InputChoice", self.values)]

    def _freeze(self, arch: Mapping[str, Any]) -> nn.Module:
        return ChosenInputs(lookup(arch, self.label, self.values, kind="InputChoice"), self.reduction)

    def forward(self, candidate_inputs: Sequence[torch.Tensor]) -> Any:
        _check_inputs(self.label, candidate_inputs, self.n_candidates)
        return _reduce([candidate_inputs[i] for i in self.values[0]], self.reduction)

    def extra_repr(self) -> str:
        return f"n_candidates={self.n_candidates}, n_chosen={self.n_chosen}, reduction={self.reduction!r}, label={self.label!r}"


def _check_inputs(label: str, inputs: Sequence[Any], n: int | None) -> None:
    if not isinstance(inputs, (list, tuple)):
        raise ArchitectureError(
            label, f"an input choice is called with a list of tensors, got {type(inputs).__name__}"
        )
    if n is not None and len(inputs) != n:
        raise ArchitectureError(label, f"expected a list of {n} tensors (n_candidates), got {len(inputs)}")


class ChosenInputs(nn.Module):
    """The frozen form of :class:`InputChoice`: picks the ``chosen`` indices of its input list and reduces them.

    Example:
        >>> import torch
        >>> ChosenInputs([0, 2], "sum")([torch.ones(2), torch.zeros(2), torch.ones(2)])
        tensor([2., 2.])
    """

    def __init__(self, chosen: Sequence[int] | int, reduction: str) -> None:
        super().__init__()
        self.chosen = [chosen] if isinstance(chosen, int) else list(chosen)
        self.reduction = reduction

    def forward(self, candidate_inputs: Sequence[torch.Tensor]) -> Any:
        return _reduce([candidate_inputs[i] for i in self.chosen], self.reduction)

    def extra_repr(self) -> str:
        return f"chosen={self.chosen}, reduction={self.reduction!r}"


# --------------------------------------------------------------------------------------------- Repeat


def _call_factory(fn: Callable[..., nn.Module], *args: Any) -> nn.Module:
    import inspect

    try:
        n = len(
            [
                p
                for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
            ]
        )
    except (TypeError, ValueError):
        n = 0
    return fn(*args[:n])


class Repeat(Mutable):
    """Repeat a block a fixed or chosen number of times (a prefix of the blocks runs).

    Args:
        blocks: a module (deep-copied for each repetition: choices inside share their labels), a factory
            ``fn()`` or ``fn(index)`` (called for each repetition: fresh labels), or a list of either of
            length ``max depth``.
        depth: an int (fixed), ``(min, max)`` (a decision over ``min..max``), or a ValueChoice of ints.
        label: the depth decision's name; generated (``repeat_1``, ...) when not given.

    The frozen form is an ``nn.Sequential`` of the chosen number of (frozen) blocks.

    Example:
        >>> import torch
        >>> from nni_pl.nas import Repeat
        >>> rep = Repeat(lambda: torch.nn.Linear(4, 4), (1, 3), label="depth")
        >>> len(rep.freeze({"depth": 2}))
        2
    """

    def __init__(
        self,
        blocks: nn.Module | Callable[..., nn.Module] | Sequence[nn.Module | Callable[..., nn.Module]],
        depth: int | tuple[int, int] | ValueExpr,
        label: str | None = None,
    ) -> None:
        super().__init__()
        self.depth_choice: ValueExpr | None = None
        if isinstance(depth, ValueExpr):
            self.label = (
                depth.leaves()[0].label if isinstance(depth, ValueChoice) else _make_label(label, "repeat")
            )
            values = depth.all_values()
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
                raise ArchitectureError(self.label, f"Repeat depth values must be ints >= 0, got {values!r}")
            self.depth_choice = depth
            self.min_depth, self.max_depth = min(values), max(values)
        elif isinstance(depth, int) and not isinstance(depth, bool):
            self.label = _make_label(label, "repeat")
            if depth < 0:
                raise ArchitectureError(self.label, f"Repeat depth must be >= 0, got {depth}")
            self.min_depth = self.max_depth = depth
        elif isinstance(depth, (tuple, list)) and len(depth) == 2 and all(isinstance(d, int) for d in depth):
            self.label = _make_label(label, "repeat")
            if not 0 <= depth[0] <= depth[1]:
                raise ArchitectureError(
                    self.label, f"Repeat depth (min, max) needs 0 <= min <= max, got {tuple(depth)}"
                )
            self.min_depth, self.max_depth = depth[0], depth[1]
            register_label(self.label, "Repeat", self.depth_values)
        else:
            raise ArchitectureError(
                str(label or ""), f"Repeat depth must be an int, (min, max) or a ValueChoice, got {depth!r}"
            )
        if isinstance(blocks, Sequence) and not isinstance(blocks, (str, bytes)):
            if len(blocks) != self.max_depth:
                raise ArchitectureError(
                    self.label,
                    f"a list of blocks must have max depth = {self.max_depth} entries, got {len(blocks)}",
                )
            mods = [b if isinstance(b, nn.Module) else _call_factory(b, i) for i, b in enumerate(blocks)]
        elif isinstance(blocks, nn.Module):
            mods = [blocks] + [copy.deepcopy(blocks) for _ in range(self.max_depth - 1)]
            mods = mods[: self.max_depth]
        elif callable(blocks):
            mods = [_call_factory(blocks, i) for i in range(self.max_depth)]
        else:
            raise ArchitectureError(self.label, f"Repeat blocks must be modules or factories, got {blocks!r}")
        self.blocks = nn.ModuleList(mods)

    @property
    def depth_values(self) -> list[int]:
        if self.depth_choice is not None:
            return list(self.depth_choice.all_values())
        return list(range(self.min_depth, self.max_depth + 1))

    @property
    def default_depth(self) -> int:
        return self.depth_choice.default() if self.depth_choice is not None else self.min_depth

    def own_choices(self) -> list[tuple[str, str, list[Any]]]:
        if self.depth_choice is not None:
            return [(leaf.label, "ValueChoice", leaf.candidates) for leaf in self.depth_choice.leaves()]
        if self.min_depth == self.max_depth:
            return []
        return [(self.label, "Repeat", self.depth_values)]

    def chosen_depth(self, arch: Mapping[str, Any]) -> int:
        if self.depth_choice is not None:
            return int(self.depth_choice.evaluate(arch))
        if self.min_depth == self.max_depth:
            return self.min_depth
        return lookup(arch, self.label, self.depth_values)

    def _freeze(self, arch: Mapping[str, Any]) -> nn.Module:
        d = self.chosen_depth(arch)
        return nn.Sequential(*[freeze_module(b, arch) for b in list(self.blocks)[:d]])

    def forward(self, x: Any) -> Any:
        for block in list(self.blocks)[: self.default_depth]:
            x = block(x)
        return x

    def extra_repr(self) -> str:
        return f"depth={self.depth_values}, label={self.label!r}"
