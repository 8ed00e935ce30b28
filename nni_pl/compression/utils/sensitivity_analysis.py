"""Sensitivity analysis (NNI's ``nni.compression.pytorch.utils.sensitivity_analysis.SensitivityAnalysis``).

Each convolution is pruned alone at growing sparsities while every other layer keeps its weights, and the
validation metric is recorded; the layers whose metric falls fastest are the sensitive ones.

Example:
    >>> import torch
    >>> from nni_pl.compression.utils import SensitivityAnalysis
    >>> torch.manual_seed(0) and None
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3))
    >>> x = torch.randn(8, 1, 6, 6)
    >>> ref = net(x).detach()
    >>> def val(model):  # higher is better: minus the distance to the unpruned output
    ...     with torch.no_grad():
    ...         return -float((model(x) - ref).abs().mean())
    >>> s = SensitivityAnalysis(net, val, sparsities=[0.5, 1.0])
    >>> result = s.analysis(val_args=[net])
    >>> sorted(result), sorted(result["0"])
    (['0', '2'], [0.5, 1.0])
    >>> result["0"][0.5] > result["0"][1.0]
    True
"""

from __future__ import annotations

import copy
import csv
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from nni_pl.errors import ConfigError, did_you_mean

__all__ = ["EARLY_STOP_MODES", "PRUNE_TYPES", "SensitivityAnalysis"]

logger = logging.getLogger(__name__)

# NNI's names (``l1``, ``l2``, ``fine-grained``) and the pruning algorithm names nni-pl's pruners use
PRUNE_TYPES: dict[str, str] = {
    "l1": "L1NormPruner",
    "l2": "L2NormPruner",
    "fine-grained": "LevelPruner",
    "level": "LevelPruner",
    "fpgm": "FPGMPruner",
}
EARLY_STOP_MODES = ("minimize", "maximize", "dropped", "raised")
SUPPORTED_OP_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Conv1d)


class SensitivityAnalysis:
    """Prune one convolution at a time at each sparsity and record the validation metric.

    Args:
        model: the (trained) model; its weights are restored after each layer.
        val_func: ``val_func(*val_args, **val_kwargs) -> float``, the metric on validation data (accuracy, loss...).
        sparsities: the sparsities to try (sorted, rounded to 2 decimals); default ``0.1, 0.2, ..., 0.9``.
        prune_type: ``"l1"`` (filters with the smallest L1 norm, NNI's default), ``"l2"``, ``"fine-grained"``
            (single weights, ``"level"`` too) or ``"fpgm"``.
        early_stop_mode: stop a layer's sweep when the metric is below ``early_stop_value`` (``"minimize"``), above
            it (``"maximize"``), has dropped by it (``"dropped"``) or risen by it (``"raised"``) against the
            unpruned model's; ``None`` tries every sparsity.
        early_stop_value: the threshold of ``early_stop_mode``.

    Attributes:
        sensitivities: ``{layer: {sparsity: metric}}`` of the last :meth:`analysis`.
        ori_metric: the unpruned model's metric.
        target_layer: the analysed layers by name (Conv1d/Conv2d).
        already_pruned: per layer, the fraction already pruned (see :meth:`update_already_pruned`).
    """

    def __init__(
        self,
        model: nn.Module,
        val_func: Callable[..., float],
        sparsities: Iterable[float] | None = None,
        prune_type: str = "l1",
        early_stop_mode: str | None = None,
        early_stop_value: float | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError("model", f"must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(val_func):
            raise ConfigError(
                "val_func", f"must be callable as val_func(*val_args, **val_kwargs), got {val_func!r}"
            )
        if prune_type not in PRUNE_TYPES:
            raise ConfigError(
                "prune_type",
                f"got {prune_type!r}{did_you_mean(str(prune_type), PRUNE_TYPES)}; use one of {list(PRUNE_TYPES)}",
            )
        if early_stop_mode is not None and early_stop_mode not in EARLY_STOP_MODES:
            raise ConfigError(
                "early_stop_mode", f"got {early_stop_mode!r}; use one of {list(EARLY_STOP_MODES)} or None"
            )
        if early_stop_mode is not None and not isinstance(early_stop_value, (int, float)):
            raise ConfigError(
                "early_stop_value",
                f"got {early_stop_value!r}; early_stop_mode={early_stop_mode!r} needs a number as its threshold",
            )
        if sparsities is None:
            values = [round(0.1 * i, 2) for i in range(1, 10)]
        else:
            try:
                values = sorted(round(float(s), 2) for s in sparsities)
            except (TypeError, ValueError):
                raise ConfigError("sparsities", f"got {sparsities!r}; pass numbers in (0, 1]") from None
            bad = [s for s in values if not 0.0 < s <= 1.0]
            if bad or not values:
                raise ConfigError("sparsities", f"got {list(sparsities)!r}; every sparsity must be in (0, 1]")
        self.model = model
        self.val_func = val_func
        self.sparsities: list[float] = values
        self.prune_type = prune_type
        self.early_stop_mode = early_stop_mode
        self.early_stop_value = early_stop_value
        self.ori_state_dict = copy.deepcopy(model.state_dict())
        self.target_layer: dict[str, nn.Module] = {
            name: m for name, m in model.named_modules() if isinstance(m, SUPPORTED_OP_TYPES)
        }
        self.already_pruned: dict[str, float] = dict.fromkeys(self.target_layer, 0.0)
        self.sensitivities: dict[str, dict[float, float]] = {}
        self.ori_metric: float | None = None

    @property
    def layers_count(self) -> int:
        return len(self.target_layer)

    def _need_to_stop(self, ori_metric: float, cur_metric: float) -> bool:
        mode, value = self.early_stop_mode, self.early_stop_value
        if mode is None or value is None:
            return False
        if mode == "minimize":
            return cur_metric < value
        if mode == "maximize":
            return cur_metric > value
        if mode == "dropped":
            return cur_metric < ori_metric - value
        return cur_metric > ori_metric + value

    def _prune(self, name: str, sparsity: float) -> None:
        from nni_pl.compression import pruning

        cls = getattr(pruning, PRUNE_TYPES[self.prune_type])
        layer = self.target_layer[name]
        n = (
            layer.weight.shape[0]
            if self.prune_type != "fine-grained" and self.prune_type != "level"
            else None
        )
        if n is not None and sparsity >= 1.0:
            # filter pruners keep one channel; the metric of a layer with no filter left is that of zero weights
            for p in layer.parameters():
                p.data.zero_()
            return
        cls(
            self.model, [{"sparsity": sparsity, "op_names": [name], "op_types": [type(layer).__name__]}]
        ).compress()

    def analysis(
        self,
        val_args: Sequence[Any] | None = None,
        val_kwargs: Mapping[str, Any] | None = None,
        specified_layers: Iterable[str] | None = None,
    ) -> dict[str, dict[float, float]]:
        """Run the sweep and return ``{layer: {sparsity: metric}}``.

        Args:
            val_args: positional arguments of ``val_func``.
            val_kwargs: keyword arguments of ``val_func``.
            specified_layers: analyse only these convolutions (names from ``model.named_modules()``); several
                processes can each take a share of the layers.

        Raises:
            ConfigError: a specified layer is not a Conv1d/Conv2d of the model.
        """
        args, kwargs = list(val_args or []), dict(val_kwargs or {})
        names = list(self.target_layer)
        if specified_layers is not None:
            wanted = list(specified_layers)
            for w in wanted:
                if w not in self.target_layer:
                    raise ConfigError(
                        "specified_layers",
                        f"got {w!r}{did_you_mean(w, self.target_layer)}, which is not a Conv1d/Conv2d layer of the "
                        f"model; analysable layers: {names}",
                    )
            names = [n for n in names if n in wanted]
        self.ori_metric = float(self.val_func(*args, **kwargs))
        for name in names:
            self.sensitivities[name] = {}
            try:
                for sparsity in self.sparsities:
                    # sparsity is relative to what the layer keeps after earlier rounds (NNI's iterative use)
                    done = self.already_pruned.get(name, 0.0)
                    real = min((1.0 - done) * sparsity + done, 1.0)
                    self.model.load_state_dict(self.ori_state_dict)
                    self._prune(name, real)
                    metric = float(self.val_func(*args, **kwargs))
                    logger.info("Layer: %s Sparsity: %.2f Validation Metric: %.4f", name, real, metric)
                    self.sensitivities[name][sparsity] = metric
                    if math.isnan(metric) or self._need_to_stop(self.ori_metric, metric):
                        break
            finally:
                self.model.load_state_dict(self.ori_state_dict)
        return self.sensitivities

    def export(self, filepath: str | Path) -> None:
        """Write the CSV NNI writes: ``layername,0.1,0.2,...`` then one row of metrics per layer (a layer stopped
        early has fewer values)."""
        with open(filepath, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["layername", *(str(s) for s in self.sparsities)])
            for name, per in self.sensitivities.items():
                writer.writerow([name, *(per[s] for s in sorted(per))])

    def update_already_pruned(self, layername: str, ratio: float) -> None:
        """Set the fraction of ``layername`` already pruned; later sparsities apply to what it keeps."""
        if layername not in self.target_layer:
            raise ConfigError(
                "layername",
                f"got {layername!r}{did_you_mean(layername, self.target_layer)}; not an analysed layer",
            )
        if not 0.0 <= ratio < 1.0:
            raise ConfigError("ratio", f"got {ratio!r}; the pruned fraction must be in [0, 1)")
        self.already_pruned[layername] = float(ratio)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Replace the weights the analysis restores (and load them into the model)."""
        self.ori_state_dict = copy.deepcopy(dict(state_dict))
        self.model.load_state_dict(self.ori_state_dict)
