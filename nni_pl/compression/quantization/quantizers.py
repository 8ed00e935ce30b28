"""NNI 2.5's quantizers, with NNI's names and arguments: Naive, QAT, LSQ, DoReFa, BNN and Observer (PTQ).

All but DoReFa and BNN are affine (a scale and zero point per tensor or weight channel), so their models export
to ONNX QuantizeLinear/DequantizeLinear and run in int8 (:mod:`nni_pl.compression.export`).

* :class:`NaiveQuantizer` -- weights only, 8-bit symmetric by default, no training.
* :class:`QAT_Quantizer` -- quantization-aware training (Jacob et al. 2018): weights from their current range,
  activations from exponential moving averages of their range (decay 0.99) tracked in training; nothing is
  quantized in training before ``quant_start_step`` optimizer steps; Conv-BN pairs folded with ``dummy_input``.
* :class:`LsqQuantizer` -- learned step size (Esser et al. 2020): one trained scale per tensor, zero point 0,
  initialised as ``2 * mean(|x|) / sqrt(qmax)`` on the first batch, its gradient scaled by
  ``1 / sqrt(numel * qmax)``.
* :class:`DoReFaQuantizer` -- DoReFa-Net weights: ``2 * quantize_k(tanh(w) / (2 max|tanh(w)|) + 1/2) - 1``.
* :class:`BNNQuantizer` -- binarized weights and activations (sign, 0 -> +1), gradient passed where ``|x| <= 1``.
* :class:`ObserverQuantizer` -- post-training quantization: run calibration batches, then ``compress()`` fixes
  the scales from the observed min/max (weights ``per_tensor_symmetric`` int8, activations ``per_tensor_affine``
  uint8 unless the config_list says otherwise).

Example:
    >>> import torch
    >>> from nni_pl.compression.quantization import ObserverQuantizer
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    >>> quantizer = ObserverQuantizer(model, [{"quant_types": ["weight", "input"], "quant_bits": 8,
    ...                                        "op_types": ["Linear"]},
    ...                                       {"quant_types": ["output"], "quant_bits": 8, "op_types": ["ReLU"]}])
    >>> with torch.no_grad():
    ...     _ = model(torch.randn(16, 4))          # calibration
    >>> model = quantizer.compress()
    >>> sorted(quantizer.calibration_config()["0"])
    ['input_bits', 'tracked_max_input', 'tracked_min_input', 'weight_bits', 'weight_scale', 'weight_zero_point']
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from nni_pl.compression.quantization.base import QuantGrad, Quantizer, QuantizerModuleWrapper
from nni_pl.compression.quantization.config import TensorQuantSetting
from nni_pl.compression.quantization.ops import QuantParams, qrange
from nni_pl.errors import ConfigError, NniPlError

__all__ = [
    "BNNQuantizer",
    "DoReFaQuantizer",
    "LsqQuantizer",
    "NaiveQuantizer",
    "ObserverQuantizer",
    "QAT_Quantizer",
]

logger = logging.getLogger(__name__)

_NAN = float("nan")


def _register_ranges(wrapper: QuantizerModuleWrapper, kinds: Sequence[str]) -> None:
    for kind in kinds:
        if kind in wrapper.settings:
            wrapper.register_buffer(f"tracked_min_{kind}", torch.tensor(_NAN))
            wrapper.register_buffer(f"tracked_max_{kind}", torch.tensor(_NAN))


def _tracked(wrapper: QuantizerModuleWrapper, kind: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    low, high = getattr(wrapper, f"tracked_min_{kind}"), getattr(wrapper, f"tracked_max_{kind}")
    if torch.isnan(low).any() or torch.isnan(high).any():
        return None
    return low, high


def _track(
    wrapper: QuantizerModuleWrapper,
    kind: str,
    tensor: torch.Tensor,
    update_low: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    update_high: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Fold ``tensor``'s min and max into the tracked range (the first batch sets it)."""
    low_b, high_b = getattr(wrapper, f"tracked_min_{kind}"), getattr(wrapper, f"tracked_max_{kind}")
    x = tensor.detach()
    low, high = x.min().float(), x.max().float()
    if torch.isnan(low_b):
        low_b.copy_(low)
        high_b.copy_(high)
    else:
        low_b.copy_(update_low(low_b, low))
        high_b.copy_((update_high or update_low)(high_b, high))


class _RangeTracking(Quantizer):
    """Quantizers whose activations are quantized to a tracked ``[min, max]`` (Naive, QAT, Observer).

    Their quantization is torch's fake-quant op, whose own backward is :class:`QuantGrad`'s default (straight
    through inside the range, zero outside), so no ``QuantGrad`` wraps it: that would quantize under no_grad,
    compute the range a second time for the backward and round again there. A subclass that sets ``quant_grad``
    gets it wrapped as usual.
    """

    quant_grad: ClassVar[type[QuantGrad] | None] = None

    def tracked_range(self, wrapper: QuantizerModuleWrapper, kind: str) -> tuple[float, float] | None:
        if kind == "weight":
            return super().tracked_range(wrapper, kind)
        r = _tracked(wrapper, kind)
        return None if r is None else (float(r[0]), float(r[1]))

    def set_range(self, wrapper: QuantizerModuleWrapper, kind: str, low: float, high: float) -> None:
        getattr(wrapper, f"tracked_min_{kind}").fill_(low)
        getattr(wrapper, f"tracked_max_{kind}").fill_(high)

    def _activation_params(self, wrapper: QuantizerModuleWrapper, kind: str) -> QuantParams | None:
        r = _tracked(wrapper, kind)
        return None if r is None else self.params(r[0], r[1], wrapper.settings[kind])

    def _weight_params(self, wrapper: QuantizerModuleWrapper) -> QuantParams:
        setting = wrapper.settings["weight"]
        low, high = self.tensor_range(wrapper.float_weight(), setting)
        return self.params(low, high, setting)

    def quant_params(self, wrapper: QuantizerModuleWrapper, kind: str) -> QuantParams | None:
        if kind == "weight":
            return self._weight_params(wrapper)
        return self._activation_params(wrapper, kind)

    def quantize_weight(self, wrapper: QuantizerModuleWrapper, **kwargs: Any) -> torch.Tensor:
        return self.fake_quant(wrapper.module.weight, self._weight_params(wrapper))

    def _activation(self, x: torch.Tensor, wrapper: QuantizerModuleWrapper, kind: str) -> torch.Tensor:
        p = self._activation_params(wrapper, kind)
        return x if p is None else self.fake_quant(x, p)

    def quantize_input(
        self, inputs: torch.Tensor, wrapper: QuantizerModuleWrapper, **kwargs: Any
    ) -> torch.Tensor:
        return self._activation(inputs, wrapper, "input")

    def quantize_output(
        self, output: torch.Tensor, wrapper: QuantizerModuleWrapper, **kwargs: Any
    ) -> torch.Tensor:
        return self._activation(output, wrapper, "output")


class NaiveQuantizer(_RangeTracking):
    """Weights to 8 bits (symmetric, per tensor), no training or calibration (NNI's ``NaiveQuantizer``).

    Args:
        model: the model.
        config_list: default ``[{'quant_types': ['weight'], 'quant_bits': 8, 'op_types': ['default']}]``.
        optimizer: unused (NNI's signature).

    NNI truncates ``w / scale`` toward zero; this rounds to nearest, which halves the error.

    Example:
        >>> import torch
        >>> from nni_pl.compression.quantization import NaiveQuantizer
        >>> model = NaiveQuantizer(torch.nn.Sequential(torch.nn.Linear(8, 2))).compress()
        >>> len(torch.unique(model[0].module.weight))  <= 256
        True
    """

    supported_quant_types: ClassVar[tuple[str, ...]] = ("weight",)
    defaults: ClassVar[dict[str, tuple[str, str]] | None] = {"weight": ("per_tensor_symmetric", "int")}

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]] | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        if config_list is None:
            config_list = [{"quant_types": ["weight"], "quant_bits": 8, "op_types": ["default"]}]
        super().__init__(model, config_list, optimizer)
        with torch.no_grad():  # quantized weights in place from the start, as NNI's compress() leaves them
            for w in self.modules_wrapper:
                w.module._buffers["weight"] = self.quantize_weight_of(w)

    def quantize_weight_of(self, wrapper: QuantizerModuleWrapper) -> torch.Tensor:
        return self.fake_quant(wrapper.float_weight(), self._weight_params(wrapper))


class QAT_Quantizer(_RangeTracking):
    """Quantization-aware training (NNI's ``QAT_Quantizer``).

    Args:
        model: the model (build the quantizer before wrapping the model in DDP).
        config_list: NNI config_list; ``quant_start_step`` delays quantization in training.
        optimizer: the training optimizer; each of its steps counts towards ``quant_start_step``. Without one,
            call :meth:`step_with_optimizer` after each step.
        dummy_input: an example input; given, Conv-BatchNorm pairs are folded while training.
        ema_decay: decay of the activation ranges' moving averages.

    Example:
        >>> import torch
        >>> from nni_pl.compression.quantization import QAT_Quantizer
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
        >>> config = [{"quant_types": ["weight", "input"], "quant_bits": 8, "op_types": ["Conv2d"]},
        ...           {"quant_types": ["output"], "quant_bits": 8, "op_types": ["ReLU"]}]
        >>> quantizer = QAT_Quantizer(model, config, dummy_input=torch.randn(1, 1, 8, 8))
        >>> type(model[1]).__name__                  # the BatchNorm is folded into the convolution
        'Identity'
        >>> _ = model(torch.randn(4, 1, 8, 8))       # training: ranges tracked, tensors fake-quantized
        >>> sorted(quantizer.calibration_config()["2"])
        ['output_bits', 'tracked_max_output', 'tracked_min_output']
    """

    folds_bn: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        optimizer: torch.optim.Optimizer | None = None,
        dummy_input: Any = None,
        *,
        ema_decay: float = 0.99,
    ) -> None:
        if not 0.0 <= ema_decay < 1.0:
            raise ConfigError("ema_decay", f"must be in [0, 1), got {ema_decay!r}")
        self.ema_decay = ema_decay
        super().__init__(model, config_list, optimizer, dummy_input)
        if optimizer is None and any(
            int(w.config.get("quant_start_step", 0)) > 0 for w in self.modules_wrapper
        ):
            logger.warning(
                "quant_start_step is set but no optimizer was given: call quantizer.step_with_optimizer() after "
                "each optimizer step, or quantization never starts in training"
            )

    def init_wrapper(self, wrapper: QuantizerModuleWrapper) -> None:
        _register_ranges(wrapper, ("input", "output"))

    def observe(self, wrapper: QuantizerModuleWrapper, kind: str, tensor: torch.Tensor) -> None:
        if kind == "weight" or not wrapper.training or self.frozen or torch.onnx.is_in_onnx_export():
            return
        d = self.ema_decay
        _track(wrapper, kind, tensor, lambda old, new: old * d + new * (1 - d))


class ObserverQuantizer(_RangeTracking):
    """Post-training quantization (NNI's ``ObserverQuantizer``): calibrate, then :meth:`compress`.

    While not compressed, every wrapped tensor is only observed (running min and max); ``compress()`` fixes the
    scales from what was seen, puts the model in eval mode and quantizes from then on. NNI hard-codes an 8-bit
    ``reduce_range`` (7-bit) activation observer for one x86 kernel; this uses the config's bits in full.

    Args:
        model: the model.
        config_list: NNI config_list (NNI's tutorial calls its variable ``configure_list``).
        optimizer: unused (NNI's signature).

    Example:
        >>> import torch
        >>> from nni_pl.compression.quantization import ObserverQuantizer
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 3))
        >>> q = ObserverQuantizer(model, [{"quant_types": ["output"], "quant_bits": 8, "op_types": ["Linear"]}])
        >>> q.compress()
        Traceback (most recent call last):
        ...
        nni_pl.errors.NniPlError: ObserverQuantizer: layer '0' saw no output during calibration; run calibration batches through the model (model(x) under torch.no_grad()) before compress()
    """

    defaults: ClassVar[dict[str, tuple[str, str]] | None] = {
        "weight": ("per_tensor_symmetric", "int"),
        "input": ("per_tensor_affine", "uint"),
        "output": ("per_tensor_affine", "uint"),
    }

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        super().__init__(model, config_list, optimizer)

    def init_wrapper(self, wrapper: QuantizerModuleWrapper) -> None:
        _register_ranges(wrapper, ("input", "output"))
        wrapper.register_buffer("calibrated", torch.tensor(False))

    def is_active(self, wrapper: QuantizerModuleWrapper) -> bool:
        return bool(wrapper.calibrated)

    def observe(self, wrapper: QuantizerModuleWrapper, kind: str, tensor: torch.Tensor) -> None:
        if kind == "weight" or bool(wrapper.calibrated) or torch.onnx.is_in_onnx_export():
            return
        _track(wrapper, kind, tensor, torch.minimum, torch.maximum)

    def compress(self) -> nn.Module:
        for w in self.modules_wrapper:
            for kind in ("input", "output"):
                if kind in w.settings and _tracked(w, kind) is None:
                    raise NniPlError(
                        f"ObserverQuantizer: layer {w.name!r} saw no {kind} during calibration; run calibration "
                        "batches through the model (model(x) under torch.no_grad()) before compress()"
                    )
            w.calibrated.fill_(True)
        self.bound_model.eval()
        return self.bound_model


class _LsqRound(torch.autograd.Function):
    """round() with the straight-through gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


def _grad_scale(s: torch.Tensor, g: float) -> torch.Tensor:
    """``s`` in the forward, its gradient multiplied by ``g`` in the backward."""
    return (s - s * g).detach() + s * g


class LsqQuantizer(Quantizer):
    """Learned step size quantization (NNI's ``LsqQuantizer``): the scales are trained with the weights.

    Every quantized tensor gets a scale parameter ``<kind>_scale`` on its wrapper (zero point 0; signed ranges
    unless the config says ``quant_dtype: uint``). Given an optimizer, the scales are added to it as a new
    parameter group; otherwise add ``quantizer.scale_parameters()`` to yours.

    Args:
        model: the model.
        config_list: NNI config_list (per-tensor schemes only).
        optimizer: the training optimizer.
        dummy_input: an example input; given, Conv-BatchNorm pairs are folded.

    Example:
        >>> import torch
        >>> from nni_pl.compression.quantization import LsqQuantizer
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 2))
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> q = LsqQuantizer(model, [{"quant_types": ["weight"], "quant_bits": 4, "op_types": ["Linear"]}], opt)
        >>> len(opt.param_groups), tuple(model[0].weight_scale.shape)
        (2, ())
    """

    folds_bn: ClassVar[bool] = True
    quant_grad: ClassVar[type[QuantGrad] | None] = None
    defaults: ClassVar[dict[str, tuple[str, str]] | None] = {
        k: ("per_tensor_symmetric", "int") for k in ("weight", "input", "output")
    }

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        optimizer: torch.optim.Optimizer | None = None,
        dummy_input: Any = None,
    ) -> None:
        super().__init__(model, config_list, optimizer, dummy_input)
        if optimizer is not None:
            optimizer.add_param_group({"params": self.scale_parameters()})

    def validate_config(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]]) -> None:
        for i, entry in enumerate(config_list):
            schemes = entry.get("quant_scheme")
            values = schemes.values() if isinstance(schemes, Mapping) else [schemes]
            for s in values:
                if isinstance(s, str) and s.startswith("per_channel"):
                    raise ConfigError(
                        f"config_list[{i}].quant_scheme",
                        f"LsqQuantizer learns one scale per tensor, got {s!r}; use per_tensor_symmetric",
                    )

    def init_wrapper(self, wrapper: QuantizerModuleWrapper) -> None:
        device = next(wrapper.module.parameters(), torch.empty(0)).device
        for kind in wrapper.settings:
            wrapper.register_parameter(f"{kind}_scale", nn.Parameter(torch.tensor(1.0, device=device)))
            wrapper.register_buffer(f"{kind}_initialized", torch.tensor(False, device=device))

    def scale_parameters(self) -> list[nn.Parameter]:
        """The trained scales of every wrapper."""
        return [getattr(w, f"{k}_scale") for w in self.modules_wrapper for k in w.settings]

    def _range(self, setting: TensorQuantSetting) -> tuple[int, int]:
        return qrange(setting.bits, setting.dtype)

    def _lsq(self, x: torch.Tensor, wrapper: QuantizerModuleWrapper, kind: str) -> torch.Tensor:
        setting = wrapper.settings[kind]
        qmin, qmax = self._range(setting)
        scale = getattr(wrapper, f"{kind}_scale")
        initialized = getattr(wrapper, f"{kind}_initialized")
        if not bool(initialized):
            with torch.no_grad():
                scale.copy_(torch.clamp(2 * x.detach().abs().mean() / math.sqrt(max(qmax, 1)), min=1e-8))
                initialized.fill_(True)
        g = 1.0 / math.sqrt(x.numel() * max(qmax, 1))
        s = _grad_scale(scale, g)
        return _LsqRound.apply(torch.clamp(x / s, qmin, qmax)) * s

    def quantize_weight(self, wrapper: QuantizerModuleWrapper, **kwargs: Any) -> torch.Tensor:
        return self._lsq(wrapper.module.weight, wrapper, "weight")

    def quantize_input(
        self, inputs: torch.Tensor, wrapper: QuantizerModuleWrapper, **kwargs: Any
    ) -> torch.Tensor:
        return self._lsq(inputs, wrapper, "input")

    def quantize_output(
        self, output: torch.Tensor, wrapper: QuantizerModuleWrapper, **kwargs: Any
    ) -> torch.Tensor:
        return self._lsq(output, wrapper, "output")

    def quant_params(self, wrapper: QuantizerModuleWrapper, kind: str) -> QuantParams | None:
        setting = wrapper.settings[kind]
        qmin, qmax = self._range(setting)
        scale = getattr(wrapper, f"{kind}_scale").detach().abs().clamp(min=1e-8)
        return QuantParams(
            scale, torch.zeros((), dtype=torch.int32), qmin, qmax, None, setting.bits, setting.dtype
        )

    def set_range(self, wrapper: QuantizerModuleWrapper, kind: str, low: float, high: float) -> None:
        _, qmax = self._range(wrapper.settings[kind])
        with torch.no_grad():
            getattr(wrapper, f"{kind}_scale").fill_(max(abs(low), abs(high), 1e-8) / max(qmax, 1))
            getattr(wrapper, f"{kind}_initialized").fill_(True)


class _ClipGrad(QuantGrad):
    """BNN's gradient: straight through where ``|x| <= 1``, zero elsewhere."""

    @staticmethod
    def quant_backward(tensor, grad_output, quant_type, scale, zero_point, qmin, qmax):  # type: ignore[override]
        return grad_output * (tensor.abs() <= 1).to(grad_output.dtype)


class BNNQuantizer(Quantizer):
    """Binarized neural networks (NNI's ``BNNQuantizer``): weights and activations become -1 or +1.

    ``quant_bits`` must be 1; quantize ``weight`` of Conv/Linear layers and ``output`` of their activations
    (NNI's example: ``Hardtanh``).

    Example:
        >>> import torch
        >>> from nni_pl.compression.quantization import BNNQuantizer
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Hardtanh())
        >>> _ = BNNQuantizer(model, [{"quant_types": ["weight"], "quant_bits": 1, "op_types": ["Linear"]},
        ...                          {"quant_types": ["output"], "quant_bits": 1, "op_types": ["Hardtanh"]}])
        >>> set(model(torch.randn(5, 4)).flatten().tolist()) <= {-1.0, 1.0}
        True
    """

    quant_grad: ClassVar[type[QuantGrad] | None] = _ClipGrad
    supported_quant_types: ClassVar[tuple[str, ...]] = ("weight", "output")

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        super().__init__(model, config_list, optimizer)

    def validate_config(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]]) -> None:
        for i, entry in enumerate(config_list):
            bits = entry.get("quant_bits")
            values = bits.values() if isinstance(bits, Mapping) else [bits]
            if not entry.get("exclude", False) and any(b != 1 for b in values):
                raise ConfigError(
                    f"config_list[{i}].quant_bits",
                    f"BNNQuantizer binarizes, so quant_bits must be 1, got {bits!r}",
                )

    @staticmethod
    def _sign(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    def quantize_weight(self, wrapper: QuantizerModuleWrapper, **kwargs: Any) -> torch.Tensor:
        return self._sign(wrapper.module.weight)

    def quantize_output(
        self, output: torch.Tensor, wrapper: QuantizerModuleWrapper, **kwargs: Any
    ) -> torch.Tensor:
        return self._sign(output)


class _DoReFaRound(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, levels: int) -> torch.Tensor:
        return torch.round(x * levels) / levels

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class DoReFaQuantizer(Quantizer):
    """DoReFa-Net weight quantization (NNI's ``DoReFaQuantizer``): ``k``-bit weights on a uniform grid in [-1, 1].

    The gradient flows through ``tanh`` and straight through the rounding, as in the paper.

    Example:
        >>> import torch
        >>> from nni_pl.compression.quantization import DoReFaQuantizer
        >>> model = torch.nn.Sequential(torch.nn.Linear(16, 4))
        >>> _ = DoReFaQuantizer(model, [{"quant_types": ["weight"], "quant_bits": 2, "op_types": ["default"]}])
        >>> _ = model(torch.randn(1, 16))
        >>> len(torch.unique(model[0].module.weight)) <= 4
        True
    """

    quant_grad: ClassVar[type[QuantGrad] | None] = None
    supported_quant_types: ClassVar[tuple[str, ...]] = ("weight",)

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        super().__init__(model, config_list, optimizer)

    def quantize_weight(self, wrapper: QuantizerModuleWrapper, **kwargs: Any) -> torch.Tensor:
        w = torch.tanh(wrapper.module.weight)
        w = w / (2 * w.detach().abs().max().clamp(min=1e-8)) + 0.5
        levels = 2 ** wrapper.settings["weight"].bits - 1
        return 2 * _DoReFaRound.apply(w, levels) - 1
