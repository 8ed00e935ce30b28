"""NNI 2.6+ Cell features (pre/postprocessor, factories given the chosen input, output_node_indices) and
NAS-Bench cells built from a list of op factories."""

from __future__ import annotations

import pytest
import torch

from nni_pl.nas import ArchitectureError, Cell, FrozenCell, NasBench101Cell, NasBench201Cell, ValueChoice, nn
from nni_pl.nas.space import collect_choices


class _Pre(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(2, 4)
        self.b = torch.nn.Linear(6, 4)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.a(xs[0]), self.b(xs[1])]


def _post(out: torch.Tensor, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return inputs[-1], out


def test_cell_preprocessor_and_postprocessor_run_in_the_space_and_frozen() -> None:
    cell = Cell([nn.Identity(), nn.Tanh()], 2, 1, 2, "all", _Pre(), _post, label="c")
    xs = [torch.zeros(3, 2), torch.ones(3, 6)]
    prev, out = cell(xs)
    assert prev is xs[1] and out.shape == (3, 8)
    arch = {"c/op_2_0": "1", "c/input_2_0": [0], "c/op_3_0": "0", "c/input_3_0": [1]}
    frozen = cell.freeze(arch)
    assert isinstance(frozen, FrozenCell) and isinstance(frozen.preprocessor, _Pre)
    prev, out = frozen(*xs)
    expected_node2 = torch.tanh(cell.preprocessor.a(xs[0]))
    assert prev is xs[1] and torch.allclose(out[:, :4], expected_node2)
    assert torch.allclose(out[:, 4:], cell.preprocessor.b(xs[1]))


def test_cell_keeps_nni_2_5_positional_label() -> None:
    assert Cell([nn.ReLU()], 1, 1, 1, "all", "legacy").label == "legacy"
    assert Cell([nn.ReLU()], 1, 1, 1, "all", None, None, 1, label="kw").label == "kw"
    with pytest.raises(ArchitectureError, match=r"preprocessor must be a module or a function"):
        Cell([nn.ReLU()], 1, 1, 1, "all", 3, label="bad")


def test_cell_op_factories_receive_the_chosen_input_index() -> None:
    calls: list[tuple[int, int, int | None]] = []

    def conv(node: int, op: int, input_index: int | None) -> torch.nn.Module:
        calls.append((node, op, input_index))
        stride = 2 if input_index is not None and input_index < 2 else 1
        return torch.nn.Conv2d(4, 4, 3, stride=stride, padding=1)

    cell = Cell({"conv": conv, "id": nn.Identity()}, num_nodes=2, num_predecessors=2, label="c")
    assert calls == [(2, 0, None), (3, 0, None)]
    calls.clear()
    frozen = cell.freeze({"c/op_2_0": "conv", "c/input_2_0": [1], "c/op_3_0": "conv", "c/input_3_0": [2]})
    assert calls == [(2, 0, 1), (3, 0, 2)]
    assert frozen.ops[0][0].stride == (2, 2) and frozen.ops[1][0].stride == (1, 1)
    assert (
        type(
            cell.freeze({"c/op_2_0": "id", "c/input_2_0": [0], "c/op_3_0": "id", "c/input_3_0": [0]}).ops[0][
                0
            ]
        )
        is torch.nn.Identity
    )


def test_cell_factory_whose_choices_get_new_automatic_labels_is_refused() -> None:
    def op(node: int, op_index: int, input_index: int | None) -> torch.nn.Module:
        return nn.Linear(4, 4)  # no choice inside: building it again is fine

    Cell([op], 1, label="ok").freeze({"ok/op_1_0": "0", "ok/input_1_0": [0]})

    def auto(node: int, op_index: int, input_index: int | None) -> torch.nn.Module:
        return nn.Linear(4, ValueChoice([4, 8]))  # an automatic label, different on each call

    cell = Cell([auto], 1, label="c")
    arch = {
        "c/op_1_0": "0",
        "c/input_1_0": [0],
        **{k: 4 for k in collect_choices(cell) if "valuechoice" in k},
    }
    with pytest.raises(ArchitectureError, match=r"explicit labels"):
        cell.freeze(arch)


def test_frozen_cell_output_node_indices() -> None:
    cell = Cell([nn.Identity()], num_nodes=3, num_predecessors=2, merge_op="loose_end", label="c")
    assert cell.output_node_indices == [2, 3, 4]
    arch = {
        "c/op_2_0": "0", "c/input_2_0": [0],
        "c/op_3_0": "0", "c/input_3_0": [2],
        "c/op_4_0": "0", "c/input_4_0": [1],
    }  # fmt: skip
    frozen = cell.freeze(arch)
    assert frozen.output_node_indices == [3, 4]
    assert frozen([torch.ones(1, 2), torch.ones(1, 2)]).shape == (1, 4)
    assert Cell([nn.Identity()], 3, num_predecessors=2, label="d").freeze(
        {k.replace("c/", "d/"): v for k, v in arch.items()}
    ).output_node_indices == [2, 3, 4]


def test_nasbench_cells_accept_a_list_of_op_factories() -> None:
    nb201 = NasBench201Cell(
        [lambda i, o: torch.nn.Linear(i, o), lambda i, o: torch.nn.Identity()], 4, 4, label="n"
    )
    assert collect_choices(nb201)["n/0_1"] == ["0", "1"]
    frozen = nb201.freeze({lbl: "1" for lbl in nb201.own_labels()})
    assert frozen(torch.ones(1, 4)).shape == (1, 4)
    nb101 = NasBench101Cell(
        [lambda c: torch.nn.Identity(), lambda c: torch.nn.ReLU()],
        4,
        4,
        lambda i, o: torch.nn.Linear(i, o),
        max_num_nodes=3,
        label="m",
    )
    assert collect_choices(nb101)["m/op1"] == ["0", "1"]
    assert nb101(torch.zeros(2, 4)).shape == (2, 4)
    with pytest.raises(ArchitectureError, match=r"list of factories"):
        NasBench201Cell([], 4, 4, label="e")
