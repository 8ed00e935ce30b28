"""The starting networks (NNI's ``CnnGenerator`` / ``MlpGenerator``) and random morphs of a graph (``transform``).

Example:
    >>> [layer.type for layer in mlp_graph(10, (64,), model_len=1, model_width=32).layer_list]
    ['StubDense', 'StubDropout1d', 'StubReLU', 'StubDense']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nni_pl.hpo.tuners._nm_graph import Graph
from nni_pl.hpo.tuners._nm_layers import (
    CONV_DROPOUT_RATE,
    DENSE_DROPOUT_RATE,
    MAX_LAYERS,
    MAX_MODEL_SIZE,
    MLP_DROPOUT_RATE,
    N_NEIGHBOURS,
    POOLING_KERNEL_SIZE,
    GraphError,
    Shape,
    StubLayer,
)

__all__ = ["cnn_graph", "mlp_graph", "transform"]


# --- generators (NNI's CnnGenerator / MlpGenerator) --------------------------------------------------------
def cnn_graph(n_output_node: int, input_shape: Sequence[int], model_len: int, model_width: int) -> Graph:
    """The starting CNN: ``model_len`` blocks of ReLU, batch norm, 3x3 convolution (and max pooling), then
    global average pooling, dropout, a dense layer of ``model_width``, ReLU and the output layer."""
    g = Graph(input_shape)
    n = g.n_dim
    if not 1 <= n <= 3:
        raise GraphError(f"a CNN input has 1 to 3 spatial axes plus channels, got shape {tuple(input_shape)}")
    pooling_len = model_len // 4
    out, channels = 0, g.input_shape[-1]
    for i in range(model_len):
        out = g.add_layer(StubLayer.simple("ReLU"), out)
        out = g.add_layer(StubLayer.simple("BatchNormalization", n, num_features=g.node_list[out][-1]), out)
        out = g.add_layer(StubLayer.conv(n, channels, model_width, 3), out)
        channels = model_width
        if pooling_len == 0 or ((i + 1) % pooling_len == 0 and i != model_len - 1):
            out = g.add_layer(
                StubLayer.simple(
                    "Pooling", n, kernel_size=POOLING_KERNEL_SIZE, stride=POOLING_KERNEL_SIZE, padding=0
                ),
                out,
            )
    out = g.add_layer(StubLayer.simple("GlobalPooling", n), out)
    out = g.add_layer(StubLayer.simple("Dropout", n, rate=CONV_DROPOUT_RATE), out)
    out = g.add_layer(StubLayer.dense(g.node_list[out][0], model_width), out)
    out = g.add_layer(StubLayer.simple("ReLU"), out)
    g.add_layer(StubLayer.dense(model_width, n_output_node), out)
    return g


def mlp_graph(n_output_node: int, input_shape: Sequence[int], model_len: int, model_width: int) -> Graph:
    """The starting multi-layer perceptron: ``model_len`` blocks of dense, dropout and ReLU, then the output layer."""
    g = Graph(input_shape)
    if g.n_dim != 0:
        raise GraphError(f"an MLP input is a vector, got shape {tuple(input_shape)}")
    out, units = 0, g.input_shape[0]
    for _ in range(model_len):
        out = g.add_layer(StubLayer.dense(units, model_width), out)
        out = g.add_layer(StubLayer.simple("Dropout", 1, rate=MLP_DROPOUT_RATE), out)
        out = g.add_layer(StubLayer.simple("ReLU"), out)
        units = model_width
    g.add_layer(StubLayer.dense(units, n_output_node), out)
    return g


# --- random morphs ---------------------------------------------------------------------------------------------
def _new_layer(graph: Graph, after: StubLayer, shape: Shape, rng: Any) -> StubLayer:
    """A layer that keeps ``shape``, to insert after ``after`` (never the same kind twice in a row)."""
    n = graph.n_dim
    if len(shape) == 1:
        kinds = [k for k in ("Dense", "Dropout", "ReLU") if k != after.family]
    else:
        kinds = [k for k in ("Conv", "BatchNormalization", "ReLU") if k != after.family]
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "Dense":
        return StubLayer.dense(shape[0], shape[0])
    if kind == "Dropout":
        return StubLayer.simple("Dropout", 1, rate=DENSE_DROPOUT_RATE)
    if kind == "Conv":
        return StubLayer.conv(n, shape[-1], shape[-1], (1, 3, 5)[int(rng.integers(3))])
    if kind == "BatchNormalization":
        return StubLayer.simple("BatchNormalization", n, num_features=shape[-1])
    return StubLayer.simple("ReLU")


def to_deeper_graph(graph: Graph, rng: Any) -> Graph | None:
    ids = graph.deep_layer_ids()
    if not ids or len(ids) >= MAX_LAYERS:
        return None
    target = ids[int(rng.integers(len(ids)))]
    shape = graph.node_list[graph.layer_id_to_output_node_ids[target][0]]
    graph.to_deeper_model(target, _new_layer(graph, graph.layer_list[target], shape, rng))
    return graph


def to_wider_graph(graph: Graph, rng: Any) -> Graph | None:
    ids = graph.wide_layer_ids()
    if not ids:
        return None
    target = ids[int(rng.integers(len(ids)))]
    graph.to_wider_model(target, graph.layer_list[target].width())  # doubles it, as Auto-Keras does
    return graph


def to_skip_connection_graph(graph: Graph, rng: Any) -> Graph | None:
    ids = graph.skip_connection_layer_ids()
    pairs = [
        (a, b, kind) for kind in ("add", "concat") for a in range(len(ids)) for b in range(a + 1, len(ids))
    ]
    if not pairs:
        return None
    a, b, kind = pairs[int(rng.integers(len(pairs)))]
    if kind == "add":
        graph.to_add_skip_model(ids[a], ids[b])
    else:
        graph.to_concat_skip_model(ids[a], ids[b])
    return graph


_MORPHS = (to_deeper_graph, to_wider_graph, to_skip_connection_graph)


def transform(
    graph: Graph, rng: Any, *, max_model_size: int = MAX_MODEL_SIZE, n_neighbours: int = N_NEIGHBOURS
) -> list[Graph]:
    """Up to ``n_neighbours`` random morphs of ``graph`` (deeper, wider or a skip connection, each a copy with
    its ``operation_history`` extended), within ``max_model_size`` parameters and with distinct skip connections.

    Example:
        >>> import numpy as np
        >>> g = cnn_graph(10, (8, 8, 1), 3, 8)
        >>> kids = transform(g, np.random.default_rng(0))
        >>> len(kids) > 0 and all(k.key() != g.key() for k in kids)
        True
    """
    out: list[Graph] = []
    for _ in range(2 * n_neighbours):
        morph = _MORPHS[int(rng.integers(len(_MORPHS)))]
        try:
            child = morph(graph.copy(), rng)
        except GraphError:
            child = None
        if child is not None and child.size() <= max_model_size:
            skips = child.extract_descriptor()[1]
            if len(set(skips)) == len(skips):
                out.append(child)
        if len(out) >= n_neighbours:
            break
    return out
