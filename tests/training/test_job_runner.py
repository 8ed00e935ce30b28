"""The job runner (the worker side of the cluster services): a real trial run through ``python -m
nni_pl.training.job_runner`` as a container would, its log read back with ``parse_log``, and the relay through
a real store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nni_pl.experiment.store import Store, sqlite_url
from nni_pl.testing._service_trial import TRIAL_COMMAND
from nni_pl.training import job_runner
from nni_pl.training.service import TrialJob

PY_COMMAND = TRIAL_COMMAND.replace("python", sys.executable, 1)


def _job(params: dict, trial_id: str = "Tr001") -> TrialJob:
    return TrialJob("exp00001", trial_id, 3, 7, "algorithm", params, Path("/nowhere"))


def _run(tmp_path: Path, params: dict, *, store_url: str | None = None, command: str = PY_COMMAND,
         timeout: float = 60) -> tuple[int, str, str]:  # fmt: skip
    env = dict(os.environ)
    env.update(
        job_runner.job_environment(_job(params), platform="kubeflow", command=command, store_url=store_url)
    )
    env[job_runner.ENV_TRIAL_ROOT] = str(tmp_path / "worker")
    proc = subprocess.run(
        job_runner.runner_command(sys.executable), env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def test_a_trial_runs_and_its_log_carries_every_metric_once(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path, {"intermediates": [0.1, 0.2, 0.3], "final": {"default": 0.9, "loss": 0.1}})
    assert code == 0
    log = job_runner.parse_log(out)
    assert log.started and log.start["trial_id"] == "Tr001"
    assert [(r["seq"], r["type"], r["value"]) for r in log.records] == [
        (0, "PERIODICAL", 0.1),
        (1, "PERIODICAL", 0.2),
        (2, "PERIODICAL", 0.3),
        (3, "FINAL", {"default": 0.9, "loss": 0.1}),
    ]
    assert (log.exit_code, log.error) == (0, None)
    # the trial saw its parameters and ids through the ordinary protocol, in a folder on the worker
    trial_dir = tmp_path / "worker" / "exp00001" / "Tr001"
    assert (trial_dir / "parameter.json").exists() and (trial_dir / ".nni" / "exitcode").exists()
    # reading a log twice (a reconnect, a resumed manager) gives the same records, once each
    assert job_runner.parse_log(out + out).records == log.records


def test_a_failing_trial_reports_its_code_and_stderr(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, {"final": 0.5, "stderr": "CUDA out of memory", "exit_code": 3})
    log = job_runner.parse_log(out)
    assert code == 3 and log.exit_code == 3
    assert "CUDA out of memory" in (log.error or "") and "CUDA out of memory" in err
    assert [r["value"] for r in log.records] == [0.5]  # reported before the failure: kept


def test_a_command_the_image_lacks_fails_with_its_message(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path, {}, command="no-such-program-xyz --fast")
    log = job_runner.parse_log(out)
    assert code == 127 and log.exit_code == 127 and "no-such-program-xyz" in (log.error or "")


def test_a_broken_job_document_is_one_line(tmp_path: Path) -> None:
    env = dict(os.environ, NNI_PL_JOB="not base64!")
    proc = subprocess.run(job_runner.runner_command(sys.executable), env=env, capture_output=True, text=True)
    log = job_runner.parse_log(proc.stdout)
    assert proc.returncode == 2 and log.exit_code == 2 and "NNI_PL_JOB" in (log.error or "")


def test_metrics_are_relayed_through_the_store(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "shared.sqlite")
    code, out, _ = _run(tmp_path, {"intermediates": [1, 2], "final": 3}, store_url=url)
    assert code == 0
    relayed = job_runner.read_relayed(url, "exp00001", "Tr001")
    assert [(r["seq"], r["value"]) for r in relayed] == [(0, 1), (1, 2), (2, 3)]
    assert relayed == job_runner.parse_log(out).records
    assert job_runner.read_relayed(url, "exp00001", "Tr001", after_seq=1) == relayed[2:]


def test_the_store_url_may_come_from_the_environment_only(tmp_path: Path) -> None:
    """A URL with a password comes from a cluster secret as NNI_PL_STORE_URL, not from the job's spec."""
    url = sqlite_url(tmp_path / "shared.sqlite")
    env = dict(os.environ)
    env.update(job_runner.job_environment(_job({"final": 1}), platform="aml", command=PY_COMMAND))
    assert "shared.sqlite" not in str(env[job_runner.ENV_JOB])
    env[job_runner.ENV_STORE_URL] = url
    env[job_runner.ENV_TRIAL_ROOT] = str(tmp_path / "w")
    subprocess.run(
        job_runner.runner_command(sys.executable), env=env, cwd=tmp_path, capture_output=True, check=True
    )
    assert [r["value"] for r in Store(url).relayed("exp00001", "Tr001")] == [1]


def test_an_unreachable_store_loses_nothing_from_the_log(tmp_path: Path) -> None:
    bad = "postgresql://nobody@127.0.0.1:1/none"
    code, out, err = _run(tmp_path, {"final": 0.25}, store_url=bad, timeout=120)
    assert code == 0 and [r["value"] for r in job_runner.parse_log(out).records] == [0.25]
    assert "cannot relay metrics through the store" in err


def test_sigterm_reaches_the_trial(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(job_runner.job_environment(_job({"intermediates": [0.5], "sleep": 60}), platform="kubeflow",
                                          command=PY_COMMAND))  # fmt: skip
    env[job_runner.ENV_TRIAL_ROOT] = str(tmp_path / "worker")
    proc = subprocess.Popen(job_runner.runner_command(sys.executable), env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    metrics = tmp_path / "worker" / "exp00001" / "Tr001" / "metrics.jsonl"
    deadline = time.time() + 30
    while not (metrics.exists() and metrics.stat().st_size) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the runner's next read
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    log = job_runner.parse_log(out)
    assert log.exit_code == 128 + signal.SIGTERM and [r["value"] for r in log.records] == [0.5]
