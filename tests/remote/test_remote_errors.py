"""Bad input for the remote platform gets one line that names the field and the fix, never a secret; host keys are
checked; user values never reach a remote shell unquoted. All against real OpenSSH hosts."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from nni_pl.cli.main import main
from nni_pl.errors import NniPlError
from nni_pl.testing.sshd import SshHost
from nni_pl.training.remote import RemoteTrainingService
from nni_pl.training.remote_config import RemoteMachineConfig

from .test_remote_conformance import known_hosts


def machine(h: SshHost, **changes: Any) -> RemoteMachineConfig:
    args: dict[str, Any] = {
        "host": h.address, "port": h.port, "user": h.user, "ssh_key_file": h.key_file, "python_path": h.python_path,
    }  # fmt: skip
    args.update(changes)
    return RemoteMachineConfig(**args)


def build(
    tmp_path: Path, machines: list[RemoteMachineConfig], hosts: list[SshHost], **kwargs: Any
) -> RemoteTrainingService:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "trial.py").write_text("print('hi')\n")
    args: dict[str, Any] = {
        "machines": machines,
        "command": "python trial.py",
        "code_directory": code,
        "known_hosts": known_hosts(hosts, tmp_path),
        "connect_timeout": 2.0,
    }
    args.update(kwargs)
    return RemoteTrainingService(**args)


def refused(tmp_path: Path, machines: list[RemoteMachineConfig], hosts: list[SshHost], **kwargs: Any) -> str:
    with pytest.raises(NniPlError) as info:
        build(tmp_path, machines, hosts, **kwargs).shutdown()
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def test_unreachable_host_and_wrong_port(ssh_hosts, tmp_path) -> None:
    h = ssh_hosts[0]
    message = refused(tmp_path, [machine(h, port=2)], ssh_hosts)
    assert "machineList[0].port" in message and "connection refused" in message, message
    h.cut()
    message = refused(tmp_path, [machine(ssh_hosts[1]), machine(h)], ssh_hosts)
    assert (
        "machineList[1].host" in message and h.address in message and "did not answer within 2 s" in message
    )


def test_authentication_failures_say_which_credential_failed_never_the_secret(ssh_hosts, tmp_path) -> None:
    h = ssh_hosts[0]
    if h.password is None:
        pytest.skip("password logins need netns hosts with accounts of their own")
    secret = "wrong-" + uuid.uuid4().hex
    message = refused(tmp_path, [machine(h, password=secret, ssh_key_file=None)], ssh_hosts)
    assert (
        "machineList[0].password" in message and "refused the password" in message and secret not in message
    )
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    message = refused(tmp_path, [machine(h, ssh_key_file=stranger)], ssh_hosts)
    assert "machineList[0].sshKeyFile" in message and str(stranger) in message, message
    message = refused(tmp_path, [machine(h, ssh_key_file=h.encrypted_key_file)], ssh_hosts)
    assert "machineList[0].sshPassphrase" in message, message
    wrong = "not-" + h.passphrase
    message = refused(
        tmp_path, [machine(h, ssh_key_file=h.encrypted_key_file, ssh_passphrase=wrong)], ssh_hosts
    )
    assert "machineList[0].sshPassphrase" in message and wrong not in message, message
    # the right ones work: password, and the encrypted key with its passphrase
    build(tmp_path, [machine(h, password=h.password, ssh_key_file=None)], ssh_hosts).shutdown()
    build(
        tmp_path, [machine(h, ssh_key_file=h.encrypted_key_file, ssh_passphrase=h.passphrase)], ssh_hosts
    ).shutdown()


def test_python_missing_nni_pl_missing_and_another_major_version(ssh_hosts, tmp_path, monkeypatch) -> None:
    h = ssh_hosts[0]
    message = refused(tmp_path, [machine(h, python_path="/nonexistent/bin")], ssh_hosts)
    assert "machineList[0].pythonPath" in message and "no python" in message and "/nonexistent/bin" in message
    bare = tempfile.mkdtemp(prefix="nni-pl-bare-python-")  # a Python without nni-pl
    os.chmod(bare, 0o755)
    os.symlink("/usr/bin/python3", os.path.join(bare, "python"))
    message = refused(tmp_path, [machine(h, python_path=bare)], ssh_hosts)
    assert "nni-pl is not installed" in message and "pip install 'nni-pl==" in message, message
    import nni_pl

    monkeypatch.setattr(nni_pl, "__version__", "99.0.0")
    message = refused(tmp_path, [machine(h)], ssh_hosts)
    assert "major versions differ" in message and "pip install 'nni-pl==99.0.0'" in message, message


def test_gpu_indices_the_host_does_not_have(ssh_hosts, tmp_path) -> None:
    """No GPU here: a fake ``nvidia-smi`` on the host's PATH (in its pythonPath) says it has GPUs 0 and 1."""
    h = ssh_hosts[0]
    env = tempfile.mkdtemp(prefix="nni-pl-fake-gpus-")
    os.chmod(env, 0o755)
    wrapper = (
        Path(env) / "python"
    )  # a wrapper, not a link: a venv's Python finds its venv from where it is called
    wrapper.write_text(f'#!/bin/sh\nexec {os.path.join(h.python_path, "python")} "$@"\n')
    wrapper.chmod(0o755)
    smi = Path(env) / "nvidia-smi"
    smi.write_text(
        '#!/bin/sh\ncase "$1" in\n'
        '  --query-gpu=index) printf "0\\n1\\n";;\n'
        '  --query-gpu=index,uuid) printf "0, GPU-aaa\\n1, GPU-bbb\\n";;\n'
        '  --query-compute-apps=gpu_uuid) printf "GPU-aaa\\n";;\n'  # someone else's process on GPU 0
        "esac\n"
    )
    smi.chmod(0o755)
    message = refused(tmp_path, [machine(h, python_path=env, gpu_indices=[1, 5])], ssh_hosts, gpu_number=1)
    assert "machineList[0].gpuIndices" in message and "[5] not on" in message and "[0, 1]" in message, message
    svc = build(tmp_path, [machine(h, python_path=env, gpu_indices=[1])], ssh_hosts, gpu_number=1)
    try:
        assert svc.hosts[0].gpus is not None and svc.hosts[0].gpus.indices == [1]
    finally:
        svc.shutdown()
    # GPUs found by nvidia-smi over SSH; useActiveGpu: false skips GPU 0, busy with another user's process
    svc = build(tmp_path, [machine(h, python_path=env)], ssh_hosts, gpu_number=1, concurrency=2)
    try:
        gpus = svc.hosts[0].gpus
        assert gpus is not None and gpus.indices == [0, 1]
        assert gpus.acquire("a") == [1] and gpus.acquire("b") is None
    finally:
        svc.shutdown()
    svc = build(tmp_path, [machine(h, python_path=env, use_active_gpu=True)], ssh_hosts, gpu_number=1)
    try:
        assert svc.hosts[0].gpus.acquire("a") == [0]
    finally:
        svc.shutdown()


def test_code_directory_over_the_limits(ssh_hosts, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NNI_PL_MAX_CODE_FILES", "2")
    code = tmp_path / "code"
    code.mkdir()
    for i in range(3):
        (code / f"f{i}.py").write_text("x = 1\n")
    message = refused(tmp_path, [machine(ssh_hosts[0])], ssh_hosts)
    assert "trialCodeDirectory" in message and str(code) in message and ".nniignore" in message, message


def test_host_keys_are_checked_and_accept_new_records_a_first_key(ssh_hosts, tmp_path) -> None:
    h0, h1 = ssh_hosts
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    message = refused(tmp_path, [machine(h0)], ssh_hosts, known_hosts=empty)
    assert "machineList[0].host" in message and "strictHostKeyChecking: accept-new" in message, message
    # accept-new: the first contact records the key; then strict checking passes
    build(tmp_path, [machine(h0)], ssh_hosts, known_hosts=empty, accept_new_host_keys=True).shutdown()
    assert h0.host_key.split()[1] in empty.read_text()
    build(tmp_path, [machine(h0)], ssh_hosts, known_hosts=empty).shutdown()
    # a changed key is refused, even with accept-new
    forged = tmp_path / "forged_known_hosts"
    forged.write_text(
        h1.known_hosts_line.replace(h1.known_hosts_line.split()[0], h0.known_hosts_line.split()[0]) + "\n"
    )
    for accept in (False, True):
        message = refused(tmp_path, [machine(h0)], ssh_hosts, known_hosts=forged, accept_new_host_keys=accept)
        assert "host key" in message and "changed" in message, message


def test_user_values_never_reach_a_remote_shell_unquoted(ssh_hosts, tmp_path) -> None:
    marker = Path(tempfile.gettempdir()) / f"nni-pl-injected-{uuid.uuid4().hex}"
    for evil in (
        f"/x; touch {marker}",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"/x' ; touch {marker}; '",
    ):
        refused(tmp_path, [machine(ssh_hosts[0], python_path=evil)], ssh_hosts)
        svc = build(tmp_path, [machine(ssh_hosts[0])], ssh_hosts, remote_directory=f"~/nni pl {evil}")
        svc.shutdown()
    assert not marker.exists()


def test_launch_with_an_unreachable_host_prints_one_line_and_creates_nothing(
    ssh_hosts, tmp_path, capsys
) -> None:
    h = ssh_hosts[0]
    h.cut()
    (tmp_path / "trial.py").write_text("print(1)\n")
    cfg = {
        "searchSpace": {"x": {"_type": "choice", "_value": [1]}},
        "trialCommand": "python trial.py",
        "trialConcurrency": 1,
        "trialCodeDirectory": str(tmp_path),
        "experimentWorkingDirectory": str(tmp_path / "exps"),
        "trainingService": {
            "platform": "remote",
            "knownHostsFile": str(known_hosts(ssh_hosts, tmp_path)),
            "machineList": [
                {
                    "host": h.address,
                    "user": h.user,
                    "sshKeyFile": str(h.key_file),
                    "pythonPath": h.python_path,
                }
            ],
        },
    }
    (tmp_path / "config.yml").write_text(yaml.safe_dump(cfg))
    assert main(["launch", str(tmp_path / "config.yml"), "--no-display"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(r"machineList\[0\]\.host.*did not answer", err), err
    assert not (tmp_path / "exps").exists() or not any((tmp_path / "exps").iterdir())
