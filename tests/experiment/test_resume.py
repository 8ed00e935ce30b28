"""Nothing is lost: resume after a normal stop, after Ctrl-C and after SIGKILL of the manager."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nni_pl.cli.main import main
from nni_pl.errors import NniPlError
from nni_pl.experiment import Experiment
from nni_pl.experiment import store as st
from nni_pl.experiment.locate import find
from nni_pl.training.process import alive as _alive

# each trial: 4 steps of 0.25 s, so trials are caught mid-run by the interruptions below
SPACE = {
    "x": {"_type": "uniform", "_value": [0, 1]},
    "steps": {"_type": "choice", "_value": [4]},
    "sleep": {"_type": "choice", "_value": [0.25]},
}
MAX = 8


def _check_nothing_lost_or_duplicated(exp_id: str) -> list[st.TrialRow]:
    loc = find(exp_id)
    store = loc.store
    exp = store.get_experiment(exp_id)
    assert exp.status == st.EXP_DONE, exp.message
    trials = store.list_trials(exp_id)
    counted = [t for t in trials if not t.requeue]
    assert len(counted) == MAX
    assert all(t.status == st.SUCCEEDED for t in counted), [(t.trial_id, t.status, t.error) for t in counted]
    # every counted trial ran once: distinct parameter sets and parameter ids, a final result each
    assert len({t.parameter_id for t in counted}) == MAX
    assert len({json.dumps(t.parameters, sort_keys=True) for t in counted}) == MAX
    assert all(t.final is not None for t in counted)
    # the store holds exactly what each trial wrote to its durable metrics file: no loss, no duplicates
    for t in trials:
        path = Path(t.trial_dir) / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        metrics = store.list_metrics(exp_id, t.trial_id)
        assert [m.seq for m in metrics] == [json.loads(line)["seq"] for line in lines]
    # an interrupted trial was re-run with the same parameters, exactly once
    for t in trials:
        if t.requeue:
            reruns = [r for r in trials if r.retry_of == t.trial_id]
            assert (
                len(reruns) == 1
                and reruns[0].parameters == t.parameters
                and reruns[0].parameter_id == t.parameter_id
            )
    return trials


def _finished(exp_id: str) -> int:
    loc = find(exp_id)
    return sum(1 for t in loc.store.list_trials(exp_id) if t.status == st.SUCCEEDED)


def test_resume_after_sigkill_of_the_manager(project, wait_for):
    cfg = project(SPACE, maxTrialNumber=MAX)
    assert main(["launch", str(cfg), "--id", "kill0001", "--detach"]) == 0
    exp = find("kill0001").experiment

    def running_mid_run() -> list[st.TrialRow]:
        if _finished("kill0001") < 2:
            return []
        trials = find("kill0001").store.list_trials("kill0001", statuses=[st.RUNNING])
        return [t for t in trials if t.intermediate_count >= 1 and t.pid and _alive(t.pid, t.pid_started_at)]

    running = wait_for(running_mid_run, timeout=60)
    os.kill(exp.manager_pid, signal.SIGKILL)
    wait_for(lambda: not _alive(exp.manager_pid, exp.manager_started_at), timeout=10)

    # the trials outlive the manager (own process groups) and keep writing durably
    assert any(_alive(t.pid, t.pid_started_at) for t in running)
    assert main(["list"]) == 0
    assert find("kill0001").experiment.status == st.EXP_RUNNING  # as recorded; `list` shows INTERRUPTED

    assert main(["resume", "kill0001", "--no-display"]) == 0
    trials = _check_nothing_lost_or_duplicated("kill0001")
    # the trials that were running were re-attached (or collected), not run again
    by_id = {t.trial_id: t for t in trials}
    for t in running:
        assert by_id[t.trial_id].status == st.SUCCEEDED and not by_id[t.trial_id].requeue


def test_resume_after_ctrl_c(project, wait_for, tmp_path):
    cfg = project(SPACE, maxTrialNumber=MAX)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nni_pl", "launch", str(cfg), "--id", "ctrc0001", "--no-display"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: _finished("ctrc0001") if find_or_none("ctrc0001") else 0, timeout=60)
        wait_for(lambda: _finished("ctrc0001") >= 2, timeout=60)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "STOPPED" in out and "nni-pl resume ctrc0001" in out
    loc = find("ctrc0001")
    exp = loc.experiment
    assert exp.status == st.EXP_STOPPED
    stopped = loc.store.list_trials("ctrc0001")
    assert len(stopped) < MAX
    canceled = [t for t in stopped if t.status == st.USER_CANCELED]
    assert canceled and all(t.requeue for t in canceled)
    assert not [t for t in stopped if t.status == st.RUNNING]

    assert main(["resume", "ctrc0001", "--no-display"]) == 0
    trials = _check_nothing_lost_or_duplicated("ctrc0001")
    assert {t.trial_id for t in trials} >= {t.trial_id for t in stopped}  # nothing removed


def find_or_none(exp_id: str):
    try:
        return find(exp_id)
    except Exception:
        return None


def test_stop_command_then_resume(project, wait_for):
    cfg = project(SPACE, maxTrialNumber=MAX)
    assert main(["launch", str(cfg), "--id", "stop0001", "--detach"]) == 0
    wait_for(lambda: _finished("stop0001") >= 2, timeout=60)
    assert main(["stop", "stop0001"]) == 0
    assert find("stop0001").experiment.status == st.EXP_STOPPED
    assert main(["resume", "stop0001", "--no-display"]) == 0
    _check_nothing_lost_or_duplicated("stop0001")


def test_resume_of_a_finished_experiment_with_a_higher_limit_rebuilds_the_tuner(tmp_path):
    space = {"x": {"_type": "choice", "_value": list(range(12))}}
    kwargs = dict(
        search_space=space, tuner="GridSearch", trial_concurrency=2, experiment_working_directory=tmp_path
    )
    exp = Experiment(trial=_identity, max_trial_number=5, **kwargs)
    exp.run(display=False)
    assert len(exp.trials()) == 5
    assert main(["update", str(exp.id), "--max-trials", "12"]) == 0
    with pytest.raises(NniPlError, match=r"resume it from Python: Experiment.resume\("):
        main_resume_without_function(str(exp.id))
    again = Experiment.resume(str(exp.id), trial=_identity)
    again.run(display=False)
    xs = sorted(t.parameters["x"] for t in again.trials())
    assert xs == list(range(12))  # the grid continued where it stopped: no repeats, nothing skipped


def main_resume_without_function(exp_id: str) -> None:
    Experiment.resume(exp_id)


def _identity(params):
    return params["x"]
