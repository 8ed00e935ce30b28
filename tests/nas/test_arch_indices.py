"""NNI 3.0's integer candidate indices in architecture dicts: read where unambiguous, exported as before."""

from __future__ import annotations

import pytest
import torch

from nni_pl.nas import (
    ArchitectureError,
    InputChoice,
    LayerChoice,
    ModelSpace,
    NasBench101Cell,
    ValueChoice,
    fixed_arch,
    nn,
)


class ListSpace(ModelSpace):
    """A list-built LayerChoice (candidates '0', '1'), a dict-built one, a one-input InputChoice, a ValueChoice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = LayerChoice([nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 4), nn.ReLU())], label="conv")
        self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="act")
        self.skip = InputChoice(2, 1, reduction="sum", label="skip")
        self.scale = ValueChoice([0, 1], label="scale")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.skip([x, self.act(h)]) * (1 + self.scale())


class NumericKeys(ModelSpace):
    """A dict-built LayerChoice whose keys look like indices but are not in index order."""

    def __init__(self) -> None:
        super().__init__()
        self.op = LayerChoice({"1": nn.ReLU(), "x": nn.Tanh()}, label="op")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def test_list_built_layer_choice_takes_the_integer_index_and_exports_its_name() -> None:
    space = ListSpace()
    checked = space.check_arch({"conv": 1, "act": "tanh", "skip": 1, "scale": 0})
    assert checked == {"conv": "1", "act": "tanh", "skip": [1], "scale": 0}
    model = space.freeze({"conv": 1, "act": "tanh", "skip": 1, "scale": 1})
    assert isinstance(model.conv, torch.nn.Sequential)  # candidate "1" was picked
    assert model.frozen_arch == {"conv": "1", "act": "tanh", "skip": [1], "scale": 1}
    # both spellings give the same model
    same = space.freeze({"conv": "1", "act": "tanh", "skip": [1], "scale": 1})
    same.load_state_dict(model.state_dict())
    x = torch.randn(3, 4)
    assert torch.equal(model(x), same(x))


def test_fixed_arch_and_a_mutable_frozen_alone_take_the_integer_index() -> None:
    with fixed_arch({"conv": 0, "act": "relu", "skip": 0, "scale": 0}):
        model = ListSpace()
    assert isinstance(model.conv, torch.nn.Linear)
    assert model.frozen_arch == {"conv": "0", "act": "relu", "skip": [0], "scale": 0}
    lc = LayerChoice([nn.ReLU(), nn.Tanh()], label="lc")
    assert isinstance(lc.freeze({"lc": 1}), torch.nn.Tanh)
    ic = InputChoice(3, 1, reduction="sum", label="ic")
    xs = [torch.zeros(1, 2), torch.ones(1, 2), 2 * torch.ones(1, 2)]
    assert torch.equal(ic.freeze({"ic": 2})(xs), xs[2])


def test_integer_index_is_refused_where_it_would_be_ambiguous_or_out_of_range() -> None:
    space = ListSpace()
    base = {"conv": 0, "act": "relu", "skip": 0, "scale": 0}
    with pytest.raises(
        ArchitectureError, match=r"label 'conv': value 2 is not one of the allowed values \['0', '1'\]"
    ):
        space.check_arch({**base, "conv": 2})
    with pytest.raises(
        ArchitectureError, match=r"label 'act': value 0 is not one of the allowed values \['relu', 'tanh'\]"
    ):
        space.check_arch({**base, "act": 0})  # a dict-built choice keeps requiring its keys
    with pytest.raises(ArchitectureError, match=r"label 'conv': value True"):
        space.check_arch({**base, "conv": True})  # a bool is no index
    with pytest.raises(ArchitectureError, match=r"label 'skip': value 2 is not one"):
        space.check_arch({**base, "skip": 2})
    # a ValueChoice's integers are its values, never indices
    with pytest.raises(
        ArchitectureError, match=r"label 'scale': value 2 is not one of the allowed values \[0, 1\]"
    ):
        space.check_arch({**base, "scale": 2})
    # keys "1", "x": index 1 would be "x" but key "1" is candidate 0 -> ambiguous, refused; the key still works
    with pytest.raises(
        ArchitectureError, match=r"label 'op': value 1 is not one of the allowed values \['1', 'x'\]"
    ):
        NumericKeys().check_arch({"op": 1})
    assert NumericKeys().check_arch({"op": "1"}) == {"op": "1"}


def test_input_choice_of_several_inputs_keeps_index_lists() -> None:
    class Two(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.pick = InputChoice(3, 2, reduction="sum", label="pick")

        def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
            return self.pick(xs)

    with pytest.raises(ArchitectureError, match=r"label 'pick': value 1 is not one of the allowed values"):
        Two().check_arch({"pick": 1})
    assert Two().check_arch({"pick": [0, 2]}) == {"pick": [0, 2]}


def test_nas_bench_101_cell_inputs_take_the_integer_index() -> None:
    class Cell(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.cell = NasBench101Cell(
                {"a": lambda n: nn.Linear(n, n)},
                4,
                4,
                lambda i, o: nn.Linear(i, o),
                max_num_nodes=3,
                max_num_edges=5,
                label="c",
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.cell(x)

    space = Cell()
    labels = set(space.search_space())
    arch = {"c/num_nodes": 3, "c/op1": "a", "c/input1": 0, "c/input2": 1}
    assert set(arch) == labels
    checked = space.check_arch(arch)
    assert checked["c/input1"] == [0] and checked["c/input2"] == [1]
    assert space.freeze(arch)(torch.randn(2, 4)).shape == (2, 4)
