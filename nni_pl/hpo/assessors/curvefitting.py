"""Learning-curve extrapolation (NNI's ``Curvefitting`` assessor): stop a trial whose predicted final
value falls short of the best final value seen so far."""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from nni_pl._checks import check_int, check_number, check_optimize_mode, check_seed, fail
from nni_pl.hpo._base import Assessor, AssessResult, extract_scalar
from nni_pl.hpo.assessors._curves import predict_final

__all__ = ["CurvefittingAssessor"]

log = logging.getLogger(__name__)


class CurvefittingAssessor(Assessor):
    """Predicts each trial's value at ``epoch_num`` from its learning curve and stops hopeless ones.

    NNI's LPA algorithm (learn, predict, assess). At each judgement the trial's intermediate results
    (epochs ``1..S``) are fitted by the twelve parametric learning-curve families of NNI (pow3, linear,
    logx_linear, dr_hill_zero_background, log_power, pow4, mmf, exp4, ilog2, weibull, janoschek, vap)
    by least squares; poor fits and outlying extrapolations are dropped; the rest are combined
    linearly with weights sampled by MCMC; the combination predicts the value at epoch ``epoch_num``.
    The verdict is:

    * ``Good`` before ``start_step`` results, off the judgement grid (``start_step``,
      ``start_step + gap``, ``start_step + 2 * gap``, ...), while no trial has completed successfully,
      or when the fit does not converge (fewer than four families agree: "wait for more data");
    * ``Good`` if the prediction is strictly greater than ``threshold`` times the best final value of
      the successfully completed trials (a trial's final value is its last intermediate result, as in
      NNI), ``Bad`` otherwise;
    * ``Bad`` at a judgement step whose latest result is NaN or infinite (a diverged run).

    Deviations from NNI 2.5, all deliberate:

    * the best final value is kept per trial (NNI takes the last history it happened to see, whichever
      trial it belonged to);
    * ``ilog2`` is ``c - a / log(x + 1)``: NNI's ``log(x)`` is infinite at epoch 1, so it never fitted;
    * a family whose fit fails is left out (NNI reuses parameters of an earlier fit, kept in a
      module-level dict);
    * outliers are judged on the predictions at ``epoch_num`` (NNI takes the median and spread of the
      predictions at the last observed epoch and compares the ones at ``epoch_num`` with them);
    * the likelihood is the exact Gaussian one, in log space (NNI's product of densities underflows);
    * NaN/inf results are left out of the fit (NNI's fit raises on them);
    * a negative best is scaled towards zero, ``best - (1 - threshold) * |best|``, which equals
      ``threshold * best`` for the positive metrics NNI assumes;
    * judgements are reproducible: the MCMC of a judgement is seeded by ``(seed, trial id, step)``,
      independent of the order in which concurrent trials were judged.

    NNI's MCMC size is kept (20 rounds of 10 chains, step 0.0005, vectorised: under a millisecond).
    With that step the weights stay close to uniform, so the prediction is nearly the mean of the
    surviving families; a much longer chain (2,000 rounds, step 0.02) changed the mean absolute error
    of predictions on synthetic curves by under 0.005, so NNI's settings stay. A judgement takes tens
    of milliseconds, nearly all of it in the twelve least-squares fits.

    Only ``optimize_mode="maximize"`` is supported, as in NNI: the curve families are increasing and
    saturating (accuracy-like), and negating a loss does not make it one of them.

    Args:
        epoch_num: the number of intermediate results a full trial reports; the epoch to predict.
        start_step: judge a trial only once it has reported this many results.
        threshold: stop a trial whose prediction is at most ``threshold`` times the best final value.
        gap: judge every ``gap`` results after ``start_step``.
        optimize_mode: must be ``"maximize"``.
        seed: seed of the MCMC sampling (``None``: a fresh one per assessor).

    Example:
        >>> a = CurvefittingAssessor(epoch_num=20, start_step=6, seed=0)
        >>> good = [0.5, 0.7, 0.8, 0.85, 0.88, 0.9, 0.91, 0.915, 0.92, 0.922]
        >>> for n in range(1, len(good) + 1):
        ...     _ = a.assess_trial("A", good[:n])
        >>> a.trial_end("A", success=True)           # best final value: 0.922
        >>> a.assess_trial("B", [0.1, 0.15, 0.18, 0.2, 0.21, 0.215])
        <AssessResult.Bad: False>
        >>> a.assess_trial("C", [0.5, 0.72, 0.8, 0.86, 0.88, 0.9])
        <AssessResult.Good: True>
    """

    def __init__(
        self,
        epoch_num: int = 20,
        start_step: int = 6,
        threshold: float = 0.95,
        gap: int = 1,
        *,
        optimize_mode: str = "maximize",
        seed: int | None = None,
    ) -> None:
        self.epoch_num = check_int(self, "epoch_num", epoch_num, minimum=1)
        self.start_step = check_int(self, "start_step", start_step, minimum=0)
        self.threshold = check_number(
            self,
            "threshold",
            threshold,
            low=0,
            low_open=True,
            hint="e.g. threshold: 0.95 stops trials predicted below 95% of the best final value",
        )
        self.gap = check_int(self, "gap", gap, minimum=1)
        check_optimize_mode(self, optimize_mode)
        if optimize_mode != "maximize":
            fail(
                self,
                "optimize_mode",
                f"Curvefitting supports only 'maximize', got {optimize_mode!r}: its curve models are "
                "increasing, saturating learning curves (as in NNI). Report a metric to maximise (such as "
                "accuracy) or use the Medianstop or ASHA assessor, which support 'minimize'",
            )
        self.optimize_mode = optimize_mode
        self.seed = check_seed(self, seed)
        if self.start_step > self.epoch_num:
            log.warning(
                "Curvefitting: start_step %d > epoch_num %d, so trials of %d epochs are never judged",
                self.start_step,
                self.epoch_num,
                self.epoch_num,
            )
        self._base_seed = (
            self.seed if self.seed is not None else int(np.random.SeedSequence().entropy % 2**63)
        )
        self._best_final: float | None = None
        self._latest: dict[str, float] = {}  # running trial -> its latest result
        self._seen: dict[str, int] = {}  # running trial -> the history length at its previous call
        #: seconds spent on the latest judgement that fitted curves (for benchmarks and logs)
        self.last_judgement_seconds = 0.0

    @property
    def best_final(self) -> float | None:
        """The best final value of the successfully completed trials (``None`` before the first)."""
        return self._best_final

    def _due(self, previous: int, current: int) -> bool:
        """Whether a judgement step (``start_step + k * gap``) lies in ``(previous, current]``."""
        if current < max(self.start_step, 1):
            return False
        last_due = self.start_step + (current - self.start_step) // self.gap * self.gap
        return last_due > previous

    def assess_trial(self, trial_job_id: str, trial_history: Sequence[Any]) -> AssessResult:
        history = [extract_scalar(v) for v in trial_history]
        step = len(history)
        previous = self._seen.get(trial_job_id, 0)
        self._seen[trial_job_id] = max(previous, step)
        if step:
            self._latest[trial_job_id] = history[-1]
        if self._best_final is None or not self._due(previous, step):
            return AssessResult.Good
        if not math.isfinite(history[-1]):
            log.info("Curvefitting: trial %s diverged (latest result %s) -> Bad", trial_job_id, history[-1])
            return AssessResult.Bad
        rng = np.random.default_rng([self._base_seed, zlib.crc32(str(trial_job_id).encode()), step])
        start = time.perf_counter()
        prediction = predict_final(history, self.epoch_num, rng)
        self.last_judgement_seconds = time.perf_counter() - start
        if prediction.value is None:
            log.debug(
                "Curvefitting: trial %s step %d: no convergence (%d families agree) -> Good",
                trial_job_id,
                step,
                len(prediction.models),
            )
            return AssessResult.Good
        best = self._best_final
        standard = best - (1.0 - self.threshold) * abs(best)
        verdict = AssessResult.Good if prediction.value > standard else AssessResult.Bad
        log.debug(
            "Curvefitting: trial %s step %d: predicted %.4g at epoch %d vs %.4g (best %.4g) -> %s in %.3f s",
            trial_job_id,
            step,
            prediction.value,
            self.epoch_num,
            standard,
            best,
            verdict.name,
            self.last_judgement_seconds,
        )
        return verdict

    def trial_end(self, trial_job_id: str, success: bool) -> None:
        """A successful trial's last intermediate result becomes a candidate for the best final value."""
        self._seen.pop(trial_job_id, None)
        last = self._latest.pop(trial_job_id, None)
        if success and last is not None:
            self._record_final(last)
            log.debug(
                "Curvefitting: trial %s completed with %s; best %s", trial_job_id, last, self._best_final
            )

    def resume(self, histories: Sequence[tuple[str, list[float], bool | None]]) -> None:
        """Rebuild the best final value and the running trials' positions without refitting any curve."""
        for trial_id, history, success in histories:
            values = [extract_scalar(v) for v in history]
            if success is None:
                if values:
                    self._latest[trial_id] = values[-1]
                    self._seen[trial_id] = len(values)
            elif success and values:
                self._record_final(values[-1])

    def _record_final(self, value: float) -> None:
        if math.isfinite(value) and (self._best_final is None or value > self._best_final):
            self._best_final = value
