"""Fixtures of the AML service's tests: the recording ARM stand-in (:mod:`tests.aml.fake_aml`) and a service
built against it with a real ``MLClient``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("azure.ai.ml", reason="the aml extra (azure-ai-ml) is not installed")

from nni_pl.experiment.store import Store, sqlite_url
from nni_pl.training.aml import AmlTrainingService
from nni_pl.training.aml_config import AmlConfig
from tests.aml.fake_aml import COMPUTE, RG, SUB, WS, FakeAml, FakeCredential, LocalTransport, serve


def section(**changes: Any) -> AmlConfig:
    raw = {
        "platform": "aml",
        "subscriptionId": SUB,
        "resourceGroup": RG,
        "workspaceName": WS,
        "computeTarget": COMPUTE,
        "dockerImage": "myregistry.azurecr.io/nni-pl:1",
        **changes,
    }
    return AmlConfig.from_dict({k: v for k, v in raw.items() if v is not None}, "trainingService")


@pytest.fixture
def aml() -> Iterator[FakeAml]:
    with serve(FakeAml()) as state:
        yield state


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("print('training')\n")
    return code


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path / "store.sqlite")
    Store(url).close()
    return url


@pytest.fixture
def make_service(aml: FakeAml, code_dir: Path, store_url: str) -> Iterator[Callable[..., AmlTrainingService]]:
    made: list[AmlTrainingService] = []

    def make(**kwargs: Any) -> AmlTrainingService:
        args: dict[str, Any] = {
            "section": kwargs.pop("section", None) or section(),
            "command": "python train.py",
            "code_directory": code_dir,
            "store_url": store_url,
            "experiment_id": "exp1",
            "concurrency": 2,
            "credential": FakeCredential(),
            "client_kwargs": {"transport": LocalTransport(aml.port)},
            "min_poll": 0.05,
            "max_poll": 0.4,
        }
        args.update(kwargs)
        service = AmlTrainingService(**args)
        made.append(service)
        return service

    yield make
    for service in made:
        service.shutdown()
