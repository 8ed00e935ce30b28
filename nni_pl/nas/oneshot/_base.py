"""The shared machinery of the one-shot LightningModules (:class:`OneShotModule`) and the architecture
parameters of the strategies that learn logits per label (:class:`AlphaMixin`)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from torch import nn

from nni_pl.nas.oneshot.supernet import Supernet

__all__ = ["AlphaMixin", "OneShotModule"]

log = logging.getLogger(__name__)


def _loss_of(out: Any) -> torch.Tensor:
    if isinstance(out, Mapping):
        out = out["loss"]
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"the evaluator's training_step returned {type(out).__name__}; a one-shot strategy needs the loss "
            "(a tensor, or a dict with 'loss')"
        )
    return out


def _split_optimizers(conf: Any) -> tuple[list[torch.optim.Optimizer], list[Any]]:
    """The optimisers and LR schedulers of any ``configure_optimizers`` return form Lightning accepts."""
    if conf is None:
        return [], []
    if isinstance(conf, torch.optim.Optimizer):
        return [conf], []
    if isinstance(conf, Mapping):
        sched = conf.get("lr_scheduler")
        if isinstance(sched, Mapping):
            sched = sched.get("scheduler")
        return [conf["optimizer"]], [sched] if sched is not None else []
    if isinstance(conf, tuple) and len(conf) == 2 and isinstance(conf[0], (list, tuple)):
        opts, scheds = list(conf[0]), list(conf[1])
        return opts, [s["scheduler"] if isinstance(s, Mapping) else s for s in scheds]
    opts, scheds = [], []
    for item in conf:
        o, s = _split_optimizers(item)
        opts += o
        scheds += s
    return opts, scheds


class OneShotModule(pl.LightningModule):
    """The shared machinery of the one-shot strategies (see the module docstring); not used directly.

    Args:
        inner: the evaluator's LightningModule, built around ``supernet`` (its ``training_step`` gives the loss,
            its ``validation_step`` logs the metrics, its ``configure_optimizers`` the weight optimisers).
        supernet: the :class:`~nni_pl.nas.oneshot.supernet.Supernet` inside ``inner``.
        grad_clip: clip the weights' gradient norm to this (0: no clipping).
        seed: seeds the module's own generator (architecture sampling, Gumbel noise); saved in checkpoints.
        score: ``score(inner, batch) -> float`` (bigger is better) for rewards and the search after training;
            default: the evaluator's first metric (accuracy for ``Classification``), else minus the loss.
    """

    strategy_name: ClassVar[str] = "one-shot"
    #: whether a step needs a validation batch as well (bilevel search)
    bilevel: ClassVar[bool] = True

    def __init__(
        self,
        inner: pl.LightningModule,
        supernet: Supernet,
        *,
        grad_clip: float = 5.0,
        seed: int | None = None,
        score: Callable[[pl.LightningModule, Any], float] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(inner, pl.LightningModule):
            raise TypeError(f"inner must be the evaluator's LightningModule, got {type(inner).__name__}")
        self.inner = inner
        object.__setattr__(self, "supernet", supernet)
        self.state = supernet.state
        self.labels = list(self.state.decisions)
        self.grad_clip = float(grad_clip)
        self.automatic_optimization = False
        # seed=None: drawn from torch's global generator, so torch.manual_seed makes the search reproducible
        self.seed = int(seed) if seed is not None else int(torch.randint(2**31 - 1, (1,)))
        self.generator = torch.Generator().manual_seed(self.seed)
        self.score_fn = score
        self.history: list[dict[str, Any]] = []  # per epoch: the exported architecture and its probabilities

    def setup(self, stage: str) -> None:
        """Under DDP: one-shot steps leave parameters unused (paths not sampled, the controller in a weight
        step), so DDP must look for unused parameters; turned on here, before the Trainer wraps the module."""
        from lightning.pytorch.strategies import DDPStrategy

        strategy = self.trainer.strategy
        if isinstance(strategy, DDPStrategy):
            kwargs = getattr(strategy, "_ddp_kwargs", None)
            if not isinstance(kwargs, dict):
                raise RuntimeError(
                    f"{self.strategy_name} under DDP needs strategy='ddp_find_unused_parameters_true' (some "
                    "parameters are unused in each step)"
                )
            if not kwargs.get("find_unused_parameters"):
                log.info(
                    "%s: DDP set to find unused parameters (sampled paths leave the others unused)",
                    self.strategy_name,
                )
                kwargs["find_unused_parameters"] = True

    # --- hooks of the inner module ----------------------------------------------------------------------
    def _inner(self, hook: str, *args: Any, quiet: bool = False) -> Any:
        inner = self.inner
        inner._current_fx_name = self._current_fx_name  # its self.log goes to this loop's results
        if quiet:
            inner.log = _no_log  # type: ignore[method-assign]
            inner.log_dict = _no_log  # type: ignore[method-assign]
        try:
            return getattr(inner, hook)(*args)
        finally:
            if quiet:
                del inner.log, inner.log_dict

    def loss(self, batch: Any, batch_idx: int = 0, *, quiet: bool = True) -> torch.Tensor:
        """The evaluator's training loss on ``batch`` for whatever the supernet runs now."""
        return _loss_of(self._inner("training_step", batch, batch_idx, quiet=quiet))

    def score(self, batch: Any) -> float:
        """Bigger is better: the reward of ENAS and the fitness of the search after SPOS."""
        with torch.no_grad():
            if self.score_fn is not None:
                return float(self.score_fn(self.inner, batch))
            metrics = getattr(self.inner, "metrics", None)
            x, y = batch[0], batch[1]
            if isinstance(metrics, Mapping) and metrics:
                name, fn = next(iter(metrics.items()))
                value = float(fn(self.inner(x), y))
                return -value if name in ("mse", "loss") else value
            return -float(self.loss(batch))

    # --- optimisers -------------------------------------------------------------------------------------
    def architecture_optimizers(self) -> list[torch.optim.Optimizer]:
        """The strategy's own optimisers (architecture parameters, controller); after the weights' ones."""
        return []

    def configure_optimizers(self) -> Any:
        weights, schedulers = _split_optimizers(self.inner.configure_optimizers())
        if not weights:
            raise ValueError("the evaluator's configure_optimizers returned no optimizer for the weights")
        self._n_weight_opts = len(weights)
        return weights + self.architecture_optimizers(), schedulers

    def _optimizers(self) -> tuple[list[Any], list[Any]]:
        opts = self.optimizers()
        opts = list(opts) if isinstance(opts, (list, tuple)) else [opts]
        return opts[: self._n_weight_opts], opts[self._n_weight_opts :]

    def weight_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """One step of the weights on ``batch`` (the evaluator's loss, logged as it logs it)."""
        weights, _ = self._optimizers()
        for opt in weights:
            opt.zero_grad()
        loss = self.loss(batch, batch_idx, quiet=False)
        self.manual_backward(loss)
        for opt in weights:
            if self.grad_clip > 0:
                self.clip_gradients(opt, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
            opt.step()
        return loss

    def sync_grads(self, params: Sequence[torch.Tensor]) -> None:
        """Average the gradients of ``params`` over ranks (one architecture for all of them)."""
        if self._trainer is None or self.trainer.world_size <= 1:
            return
        for p in params:
            if p.grad is not None:
                p.grad = self.trainer.strategy.reduce(p.grad, reduce_op="mean")

    def broadcast(self, obj: Any) -> Any:
        if self._trainer is None or self.trainer.world_size <= 1:
            return obj
        return self.trainer.strategy.broadcast(obj, src=0)

    # --- steps --------------------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> None:
        if self.bilevel:
            if not (isinstance(batch, Mapping) and "train" in batch and "val" in batch):
                raise ValueError(
                    f"{self.strategy_name} needs a train and a validation batch per step: fit it on "
                    "nni_pl.nas.oneshot.paired_loader(train, val) (the evaluators' dataloaders do this)"
                )
            self.step(batch["train"], batch["val"], batch_idx)
        else:
            self.step(
                batch["train"] if isinstance(batch, Mapping) and "train" in batch else batch, None, batch_idx
            )

    def step(self, train_batch: Any, val_batch: Any, batch_idx: int) -> None:
        raise NotImplementedError

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        self.state.set_arch(self.export())
        return self._inner("validation_step", batch, batch_idx)

    def test_step(self, batch: Any, batch_idx: int) -> Any:
        self.state.set_arch(self.export())
        return self._inner("test_step", batch, batch_idx)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner(*args, **kwargs)

    def on_train_epoch_end(self) -> None:
        # manual optimisation: the weights' schedulers step here, once per epoch (a plateau scheduler on the
        # evaluator's monitored metric when it has been logged)
        scheds = self.lr_schedulers()
        for s in scheds if isinstance(scheds, list) else [scheds] if scheds is not None else []:
            if isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau):
                monitor = self.trainer.callback_metrics.get(
                    getattr(self.inner, "monitor", None) or "val_loss"
                )
                if monitor is not None:
                    s.step(float(monitor))
            else:
                s.step()
        probs = self.probabilities()
        record: dict[str, Any] = {"epoch": self.current_epoch, "arch": self.export()}
        if probs:
            record["probs"] = {k: [round(float(p), 6) for p in v] for k, v in probs.items()}
            entropy = sum(float(-(v * v.clamp_min(1e-12).log()).sum()) for v in probs.values())
            self.log("arch_entropy", entropy, prog_bar=False)
            for label, v in probs.items():
                self.log(f"arch/{label}", float(v.max()), prog_bar=False)
        self.history.append(record)

    # --- the architecture ---------------------------------------------------------------------------------
    def probabilities(self) -> dict[str, torch.Tensor]:
        """label -> the current probabilities of its values (empty for strategies without such parameters)."""
        return {}

    def export(self) -> dict[str, Any]:
        """The architecture the strategy picks now (label -> value)."""
        probs = self.probabilities()
        return {label: self.state.decisions[label][int(torch.argmax(probs[label]))] for label in self.labels}

    def export_top_models(self, top_k: int = 1) -> list[dict[str, Any]]:
        """The ``top_k`` most probable architectures, best first (each label's values ranked independently)."""
        probs = self.probabilities()
        if not probs:
            return [self.export()]
        beams: list[tuple[float, dict[str, Any]]] = [(0.0, {})]
        for label in self.labels:
            logp = probs[label].clamp_min(1e-12).log()
            beams = sorted(
                (
                    (s + float(logp[i]), {**a, label: v})
                    for s, a in beams
                    for i, v in enumerate(self.state.decisions[label])
                ),
                key=lambda t: -t[0],
            )[:top_k]
        return [a for _, a in beams]

    def sample_uniform(self) -> dict[str, Any]:
        return {
            label: values[int(torch.randint(len(values), (1,), generator=self.generator))]
            for label, values in self.state.decisions.items()
        }

    # --- checkpoints ----------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["nni_pl_oneshot"] = {
            "strategy": self.strategy_name,
            "generator": self.generator.get_state(),
            "history": copy.deepcopy(self.history),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("nni_pl_oneshot")
        if saved is None:
            return
        if saved.get("strategy") != self.strategy_name:
            raise ValueError(
                f"the checkpoint is of a {saved.get('strategy')} search; it cannot resume {self.strategy_name}"
            )
        self.generator.set_state(saved["generator"])
        self.history = list(saved.get("history") or [])


def _no_log(*args: Any, **kwargs: Any) -> None:
    return None


class AlphaMixin:
    """Architecture parameters: one vector of logits per label (NNI: ``randn * 1e-3``)."""

    def _init_alpha(self: Any) -> None:
        gen = torch.Generator().manual_seed(int(torch.randint(2**31 - 1, (1,), generator=self.generator)))
        self.alpha = nn.ParameterList(
            nn.Parameter(torch.randn(len(self.state.decisions[la]), generator=gen) * 1e-3)
            for la in self.labels
        )

    def probabilities(self: Any) -> dict[str, torch.Tensor]:
        return {la: a.detach().softmax(-1) for la, a in zip(self.labels, self.alpha)}
