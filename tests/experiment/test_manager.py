"""End-to-end runs of the manager with real trial processes, real SQLite, through the CLI and the Python API."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from nni_pl.cli.main import main
from nni_pl.experiment import Experiment, Store
from nni_pl.experiment import store as st
from nni_pl.experiment.locate import find

SPACE = {"x": {"_type": "quniform", "_value": [0, 1, 0.1]}, "steps": {"_type": "choice", "_value": [3]}}


def _trials(exp_id: str) -> tuple[Store, list[st.TrialRow]]:
    loc = find(exp_id)
    return loc.store, loc.store.list_trials(exp_id)


def test_nni_v2_config_end_to_end_through_the_cli(project, capsys):
    cfg = project(SPACE, maxTrialNumber=6, maxExperimentDuration="10m")
    assert main(["launch", str(cfg), "--id", "e2e00001", "--no-display"]) == 0
    out = capsys.readouterr().out
    assert "experiment e2e00001 DONE: maxTrialNumber reached" in out
    store, trials = _trials("e2e00001")
    assert len(trials) == 6 and {t.status for t in trials} == {st.SUCCEEDED}
    assert sorted(t.sequence_id for t in trials) == list(range(6))
    for t in trials:
        metrics = store.list_metrics("e2e00001", t.trial_id)
        assert [m.type for m in metrics] == ["PERIODICAL"] * 3 + ["FINAL"]
        assert [m.value for m in metrics[:3]] == pytest.approx([t.parameters["x"] + i for i in range(3)])
        assert t.final == {"default": pytest.approx(t.parameters["x"] * 10), "steps": 3}
        assert t.intermediate_count == 3 and t.exit_code == 0 and t.host
        assert (Path(t.trial_dir) / "parameter.json").exists()
    exp = store.get_experiment("e2e00001")
    assert exp.status == st.EXP_DONE and exp.elapsed > 0 and exp.manager_pid is None
    assert (Path(exp.directory) / "config.yml").exists() and (
        Path(exp.directory) / "log" / "manager.log"
    ).exists()

    assert main(["show", "e2e00001", "--top", "3"]) == 0
    shown = capsys.readouterr().out
    best = max(trials, key=lambda t: t.final_default)
    assert best.trial_id in shown
    assert main(["export", "e2e00001", "--format", "json", "--intermediate"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert len(exported) == 6 and all(len(e["intermediate"]) == 3 for e in exported)
    assert main(["export", "e2e00001", "--format", "csv"]) == 0
    csv_lines = capsys.readouterr().out.strip().splitlines()
    assert (
        csv_lines[0].startswith("trialJobId,sequenceId,status,x,steps,value,value/steps")
        and len(csv_lines) == 7
    )
    assert main(["trial", "ls", "e2e00001"]) == 0
    assert main(["log", "e2e00001", trials[0].trial_id]) == 0


@pytest.mark.parametrize("interval", [0.0, 1e9])
def test_where_a_trial_runs_is_recorded_by_housekeeping_or_with_its_end(project, monkeypatch, interval):
    # interval 0: every turn records the started trials; 1e9: a busy manager never does, so each trial's end
    # carries where it ran (one write); either way no spare trial folder is left behind
    from nni_pl.experiment import manager

    monkeypatch.setattr(manager, "HOUSEKEEPING_INTERVAL", interval)
    cfg = project(SPACE, maxTrialNumber=4)
    exp_id = f"house{int(interval > 0)}"
    assert main(["launch", str(cfg), "--id", exp_id, "--no-display"]) == 0
    store, trials = _trials(exp_id)
    assert len(trials) == 4 and {t.status for t in trials} == {st.SUCCEEDED}
    for t in trials:
        assert t.pid and t.host and t.platform == "local" and t.started_at <= t.ended_at
        assert t.intermediate_count == 3 and t.final_default == pytest.approx(t.parameters["x"] * 10)
    folder = Path(store.get_experiment(exp_id).directory) / "trials"
    assert sorted(p.name for p in folder.iterdir()) == sorted(t.trial_id for t in trials)


def test_failed_trial_keeps_its_stderr_and_the_experiment_goes_on(project):
    space = {"fail": {"_type": "choice", "_value": [0, 4]}, "x": {"_type": "choice", "_value": [1]}}
    cfg = project(space, maxTrialNumber=6, tuner={"name": "GridSearch"})
    assert main(["launch", str(cfg), "--id", "fail0001", "--no-display"]) == 0
    _, trials = _trials("fail0001")
    assert len(trials) == 2  # the grid has 2 points
    failed = [t for t in trials if t.status == st.FAILED]
    assert len(failed) == 1 and failed[0].exit_code == 4
    assert "trial failed on purpose" in failed[0].error
    assert find("fail0001").experiment.message == "the search space is exhausted"


def test_grid_search_exhausts_a_finite_space_without_duplicates(project):
    space = {"x": {"_type": "choice", "_value": [1, 2, 3]}, "steps": {"_type": "randint", "_value": [1, 3]}}
    cfg = project(space, maxTrialNumber=100, tuner={"name": "GridSearch"})
    assert main(["launch", str(cfg), "--id", "grid0001", "--no-display"]) == 0
    _, trials = _trials("grid0001")
    params = sorted(json.dumps(t.parameters, sort_keys=True) for t in trials)
    assert len(params) == 6 and len(set(params)) == 6
    assert find("grid0001").experiment.status == st.EXP_DONE


def test_max_trial_duration_times_out_a_trial(project):
    space = {"sleep": {"_type": "choice", "_value": [20]}, "steps": {"_type": "choice", "_value": [1]}}
    cfg = project(space, maxTrialNumber=1, maxTrialDuration="1s", trialConcurrency=1)
    assert main(["launch", str(cfg), "--id", "tmo00001", "--no-display"]) == 0
    _, (trial,) = _trials("tmo00001")
    assert trial.status == st.TIMEOUT and trial.duration < 15


def test_experiment_duration_stops_new_trials_but_lets_running_ones_finish(project):
    space = {"sleep": {"_type": "choice", "_value": [0.5]}, "x": {"_type": "uniform", "_value": [0, 1]}}
    cfg = project(space, maxExperimentDuration="1s", trialConcurrency=2)
    assert main(["launch", str(cfg), "--id", "dur00001", "--no-display"]) == 0
    _, trials = _trials("dur00001")
    assert trials and all(t.status == st.SUCCEEDED for t in trials)
    assert len(trials) <= 4
    assert find("dur00001").experiment.message == "maxExperimentDuration reached"


ASSESSOR = textwrap.dedent(
    """
    from nni_pl.hpo import Assessor, AssessResult

    class StopLow(Assessor):
        def __init__(self, *, threshold):
            self.threshold = threshold
        def assess_trial(self, trial_job_id, trial_history):
            if len(trial_history) >= 2 and trial_history[-1] < self.threshold:
                return AssessResult.Bad
            return AssessResult.Good
    """
)


def test_custom_assessor_early_stops_graceful_and_plain_trials(project):
    space = {
        "x": {"_type": "choice", "_value": [0, 100]},
        "graceful": {"_type": "choice", "_value": [0, 1]},
        "steps": {"_type": "choice", "_value": [40]},
        "sleep": {"_type": "choice", "_value": [0.1]},
    }
    cfg = project(
        space,
        maxTrialNumber=4,
        tuner={"name": "GridSearch"},
        assessor={"className": "my_assessor.StopLow", "classArgs": {"threshold": 50}},
    )
    (cfg.parent / "my_assessor.py").write_text(ASSESSOR)
    assert main(["launch", str(cfg), "--id", "asse0001", "--no-display"]) == 0
    _, trials = _trials("asse0001")
    by = {(t.parameters["x"], t.parameters["graceful"]): t for t in trials}
    assert by[(100, 0)].status == by[(100, 1)].status == st.SUCCEEDED
    plain, graceful = by[(0, 0)], by[(0, 1)]
    assert plain.status == graceful.status == st.EARLY_STOPPED
    assert plain.stop_requested == graceful.stop_requested == "assessor"
    assert graceful.exit_code == 0 and "stopping at step" in (Path(graceful.trial_dir) / "stdout").read_text()
    assert graceful.intermediate_count < 40 and plain.intermediate_count < 40


NNI_STYLE_TUNER = textwrap.dedent(
    """
    class ListTuner:  # an NNI 2.x custom tuner: no nni_pl base class, raw dict search space
        def __init__(self, values):
            self.values = list(values)
            self.results = []
        def update_search_space(self, search_space):
            assert isinstance(search_space, dict) and search_space["x"]["_type"] == "choice"
        def generate_parameters(self, parameter_id, **kwargs):
            from nni_pl import NoMoreTrialError
            if not self.values:
                raise NoMoreTrialError()
            return {"x": self.values.pop(0)}
        def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
            self.results.append(value)
        def trial_end(self, parameter_id, success, **kwargs):
            pass
        def import_data(self, data):
            pass
    """
)


def test_nni_style_custom_tuner_from_code_directory(project):
    space = {"x": {"_type": "choice", "_value": [7, 8, 9]}}
    cfg = project(
        space, maxTrialNumber=10, tuner={"className": "list_tuner.ListTuner", "classArgs": {"values": [9, 7]}}
    )
    (cfg.parent / "list_tuner.py").write_text(NNI_STYLE_TUNER)
    assert main(["launch", str(cfg), "--id", "cust0001", "--no-display"]) == 0
    _, trials = _trials("cust0001")
    assert [t.parameters["x"] for t in trials] == [9, 7]


def test_bad_config_fails_before_anything_is_created(project, tmp_path, capsys):
    cfg = project(SPACE, tuner={"name": "TPEE"})
    assert main(["launch", str(cfg), "--id", "bad00001", "--no-display"]) == 2
    err = capsys.readouterr().err
    assert "tuner.name" in err and "did you mean 'TPE'" in err
    assert not (tmp_path / "experiments" / "bad00001").exists()

    cfg = project(SPACE, tuner={"name": "TPE", "classArgs": {"optimise_mode": "maximize"}})
    assert main(["launch", str(cfg), "--no-display"]) == 2
    assert "did you mean 'optimize_mode'" in capsys.readouterr().err

    cfg = project(SPACE, trialConcurency=2)
    assert main(["launch", str(cfg), "--no-display"]) == 2
    assert "did you mean 'trialConcurrency'" in capsys.readouterr().err


def test_tuner_that_cannot_handle_a_type_is_rejected_at_start(project, capsys):
    cfg = project({"x": {"_type": "normal", "_value": [0, 1]}}, tuner={"name": "GridSearch"})
    assert main(["launch", str(cfg), "--no-display"]) == 2
    err = capsys.readouterr().err
    assert "'x'" in err and "GridSearch" in err and "normal" in err


CLI_TRIAL = textwrap.dedent(
    """
    import json, sys
    import nni_pl as nni
    args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
    nni.report_final_result({"default": float(args["model.lr"]), "args": args})
    """
)


def test_lightning_cli_paths_become_command_line_overrides(project):
    space = {
        "model.lr": {"_type": "choice", "_value": [0.5]},
        "data.batch_size": {"_type": "choice", "_value": [32]},
        "seed": {"_type": "choice", "_value": [1]},
    }
    cfg = project(space, trial=CLI_TRIAL, maxTrialNumber=1, trialConcurrency=1)
    assert main(["launch", str(cfg), "--id", "lcli0001", "--no-display"]) == 0
    _, (trial,) = _trials("lcli0001")
    assert trial.final["args"] == {"model.lr": "0.5", "data.batch_size": "32"}


def test_update_raises_max_trials_of_a_running_experiment(project, wait_for):
    space = {
        "sleep": {"_type": "choice", "_value": [0.3]},
        "x": {"_type": "uniform", "_value": [0, 1]},
        "steps": {"_type": "choice", "_value": [1]},
    }
    cfg = project(space, maxTrialNumber=3, trialConcurrency=1)
    assert main(["launch", str(cfg), "--id", "upd00001", "--detach"]) == 0
    assert main(["update", "upd00001", "--max-trials", "5", "--concurrency", "2"]) == 0
    wait_for(lambda: find("upd00001").experiment.status == st.EXP_DONE, timeout=60)
    _, trials = _trials("upd00001")
    assert len(trials) == 5 and all(t.status == st.SUCCEEDED for t in trials)


def test_function_trials_through_the_python_api(tmp_path):
    exp = Experiment(
        trial=_objective,
        search_space={"x": {"_type": "uniform", "_value": [-5, 5]}},
        tuner={"name": "Random", "classArgs": {"seed": 3}},
        max_trial_number=20,
        trial_concurrency=2,
        experiment_working_directory=tmp_path,
    )
    exp.run(display=False)
    assert exp.get_status() == st.EXP_DONE
    trials = exp.trials()
    assert len(trials) == 20 and all(t.status == st.SUCCEEDED for t in trials)
    best = exp.best_trial()
    assert best.final == max(t.final for t in trials)
    assert len(exp.export_data()) == 20


def _objective(params):
    return -((params["x"] - 2) ** 2)


def test_concurrent_tpe_gets_the_constant_liar_unless_configured(tmp_path):
    space = {"x": {"_type": "uniform", "_value": [0, 1]}}
    common = dict(trial=_objective, search_space=space, experiment_working_directory=tmp_path)
    tuner, _ = Experiment(tuner="TPE", trial_concurrency=2, **common)._build_algorithms()
    assert tuner.parallel_optimize is True
    tuner, _ = Experiment(tuner="TPE", trial_concurrency=1, **common)._build_algorithms()
    assert tuner.parallel_optimize is False
    explicit = {"name": "TPE", "classArgs": {"parallel_optimize": False}}
    tuner, _ = Experiment(tuner=explicit, trial_concurrency=4, **common)._build_algorithms()
    assert tuner.parallel_optimize is False


class _OneAtATime:
    """An NNI-style tuner that suggests one point, then waits for its result before the next."""

    def __init__(self) -> None:
        self.results: list[float] = []
        self.issued = 0

    def update_search_space(self, space):
        pass

    def generate_parameters(self, parameter_id, **kwargs):
        from nni_pl.errors import WaitForResults

        if self.issued > len(self.results):
            raise WaitForResults()
        self.issued += 1
        return {"x": float(self.issued)}

    def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
        self.results.append(value)

    def trial_end(self, parameter_id, success, **kwargs):
        pass


def _x(params):
    return params["x"]


def test_a_tuner_that_waits_right_after_its_first_suggestion_is_not_an_error(tmp_path):
    # the first suggestion of a turn is planned but not started yet when the tuner says "wait": that is no
    # "waits for results but no trial is running" error
    tuner = _OneAtATime()
    exp = Experiment(
        trial=_x,
        tuner=tuner,
        search_space={"x": {"_type": "uniform", "_value": [0, 10]}},
        max_trial_number=3,
        trial_concurrency=2,
        experiment_working_directory=tmp_path,
    )
    exp.run(display=False)
    assert exp.get_status() == st.EXP_DONE
    assert sorted(t.final for t in exp.trials()) == [1.0, 2.0, 3.0]
