"""The manager loop: tuner -> training service -> assessor, with the store as the record of everything.

One Python process runs the loop. Every state change is written to the store before the loop moves on,
and trial reports come from the trials' own durable ``metrics.jsonl`` files, so killing the manager at
any point loses nothing: ``resume`` rebuilds the tuner from the store and the trial folders.

What happens to trials when the manager stops:

* graceful stop (Ctrl-C, ``nni-pl stop``, SIGTERM): running trials are terminated; those without a final
  result are recorded ``USER_CANCELED`` and marked *requeue*: ``resume`` runs their parameters again as new
  trials, and they do not count towards ``maxTrialNumber``.
* the manager is killed (SIGKILL, a crash, a power cut of the terminal): trials keep running in their own
  process groups. ``resume`` re-attaches to those still running and records those that ended meanwhile
  from their exit code and metrics files. A trial that vanished without an exit code is recorded
  ``FAILED`` and its parameters are re-queued.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nni_pl._ids import random_id
from nni_pl.errors import NniPlError, NoMoreTrialError, WaitForResults
from nni_pl.experiment import store as st
from nni_pl.experiment.config import ExperimentConfig
from nni_pl.hpo import HistoryEntry, extract_scalar
from nni_pl.hpo.managed import CUSTOMIZED, ManagedAssessor, ManagedTuner, managed_assessor, managed_tuner
from nni_pl.training.service import TrainingService, TrialEnd, TrialJob
from nni_pl.trial import protocol

__all__ = ["Manager", "Snapshot"]

logger = logging.getLogger(__name__)
# a tuner's parameters as JSON (numpy values as numbers), without json.dumps building an encoder per call
_to_json: Callable[[Any], str] = json.JSONEncoder(default=protocol.json_default).encode

GRACEFUL_STOP_TIMEOUT = 300.0  # how long an assessor-stopped trial that stops by itself may take
STOP_GRACE = 10.0  # SIGTERM -> SIGKILL when the experiment stops
# How often a busy manager records where its new trials run and reads its running trials' reports. A turn that
# handles ended trials skips both within this interval: a trial's end and the next trial's start come first.
HOUSEKEEPING_INTERVAL = 0.1


@dataclass
class Snapshot:
    """What the live display shows; built from the manager's state without touching the store."""

    experiment_id: str
    status: str
    counts: dict[str, int]
    counted: int
    running: int
    max_trial_number: int | None
    elapsed: float
    max_duration: float | None
    best_value: Any = None
    best_params: dict[str, Any] | None = None
    best_trial: str | None = None
    message: str | None = None
    optimize_mode: str = "maximize"
    recent: list[st.TrialRow] = field(default_factory=list)


@dataclass
class _Pending:
    parameters: dict[str, Any]
    parameter_id: int | None
    source: str
    retry_of: str | None = None
    trial_id: str | None = None  # re-submit this existing (never started) trial


class Manager:
    """Runs one experiment until its limits are reached, its space is exhausted, or it is stopped.

    Args:
        store: the experiment store.
        experiment_id: the experiment's id (its row exists in the store).
        config: the validated config.
        directory: the experiment folder (``trials/`` lives in it).
        service: where trials run.
        tuner: the tuner (an advisor counts as one).
        assessor: the assessor, if any.
        resumed: reconcile with stored trials before starting.
        on_update: called with a :class:`Snapshot` a few times a second (the live display).
    """

    def __init__(
        self,
        *,
        store: st.Store,
        experiment_id: str,
        config: ExperimentConfig,
        directory: Path,
        service: TrainingService,
        tuner: Any,
        assessor: Any = None,
        resumed: bool = False,
        on_update: Callable[[Snapshot], None] | None = None,
        poll_interval: float = 0.25,
    ) -> None:
        self.store = store
        self.id = experiment_id
        self.config = config
        self.directory = Path(directory)
        self._trials_root = os.path.join(self.directory, "trials")  # as text: joined once per trial
        self.service = service
        # one contract for every kind of tuner and assessor (nni_pl.hpo.managed); wrapping twice is wrapping once
        self.tuner: ManagedTuner = managed_tuner(tuner)
        # an advisor (Hyperband, BOHB) judges running trials itself unless an assessor is configured
        self.assessor: ManagedAssessor | None = (
            managed_assessor(assessor) if assessor is not None else self.tuner.assessor_view()
        )
        self.waiting = False  # the tuner said WaitForResults: ask again when a trial ends
        self.resumed = resumed
        self.on_update = on_update
        self.poll_interval = poll_interval

        self.trials: dict[str, st.TrialRow] = {
            t.trial_id: t for t in store.list_trials(experiment_id) if not _unadopted(t)
        }
        self.jobs: dict[str, TrialJob] = {}  # what the service was handed, by trial id
        self._started: dict[str, dict[str, Any]] = {}  # launched, their RUNNING row not yet written
        self.histories: dict[str, list[float]] = {}
        self.pending: deque[_Pending] = deque()
        self.next_sequence_id = 1 + max((t.sequence_id for t in self.trials.values()), default=-1)
        self.next_parameter_id = 1 + max(
            (t.parameter_id for t in self.trials.values() if t.parameter_id is not None), default=-1
        )
        self.exhausted = False
        self.stopping = False
        self.stop_reason: str | None = None
        self.message: str | None = None
        exp = store.get_experiment(experiment_id)
        self.revision = exp.revision
        self.elapsed_before = exp.elapsed
        self.ran_before = exp.started_at is not None  # a fresh experiment is "started", not "resumed"
        self.session_start = time.time()
        self._space = config.search_space  # the space the tuner has; a stored new one replaces it
        self._last_sync = 0.0
        self._last_update = 0.0
        self._last_housekeeping = 0.0
        self._stopped_by_user: set[str] = set()
        self._requeued_cache: int | None = None
        self._spare_ids: list[str] = []  # ids whose trial folders are made already (_prepare_folders)

    # --- public --------------------------------------------------------------------------------------------------
    def request_stop(self, reason: str = "user") -> None:
        """Stop creating trials and end the run (safe to call from a signal handler)."""
        self.stopping = True
        self.stop_reason = self.stop_reason or reason

    def run(self) -> str:
        """Run to the end; returns the experiment's final status (DONE, STOPPED or ERROR)."""
        self.store.update_experiment(
            self.id, status=st.EXP_RUNNING, started_at=self.session_start, ended_at=None, message=None
        )
        status = st.EXP_ERROR
        try:
            self._start()
            while True:
                if self.stopping:
                    status = st.EXP_STOPPED
                    break
                timeout = 0.0 if self._can_schedule_now() else self.poll_interval
                ends = self.service.poll(timeout)
                now = time.monotonic()
                housekeeping = not ends or now - self._last_housekeeping >= HOUSEKEEPING_INTERVAL
                # One store transaction per turn: the trials that ended, their metrics, and the rows of the trials
                # that start next are committed together (a row is committed before its trial is started).
                with self.store.batch():
                    if housekeeping:
                        self._last_housekeeping = now
                        self._flush_started()
                        self._ingest_running()
                    for end in ends:
                        self._finish(end)
                    self._check_timeouts()
                    self._sync_from_store()
                    done = self._done()
                    planned = [] if done else self._plan()
                if done:
                    status = st.EXP_DONE
                    break
                self._launch(planned)
                self._prepare_folders()
                self._update_display()
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                status = st.EXP_STOPPED
                self.message = "stopped by Ctrl-C"
            else:
                status = st.EXP_ERROR
                self.message = f"{type(e).__name__}: {e}"
                logger.exception("the experiment manager failed")
            raise
        finally:
            self._shutdown(status)
        return status

    # --- start / resume ------------------------------------------------------------------------------------------
    def _job(self, t: st.TrialRow) -> TrialJob:
        job = self.jobs.get(t.trial_id)
        if job is None or job.sequence_id != t.sequence_id or job.parameter_id != t.parameter_id:
            job = self.jobs[t.trial_id] = TrialJob(
                self.id,
                t.trial_id,
                t.sequence_id,
                t.parameter_id,
                t.parameter_source,
                t.parameters,
                Path(t.trial_dir),
            )
        return job

    def _start(self) -> None:
        space = self.config.search_space
        resubmit: list[st.TrialRow] = []
        if self.resumed:
            with self.store.batch():
                resubmit = self._reconcile()
        self.tuner.start(experiment_id=self.id, directory=self.directory, space=space)
        if self.resumed and self.trials:
            self._resume_algorithms()
        for t in resubmit:
            self.pending.append(
                _Pending(t.parameters, t.parameter_id, t.parameter_source, t.retry_of, trial_id=t.trial_id)
            )
        retried = {t.retry_of for t in self.trials.values() if t.retry_of}
        for t in sorted(self.trials.values(), key=lambda t: t.sequence_id):
            if t.requeue and t.trial_id not in retried:
                self.pending.append(
                    _Pending(t.parameters, t.parameter_id, t.parameter_source, retry_of=t.trial_id)
                )
        self._adopt(self.store.list_trials(self.id, statuses=[st.WAITING]))
        if self.resumed and (self.ran_before or self.trials):
            logger.info("experiment %s resumed (%d stored trials)", self.id, len(self.trials))
        else:
            logger.info("experiment %s started", self.id)

    def _reconcile(self) -> list[st.TrialRow]:
        """Bring unfinished stored trials up to date from their folders; returns those never started."""
        never_started = []
        for t in sorted(self.trials.values(), key=lambda t: t.sequence_id):
            if t.finished:
                continue
            job = self._job(t)
            gpus = [int(g) for g in t.gpu_indices.split(",") if g] if t.gpu_indices else None
            result = self.service.reattach(job, t.pid, t.pid_started_at, gpus)
            if result is True:
                self._store_metrics(t, self.service.read_metrics(job), notify=False)
                self._set(t, status=st.RUNNING)
                logger.info("re-attached to running trial %s (pid %s)", t.trial_id, t.pid)
            elif result is False:
                never_started.append(t)
            else:
                self._finish(result, notify=False)
        return never_started

    def _resume_algorithms(self) -> None:
        history = []
        for t in sorted(self.trials.values(), key=lambda t: t.sequence_id):
            if t.parameter_source == CUSTOMIZED:
                # a user-added trial: its result is learnt (as it was live), but it is no suggestion of the
                # tuner's, so it carries no parameter id and is never pending
                if t.finished and t.final is not None:
                    history.append(HistoryEntry(None, t.parameters, t.final, True, CUSTOMIZED))
                continue
            history.append(
                HistoryEntry(
                    t.parameter_id, t.parameters, t.final, t.finished and not t.requeue, t.parameter_source
                )
            )
        self.tuner.resume(history)
        if self.assessor is not None:
            periodical: dict[str, list[float]] = {}
            for m in self.store.list_metrics(self.id, type="PERIODICAL"):
                periodical.setdefault(m.trial_id, []).append(extract_scalar(m.value))
            self.histories.update(periodical)
            records = []
            for t in sorted(self.trials.values(), key=lambda t: t.sequence_id):
                if t.trial_id in periodical:
                    success = None if not t.finished else t.status == st.SUCCEEDED
                    records.append((t.trial_id, periodical[t.trial_id], success))
            self.assessor.resume(records)

    # --- scheduling ----------------------------------------------------------------------------------------------
    def _counted(self) -> int:
        """Trials that count towards maxTrialNumber (a re-queued interrupted trial does not)."""
        return len(self.trials) - self._requeued

    @property
    def _requeued(self) -> int:
        # kept incrementally: _counted() runs before every scheduling decision
        if self._requeued_cache is None:
            self._requeued_cache = sum(1 for t in self.trials.values() if t.requeue)
        return self._requeued_cache

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.time() - self.session_start)

    def _may_create(self) -> bool:
        cfg = self.config
        if self.stopping:
            return False
        if cfg.max_experiment_duration is not None and self._elapsed() >= cfg.max_experiment_duration:
            return False
        if self.pending:
            return True
        if cfg.max_trial_number is not None and self._counted() >= cfg.max_trial_number:
            return False
        return not self.exhausted

    def _can_schedule_now(self) -> bool:
        if self.waiting and not self.pending:
            return False
        return self._may_create() and self.service.free_slots() > 0

    def _next(self, planned: int = 0) -> _Pending | None:
        """The next trial to start (``planned``: trials chosen this turn that are not started yet)."""
        if self.pending:
            return self.pending.popleft()
        if self.waiting:
            return None
        pid = self.next_parameter_id
        try:
            params = self.tuner.generate(pid)
        except WaitForResults:
            if not self.service.running() and not planned:
                raise NniPlError(
                    f"the tuner {self.tuner.name} waits for results, but no trial is running"
                ) from None
            self.waiting = True
            return None
        except NoMoreTrialError:
            self.exhausted = True
            logger.info("the tuner has no more parameters: the search space is exhausted")
            return None
        self.next_parameter_id += 1
        return _Pending(json.loads(_to_json(params)), pid, "algorithm")

    def _new_trial_id(self) -> str:
        while self._spare_ids:  # a folder made between turns
            tid = self._spare_ids.pop()
            if tid not in self.trials:
                return tid
        return self._random_trial_id()

    def _random_trial_id(self) -> str:
        while True:
            tid = random_id(5)
            if tid not in self.trials and tid not in self._spare_ids:
                return tid

    def _plan(self) -> list[st.TrialRow]:
        """The trials to start now, each recorded in the store (new ones as WAITING rows) before it is started."""
        planned: list[st.TrialRow] = []
        free = self.service.free_slots()
        while len(planned) < free and self._may_create():
            item = self._next(len(planned))
            if item is None:
                break
            if item.trial_id is not None:
                t = self.trials[item.trial_id]
                if t.finished or t.stop_requested == "user":
                    continue
            else:
                tid = self._new_trial_id()
                t = st.TrialRow(
                    experiment_id=self.id,
                    trial_id=tid,
                    sequence_id=self.next_sequence_id,
                    parameter_id=item.parameter_id,
                    parameters=item.parameters,
                    trial_dir=os.path.join(self._trials_root, tid),
                    parameter_source=item.source,
                    status=st.WAITING,
                    submitted_at=time.time(),
                    retry_of=item.retry_of,
                )
                self.next_sequence_id += 1
                self.store.add_trial(t)  # recorded before it exists anywhere else
                self.trials[tid] = t
            planned.append(t)
        return planned

    def _launch(self, planned: list[st.TrialRow]) -> None:
        """Start the planned trials (their rows are committed). Where each runs is recorded with a later turn's
        transaction (the next housekeeping, or the trial's end if that comes first: one write then); a manager
        that dies before that finds the trial again from its folder's ``.nni/pid``."""
        for t in planned:
            if self.stopping:  # left WAITING, never started: resume runs them
                return
            job = self._job(t)
            # in place: a trial that never started is submitted again, file and all, on resume
            protocol.write_parameter_file(job.trial_dir, job.parameter_record(), in_place=True)
            info = self.service.submit(job)
            values = {
                "status": st.RUNNING,
                "started_at": info.started_at,
                "pid": info.pid,
                "pid_started_at": info.pid_started_at,
                "host": info.host,
                "platform": info.platform or self.service.platform,
                "gpu_indices": ",".join(map(str, info.gpu_indices)) if info.gpu_indices is not None else None,
            }
            for k, v in values.items():
                setattr(t, k, v)
            self._started[t.trial_id] = values
            logger.info(
                "trial %s (#%d) started: %s", t.trial_id, t.sequence_id, json.dumps(t.parameters)[:300]
            )

    def _prepare_folders(self) -> None:
        """Make the folder of a trial to come, between turns: off the way from one trial's end to the next's start.

        Up to ``trialConcurrency`` such folders wait (one is made per turn); :meth:`_shutdown` removes those left
        unused. A manager killed meanwhile leaves them empty (a folder and its ``.nni/``) and in no record.
        """
        if len(self._spare_ids) >= self.config.trial_concurrency or not self._may_create():
            return
        tid = self._random_trial_id()
        protocol.make_trial_dir(os.path.join(self._trials_root, tid))
        self._spare_ids.append(tid)

    def _remove_spare_folders(self) -> None:
        spare, self._spare_ids = self._spare_ids, []
        for tid in spare:
            folder = Path(self._trials_root, tid)
            try:
                (folder / protocol.CONTROL_DIR).rmdir()
                folder.rmdir()
            except OSError:  # something was put there meanwhile: leave it
                pass

    def _flush_started(self) -> None:
        """Record where the trials launched since the last housekeeping run (before anything else is written of them)."""
        started, self._started = self._started, {}
        for trial_id, values in started.items():
            self.store.update_trial(self.id, trial_id, **values)

    # --- metrics and verdicts --------------------------------------------------------------------------------------
    def _set(self, t: st.TrialRow, **values: Any) -> None:
        self.store.update_trial(self.id, t.trial_id, **values)
        for k, v in values.items():
            setattr(t, k, v)

    def _ingest_running(self) -> None:
        for tid in list(self.service.running()):
            t = self.trials.get(tid)
            if t is not None:
                self._store_metrics(t, self.service.read_metrics(self._job(t)))

    def _store_metrics(
        self, t: st.TrialRow, records: list[dict[str, Any]], *, notify: bool = True, update_row: bool = True
    ) -> None:
        """Store new reports and act on them. ``update_row=False``: the caller writes the row's result fields
        (``intermediate_count``, ``final``, ``final_default``) from ``t`` in this transaction."""
        if not records:
            return
        new = self.store.add_metrics(self.id, t.trial_id, records, update_trial=update_row)
        for m in new:
            if m.type == "PERIODICAL":
                t.intermediate_count += 1
                history = self.histories.setdefault(t.trial_id, [])
                history.append(extract_scalar(m.value))
                if notify and self.assessor is not None and not t.stop_requested:
                    if self.assessor.should_stop(t.trial_id, list(history), parameter_id=t.parameter_id):
                        logger.info("assessor: stop trial %s after %d results", t.trial_id, len(history))
                        self._stop_trial(t, "assessor")
            elif m.type == "FINAL" and t.final is None:
                t.final = m.value
                t.final_default = m.default
                if notify:
                    self._tell_tuner(t, m.value)
                    self.waiting = False  # a result may be what a waiting tuner needs

    def _tell_tuner(self, t: st.TrialRow, value: Any) -> None:
        if t.parameter_id is None:
            return
        self.tuner.receive(
            t.parameter_id,
            t.parameters,
            value,
            trial_id=t.trial_id,
            customized=t.parameter_source == CUSTOMIZED,
        )

    def _stop_trial(self, t: st.TrialRow, reason: str) -> None:
        self._set(t, stop_requested=reason)
        if reason == "assessor":
            self.service.request_stop(t.trial_id, Path(t.trial_dir), graceful_timeout=GRACEFUL_STOP_TIMEOUT)
        else:
            self.service.terminate(t.trial_id, grace=STOP_GRACE)

    def _finish(self, end: TrialEnd, *, notify: bool = True) -> None:
        t = self.trials[end.trial_id]
        self.waiting = False
        job = self._job(t)
        # the last reports; the row's result fields go with the end's write below
        self._store_metrics(t, self.service.read_metrics(job), notify=notify, update_row=False)
        self.service.cleanup(job)
        self.jobs.pop(t.trial_id, None)
        has_final = t.final is not None
        requeue = False
        reason = t.stop_requested
        if reason == "assessor":
            status = st.EARLY_STOPPED
        elif reason == "timeout":
            status = st.TIMEOUT
        elif reason == "user":
            status = st.USER_CANCELED
        elif end.exit_code == 0:
            status = st.SUCCEEDED
        elif reason == "experiment":
            status, requeue = st.USER_CANCELED, not has_final
        else:
            status = st.FAILED
            requeue = end.exit_code is None and not has_final  # lost while no manager watched: run it again
        if end.requeue is not None and status == st.FAILED:  # the service says (e.g. its host failed)
            requeue = end.requeue and not has_final
        values = self._started.pop(t.trial_id, {})  # where it ran, if not recorded yet: one write for all
        values.update(
            intermediate_count=t.intermediate_count,
            final=t.final,
            final_default=t.final_default,
            status=status,
            ended_at=end.ended_at,
            exit_code=end.exit_code,
            error=end.error if status != st.SUCCEEDED else None,
            requeue=requeue,
        )
        self._set(t, **values)
        if requeue:
            self._requeued_cache = None
            if end.requeue and notify:  # run it again now, not only on resume
                self.pending.append(
                    _Pending(t.parameters, t.parameter_id, t.parameter_source, retry_of=t.trial_id)
                )
        if status == st.SUCCEEDED and not has_final:
            logger.warning(
                "trial %s succeeded without reporting a final result (call report_final_result)", t.trial_id
            )
        elif status == st.FAILED:
            logger.warning(
                "trial %s failed (exit code %s): %s", t.trial_id, end.exit_code, (end.error or "")[-500:]
            )
        else:
            logger.info("trial %s ended: %s", t.trial_id, status)
        if not notify:
            return
        algo = self.config.tuner or self.config.advisor
        history = self.histories.get(t.trial_id)
        if (
            not has_final
            and history
            and algo is not None
            and algo.include_intermediate_results
            and status == st.EARLY_STOPPED
        ):
            self._tell_tuner(t, history[-1])
        if t.parameter_source != CUSTOMIZED and t.parameter_id is not None:
            self.tuner.trial_end(t.parameter_id, status == st.SUCCEEDED, trial_id=t.trial_id, status=status)
        if self.assessor is not None:
            self.assessor.trial_end(t.trial_id, status == st.SUCCEEDED)

    def _check_timeouts(self) -> None:
        limit = self.config.max_trial_duration
        if limit is None:
            return
        now = time.time()
        for tid in self.service.running():
            t = self.trials[tid]
            if t.started_at is not None and not t.stop_requested and now - t.started_at > limit:
                logger.info("trial %s exceeded maxTrialDuration (%.0f s); stopping it", tid, limit)
                self._stop_trial(t, "timeout")

    # --- what changes from outside (CLI, dashboard) ------------------------------------------------------------------
    def _sync_from_store(self) -> None:
        now = time.time()
        if now - self._last_sync < 0.5:
            return
        self._last_sync = now
        exp = self.store.get_experiment(self.id)
        if (
            exp.status == st.EXP_STOPPED
            and not self.stopping
            and exp.ended_at is not None
            and exp.ended_at >= self.session_start
        ):
            # `nni-pl stop` found no manager to signal (it ran before this one wrote its pid, or on another host)
            # and recorded the stop in the store: honour it
            logger.info("stop requested through the store")
            self.request_stop("user")
        if exp.revision != self.revision:
            self.revision = exp.revision
            self._apply_live_config(exp.config)
        unfinished = self.store.list_trials(self.id, statuses=[st.RUNNING, st.WAITING])
        for t in unfinished:
            if t.stop_requested == "user" and t.trial_id not in self._stopped_by_user:
                self._stopped_by_user.add(t.trial_id)
                mine = self.trials.get(t.trial_id)
                if mine is None:
                    continue
                mine.stop_requested = "user"
                logger.info("trial %s killed by the user", t.trial_id)
                if t.trial_id in self.service.running():
                    self.service.terminate(t.trial_id, grace=STOP_GRACE)
                elif not mine.finished:  # still queued: it never starts
                    self._cancel_pending(mine)
        self._adopt([t for t in unfinished if t.status == st.WAITING])
        self.store.update_experiment(self.id, elapsed=self._elapsed())

    def _adopt(self, waiting: list[st.TrialRow]) -> None:
        """Queue the customised trials a user added (``nni-pl trial add``, the dashboard) since the last look.

        They run before the tuner is asked for more, get the next sequence id and a parameter id of their own,
        and count towards ``maxTrialNumber``.
        """
        for t in sorted(waiting, key=lambda t: (t.submitted_at or 0.0, t.trial_id)):
            if not _unadopted(t) or t.trial_id in self.trials:
                continue
            if t.stop_requested == "user":
                self._set(t, status=st.USER_CANCELED, ended_at=time.time())
                continue
            self._set(t, sequence_id=self.next_sequence_id, parameter_id=self.next_parameter_id)
            self.next_sequence_id += 1
            self.next_parameter_id += 1
            self.trials[t.trial_id] = t
            self.pending.append(_Pending(t.parameters, t.parameter_id, CUSTOMIZED, trial_id=t.trial_id))
            logger.info(
                "customised trial %s (#%d) queued: %s",
                t.trial_id,
                t.sequence_id,
                json.dumps(t.parameters)[:300],
            )

    def _cancel_pending(self, t: st.TrialRow) -> None:
        self.pending = deque(p for p in self.pending if p.trial_id != t.trial_id)
        self._set(t, status=st.USER_CANCELED, ended_at=time.time())

    def _apply_live_config(self, stored: dict[str, Any]) -> None:
        from nni_pl.experiment.config import parse_duration

        cfg = self.config
        cfg.trial_concurrency = int(stored.get("trialConcurrency", cfg.trial_concurrency))
        cfg.max_trial_number = stored.get("maxTrialNumber")
        cfg.max_experiment_duration = parse_duration(
            stored.get("maxExperimentDuration"), "maxExperimentDuration"
        )
        self.service.set_concurrency(cfg.trial_concurrency)
        if stored.get("searchSpace") is not None:
            self._apply_search_space(stored["searchSpace"])
        logger.info(
            "live config update: trialConcurrency=%s maxTrialNumber=%s maxExperimentDuration=%s",
            cfg.trial_concurrency,
            cfg.max_trial_number,
            stored.get("maxExperimentDuration"),
        )

    def _apply_search_space(self, stored: Any) -> None:
        """A new search space from ``control.update_search_space``: the tuner gets it (NNI's ``update_search_space``)."""
        from nni_pl.space import FreeFormSpace, SearchSpace

        # the tuner does not change during a run: a free-form space is replaced by another one
        space = FreeFormSpace(stored) if isinstance(self._space, FreeFormSpace) else SearchSpace.parse(stored)
        if space == self._space:
            return
        self._space = self.config.search_space = space
        self.tuner.update_search_space(space)
        self.exhausted = False  # a new space may hold configurations the old one did not
        logger.info("search space updated: %s", json.dumps(space.to_json())[:300])

    # --- the end ---------------------------------------------------------------------------------------------------
    def _done(self) -> bool:
        if self.stopping:  # a stop asked for meanwhile: the loop ends STOPPED, not DONE
            return False
        if self.service.running() or self._may_create():
            return False
        cfg = self.config
        if self.exhausted and not self.pending:
            self.message = "the search space is exhausted"
        elif cfg.max_experiment_duration is not None and self._elapsed() >= cfg.max_experiment_duration:
            self.message = "maxExperimentDuration reached"
        else:
            self.message = "maxTrialNumber reached"
        return True

    def _shutdown(self, status: str) -> None:
        try:
            self._flush_started()
            running = list(self.service.running())
            for tid in running:
                t = self.trials[tid]
                if not t.stop_requested:
                    self._set(t, stop_requested="experiment")
                self.service.terminate(tid, grace=STOP_GRACE)
            deadline = time.time() + STOP_GRACE + 5
            while True:  # poll at least once: a service may end a trial at terminate() (not running any more)
                for end in self.service.poll(0.1 if self.service.running() else 0.0):
                    self._finish(end)
                if not self.service.running() or time.time() >= deadline:
                    break
            if self.service.running():
                logger.warning(
                    "trials %s did not end; `nni-pl resume` will re-attach to them",
                    sorted(self.service.running()),
                )
        finally:
            self._remove_spare_folders()
            self.service.shutdown()
            if status == st.EXP_STOPPED and not self.message:
                self.message = "stopped by the user"
            self.store.update_experiment(
                self.id,
                status=status,
                ended_at=time.time(),
                message=self.message,
                manager_pid=None,
                elapsed=self._elapsed(),
            )
            self._update_display(force=True, status=status)
            logger.info("experiment %s %s: %s", self.id, status, self.message)

    # --- display -------------------------------------------------------------------------------------------------------
    def snapshot(self, status: str = st.EXP_RUNNING) -> Snapshot:
        counts: dict[str, int] = {}
        for t in self.trials.values():
            counts[t.status] = counts.get(t.status, 0) + 1
        mode = self.config.optimize_mode
        best = None
        for t in self.trials.values():
            v = t.final_default
            if v is None or not math.isfinite(v):
                continue
            if best is None or (v > best.final_default if mode == "maximize" else v < best.final_default):
                best = t
        recent = sorted(self.trials.values(), key=lambda t: t.sequence_id)[-8:]
        return Snapshot(
            experiment_id=self.id,
            status=status,
            counts=counts,
            counted=self._counted(),
            running=len(self.service.running()),
            max_trial_number=self.config.max_trial_number,
            elapsed=self._elapsed(),
            max_duration=self.config.max_experiment_duration,
            best_value=best.final if best else None,
            best_params=best.parameters if best else None,
            best_trial=best.trial_id if best else None,
            message=self.message,
            optimize_mode=mode,
            recent=recent,
        )

    def _update_display(self, *, force: bool = False, status: str = st.EXP_RUNNING) -> None:
        if self.on_update is None:
            return
        now = time.time()
        if not force and now - self._last_update < 0.25:
            return
        self._last_update = now
        try:
            self.on_update(self.snapshot(status))
        except Exception:  # a display problem must never stop an experiment
            logger.debug("display update failed", exc_info=True)


def _unadopted(t: st.TrialRow) -> bool:
    """A customised trial recorded by ``control.add_trial`` that no manager has taken up yet."""
    return t.sequence_id < 0 and t.status == st.WAITING and t.parameter_source == CUSTOMIZED
