"""Asynchronous successive halving as a stopping rule (``ASHA``; not in NNI 2.5)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from nni_pl._checks import check_int, check_optimize_mode, fail
from nni_pl.hpo._base import Assessor, AssessResult, extract_scalar

__all__ = ["ASHAAssessor"]

log = logging.getLogger(__name__)


class ASHAAssessor(Assessor):
    """Stops a trial that is not in the top ``1 / reduction_factor`` of its rung (Li et al., MLSys 2020).

    Resources are counted in reported intermediate results (steps; usually epochs). Rung ``k`` (``k =
    0, 1, ...``) sits at step ``min_resource * reduction_factor ** (min_early_stopping_rate + k)``;
    with ``max_resource`` set, only rungs strictly below it exist (a trial that reaches
    ``max_resource`` is done anyway). When a trial reports its result at a rung's step, that value is
    recorded at the rung, and the trial continues only if it ranks within the best
    ``max(1, n // reduction_factor)`` of the ``n`` values recorded at that rung so far, its own
    included (ties with the cut-off pass). The rule is asynchronous, as in Optuna's
    ``SuccessiveHalvingPruner`` and Ray Tune's ``ASHAScheduler``: a trial is compared with whatever
    the trials before it recorded, never waits for a rung to fill, and is never promoted later; so the
    first trial at a rung always continues, and a trial stopped once stays stopped (``Bad`` again if
    asked). Between rungs the verdict is ``Good``. If a call skips a rung's step (the history grew by
    several results), the values at every rung passed are recorded and judged. NaN and infinite results
    count as the worst. Records outlive their trials: finished, failed and stopped trials keep shaping
    the cut-offs.

    The rule is deterministic; there is no random seed.

    Args:
        optimize_mode: ``"maximize"`` or ``"minimize"`` the reported metric.
        min_resource: the step of the first rung (with ``min_early_stopping_rate`` 0).
        reduction_factor: ``eta``: rungs are this many times apart and keep the best ``1 / eta``.
        min_early_stopping_rate: ``s``: skip the first ``s`` rungs (the first rung moves to
            ``min_resource * eta ** s``).
        max_resource: the steps of a full trial; rungs at or beyond it are dropped (``None``: no limit).

    Example:
        >>> a = ASHAAssessor(optimize_mode="maximize", min_resource=1, reduction_factor=2)
        >>> a.rungs(max_step=10)
        [1, 2, 4, 8]
        >>> a.assess_trial("A", [0.5])       # first at rung 1: continues
        <AssessResult.Good: True>
        >>> a.assess_trial("B", [0.3])       # 2 values, keep the best 1: 0.3 < 0.5
        <AssessResult.Bad: False>
        >>> a.assess_trial("C", [0.6])       # best of 3
        <AssessResult.Good: True>
        >>> a.assess_trial("D", [0.55])      # 4 values, keep the best 2: 0.6, 0.55
        <AssessResult.Good: True>
    """

    def __init__(
        self,
        *,
        optimize_mode: str = "maximize",
        min_resource: int = 1,
        reduction_factor: int = 3,
        min_early_stopping_rate: int = 0,
        max_resource: int | None = None,
    ) -> None:
        self.optimize_mode = check_optimize_mode(self, optimize_mode)
        self.min_resource = check_int(self, "min_resource", min_resource, minimum=1)
        self.reduction_factor = check_int(self, "reduction_factor", reduction_factor, minimum=2)
        self.min_early_stopping_rate = check_int(
            self, "min_early_stopping_rate", min_early_stopping_rate, minimum=0
        )
        first = self.min_resource * self.reduction_factor**self.min_early_stopping_rate
        if max_resource is not None:
            max_resource = check_int(self, "max_resource", max_resource, minimum=1)
            if max_resource <= first:
                fail(
                    self,
                    "max_resource",
                    f"must be greater than the first rung, min_resource * reduction_factor ** "
                    f"min_early_stopping_rate = {first}, got {max_resource}; otherwise no trial is ever judged. "
                    "Lower min_resource or min_early_stopping_rate, or raise max_resource",
                )
        self.max_resource = max_resource
        self._first_rung = first
        self._high_better = self.optimize_mode == "maximize"
        self._records: list[dict[str, float]] = []  # rung index -> trial id -> value at that rung
        self._seen: dict[str, int] = {}  # trial -> the history length already processed
        self._stopped: set[str] = set()

    def rungs(self, max_step: int | None = None) -> list[int]:
        """The rung steps up to ``max_step`` (inclusive) and below ``max_resource``."""
        limit = max_step if max_step is not None else self.max_resource
        if limit is None:
            raise ValueError("rungs() needs max_step when max_resource is None (the rungs never end)")
        out = []
        step = self._first_rung
        while step <= limit and (self.max_resource is None or step < self.max_resource):
            out.append(step)
            step *= self.reduction_factor
        return out

    def rung_values(self, rung: int) -> dict[str, float]:
        """The values recorded so far at the ``rung``-th rung (0-based), by trial id."""
        return dict(self._records[rung]) if rung < len(self._records) else {}

    def assess_trial(self, trial_job_id: str, trial_history: Sequence[Any]) -> AssessResult:
        if trial_job_id in self._stopped:
            return AssessResult.Bad
        step = len(trial_history)
        previous = self._seen.get(trial_job_id, 0)
        if step <= previous:
            return AssessResult.Good
        self._seen[trial_job_id] = step
        for k, rung_step in enumerate(self.rungs(step)):
            if rung_step <= previous:
                continue
            value = self._score(trial_history[rung_step - 1])
            if not self._record_and_judge(k, trial_job_id, value):
                self._stopped.add(trial_job_id)
                log.debug("ASHA: trial %s not promoted at rung %d (step %d)", trial_job_id, k, rung_step)
                return AssessResult.Bad
        return AssessResult.Good

    def trial_end(self, trial_job_id: str, success: bool) -> None:
        """Forget the trial's progress; its rung records stay (they are the asynchronous reference)."""
        self._seen.pop(trial_job_id, None)
        self._stopped.discard(trial_job_id)

    def resume(self, histories: Sequence[tuple[str, list[float], bool | None]]) -> None:
        """Rebuild the rung records from stored histories (no verdicts are replayed)."""
        for trial_id, history, success in histories:
            for k, rung_step in enumerate(self.rungs(len(history))):
                self._rung(k)[trial_id] = self._score(history[rung_step - 1])
            if success is None:
                self._seen[trial_id] = len(history)

    # --- internals ---------------------------------------------------------------------------------------
    def _rung(self, k: int) -> dict[str, float]:
        while len(self._records) <= k:
            self._records.append({})
        return self._records[k]

    def _score(self, value: Any) -> float:
        """The value as a number where larger is better (NaN/inf become -inf, the worst)."""
        x = extract_scalar(value)
        if not math.isfinite(x):
            return -math.inf
        return x if self._high_better else -x

    def _record_and_judge(self, k: int, trial_id: str, score: float) -> bool:
        rung = self._rung(k)
        rung[trial_id] = score
        ranked = sorted(rung.values(), reverse=True)
        keep = max(1, len(ranked) // self.reduction_factor)
        return score >= ranked[keep - 1]
