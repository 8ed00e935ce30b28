"""One-shot strategies as LightningModules: each wraps the evaluator's LightningModule around a supernet.

:class:`OneShotModule` is the shared part: manual optimisation with the user's ``configure_optimizers`` for the
weights plus the strategy's own architecture optimiser, a train/val pair of batches per step for bilevel
search, validation of the currently exported architecture, architecture probabilities logged per epoch, and
everything a resumed ``fit(ckpt_path=...)`` needs (architecture parameters, controller, optimiser states, the
module's own random generator) in the checkpoint. Subclasses only say how one step runs and how the
architecture is read off:

* :class:`DartsModule` -- softmax-weighted mixing; first order, or second order (``unrolled=True``);
* :class:`GumbelDartsModule` -- Gumbel-softmax mixing with an annealed temperature;
* :class:`EnasModule` -- one path per step from an LSTM controller trained by REINFORCE on validation reward;
* :class:`RandomOneShotModule` -- SPOS: one uniformly sampled path per step, then an evolution (or random)
  search over the trained supernet, optionally under a latency or FLOPs limit;
* :class:`ProxylessModule` -- binary gates, at most two paths in memory per architecture step, and an
  optional expected-latency loss.

The rank-aware parts use the Trainer's strategy: architecture gradients are averaged over ranks
(``strategy.reduce``) and every sampled architecture comes from rank 0 (``strategy.broadcast``), so all ranks
train and export one architecture.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from nni_pl.nas.oneshot.supernet import GATES, MIX, Supernet

__all__ = [
    "DartsModule",
    "EnasModule",
    "GumbelDartsModule",
    "OneShotModule",
    "ProxylessModule",
    "RandomOneShotModule",
    "ReinforceController",
]

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
                log.info("%s: DDP set to find unused parameters (sampled paths leave the others unused)", self.strategy_name)
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
        self.inner.trainer = self.trainer if self._trainer is not None else None
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
            self.step(batch["train"] if isinstance(batch, Mapping) and "train" in batch else batch, None, batch_idx)

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
                monitor = self.trainer.callback_metrics.get(getattr(self.inner, "monitor", None) or "val_loss")
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
                ((s + float(logp[i]), {**a, label: v}) for s, a in beams for i, v in enumerate(self.state.decisions[label])),
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


# --------------------------------------------------------------------------------------------- DARTS


class _AlphaMixin:
    """Architecture parameters: one vector of logits per label (NNI: ``randn * 1e-3``)."""

    def _init_alpha(self: Any) -> None:
        gen = torch.Generator().manual_seed(int(torch.randint(2**31 - 1, (1,), generator=self.generator)))
        self.alpha = nn.ParameterList(
            nn.Parameter(torch.randn(len(self.state.decisions[la]), generator=gen) * 1e-3) for la in self.labels
        )

    def probabilities(self: Any) -> dict[str, torch.Tensor]:
        return {la: a.detach().softmax(-1) for la, a in zip(self.labels, self.alpha)}


class DartsModule(_AlphaMixin, OneShotModule):
    """DARTS (Liu et al. 2019): the supernet adds every candidate weighted by ``softmax(alpha)``; ``alpha`` is
    trained on validation batches, the weights on training batches, alternately.

    Args:
        arc_learning_rate: Adam's learning rate for ``alpha`` (betas (0.5, 0.999), weight decay
            ``arc_weight_decay``), as NNI's ``DartsTrainer``.
        unrolled: second order: the architecture gradient is taken at the weights after one virtual step
            (``w - xi * grad``, ``xi`` the weight optimiser's learning rate), with the finite-difference
            Hessian-vector product of the paper.
        grad_clip, seed, score: see :class:`OneShotModule`.
    """

    strategy_name = "DARTS"

    def __init__(
        self,
        inner: pl.LightningModule,
        supernet: Supernet,
        *,
        arc_learning_rate: float = 3e-4,
        arc_weight_decay: float = 1e-3,
        unrolled: bool = False,
        grad_clip: float = 5.0,
        seed: int | None = None,
        score: Callable[[pl.LightningModule, Any], float] | None = None,
    ) -> None:
        super().__init__(inner, supernet, grad_clip=grad_clip, seed=seed, score=score)
        self.arc_learning_rate, self.arc_weight_decay, self.unrolled = arc_learning_rate, arc_weight_decay, unrolled
        self._init_alpha()

    def architecture_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            torch.optim.Adam(
                self.alpha.parameters(), lr=self.arc_learning_rate, betas=(0.5, 0.999), weight_decay=self.arc_weight_decay
            )
        ]

    def mix(self) -> None:
        self.state.mode = MIX
        self.state.probs = {la: a.softmax(-1) for la, a in zip(self.labels, self.alpha)}

    def step(self, train_batch: Any, val_batch: Any, batch_idx: int) -> None:
        _, (arch_opt,) = self._optimizers()
        arch_opt.zero_grad()
        if self.unrolled:
            self._unrolled_backward(train_batch, val_batch, batch_idx)
        else:
            self.mix()
            self.manual_backward(self.loss(val_batch, batch_idx))
        self.sync_grads(list(self.alpha))
        arch_opt.step()
        self.mix()
        self.weight_step(train_batch, batch_idx)

    def _unrolled_backward(self, train_batch: Any, val_batch: Any, batch_idx: int) -> None:
        weights_opt = self._optimizers()[0][0]
        xi = float(weights_opt.param_groups[0]["lr"])
        params = [p for p in self.inner.parameters() if p.requires_grad]
        alpha = list(self.alpha)
        backup = [p.detach().clone() for p in params]
        self.mix()
        grads = torch.autograd.grad(self.loss(train_batch, batch_idx), params, allow_unused=True)
        with torch.no_grad():  # w' = w - xi * dL_train/dw
            for p, g in zip(params, grads):
                if g is not None:
                    p.sub_(xi * g)
        self.mix()
        out = torch.autograd.grad(self.loss(val_batch, batch_idx), alpha + params, allow_unused=True)
        d_alpha = [g if g is not None else torch.zeros_like(a) for g, a in zip(out[: len(alpha)], alpha)]
        d_w = [g if g is not None else torch.zeros_like(p) for g, p in zip(out[len(alpha) :], params)]
        norm = torch.cat([g.reshape(-1) for g in d_w]).norm()
        eps = 0.01 / float(norm) if float(norm) > 0 else 0.0
        hessian = [torch.zeros_like(a) for a in alpha]
        if eps > 0:
            parts = []
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for p, b, d in zip(params, backup, d_w):
                        p.copy_(b + sign * eps * d)
                self.mix()
                g = torch.autograd.grad(self.loss(train_batch, batch_idx), alpha, allow_unused=True)
                parts.append([x if x is not None else torch.zeros_like(a) for x, a in zip(g, alpha)])
            hessian = [(gp - gm) / (2 * eps) for gp, gm in zip(*parts)]
        with torch.no_grad():
            for p, b in zip(params, backup):
                p.copy_(b)
        for a, da, h in zip(alpha, d_alpha, hessian):
            a.grad = da - xi * h


class GumbelDartsModule(DartsModule):
    """GumbelDARTS (FBNet/SNAS style): mixing weights are Gumbel-softmax samples of ``alpha`` at temperature
    ``tau``; with ``use_temp_anneal`` (the default here; NNI's is off) ``tau`` falls linearly from
    ``gumbel_temperature`` to ``min_temp`` over the epochs.
    """

    strategy_name = "GumbelDARTS"

    def __init__(
        self,
        inner: pl.LightningModule,
        supernet: Supernet,
        *,
        gumbel_temperature: float = 1.0,
        use_temp_anneal: bool = True,
        min_temp: float = 0.33,
        arc_learning_rate: float = 3e-4,
        arc_weight_decay: float = 1e-3,
        grad_clip: float = 5.0,
        seed: int | None = None,
        score: Callable[[pl.LightningModule, Any], float] | None = None,
    ) -> None:
        super().__init__(
            inner, supernet, arc_learning_rate=arc_learning_rate, arc_weight_decay=arc_weight_decay,
            grad_clip=grad_clip, seed=seed, score=score,
        )
        self.gumbel_temperature, self.use_temp_anneal, self.min_temp = gumbel_temperature, use_temp_anneal, min_temp

    @property
    def temperature(self) -> float:
        if not self.use_temp_anneal or self._trainer is None or not self.trainer.max_epochs:
            return self.gumbel_temperature
        frac = min(1.0, self.current_epoch / max(1, self.trainer.max_epochs - 1))
        return self.gumbel_temperature - (self.gumbel_temperature - self.min_temp) * frac

    def mix(self) -> None:
        tau = self.temperature
        probs = {}
        for la, a in zip(self.labels, self.alpha):
            u = torch.rand(a.shape, generator=self.generator).clamp(1e-10, 1 - 1e-10).to(a.device)
            probs[la] = ((a - (-u.log()).log()) / tau).softmax(-1)
        self.state.mode = MIX
        self.state.probs = probs

    def on_train_epoch_end(self) -> None:
        self.log("gumbel_temperature", self.temperature)
        super().on_train_epoch_end()


# --------------------------------------------------------------------------------------------- ENAS


class ReinforceController(nn.Module):
    """ENAS's controller: an LSTM that emits one decision per label, each from a softmax over its values.

    Logits pass through ``tanh_constant * tanh(logits / temperature)`` as in ENAS. ``sample`` returns the
    architecture, the summed log-probability and entropy, and the expected fraction of inputs selected by
    multi-input choices (for the skip penalty).

    Example:
        >>> ctrl = ReinforceController({"op": ["a", "b", "c"], "act": ["relu", "tanh"]})
        >>> arch, logp, entropy, _ = ctrl.sample(torch.Generator().manual_seed(0))
        >>> sorted(arch), logp.shape, entropy.item() > 0
        (['act', 'op'], torch.Size([]), True)
    """

    def __init__(
        self,
        decisions: Mapping[str, Sequence[Any]],
        *,
        lstm_size: int = 64,
        lstm_num_layers: int = 1,
        tanh_constant: float = 1.5,
        temperature: float | None = None,
    ) -> None:
        super().__init__()
        self.decisions = {k: list(v) for k, v in decisions.items()}
        self.labels = list(self.decisions)
        self.lstm = nn.LSTM(lstm_size, lstm_size, lstm_num_layers)
        self.g_emb = nn.Parameter(torch.randn(1, 1, lstm_size) * 0.1)
        self.soft = nn.ModuleList(nn.Linear(lstm_size, len(v), bias=False) for v in self.decisions.values())
        self.emb = nn.ModuleList(nn.Embedding(len(v), lstm_size) for v in self.decisions.values())
        self.tanh_constant, self.temperature = tanh_constant, temperature

    def _logits(self, h: torch.Tensor, i: int) -> torch.Tensor:
        logits = self.soft[i](h).reshape(-1)
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def sample(
        self, generator: torch.Generator | None = None, *, greedy: bool = False
    ) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs = self.g_emb
        hidden = None
        logp = torch.zeros(())
        entropy = torch.zeros(())
        skip = []
        arch: dict[str, Any] = {}
        for i, label in enumerate(self.labels):
            out, hidden = self.lstm(inputs, hidden)
            logits = self._logits(out, i)
            probs = logits.softmax(-1)
            if greedy:
                idx = int(torch.argmax(probs))
            else:
                idx = int(torch.multinomial(probs.detach().cpu(), 1, generator=generator))
            lp = logits.log_softmax(-1)
            logp = logp + lp[idx]
            entropy = entropy - (probs * lp).sum()
            values = self.decisions[label]
            if values and all(isinstance(v, list) for v in values):  # an InputChoice: which inputs it takes
                n = max(max(v) for v in values if v) + 1
                skip.append(sum(probs[j] * len(v) / n for j, v in enumerate(values)))
            arch[label] = values[idx]
            inputs = self.emb[i](torch.tensor([[idx]], device=self.g_emb.device))
        density = torch.stack(skip).mean() if skip else torch.zeros(())
        return arch, logp, entropy, density


class EnasModule(OneShotModule):
    """ENAS (Pham et al. 2018): each step trains the weights of one architecture sampled by the
    :class:`ReinforceController`, then the controller by REINFORCE on the architecture's score on a validation
    batch, with NNI's ``EnasTrainer`` defaults: reward baseline ``b = decay * b + (1 - decay) * reward``,
    entropy bonus ``entropy_weight``, skip penalty ``skip_weight * KL(density || skip_target)`` on multi-input
    choices, gradients of ``ctrl_steps_aggregate`` steps summed before each controller update.
    """

    strategy_name = "ENAS"

    def __init__(
        self,
        inner: pl.LightningModule,
        supernet: Supernet,
        *,
        ctrl_lr: float = 3.5e-4,
        entropy_weight: float = 1e-4,
        skip_weight: float = 0.8,
        skip_target: float = 0.4,
        baseline_decay: float = 0.999,
        ctrl_steps_aggregate: int = 20,
        ctrl_grad_clip: float = 0.0,
        ctrl_kwargs: Mapping[str, Any] | None = None,
        grad_clip: float = 5.0,
        seed: int | None = None,
        score: Callable[[pl.LightningModule, Any], float] | None = None,
    ) -> None:
        super().__init__(inner, supernet, grad_clip=grad_clip, seed=seed, score=score)
        with torch.random.fork_rng():  # the controller's initial weights from the module's seed, not the global RNG
            torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=self.generator)))
            self.controller = ReinforceController(self.state.decisions, **dict(ctrl_kwargs or {}))
        self.ctrl_lr, self.entropy_weight, self.skip_weight, self.skip_target = ctrl_lr, entropy_weight, skip_weight, skip_target
        self.baseline_decay, self.ctrl_steps_aggregate, self.ctrl_grad_clip = baseline_decay, ctrl_steps_aggregate, ctrl_grad_clip
        self.register_buffer("baseline", torch.zeros(()))
        self.register_buffer("ctrl_step", torch.zeros((), dtype=torch.long))

    def architecture_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.controller.parameters(), lr=self.ctrl_lr)]

    def step(self, train_batch: Any, val_batch: Any, batch_idx: int) -> None:
        with torch.no_grad():
            arch, *_ = self.controller.sample(self.generator)
        self.state.set_arch(self.broadcast(arch))
        self.weight_step(train_batch, batch_idx)
        _, (ctrl_opt,) = self._optimizers()
        arch, logp, entropy, density = self.controller.sample(self.generator)
        self.state.set_arch(arch)
        was_training = self.inner.training
        self.inner.eval()
        reward = self.score(val_batch)
        self.inner.train(was_training)
        if self.entropy_weight:
            reward += self.entropy_weight * float(entropy.detach())
        self.baseline.mul_(self.baseline_decay).add_((1 - self.baseline_decay) * reward)
        loss = -logp * (reward - float(self.baseline))
        if self.skip_weight and density.requires_grad:
            t = self.skip_target
            d = density.clamp(1e-6, 1 - 1e-6)
            loss = loss + self.skip_weight * (d * (d / t).log() + (1 - d) * ((1 - d) / (1 - t)).log())
        self.manual_backward(loss / self.ctrl_steps_aggregate)
        self.ctrl_step += 1
        if int(self.ctrl_step) % self.ctrl_steps_aggregate == 0:
            self.sync_grads(list(self.controller.parameters()))
            if self.ctrl_grad_clip > 0:
                nn.utils.clip_grad_norm_(self.controller.parameters(), self.ctrl_grad_clip)
            ctrl_opt.step()
            ctrl_opt.zero_grad()
        self.log("reward", reward, prog_bar=False)

    def export(self) -> dict[str, Any]:
        with torch.no_grad():
            arch, *_ = self.controller.sample(greedy=True)
        return arch

    def probabilities(self) -> dict[str, torch.Tensor]:
        return {}

    def export_top_models(self, top_k: int = 1) -> list[dict[str, Any]]:
        """The greedy architecture first, then distinct samples of the controller, most probable first."""
        best = self.export()
        seen = {repr(sorted(best.items()))}
        scored: list[tuple[float, dict[str, Any]]] = []
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for _ in range(max(50, 10 * top_k)):
                arch, logp, *_ = self.controller.sample(gen)
                key = repr(sorted(arch.items()))
                if key not in seen:
                    seen.add(key)
                    scored.append((float(logp), arch))
        scored.sort(key=lambda t: -t[0])
        return [best] + [a for _, a in scored[: top_k - 1]]


# --------------------------------------------------------------------------------------------- SPOS


class RandomOneShotModule(OneShotModule):
    """RandomOneShot / SPOS (Guo et al. 2020): each step trains one uniformly sampled architecture; after
    training, :meth:`search` ranks architectures by their score on validation data with the shared weights
    (regularised evolution, or random sampling), optionally only those a ``cost(arch)`` keeps within
    ``max_cost`` (a latency predictor, a FLOPs count).
    """

    strategy_name = "RandomOneShot"
    bilevel = False

    def step(self, train_batch: Any, val_batch: Any, batch_idx: int) -> None:
        self.state.set_arch(self.broadcast(self.sample_uniform()))
        self.weight_step(train_batch, batch_idx)

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        """Before :meth:`search` there is no chosen architecture: each validation epoch checks one random
        architecture (drawn from the epoch number and the seed, so the training's random stream is untouched);
        after it, the architecture found."""
        if getattr(self, "_best", None):
            return super().validation_step(batch, batch_idx)
        if batch_idx == 0:
            gen = torch.Generator().manual_seed(self.seed * 7919 + self.current_epoch)
            self._val_arch = {
                la: v[int(torch.randint(len(v), (1,), generator=gen))] for la, v in self.state.decisions.items()
            }
            self._val_arch = self.broadcast(self._val_arch)
        self.state.set_arch(self._val_arch)
        return self._inner("validation_step", batch, batch_idx)

    def export(self) -> dict[str, Any]:
        return dict(self._best) if getattr(self, "_best", None) else {la: v[0] for la, v in self.state.decisions.items()}

    def evaluate_arch(
        self, arch: Mapping[str, Any], batches: Sequence[Any], recalibrate: Sequence[Any] = ()
    ) -> float:
        """The mean score of ``arch`` on ``batches`` with the supernet's weights (eval mode).

        ``recalibrate``: training batches run through ``arch`` first (train mode, no gradients) to give every
        batch norm the statistics of this architecture (SPOS's recalibration: the supernet's running statistics
        mix every architecture trained); the supernet's own statistics are restored afterwards.
        """
        self.state.set_arch(arch)
        was = self.inner.training
        norms = [m for m in self.inner.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum) for m in norms]
        try:
            if recalibrate and norms:
                for m in norms:
                    m.reset_running_stats()
                    m.momentum = None  # a cumulative average over the recalibration batches
                self.inner.train()
                with torch.no_grad():
                    for b in recalibrate:
                        self.inner(b[0] if isinstance(b, (list, tuple)) else b)
            self.inner.eval()
            return sum(self.score(b) for b in batches) / max(1, len(batches))
        finally:
            for m, (mean, var, n, momentum) in zip(norms, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(n)
                m.momentum = momentum
            self.inner.train(was)

    def search(
        self,
        batches: Sequence[Any],
        *,
        method: str = "evolution",
        num_candidates: int = 50,
        population_size: int = 20,
        mutation_prob: float = 0.1,
        cost: Callable[[Mapping[str, Any]], float] | None = None,
        max_cost: float | None = None,
        top_k: int = 1,
        recalibrate: Sequence[Any] = (),
    ) -> list[tuple[dict[str, Any], float]]:
        """Search the trained supernet; returns ``(arch, score)`` best first and sets :meth:`export`'s result.

        ``method="evolution"``: NNI's SPOS flow (a random population, then mutated children of the better
        half); ``"random"``: ``num_candidates`` random architectures. ``num_candidates`` counts evaluations.
        With ``cost`` and ``max_cost``, architectures over the limit are never evaluated. ``recalibrate``:
        training batches that recalibrate batch norm for each architecture first (see :meth:`evaluate_arch`).
        """
        if method not in ("evolution", "random"):
            raise ValueError(f"method must be 'evolution' or 'random', got {method!r}")
        space_size = math.prod(len(v) for v in self.state.decisions.values())
        seen: dict[str, float] = {}
        scored: list[tuple[dict[str, Any], float]] = []
        rejected = 0

        def consider(arch: dict[str, Any]) -> None:
            nonlocal rejected
            key = repr(sorted(arch.items()))
            if key in seen:
                return
            if cost is not None and max_cost is not None and cost(arch) > max_cost:
                seen[key] = -math.inf
                rejected += 1
                return
            s = self.evaluate_arch(arch, batches, recalibrate)
            seen[key] = s
            scored.append((arch, s))

        budget = min(num_candidates, space_size)
        tries = 0
        first = population_size if method == "evolution" else budget
        while len(scored) < min(first, budget) and len(seen) < space_size and tries < 100 * budget:
            tries += 1
            consider(self.sample_uniform())
        while method == "evolution" and len(scored) < budget and len(seen) < space_size and tries < 100 * budget:
            tries += 1
            parents = sorted(scored, key=lambda t: -t[1])[: max(2, population_size // 2)]
            parent = parents[int(torch.randint(len(parents), (1,), generator=self.generator))][0]
            child = dict(parent)
            for label, values in self.state.decisions.items():
                if float(torch.rand((), generator=self.generator)) < mutation_prob:
                    child[label] = values[int(torch.randint(len(values), (1,), generator=self.generator))]
            consider(child)
        if not scored:
            raise ValueError(
                f"no architecture of the space is within max_cost={max_cost} ({rejected} tried); raise the limit"
            )
        scored.sort(key=lambda t: -t[1])
        self._best = dict(scored[0][0])
        self.searched = scored
        return scored[:top_k]

    def export_top_models(self, top_k: int = 1) -> list[dict[str, Any]]:
        found = getattr(self, "searched", None)
        if not found:
            return [self.export()]
        return [dict(a) for a, _ in found[:top_k]]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["nni_pl_oneshot"]["best"] = getattr(self, "_best", None)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        best = (checkpoint.get("nni_pl_oneshot") or {}).get("best")
        if best:
            self._best = best


# --------------------------------------------------------------------------------------------- Proxyless


class ProxylessModule(_AlphaMixin, OneShotModule):
    """ProxylessNAS (Cai et al. 2019): binary gates over the candidates of each choice.

    A weight step runs one path per choice, sampled from ``softmax(alpha)``; an architecture step samples two
    distinct paths per choice and runs only those two, weighted by straight-through gates (value 1 for the
    picked one, 0 for the other; gradients through the softmax of their two logits), so at most two paths per
    choice are in memory. The values of a ``ValueChoice`` in layer arguments share one weight, so they are no
    separate paths: an architecture step mixes them by ``softmax(alpha)`` in one computation at the largest size
    (as DARTS does). With a latency ``predictor`` (:mod:`nni_pl.nas.hardware`), the architecture loss adds
    ``latency_weight * max(0, E[latency] / latency_budget - 1)`` (expected over ``softmax(alpha)``), and the
    export keeps the predicted latency within ``latency_budget``: the most probable architecture, then, while
    it is over budget, the change that saves the most latency per probability lost.
    The first ``warmup_epochs`` train the weights only, on uniformly sampled paths.
    """

    strategy_name = "Proxyless"

    def __init__(
        self,
        inner: pl.LightningModule,
        supernet: Supernet,
        *,
        arc_learning_rate: float = 1e-3,
        warmup_epochs: int = 0,
        predictor: Any = None,
        latency_budget: float | None = None,
        latency_weight: float = 1.0,
        grad_clip: float = 5.0,
        seed: int | None = None,
        score: Callable[[pl.LightningModule, Any], float] | None = None,
    ) -> None:
        super().__init__(inner, supernet, grad_clip=grad_clip, seed=seed, score=score)
        if latency_budget is not None and predictor is None:
            raise ValueError("Proxyless: latency_budget needs a latency predictor (nni_pl.nas.hardware)")
        self.arc_learning_rate, self.warmup_epochs = arc_learning_rate, warmup_epochs
        object.__setattr__(self, "predictor", predictor)
        self.latency_budget, self.latency_weight = latency_budget, latency_weight
        self._init_alpha()

    def architecture_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.alpha.parameters(), lr=self.arc_learning_rate, betas=(0.0, 0.999), eps=1e-8)]

    def _sample_paths(self) -> dict[str, Any]:
        arch = {}
        for la, a in zip(self.labels, self.alpha):
            p = a.detach().softmax(-1).cpu()
            arch[la] = self.state.decisions[la][int(torch.multinomial(p, 1, generator=self.generator))]
        return arch

    def step(self, train_batch: Any, val_batch: Any, batch_idx: int) -> None:
        warm = self.current_epoch < self.warmup_epochs
        self.state.set_arch(self.broadcast(self.sample_uniform() if warm else self._sample_paths()))
        self.weight_step(train_batch, batch_idx)
        if warm:
            return
        _, (arch_opt,) = self._optimizers()
        arch_opt.zero_grad()
        paths = self._path_labels()
        self.state.probs = {la: a.softmax(-1) for la, a in zip(self.labels, self.alpha) if la not in paths}
        picks: dict[str, tuple[int, int, int]] = {}  # label -> the two paths and which of them runs
        for la, a in zip(self.labels, self.alpha):
            if la in paths and a.numel() > 1:
                pair = torch.multinomial(a.detach().softmax(-1).cpu(), 2, replacement=False, generator=self.generator)
                i, j = int(pair[0]), int(pair[1])
                soft = torch.stack([a[i], a[j]]).detach().softmax(-1).cpu()
                picks[la] = (i, j, int(torch.multinomial(soft, 1, generator=self.generator)))
        picks = self.broadcast(picks)  # every rank runs rank 0's paths
        gates = {}
        for la, a in zip(self.labels, self.alpha):
            if la not in paths:
                continue
            if la not in picks:
                gates[la] = [(0, torch.ones((), device=a.device))]
                continue
            i, j, pick = picks[la]
            soft = torch.stack([a[i], a[j]]).softmax(-1)
            hard = torch.zeros(2, device=a.device)
            hard[pick] = 1.0
            g = hard - soft.detach() + soft
            gates[la] = [(i, g[0]), (j, g[1])]
        self.state.mode = GATES
        self.state.gates = gates
        loss = self.loss(val_batch, batch_idx)
        if self.predictor is not None and self.latency_budget:
            probs = {la: a.softmax(-1) for la, a in zip(self.labels, self.alpha)}
            expected = self.predictor.expected_latency(probs)
            loss = loss + self.latency_weight * F.relu(expected / self.latency_budget - 1.0)
            self.log("expected_latency", float(expected))
        self.manual_backward(loss)
        self.sync_grads(list(self.alpha))
        arch_opt.step()

    def _path_labels(self) -> set[str]:
        """Labels whose values are separate paths (LayerChoice, InputChoice, Repeat): these get binary gates;
        the values of a ValueChoice of layer arguments share one weight and are mixed by softmax instead."""
        from nni_pl.nas.oneshot.supernet import MixedInputChoice, MixedLayerChoice, MixedRepeat

        if getattr(self, "_paths", None) is None:
            found: set[str] = set()
            for m in self.supernet.mixed_modules():
                if isinstance(m, (MixedLayerChoice, MixedInputChoice)):
                    found.add(m.label)
                elif isinstance(m, MixedRepeat):
                    found.update(m.labels)
            self._paths = found
        return self._paths

    def export(self) -> dict[str, Any]:
        arch = super().export()
        if self.predictor is None or self.latency_budget is None:
            return arch
        probs = self.probabilities()
        for _ in range(sum(len(v) for v in self.state.decisions.values())):
            latency = float(self.predictor.predict(arch))
            if latency <= self.latency_budget:
                break
            best = None
            for la in self.labels:
                now = self.state.index(la, arch[la])
                for i, v in enumerate(self.state.decisions[la]):
                    saved = latency - float(self.predictor.predict({**arch, la: v}))
                    if saved <= 0:
                        continue
                    lost = float(probs[la][now].clamp_min(1e-12).log() - probs[la][i].clamp_min(1e-12).log())
                    ratio = saved / max(lost, 1e-9)
                    if best is None or ratio > best[0]:
                        best = (ratio, la, v)
            if best is None:
                break
            arch[best[1]] = best[2]
        return arch


STRATEGY_MODULES: dict[str, type[OneShotModule]] = {
    "DARTS": DartsModule,
    "GumbelDARTS": GumbelDartsModule,
    "ENAS": EnasModule,
    "RandomOneShot": RandomOneShotModule,
    "Proxyless": ProxylessModule,
}
