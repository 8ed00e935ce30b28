"""``trainingService: {platform: kubeflow, ...}``: the config of trials run as Kubeflow PyTorchJobs.

This module holds only the config (NNI 2.x's ``KubeflowConfig``, ``KubeflowRoleConfig`` and
``KubeflowStorageConfig``; docs L2592-2851); the service that reads it is :mod:`nni_pl.training.kubeflow`. It
imports no Kubernetes client.

NNI's keys:

* ``operator``: ``pytorch-operator`` (the default). ``tf-operator`` is an error: trials are PyTorch Lightning
  scripts, run as ``PyTorchJob`` of the Kubeflow training operator; a ``ps`` role is an error for the same reason.
* ``apiVersion``: ``v1`` (``kubeflow.org/v1``, the training operator 1.x; the default). NNI's ``v1alpha2`` named
  the retired pytorch-operator and is an error that says so.
* ``master`` and ``worker``: ``{replicas, command, gpuNumber, cpuNumber, memorySize, dockerImage,
  codeDirectory}``. ``master`` has one replica (the operator's rule); without ``master`` the master is built from
  ``worker`` and ``worker.replicas`` counts it, so ``worker: {replicas: 2}`` is two pods in all. ``command``
  defaults to ``trialCommand``. ``memorySize`` is NNI's (a number of MB, or ``8gb``, ``512mb``) or a Kubernetes
  quantity (``8Gi``), which is taken as written. ``dockerImage`` is required: NNI's default image ``msranni/nni``
  has no nni-pl. ``privateRegistryAuthPath`` is an error pointing to ``imagePullSecrets``.
* ``storage``: ``{storageType: nfs, server, path}`` or nni-pl's ``{storageType: pvc, claimName}``, with
  ``localMountPoint``, the folder where this machine has the same storage mounted: the code directory is unpacked
  there and the pods run in it (NNI mounted NFS itself, which needs root). Azure storage is an error.
* ``reuseMode``: accepted (NNI's v2 default is true) and without effect: every trial is its own PyTorchJob, so
  DDP's world is always one trial's.

nni-pl's own keys: ``namespace`` (default ``default``); ``kubeconfig`` (a path; default: ``$KUBECONFIG``, else
``~/.kube/config``; inside a pod with neither, the pod's service account); ``codeConfigMap`` (default false: ship
the code directory in a ConfigMap, for small folders, at most 1 MiB packed); ``workingDir`` (the folder inside the
image the trial command runs in when the code is in the image; default: the image's ``WORKDIR``);
``imagePullSecrets`` (names of ``docker-registry`` secrets in the namespace); ``storeUrlSecret`` (the secret whose
key ``url`` holds the experiment's ``storeUrl`` when it carries a password, so that the password is not in the
job's spec).

Example:
    >>> section = KubeflowConfig.from_dict({
    ...     "platform": "kubeflow", "operator": "pytorch-operator", "apiVersion": "v1",
    ...     "worker": {"replicas": 2, "dockerImage": "me/trainer:1", "cpuNumber": 2, "memorySize": "8gb",
    ...                "gpuNumber": 1},
    ... }, "trainingService")
    >>> section.master.replicas, section.worker.replicas, section.worker.memory_size
    (1, 1, '8192Mi')
    >>> section.to_dict()["worker"]["memorySize"]
    '8192Mi'
    >>> KubeflowConfig.from_dict({"platform": "kubeflow", "operator": "tf-operator"}, "trainingService")
    Traceback (most recent call last):
    ...
    nni_pl.errors.ConfigError: config field 'trainingService.operator': got 'tf-operator'; nni-pl runs PyTorch Lightning trials as PyTorchJobs, so only pytorch-operator is supported (TFJob is not); write operator: pytorch-operator
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from nni_pl._config_readers import check_keys, read_bool, read_int, read_path, read_str
from nni_pl.errors import ConfigError

__all__ = [
    "CONFIGMAP_LIMIT",
    "KubeflowConfig",
    "KubeflowRoleConfig",
    "KubeflowStorageConfig",
    "default_kubeconfig_paths",
    "kubernetes_quantity",
    "memory_quantity",
]

CONFIGMAP_LIMIT = 1024 * 1024  # Kubernetes' limit on the data of one ConfigMap (1 MiB)
_QUANTITY = re.compile(r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")  # fmt: skip
_NNI_MEMORY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(b|k|kb|m|mb|g|gb|t|tb)?\s*$", re.IGNORECASE)
_NNI_UNITS = {"b": 1 / 1024**2, "k": 1 / 1024, "kb": 1 / 1024, "m": 1, "mb": 1, "g": 1024, "gb": 1024}
_NNI_UNITS.update({"t": 1024**2, "tb": 1024**2})
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def kubernetes_quantity(value: float) -> str:
    """A CPU count as a Kubernetes quantity: ``2`` -> ``'2'``, ``0.5`` -> ``'500m'``.

    Example:
        >>> kubernetes_quantity(2), kubernetes_quantity(0.25)
        ('2', '250m')
    """
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


def memory_quantity(value: Any, field: str) -> str:
    """``memorySize`` as a Kubernetes quantity: a number is MB (NNI), NNI's units (``8gb``, ``512m``, ``8G``: any
    case, powers of 1024) come first, another Kubernetes quantity (``8Gi``, ``1e9``) is kept as written.

    Example:
        >>> memory_quantity(2048, "memorySize"), memory_quantity("1.5gb", "m"), memory_quantity("8Gi", "m")
        ('2048Mi', '1536Mi', '8Gi')
        >>> memory_quantity("512m", "m")   # NNI's megabytes, not Kubernetes' milli-bytes
        '512Mi'
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(
            field, f"got {value!r}; give the memory as MB (8192), '8gb' or a Kubernetes quantity ('8Gi')"
        )
    match = _NNI_MEMORY.match(str(value)) if not isinstance(value, float) or math.isfinite(value) else None
    if match is None and isinstance(value, str) and _QUANTITY.match(value):
        return value  # a Kubernetes quantity NNI's units do not read ("8Gi", "1e9")
    if match is None:
        raise ConfigError(
            field, f"got {value!r}; give the memory as MB (8192), '8gb' or a Kubernetes quantity ('8Gi')"
        )
    mb = float(match.group(1)) * _NNI_UNITS[(match.group(2) or "m").lower()]
    if mb <= 0:
        raise ConfigError(field, f"got {value!r}; the memory must be more than 0")
    return f"{math.ceil(mb)}Mi"


def default_kubeconfig_paths() -> list[Path]:
    """Where the Kubernetes client looks for a kubeconfig: ``$KUBECONFIG`` (a list), else ``~/.kube/config``."""
    env = os.environ.get("KUBECONFIG", "")
    if env.strip():
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    return [Path("~/.kube/config").expanduser()]


# --- one role -------------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class KubeflowRoleConfig:
    """The ``master`` or ``worker`` of a PyTorchJob (NNI's ``KubeflowRoleConfig``).

    Example:
        >>> role = KubeflowRoleConfig.from_dict({"replicas": 2, "dockerImage": "me/t:1", "cpuNumber": 0.5},
        ...                                     "trainingService.worker")
        >>> role.replicas, role.cpu_number, role.gpu_number
        (2, 0.5, 0)
    """

    replicas: int = 1
    command: str | None = None
    gpu_number: int = 0
    cpu_number: float | None = None
    memory_size: str | None = None  # a Kubernetes quantity
    docker_image: str = ""
    code_directory: Path | None = None

    KEYS = (
        "replicas", "command", "gpuNumber", "cpuNumber", "memorySize", "dockerImage", "codeDirectory",
        "privateRegistryAuthPath",
    )  # fmt: skip
    ALIASES: ClassVar[dict[str, str]] = {
        "code_directory": "codeDirectory",  # the spelling of NNI's own reuse example (docs L2838)
        "gpuNum": "gpuNumber",  # v1 role keys
        "cpuNum": "cpuNumber",
        "memoryMB": "memorySize",
        "image": "dockerImage",
    }

    @classmethod
    def from_dict(cls, raw: Any, field: str, base: Path | None = None) -> KubeflowRoleConfig:
        if not isinstance(raw, Mapping):
            raise ConfigError(
                field, f"got {raw!r}; write a mapping such as {{replicas: 1, dockerImage: me/trainer:1}}"
            )
        raw = dict(raw)
        for alias, key in cls.ALIASES.items():
            if alias in raw:
                if key in raw:
                    raise ConfigError(f"{field}.{alias}", f"given together with {key}; keep one ({key})")
                raw[key] = raw.pop(alias)
        check_keys(raw, list(cls.KEYS), field)
        if raw.get("privateRegistryAuthPath") is not None:
            raise ConfigError(
                f"{field}.privateRegistryAuthPath",
                f"got {raw['privateRegistryAuthPath']!r}; nni-pl does not upload registry credentials: create a "
                "secret (kubectl create secret docker-registry NAME ...) and list its name in "
                "trainingService.imagePullSecrets",
            )
        replicas = read_int(raw.get("replicas", 1), f"{field}.replicas", minimum=1) or 1
        command = read_str(raw.get("command"), f"{field}.command")
        if command is not None and not command.strip():
            raise ConfigError(
                f"{field}.command", "is empty; give the trial command, or leave it out to use trialCommand"
            )
        gpus = read_int(raw.get("gpuNumber", 0), f"{field}.gpuNumber", minimum=0) or 0
        cpus = raw.get("cpuNumber")
        if cpus is not None and (
            isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not 0 < cpus < float("inf")
        ):
            raise ConfigError(
                f"{field}.cpuNumber", f"got {cpus!r}; give the CPUs each pod asks for, e.g. 2 or 0.5"
            )
        memory = raw.get("memorySize")
        image = read_str(raw.get("dockerImage"), f"{field}.dockerImage")
        if not image or not image.strip() or any(c.isspace() for c in image):
            raise ConfigError(
                f"{field}.dockerImage",
                f"got {image!r}; give the image the trial runs in, with nni-pl and the trial's packages installed "
                "(e.g. FROM pytorch/pytorch, RUN pip install nni-pl)",
            )
        return cls(
            replicas=replicas,
            command=command,
            gpu_number=gpus,
            cpu_number=float(cpus) if cpus is not None else None,
            memory_size=memory_quantity(memory, f"{field}.memorySize") if memory is not None else None,
            docker_image=image,
            code_directory=read_path(raw.get("codeDirectory"), f"{field}.codeDirectory", base or Path.cwd()),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "replicas": self.replicas,
            "dockerImage": self.docker_image,
            "gpuNumber": self.gpu_number,
        }
        if self.command is not None:
            out["command"] = self.command
        if self.cpu_number is not None:
            out["cpuNumber"] = int(self.cpu_number) if self.cpu_number.is_integer() else self.cpu_number
        if self.memory_size is not None:
            out["memorySize"] = self.memory_size
        if self.code_directory is not None:
            out["codeDirectory"] = str(self.code_directory)
        return out


# --- storage --------------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class KubeflowStorageConfig:
    """``storage``: a volume every pod mounts, holding the code (NFS or a PersistentVolumeClaim).

    Example:
        >>> import tempfile
        >>> mnt = tempfile.mkdtemp()
        >>> s = KubeflowStorageConfig.from_dict({"storageType": "nfs", "server": "10.0.0.5", "path": "/export/nni",
        ...                                      "localMountPoint": mnt}, "trainingService.storage")
        >>> s.volume()
        {'nfs': {'server': '10.0.0.5', 'path': '/export/nni'}}
    """

    storage_type: str = "nfs"
    server: str | None = None
    path: str | None = None
    claim_name: str | None = None
    local_mount_point: Path | None = None

    KEYS = (
        "storageType", "server", "path", "claimName", "localMountPoint",
        "azureAccount", "azureShare", "keyVaultName", "keyVaultKey",
    )  # fmt: skip
    TYPES = ("nfs", "pvc")

    @classmethod
    def from_dict(cls, raw: Any, field: str, base: Path | None = None) -> KubeflowStorageConfig:
        if not isinstance(raw, Mapping):
            raise ConfigError(
                field,
                f"got {raw!r}; write {{storageType: nfs, server: ..., path: ..., localMountPoint: ...}}",
            )
        check_keys(raw, list(cls.KEYS), field)
        kind = raw.get("storageType", "nfs")
        if kind in ("azureStorage", "azure") or any(
            k in raw for k in ("azureAccount", "azureShare", "keyVaultName")
        ):
            raise ConfigError(
                f"{field}.storageType",
                f"got {kind!r}; Azure File storage is not supported by nni-pl's kubeflow platform; use storageType: "
                "nfs or pvc (an Azure File share can back a PersistentVolumeClaim), or ship the code in the image",
            )
        if kind not in cls.TYPES:
            raise ConfigError(
                f"{field}.storageType",
                f"got {kind!r}; use nfs (with server and path) or pvc (with claimName)",
            )
        out = cls(storage_type=kind)
        if kind == "nfs":
            for key in ("server", "path"):
                value = read_str(raw.get(key), f"{field}.{key}")
                if not value or not value.strip():
                    example = "10.10.10.10" if key == "server" else "/var/nfs/nni"
                    raise ConfigError(f"{field}.{key}", f"got {value!r}; give the NFS {key}, e.g. {example}")
                setattr(out, key, value)
            if not out.path.startswith("/"):  # type: ignore[union-attr]
                raise ConfigError(
                    f"{field}.path", f"got {out.path!r}; give the exported folder as an absolute path"
                )
        else:
            claim = read_str(raw.get("claimName"), f"{field}.claimName")
            if not claim or not _DNS_SUBDOMAIN.match(claim):
                raise ConfigError(
                    f"{field}.claimName",
                    f"got {claim!r}; give the name of a PersistentVolumeClaim in the namespace",
                )
            out.claim_name = claim
        mount = read_path(raw.get("localMountPoint"), f"{field}.localMountPoint", base or Path.cwd())
        if mount is None:
            raise ConfigError(
                f"{field}.localMountPoint",
                "is required: the folder where this machine has the same storage mounted (e.g. sudo mount -t nfs "
                "SERVER:/PATH /mnt/nni); nni-pl puts the code directory there for the pods",
            )
        out.local_mount_point = mount
        return out

    def volume(self) -> dict[str, Any]:
        """The volume source of a pod spec (camelCase, as the API takes it)."""
        if self.storage_type == "nfs":
            return {"nfs": {"server": self.server, "path": self.path}}
        return {"persistentVolumeClaim": {"claimName": self.claim_name}}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"storageType": self.storage_type}
        if self.storage_type == "nfs":
            out.update(server=self.server, path=self.path)
        else:
            out["claimName"] = self.claim_name
        out["localMountPoint"] = str(self.local_mount_point) if self.local_mount_point else None
        return out


# --- the section ----------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class KubeflowConfig:
    """``trainingService: {platform: kubeflow, ...}``: each trial is a Kubeflow ``PyTorchJob`` (module docstring).

    Attributes:
        operator, api_version, master, worker, storage, reuse_mode: NNI's keys.
        namespace, kubeconfig, code_config_map, working_dir, image_pull_secrets, store_url_secret: nni-pl's.
    """

    platform: str = "kubeflow"
    #: trials run in a cluster: the experiment builds the service (checks the cluster) before it exists
    reaches_hosts: ClassVar[bool] = True
    operator: str = "pytorch-operator"
    api_version: str = "v1"
    master: KubeflowRoleConfig | None = None
    worker: KubeflowRoleConfig | None = None
    storage: KubeflowStorageConfig | None = None
    reuse_mode: bool = True
    namespace: str = "default"
    kubeconfig: Path | None = None
    code_config_map: bool = False
    working_dir: str | None = None
    image_pull_secrets: list[str] = field(default_factory=list)
    store_url_secret: str | None = None

    KEYS = (
        "platform", "operator", "apiVersion", "master", "worker", "ps", "storage", "reuseMode",
        "namespace", "kubeconfig", "codeConfigMap", "workingDir", "imagePullSecrets", "storeUrlSecret",
    )  # fmt: skip
    config_field = "trainingService"  # where this section is in the config (set when read; not a field)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], field: str, base: Path | None = None) -> KubeflowConfig:
        check_keys(raw, list(cls.KEYS), field)
        base = base or Path.cwd()
        operator = raw.get("operator", "pytorch-operator")
        if operator == "tf-operator":
            raise ConfigError(
                f"{field}.operator",
                "got 'tf-operator'; nni-pl runs PyTorch Lightning trials as PyTorchJobs, so only pytorch-operator is "
                "supported (TFJob is not); write operator: pytorch-operator",
            )
        if operator != "pytorch-operator":
            raise ConfigError(f"{field}.operator", f"got {operator!r}; write operator: pytorch-operator")
        if raw.get("ps") is not None:
            raise ConfigError(
                f"{field}.ps",
                "is a TFJob parameter-server role; a PyTorchJob has master and worker: remove ps and describe the "
                "pods with master/worker",
            )
        version = raw.get("apiVersion", "v1")
        if version != "v1":
            raise ConfigError(
                f"{field}.apiVersion",
                f"got {version!r}; nni-pl creates kubeflow.org/v1 PyTorchJobs (the Kubeflow training operator "
                "1.x; the old pytorch-operator's v1alpha2/v1beta* are not supported): write apiVersion: v1",
            )
        master = raw.get("master")
        worker = raw.get("worker")
        if master is None and worker is None:
            raise ConfigError(
                f"{field}.worker",
                "is missing; describe the pods, e.g. worker: {replicas: 1, dockerImage: me/trainer:1, cpuNumber: 4, "
                "memorySize: 16gb, gpuNumber: 1}",
            )
        master_role = (
            KubeflowRoleConfig.from_dict(master, f"{field}.master", base) if master is not None else None
        )
        worker_role = (
            KubeflowRoleConfig.from_dict(worker, f"{field}.worker", base) if worker is not None else None
        )
        if master_role is not None and master_role.replicas != 1:
            raise ConfigError(
                f"{field}.master.replicas",
                f"got {master_role.replicas}; a PyTorchJob has exactly one master (rank 0): set it to 1 and put the "
                "other pods in worker.replicas",
            )
        if master_role is None:  # the master is the first of the workers
            assert worker_role is not None
            master_role = KubeflowRoleConfig(**{**worker_role.__dict__, "replicas": 1})
            worker_role = (
                KubeflowRoleConfig(**{**worker_role.__dict__, "replicas": worker_role.replicas - 1})
                if worker_role.replicas > 1
                else None
            )
        storage = raw.get("storage")
        namespace = read_str(raw.get("namespace", "default"), f"{field}.namespace") or ""
        if not _DNS_LABEL.match(namespace) or len(namespace) > 63:
            raise ConfigError(
                f"{field}.namespace",
                f"got {namespace!r}; a namespace is a DNS label (lower-case letters, digits, '-', at most 63)",
            )
        working_dir = read_str(raw.get("workingDir"), f"{field}.workingDir")
        if working_dir is not None and not working_dir.startswith("/"):
            raise ConfigError(
                f"{field}.workingDir",
                f"got {working_dir!r}; give an absolute folder inside the image, e.g. /workspace",
            )
        secrets = raw.get("imagePullSecrets") or []
        if isinstance(secrets, str):
            secrets = [secrets]
        if not isinstance(secrets, list) or not all(
            isinstance(s, str) and _DNS_SUBDOMAIN.match(s) for s in secrets
        ):
            raise ConfigError(
                f"{field}.imagePullSecrets",
                f"got {secrets!r}; list the names of docker-registry secrets in the namespace, e.g. [regcred]",
            )
        store_secret = read_str(raw.get("storeUrlSecret"), f"{field}.storeUrlSecret")
        if store_secret is not None and not _DNS_SUBDOMAIN.match(store_secret):
            raise ConfigError(
                f"{field}.storeUrlSecret", f"got {store_secret!r}; give the name of a secret in the namespace"
            )
        code_config_map = read_bool(raw.get("codeConfigMap"), f"{field}.codeConfigMap", False)
        if code_config_map and storage is not None:
            raise ConfigError(
                f"{field}.codeConfigMap",
                "is true and storage is given; the code comes from one place: remove storage or codeConfigMap",
            )
        section = cls(
            operator=operator,
            api_version=version,
            master=master_role,
            worker=worker_role,
            storage=KubeflowStorageConfig.from_dict(storage, f"{field}.storage", base)
            if storage is not None
            else None,
            reuse_mode=read_bool(raw.get("reuseMode"), f"{field}.reuseMode", True),
            namespace=namespace,
            kubeconfig=read_path(raw.get("kubeconfig"), f"{field}.kubeconfig", base),
            code_config_map=code_config_map,
            working_dir=working_dir,
            image_pull_secrets=list(secrets),
            store_url_secret=store_secret,
        )
        section.config_field = field
        return section

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "platform": self.platform,
            "operator": self.operator,
            "apiVersion": self.api_version,
            "reuseMode": self.reuse_mode,
            "namespace": self.namespace,
            "codeConfigMap": self.code_config_map,
        }
        for key, role in (("master", self.master), ("worker", self.worker)):
            if role is not None:
                out[key] = role.to_dict()
        if self.storage is not None:
            out["storage"] = self.storage.to_dict()
        if self.kubeconfig is not None:
            out["kubeconfig"] = str(self.kubeconfig)
        if self.working_dir is not None:
            out["workingDir"] = self.working_dir
        if self.image_pull_secrets:
            out["imagePullSecrets"] = list(self.image_pull_secrets)
        if self.store_url_secret is not None:
            out["storeUrlSecret"] = self.store_url_secret
        return out

    def preflight(self) -> None:
        """What the config's text cannot show, checked before an experiment starts: a kubeconfig exists (or this
        runs in a pod), and the storage's ``localMountPoint`` is a folder.

        Raises:
            ConfigError: naming the field and what to do.
        """
        if self.kubeconfig is not None:
            if not self.kubeconfig.is_file():
                raise ConfigError(
                    f"{self.config_field}.kubeconfig",
                    f"{str(self.kubeconfig)!r} is not a file; give the kubeconfig of the cluster (kubectl config view "
                    "--raw > FILE)",
                )
        elif not any(p.is_file() for p in default_kubeconfig_paths()) and not os.environ.get(
            "KUBERNETES_SERVICE_HOST"
        ):
            tried = ", ".join(repr(str(p)) for p in default_kubeconfig_paths())
            raise ConfigError(
                f"{self.config_field}.kubeconfig",
                f"no kubeconfig found (tried {tried}; KUBECONFIG is {os.environ.get('KUBECONFIG', 'not set')!r}) and "
                "this is not a pod; set kubeconfig: PATH, export KUBECONFIG=PATH, or write ~/.kube/config",
            )
        if self.storage is not None and self.storage.local_mount_point is not None:
            if not self.storage.local_mount_point.is_dir():
                raise ConfigError(
                    f"{self.config_field}.storage.localMountPoint",
                    f"{str(self.storage.local_mount_point)!r} is not a folder; mount the storage there first "
                    f"(e.g. sudo mount -t nfs {self.storage.server or 'SERVER'}:{self.storage.path or '/PATH'} "
                    f"{self.storage.local_mount_point})",
                )

    def roles(self) -> list[tuple[str, KubeflowRoleConfig]]:
        """``[("Master", role), ("Worker", role)]``: the PyTorchJob's replica types (Worker only when it has pods)."""
        out: list[tuple[str, KubeflowRoleConfig]] = []
        if self.master is not None:
            out.append(("Master", self.master))
        if self.worker is not None and self.worker.replicas > 0:
            out.append(("Worker", self.worker))
        return out


def v1_to_v2(trial: Mapping[str, Any], kubeflow_config: Mapping[str, Any]) -> dict[str, Any]:
    """NNI v1's ``trial: {codeDir, master, worker}`` and ``kubeflowConfig`` as a v2 ``trainingService``.

    v1's ``nfs: {server, path}`` becomes ``storage: {storageType: nfs, server, path}``; the role keys ``gpuNum``,
    ``cpuNum``, ``memoryMB``, ``image`` are read by :class:`KubeflowRoleConfig` as written.

    Example:
        >>> v1_to_v2({"master": {"replicas": 1, "image": "me/t:1", "command": "python3 train.py"}},
        ...          {"operator": "pytorch-operator", "apiVersion": "v1", "nfs": {"server": "10.0.0.1", "path": "/x"}})
        {'platform': 'kubeflow', 'master': {'replicas': 1, 'image': 'me/t:1', 'command': 'python3 train.py'}, 'operator': 'pytorch-operator', 'apiVersion': 'v1', 'storage': {'storageType': 'nfs', 'server': '10.0.0.1', 'path': '/x'}}
    """
    out: dict[str, Any] = {"platform": "kubeflow"}
    for role in ("master", "worker", "ps"):
        if role in trial:
            out[role] = trial[role]
    if not isinstance(kubeflow_config, Mapping):
        raise ConfigError("kubeflowConfig", f"got {kubeflow_config!r}; v1 'kubeflowConfig' is a mapping")
    check_keys(
        kubeflow_config,
        ["operator", "apiVersion", "storage", "nfs", "keyVault", "azureStorage", "uploadRetryCount"],
        "kubeflowConfig",
    )
    for key in ("operator", "apiVersion"):
        if key in kubeflow_config:
            out[key] = kubeflow_config[key]
    kind = kubeflow_config.get("storage", "nfs")
    if kind == "azureStorage" or "azureStorage" in kubeflow_config:
        out["storage"] = {
            "storageType": "azureStorage"
        }  # rejected, with the reason, by KubeflowStorageConfig
    elif "nfs" in kubeflow_config:
        nfs = kubeflow_config["nfs"]
        if not isinstance(nfs, Mapping):
            raise ConfigError("kubeflowConfig.nfs", f"got {nfs!r}; write {{server: ..., path: ...}}")
        out["storage"] = {"storageType": "nfs", **{k: v for k, v in nfs.items() if k in ("server", "path")}}
    return out
