"""Real SSH hosts for the remote (SSH) training service's tests (:mod:`nni_pl.testing.sshd`).

``ssh_hosts`` is two hosts shared by the whole session; after every test that used them, a cut host is
restored and a stopped ``sshd`` is started again, so a test may break them. ``fresh_ssh_hosts`` is two hosts
of the test's own (~0.5 s each), for tests whose damage should not reach others. Where real hosts cannot
start (no ``sshd``), the tests are skipped locally and fail under ``CI=true``, where ``.ci/run`` installs
``openssh-server``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from nni_pl.testing.sshd import SshHost, skip_reason, start_hosts, stop_hosts


def _unavailable(reason: str) -> NoReturn:
    """Skip locally; fail on CI, where sshd is installed and these tests must run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"SSH host tests cannot run on CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _start(base_dir: Path) -> list[SshHost]:
    mode = (
        os.environ.get("NNI_PL_SSH_HOSTS_MODE") or None
    )  # "loopback" runs the fallback where netns works too
    reason = skip_reason(mode)
    if reason is not None:
        _unavailable(reason)
    return start_hosts(2, base_dir=base_dir, mode=mode)


@pytest.fixture(scope="session")
def ssh_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SshHost]]:
    """Two running SSH hosts shared by the session (healed after each test that used them)."""
    hosts = _start(tmp_path_factory.mktemp("ssh-hosts"))
    yield hosts
    stop_hosts(hosts)


@pytest.fixture
def fresh_ssh_hosts(tmp_path: Path) -> Iterator[list[SshHost]]:
    """Two running SSH hosts of this test's own, stopped after it."""
    hosts = _start(tmp_path / "ssh-hosts")
    yield hosts
    stop_hosts(hosts)


@pytest.fixture(autouse=True)
def _heal_shared_hosts(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "ssh_hosts" in request.fixturenames:
        for host in request.getfixturevalue("ssh_hosts"):
            host.restore()
            host.start_sshd()  # no-op when alive
