"""QuantizationCallback: NNI quantization (QAT, LSQ, DoReFa, BNN, Naive, Observer) during ``Trainer.fit``.

A thin adapter over :mod:`nni_pl.compression.quantization`: at the start of ``start_epoch`` the LightningModule's
layers are wrapped by one of nni-pl's quantizers (Conv-BatchNorm pairs folded when the quantizer folds them), and
training goes on with simulated quantization. From ``freeze_epoch`` on the activation ranges stop updating and
every BatchNorm uses its running statistics (:meth:`Quantizer.freeze`; the Observer quantizer fixes its scales),
the usual last phase of quantization-aware training.

Wrapping keeps the trained ``Parameter`` objects (a wrapped layer's weight becomes ``<name>.module.old_weight``),
but it changes their order in ``parameters()`` and LSQ adds trained scales, so the optimizers are built again from
``configure_optimizers`` with each parameter's optimizer state, the hyperparameters of its group and the LR
schedulers' state carried over; under DDP the module is wrapped in DDP again. A resumed fit then builds the same
optimizers. Quantizer steps (QAT's ``quant_start_step``) count the Trainer's optimizer steps.

A checkpoint carries what rebuilds the quantized module under ``"nni_pl_quantization"``:
``trainer.fit(model, ckpt_path=...)`` with a freshly built float module and this callback resumes the fit (the
module is wrapped before the checkpoint's weights load), and :meth:`QuantizationCallback.restore` rebuilds the
quantized module for inference or export (``nni_pl.compression.export.export_onnx`` writes it as a QDQ model).

Under DDP every rank ends each epoch (and starts each validation) with global rank 0's tracked ranges, scales and
BatchNorm statistics (``trainer.strategy.broadcast``): one set of scales, whatever data each rank saw.

It composes with :class:`~nni_pl.callbacks.PruningCallback`: prune and speed up first, then quantize the smaller
model (``start_epoch`` after the pruning's ``end_epoch``).

Example (YAML for ``LightningCLI``; ``callbacks/quantization.yaml`` is a preset)::

    trainer:
      callbacks:
        - class_path: nni_pl.callbacks.QuantizationCallback
          init_args:
            quantizer: qat
            config_list:
              - {quant_types: [weight, input], quant_bits: 8, op_types: [Conv2d, Linear]}
              - {quant_types: [output], quant_bits: 8, op_types: [ReLU]}
            start_epoch: 2
            freeze_epoch: 4
            dummy_input: [1, 3, 32, 32]   # a shape, or leave out to use module.example_input_array

    >>> from nni_pl.callbacks import QuantizationCallback
    >>> QuantizationCallback(quantizer="qat", config_list=[{"quant_types": ["weight"], "quant_bits": 8,
    ...                                                     "op_types": ["Conv2d"]}], start_epoch=2, freeze_epoch=4)
    QuantizationCallback(quantizer='qat', start_epoch=2, freeze_epoch=4, fold_bn=True)
"""

from __future__ import annotations

import copy
import importlib
import inspect
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from typing_extensions import override

from nni_pl.callbacks._shared import check_dummy_input, dummy_from, rewrap_ddp
from nni_pl.compression.quantization.base import Quantizer
from nni_pl.errors import ConfigError, NniPlError, did_you_mean

__all__ = ["CHECKPOINT_KEY", "QUANTIZERS", "QuantizationCallback"]

logger = logging.getLogger(__name__)

CHECKPOINT_KEY = "nni_pl_quantization"

#: ``quantizer`` names and the classes of :mod:`nni_pl.compression.quantization` they stand for
QUANTIZERS: dict[str, str] = {
    "qat": "QAT_Quantizer",
    "lsq": "LsqQuantizer",
    "dorefa": "DoReFaQuantizer",
    "bnn": "BNNQuantizer",
    "naive": "NaiveQuantizer",
    "observer": "ObserverQuantizer",
}

# the quantizer's own arguments, which the callback gives (not ``quantizer_params``)
_GIVEN = {"self", "model", "config_list", "configure_list", "optimizer", "dummy_input"}


def _field(name: str) -> str:
    return f"QuantizationCallback.{name}"


def _quantizer_class(value: Any) -> type[Quantizer]:
    """A ``quantizer`` argument (a name, a class name, an import path or a class) -> the Quantizer class."""
    from nni_pl.compression import quantization

    if isinstance(value, type) and issubclass(value, Quantizer):
        return value
    names = sorted(QUANTIZERS)
    if isinstance(value, str):
        if value in QUANTIZERS:
            return getattr(quantization, QUANTIZERS[value])
        if value in QUANTIZERS.values():
            return getattr(quantization, value)
        if "." in value:
            module_name, _, attr = value.rpartition(".")
            try:
                cls = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as e:
                raise ConfigError(
                    _field("quantizer"), f"cannot import {value!r} ({e}); give 'package.module.ClassName'"
                ) from e
            if isinstance(cls, type) and issubclass(cls, Quantizer):
                return cls
            raise ConfigError(
                _field("quantizer"),
                f"{value!r} is not a subclass of nni_pl.compression.quantization.Quantizer",
            )
        hint = did_you_mean(value, [*names, *QUANTIZERS.values()])
        raise ConfigError(
            _field("quantizer"),
            f"unknown quantizer {value!r}{hint}; use one of {names}, a class name such as 'QAT_Quantizer', "
            "or the import path of a Quantizer subclass",
        )
    raise ConfigError(
        _field("quantizer"),
        f"must be a quantizer name ({names}) or a Quantizer subclass, got {type(value).__name__} {value!r:.80}",
    )


def _quantizer_name(cls: type[Quantizer]) -> str:
    """The name :func:`_quantizer_class` maps back to ``cls`` (stored in checkpoints)."""
    for name, class_name in QUANTIZERS.items():
        if cls.__name__ == class_name and cls.__module__.startswith("nni_pl.compression.quantization"):
            return name
    return f"{cls.__module__}.{cls.__qualname__}"


def _quantizer_arguments(cls: type[Quantizer]) -> set[str] | None:
    """The keyword arguments ``cls`` takes besides those the callback gives (``None``: any, it has ``**kwargs``)."""
    params = inspect.signature(cls).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - _GIVEN


def _takes_dummy_input(cls: type[Quantizer]) -> bool:
    return "dummy_input" in inspect.signature(cls).parameters


def _check_config_list(cls: type[Quantizer], config_list: Any) -> list[dict[str, Any]] | None:
    """The checks that need no model: structure, the quantizer's tensor kinds, the built-ins' own rules."""
    from nni_pl.compression.quantization import NaiveQuantizer
    from nni_pl.compression.quantization.config import validate_config_list

    if config_list is None:
        if issubclass(cls, NaiveQuantizer):
            return None  # NaiveQuantizer's default: 8-bit weights of the default layers
        raise ConfigError(
            _field("config_list"),
            "is required, e.g. [{'quant_types': ['weight', 'input'], 'quant_bits': 8, 'op_types': ['Conv2d']}], "
            "got None",
        )
    entries = validate_config_list(config_list)
    supported = cls.supported_quant_types
    for i, entry in enumerate(entries):
        if entry.get("exclude", False):
            continue
        for kind in entry["quant_types"]:
            if kind not in supported:
                raise ConfigError(
                    f"config_list[{i}].quant_types",
                    f"{kind!r} is not quantized by {cls.__name__}; it quantizes {list(supported)}",
                )
    if cls.__module__.startswith("nni_pl.compression.quantization"):
        # the built-ins' validate_config reads only the config_list; a user's subclass may need the model
        cls.validate_config(object.__new__(cls), None, entries)  # type: ignore[arg-type]
    return entries


def _to(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    return value


def _build(
    cls: type[Quantizer],
    module: nn.Module,
    config_list: Sequence[Mapping[str, Any]] | None,
    dummy_input: Any,
    params: Mapping[str, Any],
) -> Quantizer:
    """``cls(module, config_list, dummy_input=..., **params)``; wraps ``module``'s layers in place."""
    kwargs = dict(params)
    if dummy_input is not None and _takes_dummy_input(cls):
        kwargs["dummy_input"] = _to(dummy_input, _device(module))
    configs = None if config_list is None else [dict(c) for c in config_list]
    quantizer = cls(module, configs, **kwargs) if configs is not None else cls(module, **kwargs)
    device = _device(module)
    for wrapper in quantizer.get_modules_wrapper():
        wrapper.to(device)  # the buffers and scales a quantizer registers start on the CPU
    return quantizer


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters(), torch.empty(0)).device


def _quantizer_tensors(quantizer: Quantizer) -> dict[str, torch.Tensor]:
    """The state a quantizer adds or moves that DDP does not keep equal across ranks: every persistent buffer of
    the wrappers (tracked ranges, step counts, folded BatchNorm statistics) and the wrappers' own parameters (LSQ
    scales). The layers' weights are DDP's."""
    out: dict[str, torch.Tensor] = {}
    for wrapper in quantizer.get_modules_wrapper():
        for prefix, mod in wrapper.named_modules(prefix=wrapper.name):
            for key, buf in mod._buffers.items():
                if buf is not None and key not in mod._non_persistent_buffers_set:
                    out[f"{prefix}.{key}"] = buf
        for key, param in wrapper._parameters.items():
            if param is not None:
                out[f"{wrapper.name}.{key}"] = param
    return out


def _freeze_batchnorm(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _carry_over(old: Sequence[torch.optim.Optimizer], new: Sequence[torch.optim.Optimizer]) -> None:
    """Give the rebuilt optimizers the old ones' per-parameter state and (same layout) their groups' settings."""
    for before, after in zip(old, new):
        if len(before.param_groups) == len(after.param_groups):
            for g_before, g_after in zip(before.param_groups, after.param_groups):
                g_after.update({k: v for k, v in g_before.items() if k != "params"})
        for group in after.param_groups:
            for p in group["params"]:
                if p in before.state:
                    after.state[p] = before.state[p]


class QuantizationCallback(Callback):
    """Quantize the LightningModule during ``fit``: wrap at ``start_epoch``, freeze the ranges at ``freeze_epoch``.

    Args:
        quantizer: ``"qat"``, ``"lsq"``, ``"dorefa"``, ``"bnn"``, ``"naive"`` or ``"observer"``; an NNI class name
            (``"QAT_Quantizer"``), the import path of a Quantizer subclass, or the class itself.
        config_list: NNI quantizer ``config_list``; module names are those of the LightningModule (e.g.
            ``net.0`` when the network is ``self.net``). ``quant_start_step`` counts optimizer steps from the
            wrapping. Only ``"naive"`` may leave it out (8-bit weights of the default layers).
        start_epoch: the epoch at whose start the layers are wrapped (0: quantization-aware training from the
            first step; later: fine-tune a float-trained model).
        freeze_epoch: from this epoch on, the activation ranges stop updating and BatchNorms (folded or not) use
            their running statistics; the Observer quantizer fixes its scales here (required for it).
            ``None``: never (QAT tracks ranges to the end). Must be after ``start_epoch``.
        fold_bn: fold each BatchNorm that follows a convolution into it (QAT, LSQ), so that the quantized weight is
            the one an inference engine runs. Needs ``dummy_input`` or ``module.example_input_array``.
        dummy_input: example input (a tensor, a tuple of them, or a shape list such as ``[1, 3, 32, 32]``);
            ``None``: ``module.example_input_array``. Used to find the Conv-BatchNorm pairs.
        quantizer_params: further keyword arguments of the quantizer, e.g. ``{"ema_decay": 0.999}`` for QAT.

    Raises:
        ConfigError: an argument is invalid; the message names it and echoes the value.

    Example:
        >>> cb = QuantizationCallback(quantizer="lsq", config_list=[{"quant_types": ["weight"], "quant_bits": 4,
        ...                                                           "op_types": ["Conv2d"]}], start_epoch=1)
        >>> cb.quantizer_cls.__name__, cb.wrapped
        ('LsqQuantizer', False)
        >>> QuantizationCallback(quantizer="qta", config_list=None)
        Traceback (most recent call last):
        ...
        nni_pl.errors.ConfigError: config field 'QuantizationCallback.quantizer': unknown quantizer 'qta' (did you mean 'qat'?); use one of ['bnn', 'dorefa', 'lsq', 'naive', 'observer', 'qat'], a class name such as 'QAT_Quantizer', or the import path of a Quantizer subclass
    """

    def __init__(
        self,
        *,
        quantizer: str | type[Quantizer] = "qat",
        config_list: list[dict[str, Any]] | None,
        start_epoch: int = 0,
        freeze_epoch: int | None = None,
        fold_bn: bool = True,
        dummy_input: Any = None,
        quantizer_params: dict[str, Any] | None = None,
    ) -> None:
        from nni_pl.compression.quantization import ObserverQuantizer

        super().__init__()
        cls = _quantizer_class(quantizer)
        entries = _check_config_list(cls, config_list)
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ConfigError(_field("start_epoch"), f"must be an integer >= 0, got {start_epoch!r}")
        if freeze_epoch is not None and (
            isinstance(freeze_epoch, bool) or not isinstance(freeze_epoch, int) or freeze_epoch <= start_epoch
        ):
            raise ConfigError(
                _field("freeze_epoch"),
                f"must be an integer > start_epoch ({start_epoch}): the ranges are tracked in the epochs between, "
                f"got {freeze_epoch!r}",
            )
        if freeze_epoch is None and issubclass(cls, ObserverQuantizer):
            raise ConfigError(
                _field("freeze_epoch"),
                f"the observer quantizer observes ranges from start_epoch ({start_epoch}) until freeze_epoch, then "
                f"fixes the scales; set freeze_epoch, e.g. {start_epoch + 1}, got None",
            )
        if not isinstance(fold_bn, bool):
            raise ConfigError(
                _field("fold_bn"), f"must be True or False, got {type(fold_bn).__name__} {fold_bn!r}"
            )
        check_dummy_input(dummy_input, _field("dummy_input"))
        self.quantizer_cls = cls
        self.quantizer_name = _quantizer_name(cls)
        self.config_list = entries
        self.start_epoch = start_epoch
        self.freeze_epoch = freeze_epoch
        self.fold_bn = fold_bn
        self.dummy_input = dummy_input
        self.quantizer_params = self._check_quantizer_params(quantizer_params)

        #: the quantizer once the layers are wrapped (``None`` before)
        self.quantizer: Quantizer | None = None
        #: optimizer steps counted towards the quantizer's steps
        self.steps = 0
        self._recipe: dict[str, Any] | None = None  # what the wrapping was built from: saved with checkpoints
        self._seen_step = 0
        self._synced = True
        self._hooked: tuple[Any, Any, Any] | None = None

    def _check_quantizer_params(self, params: Any) -> dict[str, Any]:
        if params is None:
            return {}
        if not isinstance(params, Mapping):
            raise ConfigError(
                _field("quantizer_params"),
                f"must be a dict of the quantizer's keyword arguments, got {type(params).__name__}",
            )
        known = _quantizer_arguments(self.quantizer_cls)
        for key in params:
            if known is not None and key not in known:
                raise ConfigError(
                    _field(f"quantizer_params.{key}"),
                    f"{key!r} is not an argument of {self.quantizer_cls.__name__}"
                    f"{did_you_mean(str(key), known)}; it takes {sorted(known)} (the callback gives the model, "
                    "config_list, optimizer and dummy_input)",
                )
        return dict(params)

    def __repr__(self) -> str:
        return (
            f"QuantizationCallback(quantizer={self.quantizer_name!r}, start_epoch={self.start_epoch}, "
            f"freeze_epoch={self.freeze_epoch}, fold_bn={self.fold_bn})"
        )

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(quantizer=self.quantizer_name, start_epoch=self.start_epoch)

    @property
    def wrapped(self) -> bool:
        """Whether the module's layers are wrapped by the quantizer."""
        return self.quantizer is not None

    # -- wrapping -----------------------------------------------------------------------------------------------------
    def _dummy(self, pl_module: pl.LightningModule) -> Any:
        return dummy_from(self.dummy_input, pl_module)

    def _wrap(self, pl_module: pl.LightningModule, recipe: Mapping[str, Any]) -> None:
        cls = _quantizer_class(recipe["quantizer"])
        self.quantizer = _build(
            cls, pl_module, recipe["config_list"], recipe["dummy_input"], recipe["quantizer_params"]
        )
        self._recipe = dict(recipe)
        folded = sum(w.bn_module is not None for w in self.quantizer.get_modules_wrapper())
        logger.info(
            "QuantizationCallback: %s wraps %d layers (%d BatchNorms folded)",
            cls.__name__,
            len(self.quantizer.get_modules_wrapper()),
            folded,
        )

    def _new_recipe(self, pl_module: pl.LightningModule) -> dict[str, Any]:
        dummy = None
        if self.fold_bn and self.quantizer_cls.folds_bn and _takes_dummy_input(self.quantizer_cls):
            dummy = self._dummy(pl_module)
            if dummy is None:
                logger.warning(
                    "QuantizationCallback: fold_bn is on but there is no dummy_input (nor example_input_array on "
                    "the module), so BatchNorms are not folded; pass dummy_input=[1, C, H, W] to fold them"
                )
        return {
            "quantizer": self.quantizer_name,
            "config_list": copy.deepcopy(self.config_list),
            "quantizer_params": dict(self.quantizer_params),
            "dummy_input": _to(dummy, "cpu"),
        }

    def _rebuild_training(self, trainer: pl.Trainer) -> None:
        """After wrapping in the middle of a fit: wrap in DDP again and build the optimizers as a resumed fit will."""
        rewrap_ddp(trainer)  # the old DistributedDataParallel knows neither the new buffers nor LSQ's scales
        strategy = trainer.strategy
        old_optimizers = list(trainer.optimizers)
        old_schedulers = [c.scheduler for c in trainer.lr_scheduler_configs]
        strategy.setup_optimizers(trainer)
        _carry_over(old_optimizers, trainer.optimizers)
        for before, config in zip(old_schedulers, trainer.lr_scheduler_configs):
            try:
                config.scheduler.load_state_dict(before.state_dict())
            except (KeyError, ValueError, TypeError) as e:
                logger.warning("QuantizationCallback: the LR scheduler restarts after the wrapping (%s)", e)
        self._train_quantizer_parameters(trainer)

    def _train_quantizer_parameters(self, trainer: pl.Trainer) -> None:
        """Parameters the quantizer added (LSQ's scales) that ``configure_optimizers`` left out join the first
        optimizer as a group of their own."""
        if self.quantizer is None or not trainer.optimizers:
            return
        added = [
            p
            for w in self.quantizer.get_modules_wrapper()
            for p in w.parameters(recurse=False)
            if p.requires_grad
        ]
        optimized = {id(p) for opt in trainer.optimizers for g in opt.param_groups for p in g["params"]}
        missing = [p for p in added if id(p) not in optimized]
        if missing:
            logger.warning(
                "QuantizationCallback: configure_optimizers does not train the quantizer's %d parameters (%s's "
                "scales); adding them to the first optimizer as a parameter group",
                len(missing),
                type(self.quantizer).__name__,
            )
            trainer.optimizers[0].add_param_group({"params": missing})

    def _sync(self, trainer: pl.Trainer) -> None:
        """Every rank takes global rank 0's ranges, scales and BatchNorm statistics (one set of scales)."""
        if self.quantizer is None or trainer.world_size <= 1:
            return
        local = _quantizer_tensors(self.quantizer)
        payload = {k: v.detach().cpu() for k, v in local.items()} if trainer.is_global_zero else None
        shared = trainer.strategy.broadcast(payload, src=0)
        with torch.no_grad():
            for key, value in shared.items():
                local[key].copy_(value)

    def _freeze(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from nni_pl.compression.quantization import ObserverQuantizer

        q = self.quantizer
        assert q is not None
        if not q.frozen:
            self._sync(trainer)
            q.freeze()
            if isinstance(q, ObserverQuantizer) and not all(
                bool(w.calibrated) for w in q.get_modules_wrapper()
            ):
                training = pl_module.training
                q.compress()  # fixes the scales from what was observed (and puts the model in eval mode)
                pl_module.train(training)
            logger.info(
                "QuantizationCallback: ranges and BatchNorm statistics frozen at epoch %d",
                trainer.current_epoch,
            )
        _freeze_batchnorm(pl_module)  # BatchNorms that were not folded: running statistics from now on

    # -- hooks --------------------------------------------------------------------------------------------------------
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

        from nni_pl.compression.quantization.base import is_quantized
        from nni_pl.compression.quantization.config import resolve

        if self.quantizer is not None and self.quantizer.bound_model is not pl_module:
            self.quantizer = None  # a new module: this run wraps it
        self._hook_weight_loading(trainer)
        if stage != TrainerFn.FITTING:
            return
        if not isinstance(trainer.strategy, (SingleDeviceStrategy, DDPStrategy)):
            raise ConfigError(
                "trainer.strategy",
                f"QuantizationCallback runs on one device or under DDP (strategy='ddp', 'ddp_spawn', ...), "
                f"got {type(trainer.strategy).__name__}; sharded strategies split the weights it wraps",
            )
        if self.quantizer is None:
            if is_quantized(pl_module):
                raise NniPlError(
                    "QuantizationCallback: the LightningModule is already quantized (it holds "
                    "QuantizerModuleWrapper modules); give the callback the float module"
                )
            # the model's modules against the config_list: its errors before any training
            if self.config_list is not None:
                cls = self.quantizer_cls
                resolve(
                    pl_module,
                    self.config_list,
                    default_op_types=cls.default_op_types,
                    supported_op_types=cls.supported_op_types,
                    supported_quant_types=cls.supported_quant_types,
                    defaults=cls.defaults,
                )

    def _hook_weight_loading(self, trainer: pl.Trainer) -> None:
        """A checkpoint written after the wrapping holds the wrapped layout (``<name>.module.old_weight``), so a
        freshly built float module must be wrapped before its weights load. Lightning loads them with
        ``strategy.load_model_state_dict`` after the LightningModule's ``on_load_checkpoint`` (where
        PruningCallback shrinks the module) and before any callback sees the checkpoint: wrap that method of this
        run's strategy until teardown (any stage, so ``trainer.test(model, ckpt_path=...)`` works too)."""
        if self._hooked is not None:
            return
        strategy = trainer.strategy
        original = strategy.__dict__.get("load_model_state_dict")
        bound = strategy.load_model_state_dict

        def load_model_state_dict(checkpoint: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
            module = strategy.lightning_module
            if self._hooked is not None and module is not None:
                self._wrap_before_load(module, checkpoint)
            return bound(checkpoint, *args, **kwargs)

        strategy.load_model_state_dict = load_model_state_dict  # type: ignore[method-assign]
        self._hooked = (strategy, original, load_model_state_dict)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._hooked is None:
            return
        strategy, original, mine = self._hooked
        self._hooked = None
        if strategy.__dict__.get("load_model_state_dict") is mine:
            if original is None:
                del strategy.__dict__["load_model_state_dict"]
            else:
                strategy.load_model_state_dict = original  # type: ignore[method-assign]

    def _wrap_before_load(self, pl_module: pl.LightningModule, checkpoint: Mapping[str, Any]) -> None:
        recipe = checkpoint.get(CHECKPOINT_KEY)
        if not recipe or self.quantizer is not None:
            return
        if recipe["quantizer"] != self.quantizer_name or recipe["config_list"] != self.config_list:
            logger.warning(
                "QuantizationCallback: the checkpoint was quantized with %s and config_list %s; rebuilding that "
                "(not %s, %s) so that its weights load",
                recipe["quantizer"],
                recipe["config_list"],
                self.quantizer_name,
                self.config_list,
            )
        self._wrap(pl_module, recipe)
        self._synced = True  # every rank loaded the same checkpoint

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # resumed: the optimizers were built on the wrapped module; before their saved state loads
        self._train_quantizer_parameters(trainer)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._seen_step = trainer.global_step

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self.quantizer is None and epoch >= self.start_epoch:
            self._wrap(pl_module, self._new_recipe(pl_module))
            self._rebuild_training(trainer)
            self._seen_step = trainer.global_step
            self._synced = False
        if self.quantizer is None:
            return
        if self.freeze_epoch is not None and epoch >= self.freeze_epoch:
            self._freeze(trainer, pl_module)
        self.quantizer.update_epoch(epoch)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        q = self.quantizer
        if q is None:
            return
        # the Trainer's optimizer steps, however many this batch made (gradient accumulation: maybe none)
        for _ in range(trainer.global_step - self._seen_step):
            q.step_with_optimizer()
            self.steps += 1
        self._seen_step = trainer.global_step
        q.step()
        if not self._synced:  # LSQ initialises its scales from each rank's first batch
            self._sync(trainer)
            self._synced = True

    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._sync(trainer)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sync(trainer)

    @override
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.quantizer is not None and self._recipe is not None:
            checkpoint[CHECKPOINT_KEY] = {**copy.deepcopy(self._recipe), "frozen": self.quantizer.frozen}

    @override
    def state_dict(self) -> dict[str, Any]:
        dummy = self.dummy_input
        if isinstance(dummy, torch.Tensor):
            shape: Any = list(dummy.shape)
        elif isinstance(dummy, (list, tuple)):
            shape = [list(d.shape) for d in dummy] if isinstance(dummy[0], torch.Tensor) else list(dummy)
        else:
            shape = None
        return {
            "quantizer": self.quantizer_name,
            "config_list": copy.deepcopy(self.config_list),
            "dummy_input_shape": shape,
            "wrapped": self.wrapped,
            "frozen": bool(self.quantizer is not None and self.quantizer.frozen),
            "steps": self.steps,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # ``wrapped`` follows the module (wrapped before the weights load); ``frozen`` follows the epoch
        self.steps = int(state_dict.get("steps", 0))

    # -- loading ------------------------------------------------------------------------------------------------------
    @staticmethod
    def restore(
        module: pl.LightningModule | nn.Module,
        checkpoint: str | Path | Mapping[str, Any],
        map_location: Any = "cpu",
    ) -> nn.Module:
        """Rebuild the quantized module from a checkpoint of a quantizing fit, for inference or export.

        ``module`` is a freshly built float module. A checkpoint that was also pruned and sped up (by
        :class:`~nni_pl.callbacks.PruningCallback`) is shrunk first, then the quantizer wraps the layers as in the
        fit, and the weights, ranges and scales load. Returns ``module`` (modified in place) in eval mode; its
        quantizer is ``nni_pl.compression.quantization.find_wrappers(module)[0].quantizer``.

        Args:
            module: the float module the fit started from (same class and arguments).
            checkpoint: the checkpoint's path, or the loaded checkpoint dict.
            map_location: where tensors load (``torch.load``'s argument).

        Example:
            ``MyModule`` is the LightningModule that was quantized, ``last.ckpt`` a checkpoint its fit wrote:

            >>> model = QuantizationCallback.restore(MyModule(), "checkpoints/last.ckpt")  # doctest: +SKIP
            >>> export_onnx(model, torch.randn(1, 3, 32, 32), "model.onnx")  # doctest: +SKIP
        """
        from nni_pl.callbacks.pruning import CHECKPOINT_KEY as PRUNING_KEY

        if isinstance(checkpoint, (str, Path)):
            label = str(checkpoint)
            ckpt = torch.load(checkpoint, map_location=map_location, weights_only=False)
        elif isinstance(checkpoint, Mapping):
            label, ckpt = "the checkpoint", checkpoint
        else:
            raise ConfigError(
                "checkpoint", f"must be a path or a checkpoint dict, got {type(checkpoint).__name__}"
            )
        recipe = ckpt.get(CHECKPOINT_KEY)
        if not recipe:
            raise ConfigError(
                "checkpoint",
                f"{label} has no quantization information ({CHECKPOINT_KEY!r}): it was written before "
                "QuantizationCallback's start_epoch or without it; load it with module.load_state_dict",
            )
        module.eval()
        pruning = ckpt.get(PRUNING_KEY)
        if pruning:
            from nni_pl.compression.pruning.masks import apply_masks
            from nni_pl.compression.speedup import ModelSpeedup

            masks = copy.deepcopy(pruning["masks"])
            if pruning.get("sped_up"):
                ModelSpeedup(module, pruning["dummy_input"], masks).speedup_model()
            else:
                apply_masks(module, masks)
        quantizer = _build(
            _quantizer_class(recipe["quantizer"]),
            module,
            recipe["config_list"],
            recipe.get("dummy_input"),
            recipe.get("quantizer_params", {}),
        )
        if recipe.get("frozen"):
            quantizer.freeze()
        module.load_state_dict(ckpt["state_dict"])
        return module.eval()
