"""Grid search: every combination of a finite space, each exactly once (NNI's ``GridSearch`` tuner)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from nni_pl._checks import check_optimize_mode, check_seed
from nni_pl.errors import NoMoreTrialError, SearchSpaceError
from nni_pl.hpo._base import HistoryEntry, Tuner
from nni_pl.hpo.tuners._common import param_key
from nni_pl.space import SearchSpace

__all__ = ["GridSearchTuner"]

log = logging.getLogger(__name__)


class GridSearchTuner(Tuner):
    """Enumerates the grid of a finite search space in a fixed order and never repeats a point.

    Supports ``choice`` (nested too), ``randint`` (every integer of ``[low, high)``), ``quniform`` and
    ``qloguniform`` (every value the formula can produce). Results are ignored. Once every point has been
    handed out, :meth:`generate_parameters` raises :class:`~nni_pl.errors.NoMoreTrialError`, which ends
    the experiment. Points already run (resumed or imported) are skipped.

    Args:
        optimize_mode: accepted for NNI compatibility; grid search does not use it.
        seed: accepted for a uniform interface; the order is deterministic anyway.

    Example:
        >>> tuner = GridSearchTuner()
        >>> tuner.update_search_space({"bs": {"_type": "choice", "_value": [16, 32]},
        ...                            "layers": {"_type": "randint", "_value": [1, 3]}})
        >>> [tuner.generate_parameters(i) for i in range(4)]
        [{'bs': 16, 'layers': 1}, {'bs': 16, 'layers': 2}, {'bs': 32, 'layers': 1}, {'bs': 32, 'layers': 2}]
        >>> tuner.generate_parameters(4)
        Traceback (most recent call last):
        ...
        nni_pl.errors.NoMoreTrialError: all 4 grid points have been generated
    """

    parsed_search_space = True  # a built-in: the experiment hands it the parsed SearchSpace

    supported_types: ClassVar[frozenset[str] | None] = frozenset(
        {"choice", "randint", "quniform", "qloguniform"}
    )
    supports_nested: ClassVar[bool] = True

    def __init__(self, optimize_mode: str | None = None, *, seed: int | None = None) -> None:
        if optimize_mode is not None:
            check_optimize_mode(self, optimize_mode)
        self.optimize_mode = optimize_mode
        self.seed = check_seed(self, seed)
        self._space: SearchSpace | None = None
        self._grid: Iterator[dict[str, Any]] = iter(())
        self._used: set[str] = set()
        self._pending_used: list[Mapping[str, Any]] = []  # marked before a space was known
        self._size = 0

    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        space = SearchSpace.parse(search_space)
        self.check_search_space(space, name="GridSearch")
        if not space.is_finite:  # pragma: no cover - check_search_space already rejects these types
            raise SearchSpaceError(
                "", "grid search needs a finite space", "", "use choice, randint, quniform or qloguniform"
            )
        self._space = space
        self._size = int(space.size)
        self._grid = space.grid()
        for params in self._pending_used:
            self._mark_used(params)
        self._pending_used.clear()
        log.info("grid search over %d points", self._size)

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if self._space is None:
            raise RuntimeError("update_search_space() must be called before generate_parameters()")
        for params in self._grid:
            key = param_key(self._space, params)
            if key is None or key in self._used:
                continue
            self._used.add(key)
            return params
        raise NoMoreTrialError(f"all {self._size} grid points have been generated")

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        """Grid search ignores results (but a result for a point it did not generate marks it as done)."""
        self._mark_used(parameters)

    def import_data(self, data: Sequence[Mapping[str, Any]]) -> None:
        """Mark the imported parameter sets as done, so they are not generated again."""
        for record in data:
            params = record.get("parameter")
            if isinstance(params, Mapping):
                self._mark_used(params)

    def resume(self, history: Sequence[HistoryEntry]) -> None:
        """Mark every stored trial's point as used, whether it finished or not."""
        for entry in history:
            self._mark_used(entry.parameters)

    def _mark_used(self, params: Mapping[str, Any] | None) -> None:
        if params is None:
            return
        if self._space is None:
            self._pending_used.append(params)
            return
        key = param_key(self._space, params)
        if key is None:
            log.debug("ignoring a parameter set that is not in the grid: %r", params)
            return
        self._used.add(key)
