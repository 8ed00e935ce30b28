"""Hybrid training: one experiment's trials spread over several training services at once (NNI's list form).

``trainingService: [{platform: remote, machineList: [...]}, {platform: local}]`` runs each trial on one of the
listed platforms. :class:`HybridTrainingService` composes one child service per entry and is itself a
:class:`~nni_pl.training.service.TrainingService`, so the manager never knows it runs more than one.

* ``trialConcurrency`` is the total over all children. Each child's own concurrency is set to that total, so
  any child may take every trial (a child with no room, such as a remote service whose hosts are down, says so
  through its own ``free_slots``).
* A new trial goes to the child with free slots that runs the fewest trials (ties: the first listed). The
  choice is written to the trial's ``.nni/platform.json`` before the child starts it, so a manager started
  after a crash sends :meth:`~HybridTrainingService.reattach` to the same child.
* Each trial's environment (``NNI_PLATFORM``) and :class:`~nni_pl.training.service.SubmitInfo` name its child's
  platform; the store records it per trial and the CLI and dashboard show it.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from nni_pl.training.local import LocalTrainingService
    >>> folder = Path(tempfile.mkdtemp())
    >>> children = [LocalTrainingService(command="true", code_directory=folder) for _ in range(2)]
    >>> hybrid = HybridTrainingService(children, concurrency=3)
    >>> hybrid.free_slots(), [c.concurrency for c in children], hybrid.platform
    (3, [3, 3], 'hybrid')
    >>> hybrid.set_concurrency(1); hybrid.free_slots()
    1
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nni_pl.training.service import SubmitInfo, TrainingService, TrialEnd, TrialJob
from nni_pl.trial import protocol

if TYPE_CHECKING:
    from nni_pl.training.platforms import ServiceSpec

__all__ = ["PLATFORM_FILE", "HybridTrainingService", "read_platform_record"]

logger = logging.getLogger(__name__)

#: in a trial's control folder (``.nni/``): which child of a hybrid service runs it (``{"child", "platform"}``)
PLATFORM_FILE = "platform.json"
_SLICE = 0.02  # seconds a busy child's poll may block before the next child is polled


def read_platform_record(trial_dir: Path) -> dict[str, Any] | None:
    """The ``.nni/platform.json`` of a trial run by a hybrid service: ``{"child": 1, "platform": "remote"}``,
    or ``None`` when there is none (the trial was never handed to a child)."""
    try:
        data = json.loads(
            (Path(trial_dir) / protocol.CONTROL_DIR / PLATFORM_FILE).read_text(encoding="utf-8")
        )
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("child"), int):
        return None
    return data


def _write_platform_record(job: TrialJob, child: int, platform: str) -> None:
    folder = os.fspath(job.control_dir)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, PLATFORM_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"child": child, "platform": platform}, f)
    os.replace(tmp, os.path.join(folder, PLATFORM_FILE))


class HybridTrainingService(TrainingService):
    """Runs trials on several training services at once; ``concurrency`` trials in all.

    Args:
        services: the child services, in the order of the config's list (ties in placement go to the first).
        concurrency: how many trials run at once over all children (``trialConcurrency``); every child's own
            concurrency is set to it.

    ``reattaches_trials`` is ``True`` only when every child's is. A child that cannot reattach its trials after
    a crash of the manager reports them lost itself (its ``reattach`` returns a ``TrialEnd`` without an exit
    code), so the manager runs them again, wherever there is room.

    Raises:
        ValueError: no services, something that is not a :class:`TrainingService`, or ``concurrency < 1``.
    """

    platform = "hybrid"

    def __init__(self, services: Sequence[TrainingService], *, concurrency: int) -> None:
        services = list(services)
        if not services:
            raise ValueError("a hybrid training service needs at least one child service, got none")
        for i, s in enumerate(services):
            if not isinstance(s, TrainingService):
                raise ValueError(f"services[{i}] must be a TrainingService, got {type(s).__name__}: {s!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        self.services = services
        self.concurrency = concurrency
        for s in services:
            s.set_concurrency(concurrency)
        self.reattaches_trials = all(bool(getattr(s, "reattaches_trials", False)) for s in services)
        self.host = ",".join(dict.fromkeys(s.host for s in services))
        self._owner: dict[str, int] = {}  # trial id -> index of the child that runs (or ran) it

    @classmethod
    def from_spec(cls, spec: ServiceSpec) -> HybridTrainingService:
        """The service of a ``trainingService`` list (:class:`~nni_pl.training.platforms.HybridConfig`): each entry
        is built as if it were the experiment's only platform."""
        from nni_pl.training.platforms import create_service

        sections = list(getattr(spec.section, "services", None) or [])
        if not sections:
            raise ValueError(f"a hybrid trainingService lists its platforms; got {spec.section!r}")
        built: list[TrainingService] = []
        try:
            for section in sections:
                built.append(create_service(dataclasses.replace(spec, section=section)))
        except BaseException:
            for service in built:
                try:
                    service.shutdown()
                except Exception:  # the build error is the one to report
                    logger.exception("shutting down %s after a failed hybrid build", type(service).__name__)
            raise
        return cls(built, concurrency=spec.trial_concurrency)

    @property
    def platforms(self) -> list[str]:
        """The children's platforms, in order."""
        return [s.platform for s in self.services]

    # --- capacity -------------------------------------------------------------------------------------------
    def free_slots(self) -> int:
        room = self.concurrency - len(self.running())
        if room <= 0:
            return 0
        return min(room, sum(max(s.free_slots(), 0) for s in self.services))

    def set_concurrency(self, concurrency: int) -> None:
        self.concurrency = concurrency
        for s in self.services:
            s.set_concurrency(concurrency)

    # --- running --------------------------------------------------------------------------------------------
    def running(self) -> set[str]:
        out: set[str] = set()
        for s in self.services:
            out |= s.running()
        return out

    def _choose(self) -> int:
        best: tuple[int, int] | None = None  # (running trials, index)
        for i, s in enumerate(self.services):
            if s.free_slots() <= 0:
                continue
            load = len(s.running())
            if best is None or load < best[0]:
                best = (load, i)
        if best is None:
            raise RuntimeError("no child service has a free slot; call free_slots() before submit()")
        return best[1]

    def submit(self, job: TrialJob) -> SubmitInfo:
        index = self._choose()
        child = self.services[index]
        _write_platform_record(job, index, child.platform)  # before it runs anywhere: reattach must find it
        self._owner[job.trial_id] = index
        try:
            info = child.submit(job)
        except BaseException:
            self._owner.pop(job.trial_id, None)
            raise
        if info.platform is None:
            info = dataclasses.replace(info, platform=child.platform)
        return info

    def poll(self, timeout: float) -> list[TrialEnd]:
        deadline = time.monotonic() + max(timeout, 0.0)
        ends: list[TrialEnd] = []
        while True:
            busy = [s for s in self.services if s.running()]
            for s in self.services:
                wait = 0.0
                if not ends and s in busy:
                    # one child blocks a short slice at a time, so none waits on another's slow poll
                    wait = max(0.0, min(_SLICE / len(busy), deadline - time.monotonic()))
                ends += s.poll(wait)
            left = deadline - time.monotonic()
            if ends or left <= 0:
                return ends
            if not busy:
                time.sleep(min(_SLICE, left))

    def _child(self, trial_id: str, trial_dir: Path | None = None) -> TrainingService | None:
        index = self._owner.get(trial_id)
        if index is None and trial_dir is not None:
            record = read_platform_record(trial_dir)
            if record is not None and 0 <= record["child"] < len(self.services):
                index = record["child"]
        return None if index is None else self.services[index]

    def read_metrics(self, job: TrialJob) -> list[dict[str, Any]]:
        child = self._child(job.trial_id, job.trial_dir)
        if child is None:  # never handed to a child: whatever its folder holds
            return super().read_metrics(job)
        return child.read_metrics(job)

    def cleanup(self, job: TrialJob) -> None:
        child = self._child(job.trial_id, job.trial_dir)
        self._owner.pop(job.trial_id, None)
        if child is None:
            super().cleanup(job)
        else:
            child.cleanup(job)

    # --- stopping -------------------------------------------------------------------------------------------
    def terminate(self, trial_id: str, *, grace: float = 10.0) -> None:
        child = self._child(trial_id)
        if child is not None:
            child.terminate(trial_id, grace=grace)

    def request_stop(self, trial_id: str, trial_dir: Path, *, graceful_timeout: float) -> None:
        child = self._child(trial_id, trial_dir)
        if child is None:
            protocol.request_stop(trial_dir)  # not running anywhere: the stop file is all there is to do
        else:
            child.request_stop(trial_id, trial_dir, graceful_timeout=graceful_timeout)

    # --- recovery and the end ------------------------------------------------------------------------------
    def reattach(
        self,
        job: TrialJob,
        pid: int | None,
        pid_started_at: float | None,
        gpu_indices: Sequence[int] | None = None,
    ) -> TrialEnd | bool:
        """Hand the trial to the child its ``.nni/platform.json`` names.

        No record means the trial was never handed to a child: ``False``, the manager submits it again. A record
        naming a child this service does not have (the list changed) reports the trial lost.
        """
        record = read_platform_record(job.trial_dir)
        if record is None:
            if pid is not None:
                logger.warning(
                    "trial %s has a process id (%s) but no %s; it is submitted again",
                    job.trial_id,
                    pid,
                    PLATFORM_FILE,
                )
            return False
        index: int | None = record["child"]
        platform = record.get("platform")
        if (
            index is None
            or not 0 <= index < len(self.services)
            or (platform is not None and self.services[index].platform != platform)
        ):
            index = next((i for i, s in enumerate(self.services) if s.platform == platform), None)
        if index is None:
            return TrialEnd(
                job.trial_id,
                None,
                time.time(),
                f"the trial ran on child {record['child']} ({platform}) of a hybrid service, which now has "
                f"{self.platforms}; it cannot be found again",
            )
        self._owner[job.trial_id] = index
        result = self.services[index].reattach(job, pid, pid_started_at, gpu_indices)
        if result is False:
            self._owner.pop(job.trial_id, None)
        return result

    def shutdown(self) -> None:
        self._each("shutdown")

    def hand_over(self) -> None:
        self._each("hand_over")

    def _each(self, method: str) -> None:
        errors: list[BaseException] = []
        for s in self.services:
            try:
                getattr(s, method)()
            except Exception as e:  # shut the others down all the same
                logger.exception("%s of %s", method, type(s).__name__)
                errors.append(e)
        if errors:
            raise errors[0]
