"""What the two evolution tuners share: one-parameter mutation of nested parameter sets, and a population
tuner skeleton (random individuals owed, parent selection, failures, import and resume).

A *mutation* picks one of the parameters that are active in the parent (a nested ``_name`` option's
parameters are active only while that option is chosen) uniformly at random and re-draws it from its
prior, as NNI's evolution tuner does. Re-drawing a ``choice`` always switches to another option, and when
the new option is a nested ``_name`` branch, that branch's parameters are drawn afresh. A re-drawn
quantised value that equals the old one is drawn again (a few times), so a child differs from its parent
whenever the parameter has more than one value.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nni_pl._checks import check_int
from nni_pl.hpo._base import HistoryEntry, extract_scalar, to_loss
from nni_pl.hpo.tuners._store import StoreTuner
from nni_pl.space import Choice, Dimension, SearchSpace

__all__ = ["Member", "PopulationTuner", "best_of", "fitting_population", "mutate"]

log = logging.getLogger(__name__)

Member = tuple[dict[str, Any], float]  # (parameters, loss); the loss is minimised, NaN/inf -> inf

_REDRAWS = 8  # tries to make a quantised re-draw differ from the old value
_CHILD_TRIES = 16  # tries to find a child that was not generated before


def _mutable(dim: Dimension) -> bool:
    p: Any = dim.param
    if isinstance(p, Choice):
        return len(p.options) > 1
    if p.is_finite:
        return p.size > 1
    return not hasattr(p, "low") or p.low < p.high  # normal types are never degenerate


def _set(params: dict[str, Any], key: tuple[Any, ...], value: Any) -> None:
    # a dimension key alternates parameter names and branch names: (name, branch, name, branch, name)
    target = params
    for name in key[:-1:2]:
        target = target[name]
    target[key[-1]] = value


def mutate(space: SearchSpace, params: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """A copy of ``params`` with one active parameter re-drawn from its prior (see the module docstring).

    Example:
        >>> space = SearchSpace.parse({"a": {"_type": "choice", "_value": [1, 2, 3]},
        ...                            "b": {"_type": "choice", "_value": ["x", "y"]}})
        >>> child = mutate(space, {"a": 1, "b": "x"}, np.random.default_rng(0))
        >>> sum(child[k] != v for k, v in {"a": 1, "b": "x"}.items())
        1
    """
    child = copy.deepcopy(dict(params))
    flat = space.flatten(child)
    active = [d for d in space.dimensions() if d.key in flat and _mutable(d)]
    if not active:
        return child
    dim = active[int(rng.integers(len(active)))]
    p = dim.param
    old = flat[dim.key]
    if isinstance(p, Choice):
        others = [i for i in range(len(p.options)) if i != old]
        value = p.value_at(others[int(rng.integers(len(others)))], rng)
    else:
        value = p.sample(rng)
        for _ in range(_REDRAWS):
            if value != old:
                break
            value = p.sample(rng)
    _set(child, dim.key, value)
    return child


class PopulationTuner(StoreTuner):
    """A tuner that evolves a population of evaluated parameter sets (the two evolution tuners).

    The first ``population_size`` suggestions are random individuals; after that a subclass picks a
    parent (:meth:`_select_parent`) and the suggestion is its mutation. Suggestions are never repeated
    (a child already generated is mutated again, then replaced by a random individual), and a finite
    space that has been fully generated raises :class:`~nni_pl.errors.NoMoreTrialError`. When no member of the
    population has reported yet (more trials run at once than the population holds) the suggestion is
    a random individual instead of an error. Results join the population through :meth:`_add_member`.
    """

    def __init__(self, *, optimize_mode: str, population_size: int, seed: int | None) -> None:
        super().__init__(optimize_mode=optimize_mode, seed=seed)
        self.population_size = check_int(self, "population_size", population_size, minimum=1)
        self._owed = self.population_size  # random individuals still to generate
        self._random_ids: set[int] = set()  # parameter ids that were handed out as random individuals

    # --- subclass hooks ----------------------------------------------------------------------------------
    def _select_parent(self) -> dict[str, Any] | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _add_member(self, params: dict[str, Any], loss: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _rebuild(self, members: list[Member]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _replace_failed(self, parameter_id: int) -> bool:
        """Whether a trial that ended without a result is replaced by a random individual."""
        return True

    # --- Tuner interface ---------------------------------------------------------------------------------
    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        """Receive the space; on a change, the population keeps the results that are points of the new one."""
        had_space = self._store is not None
        super().update_search_space(search_space)
        if had_space:
            self._rebuild([(params, loss) for params, loss, _ in self._require_store().records])

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        store = self._require_store()
        if not store.dims:
            return {}
        store.seen.check()
        parent = None if self._owed > 0 else self._select_parent()
        if parent is None:  # a random individual
            self._owed = max(0, self._owed - 1)
            self._random_ids.add(parameter_id)
            children: Any = ()
        else:  # a child not generated before, else a random individual in its place
            children = (mutate(store.space, parent, self._rng) for _ in range(_CHILD_TRIES))
        return self._hand_out(parameter_id, store.seen.fresh(self._rng, children))

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        store = self._require_store()
        before = len(store)
        super().receive_trial_result(parameter_id, parameters, value, **kwargs)
        if len(store) > before:
            params, loss, _ = store.records[-1]
            self._add_member(params, loss)

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        """A trial that ended without a result (failed, killed) is replaced by a random individual
        (NNI's rule); a trial that reported is already in the population."""
        if self._pending.pop(parameter_id, None) is not None and not success:
            if self._replace_failed(parameter_id):
                self._owed += 1
                log.info("trial %s failed: a random individual takes its place", parameter_id)
        self._random_ids.discard(parameter_id)

    def import_data(self, data: Sequence[Mapping[str, Any]]) -> None:
        """Earlier results join the population and take the place of initial random individuals."""
        store = self._require_store()
        n = 0
        for record in data:
            params, value = record.get("parameter"), record.get("value")
            if not isinstance(params, Mapping):
                continue
            if value is None:
                store.seen.add(params)  # no result to learn from, but not to be suggested again
            elif store.add(dict(params), to_loss(value, self.optimize_mode), extract_scalar(value)):
                n += 1
                self._add_member(*store.records[-1][:2])
        self._owed = max(0, self._owed - n)
        log.info("%s imported %d of %d records", type(self).__name__, n, len(data))

    def resume(self, history: Sequence[HistoryEntry]) -> None:
        """Reload stored trials: results rebuild the population, unfinished trials stay pending, and the
        random individuals of the initial population not yet generated are still owed."""
        super().resume(history)
        store = self._require_store()
        self._owed = max(0, self.population_size - len(history))
        self._rebuild([(params, loss) for params, loss, _ in store.records])

    def population(self) -> list[Member]:
        """The current population as ``(parameters, loss)`` (loss minimised), for inspection."""
        raise NotImplementedError  # pragma: no cover - abstract

    def check_budget(self, *, max_trial_number: int | None, max_duration_s: float | None) -> list[str]:
        """A ``population_size`` of at least ``maxTrialNumber`` leaves no trial to evolve: every trial is a
        random initial individual, so the experiment is random search. Suggests a quarter of the trials."""
        if max_trial_number is None or self.population_size < max_trial_number:
            return []
        fits = fitting_population(max_trial_number)
        fix = f"set {self._fitting_settings(fits)}, or raise " if fits else "raise "
        return [
            f"{type(self).__name__}: population_size={self.population_size} is not below "
            f"maxTrialNumber={max_trial_number}, so every trial is a random initial individual and the "
            f"experiment is random search; {fix}maxTrialNumber above {self.population_size}"
        ]

    def _fitting_settings(self, population_size: int) -> str:
        """The settings to suggest for a budget that fits ``population_size``."""
        return f"population_size to {population_size} or less (a quarter of the trials)"


def fitting_population(max_trial_number: int) -> int:
    """A population that leaves most of ``max_trial_number`` trials to evolution: a quarter of them, at
    least 2 (0: the budget is too small for any)."""
    fits = max(2, max_trial_number // 4)
    return fits if fits < max_trial_number else 0


def best_of(members: Sequence[Member], indices: Sequence[int] | np.ndarray) -> int:
    """The index (into ``members``) of the member with the lowest loss among ``indices`` (first on ties)."""
    best = int(indices[0])
    for i in indices[1:]:
        if members[int(i)][1] < members[best][1]:
            best = int(i)
    return best
