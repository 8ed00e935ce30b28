"""Lightning DDP across a PyTorchJob's replicas, as the training operator runs them: each replica of the manifest
nni-pl makes is started here as a process (its container's command and environment, plus what the operator adds:
``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``), each with a file system of its own. The two ranks
train one model together over gloo through Lightning's ``KubeflowEnvironment``; only rank 0 reports, so the
master's log (what the service reads) carries the trial's metrics and the worker's none.

There is no Kubernetes here: the pods are processes on this machine. What is real is the manifest's command and
environment, the job runner, Lightning's DDP and ``NNICallback``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nni_pl.training import job_runner
from nni_pl.training.kubeflow import job_name, pytorch_job_manifest
from nni_pl.training.kubeflow_config import KubeflowConfig
from nni_pl.training.service import TrialJob

pytest.importorskip("lightning", reason="Lightning is not installed")
pytestmark = pytest.mark.timeout(300)

TRIAL = textwrap.dedent(
    """
    import os
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.plugins.environments import KubeflowEnvironment
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    import nni_pl
    from nni_pl.callbacks import NNICallback

    class Net(pl.LightningModule):
        def __init__(self, lr):
            super().__init__()
            self.lr = lr
            self.layer = nn.Linear(4, 2)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self.layer(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            acc = (self.layer(x).argmax(1) == y).float().mean()
            self.log("val_acc", acc, sync_dist=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.lr)

    params = nni_pl.get_next_parameter()
    g = torch.Generator().manual_seed(int(os.environ["RANK"]))
    x = torch.randn(64, 4, generator=g)
    data = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=16)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, num_nodes=int(os.environ["WORLD_SIZE"]), strategy="ddp",
        plugins=[KubeflowEnvironment()], max_epochs=2, callbacks=[NNICallback(monitor="val_acc", mode="max")],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(Net(params["lr"]), data, data)
    with open(os.path.join(nni_pl.get_output_dir(), "ddp.txt"), "w") as f:
        f.write(f"{trainer.global_rank} {trainer.world_size} {type(trainer.strategy.cluster_environment).__name__}")
    """
)


POD_BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_lightning_ddp_runs_across_the_replicas_and_only_rank_0_reports(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(TRIAL)
    section = KubeflowConfig.from_dict(
        {"platform": "kubeflow", "worker": {"replicas": 2, "dockerImage": "me/trainer:1", "cpuNumber": 1}},
        "trainingService",
    )
    job = TrialJob("exp00001", "Ddp01", 0, 0, "algorithm", {"lr": 0.5}, tmp_path / "manager" / "Ddp01")
    manifest = pytorch_job_manifest(
        name=job_name(job.experiment_id, job.trial_id), namespace="default", job=job,
        roles=section.roles(), command=f"{sys.executable} train.py",
    )  # fmt: skip
    replicas = manifest["spec"]["pytorchReplicaSpecs"]
    assert sorted(replicas) == ["Master", "Worker"] and replicas["Worker"]["replicas"] == 1
    port = _free_port()
    procs = []
    for rank, kind in enumerate(["Master", "Worker"]):
        (container,) = replicas[kind]["template"]["spec"]["containers"]
        # a pod starts from its image's environment, not the test runner's (which earlier tests may have changed)
        env = {k: v for k, v in os.environ.items() if k in POD_BASE_ENV}
        env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
        # what the training operator sets in each replica's pod
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                   KUBERNETES_PORT="tcp://10.0.0.1:443")  # fmt: skip
        env[job_runner.ENV_TRIAL_ROOT] = str(tmp_path / f"pod-{kind.lower()}")  # a file system per pod
        command = [sys.executable if part == "python" else part for part in container["command"]]
        command += container.get("args", [])
        procs.append(
            subprocess.Popen(
                command, cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    master, worker = (job_runner.parse_log(out) for out, _ in outs)
    assert master.exit_code == 0 and worker.exit_code == 0 and master.started and worker.started
    # rank 0 reported every epoch and the final result; rank 1 reported nothing
    assert [r["type"] for r in master.records] == ["PERIODICAL", "PERIODICAL", "FINAL"]
    assert worker.records == []
    for kind, rank in (("master", 0), ("worker", 1)):
        ddp = (tmp_path / f"pod-{kind}" / "exp00001" / "Ddp01" / "ddp.txt").read_text()
        assert ddp == f"{rank} 2 KubeflowEnvironment"
