"""NNI 2.5's quantization speed-up: a TensorRT engine that runs a quantized model's layers in int8.

:class:`ModelSpeedupTensorRT` exports the float model to ONNX (the quantizer's wrappers taken out, as NNI does),
has TensorRT's ONNX parser read it, and builds an engine in which the layers the calibration dict names run in
int8 with the tracked ranges (or fp16/fp32 for 16/32 bits) and every other layer at ``extra_layer_bits``. With
no calibration dict, TensorRT calibrates itself on ``calib_data_loader`` (post-training quantization through an
``IInt8EntropyCalibrator2``). Everything up to the engine build is plain Python and testable without a GPU:
:meth:`ModelSpeedupTensorRT.export_onnx` writes the file the parser reads and returns the
:class:`~nni_pl.compression.export._trt_plan.TensorRTPlan` (ranges by tensor name, bits by node name).

Building needs the ``tensorrt`` extra (TensorRT 8.x to 10.x, from NVIDIA's index) and a CUDA GPU:
``pip install 'nni-pl[tensorrt]' --extra-index-url https://pypi.nvidia.com``.

Example:
    >>> import torch
    >>> from nni_pl.compression.export.tensorrt import ModelSpeedupTensorRT
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> config = {"0": {"weight_bits": 8, "input_bits": 8, "tracked_min_input": -1.0, "tracked_max_input": 1.0,
    ...                 "output_bits": 8, "tracked_min_output": -3.0, "tracked_max_output": 2.5}}
    >>> engine = ModelSpeedupTensorRT(model, (16, 4), config=config, batchsize=16, onnx_path="model.onnx")
    >>> plan = engine.export_onnx()  # the file TensorRT parses, and what it is told about it
    >>> plan.ranges["actual_input_1"], plan.ranges["/0/Gemm_output_0"]
    ((-1.0, 1.0), (-3.0, 2.5))
    >>> plan.node_bits
    {'/0/Gemm': 8}
    >>> ModelSpeedupTensorRT(model, (16, 4), batchsize=8)
    Traceback (most recent call last):
    ...
    nni_pl.errors.ConfigError: config field 'input_shape': its first dimension is the batch and must equal batchsize=8, got input_shape=(16, 4); pass input_shape=(8, 4) or batchsize=16
"""

from __future__ import annotations

import abc
import contextlib
import importlib.util
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from nni_pl.compression.export._trt_calibration import (
    CalibrationCache,
    Calibrator,
    batch_calibration_data,
    resolve_algorithm,
)
from nni_pl.compression.export._trt_network import build_engine
from nni_pl.compression.export._trt_plan import (
    ALLOWED_BITS,
    OnnxLayer,
    TensorRTPlan,
    map_layers_to_onnx,
    plan_tensorrt_precision,
    validate_calibration_config,
)
from nni_pl.compression.export._trt_runtime import TensorRTError, cuda_device, import_tensorrt
from nni_pl.errors import ConfigError, MissingDependencyError

__all__ = [
    "BaseModelSpeedup",
    "CalibrationCache",
    "Calibrator",
    "ModelSpeedupTensorRT",
    "OnnxLayer",
    "TensorRTError",
    "TensorRTPlan",
    "batch_calibration_data",
    "map_layers_to_onnx",
    "plan_tensorrt_precision",
    "validate_calibration_config",
]

log = logging.getLogger(__name__)

_OPSET = 17  # the newest opset TensorRT 8.6's ONNX parser reads; 10.x reads it too


class BaseModelSpeedup(abc.ABC):
    """NNI's base of the quantization speed-up back ends: build an engine, run it, save it.

    Args:
        model: the (quantized) PyTorch model.
        config: the calibration dict a quantizer's ``export_model`` returned, or ``None``.
    """

    def __init__(self, model: Any, config: Any) -> None:
        self.model = model
        self.config = config

    @abc.abstractmethod
    def compress(self) -> Any:
        """Build the inference engine."""

    @abc.abstractmethod
    def inference(self, test_data: Any) -> tuple[Any, float]:
        """Run ``test_data`` through the engine; return the output and the seconds it took."""

    @abc.abstractmethod
    def export_quantized_model(self, path: str | Path) -> None:
        """Save the engine to ``path``."""


@contextlib.contextmanager
def _float_model(model: Any) -> Iterator[Any]:
    """The plain float model on the CPU in eval mode (quantizer wrappers out); all restored afterwards."""
    import torch

    try:
        from nni_pl.compression.quantization.base import is_quantized, unwrapped
    except ImportError:  # no quantization package: the model holds no wrappers
        is_quantized, unwrapped = (lambda m: False), None
    modes = [(m, m.training) for m in model.modules()]
    tensor = next(iter(model.parameters()), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    with contextlib.ExitStack() as stack:
        if unwrapped is not None and is_quantized(model):
            model = stack.enter_context(unwrapped(model))
        model.eval()
        model.cpu()
        try:
            yield model
        finally:
            model.to(device)
            for module, training in modes:
                module.training = training


def _check_names(names: Any, field_name: str, exactly_one: bool) -> list[str]:
    names = [names] if isinstance(names, str) else names
    if (
        not isinstance(names, Sequence)
        or not names
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
        or (exactly_one and len(names) != 1)
    ):
        want = (
            "a list of one name (the model's one input)"
            if exactly_one
            else "a list of distinct, non-empty names"
        )
        raise ConfigError(field_name, f"must be {want}, got {names!r}; e.g. {field_name}=['actual_input_1']")
    return list(names)


class ModelSpeedupTensorRT(BaseModelSpeedup):
    """Build a TensorRT engine from a quantized model (NNI's ``ModelSpeedupTensorRT``).

    Args:
        model: the model (a quantizer's wrappers are taken out for the export; the float weights are exported
            and TensorRT quantizes them itself).
        input_shape: the input's shape, batch first; the engine runs exactly this shape.
        config: the calibration dict of ``quantizer.export_model(...)``: its layers run in int8 (8 bits, with the
            tracked ranges), fp16 (16) or fp32 (32). ``None``: calibrate with ``calib_data_loader``, or build a
            float (``extra_layer_bits`` 32) / fp16 (16) engine.
        onnx_path: where the float ONNX file is written.
        extra_layer_bits: the precision of the layers ``config`` does not name: 32 (fp32), 16 (fp16) or 8 (int8,
            which needs ``calib_data_loader``).
        strict_datatype: make TensorRT obey the precisions (``OBEY_PRECISION_CONSTRAINTS``; ``STRICT_TYPES``
            before TensorRT 8.2); ``False`` only prefers them.
        calibrate_type: the calibrator of post-training quantization: a ``tensorrt.CalibrationAlgoType`` or its
            name; ``None`` = ``ENTROPY_CALIBRATION_2``.
        calib_data_loader: calibration inputs: a ``DataLoader`` (of ``(input, target)`` or inputs), a tensor or a
            numpy array; TensorRT calibrates the tensors ``config`` gives no range.
        calibration_cache: the calibrator's cache file (reused when it exists; ``None``: none).
        batchsize: the engine's batch size (``input_shape[0]``).
        input_names: the ONNX input's name (one input).
        output_names: the ONNX outputs' names.

    Raises:
        ConfigError: an argument is invalid (the message names it, echoes the value and says how to fix it).
    """

    def __init__(
        self,
        model: Any,
        input_shape: Sequence[int],
        config: Any = None,
        onnx_path: str | os.PathLike[str] = "default_model.onnx",
        extra_layer_bits: int = 32,
        strict_datatype: bool = True,
        calibrate_type: Any = None,
        calib_data_loader: Any = None,
        calibration_cache: str | os.PathLike[str] | None = "calibration.cache",
        batchsize: int = 1,
        input_names: Sequence[str] = ("actual_input_1",),
        output_names: Sequence[str] = ("output1",),
    ) -> None:
        import torch

        if not isinstance(model, torch.nn.Module):
            raise ConfigError("model", f"must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(batchsize, bool) or not isinstance(batchsize, int) or batchsize < 1:
            raise ConfigError("batchsize", f"must be a positive integer, got {batchsize!r}")
        shape = tuple(input_shape) if isinstance(input_shape, (Sequence, torch.Size)) else None
        if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise ConfigError(
                "input_shape",
                f"must be a tuple of positive ints, batch first, got {input_shape!r}; e.g. (1, 3, 32, 32)",
            )
        if shape[0] != batchsize:
            raise ConfigError(
                "input_shape",
                f"its first dimension is the batch and must equal batchsize={batchsize}, got input_shape={shape}; "
                f"pass input_shape={(batchsize, *shape[1:])} or batchsize={shape[0]}",
            )
        if extra_layer_bits not in ALLOWED_BITS or isinstance(extra_layer_bits, bool):
            raise ConfigError(
                "extra_layer_bits",
                f"must be 8, 16 or 32 (the precision of the layers config does not name), got {extra_layer_bits!r}",
            )
        if extra_layer_bits == 8 and calib_data_loader is None:
            raise ConfigError(
                "extra_layer_bits",
                "is 8, so every layer config does not name runs in int8 and needs calibrated ranges, but "
                "calib_data_loader is None; give calib_data_loader, or extra_layer_bits=16/32",
            )
        if not isinstance(strict_datatype, bool):
            raise ConfigError("strict_datatype", f"must be True or False, got {strict_datatype!r}")
        names = [name for name, _ in model.named_modules() if name]
        super().__init__(model, None if config is None else validate_calibration_config(config, names))
        self.input_shape = shape
        self.onnx_path = Path(onnx_path)
        self.extra_layer_bits = int(extra_layer_bits)
        self.strict_datatype = strict_datatype
        self.calibrate_type = resolve_algorithm(calibrate_type)
        if hasattr(calib_data_loader, "__array__") or hasattr(calib_data_loader, "detach"):
            batch_calibration_data(
                calib_data_loader, batchsize, shape[1:]
            )  # a loader is checked in compress()
        self.calib_data_loader = calib_data_loader
        self.calibration_cache = Path(calibration_cache) if calibration_cache is not None else None
        self.batchsize = batchsize
        self.input_names = _check_names(input_names, "input_names", exactly_one=True)
        self.output_names = _check_names(output_names, "output_names", exactly_one=False)
        self.plan: TensorRTPlan | None = None
        self.calibrator: Calibrator | None = None
        self.engine: Any = None
        self.context: Any = None
        self._runtime: Any = None
        self._device: Any = None
        self._io: dict[str, Any] | None = None

    # -- ONNX: plain Python ------------------------------------------------------------------------------------
    def export_onnx(self) -> TensorRTPlan:
        """Write the float ONNX model TensorRT parses to :attr:`onnx_path`; return (and keep) its plan.

        Raises:
            ConfigError: the calibration dict does not fit the exported graph, or ``output_names`` does not
                name the model's outputs.
        """
        if importlib.util.find_spec("onnx") is None:
            raise MissingDependencyError("onnx", "tensorrt", "ModelSpeedupTensorRT.export_onnx()")
        import onnx
        import torch

        self.onnx_path.parent.mkdir(parents=True, exist_ok=True)
        with _float_model(self.model) as plain, torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", category=DeprecationWarning
            )  # the TorchScript exporter is "legacy"
            # the TorchScript exporter: its scoped node names (/conv1/Conv) tie nodes to modules, and it folds
            # BatchNorm into the preceding convolution in eval mode, as TensorRT would
            torch.onnx.export(
                plain,
                (
                    torch.randn(*self.input_shape, generator=torch.Generator().manual_seed(0)),
                ),  # global RNG untouched
                str(self.onnx_path),
                dynamo=False,
                opset_version=_OPSET,
                input_names=self.input_names,
                output_names=self.output_names,
                do_constant_folding=True,
            )
        proto = onnx.load(str(self.onnx_path))
        onnx.checker.check_model(proto)
        outputs = [o.name for o in proto.graph.output]
        if outputs != self.output_names:
            raise ConfigError(
                "output_names",
                f"the model has {len(outputs)} output(s) ({outputs}), got names {self.output_names}; give one name "
                "per output",
            )
        self.plan = plan_tensorrt_precision(proto, self.config, self.extra_layer_bits)
        log.info("exported %s for TensorRT: %d int8 tensor ranges", self.onnx_path, len(self.plan.ranges))
        return self.plan

    # -- TensorRT ----------------------------------------------------------------------------------------------
    def compress(self) -> ModelSpeedupTensorRT:
        """Export the ONNX model and build the TensorRT engine (calibrating first when there is calibration data).

        Raises:
            MissingDependencyError: tensorrt is not installed (the ``tensorrt`` extra).
            TensorRTError: no CUDA GPU, an unsupported TensorRT, or the parser/builder failed.
        """
        trt = import_tensorrt("ModelSpeedupTensorRT.compress()")
        self._device = cuda_device("ModelSpeedupTensorRT.compress()")
        plan = self.export_onnx()
        if self.calib_data_loader is not None:
            batches = batch_calibration_data(self.calib_data_loader, self.batchsize, self.input_shape[1:])
            self.calibrator = Calibrator._from_batches(batches, self.calibration_cache, self.calibrate_type)
            self.calibrator._device = self._device
        self._runtime, self.engine = build_engine(
            trt, self.onnx_path, plan, strict=self.strict_datatype, calibrator=self.calibrator
        )
        self.context = self.engine.create_execution_context()
        self._io = None
        return self

    def export_quantized_model(self, path: str | Path) -> None:
        """Save the engine (a TensorRT plan file, loadable only by the same TensorRT version on a like GPU)."""
        engine = self._require_engine("export_quantized_model")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(memoryview(engine.serialize())))
        log.info("TensorRT engine saved to %s", path)

    def load_quantized_model(self, path: str | Path) -> None:
        """Load an engine :meth:`export_quantized_model` saved.

        Raises:
            TensorRTError: the file is not an engine this TensorRT and GPU can run.
        """
        trt = import_tensorrt("ModelSpeedupTensorRT.load_quantized_model()")
        self._device = cuda_device("ModelSpeedupTensorRT.load_quantized_model()")
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        with self._device.active():
            engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if engine is None:
            raise TensorRTError(
                f"load_quantized_model: {str(path)!r} is not an engine TensorRT {trt.__version__} can load here; an "
                "engine runs only on the TensorRT version and GPU kind that built it: build it again with compress()"
            )
        self._runtime, self.engine = runtime, engine
        self.context = engine.create_execution_context()
        self._io = None

    def inference(self, test_data: Any) -> tuple[Any, float]:
        """Run ``test_data`` (batch first) through the engine, ``batchsize`` samples at a time.

        A last, smaller batch is padded with zeros and its padding cut from the output (NNI dropped it).

        Returns:
            The output as a CPU ``torch.Tensor`` (a tuple of them for several outputs) and the seconds the
            copies to and from the GPU and the engine's runs took.
        """
        import numpy as np
        import torch

        self._require_engine("inference")
        data = (
            test_data.detach().cpu().numpy() if isinstance(test_data, torch.Tensor) else np.asarray(test_data)
        )
        data = np.ascontiguousarray(data, dtype=np.float32)
        if data.ndim != len(self.input_shape) or tuple(data.shape[1:]) != self.input_shape[1:]:
            raise ConfigError(
                "test_data",
                f"must have shape (N, {', '.join(map(str, self.input_shape[1:]))}) like input_shape={self.input_shape}, "
                f"got {tuple(data.shape)}",
            )
        io = self._io_buffers()
        device = self._device
        results: list[list[Any]] = [[] for _ in io["outputs"]]
        start = time.perf_counter()
        for first in range(0, data.shape[0], self.batchsize):
            chunk = data[first : first + self.batchsize]
            valid = chunk.shape[0]
            if valid < self.batchsize:
                chunk = np.concatenate(
                    [chunk, np.zeros((self.batchsize - valid, *chunk.shape[1:]), np.float32)]
                )
            device.upload(io["input"]["buffer"], chunk.astype(io["input"]["dtype"], copy=False))
            self._execute(io)
            for out, store in zip(io["outputs"], results):
                host = np.empty(out["shape"], dtype=out["dtype"])
                device.download(out["buffer"], host)
                store.append(host[:valid])
        elapsed = time.perf_counter() - start
        tensors = [torch.from_numpy(np.concatenate(parts)) for parts in results]
        return (tensors[0] if len(tensors) == 1 else tuple(tensors)), elapsed

    def _require_engine(self, what: str) -> Any:
        if self.engine is None or self.context is None:
            raise TensorRTError(f"{what}: no engine yet; call compress() or load_quantized_model(path) first")
        return self.engine

    def _io_buffers(self) -> dict[str, Any]:
        if self._io is not None:
            return self._io
        trt = import_tensorrt("ModelSpeedupTensorRT.inference()")
        engine, context = self.engine, self.context
        batch_shape = self.input_shape
        tensors: list[dict[str, Any]] = []
        if hasattr(engine, "num_io_tensors"):  # TensorRT 8.5+: tensors by name (bindings are gone in 10)
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
                if is_input and -1 in tuple(engine.get_tensor_shape(name)):
                    context.set_input_shape(name, batch_shape)
                shape = tuple(context.get_tensor_shape(name))
                tensors.append(
                    {
                        "name": name,
                        "input": is_input,
                        "shape": shape,
                        "dtype": trt.nptype(engine.get_tensor_dtype(name)),
                        "index": i,
                    }
                )
        else:  # TensorRT 8.0-8.4: binding indices
            for i in range(engine.num_bindings):
                is_input = engine.binding_is_input(i)
                if is_input and -1 in tuple(engine.get_binding_shape(i)):
                    context.set_binding_shape(i, batch_shape)
                tensors.append(
                    {
                        "name": engine.get_binding_name(i),
                        "input": is_input,
                        "shape": tuple(context.get_binding_shape(i)),
                        "dtype": trt.nptype(engine.get_binding_dtype(i)),
                        "index": i,
                    }
                )
        inputs = [t for t in tensors if t["input"]]
        if len(inputs) != 1:
            raise TensorRTError(
                f"inference: the engine has {len(inputs)} inputs; ModelSpeedupTensorRT feeds one"
            )
        import numpy as np

        for t in tensors:
            t["buffer"] = self._device.alloc(int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize)
            if hasattr(context, "set_tensor_address"):
                context.set_tensor_address(t["name"], t["buffer"].ptr)
        self._io = {"input": inputs[0], "outputs": [t for t in tensors if not t["input"]], "all": tensors}
        return self._io

    def _execute(self, io: dict[str, Any]) -> None:
        device, context = self._device, self.context
        with device.active():
            if hasattr(context, "execute_async_v3"):
                ok = context.execute_async_v3(device.stream_handle)
            else:
                bindings = [t["buffer"].ptr for t in sorted(io["all"], key=lambda t: t["index"])]
                ok = context.execute_async_v2(bindings=bindings, stream_handle=device.stream_handle)
        if not ok:
            raise TensorRTError("inference: TensorRT failed to run the engine (its log says why)")
