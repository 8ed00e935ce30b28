"""ProxylessNAS: binary gates, two paths per choice, an optional expected-latency loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from nni_pl.nas.oneshot._base import AlphaMixin, OneShotModule
from nni_pl.nas.oneshot.supernet import GATES, Supernet

__all__ = ["ProxylessModule"]


class ProxylessModule(AlphaMixin, OneShotModule):
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
        return [
            torch.optim.Adam(self.alpha.parameters(), lr=self.arc_learning_rate, betas=(0.0, 0.999), eps=1e-8)
        ]

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
                pair = torch.multinomial(
                    a.detach().softmax(-1).cpu(), 2, replacement=False, generator=self.generator
                )
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
        if getattr(self, "_paths", None) is None:
            self._paths = self.supernet.path_labels()
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
