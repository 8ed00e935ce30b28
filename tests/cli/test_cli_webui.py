"""The dashboard from the command line: launch serves it, `webui` prints it, `view` serves it read-only;
customised trials (`trial add`, POST .../trials) run in a live experiment and in a resumed one."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nni_pl.cli.main import main
from nni_pl.experiment import Experiment, control
from nni_pl.experiment import store as st
from nni_pl.experiment.locate import find
from nni_pl.hpo.tuners.random import RandomTuner
from tests._wait import wait_for

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

TRIAL = textwrap.dedent(
    """
    import os, time
    import nni_pl as nni
    p = nni.get_next_parameter()
    print("trial", p)
    hold = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hold")
    while os.path.exists(hold):  # a test holds the experiment RUNNING until it has made its requests
        time.sleep(0.05)
    nni.report_intermediate_result(p["x"])
    time.sleep(p.get("sleep", 0))
    nni.report_final_result(p["x"])
    """
)


CONFIG_DEFAULTS = {"trialConcurrency": 1, "maxTrialNumber": 3}


def _http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_launch_serves_the_dashboard_on_a_free_port_and_webui_prints_its_url(config, capsys, tmp_path):
    hold = (
        tmp_path / "hold"
    )  # the first trial waits while it exists: the experiment is RUNNING for the requests
    hold.touch()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    taken = busy.getsockname()[1]
    try:
        cfg = config(sleep=1.0, maxTrialNumber=3)
        assert main(["launch", str(cfg), "--id", "web00001", "--detach", "--port", str(taken)]) == 0
        out = capsys.readouterr().out
        url = re.search(r"dashboard: (http://127\.0\.0\.1:(\d+)/)", out)
        assert url is not None, out
        assert int(url.group(2)) != taken
        assert main(["webui", "web00001"]) == 0
        assert capsys.readouterr().out.strip() == url.group(1)
        api = url.group(1) + "api/v1/experiments/web00001"
        status, exp = _http("GET", api)
        assert status == 200 and exp["status"] == "RUNNING" and exp["read_only"] is False
        assert exp["manager_alive"] is True
        # live edits through the API reach the manager
        status, exp = _http("PATCH", api, {"maxTrialNumber": 4})
        assert status == 200 and exp["max_trial_number"] == 4
        # a customised trial: refused outside the space, then run next by the manager
        status, err = _http("POST", api + "/trials", {"parameters": {"x": 3, "sleep": 1.0}})
        assert status == 400 and "x" in err["error"] and "3" in err["error"]
        status, added = _http("POST", api + "/trials", {"parameters": {"x": 0.5, "sleep": 1.0}})
        assert status == 201
        hold.unlink()
        store = find("web00001").store
        wait_for(lambda: store.get_experiment("web00001").status == st.EXP_DONE, timeout=90)
        trials = store.list_trials("web00001")
        assert len(trials) == 4  # the customised trial counts towards maxTrialNumber
        mine = store.get_trial("web00001", added["trial_id"])
        assert mine.status == st.SUCCEEDED and mine.parameter_source == "customized" and mine.final == 0.5
        assert mine.sequence_id >= 0 and sorted(t.sequence_id for t in trials) == [0, 1, 2, 3]
        # the dashboard went with the manager
        wait_for(
            lambda: not (Path(find("web00001").experiment.directory) / "webui.json").exists(), timeout=10
        )
        capsys.readouterr()
        assert main(["webui", "web00001"]) == 2
        err = capsys.readouterr().err
        assert "is not running (DONE)" in err and "nni-pl view web00001" in err
    finally:
        busy.close()


def test_trial_add_waits_for_resume_when_the_experiment_is_stopped(config, capsys):
    cfg = config(maxTrialNumber=2)
    assert main(["launch", str(cfg), "--id", "add00001", "--no-display", "--no-webui"]) == 0
    capsys.readouterr()
    assert main(["trial", "add", "add00001", "--params", '{"x": 0.5, "sleep": 0}']) == 2
    assert "maxTrialNumber (2) is reached" in capsys.readouterr().err
    assert main(["update", "add00001", "--max-trials", "3"]) == 0
    assert main(["trial", "add", "add00001", "--params", '{"x": 0.5, "sleep": 1}']) == 2
    err = capsys.readouterr().err
    assert "sleep" in err and "got 1" in err  # names the parameter and echoes the value
    assert main(["trial", "add", "add00001", "--params", "{x: 1}"]) == 2
    assert "JSON object" in capsys.readouterr().err
    assert main(["trial", "add", "add00001", "--params", '{"x": 0.75, "sleep": 0}']) == 0
    assert "runs when the experiment resumes" in capsys.readouterr().out
    assert main(["resume", "add00001", "--no-display", "--no-webui"]) == 0
    trials = find("add00001").store.list_trials("add00001")
    assert len(trials) == 3
    custom = [t for t in trials if t.parameter_source == "customized"]
    assert len(custom) == 1 and custom[0].status == st.SUCCEEDED and custom[0].final == 0.75
    assert custom[0].sequence_id == 2


def test_view_serves_read_only_until_interrupted_and_text_stays(config, capsys):
    assert main(["launch", str(config()), "--id", "ro000001", "--no-display", "--no-webui"]) == 0
    capsys.readouterr()
    assert main(["view", "ro000001", "--text"]) == 0
    assert "ro000001" in capsys.readouterr().out
    proc = subprocess.Popen(
        [sys.executable, "-m", "nni_pl", "view", "ro000001", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        line = ""
        deadline = time.time() + 60
        while "dashboard:" not in line and time.time() < deadline:
            line = proc.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+/)", line).group(1)
        status, exp = _http("GET", url + "api/v1/experiments/ro000001")
        assert status == 200 and exp["read_only"] is True and exp["status"] == "DONE"
        status, err = _http("PATCH", url + "api/v1/experiments/ro000001", {"maxTrialNumber": 9})
        assert status == 409 and "read-only" in err["error"]
        proc.send_signal(signal.SIGTERM)  # as Ctrl-C (SIGINT may be ignored in a background job)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _slow(params):
    time.sleep(params["sleep"])
    return params["x"]


class RecordingTuner(RandomTuner):
    def __init__(self) -> None:
        super().__init__(seed=3)
        self.results: list[tuple[int, dict, float, dict]] = []

    def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
        self.results.append((parameter_id, dict(parameters), value, kwargs))


def test_a_running_experiment_runs_an_added_trial_next_and_its_tuner_learns_from_it(tmp_path):
    tuner = RecordingTuner()
    exp = Experiment(
        trial=_slow,
        search_space={
            "x": {"_type": "uniform", "_value": [0, 1]},
            "sleep": {"_type": "choice", "_value": [0.5]},
        },
        tuner=tuner,
        max_trial_number=3,
        trial_concurrency=1,
        experiment_working_directory=tmp_path,
        id="live0001",
        start_method="fork",
    )
    runner = threading.Thread(target=lambda: exp.run(display=False, port=0), daemon=True)
    runner.start()
    wait_for(lambda: exp._store is not None and exp.trials(statuses=[st.RUNNING]))
    added = control.add_trial(exp.store, "live0001", {"x": 0.125, "sleep": 0.5})
    runner.join(60)
    assert not runner.is_alive()
    trials = exp.trials()
    assert len(trials) == 3 and all(t.status == st.SUCCEEDED for t in trials)
    custom = exp.store.get_trial("live0001", added.trial_id)
    assert custom.parameter_source == "customized" and custom.sequence_id == 1  # before the tuner's next one
    mine = [r for r in tuner.results if r[3].get("customized")]
    assert len(mine) == 1
    assert mine[0][1] == {"x": 0.125, "sleep": 0.5} and mine[0][2] == 0.125
    assert mine[0][3]["trial_job_id"] == added.trial_id
    assert exp.webui_url is not None and exp.webui_url.startswith("http://127.0.0.1:")
    assert not (exp.directory / "webui.json").exists()


def test_launch_without_the_webui_extra_still_runs_and_says_how_to_get_it(config, capsys, monkeypatch):
    import nni_pl.webui

    monkeypatch.setattr(nni_pl.webui, "available", lambda: False)
    assert main(["launch", str(config(maxTrialNumber=1)), "--id", "nofa0001", "--no-display"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert text.count("pip install 'nni-pl[webui]'") == 1
    assert find("nofa0001").experiment.status == st.EXP_DONE


class ResumeRecordingTuner(RandomTuner):
    def __init__(self) -> None:
        super().__init__(seed=4)
        self.history: list = []

    def resume(self, history):
        self.history = list(history)
        super().resume(history)


def test_a_resumed_tuner_learns_the_results_of_customised_trials_without_owning_them(tmp_path):
    space = {"x": {"_type": "uniform", "_value": [0, 1]}, "sleep": {"_type": "choice", "_value": [0.0]}}
    exp = Experiment(
        trial=_slow,
        search_space=space,
        tuner="Random",
        max_trial_number=1,
        experiment_working_directory=tmp_path,
        id="cres0001",
        start_method="fork",
    )
    exp.run(display=False)
    control.update_limits(exp.store, "cres0001", max_trials=3)
    added = control.add_trial(exp.store, "cres0001", {"x": 0.375, "sleep": 0.0})
    tuner = ResumeRecordingTuner()
    again = Experiment.resume(
        "cres0001", trial=_slow, working_directory=tmp_path, tuner=tuner, start_method="fork"
    )
    again.run(display=False)
    assert [t.status for t in again.trials()] == [st.SUCCEEDED] * 3
    assert again.store.get_trial("cres0001", added.trial_id).final == 0.375
    # a second resume: the finished customised trial is history, with no parameter id of the tuner's
    control.update_limits(again.store, "cres0001", max_trials=4)
    tuner2 = ResumeRecordingTuner()
    Experiment.resume(
        "cres0001", trial=_slow, working_directory=tmp_path, tuner=tuner2, start_method="fork"
    ).run(display=False)
    custom = [h for h in tuner2.history if h.source == "customized"]
    assert (
        len(custom) == 1
        and custom[0].parameter_id is None
        and custom[0].value == 0.375
        and custom[0].finished
    )
    assert len([h for h in tuner2.history if h.source != "customized"]) == 2
