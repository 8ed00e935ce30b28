"""Naive evolution (NNI's ``Evolution`` tuner), after Real et al. 2017, "Large-Scale Evolution of Image
Classifiers": a random initial population, then tournaments of two with one-parameter mutation."""

from __future__ import annotations

import logging
from typing import Any

from nni_pl.hpo.tuners._evolution_base import Member, PopulationTuner, best_of

__all__ = ["EvolutionTuner"]

log = logging.getLogger(__name__)


class EvolutionTuner(PopulationTuner):
    """Naive evolution: simple, needs many trials, good with short trials or an assessor.

    The first ``population_size`` suggestions are random. After that, each suggestion picks two random
    members of the population, removes the worse one and returns a copy of the better one with one of
    its active parameters re-drawn from the prior (re-drawing a nested ``_name`` choice switches branch
    and draws the new branch's parameters afresh). Each result joins the population, so with one trial
    at a time it keeps ``population_size`` members. A trial that fails without a result is replaced by a
    random individual, as in NNI.

    All ten ``_type`` s and nested choices are supported. Unlike NNI, a suggestion is never a parameter
    set generated before (a finite space raises :class:`~nni_pl.errors.NoMoreTrialError` once fully
    generated), and the tuner does not fail when more trials run at once than ``population_size``:
    NNI's tuner stopped on its first generation in that case; this one suggests random individuals
    until a member of the population has reported. The population never grows past
    ``population_size`` (results that arrive beyond it push out the worst member), so resumed and
    imported results keep the best ``population_size``.

    Args:
        optimize_mode: ``"maximize"`` (default) or ``"minimize"`` the reported metric.
        population_size: the size of the population, and the number of initial random trials. NNI
            suggests it be much larger than ``trialConcurrency``.
        seed: makes the suggestions reproducible for the same sequence of results.

    Example:
        >>> tuner = EvolutionTuner(optimize_mode="minimize", population_size=8, seed=0)
        >>> tuner.update_search_space({"x": {"_type": "uniform", "_value": [-5, 5]},
        ...                            "act": {"_type": "choice", "_value": ["relu", "tanh"]}})
        >>> for i in range(60):
        ...     p = tuner.generate_parameters(i)
        ...     tuner.receive_trial_result(i, p, p["x"] ** 2 + (p["act"] == "tanh"))
        >>> best = min(tuner.population(), key=lambda m: m[1])
        >>> best[0]["act"], abs(best[0]["x"]) < 1
        ('relu', True)
    """

    def __init__(
        self, optimize_mode: str = "maximize", population_size: int = 32, *, seed: int | None = None
    ) -> None:
        super().__init__(optimize_mode=optimize_mode, population_size=population_size, seed=seed)
        self._members: list[Member] = []

    def _select_parent(self) -> dict[str, Any] | None:
        members = self._members
        if not members:
            return None
        if len(members) == 1:
            return members[0][0]
        pair = self._rng.choice(len(members), size=2, replace=False)
        winner = best_of(members, pair)
        loser = int(pair[1]) if winner == int(pair[0]) else int(pair[0])
        parent = members[winner][0]
        del members[loser]
        return parent

    def _add_member(self, params: dict[str, Any], loss: float) -> None:
        self._members.append((params, loss))
        if len(self._members) > self.population_size:
            worst = max(range(len(self._members)), key=lambda i: self._members[i][1])
            del self._members[worst]

    def _rebuild(self, members: list[Member]) -> None:
        ranked = sorted(range(len(members)), key=lambda i: members[i][1])[: self.population_size]
        self._members = [members[i] for i in sorted(ranked)]

    def population(self) -> list[Member]:
        """The evaluated members as ``(parameters, loss)``; the loss is minimised (NaN/inf -> inf)."""
        return list(self._members)
