"""NNI v1 experiment configs mapped to v2 keys (``ExperimentConfig.from_dict`` applies it with a notice).

Remote (docs L17357-17393): ``trainingServicePlatform: remote`` with a top-level ``machineList`` of
``{ip, port, username, passwd, sshKeyPath, passphrase, gpuIndices, maxTrialNumPerGpu, useActiveGpu, pythonPath}``
becomes ``trainingService: {platform: remote, machineList: [{host, port, user, password, sshKeyFile,
sshPassphrase, ...}]}``; ``remoteConfig: {reuse: ...}`` becomes ``reuseMode``, which is false when a v1 remote
config leaves it out (v1's default; v2's is true).

Example:
    >>> v2, notes = v1_to_v2({"trainingServicePlatform": "remote",
    ...                       "machineList": [{"ip": "10.10.10.10", "username": "test", "passwd": "test"}]})
    >>> v2["trainingService"]
    {'platform': 'remote', 'machineList': [{'host': '10.10.10.10', 'user': 'test', 'password': 'test'}], 'reuseMode': False}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nni_pl._config_readers import check_keys
from nni_pl.errors import ConfigError

__all__ = ["is_v1", "v1_to_v2"]

_V1_ONLY = (
    "authorName", "maxExecDuration", "maxTrialNum", "trainingServicePlatform", "searchSpacePath",
    "trial", "localConfig", "logDir", "versionCheck", "multiThread", "logCollection", "machineList", "remoteConfig",
    "kubeflowConfig",
)  # fmt: skip
_V1_RENAMES = {
    "maxExecDuration": "maxExperimentDuration",
    "maxTrialNum": "maxTrialNumber",
    "searchSpacePath": "searchSpaceFile",
    "logDir": "experimentWorkingDirectory",
}
_V1_DROPPED = ("authorName", "versionCheck", "multiThread", "logCollection")
_V1_MACHINE_KEYS = {
    "ip": "host",
    "port": "port",
    "username": "user",
    "passwd": "password",
    "sshKeyPath": "sshKeyFile",
    "passphrase": "sshPassphrase",
    "gpuIndices": "gpuIndices",
    "maxTrialNumPerGpu": "maxTrialNumberPerGpu",
    "useActiveGpu": "useActiveGpu",
    "pythonPath": "pythonPath",
}


def _v1_machines(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(
            "machineList", f"got {value!r}; v1 'machineList' is a list of {{ip, username, ...}}"
        )
    machines = []
    for i, machine in enumerate(value):
        if not isinstance(machine, Mapping):
            raise ConfigError(
                f"machineList[{i}]", f"got {machine!r}; write {{ip: ..., username: ..., passwd: ...}}"
            )
        check_keys(machine, list(_V1_MACHINE_KEYS), f"machineList[{i}]")
        machines.append({_V1_MACHINE_KEYS[k]: v for k, v in machine.items()})
    return machines


def _v1_remote(out: dict[str, Any], machines: Any, remote: Any, notes: list[str]) -> None:
    """``machineList`` and ``remoteConfig`` into the v2 ``trainingService`` (after the platform is known)."""
    ts = out.get("trainingService")
    platform = ts.get("platform") if isinstance(ts, Mapping) else None
    if platform != "remote":
        if machines:
            raise ConfigError(
                "machineList",
                f"is for trainingServicePlatform: remote, but the platform is {platform!r}; remove it",
            )
        if machines is not None:
            notes.append("machineList (empty) dropped")
        if remote is not None:
            raise ConfigError(
                "remoteConfig",
                f"is for trainingServicePlatform: remote, but the platform is {platform!r}; remove it",
            )
        return
    ts = out["trainingService"]
    if machines is not None:
        ts["machineList"] = _v1_machines(machines)
        notes.append(
            "machineList -> trainingService.machineList (ip -> host, username -> user, passwd -> password, ...)"
        )
    if remote is not None:
        if not isinstance(remote, Mapping):
            raise ConfigError(
                "remoteConfig", f"got {remote!r}; v1 'remoteConfig' is a mapping such as {{reuse: true}}"
            )
        check_keys(remote, ["reuse"], "remoteConfig")
        if "reuse" in remote:
            ts["reuseMode"] = remote["reuse"]
            notes.append("remoteConfig.reuse -> trainingService.reuseMode")
    if "reuseMode" not in ts:
        ts["reuseMode"] = False
        notes.append(
            "remoteConfig.reuse not given: trainingService.reuseMode false (v1's default; v2's is true)"
        )


def _v1_algorithm(raw: Any, kind: str, notes: list[str]) -> Any:
    if not isinstance(raw, Mapping):
        return raw
    out = dict(raw)
    builtin = f"builtin{kind.capitalize()}Name"
    if builtin in out:
        out["name"] = out.pop(builtin)
        notes.append(f"{kind}.{builtin} -> {kind}.name")
    if "codeDir" in out:
        out["codeDirectory"] = out.pop("codeDir")
        notes.append(f"{kind}.codeDir -> {kind}.codeDirectory")
    if "classFileName" in out:
        module = Path(out.pop("classFileName")).stem
        out["className"] = f"{module}.{out['className']}" if "className" in out else module
        notes.append(f"{kind}.classFileName+className -> {kind}.className")
    if "gpuNum" in out:
        out.pop("gpuNum")
        notes.append(f"{kind}.gpuNum dropped")
    return out


def is_v1(raw: Mapping[str, Any]) -> bool:
    if any(k in raw for k in _V1_ONLY):
        return True
    return any(
        isinstance(raw.get(k), Mapping) and f"builtin{k.capitalize()}Name" in raw[k]
        for k in ("tuner", "assessor", "advisor")
    )


def v1_to_v2(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Map an NNI v1 config to v2 keys; returns the new dict and the list of mappings applied."""
    out: dict[str, Any] = {}
    notes: list[str] = []
    machines = remote = kubeflow = None
    roles: dict[str, Any] = {}  # v1 kubeflow: trial.master / trial.worker / trial.ps
    for key, value in raw.items():
        if key == "kubeflowConfig":
            kubeflow = value
        elif key == "machineList":
            machines = value
        elif key == "remoteConfig":
            remote = value
        elif key in _V1_DROPPED:
            notes.append(f"{key} dropped")
        elif key in _V1_RENAMES:
            out[_V1_RENAMES[key]] = value
            notes.append(f"{key} -> {_V1_RENAMES[key]}")
        elif key == "trainingServicePlatform":
            out.setdefault("trainingService", {})["platform"] = value
            notes.append("trainingServicePlatform -> trainingService.platform")
        elif key == "localConfig":
            ts = out.setdefault("trainingService", {})
            local_keys = {
                "gpuIndices": "gpuIndices",
                "maxTrialNumPerGpu": "maxTrialNumberPerGpu",
                "useActiveGpu": "useActiveGpu",
            }
            if not isinstance(value, Mapping):
                raise ConfigError("localConfig", f"got {value!r}; v1 'localConfig' is a mapping")
            check_keys(value, list(local_keys), "localConfig")
            for k1, k2 in local_keys.items():
                if k1 in value:
                    ts[k2] = value[k1]
            notes.append("localConfig -> trainingService")
        elif key == "trial":
            if not isinstance(value, Mapping):
                raise ConfigError(
                    "trial", f"got {value!r}; v1 'trial' is a mapping with command, codeDir, gpuNum"
                )
            for k1, k2 in (
                ("command", "trialCommand"),
                ("codeDir", "trialCodeDirectory"),
                ("gpuNum", "trialGpuNumber"),
            ):
                if k1 in value:
                    out[k2] = value[k1]
                    notes.append(f"trial.{k1} -> {k2}")
            roles.update({k: value[k] for k in ("master", "worker", "ps") if k in value})
            extra = [k for k in value if k not in ("command", "codeDir", "gpuNum", "master", "worker", "ps")]
            if extra:
                raise ConfigError(
                    f"trial.{extra[0]}",
                    "is a v1 key of a platform this version does not support; only command, codeDir and gpuNum map",
                )
        elif key in ("tuner", "assessor", "advisor"):
            if isinstance(value, Mapping) and "gpuIndices" in value:
                # v1 gave each algorithm its own gpuIndices; v2 has one tunerGpuIndices for their shared process
                out["tunerGpuIndices"] = value["gpuIndices"]
                notes.append(f"{key}.gpuIndices -> tunerGpuIndices")
                value = {k: v for k, v in value.items() if k != "gpuIndices"}
            out[key] = _v1_algorithm(value, key, notes)
        else:
            out[key] = value
    ts = out.get("trainingService")
    if (
        machines is not None
        or remote is not None
        or (isinstance(ts, Mapping) and ts.get("platform") == "remote")
    ):
        _v1_remote(out, machines, remote, notes)
    if kubeflow is not None or roles:
        from nni_pl.training.kubeflow_config import v1_to_v2 as kubeflow_v1_to_v2

        platform = ts.get("platform") if isinstance(ts, Mapping) else None
        if platform not in (None, "kubeflow"):
            raise ConfigError(
                "kubeflowConfig" if kubeflow is not None else "trial.master",
                f"is a v1 key of platform kubeflow, but trainingServicePlatform is {platform!r}",
            )
        out["trainingService"] = kubeflow_v1_to_v2(roles, kubeflow or {})
        first = roles.get("master") or roles.get("worker")
        if "trialCommand" not in out and isinstance(first, Mapping) and first.get("command"):
            out["trialCommand"] = first["command"]  # v1 had a command per role only
        notes.append("trial.master/worker + kubeflowConfig -> trainingService (platform kubeflow)")
    return out, notes
