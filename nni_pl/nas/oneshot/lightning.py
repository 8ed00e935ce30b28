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

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch

from nni_pl.nas.oneshot._base import AlphaMixin, OneShotModule
from nni_pl.nas.oneshot._enas import EnasModule, ReinforceController
from nni_pl.nas.oneshot._proxyless import ProxylessModule
from nni_pl.nas.oneshot._spos import RandomOneShotModule
from nni_pl.nas.oneshot.supernet import MIX, Supernet

__all__ = [
    "DartsModule",
    "EnasModule",
    "GumbelDartsModule",
    "OneShotModule",
    "ProxylessModule",
    "RandomOneShotModule",
    "ReinforceController",
]


class DartsModule(AlphaMixin, OneShotModule):
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
        self.arc_learning_rate, self.arc_weight_decay, self.unrolled = (
            arc_learning_rate,
            arc_weight_decay,
            unrolled,
        )
        self._init_alpha()

    def architecture_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            torch.optim.Adam(
                self.alpha.parameters(),
                lr=self.arc_learning_rate,
                betas=(0.5, 0.999),
                weight_decay=self.arc_weight_decay,
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
            inner,
            supernet,
            arc_learning_rate=arc_learning_rate,
            arc_weight_decay=arc_weight_decay,
            grad_clip=grad_clip,
            seed=seed,
            score=score,
        )
        self.gumbel_temperature, self.use_temp_anneal, self.min_temp = (
            gumbel_temperature,
            use_temp_anneal,
            min_temp,
        )

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


STRATEGY_MODULES: dict[str, type[OneShotModule]] = {
    "DARTS": DartsModule,
    "GumbelDARTS": GumbelDartsModule,
    "ENAS": EnasModule,
    "RandomOneShot": RandomOneShotModule,
    "Proxyless": ProxylessModule,
}
