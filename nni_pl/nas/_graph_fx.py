"""``torch.fx`` on both sides of the graph IR: :func:`trace` a module into a :class:`~nni_pl.nas._graph_ir.Model`,
:func:`build` the mutated model back into a ``torch.fx.GraphModule``, and say which node (and which mutator's
edit) breaks a model whose forward fails.

Example:
    >>> import torch
    >>> model = trace(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()))
    >>> [(n.name, n.operation.type) for n in model.root_graph.hidden_nodes]
    [('0', 'torch.nn.modules.linear.Linear'), ('1', 'torch.nn.modules.activation.ReLU')]
    >>> model.get_node_by_name("0").operation.parameters["out_features"] = 2
    >>> build(model)(torch.zeros(1, 4)).shape
    torch.Size([1, 2])
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import fx, nn

from nni_pl.nas._graph_ir import (
    GET_ATTR,
    INPUT,
    OUTPUT,
    Graph,
    Model,
    ModelStatus,
    Node,
    Operation,
    Placeholder,
    _map,
    _refs,
    _resolve_type,
    _type_name,
    module_parameters,
)
from nni_pl.nas.mutator import MutationError

__all__ = ["build", "trace"]


# ------------------------------------------------------------------------------------------------ trace / build


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if (
            isinstance(m, Placeholder)
            or hasattr(type(m), "_nas_base")
            or isinstance(getattr(m, "label", None), str)
        ):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace(module: nn.Module) -> Model:
    """The graph IR of ``module`` (a ``torch.fx`` symbolic trace; its forward must be traceable by fx).

    Raises:
        MutationError: the forward cannot be traced (data-dependent control flow): the message says why and
            suggests making the offending submodule a leaf (give it a ``label`` or decorate it with
            ``@basic_unit``).
    """
    if not isinstance(module, nn.Module):
        raise MutationError(None, f"the base model must be an nn.Module, got {type(module).__name__}")
    tracer = _Tracer()
    try:
        fx_graph = tracer.trace(module)
    except Exception as e:
        raise MutationError(
            None,
            f"torch.fx cannot trace {type(module).__name__}.forward ({type(e).__name__}: {e}); make the "
            "untraceable submodule one node (give it a `label` attribute or decorate its class with "
            "nni_pl.nas.basic_unit)",
        ) from e
    model = Model(module)
    graph = model.root_graph
    mapping: dict[fx.Node, Node] = {}
    for fx_node, name in zip(fx_graph.nodes, _node_names(fx_graph), strict=True):
        node = _from_fx(graph, module, fx_node)
        node.name = name
        node.args = _map(fx_node.args, lambda a: mapping[a] if isinstance(a, fx.Node) else a)
        node.kwargs = _map(fx_node.kwargs, lambda a: mapping[a] if isinstance(a, fx.Node) else a)
        if node.kind in ("call_function", "call_method"):  # constant keyword arguments are its parameters
            node.operation.parameters = {k: v for k, v in node.kwargs.items() if not _refs(v)}
            node.kwargs = {k: v for k, v in node.kwargs.items() if _refs(v)}
        node._original = copy.deepcopy(node.operation)
        mapping[fx_node] = node
        graph._nodes.append(node)
    model.status = ModelStatus.Frozen
    return model


def _node_names(fx_graph: fx.Graph) -> list[str]:
    """A unique name per node: a module's path for its first call, else fx's name (``conv_1``, ``relu``)."""
    first: dict[str, fx.Node] = {}
    for n in fx_graph.nodes:
        if n.op == "call_module":
            first.setdefault(str(n.target), n)
    taken = set(first)
    names = []
    for n in fx_graph.nodes:
        if n.op == "call_module" and first[str(n.target)] is n:
            names.append(str(n.target))
            continue
        name, i = n.name, 1
        while name in taken:
            name, i = f"{n.name}_{i}", i + 1
        taken.add(name)
        names.append(name)
    return names


def _from_fx(graph: Graph, root: nn.Module, fx_node: fx.Node) -> Node:
    model = graph.model
    if fx_node.op == "call_module":
        sub = root.get_submodule(fx_node.target)
        op = Operation(_type_name(type(sub)), module_parameters(sub))
        node = Node(graph, model._next_id(), fx_node.target, op, kind="call_module", target=fx_node.target)
        label = getattr(sub, "label", None)
        node.label = label if isinstance(label, str) else fx_node.target
        node.python_name = fx_node.target
        return node
    if fx_node.op == "call_function":
        op = Operation(_type_name(fx_node.target), {})
        return Node(graph, model._next_id(), fx_node.name, op, kind="call_function", target=fx_node.target)
    if fx_node.op == "call_method":
        op = Operation(f"torch.Tensor.{fx_node.target}", {})
        return Node(graph, model._next_id(), fx_node.name, op, kind="call_method", target=fx_node.target)
    if fx_node.op == "get_attr":
        op = Operation(GET_ATTR, {"target": fx_node.target})
        return Node(graph, model._next_id(), fx_node.name, op, kind="get_attr", target=fx_node.target)
    kind = "placeholder" if fx_node.op == "placeholder" else "output"
    return Node(
        graph,
        model._next_id(),
        fx_node.name,
        Operation(INPUT if kind == "placeholder" else OUTPUT),
        kind=kind,
        target=fx_node.target,
    )


def _unchanged(node: Node) -> bool:
    original = node._original
    if original is None:
        return False
    return node.operation.type == original.type and _same(node.operation.parameters, original.parameters)


def _same(a: Any, b: Any) -> bool:
    """Equal values, tensors compared by shape and content (``==`` on them is elementwise)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and bool(torch.equal(a, b))
        )
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    try:
        return bool(a == b)
    except Exception:  # values that do not compare: count as changed
        return False


def _topological(nodes: list[Node], mutator: str | None) -> list[Node]:
    """``nodes`` in an order where every node comes after its inputs (the list order where it already is)."""
    placed: set[int] = set()
    out: list[Node] = []
    pending = list(nodes)
    known = {id(n) for n in nodes}
    while pending:
        progressed = False
        rest = []
        for n in pending:
            refs = _refs((n.args, n.kwargs))
            missing = [r for r in refs if id(r) not in known]
            if missing:
                raise MutationError(
                    mutator,
                    f"node {n.name!r} reads from {missing[0].name!r}, which was removed from the graph",
                )
            if n.kind == "output" and len(pending) > 1 and any(p is not n for p in pending):
                rest.append(n)
                continue
            if all(id(r) in placed for r in refs):
                out.append(n)
                placed.add(id(n))
                progressed = True
            else:
                rest.append(n)
        if not progressed:
            raise MutationError(mutator, f"the graph has a cycle through {[n.name for n in rest]}")
        pending = rest
    return out


def build(model: Model) -> fx.GraphModule:
    """The GraphModule of ``model``'s graph."""
    nodes = model.get_nodes()
    root = copy.deepcopy(model._root)
    mutator = model._mutator or _last_mutator(model)
    fx_graph = fx.Graph()
    env: dict[int, fx.Node] = {}
    used_targets: set[str] = {n.target for n in nodes if n.kind == "call_module" and _unchanged(n)}
    taken = {name for name, _ in root.named_modules()}
    replaced: dict[str, nn.Module] = {}
    names: dict[str, str] = {}  # fx node name -> graph node name, for diagnosis
    for node in _topological(nodes, mutator):
        args = _map(node.args, lambda a: env[id(a)] if isinstance(a, Node) else a)
        kwargs = _map(node.kwargs, lambda a: env[id(a)] if isinstance(a, Node) else a)
        if node.kind == "placeholder":
            out = fx_graph.placeholder(
                str(node.target), default_value=args[0] if args else inspect.Signature.empty
            )
        elif node.kind == "output":
            out = fx_graph.output(args[0] if args else None)
        elif node.kind == "get_attr":
            out = fx_graph.get_attr(node.target)
        elif node.kind == "call_method":
            out = fx_graph.call_method(
                node.target, tuple(args), {**dict(kwargs), **node.operation.parameters}
            )
        elif node.kind == "call_function":
            out = fx_graph.call_function(
                node.target, tuple(args), {**dict(kwargs), **node.operation.parameters}
            )
        else:
            target = node.target if isinstance(node.target, str) else None
            if not _unchanged(node):
                module = _instantiate(node, mutator)
                if target is None or target in used_targets or target in replaced:
                    target = _fresh_name(node.name, taken)
                replaced[target] = module
                taken.add(target)
            out = fx_graph.call_module(target, tuple(args), dict(kwargs))
        names[out.name] = node.name
        env[id(node)] = out
    for target, module in replaced.items():
        _set_submodule(root, target, module)
    try:
        fx_graph.lint()
        gm = fx.GraphModule(root, fx_graph, class_name=model.python_class.__name__)
    except Exception as e:
        raise MutationError(
            mutator, f"the mutated graph is not a valid model ({type(e).__name__}: {e})"
        ) from e
    gm.delete_all_unused_submodules()
    _attach_diagnosis(gm, model, names)
    return gm


def _last_mutator(model: Model) -> str | None:
    return getattr(model.history[-1], "label", None) if model.history else None


def _fresh_name(name: str, taken: set[str]) -> str:
    base = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "node"
    if base[0].isdigit():
        base = "_" + base
    candidate, i = base, 1
    while candidate in taken or hasattr(nn.Module, candidate):
        candidate, i = f"{base}_{i}", i + 1
    return candidate


def _set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    parent_path, _, leaf = target.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, leaf, module)


def _instantiate(node: Node, mutator: str | None) -> nn.Module:
    cls = _resolve_type(node.operation.type, mutator, node.name)
    params = dict(node.operation.parameters)
    if isinstance(cls, type) and issubclass(cls, Placeholder):  # its parameters are the related_info
        params = {"label": node.label or node.name, **params}
    try:
        module = cls(**params)
    except Exception as e:
        raise MutationError(
            _node_mutator(node) or mutator,
            f"node {node.name!r}: {node.operation!r} cannot be built ({type(e).__name__}: {e})",
        ) from e
    if not isinstance(module, nn.Module):
        raise MutationError(
            _node_mutator(node) or mutator,
            f"node {node.name!r}: {node.operation.type} did not build an nn.Module",
        )
    return module


def _node_mutator(node: Node) -> str | None:
    """The label of the last mutator that changed ``node``."""
    for mutation in reversed(node.graph.model.history):
        if node.name in getattr(mutation, "changed", ()):
            return mutation.label
    return None


# ------------------------------------------------------------------------------------------------ diagnosis


def _attach_diagnosis(gm: fx.GraphModule, model: Model, names: Mapping[str, str]) -> None:
    """When the forward of a mutated model raises, run it again node by node (without gradients) to say which
    node failed and which mutators changed which nodes; an unmutated model's errors and running out of memory
    pass through as they are."""
    changed = {
        name: mutation.label for mutation in model.history for name in getattr(mutation, "changed", ())
    }
    if not changed:
        return
    cls = type(gm)
    plain = cls.forward

    @functools.wraps(plain)  # the generated signature (torch.export reads it)
    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return plain(self, *args, **kwargs)
        except (MutationError, torch.OutOfMemoryError):
            raise
        except Exception as e:
            raise _diagnose(self, e, args, changed, names) from e

    cls.forward = forward  # the class is this instance's own (fx makes one per GraphModule)


def _diagnose(
    gm: fx.GraphModule,
    error: Exception,
    args: tuple[Any, ...],
    changed: Mapping[str, str],
    names: Mapping[str, str],
) -> Exception:
    failed: list[str] = []

    class _Finder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            try:
                return super().run_node(n)
            except Exception:
                failed.append(n.name)
                raise

    try:
        with torch.no_grad():
            _Finder(gm).run(*args)
    except Exception:
        pass
    if not failed:
        return error
    where = names.get(failed[0], failed[0])
    mutators = sorted(set(changed.values()))
    mutator = changed.get(where) or (mutators[-1] if mutators else None)
    edits = ", ".join(f"{name!r} by {label!r}" for name, label in changed.items()) or "none"
    return MutationError(
        mutator,
        f"the mutated model fails at node {where!r} ({type(error).__name__}: {error}); nodes changed: {edits}",
    )
