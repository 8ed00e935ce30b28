"""One-shot pruners with NNI's names: norm-based, activation-based, and those that train via an evaluator.

Structured (whole output channels, dim 0): L1Norm, L2Norm, FPGM, ActivationAPoZRank, ActivationMeanRank,
TaylorFOWeight, Slim (BatchNorm scaling factors). Fine-grained (single weights): Level, ADMM, Movement.

Pruners that train or run the model take an ``evaluator`` (:class:`~nni_pl.compression.Evaluator`), or NNI v2's
``trainer=``, ``optimizer=``, ``criterion=`` keywords, which become ``Evaluator.from_nni(...)``.

Example:
    >>> import torch
    >>> from nni_pl.compression.pruning import FPGMPruner
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3))
    >>> _, masks = FPGMPruner(model, [{"total_sparsity": 0.5, "op_types": ["Conv2d"]}]).compress()
    >>> sorted(masks)
    ['0', '2']
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nni_pl.compression.pruning.base import Pruner
from nni_pl.compression.pruning.config import DEFAULT_OP_TYPES, LayerTarget
from nni_pl.errors import ConfigError

__all__ = [
    "ADMMPruner",
    "ActivationAPoZRankPruner",
    "ActivationMeanRankPruner",
    "FPGMPruner",
    "L1NormPruner",
    "L2NormPruner",
    "LevelPruner",
    "MovementPruner",
    "SlimPruner",
    "TaylorFOWeightPruner",
]

logger = logging.getLogger(__name__)


def _positive_int(field: str, value: Any, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            field, f"must be a positive integer{' or None' if allow_none else ''}, got {value!r}"
        )
    return value


def _per_filter(w: torch.Tensor) -> torch.Tensor:
    return w.detach().reshape(w.shape[0], -1)


class LevelPruner(Pruner):
    """Fine-grained magnitude pruning: the smallest ``|w|`` of each layer (or of a ``total_sparsity`` group).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(10, 10))
        >>> _, masks = LevelPruner(model, [{"sparsity": 0.8, "op_types": ["default"]}]).compress()
        >>> int(masks["0"]["weight"].sum())
        20
    """

    supported_op_types = None
    default_op_types = DEFAULT_OP_TYPES
    structured = False
    modes = ("normal",)

    def __init__(self, model: nn.Module, config_list: Sequence[Mapping[str, Any]], **kwargs: Any) -> None:
        super().__init__(model, config_list, **kwargs)

    def scores(self, targets: list[LayerTarget]) -> dict[str, torch.Tensor]:
        return {t.name: t.module.weight.detach().abs() for t in targets}


class L1NormPruner(Pruner):
    """Prune the output channels (filters / rows) with the smallest L1 norm.

    Scores are mean ``|w|`` per channel, so layers of different sizes rank together under ``total_sparsity``.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3))
        >>> _, masks = L1NormPruner(model, [{"sparsity": 0.25, "op_types": ["Conv2d"]}]).compress()
        >>> int(masks["0"]["bias"].sum())
        6
    """

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        mode: str = "normal",
        dummy_input: Any = None,
    ) -> None:
        super().__init__(model, config_list, mode=mode, dummy_input=dummy_input)

    def scores(self, targets: list[LayerTarget]) -> dict[str, torch.Tensor]:
        return {t.name: _per_filter(t.module.weight).abs().mean(dim=1) for t in targets}


class L2NormPruner(L1NormPruner):
    """Prune the output channels with the smallest L2 norm (root mean square per channel, for global ranking).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4))
        >>> _, masks = L2NormPruner(model, [{"sparsity": 0.5, "op_types": ["Linear"]}]).compress()
        >>> masks["0"]["weight"].shape
        torch.Size([4, 4])
    """

    def scores(self, targets: list[LayerTarget]) -> dict[str, torch.Tensor]:
        return {t.name: _per_filter(t.module.weight).pow(2).mean(dim=1).sqrt() for t in targets}


class FPGMPruner(L1NormPruner):
    """Prune the filters nearest the geometric median of their layer (the most replaceable ones).

    A filter's score is its summed Euclidean distance to the other filters of the layer, divided by the number of
    filters and the root of the filter size, so that layers rank together under ``total_sparsity``.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
        >>> _, masks = FPGMPruner(model, [{"sparsity": 0.5, "op_types": ["Conv2d"]}]).compress()
        >>> int(masks["0"]["bias"].sum())
        2
    """

    def scores(self, targets: list[LayerTarget]) -> dict[str, torch.Tensor]:
        out = {}
        for t in targets:
            w = _per_filter(t.module.weight).float()
            dist = torch.cdist(w, w).sum(dim=1)
            out[t.name] = dist / (w.shape[0] * w.shape[1] ** 0.5)
        return out


def _evaluator(evaluator: Any, nni: Mapping[str, Any]) -> Any:
    """Accept NNI v2's ``trainer``, ``optimizer``, ``criterion`` keywords in place of an evaluator."""
    unknown = set(nni) - {"trainer", "optimizer", "criterion"}
    if unknown:
        raise ConfigError(sorted(unknown)[0], f"unexpected argument {sorted(unknown)[0]!r}")
    given = {k: v for k, v in nni.items() if v is not None}
    if not given:
        return evaluator
    if evaluator is not None:
        raise ConfigError(
            "evaluator", f"give an evaluator or NNI's trainer/optimizer/criterion, not both: {sorted(given)}"
        )
    missing = [k for k in ("trainer", "optimizer", "criterion") if k not in given]
    if missing:
        raise ConfigError(missing[0], "NNI-style arguments need trainer, optimizer and criterion together")
    from nni_pl.compression.evaluator import Evaluator

    return Evaluator.from_nni(given["trainer"], given["optimizer"], given["criterion"])


class _EvaluatorPruner(Pruner):
    needs_evaluator = True
    training_steps: int | None = None
    training_epochs: int | None = None

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        *,
        evaluator: Any = None,
        nni: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # NNI v2's trainer/optimizer/criterion keywords become an evaluator here, for every pruner that trains
        super().__init__(model, config_list, evaluator=_evaluator(evaluator, nni or {}), **kwargs)

    def _train(self, hooks: list[Any]) -> None:
        for _ in range(self.training_epochs or 1):
            self.evaluator.train(self.model, steps=self.training_steps, hooks=hooks)


class SlimPruner(_EvaluatorPruner):
    """Network slimming: train with an L1 penalty on BatchNorm scaling factors, prune channels with small ``|gamma|``.

    Args:
        model: the model.
        config_list: entries over ``BatchNorm2d`` layers.
        evaluator: trains the model; the penalty ``scale * sign(gamma)`` is added to gamma's gradient before each step.
        training_steps: optimizer steps of sparsity training (``None``: the evaluator's own length).
        training_epochs: NNI's argument: run the evaluator's own length this many times (instead of
            ``training_steps``).
        scale: the L1 penalty factor.
        mode: ``"global"`` (NNI's default: all layers of an entry share one budget) or ``"normal"``.

    Example:
        >>> import torch
        >>> from nni_pl.compression import Evaluator
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))
        >>> def train_fn(model, optimizer_step_hook, max_steps):
        ...     opt = torch.optim.SGD(model.parameters(), lr=0.01)
        ...     for _ in range(max_steps or 2):
        ...         opt.zero_grad()
        ...         model(torch.randn(2, 3, 8, 8)).mean().backward()
        ...         optimizer_step_hook()
        ...         opt.step()
        >>> pruner = SlimPruner(model, [{"sparsity": 0.5, "op_types": ["BatchNorm2d"]}],
        ...                     evaluator=Evaluator.from_function(train_fn), training_steps=2)
        >>> _, masks = pruner.compress()
        >>> int(masks["1"]["weight"].sum()), int(masks["1"]["bias"].sum())
        (4, 4)
    """

    supported_op_types = ("BatchNorm2d",)
    default_op_types = ("BatchNorm2d",)
    modes = ("global", "normal")

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        evaluator: Any = None,
        training_steps: int | None = None,
        training_epochs: int | None = None,
        scale: float = 0.0001,
        mode: str = "global",
        **nni: Any,
    ) -> None:
        super().__init__(model, config_list, mode=mode, evaluator=evaluator, nni=nni)
        self.training_steps = _positive_int("training_steps", training_steps, allow_none=True)
        self.training_epochs = _positive_int("training_epochs", training_epochs, allow_none=True)
        if training_steps is not None and training_epochs is not None:
            raise ConfigError(
                "training_epochs",
                f"give training_steps ({training_steps}) or training_epochs ({training_epochs}), not both",
            )
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale < 0:
            raise ConfigError("scale", f"must be a non-negative number, got {scale!r}")
        self.scale = float(scale)

    def scores(self, targets: list[LayerTarget]) -> dict[str, torch.Tensor]:
        weights = [t.module.weight for t in targets]

        def l1_on_gamma() -> None:
            for w in weights:
                if w.grad is not None:
                    w.grad.add_(self.scale * torch.sign(w.detach()))

        self._train([l1_on_gamma])
        return {t.name: t.module.weight.detach().abs() for t in targets}


class _ActivationPruner(_EvaluatorPruner):
    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        evaluator: Any = None,
        training_batches: int = 1,
        activation: str = "relu",
        mode: str = "normal",
        dummy_input: Any = None,
        **nni: Any,
    ) -> None:
        super().__init__(model, config_list, mode=mode, dummy_input=dummy_input, evaluator=evaluator, nni=nni)
        self.training_batches = _positive_int("training_batches", training_batches)
        acts = {"relu": torch.relu, "relu6": lambda x: torch.clamp(x, 0, 6)}
        if activation not in acts:
            raise ConfigError("activation", f"must be one of {sorted(acts)}, got {activation!r}")
        self.activation = activation
        self._act = acts[activation]

    def _reduce(self, act: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def scores(self, targets: list[LayerTarget]) -> dict[str, torch.Tensor]:
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        handles = []
        for t in targets:

            def hook(_m: nn.Module, _i: Any, out: torch.Tensor, name: str = t.name) -> None:
                a = self._act(out.detach()).float()
                a = a.transpose(0, 1).reshape(a.shape[1], -1)  # (channels, batch * positions)
                sums[name] = sums.get(name, 0) + self._reduce(a) * a.shape[1]
                counts[name] = counts.get(name, 0) + a.shape[1]

            handles.append(t.module.register_forward_hook(hook))
        try:
            self.evaluator.forward(self.model, self.training_batches)
        finally:
            for h in handles:
                h.remove()
        missing = [t.name for t in targets if t.name not in sums]
        if missing:
            raise ConfigError(
                "evaluator",
                f"the evaluator's forward passes never reached {missing}; check the data and model",
            )
        return {name: sums[name] / counts[name] for name in sums}


class ActivationAPoZRankPruner(_ActivationPruner):
    """Prune the channels whose activations are most often zero (Average Percentage of Zeros).

    Args:
        model: the model.
        config_list: entries over ``Conv2d`` / ``Linear`` layers.
        evaluator: runs ``training_batches`` batches forward; activations are read by forward hooks.
        training_batches: number of batches.
        activation: ``"relu"`` or ``"relu6"``, applied to the layer output.
        mode: ``"normal"`` or ``"dependency_aware"``.
        dummy_input: needed for ``"dependency_aware"``.

    Example:
        >>> import torch
        >>> from nni_pl.compression import Evaluator
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3))
        >>> ev = Evaluator.from_function(lambda *a: None, forward_fn=lambda m, n: m(torch.randn(4, 3, 8, 8)))
        >>> _, masks = ActivationAPoZRankPruner(model, [{"sparsity": 0.5, "op_types": ["Conv2d"]}], ev).compress()
        >>> int(masks["0"]["bias"].sum())
        4
    """

    def _reduce(self, act: torch.Tensor) -> torch.Tensor:
        return 1.0 - (act == 0).float().mean(dim=1)  # 1 - APoZ: higher keeps


class ActivationMeanRankPruner(_ActivationPruner):
    """Prune the channels with the smallest mean activation (same arguments as ActivationAPoZRankPruner).

    Example:
        >>> import torch
        >>> from nni_pl.compression import Evaluator
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8))
        >>> ev = Evaluator.from_function(lambda *a: None, forward_fn=lambda m, n: m(torch.randn(16, 4)))
        >>> _, masks = ActivationMeanRankPruner(model, [{"sparsity": 0.25, "op_types": ["Linear"]}], ev).compress()
        >>> int(masks["0"]["bias"].sum())
        6
    """

    def _reduce(self, act: torch.Tensor) -> torch.Tensor:
        return act.mean(dim=1)


class TaylorFOWeightPruner(_EvaluatorPruner):
    """Prune the channels with the smallest first-order Taylor importance ``sum((g * w)^2)`` over training batches.

    Args:
        model: the model.
        config_list: entries over ``Conv2d`` / ``Linear`` layers.
        evaluator: trains ``training_batches`` steps; gradients are read before each optimizer step.
        training_batches: number of steps.
        mode: ``"normal"``, ``"dependency_aware"`` or ``"global"``.
        dummy_input: needed for ``"dependency_aware"``.

    Example:
        >>> import torch
        >>> from nni_pl.compression import Evaluator
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> def train_fn(model, optimizer_step_hook, max_steps):
        ...     opt = torch.optim.SGD(model.parameters(), lr=0.01)
        ...     for _ in range(max_steps):
        ...         opt.zero_grad()
        ...         model(torch.randn(8, 4)).pow(2).mean().backward()
        ...         optimizer_step_hook()
        ...         opt.step()
        >>> pruner = TaylorFOWeightPruner(model, [{"sparsity": 0.5, "op_names": ["0"]}],
        ...                               Evaluator.from_function(train_fn), training_batches=3)
        >>> int(pruner.compress()[1]["0"]["bias"].sum())
        4
    """

    modes = ("normal", "dependency_aware", "global")

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        evaluator: Any = None,
        training_batches: int = 1,
        mode: str = "normal",
        dummy_input: Any = None,
        **nni: Any,
    ) -> None:
        super().__init__(model, config_list, mode=mode, dummy_input=dummy_input, evaluator=evaluator, nni=nni)
        self.training_batches = _positive_int("training_batches", training_batches)

    def scores(self, targets: list[LayerTarget]) -> dict[str, torch.Tensor]:
        acc = {t.name: torch.zeros(t.module.weight.shape[0], device=t.module.weight.device) for t in targets}

        def collect() -> None:
            for t in targets:
                w = t.module.weight
                if w.grad is not None:
                    acc[t.name] += _per_filter(w * w.grad).float().pow(2).mean(dim=1)

        self.evaluator.train(self.model, steps=self.training_batches, hooks=[collect])
        return acc


def _level_mask(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    k = round(sparsity * w.numel())
    mask = torch.ones(w.numel(), device=w.device, dtype=w.dtype)
    if k > 0:
        mask[torch.argsort(w.detach().abs().flatten(), stable=True)[:k]] = 0
    return mask.view_as(w)


class ADMMPruner(_EvaluatorPruner):
    """ADMM: alternate training with the penalty ``rho/2 * ||W - Z + U||^2`` and projecting ``Z`` onto the sparse set;
    the final masks are fine-grained (smallest ``|w|``).

    Args:
        model: the model.
        config_list: entries; each may set ``rho`` (the ADMM penalty, default 1e-4).
        evaluator: trains the model; the penalty gradient ``rho * (W - Z + U)`` is added before each step.
        iterations: ADMM iterations.
        training_steps: optimizer steps per iteration (``None``: the evaluator's own length).
        training_epochs: NNI's argument: per iteration, run the evaluator's own length this many times.

    Example:
        >>> import torch
        >>> from nni_pl.compression import Evaluator
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4))
        >>> def train_fn(model, optimizer_step_hook, max_steps):
        ...     opt = torch.optim.SGD(model.parameters(), lr=0.01)
        ...     for _ in range(max_steps):
        ...         opt.zero_grad()
        ...         model(torch.randn(8, 4)).pow(2).mean().backward()
        ...         optimizer_step_hook()
        ...         opt.step()
        >>> pruner = ADMMPruner(model, [{"sparsity": 0.5, "op_types": ["Linear"], "rho": 0.01}],
        ...                     Evaluator.from_function(train_fn), iterations=2, training_steps=2)
        >>> int(pruner.compress()[1]["0"]["weight"].sum())
        8
    """

    supported_op_types = None
    default_op_types = DEFAULT_OP_TYPES
    structured = False
    modes = ("normal",)
    extra_keys = ("rho",)

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        evaluator: Any = None,
        iterations: int = 30,
        training_steps: int | None = None,
        training_epochs: int | None = None,
        **nni: Any,
    ) -> None:
        super().__init__(model, config_list, evaluator=evaluator, nni=nni)
        self.iterations = _positive_int("iterations", iterations)
        self.training_steps = _positive_int("training_steps", training_steps, allow_none=True)
        self.training_epochs = _positive_int("training_epochs", training_epochs, allow_none=True)
        if training_steps is not None and training_epochs is not None:
            raise ConfigError(
                "training_epochs",
                f"give training_steps ({training_steps}) or training_epochs ({training_epochs}), not both",
            )
        for t in self.targets:
            rho = (t.extra or {}).get("rho", 1e-4)
            if isinstance(rho, bool) or not isinstance(rho, (int, float)) or rho <= 0:
                raise ConfigError(f"config_list[{t.entry}].rho", f"must be a positive number, got {rho!r}")

    def scores(self, targets: list[LayerTarget]) -> dict[str, torch.Tensor]:
        ws = {t.name: t.module.weight for t in targets}
        rho = {t.name: float((t.extra or {}).get("rho", 1e-4)) for t in targets}
        z = {t.name: ws[t.name].detach() * _level_mask(ws[t.name], t.sparsity) for t in targets}
        u = {t.name: torch.zeros_like(ws[t.name]) for t in targets}

        def penalty() -> None:
            for n, w in ws.items():
                if w.grad is not None:
                    w.grad.add_(rho[n] * (w.detach() - z[n] + u[n]))

        for it in range(self.iterations):
            self._train([penalty])
            for t in targets:
                w = ws[t.name].detach()
                v = w + u[t.name]
                z[t.name] = v * _level_mask(v, t.sparsity)
                u[t.name] = u[t.name] + w - z[t.name]
            logger.debug("ADMM iteration %d/%d done", it + 1, self.iterations)
        return {n: w.detach().abs() for n, w in ws.items()}


class MovementPruner(_EvaluatorPruner):
    """Movement pruning: during fine-tuning, prune the weights moving towards zero (score ``sum(-w * grad)``).

    The sparsity rises with a cubic schedule from 0 at ``warm_up_step`` to the target at
    ``cool_down_beginning_step``; masked weights are held at zero while training continues.

    Args:
        model: the model.
        config_list: entries over ``Conv2d`` / ``Linear`` (or any weighted) layers.
        evaluator: fine-tunes the model; scores are read and masks updated before each optimizer step.
        training_steps: optimizer steps (``None``: the evaluator's own length).
        training_epochs: NNI's argument: run the evaluator's own length this many times.
        warm_up_step: steps before pruning starts.
        cool_down_beginning_step: step at which the final sparsity is reached.

    Example:
        >>> import torch
        >>> from nni_pl.compression import Evaluator
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4))
        >>> def train_fn(model, optimizer_step_hook, max_steps):
        ...     opt = torch.optim.SGD(model.parameters(), lr=0.01)
        ...     for _ in range(max_steps):
        ...         opt.zero_grad()
        ...         model(torch.randn(8, 4)).pow(2).mean().backward()
        ...         optimizer_step_hook()
        ...         opt.step()
        >>> pruner = MovementPruner(model, [{"sparsity": 0.75, "op_types": ["Linear"]}],
        ...                         Evaluator.from_function(train_fn), training_steps=6, warm_up_step=1,
        ...                         cool_down_beginning_step=4)
        >>> int(pruner.compress()[1]["0"]["weight"].sum())
        4
    """

    supported_op_types = None
    default_op_types = DEFAULT_OP_TYPES
    structured = False
    modes = ("normal",)

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        evaluator: Any = None,
        training_steps: int | None = None,
        training_epochs: int | None = None,
        warm_up_step: int = 0,
        cool_down_beginning_step: int = 1,
        **nni: Any,
    ) -> None:
        super().__init__(model, config_list, evaluator=evaluator, nni=nni)
        self.training_steps = _positive_int("training_steps", training_steps, allow_none=True)
        self.training_epochs = _positive_int("training_epochs", training_epochs, allow_none=True)
        if training_steps is not None and training_epochs is not None:
            raise ConfigError(
                "training_epochs",
                f"give training_steps ({training_steps}) or training_epochs ({training_epochs}), not both",
            )
        if isinstance(warm_up_step, bool) or not isinstance(warm_up_step, int) or warm_up_step < 0:
            raise ConfigError("warm_up_step", f"must be a non-negative integer, got {warm_up_step!r}")
        if not isinstance(cool_down_beginning_step, int) or cool_down_beginning_step <= warm_up_step:
            raise ConfigError(
                "cool_down_beginning_step",
                f"must be an integer above warm_up_step={warm_up_step}, got {cool_down_beginning_step!r}",
            )
        self.warm_up_step = warm_up_step
        self.cool_down_beginning_step = cool_down_beginning_step

    def _sparsity_at(self, step: int, final: float) -> float:
        if step < self.warm_up_step:
            return 0.0
        frac = min(1.0, (step - self.warm_up_step) / (self.cool_down_beginning_step - self.warm_up_step))
        return final * (1.0 - (1.0 - frac) ** 3)

    def scores(self, targets: list[LayerTarget]) -> dict[str, torch.Tensor]:
        score = {t.name: torch.zeros_like(t.module.weight, dtype=torch.float32) for t in targets}
        step = 0

        def on_step() -> None:
            nonlocal step
            step += 1
            with torch.no_grad():
                for t in targets:
                    w = t.module.weight
                    if w.grad is None:
                        continue
                    score[t.name] -= (w.detach() * w.grad).float()
                    s = self._sparsity_at(step, t.sparsity)
                    k = round(s * w.numel())
                    if k > 0:
                        mask = torch.ones(w.numel(), device=w.device, dtype=w.dtype)
                        mask[torch.argsort(score[t.name].flatten(), stable=True)[:k]] = 0
                        mask = mask.view_as(w)
                        w.mul_(mask)
                        w.grad.mul_(mask)

        self._train([on_step])
        if step == 0:
            logger.warning("MovementPruner: no training step ran; falling back to weight magnitude")
            return {t.name: t.module.weight.detach().abs() for t in targets}
        # rank by movement; break ties (never-updated weights) by magnitude
        return {t.name: score[t.name] for t in targets}
