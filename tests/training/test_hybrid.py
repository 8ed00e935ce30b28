"""The hybrid training service: trials spread over several child services (NNI's ``trainingService`` list)."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nni_pl.experiment import Experiment
from nni_pl.experiment import store as st
from nni_pl.testing import SERVICE_TRIAL_COMMAND, TrainingServiceTestCase
from nni_pl.training.hybrid import PLATFORM_FILE, HybridTrainingService, read_platform_record
from nni_pl.training.local import LocalTrainingService
from nni_pl.training.service import TrainingService, TrialEnd, TrialJob
from nni_pl.trial import protocol

# a second "platform" that runs on this machine: the hybrid service only sees a child whose platform differs
CHILD_MODULE = """
from nni_pl.training.local import LocalTrainingService


class SecondLocal(LocalTrainingService):
    platform = "second"
"""


class SecondLocal(LocalTrainingService):
    platform = "second"


class TestHybridTrainingService(TrainingServiceTestCase):
    def make_service(self, *, directory: Path, concurrency: int) -> TrainingService:
        children = [
            LocalTrainingService(
                command=SERVICE_TRIAL_COMMAND, code_directory=directory, concurrency=concurrency
            )
            for _ in range(2)
        ]
        return HybridTrainingService(children, concurrency=concurrency)


def _job(directory: Path, trial_id: str, seq: int) -> TrialJob:
    job = TrialJob(
        experiment_id="hyb",
        trial_id=trial_id,
        sequence_id=seq,
        parameter_id=seq,
        parameter_source="algorithm",
        parameters={},
        trial_dir=directory / "trials" / trial_id,
    )
    protocol.write_parameter_file(job.trial_dir, job.parameter_record())
    return job


def _hybrid(directory: Path, command: str, concurrency: int = 2) -> HybridTrainingService:
    return HybridTrainingService(
        [
            LocalTrainingService(command=command, code_directory=directory),
            SecondLocal(command=command, code_directory=directory),
        ],
        concurrency=concurrency,
    )


def _wait_ends(service: TrainingService, trial_ids: set[str], timeout: float = 30) -> dict[str, TrialEnd]:
    ended: dict[str, TrialEnd] = {}
    deadline = time.monotonic() + timeout
    while set(ended) < trial_ids:
        assert time.monotonic() < deadline, f"trials {sorted(trial_ids - set(ended))} never ended"
        ended.update((e.trial_id, e) for e in service.poll(0.2))
    return ended


def test_hybrid_rejects_bad_arguments(tmp_path: Path) -> None:
    child = LocalTrainingService(command="true", code_directory=tmp_path)
    with pytest.raises(ValueError, match="at least one child service, got none"):
        HybridTrainingService([], concurrency=1)
    with pytest.raises(ValueError, match=r"services\[1\] must be a TrainingService, got str"):
        HybridTrainingService([child, "local"], concurrency=1)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="concurrency must be an integer >= 1, got 0"):
        HybridTrainingService([child], concurrency=0)


def test_hybrid_places_trials_on_the_least_busy_child_and_records_it(tmp_path: Path) -> None:
    service = _hybrid(tmp_path, "sleep 0.3; echo $NNI_PLATFORM > $NNI_OUTPUT_DIR/platform.txt", concurrency=3)
    assert service.platforms == ["local", "second"] and service.reattaches_trials
    assert [c.concurrency for c in service.services] == [3, 3]
    jobs = [_job(tmp_path, f"t{i}", i) for i in range(3)]
    infos = [service.submit(job) for job in jobs]
    # ties go to the first child; then the one with fewer trials
    assert [i.platform for i in infos] == ["local", "second", "local"]
    assert [read_platform_record(j.trial_dir) for j in jobs] == [
        {"child": 0, "platform": "local"},
        {"child": 1, "platform": "second"},
        {"child": 0, "platform": "local"},
    ]
    assert service.running() == {"t0", "t1", "t2"} and service.free_slots() == 0
    ended = _wait_ends(service, {"t0", "t1", "t2"})
    assert all(e.exit_code == 0 for e in ended.values())
    # each trial's environment names its child's platform
    seen = [(job.trial_dir / "platform.txt").read_text().strip() for job in jobs]
    assert seen == ["local", "second", "local"]
    for job in jobs:
        service.cleanup(job)
    assert service.free_slots() == 3
    service.shutdown()


def test_hybrid_free_slots_is_bounded_by_the_children(tmp_path: Path) -> None:
    service = _hybrid(tmp_path, "true", concurrency=4)
    for child in service.services:  # a child that cannot take a trial (e.g. its hosts are down)
        child.free_slots = lambda: 0  # type: ignore[method-assign]
    assert service.free_slots() == 0
    with pytest.raises(RuntimeError, match="no child service has a free slot"):
        service.submit(_job(tmp_path, "t0", 0))
    service.services[1].free_slots = lambda: 1  # type: ignore[method-assign]
    assert service.free_slots() == 1
    assert service.submit(_job(tmp_path, "t1", 1)).platform == "second"
    _wait_ends(service, {"t1"})


def test_hybrid_reattach_goes_to_the_child_that_ran_the_trial(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    command = f"while [ ! -e {gate} ]; do sleep 0.05; done"
    first = _hybrid(tmp_path, command)
    jobs = [_job(tmp_path, f"r{i}", i) for i in range(2)]
    infos = [first.submit(job) for job in jobs]
    assert [i.platform for i in infos] == ["local", "second"]
    # the manager dies: a new service (new children) picks the trials up from their folders
    second = _hybrid(tmp_path, command)
    for job, info in zip(jobs, infos):
        assert second.reattach(job, info.pid, info.pid_started_at) is True
    assert second.services[0].running() == {"r0"} and second.services[1].running() == {"r1"}
    # a trial never handed to a child is submitted again; a record naming a platform it no longer has is lost
    never = _job(tmp_path, "n0", 2)
    assert second.reattach(never, None, None) is False
    gone = _job(tmp_path, "g0", 3)
    (gone.control_dir / PLATFORM_FILE).write_text(json.dumps({"child": 5, "platform": "remote"}))
    lost = second.reattach(gone, None, None)
    assert (
        isinstance(lost, TrialEnd)
        and lost.exit_code is None
        and "cannot be found again" in (lost.error or "")
    )
    gate.touch()
    ended = _wait_ends(second, {"r0", "r1"})
    assert all(e.exit_code == 0 for e in ended.values())
    second.terminate("r0")  # ended: nothing to do
    first.shutdown()
    second.shutdown()


def test_hybrid_poll_waits_its_timeout_and_no_child_waits_on_another(tmp_path: Path) -> None:
    service = _hybrid(tmp_path, 'sleep "$(cat $NNI_OUTPUT_DIR/seconds)"')
    started = time.monotonic()
    assert service.poll(0.3) == []  # nothing runs: it waits the timeout out
    assert 0.25 <= time.monotonic() - started < 1.5
    slow, quick = _job(tmp_path, "slow", 0), _job(tmp_path, "quick", 1)
    (slow.trial_dir / "seconds").write_text("60")
    (quick.trial_dir / "seconds").write_text("0.2")
    assert [service.submit(slow).platform, service.submit(quick).platform] == ["local", "second"]
    started = time.monotonic()
    ends: list[TrialEnd] = []
    while not ends:  # the first child's trial runs on; the second's end is seen at once
        ends = service.poll(10.0)
    assert [e.trial_id for e in ends] == ["quick"] and time.monotonic() - started < 3.0
    service.terminate("slow", grace=1)
    assert _wait_ends(service, {"slow"})["slow"].exit_code != 0


@pytest.fixture
def child_module(tmp_path: Path):
    code = tmp_path / "childcode"
    code.mkdir()
    (code / "hybrid_children.py").write_text(textwrap.dedent(CHILD_MODULE))
    yield code
    sys.modules.pop("hybrid_children", None)


def test_an_experiment_spreads_its_trials_over_the_listed_platforms(
    tmp_path: Path, child_module: Path
) -> None:
    (tmp_path / "trial.py").write_text(
        "import os, time\nimport nni_pl as nni\nx = nni.get_next_parameter()['x']\ntime.sleep(0.2)\n"
        "nni.report_final_result({'default': x, 'platform': os.environ['NNI_PLATFORM']})\n"
    )
    config = {
        "trialCommand": f"{sys.executable} trial.py",
        "trialCodeDirectory": str(tmp_path),
        "trialConcurrency": 2,
        "maxTrialNumber": 6,
        "searchSpace": {"x": {"_type": "choice", "_value": [1, 2, 3, 4, 5, 6]}},
        "tuner": {"name": "GridSearch"},
        "experimentWorkingDirectory": str(tmp_path / "work"),
        "trainingService": [
            {"platform": "local"},
            {"className": "hybrid_children:SecondLocal", "codeDirectory": str(child_module)},
        ],
    }
    exp = Experiment(config)
    from nni_pl.training.platforms import HybridConfig

    assert isinstance(exp.config.training_service, HybridConfig)
    exp.run(display=False)
    assert exp.get_status() == st.EXP_DONE
    trials = exp.store.list_trials(exp.id)
    assert len(trials) == 6 and all(t.status == st.SUCCEEDED for t in trials)
    platforms = [t.platform for t in trials]
    assert set(platforms) == {"local", "second"}, platforms
    # what each trial saw in NNI_PLATFORM is what the store says, and the folder's record agrees
    for t in trials:
        assert t.final["platform"] == t.platform
        assert read_platform_record(Path(t.trial_dir))["platform"] == t.platform
    jobs = exp.list_trial_jobs()
    assert [j.platform for j in jobs] == platforms
    assert exp.get_trial_job(trials[0].trial_id).platform == platforms[0]
    stored = exp.store.get_experiment(exp.id).config["trainingService"]
    assert [s.get("platform", s.get("className")) for s in stored] == ["local", "hybrid_children:SecondLocal"]


def test_a_single_platform_experiment_records_its_platform(tmp_path: Path) -> None:
    (tmp_path / "trial.py").write_text(
        "import nni_pl as nni\nnni.report_final_result(nni.get_next_parameter()['x'])\n"
    )
    exp = Experiment(
        {
            "trialCommand": f"{sys.executable} trial.py",
            "trialCodeDirectory": str(tmp_path),
            "maxTrialNumber": 1,
            "trialConcurrency": 1,
            "searchSpace": {"x": {"_type": "choice", "_value": [1]}},
            "tuner": {"name": "GridSearch"},
            "experimentWorkingDirectory": str(tmp_path / "work"),
            "trainingService": [{"platform": "local"}],  # a list of one is that platform
        }
    )
    exp.run(display=False)
    assert [t.platform for t in exp.store.list_trials(exp.id)] == ["local"]
    assert exp.list_trial_jobs()[0].platform == "local"
