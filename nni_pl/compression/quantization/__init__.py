"""Quantizers (NNI 2.5 names and arguments), the config_list, and the wrapper every quantized module becomes.

Names are resolved lazily so that ``import nni_pl.compression.quantization`` does not import torch.

For ONNX Runtime on x86 CPUs, quantize weights with 7 bits (``"quant_bits": {"weight": 7, "input": 8}``, a
symmetric weight scheme): :func:`nni_pl.compression.export.export_onnx` then stores them as int8, which ONNX
Runtime runs with its faster u8s8 kernels (``quantize_static``'s layout) without the saturation 8-bit weights
suffer there on CPUs without VNNI; 8-bit weights are exported as uint8 (u8u8 kernels, exact, slower).

Example:
    >>> import torch
    >>> from nni_pl.compression.quantization import QAT_Quantizer
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    >>> quantizer = QAT_Quantizer(model, [{"quant_types": ["weight"], "quant_bits": 8, "op_types": ["Linear"]}])
    >>> model = quantizer.compress()
    >>> type(model[0]).__name__
    'QuantizerModuleWrapper'
"""

from __future__ import annotations

import importlib
from typing import Any

_BASE = "nni_pl.compression.quantization.base"
_QUANTIZERS = "nni_pl.compression.quantization.quantizers"
_CONFIG = "nni_pl.compression.quantization.config"

_LAZY = {
    "QuantGrad": _BASE,
    "QuantType": _BASE,
    "Quantizer": _BASE,
    "QuantizerModuleWrapper": _BASE,
    "find_conv_bn_patterns": _BASE,
    "find_wrappers": _BASE,
    "is_quantized": _BASE,
    "unwrapped": _BASE,
    "BNNQuantizer": _QUANTIZERS,
    "DoReFaQuantizer": _QUANTIZERS,
    "LsqQuantizer": _QUANTIZERS,
    "NaiveQuantizer": _QUANTIZERS,
    "ObserverQuantizer": _QUANTIZERS,
    "QAT_Quantizer": _QUANTIZERS,
    "ModelSpeedupTensorRT": "nni_pl.compression.export.tensorrt",  # NNI's quantization_speedup name
    "reset_quant_scheme_dtype": _CONFIG,
    "set_quant_scheme_dtype": _CONFIG,
    "validate_config_list": _CONFIG,
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nni_pl.compression.quantization' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
