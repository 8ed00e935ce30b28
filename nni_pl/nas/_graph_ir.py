"""The graph IR that :class:`~nni_pl.nas.mutator.Mutator` s edit: NNI's ``Model`` / ``Graph`` / ``Node`` /
``Edge`` / ``Operation`` (NNI 2.5, ``nni.retiarii.graph``) over a ``torch.fx`` trace of the base model.

:func:`~nni_pl.nas._graph_fx.trace` makes a :class:`Model`: every ``torch.nn`` layer, every ``@basic_unit``,
every :class:`Placeholder` and every module that carries a ``label`` attribute becomes one node whose operation
is the module's class (``type``, an import path) and its constructor arguments (``parameters``); functions and
tensor methods become nodes too. Mutators change operations, add and remove nodes and edges;
:meth:`Model.to_module` turns the result back into a ``torch.fx.GraphModule``: unchanged nodes keep the base
model's modules (and weights), changed or new ones are built as ``type(**parameters)``.

Example:
    >>> import torch
    >>> from nni_pl.nas.mutator import trace
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = torch.nn.Linear(4, 8)
    ...         self.block = Placeholder(label="mutable_0", widths=[8, 16])
    ...     def forward(self, x):
    ...         return self.block(torch.relu(self.fc(x)))
    >>> model = trace(Net())
    >>> [n.name for n in model.get_nodes()]
    ['x', 'fc', 'relu', 'block', 'output']
    >>> node = model.get_nodes_by_label("mutable_0")[0]
    >>> node.operation.parameters
    {'widths': [8, 16]}
    >>> node.update_operation("torch.nn.Linear", {"in_features": 8, "out_features": 2})
    >>> model.to_module()(torch.zeros(3, 4)).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

import copy
import inspect
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import fx, nn

from nni_pl._imports import import_object
from nni_pl.errors import ConfigError
from nni_pl.nas.mutator import MutationError

__all__ = [
    "Edge",
    "Graph",
    "Model",
    "ModelStatus",
    "MutationError",
    "Node",
    "Operation",
    "Placeholder",
]

INPUT = "_inputs"  # NNI's type names of the special nodes (names starting with "_" are special)
OUTPUT = "_outputs"
GET_ATTR = "_get_attr"


class Placeholder(nn.Module):
    """A node for a mutator to replace (NNI's ``nn.Placeholder``): the identity until a mutator updates it.

    Args:
        label: what :meth:`Model.get_nodes_by_label` finds it by.
        **related_info: anything the mutator needs; it reads them as ``node.operation.parameters``.

    Example:
        >>> import torch
        >>> ph = Placeholder(label="mutable_0", kernel_size_options=[1, 3, 5])
        >>> ph.label, ph.related_info, ph(torch.ones(1)).tolist()
        ('mutable_0', {'kernel_size_options': [1, 3, 5]}, [1.0])
    """

    def __init__(self, label: str, **related_info: Any) -> None:
        super().__init__()
        if not isinstance(label, str) or not label:
            raise ConfigError("Placeholder.label", f"must be a non-empty string, got {label!r}")
        self.label = label
        self.related_info = related_info

    def forward(self, x: Any) -> Any:
        return x


class ModelStatus:
    """The states of a :class:`Model` (NNI's ``ModelStatus``)."""

    Mutating = "mutating"
    Frozen = "frozen"
    Training = "training"
    Trained = "trained"
    Failed = "failed"


# ------------------------------------------------------------------------------------------------ operations


def _type_name(target: Any) -> str:
    """The import path of a module class or a function, as an operation's ``type``."""
    base = getattr(target, "_nas_base", None)  # an nni_pl.nas.nn layer or @basic_unit: the class it wraps
    if isinstance(base, type):
        target = base
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)
    if module in ("builtins", "_operator"):
        module = "operator" if module == "_operator" else module
    return f"{module}.{name}" if module else name


def _resolve_type(type_: Any, mutator: str | None, node: str) -> Any:
    """The class (or function) an operation type names: a class, a callable, ``"pkg.mod.Name"``,
    ``"pkg.mod:Name"``, NNI's ``"__torch__.pkg.mod.Name"`` or a bare ``torch.nn`` name (``"Conv2d"``)."""
    if callable(type_):
        return type_
    if not isinstance(type_, str) or not type_:
        raise MutationError(
            mutator, f"node {node!r}: an operation type is a module class or its import path, got {type_!r}"
        )
    path = type_.removeprefix("__torch__.")
    if "." not in path and ":" not in path:
        found = getattr(nn, path, None)
        if isinstance(found, type):
            return found
    try:
        return import_object(path)
    except ConfigError as e:
        raise MutationError(
            mutator,
            f"node {node!r}: cannot import the operation type {type_!r} ({e}); give a class or "
            "'package.module.ClassName'",
        ) from e


def module_parameters(module: nn.Module) -> dict[str, Any]:
    """The constructor arguments of ``module`` as far as they can be known, by name.

    Recorded arguments first (``nni_pl.nas.nn`` layers, ``@basic_unit``, ``nni_pl.trace``, Placeholder's
    ``related_info``); otherwise the attributes named like the constructor's parameters, which is how every
    ``torch.nn`` layer stores them (a ``bias`` tensor reads as ``bias=True``).
    """
    if isinstance(module, Placeholder):
        return dict(module.related_info)
    cls = getattr(type(module), "_nas_base", None) or type(module)
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return {}
    recorded = module.__dict__.get("_nni_pl_trace")
    if recorded is not None:
        try:
            bound = signature.bind(*recorded[1], **recorded[2])
        except TypeError:
            pass
        else:
            out: dict[str, Any] = {}
            for name, value in bound.arguments.items():
                if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                    out.update(value)
                else:
                    out[name] = value
            return out
    out = {}
    for name, p in signature.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in ("device", "dtype"):
            continue
        if not hasattr(module, name):
            continue
        value = getattr(module, name)
        if isinstance(value, torch.Tensor) or (value is None and isinstance(p.default, bool)):
            if isinstance(p.default, bool):
                out[name] = value is not None  # e.g. bias=True stored as the bias tensor
            continue
        if isinstance(value, nn.Module) or (callable(value) and not isinstance(value, type)):
            continue
        out[name] = value
    return out


class Operation:
    """What a node computes (NNI's ``Operation``): a ``type`` (import path of a module class or function, or a
    special ``_inputs``/``_outputs``/``_get_attr``) and its ``parameters`` (constructor arguments, or a
    function's keyword arguments).

    Example:
        >>> op = Operation.new("torch.nn.ReLU", {"inplace": False})
        >>> op.type, op.parameters
        ('torch.nn.ReLU', {'inplace': False})
    """

    def __init__(
        self,
        type_name: str,
        parameters: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.type = type_name
        self.parameters: dict[str, Any] = dict(parameters or {})
        self.attributes: dict[str, Any] = dict(attributes or {})

    @staticmethod
    def new(
        type_name: str,
        parameters: Mapping[str, Any] | None = None,
        cell_name: str | None = None,
        attributes: Any = None,
    ) -> Operation:
        """An operation (NNI's factory; ``cell_name`` is not supported: the graph is one flat graph)."""
        if cell_name is not None:
            raise MutationError(None, f"cell operations are not supported (got cell_name={cell_name!r})")
        return Operation(type_name, parameters, attributes)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.parameters.items())
        return f"{self.type.rsplit('.', 1)[-1]}({params})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Operation) and (self.type, self.parameters) == (other.type, other.parameters)

    __hash__ = None  # type: ignore[assignment]


# ------------------------------------------------------------------------------------------------ edges, nodes


class Edge:
    """A tensor flowing from ``head`` (its output ``head_slot``, None: its only output) into ``tail``'s input
    ``tail_slot`` (the position among the node's inputs), as in NNI."""

    def __init__(self, head: tuple[Node, int | None], tail: tuple[Node, int | None]) -> None:
        self.head, self.head_slot = head
        self.tail, self.tail_slot = tail

    @property
    def graph(self) -> Graph:
        return self.head.graph

    def remove(self) -> None:
        """Disconnect: the tail no longer takes this input (an argument of a call is dropped, later ones shift)."""
        self.tail._drop_input(self.tail_slot if self.tail_slot is not None else 0, self.head)

    def __repr__(self) -> str:
        return f"Edge(head=({self.head.name}, {self.head_slot}), tail=({self.tail.name}, {self.tail_slot}))"


def _map(tree: Any, fn: Callable[[Any], Any]) -> Any:
    """``tree`` (tuples, lists, dicts, slices of leaves) with ``fn`` applied to every leaf, as plain containers."""
    if isinstance(tree, tuple):
        return tuple(_map(a, fn) for a in tree)
    if isinstance(tree, list):
        return [_map(a, fn) for a in tree]
    if isinstance(tree, dict):
        return {k: _map(v, fn) for k, v in tree.items()}
    if isinstance(tree, slice):
        return slice(_map(tree.start, fn), _map(tree.stop, fn), _map(tree.step, fn))
    return fn(tree)


def _refs(tree: Any) -> list[Node]:
    """The nodes referenced in an argument tree, in order."""
    out: list[Node] = []
    _map(tree, lambda a: out.append(a) if isinstance(a, Node) else None)
    return out


class Node:
    """One operation of the graph (NNI's ``Node``); create new ones with :meth:`Graph.add_node`.

    Attributes:
        graph: the graph it is in.
        id: unique in the model (a node keeps its id across forks).
        name: unique in the graph: the module's path (``"features.0"``) for a module, else fx's node name.
        label: the ``label`` of the module (a :class:`Placeholder` or any module with a ``label`` attribute),
            else the module's path; None for functions.
        operation: the :class:`Operation`.
    """

    def __init__(
        self, graph: Graph, node_id: int, name: str, operation: Operation, *, kind: str, target: Any = None
    ) -> None:
        self.graph = graph
        self.id = node_id
        self.name = name
        self.operation = operation
        self.label: str | None = None
        self.python_name: str | None = None  # the module path, for a module
        self.kind = kind  # fx: placeholder, call_module, call_function, call_method, get_attr, output
        self.target = target
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}
        self._original: Operation | None = None  # the traced operation (None for new nodes)

    # --- topology ---
    @property
    def incoming_edges(self) -> list[Edge]:
        return [Edge((h, None), (self, i)) for i, h in enumerate(_refs((self.args, self.kwargs)))]

    @property
    def outgoing_edges(self) -> list[Edge]:
        return [e for n in self.graph.nodes for e in n.incoming_edges if e.head is self]

    @property
    def predecessors(self) -> list[Node]:
        return list(dict.fromkeys(_refs((self.args, self.kwargs))))

    @property
    def successors(self) -> list[Node]:
        return [n for n in self.graph.nodes if self in _refs((n.args, n.kwargs))]

    @property
    def cell(self) -> Graph:
        raise MutationError(
            self.graph.model._mutator, f"node {self.name!r} is not a cell: the traced graph is one flat graph"
        )

    # --- edits ---
    def update_label(self, label: str | None) -> None:
        self.label = label

    def update_operation(self, type_name: Any, parameters: Mapping[str, Any] | None = None) -> None:
        """Make this node compute ``type_name(**parameters)``: a module class (or its import path, e.g.
        ``"torch.nn.Conv2d"``), or, for a function node, a function (parameters: its keyword arguments).

        The node keeps its inputs. The type is imported and the parameters are checked against its signature
        now, so a wrong one is reported by the mutator that gave it.
        """
        mutator = self.graph.model._mutator
        params = dict(parameters or {})
        if self.kind in ("placeholder", "output"):
            raise MutationError(
                mutator, f"node {self.name!r} is the graph's {self.kind}; it has no operation"
            )
        resolved = _resolve_type(type_name, mutator, self.name)
        if isinstance(resolved, type):
            if not issubclass(resolved, nn.Module):
                raise MutationError(
                    mutator, f"node {self.name!r}: operation type {type_name!r} is not an nn.Module class"
                )
            _check_signature(resolved, params, mutator, self.name)
            self.kind = "call_module"
        elif self.kind not in ("call_function",):
            raise MutationError(
                mutator,
                f"node {self.name!r} is a {self.kind} node; give a module class for it (got {type_name!r})",
            )
        else:
            self.target = resolved
        self.operation = Operation(type_name if isinstance(type_name, str) else _type_name(resolved), params)
        self.graph.model._mark(self)

    def remove(self) -> None:
        """Take this node out of the graph.

        A node nothing reads from goes with its input edges (NNI's ``Node.remove`` wants those removed first);
        a node with one input is bypassed: what read its output reads its input instead.
        """
        mutator = self.graph.model._mutator
        if self.kind in ("placeholder", "output"):
            raise MutationError(
                mutator, f"node {self.name!r} is the graph's {self.kind}; it cannot be removed"
            )
        users = self.successors
        if users:
            inputs = self.predecessors
            if len(inputs) != 1:
                raise MutationError(
                    mutator,
                    f"node {self.name!r} has {len(inputs)} inputs and its output is read by "
                    f"{[u.name for u in users]}; remove those edges first (edge.remove()), or remove a node with "
                    "one input",
                )
            for user in users:
                user._replace_input(self, inputs[0])
        self.graph._nodes.remove(self)
        self.graph.model._mark(self)

    # --- helpers for edges ---
    def _replace_input(self, old: Node, new: Node) -> None:
        def swap(a: Any) -> Any:
            return new if a is old else a

        self.args = _map(self.args, swap)
        self.kwargs = _map(self.kwargs, swap)

    def _drop_input(self, slot: int, head: Node) -> None:
        counter = itertools.count()

        def drop(tree: Any) -> Any:
            if isinstance(tree, Node):
                return tree
            if isinstance(tree, (list, tuple)):
                kept = []
                for item in tree:
                    if isinstance(item, Node) and next(counter) == slot:
                        continue
                    kept.append(drop(item))
                return type(tree)(kept)
            if isinstance(tree, dict):
                return {k: v for k, v in tree.items() if not (isinstance(v, Node) and next(counter) == slot)}
            return tree

        args = drop(self.args)
        self.kwargs = drop(self.kwargs)
        self.args = tuple(args)
        self.graph.model._mark(self)

    def __repr__(self) -> str:
        return f"Node(id={self.id}, name={self.name!r}, label={self.label!r}, operation={self.operation!r})"


def _check_signature(cls: type, params: Mapping[str, Any], mutator: str | None, node: str) -> None:
    try:
        inspect.signature(cls).bind(**params)
    except TypeError as e:
        raise MutationError(
            mutator, f"node {node!r}: {cls.__name__} does not take the parameters {dict(params)!r} ({e})"
        ) from e
    except ValueError:
        pass  # no signature to check against


# ------------------------------------------------------------------------------------------------ graph, model


class Graph:
    """The nodes and edges of the model (NNI's ``Graph``; the trace is one flat graph, ``model.root_graph``)."""

    def __init__(self, model: Model, graph_id: int, name: str | None = None) -> None:
        self.model = model
        self.id = graph_id
        self.name = name or "_model"
        self._nodes: list[Node] = []

    @property
    def nodes(self) -> list[Node]:
        return list(self._nodes)

    @property
    def input_node(self) -> Node | None:
        inputs = [n for n in self._nodes if n.kind == "placeholder"]
        return inputs[0] if inputs else None

    @property
    def input_nodes(self) -> list[Node]:
        return [n for n in self._nodes if n.kind == "placeholder"]

    @property
    def output_node(self) -> Node:
        return next(n for n in self._nodes if n.kind == "output")

    @property
    def input_names(self) -> list[str]:
        return [n.name for n in self.input_nodes]

    @property
    def output_names(self) -> list[str]:
        return [n.name for n in self.output_node.predecessors]

    @property
    def hidden_nodes(self) -> list[Node]:
        return [n for n in self._nodes if n.kind not in ("placeholder", "output")]

    @property
    def edges(self) -> list[Edge]:
        return [e for n in self._nodes for e in n.incoming_edges]

    def get_node_by_id(self, node_id: int) -> Node | None:
        return next((n for n in self._nodes if n.id == node_id), None)

    def get_node_by_name(self, name: str) -> Node | None:
        node = next((n for n in self._nodes if n.name == name), None)
        return self.model._touch(node) if node is not None else None

    def get_nodes_by_type(self, operation_type: Any) -> list[Node]:
        return [self.model._touch(n) for n in self._nodes if _type_matches(n.operation.type, operation_type)]

    def get_nodes_by_label(self, label: str) -> list[Node]:
        found = [n for n in self._nodes if n.label == label or n.python_name == label]
        if not found:
            self.model._missed.append(label)
        return [self.model._touch(n) for n in found]

    def add_node(
        self, name: str, operation_or_type: Operation | Any, parameters: Mapping[str, Any] | None = None
    ) -> Node:
        """A new module node without inputs (connect it with :meth:`add_edge`)."""
        mutator = self.model._mutator
        if any(n.name == name for n in self._nodes):
            raise MutationError(
                mutator, f"the graph already has a node named {name!r}; give the new node another name"
            )
        if isinstance(operation_or_type, Operation):
            type_, params = operation_or_type.type, operation_or_type.parameters
        else:
            type_, params = operation_or_type, dict(parameters or {})
        node = Node(self, self.model._next_id(), name, Operation("?"), kind="call_module")
        node.label = name
        self._nodes.insert(len(self._nodes) - 1, node)  # before the output
        node.update_operation(type_, params)
        return node

    def add_edge(self, head: Node | tuple[Node, int | None], tail: Node | tuple[Node, int | None]) -> Edge:
        """Feed ``head``'s output to ``tail``, as its input number ``tail_slot`` (None or -1: after the others)."""
        head_node, head_slot = head if isinstance(head, tuple) else (head, None)
        tail_node, tail_slot = tail if isinstance(tail, tuple) else (tail, None)
        if head_slot is not None:
            raise MutationError(
                self.model._mutator, f"edge from {head_node.name!r}: head slots are not supported; give None"
            )
        args = list(tail_node.args)
        position = len(args) if tail_slot is None or tail_slot < 0 else tail_slot
        args.insert(position, head_node)
        tail_node.args = tuple(args)
        self.model._mark(tail_node)
        return Edge((head_node, None), (tail_node, position))

    def del_edge(self, edge: Edge) -> None:
        edge.remove()

    def insert_node_on_edge(
        self,
        edge: Edge,
        name: str,
        operation_or_type: Operation | Any,
        parameters: Mapping[str, Any] | None = None,
    ) -> Node:
        """A new module node between ``edge``'s head and tail (NNI's ``Graph.insert_node_on_edge``)."""
        node = self.add_node(name, operation_or_type, parameters)
        self._nodes.remove(node)
        self._nodes.insert(self._nodes.index(edge.tail), node)
        node.args = (edge.head,)
        slot = itertools.count()

        def swap(a: Any) -> Any:
            if isinstance(a, Node):
                return node if next(slot) == edge.tail_slot else a
            return a

        edge.tail.args = _map(edge.tail.args, swap)
        edge.tail.kwargs = _map(edge.tail.kwargs, swap)
        self.model._mark(edge.tail)
        return node

    def fork(self) -> Graph:
        return self.model.fork().root_graph

    def __repr__(self) -> str:
        return f"Graph(name={self.name!r}, nodes={[n.name for n in self._nodes]})"


def _type_matches(have: str, want: Any) -> bool:
    if isinstance(want, type) or callable(want):
        want = _type_name(want)
    if not isinstance(want, str):
        return False
    want = want.removeprefix("__torch__.")
    return have == want or have.rsplit(".", 1)[-1] == want or have.endswith("." + want)


class Model:
    """The base model as a graph that mutators edit (NNI's ``Model``); made by :func:`trace`.

    Attributes:
        python_class: the class of the traced module.
        python_init_params: its constructor arguments where known (a ModelSpace's ``init_kwargs``), else ``{}``.
        status: a :class:`ModelStatus` value.
        root_graph: the graph (the trace is flat: ``graphs`` holds only it).
        history: the mutations applied (:class:`~nni_pl.nas.mutator.Mutation`), oldest first.
        evaluator, metric, intermediate_metrics: as in NNI (set by who evaluates it; unused here).
    """

    def __init__(self, root: nn.Module, python_class: type | None = None) -> None:
        self._root = root
        self.python_class = python_class or type(root)
        self.python_init_params: dict[str, Any] = dict(getattr(root, "init_kwargs", None) or {})
        self.status = ModelStatus.Mutating
        self.root_graph = Graph(self, 0)
        self.history: list[Any] = []
        self.evaluator: Any = None
        self.metric: Any = None
        self.intermediate_metrics: list[Any] = []
        self._ids = 0
        self._mutator: str | None = None  # the label of the mutator at work, for error messages
        self._missed: list[str] = []  # labels looked up in vain
        self._touched: list[str] = []  # nodes the mutator at work looked up or changed
        self._changed: list[str] = []  # nodes the mutator at work changed

    @property
    def graphs(self) -> dict[str, Graph]:
        return {self.root_graph.name: self.root_graph}

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _touch(self, node: Node) -> Node:
        self._touched.append(node.name)
        return node

    def _mark(self, node: Node) -> None:
        self._touched.append(node.name)
        self._changed.append(node.name)

    def fork(self) -> Model:
        """A copy to mutate (the base module is shared, the graph is copied)."""
        return copy.deepcopy(self, memo={id(self._root): self._root})

    def get_nodes(self) -> list[Node]:
        return self.root_graph.nodes

    def get_node_by_name(self, node_name: str) -> Node | None:
        return self.root_graph.get_node_by_name(node_name)

    def get_nodes_by_label(self, label: str) -> list[Node]:
        """The nodes with this label (a module's ``label``, e.g. a :class:`Placeholder`'s), or whose module path
        it is."""
        return self.root_graph.get_nodes_by_label(label)

    def get_nodes_by_type(self, type_name: Any) -> list[Node]:
        """The nodes of this operation type: an import path (``"torch.nn.modules.conv.Conv2d"``), a class name
        (``"Conv2d"``) or the class itself."""
        return self.root_graph.get_nodes_by_type(type_name)

    def labels(self) -> list[str]:
        """Every node label, for messages."""
        return list(dict.fromkeys(n.label for n in self.get_nodes() if n.label))

    def to_module(self) -> fx.GraphModule:
        """The model as a ``torch.fx.GraphModule`` (a fresh copy of the base module's unchanged layers, the
        changed and new ones built as ``type(**parameters)``)."""
        from nni_pl.nas._graph_fx import build

        return build(self)

    def __repr__(self) -> str:
        return f"Model({self.python_class.__name__}, nodes={[n.name for n in self.get_nodes()]})"
