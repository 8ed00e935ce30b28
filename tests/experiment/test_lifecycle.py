"""A launch never leaves a broken, stuck or exposed experiment: everything is checked before anything is made,
a stop at any moment after the announcement takes effect, failures are one line, and no file holds a secret
anyone else can read."""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from nni_pl.cli.main import main
from nni_pl.errors import NniPlError
from nni_pl.experiment import Experiment, control, stop_experiment
from nni_pl.experiment import store as st
from nni_pl.experiment.config import default_working_directory
from nni_pl.experiment.locate import find

TRIAL = textwrap.dedent(
    """
    import time
    import nni_pl as nni
    p = nni.get_next_parameter()
    time.sleep(p.get("sleep", 0))
    nni.report_final_result(p["x"])
    """
)


def _config(tmp_path: Path, **extra) -> Path:
    (tmp_path / "trial.py").write_text(TRIAL)
    cfg = {
        "searchSpace": {
            "x": {"_type": "uniform", "_value": [0, 1]},
            "sleep": {"_type": "choice", "_value": [extra.pop("sleep", 0)]},
        },
        "trialCommand": "python trial.py",
        "trialConcurrency": 1,
        "maxTrialNumber": 2,
        "tuner": {"name": "Random", "classArgs": {"seed": 1}},
        "experimentWorkingDirectory": str(tmp_path / "exps"),
        **extra,
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_bad_input_is_a_one_line_error_and_nothing_is_created(tmp_path, capsys, monkeypatch):
    exps = tmp_path / "exps"
    assert main(["launch", str(_config(tmp_path)), "--detach", "--port", "99999"]) == 2
    assert "port must be a whole number from 0 to 65535" in _one_line_error(capsys)
    assert main(["launch", str(tmp_path)]) == 2  # a folder, not a config file
    assert "is a folder; give the path of a YAML or JSON config file" in _one_line_error(capsys)
    assert main(["launch", str(_config(tmp_path)), "--id", "../escape", "--no-display"]) == 2
    assert "experiment id '../escape' is not valid" in _one_line_error(capsys)
    # a GPU config on a machine without GPUs is refused before the experiment exists
    monkeypatch.setattr("nni_pl.training.local.visible_gpus", lambda: [])
    assert main(["launch", str(_config(tmp_path, trialGpuNumber=1)), "--no-display", "--no-webui"]) == 2
    assert "'trialGpuNumber': each trial needs 1 GPU(s) but 0 are available" in _one_line_error(capsys)
    assert not exps.exists() and not list((default_working_directory() / ".index").glob("*.json"))

    assert main(["launch", str(_config(tmp_path)), "--id", "done0001", "--no-display", "--no-webui"]) == 0
    capsys.readouterr()
    before = find("done0001").experiment
    assert main(["resume", "done0001", "--port", "99999", "--no-display"]) == 2
    assert "got 99999" in _one_line_error(capsys)
    after = find("done0001").experiment
    assert (after.status, after.ended_at, after.revision) == (before.status, before.ended_at, before.revision)
    assert sorted(p.name for p in exps.iterdir()) == ["done0001"]


def test_a_detached_manager_that_fails_at_start_reports_why_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    # a tuner that builds in the launching process (which checks it) but not in the manager's process
    (tmp_path / "picky.py").write_text(
        textwrap.dedent(
            """
            import os
            from nni_pl.hpo.tuners.random import RandomTuner

            class Picky(RandomTuner):
                def __init__(self, **kwargs):
                    if os.getpid() != int(os.environ["LAUNCHER_PID"]):
                        raise RuntimeError("no tuner in this process")
                    super().__init__(**kwargs)
            """
        )
    )
    monkeypatch.setenv("LAUNCHER_PID", str(os.getpid()))
    cfg = _config(tmp_path, tuner={"className": "picky.Picky", "codeDirectory": str(tmp_path)})
    assert main(["launch", str(cfg), "--id", "fail0001", "--detach", "--no-webui"]) == 2
    err = _one_line_error(capsys)
    assert "the experiment manager did not start" in err and "no tuner in this process" in err
    assert not (tmp_path / "exps" / "fail0001").exists()  # it never ran: nothing is left behind
    with pytest.raises(NniPlError, match="no experiment 'fail0001'"):
        find("fail0001")


def test_no_file_the_experiment_writes_holds_the_dashboard_token(tmp_path, capsys):
    pytest.importorskip("fastapi")
    cfg = _config(tmp_path, sleep=30)
    assert main(["launch", str(cfg), "--id", "tok00001", "--detach", "--host", "0.0.0.0", "--port", "0"]) == 0
    out = capsys.readouterr().out
    urls = re.search(r"dashboard: (.+)", out).group(1).split()
    token = re.search(r"\?token=([\w-]+)", urls[0]).group(1)
    # every address a remote browser can open, each with the token; on the user's terminal only
    assert urls[0].startswith("http://127.0.0.1:") and len(urls) >= 2
    assert all(u.endswith(f"?token={token}") for u in urls) and "127.0.0.1" not in "".join(urls[1:])
    try:
        directory = find("tok00001").directory
        for path in directory.rglob("*"):  # webui.json keeps the URL for `nni-pl webui ID`: owner-only below
            if path.is_file() and path.name != "webui.json":
                assert token.encode() not in path.read_bytes(), path
        for name in ("log/manager.out", "log/manager.log", "config.yml", "store.sqlite", "webui.json"):
            assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
        assert "token=***" in (directory / "log" / "manager.out").read_text()
    finally:
        assert main(["stop", "tok00001"]) == 0


def test_a_stop_before_the_manager_starts_takes_effect(tmp_path):
    exp = Experiment(str(_config(tmp_path, maxTrialNumber=5)), id="early001")
    exp.prepare()  # created and announced; no manager yet
    assert exp.get_status() == "INTERRUPTED"  # RUNNING without a manager, as `nni-pl list` shows it now
    assert stop_experiment(exp.store, exp.id) is False  # `nni-pl stop early001`: no manager to signal yet
    assert exp.run() is True
    row = exp.store.get_experiment(exp.id)
    assert row.status == st.EXP_STOPPED and row.message == "stopped before its first trial"
    assert exp.trials() == [] and row.manager_pid is None
    # the same for a detached start: its manager reads the recorded stop
    again = Experiment.resume("early001", working_directory=tmp_path / "exps")
    again.prepare()
    stop_experiment(again.store, again.id)
    again.run(detach=True)
    assert again.get_status() == st.EXP_STOPPED and again.trials() == []
    # an old stop is no stop for a new start
    third = Experiment.resume("early001", working_directory=tmp_path / "exps")
    assert third.run() is True and third.get_status() == st.EXP_DONE and len(third.trials()) == 5


def test_nni_pl_stop_right_after_the_launch_announcement_stops_it(tmp_path, capsys, monkeypatch):
    run = Experiment.run

    def stop_then_run(self, *args, **kwargs):
        # the user types `nni-pl stop ID` the moment `launch` printed the id, before the manager starts
        assert f"experiment {self.id} starting" in capsys.readouterr().out
        assert main(["stop", self.id]) == 0
        return run(self, *args, **kwargs)

    monkeypatch.setattr(Experiment, "run", stop_then_run)
    assert main(["launch", str(_config(tmp_path)), "--id", "stop0001", "--no-display", "--no-webui"]) == 0
    assert "experiment stop0001 STOPPED: stopped before its first trial" in capsys.readouterr().out
    assert find("stop0001").store.list_trials("stop0001") == []


def test_the_losing_side_of_two_racing_detached_resumes_gets_one_line(tmp_path, capsys):
    cfg = _config(tmp_path, sleep=30)
    assert main(["launch", str(cfg), "--id", "race0001", "--detach", "--no-webui"]) == 0
    assert main(["stop", "race0001"]) == 0
    # the manager that loses the lock: its launcher says so in one line and puts the experiment back
    capsys.readouterr()
    fd = os.open(find("race0001").directory / ".manager.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["resume", "race0001", "--detach", "--no-webui"]) == 2
    finally:
        os.close(fd)
    err = _one_line_error(capsys)
    assert "the experiment manager did not start: experiment race0001 is already running" in err
    assert find("race0001").experiment.status == st.EXP_STOPPED
    # two resumes at once, as two users would start them
    argv = [sys.executable, "-m", "nni_pl", "resume", "race0001", "--detach", "--no-webui"]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    try:
        results = sorted((p.wait(120), *p.communicate()) for p in procs)
        assert [code for code, _, _ in results] == [0, 2], results
        _, _, err = results[1]
        err = err.strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
        assert "already running" in err or "still running" in err, err
        assert find("race0001").experiment.status == st.EXP_RUNNING  # the winner's run is left alone
    finally:
        assert main(["stop", "race0001"]) == 0


def test_whole_numbers_are_never_rounded_through_a_float(tmp_path):
    huge = 12345678901234567891  # above 2**53: a float cannot hold it
    (tmp_path / "config.json").write_text(
        json.dumps({"trialCommand": "python t.py", "trialConcurrency": 1, "maxTrialNumber": 1e20})
    )
    with pytest.raises(NniPlError, match=r"'maxTrialNumber': got 1e\+20, a float too large to be exact"):
        Experiment(str(tmp_path / "config.json"))
    exp = Experiment(str(_config(tmp_path, maxTrialNumber=huge)), id="huge0001")
    assert exp.config.max_trial_number == huge
    exp.prepare()
    assert exp.store.get_experiment(exp.id).config["maxTrialNumber"] == huge
    for given in (huge + 1, str(huge + 1)):
        control.update_limits(exp.store, exp.id, max_trials=given)
        assert exp.store.get_experiment(exp.id).config["maxTrialNumber"] == huge + 1
    with pytest.raises(NniPlError, match="without a decimal point"):
        control.update_limits(exp.store, exp.id, max_trials=1.2345678901234567e19)


README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_function_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("**Python functions**") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("\n```", start)]


def test_the_readme_function_snippet_runs_as_printed_without_a_main_guard(tmp_path):
    snippet = _readme_function_snippet()
    assert "__main__" not in snippet
    (tmp_path / "snippet.py").write_text(snippet)
    home = tmp_path / "home"
    env = {**os.environ, "NNI_PL_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "snippet.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    params = json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))
    assert set(params) == {"lr"}
    # one experiment, finished: the workers did not run the script again
    stores = list(home.glob("*/store.sqlite"))
    assert len(stores) == 1, stores
    exp_id = stores[0].parent.name
    row = st.Store(st.sqlite_url(stores[0])).get_experiment(exp_id)
    assert row.status == st.EXP_DONE and row.config["maxTrialNumber"] == 50


def test_killing_a_trial_the_store_has_waiting_ends_its_process_when_no_manager_runs(tmp_path):
    # a manager killed right after it started a trial had not recorded where the trial runs: with no manager,
    # `nni-pl trial kill` finds the process from the trial folder's .nni/pid and ends it, not only its row
    import signal

    from nni_pl.training.process import process_start_time
    from nni_pl.trial import protocol

    store = st.Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    store.create_experiment(id="kill0001", name="k", config={}, directory=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        for tid, seq, started in (("run01", 0, True), ("never", 1, False)):
            folder = tmp_path / "trials" / tid
            protocol.make_trial_dir(folder)
            if started:
                protocol.write_pid(folder, proc.pid, process_start_time(proc.pid))
            row = st.TrialRow(
                experiment_id="kill0001", trial_id=tid, sequence_id=seq, parameter_id=seq, parameters={},
                trial_dir=str(folder), status=st.WAITING,
            )  # fmt: skip
            store.add_trial(row)
        assert control.kill_trial(store, "kill0001", "never", manager_alive=False) == st.USER_CANCELED
        assert proc.poll() is None  # the trial that never started had nothing to end
        assert control.kill_trial(store, "kill0001", "run01", manager_alive=False) == st.USER_CANCELED
        assert proc.wait(10) == -signal.SIGTERM
        assert {t.status for t in store.list_trials("kill0001")} == {st.USER_CANCELED}
    finally:
        proc.kill()
        proc.wait()
        store.close()
