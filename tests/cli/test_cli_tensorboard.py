"""Trials' Lightning logs land in their trial directories, and `nni-pl tensorboard` serves them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nni_pl.cli.main import main
from nni_pl.errors import NniPlError
from nni_pl.experiment import Experiment, tensorboard
from nni_pl.experiment.locate import find
from nni_pl.training.local import LocalTrainingService
from nni_pl.training.service import TrialJob
from nni_pl.trial import TrialContext, activate
from nni_pl.trial.protocol import ENV_DEFAULT_ROOT_DIR


def test_nni_callback_moves_lightning_logs_into_the_trial_dir_even_with_lightning_cli_arguments(
    tmp_path, monkeypatch
):
    pytest.importorskip("tensorboard")
    from lightning.pytorch import Trainer
    from lightning.pytorch.demos.boring_classes import BoringModel

    from nni_pl.callbacks import NNICallback

    class Model(BoringModel):
        def validation_step(self, batch, batch_idx):
            loss = super().validation_step(batch, batch_idx)["x"]
            self.log("val_loss", loss)
            return loss

    cwd, trial_dir = tmp_path / "code", tmp_path / "exp" / "trials" / "Ab3xY"
    cwd.mkdir()
    trial_dir.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    monkeypatch.delenv(ENV_DEFAULT_ROOT_DIR, raising=False)
    activate(
        TrialContext(experiment_id="e", trial_id="Ab3xY", sequence_id=0, trial_dir=trial_dir, parameters={})
    )
    try:
        # LightningCLI passes every Trainer argument, default_root_dir=None included
        trainer = Trainer(
            default_root_dir=None,
            max_epochs=1,
            limit_train_batches=2,
            limit_val_batches=1,
            callbacks=[NNICallback(monitor="val_loss", mode="min")],
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )
        trainer.fit(Model())
    finally:
        activate(None)
    assert not (cwd / "lightning_logs").exists()
    assert tensorboard.has_event_files(trial_dir / "lightning_logs" / "version_0")
    assert list((trial_dir / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt"))
    # a place the user chose is left alone
    chosen = tmp_path / "mine"
    activate(
        TrialContext(experiment_id="e", trial_id="Cd4zW", sequence_id=1, trial_dir=trial_dir, parameters={})
    )
    try:
        trainer = Trainer(
            default_root_dir=chosen,
            max_epochs=1,
            limit_train_batches=1,
            limit_val_batches=1,
            callbacks=[NNICallback(monitor="val_loss", mode="min")],
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )
        trainer.fit(Model())
    finally:
        activate(None)
    assert tensorboard.has_event_files(chosen)
    assert not (trial_dir / "lightning_logs" / "version_1").exists()


def test_trial_environments_point_lightning_at_the_trial_dir(tmp_path):
    svc = LocalTrainingService(command="python t.py", code_directory=tmp_path, concurrency=1)
    job = TrialJob("e", "Ab3xY", 0, 0, "algorithm", {}, tmp_path / "trials" / "Ab3xY")
    env = svc._environment(job, None)  # what the trial is started with
    assert env[ENV_DEFAULT_ROOT_DIR] == str(job.trial_dir)
    script = svc._script(job, env, svc._command(job))  # run.sh, to re-run it by hand
    assert f"export {ENV_DEFAULT_ROOT_DIR}=${{{ENV_DEFAULT_ROOT_DIR}:-{job.trial_dir}}}" in script
    os.environ[ENV_DEFAULT_ROOT_DIR] = str(tmp_path / "mine")  # a place the user chose is kept
    try:
        assert svc._environment(job, None)[ENV_DEFAULT_ROOT_DIR] == str(tmp_path / "mine")
    finally:
        del os.environ[ENV_DEFAULT_ROOT_DIR]
    svc.shutdown()


def _env_trial(params):
    os.write(1, os.environ.get(ENV_DEFAULT_ROOT_DIR, "unset").encode())
    return params["x"]


def _tb_trial(params):
    from torch.utils.tensorboard import SummaryWriter

    import nni_pl

    writer = SummaryWriter(log_dir=str(nni_pl.get_output_dir() / "lightning_logs" / "version_0"))
    for step in range(3):
        writer.add_scalar("loss", params["x"] * step, step)
    writer.close()
    return params["x"]


@pytest.fixture
def finished(tmp_path):
    pytest.importorskip("torch.utils.tensorboard")
    exp = Experiment(
        trial=_tb_trial,
        search_space={"x": {"_type": "uniform", "_value": [0, 1]}},
        tuner={"name": "Random", "classArgs": {"seed": 0}},
        max_trial_number=3,
        trial_concurrency=1,
        experiment_working_directory=tmp_path / "exps",
        id="tb000001",
        start_method="fork",
    )
    exp.run(display=False)
    return exp


def test_function_trials_get_the_trial_dir_too(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_DEFAULT_ROOT_DIR, raising=False)
    exp = Experiment(
        trial=_env_trial,
        search_space={"x": {"_type": "uniform", "_value": [0, 1]}},
        max_trial_number=1,
        experiment_working_directory=tmp_path,
        start_method="fork",
    )
    exp.run(display=False)
    t = exp.trials()[0]
    assert (Path(t.trial_dir) / "stdout").read_text() == t.trial_dir
    assert ENV_DEFAULT_ROOT_DIR not in os.environ


def test_logdir_spec_names_each_trial(finished, monkeypatch):
    loc = find("tb000001")
    trials = finished.trials()
    spec = tensorboard.logdir_spec(loc)
    assert spec == ",".join(f"{t.sequence_id}_{t.trial_id}:{t.trial_dir}" for t in trials)
    one = tensorboard.logdir_spec(loc, [trials[1].trial_id])
    assert one == f"1_{trials[1].trial_id}:{trials[1].trial_dir}"
    with pytest.raises(NniPlError, match="has no trial 'zzzzz'"):
        tensorboard.logdir_spec(loc, ["zzzzz"])
    command = tensorboard.tensorboard_command(loc, host="127.0.0.1", port=6123)
    assert command[1:3] == ["-m", "tensorboard.main"]
    assert command[command.index("--logdir_spec") + 1] == spec
    assert command[command.index("--host") + 1] == "127.0.0.1" and command[-1] == "6123"
    monkeypatch.setattr(tensorboard, "_installed", lambda: False)
    with pytest.raises(NniPlError, match="pip install tensorboard"):
        tensorboard.tensorboard_command(loc)


def test_no_logs_is_a_clear_error(tmp_path, capsys):
    exp = Experiment(
        trial=_env_trial,
        search_space={"x": {"_type": "uniform", "_value": [0, 1]}},
        max_trial_number=1,
        experiment_working_directory=tmp_path,
        id="nolog001",
        start_method="fork",
    )
    exp.run(display=False)
    assert main(["tensorboard", "nolog001"]) == 2
    assert "no TensorBoard logs in any trial of experiment nolog001" in capsys.readouterr().err


def test_tensorboard_serves_the_trials_on_loopback_until_interrupted(finished):
    pytest.importorskip("tensorboard")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nni_pl", "tensorboard", "tb000001", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )
    tb_pid = None
    try:
        line = ""
        deadline = time.time() + 60
        while "TensorBoard over" not in line and time.time() < deadline:
            line = proc.stdout.readline()
        m = re.search(
            r"TensorBoard over 3 trials of experiment tb000001: (http://127\.0\.0\.1:\d+/) \(pid (\d+)\)",
            line,
        )
        assert m is not None, line
        url, tb_pid = m.group(1), int(m.group(2))
        runs = None
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(url + "data/runs", timeout=5) as r:
                    runs = json.loads(r.read())
                if len(runs) == 3:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        names = {f"{t.sequence_id}_{t.trial_id}" for t in finished.trials()}
        assert runs is not None and {r.split("/")[0] for r in runs} == names
        proc.send_signal(signal.SIGTERM)  # as Ctrl-C (SIGINT may be ignored in a background job)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(tb_pid, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if tb_pid is not None:
            try:
                os.kill(tb_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
