"""Hyperband (NNI's ``Hyperband`` advisor): successive halving over brackets of random configurations."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from nni_pl._checks import check_choice, check_int
from nni_pl.hpo.tuners._brackets import (
    TRIAL_BUDGET,
    Bracket,
    BracketScheduler,
    Budget,
    HyperbandBase,
    hyperband_rungs,
    s_max_for,
    schedule_warnings,
)

__all__ = ["TRIAL_BUDGET", "Hyperband"]

log = logging.getLogger(__name__)

_EXEC_MODES = ("parallelism", "serial")


class Hyperband(HyperbandBase):
    """Hyperband: many random configurations on small budgets, the best ones again on larger budgets.

    Bracket ``s`` (``s_max = floor(log_eta(R))`` down to 0) starts ``n = floor((s_max + 1) / (s + 1)) *
    eta**s`` random configurations at budget ``R / eta**s``; when a rung's results are in, the best
    ``1 / eta`` of them (by ``optimize_mode``) run again with ``eta`` times the budget, up to ``R``. With
    ``R=81, eta=3`` the brackets are exactly NNI's documented table::

        s=4: 81@1 27@3 9@9 3@27 1@81    s=3: 27@3 9@9 3@27 1@81    s=2: 9@9 3@27 1@81
        s=1: 6@27 2@81                  s=0: 5@81

    (NNI 2.5's code, like the Hyperband paper and :class:`~nni_pl.hpo.tuners.bohb.BOHB`, starts
    ``ceil((s_max + 1) * eta**s / (s + 1))`` configurations instead: 34, 15 and 8 in brackets 3, 2, 1.)

    Each trial's parameters carry its budget under ``TRIAL_BUDGET`` (read it with
    :func:`nni_pl.get_trial_budget`, or let ``NNICallback(budget_to_epochs=True)`` turn it into
    ``max_epochs``); a promoted configuration is a new trial with the same parameters and a larger
    ``TRIAL_BUDGET``. After bracket ``s=0`` the cycle starts again at ``s_max`` with fresh
    configurations, as in NNI, until ``maxTrialNumber`` or ``maxExperimentDuration`` ends the experiment.

    Trials that end without a final result (failed, early-stopped, killed) and NaN/inf results rank
    last, so a rung always completes (NNI ranked them by their last intermediate result). All ten
    ``_type`` s and nested choices are sampled from the prior. With an experiment folder attached, a
    journal of where each trial ran lets :meth:`resume` rebuild the brackets exactly.

    A configuration is sampled once per experiment: no bracket starts one that was sampled, imported or
    run as a customised trial before. Running a promoted configuration again at a larger budget is the
    deliberate exception (successive halving), and such a pair of configuration and budget is never run
    twice. On a finite space, once every point has been sampled the open brackets finish with what they
    have (a bracket started with fewer configurations promotes proportionally fewer, at least its best)
    and then :meth:`generate_parameters` raises :class:`~nni_pl.errors.NoMoreTrialError`, which ends the
    experiment. (NNI's Hyperband sampled with repeats and never ran out.)

    Args:
        R: the largest budget a trial gets (epochs, mini-batches, ...); an integer >= 1.
        eta: each rung keeps ``1 / eta`` of its configurations; an integer >= 2.
        optimize_mode: ``"maximize"`` or ``"minimize"`` the reported metric.
        exec_mode: ``"parallelism"`` starts the next bracket whenever the open ones have nothing to hand
            out (free trial slots never idle; several brackets may be open); ``"serial"`` starts a bracket
            only after the previous one has finished, and meanwhile answers
            :class:`~nni_pl.errors.WaitForResults`.
        seed: makes the sampled configurations reproducible.

    Example:
        >>> hb = Hyperband(R=9, eta=3, seed=0)
        >>> hb.update_search_space({"lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]}})
        >>> [hb.generate_parameters(i)["TRIAL_BUDGET"] for i in range(9)]
        [1, 1, 1, 1, 1, 1, 1, 1, 1]
        >>> for i in range(9):
        ...     hb.receive_trial_result(i, {}, float(i))  # the last three are the best
        >>> [hb.generate_parameters(i)["TRIAL_BUDGET"] for i in range(9, 12)]
        [3, 3, 3]
        >>> hb.schedule[1]
        [(3, 3), (1, 9)]
    """

    def __init__(
        self,
        R: int = 60,
        eta: int = 3,
        optimize_mode: str = "maximize",
        exec_mode: str = "parallelism",
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(optimize_mode=optimize_mode, seed=seed)
        self.R = check_int(
            self, "R", R, minimum=1, hint="R is the largest budget, e.g. the number of epochs: R: 60"
        )
        self.eta = check_int(
            self, "eta", eta, minimum=2, hint="each rung keeps 1/eta of its configurations; e.g. eta: 3"
        )
        self.exec_mode = check_choice(self, "exec_mode", exec_mode, _EXEC_MODES)
        s_max = s_max_for(self.R, self.eta)
        self._sched = BracketScheduler(
            lambda s: hyperband_rungs(s, s_max, self.eta, self.R),  # type: ignore[arg-type, return-value]
            s_max,
            parallel=exec_mode == "parallelism",
            name="Hyperband",
        )

    def _new_config(self, bracket: Bracket, budget: Budget) -> dict[str, Any]:
        return self._require_space().sample(self._rng)

    def check_budget(self, *, max_trial_number: int | None, max_duration_s: float | None) -> list[str]:
        """Warns when ``R < eta`` (a single bracket: random search at budget ``R``) and when the first
        bracket needs more trials than ``maxTrialNumber`` to bring a configuration to ``R``."""
        s_max = self._sched.s_max
        one_bracket = f"set R to at least eta={self.eta} (R: {self.eta**3} gives 4 brackets)"
        if self.R >= 2:
            one_bracket += f" or eta to at most {self.R}"
        return schedule_warnings(
            "Hyperband",
            f"R={self.R} and eta={self.eta}",
            s_max=s_max,
            eta=self.eta,
            first_bracket_trials=sum(n for n, _ in hyperband_rungs(s_max, s_max, self.eta, self.R)),
            max_trial_number=max_trial_number,
            one_bracket_fix=one_bracket,
            top_for=lambda k: f"R to {self.eta**k}",
        )

    def import_data(self, data: Sequence[Mapping[str, Any]]) -> None:
        """Accepted for ``nni-pl experiment import``: Hyperband learns nothing from results, but does not
        sample the imported configurations again."""
        seen = self._require_seen()
        for record in data:
            params = record.get("parameter")
            if isinstance(params, Mapping):
                seen.add(self._split(params)[0])
        log.info("Hyperband samples configurations at random; %d imported results are not used", len(data))
