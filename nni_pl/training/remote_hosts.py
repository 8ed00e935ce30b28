"""SSH access to the hosts of the remote training service: connections, host-key checks, commands, the agent link.

:class:`SshAccess` holds what every connection needs (the known_hosts file and its policy, the timeout) and
turns each failure into a :class:`HostError` that names the config field and the fix, never a secret:
``_client`` logs in (paramiko; the key opened here, so an encrypted key without a passphrase is named as such),
``_exec`` runs one quoted command, ``_python`` is the shell prefix that picks the machine's ``pythonPath``
interpreter. :class:`_Link` is one agent (:mod:`nni_pl.training.remote_agent`) on one SSH channel, its output
turned into events by a thread. :func:`clean_hosts` is ``nni-pl platform clean``.

Example:
    >>> str(HostError("trainingService.machineList[0].host", "h did not answer"))
    "config field 'trainingService.machineList[0].host': h did not answer"
"""

from __future__ import annotations

import contextlib
import json
import logging
import posixpath
import queue
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nni_pl.errors import ConfigError, NniPlError
from nni_pl.training.local import GpuScheduler
from nni_pl.trial import protocol

if TYPE_CHECKING:
    import paramiko

    from nni_pl.training.remote_config import RemoteMachineConfig

__all__ = ["HostError", "SshAccess", "clean_hosts"]

logger = logging.getLogger(__name__)

_KNOWN_HOSTS_LOCK = threading.Lock()
_AGENT = "nni_pl.training.remote_agent"


class HostError(NniPlError):
    """A host cannot be used (unreachable, authentication, host key, Python or nni-pl missing)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"config field '{field}': {message}")


def _paramiko() -> Any:
    try:
        import paramiko
    except ImportError as e:  # pragma: no cover - the extra is installed in every test environment
        raise ConfigError(
            "trainingService.platform",
            "platform 'remote' needs the remote extra: pip install 'nni-pl[remote]'",
        ) from e
    return paramiko


# ------------------------------------------------------------------------------------------------------------
# one agent over one SSH channel
# ------------------------------------------------------------------------------------------------------------


class _Link:
    """An agent process on a host, spoken to over one SSH channel; a thread turns its lines into events."""

    def __init__(
        self, host: _Host, channel: Any, events: queue.Queue[tuple[_Host, _Link, dict[str, Any]]]
    ) -> None:
        self.host = host
        self.channel = channel
        self.events = events
        self.last_heard = time.monotonic()
        self.closed = False
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, name=f"nni-pl-remote-{host.label}", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                chunk = self.channel.recv(1 << 16)
                if not chunk:
                    break
                self.last_heard = time.monotonic()
                buf += chunk
                while (end := buf.find(b"\n")) >= 0:
                    line, buf = buf[:end], buf[end + 1 :]
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        logger.warning("host %s: agent wrote %r", self.host.label, line[:200])
                        continue
                    self.events.put((self.host, self, event))
        except Exception as e:  # a broken connection ends the link
            logger.debug("host %s: link read ended: %s", self.host.label, e)
        finally:
            self.closed = True
            self.events.put((self.host, self, {"event": "closed"}))

    def send(self, **msg: Any) -> None:
        data = (json.dumps(msg, default=protocol.json_default) + "\n").encode("utf-8")
        with self._lock:
            self.channel.sendall(data)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            self.channel.shutdown_write()
        with contextlib.suppress(Exception):
            self.channel.close()


# ------------------------------------------------------------------------------------------------------------
# hosts
# ------------------------------------------------------------------------------------------------------------


@dataclass
class _Host:
    index: int
    machine: RemoteMachineConfig
    client: Any = None  # paramiko.SSHClient
    link: _Link | None = None  # the reuse-mode agent
    up: bool = False
    lost_at: float | None = None  # when it went silent (monotonic)
    lost_reason: str = ""
    backoff: float = 10.0
    reconnecting: bool = False
    probe: dict[str, Any] = field(default_factory=dict)
    home: str = ""
    gpus: GpuScheduler | None = None
    trials: set[str] = field(default_factory=set)
    abandoned: dict[str, str] = field(
        default_factory=dict
    )  # declared lost; terminate them if the host comes back
    code_ready: bool = False

    @property
    def label(self) -> str:
        m = self.machine
        return f"{m.user}@{m.host}" + (f":{m.port}" if m.port != 22 else "")

    @property
    def field(self) -> str:
        return f"trainingService.machineList[{self.index}]"


class SshAccess:
    """Logging in to hosts and running commands there; :class:`~nni_pl.training.remote.RemoteTrainingService`
    is one (with its trials on top)."""

    known_hosts: Path
    accept_new_host_keys: bool
    connect_timeout: float
    remote_directory: str

    def _client(self, host: _Host) -> Any:
        paramiko = _paramiko()
        m = host.machine
        client = paramiko.SSHClient()
        if self.known_hosts.exists():
            client.load_host_keys(str(self.known_hosts))
        if self.accept_new_host_keys:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            client.set_missing_host_key_policy(_RecordNewKey(self.known_hosts))
        else:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        kwargs: dict[str, Any] = {
            "hostname": m.host,
            "port": m.port,
            "username": m.user,
            "timeout": self.connect_timeout,
            "banner_timeout": self.connect_timeout,
            "auth_timeout": self.connect_timeout,
            "allow_agent": False,
            "look_for_keys": False,
        }
        password = m.resolved_password()
        if password is not None:
            kwargs["password"] = password
        elif m.ssh_key_file is not None:
            kwargs["pkey"] = self._key(host)
        try:
            client.connect(**kwargs)
        except paramiko.BadHostKeyException as e:
            raise HostError(
                host.field + ".host",
                f"the host key of {host.label} changed ({e.key.get_name()} {e.key.get_fingerprint().hex()} does not "
                f"match {self.known_hosts}); if the host was reinstalled, remove its old line from that file",
            ) from None
        except paramiko.SSHException as e:
            text = str(e)
            if (
                "protocol banner" in text or "No existing session" in text
            ):  # TCP connected, then silence (a hung or paused sshd)
                raise HostError(
                    host.field + ".host",
                    f"{host.label} did not answer within {self.connect_timeout:g} s (no SSH banner); check host "
                    "and port, and that the machine and its sshd are up",
                ) from None
            if "not found in known_hosts" in text:
                raise HostError(
                    host.field + ".host",
                    f"{host.label} is not in {self.known_hosts}; connect once with `ssh -p {m.port} "
                    f"{m.user}@{m.host}` to check and record its key, or set strictHostKeyChecking: accept-new",
                ) from None
            if isinstance(e, paramiko.AuthenticationException):
                how = "password" if password is not None else f"key {m.ssh_key_file}"
                what = "password" if password is not None else "sshKeyFile"
                raise HostError(
                    f"{host.field}.{what}",
                    f"{host.label} refused the {how} (authentication failed); check user and {what}",
                ) from None
            if "passphrase" in text.lower() or "private key file is encrypted" in text.lower():
                raise HostError(
                    f"{host.field}.sshPassphrase",
                    f"cannot open the key {m.ssh_key_file}: {text}; set sshPassphrase",
                ) from None
            raise HostError(host.field + ".host", f"SSH to {host.label} failed: {text}") from None
        except TimeoutError:
            raise HostError(
                host.field + ".host",
                f"{host.label} did not answer within {self.connect_timeout:g} s; check host and port, and that the "
                "machine is up",
            ) from None
        except paramiko.ssh_exception.NoValidConnectionsError as e:
            refused = all(isinstance(x, ConnectionRefusedError) for x in e.errors.values())
            if refused:
                raise HostError(
                    host.field + ".port",
                    f"nothing listens on port {m.port} of {m.host} (connection refused); check port (is sshd "
                    "running there?)",
                ) from None
            raise HostError(
                host.field + ".host", f"cannot reach {host.label}: {e}; check host and port"
            ) from None
        except OSError as e:
            raise HostError(
                host.field + ".port" if isinstance(e, ConnectionRefusedError) else host.field + ".host",
                f"cannot reach {host.label}: {e.strerror or e}; check host and port (is sshd running there?)",
            ) from None
        except ValueError as e:  # e.g. a key file paramiko cannot read
            raise HostError(f"{host.field}.sshKeyFile", f"{m.ssh_key_file}: {e}") from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(5)
            # small messages (start, forget) go at once: with Nagle's algorithm a message sent right after
            # another waited for the host's delayed ACK, ~40 ms per trial
            with contextlib.suppress(OSError, AttributeError):
                transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client

    def _key(self, host: _Host) -> Any:
        """The machine's ``sshKeyFile``, opened here: an encrypted key without (or with a wrong) passphrase is
        named as such instead of surfacing as a refused login."""
        paramiko = _paramiko()
        m = host.machine
        passphrase = m.resolved_passphrase()
        try:
            return paramiko.PKey.from_path(str(m.ssh_key_file), passphrase.encode() if passphrase else None)
        except (paramiko.PasswordRequiredException, TypeError) as e:
            if isinstance(e, TypeError) and "password" not in str(e).lower():
                raise
            raise HostError(
                f"{host.field}.sshPassphrase",
                f"the key {m.ssh_key_file} is encrypted; set sshPassphrase (or ${{VAR}} naming an environment "
                "variable that holds it)",
            ) from None
        except (paramiko.SSHException, OSError, ValueError) as e:
            if passphrase is not None and self._encrypted(m.ssh_key_file):
                raise HostError(
                    f"{host.field}.sshPassphrase", f"the passphrase does not open the key {m.ssh_key_file}"
                ) from None
            raise HostError(
                f"{host.field}.sshKeyFile", f"cannot read the key {m.ssh_key_file}: {e}"
            ) from None

    @staticmethod
    def _encrypted(path: Any) -> bool:
        """Whether the key file needs a passphrase (it cannot be read without one)."""
        paramiko = _paramiko()
        try:
            paramiko.PKey.from_path(str(path))
        except paramiko.PasswordRequiredException:
            return True
        except TypeError as e:
            return "password" in str(e).lower()
        except Exception:
            return False
        return False

    def _exec(
        self, host: _Host, command: str, *, timeout: float = 60.0, stdin: bytes | None = None
    ) -> tuple[int, str, str]:
        """Run ``command`` (already quoted) on ``host``; its exit status, stdout and stderr."""
        client = host.client
        transport = client.get_transport() if client is not None else None
        if transport is None or not transport.is_active():
            raise OSError(f"no connection to {host.label}")
        channel = transport.open_session(timeout=self.connect_timeout)
        channel.settimeout(timeout)
        channel.exec_command(command)
        if stdin is not None:
            channel.sendall(stdin)
        channel.shutdown_write()
        out, err = bytearray(), bytearray()
        while True:
            if channel.recv_ready():
                out += channel.recv(1 << 16)
            elif channel.recv_stderr_ready():
                err += channel.recv_stderr(1 << 16)
            elif channel.exit_status_ready():
                while channel.recv_ready():
                    out += channel.recv(1 << 16)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(1 << 16)
                break
            else:
                time.sleep(0.005)
        status = channel.recv_exit_status()
        channel.close()
        return status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def _python(self, host: _Host) -> str:
        """The shell prefix that puts ``pythonPath`` first on PATH and picks ``python`` (or ``python3``)."""
        pp = host.machine.python_path
        if pp:  # that folder's python, nothing else: a missing one must not fall back to another Python
            q = shlex.quote(pp)
            return (
                f'export PATH={q}:"$PATH"; if [ -x {q}/python ]; then __py={q}/python; '
                f"elif [ -x {q}/python3 ]; then __py={q}/python3; else exit 127; fi; "
            )
        return "if command -v python >/dev/null 2>&1; then __py=python; else __py=python3; fi; "

    def _root(self, host: _Host, experiment_id: str) -> str:
        base = self.remote_directory
        if base == "~" or base.startswith("~/"):
            base = host.home + base[1:]
        return posixpath.join(base, experiment_id)


class _RecordNewKey:
    """paramiko's missing-host-key policy for ``strictHostKeyChecking: accept-new``: accept and record."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        with _KNOWN_HOSTS_LOCK:  # hosts are connected to in parallel
            self.path.touch(mode=0o600, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        logger.warning("recorded the new host key of %s (%s) in %s", hostname, key.get_name(), self.path)


def clean_hosts(section: Any, *, keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """``nnictl platform clean`` for a remote section: delete the experiment folders nni-pl left on each host.

    Everything under each host's ``remoteWorkingDirectory`` whose name is not in ``keep`` (the ids of experiments
    that are running) is removed. Returns one line per host saying what went.
    """
    machines = list(getattr(section, "machine_list", []) or [])
    if not machines:
        raise ConfigError("trainingService.machineList", "is empty; list the hosts to clean")
    service = SshAccess.__new__(SshAccess)  # connections only: no code, no agent
    service.known_hosts = (
        Path(section.known_hosts_file).expanduser()
        if section.known_hosts_file
        else Path("~/.ssh/known_hosts").expanduser()
    )
    service.accept_new_host_keys = section.strict_host_key_checking == "accept-new"
    service.connect_timeout = 10.0
    service.remote_directory = section.remote_working_directory
    report = []
    for index, machine in enumerate(machines):
        host = _Host(index, machine)
        host.client = service._client(host)
        try:
            status, out, err = service._exec(host, 'printf "%s\\n" "$HOME"')
            host.home = out.strip() or "~"
            base = posixpath.dirname(service._root(host, "x"))
            status, out, err = service._exec(
                host, f"find {shlex.quote(base)} -mindepth 1 -maxdepth 1 -type d 2>/dev/null || true"
            )
            folders = [line for line in out.splitlines() if line.strip()]
            gone = [f for f in folders if posixpath.basename(f) not in keep]
            if gone:
                status, _, err = service._exec(host, "rm -rf -- " + " ".join(shlex.quote(f) for f in gone))
                if status != 0:
                    raise HostError(
                        host.field + ".host", f"cleaning {base} on {host.label} failed: {err.strip()[-300:]}"
                    )
            kept = len(folders) - len(gone)
            report.append(
                f"{host.label}: removed {len(gone)} experiment folder(s) from {base}"
                + (f", kept {kept} of running experiments" if kept else "")
            )
        finally:
            host.client.close()
    return report
