"""NNI-parity behaviour of the mutation primitives: shapes after freezing, shared labels, arithmetic, errors."""

from __future__ import annotations

import pytest
import torch

from nni_pl.nas import (
    ArchitectureError,
    ChosenInputs,
    FrozenValue,
    InputChoice,
    LayerChoice,
    ModelSpace,
    Mutable,
    Repeat,
    ValueChoice,
    basic_unit,
    freeze_module,
    nn,
)
from nni_pl.nas.space import collect_choices


def _no_mutable(module: torch.nn.Module) -> bool:
    return not any(
        isinstance(m, Mutable) or getattr(m, "_nas_init", None) is not None for m in module.modules()
    )


# ------------------------------------------------------------------------------------------ LayerChoice


def test_layer_choice_reads_like_module_list_and_dict() -> None:
    lc = LayerChoice([nn.Linear(4, 2), nn.Linear(4, 3)], label="lc")
    assert lc.names == ["0", "1"] and len(lc) == 2
    assert isinstance(lc[1], torch.nn.Linear) and lc[1].out_features == 3
    assert [m.out_features for m in lc] == [2, 3]
    named = LayerChoice({"a": nn.ReLU(), "b": nn.Tanh()}, label="named")
    assert named.names == ["a", "b"] and isinstance(named["b"], torch.nn.Tanh)
    named["b"] = nn.Sigmoid()
    assert isinstance(named["b"], torch.nn.Sigmoid)
    del named["a"]
    assert named.names == ["b"]


def test_layer_choice_forward_runs_first_and_freeze_gives_chosen() -> None:
    lc = LayerChoice({"two": nn.Linear(4, 2), "three": nn.Linear(4, 3)}, label="op")
    x = torch.randn(5, 4)
    assert lc(x).shape == (5, 2)
    frozen = lc.freeze({"op": "three"})
    assert type(frozen) is torch.nn.Linear and frozen(x).shape == (5, 3)


def test_layer_choice_errors() -> None:
    with pytest.raises(ArchitectureError, match=r"at least one candidate"):
        LayerChoice([])
    with pytest.raises(ArchitectureError, match=r"not an nn.Module"):
        LayerChoice([torch.relu])
    with pytest.raises(ArchitectureError, match=r"is itself a LayerChoice"):
        LayerChoice([LayerChoice([nn.ReLU()])])
    lc = LayerChoice([nn.ReLU(), nn.Tanh()], label="op")
    with pytest.raises(ArchitectureError, match=r"'op'.*value '2'.*\['0', '1'\]"):
        lc.freeze({"op": "2"})
    with pytest.raises(ArchitectureError, match=r"'op'.*no value"):
        lc.freeze({})
    with pytest.raises(KeyError, match=r"no candidate 'x'"):
        lc["x"]


# ------------------------------------------------------------------------------------------ InputChoice


def test_input_choice_values_and_reductions() -> None:
    ic = InputChoice(3, 2, reduction="concat", label="ic")
    assert ic.values == [[0, 1], [0, 2], [1, 2]]
    xs = [torch.full((1, 2), float(i)) for i in range(3)]
    assert ic(xs).shape == (1, 4)
    frozen = ic.freeze({"ic": [0, 2]})
    assert isinstance(frozen, ChosenInputs) and frozen.chosen == [0, 2]
    assert torch.equal(frozen(xs), torch.tensor([[0.0, 0.0, 2.0, 2.0]]))
    assert torch.equal(ChosenInputs([1, 2], "sum")(xs), torch.tensor([[3.0, 3.0]]))
    assert torch.equal(ChosenInputs([1, 2], "mean")(xs), torch.tensor([[1.5, 1.5]]))
    assert len(ChosenInputs([1, 2], "none")(xs)) == 2
    assert InputChoice(3, None).values == [[0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]]


def test_input_choice_errors() -> None:
    with pytest.raises(ArchitectureError, match=r"n_chosen"):
        InputChoice(2, 3, label="bad")
    with pytest.raises(ArchitectureError, match=r"reduction.*'max'"):
        InputChoice(2, 1, reduction="max")
    ic = InputChoice(2, 1, label="ic")
    with pytest.raises(ArchitectureError, match=r"'ic'.*\[0, 1\].*allowed values \[\[0\], \[1\]\]"):
        ic.freeze({"ic": [0, 1]})
    with pytest.raises(ArchitectureError, match=r"list of 2 tensors"):
        ic([torch.zeros(1)])


# ------------------------------------------------------------------------------------------ ValueChoice


def test_value_choice_as_layer_argument() -> None:
    conv = nn.Conv2d(
        3, ValueChoice([16, 32], label="out"), kernel_size=ValueChoice([3, 5], label="k"), padding=1
    )
    assert isinstance(conv, torch.nn.Conv2d) and conv.out_channels == 16 and conv.kernel_size == (3, 3)
    assert conv(torch.zeros(1, 3, 8, 8)).shape == (1, 16, 8, 8)
    frozen = freeze_module(conv, {"out": 32, "k": 5})
    assert type(frozen) is torch.nn.Conv2d and frozen.out_channels == 32 and frozen.kernel_size == (5, 5)
    assert frozen(torch.zeros(1, 3, 8, 8)).shape == (1, 32, 6, 6)
    assert _no_mutable(frozen)


def test_value_choice_arithmetic() -> None:
    a = ValueChoice([2, 4], label="a")
    b = ValueChoice([1, 3], label="b")
    assert (a * 2).evaluate({"a": 4}) == 8
    assert (3 * a).evaluate({"a": 2}) == 6
    assert (a + b).evaluate({"a": 4, "b": 3}) == 7
    assert (a - b).evaluate({"a": 2, "b": 3}) == -1
    assert (a // 2 + 1).evaluate({"a": 4}) == 3
    assert (a / 4).evaluate({"a": 2}) == 0.5
    assert (-a).evaluate({"a": 2}) == -2
    assert (a % 3).evaluate({"a": 4}) == 1
    assert (a**2).evaluate({"a": 4}) == 16
    assert ValueChoice.max(a, b).evaluate({"a": 2, "b": 3}) == 3
    assert ValueChoice.min(a, b, 0).evaluate({"a": 2, "b": 3}) == 0
    assert (
        ValueChoice.condition(ValueChoice.apply(a, lambda v: v > 3), "big", "small").evaluate({"a": 4})
        == "big"
    )
    assert (a + b).all_values() == [3, 5, 7]
    assert [leaf.label for leaf in (a * b + a).leaves()] == ["a", "b"]
    lin = nn.Linear(a * 2, b + a)
    assert (lin.in_features, lin.out_features) == (4, 3)
    frozen = freeze_module(lin, {"a": 4, "b": 3})
    assert (frozen.in_features, frozen.out_features) == (8, 7)
    with pytest.raises(TypeError, match=r"no truth value"):
        bool(a)


def test_value_choice_attribute_called_in_forward() -> None:
    class Net(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.rate = ValueChoice([0.25, 0.75], label="rate")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.rate()

    space = Net()
    assert space(torch.ones(1)).item() == 0.25
    model = space.freeze({"rate": 0.75})
    assert isinstance(model.rate, FrozenValue) and model(torch.ones(1)).item() == 0.75


def test_value_choice_nested_in_tuple_argument() -> None:
    k = ValueChoice([1, 3], label="k")
    conv = nn.Conv2d(2, 2, kernel_size=(k, k), padding=(k // 2, k // 2))
    assert conv.kernel_size == (1, 1)
    frozen = freeze_module(conv, {"k": 3})
    assert frozen.kernel_size == (3, 3) and frozen.padding == (1, 1)


def test_value_choice_errors() -> None:
    with pytest.raises(ArchitectureError, match=r"non-empty list"):
        ValueChoice([])
    with pytest.raises(ArchitectureError, match=r"duplicate candidate 2"):
        ValueChoice([2, 2], label="d")
    with pytest.raises(ArchitectureError, match=r"not JSON-able.*LayerChoice"):
        ValueChoice([torch.nn.ReLU(), torch.nn.Tanh()])
    vc = ValueChoice([16, 32], label="w")
    with pytest.raises(ArchitectureError, match=r"'w'.*value 64.*\[16, 32\]"):
        vc.evaluate({"w": 64})


def test_basic_unit_on_user_module() -> None:
    @basic_unit
    class Scale(torch.nn.Module):
        def __init__(self, factor: float) -> None:
            super().__init__()
            self.factor = factor

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.factor

    s = Scale(ValueChoice([2, 3], label="f"))
    assert s(torch.ones(1)).item() == 2
    assert s.freeze({"f": 3})(torch.ones(1)).item() == 3
    assert collect_choices(s) == {"f": [2, 3]}


def test_wrapped_layer_without_choice_freezes_to_torch_class() -> None:
    lin = nn.Linear(2, 2)
    frozen = freeze_module(lin, {})
    assert type(frozen) is torch.nn.Linear and frozen is lin


# ------------------------------------------------------------------------------------------ shared labels


def test_shared_label_is_one_decision() -> None:
    class Net(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(4, ValueChoice([8, 16], label="dim"))
            self.fc2 = nn.Linear(ValueChoice([8, 16], label="dim"), 2)
            self.a = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")
            self.b = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.b(self.a(self.fc1(x))))

    space = Net()
    assert list(space.search_space()) == ["dim", "act"]
    model = space.freeze({"dim": 16, "act": "1"})
    assert model.fc1.out_features == 16 == model.fc2.in_features
    assert isinstance(model.a, torch.nn.Tanh) and isinstance(model.b, torch.nn.Tanh)
    assert model(torch.zeros(3, 4)).shape == (3, 2)


def test_shared_instance_is_one_decision() -> None:
    hidden = ValueChoice([3, 5])
    seq = torch.nn.Sequential(nn.Linear(2, hidden), nn.Linear(hidden, 1))
    assert len(collect_choices(seq)) == 1


def test_conflicting_labels_are_an_error_naming_the_label() -> None:
    class Bad(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = LayerChoice([nn.ReLU(), nn.Tanh()], label="x")
            self.b = nn.Linear(2, ValueChoice([1, 2], label="x"))

    with pytest.raises(ArchitectureError, match=r"'x'.*used twice.*LayerChoice.*ValueChoice"):
        Bad()

    class BadValues(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(2, ValueChoice([1, 2], label="w"))
            self.b = nn.Linear(2, ValueChoice([1, 3], label="w"))

    with pytest.raises(ArchitectureError, match=r"'w'.*used twice"):
        BadValues()
    # built outside a space, the conflict is found when the choices are collected
    seq = torch.nn.Sequential(LayerChoice([nn.ReLU()], label="y"), InputChoice(2, 1, label="y"))
    with pytest.raises(ArchitectureError, match=r"'y'.*used twice"):
        collect_choices(seq)


def test_auto_labels_are_deterministic_per_space() -> None:
    class Net(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = LayerChoice([nn.ReLU(), nn.Tanh()])
            self.b = nn.Linear(2, ValueChoice([1, 2]))
            self.c = LayerChoice([nn.ReLU(), nn.Tanh()])

    first, second = Net().search_space(), Net().search_space()
    assert list(first) == list(second) == ["layerchoice_1", "valuechoice_1", "layerchoice_2"]


# ------------------------------------------------------------------------------------------ Repeat


def test_repeat_depth_range() -> None:
    rep = Repeat(lambda: nn.Linear(4, 4), (1, 3), label="depth")
    assert len(rep.blocks) == 3 and rep.own_choices() == [("depth", "Repeat", [1, 2, 3])]
    assert rep(torch.zeros(2, 4)).shape == (2, 4)
    frozen = rep.freeze({"depth": 2})
    assert isinstance(frozen, torch.nn.Sequential) and len(frozen) == 2
    with pytest.raises(ArchitectureError, match=r"'depth'.*value 4.*\[1, 2, 3\]"):
        rep.freeze({"depth": 4})


def test_repeat_fixed_and_value_choice_depth() -> None:
    fixed = Repeat(nn.Linear(2, 2), 2)
    assert fixed.own_choices() == [] and len(fixed.freeze({})) == 2
    depth = ValueChoice([0, 2], label="d")
    rep = Repeat(lambda i: nn.Linear(2, 2), depth)
    assert rep.own_choices() == [("d", "ValueChoice", [0, 2])]
    assert len(rep.freeze({"d": 0})) == 0 and len(rep.freeze({"d": 2})) == 2


def test_repeat_copies_module_and_shares_inner_labels() -> None:
    block = torch.nn.Sequential(nn.Linear(2, 2), LayerChoice([nn.ReLU(), nn.Tanh()], label="act"))
    rep = Repeat(block, (1, 2), label="n")
    assert set(collect_choices(rep)) == {"n", "act"}
    frozen = rep.freeze({"n": 2, "act": "1"})
    assert all(isinstance(b[1], torch.nn.Tanh) for b in frozen)
    fresh = Repeat(lambda: LayerChoice([nn.ReLU(), nn.Tanh()]), 3)
    assert len(collect_choices(fresh)) == 3  # a factory makes a new decision per block


def test_repeat_errors() -> None:
    with pytest.raises(ArchitectureError, match=r"min <= max"):
        Repeat(nn.ReLU(), (3, 1), label="r")
    with pytest.raises(ArchitectureError, match=r"ints >= 0"):
        Repeat(nn.ReLU(), ValueChoice(["a", "b"]))
    with pytest.raises(ArchitectureError, match=r"max depth = 2"):
        Repeat([nn.ReLU()], (1, 2), label="r2")
