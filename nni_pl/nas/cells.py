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


def _named_factories(label: str, op_candidates: Any) -> dict[str, Callable[..., nn.Module]]:
    """A dict or list of op factories as name -> factory (a list's names are ``"0"``, ``"1"``, ...)."""
    if isinstance(op_candidates, Mapping):
        named = {str(k): v for k, v in op_candidates.items()}
    elif isinstance(op_candidates, Sequence) and not isinstance(op_candidates, (str, bytes)):
        named = {str(i): v for i, v in enumerate(op_candidates)}
    else:
        named = {}
    if not named or not all(callable(f) for f in named.values()):
        raise ArchitectureError(
            label,
            f"op_candidates must be a non-empty dict name -> factory or list of factories, got {op_candidates!r}",
        )
    return named


def _factory_takes_input_index(fn: Any) -> bool:
    """Whether an op factory takes NNI's third argument, the index of the op's chosen input."""
    if isinstance(fn, nn.Module) or not callable(fn):
        return False
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        return False
    return len(params) >= 3


def _uses_input_index(op_candidates: Any) -> bool:
    if isinstance(op_candidates, Mapping):
        return any(_factory_takes_input_index(v) for v in op_candidates.values())
    if isinstance(op_candidates, Sequence) and not isinstance(op_candidates, (str, bytes)):
        return any(_factory_takes_input_index(v) for v in op_candidates)
    return _factory_takes_input_index(op_candidates)


class _CellForward(nn.Module):
    """The computation shared by :class:`Cell` (in the space) and :class:`FrozenCell`."""

    num_predecessors: int
    merge_op: str
    concat_dim: int
    ops: nn.ModuleList
    inputs: nn.ModuleList
    output_node_indices: list[int]

    def _set_processors(self, preprocessor: Any, postprocessor: Any) -> None:
        for name, fn in (("preprocessor", preprocessor), ("postprocessor", postprocessor)):
            if fn is not None and not callable(fn):
                raise ArchitectureError(
                    getattr(self, "label", ""), f"{name} must be a module or a function, got {fn!r}"
                )
            if isinstance(fn, nn.Module):
                self.add_module(name, fn)
            else:
                object.__setattr__(self, name, fn)

    def forward(self, *inputs: Any) -> Any:
        xs = list(inputs[0]) if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)) else list(inputs)
        if len(xs) != self.num_predecessors:
            raise ArchitectureError(
                getattr(self, "label", ""),
                f"the cell takes {self.num_predecessors} input tensors, got {len(xs)}",
            )
        pre = self.preprocessor
        states = list(pre(list(xs)) if pre is not None else xs)
        for ops, ins in zip(self.ops, self.inputs):
            states.append(sum(op(inp(states)) for op, inp in zip(ops, ins)))  # type: ignore[arg-type]
        out = torch.cat([states[i] for i in self.output_node_indices], dim=self.concat_dim)
        post = self.postprocessor
        return post(out, xs) if post is not None else out


class Cell(Mutable, _CellForward):
    """The NAS cell of NASNet/DARTS: nodes that each sum ``num_ops_per_node`` chosen ops on chosen inputs.

    Node ``i`` (numbered from ``num_predecessors``, after the cell's inputs) has, for each op slot ``k``, an
    InputChoice ``"{label}/input_{i}_{k}"`` over the ``i`` earlier tensors (one is taken) and a LayerChoice
    ``"{label}/op_{i}_{k}"`` over the op candidates. The output concatenates (``concat_dim``) all nodes
    (``merge_op="all"``) or only those no op takes as input (``"loose_end"``).

    Args:
        op_candidates: a list/dict of modules (deep-copied per op), of factories, or a factory returning one.
            A factory may take ``(node_index, op_index, input_index)`` (NNI 2.6+): in the space
            ``input_index`` is None (the input is not chosen yet); freezing calls it again with the chosen
            input's index and uses what it returns (fresh weights), e.g. a stride-2 op on the cell's inputs.
            Choices such a factory creates need explicit labels (automatic ones would differ the second time).
        num_nodes: number of nodes.
        num_ops_per_node: ops summed in each node.
        num_predecessors: number of input tensors (the cell is called with a list or with several tensors).
        merge_op: ``"all"`` or ``"loose_end"``.
        preprocessor: a module or function ``f(list of inputs) -> list of tensors`` applied to the inputs
            first (e.g. to align their shapes); default: none.
        postprocessor: a module or function ``f(cell output, list of inputs)`` whose result the cell returns
            (e.g. ``(inputs[-1], out)`` to chain cells); default: the output itself.
        concat_dim: the dimension the output nodes are concatenated along.
        label: the cell's label; generated (``cell_1``, ...) when not given (NNI 2.5's sixth positional
            argument, a string, is read as the label too).

    Attributes:
        output_node_indices: the indices (counting the inputs first) of the nodes concatenated to the output;
            in the space all nodes, on the frozen cell (:class:`FrozenCell`) the loose ends for
            ``merge_op="loose_end"``.

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
        preprocessor: Callable[[list[torch.Tensor]], list[torch.Tensor]] | str | None = None,
        postprocessor: Callable[[torch.Tensor, list[torch.Tensor]], Any] | None = None,
        concat_dim: int = 1,
        *,
        label: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(preprocessor, str) and label is None:  # NNI 2.5: Cell(ops, n, k, p, merge_op, label)
            preprocessor, label = None, preprocessor
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
        self.output_node_indices = list(range(num_predecessors, num_predecessors + num_nodes))
        self._set_processors(preprocessor, postprocessor)
        # kept (not a child) so that freezing can call the factories again with the chosen input index
        object.__setattr__(
            self, "op_candidates_factory", op_candidates if _uses_input_index(op_candidates) else None
        )
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

    def _freeze(self, arch: Mapping[str, Any]) -> nn.Module:
        inputs = nn.ModuleList(nn.ModuleList(freeze_module(ic, arch) for ic in node) for node in self.inputs)
        ops = nn.ModuleList()
        for n, (node_ops, node_inputs) in enumerate(zip(self.ops, inputs), start=self.num_predecessors):
            ops.append(
                nn.ModuleList(
                    self._rebuild_op(lc, n, k, node_inputs[k].chosen[0], arch)  # type: ignore[index]
                    for k, lc in enumerate(node_ops)  # type: ignore[arg-type]
                )
            )
        return FrozenCell(
            ops,
            inputs,
            self.num_predecessors,
            self.merge_op,
            self.concat_dim,
            preprocessor=freeze_module(self.preprocessor, arch)
            if isinstance(self.preprocessor, nn.Module)
            else self.preprocessor,
            postprocessor=freeze_module(self.postprocessor, arch)
            if isinstance(self.postprocessor, nn.Module)
            else self.postprocessor,
        )

    def _rebuild_op(
        self, lc: LayerChoice, node: int, slot: int, input_index: int, arch: Mapping[str, Any]
    ) -> nn.Module:
        """The chosen op of ``lc``, built again by its factory with the chosen input index when it takes one."""
        factory = self.op_candidates_factory
        if factory is None:
            return freeze_module(lc, arch)
        name = lookup(arch, lc.label, lc.names, kind="LayerChoice")
        if callable(factory) and not isinstance(factory, (Mapping, Sequence)):
            entries = _call(factory, node, slot, input_index)
        else:
            entries = factory
        entry = entries[name] if isinstance(entries, Mapping) else entries[int(name)]
        if isinstance(entry, nn.Module):
            if entries is factory:  # a module in the candidate list: the space's copy is the op
                return freeze_module(lc[name], arch)
            op = entry
        elif _factory_takes_input_index(entry):
            op = entry(node, slot, input_index)
        else:
            return freeze_module(lc[name], arch)
        from nni_pl.nas.space import collect_choices

        before, after = set(collect_choices(lc[name])), set(collect_choices(op))
        if before != after:
            raise ArchitectureError(
                self.label,
                f"op factory {entry!r} built choices labelled {sorted(after)} when called with the input index, "
                f"but {sorted(before)} in the space; give the choices it creates explicit labels",
            )
        return freeze_module(op, arch)


class FrozenCell(_CellForward):
    """A :class:`Cell` with its ops and inputs chosen (what ``Cell.freeze`` returns).

    Attributes:
        output_node_indices: the indices (counting the inputs first) of the nodes concatenated to the output:
            all nodes for ``merge_op="all"``, the nodes no op reads for ``"loose_end"``.
    """

    def __init__(
        self,
        ops: nn.ModuleList,
        inputs: nn.ModuleList,
        num_predecessors: int,
        merge_op: str,
        concat_dim: int,
        *,
        preprocessor: Any = None,
        postprocessor: Any = None,
    ) -> None:
        super().__init__()
        self.ops = ops
        self.inputs = inputs
        self.num_predecessors = num_predecessors
        self.merge_op = merge_op
        self.concat_dim = concat_dim
        self._set_processors(preprocessor, postprocessor)
        nodes = range(num_predecessors, num_predecessors + len(ops))
        used = {i for node in self.inputs_used() for chosen in node for i in chosen}
        self.output_node_indices = [i for i in nodes if merge_op == "all" or i not in used]

    def inputs_used(self) -> list[list[list[int]]]:
        """For each node, for each op slot, the index list of the tensor it reads."""
        return [[list(ic.chosen) for ic in node] for node in self.inputs]  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------- NAS-Bench-201


class NasBench201Cell(Mutable):
    """The NAS-Bench-201 cell: a dense DAG of ``num_tensors`` nodes, each edge one chosen op.

    Node ``t`` is the sum over ``j < t`` of ``op_{j,t}(node_j)``; the edge decision is labelled
    ``"{label}/{j}_{t}"`` (the keys NAS-Bench-201 queries use). ``op_candidates`` maps op names to factories
    ``fn(in_features, out_features)``, or is a list of them (named ``"0"``, ``"1"``, ...); edges leaving the
    input node get ``in_features``.

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
        op_candidates: Mapping[str, Callable[[int, int], nn.Module]]
        | Sequence[Callable[[int, int], nn.Module]],
        in_features: int,
        out_features: int,
        num_tensors: int = 4,
        label: str | None = None,
    ) -> None:
        super().__init__()
        self.label = _make_label(label, "nasbench201cell")
        op_candidates = _named_factories(self.label, op_candidates)
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
    ``op_candidates``: a dict name -> ``fn(channels)``, or a list of such factories named ``"0"``, ``"1"``, ...) and ``"{label}/input{i}"`` for nodes 1..max-1 (a non-empty subset of the earlier nodes).
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
        op_candidates: Mapping[str, Callable[[int], nn.Module]] | Sequence[Callable[[int], nn.Module]],
        in_features: int,
        out_features: int,
        projection: Callable[[int, int], nn.Module],
        max_num_nodes: int = 7,
        max_num_edges: int = 9,
        label: str | None = None,
    ) -> None:
        super().__init__()
        self.label = _make_label(label, "nasbench101cell")
        op_candidates = _named_factories(self.label, op_candidates)
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
