"""The ``platform: kubeflow`` section: NNI's v2 keys, v1's mapping, nni-pl's own keys, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nni_pl.errors import ConfigError
from nni_pl.training.kubeflow_config import KubeflowConfig, memory_quantity, v1_to_v2
from nni_pl.training.platforms import parse_section

IMAGE = "me/trainer:1"


def _read(tmp_path: Path, **keys: object) -> KubeflowConfig:
    raw = {"platform": "kubeflow", "worker": {"replicas": 1, "dockerImage": IMAGE}}
    raw.update(keys)
    return KubeflowConfig.from_dict(raw, "trainingService", tmp_path)


def test_config_reads_nni_v2_reuse_example(tmp_path: Path) -> None:
    # NNI's kubeflow reuse example (docs L2830-2851), with a pytorch operator and nni-pl's image
    section = KubeflowConfig.from_dict(
        {
            "reuseMode": True,
            "platform": "kubeflow",
            "worker": {"command": "python3 mnist.py", "code_directory": ".", "dockerImage": IMAGE, "cpuNumber": 1,
                       "gpuNumber": 0, "memorySize": 8192, "replicas": 1},
            "operator": "pytorch-operator",
            "apiVersion": "v1",
        },
        "trainingService",
        tmp_path,
    )  # fmt: skip
    assert section.master is not None and section.worker is None
    assert (section.master.command, section.master.memory_size, section.master.cpu_number) == (
        "python3 mnist.py",
        "8192Mi",
        1.0,
    )
    assert section.master.code_directory == tmp_path.resolve()
    assert [kind for kind, _ in section.roles()] == ["Master"]


def test_config_master_and_workers_round_trip(tmp_path: Path) -> None:
    section = _read(
        tmp_path,
        master={"replicas": 1, "dockerImage": IMAGE, "gpuNumber": 1, "cpuNumber": 0.5, "memorySize": "8Gi"},
        worker={"replicas": 3, "dockerImage": IMAGE, "gpuNumber": 1},
        namespace="ml",
        codeConfigMap=True,
        imagePullSecrets=["regcred"],
        workingDir="/workspace",
    )
    again = KubeflowConfig.from_dict(section.to_dict(), "trainingService", tmp_path)
    assert again == section
    assert [(k, r.replicas) for k, r in section.roles()] == [("Master", 1), ("Worker", 3)]
    assert section.to_dict()["master"]["memorySize"] == "8Gi"


def test_config_without_master_counts_it_among_the_workers(tmp_path: Path) -> None:
    section = _read(tmp_path, worker={"replicas": 3, "dockerImage": IMAGE})
    assert [(k, r.replicas) for k, r in section.roles()] == [("Master", 1), ("Worker", 2)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2048, "2048Mi"),
        ("8gb", "8192Mi"),
        ("512m", "512Mi"),
        ("1.5GB", "1536Mi"),
        ("8Gi", "8Gi"),
        ("1e9", "1e9"),
    ],
)
def test_memory_size_forms(value: object, expected: str) -> None:
    assert memory_quantity(value, "m") == expected


@pytest.mark.parametrize(
    ("keys", "field", "words"),
    [
        ({"operator": "tf-operator"}, "trainingService.operator", "only pytorch-operator is supported"),
        ({"ps": {"replicas": 1}}, "trainingService.ps", "TFJob parameter-server"),
        ({"apiVersion": "v1alpha2"}, "trainingService.apiVersion", "write apiVersion: v1"),
        (
            {"master": {"replicas": 2, "dockerImage": IMAGE}},
            "trainingService.master.replicas",
            "exactly one master",
        ),
        ({"worker": {"replicas": 1}}, "trainingService.worker.dockerImage", "with nni-pl"),
        (
            {"worker": {"dockerImage": IMAGE, "privateRegistryAuthPath": "a.json"}},
            "trainingService.worker.privateRegistryAuthPath",
            "imagePullSecrets",
        ),
        (
            {"worker": {"dockerImage": IMAGE, "memorySize": "lots"}},
            "trainingService.worker.memorySize",
            "'lots'",
        ),
        ({"worker": {"dockerImage": IMAGE, "cpuNumber": -1}}, "trainingService.worker.cpuNumber", "-1"),
        ({"worker": {"dockerImage": IMAGE, "replicas": 0}}, "trainingService.worker.replicas", "at least 1"),
        ({"namespace": "My_NS"}, "trainingService.namespace", "DNS label"),
        (
            {"storage": {"storageType": "azureStorage", "azureAccount": "a"}},
            "trainingService.storage.storageType",
            "not supported",
        ),
        (
            {"storage": {"storageType": "nfs", "server": "10.0.0.1", "path": "/x"}},
            "trainingService.storage.localMountPoint",
            "is required",
        ),
        ({"storage": {"storageType": "pvc"}}, "trainingService.storage.claimName", "PersistentVolumeClaim"),
        (
            {
                "codeConfigMap": True,
                "storage": {"storageType": "pvc", "claimName": "c", "localMountPoint": "."},
            },
            "trainingService.codeConfigMap",
            "one place",
        ),
        ({"workingDir": "code"}, "trainingService.workingDir", "absolute"),
        ({"imagePullSecrets": [3]}, "trainingService.imagePullSecrets", "docker-registry"),
        ({"namespce": "ml"}, "trainingService.namespce", "did you mean 'namespace'"),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, keys: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        _read(tmp_path, **keys)
    assert info.value.field == field
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_config_without_roles_says_what_to_write(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="describe the pods"):
        KubeflowConfig.from_dict({"platform": "kubeflow"}, "trainingService", tmp_path)


def test_platform_kubeflow_is_available(tmp_path: Path) -> None:
    section = parse_section(
        {"platform": "kubeflow", "worker": {"dockerImage": IMAGE}}, "trainingService", tmp_path
    )
    assert isinstance(section, KubeflowConfig)
    assert section.reaches_hosts


def test_v1_kubeflow_config_maps_to_v2(tmp_path: Path) -> None:
    # NNI's v1 pytorch-operator template (docs L2742-2780), with nni-pl's image and apiVersion v1
    trial = {
        "codeDir": ".",
        "master": {"replicas": 1, "command": "python3 dist_mnist.py", "gpuNum": 1, "cpuNum": 1, "memoryMB": 2048, "image": IMAGE},
        "worker": {"replicas": 1, "command": "python3 dist_mnist.py", "gpuNum": 0, "cpuNum": 1, "memoryMB": 2048, "image": IMAGE},
    }  # fmt: skip
    raw = v1_to_v2(
        trial,
        {"operator": "pytorch-operator", "apiVersion": "v1", "nfs": {"server": "10.0.0.1", "path": "/nni"}},
    )
    raw["storage"]["localMountPoint"] = str(tmp_path)
    section = KubeflowConfig.from_dict(raw, "trainingService", tmp_path)
    assert section.master is not None and section.worker is not None
    assert (section.master.gpu_number, section.master.memory_size, section.worker.gpu_number) == (
        1,
        "2048Mi",
        0,
    )
    assert section.storage is not None and section.storage.volume() == {
        "nfs": {"server": "10.0.0.1", "path": "/nni"}
    }


def test_preflight_names_the_kubeconfig_paths_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope.yaml"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError) as info:
        _read(tmp_path).preflight()
    assert info.value.field == "trainingService.kubeconfig"
    assert str(tmp_path / "nope.yaml") in str(info.value) and "KUBECONFIG" in str(info.value)


def test_preflight_accepts_a_pod_without_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope.yaml"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    _read(tmp_path).preflight()


def test_config_module_does_not_import_kubernetes() -> None:
    code = "import nni_pl.training.platforms, nni_pl.training.kubeflow_config, sys; print('kubernetes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_v1_kubeflow_config_loads_through_the_v1_mapper(tmp_path) -> None:
    """NNI v1's ``trial.master/worker`` + ``kubeflowConfig`` (docs' v1 example) read as the v2 section."""
    import yaml

    from nni_pl.experiment.config import ExperimentConfig

    (tmp_path / "config.yml").write_text(yaml.safe_dump({
        "authorName": "default", "experimentName": "example_mnist_pytorch", "trialConcurrency": 1,
        "maxTrialNum": 2, "trainingServicePlatform": "kubeflow",
        "searchSpace": {"lr": {"_type": "choice", "_value": [0.1]}},
        "tuner": {"builtinTunerName": "TPE", "classArgs": {"optimize_mode": "maximize"}},
        "trial": {"codeDir": ".",
                  "master": {"replicas": 1, "command": "python3 mnist.py", "gpuNum": 0, "cpuNum": 1,
                             "memoryMB": 2048, "image": "me/trainer:1"},
                  "worker": {"replicas": 2, "command": "python3 mnist.py", "gpuNum": 1, "cpuNum": 1,
                             "memoryMB": 4096, "image": "me/trainer:1"}},
        "kubeflowConfig": {"operator": "pytorch-operator", "apiVersion": "v1"},
    }))  # fmt: skip
    section = ExperimentConfig.load(tmp_path / "config.yml").training_service
    assert section.platform == "kubeflow"
    assert (section.master.replicas, section.worker.replicas, section.worker.gpu_number) == (1, 2, 1)
    assert section.worker.docker_image == "me/trainer:1"
