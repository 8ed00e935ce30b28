"""Fixtures of the kubeflow tests: a recording fake API server (``fake_apiserver.py``) and a kubeconfig for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nni_pl.training.kubeflow_config import KubeflowConfig
from nni_pl.training.service import TrialJob
from tests.kubeflow.fake_apiserver import FakeApiServer


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer(namespaces=("default", "ml")) as s:
        yield s


@pytest.fixture
def section(server: FakeApiServer, tmp_path: Path) -> Callable[..., KubeflowConfig]:
    """``section(**keys)``: a parsed section whose kubeconfig points at ``server``."""
    kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")

    def make(**keys: Any) -> KubeflowConfig:
        raw: dict[str, Any] = {
            "platform": "kubeflow",
            "kubeconfig": str(kubeconfig),
            "master": {
                "replicas": 1,
                "dockerImage": "me/trainer:1",
                "cpuNumber": 2,
                "memorySize": "4gb",
                "gpuNumber": 1,
            },
            "worker": {
                "replicas": 2,
                "dockerImage": "me/trainer:1",
                "cpuNumber": 2,
                "memorySize": "4gb",
                "gpuNumber": 1,
            },
        }
        raw.update(keys)
        return KubeflowConfig.from_dict(raw, "trainingService", tmp_path)

    return make


@pytest.fixture
def make_job(tmp_path: Path) -> Callable[..., TrialJob]:
    def make(
        trial_id: str = "Ab3xY", experiment_id: str = "Xy7kQ2aB", params: dict[str, Any] | None = None
    ) -> TrialJob:
        trial_dir = tmp_path / "exp" / "trials" / trial_id
        (trial_dir / ".nni").mkdir(parents=True, exist_ok=True)
        return TrialJob(experiment_id, trial_id, 0, 0, "algorithm", params or {"lr": 0.1}, trial_dir)

    return make
