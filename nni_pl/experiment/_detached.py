"""Managers in other processes: starting a detached one (``launch --detach``) and stopping any (``nni-pl stop``).

A detached manager is ``python -m nni_pl.experiment._daemon``; its stdout/stderr go to the experiment's
``log/manager.out`` (owner-only; the dashboard token is never written there). :func:`spawn` returns once the
manager is up (its pid in the store, its dashboard bound) or raises with the reason it gave.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nni_pl.errors import NniPlError
from nni_pl.experiment import _locate
from nni_pl.experiment import store as st
from nni_pl.experiment._setup import private_fd

__all__ = ["Started", "spawn", "stop_experiment"]

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
) -> Started:
    """Start the manager of ``experiment_id`` as a background process; return once it is up.

    Raises:
        NniPlError: it exited or hung at start; the message is its reason (the process is ended).
    """
    from nni_pl.webui import server as webui_server

    log = directory / "log" / "manager.out"
    env = dict(os.environ)
    argv = [sys.executable, "-m", "nni_pl.experiment._daemon", store.url, experiment_id]
    argv += ["--requested-at", repr(requested_at)]
    if port is not None:
        argv += ["--port", str(port), "--host", host]
        if token is not None:
            env["NNI_PL_WEBUI_TOKEN"] = token  # not on the command line, where `ps` shows it
    webui_server.remove_url_file(directory)
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
    from nni_pl.webui import server as webui_server

    deadline = time.time() + START_TIMEOUT
    while True:
        code = proc.poll()
        exp = store.get_experiment(experiment_id)
        if code is None and exp.manager_pid == proc.pid:
            info = webui_server.read_url_file(directory) if webui else None
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


def stop_experiment(store: st.Store, experiment_id: str, *, timeout: float = 60.0) -> bool:
    """Stop an experiment's manager (SIGTERM, it stops gracefully); returns whether one was running.

    Without a manager the experiment is marked STOPPED and the trials it left running are terminated. That
    record is a stop request too: a manager starting at this moment (before it wrote its pid) reads it and
    stops; one that wrote its pid meanwhile is signalled.
    """
    from nni_pl.training.local import _alive

    exp = store.get_experiment(experiment_id)
    if _signal_manager(store, exp, timeout):
        return True
    # no manager: end what it left running; resume will record them
    for t in store.list_trials(experiment_id, statuses=[st.RUNNING]):
        if t.pid is not None and _alive(t.pid, t.pid_started_at):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(t.pid, signal.SIGTERM)
    if exp.status == st.EXP_RUNNING:
        store.update_experiment(
            experiment_id,
            status=st.EXP_STOPPED,
            message="stopped while no manager was running",
            ended_at=time.time(),
        )
        if _signal_manager(store, store.get_experiment(experiment_id), timeout):
            return True  # a manager wrote its pid meanwhile; it may have read the store before the record
    return False


def _signal_manager(store: st.Store, exp: st.ExperimentRow, timeout: float) -> bool:
    """SIGTERM the experiment's manager on this host and wait until it has ended the experiment (it clears its
    pid then; a manager running in this very process does not exit)."""
    from nni_pl.training.local import _alive

    pid = exp.manager_pid
    if pid is None or exp.manager_host != socket.gethostname() or not _locate.manager_alive(exp):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.time() + timeout
    while time.time() < deadline and _alive(pid, exp.manager_started_at):
        if store.get_experiment(exp.id).manager_pid != pid:
            break
        time.sleep(0.1)
    return True
