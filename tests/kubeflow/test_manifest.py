"""Every PyTorchJob nni-pl makes is valid: against the CRD's schema (``pytorchjob_schema.yaml``, with no field the
API server would prune) and, for the pod templates, through the ``kubernetes`` client's own models."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes import client

from nni_pl.training import job_runner
from nni_pl.training.kubeflow import CONTAINER, CodeSource, job_name, pytorch_job_manifest
from nni_pl.training.kubeflow_config import KubeflowConfig
from nni_pl.training.service import TrialJob

SCHEMA = yaml.safe_load((Path(__file__).parent / "pytorchjob_schema.yaml").read_text())


def pruned(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """The fields of ``value`` the API server would drop (not in the schema's properties): a structural schema
    prunes unknown fields silently, so a misspelt key would vanish instead of failing."""
    if schema.get("x-nni-pl-abbreviated") or schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    out: list[str] = []
    if isinstance(value, dict) and schema.get("type") == "object":
        props, extra = schema.get("properties"), schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                out += pruned(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                out += pruned(item, extra, f"{path}.{key}")
            elif props is not None or extra is False:
                out.append(f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += pruned(item, schema["items"], f"{path}[{i}]")
    return out


def check_manifest(manifest: dict[str, Any]) -> None:
    """Schema-valid, nothing pruned, every pod template equal to itself after a trip through V1PodTemplateSpec."""
    jsonschema.Draft7Validator(SCHEMA).validate(manifest)
    assert pruned(manifest, SCHEMA) == []
    api = client.ApiClient()
    for kind, spec in manifest["spec"]["pytorchReplicaSpecs"].items():
        template = spec["template"]
        model = api.deserialize(json.dumps(template), "V1PodTemplateSpec", "application/json")
        assert api.sanitize_for_serialization(model) == template, kind
        assert api.sanitize_for_serialization(client.V1PodTemplateSpec.from_dict(template)) == template, kind


def _manifest(section: KubeflowConfig, job: TrialJob, **kwargs: Any) -> dict[str, Any]:
    return pytorch_job_manifest(
        name=job_name(job.experiment_id, job.trial_id),
        namespace=section.namespace,
        job=job,
        roles=section.roles(),
        command="python train.py --epochs 3",
        image_pull_secrets=section.image_pull_secrets,
        **kwargs,
    )


CODE = {
    "image": CodeSource("image", working_dir="/workspace"),
    "configmap": CodeSource("configmap", config_map="nni-x-code-12345678"),
    "nfs": CodeSource(
        "volume", working_dir="/nni-pl/storage/c", volume={"nfs": {"server": "10.0.0.1", "path": "/x"}}
    ),
    "pvc": CodeSource(
        "volume", working_dir="/nni-pl/storage/c", volume={"persistentVolumeClaim": {"claimName": "c"}}
    ),
}


@pytest.mark.parametrize("code", list(CODE))
@pytest.mark.parametrize("store", [None, "url", "secret"])
def test_manifest_is_a_valid_pytorchjob(
    code: str, store: str | None, section: Callable[..., KubeflowConfig], make_job: Callable[..., TrialJob]
) -> None:
    kf = section(imagePullSecrets=["regcred"])
    job = make_job()
    kwargs: dict[str, Any] = {"code": CODE[code]}
    if store == "url":
        kwargs["store_url"] = "postgresql://db.example:5432/nni"
    elif store == "secret":
        kwargs["store_url_secret"] = "nni-pl-store"
    manifest = _manifest(kf, job, **kwargs)
    check_manifest(manifest)

    assert (manifest["apiVersion"], manifest["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert manifest["spec"]["runPolicy"]["cleanPodPolicy"] == "None"
    replicas = manifest["spec"]["pytorchReplicaSpecs"]
    assert {k: v["replicas"] for k, v in replicas.items()} == {"Master": 1, "Worker": 2}
    for _kind, spec in replicas.items():
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == CONTAINER and container["image"] == "me/trainer:1"
        assert container["command"] == job_runner.runner_command()
        assert container["resources"]["limits"] == {"cpu": "2", "memory": "4096Mi", "nvidia.com/gpu": "1"}
        env = {e["name"]: e for e in container["env"]}
        assert env["NNI_TRIAL_JOB_ID"]["value"] == "Ab3xY" and env["NNI_EXP_ID"]["value"] == "Xy7kQ2aB"
        payload = job_runner.decode_job(env["NNI_PL_JOB"]["value"])
        assert payload["command"] == "python train.py --epochs 3"
        assert payload["record"]["parameters"] == {"lr": 0.1}
        assert payload.get("store_url") == ("postgresql://db.example:5432/nni" if store == "url" else None)
        if store == "secret":
            assert env["NNI_PL_STORE_URL"]["valueFrom"] == {
                "secretKeyRef": {"name": "nni-pl-store", "key": "url"}
            }
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        assert spec["template"]["metadata"]["labels"] == {
            "nni-pl/experiment": "Xy7kQ2aB",
            "nni-pl/trial": "Ab3xY",
        }


def test_manifest_role_commands_and_no_resources(
    section: Callable[..., KubeflowConfig], make_job: Callable[..., TrialJob]
) -> None:
    kf = section(
        master={"replicas": 1, "dockerImage": "me/t:1", "command": "python train.py --role master"},
        worker={"replicas": 1, "dockerImage": "me/t:1", "command": "python train.py --role worker"},
    )
    manifest = _manifest(kf, make_job())
    check_manifest(manifest)
    for kind, role in (("Master", "master"), ("Worker", "worker")):
        (container,) = manifest["spec"]["pytorchReplicaSpecs"][kind]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert job_runner.decode_job(env["NNI_PL_JOB"])["command"] == f"python train.py --role {role}"
        assert "resources" not in container


def test_check_manifest_catches_a_misspelt_field(
    section: Callable[..., KubeflowConfig], make_job: Callable[..., TrialJob]
) -> None:
    manifest = _manifest(section(), make_job())
    manifest["spec"]["runPolicy"]["cleanPodPolicyy"] = "None"
    with pytest.raises(AssertionError):
        check_manifest(manifest)
    manifest = _manifest(section(), make_job())
    manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["workdir"] = "/w"
    with pytest.raises(AssertionError):
        check_manifest(manifest)
    manifest = _manifest(section(), make_job())
    manifest["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = "1"
    with pytest.raises(jsonschema.ValidationError):
        check_manifest(manifest)


def test_job_names_are_dns_labels_and_distinct() -> None:
    names = {job_name(e, t) for e, t in [("Xy7kQ2aB", "Ab3xY"), ("Xy7kQ2aB", "ab3xy"), ("x" * 80, "Y" * 80)]}
    assert len(names) == 3
    for name in names:
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 52
    assert job_name("Xy7kQ2aB", "Ab3xY") == job_name("Xy7kQ2aB", "Ab3xY")
