"""Regularized (aging) evolution (NNI's ``RegularizedEvolutionTuner``), after Real et al. 2019,
"Regularized Evolution for Image Classifier Architecture Search": the population is a queue, the best
of a random sample is mutated and the oldest member dies."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from nni_pl._checks import check_int
from nni_pl.hpo.tuners._evolution_base import Member, PopulationTuner, best_of

__all__ = ["RegularizedEvolutionTuner"]

log = logging.getLogger(__name__)


class RegularizedEvolutionTuner(PopulationTuner):
    """Aging evolution: tournament selection on a queue, so every member eventually dies of old age.

    The first ``population_size`` suggestions are random. After that, each suggestion draws
    ``sample_size`` members of the population at random (with replacement, as in the paper's algorithm
    and NNI) and returns a copy of the best one with one of its active parameters re-drawn from the
    prior (re-drawing a nested ``_name`` choice switches branch and draws the new branch's parameters
    afresh). Each result is pushed onto the queue, and the oldest member is dropped once the queue holds
    more than ``population_size``. A failed trial of the initial population is replaced by a new random
    individual (as in NNI); a failed child is simply forgotten.

    NNI's version searched only NAS ``layer_choice``/``input_choice`` spaces; this one takes all ten HPO
    ``_type`` s and nested choices. As with :class:`~nni_pl.hpo.tuners.EvolutionTuner`, suggestions are
    never repeated (a finite space raises :class:`~nni_pl.errors.NoMoreTrialError` once fully generated)
    and, where NNI raised ``NoMoreTrialError`` while no member had reported yet (more trials at once than
    ``population_size``), this tuner suggests random individuals. On resume, the queue is rebuilt from
    the newest ``population_size`` results.

    Note that with the defaults the first 100 trials are random search; use a smaller
    ``population_size`` (and ``sample_size``) for small trial budgets.

    Args:
        optimize_mode: ``"maximize"`` (default) or ``"minimize"`` the reported metric.
        population_size: the most members kept (and the number of initial random trials).
        sample_size: how many members each tournament draws; larger is greedier.
        seed: makes the suggestions reproducible for the same sequence of results.

    Example:
        >>> tuner = RegularizedEvolutionTuner(optimize_mode="minimize", population_size=10,
        ...                                   sample_size=3, seed=0)
        >>> tuner.update_search_space({"x": {"_type": "quniform", "_value": [-5, 5, 0.25]},
        ...                            "act": {"_type": "choice", "_value": ["relu", "tanh"]}})
        >>> for i in range(40):
        ...     p = tuner.generate_parameters(i)
        ...     tuner.receive_trial_result(i, p, p["x"] ** 2 + (p["act"] == "tanh"))
        >>> best = min(tuner.population(), key=lambda m: m[1])
        >>> best[0]["act"], abs(best[0]["x"]) <= 0.5
        ('relu', True)
    """

    def __init__(
        self,
        optimize_mode: str = "maximize",
        population_size: int = 100,
        sample_size: int = 25,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(optimize_mode=optimize_mode, population_size=population_size, seed=seed)
        self.sample_size = check_int(self, "sample_size", sample_size, minimum=1)
        if self.sample_size > self.population_size:
            log.warning(
                "sample_size (%d) > population_size (%d): every tournament is almost surely won by the best member",
                self.sample_size,
                self.population_size,
            )
        self._queue: deque[Member] = deque()

    def _select_parent(self) -> dict[str, Any] | None:
        if not self._queue:
            return None
        members = list(self._queue)
        sample = self._rng.integers(len(members), size=self.sample_size)
        return members[best_of(members, sample)][0]

    def _add_member(self, params: dict[str, Any], loss: float) -> None:
        self._queue.append((params, loss))
        while len(self._queue) > self.population_size:
            self._queue.popleft()

    def _rebuild(self, members: list[Member]) -> None:
        self._queue = deque(members[-self.population_size :])

    def _replace_failed(self, parameter_id: int) -> bool:
        return parameter_id in self._random_ids

    def population(self) -> list[Member]:
        """The queue, oldest first, as ``(parameters, loss)``; the loss is minimised (NaN/inf -> inf)."""
        return list(self._queue)

    def _fitting_settings(self, population_size: int) -> str:
        # a tournament of a quarter of the population, as the paper's 25 of 100
        text = super()._fitting_settings(population_size)
        if self.sample_size > population_size:
            text += f" and sample_size (now {self.sample_size}) to {max(1, population_size // 4)}"
        return text
