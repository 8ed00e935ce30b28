"""RandomOneShot / SPOS: uniform path sampling, then a search over the trained supernet."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nni_pl.nas.oneshot._base import OneShotModule

__all__ = ["RandomOneShotModule"]


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
                la: v[int(torch.randint(len(v), (1,), generator=gen))]
                for la, v in self.state.decisions.items()
            }
            self._val_arch = self.broadcast(self._val_arch)
        self.state.set_arch(self._val_arch)
        return self._inner("validation_step", batch, batch_idx)

    def export(self) -> dict[str, Any]:
        return (
            dict(self._best)
            if getattr(self, "_best", None)
            else {la: v[0] for la, v in self.state.decisions.items()}
        )

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
        norms = [
            m
            for m in self.inner.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        ]
        saved = [
            (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
            for m in norms
        ]
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
        while (
            method == "evolution" and len(scored) < budget and len(seen) < space_size and tries < 100 * budget
        ):
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
