"""Which tensors of the exported ONNX graph TensorRT runs in int8, with which ranges: pure Python, no TensorRT.

NNI's calibration dict names modules (``'conv1'``); TensorRT's ONNX parser names its tensors after the ONNX
values and its layers after the ONNX nodes. :func:`map_layers_to_onnx` finds each module's nodes in the graph,
and :func:`plan_tensorrt_precision` turns the calibration dict into a :class:`TensorRTPlan`: a dynamic range
per tensor name and a bit width per node name, which :mod:`nni_pl.compression.export.tensorrt` applies to the
parsed network (:func:`~nni_pl.compression.export._trt_network.assign_layer_precisions` decides per layer).

A module's nodes are found, in this order, by

1. the ``pkg.torch.onnx.name_scopes`` metadata the ``torch.export``-based exporter writes on every node;
2. the scoped node names of the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``), which names a
   node ``/<scope>/.../<OpType>[_k]`` where each scope is the module's name from its last non-numeric atom on
   (``layer1.0.conv`` -> ``/layer1/layer1.0/conv/Conv``);
3. the nodes that read the module's weight initializer (``<name>.weight``).

Example:
    >>> import onnx.helper as oh
    >>> from onnx import TensorProto
    >>> graph = oh.make_graph(
    ...     [oh.make_node("Gemm", ["x", "fc.weight"], ["/fc/Gemm_output_0"], name="/fc/Gemm"),
    ...      oh.make_node("Relu", ["/fc/Gemm_output_0"], ["y"], name="/act/Relu")],
    ...     "g", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
    ...     [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    ...     [oh.make_tensor("fc.weight", TensorProto.FLOAT, [2, 2], [1.0, -3.0, 0.5, 2.0])])
    >>> plan = plan_tensorrt_precision(oh.make_model(graph), {
    ...     "fc": {"weight_bits": 8, "input_bits": 8, "tracked_min_input": -1.0, "tracked_max_input": 2.0},
    ...     "act": {"output_bits": 8, "tracked_min_output": 0.0, "tracked_max_output": 4.0}})
    >>> plan.ranges  # the ReLU's output range also bounds the Gemm's output (the ReLU's input)
    {'x': (-1.0, 2.0), 'fc.weight': (-3.0, 3.0), 'y': (0.0, 4.0), '/fc/Gemm_output_0': (-4.0, 4.0)}
    >>> plan.node_bits
    {'/fc/Gemm': 8, '/act/Relu': 8}
"""

from __future__ import annotations

import ast
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nni_pl.errors import ConfigError, did_you_mean

__all__ = [
    "ALLOWED_BITS",
    "OnnxLayer",
    "TensorRTPlan",
    "map_layers_to_onnx",
    "plan_tensorrt_precision",
    "validate_calibration_config",
]

log = logging.getLogger(__name__)

ALLOWED_BITS: tuple[int, ...] = (8, 16, 32)
"""Bit widths TensorRT runs: 8 = int8 (with a dynamic range), 16 = fp16, 32 = fp32."""

_KINDS = ("weight", "input", "output")
# ONNX ops whose output lies within the range of their (first) input: a range carries over to the output
_RANGE_KEEPING_OPS = frozenset(
    {
        "Flatten",
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Identity",
        "Dropout",
        "MaxPool",
        "GlobalMaxPool",
        "AveragePool",
        "GlobalAveragePool",
    }
)
_WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


@dataclass(frozen=True)
class OnnxLayer:
    """The part of the ONNX graph one module became.

    Attributes:
        name: the module's qualified name (``model.named_modules()``).
        nodes: its ONNX node names, in graph order.
        op_types: the op types of those nodes.
        inputs: activation tensors it reads (not initializers, not constants), the main one first.
        outputs: tensors it produces that something outside it reads (or that are graph outputs).
        weight: the initializer of its weight (``conv1.weight``; a folded BatchNorm renames it), or ``None``.
    """

    name: str
    nodes: tuple[str, ...]
    op_types: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    weight: str | None


@dataclass(frozen=True)
class TensorRTPlan:
    """What TensorRT is told about the graph: ranges by tensor name, bit widths by node name.

    Attributes:
        layers: the :class:`OnnxLayer` of every layer the calibration dict names.
        ranges: ``{tensor_name: (min, max)}`` for every tensor an int8 layer reads or writes (activations from
            the tracked ranges; weights from the initializer's largest magnitude).
        node_bits: ``{node_name: bits}`` for the nodes of the layers named (8, 16 or 32).
        extra_layer_bits: the precision of every other layer.
    """

    layers: Mapping[str, OnnxLayer]
    ranges: Mapping[str, tuple[float, float]]
    node_bits: Mapping[str, int]
    extra_layer_bits: int = 32

    @property
    def uses_int8(self) -> bool:
        """Whether the builder needs its INT8 flag."""
        return self.extra_layer_bits == 8 or 8 in self.node_bits.values()

    @property
    def uses_fp16(self) -> bool:
        """Whether the builder needs its FP16 flag."""
        return self.extra_layer_bits == 16 or 16 in self.node_bits.values()


# -- the calibration dict -----------------------------------------------------------------------------------
def _bits_key(entry: Mapping[str, Any], kind: str) -> str | None:
    for key in (f"{kind}_bits", f"{kind}_bit"):  # NNI's docs show both spellings
        if key in entry:
            return key
    return None


def validate_calibration_config(
    config: Any, module_names: Iterable[str] | None = None, *, field_name: str = "config"
) -> dict[str, dict[str, Any]]:
    """Check an NNI calibration dict for TensorRT; return it normalised (``<kind>_bits`` keys, float ranges).

    Args:
        config: ``{layer_name: {'weight_bits': 8, 'input_bits': 8, 'tracked_min_input': ..., ...}}``.
        module_names: the model's module names; a layer not among them is an error.
        field_name: the argument name used in error messages.

    Raises:
        ConfigError: a layer the model lacks, bits TensorRT cannot run (allowed: 8, 16, 32), an 8-bit input or
            output without its tracked range, or a range that is not finite or has min > max.

    Example:
        >>> validate_calibration_config({"fc": {"weight_bits": 4}})
        Traceback (most recent call last):
        ...
        nni_pl.errors.ConfigError: config field "config['fc']['weight_bits']": TensorRT runs 8, 16 or 32 bits, got 4; quantize this layer with 8 bits (int8), or give 16/32 to run it in fp16/fp32
    """
    if not isinstance(config, Mapping):
        raise ConfigError(
            field_name,
            f"must be the calibration dict a quantizer's export_model() returns ({{layer_name: {{...}}}}), got "
            f"{type(config).__name__}",
        )
    names = None if module_names is None else list(module_names)
    out: dict[str, dict[str, Any]] = {}
    for layer, entry in config.items():
        where = f"{field_name}[{layer!r}]"
        if names is not None and layer not in names:
            raise ConfigError(
                where,
                f"the model has no module named {layer!r}{did_you_mean(str(layer), names)}; name the layers as "
                "model.named_modules() does, or remove the entry",
            )
        if not isinstance(entry, Mapping):
            raise ConfigError(where, f"must be a dict like {{'weight_bits': 8, ...}}, got {entry!r}")
        clean: dict[str, Any] = {}
        for kind in _KINDS:
            key = _bits_key(entry, kind)
            if key is None:
                continue
            bits = entry[key]
            if isinstance(bits, bool) or not isinstance(bits, (int, float)) or int(bits) != bits:
                raise ConfigError(f"{where}[{key!r}]", f"must be an integer bit width, got {bits!r}")
            bits = int(bits)
            if bits not in ALLOWED_BITS:
                raise ConfigError(
                    f"{where}[{key!r}]",
                    f"TensorRT runs 8, 16 or 32 bits, got {bits}; quantize this layer with 8 bits (int8), or give "
                    "16/32 to run it in fp16/fp32",
                )
            clean[f"{kind}_bits"] = bits
            if kind == "weight":
                continue
            lo_key, hi_key = f"tracked_min_{kind}", f"tracked_max_{kind}"
            if bits == 8:
                missing = [k for k in (lo_key, hi_key) if entry.get(k) is None]
                if missing:
                    raise ConfigError(
                        where,
                        f"has {key}=8 but no {' or '.join(missing)}; int8 needs the tensor's range: export the "
                        "dict after calibration or training (quantizer.export_model), or give the range",
                    )
            if entry.get(lo_key) is not None and entry.get(hi_key) is not None:
                lo, hi = (
                    _number(entry[lo_key], f"{where}[{lo_key!r}]"),
                    _number(entry[hi_key], f"{where}[{hi_key!r}]"),
                )
                if lo > hi:
                    raise ConfigError(where, f"{lo_key} <= {hi_key} must hold, got ({lo}, {hi}); swap them")
                clean[lo_key], clean[hi_key] = lo, hi
        if not clean:
            raise ConfigError(
                where, f"quantizes nothing (no weight_bits, input_bits or output_bits), got {dict(entry)!r}"
            )
        out[str(layer)] = clean
    return out


def _number(value: Any, where: str) -> float:
    try:
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        raise ConfigError(where, f"must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(where, f"must be finite, got {number}; calibrate the layer again")
    return number


# -- modules -> ONNX nodes -----------------------------------------------------------------------------------
def _unqualified(name: str) -> str:
    """The TorchScript exporter's scope name of a module: its name from the last non-numeric atom on."""
    atoms = name.split(".")
    for i in range(len(atoms) - 1, -1, -1):
        if not atoms[i].isnumeric():
            return ".".join(atoms[i:])
    return name


def _scope_path(module_name: str) -> tuple[str, ...]:
    atoms = module_name.split(".")
    return tuple(_unqualified(".".join(atoms[: i + 1])) for i in range(len(atoms)))


def _name_scopes(node: Any) -> list[str] | None:
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            return [str(s) for s in scopes] if isinstance(scopes, (list, tuple)) else None
    return None


def _nodes_of(graph: Any, module_name: str, initializers: set[str]) -> list[Any]:
    nodes = list(graph.node)
    by_metadata = [n for n in nodes if module_name in (_name_scopes(n) or ())]
    if by_metadata:
        return by_metadata
    path = _scope_path(module_name)
    by_scope = [
        n for n in nodes if tuple(n.name.split("/")[1:-1])[: len(path)] == path and n.name.startswith("/")
    ]
    if by_scope:
        return by_scope
    weight = f"{module_name}.weight"
    if (
        weight in initializers
    ):  # e.g. the torch.export exporter put a Conv folded with its BatchNorm in the BN's scope
        return [n for n in nodes if weight in n.input]
    return []


def map_layers_to_onnx(model: Any, layer_names: Iterable[str]) -> dict[str, OnnxLayer]:
    """Find each module's nodes, activation inputs/outputs and weight in an exported ONNX model.

    Args:
        model: an ``onnx.ModelProto`` (exported by ``torch.onnx.export``).
        layer_names: module names as ``model.named_modules()`` gives them.

    Returns:
        ``{name: OnnxLayer}``; a module with no node in the graph (unused in ``forward``, or fused away) maps to an
        :class:`OnnxLayer` with no nodes.
    """
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    constants = {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    consumers: dict[str, list[str]] = {}
    for n in graph.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n.name)
    graph_outputs = {o.name for o in graph.output}
    result: dict[str, OnnxLayer] = {}
    for name in layer_names:
        group = _nodes_of(graph, name, initializers)
        members = {n.name for n in group}
        produced = {o for n in group for o in n.output}
        inputs: list[str] = []
        outputs: list[str] = []
        for n in group:
            for x in n.input:
                if (
                    x
                    and x not in produced
                    and x not in initializers
                    and x not in constants
                    and x not in inputs
                ):
                    inputs.append(x)
            for y in n.output:
                outside = any(c not in members for c in consumers.get(y, ()))
                if y and (outside or y in graph_outputs) and y not in outputs:
                    outputs.append(y)
        weight = None
        if f"{name}.weight" in initializers and any(f"{name}.weight" in n.input for n in group):
            weight = f"{name}.weight"
        else:  # a Conv folded with its BatchNorm reads a renamed initializer (onnx::Conv_40)
            for n in group:
                if n.op_type in _WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in initializers:
                    weight = n.input[1]
                    break
        result[name] = OnnxLayer(
            name=name,
            nodes=tuple(n.name for n in group),
            op_types=tuple(n.op_type for n in group),
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            weight=weight,
        )
    return result


def _union(a: tuple[float, float] | None, b: tuple[float, float]) -> tuple[float, float]:
    return b if a is None else (min(a[0], b[0]), max(a[1], b[1]))


def plan_tensorrt_precision(
    model: Any, config: Mapping[str, Mapping[str, Any]] | None, extra_layer_bits: int = 32
) -> TensorRTPlan:
    """Turn NNI's calibration dict into dynamic ranges by ONNX tensor name and bit widths by ONNX node name.

    A layer with ``input_bits``/``output_bits`` 8 gives its tracked range to its input/output tensor (two layers
    sharing a tensor, e.g. ``conv1``'s output and ``relu1``'s input, give it the union of their ranges); one with
    ``weight_bits`` 8 gives its weight initializer the symmetric range of its largest magnitude. Ranges then
    carry over ops that keep them (Flatten, Reshape, MaxPool, ...), and back from a ReLU's output to its input when
    nothing else reads that input. Layers with 16 or 32 bits run in fp16/fp32.

    Args:
        model: the float ``onnx.ModelProto`` TensorRT will parse.
        config: the calibration dict (``None``: no layer named; every layer runs at ``extra_layer_bits``).
        extra_layer_bits: the precision of the layers the dict does not name (8, 16 or 32).

    Raises:
        ConfigError: the dict is invalid (:func:`validate_calibration_config`), names a layer the graph has no node
            of, or gives a layer an int8 weight while nothing gives its input a range.
    """
    import numpy as np
    from onnx import numpy_helper

    if extra_layer_bits not in ALLOWED_BITS:
        raise ConfigError("extra_layer_bits", f"must be 8, 16 or 32, got {extra_layer_bits!r}")
    config = validate_calibration_config(config) if config is not None else {}
    layers = map_layers_to_onnx(model, config)
    graph = model.graph
    ranges: dict[str, tuple[float, float]] = {}
    node_bits: dict[str, int] = {}
    initializers = {t.name: t for t in graph.initializer}
    for name, entry in config.items():
        layer = layers[name]
        if not layer.nodes:
            raise ConfigError(
                f"config[{name!r}]",
                "the exported ONNX graph has no node of this layer (it is not called in forward(), or the exporter "
                "folded it into another node); remove it from config",
            )
        bits = min(entry[f"{k}_bits"] for k in _KINDS if f"{k}_bits" in entry)
        for node, op in zip(layer.nodes, layer.op_types):
            if op != "Constant":
                node_bits[node] = bits
        if entry.get("input_bits") == 8 and layer.inputs:
            ranges[layer.inputs[0]] = _union(
                ranges.get(layer.inputs[0]), (entry["tracked_min_input"], entry["tracked_max_input"])
            )
        if entry.get("output_bits") == 8 and layer.outputs:
            ranges[layer.outputs[0]] = _union(
                ranges.get(layer.outputs[0]), (entry["tracked_min_output"], entry["tracked_max_output"])
            )
        if entry.get("weight_bits") == 8 and layer.weight is not None:
            amax = float(np.abs(numpy_helper.to_array(initializers[layer.weight])).max(initial=0.0))
            ranges[layer.weight] = (-amax, amax)
            if layer.weight != f"{name}.weight" and "output_bits" in entry:
                log.warning(
                    "layer %r: its BatchNorm is folded into the %s in the ONNX graph, so its output range must be "
                    "the range after BatchNorm; quantize with BatchNorm folding (QAT_Quantizer(dummy_input=...)) so "
                    "the ranges match",
                    name,
                    layer.op_types[0],
                )
    readers: dict[str, int] = {}
    for node in graph.node:
        for x in node.input:
            readers[x] = readers.get(x, 0) + 1
    for node in reversed(graph.node):
        # a ReLU read only by itself: clipping its input at the output's magnitude changes nothing it computes, and
        # gives the layer before it (a Conv with weight+output quantized only at the ReLU) an int8 output
        if node.op_type == "Relu" and node.output[0] in ranges and node.input[0] not in ranges:
            if readers.get(node.input[0]) == 1 and node.input[0] not in {i.name for i in graph.input}:
                amax = max(abs(v) for v in ranges[node.output[0]])
                ranges[node.input[0]] = (-amax, amax)
    for node in graph.node:  # graph order is topological
        if node.op_type in _RANGE_KEEPING_OPS and node.input and node.input[0] in ranges:
            for out in node.output[:1]:
                ranges.setdefault(out, ranges[node.input[0]])
    for name, entry in config.items():
        layer = layers[name]
        if entry.get("weight_bits") == 8 and layer.inputs and layer.inputs[0] not in ranges:
            raise ConfigError(
                f"config[{name!r}]",
                f"has weight_bits=8 but nothing gives its input {layer.inputs[0]!r} a range; TensorRT runs a layer "
                "in int8 only with the range of its input: add 'input' to the layer's quant_types (or quantize the "
                "output of the layer before it)",
            )
    return TensorRTPlan(layers=layers, ranges=ranges, node_bits=node_bits, extra_layer_bits=extra_layer_bits)
