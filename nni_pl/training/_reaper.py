"""The local training service's reaper: it starts the service's trials and records how each one ended.

:class:`~nni_pl.training.local.LocalTrainingService` runs this file as ``python -I -S _reaper.py`` (standard
library only: it imports nothing of nni_pl, and starts in ~20 ms) in a session of its own. Every trial of the
service is the reaper's child, in a session of its own too. The reaper outlives a manager that crashes or is
killed: it still writes each trial's exit code when the trial ends, and it exits once its manager is gone and
its last trial has ended. One reaper per service replaces a shell per trial (``sh run.sh`` waiting for the
command to write its exit code), which put a shell start on every trial's way in.

Messages are JSON lines, each written with one ``write()``. The manager writes to the reaper's stdin::

    {"op": "spawn", "id": "<trial id>", "argv": [...], "cwd": "...", "env": {name: value}, "unset": [names],
     "stdout": path, "stderr": path, "pidfile": path, "exitfile": path}

``env`` and ``unset`` are changes to the environment the reaper was started with. The reaper opens ``stdout``
and ``stderr`` for appending, starts ``argv`` there, writes ``"<pid> <start time>"`` to ``pidfile`` and
answers on its stdout::

    {"op": "started", "id": "...", "pid": 1234, "start": 5678.0}    (pid null: the command could not start)
    {"op": "ended", "id": "...", "pid": 1234, "code": 0, "time": 1733350000.1}

When a trial ends the reaper answers first (the manager may be waiting) and then writes ``"<code> <time>"`` to
``exitfile``. A trial killed by signal ``n`` ends with code ``128 + n``, as a shell reports it; a command that
cannot be started ends with 127 (not found) or 126 (not executable), and says why in its ``stderr`` file.

The manager is gone when the reaper's stdin reaches its end or the reaper's parent changes.

Example:
    >>> _exit_code(0), _exit_code(3 << 8), _exit_code(15)   # raw wait statuses: 0, exit(3), killed by SIGTERM
    (0, 3, 143)
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

_OPEN_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND
_CHECK_PARENT_EVERY = 2.0  # seconds between checks that the manager still lives (when its pipe stays open)


def _exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + the signal that killed the process."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _start_time(pid: int) -> float | None:
    """The kernel's start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return float(data[data.rfind(b")") + 2 :].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


class Reaper:
    """Starts trials on request and reaps them; see the module docstring for the messages."""

    def __init__(self) -> None:
        # pid -> (the process, its trial id, its exit-code file)
        self.children: dict[int, tuple[subprocess.Popen[bytes], str, str]] = {}
        self.manager_gone = False
        self.parent = os.getppid()
        self.buffer = b""

    def answer(self, message: dict[str, Any]) -> None:
        if self.manager_gone:
            return
        try:
            os.write(1, (json.dumps(message) + "\n").encode("utf-8"))
        except OSError:  # the manager is gone: keep recording exit codes
            self.manager_gone = True

    def spawn(self, msg: dict[str, Any]) -> None:
        env = dict(os.environ)
        for name in msg.get("unset", ()):
            env.pop(name, None)
        env.update(msg.get("env", {}))
        argv = list(msg["argv"])
        out = os.open(msg["stdout"], _OPEN_APPEND, 0o644)
        err = os.open(msg["stderr"], _OPEN_APPEND, 0o644)
        try:
            try:
                proc = self._popen(argv, msg["cwd"], env, out, err)
            except OSError as e:
                # the shell's codes for "not found" and "cannot run"
                code = 127 if e.errno == errno.ENOENT else 126
                os.write(err, f"nni-pl: cannot start the trial command {argv[0]!r}: {e.strerror}\n".encode())
                self.answer({"op": "started", "id": msg["id"], "pid": None, "start": None})
                self.answer({"op": "ended", "id": msg["id"], "pid": None, "code": code, "time": time.time()})
                _write(msg["exitfile"], f"{code} {time.time()!r}\n")
                return
        finally:
            os.close(out)
            os.close(err)
        self.children[proc.pid] = (proc, msg["id"], msg["exitfile"])
        start = _start_time(proc.pid)
        _write(msg["pidfile"], f"{proc.pid} {start if start is not None else ''}\n")
        self.answer({"op": "started", "id": msg["id"], "pid": proc.pid, "start": start})

    @staticmethod
    def _popen(argv: list[str], cwd: str, env: dict[str, str], out: int, err: int) -> subprocess.Popen[bytes]:
        kwargs: dict[str, Any] = {
            "cwd": cwd,
            "env": env,
            "stdin": subprocess.DEVNULL,
            "stdout": out,
            "stderr": err,
            "start_new_session": True,  # its own process group: the manager signals the whole tree
        }
        try:
            return subprocess.Popen(argv, **kwargs)
        except OSError as e:
            if e.errno != errno.ENOEXEC:
                raise
            return subprocess.Popen(["/bin/sh", *argv], **kwargs)  # a script without #!: as a shell runs it

    def reap(self) -> None:
        for pid, (proc, trial_id, exitfile) in list(self.children.items()):
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                got, status = pid, 0
            if got == 0:
                continue
            proc.returncode = _exit_code(status)  # reaped here: the Popen object must not wait again
            del self.children[pid]
            when = time.time()
            self.answer({"op": "ended", "id": trial_id, "pid": pid, "code": proc.returncode, "time": when})
            try:
                _write(exitfile, f"{proc.returncode} {when!r}\n")
            except OSError:  # the trial's folder was removed meanwhile
                pass

    def handle(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line.strip():
                msg = json.loads(line)
                if msg.get("op") == "spawn":
                    self.spawn(msg)

    def run(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD writes to the wake-up pipe
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            watched = [wake_r] if self.manager_gone else [0, wake_r]
            ready, _, _ = select.select(watched, [], [], _CHECK_PARENT_EVERY)
            if wake_r in ready:
                os.read(wake_r, 4096)
            if 0 in ready:
                data = os.read(0, 1 << 16)
                if data:
                    self.handle(data)
                else:
                    self.manager_gone = True
            self.reap()
            if not self.manager_gone and os.getppid() != self.parent:
                self.manager_gone = True  # the manager died while something else holds its end of our stdin
            if self.manager_gone and not self.children:
                return


if __name__ == "__main__":
    Reaper().run()
    sys.exit(0)
