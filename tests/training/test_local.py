from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nni_pl.errors import ConfigError
from nni_pl.training.local import GpuScheduler, LocalTrainingService
from nni_pl.training.process import alive as _alive
from nni_pl.training.service import TrialJob
from nni_pl.trial.protocol import MetricsReader, read_exitcode, write_parameter_file

TRIAL = textwrap.dedent(
    """
    import os, sys, time, json
    import nni_pl as nni
    p = nni.get_next_parameter()
    with open(os.path.join(os.environ["NNI_OUTPUT_DIR"], "sync.txt"), "w") as f:
        f.write(repr(os.environ.get("NNI_PL_SYNC_AT_EXIT")))
    print("CVD=" + repr(os.environ.get("CUDA_VISIBLE_DEVICES")), "ARGS=" + json.dumps(sys.argv[1:]), flush=True)
    if p.get("sleep"):
        if p.get("child"):  # leave a grandchild behind in the process group
            import subprocess; subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        time.sleep(p["sleep"])
    nni.report_intermediate_result(p.get("x", 0))
    if p.get("fail"):
        print("something went wrong", file=sys.stderr)
        sys.exit(3)
    nni.report_final_result(p.get("x", 0) * 2)
    """
)


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    d = tmp_path / "code"
    d.mkdir()
    (d / "trial.py").write_text(TRIAL)
    return d


def _job(tmp_path: Path, trial_id: str, params: dict, seq: int = 0) -> TrialJob:
    job = TrialJob("exp1", trial_id, seq, seq, "algorithm", params, tmp_path / "trials" / trial_id)
    write_parameter_file(job.trial_dir, job.parameter_record())
    return job


def _wait(service: LocalTrainingService, n: int, timeout: float = 30) -> list:
    ends = []
    deadline = time.time() + timeout
    while len(ends) < n and time.time() < deadline:
        ends += service.poll(0.2)
    assert len(ends) == n, f"only {len(ends)} of {n} trials ended"
    return ends


def test_local_runs_trials_and_records_exit_code_and_metrics(tmp_path, code_dir):
    svc = LocalTrainingService(command="python trial.py", code_directory=code_dir, concurrency=2)
    ok, bad = _job(tmp_path, "okay1", {"x": 2}), _job(tmp_path, "fail1", {"x": 1, "fail": 1}, 1)
    assert svc.free_slots() == 2
    info = svc.submit(ok)
    svc.submit(bad)
    assert svc.free_slots() == 0 and info.pid > 0
    ends = {e.trial_id: e for e in _wait(svc, 2)}
    assert ends["okay1"].exit_code == 0 and ends["okay1"].error is None
    assert ends["fail1"].exit_code == 3 and "something went wrong" in ends["fail1"].error
    recs = MetricsReader(ok.trial_dir).read()
    assert [(r["type"], r["value"]) for r in recs] == [("PERIODICAL", 2), ("FINAL", 4)]
    # run.sh reproduces the trial; the exit code is kept durably in the trial folder
    assert (ok.trial_dir / "run.sh").read_text().count("NNI_TRIAL_JOB_ID=okay1") == 1
    # the reaper appends the end to the pid file it wrote: one file fewer per trial than .nni/exitcode
    pid_line, end_line = (bad.trial_dir / ".nni" / "pid").read_text().splitlines()
    assert int(pid_line.split()[0]) > 0 and end_line.split()[0] == "3"
    assert not (bad.trial_dir / ".nni" / "exitcode").exists()
    assert "CVD=None" in (ok.trial_dir / "stdout").read_text()  # trialGpuNumber unset: left alone
    # the reaper fsyncs the reports when the trial ends, so the trial does not; a re-run by hand syncs itself
    assert (ok.trial_dir / "sync.txt").read_text() == "'1'"
    assert "NNI_PL_SYNC_AT_EXIT" not in (ok.trial_dir / "run.sh").read_text()


@pytest.mark.skipif(not os.path.exists("/bin/sh"), reason="needs /bin/sh")
def test_local_plain_commands_run_directly_and_others_under_bash(tmp_path, code_dir):
    # a plain command is the trial process itself (no shell in between); one that needs bash (here
    # $BASH_VERSION, a redirection) runs under bash. The reaper records both exit codes with their end times,
    # and run.sh re-runs the trial by hand under the shell it needs.
    svc = LocalTrainingService(
        command="python trial.py",
        code_directory=code_dir,
        concurrency=2,
        extra_args=lambda p: ["--x", "a b$c"],
    )
    bash = LocalTrainingService(
        command='echo "shell=${BASH_VERSION:+bash}" > shell.txt; python trial.py', code_directory=code_dir
    )
    plain, fancy = _job(tmp_path, "plain", {"x": 1, "fail": 1}), _job(tmp_path, "fancy", {"x": 1}, 1)
    before = time.time()
    info = svc.submit(plain)
    with open(f"/proc/{info.pid}/cmdline", "rb") as f:  # the recorded pid is the trial command's own
        assert os.path.basename(f.read().split(b"\0")[0]).startswith(b"python")
    bash.submit(fancy)
    (p_end,), (f_end,) = _wait(svc, 1), _wait(bash, 1)
    script = (plain.trial_dir / "run.sh").read_text()
    assert script.startswith("#!/bin/sh\n") and "`sh run.sh`" in script
    assert (fancy.trial_dir / "run.sh").read_text().startswith("#!/usr/bin/env bash\n")
    assert (code_dir / "shell.txt").read_text().strip() == "shell=bash"
    assert p_end.exit_code == 3 and f_end.exit_code == 0
    out = (plain.trial_dir / "stdout").read_text()
    assert json.loads(out.split("ARGS=", 1)[1]) == ["--x", "a b$c"]  # the quoted argument arrived intact
    for job in (plain, fancy):
        code, ended = read_exitcode(job.trial_dir)
        assert code == (3 if job is plain else 0) and before - 1 <= ended <= time.time() + 1
        assert len((job.control_dir / "pid").read_text().splitlines()[1].split()) == 2
    svc.shutdown()
    bash.shutdown()

    # run.sh by hand: the same trial again, its exit code recorded in .nni/exitcode (with no time: POSIX sh)
    rerun = subprocess.run(
        ["sh", str(plain.trial_dir / "run.sh")], cwd=tmp_path, capture_output=True, text=True
    )
    assert rerun.returncode == 3 and "ARGS=" + json.dumps(["--x", "a b$c"]) in rerun.stdout
    assert (plain.control_dir / "exitcode").read_text().split() == ["3"]
    (plain.control_dir / "pid").unlink()
    assert read_exitcode(plain.trial_dir)[0] == 3


def test_exit_code_is_read_from_the_pid_file_or_the_exitcode_file(tmp_path):
    # the local reaper appends the end to .nni/pid; wrappers, agents and function workers write .nni/exitcode;
    # the pid file's line wins (it belongs to the latest start); a line still being written is not read
    from nni_pl.trial import protocol

    (tmp_path / ".nni").mkdir()
    pid_file, exit_file = tmp_path / ".nni" / "pid", tmp_path / ".nni" / "exitcode"
    assert read_exitcode(tmp_path) is None
    protocol.write_pid(tmp_path, 4242, 17.0)
    assert read_exitcode(tmp_path) is None and protocol.read_pid(tmp_path) == (4242, 17.0)
    with open(pid_file, "ab") as f:
        f.write(b"1 1733350000")  # no newline yet
    assert read_exitcode(tmp_path) is None
    exit_file.write_bytes(protocol.end_line(5, 1733340000.0))
    assert read_exitcode(tmp_path) == (5, 1733340000.0)  # the pid file's line is incomplete
    with open(pid_file, "ab") as f:
        f.write(b".5\n")
    assert read_exitcode(tmp_path) == (1, 1733350000.5) and protocol.read_pid(tmp_path) == (4242, 17.0)
    pid_file.write_text("4242 17.0\nnot an end\n")
    assert read_exitcode(tmp_path) == (5, 1733340000.0)
    pid_file.unlink()
    exit_file.write_text("7\n")  # a POSIX sh wrapper: the file's modification time is the end time
    assert read_exitcode(tmp_path) == (7, exit_file.stat().st_mtime)


def test_local_command_prefixes_missing_programs_and_scripts_without_shebang(tmp_path, code_dir):
    # VAR=value before a plain command sets it for the trial; a program that does not exist ends the trial
    # with the shell's 127 and says why; a script without #! runs under /bin/sh, as execvp does
    (code_dir / "noshebang").write_text('echo "from sh: $NNI_TRIAL_JOB_ID"\nexit 4\n')
    (code_dir / "noshebang").chmod(0o755)
    commands = {
        "prefix": 'FOO=bar python -c \'import os, sys; sys.exit(0 if os.environ["FOO"] == "bar" else 5)\'',
        "missing": "no-such-program-nni-pl --flag",
        "script": "./noshebang",
    }
    ends = {}
    for name, command in commands.items():
        svc = LocalTrainingService(command=command, code_directory=code_dir)
        job = _job(tmp_path, name, {})
        info = svc.submit(job)
        (end,) = _wait(svc, 1)
        ends[name] = (info, end)
        svc.shutdown()
    assert ends["prefix"][1].exit_code == 0
    info, end = ends["missing"]
    assert info.pid is None and end.exit_code == 127
    assert "cannot start the trial command 'no-such-program-nni-pl'" in end.error
    assert ends["script"][1].exit_code == 4
    assert (tmp_path / "trials" / "script" / "stdout").read_text() == "from sh: script\n"


@pytest.mark.parametrize(
    ("command", "plain"),
    [
        ("python train.py --lr 0.1", True),
        ("CUDA_LAUNCH_BLOCKING=1 python -m pkg.train 'a b$c' \"x y\"", True),
        ("python train.py > log.txt", False),
        ("source env.sh && python train.py", False),
        ('python "$HOME/train.py"', False),
        ("python ~/train.py", False),
        ("time python train.py", False),  # a bash keyword, /usr/bin/time (or nothing) under sh
        ("echo -e done", False),  # echo differs between shells
        ("python train.py # comment", False),
        ("python 'unterminated", False),
        ('python "\'" $HOME "\'"', False),  # the $ is outside quotes (quote-looking text inside others)
        ('python "it\'s" \'a "b"\'', True),
        ("FOO=1", False),
    ],
)
def test_local_plain_command_detection(command, plain):
    from nni_pl.training.local import _plain_words

    assert (_plain_words(command) is not None) is plain


def test_local_python_on_path_is_the_running_interpreter(tmp_path, code_dir):
    svc = LocalTrainingService(
        command='python -c "import sys; print(sys.executable)"', code_directory=code_dir
    )
    job = _job(tmp_path, "which", {})
    svc.submit(job)
    _wait(svc, 1)
    assert Path((job.trial_dir / "stdout").read_text().strip()).parent == Path(sys.executable).parent


def test_local_terminate_kills_the_whole_process_group(tmp_path, code_dir):
    svc = LocalTrainingService(command="python trial.py", code_directory=code_dir)
    job = _job(tmp_path, "slow1", {"sleep": 30, "child": 1})
    info = svc.submit(job)
    time.sleep(1.0)
    svc.terminate("slow1", grace=2)
    (end,) = _wait(svc, 1, timeout=15)
    assert end.exit_code == 128 + signal.SIGTERM
    time.sleep(0.3)
    assert _live_members(info.pid) == []  # nothing of the group is left, grandchild included


def _live_members(pgid: int) -> list[int]:
    """Processes of a group that are not zombies (this machine's init reaps orphans late)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            data = open(f"/proc/{entry}/stat", "rb").read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != b"Z":
            out.append(int(entry))
    return out


def test_local_gpu_assignment_from_declared_indices(tmp_path, code_dir):
    svc = LocalTrainingService(
        command="python trial.py",
        code_directory=code_dir,
        concurrency=4,
        gpu_number=1,
        gpu_indices=[0, 1],
        use_active_gpu=True,
    )
    jobs = [_job(tmp_path, f"gpu{i}", {"sleep": 0.5}, i) for i in range(3)]
    svc.submit(jobs[0])
    svc.submit(jobs[1])
    assert svc.free_slots() == 0  # both GPUs busy, concurrency would allow more
    _wait(svc, 2)
    svc.submit(jobs[2])
    _wait(svc, 1)
    seen = sorted((j.trial_dir / "stdout").read_text().split()[0] for j in jobs[:2])
    assert seen == ["CVD='0'", "CVD='1'"]


def test_local_gpu_number_zero_hides_gpus(tmp_path, code_dir):
    svc = LocalTrainingService(command="python trial.py", code_directory=code_dir, gpu_number=0)
    job = _job(tmp_path, "nogpu", {})
    svc.submit(job)
    _wait(svc, 1)
    assert "CVD=''" in (job.trial_dir / "stdout").read_text()


def test_local_rejects_more_gpus_than_available(code_dir):
    with pytest.raises(ConfigError, match=r"trialGpuNumber.*needs 2 GPU\(s\) but 1 are available"):
        LocalTrainingService(
            command="python trial.py", code_directory=code_dir, gpu_number=2, gpu_indices=[0]
        )


def test_local_extra_args_are_appended_quoted(tmp_path, code_dir):
    from nni_pl.training.lightning_cli import lightning_cli_args

    svc = LocalTrainingService(
        command="python trial.py", code_directory=code_dir, extra_args=lightning_cli_args
    )
    job = _job(tmp_path, "cli01", {"model.name": "a b", "data.batch_size": 32, "lr": 0.1})
    svc.submit(job)
    _wait(svc, 1)
    out = (job.trial_dir / "stdout").read_text()
    assert json.loads(out.split("ARGS=", 1)[1]) == ["--model.name=a b", "--data.batch_size=32"]


def test_local_reattach_to_a_trial_of_a_dead_manager(tmp_path, code_dir):
    first = LocalTrainingService(command="python trial.py", code_directory=code_dir)
    running = _job(tmp_path, "keep1", {"sleep": 1.5, "x": 5})
    info = first.submit(running)
    first.procs.clear()  # the manager "dies": forget the process without killing it

    second = LocalTrainingService(command="python trial.py", code_directory=code_dir)
    assert second.reattach(running, info.pid, info.pid_started_at) is True
    (end,) = _wait(second, 1)
    assert end.exit_code == 0  # read from .nni/exitcode: not our child, still exact
    assert second.reattach(running, info.pid, info.pid_started_at).exit_code == 0  # ended meanwhile
    never = _job(tmp_path, "never", {})
    assert second.reattach(never, None, None) is False


@pytest.mark.parametrize("threads", [1, 2], ids=["forked", "fresh-interpreter"])
def test_local_reaper_is_its_own_session_and_holds_none_of_the_managers_files(
    tmp_path, code_dir, monkeypatch, threads
):
    # a manager with no other thread forks its reaper; one with threads starts a fresh interpreter. Either way
    # the reaper has its own session, keeps none of the manager's open files (a database, a dashboard's
    # listening socket) and runs the trials
    monkeypatch.setattr("nni_pl.training.local.threading.active_count", lambda: threads)
    held = open(tmp_path / "managers-file", "w")  # open while the reaper starts
    try:
        svc = LocalTrainingService(command="python trial.py", code_directory=code_dir)
        svc.start()
        reaper = svc._reaper
        assert reaper.forked is (threads == 1)
        job = _job(tmp_path, f"t{threads}", {"x": 2})
        svc.submit(job)  # the reaper has answered: it is set up
        assert os.getsid(reaper.pid) == reaper.pid
        fds = {os.readlink(f"/proc/{reaper.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{reaper.pid}/fd")}
        assert str(tmp_path / "managers-file") not in fds
        (end,) = _wait(svc, 1)
        assert end.exit_code == 0
        assert [r["value"] for r in MetricsReader(job.trial_dir).read()] == [2, 4]
        svc.shutdown()
        assert reaper.wait(5) == 0
    finally:
        held.close()


def test_local_outlives_a_killed_reaper(tmp_path, code_dir):
    # the reaper is killed from outside while a trial runs: the trial ends without an exit code (nobody could
    # record it) but with its metrics, and the next trial gets a new reaper
    svc = LocalTrainingService(command="python trial.py", code_directory=code_dir)
    job = _job(tmp_path, "orphan", {"sleep": 1.0, "x": 1})
    svc.submit(job)
    os.kill(svc._reaper.pid, signal.SIGKILL)
    (end,) = _wait(svc, 1)
    assert end.exit_code is None and "without an exit code" in end.error
    assert [r["type"] for r in MetricsReader(job.trial_dir).read()] == ["PERIODICAL", "FINAL"]
    again = _job(tmp_path, "after", {"x": 2}, 1)
    svc.submit(again)
    (end,) = _wait(svc, 1)
    assert end.exit_code == 0 and end.trial_id == "after"
    svc.shutdown()


def test_local_reaper_exits_when_its_manager_is_done(tmp_path, code_dir):
    # shutdown with a trial still running (a manager handing over): the reaper stays until that trial ended,
    # records its exit code, and exits
    svc = LocalTrainingService(command="python trial.py", code_directory=code_dir)
    job = _job(tmp_path, "last", {"sleep": 0.5, "x": 1})
    svc.submit(job)
    reaper = svc._reaper
    svc.shutdown()
    assert reaper.poll() is None  # still there for its trial
    assert reaper.wait(10) == 0
    assert read_exitcode(job.trial_dir)[0] == 0


def test_local_reattach_detects_a_lost_process(tmp_path, code_dir):
    svc = LocalTrainingService(command="python trial.py", code_directory=code_dir)
    job = _job(tmp_path, "lost1", {})
    (job.control_dir / "pid").write_text("999999 1\n")
    end = svc.reattach(job, None, None)
    assert end.exit_code is None and "no exit code" in end.error


def test_reaper_helpers_agree_with_the_packages_own():
    # the reaper runs without nni_pl, so it has its own copies of three helpers
    import shutil

    from nni_pl.training import _reaper
    from nni_pl.training.process import process_start_time
    from nni_pl.trial.protocol import end_line

    assert _reaper._start_time(os.getpid()) == process_start_time(os.getpid())
    assert _reaper._end_line(3, 1733350000.25) == end_line(3, 1733350000.25) == b"3 1733350000.25\n"
    path = os.environ["PATH"]
    assert _reaper._find("sh", path) == shutil.which("sh", path=path)
    with pytest.raises(OSError, match="command not found"):
        _reaper._find("no-such-program-nni-pl", path)


def test_reaper_survives_a_trial_that_cannot_start(tmp_path):
    # a trial whose folder is gone, or whose program is missing, ends at once with the shell's code; the
    # reaper goes on with the next one
    from nni_pl.training._reaper import Reaper

    said: list[dict] = []
    reaper = Reaper()
    reaper.answer = said.append  # type: ignore[method-assign]

    def message(trial_id, folder, argv):
        return {
            "op": "spawn", "id": trial_id, "argv": argv, "cwd": str(tmp_path), "env": {},
            "stdout": str(folder / "stdout"), "stderr": str(folder / "stderr"),
            "pidfile": str(folder / "pid"), "exitfile": str(folder / "exitcode"),
        }  # fmt: skip

    reaper.spawn(message("gone", tmp_path / "no-such-folder", ["true"]))
    reaper.spawn(message("missing", tmp_path, ["no-such-program-nni-pl"]))
    reaper.spawn(message("fine", tmp_path, [sys.executable, "-c", "raise SystemExit(5)"]))
    deadline = time.time() + 30
    while reaper.children and time.time() < deadline:
        reaper.reap([c.pidfd for c in reaper.children.values()])  # as if every pidfd were readable
        time.sleep(0.01)
    ended = {m["id"]: m["code"] for m in said if m["op"] == "ended"}
    assert ended == {"gone": 126, "missing": 127, "fine": 5}
    # a trial that started: its end follows its pid; one that did not: its end in the exit-code file
    assert (tmp_path / "pid").read_text().splitlines()[1].split()[0] == "5"
    assert (tmp_path / "exitcode").read_text().split()[0] == "127"
    assert "cannot start the trial command 'no-such-program-nni-pl'" in (tmp_path / "stderr").read_text()


def test_reaper_fsyncs_a_trials_files_after_it_ended(tmp_path, monkeypatch):
    # the files named in "sync" are fsynced after the trial's end is answered, once the reaper has nothing else to
    # do (or they are due); a missing one is skipped
    from nni_pl.training import _reaper

    synced: list[bytes] = []
    real_sync = _reaper._sync

    def sync(path):
        real_sync(path)
        synced.append(path)

    monkeypatch.setattr(_reaper, "_sync", sync)
    said: list[dict] = []
    reaper = _reaper.Reaper()
    reaper.answer = said.append  # type: ignore[method-assign]
    report = tmp_path / "metrics.jsonl"
    script = f"open({str(report)!r}, 'a').write('x\\n')"
    reaper.spawn(
        {
            "op": "spawn", "id": "t1", "argv": [sys.executable, "-c", script], "cwd": str(tmp_path), "env": {},
            "stdout": str(tmp_path / "stdout"), "stderr": str(tmp_path / "stderr"),
            "pidfile": str(tmp_path / "pid"), "exitfile": str(tmp_path / "exitcode"),
            "sync": [str(report), str(tmp_path / "no-such-file")],
        }
    )  # fmt: skip
    deadline = time.time() + 30
    while reaper.children and time.time() < deadline:
        reaper.reap([c.pidfd for c in reaper.children.values()])
        time.sleep(0.01)
    assert [m["op"] for m in said] == ["started", "ended"]
    assert synced == [] and reaper.unsynced == [str(report), str(tmp_path / "no-such-file")]
    # they wait SYNC_GATHER seconds for other trials' files (the reaper's next wait ends by then), SYNC_LATEST at most
    assert 0 < reaper._sync_wait(120.0) <= _reaper.SYNC_GATHER
    reaper.unsynced_since = (
        time.monotonic() + 30
    )  # (a clock set ahead: the files have not gathered for a while)
    assert 30 < reaper._sync_wait(120.0) <= 30 + _reaper.SYNC_GATHER
    reaper.sync_if_quiet(ready=[])  # a quiet moment, but the files have not gathered yet
    assert synced == []
    reaper.unsynced_since = time.monotonic() - _reaper.SYNC_GATHER - 0.001
    assert reaper._sync_wait(120.0) == 0.001  # gathered: the next wait that finds nothing syncs them
    reaper.sync_if_quiet(ready=[0])  # a message came in: not now
    assert synced == []
    reaper.sync_if_quiet(ready=[])  # a wait that found nothing to do
    assert synced == [str(report), str(tmp_path / "no-such-file")] and reaper.unsynced == []
    assert report.read_text() == "x\n"
    # however busy the reaper is, a file waits at most SYNC_LATEST seconds
    reaper.unsynced, reaper.unsynced_since = [str(report)], time.monotonic() - _reaper.SYNC_LATEST - 0.001
    reaper.sync_if_quiet(ready=[0])
    assert synced[-1] == str(report) and reaper.unsynced == []


def test_local_reaper_started_as_a_fresh_python_runs_and_syncs(tmp_path, code_dir):
    # where forking is unsafe (the manager has threads) the reaper is `python -I -S _reaper.py`: its fsync
    # thread works there too, and it exits cleanly once its manager is done
    from nni_pl.training.local import _Reaper

    svc = LocalTrainingService(command="python trial.py", code_directory=code_dir)
    svc._reaper = _Reaper(fork=False)
    job = _job(tmp_path, "fresh1", {"x": 2})
    svc.submit(job)
    (end,) = _wait(svc, 1)
    assert end.exit_code == 0 and not svc._reaper.forked
    assert [r["value"] for r in MetricsReader(job.trial_dir).read()] == [2, 4]
    reaper = svc._reaper
    svc.shutdown()
    assert reaper.wait(10) == 0


def test_alive_rejects_a_reused_pid():
    assert _alive(os.getpid(), None)
    assert not _alive(os.getpid(), started_at=-1.0)


def test_gpu_scheduler_spreads_and_releases():
    s = GpuScheduler(gpu_number=2, indices=[0, 1, 2], per_gpu=1)
    assert s.acquire("a") == [0, 1]
    assert s.acquire("b") is None
    s.release("a")
    assert s.acquire("c") == [0, 1]
    assert GpuScheduler(gpu_number=None).acquire("x") == []


FAKE_NVIDIA_SMI = """#!/usr/bin/env bash
case "$1" in
  --query-gpu=index) printf '0\\n1\\n' ;;
  --query-gpu=index,uuid) printf '0, GPU-aaa\\n1, GPU-bbb\\n' ;;
  --query-compute-apps=gpu_uuid) printf 'GPU-bbb\\n' ;;
esac
"""


def test_gpu_discovery_and_use_active_gpu_through_nvidia_smi(tmp_path, monkeypatch):
    from nni_pl.training.local import busy_gpus, visible_gpus

    exe = tmp_path / "nvidia-smi"
    exe.write_text(FAKE_NVIDIA_SMI)
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert visible_gpus() == [0, 1]
    assert busy_gpus() == {1}
    polite = GpuScheduler(gpu_number=1, per_gpu=2, use_active_gpu=False)  # indices from nvidia-smi
    assert polite.indices == [0, 1]
    assert [polite.acquire("a"), polite.acquire("b"), polite.acquire("c")] == [[0], [0], None]
    greedy = GpuScheduler(gpu_number=1, per_gpu=1, use_active_gpu=True)
    assert [greedy.acquire("a"), greedy.acquire("b")] == [[0], [1]]
