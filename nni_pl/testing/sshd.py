"""Real OpenSSH servers ("hosts") for the tests of the remote (SSH) training service.

The remote training service is tested against real ``sshd`` processes, never mocks. :func:`start_hosts`
starts ``n`` of them, each an :class:`SshHost` with its own host key, client keys, ``known_hosts`` file and
``sshd`` log; :func:`stop_hosts` tears everything down (``sshd`` stopped by PID, accounts, network
namespaces and temporary folders removed). It is idempotent and safe after a partial failure; hosts still
running when the interpreter exits are stopped by an ``atexit`` hook, and the leftovers of a crashed test
process (recognised by its PID in their names) are removed the next time hosts are started::

    hosts = start_hosts(2, base_dir=tmp_path)
    try:
        h = hosts[0]
        client.connect(h.address, h.port, h.user, key_filename=str(h.key_file))
        h.cut()       # the host stops answering: new connections time out, open ones hang
        h.restore()
        h.stop_sshd() # sshd and every open session die
        h.start_sshd()
    finally:
        stop_hosts(hosts)

Two modes, chosen by ``mode=None`` (netns when possible):

``"netns"`` (root, ``ip netns`` works): each host is a network namespace ``nnipl-<pid>-<i>`` joined to
    ours by a veth pair ``nnipl<pid>v<i>`` (ours, ``10.a.b.4i+1/30``) / ``eth0`` (the host's,
    ``10.a.b.4i+2/30``), where ``10.a.b.0/24`` is picked from the test process's PID and probed so that two
    test processes never share addresses. ``sshd`` runs inside on port 22 as root, started by
    ``ip netns exec`` with its own config, and logs in a user account of its own
    (``nnipl<pid>h<i>``, home in a fresh ``/tmp`` folder, a random password set with ``chpasswd``, so the
    account is not locked and password logins work with ``UsePAM no``: sshd then checks ``/etc/shadow``
    itself). :meth:`SshHost.cut` takes the host's end of the veth pair down: our end loses its carrier and
    the packets are dropped, so a connect times out. Taking *our* end down instead would delete the route
    and send the packets out of the default route, where this machine's network accepts any TCP
    connection.
``"loopback"`` (not root, or no network namespaces): each host is an ``sshd`` on a free port of
    ``127.0.0.1`` running as the current user, who is also the login user (``home`` is the current home;
    ``key_file`` is authorised through ``AuthorizedKeysFile`` in the host's folder). There is no second
    account, so ``password`` is ``None`` and password logins are off: tests that need one skip. ``cut()``
    sends SIGSTOP to ``sshd`` and its sessions (``restore()`` SIGCONT): a connect succeeds at the TCP level
    but the SSH banner never comes, so it fails by the client's banner timeout rather than a connect
    timeout. All hosts share the address ``127.0.0.1``.

The login user runs this project's Python as ``<python_path>/python``: ``python_path`` is the directory
of the test process's interpreter (NNI's ``pythonPath`` is a directory put at the front of ``PATH``). When
that interpreter is not reachable by the host's account (CI may clone under a ``0700`` ``/root``),
``start_hosts`` grants the account traverse permission (``--x``) on just the blocking directories with a
POSIX ACL entry for its uid, removed again when the host stops (a ``chmod o+x`` restored at the end when
the file system has no ACLs), and checks ``runuser -u <user> -- <python> -c "import nni_pl"``.

Every failure raises :class:`SshHostError` saying what failed, with the tail of the ``sshd`` log.

Example:
    >>> known_hosts_entry("10.192.7.2", 22, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample")
    '10.192.7.2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample'
    >>> known_hosts_entry("127.0.0.1", 40022, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample")
    '[127.0.0.1]:40022 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample'
    >>> reason = skip_reason()  # None where real hosts can be started here
    >>> reason is None or reason.startswith("real SSH hosts cannot be started here")
    True
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import dataclasses
import errno
import hashlib
import ipaddress
import logging
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path

from nni_pl.errors import NniPlError

__all__ = [
    "SshHost",
    "SshHostError",
    "known_hosts_entry",
    "running_hosts",
    "skip_reason",
    "start_hosts",
    "stop_hosts",
]

_log = logging.getLogger(__name__)

_MODES = ("netns", "loopback")
_MAX_HOSTS = 64  # /30 blocks in the process's /24
_START_TIMEOUT = 10.0
_SSHD_NAMES = ("sshd",)  # comm of the listener and the per-connection processes (also "sshd-session", 9.8+)
_lock = threading.RLock()
_used_indices: set[int] = set()
_live: dict[int, SshHost] = {}
_block: ipaddress.IPv4Network | None = None
_stale_checked = False
_blocked: list[Path] = []  # directories on the way to the interpreter that other users cannot traverse


class SshHostError(NniPlError, RuntimeError):
    """A test host could not be started, changed or stopped; the message ends with the ``sshd`` log's tail."""


# --- public helpers ----------------------------------------------------------------------------------------------


def known_hosts_entry(address: str, port: int, host_key: str) -> str:
    """The ``known_hosts`` line for ``host_key`` (``"ssh-ed25519 AAAA..."``) served at ``address:port``."""
    name = address if port == 22 else f"[{address}]:{port}"
    return f"{name} {host_key}"


def skip_reason(mode: str | None = None) -> str | None:
    """Why real hosts cannot be started here (in ``mode``, default: the best available), or ``None``."""
    missing = []
    if not sys.platform.startswith("linux"):
        missing.append(f"Linux (/proc, signals to process trees) is needed, this is {sys.platform}")
    if _sshd_binary() is None:
        missing.append("no sshd binary (install openssh-server)")
    if shutil.which("ssh-keygen") is None:
        missing.append("no ssh-keygen (install openssh-client)")
    if mode == "netns" and not _netns_possible():
        missing.append("netns mode needs root, `ip netns`, useradd, chpasswd, userdel and runuser")
    if mode is not None and mode not in _MODES:
        missing.append(f"mode must be one of {_MODES}, got {mode!r}")
    return "real SSH hosts cannot be started here: " + "; ".join(missing) if missing else None


@dataclasses.dataclass(eq=False)
class SshHost:
    """One running ``sshd`` and the account, keys and files to log in to it (see the module docstring).

    Attributes:
        name: ``"host0"``, ``"host1"``, ... (also the folder under ``base_dir`` holding its files).
        mode: ``"netns"`` or ``"loopback"``.
        address, port: where ``sshd`` listens.
        user, home: the login account and its home directory.
        key_file: private ed25519 client key without passphrase, authorised on the host.
        encrypted_key_file, passphrase: another authorised client key, protected by ``passphrase``.
        password: the account's password (``None`` in loopback mode, where password logins are off).
        known_hosts: a ``known_hosts`` file naming this host's key under ``address`` / ``[address]:port``.
        host_key, host_key_fingerprint: the host's public key line and its ``SHA256:...`` fingerprint.
        python_path: a directory whose ``python`` runs this project's interpreter with ``nni_pl`` importable.
        sshd_pid: the listening ``sshd``'s PID (``None`` while stopped).
        log: ``sshd``'s log file (``-E``); config: its ``sshd_config``.
        namespace: the network namespace (netns mode).
    """

    name: str
    mode: str
    address: str
    port: int
    user: str
    home: Path
    key_file: Path
    encrypted_key_file: Path
    passphrase: str
    password: str | None
    known_hosts: Path
    host_key: str
    host_key_fingerprint: str
    python_path: str
    log: Path
    config: Path
    namespace: str | None = None
    sshd_pid: int | None = None
    _res: _Resources | None = dataclasses.field(default=None, repr=False)

    @property
    def known_hosts_line(self) -> str:
        """This host's ``known_hosts`` line."""
        return known_hosts_entry(self.address, self.port, self.host_key)

    @property
    def is_cut(self) -> bool:
        """Whether :meth:`cut` is in effect."""
        return self._resources().cut

    def alive(self) -> bool:
        """Whether the listening ``sshd`` runs (a cut host is alive but unreachable)."""
        proc = self._resources().proc
        return (
            proc is not None and proc.poll() is None and self.sshd_pid is not None and _running(self.sshd_pid)
        )

    def cut(self) -> None:
        """Make the host unreachable without stopping it (netns: link down on its side; loopback: SIGSTOP)."""
        res = self._resources()
        if res.cut:
            return
        if self.mode == "netns":
            _run(
                ["ip", "-n", str(self.namespace), "link", "set", "eth0", "down"],
                what=f"cutting {self.name}",
                host=self,
            )
        else:
            res.frozen = _freeze(self.sshd_pid) if self.sshd_pid is not None else []
        res.cut = True

    def restore(self) -> None:
        """Undo :meth:`cut`: the host answers again."""
        res = self._resources()
        if not res.cut:
            return
        if self.mode == "netns":
            _run(
                ["ip", "-n", str(self.namespace), "link", "set", "eth0", "up"],
                what=f"restoring {self.name}",
                host=self,
            )
        else:
            for pid in res.frozen:
                _signal(pid, signal.SIGCONT)
            res.frozen = []
        res.cut = False

    def stop_sshd(self, timeout: float = 5.0) -> None:
        """Stop ``sshd`` by PID: SIGTERM, then SIGKILL after ``timeout``; its open sessions' ``sshd`` die too.

        The per-connection ``sshd`` processes start sessions of their own (``setsid``), so they are found as
        the listener's descendants (frozen with SIGSTOP first so that none is forked meanwhile). The user's
        commands are left to notice their closed connection, as on a real host.
        """
        self._stop(timeout, sessions=False)

    def _stop(self, timeout: float = 5.0, *, sessions: bool) -> None:
        """Stop ``sshd``; with ``sessions``, every descendant too (the users' commands: teardown)."""
        res = self._resources()
        pid = self.sshd_pid
        if pid is not None:
            victims = _freeze(pid, only_sshd=not sessions)
            for p in victims:
                _signal(p, signal.SIGTERM)
            for p in victims:
                _signal(p, signal.SIGCONT)
            deadline = time.monotonic() + timeout
            while any(_running(p) for p in victims) and time.monotonic() < deadline:
                time.sleep(0.01)
            for p in victims:
                if _running(p):
                    _signal(p, signal.SIGKILL)
        if res.proc is not None:
            try:
                res.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired as e:
                raise SshHostError(
                    f"{self.name}: sshd (PID {res.proc.pid}) survived SIGKILL{_tail(self.log)}"
                ) from e
        res.proc, res.frozen = None, []
        self.sshd_pid = None
        if self.mode == "loopback":
            res.cut = False  # the frozen processes are gone

    def start_sshd(self, timeout: float = _START_TIMEOUT) -> None:
        """Start ``sshd`` again with the same config, host key and address (no-op when alive)."""
        if not self.alive():
            self.stop_sshd()
            _start_sshd(self, timeout)

    def kill_user_processes(self) -> None:
        """SIGKILL every process of the host's account, as a host crash would (netns mode only)."""
        res = self._resources()
        if res.uid is None:
            raise SshHostError(
                f"{self.name}: kill_user_processes needs an account of the host's own (netns mode)"
            )
        _kill_uid(res.uid)

    def stop(self) -> None:
        """Tear this host down: ``sshd``, the account's processes, account, namespace, home (idempotent)."""
        if self._res is not None:
            _release(self._res, self)

    def _resources(self) -> _Resources:
        if self._res is None:
            raise SshHostError(f"{self.name} was not started by start_hosts()")
        return self._res


@dataclasses.dataclass(eq=False)
class _Resources:
    """What one host created, so that teardown removes exactly that, also after a partial start."""

    index: int
    mode: str
    dir: Path
    user: str | None = None  # an account we created (netns)
    uid: int | None = None
    home_root: Path | None = None
    namespace: str | None = None
    veth: str | None = None
    grants: list[tuple[str, Path]] = dataclasses.field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    cut: bool = False
    frozen: list[int] = dataclasses.field(default_factory=list)
    released: bool = False


def start_hosts(n: int = 2, *, base_dir: str | os.PathLike[str], mode: str | None = None) -> list[SshHost]:
    """Start ``n`` real SSH hosts; their files go to ``base_dir/host<i>/`` (logs stay there after the stop).

    Args:
        n: how many hosts (1 to 64 alive at once per process).
        base_dir: a folder for configs, keys and logs (created when missing).
        mode: ``"netns"``, ``"loopback"`` or ``None`` (netns when root and ``ip netns`` work, else loopback).

    Raises:
        SshHostError: a host did not start; the hosts started so far are stopped again.
    """
    if not isinstance(n, int) or not 1 <= n <= _MAX_HOSTS:
        raise SshHostError(f"`1 <= n <= {_MAX_HOSTS}` must hold, but got n={n!r}")
    mode = mode or ("netns" if _netns_possible() else "loopback")
    reason = skip_reason(mode)
    if reason is not None:
        raise SshHostError(f"{reason}; check skip_reason() before starting hosts")
    base = Path(base_dir)
    base.mkdir(parents=True, exist_ok=True)
    if mode == "netns":
        _cleanup_stale()
    hosts: list[SshHost] = []
    try:
        for _ in range(n):
            hosts.append(_start_host(base, mode))
    except BaseException:
        with contextlib.suppress(SshHostError):
            stop_hosts(hosts)
        raise
    return hosts


def stop_hosts(hosts: Sequence[SshHost]) -> None:
    """Stop ``hosts`` and remove what they created; idempotent. Raises :class:`SshHostError` after trying all."""
    problems = []
    for host in hosts:
        try:
            host.stop()
        except SshHostError as e:
            problems.append(str(e))
    if problems:
        raise SshHostError("stopping the SSH hosts left problems:\n" + "\n".join(problems))


@contextlib.contextmanager
def running_hosts(
    n: int = 2, *, base_dir: str | os.PathLike[str], mode: str | None = None
) -> Iterator[list[SshHost]]:
    """``start_hosts`` / ``stop_hosts`` as a context manager."""
    hosts = start_hosts(n, base_dir=base_dir, mode=mode)
    try:
        yield hosts
    finally:
        stop_hosts(hosts)


# --- starting one host ----------------------------------------------------------------------------------------------


def _start_host(base: Path, mode: str) -> SshHost:
    with _lock:
        index = min(set(range(_MAX_HOSTS)) - _used_indices, default=None)
        if index is None:
            raise SshHostError(f"at most {_MAX_HOSTS} hosts run at once per process; stop some first")
        _used_indices.add(index)
    name = f"host{index}"
    folder = base / name
    res = _Resources(index=index, mode=mode, dir=folder)
    host: SshHost | None = None
    try:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        host_key = _keygen(folder / "ssh_host_ed25519_key", "", f"{name} host key")
        client_key = _keygen(folder / "id_ed25519", "", f"nni-pl test client for {name}")
        passphrase = secrets.token_urlsafe(12)
        encrypted_key = _keygen(folder / "id_ed25519_encrypted", passphrase, f"nni-pl test client for {name}")
        authorized = f"{client_key}\n{encrypted_key}\n"
        pid = os.getpid()
        if mode == "netns":
            user, password = f"nnipl{pid}h{index}", secrets.token_urlsafe(12)
            home = _create_account(res, user, password)
            keys_file = home / ".ssh" / "authorized_keys"
            keys_file.parent.mkdir(mode=0o700)
            keys_file.write_text(authorized)
            for p in (keys_file.parent, keys_file):
                os.chown(p, res.uid or 0, pwd.getpwnam(user).pw_gid)
            python_path = _python_path_for(res, user, home)
            address = _create_namespace(res, f"nnipl-{pid}-{index}", f"nnipl{pid}v{index}", index)
            port = 22
        else:
            account = pwd.getpwuid(os.geteuid())
            user, password, home = account.pw_name, None, Path(account.pw_dir)
            keys_file = folder / "authorized_keys"
            keys_file.write_text(authorized)
            python_path = _python_path_for(res, user, home)
            address, port = "127.0.0.1", 0
        host = SshHost(
            name=name,
            mode=mode,
            address=address,
            port=port,
            user=user,
            home=home,
            key_file=folder / "id_ed25519",
            encrypted_key_file=folder / "id_ed25519_encrypted",
            passphrase=passphrase,
            password=password,
            known_hosts=folder / "known_hosts",
            host_key=host_key,
            host_key_fingerprint=_fingerprint(host_key),
            python_path=python_path,
            log=folder / "sshd.log",
            config=folder / "sshd_config",
            namespace=res.namespace,
            _res=res,
        )
        with _lock:
            _live[index] = host
        if mode == "netns":
            _write_config(host, keys_file)
            _start_sshd(host, _START_TIMEOUT)
        else:
            _start_on_free_port(host, keys_file)
        host.known_hosts.write_text(host.known_hosts_line + "\n")
        return host
    except BaseException:
        with contextlib.suppress(SshHostError):
            _release(res, host)
        raise


def _keygen(path: Path, passphrase: str, comment: str) -> str:
    """An ed25519 key pair at ``path`` / ``path.pub``; returns the public line without its comment."""
    # 4 bcrypt rounds (default 16): loading the encrypted key costs paramiko ~50 ms instead of ~200 ms
    rounds = ["-a", "4"] if passphrase else []
    _run(
        ["ssh-keygen", "-q", "-t", "ed25519", *rounds, "-N", passphrase, "-C", comment, "-f", str(path)],
        what="ssh-keygen",
    )
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])


def _fingerprint(public_line: str) -> str:
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _create_account(res: _Resources, user: str, password: str) -> Path:
    """A login account with a password; its home in a fresh folder that the account can reach."""
    root = Path(tempfile.mkdtemp(prefix=f"{user}-", dir="/tmp" if os.path.isdir("/tmp") else None))
    res.home_root = root
    root.chmod(0o711)
    home = root / "home"
    res.user = user  # from here on, teardown deletes the account
    shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
    _run(
        ["useradd", "-m", "-d", str(home), "-s", shell, "-c", "nni-pl test SSH host", user],
        what=f"creating account {user}",
    )
    res.uid = pwd.getpwnam(user).pw_uid
    _run(["chpasswd"], input=f"{user}:{password}\n", what=f"setting the password of {user}")
    return home


def _python_path_for(res: _Resources, user: str, home: Path) -> str:
    """A directory whose ``python`` runs this interpreter with ``nni_pl`` importable, as ``user``."""
    directory = os.path.dirname(sys.executable)
    if not os.access(os.path.join(directory, "python"), os.X_OK):
        # e.g. /usr/bin/python3.11 with no /usr/bin/python: a wrapper (a symlink would leave a venv)
        directory = str((res.home_root or res.dir) / "bin")
        os.makedirs(directory, exist_ok=True)
        wrapper = Path(directory, "python")
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
        wrapper.chmod(0o755)
    if res.uid is None:
        return directory  # loopback: the current user runs its own interpreter
    global _blocked
    python = os.path.join(directory, "python")
    if _blocked:  # an earlier account needed them: grant first, check once
        res.grants += _grant_traverse(_blocked, res.uid)
    check = _python_check(user, home, python)
    if check.returncode != 0:
        blocked = _blocked = _blocked_dirs(_python_paths(python))
        res.grants += _grant_traverse(blocked, res.uid)
        check = _python_check(user, home, python)
        if check.returncode != 0:
            raise SshHostError(
                f"the account {user} cannot run `{python} -c 'import nni_pl'` (exit {check.returncode}): "
                f"{check.stderr.strip()[-1500:]}; traverse permission was granted on {[str(d) for d in blocked]}; "
                "the interpreter, its libraries and the nni_pl sources must be readable by other users"
            )
    return directory


def _python_check(user: str, home: Path, python: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    args = [shutil.which("runuser") or "runuser", "-u", user, "--", python, "-c", "import nni_pl"]
    return subprocess.run(args, cwd=home, env=env, capture_output=True, text=True, timeout=60, check=False)


def _python_paths(python: str) -> list[Path]:
    """Every path the interpreter needs: each hop of its symlinks, its prefixes and the nni_pl package."""
    paths, p, hops = [], os.path.abspath(python), 0
    paths.append(Path(p))
    while os.path.islink(p) and hops < 40:
        p = os.path.normpath(os.path.join(os.path.dirname(p), os.readlink(p)))
        paths.append(Path(p))
        hops += 1
    paths += [Path(x) for x in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)]
    import importlib.util

    spec = importlib.util.find_spec("nni_pl")
    if spec is not None and spec.origin:
        paths.append(Path(spec.origin).parent)
    return paths


def _blocked_dirs(paths: Collection[Path]) -> list[Path]:
    """The directories on the way to ``paths`` that other users cannot traverse, outermost first."""
    blocked: list[Path] = []
    for path in paths:
        for d in [*reversed(path.parents), path]:
            with contextlib.suppress(OSError):
                st = os.stat(d)
                if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IXOTH and d not in blocked:
                    blocked.append(d)
    return blocked


def _create_namespace(res: _Resources, namespace: str, veth: str, index: int) -> str:
    """The host's network namespace and veth pair; returns the host's address."""
    block = _address_block()
    ours, theirs = block[4 * index + 1], block[4 * index + 2]
    mac_ours, mac_theirs = f"02:6e:6e:{index:02x}:00:01", f"02:6e:6e:{index:02x}:00:02"
    res.namespace = namespace
    _run(["ip", "netns", "add", namespace], what=f"creating network namespace {namespace}")
    res.veth = veth
    steps = [
        [
            "ip",
            "link",
            "add",
            veth,
            "address",
            mac_ours,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "address",
            mac_theirs,
            "netns",
            namespace,
        ],
        ["ip", "addr", "add", f"{ours}/30", "dev", veth],
        ["ip", "link", "set", veth, "up"],
        ["ip", "-n", namespace, "addr", "add", f"{theirs}/30", "dev", "eth0"],
        ["ip", "-n", namespace, "link", "set", "eth0", "up"],
        ["ip", "-n", namespace, "link", "set", "lo", "up"],
        # no ARP: while the host is cut, packets are dropped silently (a timeout, not "no route")
        ["ip", "neigh", "replace", str(theirs), "lladdr", mac_theirs, "dev", veth, "nud", "permanent"],
        [
            "ip",
            "-n",
            namespace,
            "neigh",
            "replace",
            str(ours),
            "lladdr",
            mac_ours,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    ]
    for args in steps:
        _run(args, what=f"wiring network namespace {namespace}")
    return str(theirs)


def _address_block() -> ipaddress.IPv4Network:
    """This process's ``10.a.b.0/24`` (a, b from the PID), skipping any /24 with addresses or routes in use."""
    global _block
    with _lock:
        if _block is not None:
            return _block
        addrs = _run(["ip", "-4", "-o", "addr", "show"], what="listing addresses").stdout.split("\n")
        routes = _run(["ip", "-4", "route", "show", "table", "all"], what="listing routes").stdout.split("\n")
        used = [ipaddress.ip_interface(line.split()[3]).network for line in addrs if len(line.split()) > 3]
        for line in routes:
            words = line.split()
            if words and words[0] in (
                "local",
                "broadcast",
                "unicast",
                "unreachable",
                "blackhole",
                "prohibit",
                "throw",
            ):
                words = words[1:]
            with contextlib.suppress(ValueError, IndexError):
                used.append(ipaddress.ip_network(words[0], strict=False))
        start = os.getpid() % 16384
        for step in range(16384):
            i = (start + step) % 16384
            net = ipaddress.IPv4Network(f"10.{192 + i // 256}.{i % 256}.0/24")
            if not any(u.prefixlen >= 24 and u.overlaps(net) for u in used):
                _block = net
                return net
        raise SshHostError("no free /24 in 10.192.0.0/10 for the test hosts' addresses")


def _write_config(host: SshHost, keys_file: Path) -> None:
    folder = host._resources().dir
    netns = host.mode == "netns"
    lines = [
        f"ListenAddress {host.address}:{host.port}",
        f"HostKey {folder / 'ssh_host_ed25519_key'}",
        f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {keys_file}",
        f"AllowUsers {host.user}",
        "PermitRootLogin " + ("no" if netns else "prohibit-password"),
        "UsePAM no",
        "StrictModes no",
        f"PasswordAuthentication {'yes' if netns else 'no'}",
        "PubkeyAuthentication yes",
        "KbdInteractiveAuthentication no",
        "Subsystem sftp internal-sftp",
        "MaxStartups 100",
        "MaxSessions 100",
        "MaxAuthTries 10",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "LogLevel VERBOSE",
    ]
    if _openssh_version() >= (9, 8):
        lines.append("PerSourcePenalties no")  # tests fail logins on purpose, many from one address
    host.config.write_text("\n".join(lines) + "\n")


def _start_on_free_port(host: SshHost, keys_file: Path) -> None:
    for attempt in range(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            host.port = s.getsockname()[1]
        _write_config(host, keys_file)
        try:
            _start_sshd(host, _START_TIMEOUT)
            return
        except SshHostError:
            if attempt == 4 or "bind" not in _tail(host.log).lower():
                raise


def _start_sshd(host: SshHost, timeout: float) -> None:
    """Start the listener in the foreground (``-D``) of a session of its own; wait for its PID file."""
    res = host._resources()
    pid_file = res.dir / "sshd.pid"
    pid_file.unlink(missing_ok=True)
    sshd = _sshd_binary()
    if sshd is None:
        raise SshHostError(f"{host.name}: no sshd binary (install openssh-server)")
    command = [sshd, "-D", "-f", str(host.config), "-E", str(host.log)]
    if host.mode == "netns":
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # the privilege separation directory
        command = ["ip", "netns", "exec", str(host.namespace), *command]  # `ip netns exec` execs: same PID
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    with open(host.log, "ab") as log:  # config errors go to stderr, before sshd opens its -E log
        res.proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # sshd writes its PID file after binding its listening sockets: present means ready
        with contextlib.suppress(OSError, ValueError):
            host.sshd_pid = int(pid_file.read_text().strip())
            return
        if res.proc.poll() is not None:
            code, res.proc = res.proc.returncode, None
            raise SshHostError(
                f"{host.name}: `{shlex.join(command)}` exited with {code} at startup{_tail(host.log)}"
            )
        time.sleep(0.005)
    host.sshd_pid = res.proc.pid
    host.stop_sshd()
    raise SshHostError(
        f"{host.name}: sshd wrote no PID file {pid_file} within {timeout:g} s{_tail(host.log)}"
    )


# --- teardown ----------------------------------------------------------------------------------------------------------


def _release(res: _Resources, host: SshHost | None) -> None:
    """Remove what ``res`` records, step by step; every step runs even when an earlier one failed."""
    if res.released:
        return
    problems: list[str] = []
    log = host.log if host is not None else res.dir / "sshd.log"

    def step(what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as e:
            problems.append(f"{what}: {e}")

    if host is not None:
        step("stopping sshd", lambda: host._stop(sessions=True))
    elif res.proc is not None:
        step("stopping sshd", lambda: _kill_tree(res.proc.pid if res.proc else 0))
    if res.uid is not None:
        step(f"killing the processes of {res.user}", lambda: _kill_uid(res.uid or -1))
    if res.grants:
        step("revoking traverse permissions", lambda: _revoke_traverse(res.grants, res.uid or -1))
    if res.user is not None:
        step(f"deleting account {res.user}", lambda: _delete_account(res.user or "", res.uid))
    if res.namespace is not None:
        step(
            f"deleting network namespace {res.namespace}",
            lambda: _delete_namespace(res.namespace or "", res.veth),
        )
    if res.home_root is not None:
        step(f"removing {res.home_root}", lambda: _remove_tree(res.home_root))
    res.released = True
    global _block
    with _lock:
        _used_indices.discard(res.index)
        _live.pop(res.index, None)
        if not _used_indices:
            _block = None  # probe again next time: another process may have taken it meanwhile
    if problems:
        raise SshHostError(f"tearing down {res.dir.name} failed: " + "; ".join(problems) + _tail(log))


def _remove_tree(path: Path | None) -> None:
    if path is not None and path.exists():
        shutil.rmtree(path)


def _kill_tree(pid: int) -> None:
    for p in _freeze(pid, only_sshd=False):
        _signal(p, signal.SIGKILL)


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` (an account only the fixture uses) until none is left."""
    deadline = time.monotonic() + 5.0
    while True:
        pids = [pid for pid in _pids() if _uid_of(pid) == uid and _running(pid)]
        if not pids:
            return
        if time.monotonic() > deadline:
            raise SshHostError(f"processes {pids} of uid {uid} survived SIGKILL")
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.01)


def _delete_account(user: str, uid: int | None) -> None:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return
    for _ in range(20):
        # 8: the account is still in use (a process just exiting); 6: it is already gone; 12: home not removed
        proc = _run(["userdel", "-r", user], what=f"deleting account {user}", ok=(0, 6, 8, 12))
        if proc.returncode != 8:
            return
        if uid is not None:
            _kill_uid(uid)
        time.sleep(0.05)
    raise SshHostError(f"`userdel -r {user}` kept saying the account is in use: {proc.stderr.strip()}")


def _delete_namespace(namespace: str, veth: str | None) -> None:
    if namespace in _run(["ip", "netns", "list"], what="listing network namespaces").stdout.split():
        pids = _run(
            ["ip", "netns", "pids", namespace], what=f"listing processes of {namespace}", ok=(0, 1)
        ).stdout.split()
        for pid in pids:
            _signal(int(pid), signal.SIGKILL)
        _run(["ip", "netns", "del", namespace], what=f"deleting network namespace {namespace}")
    # the pair goes with the namespace, but asynchronously: delete our end now. The kernel may remove it between
    # the check and the command ("No such device", exit 2); only a device still there afterwards is a failure.
    if veth is not None and os.path.exists(f"/sys/class/net/{veth}"):
        proc = _run(["ip", "link", "del", veth], what=f"deleting {veth}", ok=(0, 1, 2))
        if proc.returncode == 2 and os.path.exists(f"/sys/class/net/{veth}"):
            raise SshHostError(f"deleting {veth}: `ip link del {veth}` exited with 2: {proc.stderr.strip()}")


def _cleanup_stale() -> None:
    """Remove namespaces, accounts and homes left by test processes that died (their PID is in the names)."""
    global _stale_checked
    with _lock:
        if _stale_checked:
            return
        _stale_checked = True
    try:
        names = _run(["ip", "netns", "list"], what="listing network namespaces").stdout.split()
        for ns in names:
            m = re.fullmatch(r"nnipl-(\d+)-(\d+)", ns)
            if m and not _pid_alive(int(m[1])):
                _log.warning("removing network namespace %s of dead test process %s", ns, m[1])
                _delete_namespace(ns, f"nnipl{m[1]}v{m[2]}")
        for entry in pwd.getpwall():
            m = re.fullmatch(r"nnipl(\d+)h(\d+)", entry.pw_name)
            if m and not _pid_alive(int(m[1])):
                _log.warning("removing account %s of dead test process %s", entry.pw_name, m[1])
                _kill_uid(entry.pw_uid)
                with contextlib.suppress(SshHostError, OSError):
                    dirs = _blocked_dirs(
                        _python_paths(os.path.join(os.path.dirname(sys.executable), "python"))
                    )
                    _revoke_traverse([("acl", d) for d in dirs], entry.pw_uid)
                _delete_account(entry.pw_name, entry.pw_uid)
        for folder in Path("/tmp").glob("nnipl[0-9]*h*-*"):
            m = re.fullmatch(r"nnipl(\d+)h\d+-.*", folder.name)
            if m and folder.is_dir() and not _pid_alive(int(m[1])):
                shutil.rmtree(folder, ignore_errors=True)
    except (SshHostError, OSError) as e:
        _log.warning("could not remove the leftovers of earlier test processes: %s", e)


@atexit.register
def _stop_live_hosts() -> None:
    with _lock:
        hosts = list(_live.values())
    for host in hosts:
        try:
            host.stop()
        except SshHostError as e:
            _log.warning("%s", e)


# --- permissions: POSIX ACL entries granting one account traverse rights ------------------------------------------

_ACL_XATTR = "system.posix_acl_access"
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_NO_ID = 0xFFFFFFFF
_chmod_grants: dict[Path, list[int]] = {}  # directory -> [original mode, grants alive]


def _read_acl(path: Path) -> list[tuple[int, int, int]]:
    try:
        raw = os.getxattr(path, _ACL_XATTR)
    except OSError as e:
        if e.errno != errno.ENODATA:
            raise
        mode = os.stat(path).st_mode
        return [
            (_USER_OBJ, (mode >> 6) & 7, _NO_ID),
            (_GROUP_OBJ, (mode >> 3) & 7, _NO_ID),
            (_OTHER, mode & 7, _NO_ID),
        ]
    return [struct.unpack_from("<HHI", raw, 4 + 8 * i) for i in range((len(raw) - 4) // 8)]


def _write_acl(path: Path, entries: list[tuple[int, int, int]]) -> None:
    entries = [e for e in entries if e[0] != _MASK]
    if not any(tag in (_USER, _GROUP) for tag, _, _ in entries):
        with contextlib.suppress(OSError):
            os.removexattr(path, _ACL_XATTR)
        group = next(perm for tag, perm, _ in entries if tag == _GROUP_OBJ)
        os.chmod(path, (stat.S_IMODE(os.stat(path).st_mode) & ~0o070) | (group << 3))
        return
    mask = 0
    for tag, perm, _ in entries:
        if tag in (_USER, _GROUP_OBJ, _GROUP):
            mask |= perm
    entries = sorted([*entries, (_MASK, mask, _NO_ID)], key=lambda e: (e[0], e[2]))
    os.setxattr(path, _ACL_XATTR, struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries))


def _grant_traverse(dirs: Sequence[Path], uid: int) -> list[tuple[str, Path]]:
    """Give ``uid`` the ``x`` right on ``dirs`` (an ACL entry; ``chmod o+x`` where ACLs are unsupported)."""
    grants: list[tuple[str, Path]] = []
    for d in dirs:
        try:
            entries = _read_acl(d)
            perm = next((p for tag, p, i in entries if tag == _USER and i == uid), 0) | 1
            _write_acl(d, [e for e in entries if not (e[0] == _USER and e[2] == uid)] + [(_USER, perm, uid)])
            grants.append(("acl", d))
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise SshHostError(f"granting uid {uid} traverse permission on {d} failed: {e}") from e
            with _lock:
                record = _chmod_grants.setdefault(d, [stat.S_IMODE(os.stat(d).st_mode), 0])
                record[1] += 1
                os.chmod(d, record[0] | stat.S_IXOTH)
            grants.append(("chmod", d))
    return grants


def _revoke_traverse(grants: Sequence[tuple[str, Path]], uid: int) -> None:
    for kind, d in reversed(grants):
        if not d.exists():
            continue
        if kind == "acl":
            entries = _read_acl(d)
            if any(tag == _USER and i == uid for tag, _, i in entries):
                _write_acl(d, [e for e in entries if not (e[0] == _USER and e[2] == uid)])
        else:
            with _lock:
                record = _chmod_grants.get(d)
                if record is not None:
                    record[1] -= 1
                    if record[1] <= 0:
                        os.chmod(d, record[0])
                        del _chmod_grants[d]


# --- processes ----------------------------------------------------------------------------------------------------------


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _stat(pid: int) -> tuple[str, str, int] | None:
    """``(comm, state, ppid)`` of ``pid``, or ``None`` when it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2 :].split()
    return data[data.index("(") + 1 : data.rindex(")")], rest[0], int(rest[1])


def _running(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] not in ("Z", "X")


def _uid_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _freeze(root: int, *, only_sshd: bool = True) -> list[int]:
    """SIGSTOP ``root`` and its (``sshd``) descendants until no new one appears; returns them, root first."""
    frozen: list[int] = []
    if not _running(root):
        return frozen
    _signal(root, signal.SIGSTOP)
    frozen.append(root)
    while True:
        table = {pid: st for pid in _pids() if (st := _stat(pid)) is not None}
        new = [
            pid
            for pid, (comm, state, ppid) in table.items()
            if ppid in frozen
            and pid not in frozen
            and state not in ("Z", "X")
            and (not only_sshd or comm.startswith(_SSHD_NAMES))
        ]
        if not new:
            return frozen
        for pid in new:
            _signal(pid, signal.SIGSTOP)
        frozen += new


# --- small helpers ------------------------------------------------------------------------------------------------------


def _sshd_binary() -> str | None:
    for candidate in ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"):
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("sshd")
    return os.path.abspath(found) if found else None  # sshd re-executes itself: it needs an absolute path


def _netns_possible() -> bool:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return False
    if any(shutil.which(tool) is None for tool in ("ip", "useradd", "chpasswd", "userdel", "runuser")):
        return False
    try:
        return (
            subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=10, check=False).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


_version: tuple[int, int] | None = None


def _openssh_version() -> tuple[int, int]:
    global _version
    if _version is None:
        _version = (0, 0)
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            out = subprocess.run(["ssh", "-V"], capture_output=True, text=True, timeout=10, check=False)
            m = re.search(r"OpenSSH_(\d+)\.(\d+)", out.stderr + out.stdout)
            if m:
                _version = (int(m[1]), int(m[2]))
    return _version


def _tail(log: Path, lines: int = 20) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"\n(no sshd log at {log})"
    return (
        f"\n--- last lines of {log} ---\n" + "\n".join(text) if text else f"\n(the sshd log {log} is empty)"
    )


def _run(
    args: Sequence[str],
    *,
    what: str,
    host: SshHost | None = None,
    input: str | None = None,
    ok: Collection[int] = (0,),
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` (a list, never a shell string); raise :class:`SshHostError` naming ``what`` on failure."""
    tail = _tail(host.log) if host is not None else ""
    try:
        proc = subprocess.run(
            list(args), input=input, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SshHostError(f"{what}: `{shlex.join(args)}` could not run: {e}{tail}") from e
    if proc.returncode not in ok:
        output = (proc.stderr.strip() or proc.stdout.strip())[-1500:]
        raise SshHostError(f"{what}: `{shlex.join(args)}` exited with {proc.returncode}: {output}{tail}")
    return proc
