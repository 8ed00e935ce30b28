"""The kubeflow service against the real ``kubernetes`` client and a recording fake API server on 127.0.0.1."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nni_pl.errors import ConfigError
from nni_pl.experiment.store import Store
from nni_pl.training import job_runner
from nni_pl.training.kubeflow import RECORD_FILE, KubeflowError, KubeflowTrainingService, job_name
from nni_pl.training.kubeflow_config import KubeflowConfig
from nni_pl.training.service import TrialEnd, TrialJob
from tests.kubeflow.fake_apiserver import FakeApiServer
from tests.kubeflow.test_manifest import check_manifest

JOBS = r"/apis/kubeflow\.org/v1/namespaces/default/pytorchjobs"


def _log(
    *records: dict[str, Any], exit_code: int | None = None, error: str | None = None, start: bool = True
) -> str:
    lines = ["Using bfloat16 Automatic Mixed Precision"]
    if start:
        lines.append('nni-pl:start {"host": "pod-0", "pid": 7, "trial_id": "Ab3xY"}')
    for r in records:
        lines += ["Epoch 0: 100%", f"nni-pl:metric {json.dumps(r)}"]
    if exit_code is not None:
        lines.append(f"nni-pl:exit {json.dumps({'code': exit_code, 'error': error})}")
    return "\n".join(lines) + "\n"


def _rec(seq: int, value: float, kind: str = "PERIODICAL") -> dict[str, Any]:
    return {"seq": seq, "type": kind, "value": value, "time": 1.0 + seq}


@pytest.fixture
def service(
    server: FakeApiServer, section: Callable[..., KubeflowConfig], tmp_path: Path
) -> Callable[..., KubeflowTrainingService]:
    made: list[KubeflowTrainingService] = []

    def make(section_keys: dict[str, Any] | None = None, **kwargs: Any) -> KubeflowTrainingService:
        args: dict[str, Any] = {
            "section": section(**(section_keys or {})),
            "command": "python train.py",
            "code_directory": tmp_path,
            "concurrency": 2,
            "experiment_id": "Xy7kQ2aB",
            "poll_interval": 0.05,
            "metrics_interval": 0.0,
            "pending_timeout": 0.0,
        }
        args.update(kwargs)
        svc = KubeflowTrainingService(**args)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.shutdown()


def test_submit_creates_the_pytorchjob(
    server: FakeApiServer, service: Callable[..., KubeflowTrainingService], make_job: Callable[..., TrialJob]
) -> None:
    svc = service()
    job = make_job()
    info = svc.submit(job)
    (create,) = server.calls("POST", JOBS + "$")
    body = create.body
    check_manifest(body)
    name = job_name("Xy7kQ2aB", "Ab3xY")
    assert info.host == f"default/{name}" and info.platform == "kubeflow"
    assert (body["apiVersion"], body["kind"], body["metadata"]["name"]) == (
        "kubeflow.org/v1",
        "PyTorchJob",
        name,
    )
    assert body["metadata"]["labels"] == {"nni-pl/experiment": "Xy7kQ2aB", "nni-pl/trial": "Ab3xY"}
    specs = body["spec"]["pytorchReplicaSpecs"]
    assert {k: v["replicas"] for k, v in specs.items()} == {"Master": 1, "Worker": 2}
    container = specs["Master"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "nni_pl.training.job_runner"]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4096Mi", "nvidia.com/gpu": "1"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NNI_PLATFORM"] == "kubeflow" and env["NNI_TRIAL_JOB_ID"] == "Ab3xY"
    assert job_runner.decode_job(env["NNI_PL_JOB"])["record"]["trial_id"] == "Ab3xY"
    assert create.headers["authorization"] == "Bearer t0ken-fake"
    # the cluster was checked first: the namespace and the CRD (list, limit 1)
    assert [r.path for r in server.requests[:2]] == ["/api/v1/namespaces/default", "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs"]  # fmt: skip
    assert json.loads((job.control_dir / RECORD_FILE).read_text()) == {
        "namespace": "default", "name": name, "experiment_id": "Xy7kQ2aB", "trial_id": "Ab3xY"
    }  # fmt: skip
    assert svc.running() == {"Ab3xY"} and svc.free_slots() == 1


def test_status_metrics_and_cleanup(
    server: FakeApiServer, service: Callable[..., KubeflowTrainingService], make_job: Callable[..., TrialJob]
) -> None:
    svc = service()
    job = make_job()
    svc.submit(job)
    name = job_name("Xy7kQ2aB", "Ab3xY")
    assert svc.read_metrics(job) == []  # no container yet: the API answers 400
    server.set_condition(name, "Created")
    assert svc.poll(0.2) == []
    server.set_condition(name, "Running")
    server.set_log(name, _log(_rec(0, 0.5), _rec(1, 0.6)))
    assert svc.poll(0.1) == []
    assert [r["value"] for r in svc.read_metrics(job)] == [0.5, 0.6]
    assert svc.read_metrics(job) == []  # each record once
    server.set_log(name, _log(_rec(0, 0.5), _rec(1, 0.6), _rec(2, 0.9, "FINAL"), exit_code=0), exit_code=0)
    server.set_condition(name, "Succeeded")
    (end,) = svc.poll(1.0)
    assert (end.trial_id, end.exit_code, end.error) == ("Ab3xY", 0, None)
    assert svc.running() == set()
    assert [(r["seq"], r["type"]) for r in svc.read_metrics(job)] == [(2, "FINAL")]
    assert svc.read_metrics(job) == []
    logs = server.calls("GET", r"/pods/.*/log$")
    assert logs and all(r.path == f"/api/v1/namespaces/default/pods/{name}-master-0/log" for r in logs)
    assert all(r.query.get("container") == "pytorch" for r in logs)
    pod_lists = server.calls("GET", r"/pods$")
    assert any(r.query.get("labelSelector") == f"training.kubeflow.org/job-name={name},training.kubeflow.org/replica-type=master,training.kubeflow.org/replica-index=0" for r in pod_lists)  # fmt: skip
    assert server.calls("DELETE") == []  # the pods keep their logs until cleanup
    svc.cleanup(job)
    (delete,) = server.calls("DELETE", JOBS)
    assert delete.path.endswith(f"/pytorchjobs/{name}") and delete.body["propagationPolicy"] == "Foreground"
    assert ("default", name) not in server.jobs


def test_failed_job_reports_exit_code_and_error(
    server: FakeApiServer, service: Callable[..., KubeflowTrainingService], make_job: Callable[..., TrialJob]
) -> None:
    svc = service()
    job = make_job()
    svc.submit(job)
    name = job_name("Xy7kQ2aB", "Ab3xY")
    server.set_log(
        name, _log(_rec(0, 0.1), exit_code=3, error="ValueError: lr must be positive"), exit_code=3
    )
    server.set_condition(name, "Failed", "PyTorchJob failed because master failed")
    (end,) = svc.poll(1.0)
    assert (end.exit_code, end.error) == (3, "ValueError: lr must be positive")
    assert [r["value"] for r in svc.read_metrics(job)] == [0.1]


def test_poll_reports_restarting_as_running(
    server: FakeApiServer, service: Callable[..., KubeflowTrainingService], make_job: Callable[..., TrialJob]
) -> None:
    svc = service()
    job = make_job()
    svc.submit(job)
    name = job_name("Xy7kQ2aB", "Ab3xY")
    for state in ("Created", "Running", "Restarting", "Running"):
        server.set_condition(name, state)
        assert svc.poll(0.1) == []
        assert svc.trials["Ab3xY"].state == state


def test_kill_reads_the_log_then_deletes_the_job(
    server: FakeApiServer, service: Callable[..., KubeflowTrainingService], make_job: Callable[..., TrialJob]
) -> None:
    svc = service()
    job = make_job()
    svc.submit(job)
    name = job_name("Xy7kQ2aB", "Ab3xY")
    server.set_condition(name, "Running")
    server.set_log(name, _log(_rec(0, 0.3)))
    svc.terminate("Ab3xY", grace=5)
    (delete,) = server.calls("DELETE", JOBS)
    assert delete.body == {"gracePeriodSeconds": 5, "propagationPolicy": "Foreground"}
    (end,) = svc.poll(1.0)
    assert end.exit_code is None and "killed" in (end.error or "")
    assert [r["value"] for r in svc.read_metrics(job)] == [0.3]  # read before the pods went
    svc.cleanup(job)
    assert len(server.calls("DELETE")) == 1


def test_job_deleted_elsewhere_ends_the_trial(
    server: FakeApiServer, service: Callable[..., KubeflowTrainingService], make_job: Callable[..., TrialJob]
) -> None:
    svc = service()
    svc.submit(make_job())
    del server.jobs[("default", job_name("Xy7kQ2aB", "Ab3xY"))]
    (end,) = svc.poll(1.0)
    assert end.exit_code is None and "is gone" in (end.error or "")


def test_reattach_after_a_manager_crash(
    server: FakeApiServer, service: Callable[..., KubeflowTrainingService], make_job: Callable[..., TrialJob]
) -> None:
    first = service()
    job, other, never = make_job("Ab3xY"), make_job("Cd4zW"), make_job("Ef5vU")
    first.submit(job)
    first.submit(other)
    name = job_name("Xy7kQ2aB", "Ab3xY")
    server.set_condition(name, "Running")
    server.set_log(name, _log(_rec(0, 0.2)))
    assert [r["seq"] for r in first.read_metrics(job)] == [0]
    # the manager dies here; trial Cd4zW ends while no manager watches
    other_name = job_name("Xy7kQ2aB", "Cd4zW")
    server.set_log(other_name, _log(_rec(0, 0.7, "FINAL"), exit_code=0), exit_code=0)
    server.set_condition(other_name, "Succeeded")
    second = service(check=False)
    assert second.reattach(job, None, None) is True
    assert second.reattach(never, None, None) is False  # never submitted: no .nni/kubeflow.json
    end = second.reattach(other, None, None)
    assert isinstance(end, TrialEnd) and end.exit_code == 0
    assert [r["value"] for r in second.read_metrics(other)] == [0.7]
    server.set_log(name, _log(_rec(0, 0.2), _rec(1, 0.4), _rec(2, 0.8, "FINAL"), exit_code=0), exit_code=0)
    server.set_condition(name, "Succeeded")
    (end,) = second.poll(1.0)
    assert end.exit_code == 0
    # from the start of the log: the store keeps seq 0 once; seq 1 and 2 are new
    assert [r["seq"] for r in second.read_metrics(job)] == [0, 1, 2]
    assert len(server.calls("POST", JOBS)) == 2  # nothing created again


def test_reattach_to_a_job_that_was_never_created(
    server: FakeApiServer, service: Callable[..., KubeflowTrainingService], make_job: Callable[..., TrialJob]
) -> None:
    svc = service()
    job = make_job()
    (job.control_dir / RECORD_FILE).write_text(
        json.dumps({"namespace": "default", "name": job_name("Xy7kQ2aB", "Ab3xY")})
    )
    assert svc.reattach(job, None, None) is False


def test_resubmit_adopts_an_existing_job(
    server: FakeApiServer, service: Callable[..., KubeflowTrainingService], make_job: Callable[..., TrialJob]
) -> None:
    service().submit(make_job())
    svc = service(check=False)
    svc.submit(make_job())
    assert len(server.jobs) == 1 and svc.running() == {"Ab3xY"}
    assert svc.poll(0.1) == []


def test_metrics_from_the_shared_store(
    server: FakeApiServer,
    service: Callable[..., KubeflowTrainingService],
    make_job: Callable[..., TrialJob],
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    svc = service(store_url=url)
    job = make_job()
    svc.submit(job)
    env = {e["name"]: e.get("value") for e in server.calls("POST", JOBS)[0].body["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["env"]}  # fmt: skip
    assert job_runner.decode_job(env["NNI_PL_JOB"])["store_url"] == url
    name = job_name("Xy7kQ2aB", "Ab3xY")
    server.set_log(name, _log(_rec(0, 111.0)))  # the log says otherwise: the store is the source
    store = Store(url)
    store.relay("Xy7kQ2aB", "Ab3xY", [_rec(0, 0.25), _rec(1, 0.5)])
    assert [r["value"] for r in svc.read_metrics(job)] == [0.25, 0.5]
    store.relay("Xy7kQ2aB", "Ab3xY", [_rec(1, 0.5), _rec(2, 0.75, "FINAL")])
    store.close()
    assert [r["value"] for r in svc.read_metrics(job)] == [0.75]
    assert not server.calls("GET", r"/log$")


def test_store_url_with_a_password_needs_a_secret(service: Callable[..., KubeflowTrainingService]) -> None:
    url = "postgresql://nni:s3cret@db:5432/nni"
    with pytest.raises(ConfigError) as info:
        service(store_url=url)
    assert info.value.field == "trainingService.storeUrlSecret" and "s3cret" not in str(info.value)
    svc = service({"storeUrlSecret": "nni-pl-store"}, store_url=url)
    assert svc._store_in_env is None and svc._store_secret == "nni-pl-store"


# --- code --------------------------------------------------------------------------------------------------------------
def test_code_in_a_configmap(
    server: FakeApiServer,
    service: Callable[..., KubeflowTrainingService],
    make_job: Callable[..., TrialJob],
    tmp_path: Path,
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("print('hi')\n")
    svc = service({"codeConfigMap": True}, code_directory=code)
    svc.submit(make_job())
    (cm,) = server.calls("POST", r"/configmaps$")
    name = cm.body["metadata"]["name"]
    assert "code.tar.gz" in cm.body["binaryData"]
    body = server.calls("POST", JOBS)[0].body
    check_manifest(body)
    pod = body["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert {"name": "nni-pl-archive", "configMap": {"name": name}} in pod["volumes"]
    assert pod["containers"][0]["workingDir"] == "/nni-pl/code"
    assert pod["initContainers"][0]["image"] == "me/trainer:1"
    svc.shutdown()
    assert server.calls("DELETE", f"/configmaps/{name}$")


def test_code_over_the_configmap_limit(
    server: FakeApiServer, service: Callable[..., KubeflowTrainingService], tmp_path: Path
) -> None:
    code = tmp_path / "big"
    code.mkdir()
    (code / "weights.bin").write_bytes(os.urandom(1_200_000))  # does not compress
    with pytest.raises(ConfigError) as info:
        service({"codeConfigMap": True}, code_directory=code)
    message = str(info.value)
    assert info.value.field == "trainingService.codeConfigMap" and "\n" not in message
    assert (
        str(code) in message and "packs to 1.1" in message and "1 MiB a Kubernetes ConfigMap holds" in message
    )
    assert ".nniignore" in message and "storage" in message and "image" in message
    assert server.calls("POST") == []


def test_code_on_a_volume(
    server: FakeApiServer,
    service: Callable[..., KubeflowTrainingService],
    make_job: Callable[..., TrialJob],
    tmp_path: Path,
) -> None:
    code, mount = tmp_path / "code", tmp_path / "mnt"
    code.mkdir()
    mount.mkdir()
    (code / "train.py").write_text("print('hi')\n")
    storage = {"storageType": "nfs", "server": "10.0.0.5", "path": "/export", "localMountPoint": str(mount)}
    svc = service({"storage": storage}, code_directory=code)
    svc.submit(make_job())
    body = server.calls("POST", JOBS)[0].body
    check_manifest(body)
    pod = body["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "nni-pl-storage", "nfs": {"server": "10.0.0.5", "path": "/export"}}]
    workdir = pod["containers"][0]["workingDir"]
    assert workdir.startswith("/nni-pl/storage/")
    local = mount / workdir.removeprefix("/nni-pl/storage/")
    assert (local / "train.py").read_text() == "print('hi')\n"


# --- errors ----------------------------------------------------------------------------------------------------------------
def test_missing_kubeconfig(
    service: Callable[..., KubeflowTrainingService], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none.yaml"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError) as info:
        service({"kubeconfig": None})
    message = str(info.value)
    assert info.value.field == "trainingService.kubeconfig" and str(tmp_path / "none.yaml") in message
    assert "KUBECONFIG" in message and "\n" not in message
    with pytest.raises(ConfigError, match="is not a file"):
        service({"kubeconfig": str(tmp_path / "gone")})


def test_kubeconfig_from_the_environment(
    server: FakeApiServer,
    service: Callable[..., KubeflowTrainingService],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = server.kubeconfig(tmp_path / "env-kubeconfig", token="from-env")
    monkeypatch.setenv("KUBECONFIG", str(path))
    service({"kubeconfig": None})
    assert server.requests[-1].headers["authorization"] == "Bearer from-env"


def test_wrong_namespace(service: Callable[..., KubeflowTrainingService]) -> None:
    with pytest.raises(ConfigError) as info:
        service({"namespace": "nope"})
    assert info.value.field == "trainingService.namespace"
    assert "'nope' does not exist" in str(info.value) and "kubectl create namespace nope" in str(info.value)


def test_missing_crd(server: FakeApiServer, service: Callable[..., KubeflowTrainingService]) -> None:
    server.crd = False
    with pytest.raises(KubeflowError) as info:
        service()
    assert "install the Kubeflow training operator: kubectl apply -k github.com/kubeflow/training-operator/manifests/overlays/standalone" in str(info.value)  # fmt: skip


def test_forbidden_names_verb_and_resource(
    server: FakeApiServer, service: Callable[..., KubeflowTrainingService], make_job: Callable[..., TrialJob]
) -> None:
    server.forbidden.add(("list", "pytorchjobs"))
    with pytest.raises(KubeflowError) as info:
        service()
    assert "cannot list pytorchjobs.kubeflow.org in namespace 'default'" in str(info.value)
    assert "kubectl auth can-i list pytorchjobs.kubeflow.org -n default" in str(info.value)
    server.forbidden = {
        ("create", "pytorchjobs"),
        ("get", "namespaces"),
    }  # namespaces unreadable: not an error
    svc = service()
    svc.submit(make_job())
    (end,) = svc.poll(0.1)
    assert "cannot create pytorchjobs.kubeflow.org" in (end.error or "") and end.requeue is False


def test_unreachable_api_server(
    server: FakeApiServer,
    service: Callable[..., KubeflowTrainingService],
    section: Callable[..., KubeflowConfig],
    tmp_path: Path,
) -> None:
    kf = section()
    server.close()
    with pytest.raises(
        KubeflowError, match=r"cannot reach the Kubernetes API server at http://127\.0\.0\.1:\d+"
    ):
        KubeflowTrainingService(section=kf, command="python t.py", code_directory=tmp_path)


@pytest.mark.parametrize(
    ("log", "code"),
    [
        (
            "/usr/bin/python: Error while finding module specification for 'nni_pl.training.job_runner' (ModuleNotFoundError: No module named 'nni_pl')\n",
            1,
        ),
        ("/bin/sh: 1: python: not found\n", 127),
    ],
)
def test_image_without_nni_pl(
    server: FakeApiServer,
    service: Callable[..., KubeflowTrainingService],
    make_job: Callable[..., TrialJob],
    log: str,
    code: int,
) -> None:
    svc = service()
    svc.submit(make_job())
    name = job_name("Xy7kQ2aB", "Ab3xY")
    server.set_log(name, log, exit_code=code)
    server.set_condition(name, "Failed")
    (end,) = svc.poll(1.0)
    assert end.exit_code == code
    assert end.error.startswith("image 'me/trainer:1' lacks nni-pl; pip install nni-pl in the image")


def test_runner_failure_is_not_blamed_on_the_image(
    server: FakeApiServer, service: Callable[..., KubeflowTrainingService], make_job: Callable[..., TrialJob]
) -> None:
    svc = service()
    svc.submit(make_job())
    name = job_name("Xy7kQ2aB", "Ab3xY")
    server.set_log(
        name, _log(exit_code=127, error="cannot start the trial command 'x'", start=False), exit_code=127
    )
    server.set_condition(name, "Failed")
    (end,) = svc.poll(1.0)
    assert (end.exit_code, end.error) == (127, "cannot start the trial command 'x'")


def test_image_that_cannot_be_pulled(
    server: FakeApiServer, service: Callable[..., KubeflowTrainingService], make_job: Callable[..., TrialJob]
) -> None:
    svc = service()
    svc.submit(make_job())
    name = job_name("Xy7kQ2aB", "Ab3xY")
    server.set_condition(name, "Created")
    server.set_waiting(name, "ImagePullBackOff", 'Back-off pulling image "me/trainer:1"')
    ends = svc.poll(0.3) or svc.poll(0.3)
    (end,) = ends
    assert "ImagePullBackOff" in end.error and "imagePullSecrets" in end.error
    assert server.calls("DELETE", JOBS)


def test_function_trials_are_refused(tmp_path: Path, section: Callable[..., KubeflowConfig]) -> None:
    from nni_pl.training.platforms import ServiceSpec

    spec = ServiceSpec(section=section(), trial_command=None, trial_code_directory=tmp_path,
                       experiment_directory=tmp_path, trial_function="pkg.mod:fn")  # fmt: skip
    with pytest.raises(ConfigError, match="trialCommand"):
        KubeflowTrainingService.from_spec(spec)
