"""The torch module of a NetworkMorphism graph (imported only when a trial builds its network).

Example:
    >>> import torch
    >>> from nni_pl.hpo.tuners._nm_transform import cnn_graph
    >>> model = TorchModel(cnn_graph(10, (8, 8, 1), 2, 8))
    >>> tuple(model(torch.zeros(4, 1, 8, 8)).shape)
    (4, 10)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nni_pl.hpo.tuners._nm_graph import Graph
from nni_pl.hpo.tuners._nm_layers import StubLayer

__all__ = ["TorchModel"]


class _GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).mean(-1)


class _Add(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class _Concatenate(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


class _Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def _real_layer(layer: StubLayer, in_shape: tuple[int, ...]) -> nn.Module:
    fam, p, n = layer.family, layer.params, layer.n_dim
    if fam == "Conv":
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[n - 1]
        return conv(
            p["input_channel"], p["filters"], p["kernel_size"], stride=p["stride"], padding=p["padding"]
        )
    if fam == "Dense":
        return nn.Linear(p["input_units"], p["units"])
    if fam == "BatchNormalization":
        return (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[n - 1](p["num_features"])
    if fam == "Dropout":
        if len(in_shape) == 1:  # NNI puts Dropout2d after global pooling: element-wise dropout on a vector
            return nn.Dropout(p["rate"])
        return (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)[n - 1](p["rate"])
    if fam == "Pooling":
        k = p["kernel_size"]
        if all(d >= k for d in in_shape[:-1]):
            return (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)[n - 1](k, stride=p["stride"])
        # smaller than the window: the graph's shape rule keeps at least one cell per axis
        out = tuple(max(d // k, 1) for d in in_shape[:-1])
        return (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)[n - 1](out)
    if fam == "GlobalPooling":
        return _GlobalAvgPool()
    if fam == "ReLU":
        return nn.ReLU()
    if fam == "Softmax":
        return nn.LogSoftmax(dim=1)
    if fam == "Add":
        return _Add()
    if fam == "Concatenate":
        return _Concatenate()
    return _Flatten()


class TorchModel(nn.Module):
    """A network built from a :class:`~nni_pl.hpo.tuners._nm_graph.Graph` (NNI's ``TorchModel``).

    Layers are registered as modules ``"0"``, ``"1"``, ... by layer id, as in NNI. Inputs are channels first
    (``N x C x H x W`` for 2-D images); a graph with a vector input flattens what it is given.
    """

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph.copy()
        self.layers = []
        for lid, layer in enumerate(graph.layer_list):
            in_shape = graph.node_list[graph.layer_id_to_input_node_ids[lid][0]]
            module = _real_layer(layer, in_shape)
            self.layers.append(module)
            self.add_module(str(lid), module)
        order = graph.topological_order
        self._input, self._output = order[0], order[-1]
        # (output node, layer id, input nodes) in an order where every input is computed first
        self._steps: list[tuple[int, int, list[int]]] = []
        for v in order[1:]:
            lid = graph.producer(v)
            assert lid is not None
            self._steps.append((v, lid, list(graph.layer_id_to_input_node_ids[lid])))
        self._flatten_input = len(graph.input_shape) == 1

    def forward(self, input_tensor: torch.Tensor) -> Any:
        x = input_tensor.flatten(1) if self._flatten_input and input_tensor.dim() > 2 else input_tensor
        values = {self._input: x}
        for v, lid, ins in self._steps:
            values[v] = self.layers[lid](*(values[i] for i in ins))
        return values[self._output]
