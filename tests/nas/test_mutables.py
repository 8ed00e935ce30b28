"""NNI-parity behaviour of the mutation primitives: shapes after freezing, shared labels, arithmetic, errors."""

from __future__ import annotations

import pytest
import torch

from nni_pl.nas import (
    ArchitectureError,
    AutoActivation,
    Cell,
    ChosenInputs,
    FrozenValue,
    InputChoice,
    LayerChoice,
    ModelSpace,
    Mutable,
    NasBench101Cell,
    NasBench201Cell,
    Repeat,
    ValueChoice,
    basic_unit,
    freeze_module,
    nn,
    random_arch,
)
from nni_pl.nas.cells import ZeroOp
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


def test_freeze_leaves_the_mutable_untouched() -> None:
    lc = LayerChoice({"lin": nn.Linear(2, ValueChoice([3, 4], label="w")), "id": nn.Identity()}, label="op")
    frozen = lc.freeze({"op": "lin", "w": 4})
    assert type(frozen) is torch.nn.Linear and frozen.out_features == 4
    assert type(lc["lin"]) is nn.Linear and lc["lin"].out_features == 3
    assert collect_choices(lc) == {"op": ["lin", "id"], "w": [3, 4]}


def test_layer_choice_nested_in_a_candidate_joins_the_space_and_freezes() -> None:
    class Space(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            inner = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="inner")
            self.op = LayerChoice(
                {
                    "nested": inner,
                    "seq": nn.Sequential(
                        nn.Linear(2, 2), LayerChoice([nn.Sigmoid(), nn.Identity()], label="deep")
                    ),
                },
                label="outer",
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.op(x)

    space = Space()
    assert space.search_space() == {
        "outer": {"_type": "choice", "_value": ["nested", "seq"]},
        "inner": {"_type": "choice", "_value": ["relu", "tanh"]},
        "deep": {"_type": "choice", "_value": ["0", "1"]},
    }
    assert space(torch.full((1, 2), -1.0)).tolist() == [[0.0, 0.0]]  # outer -> nested -> relu in the space
    model = space.freeze({"outer": "nested", "inner": "tanh", "deep": "0"})
    assert type(model.op) is torch.nn.Tanh
    model = space.freeze({"outer": "seq", "inner": "tanh", "deep": "0"})
    assert type(model.op[1]) is torch.nn.Sigmoid and _no_mutable(model)
    assert random_arch(space, seed=1)["inner"] in ("relu", "tanh")


def test_layer_choice_errors() -> None:
    with pytest.raises(ArchitectureError, match=r"at least one candidate"):
        LayerChoice([])
    with pytest.raises(ArchitectureError, match=r"not an nn.Module"):
        LayerChoice([torch.relu])
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


def test_prior_is_checked_and_labels_are_positional_where_nni_has_them() -> None:
    assert ValueChoice([1, 2], prior=[0.25, 0.75]).prior == [0.25, 0.75]
    with pytest.raises(ArchitectureError, match=r"'p'.*prior must be 2.*\[0.5\]"):
        LayerChoice([nn.ReLU(), nn.Tanh()], prior=[0.5], label="p")
    with pytest.raises(ArchitectureError, match=r"summing to 1"):
        InputChoice(2, 1, prior=[0.5, 0.6])
    assert Repeat(nn.ReLU(), (1, 2), "r").label == "r"
    assert Cell([nn.ReLU()], 1, 1, 1, "all", "c").label == "c"
    assert AutoActivation(1, "a").label == "a"


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


def test_subclass_of_a_wrapped_layer() -> None:
    class Doubled(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    plain = Doubled(2, 2)
    assert type(freeze_module(plain, {})) is Doubled  # no choice: kept as the user's class
    with pytest.raises(TypeError, match=r"Doubled subclasses Linear.*basic_unit"):
        Doubled(2, ValueChoice([3, 4]))
    wrapped = basic_unit(Doubled)(2, ValueChoice([3, 4], label="o"))
    frozen = freeze_module(wrapped, {"o": 4})
    assert isinstance(frozen, Doubled) and frozen.out_features == 4
    assert torch.allclose(
        frozen(torch.ones(1, 2)), 2 * torch.nn.functional.linear(torch.ones(1, 2), frozen.weight, frozen.bias)
    )


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


def test_explicit_label_may_not_take_an_automatic_one() -> None:
    class Clash(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = LayerChoice([nn.ReLU(), nn.Tanh()])
            self.b = LayerChoice([nn.ReLU(), nn.Tanh()], label="layerchoice_1")

    with pytest.raises(ArchitectureError, match=r"'layerchoice_1'.*automatically"):
        Clash()

    class Taken(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.b = LayerChoice([nn.ReLU(), nn.Tanh()], label="layerchoice_1")
            self.a = LayerChoice([nn.ReLU(), nn.Tanh()])

    assert list(Taken().search_space()) == ["layerchoice_1", "layerchoice_2"]


def test_value_choice_where_a_number_is_needed_says_how_to_fix() -> None:
    with pytest.raises(TypeError, match=r"nni_pl\.nas\.nn"):
        range(ValueChoice([2, 3]))
    with pytest.raises(TypeError, match=r"basic_unit"):
        int(ValueChoice([2, 3]) * 2)


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


# ------------------------------------------------------------------------------------------ Cell


def _cell_arch(label: str, ops: dict[int, str], inputs: dict[int, int]) -> dict[str, object]:
    arch: dict[str, object] = {f"{label}/op_{i}_0": op for i, op in ops.items()}
    arch.update({f"{label}/input_{i}_0": [j] for i, j in inputs.items()})
    return arch


def test_cell_labels_and_values() -> None:
    cell = Cell([nn.Identity(), nn.Tanh()], num_nodes=3, num_predecessors=2, label="c")
    choices = collect_choices(cell)
    assert choices["c/input_2_0"] == [[0], [1]]
    assert choices["c/input_4_0"] == [[0], [1], [2], [3]]
    assert choices["c/op_3_0"] == ["0", "1"]
    assert len(choices) == 6
    assert cell([torch.zeros(1, 4), torch.zeros(1, 4)]).shape == (1, 12)
    assert cell(torch.zeros(1, 4), torch.zeros(1, 4)).shape == (1, 12)


def test_cell_wiring_follows_the_architecture() -> None:
    class AddOne(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1

    cell = Cell({"id": nn.Identity(), "inc": AddOne()}, num_nodes=3, label="c")
    arch = _cell_arch("c", {1: "inc", 2: "inc", 3: "id"}, {1: 0, 2: 1, 3: 0})
    frozen = cell.freeze(arch)
    assert _no_mutable(frozen) and frozen.inputs_used() == [[[0]], [[1]], [[0]]]
    out = frozen([torch.zeros(1, 1)])
    assert out.tolist() == [[1.0, 2.0, 0.0]]  # node1 = x+1, node2 = node1+1, node3 = x
    loose = Cell({"id": nn.Identity(), "inc": AddOne()}, num_nodes=3, merge_op="loose_end", label="c")
    assert loose.freeze(arch)([torch.zeros(1, 1)]).tolist() == [
        [2.0, 0.0]
    ]  # node1 feeds node2: not a loose end


def test_cell_ops_per_node_are_summed_and_factories_get_indices() -> None:
    calls = []

    def factory(node_index: int, op_index: int) -> list[torch.nn.Module]:
        calls.append((node_index, op_index))
        return [nn.Identity()]

    cell = Cell(factory, num_nodes=2, num_ops_per_node=2, label="c")
    assert calls == [(1, 0), (1, 1), (2, 0), (2, 1)]
    arch = {k: v[0] for k, v in collect_choices(cell).items()}
    assert cell.freeze(arch)([torch.ones(1, 1)]).tolist() == [[2.0, 2.0]]  # both nodes read x twice
    arch.update({"c/input_2_0": [1], "c/input_2_1": [1]})
    assert cell.freeze(arch)([torch.ones(1, 1)]).tolist() == [[2.0, 4.0]]  # node 2 reads node 1 twice


def test_cells_with_the_same_label_share_decisions() -> None:
    class Net(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = Cell([nn.Identity(), nn.ReLU()], 2, label="normal")
            self.b = Cell([nn.Identity(), nn.ReLU()], 2, label="normal")

    assert len(Net().search_space()) == 4


def test_cell_factory_forms() -> None:
    seen = []

    def factory(node_index: int, op_index: int, input_index: int | None) -> torch.nn.Module:
        seen.append(input_index)
        return nn.Identity()

    cell = Cell({"id": factory, "relu": torch.nn.ReLU}, num_nodes=2, label="c")
    assert seen == [None, None]
    assert isinstance(cell.ops[0][0]["relu"], torch.nn.ReLU) and cell.ops[0][0]["relu"].inplace is False


def test_cell_errors() -> None:
    with pytest.raises(ArchitectureError, match=r"'c'.*merge_op.*'max'"):
        Cell([nn.Identity()], 2, merge_op="max", label="c")
    with pytest.raises(ArchitectureError, match=r"'c'.*num_nodes.*0"):
        Cell([nn.Identity()], 0, label="c")
    cell = Cell([nn.Identity()], 1, num_predecessors=2, label="c")
    with pytest.raises(ArchitectureError, match=r"takes 2 input tensors, got 1"):
        cell([torch.zeros(1)])


# ------------------------------------------------------------------------------------------ NAS-Bench-201/101


def _nb201_ops() -> dict[str, object]:
    return {
        "none": lambda i, o: ZeroOp(i, o),
        "skip_connect": lambda i, o: nn.Identity() if i == o else nn.Conv2d(i, o, 1),
        "conv_1x1": lambda i, o: nn.Conv2d(i, o, 1),
        "conv_3x3": lambda i, o: nn.Conv2d(i, o, 3, padding=1),
        "avg_pool_3x3": lambda i, o: torch.nn.Sequential(nn.Conv2d(i, o, 1), nn.AvgPool2d(3, 1, 1)),
    }


def test_nasbench201_cell_edges_and_freeze() -> None:
    cell = NasBench201Cell(_nb201_ops(), 3, 4, label="nb")
    choices = collect_choices(cell)
    assert list(choices) == ["nb/0_1", "nb/0_2", "nb/1_2", "nb/0_3", "nb/1_3", "nb/2_3"]
    assert choices["nb/0_1"] == ["none", "skip_connect", "conv_1x1", "conv_3x3", "avg_pool_3x3"]
    x = torch.randn(2, 3, 8, 8)
    assert cell(x).shape == (2, 4, 8, 8)
    all_none = cell.freeze(dict.fromkeys(choices, "none"))
    assert _no_mutable(all_none) and torch.count_nonzero(all_none(x)) == 0
    for seed in range(5):
        arch = random_arch({k: {"_type": "choice", "_value": v} for k, v in choices.items()}, seed=seed)
        assert cell.freeze(arch)(x).shape == (2, 4, 8, 8)


def test_nasbench101_cell_constraints_and_freeze() -> None:
    class Space(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.cell = NasBench101Cell(
                {"lin": lambda c: nn.Linear(c, c), "relu": lambda c: nn.ReLU()},
                3,
                4,
                lambda i, o: nn.Linear(i, o),
                max_num_nodes=5,
                max_num_edges=4,
                label="nb",
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.cell(x)

    space = Space()
    ss = space.search_space()
    assert ss["nb/num_nodes"]["_value"] == [2, 3, 4, 5]
    assert set(ss) == {
        "nb/num_nodes",
        "nb/op1",
        "nb/op2",
        "nb/op3",
        "nb/input1",
        "nb/input2",
        "nb/input3",
        "nb/input4",
    }
    assert space(torch.zeros(2, 3)).shape == (2, 4)
    for seed in range(20):
        arch = random_arch(space, seed=seed)
        space.freeze(arch)(torch.randn(2, 3))
    dense = {"nb/num_nodes": 5, "nb/op1": "lin", "nb/op2": "lin", "nb/op3": "relu", "nb/input1": [0]}
    dense.update({"nb/input2": [0, 1], "nb/input3": [0, 1, 2], "nb/input4": [0, 1, 2, 3]})
    with pytest.raises(ArchitectureError, match=r"'nb'.*10 edges.*max_num_edges=4"):
        space.freeze(dense)
    small = {**dense, "nb/num_nodes": 3, "nb/input2": [1]}  # 0 -> 1 -> 2 (the output); node 3, 4 ignored
    model = space.freeze(small)
    assert model.cell.graph == {1: [0], 2: [1]} and model(torch.randn(2, 3)).shape == (2, 4)


# ------------------------------------------------------------------------------------------ AutoActivation


def test_auto_activation_searches_unary_and_binary_units() -> None:
    act = AutoActivation(unit_num=2, label="act")
    choices = collect_choices(act)
    assert list(choices) == ["act/unary_0", "act/unary_1", "act/unary_2", "act/binary_0", "act/binary_1"]
    assert {"max0", "sigmoid", "identity"} <= set(choices["act/unary_0"])
    x = torch.linspace(-2, 2, 9)
    assert act(x).shape == x.shape
    swish = AutoActivation(label="s").freeze(
        {"s/unary_0": "identity", "s/unary_1": "sigmoid", "s/binary_0": "mul"}
    )
    assert torch.allclose(swish(x), x * torch.sigmoid(x)) and _no_mutable(swish)
    for seed in range(10):
        arch = random_arch({k: {"_type": "choice", "_value": v} for k, v in choices.items()}, seed=seed)
        assert torch.isfinite(act.freeze(arch)(x)).all()
