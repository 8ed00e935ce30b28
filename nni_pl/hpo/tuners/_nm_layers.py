"""Stub layers of the NetworkMorphism graph: NNI's layer type names, their numbers and shapes, Auto-Keras' constants.

Example:
    >>> StubLayer.conv(2, 3, 16, 3).output_shape([(8, 8, 3)])
    (8, 8, 16)
    >>> family_of("StubBatchNormalization2d")
    'BatchNormalization'
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

__all__ = [
    "AGGREGATES",
    "JSON_KEYS",
    "KEEPS_WIDTH",
    "PARAMS",
    "GraphError",
    "Shape",
    "StubLayer",
    "family_of",
]

MAX_LAYERS = 100
N_NEIGHBOURS = 8
MAX_MODEL_SIZE = 1 << 24
BETA = 2.576
T_MIN = 0.0001
MODEL_LEN = 3
MODEL_WIDTH = 64
POOLING_KERNEL_SIZE = 2
DENSE_DROPOUT_RATE = 0.5
CONV_DROPOUT_RATE = 0.25
MLP_DROPOUT_RATE = 0.25

#: the numbers after a layer's input and output node ids in NNI's JSON, per layer family
PARAMS: dict[str, tuple[str, ...]] = {
    "Conv": ("input_channel", "filters", "kernel_size", "stride", "padding"),
    "Dense": ("input_units", "units"),
    "BatchNormalization": ("num_features",),
    "Dropout": ("rate",),
    "Pooling": ("kernel_size", "stride", "padding"),
}
_NO_PARAMS = ("ReLU", "Softmax", "GlobalPooling", "Add", "Concatenate", "Flatten")
AGGREGATES = ("Add", "Concatenate")
DIMENSIONED = ("Conv", "BatchNormalization", "Dropout", "Pooling", "GlobalPooling")
_TYPE = re.compile(r"^Stub([A-Za-z]+?)([123]d)?$")
#: layers whose output keeps the width (last axis) of their input: widening flows through them
KEEPS_WIDTH = ("BatchNormalization", "ReLU", "Softmax", "Dropout", "Pooling", "GlobalPooling", "Add")
#: JSON keys of a graph (what a trial receives as its parameters)
JSON_KEYS = frozenset(
    {
        "input_shape",
        "weighted",
        "operation_history",
        "layer_id_to_input_node_ids",
        "layer_id_to_output_node_ids",
        "adj_list",
        "reverse_adj_list",
        "node_list",
        "layer_list",
        "vis",
    }
)

Shape = tuple[int, ...]


class GraphError(ValueError):
    """A graph (or its JSON) that is not a consistent network."""


@cache
def family_of(type_name: str) -> str:
    """``"StubConv2d"`` -> ``"Conv"``; raises :class:`GraphError` for a name NNI does not have."""
    m = _TYPE.match(type_name) if isinstance(type_name, str) else None
    fam = m.group(1) if m else ""
    if fam not in PARAMS and fam not in _NO_PARAMS:
        raise GraphError(f"unknown layer type {type_name!r}")
    if (m.group(2) is None) == (fam in DIMENSIONED):  # type: ignore[union-attr]
        raise GraphError(f"unknown layer type {type_name!r}")
    return fam


@dataclass(eq=False)
class StubLayer:
    """One layer without weights: NNI's stub type name (``"StubConv2d"``) and its numbers.

    Example:
        >>> StubLayer.conv(2, 3, 16, 3).params
        {'input_channel': 3, 'filters': 16, 'kernel_size': 3, 'stride': 1, 'padding': 1}
    """

    type: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return family_of(self.type)

    @property
    def n_dim(self) -> int:
        return int(self.type[-2]) if self.type[-1] == "d" and self.type[-2].isdigit() else 0

    def copy(self) -> StubLayer:
        return StubLayer(self.type, dict(self.params))

    # --- constructors --------------------------------------------------------------------------------------
    @staticmethod
    def conv(n_dim: int, input_channel: int, filters: int, kernel_size: int, stride: int = 1) -> StubLayer:
        return StubLayer(
            f"StubConv{n_dim}d",
            {
                "input_channel": input_channel,
                "filters": filters,
                "kernel_size": kernel_size,
                "stride": stride,
                "padding": kernel_size // 2,
            },
        )

    @staticmethod
    def dense(input_units: int, units: int) -> StubLayer:
        return StubLayer("StubDense", {"input_units": input_units, "units": units})

    @staticmethod
    def simple(name: str, n_dim: int = 0, **params: Any) -> StubLayer:
        return StubLayer(f"Stub{name}" + (f"{n_dim}d" if name in DIMENSIONED else ""), params)

    # --- shapes and size ---------------------------------------------------------------------------------
    def output_shape(self, inputs: Sequence[Shape]) -> Shape:
        """The shape this layer gives for ``inputs`` (channels last); raises :class:`GraphError` if they do not fit."""
        fam, p, x = self.family, self.params, inputs[0]
        if fam in AGGREGATES:
            if len(inputs) < 2 or any(s[:-1] != x[:-1] for s in inputs):
                raise GraphError(f"{self.type} got inputs of shapes {list(inputs)}")
            if fam == "Add":
                if any(s != x for s in inputs):
                    raise GraphError(f"StubAdd got inputs of different shapes {list(inputs)}")
                return x
            return (*x[:-1], sum(s[-1] for s in inputs))
        if len(inputs) != 1:
            raise GraphError(f"{self.type} takes one input, got {len(inputs)}")
        if fam == "Dense":
            if len(x) != 1 or x[0] != p["input_units"]:
                raise GraphError(f"StubDense with input_units {p['input_units']} got an input of shape {x}")
            return (p["units"],)
        if fam == "Flatten":
            return (math.prod(x),)
        if fam in DIMENSIONED and fam != "Dropout" and len(x) != self.n_dim + 1:
            raise GraphError(f"{self.type} got an input of shape {x}")
        if fam == "Conv":
            if x[-1] != p["input_channel"]:
                raise GraphError(
                    f"{self.type} with input_channel {p['input_channel']} got an input of shape {x}"
                )
            k, s, pad = p["kernel_size"], p["stride"], p["padding"]
            return (*((d + 2 * pad - k) // s + 1 for d in x[:-1]), p["filters"])
        if fam == "BatchNormalization" and x[-1] != p["num_features"]:
            raise GraphError(f"{self.type} with num_features {p['num_features']} got an input of shape {x}")
        if fam == "Pooling":
            return (*(max(d // p["kernel_size"], 1) for d in x[:-1]), x[-1])
        if fam == "GlobalPooling":
            return (x[-1],)
        return x

    def size(self) -> int:
        """Number of parameters (NNI's ``size()``; batch norm counts its running statistics)."""
        fam, p = self.family, self.params
        if fam == "Conv":
            return (p["input_channel"] * p["kernel_size"] ** max(self.n_dim, 1) + 1) * p["filters"]
        if fam == "Dense":
            return (p["input_units"] + 1) * p["units"]
        if fam == "BatchNormalization":
            return 4 * p["num_features"]
        return 0

    def width(self) -> int:
        return int(self.params["filters"] if self.family == "Conv" else self.params["units"])

    def describe(self) -> tuple[Any, ...]:
        """What the edit distance compares: the type and the numbers that shape the layer."""
        fam, p = self.family, self.params
        if fam == "Conv":
            return (self.type, p["filters"], p["kernel_size"], p["stride"])
        if fam == "Pooling":
            return (self.type, p["padding"], p["kernel_size"], p["stride"])
        if fam == "Dense":
            return (self.type, p["units"])
        return (self.type,)
