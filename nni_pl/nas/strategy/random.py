"""Random search over a model space (NNI's ``strategy.Random``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from nni_pl._checks import check_bool, check_int
from nni_pl.nas.strategy._base import Strategy, TrialRecord

__all__ = ["Random"]


class Random(Strategy):
    """Draw every label uniformly at random.

    With ``dedup`` (NNI's default) an architecture already proposed is not proposed again: a draw that
    repeats one is redrawn (``max_retries`` times), then the first unseen architecture of a shuffled
    enumeration is taken when the space is finite; when every architecture has been proposed the
    strategy is done.

    Args:
        dedup: never propose the same architecture twice.
        max_retries: redraws before falling back to enumeration (or, for an infinite space, accepting a
            repeat).
        optimize_mode: unused by random search; kept so every strategy takes it.
        seed: makes the draws reproducible.
        model_filter: ``filter(arch) -> bool``; rejected architectures never run (NNI's argument, e.g.
            :class:`~nni_pl.nas.hardware.LatencyFilter` for hardware-aware search).

    Example:
        >>> from nni_pl.nas.strategy import simulate
        >>> space = {"op": {"_type": "choice", "_value": ["conv", "pool", "skip"]}}
        >>> len(simulate(Random(dedup=True), space, lambda a: 0.0, budget=10, seed=0))
        3
    """

    def __init__(
        self,
        *,
        dedup: bool = True,
        max_retries: int = 100,
        optimize_mode: str = "maximize",
        seed: int | None = None,
        model_filter: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        super().__init__(optimize_mode=optimize_mode, seed=seed, model_filter=model_filter)
        self.dedup = check_bool(self, "dedup", dedup)
        self.max_retries = check_int(self, "max_retries", max_retries, minimum=0)

    def propose(self, history: Sequence[TrialRecord]) -> dict[str, Any] | None:
        if not self.dedup:
            return self.random_arch()
        return self.unseen_arch(history, self.max_retries)

    def unseen_arch(self, history: Sequence[TrialRecord], retries: int) -> dict[str, Any] | None:
        """A random architecture not in ``history``; ``None`` once a finite space is used up."""
        seen = self.seen(history)
        space = self.space
        if space.is_finite and len(seen) >= space.size:
            return None
        for _ in range(retries + 1):
            arch = self.random_arch()
            if self.key(arch) not in seen:
                return arch
        if not space.is_finite:
            return arch
        grid = list(space.grid())
        for i in self.rng.permutation(len(grid)):
            if self.key(grid[i]) not in seen:
                return grid[i]
        return None
