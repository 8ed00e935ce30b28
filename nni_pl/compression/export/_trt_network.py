"""The parsed TensorRT network: which layer runs in which precision, and the engine build that applies it.

:func:`assign_layer_precisions` is plain Python over a description of the network (:class:`TrtLayer` per
layer), so its decisions are testable without TensorRT; :func:`build_engine` parses the ONNX file with TensorRT,
describes the network, applies the decisions (``ITensor.set_dynamic_range``, ``ILayer.precision``,
``ILayer.set_output_type``) and builds the engine with ``build_serialized_network`` (TensorRT 8.0 to 10.x).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nni_pl.compression.export._trt_calibration import Calibrator
from nni_pl.compression.export._trt_plan import TensorRTPlan
from nni_pl.compression.export._trt_runtime import TensorRTError, tensorrt_major

__all__ = ["LayerPrecisions", "TrtLayer", "assign_layer_precisions", "build_engine"]

log = logging.getLogger(__name__)

# TensorRT layer types (``trt.LayerType`` names) that only move data: the range of the input is the output's
_TRT_RANGE_KEEPING = frozenset({"SHUFFLE", "IDENTITY", "SLICE"})
# TensorRT layer types whose precision is never constrained (weights, shapes, casts)
_TRT_UNCONSTRAINED = frozenset({"CONSTANT", "SHAPE", "IDENTITY", "CAST", "ASSERTION", "CONDITION"})


@dataclass(frozen=True)
class TrtLayer:
    """A plain description of one layer of a parsed TensorRT network (what :func:`assign_layer_precisions` reads).

    Attributes:
        index: the layer's index in the network.
        name: ``ILayer.name`` (the ONNX parser uses the node's name; helper layers get derived names).
        kind: the ``trt.LayerType`` name, e.g. ``"CONVOLUTION"``, ``"SHUFFLE"``, ``"CONSTANT"``.
        inputs: input tensor names (``None`` for an absent optional input).
        outputs: output tensor names.
        float_io: every input and output tensor is fp32 or fp16 (a precision may be set).
        constant_amax: for a ``CONSTANT`` layer, the largest magnitude of its values.
    """

    index: int
    name: str
    kind: str
    inputs: tuple[str | None, ...]
    outputs: tuple[str, ...]
    float_io: bool = True
    constant_amax: float | None = None


@dataclass
class LayerPrecisions:
    """What to set on the network: tensor ranges, layer precisions and layer output types (bits 8/16/32)."""

    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    precision: dict[int, int] = field(default_factory=dict)
    output_bits: dict[tuple[int, int], int] = field(default_factory=dict)


def _owner(layer: TrtLayer, node_names: Sequence[str], node_of_output: Mapping[str, str]) -> str | None:
    for out in layer.outputs:
        if out in node_of_output:
            return node_of_output[out]
    if layer.name in node_names:
        return layer.name
    prefixes = [
        n for n in node_names if layer.name.startswith(n) and layer.name[len(n) : len(n) + 1] in ("_", " ")
    ]
    return max(prefixes, key=len) if prefixes else None


def _backfill(tensor: str, producers: Mapping[str, TrtLayer], ranges: dict[str, tuple[float, float]]) -> bool:
    """Give ``tensor`` a range from the constant it is moved from (through data-moving layers); whether it has one."""
    chain: list[str] = []
    current = tensor
    while current not in ranges:
        src = producers.get(current)
        if src is None:
            return False
        if src.constant_amax is not None:
            ranges[current] = (-src.constant_amax, src.constant_amax)
        elif src.kind in _TRT_RANGE_KEEPING and src.inputs and src.inputs[0] is not None:
            chain.append(current)
            current = src.inputs[0]
        else:
            return False
    for t in chain:
        ranges[t] = ranges[current]
    return True


def assign_layer_precisions(
    layers: Sequence[TrtLayer],
    plan: TensorRTPlan,
    *,
    onnx_nodes: Mapping[str, Sequence[str]],
    strict: bool = True,
    calibrated: bool = False,
) -> LayerPrecisions:
    """Decide each TensorRT layer's precision from the plan.

    A layer belongs to the ONNX node whose output it writes, or whose name it carries; helper layers the parser
    adds without a node's name belong to no node and are left to TensorRT. A layer of an 8-bit node runs in int8
    when every tensor it reads has a range (ranges carry through data-moving layers, forwards, and backwards
    through a reshape that alone reads a layer's output; a constant read by such a layer gets the range of its
    largest magnitude); its outputs are int8 where they have a range. Layers
    of 16/32-bit nodes, and (with ``strict``, or at 16 bits) the other layers of a node, get fp16/fp32, except
    a layer outside the plan whose every input and output has a range (a MaxPool between int8 layers), which
    TensorRT may keep in int8.

    Args:
        layers: the network's layers in order (topological, as the parser adds them).
        plan: the plan of the ONNX graph the network was parsed from.
        onnx_nodes: ``{node_name: output tensor names}`` of every node in the ONNX graph.
        strict: constrain the layers outside the plan to ``plan.extra_layer_bits`` too.
        calibrated: a calibrator gives TensorRT the ranges of the other tensors (int8 for the others is allowed).
    """
    out = LayerPrecisions(ranges=dict(plan.ranges))
    ranges = out.ranges
    node_of_output = {o: n for n, outs in onnx_nodes.items() for o in outs}
    names = list(onnx_nodes)
    producers = {o: layer for layer in layers for o in layer.outputs}
    for layer in layers:
        if layer.kind in _TRT_RANGE_KEEPING and layer.inputs and layer.inputs[0] in ranges:
            for o in layer.outputs[:1]:
                ranges.setdefault(o, ranges[layer.inputs[0]])
    readers: dict[str, int] = {}
    for layer in layers:
        for t in layer.inputs:
            if t is not None:
                readers[t] = readers.get(t, 0) + 1
    for layer in reversed(layers):  # a reshape the parser put after a layer (TensorRT 8's Gemm): same values
        if layer.kind == "SHUFFLE" and layer.inputs and layer.inputs[0] is not None and layer.outputs:
            src = layer.inputs[0]
            if (
                layer.outputs[0] in ranges
                and src not in ranges
                and readers.get(src) == 1
                and src in producers
            ):
                ranges[src] = ranges[layer.outputs[0]]
    for layer in layers:
        owner = _owner(layer, names, node_of_output)
        if owner in plan.node_bits:
            bits = plan.node_bits[owner]
        elif owner is not None and (strict or plan.extra_layer_bits == 16):
            bits = plan.extra_layer_bits
        else:
            continue
        if layer.kind in _TRT_UNCONSTRAINED or not layer.float_io:
            continue
        if bits == 8:
            if owner not in plan.node_bits and calibrated:
                continue  # the calibrator's ranges: TensorRT picks int8 where it pays
            reads = [t for t in layer.inputs if t is not None]
            # a weight TensorRT holds as a constant tensor (MatMul's) needs a range too: its largest magnitude
            if not reads or not all([_backfill(t, producers, ranges) for t in reads]):
                log.debug("TensorRT layer %r stays in float: not every input has a range", layer.name)
                continue
            out.precision[layer.index] = 8
            for i, o in enumerate(layer.outputs):
                if o in ranges:
                    out.output_bits[(layer.index, i)] = 8
        else:
            if owner not in plan.node_bits and all(t in ranges for t in (*layer.inputs, *layer.outputs) if t):
                continue  # between int8 layers (a MaxPool, a Flatten): TensorRT keeps the data in int8
            out.precision[layer.index] = bits
            for i in range(len(layer.outputs)):
                out.output_bits[(layer.index, i)] = bits
    return out


# -- building ------------------------------------------------------------------------------------------------
def _precision_flag(trt: Any, strict: bool) -> Any:
    flags = trt.BuilderFlag
    if not strict:  # layer precisions are hints (8.2+; before, they were ignored without STRICT_TYPES)
        return getattr(flags, "PREFER_PRECISION_CONSTRAINTS", None)
    if hasattr(flags, "OBEY_PRECISION_CONSTRAINTS"):  # 8.2+
        return flags.OBEY_PRECISION_CONSTRAINTS
    return getattr(flags, "STRICT_TYPES", None)  # deprecated in 8.2, removed in 10


def _describe(trt: Any, network: Any) -> list[TrtLayer]:
    import numpy as np

    floats = {trt.float32, trt.float16}
    layers = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        ins = [layer.get_input(j) for j in range(layer.num_inputs)]
        outs = [layer.get_output(j) for j in range(layer.num_outputs)]
        kind = layer.type.name
        amax = None
        if kind == "CONSTANT" and outs and outs[0].dtype in floats:
            try:
                # get_layer() returns the base class; NVIDIA's samples cast it like this to reach .weights
                layer.__class__ = trt.IConstantLayer
                weights = layer.weights
                values = np.asarray(
                    weights.numpy() if hasattr(weights, "numpy") else weights, dtype=np.float64
                )
                amax = float(np.abs(values).max(initial=0.0))
            except Exception as e:  # the layer stays without a range: its consumer runs in float
                log.debug("cannot read the values of constant layer %r: %s", layer.name, e)
        layers.append(
            TrtLayer(
                index=i,
                name=layer.name,
                kind=kind,
                inputs=tuple(t.name if t is not None else None for t in ins),
                outputs=tuple(t.name for t in outs),
                float_io=all(t.dtype in floats for t in (*ins, *outs) if t is not None),
                constant_amax=amax,
            )
        )
    return layers


def _apply(trt: Any, network: Any, assigned: LayerPrecisions) -> None:
    tensors = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            tensors[layer.get_output(j).name] = layer.get_output(j)
    for name, (lo, hi) in assigned.ranges.items():
        tensor = tensors.get(name)
        amax = max(abs(lo), abs(hi))
        if tensor is None or amax == 0.0:
            continue  # not in the network (a value TensorRT folded away), or all zeros
        if hasattr(tensor, "set_dynamic_range"):  # symmetric: TensorRT uses max(|min|, |max|) anyway
            if not tensor.set_dynamic_range(-amax, amax):
                raise TensorRTError(
                    f"TensorRT refused the dynamic range ({-amax}, {amax}) of tensor {name!r}"
                )
        else:
            tensor.dynamic_range = (-amax, amax)
    dtypes = {8: trt.int8, 16: trt.float16, 32: trt.float32}
    for index, bits in assigned.precision.items():
        network.get_layer(index).precision = dtypes[bits]
    for (index, out), bits in assigned.output_bits.items():
        layer = network.get_layer(index)
        if bits != 32 and layer.get_output(out).is_network_output:
            continue  # the engine's outputs stay fp32 (what inference() reads)
        layer.set_output_type(out, dtypes[bits])


def build_engine(
    trt: Any, onnx_path: Path, plan: TensorRTPlan, *, strict: bool, calibrator: Calibrator | None
) -> tuple[Any, Any]:
    import onnx

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if tensorrt_major(trt) < 10:  # explicit batch is the only mode in 10 (the flag is deprecated there)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(
            e.desc() if hasattr(e, "desc") else str(e)
            for e in (parser.get_error(i) for i in range(parser.num_errors))
        )
        raise TensorRTError(
            f"TensorRT's ONNX parser rejected {str(onnx_path)!r}: {errors}; NNI supports Conv, Linear, ReLU and "
            "MaxPool models, other ops need a TensorRT that implements them"
        )
    config = builder.create_builder_config()
    if plan.uses_int8 or calibrator is not None:
        config.set_flag(trt.BuilderFlag.INT8)
    if plan.uses_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    constraint = _precision_flag(trt, strict)
    if constraint is not None:
        config.set_flag(constraint)
    trt_calibrator = None
    if calibrator is not None:
        trt_calibrator = calibrator.to_tensorrt()  # kept alive until the build ends
        config.int8_calibrator = trt_calibrator
    nodes = {n.name: list(n.output) for n in onnx.load(str(onnx_path)).graph.node}
    assigned = assign_layer_precisions(
        _describe(trt, network), plan, onnx_nodes=nodes, strict=strict, calibrated=calibrator is not None
    )
    _apply(trt, network, assigned)
    runtime = trt.Runtime(logger)
    if hasattr(builder, "build_serialized_network"):  # 8.0+; build_engine is gone in 10
        serialized = builder.build_serialized_network(network, config)
        engine = runtime.deserialize_cuda_engine(serialized) if serialized is not None else None
    else:
        engine = builder.build_engine(network, config)
    del trt_calibrator
    if engine is None:
        raise TensorRTError(
            "TensorRT could not build the engine (its log above says why); with strict_datatype=True a layer that "
            "has no kernel in the requested precision fails the build: try strict_datatype=False"
        )
    return runtime, engine
