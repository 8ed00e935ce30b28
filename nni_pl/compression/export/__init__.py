"""Export trained (and quantised) models: ONNX files ONNX Runtime runs in int8, TensorRT engines.

Names are resolved lazily, so ``import nni_pl.compression.export`` imports neither torch nor onnx.

* :func:`export_onnx` writes a float ONNX model, or for a quantised model (one holding a quantiser's
  ``QuantizerModuleWrapper``) a QDQ model whose int8 weights and int32 biases ONNX Runtime fuses into
  ``QLinearConv``/``QLinearMatMul`` kernels (:func:`finalize_qdq` does that rewrite).
* :func:`verify_onnx` runs the file in ONNX Runtime and compares it with the PyTorch model
  (:class:`OnnxReport`); :func:`ort_session` opens a CPU session.
* :class:`ModelSpeedupTensorRT` builds a TensorRT engine (the ``tensorrt`` extra).

The ONNX functions need the ``onnx`` extra: ``pip install 'nni-pl[onnx]'``.

Example:
    >>> import nni_pl.compression.export as export
    >>> export.export_onnx.__name__
    'export_onnx'
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BaseModelSpeedup",
    "CalibrationCache",
    "Calibrator",
    "ModelSpeedupTensorRT",
    "OnnxReport",
    "export_onnx",
    "finalize_qdq",
    "is_quantized_model",
    "missing_onnx_packages",
    "ort_session",
    "plan_tensorrt_precision",
    "require_onnx",
    "verify_onnx",
]

_LAZY = {
    "BaseModelSpeedup": "nni_pl.compression.export.tensorrt",
    "CalibrationCache": "nni_pl.compression.export.tensorrt",
    "Calibrator": "nni_pl.compression.export.tensorrt",
    "ModelSpeedupTensorRT": "nni_pl.compression.export.tensorrt",
    "plan_tensorrt_precision": "nni_pl.compression.export.tensorrt",
    "OnnxReport": "nni_pl.compression.export._onnx",
    "export_onnx": "nni_pl.compression.export._onnx",
    "finalize_qdq": "nni_pl.compression.export._qdq",
    "is_quantized_model": "nni_pl.compression.export._onnx",
    "missing_onnx_packages": "nni_pl.compression.export._onnx",
    "ort_session": "nni_pl.compression.export._onnx",
    "require_onnx": "nni_pl.compression.export._onnx",
    "verify_onnx": "nni_pl.compression.export._onnx",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nni_pl.compression.export' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
