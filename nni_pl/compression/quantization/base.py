"""The Quantizer base: config_list -> wrapped modules that fake-quantize their weight, input and output.

NNI's layout, so NNI users' custom quantizers carry over: building a quantizer replaces every matched module in its
parent by a :class:`QuantizerModuleWrapper` (``model.conv1.module`` is the original); a wrapper whose weight is
quantized keeps the trained parameter as ``module.old_weight`` (the same ``Parameter`` object, so optimizers built
earlier still train it) and sets ``module.weight`` to the quantized tensor before each forward. The quantizer's
``quantize_weight(wrapper)``, ``quantize_input(inputs, wrapper)`` and ``quantize_output(output, wrapper)`` compute
the quantized tensors; their backward is ``quant_grad`` (:class:`QuantGrad`: the straight-through estimator,
zero outside the quantization range), or the quantizer's own autograd when ``quant_grad`` is ``None``.

With ``dummy_input``, quantizers that fold batch normalization (QAT, LSQ) find each Conv followed directly by a
BatchNorm: the BatchNorm moves into the wrapper (its place becomes ``nn.Identity``) and the convolution runs with
the folded weight ``w * gamma / sqrt(var + eps)`` (batch statistics in training, running ones in eval), so the
quantized weight is the one an inference engine uses. ``export_model`` restores the BatchNorm and the unfolded
weights.

Example:
    >>> import torch
    >>> from nni_pl.compression.quantization import NaiveQuantizer
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    >>> model = NaiveQuantizer(model).compress()
    >>> type(model[0]).__name__, model[0].module.old_weight.shape
    ('QuantizerModuleWrapper', torch.Size([2, 4]))
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from nni_pl.compression.pruning.config import DEFAULT_OP_TYPES
from nni_pl.compression.quantization.config import QUANT_TYPES, QuantTarget, TensorQuantSetting, resolve
from nni_pl.compression.quantization.ops import QuantParams, fake_quant, params_from_range
from nni_pl.errors import ConfigError, NniPlError

__all__ = [
    "QuantGrad",
    "QuantType",
    "Quantizer",
    "QuantizerModuleWrapper",
    "find_conv_bn_patterns",
    "find_wrappers",
    "is_quantized",
    "unwrapped",
]

logger = logging.getLogger(__name__)

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class QuantType(str, Enum):
    """The tensor kinds a quantizer can quantize (NNI's ``QuantType``)."""

    INPUT = "input"
    WEIGHT = "weight"
    OUTPUT = "output"


class QuantGrad(torch.autograd.Function):
    """The backward of a quantization: subclass and override :meth:`quant_backward` for a custom one.

    The forward calls the quantizer's ``quantize_<type>``; the default backward is the straight-through estimator
    with the gradient zeroed where the input falls outside the quantization range.

    Example:
        >>> import torch
        >>> from nni_pl.compression.quantization import QuantGrad, QuantType
        >>> class PlainSTE(QuantGrad):
        ...     @staticmethod
        ...     def quant_backward(tensor, grad_output, quant_type, scale, zero_point, qmin, qmax):
        ...         return grad_output
        >>> g = QuantGrad.quant_backward(torch.tensor([0.0, 9.0]), torch.ones(2), QuantType.OUTPUT,
        ...                              torch.tensor(0.1), torch.tensor(0), 0, 15)
        >>> g.tolist()
        [1.0, 0.0]
    """

    @staticmethod
    def quant_backward(
        tensor: torch.Tensor,
        grad_output: torch.Tensor,
        quant_type: QuantType,
        scale: torch.Tensor | None,
        zero_point: torch.Tensor | None,
        qmin: int | None,
        qmax: int | None,
    ) -> torch.Tensor:
        if scale is None or zero_point is None or qmin is None or qmax is None:
            return grad_output
        q = torch.round(tensor / scale) + zero_point
        return grad_output * ((q >= qmin) & (q <= qmax)).to(grad_output.dtype)

    @staticmethod
    def forward(
        ctx: Any, tensor: torch.Tensor, quant_type: QuantType, wrapper: QuantizerModuleWrapper, *rest: Any
    ):
        ctx.save_for_backward(tensor)
        ctx.n_rest = len(rest)
        ctx.quant_type = QuantType(quant_type)
        output = wrapper.quantizer._call_quantize(ctx.quant_type, tensor, wrapper, *rest)
        p = wrapper.quant_params(ctx.quant_type.value)
        ctx.params = None if p is None else p.to(tensor.device)
        return output

    @classmethod
    def backward(cls, ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        (tensor,) = ctx.saved_tensors
        p: QuantParams | None = ctx.params
        if p is None:
            grad = cls.quant_backward(tensor, grad_output, ctx.quant_type, None, None, None, None)
        else:
            shape = [1] * tensor.dim()
            if p.axis is not None:
                shape[p.axis] = -1
            scale = p.scale.reshape(shape) if p.axis is not None else p.scale
            zero = p.zero_point.reshape(shape) if p.axis is not None else p.zero_point
            grad = cls.quant_backward(tensor, grad_output, ctx.quant_type, scale, zero, p.qmin, p.qmax)
        return (grad, None, None, *([None] * ctx.n_rest))


class QuantizerModuleWrapper(nn.Module):
    """A module of the model under quantization (NNI's wrapper; ``.module`` is the original).

    Args:
        module: the original module.
        module_name: its qualified name in the model.
        module_type: its class name.
        config: the config_list entry that selected it.
        quantizer: the quantizer that owns it.
        bn_module: a BatchNorm folded into this convolution, or ``None``.
        settings: per quantized tensor kind, its bits, dtype and scheme.
    """

    def __init__(
        self,
        module: nn.Module,
        module_name: str,
        module_type: str,
        config: Mapping[str, Any],
        quantizer: Quantizer,
        bn_module: nn.Module | None = None,
        settings: Mapping[str, TensorQuantSetting] | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        self.name = module_name
        self.module_type = module_type
        self.config = dict(config)
        self.settings: dict[str, TensorQuantSetting] = dict(settings or {})
        object.__setattr__(self, "quantizer", quantizer)  # not a submodule, not copied into state_dict
        self.bn_module = bn_module
        self.bn_name: str | None = None
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._installed = False
        self._in_forward = False
        self._install()

    # -- moving the parameters NNI's way -------------------------------------------------------------------
    def _moves_weight(self) -> bool:
        return "weight" in self.settings or self.bn_module is not None

    def _install(self) -> None:
        if self._installed:
            return
        m = self.module
        if self._moves_weight():
            w = m._parameters.pop("weight")
            m.register_parameter("old_weight", w)
            m.register_buffer("weight", w.detach(), persistent=False)
        if self.bn_module is not None:
            b = m._parameters.pop("bias", None)
            if b is not None:
                m.register_parameter("old_bias", b)
            m.register_buffer(
                "bias", torch.zeros(m.old_weight.shape[0], device=m.old_weight.device), persistent=False
            )
        self._installed = True

    def _uninstall(self) -> None:
        if not self._installed:
            return
        m = self.module
        if self._moves_weight():
            del m._buffers["weight"]
            m.register_parameter("weight", m._parameters.pop("old_weight"))
        if self.bn_module is not None:
            del m._buffers["bias"]
            m.register_parameter("bias", m._parameters.pop("old_bias", None))
        self._installed = False

    # -- the forward ---------------------------------------------------------------------------------------
    def quant_params(self, kind: str) -> QuantParams | None:
        """The affine parameters applied to ``kind`` (``"weight"``, ``"input"``, ``"output"``) now, or ``None``."""
        if kind not in self.settings:
            return None
        return self.quantizer.quant_params(self, kind)

    def active(self) -> bool:
        """Whether quantization is on now (see :meth:`Quantizer.is_active`)."""
        return self.quantizer.is_active(self)

    def float_weight(self) -> torch.Tensor:
        """The float weight that is quantized: inside forward the current one, else the (eval-)folded one."""
        if self._in_forward:
            return self.module.weight
        with torch.no_grad():
            if self.bn_module is None:
                return self.module.old_weight.detach()
            was = self.training
            self.training = False
            try:
                return self._folded(None)[0].detach()
            finally:
                self.training = was

    def _folded(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, bn = self.module, self.bn_module
        w = m.old_weight
        b = m._parameters.get("old_bias")
        if self.training and not self.quantizer.frozen:
            # Batch statistics of the unfolded convolution, with their gradient: as in BatchNorm itself, the
            # gradient must see the normalisation, or the weights drift in scale and the running statistics
            # (an average over past steps) stop describing them.
            _set_buffer(m, "weight", w)
            _set_buffer(m, "bias", b if b is not None else torch.zeros_like(m.bias))
            y = m(x)
            dims = [d for d in range(y.dim()) if d != 1]
            mean, var = y.mean(dims), y.var(dims, unbiased=False)
            with torch.no_grad():  # the running statistics, updated as BatchNorm updates them
                bn(y.detach())
        else:
            mean, var = bn.running_mean, bn.running_var
        gamma = bn.weight if bn.affine else torch.ones_like(mean)
        beta = bn.bias if bn.affine else torch.zeros_like(mean)
        std = torch.sqrt(var + bn.eps)
        shape = [-1] + [1] * (w.dim() - 1)
        weight = w * (gamma / std).reshape(shape)
        bias = beta + ((b if b is not None else 0.0) - mean) * gamma / std
        return weight, bias

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        self._in_forward = True
        try:
            return self._forward(*inputs, **kwargs)
        finally:
            self._in_forward = False

    def _forward(self, *inputs: Any, **kwargs: Any) -> Any:
        q = self.quantizer
        on = self.active()
        if inputs and "input" in self.settings:
            inputs = (q._quant(QuantType.INPUT, inputs[0], self, on), *inputs[1:])
        if self._moves_weight():
            m = self.module
            if self.bn_module is not None:
                weight, bias = self._folded(inputs[0])
                _set_buffer(m, "bias", bias)
            else:
                weight = m.old_weight
            _set_buffer(m, "weight", weight)
            if "weight" in self.settings:
                _set_buffer(
                    m, "weight", q._quant(QuantType.WEIGHT, weight, self, on, inputs[0] if inputs else None)
                )
        try:
            out = self.module(*inputs, **kwargs)
        finally:
            if (
                self._moves_weight()
            ):  # no graph kept in the buffers: the model stays deep-copyable and picklable
                _set_buffer(self.module, "weight", self.module.weight.detach())
                if self.bn_module is not None:
                    _set_buffer(self.module, "bias", self.module.bias.detach())
        if "output" in self.settings:
            out = q._quant(QuantType.OUTPUT, out, self, on)
        return out

    def extra_repr(self) -> str:
        kinds = ", ".join(f"{k}={s.bits}b {s.dtype} {s.scheme}" for k, s in self.settings.items())
        return f"name={self.name!r}, {kinds}" + (", bn_folded" if self.bn_module is not None else "")


def _set_buffer(module: nn.Module, name: str, value: torch.Tensor) -> None:
    # straight into _buffers: assigning a Parameter through setattr would register it as a second parameter
    module._buffers[name] = value


def find_wrappers(model: nn.Module) -> list[QuantizerModuleWrapper]:
    """The quantizer wrappers in ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, QuantizerModuleWrapper)]


def is_quantized(model: nn.Module) -> bool:
    """Whether ``model`` holds modules wrapped by a quantizer."""
    return any(isinstance(m, QuantizerModuleWrapper) for m in model.modules())


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, attr = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr


@contextlib.contextmanager
def unwrapped(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``model`` is the plain float model (wrappers out, folded BatchNorms back in place).

    Example:
        >>> import torch
        >>> from nni_pl.compression.quantization import NaiveQuantizer, unwrapped
        >>> model = NaiveQuantizer(torch.nn.Sequential(torch.nn.Linear(4, 2))).compress()
        >>> with unwrapped(model):
        ...     type(model[0]).__name__
        'Linear'
        >>> type(model[0]).__name__
        'QuantizerModuleWrapper'
    """
    wrappers = [(name, m) for name, m in model.named_modules() if isinstance(m, QuantizerModuleWrapper)]
    for name, w in wrappers:
        w._uninstall()
        parent, attr = _parent(model, name)
        setattr(parent, attr, w.module)
        if w.bn_module is not None:
            bn_parent, bn_attr = _parent(model, w.bn_name)
            setattr(bn_parent, bn_attr, w.bn_module)
    try:
        yield model
    finally:
        for name, w in wrappers:
            w._install()
            parent, attr = _parent(model, name)
            setattr(parent, attr, w)
            if w.bn_module is not None:
                bn_parent, bn_attr = _parent(model, w.bn_name)
                setattr(bn_parent, bn_attr, nn.Identity())


def find_conv_bn_patterns(model: nn.Module, dummy_input: Any) -> dict[str, str]:
    """``{conv_name: bn_name}`` for each convolution whose output goes straight into a BatchNorm of its width.

    Found by running ``dummy_input`` through the model with forward hooks (no tracing, so any model that runs
    works); the model's mode and BatchNorm statistics are left as they were.
    """
    produced: dict[int, tuple[str, torch.Tensor]] = {}  # the tensor is kept so that its id is not reused
    pairs: dict[str, str] = {}
    names = {m: n for n, m in model.named_modules()}
    hooks = []

    def after_conv(mod: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            produced[id(out)] = (names[mod], out)

    def before_bn(mod: nn.Module, inp: Any) -> None:
        hit = produced.get(id(inp[0])) if inp else None
        conv = hit[0] if hit is not None and hit[1] is inp[0] else None
        if conv is not None and model.get_submodule(conv).out_channels == mod.num_features:
            pairs.setdefault(conv, names[mod])

    for m in model.modules():
        if isinstance(m, _CONV):
            hooks.append(m.register_forward_hook(after_conv))
        elif isinstance(m, _BN):
            hooks.append(m.register_forward_pre_hook(before_bn))
    was_training = model.training
    saved = {
        n: (b.running_mean.clone(), b.running_var.clone(), b.num_batches_tracked.clone())
        for n, b in model.named_modules()
        if isinstance(b, _BN) and b.track_running_stats
    }
    try:
        model.eval()
        with torch.no_grad():
            model(*dummy_input) if isinstance(dummy_input, tuple) else model(dummy_input)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
        for n, (mean, var, count) in saved.items():
            bn = model.get_submodule(n)
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.num_batches_tracked.copy_(count)
    return pairs


class Quantizer:
    """Base of the quantizers (NNI's ``Quantizer``): wraps the modules the config_list selects.

    Args:
        model: the model; its modules are wrapped in place when the quantizer is built (build it before wrapping
            the model in DataParallel/DDP).
        config_list: NNI ``config_list`` (see :mod:`nni_pl.compression.quantization.config`).
        optimizer: the optimizer training the model; its ``step()`` then also calls :meth:`step_with_optimizer`.
        dummy_input: an example input; quantizers that fold BatchNorm (QAT, LSQ) use it to find Conv-BN pairs.

    Subclasses override ``quantize_weight``/``quantize_input``/``quantize_output`` and, for export, ``quant_params``.

    Example:
        >>> import torch
        >>> from nni_pl.compression.quantization import Quantizer
        >>> class Halve(Quantizer):
        ...     def quantize_weight(self, wrapper, **kwargs):
        ...         return wrapper.module.weight / 2
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 1, bias=False))
        >>> torch.nn.init.ones_(model[0].weight)
        Parameter containing:
        tensor([[1., 1.]], requires_grad=True)
        >>> model = Halve(model, [{"quant_types": ["weight"], "quant_bits": 8, "op_types": ["Linear"]}]).compress()
        >>> model(torch.ones(1, 2)).item()
        1.0
    """

    supported_op_types: ClassVar[tuple[str, ...] | None] = None
    default_op_types: ClassVar[tuple[str, ...]] = DEFAULT_OP_TYPES
    supported_quant_types: ClassVar[tuple[str, ...]] = QUANT_TYPES
    #: the quantizer's own ``(scheme, dtype)`` per kind where NNI's global defaults would otherwise apply
    defaults: ClassVar[dict[str, tuple[str, str]] | None] = None
    folds_bn: ClassVar[bool] = False
    quant_grad: ClassVar[type[QuantGrad] | None] = QuantGrad
    #: set by :meth:`freeze`
    frozen: bool = False

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        optimizer: torch.optim.Optimizer | None = None,
        dummy_input: Any = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError("model", f"must be a torch.nn.Module, got {type(model).__name__}")
        if is_quantized(model):
            raise NniPlError(
                "the model is already quantized (it holds QuantizerModuleWrapper modules); build one quantizer "
                "per model, or start from the float model"
            )
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(
                "optimizer", f"must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}"
            )
        self.bound_model = model
        self.config_list = (
            [dict(c) for c in config_list] if isinstance(config_list, (list, tuple)) else config_list
        )
        self.optimizer = optimizer
        self.dummy_input = dummy_input
        self.validate_config(model, self.config_list)
        targets = resolve(
            model,
            self.config_list,
            default_op_types=self.default_op_types,
            supported_op_types=self.supported_op_types,
            supported_quant_types=self.supported_quant_types,
            defaults=self.defaults,
        )
        if not targets:
            raise ConfigError(
                "config_list",
                "selects no module of the model; check op_types and op_names (the model's own top module cannot "
                "be wrapped: wrap it in nn.Sequential)",
            )
        self._targets = targets
        bn_pairs = (
            find_conv_bn_patterns(model, dummy_input) if self.folds_bn and dummy_input is not None else {}
        )
        self.modules_wrapper: list[QuantizerModuleWrapper] = []
        for t in targets:
            self.modules_wrapper.append(self._wrap(t, bn_pairs.get(t.name)))
        if optimizer is not None:
            optimizer.register_step_post_hook(lambda *_: self.step_with_optimizer())

    def _wrap(self, t: QuantTarget, bn_name: str | None) -> QuantizerModuleWrapper:
        bn = self.bound_model.get_submodule(bn_name) if bn_name else None
        wrapper = QuantizerModuleWrapper(
            t.module, t.name, type(t.module).__name__, t.config, self, bn, t.settings
        )
        wrapper.bn_name = bn_name
        parent, attr = _parent(self.bound_model, t.name)
        setattr(parent, attr, wrapper)
        if bn_name:
            bn_parent, bn_attr = _parent(self.bound_model, bn_name)
            setattr(bn_parent, bn_attr, nn.Identity())
            logger.info("folding %s into %s", bn_name, t.name)
        self.init_wrapper(wrapper)
        return wrapper

    # -- hooks for subclasses ------------------------------------------------------------------------------
    def validate_config(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]]) -> None:
        """Further checks of a subclass (the common keys are checked already)."""

    def init_wrapper(self, wrapper: QuantizerModuleWrapper) -> None:
        """Register the buffers/parameters a wrapper needs (called once per wrapper when it is built)."""

    def quantize_weight(self, wrapper: QuantizerModuleWrapper, **kwargs: Any) -> torch.Tensor:
        """The quantized weight; ``wrapper.module.weight`` holds the (possibly BN-folded) float weight."""
        return wrapper.module.weight

    def quantize_input(
        self, inputs: torch.Tensor, wrapper: QuantizerModuleWrapper, **kwargs: Any
    ) -> torch.Tensor:
        return inputs

    def quantize_output(
        self, output: torch.Tensor, wrapper: QuantizerModuleWrapper, **kwargs: Any
    ) -> torch.Tensor:
        return output

    def quant_params(self, wrapper: QuantizerModuleWrapper, kind: str) -> QuantParams | None:
        """The affine parameters ``kind`` is quantized with now (``None``: not affine, e.g. BNN)."""
        return None

    def is_active(self, wrapper: QuantizerModuleWrapper) -> bool:
        """Whether ``wrapper`` quantizes now: in eval always; in training after ``quant_start_step`` steps."""
        start = int(wrapper.config.get("quant_start_step", 0))
        return not wrapper.training or int(wrapper.steps) >= start

    def update_epoch(self, epoch: int) -> None:
        """Called by training loops at each epoch start (NNI's hook)."""

    def step(self) -> None:
        """Called after each training step (NNI's hook)."""

    def freeze(self, frozen: bool = True) -> None:
        """End range learning, QAT's last phase: tracked activation ranges stop updating, and folded BatchNorms
        use their running statistics (no longer updated), in training too. ``freeze(False)`` undoes it.

        Example:
            >>> import torch
            >>> from nni_pl.compression.quantization import QAT_Quantizer
            >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2))
            >>> q = QAT_Quantizer(model, [{"quant_types": ["output"], "quant_bits": 8, "op_types": ["Linear"]}])
            >>> _ = model(torch.randn(4, 2))
            >>> low = float(model[0].tracked_min_output)
            >>> q.freeze()
            >>> _ = model(10 * torch.randn(4, 2))
            >>> float(model[0].tracked_min_output) == low
            True
        """
        self.frozen = bool(frozen)

    def step_with_optimizer(self) -> None:
        """Count one optimizer step (QAT's ``quant_start_step`` counts these)."""
        for w in self.modules_wrapper:
            w.steps += 1

    # -- machinery -----------------------------------------------------------------------------------------
    def _call_quantize(
        self, kind: QuantType, tensor: torch.Tensor, wrapper: QuantizerModuleWrapper, *rest: Any
    ):
        if kind is QuantType.WEIGHT:
            return self.quantize_weight(wrapper, input_tensor=rest[0] if rest else None)
        if kind is QuantType.INPUT:
            return self.quantize_input(tensor, wrapper)
        return self.quantize_output(tensor, wrapper)

    def _quant(
        self, kind: QuantType, tensor: torch.Tensor, wrapper: QuantizerModuleWrapper, on: bool, *rest: Any
    ) -> torch.Tensor:
        self.observe(wrapper, kind.value, tensor)
        if not on:
            return tensor
        if torch.onnx.is_in_onnx_export():
            return self.export_quantize(wrapper, kind.value, tensor)
        if self.quant_grad is None:
            return self._call_quantize(kind, tensor, wrapper, *rest)
        return self.quant_grad.apply(tensor, kind, wrapper, *rest)

    def observe(self, wrapper: QuantizerModuleWrapper, kind: str, tensor: torch.Tensor) -> None:
        """Called with every tensor before it is quantized (observers and EMA trackers update here)."""

    def export_quantize(
        self, wrapper: QuantizerModuleWrapper, kind: str, tensor: torch.Tensor
    ) -> torch.Tensor:
        """The quantization ``torch.onnx`` records: QuantizeLinear/DequantizeLinear for affine quantizers."""
        from nni_pl.compression.quantization.ops import export_fake_quant

        with torch.no_grad():
            p = self.quant_params(wrapper, kind)
        if p is None:  # not affine (DoReFa, BNN): the exported graph computes our quantized values in float
            kinds = {"weight": QuantType.WEIGHT, "input": QuantType.INPUT, "output": QuantType.OUTPUT}
            return self._call_quantize(kinds[kind], tensor, wrapper)
        # plain numbers, so the graph holds our scales as constants rather than the ops that computed them
        constant = QuantParams(
            torch.tensor(p.scale.detach().cpu().tolist(), dtype=torch.float32),
            torch.tensor(p.zero_point.detach().cpu().tolist(), dtype=torch.int32),
            p.qmin,
            p.qmax,
            p.axis,
            p.bits,
            p.dtype,
        )
        return export_fake_quant(tensor, constant)

    def get_modules_wrapper(self) -> list[QuantizerModuleWrapper]:
        return list(self.modules_wrapper)

    def get_modules_to_compress(self) -> list[tuple[QuantTarget, dict[str, Any]]]:
        return [(t, t.config) for t in self._targets]

    def compress(self) -> nn.Module:
        """The wrapped model (modules were wrapped when the quantizer was built)."""
        return self.bound_model

    # -- calibration (NNI's dict) --------------------------------------------------------------------------
    def tracked_range(self, wrapper: QuantizerModuleWrapper, kind: str) -> tuple[float, float] | None:
        """The real-valued range ``kind`` is quantized to, for the calibration dict (``None``: none yet)."""
        p = self.quant_params(wrapper, kind)
        if p is None:
            return None
        low, high = p.clip_range()
        return float(low.min()), float(high.max())

    def calibration_config(self) -> dict[str, dict[str, Any]]:
        """NNI's calibration dict: per wrapper, the bits and the tracked ranges of what it quantizes."""
        out: dict[str, dict[str, Any]] = {}
        for w in self.modules_wrapper:
            entry: dict[str, Any] = {}
            if "weight" in w.settings:
                entry["weight_bits"] = w.settings["weight"].bits
                p = self.quant_params(w, "weight")
                if p is not None:
                    entry["weight_scale"] = p.scale.detach().cpu().reshape(-1).tolist()
                    entry["weight_zero_point"] = p.zero_point.detach().cpu().reshape(-1).tolist()
            for kind in ("input", "output"):
                if kind in w.settings:
                    entry[f"{kind}_bits"] = w.settings[kind].bits
                    r = self.tracked_range(w, kind)
                    if r is not None:
                        entry[f"tracked_min_{kind}"], entry[f"tracked_max_{kind}"] = r
            out[w.name] = entry
        return out

    def load_calibration_config(self, calibration_config: Mapping[str, Mapping[str, Any]]) -> None:
        """Set each layer's ranges from a calibration dict (another quantizer's or an earlier export's)."""
        wrappers = {w.name: w for w in self.modules_wrapper}
        for name, entry in calibration_config.items():
            if name not in wrappers:
                raise ConfigError(
                    f"calibration_config[{name!r}]",
                    f"names no quantized layer; quantized layers: {sorted(wrappers)}",
                )
            w = wrappers[name]
            for kind in ("input", "output"):
                lo, hi = entry.get(f"tracked_min_{kind}"), entry.get(f"tracked_max_{kind}")
                if kind in w.settings and lo is not None and hi is not None:
                    self.set_range(w, kind, float(lo), float(hi))

    def set_range(self, wrapper: QuantizerModuleWrapper, kind: str, low: float, high: float) -> None:
        """Set the tracked range of an activation (used by :meth:`load_calibration_config`)."""
        raise NniPlError(f"{type(self).__name__} keeps no tracked ranges to load")

    # -- export --------------------------------------------------------------------------------------------
    def quantized_state_dict(self) -> dict[str, torch.Tensor]:
        """The float model's state_dict with every quantized weight at its simulated-quantized value.

        A layer with a folded BatchNorm keeps its trained (unfolded) weight and the BatchNorm its statistics,
        as NNI restores them; the calibration dict holds the folded ranges.
        """
        values: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for w in self.modules_wrapper:
                if "weight" in w.settings and w.bn_module is None:
                    _set_buffer(w.module, "weight", w.module.old_weight.detach())
                    values[f"{w.name}.weight"] = self._call_quantize(
                        QuantType.WEIGHT, w.module.weight, w
                    ).detach()
        with unwrapped(self.bound_model) as plain:
            state = plain.state_dict()
        state.update({k: v.clone() for k, v in values.items()})
        return state

    def export_model(
        self,
        model_path: str | Path,
        calibration_path: str | Path | None = None,
        onnx_path: str | Path | None = None,
        input_shape: Sequence[int] | None = None,
        device: torch.device | str | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Save the float weights (quantized values) and, optionally, the calibration dict and a QDQ ONNX model.

        Args:
            model_path: where ``torch.save`` writes the float model's state_dict.
            calibration_path: where ``torch.save`` writes the calibration dict.
            onnx_path: where to write the ONNX model (QuantizeLinear/DequantizeLinear with our scales).
            input_shape: the input shape for the ONNX export (required with ``onnx_path``).
            device: where to place the dummy input (default CPU).

        Returns:
            the calibration dict, e.g. ``{'conv1': {'weight_bits': 8, 'tracked_min_input': ..., ...}}``.
        """
        if onnx_path is not None and input_shape is None:
            raise ConfigError("input_shape", "is needed with onnx_path, e.g. input_shape=(1, 1, 28, 28)")
        calibration = self.calibration_config()
        torch.save(self.quantized_state_dict(), model_path)
        logger.info("Model state_dict saved to %s", model_path)
        if calibration_path is not None:
            torch.save(calibration, calibration_path)
            logger.info("Calibration config saved to %s", calibration_path)
        if onnx_path is not None:
            from nni_pl.compression.export import export_onnx

            dummy = torch.randn(*input_shape, device=device or "cpu")
            export_onnx(self.bound_model, dummy, onnx_path, quantized=True)
            logger.info("Model in onnx with input shape %s saved to %s", tuple(input_shape), onnx_path)
        return calibration

    @staticmethod
    def tensor_range(
        x: torch.Tensor, setting: TensorQuantSetting, axis: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Min and max of ``x``: per channel along ``axis`` for per-channel settings, else over all of it."""
        x = x.detach()
        if setting.per_channel:
            flat = x.transpose(0, axis).reshape(x.shape[axis], -1)
            return flat.min(dim=1).values, flat.max(dim=1).values
        return x.min(), x.max()

    @staticmethod
    def params(
        low: torch.Tensor, high: torch.Tensor, setting: TensorQuantSetting, axis: int = 0
    ) -> QuantParams:
        return params_from_range(
            low, high, bits=setting.bits, dtype=setting.dtype, scheme=setting.scheme, axis=axis
        )

    @staticmethod
    def fake_quant(x: torch.Tensor, p: QuantParams) -> torch.Tensor:
        return fake_quant(x, p)
