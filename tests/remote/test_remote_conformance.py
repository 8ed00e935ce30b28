"""The remote (SSH) training service passes the training-service conformance suite on real OpenSSH hosts.

Two hosts (:mod:`nni_pl.testing.sshd`: each its own sshd, address, host key and account); trials run under the
hosts' accounts in their homes, and everything the suite checks comes back over SSH. Three variants: reuse mode
(one agent per host), one agent per trial (``reuseMode: false``), and function trials in reuse mode.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nni_pl.testing import SERVICE_TRIAL_COMMAND, TrainingServiceTestCase
from nni_pl.testing.sshd import SshHost
from nni_pl.training.remote import HOST_FILE, RemoteTrainingService
from nni_pl.training.remote_config import RemoteMachineConfig
from nni_pl.trial import protocol


def machines(hosts: list[SshHost]) -> list[RemoteMachineConfig]:
    return [
        RemoteMachineConfig(
            host=h.address, port=h.port, user=h.user, ssh_key_file=h.key_file, python_path=h.python_path
        )
        for h in hosts
    ]


def known_hosts(hosts: list[SshHost], folder: Path) -> Path:
    path = folder / "known_hosts"
    path.write_text("".join(h.known_hosts_line + "\n" for h in hosts), encoding="utf-8")
    return path


def remote_folder(trial_dir: Path) -> Path:
    """The trial's folder on its host: the test hosts share this machine's file system, so it can be read here."""
    try:
        record = json.loads((trial_dir / protocol.CONTROL_DIR / HOST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return trial_dir
    return Path(record["dir"])


class _RemoteSuite(TrainingServiceTestCase):
    __test__ = False
    reuse = True
    function: str | None = None
    startup_timeout = 60.0

    @pytest.fixture(autouse=True)
    def _hosts(self, ssh_hosts: list[SshHost]) -> None:
        self.hosts = ssh_hosts

    def make_service(self, *, directory: Path, concurrency: int) -> RemoteTrainingService:
        code = directory / "code"
        code.mkdir(parents=True, exist_ok=True)
        (code / "README").write_text("the conformance trial needs no code\n", encoding="utf-8")
        return RemoteTrainingService(
            machines=machines(self.hosts),
            command=None if self.function else SERVICE_TRIAL_COMMAND,
            function=self.function,
            code_directory=code,
            concurrency=concurrency,
            reuse=self.reuse,
            known_hosts=known_hosts(self.hosts, directory),
        )

    def trial_output_dir(self, trial_dir: Path) -> Path:
        return remote_folder(trial_dir)


class TestRemoteReuse(_RemoteSuite):
    __test__ = True


class TestRemoteOneAgentPerTrial(_RemoteSuite):
    __test__ = True
    reuse = False


class TestRemoteFunctionTrials(_RemoteSuite):
    __test__ = True
    function = "nni_pl.testing._service_trial:run"
