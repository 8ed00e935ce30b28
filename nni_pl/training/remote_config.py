"""``trainingService: {platform: remote, machineList: [...]}``: the config of trials run on SSH hosts.

This module holds only the config (NNI 2.5's ``RemoteConfig`` and ``RemoteMachineConfig``, docs L16184-16298);
the SSH service that reads it is :mod:`nni_pl.training.remote`. It imports no SSH library.

Keys are NNI's: ``machineList`` (``host``, ``port``, ``user``, ``password``, ``sshKeyFile``, ``sshPassphrase``,
``pythonPath``, ``gpuIndices``, ``maxTrialNumberPerGpu``, ``useActiveGpu``; NNI's examples also spell
``ssh_key_file``, which is read as ``sshKeyFile``) and ``reuseMode``. nni-pl adds five keys of its own:

* ``strictHostKeyChecking`` (default ``yes``): OpenSSH's names. ``yes``: a host's key must already be in the
  known-hosts file; ``accept-new``: a host met for the first time has its key recorded there, and a key that
  changed later is still refused. nni-pl never connects to a host whose key it cannot check.
* ``knownHostsFile`` (default ``~/.ssh/known_hosts``): that file, on the machine that runs the manager.
* ``retryOnHostFailure`` (default ``false``): a trial whose host dies (connection lost, host unreachable) is run
  again on another host instead of ending FAILED.
* ``hostRetryInterval`` (seconds, default 10): how long a host that failed waits before it is tried again; the
  wait doubles after each failure, up to 5 minutes.
* ``remoteWorkingDirectory`` (default ``~/nni-pl-experiments``): where experiments live on each host, one
  folder ``<remoteWorkingDirectory>/<experiment id>/`` each (as ``experimentWorkingDirectory`` does here).

Secrets (``password``, ``sshPassphrase``) are never stored. A secret is written either literally or as a
reference to an environment variable, ``password: ${SSH_PASSWORD}``, which is read when the service connects,
so the config holds nothing secret at all (the variable must be set wherever the experiment runs or resumes).
:meth:`RemoteConfig.to_dict`, whose output is what the store and the experiment's ``config.yml`` keep, writes
a literal secret as ``"***"`` and a reference as it was given. Reading a stored ``"***"`` back looks the secret
up in the environment variable :func:`secret_env_name` of its field (for the first machine's password:
``NNI_PL_SECRET_TRAININGSERVICE_MACHINELIST_0_PASSWORD``); the process that starts a detached manager passes
the literal secrets to that one child, and only through its environment, with
:meth:`RemoteConfig.secret_environment`. A stored ``"***"`` whose variable is not set is an error when the
secret is needed (:meth:`RemoteMachineConfig.resolved_password`, or :meth:`RemoteConfig.preflight`, which an
experiment runs before it starts), never when the config is only read: ``nni-pl view`` of the experiment still
works. Consequently a password that is literally ``***``, or literally of the form ``${NAME}``, must be given
through a variable. ``repr`` shows a literal secret as ``'***'``.

Example:
    >>> section = RemoteConfig.from_dict({
    ...     "platform": "remote",
    ...     "machineList": [{"host": "10.1.1.1", "user": "bob", "password": "bob123"},
    ...                     {"host": "10.1.1.2", "user": "bob", "password": "${BOB_PW}"}],
    ... }, "trainingService")
    >>> [m["password"] for m in section.to_dict()["machineList"]]
    ['***', '${BOB_PW}']
    >>> section.secret_environment()
    {'NNI_PL_SECRET_TRAININGSERVICE_MACHINELIST_0_PASSWORD': 'bob123'}
    >>> section.machine_list[0]
    RemoteMachineConfig(host='10.1.1.1', user='bob', port=22, password='***')
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from nni_pl._config_readers import check_keys, read_bool, read_gpu_indices, read_int, read_path, read_str
from nni_pl.errors import ConfigError

__all__ = [
    "HOST_KEY_POLICIES",
    "MAX_HOST_RETRY_INTERVAL",
    "SECRET_ENV_PREFIX",
    "STORED_SECRET",
    "RemoteConfig",
    "RemoteMachineConfig",
    "secret_env_name",
]

STORED_SECRET = "***"  # what the stored config holds in place of a literal secret
SECRET_ENV_PREFIX = "NNI_PL_SECRET_"
HOST_KEY_POLICIES = ("yes", "accept-new")
DEFAULT_KEY_FILES = ("~/.ssh/id_ed25519", "~/.ssh/id_rsa")
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
MAX_HOST_RETRY_INTERVAL = 300.0  # the doubling back-off of hostRetryInterval stops here

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def secret_env_name(field: str) -> str:
    """The environment variable that carries the literal secret of a config field to a detached manager.

    Example:
        >>> secret_env_name("trainingService[1].machineList[0].sshPassphrase")
        'NNI_PL_SECRET_TRAININGSERVICE_1_MACHINELIST_0_SSHPASSPHRASE'
    """
    return SECRET_ENV_PREFIX + re.sub(r"[^A-Z0-9]+", "_", field.upper()).strip("_")


def _reference(value: str | None) -> str | None:
    """The variable name of a ``${NAME}`` secret, else ``None``."""
    match = _ENV_REFERENCE.fullmatch(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def _is_literal(value: str | None) -> bool:
    return isinstance(value, str) and value != STORED_SECRET and _reference(value) is None


def _shown(value: str | None) -> str | None:
    """A secret as ``to_dict`` and ``repr`` show it."""
    return STORED_SECRET if _is_literal(value) else value


# --- one machine --------------------------------------------------------------------------------------------------


@dataclass(kw_only=True, repr=False)
class RemoteMachineConfig:
    """One SSH host of ``machineList`` (NNI's ``RemoteMachineConfig``).

    Built in Python as in NNI (``RemoteMachineConfig(host=..., user=..., ssh_key_file=...)``, or blank and
    filled in); it is checked when the experiment's config is (``from_dict`` reads the YAML form).

    Attributes:
        host, port, user: where to log in (port 22 by default).
        password: a literal password, ``${NAME}`` (read from the environment when connecting), or the stored
            placeholder ``"***"``; use :meth:`resolved_password`.
        ssh_key_file: the private key (identity file); when neither it nor a password is given, ``~/.ssh/id_ed25519``
            or ``~/.ssh/id_rsa``, whichever exists. A password, when given, is tried first.
        ssh_passphrase: the key's passphrase (literal, ``${NAME}`` or ``"***"``); use :meth:`resolved_passphrase`.
        python_path: a folder put first on the trials' ``PATH`` on that host.
        gpu_indices, max_trial_number_per_gpu, use_active_gpu: as for the local platform, for that host's GPUs.
    """

    host: str = ""
    user: str = ""
    port: int = 22
    password: str | None = None
    ssh_key_file: Path | str | None = None
    ssh_passphrase: str | None = None
    python_path: str | None = None
    gpu_indices: list[int] | None = None
    max_trial_number_per_gpu: int = 1
    use_active_gpu: bool = False

    KEYS = (
        "host", "port", "user", "password", "sshKeyFile", "sshPassphrase", "pythonPath", "gpuIndices",
        "maxTrialNumberPerGpu", "useActiveGpu",
    )  # fmt: skip
    # where this machine is in the config, e.g. "trainingService.machineList[0]" (set when read; not a field)
    config_field = "trainingService.machineList[?]"

    def __repr__(self) -> str:
        shown = [f"host={self.host!r}", f"user={self.user!r}", f"port={self.port!r}"]
        for name in ("password", "ssh_key_file", "ssh_passphrase", "python_path", "gpu_indices"):
            value = getattr(self, name)
            if value is not None:
                value = _shown(value) if name in ("password", "ssh_passphrase") else value
                shown.append(f"{name}={str(value) if isinstance(value, Path) else value!r}")
        if self.max_trial_number_per_gpu != 1:
            shown.append(f"max_trial_number_per_gpu={self.max_trial_number_per_gpu!r}")
        if self.use_active_gpu:
            shown.append("use_active_gpu=True")
        return f"RemoteMachineConfig({', '.join(shown)})"

    @classmethod
    def from_dict(cls, raw: Any, field: str, base: Path | None = None) -> RemoteMachineConfig:
        """Read one ``machineList`` entry; ``field`` is its place, e.g. ``trainingService.machineList[0]``.

        A stored ``"***"`` secret is taken from the environment variable :func:`secret_env_name` names, when it
        is set; else it stays ``"***"`` and is an error only when it is needed.
        """
        if not isinstance(raw, Mapping):
            raise ConfigError(field, f"got {raw!r}; write a mapping such as {{host: 10.1.1.1, user: bob}}")
        raw = dict(raw)
        if "ssh_key_file" in raw:  # the spelling of NNI's own remote example (docs L2394)
            if "sshKeyFile" in raw:
                raise ConfigError(
                    f"{field}.ssh_key_file", "given together with sshKeyFile; keep one (sshKeyFile)"
                )
            raw["sshKeyFile"] = raw.pop("ssh_key_file")
        check_keys(raw, list(cls.KEYS), field)
        base = base or Path.cwd()

        host = read_str(raw.get("host"), f"{field}.host", optional=False) or ""
        if not host.strip() or any(c.isspace() for c in host):
            raise ConfigError(f"{field}.host", f"got {host!r}; give the machine's IP address or host name")
        user = read_str(raw.get("user"), f"{field}.user", optional=False) or ""
        if not user.strip():
            raise ConfigError(f"{field}.user", f"got {user!r}; give the user name to log in as")
        port = read_int(raw.get("port", 22), f"{field}.port", minimum=1)
        if port is None or port > 65535:
            raise ConfigError(f"{field}.port", f"got {port!r}; an SSH port is a whole number from 1 to 65535")

        secrets: dict[str, str | None] = {}
        for key in ("password", "sshPassphrase"):
            value = read_str(raw.get(key), f"{field}.{key}")
            if value == STORED_SECRET:
                value = os.environ.get(secret_env_name(f"{field}.{key}"), value)
            secrets[key] = value or None  # NNI: an empty password means none
        key_file = read_path(raw.get("sshKeyFile"), f"{field}.sshKeyFile", base)
        if key_file is None and secrets["password"] is None:
            key_file = _default_key_file(field)
        if key_file is not None and not key_file.is_file():
            raise ConfigError(
                f"{field}.sshKeyFile",
                f"{str(key_file)!r} is not a file; give the path of the private key to log in with "
                "(e.g. ~/.ssh/id_ed25519), or a password",
            )
        python_path = read_str(raw.get("pythonPath"), f"{field}.pythonPath")
        machine = cls(
            host=host,
            user=user,
            port=port,
            password=secrets["password"],
            ssh_key_file=key_file,
            ssh_passphrase=secrets["sshPassphrase"],
            python_path=python_path or None,
            gpu_indices=read_gpu_indices(raw.get("gpuIndices"), f"{field}.gpuIndices"),
            max_trial_number_per_gpu=read_int(
                raw.get("maxTrialNumberPerGpu", 1), f"{field}.maxTrialNumberPerGpu", minimum=1
            )
            or 1,
            use_active_gpu=read_bool(raw.get("useActiveGpu"), f"{field}.useActiveGpu", False),
        )
        machine.config_field = field
        return machine

    def to_dict(self, *, secrets: bool = False) -> dict[str, Any]:
        """The camelCase form; a literal secret is ``"***"`` unless ``secrets`` (only for re-reading in memory)."""
        shown = (lambda v: v) if secrets else _shown
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": shown(self.password),
            "sshKeyFile": str(self.ssh_key_file) if self.ssh_key_file is not None else None,
            "sshPassphrase": shown(self.ssh_passphrase),
            "pythonPath": self.python_path,
            "gpuIndices": self.gpu_indices,
            "maxTrialNumberPerGpu": self.max_trial_number_per_gpu,
            "useActiveGpu": self.use_active_gpu,
        }

    @property
    def address(self) -> str:
        """``user@host:port``, for messages."""
        return f"{self.user}@{self.host}:{self.port}"

    def resolved_password(self) -> str | None:
        """The password to log in with (``None``: log in with the key).

        Raises:
            ConfigError: naming the field, when it refers to an environment variable that is not set.
        """
        return self._resolve(self.password, "password")

    def resolved_passphrase(self) -> str | None:
        """The passphrase of :attr:`ssh_key_file` (``None``: the key has none).

        Raises:
            ConfigError: naming the field, when it refers to an environment variable that is not set.
        """
        return self._resolve(self.ssh_passphrase, "sshPassphrase")

    def secret_environment(self) -> dict[str, str]:
        """``{variable: literal secret}`` for the literal secrets of this machine (see :func:`secret_env_name`)."""
        return {
            secret_env_name(f"{self.config_field}.{key}"): value
            for key, value in (("password", self.password), ("sshPassphrase", self.ssh_passphrase))
            if value is not None and _is_literal(value)
        }

    def _resolve(self, value: str | None, key: str) -> str | None:
        where = f"{self.config_field}.{key}"
        what = "password" if key == "password" else "passphrase"
        if value is None or _is_literal(value):
            return value
        name = _reference(value)
        if name is not None:
            if name not in os.environ:
                raise ConfigError(
                    where,
                    f"is {value}, but the environment variable {name} is not set; "
                    f"export {name}=<the {what}> where the experiment starts or resumes",
                )
            return os.environ[name]
        name = secret_env_name(where)
        if name not in os.environ:
            raise ConfigError(
                where,
                f"is {STORED_SECRET}: the {what} of {self.address} was given literally and nni-pl never stores it; "
                f"export {name}=<the {what}>, or write `{key}: ${{SOME_VARIABLE}}` in the config and export that "
                "variable",
            )
        return os.environ[name]


def _default_key_file(field: str) -> Path:
    for candidate in DEFAULT_KEY_FILES:
        path = Path(candidate).expanduser()
        if path.is_file():
            return path
    raise ConfigError(
        field,
        f"has neither password nor sshKeyFile, and no default key ({' or '.join(DEFAULT_KEY_FILES)}) exists; "
        "set password (or password: ${VARIABLE}) or sshKeyFile",
    )


# --- the section --------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class RemoteConfig:
    """``trainingService: {platform: remote, ...}``: trials run on SSH hosts (see the module docstring).

    ``ExperimentConfig('remote')`` starts with an empty ``machine_list`` for the user to fill, as in NNI:
    ``config.training_service.machine_list.append(RemoteMachineConfig(host=..., user=..., ssh_key_file=...))``;
    an empty list is an error when the config is checked.

    Attributes:
        machine_list: the hosts.
        reuse_mode: NNI's ``reuseMode`` (default true).
        strict_host_key_checking, known_hosts_file, retry_on_host_failure, host_retry_interval,
            remote_working_directory: nni-pl's additions (module docstring).
    """

    platform: str = "remote"
    #: trials run on other machines: the experiment builds the service (checks the hosts) before it exists
    reaches_hosts: ClassVar[bool] = True
    machine_list: list[RemoteMachineConfig] = field(default_factory=list)
    reuse_mode: bool = True
    strict_host_key_checking: str = "yes"
    known_hosts_file: Path | str | None = None  # None (before it is checked): ~/.ssh/known_hosts
    retry_on_host_failure: bool = False
    host_retry_interval: float = 10.0
    remote_working_directory: str = "~/nni-pl-experiments"

    KEYS = (
        "platform", "machineList", "reuseMode", "strictHostKeyChecking", "knownHostsFile", "retryOnHostFailure",
        "hostRetryInterval", "remoteWorkingDirectory",
    )  # fmt: skip
    config_field = "trainingService"  # where this section is in the config (set when read; not a field)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], field: str, base: Path | None = None) -> RemoteConfig:
        check_keys(raw, list(cls.KEYS), field)
        base = base or Path.cwd()
        machines = raw.get("machineList")
        if not isinstance(machines, list) or not machines:
            raise ConfigError(
                f"{field}.machineList",
                f"got {machines!r}; list the SSH hosts, e.g. [{{host: 10.1.1.1, user: bob, sshKeyFile: ~/.ssh/id_rsa}}]",
            )
        machine_list = [
            RemoteMachineConfig.from_dict(m, f"{field}.machineList[{i}]", base)
            for i, m in enumerate(machines)
        ]
        seen: dict[tuple[str, int, str], int] = {}
        for i, m in enumerate(machine_list):
            key = (m.host.lower(), m.port, m.user)
            if key in seen:
                raise ConfigError(
                    f"{field}.machineList[{i}]",
                    f"{m.address} is listed twice, as machineList[{seen[key]}] and machineList[{i}]; remove one "
                    "(maxTrialNumberPerGpu and trialConcurrency run several trials on one host)",
                )
            seen[key] = i

        policy = raw.get("strictHostKeyChecking", "yes")
        policy = "yes" if policy is True else policy  # YAML 1.1 reads a bare `yes` as true
        if policy not in HOST_KEY_POLICIES:
            raise ConfigError(
                f"{field}.strictHostKeyChecking",
                f"got {policy!r}; use yes (the host keys must be in knownHostsFile already) or accept-new (a new "
                "host's key is recorded at first contact); nni-pl never connects to a host whose key it cannot check",
            )
        known_hosts = read_path(raw.get("knownHostsFile"), f"{field}.knownHostsFile", base)
        interval = raw.get("hostRetryInterval", 10.0)
        if (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not 0 < interval < float("inf")
        ):
            raise ConfigError(
                f"{field}.hostRetryInterval",
                f"got {interval!r}; give the seconds a failed host waits before it is tried again, e.g. 10",
            )
        workdir = read_str(raw.get("remoteWorkingDirectory"), f"{field}.remoteWorkingDirectory")
        if workdir is not None and (not workdir.strip() or "\n" in workdir or "\0" in workdir):
            raise ConfigError(
                f"{field}.remoteWorkingDirectory",
                f"got {workdir!r}; give a folder on the hosts, e.g. ~/nni-pl-experiments",
            )
        section = cls(
            machine_list=machine_list,
            reuse_mode=read_bool(raw.get("reuseMode"), f"{field}.reuseMode", True),
            strict_host_key_checking=policy,
            known_hosts_file=known_hosts or Path(DEFAULT_KNOWN_HOSTS).expanduser(),
            retry_on_host_failure=read_bool(
                raw.get("retryOnHostFailure"), f"{field}.retryOnHostFailure", False
            ),
            host_retry_interval=float(interval),
            remote_working_directory=workdir or cls.remote_working_directory,
        )
        section.config_field = field
        return section

    def to_dict(self, *, secrets: bool = False) -> dict[str, Any]:
        """The camelCase form, secrets masked (what the store keeps); ``secrets=True`` keeps literal ones, for
        re-reading the config in this process only."""
        self._number()
        return {
            "platform": self.platform,
            "machineList": [
                m.to_dict(secrets=secrets) if isinstance(m, RemoteMachineConfig) else m
                for m in self.machine_list
            ],
            "reuseMode": self.reuse_mode,
            "strictHostKeyChecking": self.strict_host_key_checking,
            "knownHostsFile": str(self.known_hosts_file) if self.known_hosts_file is not None else None,
            "retryOnHostFailure": self.retry_on_host_failure,
            "hostRetryInterval": self.host_retry_interval,
            "remoteWorkingDirectory": self.remote_working_directory,
        }

    def secret_environment(self) -> dict[str, str]:
        """``{variable: literal secret}``: the environment a detached manager needs to read this section back.

        Give it to that child process only (never to the trials); variables of ``${NAME}`` secrets are the user's.
        """
        self._number()
        env: dict[str, str] = {}
        for machine in self.machine_list:
            env.update(machine.secret_environment())
        return env

    def preflight(self) -> None:
        """What the config's text cannot show, checked before an experiment starts: every secret can be had
        (its variable is set) and, with ``strictHostKeyChecking: yes``, the known-hosts file exists.

        Raises:
            ConfigError: naming the field and what to do.
        """
        self._number()
        for machine in self.machine_list:
            machine.resolved_password()
            machine.resolved_passphrase()
        known = Path(self.known_hosts_file or DEFAULT_KNOWN_HOSTS).expanduser()
        if self.strict_host_key_checking == "yes" and not known.is_file():
            raise ConfigError(
                f"{self.config_field}.knownHostsFile",
                f"{str(known)!r} does not exist, and with strictHostKeyChecking: yes every host's key must be in it; "
                "log in to each host once with ssh (checking the key it shows), or set strictHostKeyChecking: accept-new",
            )

    def _number(self) -> None:
        """Give each machine its place in the config (the list may have been edited in Python)."""
        for i, machine in enumerate(self.machine_list):
            if isinstance(machine, RemoteMachineConfig):
                machine.config_field = f"{self.config_field}.machineList[{i}]"
