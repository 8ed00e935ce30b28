"""Export a (possibly quantised) PyTorch model to ONNX, and run the file in ONNX Runtime to check it.

A float model goes through torch's ``torch.export``-based exporter (the TorchScript one when ``torch.export``
cannot capture the model, e.g. data-dependent control flow). A quantised model (one holding a
``QuantizerModuleWrapper``) goes through the TorchScript exporter, which writes torch's fake-quantisation ops
as ``QuantizeLinear``/``DequantizeLinear`` pairs; :func:`~nni_pl.compression.export.finalize_qdq` then puts
the weights and biases in the int8/int32 form ONNX Runtime fuses into ``QLinearConv``/``QLinearMatMul``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nni_pl.errors import ConfigError, MissingDependencyError

__all__ = ["OnnxReport", "export_onnx", "missing_onnx_packages", "ort_session", "require_onnx", "verify_onnx"]

log = logging.getLogger(__name__)

_EXPORT_PACKAGES = ("onnx", "onnxscript")


def missing_onnx_packages(*, runtime: bool = False) -> list[str]:
    """The packages of the ``onnx`` extra that are not installed (``runtime``: onnxruntime counts too).

    Example:
        >>> missing_onnx_packages(runtime=True)  # everything installed here
        []
    """
    names = (*_EXPORT_PACKAGES, "onnxruntime") if runtime else _EXPORT_PACKAGES
    return [name for name in names if importlib.util.find_spec(name) is None]


def require_onnx(feature: str, *, runtime: bool = False) -> None:
    """Raise :class:`~nni_pl.errors.MissingDependencyError` naming the ``onnx`` extra when a package is missing.

    Example:
        >>> require_onnx("export_onnx")  # nothing happens when onnx and onnxscript are installed
    """
    missing = missing_onnx_packages(runtime=runtime)
    if missing:
        raise MissingDependencyError(missing[0], "onnx", feature)


def is_quantized_model(model: Any) -> bool:
    """Whether ``model`` holds a quantiser's wrapper (``QuantizerModuleWrapper``)."""
    try:
        from nni_pl.compression.quantization.base import is_quantized
    except ImportError:  # the quantisation package is older than is_quantized: recognise the wrapper by name
        return any(type(m).__name__ == "QuantizerModuleWrapper" for m in model.modules())
    return bool(is_quantized(model))


@contextlib.contextmanager
def _eval_on_cpu(model: Any) -> Iterator[Any]:
    """``model`` in eval mode on the CPU; each module's mode and the model's device come back afterwards."""
    import torch

    modes = [(m, m.training) for m in model.modules()]
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    model.eval()
    if device.type != "cpu":
        model.cpu()
    try:
        yield model
    finally:
        if device.type != "cpu":
            model.to(device)
        for module, training in modes:
            module.training = training


def _as_tuple(dummy_input: Any, field: str = "dummy_input") -> tuple[Any, ...]:
    import torch

    items = tuple(dummy_input) if isinstance(dummy_input, (tuple, list)) else (dummy_input,)
    if not items or not all(isinstance(x, torch.Tensor) for x in items):
        kinds = ", ".join(type(x).__name__ for x in items) or "nothing"
        raise ConfigError(
            field,
            f"must be a tensor or a tuple of tensors (one per model input), got {kinds}; pass e.g. "
            "torch.randn(1, 3, 32, 32)",
        )
    return tuple(x.detach().cpu() for x in items)


def _names(names: Sequence[str], count: int, kind: str) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    if len(names) == count:
        return names
    if len(names) == 1:  # the default ("input",) for a model with several inputs: input, input_1, ...
        return [names[0]] + [f"{names[0]}_{i}" for i in range(1, count)]
    raise ConfigError(
        f"{kind}_names", f"names {count} {kind}s, got {len(names)} names {names!r}; give one name per {kind}"
    )


def export_onnx(
    model: Any,
    dummy_input: Any,
    path: str | Path,
    *,
    quantized: bool | None = None,
    input_names: Sequence[str] = ("input",),
    output_names: Sequence[str] = ("output",),
    dynamic_batch: bool = True,
    opset_version: int | None = None,
    qdq_dtype: str | None = "auto",
) -> Path:
    """Write ``model`` to ``path`` as ONNX: float, or a QDQ graph ONNX Runtime runs in int8 when quantised.

    The model is exported in eval mode on the CPU; its modules' modes and its device are restored afterwards.

    Args:
        model: an ``nn.Module`` (a ``LightningModule`` too).
        dummy_input: a sample input, a tensor or a tuple of tensors (one per ``forward`` argument).
        path: the file to write (its folder is created).
        quantized: export the quantisers' fake quantisation as ``QuantizeLinear``/``DequantizeLinear`` pairs
            with int8 weights and int32 biases. ``None``: when the model holds a ``QuantizerModuleWrapper``.
        input_names: the graph's input names; one name for several inputs numbers them (``input_1``, ...).
        output_names: the graph's output names (same rule).
        dynamic_batch: the first dimension of every input and output is symbolic (``batch``), so any batch
            size runs through the file.
        opset_version: the ONNX opset. ``None``: the exporter's default for a float model (``torch.export``
            based, 18 or later), 17 for a quantised one (per-channel QDQ needs 13 or later).
        qdq_dtype: the type of the quantised model's 8-bit tensors. ``"uint8"``: ONNX Runtime's u8u8 kernels,
            exact on every CPU; ``"u8s8"``: uint8 activations with int8 weights, ONNX Runtime's faster x86
            kernels (``quantize_static``'s layout), exact on CPUs with VNNI (AVX512-VNNI, AVX-VNNI) or AMX
            but saturating on x86 CPUs without them unless the weights fit 7 bits; ``"int8"``: signed
            everywhere (ARM, TensorRT); ``None``: as the quantiser exported them; ``"auto"`` (default):
            ``"u8s8"`` when every weight fits 7 bits (quantize weights with ``quant_bits: {weight: 7}``,
            symmetric, for that: exact on every CPU), else ``"uint8"``.

    Returns:
        The path written.

    Raises:
        MissingDependencyError: onnx or onnxscript is not installed (the ``onnx`` extra).
        ConfigError: ``dummy_input`` or the names do not fit the model.

    Example:
        >>> import torch
        >>> from nni_pl.compression.export import export_onnx, verify_onnx
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
        >>> path = export_onnx(model, torch.randn(1, 4), "tiny.onnx")
        >>> verify_onnx(path, model, torch.randn(7, 4)).allclose
        True
    """
    if qdq_dtype not in ("auto", "uint8", "int8", "u8s8", None):
        raise ConfigError(
            "qdq_dtype",
            f"must be 'auto', 'uint8', 'int8', 'u8s8' or None, got {qdq_dtype!r}; 'auto' suits most CPUs",
        )
    require_onnx("export_onnx")
    import onnx
    import torch

    args = _as_tuple(dummy_input)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    quantized = is_quantized_model(model) if quantized is None else bool(quantized)
    inputs = _names(input_names, len(args), "input")
    with _eval_on_cpu(model), torch.no_grad():
        if quantized:
            _export_torchscript(model, args, path, inputs, output_names, dynamic_batch, opset_version or 17)
            proto = onnx.load(str(path))
            from nni_pl.compression.export._qdq import finalize_qdq

            finalize_qdq(proto, dtype=qdq_dtype)
            onnx.checker.check_model(proto)
            onnx.save(proto, str(path))
        else:
            _export_float(model, args, path, inputs, output_names, dynamic_batch, opset_version)
    log.info("exported %s ONNX model to %s", "a quantised (QDQ)" if quantized else "the", path)
    return path


def _output_names(model: Any, args: tuple[Any, ...], names: Sequence[str]) -> list[str]:
    import torch

    outputs = model(*args)
    count = len(outputs) if isinstance(outputs, (tuple, list)) else 1
    if not all(isinstance(o, torch.Tensor) for o in (outputs if count > 1 else [outputs])):
        count = len(names)  # nested outputs: the exporter flattens them; trust the names given
    return _names(names, count, "output")


def _export_torchscript(
    model: Any,
    args: tuple[Any, ...],
    path: Path,
    inputs: list[str],
    output_names: Sequence[str],
    dynamic_batch: bool,
    opset_version: int | None,
) -> None:
    import torch

    outputs = _output_names(model, args, output_names)
    axes = {name: {0: "batch"} for name in (*inputs, *outputs)} if dynamic_batch else None
    with warnings.catch_warnings():
        # torch warns that this exporter is the legacy one; it is the one that writes fake quantisation as QDQ
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TorchScript-based ONNX")
        # the quantisers' scales and ranges become constants of the graph, which is what an export wants
        warnings.filterwarnings(
            "ignore", category=torch.jit.TracerWarning, module=r"nni_pl\.compression\.quantization"
        )
        torch.onnx.export(
            model,
            args,
            str(path),
            dynamo=False,
            opset_version=opset_version,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
        )


def _export_float(
    model: Any,
    args: tuple[Any, ...],
    path: Path,
    inputs: list[str],
    output_names: Sequence[str],
    dynamic_batch: bool,
    opset_version: int | None,
) -> None:
    import torch

    outputs = _output_names(model, args, output_names)
    # one self-contained file unless the weights pass protobuf's 2 GiB limit (then torch writes path.data beside it)
    size = sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers()
    )
    try:  # torch.export-based exporter (torch's default)
        shapes = tuple({0: torch.export.Dim("batch")} for _ in args) if dynamic_batch else None
        with contextlib.redirect_stdout(io.StringIO()):  # its progress lines
            torch.onnx.export(
                model,
                args,
                str(path),
                dynamo=True,
                verbose=False,
                dynamic_shapes=shapes,
                external_data=size >= 1_800_000_000,
                input_names=inputs,
                output_names=outputs,
                **({"opset_version": opset_version} if opset_version else {}),
            )
    except Exception as err:  # e.g. data-dependent control flow, which torch.export cannot capture
        cause = err.__cause__ or err  # torch's wrapper error is a page of advice; the cause says what failed
        reason = f"{type(cause).__name__}: {(str(cause).strip().splitlines() or [''])[0]}"
        log.warning("export_onnx: torch.export failed (%s); using the TorchScript-based exporter", reason)
        _export_torchscript(model, args, path, inputs, outputs, dynamic_batch, opset_version or 17)


def ort_session(
    path: str | Path, *, threads: int | None = None, optimized_model_path: str | Path | None = None
) -> Any:
    """An ONNX Runtime ``InferenceSession`` for ``path`` on the CPU, all graph optimisations on.

    Args:
        path: the ONNX file.
        threads: intra-op threads (``None``: ONNX Runtime's default, one per core).
        optimized_model_path: also write the graph ONNX Runtime actually runs there (after its fusions: a
            quantised model shows ``QLinearConv``, ``QLinearMatMul``, ... where int8 kernels run).

    Example:
        >>> import numpy as np
        >>> import onnx
        >>> from onnx import TensorProto, helper
        >>> io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 4]) for n in ("x", "y")]
        >>> graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", io[:1], io[1:])
        >>> onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "relu.onnx")
        >>> ort_session("relu.onnx", threads=1).run(None, {"x": -np.ones((3, 4), np.float32)})[0].max()
        np.float32(0.0)
    """
    require_onnx("ort_session", runtime=True)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class OnnxReport:
    """How an ONNX file's outputs (run by ONNX Runtime) compare with the PyTorch model's on the same input.

    Attributes:
        max_abs_diff: the largest absolute difference over all outputs.
        mean_abs_diff: the mean absolute difference over all outputs.
        top1_agreement: the fraction of samples whose arg-max over the last axis of the first output agrees
            (``None`` when that output has no class axis).
        allclose: every output within ``atol + rtol * |torch|``.
        rtol: the relative tolerance used.
        atol: the absolute tolerance used.
        samples: the batch size compared.
    """

    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float | None
    allclose: bool
    rtol: float
    atol: float
    samples: int

    def __str__(self) -> str:
        top1 = "" if self.top1_agreement is None else f", top-1 agreement {self.top1_agreement:.2%}"
        verdict = "within" if self.allclose else "NOT within"
        return (
            f"{self.samples} samples: max |onnx - torch| {self.max_abs_diff:.3g}, mean {self.mean_abs_diff:.3g}"
            f"{top1}; {verdict} rtol={self.rtol:g}, atol={self.atol:g}"
        )


def verify_onnx(
    path: str | Path,
    model: Any,
    inputs: Any,
    *,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    threads: int | None = None,
    session: Any = None,
) -> OnnxReport:
    """Run ``inputs`` through the ONNX file (ONNX Runtime, CPU) and through ``model``, and compare.

    A quantised model is compared with its fake-quantised PyTorch forward, so the differences measure what
    the int8 kernels round differently (about one quantisation step at most).

    Args:
        path: the ONNX file.
        model: the PyTorch model it came from (run in eval mode on the CPU, restored afterwards).
        inputs: a tensor or a tuple of tensors, in the order of the file's inputs.
        rtol: relative tolerance for :attr:`OnnxReport.allclose`.
        atol: absolute tolerance for :attr:`OnnxReport.allclose`.
        threads: ONNX Runtime's intra-op threads.
        session: an existing ``InferenceSession`` of ``path`` to reuse.

    Raises:
        MissingDependencyError: onnxruntime (or onnx) is not installed (the ``onnx`` extra).
    """
    import numpy as np
    import torch

    args = _as_tuple(inputs, "inputs")
    session = session if session is not None else ort_session(path, threads=threads)
    feeds = {meta.name: x.numpy() for meta, x in zip(session.get_inputs(), args)}
    got = session.run(None, feeds)
    with _eval_on_cpu(model), torch.no_grad():
        expected = model(*args)
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    want = [e.detach().cpu().numpy() for e in expected]
    diffs = [np.abs(g.astype(np.float64) - w.astype(np.float64)) for g, w in zip(got, want)]
    count = sum(d.size for d in diffs)
    top1 = None
    if want[0].ndim >= 2 and want[0].shape[-1] > 1:
        top1 = float(np.mean(np.argmax(got[0], axis=-1) == np.argmax(want[0], axis=-1)))
    return OnnxReport(
        max_abs_diff=float(max((d.max() for d in diffs if d.size), default=0.0)),
        mean_abs_diff=float(sum(d.sum() for d in diffs) / count) if count else 0.0,
        top1_agreement=top1,
        allclose=all(np.allclose(g, w, rtol=rtol, atol=atol) for g, w in zip(got, want)),
        rtol=rtol,
        atol=atol,
        samples=int(args[0].shape[0]) if args[0].ndim else 1,
    )
