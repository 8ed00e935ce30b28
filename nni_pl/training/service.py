"""The training-service contract: what the manager asks of whatever runs its trials.

A training service starts trials somewhere (local process groups, warm Python workers, merged CGO
processes, SSH hosts, a cluster) and tells the manager when they end. It speaks the trial-directory
protocol of :mod:`nni_pl.trial.protocol` with its trials; the manager speaks this interface with it. The
manager is the only caller, always from one thread, in this order:

1. ``free_slots()`` says how many trials may start now (concurrency and, where trials need GPUs, free
   GPUs); ``set_concurrency(n)`` applies a live edit of ``trialConcurrency``.
2. ``submit(job)`` starts a trial whose directory and ``parameter.json`` exist already; it returns a
   :class:`SubmitInfo` (where it runs), which the manager records before it moves on.
3. ``poll(timeout)`` waits up to ``timeout`` seconds and returns a :class:`TrialEnd` for every trial that
   ended; ``running()`` names the trials still running.
4. ``read_metrics(job)`` returns the trial's new complete metric records (``{"seq", "type", "value",
   "time"}``), while it runs and once more after it ended. The default reads ``metrics.jsonl`` in the
   trial directory (a local or shared file system); a service whose trials write elsewhere fetches the new
   lines. Records may come again (after a restart, say): the store keeps each ``seq`` of a trial once.
5. ``request_stop(job, graceful_timeout=...)`` asks a trial to end early (the assessor's verdict): it writes
   the stop file and gives a trial that declared a graceful stop that long before ``terminate``;
   ``terminate(trial_id, grace=...)`` ends the trial's whole process tree now (SIGTERM, SIGKILL after
   ``grace`` seconds). Either way the trial is reported by a later ``poll``.
6. ``cleanup(job)`` runs once a trial has ended and its metrics were read for the last time;
   ``shutdown()`` releases the service when the experiment ends (running trials were terminated first);
   ``hand_over()`` instead when the service only checked the platform for a detached manager.
7. After a crash of the manager, a new service's ``reattach(job, pid, pid_started_at, gpu_indices)`` picks
   up each unfinished trial: a :class:`TrialEnd` if it ended meanwhile, ``True`` if it still runs (and is
   tracked again, with its GPUs), ``False`` if it never started (the manager submits it again). A service
   whose trials cannot outlive the manager (``reattaches_trials = False``) ends a trial that still runs and
   returns a :class:`TrialEnd` with ``exit_code=None``: the manager records it FAILED and runs it again.

``nni_pl.testing.TrainingServiceTestCase`` checks a service against this contract; every built-in passes it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nni_pl.trial import protocol

__all__ = ["SubmitInfo", "TrainingService", "TrialEnd", "TrialJob"]


@dataclass
class TrialJob:
    """A trial as the manager hands it to a training service."""

    experiment_id: str
    trial_id: str
    sequence_id: int
    parameter_id: int | None
    parameter_source: str
    parameters: dict[str, Any]
    trial_dir: Path

    @property
    def control_dir(self) -> Path:
        return self.trial_dir / protocol.CONTROL_DIR

    def parameter_record(self) -> dict[str, Any]:
        """What ``parameter.json`` holds for this trial (:func:`nni_pl.trial.protocol.write_parameter_file`)."""
        return {
            "parameter_id": self.parameter_id,
            "parameter_source": self.parameter_source,
            "parameters": self.parameters,
            "experiment_id": self.experiment_id,
            "trial_id": self.trial_id,
            "sequence_id": self.sequence_id,
        }

    def environment(self, platform: str) -> dict[str, str]:
        """The environment variables this trial starts with (:func:`nni_pl.trial.protocol.trial_environment`)."""
        return protocol.trial_environment(
            platform=platform,
            experiment_id=self.experiment_id,
            trial_id=self.trial_id,
            sequence_id=self.sequence_id,
            trial_dir=self.trial_dir,
        )


@dataclass
class SubmitInfo:
    """Where and how a submitted trial runs."""

    pid: int | None
    host: str
    started_at: float
    pid_started_at: float | None = None
    gpu_indices: list[int] | None = None
    #: where it runs (``local``, ``remote``...); ``None``: the service's ``platform``
    platform: str | None = None


@dataclass
class TrialEnd:
    """A trial has ended. ``exit_code`` is ``None`` when it is unknown (the process was lost).

    ``requeue`` says whether the trial's parameters run again (as a new trial) when it has no final result:
    ``None`` leaves it to the manager (a lost trial runs again on ``resume``), ``True`` runs them again at once
    (a service that lost the trial's host, say), ``False`` never.
    """

    trial_id: str
    exit_code: int | None
    ended_at: float = field(default_factory=time.time)
    error: str | None = None
    requeue: bool | None = None


class TrainingService(ABC):
    """Runs trials somewhere. The manager is the only caller; all methods are called from one thread.

    Subclasses implement :meth:`free_slots`, :meth:`submit`, :meth:`poll`, :meth:`terminate` and
    :meth:`running`; the rest have default bodies for services whose trials write their files to a file
    system the manager reads. See the module docstring for the order of calls.
    """

    host: str = "localhost"
    platform: str = "local"  # the value of NNI_PLATFORM in the trials' environment
    concurrency: int = 1
    #: Whether a trial still running after a crash of the manager is picked up again by :meth:`reattach` (its
    #: processes outlive the manager, and it ends as it would have). ``False``: such a trial ends with the
    #: manager or is ended by ``reattach``, which reports it lost (the manager records it FAILED and runs its
    #: parameters again).
    reattaches_trials: bool = False

    # --- capacity -----------------------------------------------------------------------------------------
    @abstractmethod
    def free_slots(self) -> int:
        """How many more trials can start right now."""

    def set_concurrency(self, concurrency: int) -> None:
        """Apply a live change of ``trialConcurrency`` (running trials are not affected)."""
        self.concurrency = concurrency

    # --- running --------------------------------------------------------------------------------------------
    @abstractmethod
    def submit(self, job: TrialJob) -> SubmitInfo:
        """Start a trial (its directory and parameter file exist already)."""

    @abstractmethod
    def poll(self, timeout: float) -> list[TrialEnd]:
        """Wait up to ``timeout`` seconds for trials to end; return those that did."""

    @abstractmethod
    def running(self) -> set[str]:
        """Ids of the trials this service is running."""

    def read_metrics(self, job: TrialJob) -> list[dict[str, Any]]:
        """The trial's new complete metric records since the last call (``metrics.jsonl`` in its directory)."""
        readers: dict[str, protocol.MetricsReader] = self.__dict__.setdefault("_metrics_readers", {})
        reader = readers.get(job.trial_id)
        if reader is None:
            reader = readers[job.trial_id] = protocol.MetricsReader(job.trial_dir)
        return reader.read()

    def cleanup(self, job: TrialJob) -> None:
        """The trial has ended and its metrics were read for the last time: release what it held."""
        self.__dict__.get("_metrics_readers", {}).pop(job.trial_id, None)

    # --- stopping -------------------------------------------------------------------------------------------
    @abstractmethod
    def terminate(self, trial_id: str, *, grace: float = 10.0) -> None:
        """Stop a trial now: SIGTERM (or equivalent) to its whole process tree, SIGKILL after ``grace`` s."""

    def request_stop(self, trial_id: str, trial_dir: Path, *, graceful_timeout: float) -> None:
        """Ask a trial to stop: write the stop file, and terminate it unless it stops by itself."""
        protocol.request_stop(trial_dir)
        if protocol.graceful_declared(trial_dir):
            self._graceful_deadline(trial_id, time.time() + graceful_timeout)
        else:
            self.terminate(trial_id)

    def _graceful_deadline(self, trial_id: str, deadline: float) -> None:
        """Terminate ``trial_id`` if it is still running at ``deadline`` (services override)."""
        self.terminate(trial_id)

    # --- recovery and the end ------------------------------------------------------------------------------------
    def reattach(
        self,
        job: TrialJob,
        pid: int | None,
        pid_started_at: float | None,
        gpu_indices: Sequence[int] | None = None,
    ) -> TrialEnd | bool:
        """On resume: pick up a trial started by an earlier manager.

        Returns a :class:`TrialEnd` if it has ended since, ``True`` if it is still running and is now tracked
        (holding ``gpu_indices`` again), ``False`` if it never started (the manager should submit it again).
        """
        return False

    def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release resources (workers, connections). Running trials were terminated before."""

    def hand_over(self) -> None:
        """This service was built to check the platform before a detached manager starts, which builds its own
        and takes over: release this process's hold (connections) and end nothing the other may use. The
        default is :meth:`shutdown`; a service whose shutdown ends shared things (a cluster it started, the
        experiment's actors) overrides it."""
        self.shutdown()
