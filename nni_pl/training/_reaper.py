"""The local training service's reaper: it starts the service's trials and records how each one ended.

:class:`~nni_pl.training.local.LocalTrainingService` forks it, or runs this file as
``python -I -S _reaper.py SIGNALS`` where forking is unsafe (it imports nothing of nni_pl and only built-in
modules, so it is up in ~10 ms); either way in a session of its own. Every trial of the service is the
reaper's child, in a session of its own too. The reaper outlives a manager that crashes or is killed: it still
writes each trial's exit code when the trial ends, and it exits once its manager is gone and its last trial has
ended. One reaper per service replaces a shell per trial (``sh run.sh`` waiting for the command to write its
exit code), which put a shell start on every trial's way in.

Messages are dicts, each sent as a 4-byte little-endian length and the dict in :mod:`marshal` format (both
sides run the same interpreter). The manager writes to the reaper's stdin::

    {"op": "spawn", "id": "<trial id>", "argv": [...], "cwd": "...", "env": {name: value},
     "stdout": path, "stderr": path, "pidfile": path, "exitfile": path, "sync": [path, ...]}

``env`` is added to the environment the reaper was started with. The reaper opens ``stdout``
and ``stderr`` for appending, starts ``argv`` in ``cwd`` (a name without ``/`` is looked up in the trial's
``PATH``) with the signals named on its command line reset to their defaults, writes ``"<pid> <start time>"``
to ``pidfile`` and answers on its stdout::

    {"op": "started", "id": "...", "pid": 1234, "start": 5678.0}    (pid None: the command could not start)
    {"op": "ended", "id": "...", "pid": 1234, "code": 0, "time": 1733350000.1}

When a trial ends the reaper appends ``"<code> <time>"`` to ``pidfile`` as its second line (to ``exitfile`` if
the pid file is not there, and for a trial that could not start) and then answers: one file fewer to create per
trial than a file of its own, which costs 15-250 us of CPU on ext4 without a journal. The files named in
``sync`` (optional) are then fsynced, those that exist: together with those of the trials that ended meanwhile,
once the first of them has waited :data:`SYNC_GATHER` seconds and a wait for work found none, and at the latest
:data:`SYNC_LATEST` seconds after the first of them waited. The trial's reports reach the disk after the trial,
not on its time; no disk write holds up the next trial's start (the manager asks for it within a millisecond
or two of the answer); and short trials share their fsyncs' writes of the folders above them (ext4 writes a
new file's new parent folders with its fsync), which roughly halves what the fsyncs cost per trial. The reaper
exits only once they are synced. A trial killed by signal ``n`` ends with code ``128 + n``, as a shell reports
it; a command that cannot be started ends with 127 (not found) or 126 (not executable), and says why in its
``stderr`` file.

The manager is gone when the reaper's stdin reaches its end or the reaper's parent changes.

Example:
    >>> _exit_code(0), _exit_code(3 << 8), _exit_code(15)   # raw wait statuses: 0, exit(3), killed by SIGTERM
    (0, 3, 143)
    >>> decode(bytearray(encode({"op": "started", "pid": 7}) + encode({"op": "ended"}) + b"\\x05"))
    ([{'op': 'started', 'pid': 7}, {'op': 'ended'}], bytearray(b'\\x05'))
"""

from __future__ import annotations

import errno
import marshal
import os
import select
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # no typing import at run time: it would add ~4 ms to the reaper's start
    from typing import Any

_OPEN_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND
_OPEN_EXISTING_APPEND = os.O_WRONLY | os.O_APPEND
_CHECK_EVERY = 2.0  # seconds between checks that the manager still lives (when its pipe stays open)
_POLL_WITHOUT_PIDFD = 0.05  # seconds between looks at the children where there are no pidfds
# seconds the first file waiting for an fsync waits for others' before a quiet moment syncs them all
SYNC_GATHER = 0.2
SYNC_LATEST = 1.0  # seconds: no file waits longer than this for its fsync, however busy the reaper is


def encode(message: dict[str, Any]) -> bytes:
    """One message as it goes down the pipe."""
    data = marshal.dumps(message)
    return len(data).to_bytes(4, "little") + data


def decode(buffer: bytearray) -> tuple[list[dict[str, Any]], bytearray]:
    """The complete messages at the start of ``buffer``, and what is left of it."""
    messages = []
    start = 0
    while len(buffer) - start >= 4:
        size = int.from_bytes(buffer[start : start + 4], "little")
        if len(buffer) - start - 4 < size:
            break
        messages.append(marshal.loads(bytes(buffer[start + 4 : start + 4 + size])))
        start += 4 + size
    return messages, buffer[start:]


def _exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + the signal that killed the process."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _start_time(pid: int) -> float | None:
    """The kernel's start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22).

    :func:`nni_pl.training.process.process_start_time` again, as this file runs without nni_pl (a test checks
    that the two agree).
    """
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        try:
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
        return float(data[data.rfind(b")") + 2 :].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _end_line(code: int, when: float) -> bytes:
    """:func:`nni_pl.trial.protocol.end_line` again, as this file runs without nni_pl (a test checks that the two
    agree)."""
    return f"{code} {when!r}\n".encode("ascii")


def _write(path: str, data: bytes, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> None:
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _find(name: str, path: str) -> str:
    """``name`` looked up in ``path`` as ``execvp`` does (``shutil.which``, without importing shutil); raises
    ``OSError`` when it is not there to run."""
    if "/" in name:
        return name
    denied = None
    for folder in path.split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = candidate
    if denied is not None:
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), denied)
    raise OSError(errno.ENOENT, "command not found", name)


def _sync(path: str | bytes) -> None:
    """fsync ``path`` if it exists (a trial that reported nothing has no metrics file)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _record_end(pidfile: str, exitfile: str, line: bytes) -> None:
    """Append the end ``line`` to the trial's pid file, or write it to ``exitfile`` where that file is gone."""
    try:
        _write(pidfile, line, _OPEN_EXISTING_APPEND)
    except OSError:
        try:
            _write(exitfile, line)
        except OSError:  # the trial's folder was removed meanwhile
            pass


class _Child:
    __slots__ = ("exitfile", "pid", "pidfd", "pidfile", "sync", "trial_id")

    def __init__(self, pid: int, msg: dict[str, Any]) -> None:
        self.pid = pid
        self.trial_id: str = msg["id"]
        self.pidfile: str = msg["pidfile"]
        self.exitfile: str = msg["exitfile"]
        self.sync: tuple[str, ...] = tuple(msg.get("sync", ()))
        try:
            self.pidfd: int | None = os.pidfd_open(pid)  # readable once the child ended
        except (AttributeError, OSError):
            self.pidfd = None


class Reaper:
    """Starts trials on request and reaps them; see the module docstring for the messages.

    Args:
        reset_signals: signal numbers the trials start with at their default action (the reaper inherited
            Python's: SIGPIPE ignored, for one).
    """

    def __init__(self, reset_signals: tuple[int, ...] = ()) -> None:
        self.reset_signals = reset_signals
        self.children: dict[int, _Child] = {}
        self.manager_gone = False
        self.parent = os.getppid()
        self.buffer = bytearray()
        self.environ = dict(os.environ)  # its own never changes: copied once, not per trial
        self.unsynced: list[str] = []  # the ended trials' files that wait for their fsync
        self.unsynced_since = 0.0  # time.monotonic() when the first of them began to wait

    def answer(self, message: dict[str, Any]) -> None:
        if self.manager_gone:
            return
        try:
            os.write(1, encode(message))
        except OSError:  # the manager is gone: keep recording exit codes
            self.manager_gone = True

    def spawn(self, msg: dict[str, Any]) -> None:
        env = {**self.environ, **msg["env"]}
        argv = list(msg["argv"])
        try:
            out = os.open(msg["stdout"], _OPEN_APPEND, 0o644)
        except OSError as e:  # its folder is gone: the trial cannot start, and the reaper goes on
            self._not_started(msg, 126, None, f"cannot open {msg['stdout']}: {e.strerror}")
            return
        try:
            err = os.open(msg["stderr"], _OPEN_APPEND, 0o644)
        except OSError as e:
            os.close(out)
            self._not_started(msg, 126, None, f"cannot open {msg['stderr']}: {e.strerror}")
            return
        try:
            pid = self._start(argv, msg["cwd"], env, out, err)
        except OSError as e:
            # the shell's codes for "not found" and "cannot run"
            code = 127 if e.errno == errno.ENOENT else 126
            self._not_started(msg, code, err, f"cannot start the trial command {argv[0]!r}: {e.strerror}")
            return
        finally:
            os.close(out)
            os.close(err)
        start = _start_time(pid)
        # the manager waits for this answer: the pid file after it
        self.answer({"op": "started", "id": msg["id"], "pid": pid, "start": start})
        self.children[pid] = _Child(pid, msg)
        try:
            _write(msg["pidfile"], f"{pid} {start if start is not None else ''}\n".encode("ascii"))
        except OSError:  # the trial's folder was removed meanwhile
            pass

    def _not_started(self, msg: dict[str, Any], code: int, err: int | None, why: str) -> None:
        """Report a trial that could not start as one that ended with ``code`` (saying why in its stderr)."""
        if err is not None:
            os.write(err, f"nni-pl: {why}\n".encode())
        now = time.time()
        try:
            _write(msg["exitfile"], _end_line(code, now))
        except OSError:
            pass
        self.answer({"op": "started", "id": msg["id"], "pid": None, "start": None})
        self.answer({"op": "ended", "id": msg["id"], "pid": None, "code": code, "time": now})

    def _start(self, argv: list[str], cwd: str, env: dict[str, str], out: int, err: int) -> int:
        # posix_spawn has no working-directory action before Python 3.13; the reaper's own is free to change
        os.chdir(cwd)
        program = _find(argv[0], env.get("PATH", os.defpath))
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out, 1),
            (os.POSIX_SPAWN_DUP2, err, 2),
        ]
        options: dict[str, Any] = {"file_actions": actions, "setsid": True, "setsigdef": self.reset_signals}
        try:  # its own session and process group: the manager signals the whole tree
            return os.posix_spawn(program, argv, env, **options)
        except OSError as e:
            if e.errno != errno.ENOEXEC:
                raise
            # a script without #!: run it as execvp does, with the shell
            return os.posix_spawn("/bin/sh", ["/bin/sh", program, *argv[1:]], env, **options)

    def reap(self, ready: list[int]) -> None:
        synced: list[str] = []
        for pid, child in list(self.children.items()):
            if child.pidfd is not None and child.pidfd not in ready:
                continue
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                got, status = pid, 0
            if got == 0:
                continue
            del self.children[pid]
            if child.pidfd is not None:
                os.close(child.pidfd)
            code, when = _exit_code(status), time.time()
            # first the file: whoever learns that the trial ended finds its exit code there
            _record_end(child.pidfile, child.exitfile, _end_line(code, when))
            self.answer({"op": "ended", "id": child.trial_id, "pid": pid, "code": code, "time": when})
            synced += child.sync
        if synced:
            if not self.unsynced:
                self.unsynced_since = time.monotonic()
            self.unsynced += synced

    def sync_if_quiet(self, ready: list[int]) -> None:
        """fsync the files that wait for it if they have gathered and the last wait found nothing ``ready``, or if
        they are due."""
        if self.unsynced:
            waited = time.monotonic() - self.unsynced_since
            if waited >= SYNC_LATEST or (not ready and waited >= SYNC_GATHER):
                self.sync_pending()

    def _sync_wait(self, wait: float) -> float:
        """``wait`` shortened to the time until the files waiting for an fsync may get it (gathered) and must."""
        waited = time.monotonic() - self.unsynced_since
        return max(0.0, min(wait, max(SYNC_GATHER - waited, 0.001), SYNC_LATEST - waited))

    def sync_pending(self) -> None:
        """fsync the files that wait for it, those that exist. In the reaper's loop, not on a thread of its own:
        handing each file to a thread cost more CPU than its fsync (~0.1-0.3 ms), and only a trial that ends
        meanwhile waits for it."""
        pending, self.unsynced = self.unsynced, []
        for path in dict.fromkeys(pending):
            _sync(path)

    def run(self) -> None:
        while True:
            watched = [] if self.manager_gone else [0]
            watched += [c.pidfd for c in self.children.values() if c.pidfd is not None]
            polled = any(c.pidfd is None for c in self.children.values())
            wait = _POLL_WITHOUT_PIDFD if polled else _CHECK_EVERY
            if self.unsynced:
                wait = self._sync_wait(wait)
            ready, _, _ = select.select(watched, [], [], wait)
            if 0 in ready:
                data = os.read(0, 1 << 16)
                if data:
                    self.buffer += data
                    messages, self.buffer = decode(self.buffer)
                    for msg in messages:
                        if msg.get("op") == "spawn":
                            self.spawn(msg)
                else:
                    self.manager_gone = True
            self.reap(ready)
            self.sync_if_quiet(ready)
            if not self.manager_gone and os.getppid() != self.parent:
                self.manager_gone = True  # the manager died while something else holds its end of our stdin
            if self.manager_gone and not self.children:
                self.sync_pending()
                return


if __name__ == "__main__":
    Reaper(tuple(int(s) for s in sys.argv[1].split(",") if s) if len(sys.argv) > 1 else ()).run()
    os._exit(0)  # nothing to tear down: every file was written with os calls
