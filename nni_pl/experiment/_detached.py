"""A manager in another process: starting a detached one (``launch --detach``); ``nni-pl stop`` is in :mod:`.control`.

A detached manager is ``python -m nni_pl.experiment._daemon``; its stdout/stderr go to the experiment's
``log/manager.out`` (owner-only; the dashboard token is never written there). :func:`spawn` returns once the
manager is up (its pid in the store, its dashboard bound) or raises with the reason it gave.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nni_pl.errors import NniPlError
from nni_pl.experiment import dashboard
from nni_pl.experiment import store as st
from nni_pl.experiment._setup import private_fd

if TYPE_CHECKING:
    import subprocess

__all__ = ["Started", "spawn"]

START_TIMEOUT = 60.0  # a detached manager must be up within this


@dataclass(kw_only=True)
class Started:
    """A detached manager that came up: its process and what its dashboard file said (``webui`` is ``None``
    without a dashboard).

    Example:
        >>> Started(pid=123, webui=None).pid
        123
    """

    pid: int
    webui: dict[str, Any] | None


def spawn(
    store: st.Store,
    experiment_id: str,
    directory: Path,
    *,
    requested_at: float,
    port: int | None,
    host: str,
    token: str | None,
    section: Any = None,
) -> Started:
    """Start the manager of ``experiment_id`` as a background process; return once it is up.

    ``section`` is the experiment's training-service section: if it has ``secret_environment()`` (a remote
    section with literal passwords, which the store holds as ``***``), those variables are given to this child
    only, through its environment, so that it can read its config back.

    Raises:
        NniPlError: it exited or hung at start; the message is its reason (the process is ended).
    """
    log = directory / "log" / "manager.out"
    env = dict(os.environ)
    argv = [sys.executable, "-m", "nni_pl.experiment._daemon", store.url, experiment_id]
    argv += ["--requested-at", repr(requested_at)]
    if port is not None:
        argv += ["--port", str(port), "--host", host]
        if token is not None:
            env["NNI_PL_WEBUI_TOKEN"] = token  # not on the command line, where `ps` shows it
    secrets = getattr(section, "secret_environment", None)
    if callable(secrets):
        env.update(secrets())
    import subprocess  # here: a launch that runs its manager in the foreground does without it

    dashboard.forget(directory)
    fd = private_fd(log)
    try:
        offset = os.fstat(fd).st_size
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    finally:
        os.close(fd)
    try:
        return _wait_until_up(proc, store, experiment_id, directory, log, offset, webui=port is not None)
    except BaseException:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise


def _wait_until_up(
    proc: subprocess.Popen[bytes],
    store: st.Store,
    experiment_id: str,
    directory: Path,
    log: Path,
    offset: int,
    *,
    webui: bool,
) -> Started:
    deadline = time.time() + START_TIMEOUT
    while True:
        code = proc.poll()
        exp = store.get_experiment(experiment_id)
        if code is None and exp.manager_pid == proc.pid:
            info = dashboard.read(directory) if webui else None
            if not webui or (info is not None and info.get("pid") == proc.pid):
                return Started(pid=proc.pid, webui=info)
        if code == 0:  # it ended already (a tiny experiment, or a stop that came first): its status says how
            return Started(pid=proc.pid, webui=None)
        if code is not None:
            raise NniPlError(f"the experiment manager did not start: {_start_failure(log, offset, exp)}")
        if time.time() > deadline:
            raise NniPlError(f"the experiment manager did not start within {START_TIMEOUT:.0f} s; see {log}")
        time.sleep(0.05)


def _start_failure(log: Path, offset: int, exp: st.ExperimentRow) -> str:
    """Why a detached manager ended at start: the manager's own message, else the last line it printed."""
    if exp.status == st.EXP_ERROR and exp.message:
        return exp.message
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            text = f.read()[-8000:].decode("utf-8", errors="replace")
    except OSError:
        text = ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return f"it exited without a word; see {log}"
    last = lines[-1].removeprefix("error: ")
    return last if len(lines) == 1 else f"{last} (details in {log})"
