"""Neural architecture search: model spaces written as PyTorch with choices inside, frozen to architectures.

Import explicitly (``import nni_pl.nas``); ``import nni_pl`` does not. The names are imported on first use:
the model-space ones (``ModelSpace``, ``LayerChoice``, ``nn``, ...) import torch, while
``nni_pl.nas.strategy`` (what a NAS experiment's manager process runs) does not.

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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nni_pl.nas import nn
    from nni_pl.nas._graph_ir import Placeholder
    from nni_pl.nas._labels import NoContextError
    from nni_pl.nas._param_choice import ModelParameterChoice
    from nni_pl.nas.cells import AutoActivation, Cell, FrozenCell, NasBench101Cell, NasBench201Cell
    from nni_pl.nas.experiment import NasExperiment
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
    from nni_pl.nas.mutator import MutationError, Mutator, Sampler, mutate_model
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

# Every name is imported on first use (PEP 562), so `import nni_pl.nas.strategy` (what a NAS experiment's
# manager runs) does not pay for torch; the model-space names pull torch in when first touched.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ("AutoActivation", "Cell", "FrozenCell", "NasBench101Cell", "NasBench201Cell"), "nni_pl.nas.cells"
    ),
    **dict.fromkeys(
        (
            "ArchitectureError",
            "ChosenInputs",
            "FrozenValue",
            "InputChoice",
            "LayerChoice",
            "Mutable",
            "Repeat",
            "ValueChoice",
            "ValueExpr",
            "freeze_module",
        ),
        "nni_pl.nas.mutables",
    ),
    "basic_unit": "nni_pl.nas.nn",
    **dict.fromkeys(
        (
            "ModelSpace",
            "check_arch",
            "fixed_arch",
            "load_arch",
            "load_space",
            "model_wrapper",
            "random_arch",
            "save_arch",
        ),
        "nni_pl.nas.space",
    ),
    "NasExperiment": "nni_pl.nas.experiment",
    **dict.fromkeys(("Mutator", "MutationError", "Sampler", "mutate_model"), "nni_pl.nas.mutator"),
    "Placeholder": "nni_pl.nas._graph_ir",
    "ModelParameterChoice": "nni_pl.nas._param_choice",
    "NoContextError": "nni_pl.nas._labels",
}
_SUBPACKAGES = ("cgo", "evaluator", "hub", "mutator", "nn", "strategy")

__all__ = [
    "ArchitectureError",
    "AutoActivation",
    "Cell",
    "ChosenInputs",
    "FrozenCell",
    "FrozenValue",
    "InputChoice",
    "LayerChoice",
    "ModelParameterChoice",
    "ModelSpace",
    "Mutable",
    "MutationError",
    "Mutator",
    "NasBench101Cell",
    "NasBench201Cell",
    "NasExperiment",
    "NoContextError",
    "Placeholder",
    "Repeat",
    "Sampler",
    "ValueChoice",
    "ValueExpr",
    "basic_unit",
    "check_arch",
    "fixed_arch",
    "freeze_module",
    "load_arch",
    "load_space",
    "model_wrapper",
    "mutate_model",
    "nn",
    "random_arch",
    "save_arch",
]


def __getattr__(name: str) -> Any:
    """The public names and subpackages, imported on first use (the model-space ones import torch)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBPACKAGES})
