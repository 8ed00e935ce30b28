"""ModelParameterChoice (a plain value while the space is built) and NoContextError; torch.nn in full in nas.nn."""

from __future__ import annotations

import pytest
import torch

from nni_pl.nas import (
    ArchitectureError,
    LayerChoice,
    ModelParameterChoice,
    ModelSpace,
    NoContextError,
    fixed_arch,
    nn,
    random_arch,
)


class _Space(ModelSpace):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.depth = ModelParameterChoice([1, 2, 3], label="depth", default=ModelParameterChoice.LAST)
        self.aux = ModelParameterChoice([False, True], label="aux")
        dim = ModelParameterChoice([4, 8], label="dim")
        self.token = torch.nn.Parameter(torch.zeros(1, dim))
        self.blocks = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(self.depth)])
        self.head = torch.nn.Linear(width, 2) if self.aux else None
        self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")


def test_model_parameter_choice_is_a_plain_value_and_joins_the_space() -> None:
    space = _Space(width=3)
    assert space.depth == 3 and space.aux is False and space.token.shape == (1, 4)  # LAST, FIRST, FIRST
    assert len(space.blocks) == 3 and space.head is None
    assert space.search_space() == {
        "act": {"_type": "choice", "_value": ["0", "1"]},
        "depth": {"_type": "choice", "_value": [1, 2, 3]},
        "aux": {"_type": "choice", "_value": [False, True]},
        "dim": {"_type": "choice", "_value": [4, 8]},
    }


def test_model_parameter_choice_freeze_rebuilds_with_the_chosen_values() -> None:
    space = _Space(width=3)
    model = space.freeze({"depth": 1, "aux": True, "dim": 8, "act": "1"})
    assert model.frozen_arch == {"depth": 1, "aux": True, "dim": 8, "act": "1"}
    assert len(model.blocks) == 1 and model.blocks[0].in_features == 3 and model.head is not None
    assert model.token.shape == (1, 8) and type(model.act) is torch.nn.Tanh
    assert model.search_space() == {}
    with fixed_arch({"depth": 2, "aux": False, "dim": 4, "act": "0"}):
        fixed = _Space()
    assert len(fixed.blocks) == 2 and fixed.head is None and type(fixed.act) is torch.nn.ReLU
    arch = random_arch(space, seed=3)
    assert set(arch) == {"act", "depth", "aux", "dim"}
    with pytest.raises(ArchitectureError, match=r"'depth'.*value 7 is not one of"):
        space.freeze({"depth": 7, "aux": True, "dim": 8, "act": "1"})


def test_model_parameter_choice_outside_a_model_space_raises_no_context_error() -> None:
    with pytest.raises(NoContextError, match=r"outside a model space"):
        ModelParameterChoice([1, 2])

    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.k = ModelParameterChoice([1, 2])

    with pytest.raises(NoContextError, match=r"ModelSpace subclass"):
        Plain()


def test_model_parameter_choice_default_must_be_a_candidate_or_a_function() -> None:
    class Bad(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.k = ModelParameterChoice([1, 2], default=5, label="k")

    with pytest.raises(ArchitectureError, match=r"default 5 is neither"):
        Bad()


def test_nas_nn_holds_all_of_torch_nn() -> None:
    namespace: dict[str, object] = {}
    exec("from nni_pl.nas.nn import *", namespace)
    public = {name for name in dir(torch.nn) if not name.startswith("_")}
    assert public <= set(namespace)
    assert (
        nn.init is torch.nn.init
        and nn.functional is torch.nn.functional
        and nn.Parameter is torch.nn.Parameter
    )
    layer = nn.Linear(2, 2)
    nn.init.zeros_(layer.weight)
    assert float(layer.weight.detach().abs().sum()) == 0.0
