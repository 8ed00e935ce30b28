"""A base model and mutators for the mutator tests (a module of its own: trial processes unpickle them)."""

from __future__ import annotations

from collections import namedtuple
from typing import Any, List  # noqa: UP035 - List: as the seed's example writes it

import torch
from torch import nn

from nni_pl.nas import (
    ModelSpace,
    Mutator,  # the seed's example: was `from nni.retiarii import Mutator`
    Placeholder,
)

#: a candidate operation as the seed's BlockMutator example reads it: ``chosen_op.type``, ``chosen_op.params``
Op = namedtuple("Op", ["type", "params"])


# --- the seed's example (NNI 2.5 docs, "Write a mutator"), verbatim: only its import changed ----------------


class BlockMutator(Mutator):
    def __init__(self, target: str, candidates: List):  # noqa: UP006
        super(BlockMutator, self).__init__()  # noqa: UP008
        self.target = target
        self.candidate_op_list = candidates

    def mutate(self, model):
        nodes = model.get_nodes_by_label(self.target)
        for node in nodes:
            chosen_op = self.choice(self.candidate_op_list)
            node.update_operation(chosen_op.type, chosen_op.params)


# --- base models -----------------------------------------------------------------------------------------------
class DigitsBase(nn.Module):
    """A plain MLP for 8x8 digits with two placeholders: no inline choice."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.block0 = Placeholder(label="mutable_0")
        self.block1 = Placeholder(label="mutable_1")
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.block1(self.block0(self.fc1(x.flatten(1)))))


class DigitsBaseSpace(ModelSpace):
    """The same as a ModelSpace (rebuilt in the trials from its import path)."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.block0 = Placeholder(label="mutable_0")
        self.block1 = Placeholder(label="mutable_1")
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.block1(self.block0(self.fc1(x.flatten(1)))))


ACTIVATIONS = [Op("torch.nn.ReLU", {}), Op("torch.nn.Tanh", {}), Op("torch.nn.Identity", {})]
MIXERS = [Op("torch.nn.Linear", {"in_features": 32, "out_features": 32}), Op("torch.nn.Dropout", {"p": 0.1})]


def seed_mutators() -> list[Mutator]:
    return [BlockMutator("mutable_0", ACTIVATIONS), BlockMutator("mutable_1", MIXERS)]


class WidthMutator(Mutator):
    """Two choices on one node: the width of fc1 (and fc2's input, edited in place) and a bias flag."""

    def mutate(self, model: Any) -> None:
        width = self.choice([16, 32, 48])
        bias = self.choice([True, False])
        fc1 = model.get_node_by_name("fc1")
        fc1.update_operation("torch.nn.Linear", {"in_features": 64, "out_features": width, "bias": bias})
        for node in model.get_nodes_by_type("Placeholder"):
            node.update_operation(torch.nn.Identity)
        model.get_node_by_name("fc2").operation.parameters["in_features"] = width


class BrokenWidthMutator(Mutator):
    """Changes fc1's width but not fc2's input: a shape error at fc2."""

    def mutate(self, model: Any) -> None:
        width = self.choice([16, 32])
        model.get_node_by_name("fc1").update_operation(
            "torch.nn.Linear", {"in_features": 64, "out_features": width}
        )


class FixedMutator(Mutator):
    """Makes no choice: always turns the second placeholder into an Identity."""

    def mutate(self, model: Any) -> None:
        model.get_nodes_by_label("mutable_1")[0].update_operation("torch.nn.Identity", {})


class ConvBase(nn.Module):
    """NNI's Mnasnet example in small: a stem, a placeholder block carrying its options, a 1x1 conv head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.block = Placeholder(
            label="mutable_0", kernel_size_options=[1, 3], n_layer_options=[1, 2], n_filter_options=[4, 16]
        )
        self.head = nn.Conv2d(8, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x))).mean(dim=(2, 3))


class StackMutator(Mutator):
    """The shape of NNI's Mnasnet BlockMutator: options from the placeholder's parameters, the input width
    from its predecessor, extra layers inserted on the outgoing edge, the successor's input width fixed."""

    def mutate(self, model: Any) -> None:
        node = model.get_nodes_by_label(self.label)[0]
        graph = node.graph
        info = node.operation.parameters
        kernel_size = self.choice(info["kernel_size_options"])
        n_layer = self.choice(info["n_layer_options"])
        n_filter = self.choice(info["n_filter_options"])
        in_ch = node.predecessors[0].operation.parameters["out_channels"]
        conv = {"kernel_size": kernel_size, "padding": kernel_size // 2}
        node.update_operation("torch.nn.Conv2d", {"in_channels": in_ch, "out_channels": n_filter, **conv})
        for i in range(1, n_layer):
            node = graph.insert_node_on_edge(
                node.outgoing_edges[0],
                f"{self.label}_{i}",
                "torch.nn.Conv2d",
                {"in_channels": n_filter, "out_channels": n_filter, **conv},
            )
        successor = node.successors[0]
        if "in_channels" in successor.operation.parameters:
            successor.operation.parameters["in_channels"] = n_filter
