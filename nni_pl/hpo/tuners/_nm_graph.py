"""The network graph of the NetworkMorphism tuner: tensors joined by stub layers, the morphisms, NNI's JSON form.

A :class:`Graph` is a DAG whose nodes are tensors (shapes without the batch axis, channels last, as NNI writes
them) and whose edges are layers (:mod:`._nm_layers`); an ``Add`` or ``Concatenate`` layer is one layer on
several edges. The graph never holds weights (NNI's generated graphs are unweighted too: each trial trains its
network from scratch), so it is plain Python; the torch module is built by ``_nm_torch`` only when a trial asks.

The three morphisms of Auto-Keras (Jin et al., "Auto-Keras: An Efficient Neural Architecture Search System",
KDD 2019) grow a graph: :meth:`Graph.to_deeper_model` inserts a shape-preserving layer, :meth:`Graph.to_wider_model`
widens a convolution or dense layer (and every layer tied to its width), :meth:`Graph.to_add_skip_model` /
:meth:`Graph.to_concat_skip_model` add a skip connection. ``_nm_transform`` draws random morphs.

Example:
    >>> from nni_pl.hpo.tuners._nm_transform import cnn_graph
    >>> g = cnn_graph(n_output_node=10, input_shape=(8, 8, 1), model_len=2, model_width=16)
    >>> [layer.type for layer in g.layer_list][:4]
    ['StubReLU', 'StubBatchNormalization2d', 'StubConv2d', 'StubPooling2d']
    >>> g.node_list[-1]
    (10,)
    >>> json_to_graph(graph_to_json(g)).key() == g.key()
    True
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from nni_pl.hpo.tuners._nm_layers import (
    AGGREGATES,
    JSON_KEYS,
    KEEPS_WIDTH,
    PARAMS,
    GraphError,
    Shape,
    StubLayer,
    family_of,
)

__all__ = ["Graph", "graph_to_json", "json_to_graph", "layer_description"]


class Graph:
    """A network as NNI's network-morphism tuner sees it: tensors (nodes) joined by layers (edges).

    Attributes (NNI's names, as in the JSON): ``input_shape``, ``weighted`` (always ``False`` here),
    ``node_list`` (shapes by node id), ``layer_list`` (:class:`StubLayer` by layer id),
    ``layer_id_to_input_node_ids``, ``layer_id_to_output_node_ids``, ``adj_list`` (node -> ``[(node, layer)]``),
    ``reverse_adj_list`` and ``operation_history`` (the morphisms applied since the father graph).

    Example:
        >>> g = Graph((4,))
        >>> out = g.add_layer(StubLayer.dense(4, 3), 0)
        >>> g.node_list[out], g.n_layers
        ((3,), 1)
    """

    def __init__(self, input_shape: Sequence[int], weighted: bool = False) -> None:
        self.input_shape: Shape = tuple(int(d) for d in input_shape)
        self.weighted = False  # weights are never carried (see the module docstring)
        self.node_list: list[Shape] = [self.input_shape]
        self.layer_list: list[StubLayer] = []
        self.layer_id_to_input_node_ids: dict[int, list[int]] = {}
        self.layer_id_to_output_node_ids: dict[int, list[int]] = {}
        self.adj_list: dict[int, list[tuple[int, int]]] = {0: []}
        self.reverse_adj_list: dict[int, list[tuple[int, int]]] = {0: []}
        self.operation_history: list[list[Any]] = []
        self._memo: dict[str, Any] = {}  # derived structure (orders, chains, descriptor), cleared on change

    @property
    def n_dim(self) -> int:
        return len(self.input_shape) - 1

    @property
    def n_nodes(self) -> int:
        return len(self.node_list)

    @property
    def n_layers(self) -> int:
        return len(self.layer_list)

    def copy(self) -> Graph:
        g = Graph.__new__(Graph)
        g.input_shape, g.weighted = self.input_shape, False
        g.node_list = list(self.node_list)
        g.layer_list = [layer.copy() for layer in self.layer_list]
        g.layer_id_to_input_node_ids = {k: list(v) for k, v in self.layer_id_to_input_node_ids.items()}
        g.layer_id_to_output_node_ids = {k: list(v) for k, v in self.layer_id_to_output_node_ids.items()}
        g.adj_list = {k: list(v) for k, v in self.adj_list.items()}
        g.reverse_adj_list = {k: list(v) for k, v in self.reverse_adj_list.items()}
        g.operation_history = [list(op) for op in self.operation_history]
        g._memo = dict(self._memo)  # the values are never mutated, only replaced
        return g

    # --- building ----------------------------------------------------------------------------------------
    def _changed(self) -> None:
        self._memo = {}

    def _add_node(self, shape: Shape) -> int:
        self._changed()
        node_id = len(self.node_list)
        self.node_list.append(tuple(shape))
        self.adj_list[node_id] = []
        self.reverse_adj_list[node_id] = []
        return node_id

    def _add_edge(self, layer_id: int, u: int, v: int) -> None:
        self._changed()
        ins = self.layer_id_to_input_node_ids.setdefault(layer_id, [])
        outs = self.layer_id_to_output_node_ids.setdefault(layer_id, [])
        if u not in ins:
            ins.append(u)
        if v not in outs:
            outs.append(v)
        self.adj_list[u].append((v, layer_id))
        self.reverse_adj_list[v].append((u, layer_id))

    def add_layer(self, layer: StubLayer, input_node_id: int | Sequence[int]) -> int:
        """Append ``layer`` reading ``input_node_id`` (a list for ``Add``/``Concatenate``); returns its output node."""
        inputs = [input_node_id] if isinstance(input_node_id, int) else list(input_node_id)
        out = self._add_node(layer.output_shape([self.node_list[i] for i in inputs]))
        layer_id = len(self.layer_list)
        self.layer_list.append(layer)
        for i in inputs:
            self._add_edge(layer_id, i, out)
        return out

    def _redirect_output(self, layer_id: int, new_v: int) -> None:
        """Make ``layer_id`` write ``new_v`` instead of its output node (inputs unchanged)."""
        self._changed()
        old_v = self.layer_id_to_output_node_ids[layer_id][0]
        for u in self.layer_id_to_input_node_ids[layer_id]:
            self.adj_list[u] = [
                (new_v if (v == old_v and lid == layer_id) else v, lid) for v, lid in self.adj_list[u]
            ]
        moved = [e for e in self.reverse_adj_list[old_v] if e[1] == layer_id]
        self.reverse_adj_list[old_v] = [e for e in self.reverse_adj_list[old_v] if e[1] != layer_id]
        self.reverse_adj_list[new_v].extend(moved)
        self.layer_id_to_output_node_ids[layer_id] = [new_v]

    # --- order and shapes --------------------------------------------------------------------------------
    @property
    def topological_order(self) -> list[int]:
        """Node ids from the input to the output (Kahn's algorithm, lowest id first among ready nodes)."""
        if "order" not in self._memo:
            self._memo["order"] = self._topological_order()
        return list(self._memo["order"])

    def _topological_order(self) -> list[int]:
        indegree = [0] * self.n_nodes
        for u in range(self.n_nodes):
            for v, _ in self.adj_list[u]:
                indegree[v] += 1
        ready = [i for i in range(self.n_nodes) if indegree[i] == 0]
        order: list[int] = []
        while ready:
            u = ready.pop(0)
            order.append(u)
            for v, _ in self.adj_list[u]:
                indegree[v] -= 1
                if indegree[v] == 0:
                    ready.append(v)
        return order

    def producer(self, node_id: int) -> int | None:
        """The layer that writes ``node_id`` (``None`` for the input)."""
        edges = self.reverse_adj_list[node_id]
        return edges[0][1] if edges else None

    def refresh_shapes(self) -> None:
        """Recompute every node's shape in topological order, first setting each layer's input size
        (convolution channels, dense units, batch-norm features) from the tensor it reads.

        Raises:
            GraphError: the graph is not a consistent network (a cycle, shapes that do not fit, a dangling node).
        """
        self._changed()
        order = self.topological_order
        if len(order) != self.n_nodes:
            raise GraphError("the graph has a cycle")
        for v in order[1:]:
            lid = self.producer(v)
            if lid is None:
                raise GraphError(f"node {v} is not the input and no layer writes it")
            layer = self.layer_list[lid]
            inputs = [self.node_list[i] for i in self.layer_id_to_input_node_ids[lid]]
            fam = layer.family
            if fam == "Conv" and inputs[0]:
                layer.params["input_channel"] = inputs[0][-1]
            elif fam == "Dense" and len(inputs[0]) == 1:
                layer.params["input_units"] = inputs[0][0]
            elif fam == "BatchNormalization" and inputs[0]:
                layer.params["num_features"] = inputs[0][-1]
            self.node_list[v] = layer.output_shape(inputs)
        outputs = [v for v in range(self.n_nodes) if not self.adj_list[v]]
        if len(outputs) != 1:
            raise GraphError(f"the graph has {len(outputs)} output nodes, expected 1")

    def check(self) -> None:
        """Raise :class:`GraphError` unless the stored shapes and layer sizes are those of a consistent network."""
        stored = list(self.node_list)
        params = [dict(layer.params) for layer in self.layer_list]
        self.refresh_shapes()
        if stored != self.node_list or params != [layer.params for layer in self.layer_list]:
            self.node_list = stored
            for layer, p in zip(self.layer_list, params):
                layer.params = p
            raise GraphError("the node shapes or layer sizes do not match the layers")

    def size(self) -> int:
        """Parameters of the network (NNI's ``size()``)."""
        return sum(layer.size() for layer in self.layer_list)

    # --- the main chain and where morphisms apply -----------------------------------------------------------
    def get_main_chain(self) -> list[int]:
        """The node ids of the longest path from the input (skip connections branch off it)."""
        if "chain" not in self._memo:
            self._memo["chain"] = self._main_chain()
        return list(self._memo["chain"])

    def _main_chain(self) -> list[int]:
        order = self.topological_order
        dist = dict.fromkeys(range(self.n_nodes), 0)
        pre = {i: i for i in range(self.n_nodes)}
        for u in order:
            for v, _ in self.adj_list[u]:
                if dist[u] + 1 > dist[v]:
                    dist[v], pre[v] = dist[u] + 1, u
        end = max(range(self.n_nodes), key=lambda i: (dist[i], -i))
        chain = [end]
        while pre[chain[-1]] != chain[-1]:
            chain.append(pre[chain[-1]])
        return chain[::-1]

    def get_main_chain_layers(self) -> list[int]:
        chain = self.get_main_chain()
        on = set(chain)
        out = []
        for u in chain:
            for v, lid in self.adj_list[u]:
                if v in on:
                    out.append(lid)
        return out

    def deep_layer_ids(self) -> list[int]:
        """Layers after which a layer may be inserted: the main chain up to global pooling (convolutional
        part), or up to the output layer in a network without one; never after ``Add``/``Concatenate``."""
        chain = self.get_main_chain_layers()
        out = []
        has_global = any(self.layer_list[i].family == "GlobalPooling" for i in chain)
        for lid in chain if has_global else chain[:-1]:
            fam = self.layer_list[lid].family
            if fam == "GlobalPooling":
                break
            if fam not in AGGREGATES:
                out.append(lid)
        return out

    def wide_layer_ids(self) -> list[int]:
        """Layers that may be widened: main-chain convolutions but the last, dense layers but the output."""
        convs = [i for i in self.get_main_chain_layers() if self.layer_list[i].family == "Conv"]
        pos = {v: k for k, v in enumerate(self.topological_order)}
        dense = sorted(
            (i for i in range(self.n_layers) if self.layer_list[i].family == "Dense"),
            key=lambda i: pos[self.layer_id_to_output_node_ids[i][0]],
        )
        return convs[:-1] + dense[:-1]

    def skip_connection_layer_ids(self) -> list[int]:
        return self.deep_layer_ids()[:-1]

    # --- the morphisms (NNI's names) ---------------------------------------------------------------------
    def to_deeper_model(self, target_id: int, new_layer: StubLayer) -> None:
        """Insert ``new_layer`` (which keeps the shape) right after layer ``target_id``."""
        end = self.layer_id_to_output_node_ids[target_id][0]
        mid = self._add_node(self.node_list[end])
        self._redirect_output(target_id, mid)
        layer_id = len(self.layer_list)
        self.layer_list.append(new_layer)
        self._add_edge(layer_id, mid, end)
        self.refresh_shapes()
        self.operation_history.append(["to_deeper_model", target_id, layer_description(self, layer_id)])

    def to_wider_model(self, pre_layer_id: int, n_add: int) -> None:
        """Add ``n_add`` filters/units to layer ``pre_layer_id``; layers tied to its width (other branches of an
        ``Add``) widen with it and the layers reading it take the wider input.

        Raises:
            GraphError: the width is tied to the network's input or to a ``Concatenate`` output.
        """
        start = self.layer_id_to_output_node_ids[pre_layer_id][0]
        tied, todo, producers = {start}, [start], []
        while todo:
            u = todo.pop()
            for v, lid in self.adj_list[u]:
                if self.layer_list[lid].family in KEEPS_WIDTH and v not in tied:
                    tied.add(v)
                    todo.append(v)
            for _, lid in self.reverse_adj_list[u]:
                fam = self.layer_list[lid].family
                if fam in ("Conv", "Dense"):
                    if lid not in producers:
                        producers.append(lid)
                elif fam in KEEPS_WIDTH:
                    for w in self.layer_id_to_input_node_ids[lid]:
                        if w not in tied:
                            tied.add(w)
                            todo.append(w)
                else:
                    raise GraphError(f"the width of layer {pre_layer_id} is tied to a {fam} output")
            if u == 0:
                raise GraphError(f"the width of layer {pre_layer_id} is tied to the input")
        for lid in producers:
            layer = self.layer_list[lid]
            layer.params["filters" if layer.family == "Conv" else "units"] += n_add
        self.refresh_shapes()
        self.operation_history.append(["to_wider_model", pre_layer_id, n_add])

    def _skip_branch(self, start_node: int, end_node: int) -> int:
        """From ``start_node``: copies of the down-sampling layers on the way to ``end_node``, then a ReLU."""
        path = self._path_layers(start_node, end_node)
        out = start_node
        for lid in path:
            layer = self.layer_list[lid]
            if layer.family == "Pooling":
                out = self.add_layer(layer.copy(), out)
            elif layer.family == "Conv" and layer.params["stride"] != 1:
                ch = self.node_list[out][-1]
                out = self.add_layer(StubLayer.conv(self.n_dim, ch, ch, 1, layer.params["stride"]), out)
        return self.add_layer(StubLayer.simple("ReLU"), out)

    def _path_layers(self, start: int, end: int) -> list[int]:
        """The layers of the first path (depth first) from ``start`` to ``end``."""
        stack: list[tuple[int, list[int]]] = [(start, [])]
        while stack:
            u, layers = stack.pop()
            if u == end:
                return layers
            for v, lid in reversed(self.adj_list[u]):
                stack.append((v, [*layers, lid]))
        raise GraphError(f"no path from node {start} to node {end}")

    def _projection(self, n_in: int, n_out: int) -> StubLayer:
        return StubLayer.conv(self.n_dim, n_in, n_out, 1) if self.n_dim else StubLayer.dense(n_in, n_out)

    def to_add_skip_model(self, start_id: int, end_id: int) -> None:
        """Add the output of layer ``start_id`` (down-sampled, ReLU, 1x1 convolution) to that of ``end_id``."""
        start_node = self.layer_id_to_output_node_ids[start_id][0]
        end_node = self.layer_id_to_output_node_ids[end_id][0]
        branch = self._skip_branch(start_node, end_node)
        branch = self.add_layer(
            self._projection(self.node_list[start_node][-1], self.node_list[end_node][-1]), branch
        )
        joined = self._add_node(self.node_list[end_node])
        self._redirect_output(end_id, joined)
        add_id = len(self.layer_list)
        self.layer_list.append(StubLayer.simple("Add"))
        self._add_edge(add_id, joined, end_node)
        self._add_edge(add_id, branch, end_node)
        self.refresh_shapes()
        self.operation_history.append(["to_add_skip_model", start_id, end_id])

    def to_concat_skip_model(self, start_id: int, end_id: int) -> None:
        """Concatenate the output of layer ``start_id`` (down-sampled, ReLU) to that of ``end_id``, then a 1x1
        convolution back to ``end_id``'s width."""
        start_node = self.layer_id_to_output_node_ids[start_id][0]
        end_node = self.layer_id_to_output_node_ids[end_id][0]
        branch = self._skip_branch(start_node, end_node)
        joined = self._add_node(self.node_list[end_node])
        self._redirect_output(end_id, joined)
        concat_shape = StubLayer.simple("Concatenate").output_shape(
            [self.node_list[joined], self.node_list[branch]]
        )
        concat_node = self._add_node(concat_shape)
        concat_id = len(self.layer_list)
        self.layer_list.append(StubLayer.simple("Concatenate"))
        self._add_edge(concat_id, joined, concat_node)
        self._add_edge(concat_id, branch, concat_node)
        proj_id = len(self.layer_list)
        self.layer_list.append(self._projection(concat_shape[-1], self.node_list[end_node][-1]))
        self._add_edge(proj_id, concat_node, end_node)
        self.refresh_shapes()
        self.operation_history.append(["to_concat_skip_model", start_id, end_id])

    # --- descriptor --------------------------------------------------------------------------------------
    def extract_descriptor(self) -> tuple[tuple[tuple[Any, ...], ...], tuple[tuple[int, int, str], ...]]:
        """``(layers, skips)``: the main chain's layers (:meth:`StubLayer.describe`) and the skip connections as
        ``(from, to, "add" | "concat")`` positions on the main chain: what the kernel's edit distance compares."""
        if "descriptor" not in self._memo:
            self._memo["descriptor"] = self._descriptor()
        return self._memo["descriptor"]

    def _descriptor(self) -> tuple[tuple[tuple[Any, ...], ...], tuple[tuple[int, int, str], ...]]:
        chain = self.get_main_chain()
        index = {u: k for k, u in enumerate(chain)}
        layers = []
        for u in chain:
            for v, lid in self.adj_list[u]:
                if v in index:
                    layers.append(self.layer_list[lid].describe())
        skips = []
        for u in chain:
            for v, lid in self.adj_list[u]:
                if v in index and index[v] - index[u] == 1:
                    continue
                kind, a, b, layer_id = "", u, v, lid
                while not (a in index and b in index):  # follow the branch back to the main chain
                    kind = _join_kind(self.layer_list[layer_id].family) or kind
                    a = b
                    if not self.adj_list[b]:  # never rejoins (cannot happen for a morphed network)
                        break
                    b, layer_id = self.adj_list[b][0]
                if a == u:  # a direct edge between non-neighbours on the chain
                    kind = _join_kind(self.layer_list[lid].family) or kind
                    a = v
                skips.append((index[u], index[a], kind or "add"))
        return tuple(layers), tuple(sorted(skips))

    def key(self) -> str:
        """An identity of the architecture as the tuner compares them (equal descriptors: the same network)."""
        if "key" not in self._memo:
            self._memo["key"] = json.dumps(list(self.extract_descriptor()))
        return self._memo["key"]

    # --- output --------------------------------------------------------------------------------------------
    def produce_json_model(self) -> dict[str, Any]:
        """This graph as NNI's JSON object (a dict of plain JSON values; see :func:`graph_to_json`)."""
        return {
            "input_shape": list(self.input_shape),
            "weighted": False,
            "operation_history": [list(op) for op in self.operation_history],
            "layer_id_to_input_node_ids": {
                str(k): list(v) for k, v in self.layer_id_to_input_node_ids.items()
            },
            "layer_id_to_output_node_ids": {
                str(k): list(v) for k, v in self.layer_id_to_output_node_ids.items()
            },
            "adj_list": {str(k): [list(e) for e in v] for k, v in self.adj_list.items()},
            "reverse_adj_list": {str(k): [list(e) for e in v] for k, v in self.reverse_adj_list.items()},
            "node_list": [[i, list(s)] for i, s in enumerate(self.node_list)],
            "layer_list": [[i, layer_description(self, i)] for i in range(self.n_layers)],
            "vis": None,
        }

    def produce_torch_model(self) -> Any:
        """A ``torch.nn.Module`` computing this network (inputs channels first: ``N x C x H x W``).

        Example:
            >>> import torch
            >>> from nni_pl.hpo.tuners._nm_transform import mlp_graph
            >>> model = mlp_graph(3, (4,), model_len=1, model_width=5).produce_torch_model()
            >>> tuple(model(torch.zeros(2, 4)).shape)
            (2, 3)
        """
        from nni_pl.hpo.tuners._nm_torch import TorchModel

        return TorchModel(self)


def _join_kind(fam: str) -> str:
    return {"Add": "add", "Concatenate": "concat"}.get(fam, "")


def layer_description(graph: Graph, layer_id: int) -> list[Any]:
    """NNI's list for one layer: type, input node id (a list for ``Add``/``Concatenate``), output node id, numbers."""
    layer = graph.layer_list[layer_id]
    ins = graph.layer_id_to_input_node_ids[layer_id]
    fam = layer.family
    first: Any = list(ins) if fam in AGGREGATES else ins[0]
    return [layer.type, first, graph.layer_id_to_output_node_ids[layer_id][0]] + [
        layer.params[name] for name in PARAMS.get(fam, ())
    ]


def graph_to_json(graph: Graph) -> dict[str, Any]:
    """The JSON object of ``graph`` (NNI's ``graph.produce_json_model()``); ``json.dumps`` it for NNI's string."""
    return graph.produce_json_model()


def json_to_graph(ir_model_json: str | Mapping[str, Any]) -> Graph:
    """Rebuild a :class:`Graph` from NNI's JSON (a string, or the parsed dict a trial gets as its parameters).

    Raises:
        GraphError: the JSON is not a graph in NNI's format, or its shapes do not fit its layers.
    """
    data = json.loads(ir_model_json) if isinstance(ir_model_json, (str, bytes)) else ir_model_json
    if not isinstance(data, Mapping):
        raise GraphError(f"a network graph is a JSON object, got {type(data).__name__}")
    missing = sorted(k for k in JSON_KEYS - {"vis", "operation_history"} if k not in data)
    if missing:
        raise GraphError(f"not a network graph: missing {', '.join(missing)}")
    try:
        g = Graph(data["input_shape"])
        nodes = sorted((int(i), tuple(int(d) for d in s)) for i, s in data["node_list"])
        if [i for i, _ in nodes] != list(range(len(nodes))) or not nodes:
            raise GraphError("node_list must number the nodes 0, 1, 2, ...")
        g.node_list = [s for _, s in nodes]
        g.adj_list = {int(k): [(int(v), int(lid)) for v, lid in e] for k, e in data["adj_list"].items()}
        g.reverse_adj_list = {
            int(k): [(int(v), int(lid)) for v, lid in e] for k, e in data["reverse_adj_list"].items()
        }
        g.layer_id_to_input_node_ids = {
            int(k): [int(x) for x in v] for k, v in data["layer_id_to_input_node_ids"].items()
        }
        g.layer_id_to_output_node_ids = {
            int(k): [int(x) for x in v] for k, v in data["layer_id_to_output_node_ids"].items()
        }
        layers = sorted((int(i), desc) for i, desc in data["layer_list"])
        if [i for i, _ in layers] != list(range(len(layers))):
            raise GraphError("layer_list must number the layers 0, 1, 2, ...")
        for _, desc in layers:
            fam = family_of(desc[0])
            names = PARAMS.get(fam, ())
            values = list(desc[3:])
            if fam == "Conv" and len(values) in (3, 4):  # NNI's docs' example omits stride and padding
                values += [1, int(values[2]) // 2][len(values) - 3 :]
            if len(values) != len(names):
                raise GraphError(f"{desc[0]} needs {len(names)} numbers after its nodes, got {desc[3:]}")
            g.layer_list.append(StubLayer(desc[0], dict(zip(names, values))))
        g.operation_history = [list(op) for op in data.get("operation_history") or []]
        if set(g.adj_list) != set(range(g.n_nodes)) or set(g.reverse_adj_list) != set(range(g.n_nodes)):
            raise GraphError("adj_list and reverse_adj_list must have an entry per node")
        g.check()
    except GraphError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise GraphError(f"not a network graph in NNI's format: {type(e).__name__}: {e}") from e
    return g
