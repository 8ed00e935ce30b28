"""``platform: ray``'s section: NNI-style keys read with one-line errors, and no Ray import to read them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nni_pl.errors import ConfigError
from nni_pl.training.platforms import parse_section
from nni_pl.training.ray_config import RayConfig


def _read(**raw):
    return parse_section({"platform": "ray", **raw}, "trainingService")


def test_defaults_and_a_round_trip() -> None:
    section = _read()
    assert isinstance(section, RayConfig) and section.address is None and section.reuse_mode
    assert section.actor_options(gpus=None) == {"num_cpus": 1.0, "num_gpus": 0}
    again = _read(**{k: v for k, v in _read(address="auto", trialGpuNumber=1, trialMemorySize="512mb",
                                             trialResources={"a": 2}).to_dict().items() if k != "platform"})  # fmt: skip
    assert (again.address, again.trial_gpu_number, again.trial_memory_size, again.trial_resources) == (
        "auto", 1, 512 << 20, {"a": 2.0},
    )  # fmt: skip
    # the experiment's trialGpuNumber applies unless the section sets its own
    assert _read().requested(gpus=2) == {"CPU": 1.0, "GPU": 2.0}


@pytest.mark.parametrize(
    ("raw", "field", "says"),
    [
        ({"address": "http://head"}, "trainingService.address", "write auto, host:port"),
        ({"trialCpuNumber": -1}, "trainingService.trialCpuNumber", "at least 0"),
        ({"trialMemorySize": "lots"}, "trainingService.trialMemorySize", "512mb or 2gb"),
        ({"trialResources": {"CPU": 2}}, "trainingService.trialResources.CPU", "set CPU with trialCpuNumber"),
        ({"trialResources": [1]}, "trainingService.trialResources", "mapping of resource name"),
        ({"runtimeEnv": "pip"}, "trainingService.runtimeEnv", "runtime_env mapping"),
        ({"localCluster": {"numCpu": 2}}, "trainingService.localCluster.numCpu", "did you mean 'numCpus'"),
        (
            {"retryOnHostFailure": True, "retryOnNodeFailure": False},
            "trainingService.retryOnNodeFailure",
            "one option",
        ),
        ({"adress": "auto"}, "trainingService.adress", "did you mean 'address'"),
    ],
)
def test_bad_input_names_the_field_and_says_how_to_fix_it(raw, field, says) -> None:
    with pytest.raises(ConfigError) as e:
        _read(**raw)
    assert f"'{field}'" in str(e.value) and says in str(e.value) and "\n" not in str(e.value)


def test_the_ssh_retry_option_is_the_one_option() -> None:
    assert _read(retryOnHostFailure=True).retry_on_node_failure
    assert _read(retryOnNodeFailure=True).to_dict()["retryOnHostFailure"] is True


def test_reading_the_section_imports_no_ray() -> None:
    code = (
        "import sys; from nni_pl.training.platforms import parse_section; "
        "parse_section({'platform': 'ray', 'address': 'auto'}, 'trainingService'); "
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
