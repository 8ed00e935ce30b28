from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nni_pl.training import functions
from nni_pl.training.functions import FunctionTrainingService
from nni_pl.training.process import alive, process_start_time
from nni_pl.training.service import TrialJob
from nni_pl.trial.protocol import MetricsReader

# a process a trial starts that ignores SIGTERM: only a SIGKILL of the trial's process group ends it
STUBBORN_CHILD = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"


def objective(params):
    import nni_pl as nni

    print("hello from", os.getpid())
    nni.report_intermediate_result(params["x"])
    if params.get("raise"):
        raise ValueError("bad x")
    if "exit" in params:
        sys.stderr.write(params.get("say", ""))
        sys.exit(params["exit"])
    if params.get("child"):
        child = subprocess.Popen([sys.executable, "-c", STUBBORN_CHILD])
        (nni.get_output_dir() / "child").write_text(
            f"{child.pid} {process_start_time(child.pid)} {os.getpid()}"
        )
    if params.get("sleep"):
        time.sleep(params["sleep"])
    if params.get("report"):
        nni.report_final_result(params["report"])
        return 123.0  # ignored: a final result was reported already
    return params["x"] * 10


def no_argument_objective():
    import nni_pl as nni

    return nni.get_next_parameter()["x"] + 1


def _job(tmp_path: Path, trial_id: str, params: dict) -> TrialJob:
    return TrialJob("exp", trial_id, 0, 0, "algorithm", params, tmp_path / trial_id)


def _child_of(job: TrialJob, timeout: float = 30) -> tuple[int, float]:
    """The process the trial started (``child``), once it has started."""
    deadline = time.time() + timeout
    while True:
        try:
            pid, started, _ = (job.trial_dir / "child").read_text().split()
            return int(pid), float(started)
        except (OSError, ValueError):
            assert time.time() < deadline, f"trial {job.trial_id} never started its child"
            time.sleep(0.02)


def _gone(pid: int, started: float | None, timeout: float = 10) -> bool:
    deadline = time.time() + timeout
    while alive(pid, started):
        if time.time() > deadline:
            return False
        time.sleep(0.02)
    return True


def _run(svc: FunctionTrainingService, jobs: list[TrialJob], timeout: float = 60) -> dict:
    ends = {}
    queue = list(jobs)
    deadline = time.time() + timeout
    while (queue or svc.running()) and time.time() < deadline:
        while queue and svc.free_slots():
            svc.submit(queue.pop(0))
        for e in svc.poll(0.1):
            ends[e.trial_id] = e
    return ends


@pytest.fixture
def service():
    svc = FunctionTrainingService(objective, concurrency=2)
    svc.start()
    yield svc
    svc.shutdown()


def test_function_trials_report_return_value_and_capture_output(tmp_path, service):
    assert service.start_method == "spawn" and service.free_slots() == 2
    jobs = [_job(tmp_path, f"t{i}", {"x": i}) for i in range(4)]
    ends = _run(service, jobs)
    assert all(e.exit_code == 0 for e in ends.values())
    recs = MetricsReader(jobs[3].trial_dir).read()
    assert [(r["type"], r["value"]) for r in recs] == [("PERIODICAL", 3), ("FINAL", 30)]
    assert "hello from" in (jobs[0].trial_dir / "stdout").read_text()
    # the same two workers ran all four trials: no process start per trial
    pids = {int((j.trial_dir / "stdout").read_text().split()[-1]) for j in jobs}
    assert len(pids) <= 2


def test_function_trial_exception_fails_the_trial_not_the_worker(tmp_path, service):
    bad, good = _job(tmp_path, "bad", {"x": 1, "raise": 1}), _job(tmp_path, "good", {"x": 2})
    ends = _run(service, [bad, good])
    assert ends["bad"].exit_code == 1 and "ValueError: bad x" in ends["bad"].error
    assert "ValueError: bad x" in (bad.trial_dir / "stderr").read_text()
    assert ends["good"].exit_code == 0
    assert service.free_slots() == 2


def test_function_trial_explicit_final_wins_over_return_value(tmp_path, service):
    job = _job(tmp_path, "r", {"x": 1, "report": 0.5})
    _run(service, [job])
    finals = [r["value"] for r in MetricsReader(job.trial_dir).read() if r["type"] == "FINAL"]
    assert finals == [0.5]


def test_function_trial_terminate_ends_its_processes_and_replaces_the_worker(tmp_path, service):
    job = _job(tmp_path, "slow", {"x": 1, "child": 1, "sleep": 30})
    worker_pid = service.submit(job).pid
    child = _child_of(job)
    service.terminate("slow", grace=2)
    deadline = time.time() + 20
    ends = []
    while not ends and time.time() < deadline:
        ends = service.poll(0.1)
    assert ends[0].trial_id == "slow" and ends[0].exit_code != 0
    assert ends[0].error is None  # stopped on purpose: no crash report (the status says why)
    assert _gone(*child), "the process the trial started survived its trial's end"
    service.start()  # the replacement becomes ready
    assert service.free_slots() == 2
    assert worker_pid not in {w.process.pid for w in service.workers}


def test_a_fork_worker_stops_at_sigterm_despite_the_managers_handler(tmp_path):
    # a fork worker inherits the manager's Python signal handlers; its graceful-stop SIGTERM handler must not
    # keep a terminated trial running until the SIGKILL
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        svc = FunctionTrainingService(objective, concurrency=1, start_method="fork")
        svc.start()
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        job = _job(tmp_path, "t", {"x": 1, "child": 1, "sleep": 30})
        svc.submit(job)
        child = _child_of(job)
        svc.terminate("t", grace=30)
        deadline = time.time() + 10
        ends = []
        while not ends:
            assert time.time() < deadline, "the terminated trial still runs"
            ends = svc.poll(0.1)
        assert ends[0].trial_id == "t" and ends[0].exit_code == 128 + signal.SIGTERM
        assert _gone(*child)
    finally:
        svc.shutdown()


def test_a_worker_stopped_after_its_call_returned_gets_no_new_trial(tmp_path):
    # the assessor's stop can land after the call returned: the "done" is already in the pipe when the worker
    # gets SIGTERM. That worker must not look idle, and the next trial must run (not crash the manager).
    svc = FunctionTrainingService(objective, concurrency=1)
    svc.start()
    try:
        first = _job(tmp_path, "first", {"x": 1})
        svc.submit(first)
        deadline = time.time() + 30
        while not any(r["type"] == "FINAL" for r in MetricsReader(first.trial_dir).read()):
            assert time.time() < deadline
            time.sleep(0.01)
        time.sleep(0.2)  # the call has returned and said "done"; the manager has not read it yet
        svc.terminate("first", grace=2)
        ends = []
        while not ends:
            ends = svc.poll(0.1)
        assert ends[0].trial_id == "first"
        assert svc.free_slots() == 0  # the stopped worker is idle but doomed
        ends = _run(svc, [_job(tmp_path, "second", {"x": 2})])
        assert ends["second"].exit_code == 0
    finally:
        svc.shutdown()


def test_submit_to_a_worker_that_died_unseen_goes_to_a_fresh_worker(tmp_path):
    svc = FunctionTrainingService(objective, concurrency=1)
    svc.start()
    try:
        (worker,) = svc.workers
        worker.process.kill()  # dies between free_slots() and submit(): the pipe is broken
        worker.process.join(5)
        worker.process.is_alive = lambda: True  # as it still looked a moment ago
        job = _job(tmp_path, "t", {"x": 3})
        svc.submit(job)  # no BrokenPipeError: a new worker takes the trial once it has started
        del worker.process.is_alive  # the truth again: the dead worker is reaped
        ends = _run(svc, [])
        assert ends["t"].exit_code == 0
        finals = [r["value"] for r in MetricsReader(job.trial_dir).read() if r["type"] == "FINAL"]
        assert finals == [30]
        assert len(svc.workers) == 1 and svc.workers[0] is not worker
    finally:
        svc.shutdown()


def test_function_without_argument_and_lambda_in_fork_workers(tmp_path):
    svc = FunctionTrainingService(no_argument_objective, concurrency=1)
    svc.start()
    job = _job(tmp_path, "noarg", {"x": 1})
    _run(svc, [job])
    svc.shutdown()
    assert [r["value"] for r in MetricsReader(job.trial_dir).read()] == [2]

    offset = 5
    closure = FunctionTrainingService(lambda p: p["x"] + offset, concurrency=1)  # cannot pickle: fork
    assert closure.start_method == "fork"
    closure.start()
    job = _job(tmp_path, "lam", {"x": 1})
    _run(closure, [job])
    closure.shutdown()
    assert [r["value"] for r in MetricsReader(job.trial_dir).read()] == [6]


def test_function_reattach_after_manager_loss(tmp_path):
    svc = FunctionTrainingService(objective, concurrency=1)
    done = _job(tmp_path, "done", {"x": 1})
    (done.control_dir).mkdir(parents=True)
    (done.control_dir / "exitcode").write_text("0 1.0\n")
    assert svc.reattach(done, 123, None, gpu_indices=None).exit_code == 0
    lost = _job(tmp_path, "lost", {"x": 1})
    assert svc.reattach(lost, 123, None, [0]).exit_code is None
    assert svc.reattach(_job(tmp_path, "new", {"x": 1}), None, None) is False


def test_function_reattach_ends_a_worker_that_outlived_its_manager(tmp_path):
    old = FunctionTrainingService(objective, concurrency=1)
    old.start()
    try:
        job = _job(tmp_path, "orphan", {"x": 1, "child": 1, "sleep": 60})
        info = old.submit(job)
        child = _child_of(job)
        resumed = FunctionTrainingService(objective, concurrency=1)
        # another process under the worker's pid (a reused pid) is left alone
        assert resumed.reattach(job, info.pid, info.pid_started_at + 1).exit_code is None
        assert alive(info.pid, info.pid_started_at)
        end = resumed.reattach(job, info.pid, info.pid_started_at)
        assert end.exit_code is None and "lost with its manager" in end.error
        assert _gone(info.pid, info.pid_started_at) and _gone(*child)
    finally:
        old.shutdown()


def test_function_trial_sys_exit_ends_it_with_its_code_and_what_it_said(tmp_path, service):
    jobs = [
        _job(tmp_path, "three", {"x": 1, "exit": 3, "say": "out of data"}),
        _job(tmp_path, "zero", {"x": 1, "exit": 0, "say": "all fine"}),
        _job(tmp_path, "none", {"x": 1, "exit": None}),
        _job(tmp_path, "text", {"x": 1, "exit": "giving up"}),
        _job(tmp_path, "silent", {"x": 1, "exit": 4}),
    ]
    ends = _run(service, jobs)
    assert (ends["three"].exit_code, ends["three"].error) == (3, "out of data")
    assert (ends["zero"].exit_code, ends["zero"].error) == (0, None)
    assert (ends["none"].exit_code, ends["none"].error) == (0, None)
    assert (ends["text"].exit_code, ends["text"].error) == (1, "giving up")
    assert "giving up" in (jobs[3].trial_dir / "stderr").read_text()
    assert ends["silent"].exit_code == 4
    assert ends["silent"].error == "the trial function called sys.exit(4) and wrote nothing to stderr"
    assert service.free_slots() == 2  # sys.exit ends the trial, not the worker


def test_set_concurrency_starts_and_retires_workers(tmp_path):
    svc = FunctionTrainingService(objective, concurrency=1)
    svc.start()
    try:
        svc.set_concurrency(2)
        deadline = time.time() + 30
        while svc.free_slots() < 2:
            assert time.time() < deadline, "set_concurrency(2) did not start a second worker"
            svc.poll(0.05)
        pids = {w.process.pid for w in svc.workers}
        svc.set_concurrency(1)
        assert svc.free_slots() == 1
        while len(svc.workers) > 1:  # the idle surplus worker exits and is reaped
            assert time.time() < deadline, "set_concurrency(1) left two workers"
            svc.poll(0.05)
        assert svc.free_slots() == 1 and {w.process.pid for w in svc.workers} < pids
        svc.concurrency = 2  # as a live config edit sets it: the next poll fills the pool
        svc.poll(0)
        assert len(svc.workers) == 2
        assert _run(svc, [_job(tmp_path, f"t{i}", {"x": i}) for i in range(2)])["t1"].exit_code == 0
    finally:
        svc.shutdown()


def _manager(trial_dir: Path, die_with_parent: bool) -> None:
    """A manager process for the crash test: one worker running a trial that started a child, then it waits."""
    if not die_with_parent:  # the fallback of platforms without PR_SET_PDEATHSIG (fork workers inherit it)
        functions._die_with_parent = lambda: False
    svc = FunctionTrainingService(objective, concurrency=1, start_method="fork")
    svc.start()
    svc.submit(_job(trial_dir, "t", {"x": 1, "child": 1, "sleep": 60}))
    while True:
        svc.poll(1)


@pytest.mark.parametrize("die_with_parent", [True, False], ids=["pdeathsig", "watchdog"])
def test_workers_die_with_their_manager(tmp_path, die_with_parent):
    manager = mp.get_context("fork").Process(target=_manager, args=(tmp_path, die_with_parent))
    manager.start()
    started: list[tuple[int, float | None]] = []
    try:
        job = _job(tmp_path, "t", {})
        child = _child_of(job)
        worker_pid = int((job.trial_dir / "child").read_text().split()[2])
        worker = (worker_pid, process_start_time(worker_pid))
        started += [worker, child]
        os.kill(manager.pid, signal.SIGKILL)
        manager.join(10)
        assert _gone(*worker), "the worker outlived its manager"
        if not die_with_parent:  # the watchdog ends the worker's whole process group
            assert _gone(*child), "the process the trial started outlived its manager"
    finally:
        if manager.is_alive():
            manager.kill()
        for pid, at in started:  # the kernel ends the worker alone: its trial's child is left (to reattach)
            if alive(pid, at):
                os.kill(pid, signal.SIGKILL)
