"""The median stopping rule (NNI's ``Medianstop`` assessor, from Google Vizier)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from nni_pl._checks import check_int, check_optimize_mode
from nni_pl.hpo._base import Assessor, AssessResult, extract_scalar

__all__ = ["MedianstopAssessor"]

log = logging.getLogger(__name__)


class MedianstopAssessor(Assessor):
    """Stops a trial whose best result so far is worse than the median of completed trials' running averages.

    At step ``S`` (the number of intermediate results reported), a running trial is stopped when its
    best value up to ``S`` is strictly worse than the median, over all *successfully completed* trials
    that reported at least ``S`` results, of their running average of the first ``S`` results. With
    no such completed trial the verdict is ``Good``. As in NNI, an even number of averages is resolved
    leniently: the lower middle value when maximising, the upper one when minimising. NaN or infinite
    intermediate results count as the worst possible value.

    Args:
        optimize_mode: ``"maximize"`` (NNI's default) or ``"minimize"`` the reported metric.
        start_step: judge a trial only once it has reported at least this many results.

    Example:
        >>> a = MedianstopAssessor(optimize_mode="maximize")
        >>> a.assess_trial("A", [0.5, 0.6, 0.7]); a.trial_end("A", success=True)
        <AssessResult.Good: True>
        >>> a.assess_trial("B", [0.4, 0.5])   # best 0.5 < A's running average 0.55 at step 2
        <AssessResult.Bad: False>
        >>> a.assess_trial("C", [0.6])        # 0.6 >= A's first result 0.5
        <AssessResult.Good: True>
    """

    def __init__(self, optimize_mode: str = "maximize", start_step: int = 0) -> None:
        self.optimize_mode = check_optimize_mode(self, optimize_mode)
        self.start_step = check_int(self, "start_step", start_step, minimum=0, hint="e.g. start_step: 5")
        self._high_better = optimize_mode == "maximize"
        self._running: dict[str, list[float]] = {}
        self._completed_avg: dict[str, list[float]] = {}

    def assess_trial(self, trial_job_id: str, trial_history: Sequence[Any]) -> AssessResult:
        history = [self._scalar(v) for v in trial_history]
        # Keep the results even before start_step: a trial that completes early must still count.
        self._running[trial_job_id] = history
        step = len(history)
        if step == 0 or step < self.start_step:
            return AssessResult.Good
        best = max(history) if self._high_better else min(history)
        averages = sorted(avg[step - 1] for avg in self._completed_avg.values() if len(avg) >= step)
        if not averages:
            return AssessResult.Good
        if self._high_better:
            median = averages[(len(averages) - 1) // 2]
            bad = best < median
        else:
            median = averages[len(averages) // 2]
            bad = best > median
        log.debug(
            "trial %s step %d: best %s vs median %s -> %s",
            trial_job_id,
            step,
            best,
            median,
            "Bad" if bad else "Good",
        )
        return AssessResult.Bad if bad else AssessResult.Good

    def trial_end(self, trial_job_id: str, success: bool) -> None:
        """A successful trial's running averages join the reference set; any other just leaves."""
        history = self._running.pop(trial_job_id, None)
        if history is None:
            log.debug("trial_end for %s, which reported no intermediate results", trial_job_id)
            return
        if success and history:
            total, averages = 0.0, []
            for i, v in enumerate(history, start=1):
                total += v
                averages.append(total / i)
            self._completed_avg[trial_job_id] = averages

    def _scalar(self, value: Any) -> float:
        x = extract_scalar(value)
        if math.isfinite(x):
            return x
        return -math.inf if self._high_better else math.inf
