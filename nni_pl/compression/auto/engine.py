"""What one auto-compression trial does (NNI's ``AutoCompressEngine.trial_execute_compress``).

1. Read the chosen algorithm, its config_list and arguments from the trial's parameters (see
   :func:`~nni_pl.compression.auto.search_space.parse_parameters`).
2. Compress a copy of the user's model: a one-shot pruner (``level``, ``l1``, ``l2``, ``fpgm``) computes masks at
   once; a training pruner (``slim``, ``taylorfo``, ``apoz``, ``mean_activation``) runs the module's
   ``sparsifying_trainer`` with its optimizer and criterion; a quantizer wraps the layers (and gets the optimizer,
   which QAT counts steps with).
3. Fine-tune for ``post_compress_finetuning_epochs`` epochs with ``post_compress_finetuning_trainer``; pruned weights
   are held at zero meanwhile.
4. Score the result with the module's ``evaluator`` and report ``{"default": score, ...}`` as the final result
   (with the pruned weights' ``sparsity`` for pruners).
"""

from __future__ import annotations

import copy
import importlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from nni_pl.compression.auto.constants import PRUNER_DICT, QUANTIZER_DICT, TRAINING_PRUNERS
from nni_pl.compression.auto.interface import AbstractAutoCompressionModule
from nni_pl.compression.auto.search_space import parse_parameters
from nni_pl.errors import ConfigError

__all__ = ["AutoCompressEngine", "compress_and_evaluate"]

logger = logging.getLogger(__name__)


class _HoldMasks:
    """Zero the pruned weights before every forward while fine-tuning (and once at the end)."""

    def __init__(self, model: nn.Module, masks: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        modules = dict(model.named_modules())
        self.pairs = [(modules[n], entry) for n, entry in masks.items() if n in modules]
        self.handles: list[Any] = []

    @staticmethod
    def _mask(module: nn.Module, entry: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for pname, mask in entry.items():
                param = getattr(module, pname, None)
                if isinstance(param, torch.Tensor):
                    param.mul_(mask.to(device=param.device, dtype=param.dtype))

    def __enter__(self) -> _HoldMasks:
        # each layer is masked just before its own forward: masking another layer there would change a weight
        # autograd already saved for this step's backward
        self.handles = [
            m.register_forward_pre_hook(lambda mod, args, entry=entry: self._mask(mod, entry))
            for m, entry in self.pairs
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self.handles:
            h.remove()
        for m, entry in self.pairs:
            self._mask(m, entry)


def _require(value: Any, method: str, name: str, why: str) -> Any:
    if value is None:
        raise ConfigError(
            method,
            f"returned None, but {name!r} {why}; implement {method} in your AbstractAutoCompressionModule",
        )
    return value


def compress_and_evaluate(
    module: type[AbstractAutoCompressionModule], parameters: Mapping[str, Any]
) -> dict[str, float]:
    """Run steps 1-4 for ``parameters`` and return the metrics (``default`` is the evaluator's score).

    Example:
        >>> import torch
        >>> from nni_pl.compression.auto import AbstractAutoCompressionModule
        >>> class Module(AbstractAutoCompressionModule):
        ...     @classmethod
        ...     def model(cls):
        ...         return torch.nn.Sequential(torch.nn.Linear(10, 10))
        ...     @classmethod
        ...     def evaluator(cls):
        ...         return lambda model: round(float((model[0].weight == 0).float().mean()), 4)
        >>> compress_and_evaluate(Module, {"algorithm_name": {"_name": "level",
        ...                                                   "config_list::Linear::::sparsity": 0.3}})
        {'default': 0.3, 'sparsity': 0.3}
    """
    name, config_list, kwargs = parse_parameters(parameters)
    model = module.model()
    if not isinstance(model, nn.Module):
        raise ConfigError("model()", f"must return a torch.nn.Module, got {type(model).__name__}")
    model = copy.deepcopy(model)  # a pre-warmed worker runs many trials: each compresses a fresh copy
    evaluator = module.evaluator()
    if not callable(evaluator):
        raise ConfigError(
            "evaluator()", f"must return a function evaluator(model) -> float, got {evaluator!r}"
        )
    factory = module.optimizer_factory()
    criterion = module.criterion()
    metrics: dict[str, float] = {}
    masks: Mapping[str, Mapping[str, torch.Tensor]] = {}
    logger.info("auto compression: %s with %s %s", name, config_list, kwargs)
    if name in PRUNER_DICT:
        cls = getattr(importlib.import_module("nni_pl.compression.pruning"), PRUNER_DICT[name])
        if name in TRAINING_PRUNERS:
            why = "trains the model while it prunes"
            factory = _require(factory, "optimizer_factory()", name, why)
            criterion = _require(criterion, "criterion()", name, why)
            trainer = _require(module.sparsifying_trainer(name), "sparsifying_trainer()", name, why)
            epoch = [0]

            def train_one_epoch(model: nn.Module, optimizer: Any, criterion: Callable[..., Any]) -> None:
                trainer(model, optimizer, criterion, epoch[0])
                epoch[0] += 1

            kwargs = {
                "trainer": train_one_epoch,
                "optimizer": factory(model.parameters()),
                "criterion": criterion,
                **kwargs,
            }
        model, masks = cls(model, config_list, **kwargs).compress()
        zeros = sum(int((e["weight"] == 0).sum()) for e in masks.values() if "weight" in e)
        total = sum(e["weight"].numel() for e in masks.values() if "weight" in e)
        metrics["sparsity"] = zeros / total if total else 0.0
        optimizer = None
    elif name in QUANTIZER_DICT:
        cls = getattr(importlib.import_module("nni_pl.compression.quantization"), QUANTIZER_DICT[name])
        optimizer = factory(model.parameters()) if factory is not None else None
        quantizer = cls(model, config_list, optimizer, **kwargs)
        model = quantizer.compress()
    else:
        raise ConfigError(
            "algorithm_name",
            f"got {name!r}; use a pruner {list(PRUNER_DICT)} or a quantizer {list(QUANTIZER_DICT)}",
        )
    epochs = int(module.post_compress_finetuning_epochs(name) or 0)
    finetuner = module.post_compress_finetuning_trainer(name)
    if epochs > 0 and finetuner is not None:
        why = "is fine-tuned after compression"
        factory = _require(factory, "optimizer_factory()", name, why)
        criterion = _require(criterion, "criterion()", name, why)
        if optimizer is None:
            optimizer = factory(model.parameters())
        with _HoldMasks(model, masks):
            for e in range(epochs):
                finetuner(model, optimizer, criterion, e)
    metrics = {"default": float(evaluator(model)), **metrics}
    return metrics


class AutoCompressEngine:
    """NNI's engine name: :meth:`trial_execute_compress` runs one trial inside an experiment.

    Example:
        >>> AutoCompressEngine.trial_execute_compress.__name__
        'trial_execute_compress'
    """

    @classmethod
    def trial_execute_compress(
        cls, module: type[AbstractAutoCompressionModule], parameters: Mapping[str, Any] | None = None
    ) -> dict[str, float]:
        """Compress with this trial's parameters (``nni_pl.get_next_parameter()`` when not given), report the
        metrics as the final result and return them."""
        import nni_pl

        if parameters is None:
            parameters = nni_pl.get_next_parameter()
        metrics = compress_and_evaluate(module, parameters)
        nni_pl.report_final_result(metrics)
        return metrics


def run_trial(module: type[AbstractAutoCompressionModule], parameters: Mapping[str, Any]) -> dict[str, float]:
    """The function trial :class:`~nni_pl.compression.auto.AutoCompressionExperiment` runs (picklable with
    ``functools.partial``)."""
    return AutoCompressEngine.trial_execute_compress(module, parameters)
