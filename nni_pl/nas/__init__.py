"""Neural architecture search: model spaces written as PyTorch with choices inside, frozen to architectures.

Import explicitly (``import nni_pl.nas``); it imports torch, ``import nni_pl`` does not.

Example:
    >>> import torch
    >>> from nni_pl.nas import ModelSpace, LayerChoice, ValueChoice, nn, random_arch
    >>> class Net(ModelSpace):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(4, ValueChoice([8, 16], label="width"))
    ...         self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")
    ...     def forward(self, x):
    ...         return self.act(self.fc(x))
    >>> space = Net()
    >>> model = space.freeze(random_arch(space, seed=0))
    >>> model(torch.zeros(1, 4)).shape[0]
    1
"""

from __future__ import annotations

from nni_pl.nas import nn
from nni_pl.nas.cells import AutoActivation, Cell, FrozenCell, NasBench101Cell, NasBench201Cell
from nni_pl.nas.mutables import (
    ArchitectureError,
    ChosenInputs,
    FrozenValue,
    InputChoice,
    LayerChoice,
    Mutable,
    Repeat,
    ValueChoice,
    ValueExpr,
    freeze_module,
)
from nni_pl.nas.nn import basic_unit
from nni_pl.nas.space import (
    ModelSpace,
    check_arch,
    fixed_arch,
    load_arch,
    load_space,
    model_wrapper,
    random_arch,
    save_arch,
)

__all__ = [
    "ArchitectureError",
    "AutoActivation",
    "Cell",
    "ChosenInputs",
    "FrozenCell",
    "FrozenValue",
    "InputChoice",
    "LayerChoice",
    "ModelSpace",
    "Mutable",
    "NasBench101Cell",
    "NasBench201Cell",
    "Repeat",
    "ValueChoice",
    "ValueExpr",
    "basic_unit",
    "check_arch",
    "fixed_arch",
    "freeze_module",
    "load_arch",
    "load_space",
    "model_wrapper",
    "nn",
    "random_arch",
    "save_arch",
]


def __getattr__(name: str) -> object:
    """``NasExperiment`` and the ``strategy``/``evaluator`` packages, imported on first use (they pull in
    the experiment engine and Lightning)."""
    import importlib

    if name == "NasExperiment":
        return importlib.import_module("nni_pl.nas.experiment").NasExperiment
    if name in ("strategy", "evaluator", "hub", "cgo"):
        return importlib.import_module(f"nni_pl.nas.{name}")
    raise AttributeError(f"module 'nni_pl.nas' has no attribute {name!r}")
