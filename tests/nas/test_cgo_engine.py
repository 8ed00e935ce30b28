"""CGO in the engine: NasExperiment(execution="cgo") trains several trials per process, each its own trial."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nni_pl.errors import ConfigError
from nni_pl.experiment import store as st
from nni_pl.nas._trial import run_trial
from nni_pl.nas.cgo_service import CgoTrainingService, cgo_settings
from nni_pl.nas.evaluator import Classification
from nni_pl.nas.experiment import NasExperiment
from nni_pl.nas.strategy import GridSearch
from nni_pl.training.service import TrialJob
from nni_pl.trial._context import TrialContext, activate
from tests.nas.cgo_space import CgoSpace

ROOT = Path(__file__).resolve().parents[2]
DIGITS = {
    "factory": "nni_pl.nas.evaluator.data:digits_loaders",
    "kwargs": {"limit": 200, "batch_size": 50, "flatten": True},
}


def _run(
    tmp_path: Path, *, broken: bool, max_trial_number: int = 4
) -> tuple[NasExperiment, list[st.TrialRow]]:
    exp = NasExperiment(
        CgoSpace(broken=broken),
        Classification(train_dataloaders=DIGITS, learning_rate=0.05, max_epochs=1),
        GridSearch(shuffle=False),
        seed=0,
        execution="cgo",
        cgo={"max_models": 2, "batch_wait_s": 30.0},
        max_trial_number=max_trial_number,
        experiment_working_directory=tmp_path,
        trial_code_directory=ROOT,
    )
    exp.run(display=False)
    return exp, exp.trials()


def _markers(trials: list[st.TrialRow]) -> list[dict]:
    return [json.loads((Path(t.trial_dir) / "cgo.json").read_text(encoding="utf-8")) for t in trials]


@pytest.mark.slow
def test_cgo_experiment_merges_pairs_of_trials_each_its_own_trial(tmp_path: Path) -> None:
    exp, trials = _run(tmp_path, broken=False)
    assert [t.status for t in trials] == [st.SUCCEEDED] * 4, [t.error for t in trials]
    assert sorted(t.parameters["head"] for t in trials) == ["a", "b", "c", "d"]
    for t in trials:
        assert 0.0 <= t.final_default <= 1.0
        assert t.intermediate_count == 1  # its own validation epoch, in its own metrics file
    markers = _markers(trials)
    assert len({m["pid"] for m in markers}) == 2  # 4 trials, 2 processes (2 merged per process)
    assert [t.pid for t in trials] == [m["pid"] for m in markers]  # the store knows each trial's process
    assert sorted(len(m["trials"]) for m in markers) == [2, 2, 2, 2]
    assert len(list((exp.directory / "cgo").iterdir())) == 2
    assert exp.export_top_models(top_k=1)[0]["head"] in "abcd"
    exp.close()

    # merged training gives what the architecture's own trial process gives (same seed): here in-process
    t = trials[1]
    (tmp_path / "solo").mkdir()
    activate(
        TrialContext(experiment_id="x", trial_id="solo", trial_dir=tmp_path / "solo", parameters=t.parameters)
    )
    try:
        solo = run_trial(exp.spec, t.parameters)
    finally:
        activate(None)
    assert solo == pytest.approx(t.final_default, abs=1e-6)

    # the CLI sees 4 ordinary trials
    exported = json.loads(_cli(tmp_path, "export", exp.id, "--format", "json"))
    assert len(exported) == 4
    assert exp.id in _cli(tmp_path, "list")
    shown = _cli(tmp_path, "show", exp.id)
    assert all(t.trial_id in shown for t in trials), shown


def _cli(tmp_path: Path, *args: str) -> str:
    env = {**os.environ, "NNI_PL_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "nni_pl", *args, "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.slow
def test_cgo_broken_architecture_fails_alone_its_group_mate_succeeds_and_cli_resume_merges(
    tmp_path: Path,
) -> None:
    exp, trials = _run(tmp_path, broken=True, max_trial_number=2)
    assert [t.status for t in trials] == [st.SUCCEEDED] * 2, [t.error for t in trials]
    exp.close()
    # `nni-pl resume` runs the rest merged too (the CGO settings are in nas.json)
    _cli(tmp_path, "update", exp.id, "--max-trials", "4")
    _cli(tmp_path, "resume", exp.id, "--no-webui", "--no-display")
    again = NasExperiment.view(exp.id, working_directory=tmp_path)
    by_head = {t.parameters["head"]: t for t in again.trials()}
    assert sorted(by_head) == ["a", "b", "c", "d"]
    assert by_head["d"].status == st.FAILED
    assert "mat1 and mat2 shapes cannot be multiplied" in (by_head["d"].error or "")
    assert by_head["d"].final is None
    for head in "abc":
        assert by_head[head].status == st.SUCCEEDED, by_head[head].error
        assert by_head[head].final_default is not None
    mates = _markers([by_head["d"]])[0]["trials"]
    assert sorted(mates) == sorted([by_head["c"].trial_id, by_head["d"].trial_id])  # (c, d) merged
    assert len(list((again.directory / "cgo").iterdir())) == 2
    again.close()


def test_cgo_settings_are_checked() -> None:
    assert cgo_settings(None) == {"max_models": 4, "batch_wait_s": 2.0}
    assert cgo_settings({"max_models": 2}) == {"max_models": 2, "batch_wait_s": 2.0}
    with pytest.raises(ConfigError, match="max_models"):
        cgo_settings({"max_models": 0})
    with pytest.raises(ConfigError, match="batch_wait"):
        cgo_settings({"batch_wait_s": -1})
    with pytest.raises(ConfigError, match="unknown"):
        cgo_settings({"max_model": 2})
    ev = Classification(train_dataloaders=DIGITS, max_epochs=1)
    with pytest.raises(ConfigError, match="cgo"):
        NasExperiment(CgoSpace(), ev, GridSearch(), cgo={"max_models": 2})


def _job(tmp_path: Path, tid: str) -> TrialJob:
    return TrialJob("exp", tid, 0, 0, "algorithm", {"head": "a"}, tmp_path / "trials" / tid)


def test_cgo_service_fills_a_group_and_cancels_its_trials_before_it_trains(tmp_path: Path) -> None:
    service = CgoTrainingService(
        spec_path=tmp_path / "nas.json",
        group_root=tmp_path / "cgo",
        code_directory=tmp_path,
        concurrency=1,
        max_models=3,
        batch_wait_s=60.0,
    )
    assert service.free_slots() == 3
    first = service.submit(_job(tmp_path, "t1"))  # starts the merged process, which warms up meanwhile
    second = service.submit(_job(tmp_path, "t2"))
    assert first.pid is not None and second.pid == first.pid and first.host
    assert service.free_slots() == 1 and service.running() == {"t1", "t2"}
    assert service.poll(0.0) == []  # still waiting for a third model (or 60 s)
    service.terminate("t1")
    ends = service.poll(0.0)
    assert [(e.trial_id, e.exit_code) for e in ends] == [("t1", 143)]
    assert service.running() == {"t2"} and service.free_slots() == 2
    service.terminate("t2")  # the last one: the process has nothing to train and ends
    ends = service.poll(0.0)
    deadline = time.time() + 30
    while service.groups and time.time() < deadline:
        ends += service.poll(0.1)
    assert [(e.trial_id, e.exit_code) for e in ends] == [("t2", 143)]
    assert not service.groups and service.free_slots() == 3
    (group,) = (tmp_path / "cgo").iterdir()
    assert not (group / "jobs.json").exists()  # never sealed: nothing was trained
    service.shutdown()


def test_cgo_service_reports_each_trial_of_a_merged_process(tmp_path: Path) -> None:
    """The merged process (here a fake one: the spec is missing) fails: each of its trials ends failed."""
    service = CgoTrainingService(
        spec_path=tmp_path / "missing.json",
        group_root=tmp_path / "cgo",
        code_directory=tmp_path,
        max_models=2,
        batch_wait_s=0.0,
        gpu_number=0,
    )
    service.submit(_job(tmp_path, "t1"))
    ends = []
    deadline = time.time() + 60
    while service.running() and time.time() < deadline:
        ends += service.poll(0.2)
    assert sorted(e.trial_id for e in ends) == ["t1"]
    assert ends[0].exit_code == 1 and "missing.json" in (ends[0].error or "")
    (group,) = (tmp_path / "cgo").iterdir()
    assert "export CUDA_VISIBLE_DEVICES=\n" in (group / "run.sh").read_text()  # trialGpuNumber 0: no GPU
    service.shutdown()


def test_a_model_asked_to_stop_leaves_the_merged_run_alone() -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from nni_pl.nas.cgo import train_merged

    data = TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
    models = [torch.nn.Linear(4, 2), torch.nn.Linear(4, 2), torch.nn.Linear(4, 2)]
    steps = {"n": 0}

    def should_stop(i: int) -> bool:
        if i == 0:
            steps["n"] += 1
        return i == 1 and steps["n"] > 2  # model 1 is stopped at its 3rd step

    reports: list[tuple[int, str]] = []
    results = train_merged(
        models,
        DataLoader(data, batch_size=8),
        DataLoader(data, batch_size=32),
        max_epochs=1,
        should_stop=should_stop,
        report=lambda i, kind, value: reports.append((i, kind)),
    )
    assert [r.status for r in results] == ["succeeded", "stopped", "succeeded"]
    assert results[1].final is None and not results[1].retried_alone
    assert (1, "final") not in reports and (1, "failed") not in reports


def test_cgo_service_stops_one_trial_of_a_merged_process_the_other_goes_on(tmp_path: Path) -> None:
    space = CgoSpace()
    evaluator = Classification(train_dataloaders=DIGITS, learning_rate=0.05, max_epochs=1)
    spec = {
        "model_space": {"import_path": space.import_path, "init_kwargs": space.init_kwargs},
        "evaluator": evaluator.to_config(),
        "seed": 0,
        "code_directory": str(ROOT),
    }
    (tmp_path / "nas.json").write_text(json.dumps(spec), encoding="utf-8")
    service = CgoTrainingService(
        spec_path=tmp_path / "nas.json",
        group_root=tmp_path / "cgo",
        code_directory=ROOT,
        max_models=2,
        batch_wait_s=60.0,
    )
    jobs = [_job(tmp_path, "t1"), _job(tmp_path, "t2")]
    jobs[1].parameters = {"head": "b"}
    for job in jobs:
        service.submit(job)  # the second fills the group: one process starts
    assert len(service.groups) == 1 and service.running() == {"t1", "t2"}
    service.terminate("t1", grace=120.0)  # before its first step: its model leaves, t2 trains on
    ends = {}
    deadline = time.time() + 120
    while service.running() and time.time() < deadline:
        ends.update({e.trial_id: e for e in service.poll(0.2)})
    assert ends["t1"].exit_code == 143
    assert ends["t2"].exit_code == 0, ends["t2"].error
    records = [json.loads(line) for line in (jobs[1].trial_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["type"] for r in records] == ["PERIODICAL", "FINAL"]
    assert not (jobs[0].trial_dir / "metrics.jsonl").exists()
    service.shutdown()


@pytest.mark.slow
def test_cgo_stop_midway_then_resume_reruns_the_interrupted_group(tmp_path: Path) -> None:
    import threading

    exp = NasExperiment(
        CgoSpace(),
        Classification(train_dataloaders=DIGITS, learning_rate=0.05, max_epochs=1),
        GridSearch(shuffle=False),
        seed=0,
        execution="cgo",
        cgo={"max_models": 2, "batch_wait_s": 30.0},
        max_trial_number=4,
        experiment_working_directory=tmp_path,
        trial_code_directory=ROOT,
    )

    def stop_once_the_first_group_started() -> None:  # what Ctrl-C does
        deadline = time.time() + 120
        while time.time() < deadline:
            if exp.experiment._store is not None and (exp.directory / "cgo").exists():
                exp.stop()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=stop_once_the_first_group_started, daemon=True)
    watcher.start()
    exp.run(display=False)
    watcher.join()
    assert exp.experiment.get_status() == st.EXP_STOPPED
    # the stop may land before the group's second trial was created (then the first is dropped from the
    # open group at once), or after its row was written but before it was launched (it stays WAITING and resume
    # starts it); either way no trial is left RUNNING and every one runs again
    stopped = [(t.status, t.requeue) for t in exp.trials()]
    assert stopped in (
        [(st.USER_CANCELED, True)],
        [(st.USER_CANCELED, True)] * 2,
        [(st.USER_CANCELED, True), (st.WAITING, False)],
    ), stopped
    exp.close()

    again = NasExperiment.resume(exp.id, working_directory=tmp_path)
    again.run(display=False)
    done = [t for t in again.trials() if t.status == st.SUCCEEDED]
    assert sorted(t.parameters["head"] for t in done) == ["a", "b", "c", "d"]
    assert len(list((again.directory / "cgo").iterdir())) == 3  # the stopped group, then two
    again.close()
