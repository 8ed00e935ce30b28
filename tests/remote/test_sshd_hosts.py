"""The SSH hosts of ``nni_pl.testing.sshd`` are real OpenSSH servers: log in with paramiko and break them."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nni_pl.testing import sshd
from nni_pl.testing.sshd import SshHost, SshHostError, start_hosts, stop_hosts

paramiko = pytest.importorskip("paramiko")


def connect(
    host: SshHost, known_hosts: Path | None = None, timeout: float = 5.0, **auth: object
) -> paramiko.SSHClient:
    """A client that trusts only the keys in ``known_hosts`` (default: the host's own file)."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts or host.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if not auth:
        auth = {"key_filename": str(host.key_file)}
    try:
        client.connect(
            host.address,
            host.port,
            host.user,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            look_for_keys=False,
            allow_agent=False,
            **auth,
        )
    except BaseException:
        client.close()
        raise
    return client


def run(client: paramiko.SSHClient, command: str) -> str:
    _, stdout, stderr = client.exec_command(command, timeout=30)
    out = stdout.read().decode()
    assert stdout.channel.recv_exit_status() == 0, stderr.read().decode()
    return out


def sshd_tree(pid: int, *, only_sshd: bool = True) -> list[int]:
    """``pid`` and its (``sshd``) descendants (the per-connection processes, the commands), from /proc."""
    parents: dict[int, tuple[int, str]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                data = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            comm, rest = data[data.index("(") + 1 : data.rindex(")")], data[data.rindex(")") + 2 :].split()
            if rest[0] != "Z":
                parents[int(name)] = (int(rest[1]), comm)
    tree = [pid]
    for _ in range(5):
        tree += [
            p
            for p, (ppid, comm) in parents.items()
            if ppid in tree and p not in tree and (comm.startswith("sshd") or not only_sshd)
        ]
    return tree


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_hosts_accept_the_plain_key(ssh_hosts: list[SshHost]) -> None:
    for host in ssh_hosts:
        with connect(host, key_filename=str(host.key_file)) as client:
            assert run(client, "echo ok") == "ok\n"


def test_hosts_accept_the_encrypted_key_with_its_passphrase(ssh_hosts: list[SshHost]) -> None:
    for host in ssh_hosts:
        with connect(host, key_filename=str(host.encrypted_key_file), passphrase=host.passphrase) as client:
            assert run(client, "echo ok") == "ok\n"
        with pytest.raises(paramiko.SSHException):  # without the passphrase the key cannot be loaded
            connect(host, key_filename=str(host.encrypted_key_file))


def test_hosts_accept_the_password_and_reject_a_wrong_one(ssh_hosts: list[SshHost]) -> None:
    if ssh_hosts[0].password is None:
        pytest.skip(
            "loopback mode: no account of the hosts' own, so no password logins (needs root and ip netns)"
        )
    for host in ssh_hosts:
        with connect(host, password=host.password) as client:
            assert run(client, "echo ok") == "ok\n"
        with pytest.raises(paramiko.AuthenticationException):
            connect(host, password=host.password + "-wrong")


def test_known_hosts_pins_each_hosts_own_key(ssh_hosts: list[SshHost], tmp_path: Path) -> None:
    first, second = ssh_hosts
    assert first.known_hosts.read_text() == first.known_hosts_line + "\n"
    assert first.host_key_fingerprint.startswith("SHA256:") and first.host_key != second.host_key
    with connect(first) as client:
        key = client.get_transport().get_remote_server_key()
        assert f"{key.get_name()} {key.get_base64()}" == first.host_key
    # the other host's key under this host's name: a man in the middle
    impostor = tmp_path / "known_hosts"
    impostor.write_text(sshd.known_hosts_entry(first.address, first.port, second.host_key) + "\n")
    with pytest.raises(paramiko.BadHostKeyException):
        connect(first, known_hosts=impostor)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        connect(first, known_hosts=empty)


def test_commands_run_as_the_hosts_user_in_its_home(ssh_hosts: list[SshHost]) -> None:
    for host in ssh_hosts:
        with connect(host) as client:
            assert run(client, "id -un; echo $HOME").split() == [host.user, str(host.home)]


def test_the_hosts_python_imports_nni_pl(ssh_hosts: list[SshHost]) -> None:
    for host in ssh_hosts:
        with connect(host) as client:
            out = run(
                client,
                f"{host.python_path}/python -c 'import nni_pl, sys; print(nni_pl.__name__, sys.prefix)'",
            )
            assert out.split() == ["nni_pl", sys.prefix]


def test_hosts_have_their_own_addresses_users_and_logs(ssh_hosts: list[SshHost]) -> None:
    first, second = ssh_hosts
    assert (first.address, first.port) != (second.address, second.port)
    assert first.log != second.log and first.key_file != second.key_file
    assert "Server listening on" in first.log.read_text()
    if first.mode == "netns":
        assert first.address != second.address and first.port == second.port == 22
        assert first.user != second.user and first.namespace != second.namespace


def test_cut_makes_connects_time_out_and_restore_brings_the_host_back(fresh_ssh_hosts: list[SshHost]) -> None:
    host, other = fresh_ssh_hosts
    host.cut()
    assert host.is_cut and host.alive()
    start = time.monotonic()
    # netns: the SYN is dropped, so the TCP connect times out; loopback: sshd is stopped, the banner never comes
    expected = TimeoutError if host.mode == "netns" else paramiko.SSHException
    with pytest.raises(expected):
        connect(host, timeout=1.0)
    assert time.monotonic() - start < 3.0
    with connect(other) as client:  # the other host is unaffected
        assert run(client, "echo ok") == "ok\n"
    host.restore()
    assert not host.is_cut
    with connect(host) as client:
        assert run(client, "echo ok") == "ok\n"


def test_stop_sshd_ends_open_sessions_and_start_sshd_brings_it_back(fresh_ssh_hosts: list[SshHost]) -> None:
    host = fresh_ssh_hosts[0]
    old_pid = host.sshd_pid
    assert old_pid is not None and host.alive()
    client = connect(host)
    try:
        transport = client.get_transport()
        assert run(client, "echo ok") == "ok\n"
        tree = sshd_tree(old_pid)
        assert len(tree) > 1, "an open session has per-connection sshd processes"
        host.stop_sshd()
        assert host.sshd_pid is None and not host.alive()
        assert not any(running(p) for p in tree), "the per-connection sshd processes died with the listener"
        deadline = time.monotonic() + 5
        while transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not transport.is_active()
    finally:
        client.close()
    with pytest.raises(OSError):  # nothing listens: connection refused
        connect(host, timeout=1.0)
    host.start_sshd()
    assert host.alive() and host.sshd_pid not in (None, old_pid)
    with connect(host) as client:
        assert run(client, "echo ok") == "ok\n"


def _interpreter_dirs_state() -> list[tuple[str, int, list[str]]]:
    dirs = Path(sys.executable).resolve().parents
    return [(str(d), os.stat(d).st_mode, os.listxattr(d)) for d in [*dirs, *Path(sys.executable).parents]]


def test_stop_hosts_leaves_nothing_behind(tmp_path: Path) -> None:
    if sshd.skip_reason() is not None:
        pytest.skip(sshd.skip_reason() or "")
    before = _interpreter_dirs_state()
    hosts = start_hosts(2, base_dir=tmp_path)
    clients = [connect(h) for h in hosts]  # open sessions: per-connection sshd and a user process
    for client in clients:
        client.exec_command("sleep 600")
    time.sleep(0.2)
    pids = [p for h in hosts for p in sshd_tree(h.sshd_pid or 0, only_sshd=False)]
    assert len(pids) >= 2 * 3  # per host: the listener, the per-connection sshd, `sleep`
    stop_hosts(hosts)
    stop_hosts(hosts)  # idempotent
    for client in clients:
        client.close()
    assert not any(running(p) for p in pids)
    assert all(h.sshd_pid is None and not h.alive() for h in hosts)
    assert _interpreter_dirs_state() == before  # traverse permissions revoked, modes as they were
    if hosts[0].mode == "netns":
        namespaces = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout
        for h in hosts:
            assert h.namespace not in namespaces
            with pytest.raises(KeyError):
                pwd.getpwnam(h.user)
            assert not h.home.exists() and not h.home.parent.exists()
            assert not Path(f"/sys/class/net/nnipl{os.getpid()}v{h.name.removeprefix('host')}").exists()


def test_a_host_that_fails_to_start_says_why_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if sshd.skip_reason() is not None:
        pytest.skip(sshd.skip_reason() or "")
    write_config = sshd._write_config

    def broken_config(host: SshHost, keys_file: Path) -> None:
        write_config(host, keys_file)
        with host.config.open("a") as f:
            f.write("NoSuchOption yes\n")

    monkeypatch.setattr(sshd, "_write_config", broken_config)
    namespaces_before = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    users_before = {p.pw_name for p in pwd.getpwall()}
    with pytest.raises(
        SshHostError, match=r"(?s)exited with 255 at startup.*Bad configuration option: NoSuchOption"
    ):
        start_hosts(1, base_dir=tmp_path)
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout == namespaces_before
    assert {p.pw_name for p in pwd.getpwall()} == users_before


def test_start_hosts_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(SshHostError, match=r"`1 <= n <= 64` must hold, but got n=0"):
        start_hosts(0, base_dir=tmp_path)
    with pytest.raises(SshHostError, match=r"mode must be one of \('netns', 'loopback'\), got 'docker'"):
        start_hosts(1, base_dir=tmp_path, mode="docker")


def test_loopback_mode_hosts_run_as_the_current_user(tmp_path: Path) -> None:
    if sshd.skip_reason("loopback") is not None:
        pytest.skip(sshd.skip_reason("loopback") or "")
    with sshd.running_hosts(1, base_dir=tmp_path, mode="loopback") as (host,):
        assert host.address == "127.0.0.1" and host.port != 22 and host.password is None
        assert host.user == pwd.getpwuid(os.geteuid()).pw_name
        assert host.known_hosts_line.startswith(f"[127.0.0.1]:{host.port} ssh-ed25519 ")
        with connect(host) as client:
            assert run(client, "id -un").strip() == host.user
        host.cut()
        with pytest.raises(paramiko.SSHException):
            connect(host, timeout=1.0)
        host.restore()
        with connect(host) as client:
            assert run(client, "echo ok") == "ok\n"
        pid = host.sshd_pid
    assert pid is not None and not running(pid)
