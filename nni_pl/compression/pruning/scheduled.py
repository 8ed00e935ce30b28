"""Scheduled and iterative pruners (NNI 2.x names and arguments): Linear, AGP, LotteryTicket, SimulatedAnnealing,
AutoCompress, AMC.

Each is a loop around a one-shot pruner chosen by ``pruning_algorithm`` (``"level"``, ``"l1"``, ``"l2"``,
``"fpgm"``, ``"slim"``, ``"apoz"``, ``"mean_activation"``, ``"taylorfo"``, ``"admm"``, ``"movement"``; its extra
arguments in ``pruning_params``, e.g. ``{"mode": "dependency_aware", "evaluator": Evaluator...}``). One iteration:

1. prune the current model with this iteration's ``config_list``
   (:func:`~nni_pl.compression.pruning.schedule.prune_step`: a pruned weight stays pruned and counts toward the
   iteration's sparsity, which is reached and not exceeded);
2. ``speed_up=True``: ``ModelSpeedup(model, dummy_input, masks)`` makes it physically smaller (the next
   iteration's sparsity is then relative to the smaller model);
3. ``finetuner(model)`` (masks enforced while it trains: masked weights are zeroed before every forward);
4. ``evaluator(model) -> float`` scores it (higher is better); the best iteration is kept.

As in NNI, ``evaluator`` here is a *scoring* function ``Callable[[nn.Module], float]`` and ``finetuner`` a
``Callable[[nn.Module], None]``; an :class:`~nni_pl.compression.Evaluator` (the training mechanism of the basic
pruners) is accepted as ``finetuner`` (its ``train(model)`` is called) and goes into ``pruning_params`` for
pruners that train (slim, taylorfo, admm, activation ranks, movement).

``compress()`` returns ``(model, masks)`` of the best iteration and ``get_best_result()`` NNI's
``(task_id, model, masks, score, config_list)``.

Differences from NNI, on purpose:

* ``AMCPruner`` follows NNI's v2 signature (``total_episode, model, config_list, dummy_input, evaluator, ...``), not
  the v1 one, and its DDPG agent's ``window_length``, ``max_episode_length`` and ``epsilon`` have no effect
  (see :class:`AMCPruner`).
* FLOPs for AMC's constraint are counted on a chain of pruned layers (a layer's input channels shrink with the
  previous pruned layer's outputs), AMC's own assumption.

Example:
    >>> import torch
    >>> from nni_pl.compression.pruning.scheduled import AGPPruner
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
    >>> pruner = AGPPruner(model, [{"sparsity": 0.5, "op_types": ["Conv2d"]}], "l1", total_iteration=3)
    >>> [round(s, 3) for s in pruner.schedule()]
    [0.352, 0.481, 0.5]
    >>> model, masks = pruner.compress()
    >>> int(masks["0"]["weight"].sum(dim=(1, 2, 3)).gt(0).sum())
    4
"""

from __future__ import annotations

import copy
import importlib
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nni_pl.compression.pruning._ddpg import DDPG_PARAMS, DDPGAgent
from nni_pl.compression.pruning.config import resolve
from nni_pl.compression.pruning.masks import Masks, apply_masks
from nni_pl.compression.pruning.schedule import (
    SPARSITY_KEYS,
    final_sparsities,
    prune_step,
    schedule_fraction,
    with_sparsity,
)
from nni_pl.errors import ConfigError

__all__ = [
    "PRUNING_ALGORITHMS",
    "AGPPruner",
    "AMCPruner",
    "AutoCompressPruner",
    "LinearPruner",
    "LotteryTicketPruner",
    "ScheduledPruner",
    "SimulatedAnnealingPruner",
]

logger = logging.getLogger(__name__)

PRUNING_ALGORITHMS: dict[str, str] = {
    "level": "LevelPruner",
    "l1": "L1NormPruner",
    "l2": "L2NormPruner",
    "fpgm": "FPGMPruner",
    "slim": "SlimPruner",
    "apoz": "ActivationAPoZRankPruner",
    "mean_activation": "ActivationMeanRankPruner",
    "taylorfo": "TaylorFOWeightPruner",
    "admm": "ADMMPruner",
    "movement": "MovementPruner",
}

Finetuner = Callable[[nn.Module], Any]
ScoreFn = Callable[[nn.Module], float]


def pruner_class(name: str) -> type:
    """The one-shot pruner class of a ``pruning_algorithm`` name (also accepts the class name itself)."""
    basic = importlib.import_module("nni_pl.compression.pruning.basic")
    cls_name = PRUNING_ALGORITHMS.get(name, name)
    cls = getattr(basic, cls_name, None)
    if cls is None:
        raise ConfigError(
            "pruning_algorithm",
            f"unknown pruning algorithm {name!r}; use one of {sorted(PRUNING_ALGORITHMS)}",
        )
    return cls


class _MaskGuard:
    """Keeps masked weights at zero while a finetuner trains: zeroes them before every forward and at the end."""

    def __init__(self, model: nn.Module, masks: Masks) -> None:
        self.model, self.masks, self.handles = model, masks, []

    def __enter__(self) -> _MaskGuard:
        modules = dict(self.model.named_modules())
        for name, entry in self.masks.items():
            module = modules.get(name)
            if module is None:
                continue

            def pre_hook(mod: nn.Module, _inp: Any, entry: Mapping[str, torch.Tensor] = entry) -> None:
                with torch.no_grad():
                    for pname, mask in entry.items():
                        param = getattr(mod, pname, None)
                        if isinstance(param, torch.Tensor) and param.shape == mask.shape:
                            param.mul_(mask.to(param.device, param.dtype))

            self.handles.append(module.register_forward_pre_hook(pre_hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        if self.masks:
            apply_masks(self.model, self.masks)


class ScheduledPruner:
    """Base of the iterative pruners: runs tasks (config_lists) one after another on the model.

    The last iteration ends at the configured sparsity: a layer of ``n`` units loses ``round(sparsity * n)``
    (a structured layer keeps at least one channel), with or without ``speed_up`` (see :meth:`task_config`).

    Args:
        model: the model to prune (pruned in place unless ``speed_up=True``, which replaces layers).
        config_list: NNI ``config_list`` with the final sparsities.
        pruning_algorithm: the one-shot pruner used in each iteration (see :data:`PRUNING_ALGORITHMS`).
        total_iteration: number of pruning iterations.
        log_dir: where ``keep_intermediate_result=True`` saves each iteration's model and masks.
        keep_intermediate_result: save ``iteration_<i>.pt`` (model, masks, score, config_list) under ``log_dir``.
        finetuner: ``finetuner(model)`` trains after each pruning step (or an ``Evaluator``: ``train(model)``).
        speed_up: apply ``ModelSpeedup`` after each iteration (needs ``dummy_input``).
        dummy_input: example input for the speed-up and for ``mode="dependency_aware"``.
        evaluator: ``evaluator(model) -> float`` (higher is better); ``None``: the last iteration is the best.
        pruning_params: extra keyword arguments of the one-shot pruner.

    Example:
        >>> import torch
        >>> from nni_pl.compression.pruning.scheduled import LinearPruner
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 8))
        >>> pruner = LinearPruner(model, [{"sparsity": 0.5, "op_types": ["Linear"]}], "level", total_iteration=2)
        >>> _ = pruner.compress()
        >>> pruner.get_best_result()[0]
        2
    """

    reset_weight = False

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        pruning_algorithm: str,
        total_iteration: int,
        log_dir: str | Path = ".",
        keep_intermediate_result: bool = False,
        finetuner: Finetuner | Any | None = None,
        speed_up: bool = False,
        dummy_input: Any = None,
        evaluator: ScoreFn | None = None,
        pruning_params: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError("model", f"must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(total_iteration, bool) or not isinstance(total_iteration, int) or total_iteration < 1:
            raise ConfigError("total_iteration", f"must be an integer >= 1, got {total_iteration!r}")
        if speed_up and dummy_input is None:
            raise ConfigError("dummy_input", "speed_up=True traces the model: pass an example input")
        if evaluator is not None and not callable(evaluator):
            raise ConfigError("evaluator", f"must be callable(model) -> float, got {evaluator!r}")
        if finetuner is not None and not (callable(finetuner) or hasattr(finetuner, "train")):
            raise ConfigError("finetuner", f"must be callable(model) or an Evaluator, got {finetuner!r}")
        self.pruner_cls = pruner_class(pruning_algorithm)
        self.pruning_algorithm = pruning_algorithm
        self.pruning_params = dict(pruning_params or {})
        if (
            "mode" in self.pruning_params
            and "dummy_input" not in self.pruning_params
            and dummy_input is not None
        ):
            self.pruning_params["dummy_input"] = dummy_input
        # validate the config_list once, on the original model, so errors name the user's entry; the units of
        # each layer there are what the final sparsity counts (see task_config)
        targets = resolve(model, config_list, extra_keys=getattr(self.pruner_cls, "extra_keys", ()))
        self.model = model
        self.config_list = [dict(c) for c in config_list]
        self.total_iteration = total_iteration
        self.log_dir = Path(log_dir)
        self.keep_intermediate_result = keep_intermediate_result
        self.finetuner = finetuner
        self.speed_up = speed_up
        self.dummy_input = dummy_input
        self.evaluator = evaluator
        self.masks: Masks = {}
        self.history: list[dict[str, Any]] = []
        self._best: tuple[int, nn.Module, Masks, float | None, list[dict[str, Any]]] | None = None
        self._units = {t.name: self._unit_count(t.module) for t in targets}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pruning_algorithm={self.pruning_algorithm!r}, total_iteration={self.total_iteration})"

    # -- schedule -------------------------------------------------------------------------------------------------
    def fraction(self, i: int) -> float:
        """Share of the final sparsity reached after iteration ``i`` (1-based); subclasses define the curve."""
        raise NotImplementedError

    def schedule(self) -> list[float]:
        """The sparsity of the first config entry after each iteration (for reading and tests)."""
        finals = final_sparsities(self.config_list)
        final = finals[0] if finals else 0.0
        return [self._target(final, i) for i in range(1, self.total_iteration + 1)]

    def _target(self, final: float, i: int) -> float:
        return final * self.fraction(i)

    def task_config(self, i: int) -> list[dict[str, Any]]:
        """The config_list of iteration ``i`` (relative to the current, possibly sped-up, model).

        Rounding rule: after iteration ``i`` a layer of ``n`` units (output channels for structured pruners,
        weights otherwise) has lost ``round(s_i * n)`` of them, ``s_i`` being its scheduled sparsity and ``n``
        counted on the original model; after the last iteration that is ``round(sparsity * n)``, exactly as the
        one-shot pruner with the configured ``sparsity`` (a structured layer keeps at least one channel). With
        ``speed_up=True`` the step's per-layer sparsity is computed from the units the sped-up layer still has,
        so rounding does not compound across iterations (``sparsity``/``sparsity_per_layer`` entries; a
        ``total_sparsity`` entry is rescaled by the schedule's ratio, which can be off by the rounding of each
        step).
        """
        target = with_sparsity(self.config_list, lambda s: self._target(s, i))
        if not self.speed_up or i == 1:
            return target
        previous = with_sparsity(self.config_list, lambda s: self._target(s, i - 1))
        current = {t.name: t for t in self._resolve(self.model, target)}
        out: list[dict[str, Any]] = []
        for k, (now, before) in enumerate(zip(target, previous, strict=True)):
            if "total_sparsity" not in now and any(key in now for key in SPARSITY_KEYS):
                extra = {
                    key: v
                    for key, v in now.items()
                    if key not in (*SPARSITY_KEYS, "op_types", "op_names", "op_partial_names", "exclude")
                }
                for name, t in current.items():
                    if t.entry != k or name not in self._units:
                        continue
                    n, n_now = self._units[name], self._unit_count(t.module)
                    keep = n - min(round(t.sparsity * n), n - 1 if self._structured else n)
                    out.append({**extra, "sparsity": max(0, n_now - keep) / n_now, "op_names": [name]})
                continue
            entry = dict(now)
            for key in SPARSITY_KEYS:
                if key in entry:
                    # the sped-up model kept (1 - before) of the original units; prune the rest relative to it
                    entry[key] = max(0.0, 1.0 - (1.0 - now[key]) / max(1e-12, 1.0 - before[key]))
            out.append(entry)
        return out

    @property
    def _structured(self) -> bool:
        return bool(getattr(self.pruner_cls, "structured", False))

    def _unit_count(self, module: nn.Module) -> int:
        return int(module.weight.shape[0] if self._structured else module.weight.numel())

    def _resolve(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]]) -> list[Any]:
        return resolve(model, config_list, extra_keys=getattr(self.pruner_cls, "extra_keys", ()))

    # -- one step -------------------------------------------------------------------------------------------------
    def prune_step(self, model: nn.Module, config_list: list[dict[str, Any]]) -> tuple[nn.Module, Masks]:
        """Prune ``model`` with ``config_list``, keeping the current masks (:func:`~.schedule.prune_step`); speed
        it up when asked."""
        masks = prune_step(model, self.pruner_cls, config_list, self.masks, **self.pruning_params)
        if self.speed_up:
            speedup = importlib.import_module("nni_pl.compression.speedup")
            model = speedup.ModelSpeedup(model, self.dummy_input, masks).speedup_model()
            self.masks = {}
        else:
            self.masks = masks
        return model, masks

    def finetune(self, model: nn.Module) -> None:
        if self.finetuner is None:
            return
        with _MaskGuard(model, self.masks):
            if hasattr(self.finetuner, "train") and not isinstance(self.finetuner, nn.Module):
                self.finetuner.train(model)
            else:
                self.finetuner(model)

    def score(self, model: nn.Module) -> float | None:
        if self.evaluator is None:
            return None
        model_was_training = model.training
        value = float(self.evaluator(model))
        model.train(model_was_training)
        return value

    def record(
        self, i: int, model: nn.Module, masks: Masks, score: float | None, config: list[dict[str, Any]]
    ) -> None:
        """Keep iteration ``i`` if it is the best so far (last one when there is no evaluator); log and save it."""
        self.history.append({"iteration": i, "score": score, "config_list": config})
        logger.info("%s iteration %d: score %s, config %s", type(self).__name__, i, score, config)
        if self._best is None or score is None or (self._best[3] is not None and score >= self._best[3]):
            snapshot = model if self.speed_up else copy.deepcopy(model)
            self._best = (i, snapshot, {k: dict(v) for k, v in masks.items()}, score, config)
        if self.keep_intermediate_result:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            torch.save(
                {"model": model, "masks": masks, "score": score, "config_list": config},
                self.log_dir / f"iteration_{i}.pt",
            )

    # -- public ---------------------------------------------------------------------------------------------------
    def compress(self) -> tuple[nn.Module, Masks]:
        """Run every iteration; returns the best ``(model, masks)`` (the model is also ``self.model``)."""
        model = self.model
        for i in range(1, self.total_iteration + 1):
            config = self.task_config(i)
            model, masks = self.prune_step(model, config)
            self.finetune(model)
            self.record(i, model, masks, self.score(model), config)
        assert self._best is not None
        self.model = self._best[1]
        return self._best[1], self._best[2]

    def get_best_result(self) -> tuple[int, nn.Module, Masks, float | None, list[dict[str, Any]]]:
        """NNI's ``(task_id, model, masks, score, config_list)`` of the best iteration."""
        if self._best is None:
            raise ConfigError("compress", f"{type(self).__name__}.get_best_result(): call compress() first")
        return self._best


class LinearPruner(ScheduledPruner):
    """Sparsity rises evenly: final 0.5 over 5 iterations gives 0.1, 0.2, 0.3, 0.4, 0.5 (NNI's LinearPruner).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 8))
        >>> LinearPruner(model, [{"sparsity": 0.5, "op_types": ["Linear"]}], "level", total_iteration=5).schedule()
        [0.1, 0.2, 0.3, 0.4, 0.5]
    """

    def fraction(self, i: int) -> float:
        return schedule_fraction("linear", i, self.total_iteration)

    def _target(self, final: float, i: int) -> float:
        return round(final * self.fraction(i), 10)


class AGPPruner(ScheduledPruner):
    """Automated gradual pruning: ``s_i = s_f (1 - (1 - i/n)^3)`` (cubic, NNI's AGPPruner with ``s_0 = 0``).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 8))
        >>> [round(s, 3) for s in AGPPruner(model, [{"sparsity": 0.8, "op_types": ["Linear"]}], "level", total_iteration=4).schedule()]
        [0.463, 0.7, 0.788, 0.8]
    """

    def fraction(self, i: int) -> float:
        return schedule_fraction("agp", i, self.total_iteration)


class LotteryTicketPruner(ScheduledPruner):
    """Iterative magnitude pruning with weight rewinding (Frankle & Carbin; NNI's LotteryTicketPruner).

    The model is trained (``finetuner``) first; then each iteration prunes ``1 - (1 - P)^(1/n)`` of the surviving
    weights, and with ``reset_weight=True`` rewinds the survivors to their initial values before training again.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 8))
        >>> p = LotteryTicketPruner(model, [{"sparsity": 0.75, "op_types": ["Linear"]}], "level", total_iteration=2)
        >>> [round(s, 3) for s in p.schedule()]
        [0.5, 0.75]
    """

    def __init__(self, *args: Any, reset_weight: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.speed_up and reset_weight:
            raise ConfigError(
                "speed_up",
                "LotteryTicketPruner rewinds weights by name: use speed_up=False with reset_weight",
            )
        self.reset_weight = reset_weight
        self.initial_state = copy.deepcopy(self.model.state_dict())

    def _target(self, final: float, i: int) -> float:
        return 1.0 - (1.0 - final) ** (i / self.total_iteration)

    def fraction(self, i: int) -> float:  # pragma: no cover - _target is overridden
        return i / self.total_iteration

    def compress(self) -> tuple[nn.Module, Masks]:
        model = self.model
        self.finetune(model)  # theta_j: train before the first pruning
        for i in range(1, self.total_iteration + 1):
            config = self.task_config(i)
            model, masks = self.prune_step(model, config)
            if self.reset_weight:
                model.load_state_dict(self.initial_state)
                apply_masks(model, masks)
            self.finetune(model)
            self.record(i, model, masks, self.score(model), config)
        assert self._best is not None
        self.model = self._best[1]
        return self._best[1], self._best[2]


def _layer_sizes(model: nn.Module, config_list: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    return {t.name: t.module.weight.numel() for t in resolve(model, config_list)}


def _rescale(
    sparsities: dict[str, float], sizes: Mapping[str, int], target: float, cap: float
) -> dict[str, float]:
    """Scale per-layer sparsities so the size-weighted mean equals ``target`` (each capped at ``cap``)."""
    total = sum(sizes.values())
    values = dict(sparsities)
    for _ in range(50):
        current = sum(values[n] * sizes[n] for n in values) / total
        if abs(current - target) < 1e-4 or current <= 0:
            break
        factor = target / current
        values = {n: min(cap, max(0.0, v * factor)) for n, v in values.items()}
    return values


class SimulatedAnnealingPruner(ScheduledPruner):
    """Search a per-layer sparsity distribution by simulated annealing (NNI's SimulatedAnnealingPruner).

    The overall target is the ``total_sparsity`` (or ``sparsity``) of the config_list's first entry over its
    layers. Start: random sparsities sorted so bigger layers are pruned more (the "enhanced" SA of AutoCompress),
    scaled to the target. While ``T > stop_temperature``: perturb by ``perturbation_magnitude * T / T0``, rescale,
    prune a copy of the original model with that distribution (``op_names`` entries), finetune, score; accept if
    better or with probability ``exp(delta / T)``; ``T *= cool_down_rate``.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
        >>> sa = SimulatedAnnealingPruner(model, [{"total_sparsity": 0.5, "op_types": ["Linear"]}], "level",
        ...                               evaluator=lambda m: 0.0, cool_down_rate=0.5)
        >>> _ = sa.compress()
        >>> len(sa.history)  # the initial distribution, then T = 100, 50, 25 (> 20)
        4
    """

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        pruning_algorithm: str,
        evaluator: ScoreFn,
        start_temperature: float = 100,
        stop_temperature: float = 20,
        cool_down_rate: float = 0.9,
        perturbation_magnitude: float = 0.35,
        log_dir: str | Path = ".",
        keep_intermediate_result: bool = False,
        finetuner: Finetuner | Any | None = None,
        speed_up: bool = False,
        dummy_input: Any = None,
        pruning_params: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        if evaluator is None:
            raise ConfigError(
                "evaluator", "SimulatedAnnealingPruner scores each candidate: pass evaluator(model) -> float"
            )
        if not 0 < cool_down_rate < 1:
            raise ConfigError("cool_down_rate", f"must be in (0, 1), got {cool_down_rate!r}")
        if not stop_temperature < start_temperature:
            raise ConfigError(
                "stop_temperature",
                f"must be below start_temperature ({start_temperature}), got {stop_temperature}",
            )
        iterations = max(
            1, math.ceil(math.log(stop_temperature / start_temperature) / math.log(cool_down_rate))
        )
        super().__init__(
            model, config_list, pruning_algorithm, iterations, log_dir, keep_intermediate_result, finetuner,
            speed_up, dummy_input, evaluator, pruning_params,
        )  # fmt: skip
        self.start_temperature = start_temperature
        self.stop_temperature = stop_temperature
        self.cool_down_rate = cool_down_rate
        self.perturbation_magnitude = perturbation_magnitude
        self.rng = random.Random(seed)
        first = self.config_list[0]
        self.target = float(
            first.get("total_sparsity", first.get("sparsity", first.get("sparsity_per_layer", 0.0)))
        )
        self.cap = float(first.get("max_sparsity_per_layer", 0.95))
        base = {
            k: v
            for k, v in first.items()
            if k not in ("sparsity", "sparsity_per_layer", "total_sparsity", "max_sparsity_per_layer")
        }
        self.sizes = _layer_sizes(model, [dict(base, sparsity=0.0)])
        self.original = copy.deepcopy(model)
        self.best_distribution: dict[str, float] = {}

    def fraction(self, i: int) -> float:  # not a schedule: every candidate has the full target
        return 1.0

    def _initial(self) -> dict[str, float]:
        draws = sorted(self.rng.random() for _ in self.sizes)
        by_size = sorted(self.sizes, key=lambda n: self.sizes[n])
        return _rescale(dict(zip(by_size, draws, strict=True)), self.sizes, self.target, self.cap)

    def _perturb(self, current: dict[str, float], temperature: float) -> dict[str, float]:
        magnitude = self.perturbation_magnitude * temperature / self.start_temperature
        moved = {
            n: min(self.cap, max(0.0, v + self.rng.uniform(-magnitude, magnitude)))
            for n, v in current.items()
        }
        return _rescale(moved, self.sizes, self.target, self.cap)

    def distribution_config(self, distribution: Mapping[str, float]) -> list[dict[str, Any]]:
        """One config entry per layer (``op_names``) carrying its sparsity."""
        return [{"sparsity": round(s, 6), "op_names": [n]} for n, s in distribution.items()]

    def evaluate_distribution(self, distribution: Mapping[str, float]) -> tuple[nn.Module, Masks, float]:
        self.masks = {}
        model, masks = self.prune_step(copy.deepcopy(self.original), self.distribution_config(distribution))
        self.finetune(model)
        return model, masks, float(self.evaluator(model))  # type: ignore[misc]

    def compress(self) -> tuple[nn.Module, Masks]:
        temperature = self.start_temperature
        current = self._initial()
        model, masks, current_score = self.evaluate_distribution(current)
        self.record(0, model, masks, current_score, self.distribution_config(current))
        self.best_distribution = current
        i = 0
        while temperature > self.stop_temperature:
            i += 1
            candidate = self._perturb(current, temperature)
            model, masks, score = self.evaluate_distribution(candidate)
            delta = score - current_score
            if delta > 0 or math.exp(delta / temperature) > self.rng.random():
                current, current_score = candidate, score
            if self._best is None or self._best[3] is None or score >= self._best[3]:
                self.best_distribution = candidate
            self.record(i, model, masks, score, self.distribution_config(candidate))
            temperature *= self.cool_down_rate
        assert self._best is not None
        self.model = self._best[1]
        self.masks = self._best[2]
        return self._best[1], self._best[2]


class AutoCompressPruner(ScheduledPruner):
    """AutoCompress (NNI's AutoCompressPruner): ``total_iteration`` rounds, each with a simulated-annealing search
    of the per-layer sparsities for that round's target ``1 - (1 - P)^(i/n)`` and then ADMM pruning with the found
    distribution (``admm_params``; without ``admm_params["evaluator"]`` the SA's own algorithm prunes), speed-up,
    finetuning and scoring.

    Args:
        admm_params: keyword arguments of :class:`ADMMPruner` (``evaluator``, ``iterations``, ``training_epochs``...).
        sa_params: keyword arguments of :class:`SimulatedAnnealingPruner` (``pruning_algorithm`` default ``"level"``,
            temperatures, ``cool_down_rate``...).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
        >>> ac = AutoCompressPruner(model, [{"total_sparsity": 0.5, "op_types": ["Linear"]}], total_iteration=2,
        ...                         admm_params={}, sa_params={"cool_down_rate": 0.5}, evaluator=lambda m: 0.0)
        >>> _ = ac.compress()
        >>> len(ac.history)
        2
    """

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        total_iteration: int,
        admm_params: Mapping[str, Any],
        sa_params: Mapping[str, Any],
        log_dir: str | Path = ".",
        keep_intermediate_result: bool = False,
        finetuner: Finetuner | Any | None = None,
        speed_up: bool = False,
        dummy_input: Any = None,
        evaluator: ScoreFn | None = None,
    ) -> None:
        if evaluator is None:
            raise ConfigError(
                "evaluator",
                "AutoCompressPruner's annealing scores candidates: pass evaluator(model) -> float",
            )
        self.admm_params = dict(admm_params or {})
        self.sa_params = dict(sa_params or {})
        algorithm = (
            "admm" if "evaluator" in self.admm_params else self.sa_params.get("pruning_algorithm", "level")
        )
        super().__init__(
            model, config_list, algorithm, total_iteration, log_dir, keep_intermediate_result, finetuner,
            speed_up, dummy_input, evaluator, self.admm_params if algorithm == "admm" else self.sa_params.get("pruning_params"),
        )  # fmt: skip

    def _target(self, final: float, i: int) -> float:
        return 1.0 - (1.0 - final) ** (i / self.total_iteration)

    def fraction(self, i: int) -> float:  # pragma: no cover - _target is overridden
        return i / self.total_iteration

    def compress(self) -> tuple[nn.Module, Masks]:
        model = self.model
        for i in range(1, self.total_iteration + 1):
            config = self.task_config(i)
            sa_kwargs = {k: v for k, v in self.sa_params.items() if k not in ("pruning_algorithm",)}
            sa = SimulatedAnnealingPruner(
                copy.deepcopy(model),
                config,
                self.sa_params.get("pruning_algorithm", "level"),
                evaluator=self.evaluator,  # type: ignore[arg-type]
                finetuner=None,
                **sa_kwargs,
            )
            sa.masks = dict(self.masks)
            sa.compress()
            layer_config = sa.distribution_config(sa.best_distribution)
            model, masks = self.prune_step(model, layer_config)
            self.finetune(model)
            self.record(i, model, masks, self.score(model), layer_config)
        assert self._best is not None
        self.model = self._best[1]
        return self._best[1], self._best[2]


def _chain_macs(model: nn.Module, names: Sequence[str], dummy_input: Any) -> tuple[dict[str, int], list[str]]:
    """Dense MACs of each named layer and the order in which they run."""
    macs: dict[str, int] = {}
    order: list[str] = []
    modules = dict(model.named_modules())
    handles = []
    for name in names:

        def hook(mod: nn.Module, _inp: Any, out: torch.Tensor, name: str = name) -> None:
            order.append(name)
            per_out = mod.weight[0].numel()
            macs[name] = (
                int(out.numel() // out.shape[0] * per_out) if out.dim() > 1 else int(per_out * out.numel())
            )

        handles.append(modules[name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(dummy_input)
    finally:
        for handle in handles:
            handle.remove()
    return macs, list(dict.fromkeys(order))


#: the settings handed to :class:`~nni_pl.compression.pruning._ddpg.DDPGAgent` as they are
_AGENT_KEYS = (
    "hidden1", "hidden2", "lr_c", "lr_a", "discount", "bsize", "tau", "init_delta", "delta_decay", "lbound", "rbound",
    "seed",
)  # fmt: skip


_KIND_WORDS = {
    "int>=1": "an integer >= 1",
    "int>=0": "an integer >= 0",
    ">0": "a number > 0",
    "[0,1]": "a number in [0, 1]",
    "(0,1]": "a number in (0, 1]",
    "seed": "an integer >= 0 or null",
}


def _ddpg_settings(ddpg_params: Mapping[str, Any] | None, total_episode: int) -> dict[str, Any]:
    """NNI's ``ddpg_params`` over the defaults (``warmup``: a quarter of the episodes, at most 100), each checked."""
    given = dict(ddpg_params or {})
    unknown = sorted(set(given) - set(DDPG_PARAMS))
    if unknown:
        raise ConfigError(
            f"ddpg_params.{unknown[0]}", f"is not a DDPG setting; known: {', '.join(DDPG_PARAMS)}"
        )
    settings = {k: default for k, (default, _) in DDPG_PARAMS.items()}
    settings["warmup"] = min(100, max(1, total_episode // 4))
    settings.update(given)
    for key, value in given.items():
        kind = DDPG_PARAMS[key][1]
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        integer = number and float(value).is_integer()
        ok = {
            "int>=1": integer and value >= 1,
            "int>=0": integer and value >= 0,
            ">0": number and value > 0,
            "[0,1]": number and 0 <= value <= 1,
            "(0,1]": number and 0 < value <= 1,
            "seed": value is None or (integer and value >= 0),
            "any": True,
        }[kind]
        if not ok:
            raise ConfigError(f"ddpg_params.{key}", f"must be {_KIND_WORDS[kind]}, got {value!r}")
        if kind.startswith("int") or (kind == "seed" and value is not None):
            settings[key] = int(value)
    if settings["lbound"] > settings["rbound"]:
        raise ConfigError(
            "ddpg_params.lbound",
            f"must be <= rbound, got lbound={settings['lbound']}, rbound={settings['rbound']}",
        )
    return settings


class AMCPruner(ScheduledPruner):
    """AMC: per-layer channel sparsities under a FLOPs (or parameter) budget, learnt by a DDPG agent (NNI's AMCPruner).

    Each episode walks the prunable layers in execution order. For each layer the agent sees AMC's layer embedding
    (index, output/input channels, kernel, stride, the layer's share of the cost, the share removed so far and the
    share still to come, the previous action) and chooses a preserve ratio in ``[lbound, rbound]``; the action is
    clipped so that the budget ``1 - sparsity`` of FLOPs (``target="flops"``) or parameters can still be met with
    the remaining layers at ``lbound`` (AMC's action limiting). The copy of the original model is then pruned with
    ``pruning_algorithm`` at those ratios, finetuned when a finetuner is given, and ``evaluator(model)`` is the
    reward of every step of the episode. The first ``warmup`` episodes act at random and only fill the replay
    memory; after each later episode the agent takes one DDPG update per layer. The best-rewarded policy is kept.

    Args:
        total_episode: number of episodes (policies evaluated).
        model, config_list, dummy_input, evaluator: as in NNI; the first entry's ``total_sparsity`` (or
            ``sparsity``) is the share of FLOPs (``target="flops"``) or parameters (``"params"``) to remove.
        ddpg_params: the agent's settings, NNI's names: ``hidden1``, ``hidden2``, ``lr_c``, ``lr_a``, ``warmup``
            (default ``min(100, total_episode // 4)`` when left out), ``discount``, ``bsize``, ``rmsize``
            (memory per layer), ``tau``, ``init_delta``, ``delta_decay``, ``lbound``, ``rbound``, ``seed``.
        target: ``"flops"`` or ``"params"``.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3))
        >>> amc = AMCPruner(4, model, [{"total_sparsity": 0.5, "op_types": ["Conv2d"]}], torch.randn(1, 3, 16, 16),
        ...                 evaluator=lambda m: 0.0, ddpg_params={"warmup": 2, "seed": 0})
        >>> _ = amc.compress()
        >>> amc.best_flops_ratio <= 0.5 + 0.05
        True
    """

    def __init__(
        self,
        total_episode: int,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        dummy_input: Any,
        evaluator: ScoreFn,
        pruning_algorithm: str = "l1",
        log_dir: str | Path = ".",
        keep_intermediate_result: bool = False,
        finetuner: Finetuner | Any | None = None,
        ddpg_params: Mapping[str, Any] | None = None,
        pruning_params: Mapping[str, Any] | None = None,
        target: str = "flops",
    ) -> None:
        if evaluator is None:
            raise ConfigError("evaluator", "AMCPruner's reward is evaluator(model) -> float; pass one")
        if target not in ("flops", "params"):
            raise ConfigError("target", f"must be 'flops' or 'params', got {target!r}")
        if dummy_input is None:
            raise ConfigError(
                "dummy_input", "AMCPruner measures FLOPs with a forward pass: pass an example input"
            )
        super().__init__(
            model, config_list, pruning_algorithm, total_episode, log_dir, keep_intermediate_result, finetuner,
            False, dummy_input, evaluator, pruning_params,
        )  # fmt: skip
        self.ddpg = _ddpg_settings(ddpg_params, total_episode)
        self.warmup, self.lbound, self.rbound = self.ddpg["warmup"], self.ddpg["lbound"], self.ddpg["rbound"]
        self.target = target
        first = self.config_list[0]
        self.sparsity = float(
            first.get("total_sparsity", first.get("sparsity", first.get("sparsity_per_layer", 0.5)))
        )
        base = {
            k: v
            for k, v in first.items()
            if k not in ("sparsity", "sparsity_per_layer", "total_sparsity", "max_sparsity_per_layer")
        }
        names = [t.name for t in resolve(model, [dict(base, sparsity=0.0)])]
        self.original = copy.deepcopy(model)
        dense_macs, self.order = _chain_macs(model, names, dummy_input)
        modules = dict(model.named_modules())
        self.cost = dense_macs if target == "flops" else {n: modules[n].weight.numel() for n in self.order}
        self.total_cost = sum(self.cost.values())
        self._static = self._layer_features(modules)
        self.agent = DDPGAgent(
            len(self._static[0]) + 3,
            memory=self.ddpg["rmsize"] * len(self.order),
            **{k: self.ddpg[k] for k in _AGENT_KEYS},
        )
        self.best_policy: dict[str, float] = {}
        self.best_flops_ratio = 1.0

    def fraction(self, i: int) -> float:  # not a schedule
        return 1.0

    def cost_ratio(self, preserve: Mapping[str, float]) -> float:
        """Remaining share of FLOPs/params: out-channels x in-channels kept (the previous layer's outputs)."""
        kept, prev = 0.0, 1.0
        for name in self.order:
            kept += self.cost[name] * preserve[name] * prev
            prev = preserve[name]
        return kept / self.total_cost

    def _layer_features(self, modules: Mapping[str, nn.Module]) -> list[list[float]]:
        """AMC's static layer embedding, each column scaled to [0, 1] over the layers."""
        rows = []
        for t, name in enumerate(self.order):
            m = modules[name]
            out_ch, in_ch = m.weight.shape[0], m.weight.shape[1]
            kernel = m.weight[0, 0].numel()
            stride = getattr(m, "stride", (1,))
            rows.append([t, out_ch, in_ch, kernel, stride[0], self.cost[name] / self.total_cost])
        cols = list(zip(*rows))
        lo, hi = [min(c) for c in cols], [max(c) for c in cols]
        return [[(v - a) / (b - a) if b > a else 0.0 for v, a, b in zip(row, lo, hi)] for row in rows]

    def _state(self, t: int, preserve: Mapping[str, float], prev: float) -> list[float]:
        total = self.total_cost
        done = sum(self.cost[n] * (1 - preserve[n]) for n in self.order[:t]) / total
        rest = sum(self.cost[n] for n in self.order[t + 1 :]) / total
        return [*self._static[t], done, rest, prev]

    def _wall(self, t: int, action: float, preserve: Mapping[str, float], prev: float) -> float:
        """The largest preserve ratio of layer ``t`` that still lets the budget be met (later layers at lbound)."""
        order, cost, lb = self.order, self.cost, self.lbound
        budget = (1.0 - self.sparsity) * self.total_cost
        fixed, p = 0.0, 1.0
        for name in order[:t]:
            fixed += cost[name] * preserve[name] * p
            p = preserve[name]
        slope = cost[order[t]] * prev + (cost[order[t + 1]] * lb if t + 1 < len(order) else 0.0)
        tail = sum(cost[n] for n in order[t + 2 :]) * lb * lb
        most = (budget - fixed - tail) / slope if slope > 0 else self.rbound
        return float(min(self.rbound, max(lb, min(action, most))))

    def _limit(self, preserve: dict[str, float]) -> dict[str, float]:
        # a budget that lbound cannot reach: scale every ratio down until it is met
        budget = 1.0 - self.sparsity
        for _ in range(100):
            if self.cost_ratio(preserve) <= budget + 1e-3:
                break
            preserve = {n: max(0.01, v * 0.97) for n, v in preserve.items()}
        return preserve

    def _episode(self, episode: int) -> tuple[dict[str, float], list[list[float]]]:
        preserve: dict[str, float] = {}
        states, prev = [], 1.0
        for t, name in enumerate(self.order):
            state = self._state(t, preserve, prev)
            if episode <= self.warmup:
                action = self.agent.random_action()
            else:
                action = self.agent.select_action(state, episode - self.warmup - 1)
            preserve[name] = prev = self._wall(t, action, preserve, prev)
            states.append(state)
        return self._limit(preserve), states

    def compress(self) -> tuple[nn.Module, Masks]:
        best_score = -math.inf
        for episode in range(1, self.total_iteration + 1):
            preserve, states = self._episode(episode)
            config = [{"sparsity": round(1.0 - p, 6), "op_names": [n]} for n, p in preserve.items()]
            self.masks = {}
            model, masks = self.prune_step(copy.deepcopy(self.original), config)
            self.finetune(model)
            score = float(self.evaluator(model))  # type: ignore[misc]
            last = len(self.order) - 1
            for t, name in enumerate(self.order):
                nxt = states[t + 1] if t < last else states[t]
                self.agent.observe(states[t], preserve[name], score, nxt, t == last)
            if episode > self.warmup:
                for _ in self.order:
                    self.agent.update()
            if score >= best_score:  # ties: the later one, as record() keeps
                best_score, self.best_policy = score, preserve
                self.best_flops_ratio = self.cost_ratio(preserve)
            self.record(episode, model, masks, score, config)
        assert self._best is not None
        self.model = self._best[1]
        self.masks = self._best[2]
        return self._best[1], self._best[2]
