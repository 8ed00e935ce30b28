"""Exhaustive search over a finite model space (NNI's ``strategy.GridSearch``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from nni_pl._checks import check_bool
from nni_pl.nas.strategy._base import Strategy, TrialRecord

__all__ = ["GridSearch"]


class GridSearch(Strategy):
    """Propose every architecture of the (finite) space once, then stop.

    Args:
        shuffle: visit the architectures in a random (seeded) order instead of the grid's (NNI's
            default is ``True``).
        optimize_mode: unused by grid search; kept so every strategy takes it.
        seed: the shuffle's seed.

    Example:
        >>> from nni_pl.nas.strategy import simulate
        >>> space = {"op": {"_type": "choice", "_value": ["conv", "pool"]},
        ...          "width": {"_type": "choice", "_value": [16, 32]}}
        >>> [a for a, _ in simulate(GridSearch(shuffle=False), space, lambda a: 0.0, budget=100)]
        [{'op': 'conv', 'width': 16}, {'op': 'conv', 'width': 32}, {'op': 'pool', 'width': 16}, {'op': 'pool', 'width': 32}]
    """

    finite_only: ClassVar[bool] = True

    def __init__(
        self, *, shuffle: bool = True, optimize_mode: str = "maximize", seed: int | None = None
    ) -> None:
        super().__init__(optimize_mode=optimize_mode, seed=seed)
        self.shuffle = check_bool(self, "shuffle", shuffle)
        self._grid: list[dict[str, Any]] = []

    def on_setup(self) -> None:
        self._grid = list(self.space.grid())
        if self.shuffle:
            self._grid = [self._grid[i] for i in self.rng.permutation(len(self._grid))]

    def propose(self, history: Sequence[TrialRecord]) -> dict[str, Any] | None:
        seen = self.seen(history)  # resumed (and user-added) trials count as visited
        for arch in self._grid:
            if self.key(arch) not in seen:
                return arch
        return None
