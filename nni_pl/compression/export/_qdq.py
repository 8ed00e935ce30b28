"""Make a QDQ graph from torch's exporter ready for ONNX Runtime's integer kernels.

torch's TorchScript exporter writes every fake-quantised tensor as a ``QuantizeLinear -> DequantizeLinear``
pair, weights included: the weight stays a float initializer that is quantised at run time, and biases stay
float. ONNX Runtime fuses ``DQ -> Conv -> Q`` into ``QLinearConv`` (and MatMul/Gemm into their integer forms)
when the weight is an 8-bit constant behind its ``DequantizeLinear`` and the bias an int32 constant behind
one, the layout ``onnxruntime.quantization.quantize_static`` writes. :func:`finalize_qdq` rewrites the graph
into that layout:

1. ``Constant`` nodes become initializers.
2. Every node whose inputs are all constant is evaluated once (``onnx.reference``) and replaced by its
   result, stopping at ``DequantizeLinear``: a weight's ``QuantizeLinear`` (and whatever computed the weight
   or its scale, e.g. a folded BatchNorm) becomes an int8/uint8 initializer feeding the ``DequantizeLinear``.
3. One-element scales and zero points become scalars (per-tensor, as the ONNX spec reads them), and casts to
   the type a tensor already has are dropped (torch writes one after each ``DequantizeLinear``).
4. 8-bit tensors are moved to one signedness, ``uint8`` by default: ``q + 128`` with zero point ``z + 128``
   is the same number. ONNX Runtime on x86 multiplies uint8 activations by int8 weights with an instruction
   (``vpmaddubsw``) that saturates pairs of products at 32767 on CPUs without VNNI (AVX2, early AVX-512):
   ``255 * 127 * 2`` overflows, and a layer's outputs can be tens of steps off. uint8 weights take the u8u8
   kernels, exact on every CPU (``"int8"``: the s8s8 layout ARM and TensorRT prefer; ``None``: as exported).
5. ``Relu -> QuantizeLinear`` with a zero point above the type's minimum (symmetric activations, e.g. LSQ)
   becomes ``QuantizeLinear -> Max(q, zero_point)``: the same integers, and the ``QuantizeLinear`` now follows
   the convolution directly, which ONNX Runtime needs to fuse it (it drops a Relu itself only when the zero
   point is the minimum).
6. The float bias of a ``Conv``, ``Gemm`` or ``MatMul`` + ``Add`` whose input and weight both come from a
   ``DequantizeLinear`` becomes an int32 initializer with scale ``input_scale * weight_scale`` (per output
   channel for per-channel weights) and zero point 0, behind a ``DequantizeLinear``.
7. Nodes and initializers nothing reads any more are removed.

The float semantics do not change beyond the bias's rounding (at most half of ``input_scale *
weight_scale``, far below one step of the output).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["finalize_qdq"]

log = logging.getLogger(__name__)

# never folded: DequantizeLinear is where the int8 weight must stay; the others can make a small graph huge or
# are not deterministic
_NO_FOLD = frozenset(
    {
        "DequantizeLinear",
        "ConstantOfShape",
        "Expand",
        "Tile",
        "Range",
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
    }
)
_INT32 = np.iinfo(np.int32)
_QDQ = ("QuantizeLinear", "DequantizeLinear")
_8BIT = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)


def finalize_qdq(model: onnx.ModelProto, *, dtype: str | None = "auto") -> onnx.ModelProto:
    """Rewrite a QDQ model (in place) so that ONNX Runtime runs its quantised layers with integer kernels.

    Args:
        model: a model from ``torch.onnx.export(..., dynamo=False)`` of a network with fake-quantised tensors.
        dtype: the type of every 8-bit quantised tensor: ``"uint8"`` (exact on every CPU), ``"int8"``
            (signed, symmetric-friendly: ARM, TensorRT), ``"u8s8"`` (uint8 activations, int8 weights: ONNX
            Runtime's faster x86 kernels; exact on CPUs with VNNI or AMX, saturating without them unless every
            weight fits 7 bits), ``None`` (as exported) or ``"auto"``: ``"u8s8"`` when every weight fits 7 bits
            (``|q| <= 64``, e.g. ``quant_bits: {weight: 7}``, symmetric), which those kernels cannot saturate
            on any x86 CPU (``255 * 64 * 2 < 32767``); otherwise ``"uint8"``.

    Returns:
        ``model``, changed in place: weights are 8-bit initializers behind ``DequantizeLinear``, biases of
        quantised Conv/Gemm/MatMul int32 ones, no ``Constant`` nodes and nothing unused.

    Example:
        >>> import numpy as np
        >>> from onnx import TensorProto, helper, numpy_helper
        >>> w = numpy_helper.from_array(np.array([[0.5, -1.0]], np.float32), "w")
        >>> s = numpy_helper.from_array(np.array(0.01, np.float32), "s")
        >>> z = numpy_helper.from_array(np.array(0, np.int8), "z")
        >>> nodes = [helper.make_node("QuantizeLinear", ["w", "s", "z"], ["wq"]),
        ...          helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"]),
        ...          helper.make_node("MatMul", ["x", "wd"], ["y"])]
        >>> graph = helper.make_graph(
        ...     nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w, s, z])
        >>> model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        >>> model = finalize_qdq(model, dtype="int8")
        >>> [n.op_type for n in model.graph.node]
        ['DequantizeLinear', 'MatMul']
        >>> numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "wq"))
        array([[  50, -100]], dtype=int8)
    """
    if dtype not in ("auto", "uint8", "int8", "u8s8", None):
        raise ValueError(f"dtype must be 'auto', 'uint8', 'int8', 'u8s8' or None, got {dtype!r}")
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    _constants_to_initializers(graph)
    _fold_constants(graph, opset)
    _scalar_quant_params(graph)
    _drop_noop_casts(model)
    if dtype == "auto":
        dtype = "u8s8" if _weights_fit_7_bits(graph) else "uint8"
    if dtype == "u8s8":
        _set_8bit_type(graph, "uint8", weights="int8")
    elif dtype is not None:
        _set_8bit_type(graph, dtype)
    _relu_after_quantize(graph)
    biases = _quantize_biases(graph)
    removed = _remove_unused(graph)
    log.debug("finalize_qdq: %d biases quantised to int32, %d unused nodes removed", biases, removed)
    return model


def _initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in graph.initializer}


def _constants_to_initializers(graph: onnx.GraphProto) -> None:
    outputs = {o.name for o in graph.output}
    keep = []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output[0] not in outputs:
            value = _constant_value(node)
            if value is not None:
                graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
                continue
        keep.append(node)
    _set_nodes(graph, keep)


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    attr = node.attribute[0] if len(node.attribute) == 1 else None
    if attr is None:
        return None
    if attr.name == "value":
        return numpy_helper.to_array(attr.t)
    if attr.name == "value_float":
        return np.array(attr.f, np.float32)
    if attr.name == "value_floats":
        return np.array(list(attr.floats), np.float32)
    if attr.name == "value_int":
        return np.array(attr.i, np.int64)
    if attr.name == "value_ints":
        return np.array(list(attr.ints), np.int64)
    return None  # sparse tensors and strings are left as they are


def _foldable(node: onnx.NodeProto, constants: set[str], outputs: set[str]) -> bool:
    return (
        node.domain in ("", "ai.onnx")
        and node.op_type not in _NO_FOLD
        and len(node.input) > 0
        and all(not name or name in constants for name in node.input)
        and not any(name in outputs for name in node.output)
        and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)
    )


def _fold_constants(graph: onnx.GraphProto, opset: int) -> None:
    from onnx.reference import ReferenceEvaluator

    inits = _initializers(graph)
    constants = set(inits)
    outputs = {o.name for o in graph.output}
    keep = []
    for node in graph.node:  # the node list is in topological order
        if not _foldable(node, constants, outputs):
            keep.append(node)
            continue
        feeds = {name: numpy_helper.to_array(inits[name]) for name in node.input if name}
        try:
            results = ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds)
        except Exception as err:  # an operator the reference runtime lacks: ONNX Runtime will fold it
            log.debug("finalize_qdq: %s %r left unfolded (%s)", node.op_type, node.name, err)
            keep.append(node)
            continue
        for name, value in zip(node.output, results):
            if name:
                tensor = numpy_helper.from_array(np.asarray(value), name)
                graph.initializer.append(tensor)
                inits[name] = tensor
                constants.add(name)
    _set_nodes(graph, keep)


def _scalar_quant_params(graph: onnx.GraphProto) -> None:
    """One-element scale/zero-point initializers read only by Q/DQ become scalars (per-tensor)."""
    inits = _initializers(graph)
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for node in graph.node:
        for slot, name in enumerate(node.input):
            readers[name].append((node, slot))
    for name, uses in readers.items():
        tensor = inits.get(name)
        if tensor is None or len(tensor.dims) == 0 or int(np.prod(tensor.dims)) != 1:
            continue
        if all(n.op_type in _QDQ and n.domain in ("", "ai.onnx") and slot in (1, 2) for n, slot in uses):
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).reshape(()), name))
            for node, _ in uses:  # per-tensor now: an axis would mean nothing
                for attr in [a for a in node.attribute if a.name == "axis"]:
                    node.attribute.remove(attr)


def _drop_noop_casts(model: onnx.ModelProto) -> None:
    """Remove every ``Cast`` to the element type its input already has."""
    graph = model.graph
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception as err:  # a graph shape inference cannot read: keep the casts
        log.debug("finalize_qdq: no type inference (%s); casts kept", err)
        return
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.value_info, *inferred.input)}
    types.update({t.name: t.data_type for t in graph.initializer})
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    keep = []
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if (
            node.op_type == "Cast"
            and node.domain in ("", "ai.onnx")
            and to is not None
            and types.get(node.input[0]) == to
            and node.output[0] not in outputs
        ):
            rename[node.output[0]] = node.input[0]
            continue
        keep.append(node)
    if rename:
        _set_nodes(graph, keep)


def _weight_dequantizers(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    inits = _initializers(graph)
    return [
        n
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.domain in ("", "ai.onnx") and n.input[0] in inits
    ]


def _weights_fit_7_bits(graph: onnx.GraphProto) -> bool:
    """Every 8-bit weight behind a DequantizeLinear, read as int8, lies in [-64, 64] (and there is one)."""
    inits = _initializers(graph)
    found = False
    for node in _weight_dequantizers(graph):
        tensor = inits[node.input[0]]
        if tensor.data_type not in _8BIT:
            continue
        values = numpy_helper.to_array(tensor).astype(np.int16)
        if tensor.data_type == onnx.TensorProto.UINT8:
            values = values - 128
        if values.size and (values.min() < -64 or values.max() > 64):
            return False
        found = True
    return found


def _set_8bit_type(graph: onnx.GraphProto, dtype: str, *, weights: str | None = None) -> None:
    """Every 8-bit Q/DQ zero point (and 8-bit weight behind a DQ) as ``dtype``: ``q +- 128``, same values.

    With ``weights``, the weights behind a DequantizeLinear and their zero points get that type instead.
    """
    weight_names: set[str] = set()
    if weights is not None and weights != dtype:
        for node in _weight_dequantizers(graph):
            weight_names.update(name for name in node.input[::2] if name)  # the weight and its zero point
        activation_zero_points = {
            n.input[2]
            for n in graph.node
            if n.op_type in _QDQ and len(n.input) > 2 and n.input[2] and n.input[0] not in weight_names
        }
        if weight_names & activation_zero_points:  # shared with an activation: one type for all
            weight_names = set()
    target = onnx.TensorProto.UINT8 if dtype == "uint8" else onnx.TensorProto.INT8
    inits = _initializers(graph)
    qdq = [n for n in graph.node if n.op_type in _QDQ and n.domain in ("", "ai.onnx")]
    feeds_only_dq = {n.output[0] for n in qdq if n.op_type == "QuantizeLinear"}
    for node in graph.node:  # a Q whose integer output reaches anything but a DQ keeps the exported types
        if node.op_type != "DequantizeLinear":
            feeds_only_dq.difference_update(node.input)
    if any(o.name in feeds_only_dq for o in graph.output) or any(
        n.output[0] not in feeds_only_dq for n in qdq if n.op_type == "QuantizeLinear"
    ):
        log.warning(
            "finalize_qdq: a QuantizeLinear output is read by more than a DequantizeLinear; types kept"
        )
        return
    names = set()
    for node in qdq:
        if len(node.input) < 3 or not node.input[2]:
            continue  # no zero point: uint8 by the spec
        names.add(node.input[2])
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            names.add(node.input[0])
    if target == onnx.TensorProto.INT8 and any(len(n.input) < 3 or not n.input[2] for n in qdq):
        return  # an implicit uint8 zero point: leave such graphs as they are
    for name in sorted(names):
        tensor = inits.get(name)
        kind = weights if name in weight_names else dtype
        wanted = onnx.TensorProto.UINT8 if kind == "uint8" else onnx.TensorProto.INT8
        if tensor is None or tensor.data_type not in _8BIT or tensor.data_type == wanted:
            continue
        shifted = numpy_helper.to_array(tensor).astype(np.int16) + (128 if kind == "uint8" else -128)
        tensor.CopyFrom(numpy_helper.from_array(shifted.astype(kind), name))


def _relu_after_quantize(graph: onnx.GraphProto) -> None:
    """``Relu -> Q(s, z)`` -> ``Q(s, z) -> Max(q, z)`` where ``z`` is above the type's minimum: equal integers."""
    inits = _initializers(graph)
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    outputs = {o.name for o in graph.output}
    dropped: set[int] = set()
    added: dict[int, onnx.NodeProto] = {}  # id(Q) -> the Max after it
    for relu in graph.node:
        readers = consumers.get(relu.output[0], []) if relu.op_type == "Relu" else []
        if relu.domain not in ("", "ai.onnx") or len(readers) != 1 or relu.output[0] in outputs:
            continue
        q = readers[0]
        if q.op_type != "QuantizeLinear" or q.input[0] != relu.output[0] or len(q.input) < 3:
            continue
        zero = inits.get(q.input[2])
        if zero is None or zero.data_type not in _8BIT or len(zero.dims) != 0:
            continue
        low = 0 if zero.data_type == onnx.TensorProto.UINT8 else -128
        if int(numpy_helper.to_array(zero)) == low:
            continue  # ONNX Runtime removes this Relu itself
        q.input[0] = relu.input[0]
        clipped = f"{q.output[0]}_relu"
        for reader in consumers.get(q.output[0], []):
            for i, name in enumerate(reader.input):
                if name == q.output[0]:
                    reader.input[i] = clipped
        if q.output[0] in outputs:  # keep the graph's output name on the clipped integers
            clipped_output = q.output[0]
            q.output[0] = f"{clipped_output}_unclipped"
            clipped = clipped_output
        added[id(q)] = helper.make_node(
            "Max", [q.output[0], q.input[2]], [clipped], name=f"{relu.name}_as_Max"
        )
        dropped.add(id(relu))
    if added:
        nodes = []
        for node in graph.node:
            if id(node) not in dropped:
                nodes.append(node)
                if id(node) in added:
                    nodes.append(added[id(node)])
        _set_nodes(graph, nodes)


def _quantize_biases(graph: onnx.GraphProto) -> int:
    """Put every float bias of a quantised Conv/Gemm/MatMul+Add behind an int32 ``DequantizeLinear``."""
    inits = _initializers(graph)
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    inserted: dict[int, list[onnx.NodeProto]] = defaultdict(list)  # id(consumer) -> DQ nodes to put before it
    count = 0
    for node in graph.node:
        site = _bias_site(node, consumers, inits)
        if site is None:
            continue
        consumer, slot, weight_axis = site
        scales = _qdq_scales(node, producer, inits, weight_axis)
        bias = numpy_helper.to_array(inits[consumer.input[slot]])
        if scales is None or bias.dtype != np.float32 or bias.ndim != 1:
            continue
        x_scale, w_scale = scales
        if w_scale.ndim == 1 and w_scale.size != bias.size:
            continue
        bias_scale = (x_scale * w_scale).astype(np.float32)
        # a channel whose weights are all zero may have scale 0; any scale then represents its bias
        bias_scale = np.where(bias_scale == 0, np.float32(1.0), bias_scale).astype(np.float32)
        q = np.clip(np.round(bias / bias_scale), _INT32.min, _INT32.max).astype(np.int32)
        base = f"{consumer.input[slot]}_quantized"
        zero = np.zeros(bias_scale.shape, np.int32)
        graph.initializer.extend(
            [
                numpy_helper.from_array(q, base),
                numpy_helper.from_array(bias_scale, f"{base}_scale"),
                numpy_helper.from_array(zero, f"{base}_zero_point"),
            ]
        )
        dq = helper.make_node(
            "DequantizeLinear",
            [base, f"{base}_scale", f"{base}_zero_point"],
            [f"{base}_dequantized"],
            name=f"{base}_DequantizeLinear",
            **({"axis": 0} if bias_scale.ndim == 1 else {}),
        )
        consumer.input[slot] = dq.output[0]
        inserted[id(consumer)].append(dq)
        count += 1
    if inserted:
        nodes = []
        for node in graph.node:
            nodes.extend(inserted.get(id(node), ()))
            nodes.append(node)
        _set_nodes(graph, nodes)
    return count


def _bias_site(
    node: onnx.NodeProto, consumers: dict[str, list[onnx.NodeProto]], inits: dict[str, Any]
) -> tuple[onnx.NodeProto, int, int] | None:
    """``(node holding the bias, its input slot, the weight's output-channel axis)`` or ``None``."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.domain not in ("", "ai.onnx") or len(node.input) < 2:
        return None
    if node.op_type == "Conv" and len(node.input) > 2 and node.input[2] in inits:
        return node, 2, 0
    if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] in inits:
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
            return None
        return node, 2, 0 if attrs.get("transB", 0) else 1
    if node.op_type == "MatMul":
        readers = consumers.get(node.output[0], [])
        if len(readers) == 1 and readers[0].op_type == "Add" and readers[0].domain in ("", "ai.onnx"):
            add = readers[0]
            slot = 1 if add.input[0] == node.output[0] else 0
            if add.input[slot] in inits and add.input[1 - slot] == node.output[0]:
                return add, slot, 1
    return None


def _qdq_scales(
    node: onnx.NodeProto,
    producer: dict[str, onnx.NodeProto],
    inits: dict[str, onnx.TensorProto],
    weight_axis: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The input's (per-tensor) and the constant weight's scales when both come from a ``DequantizeLinear``."""
    x_dq, w_dq = producer.get(node.input[0]), producer.get(node.input[1])
    if (
        x_dq is None
        or w_dq is None
        or x_dq.op_type != "DequantizeLinear"
        or w_dq.op_type != "DequantizeLinear"
    ):
        return None
    if w_dq.input[0] not in inits or any(
        len(dq.input) < 2 or dq.input[1] not in inits for dq in (x_dq, w_dq)
    ):
        return None
    weight = inits[w_dq.input[0]]
    if weight.data_type not in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
        return None
    x_scale = numpy_helper.to_array(inits[x_dq.input[1]]).astype(np.float32)
    w_scale = numpy_helper.to_array(inits[w_dq.input[1]]).astype(np.float32)
    if x_scale.size != 1:
        return None
    if w_scale.size == 1:
        return x_scale.reshape(()), w_scale.reshape(())
    axis = next((helper.get_attribute_value(a) for a in w_dq.attribute if a.name == "axis"), 1)
    if axis % len(weight.dims) != weight_axis:
        return None  # per-channel along another axis than the output channels: no bias scale fits
    return x_scale.reshape(()), w_scale


def _remove_unused(graph: onnx.GraphProto) -> int:
    needed = {o.name for o in graph.output}
    keep: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            keep.append(node)
            needed.update(name for name in node.input if name)
            needed.update(_subgraph_reads(node))
    removed = len(graph.node) - len(keep)
    _set_nodes(graph, list(reversed(keep)))
    unused = [t for t in graph.initializer if t.name not in needed]
    for tensor in unused:
        graph.initializer.remove(tensor)
    produced = {name for node in graph.node for name in node.output}
    for info in [v for v in graph.value_info if v.name not in produced]:
        graph.value_info.remove(info)
    return removed


def _subgraph_reads(node: onnx.NodeProto) -> set[str]:
    """Every name the subgraphs of ``node`` (If, Loop, Scan) read, outer-scope names among them."""
    names: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for sub in graphs:
            for inner in sub.node:
                names.update(inner.input)
                names.update(_subgraph_reads(inner))
    return names


def _set_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    copies = [onnx.NodeProto.FromString(n.SerializeToString()) for n in nodes]
    del graph.node[:]
    graph.node.extend(copies)
