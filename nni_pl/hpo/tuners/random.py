"""Random search: every parameter set is drawn from the prior (NNI's ``Random`` tuner)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from nni_pl.hpo._base import HistoryEntry, Tuner, validate_optimize_mode
from nni_pl.hpo.tuners._common import check_seed, make_rng
from nni_pl.space import SearchSpace

__all__ = ["RandomTuner"]

log = logging.getLogger(__name__)


class RandomTuner(Tuner):
    """Samples each parameter set independently from the search space's prior distributions.

    All ten ``_type`` s and nested ``choice`` s are supported; results are ignored. A baseline "when we
    have no knowledge about the prior distribution" (NNI docs).

    Args:
        optimize_mode: ``"maximize"`` or ``"minimize"``; accepted for NNI compatibility, not used.
        seed: makes the sequence of suggestions reproducible (``None``: fresh entropy).

    Example:
        >>> tuner = RandomTuner(seed=0)
        >>> tuner.update_search_space({"lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
        ...                            "bs": {"_type": "choice", "_value": [16, 32, 64]}})
        >>> params = tuner.generate_parameters(0)
        >>> sorted(params), params["bs"] in (16, 32, 64)
        (['bs', 'lr'], True)
    """

    def __init__(self, *, optimize_mode: str = "maximize", seed: int | None = None) -> None:
        self.optimize_mode = validate_optimize_mode(optimize_mode)
        self.seed = check_seed(seed)
        self._rng = make_rng(self.seed)
        self._space: SearchSpace | None = None

    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        self._space = SearchSpace.parse(search_space)

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if self._space is None:
            raise RuntimeError("update_search_space() must be called before generate_parameters()")
        return self._space.sample(self._rng)

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        """Random search learns nothing from results."""

    def import_data(self, data: Sequence[Mapping[str, Any]]) -> None:
        """Nothing to learn; accepted so that ``nni-pl experiment import`` works with any tuner."""
        log.debug("RandomTuner ignores %d imported results", len(data))

    def resume(self, history: Sequence[HistoryEntry]) -> None:
        """Continue on a fresh random stream, so the suggestions made before the restart are not repeated."""
        self._rng = make_rng(self.seed, len(history))
