"""Every built-in training service passes the training-service conformance suite (nni_pl.testing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nni_pl.nas.cgo_service import CgoTrainingService  # the one import of the CGO service
from nni_pl.testing import (
    SERVICE_TRIAL_COMMAND,
    TrainingServiceTestCase,
    service_trial,
    service_trial_nas_spec,
)
from nni_pl.training.functions import FunctionTrainingService
from nni_pl.training.local import LocalTrainingService
from nni_pl.training.service import TrainingService


class TestLocalTrainingService(TrainingServiceTestCase):
    def make_service(self, *, directory: Path, concurrency: int) -> TrainingService:
        return LocalTrainingService(
            command=SERVICE_TRIAL_COMMAND, code_directory=directory, concurrency=concurrency
        )


class TestFunctionTrainingService(TrainingServiceTestCase):
    startup_timeout = 8.0  # a worker imports only the trial program

    def make_service(self, *, directory: Path, concurrency: int) -> TrainingService:
        service = FunctionTrainingService(service_trial, concurrency=concurrency)
        service.start()
        return service


@pytest.mark.slow
class TestCgoTrainingService(TrainingServiceTestCase):
    """CGO runs the suite's program as NAS trials: a space with nothing to choose, a FunctionalEvaluator calling
    it (a non-Classification evaluator runs unmerged in the merged process). One trial per process
    (``max_models=1``), so ``trialConcurrency`` counts trials as for the other services."""

    startup_timeout = 120.0  # every merged process imports torch and Lightning

    def make_service(self, *, directory: Path, concurrency: int) -> TrainingService:
        spec = directory / "nas.json"
        spec.write_text(json.dumps(service_trial_nas_spec(code_directory=str(directory))), encoding="utf-8")
        return CgoTrainingService(
            spec_path=spec,
            group_root=directory / "cgo",
            code_directory=directory,
            concurrency=concurrency,
            max_models=1,
            batch_wait_s=0.0,
        )
