"""NNI's ``Experiment`` query and update methods, answered from the store (a mixin of :class:`Experiment`).

Where NNI asks its manager's REST API, these read and write the store, which the running manager polls: the
answers are the same whether the experiment runs in this process, in a detached manager, or not at all.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from nni_pl.experiment import control
from nni_pl.experiment import store as st
from nni_pl.experiment.data import TrialJob, TrialMetricData, TrialResult, metric_data, trial_job

if TYPE_CHECKING:
    from nni_pl.experiment.config import ExperimentConfig
    from nni_pl.experiment.manager import Manager

logger = logging.getLogger("nni_pl.experiment.experiment")

_NAMES = ("trial_concurrency", "max_trial_number", "max_experiment_duration")  # how errors name the values


class _NniQueries:
    """``get_job_statistics`` ... ``update_search_space``: NNI 2.5's Python API over the store."""

    if TYPE_CHECKING:  # provided by Experiment
        config: ExperimentConfig
        _manager: Manager | None
        id: str
        store: st.Store

    # --- reading ------------------------------------------------------------------------------------------------
    def export_data(self) -> list[TrialResult]:
        """NNI's ``export_data()``: every trial with a final result, as :class:`TrialResult` (``.parameter``,
        ``.value``, ``.trialJobId``; they also read like the dicts ``{"parameter": ..., ...}``)."""
        return [
            TrialResult(parameter=t.parameters, value=t.final, trialJobId=t.trial_id)
            for t in self.store.list_trials(self.id)
            if t.final is not None
        ]

    def get_job_statistics(self) -> list[dict[str, Any]]:
        """How many trials are in each status: ``[{"trialJobStatus": "SUCCEEDED", "trialJobNumber": 8}, ...]``."""
        counts = self.store.count_trials(self.id)
        return [{"trialJobStatus": s, "trialJobNumber": n} for s, n in sorted(counts.items())]

    def get_job_metrics(self, trial_job_id: str | None = None) -> dict[str, list[TrialMetricData]]:
        """Every reported metric, by trial: ``{trial_id: [TrialMetricData, ...]}`` (of one trial when given).

        Raises:
            ExperimentNotFoundError: ``trial_job_id`` is not a trial of this experiment.
        """
        if trial_job_id is not None:
            trials = [self.store.get_trial(self.id, trial_job_id)]
        else:
            trials = self.store.list_trials(self.id)
        parameter_ids = {t.trial_id: t.parameter_id for t in trials}
        out: dict[str, list[TrialMetricData]] = {}
        for m in self.store.list_metrics(self.id, trial_job_id):
            if m.trial_id in parameter_ids:
                out.setdefault(m.trial_id, []).append(metric_data(m, parameter_ids[m.trial_id]))
        return out

    def list_trial_jobs(self) -> list[TrialJob]:
        """Every trial, as NNI's :class:`TrialJob` (status, parameters, times, final result, folder)."""
        finals: dict[str, list[st.MetricRow]] = {}
        for m in self.store.list_metrics(self.id, type="FINAL"):
            finals.setdefault(m.trial_id, []).append(m)
        return [trial_job(t, finals.get(t.trial_id, [])) for t in self.store.list_trials(self.id)]

    def get_trial_job(self, trial_job_id: str) -> TrialJob:
        """One trial, as NNI's :class:`TrialJob`.

        Raises:
            ExperimentNotFoundError: no such trial in this experiment.
        """
        t = self.store.get_trial(self.id, trial_job_id)
        return trial_job(t, self.store.list_metrics(self.id, t.trial_id, type="FINAL"))

    def get_experiment_profile(self) -> dict[str, Any]:
        """NNI's experiment profile: ``id``, ``revision``, ``execDuration`` (s), ``logDir``, ``nextSequenceId``,
        ``params`` (the v2 config, camelCase), ``startTime``/``endTime`` (ms) and ``status``."""
        exp = self.store.get_experiment(self.id)
        trials = self.store.list_trials(self.id)
        params = {k: v for k, v in exp.config.items() if k not in ("trialFunction", "trialFunctionImport")}
        return {
            "id": exp.id,
            "revision": exp.revision,
            "execDuration": int(exp.elapsed),
            "logDir": exp.directory,
            "nextSequenceId": 1 + max((t.sequence_id for t in trials), default=-1),
            "params": params,
            "startTime": round((exp.started_at or exp.created_at) * 1000),
            "endTime": None if exp.ended_at is None else round(exp.ended_at * 1000),
            "status": exp.status,
        }

    # --- steering ------------------------------------------------------------------------------------------------
    def update_trial_concurrency(self, value: int) -> None:
        """Run up to ``value`` trials at once from now on (the running manager applies it within a second)."""
        self._update(concurrency=value)

    def update_max_trial_number(self, value: int) -> None:
        """Stop creating trials once ``value`` have run (raise it to continue a finished experiment on resume)."""
        self._update(max_trials=value)

    def update_max_experiment_duration(self, value: str | float) -> None:
        """A new ``maxExperimentDuration``: ``'30m'``, ``'2h'``, ``'1d'`` or seconds."""
        self._update(duration=value)

    def update_search_space(self, value: Any) -> None:
        """A new search space (NNI's format); the running manager hands it to the tuner's ``update_search_space``.

        Raises:
            NniPlError: the space is invalid or the tuner cannot search it (the message names the parameter).
        """
        space = control.update_search_space(self.store, self.id, value)
        if self._manager is None:  # a manager in this process compares it with its own copy; leave that to it
            self.config.search_space = space
        logger.info("Successfully updated searchSpace")

    def kill_trial_job(self, trial_job_id: str) -> None:
        """Stop one trial (NNI's ``kill_trial_job``); it is recorded ``USER_CANCELED``."""
        from nni_pl.experiment import locate

        exp = self.store.get_experiment(self.id)
        control.kill_trial(self.store, self.id, trial_job_id, manager_alive=locate.manager_alive(exp))

    def _update(self, **values: Any) -> None:
        from nni_pl.experiment.config import parse_duration

        changes = control.update_limits(self.store, self.id, names=_NAMES, **values)
        stored = self.store.get_experiment(self.id).config
        self.config.trial_concurrency = int(stored.get("trialConcurrency", self.config.trial_concurrency))
        self.config.max_trial_number = stored.get("maxTrialNumber")
        self.config.max_experiment_duration = parse_duration(
            stored.get("maxExperimentDuration"), "maxExperimentDuration"
        )
        logger.info("Successfully updated %s", ", ".join(changes))
