"""The Kubeflow training service (NNI's ``platform: kubeflow``): each trial is a ``PyTorchJob``.

Each trial becomes one ``kubeflow.org/v1`` ``PyTorchJob`` of the Kubeflow training operator, created with the
official ``kubernetes`` client (the kubeconfig of the section, ``$KUBECONFIG`` or ``~/.kube/config``; a pod's
service account when the manager runs in the cluster). The job has a ``Master`` (rank 0) and, when
``worker.replicas`` asks for more pods, ``Worker`` replicas; every pod runs the same container command,
:func:`nni_pl.training.job_runner.runner_command`, which writes ``parameter.json``, runs the trial command and
prints the trial's metric records to its log. The operator gives each pod ``MASTER_ADDR``, ``MASTER_PORT``,
``WORLD_SIZE`` and ``RANK``, which Lightning's ``KubeflowEnvironment`` reads: a trial that trains with DDP over the
pods writes ``Trainer(num_nodes=int(os.environ.get("WORLD_SIZE", 1)), devices=1)``, and ``NNICallback`` reports
from rank 0 only, i.e. from the master.

**The code** comes from the image (the default; ``workingDir`` names the folder inside it), from a ConfigMap
(``codeConfigMap: true``: the code directory packed by :mod:`nni_pl.training.code_archive`, at most Kubernetes'
1 MiB, unpacked by an init container), or from a volume (``storage``: NFS or a PersistentVolumeClaim the manager
also sees at ``localMountPoint``, where it unpacks the code once per experiment).

**Status** comes from the jobs' conditions (``Created``, ``Running``, ``Restarting``, ``Succeeded``, ``Failed``),
read with one list call per poll for all the experiment's jobs (by label): the same request a watch makes on every
reconnect, without a thread to keep alive. A pod that cannot start (its image cannot be pulled, a secret it names
is missing) ends the trial after ``pending_timeout`` seconds with the reason.

**Metrics** come from the master pod's log by default: ``read_namespaced_pod_log`` of the pod labelled
``training.kubeflow.org/job-name=<job>``, ``replica-type=master``, ``replica-index=0``, read by
:func:`~nni_pl.training.job_runner.parse_log`. Logs need no infrastructure beyond the cluster itself (no port the
pods must reach on the manager, as NNI needed): ``runPolicy.cleanPodPolicy: None`` keeps the pods, and so their
logs, until the manager has read the final metrics; :meth:`~KubeflowTrainingService.cleanup` then deletes the
job. When the experiment has a shared store (``ServiceSpec.store_url``, a database server the pods reach), the
runner also relays every record into it and metrics are read from there
(:func:`~nni_pl.training.job_runner.read_relayed`): the store survives a pod deleted, evicted or garbage-collected
before the manager read its log. Either way records carry their ``seq`` and the store keeps each once.

**Kill** deletes the job (``propagationPolicy: Foreground``) after one last read of its log. **Reattach**: the
job's name comes from the experiment and trial ids, and the job carries them as labels; the trial folder's
``.nni/kubeflow.json`` records namespace and name before the job is created, so a new manager finds the job,
tracks it again and reads the log from the start (``reattaches_trials = True``).

Example:
    >>> KubeflowTrainingService.platform, KubeflowTrainingService.reattaches_trials
    ('kubeflow', True)
    >>> job_name("Xy7kQ2aB", "Ab3xY")
    'nni-xy7kq2ab-ab3xy-6f3103'
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import re
import shutil
import tarfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nni_pl.errors import ConfigError, NniPlError
from nni_pl.training import job_runner
from nni_pl.training.kubeflow_config import (
    CONFIGMAP_LIMIT,
    KubeflowConfig,
    KubeflowRoleConfig,
    default_kubeconfig_paths,
    kubernetes_quantity,
)
from nni_pl.training.service import SubmitInfo, TrainingService, TrialEnd, TrialJob

if TYPE_CHECKING:
    from nni_pl.training.platforms import ServiceSpec

__all__ = [
    "CONTAINER",
    "GROUP",
    "KIND",
    "PLURAL",
    "RECORD_FILE",
    "VERSION",
    "CodeSource",
    "KubeflowError",
    "KubeflowTrainingService",
    "job_name",
    "job_state",
    "pytorch_job_manifest",
]

logger = logging.getLogger(__name__)

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"
CONTAINER = "pytorch"  # the operator sets MASTER_ADDR etc. in the container of this name
RECORD_FILE = "kubeflow.json"  # in a trial's .nni/: the namespace and name of its job
LABEL_EXPERIMENT = "nni-pl/experiment"
LABEL_TRIAL = "nni-pl/trial"
OPERATOR_JOB = "training.kubeflow.org/job-name"
OPERATOR_TYPE = "training.kubeflow.org/replica-type"
OPERATOR_INDEX = "training.kubeflow.org/replica-index"
CODE_DIR = "/nni-pl/code"
ARCHIVE_DIR = "/nni-pl/archive"
STORAGE_DIR = "/nni-pl/storage"
ARCHIVE_KEY = "code.tar.gz"
INSTALL_OPERATOR = "kubectl apply -k github.com/kubeflow/training-operator/manifests/overlays/standalone"
_TIMEOUT = 30  # seconds per API request
_NAME_MAX = 52  # the operator names services <job>-worker-<i>, which must fit a 63-character DNS label
_STARTING = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError")  # fmt: skip
_UNPACK = (
    "import tarfile; t = tarfile.open('{archive}'); "
    "t.extractall('{dest}', **({{'filter': 'tar'}} if hasattr(tarfile, 'tar_filter') else {{}}))"
)


class KubeflowError(NniPlError):
    """A call to the Kubernetes API failed, or a job could not run; the message names the call and what to do."""


# --- names and manifests -----------------------------------------------------------------------------------------------
def _dns(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return value.strip("-_.") or "x"


def job_name(experiment_id: str, trial_id: str) -> str:
    """The PyTorchJob of a trial: ``nni-<experiment>-<trial>-<hash>``, a DNS-1123 label of at most 52 characters.

    The ids are lower-cased (Kubernetes names are), so a hash of the exact ids keeps ``Ab3xY`` and ``ab3xy`` apart.
    """
    digest = hashlib.sha256(f"{experiment_id}/{trial_id}".encode()).hexdigest()[:6]
    exp, trial = _dns(experiment_id)[:20] or "x", _dns(trial_id)[:20] or "x"
    return f"nni-{exp}-{trial}-{digest}"[:_NAME_MAX]


@dataclass
class CodeSource:
    """Where the pods find the trial code: the image (``kind='image'``), a ConfigMap or a volume."""

    kind: str = "image"
    working_dir: str | None = None
    config_map: str | None = None  # kind 'configmap': its name
    volume: dict[str, Any] | None = None  # kind 'volume': the volume source (nfs / persistentVolumeClaim)


def _container(role: KubeflowRoleConfig, env: list[dict[str, Any]], code: CodeSource) -> dict[str, Any]:
    quantities: dict[str, str] = {}
    if role.cpu_number is not None:
        quantities["cpu"] = kubernetes_quantity(role.cpu_number)
    if role.memory_size is not None:
        quantities["memory"] = role.memory_size
    if role.gpu_number:
        quantities["nvidia.com/gpu"] = str(role.gpu_number)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": role.docker_image,
        "command": job_runner.runner_command(),
        "env": env,
    }
    if quantities:
        container["resources"] = {"limits": dict(quantities), "requests": dict(quantities)}
    if code.kind == "configmap":
        container["workingDir"] = CODE_DIR
        container["volumeMounts"] = [{"name": "nni-pl-code", "mountPath": CODE_DIR}]
    elif code.kind == "volume":
        container["workingDir"] = code.working_dir
        container["volumeMounts"] = [{"name": "nni-pl-storage", "mountPath": STORAGE_DIR}]
    elif code.working_dir:
        container["workingDir"] = code.working_dir
    return container


def pytorch_job_manifest(
    *,
    name: str,
    namespace: str,
    job: TrialJob,
    roles: list[tuple[str, KubeflowRoleConfig]],
    command: str,
    code: CodeSource | None = None,
    image_pull_secrets: list[str] | None = None,
    store_url: str | None = None,
    store_url_secret: str | None = None,
) -> dict[str, Any]:
    """The ``PyTorchJob`` of one trial, as the API takes it (camelCase JSON).

    Args:
        roles: ``[("Master", role), ("Worker", role)]`` (:meth:`~nni_pl.training.kubeflow_config.KubeflowConfig.roles`).
        command: the trial command of a role without a ``command`` of its own (``trialCommand``).
        store_url: the shared store's URL, passed in the job's environment (it has no password).
        store_url_secret: a secret whose key ``url`` holds the store's URL (one with a password).

    Example:
        >>> from pathlib import Path
        >>> from nni_pl.training.kubeflow_config import KubeflowRoleConfig
        >>> t = TrialJob("exp1", "Ab3xY", 0, 0, "algorithm", {"lr": 0.1}, Path("."))
        >>> m = pytorch_job_manifest(name="nni-exp1-ab3xy", namespace="ml", job=t, command="python train.py",
        ...                          roles=[("Master", KubeflowRoleConfig(docker_image="me/t:1", gpu_number=1))])
        >>> m["kind"], m["spec"]["runPolicy"]["cleanPodPolicy"], list(m["spec"]["pytorchReplicaSpecs"])
        ('PyTorchJob', 'None', ['Master'])
        >>> m["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        {'nvidia.com/gpu': '1'}
    """
    code = code or CodeSource()
    labels = {LABEL_EXPERIMENT: _label_value(job.experiment_id), LABEL_TRIAL: _label_value(job.trial_id)}
    replicas: dict[str, Any] = {}
    for kind, role in roles:
        env = job_runner.job_environment(
            job, platform="kubeflow", command=role.command or command, store_url=store_url
        )
        env_list: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in env.items()]
        env_list.append(
            {"name": "PYTHONUNBUFFERED", "value": "1"}
        )  # the trial's prints reach the log as they happen
        if store_url_secret:
            env_list.append(
                {
                    "name": job_runner.ENV_STORE_URL,
                    "valueFrom": {"secretKeyRef": {"name": store_url_secret, "key": "url"}},
                }
            )
        pod: dict[str, Any] = {"containers": [_container(role, env_list, code)], "restartPolicy": "Never"}
        if image_pull_secrets:
            pod["imagePullSecrets"] = [{"name": s} for s in image_pull_secrets]
        if code.kind == "configmap":
            pod["volumes"] = [
                {"name": "nni-pl-archive", "configMap": {"name": code.config_map}},
                {"name": "nni-pl-code", "emptyDir": {}},
            ]
            pod["initContainers"] = [
                {
                    "name": "nni-pl-unpack",
                    "image": role.docker_image,
                    "command": [
                        "python",
                        "-c",
                        _UNPACK.format(archive=f"{ARCHIVE_DIR}/{ARCHIVE_KEY}", dest=CODE_DIR),
                    ],
                    "volumeMounts": [
                        {"name": "nni-pl-archive", "mountPath": ARCHIVE_DIR, "readOnly": True},
                        {"name": "nni-pl-code", "mountPath": CODE_DIR},
                    ],
                }
            ]
        elif code.kind == "volume":
            pod["volumes"] = [{"name": "nni-pl-storage", **(code.volume or {})}]
        replicas[kind] = {
            "replicas": role.replicas,
            "restartPolicy": "Never",
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
        }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "pytorchReplicaSpecs": replicas,
            # pods (and their logs) stay until the manager read the final metrics; cleanup() deletes the job
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": 0},
        },
    }


def job_state(obj: dict[str, Any]) -> str:
    """The job's state from its conditions: ``Succeeded``/``Failed`` once either is true, else the latest true
    condition (``Created``, ``Running``, ``Restarting``), else ``Pending``.

    Example:
        >>> job_state({"status": {"conditions": [{"type": "Created", "status": "True"},
        ...                                      {"type": "Running", "status": "True"}]}})
        'Running'
    """
    conditions = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    for final in ("Succeeded", "Failed"):
        if any(c.get("type") == final for c in conditions):
            return final
    return str(conditions[-1].get("type")) if conditions else "Pending"


def _condition_message(obj: dict[str, Any], kind: str) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("message"):
            return str(c["message"])
    return None


# --- the service ---------------------------------------------------------------------------------------------------------
@dataclass
class _KTrial:
    job: TrialJob
    name: str
    namespace: str
    image: str
    started: float = field(default_factory=time.monotonic)
    state: str = "Pending"
    pod: str | None = None  # the master pod's name, once found
    last_seq: int = -1
    next_read: float = 0.0
    next_pending_check: float = 0.0
    stuck_since: float | None = None
    log: job_runner.JobLog | None = None  # the final log (read at the end or before a kill)
    killed: bool = False
    ended: bool = False


class KubeflowTrainingService(TrainingService):
    """Runs each trial as a Kubeflow ``PyTorchJob``; see the module docstring.

    Args:
        section: the ``trainingService`` section.
        command: the trial command (``trialCommand``), for roles without a ``command``.
        code_directory: the local trial code directory (for ``codeConfigMap`` and ``storage``).
        concurrency: how many trials run at once.
        experiment_id: the experiment's id (names the code ConfigMap / folder); else taken from the first job.
        store_url: the experiment's shared store: metrics are read from there instead of the logs.
        poll_interval: seconds between two list calls of the experiment's jobs.
        metrics_interval: seconds between two log reads of a running trial.
        pending_timeout: seconds a pod may fail to start (image pull, missing secret) before its trial ends.
        api_client: a ``kubernetes.client.ApiClient`` (default: built from the section's kubeconfig).
        check: check the cluster (namespace, CRD, permission) now; errors name what to do.
    """

    platform = "kubeflow"
    reattaches_trials = True

    def __init__(
        self,
        *,
        section: KubeflowConfig,
        command: str | None,
        code_directory: Path,
        concurrency: int = 1,
        experiment_id: str | None = None,
        store_url: str | None = None,
        poll_interval: float = 2.0,
        metrics_interval: float = 5.0,
        pending_timeout: float = 120.0,
        api_client: Any = None,
        check: bool = True,
    ) -> None:
        if not command and any(role.command is None for _, role in section.roles()):
            raise ConfigError(
                "trialCommand",
                "is not given and a role has no command; set trialCommand (or the command of master and worker)",
            )
        self.section = section
        self.field = section.config_field
        self.namespace = section.namespace
        self.command = command or ""
        role_code = section.master.code_directory if section.master is not None else None
        self.code_directory = Path(role_code or code_directory)  # NNI's role codeDirectory wins
        self.concurrency = concurrency
        self.experiment_id = experiment_id
        self.store_url = store_url
        self.poll_interval = poll_interval
        self.metrics_interval = metrics_interval
        self.pending_timeout = pending_timeout
        self.host = f"kubeflow:{self.namespace}"
        self.trials: dict[str, _KTrial] = {}
        self._ended: dict[str, _KTrial] = {}
        self._ends: list[TrialEnd] = []
        self._next_list = 0.0
        self._code: CodeSource | None = None
        self._config_map: str | None = None
        self._store_in_env, self._store_secret = self._store_settings()
        # packed now: a code folder over the ConfigMap limit fails before the experiment exists
        self._archive = self._pack_for_config_map() if section.code_config_map else None
        if api_client is None:
            api_client = self._api_client()
        self.api = api_client
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        if check:
            self._check_cluster()

    @classmethod
    def from_spec(cls, spec: ServiceSpec, **overrides: Any) -> KubeflowTrainingService:
        """The service of ``trainingService: {platform: kubeflow, ...}`` for an experiment."""
        args: dict[str, Any] = {
            "section": spec.section,
            "command": spec.trial_command,
            "code_directory": spec.trial_code_directory,
            "concurrency": spec.trial_concurrency,
            "experiment_id": spec.experiment_id,
            "store_url": spec.store_url,
        }
        if getattr(spec, "trial_function", None):
            raise ConfigError(
                "trial",
                "platform kubeflow runs a trialCommand in the image; pass the trial as a command "
                "(trialCommand: python train.py), not as a Python function",
            )
        args.update(overrides)
        return cls(**args)

    # --- the cluster --------------------------------------------------------------------------------------------------
    def _store_settings(self) -> tuple[str | None, str | None]:
        """How the store's URL reaches the pods: in the job's environment, or from a secret (it has a password)."""
        if not self.store_url:
            return None, None
        if urllib.parse.urlsplit(self.store_url).password is None:
            return self.store_url, None
        if self.section.store_url_secret is None:
            raise ConfigError(
                f"{self.field}.storeUrlSecret",
                "is not set, and the experiment's storeUrl has a password, which nni-pl does not put into a job's "
                "spec; create a secret (kubectl create secret generic nni-pl-store --from-literal=url=STORE_URL -n "
                f"{self.namespace}) and write storeUrlSecret: nni-pl-store",
            )
        return None, self.section.store_url_secret

    def _api_client(self) -> Any:
        import os

        from kubernetes import client, config

        configuration = client.Configuration()
        where = f"{self.field}.kubeconfig"
        try:
            if self.section.kubeconfig is not None:
                if not self.section.kubeconfig.is_file():
                    raise ConfigError(
                        where,
                        f"{str(self.section.kubeconfig)!r} is not a file; give the kubeconfig of the cluster "
                        "(kubectl config view --raw > FILE)",
                    )
                config.load_kube_config(
                    config_file=str(self.section.kubeconfig), client_configuration=configuration
                )
            else:
                found = [str(p) for p in default_kubeconfig_paths() if p.is_file()]
                if found:
                    config.load_kube_config(
                        config_file=os.pathsep.join(found), client_configuration=configuration
                    )
                elif os.environ.get("KUBERNETES_SERVICE_HOST"):
                    config.load_incluster_config(client_configuration=configuration)
                else:
                    tried = ", ".join(repr(str(p)) for p in default_kubeconfig_paths())
                    raise ConfigError(
                        where,
                        f"no kubeconfig found (tried {tried}; KUBECONFIG is "
                        f"{os.environ.get('KUBECONFIG', 'not set')!r}) and this is not a pod; set kubeconfig: PATH, "
                        "export KUBECONFIG=PATH, or write ~/.kube/config",
                    )
        except config.ConfigException as e:
            raise ConfigError(
                where, f"cannot use the kubeconfig: {e}; check it with kubectl config view"
            ) from e
        return client.ApiClient(configuration)

    def _call(
        self, verb: str, resource: str, fn: Any, *args: Any, tolerate: tuple[int, ...] = (), **kwargs: Any
    ) -> Any:
        """One API call; errors become one-line :class:`KubeflowError`/:class:`ConfigError`. An HTTP status in
        ``tolerate`` returns ``None`` instead."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        kwargs.setdefault("_request_timeout", _TIMEOUT)
        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            if e.status in tolerate:
                return None
            raise self._api_error(e, verb, resource) from e
        except HTTPError as e:
            raise KubeflowError(
                f"cannot reach the Kubernetes API server at {self.api.configuration.host} ({type(e).__name__}: "
                f"{e}); check the server of the kubeconfig and the network"
            ) from e

    def _api_error(self, e: Any, verb: str, resource: str) -> NniPlError:
        try:
            body = json.loads(e.body or "{}")
        except ValueError:
            body = {}
        message = str(body.get("message") or e.reason or "").strip()
        details = body.get("details") or {}
        ns = self.namespace
        if e.status == 404 and (
            details.get("kind") == "namespaces" or re.match(r'namespaces ".*" not found', message)
        ):
            return ConfigError(
                f"{self.field}.namespace",
                f"namespace {ns!r} does not exist in the cluster at {self.api.configuration.host}; create it "
                f"(kubectl create namespace {ns}) or set namespace to an existing one",
            )
        if e.status == 404 and resource == "pytorchjobs.kubeflow.org" and not details.get("name"):
            return KubeflowError(
                f"the cluster at {self.api.configuration.host} has no PyTorchJob resource (kubeflow.org/v1 "
                f"pytorchjobs: HTTP 404); install the Kubeflow training operator: {INSTALL_OPERATOR}"
            )
        if e.status == 403:
            return KubeflowError(
                f"forbidden: cannot {verb} {resource} in namespace {ns!r} ({message}); ask the cluster's admin for a "
                f"Role that allows it (check: kubectl auth can-i {verb} {resource} -n {ns})"
            )
        if e.status == 401:
            return KubeflowError(
                f"the cluster at {self.api.configuration.host} refused the credentials of the kubeconfig (HTTP 401: "
                f"{message}); log in again (e.g. refresh the token) and check kubectl get pods -n {ns}"
            )
        return KubeflowError(
            f"Kubernetes API: {verb} {resource} in namespace {ns!r}: HTTP {e.status}: {message}"
        )

    def _check_cluster(self) -> None:
        """Namespace, CRD and permission, checked before the experiment exists."""
        # a user may not read namespaces (they are cluster-scoped): then the next call tells what matters
        self._call("get", "namespaces", self.core.read_namespace, self.namespace, tolerate=(403,))
        self._call(
            "list", "pytorchjobs.kubeflow.org", self.custom.list_namespaced_custom_object,
            GROUP, VERSION, self.namespace, PLURAL, limit=1,
        )  # fmt: skip

    # --- code -----------------------------------------------------------------------------------------------------
    def _prepare_code(self, experiment_id: str) -> CodeSource:
        if self._code is not None:
            return self._code
        section = self.section
        if section.code_config_map:
            self._code = self._code_config_map(experiment_id)
        elif section.storage is not None:
            self._code = self._code_on_volume(experiment_id)
        else:
            self._code = CodeSource("image", working_dir=section.working_dir)
        return self._code

    def _pack(self) -> Any:
        from nni_pl.training.code_archive import pack_code_directory

        return pack_code_directory(self.code_directory)

    def _pack_for_config_map(self) -> tuple[bytes, str]:
        archive = self._pack()
        try:
            data = archive.path.read_bytes()
        finally:
            archive.path.unlink(missing_ok=True)
        if len(data) > CONFIGMAP_LIMIT:
            raise ConfigError(
                f"{self.field}.codeConfigMap",
                f"the code folder {str(self.code_directory)!r} packs to {len(data) / 1024 / 1024:.2f} MiB, more than "
                "the 1 MiB a Kubernetes ConfigMap holds; leave large files out with .nniignore, build the code into "
                "the image (codeConfigMap: false, workingDir), or put it on a volume (storage: {storageType: nfs|pvc})",
            )
        return data, archive.sha256

    def _code_config_map(self, experiment_id: str) -> CodeSource:
        assert self._archive is not None
        data, sha256 = self._archive
        name = f"nni-{_dns(experiment_id)[:30] or 'x'}-code-{sha256[:8]}"
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": self.namespace, "labels": {LABEL_EXPERIMENT: _label_value(experiment_id)}},
            "binaryData": {ARCHIVE_KEY: base64.b64encode(data).decode("ascii")},
        }  # fmt: skip
        # 409: made by an earlier manager of this experiment (the name holds the digest of the code)
        self._call(
            "create",
            "configmaps",
            self.core.create_namespaced_config_map,
            self.namespace,
            body,
            tolerate=(409,),
        )
        self._config_map = name
        return CodeSource("configmap", config_map=name)

    def _code_on_volume(self, experiment_id: str) -> CodeSource:
        storage = self.section.storage
        assert storage is not None and storage.local_mount_point is not None
        rel = f"nni-pl/{_dns(experiment_id) or 'x'}-{hashlib.sha256(experiment_id.encode()).hexdigest()[:6]}/code"
        local = storage.local_mount_point / rel
        archive = self._pack()
        try:
            marker = local.parent / "code.sha256"
            if not (local.is_dir() and marker.is_file() and marker.read_text().strip() == archive.sha256):
                tmp = local.parent / f".code-{archive.sha256[:8]}.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                with tarfile.open(archive.path) as tar:
                    tar.extractall(tmp, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
                shutil.rmtree(local, ignore_errors=True)
                tmp.rename(local)
                marker.write_text(archive.sha256)
        except OSError as e:
            raise ConfigError(
                f"{self.field}.storage.localMountPoint",
                f"cannot write the code to {str(local)!r}: {e.strerror or e}; mount the storage there, writable",
            ) from e
        finally:
            archive.path.unlink(missing_ok=True)
        return CodeSource("volume", working_dir=f"{STORAGE_DIR}/{rel}", volume=storage.volume())

    # --- running --------------------------------------------------------------------------------------------------
    def free_slots(self) -> int:
        return max(0, self.concurrency - len(self.trials))

    def running(self) -> set[str]:
        return set(self.trials)

    def manifest(self, job: TrialJob) -> dict[str, Any]:
        """The PyTorchJob :meth:`submit` creates for ``job``."""
        return pytorch_job_manifest(
            name=job_name(job.experiment_id, job.trial_id),
            namespace=self.namespace,
            job=job,
            roles=self.section.roles(),
            command=self.command,
            code=self._prepare_code(self.experiment_id or job.experiment_id),
            image_pull_secrets=self.section.image_pull_secrets,
            store_url=self._store_in_env,
            store_url_secret=self._store_secret,
        )

    def submit(self, job: TrialJob) -> SubmitInfo:
        name = job_name(job.experiment_id, job.trial_id)
        image = self.section.roles()[0][1].docker_image
        trial = _KTrial(job, name, self.namespace, image)
        self.trials[job.trial_id] = trial
        info = SubmitInfo(
            pid=None, host=f"{self.namespace}/{name}", started_at=time.time(), platform=self.platform
        )
        try:
            manifest = self.manifest(job)
            self._write_record(job, name)  # first: a manager that dies now finds the job on resume
            self._create(manifest)
        except NniPlError as e:
            logger.error("trial %s: %s", job.trial_id, e)
            self._end(trial, TrialEnd(job.trial_id, None, time.time(), str(e), requeue=False))
        return info

    def _create(self, manifest: dict[str, Any]) -> None:
        # 409: the job exists: a manager that died after creating it; its name is this trial's
        self._call(
            "create", "pytorchjobs.kubeflow.org", self.custom.create_namespaced_custom_object,
            GROUP, VERSION, self.namespace, PLURAL, manifest, tolerate=(409,),
        )  # fmt: skip

    def _write_record(self, job: TrialJob, name: str) -> None:
        record = {
            "namespace": self.namespace,
            "name": name,
            "experiment_id": job.experiment_id,
            "trial_id": job.trial_id,
        }
        path = job.control_dir / RECORD_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        tmp.replace(path)

    def _end(self, trial: _KTrial, end: TrialEnd) -> None:
        trial.ended = True
        self.trials.pop(trial.job.trial_id, None)
        self._ended[trial.job.trial_id] = trial
        self._ends.append(end)

    # --- status ---------------------------------------------------------------------------------------------------
    def poll(self, timeout: float) -> list[TrialEnd]:
        deadline = time.monotonic() + max(timeout, 0.0)
        while not self._ends:
            now = time.monotonic()
            if now >= self._next_list and self.trials:
                self._next_list = now + self.poll_interval
                try:
                    self._refresh()
                except NniPlError as e:  # the API server away for a moment: the jobs run on; ask again
                    logger.warning("kubeflow: %s", e)
                continue
            remaining = deadline - now
            if remaining <= 0:
                break
            time.sleep(min(remaining, max(0.05, self._next_list - now)))
        ends, self._ends = self._ends, []
        return ends

    def _refresh(self) -> None:
        experiments = {t.job.experiment_id for t in self.trials.values()}
        jobs: dict[str, dict[str, Any]] = {}
        for experiment_id in experiments:
            listed = self._call(
                "list", "pytorchjobs.kubeflow.org", self.custom.list_namespaced_custom_object,
                GROUP, VERSION, self.namespace, PLURAL, label_selector=f"{LABEL_EXPERIMENT}={_label_value(experiment_id)}",
            )  # fmt: skip
            jobs.update({item["metadata"]["name"]: item for item in listed.get("items") or []})
        for trial in list(self.trials.values()):
            obj = jobs.get(trial.name)
            if trial.killed:
                self._end(trial, TrialEnd(trial.job.trial_id, None, time.time(), f"killed: the PyTorchJob {trial.namespace}/{trial.name} was deleted", requeue=False))  # fmt: skip
            elif obj is None:
                self._end(
                    trial,
                    TrialEnd(
                        trial.job.trial_id, None, time.time(),
                        f"the PyTorchJob {trial.namespace}/{trial.name} is gone (deleted outside nni-pl?)",
                    ),
                )  # fmt: skip
            else:
                self._update(trial, obj)

    def _update(self, trial: _KTrial, obj: dict[str, Any]) -> None:
        state = job_state(obj)
        if state != trial.state:
            logger.info("trial %s: PyTorchJob %s is %s", trial.job.trial_id, trial.name, state)
            trial.state = state
        if state in ("Succeeded", "Failed"):
            self._end(trial, self._final(trial, state, obj))
        elif state != "Running" and time.monotonic() >= trial.next_pending_check:
            trial.next_pending_check = time.monotonic() + max(self.poll_interval, 5.0)
            self._check_pending(trial)

    def _check_pending(self, trial: _KTrial) -> None:
        """End a trial whose pods cannot start (the image cannot be pulled, a secret is missing)."""
        try:
            pods = self._pods(trial.name)
        except NniPlError:
            return
        for pod in pods:
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                waiting = (status.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in _STARTING:
                    now = time.monotonic()
                    trial.stuck_since = trial.stuck_since or now
                    if now - trial.stuck_since >= self.pending_timeout:
                        reason = f"{waiting.get('reason')}: {waiting.get('message') or ''}".strip(": ")
                        self._delete(trial)
                        self._end(
                            trial,
                            TrialEnd(
                                trial.job.trial_id, None, time.time(),
                                f"pod {pod['metadata']['name']} cannot start ({reason}); check the image "
                                f"{trial.image!r} and imagePullSecrets",
                                requeue=False,
                            ),
                        )  # fmt: skip
                    return
        trial.stuck_since = None

    def _final(self, trial: _KTrial, state: str, obj: dict[str, Any]) -> TrialEnd:
        """The end of a finished job: exit code and error from the master's log (and pod, when the log says nothing)."""
        text = self._master_log(trial)
        log = job_runner.parse_log(text or "")
        if text is not None:
            trial.log = log
        code = log.exit_code
        pod_code = None
        if code is None:
            pod_code = self._master_exit_code(trial)
            code = 0 if state == "Succeeded" else (pod_code if pod_code not in (None, 0) else 1)
        error = None
        if code != 0:
            error = log.error or _condition_message(obj, "Failed")
            missing = "No module named" in (text or "") and "nni_pl" in (text or "")
            # no marker at all: the runner never ran (python without nni-pl exits 1, no python 127/128)
            if log.exit_code is None and not log.started and (missing or code in (1, 127, 128)):
                error = f"image {trial.image!r} lacks nni-pl; pip install nni-pl in the image"
                tail = (text or "").strip().splitlines()[-1:] if text else []
                if tail:
                    error += f" (the pod said: {tail[0][:200]})"
        return TrialEnd(trial.job.trial_id, code, time.time(), error)

    def _pods(self, name: str, master: bool = False) -> list[dict[str, Any]]:
        selector = f"{OPERATOR_JOB}={name}"
        if master:
            selector += f",{OPERATOR_TYPE}=master,{OPERATOR_INDEX}=0"
        listed = self._call(
            "list",
            "pods",
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=selector,
            _preload_content=False,
        )
        return json.loads(listed.data).get("items") or []

    def _master_log(self, trial: _KTrial) -> str | None:
        """The master pod's log, or ``None`` when there is no pod (yet) or its container has not started."""
        from kubernetes.client.exceptions import ApiException

        try:
            if trial.pod is None:
                pods = self._pods(trial.name, master=True)
                if not pods:
                    return None
                trial.pod = pods[0]["metadata"]["name"]
            response = self.core.read_namespaced_pod_log(
                trial.pod,
                self.namespace,
                container=CONTAINER,
                _preload_content=False,
                _request_timeout=_TIMEOUT,
            )
        except ApiException as e:
            if e.status in (400, 404):  # 400: the container is still being created; 404: the pod is gone
                if e.status == 404:
                    trial.pod = None
                return None
            logger.warning("trial %s: %s", trial.job.trial_id, self._api_error(e, "get", "pods/log"))
            return None
        except NniPlError as e:
            logger.warning("trial %s: %s", trial.job.trial_id, e)
            return None
        except Exception as e:  # the server away for a moment: read again next time
            logger.warning("trial %s: reading the log of %s failed: %s", trial.job.trial_id, trial.pod, e)
            return None
        return response.data.decode("utf-8", "replace")

    def _master_exit_code(self, trial: _KTrial) -> int | None:
        try:
            pods = self._pods(trial.name, master=True)
        except NniPlError:
            return None
        for pod in pods:
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                terminated = (status.get("state") or {}).get("terminated")
                if status.get("name") == CONTAINER and terminated:
                    return int(terminated.get("exitCode", 1))
        return None

    # --- metrics ----------------------------------------------------------------------------------------------------
    def read_metrics(self, job: TrialJob) -> list[dict[str, Any]]:
        trial = self.trials.get(job.trial_id) or self._ended.get(job.trial_id)
        if trial is None:
            return []
        now = time.monotonic()
        if not trial.ended and now < trial.next_read:
            return []
        trial.next_read = now + self.metrics_interval
        if self.store_url:
            try:
                records = job_runner.read_relayed(
                    self.store_url, job.experiment_id, job.trial_id, trial.last_seq
                )
            except Exception as e:  # the store away for a moment: the records wait there
                logger.warning("trial %s: reading relayed metrics failed: %s", job.trial_id, e)
                return []
        else:
            log = trial.log
            if log is None:
                text = self._master_log(trial)
                log = job_runner.parse_log(text) if text is not None else None
            records = log.records if log is not None else []
        fresh = [r for r in records if int(r["seq"]) > trial.last_seq]
        if fresh:
            trial.last_seq = int(fresh[-1]["seq"])
        return fresh

    # --- stopping and the end ---------------------------------------------------------------------------------------
    def terminate(self, trial_id: str, *, grace: float = 10.0) -> None:
        trial = self.trials.get(trial_id)
        if trial is None or trial.killed:
            return
        if not self.store_url:  # the log goes with the pods: read what the trial reported so far first
            text = self._master_log(trial)
            if text is not None:
                trial.log = job_runner.parse_log(text)
        self._delete(trial, grace=grace)
        trial.killed = True
        self._next_list = 0.0

    def _delete(self, trial: _KTrial, grace: float | None = None) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        options = client.V1DeleteOptions(
            propagation_policy="Foreground", grace_period_seconds=int(grace) if grace is not None else None
        )
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, trial.namespace, PLURAL, trial.name, body=options, _request_timeout=_TIMEOUT
            )
        except ApiException as e:
            if e.status != 404:
                logger.warning(
                    "trial %s: %s",
                    trial.job.trial_id,
                    self._api_error(e, "delete", "pytorchjobs.kubeflow.org"),
                )
        except Exception as e:
            logger.warning("trial %s: deleting PyTorchJob %s failed: %s", trial.job.trial_id, trial.name, e)

    def cleanup(self, job: TrialJob) -> None:
        trial = self._ended.pop(job.trial_id, None)
        if trial is not None and not trial.killed:
            self._delete(trial)

    def reattach(
        self, job: TrialJob, pid: int | None, pid_started_at: float | None, gpu_indices: Any = None
    ) -> TrialEnd | bool:
        from kubernetes.client.exceptions import ApiException

        try:
            record = json.loads((job.control_dir / RECORD_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False  # never submitted
        namespace, name = str(record["namespace"]), str(record["name"])
        image = self.section.roles()[0][1].docker_image
        trial = _KTrial(job, name, namespace, image)
        try:
            obj = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=_TIMEOUT
            )
        except ApiException as e:
            if e.status == 404:
                return False  # never created (or deleted meanwhile): the manager runs it again
            raise self._api_error(e, "get", "pytorchjobs.kubeflow.org") from e
        self.trials[job.trial_id] = trial
        state = job_state(obj)
        if state in ("Succeeded", "Failed"):
            end = self._final(trial, state, obj)
            trial.ended = True
            self.trials.pop(job.trial_id, None)
            self._ended[job.trial_id] = trial
            return end
        trial.state = state
        return True

    def shutdown(self) -> None:
        if self._config_map is not None:
            with contextlib.suppress(Exception):
                self.core.delete_namespaced_config_map(
                    self._config_map, self.namespace, _request_timeout=_TIMEOUT
                )
            self._config_map = None
        with contextlib.suppress(Exception):
            self.api.close()
