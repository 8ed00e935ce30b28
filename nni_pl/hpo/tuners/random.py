"""Random search: every parameter set is drawn from the prior (NNI's ``Random`` tuner)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from nni_pl._checks import check_optimize_mode, check_seed
from nni_pl.hpo._base import HistoryEntry, Tuner
from nni_pl.hpo.tuners._common import PythonRng
from nni_pl.hpo.tuners._seen import SeenPoints
from nni_pl.space import SearchSpace

__all__ = ["RandomTuner"]

log = logging.getLogger(__name__)


class RandomTuner(Tuner):
    """Samples each parameter set independently from the search space's prior distributions.

    All ten ``_type`` s and nested ``choice`` s are supported; results are ignored. A baseline "when we
    have no knowledge about the prior distribution" (NNI docs).

    A point is never suggested twice: a draw that repeats a point already suggested or learnt of (a
    result, an imported record, a customised trial, the stored trials of a resumed experiment) is drawn
    again, and on a finite space (``choice``, ``randint``, ``quniform``, ``qloguniform`` only) the tuner
    raises :class:`~nni_pl.errors.NoMoreTrialError` once every point has been suggested, which ends the
    experiment. (NNI's Random repeated points and never ran out.)

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
        >>> tuner.update_search_space({"bs": {"_type": "choice", "_value": [16, 32, 64]}})
        >>> sorted(tuner.generate_parameters(i)["bs"] for i in range(1, 4))
        [16, 32, 64]
        >>> tuner.generate_parameters(4)
        Traceback (most recent call last):
        ...
        nni_pl.errors.NoMoreTrialError: all 3 points of the finite search space have been suggested
    """

    parsed_search_space = True  # a built-in: the experiment hands it the parsed SearchSpace

    def __init__(self, optimize_mode: str = "maximize", *, seed: int | None = None) -> None:
        self.optimize_mode = check_optimize_mode(self, optimize_mode)
        self.seed = check_seed(self, seed)
        self._rng = PythonRng(self.seed)  # no numpy: a launcher with this tuner starts faster
        self._seen: SeenPoints | None = None
        # its suggestions whose trials have not ended, by parameter id: their results need no bookkeeping
        self._given: dict[int, dict[str, Any]] = {}

    @property
    def _space(self) -> SearchSpace | None:
        return self._seen.space if self._seen is not None else None

    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        space = SearchSpace.parse(search_space)
        self._seen = self._seen.rebuilt(space) if self._seen is not None else SeenPoints(space)

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        params = self._require_seen().fresh(self._rng, mark=True)
        self._given[parameter_id] = dict(params)
        return params

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        """Random search learns nothing from results; a point it did not suggest (a customised trial) is
        not suggested later."""
        if self._given.pop(parameter_id, None) != parameters:  # its own suggestion is marked seen already
            self._require_seen().add(parameters)

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        """Forget the suggestion of a trial that ended (with a result or without)."""
        self._given.pop(parameter_id, None)

    def import_data(self, data: Sequence[Mapping[str, Any]]) -> None:
        """Nothing to learn, but the imported points are not suggested again."""
        seen = self._require_seen()
        n = sum(seen.add(record.get("parameter")) for record in data)
        log.debug("RandomTuner: %d of %d imported points are new to it", n, len(data))

    def resume(self, history: Sequence[HistoryEntry]) -> None:
        """Continue on a fresh random stream; the stored trials' points (finished, failed or running) are
        not suggested again."""
        self._rng = PythonRng(self.seed, len(history))
        seen = self._require_seen()
        for h in history:
            seen.add(h.parameters)

    def _require_seen(self) -> SeenPoints:
        if self._seen is None:
            raise RuntimeError("update_search_space() must be called before using the tuner")
        return self._seen
