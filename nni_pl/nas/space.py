"""Model spaces: a PyTorch module with choices inside, its search space, and freezing it to one architecture.

Write a space as an ``nn.Module`` that subclasses :class:`ModelSpace` (or decorate a plain ``nn.Module`` class
with :func:`model_wrapper`, as in NNI). The space records how it was built (``import_path`` and
``init_kwargs``), so a trial process rebuilds it with :func:`load_space`.

Example:
    >>> import torch
    >>> from nni_pl.nas import ModelSpace, LayerChoice, ValueChoice, nn
    >>> class Net(ModelSpace):
    ...     def __init__(self, classes: int = 10):
    ...         super().__init__()
    ...         hidden = ValueChoice([16, 32], label="hidden")
    ...         self.fc1 = nn.Linear(64, hidden)
    ...         self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="act")
    ...         self.fc2 = nn.Linear(hidden, classes)
    ...     def forward(self, x):
    ...         return self.fc2(self.act(self.fc1(x)))
    >>> space = Net(classes=3)
    >>> space.search_space()
    {'hidden': {'_type': 'choice', '_value': [16, 32]}, 'act': {'_type': 'choice', '_value': ['relu', 'tanh']}}
    >>> model = space.freeze({"hidden": 32, "act": "tanh"})
    >>> model(torch.zeros(2, 64)).shape
    torch.Size([2, 3])
    >>> space.init_kwargs
    {'classes': 3}
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import json
import logging
import os
import random
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from nni_pl._imports import import_object
from nni_pl.errors import ConfigError, did_you_mean
from nni_pl.nas.mutables import (
    ArchitectureError,
    Mutable,
    ValueExpr,
    canonical,
    check_label_use,
    freeze_children,
    label_scope,
    match_value,
    to_json_value,
)

__all__ = [
    "ArchitectureError",
    "ModelSpace",
    "check_arch",
    "collect_choices",
    "current_fixed_arch",
    "fixed_arch",
    "load_arch",
    "load_space",
    "model_wrapper",
    "random_arch",
    "save_arch",
    "search_space_of",
]

log = logging.getLogger(__name__)

_local = threading.local()
_T = TypeVar("_T", bound=type)


# --------------------------------------------------------------------------------------------- choices


def collect_choices(module: nn.Module) -> dict[str, list[Any]]:
    """Every decision inside ``module``: label -> allowed values, in order of first appearance.

    Raises ArchitectureError when one label is used for two different choices.
    """
    return {label: values for label, (_kind, values) in _collect_decisions(module).items()}


def _collect_decisions(module: nn.Module) -> dict[str, tuple[str, list[Any]]]:
    """Every decision inside ``module``: label -> (kind, allowed values), in order of first appearance."""
    found: dict[str, tuple[str, list[Any]]] = {}
    registry: dict[str, tuple[str, str]] = {}

    def add(label: str, kind: str, values: list[Any]) -> None:
        check_label_use(registry, label, kind, canonical([to_json_value(v) for v in values]))
        found.setdefault(label, (kind, values))

    seen: set[int] = set()

    def walk(m: nn.Module) -> None:
        if id(m) in seen:
            return
        seen.add(id(m))
        if isinstance(m, Mutable):
            for label, kind, values in m.own_choices():
                add(label, kind, values)
        if isinstance(m, ModelSpace) and m.frozen_arch is None:
            for label, values in m.__dict__.get("_nas_parameters", {}).items():
                add(label, "ModelParameterChoice", values)
        leaves_fn = getattr(m, "_nas_leaves", None)
        if leaves_fn is not None:
            for leaf in leaves_fn():
                add(leaf.label, "ValueChoice", leaf.candidates)
        for value in vars(m).values():
            if isinstance(value, ValueExpr):
                for leaf in value.leaves():
                    add(leaf.label, "ValueChoice", leaf.candidates)
        for child in m.children():
            walk(child)

    walk(module)
    return found


def search_space_of(module: nn.Module) -> dict[str, dict[str, Any]]:
    """The NNI search-space JSON of ``module``'s decisions (one ``choice`` per label)."""
    return {
        label: {"_type": "choice", "_value": [to_json_value(v) for v in values]}
        for label, values in collect_choices(module).items()
    }


def _constraint_holders(module: nn.Module) -> list[Mutable]:
    return [
        m for m in module.modules() if isinstance(m, Mutable) and type(m).check_arch is not Mutable.check_arch
    ]


def check_arch(module: nn.Module, arch: Mapping[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """Check ``arch`` against ``module``'s decisions; return it with each value as the space's own candidate.

    Args:
        module: the space (or any module with mutables inside).
        arch: label -> value. A list-built LayerChoice also takes NNI 3.0's candidate index (``{"conv": 0}``
            for the candidate named ``"0"``) and a one-input InputChoice the input's index (``1`` for ``[1]``);
            the returned architecture spells them as the space does.
        strict: whether labels the space does not have are an error (else they are ignored).

    Raises:
        ArchitectureError: a label is missing or unknown, or a value is not allowed; the message names the
            label, echoes the value and lists the allowed values.
    """
    if not isinstance(arch, Mapping):
        raise ArchitectureError(
            "", f"an architecture is a dict label -> value, got {type(arch).__name__}: {arch!r}"
        )
    decisions = _collect_decisions(module)
    choices = {label: values for label, (_kind, values) in decisions.items()}
    if strict:
        unknown = [k for k in arch if k not in choices]
        if unknown:
            k = unknown[0]
            raise ArchitectureError(
                k,
                f"the space has no such label (value {arch[k]!r}){did_you_mean(str(k), choices)}; "
                f"its labels are {list(choices)}",
            )
    out: dict[str, Any] = {}
    for label, values in choices.items():
        if label not in arch:
            raise ArchitectureError(
                label,
                f"the architecture has no value for this label (allowed values: "
                f"{[to_json_value(v) for v in values]}); add it — space.search_space() lists every label",
            )
        out[label] = match_value(label, arch[label], values, kind=decisions[label][0])
    for m in _constraint_holders(module):
        m.check_arch(out)
    return out


# --------------------------------------------------------------------------------------------- fixed arch


def current_fixed_arch() -> dict[str, Any] | None:
    """The architecture of the innermost active :func:`fixed_arch` block, or None."""
    stack = getattr(_local, "fixed", [])
    return stack[-1][0] if stack else None


def _current_fixed_strict() -> bool:
    stack = getattr(_local, "fixed", [])
    return stack[-1][1] if stack else True


@contextlib.contextmanager
def fixed_arch(
    arch: Mapping[str, Any] | str | os.PathLike[str], verbose: bool = True, *, strict: bool = True
) -> Iterator[dict[str, Any]]:
    """Inside the block, constructing a :class:`ModelSpace` gives the frozen model of ``arch`` (NNI's ``fixed_arch``).

    Args:
        arch: label -> value, or the path of a JSON file written by :func:`save_arch`.
        verbose: log the architecture being fixed.
        strict: whether labels the space does not have are an error (``False`` ignores them, e.g. the
            evaluator's choices in an exported architecture).

    Example:
        >>> import tempfile
        >>> from nni_pl.nas import LayerChoice, ModelSpace, fixed_arch, nn, save_arch
        >>> class MySpace(ModelSpace):
        ...     def __init__(self, classes: int):
        ...         super().__init__()
        ...         self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="act")
        ...         self.head = nn.Linear(8, classes)
        >>> path = tempfile.mkdtemp() + "/best_arch.json"
        >>> save_arch({"act": "tanh"}, path)  # what export_top_models gives
        >>> with fixed_arch(path):
        ...     model = MySpace(classes=10)  # a plain module, ready to train
        >>> model.act
        Tanh()
    """
    resolved = dict(arch) if isinstance(arch, Mapping) else load_arch(arch)
    if verbose:
        log.info("fixed architecture: %s", resolved)
    if not hasattr(_local, "fixed"):
        _local.fixed = []
    _local.fixed.append((resolved, strict))
    try:
        yield resolved
    finally:
        _local.fixed.pop()


def save_arch(arch: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``arch`` as JSON (for :func:`load_arch`, :func:`fixed_arch` and NNI's ``fixed_arch``)."""
    try:
        text = json.dumps(dict(arch), indent=2)
    except (TypeError, ValueError) as e:
        raise ArchitectureError("", f"the architecture is not JSON-able: {arch!r}") from e
    Path(path).write_text(text + "\n", encoding="utf-8")


def load_arch(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an architecture written by :func:`save_arch` (a JSON object label -> value)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ArchitectureError("", f"no architecture file at {str(path)!r}; check the path") from e
    except json.JSONDecodeError as e:
        raise ArchitectureError("", f"architecture file {str(path)!r} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ArchitectureError("", f"architecture file {str(path)!r} must hold a JSON object, got {data!r}")
    return data


# --------------------------------------------------------------------------------------------- ModelSpace


def _json_able(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _wrap_init(cls: type) -> None:
    orig = cls.__dict__.get("__init__")
    if orig is None or getattr(orig, "_nas_wrapped", False):
        return

    @functools.wraps(orig)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        first = "_nas_building" not in self.__dict__
        if first:
            object.__setattr__(self, "_nas_building", True)
            try:
                bound = inspect.signature(orig).bind(self, *args, **kwargs)
                params = dict(list(bound.arguments.items())[1:])
                for name, p in inspect.signature(orig).parameters.items():
                    if p.kind is p.VAR_KEYWORD and name in params:
                        params.update(params.pop(name))
            except TypeError:
                params = dict(kwargs)
            outermost = not getattr(_local, "building", 0)
            _local.building = getattr(_local, "building", 0) + 1
            try:
                with label_scope() if outermost else contextlib.nullcontext() as scope:
                    orig(self, *args, **kwargs)
            finally:
                _local.building -= 1
                self.__dict__.pop("_nas_building", None)
            if scope is not None and scope.parameters:
                object.__setattr__(self, "_nas_parameters", dict(scope.parameters))
            object.__setattr__(self, "init_kwargs", params)
            object.__setattr__(self, "import_path", f"{type(self).__module__}:{type(self).__qualname__}")
            if not _json_able(params):
                log.debug(
                    "init kwargs of %s are not JSON-able; load_space cannot rebuild it", type(self).__name__
                )
            arch = current_fixed_arch()
            if outermost and arch is not None:
                self._freeze_in_place(self.check_arch(arch, strict=_current_fixed_strict()), checked=True)
        else:
            orig(self, *args, **kwargs)

    __init__._nas_wrapped = True  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[misc]


class ModelSpace(nn.Module):
    """Base class of model spaces: an ``nn.Module`` whose ``__init__`` puts mutables inside.

    Attributes:
        init_kwargs: the constructor's arguments by name (JSON-able values let a trial rebuild the space).
        import_path: ``"module:QualName"`` of the class, for :func:`load_space`.
        frozen_arch: the architecture this instance was frozen to, or None for a space.

    Example:
        >>> from nni_pl.nas import ModelSpace, LayerChoice, nn
        >>> class Tiny(ModelSpace):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.op = LayerChoice([nn.ReLU(), nn.Sigmoid()], label="op")
        ...     def forward(self, x):
        ...         return self.op(x)
        >>> Tiny().search_space()
        {'op': {'_type': 'choice', '_value': ['0', '1']}}
    """

    init_kwargs: dict[str, Any]
    import_path: str
    frozen_arch: dict[str, Any] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _wrap_init(cls)

    def search_space(self) -> dict[str, dict[str, Any]]:
        """The decisions of this space in NNI search-space JSON: label -> ``{"_type": "choice", "_value": [...]}``."""
        return search_space_of(self)

    def check_arch(self, arch: Mapping[str, Any], *, strict: bool = True) -> dict[str, Any]:
        """Validate ``arch`` (see :func:`check_arch`)."""
        return check_arch(self, arch, strict=strict)

    def freeze(self, arch: Mapping[str, Any], *, strict: bool = True) -> nn.Module:
        """A copy of this space with every choice fixed as ``arch`` says: a plain module with no mutable inside.

        Args:
            arch: label -> value (every label of :meth:`search_space`).
            strict: whether labels the space does not have are an error.

        A space built with :func:`~nni_pl.nas.ModelParameterChoice` is constructed again (``init_kwargs``) inside
        :func:`fixed_arch`, since those choices changed how ``__init__`` ran; its weights are not carried over.

        Raises:
            ArchitectureError: a label is missing or unknown, or a value is not allowed.
        """
        if self.frozen_arch is not None:
            raise ArchitectureError(
                "",
                f"this model is already frozen to {self.frozen_arch}; freeze the space it came from instead",
            )
        checked = self.check_arch(arch, strict=strict)
        if self.__dict__.get("_nas_parameters"):
            # a ModelParameterChoice changed how __init__ ran: build the model again with the chosen values
            with fixed_arch(checked, verbose=False):
                return type(self)(**self.init_kwargs)
        model = copy.deepcopy(self)
        model._freeze_in_place(checked, checked=True)
        return model

    def random_arch(self, seed: int | None = None) -> dict[str, Any]:
        """A uniformly random architecture of this space (see :func:`random_arch`)."""
        return random_arch(self, seed)

    def _freeze_in_place(self, arch: Mapping[str, Any], checked: bool = False) -> None:
        if not checked:
            arch = self.check_arch(arch)
        freeze_children(self, arch)
        object.__setattr__(self, "frozen_arch", {k: to_json_value(v) for k, v in arch.items()})


def model_wrapper(cls: _T) -> _T:
    """Make a plain ``nn.Module`` class a model space (NNI's ``@model_wrapper``).

    The result is a subclass of ``cls`` and :class:`ModelSpace` with ``cls``'s name and module.

    Example:
        >>> import torch
        >>> from nni_pl.nas import model_wrapper, LayerChoice
        >>> @model_wrapper
        ... class Net(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.op = LayerChoice([torch.nn.ReLU(), torch.nn.Tanh()], label="op")
        >>> Net().search_space()["op"]
        {'_type': 'choice', '_value': ['0', '1']}
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"model_wrapper decorates an nn.Module class, got {cls!r}")
    if issubclass(cls, ModelSpace):
        return cls
    ns = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
    ns["__init__"] = cls.__init__
    return type(cls.__name__, (cls, ModelSpace), ns)  # type: ignore[return-value]


def load_space(import_path: str, init_kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Build the space class at ``import_path`` (``"package.module:QualName"``) with ``init_kwargs``.

    Example:
        >>> space = load_space("nni_pl.nas.hub:NasBench201", {"stem_out_channels": 4, "num_labels": 3})
        >>> type(space).__name__, space.init_kwargs
        ('NasBench201', {'stem_out_channels': 4, 'num_labels': 3})
    """
    module_name, sep, qualname = import_path.partition(":")
    if not sep or not module_name or not qualname:
        raise ArchitectureError("", f"import path must read 'package.module:ClassName', got {import_path!r}")
    try:
        cls = import_object(import_path)
    except ConfigError as e:
        raise ArchitectureError("", str(e)) from e
    return cls(**dict(init_kwargs or {}))


# --------------------------------------------------------------------------------------------- sampling


def random_arch(space: nn.Module | Mapping[str, Any] | Any, seed: int | None = None) -> dict[str, Any]:
    """A uniformly random architecture: one value per label, as JSON values.

    Args:
        space: a model space (its constraints, e.g. NAS-Bench-101 edge limits, are respected by rejection),
            a search-space dict in NNI JSON, or an :class:`nni_pl.space.SearchSpace`.
        seed: for a reproducible draw.

    Example:
        >>> random_arch({"op": {"_type": "choice", "_value": ["a", "b"]}}, seed=0) in ({"op": "a"}, {"op": "b"})
        True
    """
    rng = random.Random(seed)
    if isinstance(space, nn.Module):
        choices = collect_choices(space)
        holders = _constraint_holders(space)
        for _ in range(10_000):
            arch = {label: values[rng.randrange(len(values))] for label, values in choices.items()}
            try:
                for m in holders:
                    m.check_arch(arch)
            except ArchitectureError:
                continue
            return {k: to_json_value(v) for k, v in arch.items()}
        raise ArchitectureError(
            "", "no valid architecture found in 10000 random draws; check the constraints"
        )
    ss = space.to_json() if hasattr(space, "to_json") else space
    out: dict[str, Any] = {}
    for label, spec in dict(ss).items():
        if not isinstance(spec, Mapping) or spec.get("_type") != "choice":
            raise ArchitectureError(
                label, f"an architecture search space holds only 'choice' entries, got {spec!r}"
            )
        values = spec["_value"]
        out[label] = to_json_value(values[rng.randrange(len(values))])
    return out
