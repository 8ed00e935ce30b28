"""Batch tuner (NNI's ``BatchTuner``): run a fixed list of complete configurations, each once, in order."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from nni_pl._checks import check_optimize_mode, check_seed
from nni_pl.errors import NoMoreTrialError, SearchSpaceError
from nni_pl.hpo._base import HistoryEntry, Tuner
from nni_pl.space import Branch, Choice, SearchSpace

__all__ = ["BatchTuner"]

log = logging.getLogger(__name__)

_KEY = "combine_params"
_FORM = (
    'BatchTuner needs a search space of exactly one key, "combine_params", a choice whose options are '
    'complete parameter sets, e.g. {"combine_params": {"_type": "choice", "_value": '
    '[{"optimizer": "Adam", "learning_rate": 0.001}, {"optimizer": "SGD", "learning_rate": 0.01}]}}'
)


def _canonical(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


class BatchTuner(Tuner):
    """Runs the parameter sets listed in the search space, each once, in the order given.

    The search space must have one key, ``combine_params``, of ``_type`` ``choice`` whose ``_value``
    lists complete parameter sets (dicts); each trial receives one of those dicts as its parameters
    (not wrapped in ``combine_params``). When all have been handed out, :meth:`generate_parameters`
    raises :class:`~nni_pl.errors.NoMoreTrialError`. Results are not used. A listed parameter set that
    already ran (imported with :meth:`import_data`, stored in a resumed experiment, or run as a customised
    trial) is skipped, once
    per earlier run, so a set listed twice still runs twice in total. (NNI accepted any single key of
    type choice; this tuner insists on NNI's documented ``combine_params`` form.)

    Args:
        optimize_mode: ``"maximize"`` or ``"minimize"``, accepted (and checked) for uniformity with the other
            tuners; the order of the list is fixed, so it is not used.
        seed: accepted for uniformity with the other tuners; the order is fixed, so it is not used.

    Example:
        >>> tuner = BatchTuner()
        >>> tuner.update_search_space({"combine_params": {"_type": "choice", "_value": [
        ...     {"optimizer": "Adam", "learning_rate": 0.001},
        ...     {"optimizer": "SGD", "learning_rate": 0.01}]}})
        >>> tuner.generate_parameters(0)
        {'optimizer': 'Adam', 'learning_rate': 0.001}
        >>> tuner.generate_parameters(1)["optimizer"]
        'SGD'
    """

    parsed_search_space = True  # a built-in: the experiment hands it the parsed SearchSpace

    def __init__(self, *, optimize_mode: str | None = None, seed: int | None = None) -> None:
        if optimize_mode is not None:
            check_optimize_mode(self, optimize_mode)
        self.optimize_mode = optimize_mode
        self.seed = check_seed(self, seed)
        self._values: list[dict[str, Any]] = []
        self._done: Counter[str] = Counter()  # configurations already run, by canonical JSON
        self._index = 0
        self._ready = False
        self._issued: set[int] = set()  # parameter ids this tuner handed out

    @classmethod
    def check_search_space(cls, space: SearchSpace, *, name: str | None = None) -> None:
        """Raise :class:`SearchSpaceError` unless ``space`` is ``{"combine_params": choice of dicts}``."""
        cls._configurations(SearchSpace.parse(space), name or cls.__name__)

    @staticmethod
    def _configurations(space: SearchSpace, tuner: str) -> list[dict[str, Any]]:
        form = _FORM.replace("BatchTuner", tuner, 1)
        if list(space) != [_KEY]:
            raise SearchSpaceError(
                "", "has the wrong shape for the batch tuner", f"got keys {list(space)}", form
            )
        param = space[_KEY]
        if not isinstance(param, Choice):
            raise SearchSpaceError(_KEY, f"must be a choice, got _type {param.TYPE!r}", "", form)
        out = []
        for i, option in enumerate(param.options):
            if isinstance(option, Branch) and any(True for _ in option.searched()):
                raise SearchSpaceError(
                    f"{_KEY}[{i}]",
                    "must be a complete parameter set (constants only), not a nested search space",
                    f"got {json.dumps(option.to_json())}",
                    form,
                )
            # a copy that keeps the user's key order (value_at would sort the keys)
            value = json.loads(json.dumps(option.to_json() if isinstance(option, Branch) else option))
            if not isinstance(value, dict):
                raise SearchSpaceError(
                    f"{_KEY}[{i}]",
                    "every option must be a complete parameter set (a dict)",
                    f"got {json.dumps(value)}",
                    form,
                )
            out.append(value)
        return out

    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        values = self._configurations(SearchSpace.parse(search_space), type(self).__name__)
        if values != self._values:
            self._values, self._index = values, 0
        self._ready = True

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if not self._ready:
            raise RuntimeError("update_search_space() must be called before generate_parameters()")
        while self._index < len(self._values):
            params = self._values[self._index]
            self._index += 1
            key = _canonical(params)
            if self._done[key] > 0:  # ran before (imported, resumed or customised): skip it once
                self._done[key] -= 1
                continue
            self._issued.add(parameter_id)
            return json.loads(json.dumps(params))  # a fresh copy: the trial may change it
        raise NoMoreTrialError(f"all {len(self._values)} configurations of the batch have been generated")

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        """The batch is fixed: results change nothing, but a listed set that ran as a customised trial
        (a parameter id this tuner did not hand out) is skipped once."""
        if parameter_id not in self._issued and isinstance(parameters, Mapping):
            self._issued.add(parameter_id)
            self._done[_canonical(parameters)] += 1

    def import_data(self, data: Sequence[Mapping[str, Any]]) -> None:
        """Configurations that already ran (``[{"parameter": {...}, "value": ...}]``) are not run again."""
        for record in data:
            params = record.get("parameter")
            if isinstance(params, Mapping):
                self._done[_canonical(params)] += 1

    def resume(self, history: Sequence[HistoryEntry]) -> None:
        """Skip every configuration already handed out (finished or not: an unfinished one is re-queued
        by the experiment itself)."""
        for h in history:
            self._done[_canonical(h.parameters)] += 1
            if h.parameter_id is not None:
                self._issued.add(h.parameter_id)  # its result may still come: it is no customised trial
