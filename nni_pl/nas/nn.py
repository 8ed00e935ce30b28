"""``torch.nn`` with ValueChoice-aware layers: ``from nni_pl.nas import nn`` replaces ``import torch.nn as nn``.

Every layer class of ``torch.nn`` is here under its own name, as a subclass that accepts
:class:`~nni_pl.nas.ValueChoice` s (and arithmetic on them) anywhere in its constructor arguments. In the space
the layer is built with every choice at its first value; freezing rebuilds it as the plain ``torch.nn`` class
with the chosen values. Containers (``Sequential``, ``ModuleList``, ...) and everything else are the
``torch.nn`` objects themselves. The mutation primitives are re-exported too, as in NNI's
``nni.retiarii.nn.pytorch``. Wrap your own layer class with :func:`basic_unit` to give it the same power.

Example:
    >>> from nni_pl.nas import nn, ValueChoice
    >>> lin = nn.Linear(8, ValueChoice([16, 32], label="hidden"))
    >>> lin.out_features, type(lin.freeze({"hidden": 32})).__module__
    (16, 'torch.nn.modules.linear')
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, TypeVar

import torch.nn as _tnn
from torch.nn import *  # noqa: F403  (the namespace mirrors torch.nn)
from torch.nn import functional, init, parallel, parameter, utils  # noqa: F401  (submodules, as in torch.nn)

from nni_pl.nas._graph_ir import Placeholder
from nni_pl.nas._param_choice import ModelParameterChoice
from nni_pl.nas.cells import AutoActivation, Cell, NasBench101Cell, NasBench201Cell
from nni_pl.nas.mutables import (
    ChosenInputs,
    InputChoice,
    LayerChoice,
    Repeat,
    ValueChoice,
    expr_leaves,
    freeze_module,
    register_label,
    resolve,
)

_M = TypeVar("_M", bound=type)

_DEPRECATED = {"NLLLoss2d"}
_CONTAINERS = {
    "Sequential",
    "ModuleList",
    "ModuleDict",
    "ParameterList",
    "ParameterDict",
    "Module",
    "Container",
}


def basic_unit(cls: _M) -> _M:
    """A subclass of the module class ``cls`` whose constructor accepts ValueChoices (NNI's ``@basic_unit``).

    The module is built with the first value of every choice; ``freeze_module`` rebuilds it as ``cls`` with the
    chosen values. The returned class keeps ``cls``'s name and module so it pickles and imports like ``cls``.
    Its instances record their arguments as :func:`nni_pl.trace` does (NNI 2.5 decorates the LightningModule
    of ``pl.Lightning`` with ``@basic_unit``), so :func:`nni_pl.dump` can send them to a trial.

    Example:
        >>> import torch
        >>> class Scale(torch.nn.Module):
        ...     def __init__(self, factor):
        ...         super().__init__()
        ...         self.factor = factor
        ...     def forward(self, x):
        ...         return x * self.factor
        >>> from nni_pl.nas import ValueChoice
        >>> s = basic_unit(Scale)(ValueChoice([2, 3], label="f"))
        >>> s.factor, s.freeze({"f": 3}).factor
        (2, 3)
    """
    if not (isinstance(cls, type) and issubclass(cls, _tnn.Module)):
        raise TypeError(f"basic_unit decorates an nn.Module class, got {cls!r}")

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        leaves = expr_leaves(list(args)) + expr_leaves(kwargs)
        if "_nas_init" not in self.__dict__:  # the outermost wrapped class records the arguments
            if leaves and type(self).__dict__.get("_nas_base") is not cls:
                name = type(self).__name__
                raise TypeError(
                    f"{name} subclasses {cls.__name__} and passes a ValueChoice to it, so freezing could not "
                    f"rebuild a {name}; decorate {name} with nni_pl.nas.basic_unit"
                )
            object.__setattr__(self, "_nas_init", (args, kwargs) if leaves else None)
            if type(self).__dict__.get("_nas_base") is cls:  # NNI 2.5: @basic_unit also makes it traceable
                self.__dict__["_nni_pl_trace"] = (type(self), args, kwargs)
        for leaf in leaves:
            register_label(leaf.label, "ValueChoice", leaf.candidates)
        cls.__init__(self, *resolve(list(args), None), **resolve(kwargs, None))

    def _nas_leaves(self: Any) -> list[ValueChoice]:
        recorded = self.__dict__.get("_nas_init")
        return [] if recorded is None else expr_leaves(list(recorded[0])) + expr_leaves(recorded[1])

    def _nas_rebuild(self: Any, arch: Mapping[str, Any]) -> _tnn.Module:
        args, kwargs = self._nas_init
        module = cls(*resolve(list(args), arch), **resolve(kwargs, arch))
        module.train(self.training)
        return module

    def freeze(self: Any, arch: Mapping[str, Any]) -> _tnn.Module:
        """The plain ``cls`` module with the values ``arch`` picks (``self`` is left as it is)."""
        import copy

        return freeze_module(copy.deepcopy(self), arch)

    ns = {
        "__init__": __init__,
        "_nas_leaves": _nas_leaves,
        "_nas_rebuild": _nas_rebuild,
        "_nas_base": cls,
        "_nni_pl_traced_base": cls,  # nni_pl.trace leaves it as it is; dump finds it by cls's import path
        "freeze": freeze,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
    }
    if "freeze" in vars(cls) or any("freeze" in vars(b) for b in cls.__mro__[1:] if b is not _tnn.Module):
        del ns["freeze"]  # never shadow a method of the user's class
    try:
        ns["__signature__"] = inspect.signature(cls)
    except (TypeError, ValueError):
        pass
    return type(cls.__name__, (cls,), ns)  # type: ignore[return-value]


def _wrap_torch() -> dict[str, type]:
    out: dict[str, type] = {}
    for name in _tnn.modules.__all__:
        obj = getattr(_tnn, name, None)
        if isinstance(obj, type) and issubclass(obj, _tnn.Module) and name not in _CONTAINERS | _DEPRECATED:
            wrapped = basic_unit(obj)
            wrapped.__module__ = __name__
            wrapped.__qualname__ = name
            wrapped.__doc__ = (
                f"``torch.nn.{name}`` accepting ValueChoices in its arguments (see :func:`basic_unit`)."
            )
            out[name] = wrapped
    return out


globals().update(_wrap_torch())

__all__ = [  # everything public in torch.nn (layers, Parameter, init, functional, ...), then the primitives
    *sorted({n for n in dir(_tnn) if not n.startswith("_")} | set(_tnn.modules.__all__)),
    "AutoActivation",
    "Cell",
    "ChosenInputs",
    "InputChoice",
    "LayerChoice",
    "ModelParameterChoice",
    "NasBench101Cell",
    "NasBench201Cell",
    "Placeholder",
    "Repeat",
    "ValueChoice",
    "basic_unit",
]
