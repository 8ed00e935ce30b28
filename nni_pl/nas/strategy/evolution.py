"""Regularized (aging) evolution over a model space (NNI's ``strategy.RegularizedEvolution``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from nni_pl._checks import check_bool, check_choice, check_int, check_number
from nni_pl.nas.strategy._base import SUCCEEDED, Strategy, TrialRecord

__all__ = ["RegularizedEvolution"]

log = logging.getLogger(__name__)


class RegularizedEvolution(Strategy):
    """Aging evolution (Real et al. 2019, Algorithm 1), as NNI 2.5 runs it.

    The first ``population_size`` architectures are random. After that, each proposal samples
    ``sample_size`` members of the population (the ``population_size`` most recent results) without
    replacement, takes the best as parent and mutates it: every label is redrawn with probability
    ``mutation_prob`` (a mutation that changes nothing is retried). A result joins the population and
    the oldest member leaves it. A failed trial is dropped (``on_failure="ignore"``) or joins with the
    worst possible value (``"worst"``).

    With ``dedup`` an architecture already proposed is not proposed again (the mutation is retried, then
    a random unseen architecture is taken); a finite space that is used up ends the search.

    Args:
        population_size: how many recent results form the population (and how many random ones start it).
        sample_size: members compared per tournament (at most ``population_size``).
        mutation_prob: the chance that each label is redrawn when mutating.
        cycles: the most architectures to propose (NNI's ``cycles``); the experiment's limits apply too.
        on_failure: ``"ignore"`` or ``"worst"``.
        dedup: never propose the same architecture twice.
        optimize_mode: ``"maximize"`` or ``"minimize"`` the metric.
        seed: makes the search reproducible.
        model_filter: ``filter(arch) -> bool``; rejected architectures never run (see :class:`Strategy`).

    Example:
        >>> from nni_pl.nas.strategy import simulate
        >>> space = {f"x{i}": {"_type": "choice", "_value": [0, 1]} for i in range(6)}
        >>> runs = simulate(RegularizedEvolution(population_size=8, sample_size=4, mutation_prob=0.2),
        ...                 space, lambda a: sum(a.values()), budget=40, seed=0)
        >>> max(v for _, v in runs)
        6
    """

    def __init__(
        self,
        *,
        population_size: int = 100,
        sample_size: int = 25,
        mutation_prob: float = 0.05,
        cycles: int = 20000,
        on_failure: str = "ignore",
        dedup: bool = True,
        optimize_mode: str = "maximize",
        seed: int | None = None,
        model_filter: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        super().__init__(optimize_mode=optimize_mode, seed=seed, model_filter=model_filter)
        self.population_size = check_int(self, "population_size", population_size, minimum=1)
        self.sample_size = check_int(
            self,
            "sample_size",
            sample_size,
            minimum=1,
            maximum=self.population_size,
            hint=f"it cannot exceed population_size ({self.population_size})",
        )
        self.mutation_prob = check_number(self, "mutation_prob", mutation_prob, low=0, high=1)
        self.cycles = check_int(self, "cycles", cycles, minimum=1)
        self.on_failure = check_choice(self, "on_failure", on_failure, ("ignore", "worst"))
        self.dedup = check_bool(self, "dedup", dedup)

    def population(self, history: Sequence[TrialRecord]) -> list[TrialRecord]:
        """The ``population_size`` most recent results (in arrival order)."""
        done = [r for r in history if r.finished and (r.status == SUCCEEDED or self.on_failure == "worst")]
        done.sort(key=lambda r: r.order)
        return done[-self.population_size :]

    def propose(self, history: Sequence[TrialRecord]) -> dict[str, Any] | None:
        if len(history) >= self.cycles:
            return None
        seen = self.seen(history) if self.dedup else set()
        space = self.space
        if self.dedup and space.is_finite and len(seen) >= space.size:
            return None
        population = self.population(history)
        if len(history) < self.population_size or not population:
            return self._random(seen)
        k = min(self.sample_size, len(population))
        picks = self.rng.choice(len(population), size=k, replace=False)
        parent = max((population[i] for i in sorted(picks)), key=self.score)
        if self.score(parent) == -math.inf and self.on_failure == "ignore":
            return self._random(seen)
        for _ in range(100):
            child = self.mutate(parent.arch)
            if child is not None and (not self.dedup or self.key(child) not in seen):
                return child
        return self._random(seen)

    def mutate(self, arch: dict[str, Any]) -> dict[str, Any] | None:
        """Redraw each label with probability ``mutation_prob``; ``None`` if nothing changed."""
        child = dict(arch)
        for label, param in self.space.items():
            if self.rng.random() < self.mutation_prob:
                child[label] = param.sample(self.rng)
        return child if self.key(child) != self.key(arch) else None

    def _random(self, seen: set[str | None]) -> dict[str, Any] | None:
        for _ in range(100):
            arch = self.random_arch()
            if not self.dedup or self.key(arch) not in seen:
                return arch
        if self.space.is_finite:
            unseen = [a for a in self.space.grid() if self.key(a) not in seen]
            return unseen[int(self.rng.integers(len(unseen)))] if unseen else None
        return self.random_arch()
