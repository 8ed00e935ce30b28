"""The training-service conformance suite can fail: each deliberately broken service trips the check meant for it."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from nni_pl.testing import SERVICE_TRIAL_COMMAND, TrainingServiceTestCase
from nni_pl.testing.training import SuiteDeclarationError
from nni_pl.training.local import LocalTrainingService
from nni_pl.training.process import alive
from nni_pl.training.service import SubmitInfo, TrialEnd, TrialJob
from nni_pl.trial import protocol
from tests._wait import wait_for

# --- broken services -------------------------------------------------------------------------------------------


class RereadsMetrics(LocalTrainingService):
    """Reads metrics.jsonl from the start on every call, so records come back again and again."""

    def read_metrics(self, job: TrialJob) -> list[dict[str, Any]]:
        return protocol.MetricsReader(job.trial_dir).read()


class SignalsLeaderOnly(LocalTrainingService):
    """Signals the trial's first process instead of its process group: what the trial started lives on."""

    def _signal_group(self, proc: Any, sig: int) -> None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass


class ReportsSuccess(LocalTrainingService):
    """Reports every trial as exited 0."""

    def poll(self, timeout: float) -> list[TrialEnd]:
        return [dataclasses.replace(end, exit_code=0, error=None) for end in super().poll(timeout)]


class DropsErrorText(LocalTrainingService):
    """Keeps the exit code but not what the failed trial said."""

    def poll(self, timeout: float) -> list[TrialEnd]:
        return [dataclasses.replace(end, error=None) for end in super().poll(timeout)]


class DropsNoneParameters(LocalTrainingService):
    """Leaves parameters whose value is null out of the trial's parameter file (as a careless CLI mapping does)."""

    def submit(self, job: TrialJob) -> SubmitInfo:
        record = job.parameter_record()
        record["parameters"] = {k: v for k, v in job.parameters.items() if v is not None}
        protocol.write_parameter_file(job.trial_dir, record)
        return super().submit(job)


class GivesUpOnReattach(LocalTrainingService):
    """After a manager crash, reports a still-running trial lost (and stops watching it) instead of reattaching."""

    def reattach(
        self,
        job: TrialJob,
        pid: int | None,
        pid_started_at: float | None,
        gpu_indices: Sequence[int] | None = None,
    ) -> TrialEnd | bool:
        result = super().reattach(job, pid, pid_started_at, gpu_indices)
        if result is True:
            self.procs.pop(job.trial_id)
            return TrialEnd(job.trial_id, None, error="lost")
        return result


class OverCommits(LocalTrainingService):
    """Offers ``concurrency`` free slots whatever runs."""

    def free_slots(self) -> int:
        return self.concurrency


class IgnoresSetConcurrency(LocalTrainingService):
    """Keeps the concurrency it was built with."""

    def set_concurrency(self, concurrency: int) -> None:
        pass


# (service, the check that must fail, what its message says, a check that still passes)
BROKEN_SERVICES = [
    (RereadsMetrics, "test_read_metrics_is_exact_and_idempotent", "returned a record twice|again after", "test_metrics_arrive_in_order_once"),
    (SignalsLeaderOnly, "test_kill_ends_the_process_tree", r"was killed, but .* still runs", "test_exit_codes_map_to_status"),
    (SignalsLeaderOnly, "test_max_trial_duration_stops_a_trial", r"timed out, but .* still runs", "test_parameters_arrive"),
    (ReportsSuccess, "test_exit_codes_map_to_status", "expected FAILED", "test_parameters_arrive"),
    (DropsErrorText, "test_exit_codes_map_to_status", "its error does not say so", "test_metrics_arrive_in_order_once"),
    (DropsNoneParameters, "test_parameters_arrive", "read the parameters", "test_exit_codes_map_to_status"),
    (GivesUpOnReattach, "test_manager_crash_loses_and_duplicates_nothing", "wrote the reports|expected it reattached", "test_metrics_arrive_in_order_once"),
    (OverCommits, "test_capacity_never_exceeds_concurrency", r"at once \(trialConcurrency 2\)", "test_exit_codes_map_to_status"),
    (IgnoresSetConcurrency, "test_set_concurrency_takes_effect", r"reaching 1 after set_concurrency\(3\)", "test_capacity_never_exceeds_concurrency"),
]  # fmt: skip


def _case(service_class: type[LocalTrainingService]) -> TrainingServiceTestCase:
    class Case(TrainingServiceTestCase):
        startup_timeout = 5.0  # these trials start in well under a second: fail fast

        def make_service(self, *, directory: Path, concurrency: int) -> LocalTrainingService:
            return service_class(
                command=SERVICE_TRIAL_COMMAND, code_directory=directory, concurrency=concurrency
            )

    Case.__name__ = f"Test{service_class.__name__}"
    return Case()


@pytest.mark.parametrize(
    ("service", "check", "match", "passes"),
    BROKEN_SERVICES,
    ids=[f"{s[0].__name__}-{s[1]}" for s in BROKEN_SERVICES],
)
def test_broken_service_fails_its_check(service: type, check: str, match: str, passes: str) -> None:
    case = _case(service)
    try:
        with pytest.raises(AssertionError, match=match):
            getattr(case, check)()
    finally:
        case.teardown_method()
    try:
        getattr(case, passes)()  # the suite points at the bug, not at everything
    finally:
        case.teardown_method()


def test_leftover_processes_of_a_broken_service_are_ended() -> None:
    # a check that fails because trials survive must not leave them running on the machine
    case = _case(SignalsLeaderOnly)
    with pytest.raises(AssertionError, match="still runs") as failed:
        case.test_kill_ends_the_process_tree()
    pids = [int(p) for p in re.findall(r"pid (\d+)", str(failed.value))]
    assert pids and all(alive(pid, None) for pid in pids)
    case.teardown_method()
    wait_for(lambda: not any(alive(pid, None) for pid in pids), timeout=5, what="the leftovers ending")


def test_not_applicable_needs_a_known_check_and_a_reason() -> None:
    with pytest.raises(SuiteDeclarationError, match=r"'test_gpus', which is no check of the suite"):

        class UnknownCheck(TrainingServiceTestCase):
            not_applicable = {"test_gpus": "no GPUs here"}

    with pytest.raises(SuiteDeclarationError, match="must say why"):

        class NoReason(TrainingServiceTestCase):
            not_applicable = {"test_kill_ends_the_process_tree": " "}


def test_a_declared_opt_out_is_reported_with_its_reason() -> None:
    class RemoteLike(TrainingServiceTestCase):
        not_applicable = {"test_kill_ends_the_process_tree": "trials run on a cluster that kills them itself"}

        def make_service(self, *, directory: Path, concurrency: int) -> LocalTrainingService:
            return LocalTrainingService(
                command=SERVICE_TRIAL_COMMAND, code_directory=directory, concurrency=concurrency
            )

    assert RemoteLike.__test__
    with pytest.raises(pytest.skip.Exception, match="does not apply to RemoteLike: trials run on a cluster"):
        RemoteLike().test_kill_ends_the_process_tree()


def test_a_case_without_a_service_is_not_collected_and_says_what_is_missing() -> None:
    class Intermediate(TrainingServiceTestCase):
        startup_timeout = 1.0

    assert not Intermediate.__test__
    case = Intermediate()
    with pytest.raises(AssertionError, match="override make_service"):
        case.test_set_concurrency_takes_effect()
    case.teardown_method()
