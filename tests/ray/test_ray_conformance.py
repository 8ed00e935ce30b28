"""The Ray service passes the training-service conformance suite on a real three-node local Ray cluster:
command trials and function trials, each in warm actors (reuse) and in an actor per trial."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nni_pl.testing import SERVICE_TRIAL_COMMAND, TrainingServiceTestCase
from nni_pl.training.ray_config import RayConfig
from nni_pl.trial import protocol

from .conftest import RayCluster

ray_service = pytest.importorskip("nni_pl.training.ray_service", reason="the ray extra is not installed")

pytestmark = pytest.mark.timeout(600)


class _RaySuite(TrainingServiceTestCase):
    __test__ = False
    reuse = True
    function: str | None = None
    startup_timeout = 90.0
    not_applicable = {
        "test_manager_crash_loses_and_duplicates_nothing": (
            "the suite runs the crashing manager in a forked child, and Ray's client hangs when initialised in a "
            "fork of a process that used it; tests/ray/test_ray_faults.py::test_a_killed_manager_loses_nothing_and_resume_reattaches "
            "checks the same with the manager in a process of its own"
        )
    }

    @pytest.fixture(autouse=True)
    def _cluster(self, ray_cluster: RayCluster) -> None:
        self.cluster = ray_cluster

    def make_service(self, *, directory: Path, concurrency: int):
        code = directory / "code"
        code.mkdir(parents=True, exist_ok=True)
        section = RayConfig(address=self.cluster.address, trial_cpu_number=0.5, reuse_mode=self.reuse,
                            runtime_env={"working_dir": str(code)})  # fmt: skip
        return ray_service.RayTrainingService(
            section,
            experiment_id=f"conf-{directory.parent.name[-8:]}",
            experiment_directory=directory,
            command=None if self.function else SERVICE_TRIAL_COMMAND,
            function=self.function,
            code_directory=code,
            concurrency=concurrency,
            trial_root=str(directory.parent / "workers"),
        )

    def trial_output_dir(self, trial_dir: Path) -> Path:
        """The trial's folder on its node (the test nodes share this machine's file system)."""
        try:
            record = json.loads((trial_dir / protocol.CONTROL_DIR / ray_service.ACTOR_FILE).read_text())
            return Path(record["node"]["trial_dir"])
        except (OSError, ValueError, KeyError, TypeError):
            return trial_dir


class TestRayCommandTrialsReuse(_RaySuite):
    __test__ = True


class TestRayCommandTrialsActorPerTrial(_RaySuite):
    __test__ = True
    reuse = False


class TestRayFunctionTrials(_RaySuite):
    __test__ = True
    function = "nni_pl.testing._service_trial:run"
