"""The training-service factory: platform sections, services named by class, and the experiment using them."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from nni_pl.errors import ConfigError
from nni_pl.experiment import Experiment
from nni_pl.experiment import store as st
from nni_pl.training.local import LocalConfig, LocalTrainingService
from nni_pl.training.platforms import CustomServiceConfig, ServiceSpec, create_service, parse_section

SERVICE_MODULE = """
from nni_pl.training.local import LocalTrainingService

BUILT = []


class CountingService(LocalTrainingService):
    @classmethod
    def from_spec(cls, spec, *, label):
        service = super().from_spec(spec)
        BUILT.append((label, spec.trial_concurrency, str(spec.experiment_directory)))
        return service


class NoFactory:
    pass


class NotAService:
    @classmethod
    def from_spec(cls, spec):
        return object()
"""


@pytest.fixture
def service_module(tmp_path: Path):
    code = tmp_path / "svccode"
    code.mkdir()
    (code / "my_service.py").write_text(textwrap.dedent(SERVICE_MODULE))
    yield code
    sys.modules.pop("my_service", None)


def _spec(tmp_path: Path, section) -> ServiceSpec:
    return ServiceSpec(
        section=section,
        trial_command="python trial.py",
        trial_code_directory=tmp_path,
        experiment_directory=tmp_path / "exp",
        trial_concurrency=3,
    )


def test_platform_sections_parse_and_name_the_field():
    assert parse_section(None, "trainingService") == LocalConfig()
    assert parse_section({"platform": "local", "gpuIndices": "1,2"}, "trainingService").gpu_indices == [1, 2]
    with pytest.raises(ConfigError, match=r"'trainingService.platform'.*platform 'openpai' is not available"):
        parse_section({"platform": "openpai"}, "trainingService")
    with pytest.raises(ConfigError, match=r"unknown platform 'locall'.*did you mean 'local'"):
        parse_section({"platform": "locall"}, "trainingService")
    with pytest.raises(ConfigError, match=r"'trainingService.className'.*is required"):
        CustomServiceConfig.from_dict({"classArgs": {}}, "trainingService")
    with pytest.raises(ConfigError, match=r"'trainingService.classArgs'.*write a mapping"):
        parse_section({"className": "a.b:C", "classArgs": [1]}, "trainingService")


def test_a_service_named_by_class_builds_itself_from_the_spec(tmp_path, service_module):
    section = parse_section(
        {
            "className": "my_service:CountingService",
            "classArgs": {"label": "x"},
            "codeDirectory": str(service_module),
        },
        "trainingService",
    )
    service = create_service(_spec(tmp_path, section))
    assert isinstance(service, LocalTrainingService) and service.concurrency == 3
    assert sys.modules["my_service"].BUILT == [("x", 3, str(tmp_path / "exp"))]
    assert section.to_dict()["className"] == "my_service:CountingService"


@pytest.mark.parametrize(
    ("target", "args", "message"),
    [
        ("my_service:NoFactory", {}, r"has no from_spec\(spec, \*\*classArgs\) classmethod"),
        ("my_service:NotAService", {}, r"returned object, not a TrainingService"),
        (
            "my_service:CountingService",
            {"lable": 1},
            r"'trainingService.classArgs'.*unexpected keyword argument 'lable'",
        ),
        ("my_service:Missing", {}, r"has no class 'Missing'"),
    ],
)
def test_a_bad_service_class_is_refused_naming_the_field(tmp_path, service_module, target, args, message):
    section = CustomServiceConfig(class_name=target, class_args=args, code_directory=service_module)
    with pytest.raises(ConfigError, match=message):
        create_service(_spec(tmp_path, section))


def test_an_experiment_runs_its_trials_on_the_service_its_config_names(tmp_path, service_module):
    (tmp_path / "trial.py").write_text(
        "import nni_pl as nni\nnni.report_final_result(nni.get_next_parameter()['x'])\n"
    )
    config = {
        "trialCommand": f"{sys.executable} trial.py",
        "trialCodeDirectory": str(tmp_path),
        "trialConcurrency": 2,
        "maxTrialNumber": 3,
        "searchSpace": {"x": {"_type": "choice", "_value": [1, 2, 3]}},
        "tuner": {"name": "GridSearch"},
        "experimentWorkingDirectory": str(tmp_path / "work"),
        "trainingService": {
            "className": "my_service:CountingService",
            "classArgs": {"label": "mine"},
            "codeDirectory": str(service_module),
        },
    }
    exp = Experiment(config)
    exp.run(display=False)
    assert exp.get_status() == st.EXP_DONE
    assert sorted(t.final for t in exp.trials()) == [1, 2, 3]
    assert [b[0] for b in sys.modules["my_service"].BUILT] == ["mine"]
    stored = exp.store.get_experiment(exp.id).config["trainingService"]
    assert stored["className"] == "my_service:CountingService"  # what `nni-pl resume` rebuilds it from
