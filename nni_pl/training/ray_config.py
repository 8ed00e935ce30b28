"""``trainingService: {platform: ray, ...}``: the config of trials run on a Ray cluster.

This module holds only the config; the service that reads it is :mod:`nni_pl.training.ray_service` (the ``ray``
extra, imported only when a Ray experiment runs). Keys:

* ``address``: the cluster. ``auto`` (the cluster this machine belongs to, as ``ray start`` left it),
  ``host:port`` (a head node's GCS), ``ray://host:port`` (Ray Client), or none: nni-pl starts a cluster of one
  node on this machine for the experiment (bound to 127.0.0.1) and stops it when the experiment ends.
* ``trialCpuNumber`` (default 1), ``trialGpuNumber`` (default: the experiment's ``trialGpuNumber``, else 0),
  ``trialMemorySize`` (``512mb``, ``2gb``...), ``trialResources`` (custom resources, ``{accelerator_type_a10: 1}``):
  what one trial holds while it runs; Ray places each trial on a node that has them.
* ``runtimeEnv``: Ray's runtime environment (``pip``, ``env_vars``, ``working_dir``...). When a cluster other than
  the one nni-pl starts is used, ``working_dir`` defaults to ``trialCodeDirectory``, which Ray then uploads once.
* ``namespace`` (default ``nni-pl``): the Ray namespace of the experiment's actors.
* ``retryOnHostFailure`` (default ``false``; the SSH service's option, also spelt ``retryOnNodeFailure`` here): a
  trial whose node died runs again (as a new trial) instead of ending FAILED.
* ``reuseMode`` (default ``true``): trials run one after another in warm actors (a command trial's process
  starts from a warm worker, a function trial's module is imported once per actor); ``false``: a fresh actor per
  trial.
* ``localCluster``: the cluster nni-pl starts when there is no ``address``: ``numCpus``, ``numGpus``,
  ``resources``, ``objectStoreMemory`` (default 200mb).

Example:
    >>> section = RayConfig.from_dict({"platform": "ray", "address": "127.0.0.1:6379", "trialCpuNumber": 2,
    ...                                "trialMemorySize": "1gb", "trialResources": {"a": 1}}, "trainingService")
    >>> section.actor_options(gpus=0)
    {'num_cpus': 2.0, 'num_gpus': 0, 'memory': 1073741824, 'resources': {'a': 1.0}}
    >>> RayConfig.from_dict({"platform": "ray", "trialMemorySize": "lots"}, "trainingService")
    Traceback (most recent call last):
    ...
    nni_pl.errors.ConfigError: config field 'trainingService.trialMemorySize': got 'lots'; write a size such as 512mb or 2gb
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nni_pl._config_readers import check_keys, read_bool, read_int, read_str
from nni_pl.errors import ConfigError

__all__ = ["LocalClusterConfig", "RayConfig", "parse_size"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_ADDRESS = re.compile(r"^(auto|(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d+)$")


def parse_size(value: Any, field: str) -> int | None:
    """Bytes of ``512mb``, ``2gb``, ``1.5g`` or a number of bytes; ``None`` stays ``None``.

    Example:
        >>> parse_size("512mb", "x"), parse_size(1024, "x")
        (536870912, 1024)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(field, f"got {value!r}; write a size such as 512mb or 2gb")
    if isinstance(value, (int, float)) and value > 0:
        return int(value)
    m = _SIZE.match(str(value))
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(field, f"got {value!r}; write a size such as 512mb or 2gb")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _read_number(value: Any, field: str, default: float, *, minimum: float = 0.0) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(field, f"got {value!r}; write a number of at least {minimum:g}")
    return float(value)


def _read_resources(value: Any, field: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            field, f"got {value!r}; write a mapping of resource name: amount, e.g. {{gpu_a100: 1}}"
        )
    out = {}
    for name, amount in value.items():
        if name in ("CPU", "GPU", "memory"):
            hint = {"CPU": "trialCpuNumber", "GPU": "trialGpuNumber", "memory": "trialMemorySize"}[name]
            raise ConfigError(f"{field}.{name}", f"got {amount!r}; set {name} with {hint}")
        out[str(name)] = _read_number(amount, f"{field}.{name}", 0.0)
    return out


def _read_retry(raw: Mapping[str, Any], field: str) -> bool:
    keys = ("retryOnHostFailure", "retryOnNodeFailure")
    values = {k: read_bool(raw[k], f"{field}.{k}", False) for k in keys if k in raw}
    if len(set(values.values())) > 1:
        raise ConfigError(
            f"{field}.retryOnNodeFailure",
            f"got {values['retryOnNodeFailure']!r} while retryOnHostFailure is {values['retryOnHostFailure']!r}; "
            "they are one option, write it once",
        )
    return next(iter(values.values()), False)


@dataclass
class LocalClusterConfig:
    """``localCluster``: the one-node cluster nni-pl starts when the section has no ``address``."""

    num_cpus: int | None = None
    num_gpus: int | None = None
    resources: dict[str, float] = field(default_factory=dict)
    object_store_memory: int = 200 << 20

    KEYS = ("numCpus", "numGpus", "resources", "objectStoreMemory")

    @classmethod
    def from_dict(cls, raw: Any, field: str) -> LocalClusterConfig:
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError(field, f"got {raw!r}; write a mapping such as {{numCpus: 4}}")
        check_keys(raw, list(cls.KEYS), field)
        return cls(
            num_cpus=read_int(raw.get("numCpus"), f"{field}.numCpus", minimum=1),
            num_gpus=read_int(raw.get("numGpus"), f"{field}.numGpus", minimum=0),
            resources=_read_resources(raw.get("resources"), f"{field}.resources"),
            object_store_memory=parse_size(raw.get("objectStoreMemory"), f"{field}.objectStoreMemory")
            or (200 << 20),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "numCpus": self.num_cpus,
            "numGpus": self.num_gpus,
            "resources": dict(self.resources),
            "objectStoreMemory": self.object_store_memory,
        }


@dataclass
class RayConfig:
    """The ``trainingService`` section of ``platform: ray`` (see the module docstring for the keys)."""

    platform: str = "ray"
    address: str | None = None
    trial_cpu_number: float = 1.0
    trial_gpu_number: int | None = None
    trial_memory_size: int | None = None
    trial_resources: dict[str, float] = field(default_factory=dict)
    runtime_env: dict[str, Any] = field(default_factory=dict)
    namespace: str = "nni-pl"
    retry_on_node_failure: bool = False
    reuse_mode: bool = True
    local_cluster: LocalClusterConfig = field(default_factory=LocalClusterConfig)

    KEYS = (
        "platform", "address", "trialCpuNumber", "trialGpuNumber", "trialMemorySize", "trialResources",
        "runtimeEnv", "namespace", "retryOnHostFailure", "retryOnNodeFailure", "localCluster", "reuseMode",
    )  # fmt: skip
    config_field = "trainingService"
    #: trials run on other machines: the service is built (the cluster reached, the resources checked) before the
    #: experiment exists, and function trials are imported there by their import path
    reaches_hosts: ClassVar[bool] = True

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], field: str) -> RayConfig:
        check_keys(raw, list(cls.KEYS), field)
        address = read_str(raw.get("address"), f"{field}.address")
        if address is not None and not _ADDRESS.match(address.strip()):
            raise ConfigError(
                f"{field}.address",
                f"got {address!r}; write auto, host:port (a head node, e.g. 10.0.0.5:6379), ray://host:10001, or "
                "leave it out for a cluster nni-pl starts on this machine",
            )
        runtime_env = raw.get("runtimeEnv") or {}
        if not isinstance(runtime_env, Mapping):
            raise ConfigError(
                f"{field}.runtimeEnv",
                f"got {runtime_env!r}; write Ray's runtime_env mapping, e.g. {{pip: [torch]}}",
            )
        namespace = read_str(raw.get("namespace"), f"{field}.namespace") or "nni-pl"
        section = cls(
            address=address.strip() if address else None,
            trial_cpu_number=_read_number(raw.get("trialCpuNumber"), f"{field}.trialCpuNumber", 1.0),
            trial_gpu_number=read_int(raw.get("trialGpuNumber"), f"{field}.trialGpuNumber", minimum=0),
            trial_memory_size=parse_size(raw.get("trialMemorySize"), f"{field}.trialMemorySize"),
            trial_resources=_read_resources(raw.get("trialResources"), f"{field}.trialResources"),
            runtime_env=dict(runtime_env),
            namespace=namespace,
            retry_on_node_failure=_read_retry(raw, field),
            reuse_mode=read_bool(raw.get("reuseMode"), f"{field}.reuseMode", True),
            local_cluster=LocalClusterConfig.from_dict(raw.get("localCluster"), f"{field}.localCluster"),
        )
        section.config_field = field
        return section

    def to_dict(self) -> dict[str, Any]:
        return {
            "platform": "ray",
            "address": self.address,
            "trialCpuNumber": self.trial_cpu_number,
            "trialGpuNumber": self.trial_gpu_number,
            "trialMemorySize": self.trial_memory_size,
            "trialResources": dict(self.trial_resources),
            "runtimeEnv": dict(self.runtime_env),
            "namespace": self.namespace,
            "retryOnHostFailure": self.retry_on_node_failure,
            "reuseMode": self.reuse_mode,
            "localCluster": self.local_cluster.to_dict(),
        }

    def actor_options(self, *, gpus: int | None) -> dict[str, Any]:
        """Ray's ``.options(...)`` for the actor that runs one trial at a time."""
        options: dict[str, Any] = {
            "num_cpus": self.trial_cpu_number,
            "num_gpus": self.trial_gpu_number if self.trial_gpu_number is not None else (gpus or 0),
        }
        if self.trial_memory_size:
            options["memory"] = self.trial_memory_size
        if self.trial_resources:
            options["resources"] = dict(self.trial_resources)
        return options

    def requested(self, *, gpus: int | None) -> dict[str, float]:
        """What one trial asks of a node, in Ray's resource names (to check that some node offers it)."""
        options = self.actor_options(gpus=gpus)
        out = {"CPU": float(options["num_cpus"]), "GPU": float(options["num_gpus"])}
        if "memory" in options:
            out["memory"] = float(options["memory"])
        out.update(options.get("resources", {}))
        return {k: v for k, v in out.items() if v}
