"""Composite mutables: Cell, NasBench201Cell, NasBench101Cell and the AutoActivation hyper-module.

They are built from :class:`~nni_pl.nas.LayerChoice` and :class:`~nni_pl.nas.InputChoice` with labels derived
from the cell's own label (``"{label}/op_2_0"``), so two cells with the same label make the same decisions.

Example:
    >>> import torch
    >>> from nni_pl.nas import Cell
    >>> cell = Cell([torch.nn.Identity(), torch.nn.ReLU()], num_nodes=2, label="c")
    >>> sorted(cell.freeze({"c/op_1_0": "1", "c/input_1_0": [0], "c/op_2_0": "0", "c/input_2_0": [1]}).inputs_used())
    [[[0]], [[1]]]
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nni_pl.nas.mutables import (
    ArchitectureError,
    InputChoice,
    LayerChoice,
    Mutable,
    ValueChoice,
    _make_label,
    freeze_module,
    lookup,
    register_label,
)

__all__ = ["AutoActivation", "Cell", "FrozenCell", "NasBench101Cell", "NasBench201Cell", "ZeroOp"]

_MERGE_OPS = ("all", "loose_end")


def _build_candidates(
    op_candidates: Any, node_index: int, op_index: int
) -> dict[str, nn.Module] | list[nn.Module]:
    if isinstance(op_candidates, Mapping):
        return {
            str(k): (copy.deepcopy(v) if isinstance(v, nn.Module) else _call(v, node_index, op_index, None))
            for k, v in op_candidates.items()
        }
    if isinstance(op_candidates, Sequence) and not isinstance(op_candidates, (str, bytes)):
        return [
            copy.deepcopy(v) if isinstance(v, nn.Module) else _call(v, node_index, op_index, None)
            for v in op_candidates
        ]
    if callable(op_candidates):
        return _build_candidates(_call(op_candidates, node_index, op_index, None), node_index, op_index)
    raise ArchitectureError(
        "", f"Cell op_candidates must be a list/dict of modules or factories, got {op_candidates!r}"
    )


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
        n = len(params)  # only required ones: a module class such as nn.ReLU is a zero-argument factory
    except (TypeError, ValueError):
        n = 0
    return fn(*args[:n])


class _CellForward(nn.Module):
    """The computation shared by :class:`Cell` (in the space) and :class:`FrozenCell`."""

    num_predecessors: int
    merge_op: str
    concat_dim: int
    ops: nn.ModuleList
    inputs: nn.ModuleList

    def _loose_ends(self) -> list[int]:
        raise NotImplementedError

    def forward(self, *inputs: Any) -> torch.Tensor:
        xs = list(inputs[0]) if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)) else list(inputs)
        if len(xs) != self.num_predecessors:
            raise ArchitectureError(
                getattr(self, "label", ""),
                f"the cell takes {self.num_predecessors} input tensors, got {len(xs)}",
            )
        states = list(xs)
        for ops, ins in zip(self.ops, self.inputs):
            states.append(sum(op(inp(states)) for op, inp in zip(ops, ins)))  # type: ignore[arg-type]
        nodes = range(self.num_predecessors, len(states))
        keep = list(nodes) if self.merge_op == "all" else self._loose_ends()
        return torch.cat([states[i] for i in keep], dim=self.concat_dim)


class Cell(Mutable, _CellForward):
    """The NAS cell of NASNet/DARTS: nodes that each sum ``num_ops_per_node`` chosen ops on chosen inputs.

    Node ``i`` (numbered from ``num_predecessors``, after the cell's inputs) has, for each op slot ``k``, an
    InputChoice ``"{label}/input_{i}_{k}"`` over the ``i`` earlier tensors (one is taken) and a LayerChoice
    ``"{label}/op_{i}_{k}"`` over the op candidates. The output concatenates (``concat_dim``) all nodes
    (``merge_op="all"``) or only those no op takes as input (``"loose_end"``).

    Args:
        op_candidates: a list/dict of modules (deep-copied per op), of factories, or a factory returning one;
            a factory may take ``(node_index, op_index, input_index)`` (NNI 2.6; ``input_index`` is None here
            because ops are built before the input is chosen).
        num_nodes: number of nodes.
        num_ops_per_node: ops summed in each node.
        num_predecessors: number of input tensors (the cell is called with a list or with several tensors).
        merge_op: ``"all"`` or ``"loose_end"``.
        concat_dim: the dimension the output nodes are concatenated along.
        label: the cell's label; generated (``cell_1``, ...) when not given.

    Example:
        >>> import torch
        >>> from nni_pl.nas import Cell
        >>> cell = Cell([torch.nn.Identity(), torch.nn.Tanh()], num_nodes=3, num_predecessors=2, label="c")
        >>> cell([torch.zeros(1, 4), torch.zeros(1, 4)]).shape
        torch.Size([1, 12])
    """

    def __init__(
        self,
        op_candidates: Any,
        num_nodes: int,
        num_ops_per_node: int = 1,
        num_predecessors: int = 1,
        merge_op: str = "all",
        label: str | None = None,
        *,
        concat_dim: int = 1,
    ) -> None:
        super().__init__()
        self.label = _make_label(label, "cell")
        for name, value, low in (
            ("num_nodes", num_nodes, 1),
            ("num_ops_per_node", num_ops_per_node, 1),
            ("num_predecessors", num_predecessors, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ArchitectureError(self.label, f"{name} must be an int >= {low}, got {value!r}")
        if merge_op not in _MERGE_OPS:
            raise ArchitectureError(
                self.label, f"merge_op must be one of {list(_MERGE_OPS)}, got {merge_op!r}"
            )
        register_label(self.label, "Cell", f"{num_nodes},{num_ops_per_node},{num_predecessors},{merge_op}")
        self.num_nodes = num_nodes
        self.num_ops_per_node = num_ops_per_node
        self.num_predecessors = num_predecessors
        self.merge_op = merge_op
        self.concat_dim = concat_dim
        self.ops = nn.ModuleList()
        self.inputs = nn.ModuleList()
        for i in range(num_predecessors, num_predecessors + num_nodes):
            self.ops.append(
                nn.ModuleList(
                    LayerChoice(_build_candidates(op_candidates, i, k), label=f"{self.label}/op_{i}_{k}")
                    for k in range(num_ops_per_node)
                )
            )
            self.inputs.append(
                nn.ModuleList(
                    InputChoice(i, 1, reduction="sum", label=f"{self.label}/input_{i}_{k}")
                    for k in range(num_ops_per_node)
                )
            )

    def _loose_ends(self) -> list[int]:
        return list(range(self.num_predecessors, self.num_predecessors + self.num_nodes))

    def _freeze(self, arch: Mapping[str, Any]) -> nn.Module:
        ops = nn.ModuleList(nn.ModuleList(freeze_module(op, arch) for op in node) for node in self.ops)
        inputs = nn.ModuleList(nn.ModuleList(freeze_module(ic, arch) for ic in node) for node in self.inputs)
        return FrozenCell(ops, inputs, self.num_predecessors, self.merge_op, self.concat_dim)


class FrozenCell(_CellForward):
    """A :class:`Cell` with its ops and inputs chosen (what ``Cell.freeze`` returns)."""

    def __init__(
        self, ops: nn.ModuleList, inputs: nn.ModuleList, num_predecessors: int, merge_op: str, concat_dim: int
    ) -> None:
        super().__init__()
        self.ops = ops
        self.inputs = inputs
        self.num_predecessors = num_predecessors
        self.merge_op = merge_op
        self.concat_dim = concat_dim

    def inputs_used(self) -> list[list[list[int]]]:
        """For each node, for each op slot, the index list of the tensor it reads."""
        return [[list(ic.chosen) for ic in node] for node in self.inputs]  # type: ignore[union-attr]

    def _loose_ends(self) -> list[int]:
        used = {i for node in self.inputs_used() for chosen in node for i in chosen}
        n = self.num_predecessors + len(self.ops)
        return [i for i in range(self.num_predecessors, n) if i not in used]


# --------------------------------------------------------------------------------------------- NAS-Bench-201


class NasBench201Cell(Mutable):
    """The NAS-Bench-201 cell: a dense DAG of ``num_tensors`` nodes, each edge one chosen op.

    Node ``t`` is the sum over ``j < t`` of ``op_{j,t}(node_j)``; the edge decision is labelled
    ``"{label}/{j}_{t}"`` (the keys NAS-Bench-201 queries use). ``op_candidates`` maps op names to factories
    ``fn(in_features, out_features)``; edges leaving the input node get ``in_features``.

    Example:
        >>> import torch
        >>> from nni_pl.nas import NasBench201Cell
        >>> from nni_pl.nas.cells import ZeroOp
        >>> ops = {"none": lambda i, o: ZeroOp(i, o), "skip": lambda i, o: torch.nn.Identity()}
        >>> cell = NasBench201Cell(ops, 4, 4, label="nb")
        >>> len(cell.own_labels())
        6
    """

    def __init__(
        self,
        op_candidates: Mapping[str, Callable[[int, int], nn.Module]],
        in_features: int,
        out_features: int,
        num_tensors: int = 4,
        label: str | None = None,
    ) -> None:
        super().__init__()
        self.label = _make_label(label, "nasbench201cell")
        if not isinstance(op_candidates, Mapping) or not op_candidates:
            raise ArchitectureError(
                self.label, f"op_candidates must be a non-empty dict name -> factory, got {op_candidates!r}"
            )
        if not isinstance(num_tensors, int) or num_tensors < 2:
            raise ArchitectureError(self.label, f"num_tensors must be an int >= 2, got {num_tensors!r}")
        self.num_tensors = num_tensors
        self.layers = nn.ModuleList()
        for t in range(1, num_tensors):
            self.layers.append(
                nn.ModuleList(
                    LayerChoice(
                        {
                            n: f(in_features if j == 0 else out_features, out_features)
                            for n, f in op_candidates.items()
                        },
                        label=f"{self.label}/{j}_{t}",
                    )
                    for j in range(t)
                )
            )

    def own_labels(self) -> list[str]:
        return [lc.label for node in self.layers for lc in node]  # type: ignore[union-attr]

    def _freeze(self, arch: Mapping[str, Any]) -> nn.Module:
        layers = nn.ModuleList(nn.ModuleList(freeze_module(op, arch) for op in node) for node in self.layers)
        return _NasBench201Forward(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _NasBench201Forward.run(self.layers, x)


class _NasBench201Forward(nn.Module):
    def __init__(self, layers: nn.ModuleList) -> None:
        super().__init__()
        self.layers = layers

    @staticmethod
    def run(layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        tensors = [x]
        for node in layers:
            tensors.append(sum(op(tensors[j]) for j, op in enumerate(node)))  # type: ignore[arg-type]
        return tensors[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(self.layers, x)


class ZeroOp(nn.Module):
    """NAS-Bench-201's ``none`` op: zeros of the output shape (channels ``out_features``, stride ``stride``)."""

    def __init__(self, in_features: int, out_features: int, stride: int = 1) -> None:
        super().__init__()
        self.out_features = out_features
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[..., :: self.stride, :: self.stride] if x.dim() == 4 and self.stride > 1 else x
        shape = list(x.shape)
        shape[1] = self.out_features
        return x.new_zeros(shape)


# --------------------------------------------------------------------------------------------- NAS-Bench-101


class NasBench101Cell(Mutable):
    """The NAS-Bench-101 cell: a DAG of up to ``max_num_nodes`` nodes with at most ``max_num_edges`` edges.

    Decisions: ``"{label}/num_nodes"`` (2..max), ``"{label}/op{i}"`` for the inner nodes 1..max-2 (names of
    ``op_candidates``) and ``"{label}/input{i}"`` for nodes 1..max-1 (a non-empty subset of the earlier nodes).
    With ``num_nodes = n`` the output is node ``n - 1`` and reads ``input{n-1}``; decisions of nodes beyond it
    are ignored. Architectures with more than ``max_num_edges`` edges of live nodes are rejected
    (:func:`~nni_pl.nas.random_arch` of a space skips them). Inner nodes have ``out_features`` channels, edges
    from the cell input go through ``projection(in_features, out_features)``, the output is the sum of its
    inputs (NAS-Bench-101 concatenates channel slices; see the module docs).

    Example:
        >>> import torch
        >>> from nni_pl.nas import NasBench101Cell
        >>> cell = NasBench101Cell({"id": lambda c: torch.nn.Identity()}, 4, 4, lambda i, o: torch.nn.Linear(i, o),
        ...                        max_num_nodes=4, label="nb")
        >>> cell(torch.zeros(2, 4)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        op_candidates: Mapping[str, Callable[[int], nn.Module]],
        in_features: int,
        out_features: int,
        projection: Callable[[int, int], nn.Module],
        max_num_nodes: int = 7,
        max_num_edges: int = 9,
        label: str | None = None,
    ) -> None:
        super().__init__()
        self.label = _make_label(label, "nasbench101cell")
        if not isinstance(op_candidates, Mapping) or not op_candidates:
            raise ArchitectureError(
                self.label, f"op_candidates must be a non-empty dict name -> factory, got {op_candidates!r}"
            )
        if not isinstance(max_num_nodes, int) or max_num_nodes < 2:
            raise ArchitectureError(self.label, f"max_num_nodes must be an int >= 2, got {max_num_nodes!r}")
        if not isinstance(max_num_edges, int) or max_num_edges < 1:
            raise ArchitectureError(self.label, f"max_num_edges must be an int >= 1, got {max_num_edges!r}")
        self.max_num_nodes = max_num_nodes
        self.max_num_edges = max_num_edges
        self.num_nodes = ValueChoice(list(range(2, max_num_nodes + 1)), label=f"{self.label}/num_nodes")
        self.projections = nn.ModuleList(
            projection(in_features, out_features) for _ in range(1, max_num_nodes)
        )
        self.ops = nn.ModuleList(
            LayerChoice({n: f(out_features) for n, f in op_candidates.items()}, label=f"{self.label}/op{i}")
            for i in range(1, max_num_nodes - 1)
        )
        self.inputs = nn.ModuleList(
            InputChoice(i, None, reduction="none", label=f"{self.label}/input{i}")
            for i in range(1, max_num_nodes)
        )
        register_label(
            self.label, "NasBench101Cell", f"{max_num_nodes},{max_num_edges},{sorted(op_candidates)}"
        )

    def own_choices(self) -> list[tuple[str, str, list[Any]]]:
        return [(self.num_nodes.label, "ValueChoice", self.num_nodes.candidates)]

    def _graph(self, arch: Mapping[str, Any]) -> tuple[int, dict[int, list[int]]]:
        n = lookup(arch, self.num_nodes.label, self.num_nodes.candidates)
        preds = {
            i: list(lookup(arch, ic.label, ic.values, kind="InputChoice"))
            for i, ic in enumerate(self.inputs, start=1)
            if i < n
        }
        # keep only nodes that reach the output
        live = {n - 1}
        for i in range(n - 1, 0, -1):
            if i in live:
                live.update(preds[i])
        graph = {i: [p for p in preds[i] if p in live] for i in range(1, n) if i in live}
        return n, graph

    def check_arch(self, arch: Mapping[str, Any]) -> None:
        _, graph = self._graph(arch)
        edges = sum(len(p) for p in graph.values())
        if edges > self.max_num_edges:
            raise ArchitectureError(
                self.label,
                f"the cell has {edges} edges, more than max_num_edges={self.max_num_edges} "
                f"(inputs {graph}); choose fewer inputs",
            )

    def _freeze(self, arch: Mapping[str, Any]) -> nn.Module:
        self.check_arch(arch)
        n, graph = self._graph(arch)
        ops = nn.ModuleDict(
            {str(i): freeze_module(self.ops[i - 1], arch) for i in graph if i < n - 1}  # type: ignore[arg-type]
        )
        projections = nn.ModuleDict({str(i): self.projections[i - 1] for i in graph if 0 in graph[i]})
        return _NasBench101Forward(n, graph, ops, projections)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.num_nodes.default()
        graph = {i: ic.values[0] for i, ic in enumerate(self.inputs, start=1) if i < n}
        ops = {str(i): self.ops[i - 1] for i in graph if i < n - 1}
        projections = {str(i): self.projections[i - 1] for i in graph}
        return _NasBench101Forward.run(n, graph, ops, projections, x)


class _NasBench101Forward(nn.Module):
    def __init__(
        self, n: int, graph: dict[int, list[int]], ops: nn.ModuleDict, projections: nn.ModuleDict
    ) -> None:
        super().__init__()
        self.n = n
        self.graph = graph
        self.ops = ops
        self.projections = projections

    @staticmethod
    def run(
        n: int, graph: Mapping[int, list[int]], ops: Any, projections: Any, x: torch.Tensor
    ) -> torch.Tensor:
        states: dict[int, torch.Tensor] = {0: x}
        for i in range(1, n):
            if i not in graph:
                continue
            parts = [projections[str(i)](x) if p == 0 else states[p] for p in graph[i]]
            h = torch.stack(parts).sum(0)
            states[i] = ops[str(i)](h) if i < n - 1 else h
        return states[n - 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(self.n, self.graph, self.ops, self.projections, x)

    def extra_repr(self) -> str:
        return f"num_nodes={self.n}, inputs={self.graph}"


# --------------------------------------------------------------------------------------------- AutoActivation


_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "neg": torch.neg,
    "abs": torch.abs,
    "square": torch.square,
    "pow3": lambda x: x.pow(3),
    "sqrt": lambda x: torch.sqrt(torch.abs(x) + 1e-7),
    "exp": lambda x: torch.exp(x.clamp(max=20)),
    "sin": torch.sin,
    "cos": torch.cos,
    "sinh": lambda x: torch.sinh(x.clamp(-20, 20)),
    "cosh": lambda x: torch.cosh(x.clamp(-20, 20)),
    "tanh": torch.tanh,
    "asinh": torch.asinh,
    "atan": torch.atan,
    "sinc": torch.sinc,
    "max0": torch.relu,
    "min0": lambda x: torch.clamp(x, max=0),
    "sigmoid": torch.sigmoid,
    "logexp": nn.functional.softplus,
    "gaussian": lambda x: torch.exp(-x * x),
    "erf": torch.erf,
    "const": lambda x: torch.zeros_like(x),
}

_BINARY: dict[str, Callable[..., torch.Tensor]] = {
    "add": torch.add,
    "mul": torch.mul,
    "sub": torch.sub,
    "div": lambda a, b: a / (b + 1e-7),
    "max": torch.maximum,
    "min": torch.minimum,
    "sig_mul": lambda a, b: torch.sigmoid(a) * b,
    "exp_sq_diff": lambda a, b, beta: torch.exp(-beta * (a - b) ** 2),
    "exp_abs_diff": lambda a, b, beta: torch.exp(-beta * torch.abs(a - b)),
    "beta_mix": lambda a, b, beta: beta * a + (1 - beta) * b,
}
_BETA = {"exp_sq_diff", "exp_abs_diff", "beta_mix"}


class _Unary(nn.Module):
    # the function is looked up by name at call time, so the module pickles
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _UNARY[self.name](x)

    def extra_repr(self) -> str:
        return self.name


class _Binary(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.beta = nn.Parameter(torch.ones(1)) if name in _BETA else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn = _BINARY[self.name]
        return fn(x[0], x[1], self.beta) if self.beta is not None else fn(x[0], x[1])

    def extra_repr(self) -> str:
        return self.name


def _unary_ops() -> dict[str, nn.Module]:
    return {k: _Unary(k) for k in _UNARY}


def _binary_ops() -> dict[str, nn.Module]:
    return {k: _Binary(k) for k in _BINARY}


class AutoActivation(Mutable):
    """An activation function searched as unary and binary units ("Searching for Activation Functions").

    ``out = binary_k(out, unary_k(x))`` for ``k = 1..unit_num`` after ``out = unary_0(x)``. Decisions:
    ``"{label}/unary_{i}"`` (names such as ``"max0"``, ``"sigmoid"``, ``"sin"``) and ``"{label}/binary_{i}"``
    (``"add"``, ``"mul"``, ``"max"``, ...); beta-parameterised binaries hold one scalar, not per channel (as NNI).

    Example:
        >>> import torch
        >>> from nni_pl.nas import AutoActivation
        >>> act = AutoActivation(unit_num=1, label="act")
        >>> swish = act.freeze({"act/unary_0": "identity", "act/unary_1": "sigmoid", "act/binary_0": "mul"})
        >>> float(swish(torch.tensor([0.0])))
        0.0
    """

    def __init__(self, unit_num: int = 1, label: str | None = None) -> None:
        super().__init__()
        self.label = _make_label(label, "autoactivation")
        if not isinstance(unit_num, int) or unit_num < 0:
            raise ArchitectureError(self.label, f"unit_num must be an int >= 0, got {unit_num!r}")
        self.unit_num = unit_num
        self.unaries = nn.ModuleList(
            LayerChoice(_unary_ops(), label=f"{self.label}/unary_{i}") for i in range(unit_num + 1)
        )
        self.binaries = nn.ModuleList(
            LayerChoice(_binary_ops(), label=f"{self.label}/binary_{i}") for i in range(unit_num)
        )

    def _freeze(self, arch: Mapping[str, Any]) -> nn.Module:
        return _AutoActivationForward(
            nn.ModuleList(freeze_module(u, arch) for u in self.unaries),
            nn.ModuleList(freeze_module(b, arch) for b in self.binaries),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _AutoActivationForward.run(self.unaries, self.binaries, x)


class _AutoActivationForward(nn.Module):
    def __init__(self, unaries: nn.ModuleList, binaries: nn.ModuleList) -> None:
        super().__init__()
        self.unaries = unaries
        self.binaries = binaries

    @staticmethod
    def run(unaries: nn.ModuleList, binaries: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        out = unaries[0](x)
        for unary, binary in zip(list(unaries)[1:], binaries):
            out = binary(torch.stack([out, unary(x)]))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(self.unaries, self.binaries, x)
