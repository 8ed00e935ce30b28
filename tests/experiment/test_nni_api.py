"""NNI 2.5's Python experiment API (``nni.experiment``) as its documentation uses it, with ``import nni_pl``."""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from nni_pl.errors import ConfigError, ExperimentNotFoundError, NniPlError
from nni_pl.experiment import (
    Experiment,
    ExperimentConfig,
    LocalConfig,
    TrialJob,
    TrialMetricData,
    TrialResult,
    control,
)
from nni_pl.experiment import store as st
from nni_pl.hpo.tuners.random import RandomTuner
from tests._wait import wait_for

TRIAL = textwrap.dedent(
    """
    import nni_pl as nni
    p = nni.get_next_parameter()
    nni.report_intermediate_result(p["x"] / 2)
    nni.report_final_result(p["x"])
    """
)
SPACE = {"x": {"_type": "choice", "_value": [1, 2, 3, 4, 5, 6]}}


def _nni_style(tmp_path: Path, **fields) -> Experiment:
    """The seed's ``Experiment('local')`` example, field by field (relative paths as a user writes them)."""
    (tmp_path / "main.py").write_text(TRIAL)
    experiment = Experiment("local")
    experiment.config.experiment_name = "Example"
    experiment.config.trial_concurrency = 2
    experiment.config.max_trial_number = 3
    experiment.config.search_space = SPACE
    experiment.config.trial_command = "python main.py"
    experiment.config.trial_code_directory = "./"
    experiment.config.tuner.name = "Random"
    experiment.config.tuner.class_args["seed"] = 0
    experiment.config.training_service.use_active_gpu = True
    experiment.config.experiment_working_directory = tmp_path / "exps"
    for name, value in fields.items():
        setattr(experiment.config, name, value)
    return experiment


def test_experiment_local_configured_field_by_field_runs_with_the_port_positional(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    experiment = _nni_style(tmp_path)
    assert experiment.run(0) is True  # NNI's run(8080): the port is the first argument; 0 = any free port
    assert experiment.get_status() == "DONE"
    cfg = experiment.config
    assert cfg.trial_code_directory == tmp_path and cfg.training_service.use_active_gpu is True
    assert cfg.tuner.name == "Random" and cfg.assessor is None  # the blank assessor section is not one

    data = experiment.export_data()
    assert len(data) == 3 and all(isinstance(r, TrialResult) for r in data)
    first = data[0]
    assert first.value == first.parameter["x"] and first.trialJobId
    # compares and converts like NNI's TrialResult, and still reads like the dicts it replaced
    assert dataclasses.asdict(first) == {
        "parameter": first.parameter,
        "value": first.value,
        "trialJobId": first.trialJobId,
    }
    assert first == {"parameter": first.parameter, "value": first.value, "trialJobId": first.trialJobId}
    assert first["value"] == first.value and dict(first)["trialJobId"] == first.trialJobId

    metrics = experiment.get_job_metrics()
    assert set(metrics) == {r.trialJobId for r in data}
    final = [m for m in metrics[first.trialJobId] if m.type == "FINAL"]
    assert len(final) == 1 and isinstance(final[0], TrialMetricData)
    assert final[0].data == first.value and final[0].sequence == 0 and final[0].trialJobId == first.trialJobId
    assert isinstance(final[0].parameterId, str) and final[0].timestamp > 1_600_000_000_000  # ms, as NNI's
    only = experiment.get_job_metrics(first.trialJobId)
    assert list(only) == [first.trialJobId] and [m.type for m in only[first.trialJobId]] == [
        "PERIODICAL",
        "FINAL",
    ]

    assert experiment.get_job_statistics() == [{"trialJobStatus": "SUCCEEDED", "trialJobNumber": 3}]
    jobs = experiment.list_trial_jobs()
    assert len(jobs) == 3 and all(isinstance(j, TrialJob) and j.status == "SUCCEEDED" for j in jobs)
    job = experiment.get_trial_job(first.trialJobId)
    assert job.hyperParameters[0].parameters == first.parameter and job.finalMetricData[0].data == first.value
    assert job.endTime >= job.startTime and Path(job.stderrPath).parent == Path(job.logPath)
    with pytest.raises(ExperimentNotFoundError, match="zzzzz"):
        experiment.get_trial_job("zzzzz")
    profile = experiment.get_experiment_profile()
    assert profile["id"] == experiment.id and profile["params"]["maxTrialNumber"] == 3
    assert profile["nextSequenceId"] == 3 and profile["logDir"] == str(experiment.directory)
    log = (experiment.directory / "log" / "manager.log").read_text()
    assert f"experiment {experiment.id} started" in log and "resumed" not in log  # a fresh experiment


def test_blank_config_is_checked_at_start_naming_the_camelcase_field_and_nothing_is_created(tmp_path):
    workdir = tmp_path / "exps"
    experiment = Experiment("local")
    experiment.config.experiment_working_directory = workdir
    experiment.config.search_space = SPACE
    with pytest.raises(ConfigError, match=r"'trialCommand': is required"):
        experiment.run()
    experiment.config.trial_command = "python main.py"
    experiment.config.trial_code_directory = tmp_path
    experiment.config.max_trial_number = "ten"
    with pytest.raises(ConfigError, match=r"'maxTrialNumber': got 'ten'"):
        experiment.start()
    experiment.config.max_trial_number = (
        1e20  # a float past 2**53 is not the number written: refused, not rounded
    )
    with pytest.raises(ConfigError, match=r"'maxTrialNumber': got 1e\+20, a float too large to be exact"):
        experiment.run()
    experiment.config.max_trial_number = 2
    experiment.config.tuner.class_args["optimize_mode"] = "maximize"  # classArgs without a tuner name
    with pytest.raises(ConfigError, match=r"'tuner': give a built-in 'name'"):
        experiment.run()
    experiment.config.tuner.name = "TPEE"
    with pytest.raises(ConfigError, match=r"'tuner.name': unknown tuner 'TPEE' \(did you mean 'TPE'\?\)"):
        experiment.run()
    with pytest.raises(NniPlError, match=r"port must be a whole number from 0 to 65535.*got 99999"):
        Experiment(trial=_identity, search_space=SPACE, experiment_working_directory=workdir).run(99999)
    assert not workdir.exists()
    with pytest.raises(
        ConfigError,
        match=r"'trial_comand': ExperimentConfig has no such field \(did you mean 'trial_command'\?\)",
    ):
        experiment.config.trial_comand = "python main.py"
    with pytest.raises(ConfigError, match=r"in Python write the snake_case name 'trial_command'"):
        experiment.config.trialCommand = "python main.py"
    with pytest.raises(
        ConfigError,
        match=r"config file '.*nope' does not exist; .*give a training platform \('local', 'remote', 'ray', 'kubeflow', 'aml'\)",
    ):
        Experiment("nope")


def test_experiment_config_takes_the_platform_first_and_camelcase_keywords(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = ExperimentConfig("local")
    assert config.trial_command is None and config.training_service == LocalConfig()
    assert config.tuner is not None and config.tuner.name is None  # blank, for config.tuner.name = ...
    assert ExperimentConfig(["local"]).training_service == LocalConfig()
    with pytest.raises(ConfigError, match=r"'trainingService.platform': platform 'openpai' is not available"):
        ExperimentConfig("openpai")
    assert ExperimentConfig("ray").training_service.platform == "ray"

    camel = ExperimentConfig(
        trialCommand="python t.py", trialConcurrency=2, maxExperimentDuration="1h", searchSpace=SPACE
    )
    snake = ExperimentConfig(
        trial_command="python t.py", trial_concurrency=2, max_experiment_duration="1h", search_space=SPACE
    )
    assert camel.json() == snake.json()
    out = camel.json()
    assert out["trialCommand"] == "python t.py" and out["maxExperimentDuration"] == "1h"
    assert out["trialCodeDirectory"] == str(tmp_path) and out["searchSpace"] == SPACE
    assert camel.max_experiment_duration == "1h"  # json() checks a copy; the object is left as it was
    assert (
        ExperimentConfig("local", trialCommand="python t.py", tuner={"name": "TPE"}).json()["tuner"]["name"]
        == "TPE"
    )
    with pytest.raises(ConfigError, match=r"'trialCommand': given twice, as trial_command and trialCommand"):
        ExperimentConfig(trial_command="a", trialCommand="b")
    with pytest.raises(ConfigError, match=r"'trialComand': unknown field \(did you mean 'trialCommand'\?\)"):
        ExperimentConfig(trialComand="python t.py")
    with pytest.raises(ConfigError, match=r"'trialCommand': is required"):
        ExperimentConfig("local").json()


def test_search_space_file_set_in_python_is_read_for_the_trials(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("ss.json").write_text(json.dumps({"y": {"_type": "choice", "_value": [7, 8]}}))
    config = ExperimentConfig(
        search_space_file=Path("ss.json"),
        trial_concurrency=1,
        max_trial_number=2,
        tuner={"name": "Random", "classArgs": {"seed": 1}},
        experiment_working_directory=tmp_path / "exps",
    )
    exp = Experiment(config, trial=_identity, start_method="fork")
    assert exp.run() is True
    assert sorted(t.parameters["y"] for t in exp.trials()) in ([7, 8], [7, 7], [8, 8])
    # the inline copy is what the experiment ran with; validating again does not read the file anew
    Path("ss.json").write_text(json.dumps({"z": {"_type": "choice", "_value": [1]}}))
    assert list(exp.config.validate(function_trial=True).search_space) == ["y"]
    assert exp.config.search_space_file == tmp_path / "ss.json"


class _Recording(RandomTuner):
    def __init__(self) -> None:
        super().__init__(seed=5)
        self.spaces: list[list[str]] = []

    def update_search_space(self, search_space):
        self.spaces.append(sorted(search_space))
        super().update_search_space(search_space)


def _sleepy(params):
    time.sleep(0.2)
    return float(params.get("x", params.get("w", 0)))


def _identity(params):
    return float(next(iter(params.values()), 0))


def test_start_returns_while_it_runs_updates_reach_the_manager_and_stop_ends_it(tmp_path):
    tuner = _Recording()
    exp = Experiment(
        trial=_sleepy,
        search_space={"x": {"_type": "uniform", "_value": [0, 1]}},
        tuner=tuner,
        max_trial_number=1000,
        trial_concurrency=1,
        experiment_working_directory=tmp_path,
        start_method="fork",
    )
    assert exp.start() is None
    try:
        assert exp.get_status() == "RUNNING"
        wait_for(lambda: len(exp.trials()) >= 1)
        exp.update_trial_concurrency(2)
        exp.update_max_experiment_duration("1h")
        assert exp.config.trial_concurrency == 2 and exp.config.max_experiment_duration == 3600
        with pytest.raises(NniPlError, match=r"invalid.*'w'"):
            exp.update_search_space({"w": {"_type": "choice", "_value": []}})
        exp.update_search_space({"w": {"_type": "choice", "_value": [5, 6]}})
        wait_for(lambda: tuner.spaces[-1] == ["w"], timeout=30)  # the manager handed it to the tuner
        wait_for(lambda: any("w" in t.parameters for t in exp.trials()), timeout=30)
        exp.update_max_trial_number(len(exp.trials()) + 1)
        assert exp.store.get_experiment(exp.id).config["maxTrialNumber"] == exp.config.max_trial_number
    finally:
        exp.stop()
    assert exp.get_status() in ("STOPPED", "DONE")
    assert not exp.trials(statuses=[st.RUNNING])


def test_connect_by_port_resume_with_a_port_and_view(tmp_path, monkeypatch):
    pytest.importorskip("fastapi")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "main.py").write_text(
        "import time\n" + TRIAL.replace("nni.report_final_result", "time.sleep(30); nni.report_final_result")
    )
    experiment = _nni_style(tmp_path, max_trial_number=2, trial_concurrency=1)
    assert experiment.run(0, detach=True) is None  # a background manager, as nnictl create
    try:
        assert experiment.port
        connected = Experiment.connect(experiment.port, working_directory=tmp_path / "exps")
        assert connected.id == experiment.id and connected.get_status() == "RUNNING"
        connected.update_max_trial_number(3)
        assert experiment.store.get_experiment(experiment.id).config["maxTrialNumber"] == 3
        with pytest.raises(
            ExperimentNotFoundError, match=r"no running experiment serves its dashboard on port 1\b"
        ):
            Experiment.connect(1, working_directory=tmp_path / "exps")
        connected.stop()  # NNI's stop() of a connected experiment: its manager stops gracefully
    finally:
        experiment.stop()  # (a no-op once stopped)
    assert experiment.get_status() == "STOPPED"

    (tmp_path / "main.py").write_text(TRIAL)  # quick trials from now on
    resumed = Experiment.resume(experiment.id, 0, working_directory=tmp_path / "exps")  # runs, as NNI's
    assert resumed.get_status() == "DONE" and len(resumed.export_data()) == 3

    viewer = Experiment.view(experiment.id, 0, wait_completion=False, working_directory=tmp_path / "exps")
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{viewer.port}/api/v1/experiments/{experiment.id}"
        ) as r:
            shown = json.loads(r.read())
        assert shown["read_only"] is True and shown["status"] == "DONE"
    finally:
        viewer.stop()
    assert viewer.port is None
    with pytest.raises(NniPlError, match="read-only"):
        viewer.run()


def test_update_search_space_is_refused_for_a_tuner_that_cannot_search_it(tmp_path):
    exp = Experiment(
        trial=_identity,
        search_space={"x": {"_type": "choice", "_value": [1, 2]}},
        tuner="GridSearch",
        max_trial_number=2,
        experiment_working_directory=tmp_path,
        start_method="fork",
    )
    exp.run()
    with pytest.raises(NniPlError, match=r"does not suit the tuner.*GridSearch.*normal"):
        control.update_search_space(exp.store, exp.id, {"x": {"_type": "normal", "_value": [0, 1]}})
    control.update_search_space(exp.store, exp.id, '{"x": {"_type": "choice", "_value": [1, 2, 3]}}')
    stored = exp.store.get_experiment(exp.id)
    assert stored.config["searchSpace"]["x"]["_value"] == [1, 2, 3] and stored.revision == 1
    assert json.loads((exp.directory / "search_space.json").read_text())["x"]["_value"] == [1, 2, 3]
    exp.update_max_trial_number(3)
    again = Experiment.resume(exp.id, trial=_identity, working_directory=tmp_path)
    again.start_method = "fork"
    assert again.run() is True
    assert sorted(t.parameters["x"] for t in again.trials()) == [1, 2, 3]  # the grid grew with the space


@pytest.mark.skipif(sys.platform != "linux", reason="addresses read from Linux interfaces")
def test_a_dashboard_on_all_interfaces_lists_addresses_a_remote_browser_can_open(tmp_path):
    pytest.importorskip("fastapi")
    from nni_pl.webui.server import serve

    with serve(st.sqlite_url(tmp_path / "s.sqlite"), host="0.0.0.0", port=0, wait=False) as server:
        urls = server.urls
    assert urls[0] == server.url and urls[0].startswith("http://127.0.0.1:")
    assert len(urls) >= 2 and all(u.endswith(f":{server.port}/?token={server.token}") for u in urls)
    assert not any("127.0.0.1" in u for u in urls[1:])
