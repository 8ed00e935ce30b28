"""The ``platform: aml`` section: NNI's keys, nni-pl's, and one-line errors naming the field."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from nni_pl.errors import ConfigError, MissingDependencyError
from nni_pl.experiment.config import ExperimentConfig
from nni_pl.training import platforms
from nni_pl.training.aml_config import AmlConfig

SUB = "9b1d4a4e-2f3c-4a57-9d2e-1c0f5e8b7a61"
FULL = {
    "platform": "aml",
    "dockerImage": "myregistry.azurecr.io/nni-pl:1",
    "subscriptionId": SUB,
    "resourceGroup": "ml-rg",
    "workspaceName": "ml-ws",
    "computeTarget": "gpu-cluster",
}


def read(**changes: Any) -> AmlConfig:
    raw = {k: v for k, v in {**FULL, **changes}.items() if v is not None}
    return AmlConfig.from_dict(raw, "trainingService")


def test_aml_config_reads_nni_keys_and_round_trips() -> None:
    section = read(maxTrialNumberPerGpu=2, useActiveGpu=True, experimentName="mnist-hpo")
    assert (
        section.subscription_id,
        section.resource_group,
        section.workspace_name,
        section.compute_target,
    ) == (
        SUB,
        "ml-rg",
        "ml-ws",
        "gpu-cluster",
    )
    assert section.max_trial_number_per_gpu == 2 and section.use_active_gpu
    again = AmlConfig.from_dict(section.to_dict(), "trainingService")
    assert again == section
    assert section.environment_reference is None


def test_aml_config_environment_instead_of_image() -> None:
    section = read(dockerImage=None, environment="nni-pl-gpu:3")
    assert section.environment_reference == "azureml:nni-pl-gpu:3"
    assert (
        read(dockerImage=None, environment="azureml:env@latest").environment_reference == "azureml:env@latest"
    )


@pytest.mark.parametrize(
    ("changes", "field", "match"),
    [
        ({"subscriptionId": "${your subscription ID}"}, "subscriptionId", "not a subscription id"),
        ({"subscriptionId": None}, "subscriptionId", "is required"),
        ({"resourceGroup": "bad group!"}, "resourceGroup", "'bad group!'"),
        ({"workspaceName": "w"}, "workspaceName", "3-33"),
        ({"computeTarget": None}, "computeTarget", "is required"),
        ({"computeTarget": "9cluster"}, "computeTarget", "starting with a letter"),
        ({"dockerImage": None}, "dockerImage", "nni-pl installed"),
        ({"environment": "env:1"}, "environment", "keep one"),
        ({"dockerImage": "Has Space"}, "dockerImage", "image reference"),
        ({"reuseMode": True}, "reuseMode", "reuseMode is not supported on aml yet"),
        ({"maxTrialNumberPerGpu": 0}, "maxTrialNumberPerGpu", "at least 1"),
        ({"python": "my python"}, "python", "python3"),
        ({"experimentName": "a b"}, "experimentName", "'a b'"),
        ({"computeTraget": "x"}, "computeTraget", "did you mean 'computeTarget'"),
    ],
)
def test_aml_config_errors_name_the_field(changes: dict[str, Any], field: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        read(**changes)
    assert info.value.field == f"trainingService.{field}"
    assert "\n" not in str(info.value)


def test_aml_is_a_platform_and_no_longer_unavailable() -> None:
    assert "aml" not in platforms.UNAVAILABLE_PLATFORMS
    section = platforms.parse_section(dict(FULL), "trainingService")
    assert isinstance(section, AmlConfig)
    assert platforms.blank_section("aml").platform == "aml"
    hybrid = platforms.parse_section([dict(FULL), {"platform": "local"}], "trainingService")
    assert hybrid.platforms == ["aml", "local"]


def test_aml_in_an_experiment_config(tmp_path: Any) -> None:
    config = ExperimentConfig.from_dict(
        {
            "trialCommand": "python train.py",
            "trialCodeDirectory": str(tmp_path),
            "searchSpace": {},
            "trialConcurrency": 2,
            "trainingService": dict(FULL),
            "storeUrl": "postgresql://nni@db.internal:5432/nni",
        }
    )
    assert isinstance(config.training_service, AmlConfig)
    assert config.json()["trainingService"]["computeTarget"] == "gpu-cluster"


def test_aml_section_built_in_python_is_checked() -> None:
    blank = AmlConfig()
    with pytest.raises(ConfigError, match=r"subscriptionId.*is required"):
        blank.preflight()
    blank.subscription_id, blank.resource_group, blank.workspace_name = SUB, "rg", "ml-ws"
    blank.compute_target, blank.docker_image = "cpu", "img:1"
    blank.preflight()


def test_aml_build_names_the_extra_when_azure_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.ai.ml", None)
    spec = platforms.ServiceSpec(
        section=read(), trial_command="python t.py", trial_code_directory=".", experiment_directory="."
    )
    with pytest.raises(MissingDependencyError, match=r"nni-pl\[aml\]"):
        platforms.create_service(spec)


def test_importing_the_aml_config_imports_no_azure() -> None:
    code = (
        "import sys, nni_pl, nni_pl.training.platforms, nni_pl.training.aml_config, nni_pl.training.aml\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('azure', 'torch', 'kubernetes')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
