"""Faults on real SSH hosts: a dropped connection, a host cut off mid-trial, a host that comes back.

Each test has hosts of its own (``fresh_ssh_hosts``): it kills their sshd or cuts their network.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from nni_pl.experiment import store as st
from nni_pl.testing import TrainingServiceTestCase
from nni_pl.testing._service_trial import read_record
from nni_pl.testing.sshd import SshHost
from nni_pl.training.process import alive
from nni_pl.training.remote import RemoteTrainingService
from nni_pl.training.service import TrialEnd, TrialJob
from nni_pl.trial import protocol

from . import test_remote_conformance as conformance
from .test_remote_conformance import known_hosts, machines, remote_folder


def service(hosts: list[SshHost], folder: Path, **kwargs: Any) -> RemoteTrainingService:
    code = folder / "code"
    code.mkdir(parents=True, exist_ok=True)
    args: dict[str, Any] = {
        "machines": machines(hosts),
        "command": "python -m nni_pl.testing._service_trial",
        "code_directory": code,
        "concurrency": 2,
        "known_hosts": known_hosts(hosts, folder),
        "host_retry_interval": 0.5,
        "silence_timeout": 3.0,
        "host_failure_timeout": 4.0,
    }
    args.update(kwargs)
    return RemoteTrainingService(**args)


def job(folder: Path, trial_id: str, parameters: dict[str, Any], seq: int = 0) -> TrialJob:
    j = TrialJob(
        "exp" + folder.name[-6:], trial_id, seq, seq, "algorithm", parameters, folder / "trials" / trial_id
    )
    protocol.write_parameter_file(j.trial_dir, j.parameter_record())
    return j


def wait_for(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_until_end(
    svc: RemoteTrainingService, j: TrialJob, got: list[dict[str, Any]], timeout: float = 60.0
) -> TrialEnd:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ends = svc.poll(0.1)
        got += svc.read_metrics(j)
        for end in ends:
            if end.trial_id == j.trial_id:
                got += svc.read_metrics(j)
                return end
    raise AssertionError(f"trial {j.trial_id} did not end within {timeout} s; metrics so far {got}")


def test_a_dropped_connection_loses_and_duplicates_no_metric(
    fresh_ssh_hosts: list[SshHost], tmp_path: Path
) -> None:
    host = fresh_ssh_hosts[0]
    shared = Path(
        tempfile.mkdtemp(prefix="nni-pl-gate-")
    )  # the host's account must see the gate (not tmp_path)
    shared.chmod(0o755)
    gate = shared / "gate"
    svc = service([host], tmp_path)
    try:
        values = [0.1, 0.2, 0.3, 0.4, 0.5]
        j = job(tmp_path, "dropped", {"intermediates": values, "gates": [[3, str(gate)]], "final": 0.9})
        svc.submit(j)
        got: list[dict[str, Any]] = []

        def three() -> bool:
            svc.poll(0.05)
            got.extend(svc.read_metrics(j))
            return len(got) >= 3

        wait_for("three metrics", three)
        host.stop_sshd()  # every session dies: the agent goes, the trial (its own session) stays
        record = read_record(remote_folder(j.trial_dir))
        assert record is not None and alive(record["pid"], record["pid_started_at"])
        gate.touch()  # the trial reports the rest while the host is unreachable
        wait_for(
            "the trial writing its last metric",
            lambda: (read_record(remote_folder(j.trial_dir)) or {}).get("ended"),
        )
        svc.poll(0.2)
        host.start_sshd()
        end = run_until_end(svc, j, got)
        assert end.exit_code == 0, end
        assert [r["seq"] for r in got] == list(range(len(values) + 1))
        assert [r["value"] for r in got] == [*values, 0.9]
    finally:
        svc.shutdown()
        shutil.rmtree(shared, ignore_errors=True)


def test_a_cut_host_fails_its_trial_and_the_experiment_goes_on(
    fresh_ssh_hosts: list[SshHost], tmp_path: Path
) -> None:
    h0, h1 = fresh_ssh_hosts
    svc = service([h0, h1], tmp_path, concurrency=1)
    try:
        first = job(tmp_path, "oncut", {"intermediates": [0.1], "sleep": 120})
        info = svc.submit(first)
        assert info.host == h0.address
        wait_for("the first metric", lambda: svc.poll(0.05) or svc.read_metrics(first))
        record = wait_for("the trial's record", lambda: read_record(remote_folder(first.trial_dir)))
        h0.cut()
        started = time.monotonic()
        ends: list[TrialEnd] = []
        wait_for("the trial on the cut host ending", lambda: ends.extend(svc.poll(0.1)) or ends, timeout=30)
        took = time.monotonic() - started
        (end,) = ends
        assert end.exit_code is None and end.requeue is False
        assert h0.address in end.error and "failed" in end.error, end.error
        assert took < 15, took
        # the experiment goes on with the other host
        assert svc.free_slots() == 1
        second = job(tmp_path, "elsewhere", {"final": 1.0}, 1)
        assert svc.submit(second).host == h1.address
        got: list[dict[str, Any]] = []
        assert run_until_end(svc, second, got).exit_code == 0
        # the host comes back: it is used again, and what still ran of the abandoned trial is ended
        h0.restore()
        wait_for("the host back", lambda: svc.poll(0.1) is not None and svc.hosts[0].up, timeout=30)
        wait_for(
            "the abandoned trial killed",
            lambda: not alive(record["pid"], record["pid_started_at"]),
            timeout=15,
        )
        third = job(tmp_path, "back", {"final": 2.0}, 2)
        assert svc.submit(third).host == h0.address
        assert run_until_end(svc, third, []).exit_code == 0
    finally:
        svc.shutdown()


def test_retry_on_host_failure_runs_the_trial_again_on_another_host(fresh_ssh_hosts: list[SshHost]) -> None:
    h0, h1 = fresh_ssh_hosts
    suite = conformance.TestRemoteReuse()
    suite.hosts = fresh_ssh_hosts

    def make(*, directory: Path, concurrency: int) -> RemoteTrainingService:
        return service(fresh_ssh_hosts, directory, concurrency=concurrency, retry_on_host_failure=True)

    suite.make_service = make  # type: ignore[method-assign]

    def cut_when_running(store: st.Store, experiment_id: str) -> None:
        def on_h0() -> bool:
            return any(t.host == h0.address for t in store.list_trials(experiment_id, statuses=[st.RUNNING]))

        wait_for("a trial running on the first host", on_h0)
        h0.cut()

    try:
        run = TrainingServiceTestCase.run_experiment(
            # the final comes 3 s after the first report, so the cut falls before it: a trial that has reported its
            # final result is not run again
            suite,
            [{"intermediates": [0.5, 0.6], "step_sleep": 3, "final": 1.0}],
            during=cut_when_running,
        )
        failed = [t for t in run.trials if t.status == st.FAILED]
        ok = [t for t in run.trials if t.status == st.SUCCEEDED]
        assert len(failed) == 1 and len(ok) == 1, [(t.trial_id, t.status, t.error) for t in run.trials]
        assert failed[0].host == h0.address and "runs again" in (failed[0].error or "")
        assert ok[0].retry_of == failed[0].trial_id and ok[0].host == h1.address
        assert ok[0].final == 1.0
    finally:
        suite._cleanup()
