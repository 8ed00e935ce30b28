"""LocalTrainingService.reattach speaks the contract's four-argument form: a reattached trial holds its GPUs again."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from nni_pl.testing import SERVICE_TRIAL_COMMAND
from nni_pl.training.local import LocalTrainingService
from nni_pl.training.process import process_start_time
from nni_pl.training.service import TrainingService, TrialJob
from nni_pl.trial import protocol


def _job(tmp_path: Path, trial_id: str) -> TrialJob:
    job = TrialJob("exp1", trial_id, 0, 0, "algorithm", {}, tmp_path / "trials" / trial_id)
    protocol.write_parameter_file(job.trial_dir, job.parameter_record())
    return job


def test_reattached_trial_holds_its_gpus_again(tmp_path: Path) -> None:
    # a trial of a crashed manager, still running on GPU 1 (its own session, as the service starts them)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        svc = LocalTrainingService(
            command=SERVICE_TRIAL_COMMAND,
            code_directory=tmp_path,
            concurrency=2,
            gpu_number=1,
            gpu_indices=[0, 1],
        )
        job = _job(tmp_path, "gpu1")
        assert svc.reattach(job, proc.pid, process_start_time(proc.pid), [1]) is True
        assert svc.running() == {"gpu1"}
        assert svc.free_slots() == 1
        assert svc.gpus.acquire("next") == [0]  # GPU 1 is taken by the reattached trial
        assert svc.free_slots() == 0
        svc.terminate("gpu1", grace=1.0)
        (end,) = _ends(svc)
        assert end.trial_id == "gpu1"
        assert svc.gpus.acquire("after") == [1]  # released with its end
    finally:
        proc.kill()
        proc.wait()


def test_local_trials_outlive_the_manager_and_are_reattached() -> None:
    # what the conformance suite's crash check reads: local trials are reattached, not re-run
    assert LocalTrainingService.reattaches_trials is True
    assert (
        TrainingService.reattaches_trials is False
    )  # the default for services whose trials die with the manager


def _ends(svc: LocalTrainingService) -> list:
    deadline = time.time() + 10
    ends: list = []
    while not ends and time.time() < deadline:
        ends += svc.poll(0.1)
    assert ends, "the reattached trial did not end after terminate()"
    return ends
