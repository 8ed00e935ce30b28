"""The CGO training service: several NAS trials trained together in one local process.

``NasExperiment(..., execution="cgo")`` names it in the experiment's config as a training service by class
(``trainingService: {className: nni_pl.nas.cgo_service:CgoTrainingService, classArgs: {...}}``), so
``nni-pl resume`` rebuilds it from the stored config like any other service (:meth:`CgoTrainingService.from_spec`).

The manager submits NAS trials one by one as usual. The first trial of a group starts one process
(``python -m nni_pl.nas._cgo_trial jobs.json``), which imports torch and Lightning while the group fills; the
group is sealed (its ``jobs.json`` written) once it holds ``max_models`` trials or its first trial has waited
``batch_wait_s`` seconds (NNI's ``max_concurrency_cgo`` and ``batch_waiting_time``), and the process trains
it. Every trial of a group records the process's pid, so ``nni-pl`` can stop it even without a manager. That process merges the trials whose evaluator is the same ``Classification``/``Regression`` (one data
pipeline for all; see :mod:`nni_pl.nas.cgo`) and writes every trial's reports and exit code into the trial's
own directory, so each trial keeps its own status, metrics and parameters in the store and the CLI.

``trial_concurrency`` counts merged processes: up to ``concurrency * max_models`` trials are queued or running.
A merged process's files (``run.sh``, ``jobs.json``, ``stdout``, ``stderr``) are in ``<experiment>/cgo/<group>/``;
each trial directory holds ``cgo.json`` (the group, its pid and its trials) and ``.nni/pid``.

Stopping: a trial of a group not sealed yet is simply dropped (the process too, if it was the last). A trial of a running group gets its ``.nni/stop`` file: its model
leaves the merged run at the next training step and the others go on; if it has not ended ``grace`` seconds
later it is reported ended anyway. When every trial of a group is asked to stop, the process is terminated.
Resuming: a trial whose merged process outlived the manager is collected from its exit code if it has one;
otherwise its process is killed and the trial is reported lost (the manager runs it again).
"""

from __future__ import annotations

import json
import logging
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nni_pl.errors import ConfigError, NniPlError
from nni_pl.training.local import GpuScheduler
from nni_pl.training.process import alive, pidfd_open, process_start_time
from nni_pl.training.service import SubmitInfo, TrainingService, TrialEnd, TrialJob
from nni_pl.trial import protocol

if TYPE_CHECKING:
    from nni_pl.training.platforms import ServiceSpec

__all__ = ["CgoError", "CgoTrainingService", "cgo_settings"]

logger = logging.getLogger(__name__)

SPEC_FILE = "nas.json"  # the NAS spec in the experiment folder (nni_pl.nas._trial writes and reads it)
_EXIT_STOPPED = 143  # 128 + SIGTERM, as a trial stopped by a signal would report


class CgoError(NniPlError, ValueError):
    """A CGO setting or input is invalid."""


@dataclass
class _Group:
    name: str
    directory: Path
    jobs: list[TrialJob]
    popen: subprocess.Popen[bytes]
    pidfd: int | None
    remaining: dict[str, TrialJob] = field(default_factory=dict)
    opened_at: float = field(default_factory=time.monotonic)
    sealed: bool = False
    stop_deadline: dict[str, float] = field(default_factory=dict)  # trial -> report it ended by then
    kill_at: float | None = None


class CgoTrainingService(TrainingService):
    """Runs NAS trials merged, up to ``max_models`` per local process (cross-graph optimisation).

    Args:
        spec_path: the experiment's ``nas.json`` (model space, evaluator, seed).
        group_root: where the merged processes' folders go (``<experiment>/cgo``).
        code_directory: the working directory of the merged processes (where the space's module imports).
        concurrency: how many merged processes run at once.
        max_models: the most trials merged in one process (NNI's ``max_concurrency_cgo``).
        batch_wait_s: how long a queued trial waits for group-mates before a smaller group starts (NNI's
            ``batch_waiting_time``).
        python: the interpreter of the merged processes.
        gpu_number: GPUs per merged process (``trialGpuNumber``): ``None`` leaves ``CUDA_VISIBLE_DEVICES``
            alone, ``0`` hides all GPUs.
        gpu_indices, max_trial_number_per_gpu, use_active_gpu: as for the local training service (a merged
            process counts as one trial on its GPUs).

    Example:
        >>> service = CgoTrainingService(spec_path=Path("exp/nas.json"), group_root=Path("exp/cgo"),
        ...                              code_directory=Path("."), max_models=4, batch_wait_s=2.0)
        >>> service.free_slots()
        4
    """

    # a merged process trains several trials: a new manager cannot follow one of them, so reattach ends it
    reattaches_trials = False

    def __init__(
        self,
        *,
        spec_path: Path,
        group_root: Path,
        code_directory: Path,
        concurrency: int = 1,
        max_models: int = 4,
        batch_wait_s: float = 2.0,
        python: str = sys.executable,
        gpu_number: int | None = None,
        gpu_indices: list[int] | None = None,
        max_trial_number_per_gpu: int = 1,
        use_active_gpu: bool = False,
    ) -> None:
        if isinstance(max_models, bool) or not isinstance(max_models, int) or max_models < 1:
            raise CgoError(f"max_models must be a positive integer, got {max_models!r}; e.g. max_models=4")
        if isinstance(batch_wait_s, bool) or not isinstance(batch_wait_s, (int, float)) or batch_wait_s < 0:
            raise CgoError(f"batch_wait_s must be a number of seconds >= 0, got {batch_wait_s!r}; e.g. 2.0")
        self.spec_path = Path(spec_path)
        self.group_root = Path(group_root)
        self.code_directory = Path(code_directory)
        self.concurrency = concurrency
        self.max_models = max_models
        self.batch_wait_s = float(batch_wait_s)
        self.python = python
        self.gpu_number = gpu_number
        self.gpus = GpuScheduler(
            gpu_number=gpu_number,
            indices=gpu_indices,
            per_gpu=max_trial_number_per_gpu,
            use_active_gpu=use_active_gpu,
        )
        self.gpus.require_enough("each merged CGO process")
        self.host = socket.gethostname()
        self.groups: dict[str, _Group] = {}
        self.open: _Group | None = None  # the group still taking trials (its process is warming up)
        self._trial_group: dict[str, str] = {}
        self._ended: list[TrialEnd] = []
        self._count = 0

    @classmethod
    def from_spec(
        cls,
        spec: ServiceSpec,
        *,
        max_models: int = 4,
        batch_wait_s: float = 2.0,
        gpu_indices: list[int] | None = None,
        max_trial_number_per_gpu: int = 1,
        use_active_gpu: bool = False,
    ) -> CgoTrainingService:
        """The service of a NAS experiment's ``trainingService: {className: ...CgoTrainingService, classArgs}``:
        the NAS spec is the experiment folder's ``nas.json``, merged processes live in ``<experiment>/cgo``."""
        return cls(
            spec_path=spec.experiment_directory / SPEC_FILE,
            group_root=spec.experiment_directory / "cgo",
            code_directory=spec.trial_code_directory,
            concurrency=spec.trial_concurrency,
            max_models=max_models,
            batch_wait_s=batch_wait_s,
            gpu_number=spec.trial_gpu_number,
            gpu_indices=gpu_indices,
            max_trial_number_per_gpu=max_trial_number_per_gpu,
            use_active_gpu=use_active_gpu,
        )

    # --- scheduling ---------------------------------------------------------------------------------------
    def free_slots(self) -> int:
        free = (self.concurrency - len(self.groups)) * self.max_models
        if free > 0 and self.gpu_number and not self.gpus.can_acquire():
            free = 0
        if self.open is not None:
            free += self.max_models - len(self.open.jobs)
        return max(0, free)

    def running(self) -> set[str]:
        return set(self._trial_group)

    def submit(self, job: TrialJob) -> SubmitInfo:
        job.control_dir.mkdir(parents=True, exist_ok=True)
        # a trial (re)starts: its end is not known yet
        for stale in (protocol.EXITCODE_FILE, protocol.STOP_FILE):
            (job.control_dir / stale).unlink(missing_ok=True)
        if self.open is None:
            if len(self.groups) >= self.concurrency:
                raise RuntimeError("no merged process free; call free_slots() before submit()")
            self.open = self._start_group(job)
        group = self.open
        group.jobs.append(job)
        group.remaining[job.trial_id] = job
        self._trial_group[job.trial_id] = group.name
        started = process_start_time(group.popen.pid)
        protocol.write_pid(job.trial_dir, group.popen.pid, started)
        if len(group.jobs) >= self.max_models:
            self._seal(group)
        return SubmitInfo(pid=group.popen.pid, host=self.host, started_at=time.time(), pid_started_at=started)

    def _start_group(self, first: TrialJob) -> _Group:
        self._count += 1
        name = f"g{self._count:03d}-{first.trial_id}"
        directory = self.group_root / name
        directory.mkdir(parents=True, exist_ok=True)
        gpus = self.gpus.acquire(name)
        if gpus is None:
            raise RuntimeError("no GPU free; call free_slots() before submit()")
        jobs_path = directory / "jobs.json"
        path = os.path.dirname(self.python) + os.pathsep + os.environ.get("PATH", "")
        wait = self.batch_wait_s + 300.0  # the group is sealed after batch_wait_s; then give up (no manager)
        root = protocol.ENV_DEFAULT_ROOT_DIR
        lines = [
            "#!/usr/bin/env bash",
            "# written by nni-pl: one merged CGO trial; `bash run.sh` re-runs it",
            f"export PATH={shlex.quote(path)}",
        ]
        if self.gpu_number is not None:
            lines.append(f"export CUDA_VISIBLE_DEVICES={','.join(map(str, gpus))}")
        lines += [
            f"export {root}=${{{root}:-{shlex.quote(str(directory))}}}",
            f"cd {shlex.quote(str(self.code_directory))}",
            f"exec {shlex.quote(self.python)} -m nni_pl.nas._cgo_trial {shlex.quote(str(jobs_path))} {wait:.0f}",
        ]
        script = directory / "run.sh"
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        with (
            open(directory / protocol.STDOUT_FILE, "ab") as out,
            open(directory / protocol.STDERR_FILE, "ab") as err,
        ):
            popen = subprocess.Popen(
                ["bash", str(script)],
                cwd=self.code_directory,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # own process group: stopped as a whole; Ctrl-C does not reach it
            )
        group = _Group(name, directory, [], popen, pidfd_open(popen.pid))
        self.groups[name] = group
        return group

    def _seal(self, group: _Group) -> None:
        """Write the group's ``jobs.json``: its process starts training these trials."""
        if group is self.open:
            self.open = None
        if not group.jobs:  # every trial was cancelled before the group was sealed
            self._signal(group, signal.SIGKILL)
            return
        group.sealed = True
        record = {
            "spec": str(self.spec_path),
            "group": group.name,
            "host": self.host,
            "max_models": self.max_models,
            "trials": [
                {
                    "experiment_id": j.experiment_id,
                    "trial_id": j.trial_id,
                    "sequence_id": j.sequence_id,
                    "trial_dir": str(j.trial_dir),
                    "parameters": j.parameters,
                }
                for j in group.jobs
            ],
        }
        tmp = group.directory / "jobs.json.tmp"
        tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
        tmp.replace(group.directory / "jobs.json")
        logger.info(
            "CGO: merged trial %s (pid %d) trains %s",
            group.name,
            group.popen.pid,
            [j.trial_id for j in group.jobs],
        )

    def _seal_if_waited(self) -> None:
        group = self.open
        if group is not None and group.jobs and time.monotonic() - group.opened_at >= self.batch_wait_s:
            self._seal(group)

    # --- waiting --------------------------------------------------------------------------------------------
    def poll(self, timeout: float) -> list[TrialEnd]:
        self._seal_if_waited()
        wait = timeout
        if self.open is not None:
            wait = min(wait, max(0.0, self.open.opened_at + self.batch_wait_s - time.monotonic()))
        if wait > 0:
            fds = [g.pidfd for g in self.groups.values() if g.pidfd is not None]
            if fds and len(fds) == len(self.groups):
                select.select(fds, [], [], min(wait, 0.5))  # trials of a group may end before it does
            else:
                time.sleep(min(wait, 0.05) if self.groups else wait)
        self._seal_if_waited()
        ends, self._ended = self._ended, []
        now = time.time()
        for name, group in list(self.groups.items()):
            code = group.popen.poll()
            for tid, job in list(group.remaining.items()):
                ended = protocol.read_exitcode(job.trial_dir)
                if ended is not None:
                    ends.append(self._end(group, tid, ended[0], ended[1]))
                elif code is not None:
                    error = (
                        protocol.stderr_tail(group.directory)
                        or "the merged CGO process ended without a result"
                    )
                    exit_code = code if code > 0 else (128 - code if code < 0 else None)
                    ends.append(self._end(group, tid, exit_code, now, error))
                elif tid in group.stop_deadline and now >= group.stop_deadline[tid]:
                    logger.info("CGO: trial %s did not leave merged trial %s in time", tid, name)
                    ends.append(self._end(group, tid, _EXIT_STOPPED, now))
            if group.kill_at is not None and now >= group.kill_at and code is None:
                self._signal(group, signal.SIGKILL)
                group.kill_at = None
            if code is not None and not group.remaining:
                if group is self.open:
                    self.open = None
                self._close(group)
            elif not group.remaining and code is None and group.kill_at is None and group.sealed:
                # every trial has ended (e.g. stopped after the deadline): the process has nothing left to do
                self._terminate_group(group, grace=10.0)
        return ends

    def _end(
        self, group: _Group, trial_id: str, code: int | None, when: float, error: str | None = None
    ) -> TrialEnd:
        job = group.remaining.pop(trial_id)
        self._trial_group.pop(trial_id, None)
        if code != 0 and error is None:
            error = protocol.stderr_tail(job.trial_dir)
        return TrialEnd(trial_id, code, when, error if code != 0 else None)

    def _close(self, group: _Group) -> None:
        self._signal(group, signal.SIGKILL)  # children it left behind
        if group.pidfd is not None:
            os.close(group.pidfd)
        self.gpus.release(group.name)
        del self.groups[group.name]

    # --- stopping -------------------------------------------------------------------------------------------
    def _signal(self, group: _Group, sig: int) -> None:
        try:
            os.killpg(group.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _terminate_group(self, group: _Group, *, grace: float) -> None:
        self._signal(group, signal.SIGTERM)
        group.kill_at = time.time() + grace

    def terminate(self, trial_id: str, *, grace: float = 10.0) -> None:
        name = self._trial_group.get(trial_id)
        if name is None:
            return
        group = self.groups[name]
        if not group.sealed:  # its group has not started training: just drop it
            group.jobs = [j for j in group.jobs if j.trial_id != trial_id]
            self._ended.append(
                self._end(
                    group, trial_id, _EXIT_STOPPED, time.time(), "stopped before its merged trial started"
                )
            )
            if not group.jobs:
                self._seal(group)  # nothing to train: ends the process
            return
        if trial_id in group.stop_deadline:
            return
        protocol.request_stop(group.remaining[trial_id].trial_dir)
        group.stop_deadline[trial_id] = time.time() + grace
        if all(tid in group.stop_deadline for tid in group.remaining):
            self._terminate_group(group, grace=grace)

    def _graceful_deadline(self, trial_id: str, deadline: float) -> None:
        # the stop file is written already: the model leaves the merged run at its next step
        name = self._trial_group.get(trial_id)
        if name is not None:
            self.groups[name].stop_deadline.setdefault(trial_id, deadline)
        else:
            self.terminate(trial_id)

    def reattach(
        self,
        job: TrialJob,
        pid: int | None,
        pid_started_at: float | None,
        gpu_indices: Sequence[int] | None = None,
    ) -> TrialEnd | bool:
        ended = protocol.read_exitcode(job.trial_dir)
        if ended is not None:
            code, when = ended
            error = protocol.stderr_tail(job.trial_dir) if code != 0 else None
            return TrialEnd(job.trial_id, code, when, error)
        found = protocol.read_pid(job.trial_dir)
        if found is None:
            return False  # never started (it was still queued)
        if alive(*found):
            # its group-mates are collected the same way; the merged process is not ours to watch: end it
            try:
                os.killpg(found[0], signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return TrialEnd(
            job.trial_id,
            None,
            time.time(),
            "its merged CGO process ended (or was ended) while no manager ran",
        )

    def shutdown(self) -> None:
        self.open = None
        for group in list(self.groups.values()):
            if group.popen.poll() is None:
                self._signal(group, signal.SIGKILL)
            if group.pidfd is not None:
                os.close(group.pidfd)
        self.groups.clear()
        self._trial_group.clear()


def cgo_settings(value: Any) -> dict[str, Any]:
    """Check ``NasExperiment(cgo=...)``: ``None``/``True`` for the defaults, or a dict of ``max_models``,
    ``batch_wait_s``; returns the full settings."""
    out: dict[str, Any] = {"max_models": 4, "batch_wait_s": 2.0}
    if value is None or value is True:
        return out
    if not isinstance(value, dict):
        raise ConfigError(
            "cgo", f"must be a dict like {{'max_models': 4, 'batch_wait_s': 2.0}}, got {value!r}"
        )
    unknown = sorted(set(value) - set(out))
    if unknown:
        raise ConfigError(
            "cgo", f"unknown setting {unknown[0]!r}; the settings are max_models and batch_wait_s"
        )
    out.update(value)
    m, w = out["max_models"], out["batch_wait_s"]
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ConfigError("cgo.max_models", f"must be a positive integer, got {m!r}; e.g. 4")
    if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
        raise ConfigError("cgo.batch_wait_s", f"must be a number of seconds >= 0, got {w!r}; e.g. 2.0")
    out["batch_wait_s"] = float(w)
    return out
