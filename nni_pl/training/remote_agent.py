"""nni-pl's agent on a remote host: starts trials there and streams what they write back over SSH.

The remote training service (:mod:`nni_pl.training.remote`) runs this module on each host with the host's
``pythonPath`` first on ``PATH``::

    python -m nni_pl.training.remote_agent probe             # one JSON line: versions, home, GPUs
    python -m nni_pl.training.remote_agent busy              # one JSON line: GPUs running compute processes
    python -m nni_pl.training.remote_agent serve             # the agent: JSON lines in, JSON lines out
    python -m nni_pl.training.remote_agent call module:fn    # a function trial, run as a command trial

``serve`` reads one JSON command per line on stdin and writes one JSON event per line on stdout. It speaks the
trial-directory protocol of :mod:`nni_pl.trial.protocol` with its trials, on the host's file system: it writes
``parameter.json`` and ``run.sh`` into the trial's remote folder, starts ``run.sh`` in its own session (process
group), and then watches the folder: new complete lines of ``metrics.jsonl`` go back as ``metrics`` events with
the byte offset they end at, the end of the trial as an ``end`` event (exit code, end time, the tails of its
stderr and stdout). Commands:

* ``{"op": "start", "trial", "dir", "cwd", "command", "env", "parameter"}`` -> ``started`` (pid, start time)
* ``{"op": "watch", "trial", "dir", "offset"}``: pick up a trial an earlier agent started (after a dropped
  connection or a manager crash): its metrics from ``offset`` on, then its ``end`` when it ends; ``gone`` if it
  never started
* ``{"op": "stop", "trial", "graceful_timeout"}``: write the stop file; a trial that declared a graceful stop
  gets that long, the others are terminated at once
* ``{"op": "terminate", "trial", "grace"}``: SIGTERM to the trial's process group, SIGKILL after ``grace`` s
* ``{"op": "abandon", "trial", "dir"}``: kill what still runs of a trial the service gave up on
* ``{"op": "forget", "trial"}``: stop watching (the service has read the end)
* ``{"op": "busy_gpus"}`` -> ``busy_gpus`` (GPUs that run compute processes, for ``useActiveGpu: false``)
* ``{"op": "ping"}`` -> ``pong``

Every second the agent writes a ``hb`` (heartbeat) event, so the service notices a host that went silent even
when TCP does not (a cut cable). The trials never depend on the agent: each is its own session with its input
from ``/dev/null``, and writes its metrics and exit code to files, so an agent that dies with its SSH
connection loses nothing; the next agent's ``watch`` resumes from the offset the service had read to.

This module is import-light (standard library and :mod:`nni_pl.trial.protocol`): it starts on every host.

Example:
    >>> lines = encode_event("metrics", trial="t", records=[], offset=0)
    >>> json.loads(lines)["event"]
    'metrics'
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nni_pl.training.process import alive, pidfd_open, process_start_time
from nni_pl.trial import protocol

__all__ = ["Agent", "encode_event", "main", "wrapper_script"]

HEARTBEAT_S = 1.0  # how often the agent says it is alive
TICK_S = 0.02  # how often it looks at its trials' files
TAIL_BYTES = 64 * 1024  # how much of a trial's stderr/stdout comes back with its end


def encode_event(event: str, **fields: Any) -> bytes:
    """One line of the agent's output."""
    fields["event"] = event
    return (json.dumps(fields, default=protocol.json_default) + "\n").encode("utf-8")


def wrapper_script(*, env: dict[str, str], cwd: str, command: str, trial_dir: str) -> str:
    """``run.sh`` of a remote trial: NNI's environment, the command in the code folder, the exit code recorded.

    Example:
        >>> print(wrapper_script(env={"NNI_PLATFORM": "remote"}, cwd="/c", command="python t.py",
        ...                      trial_dir="/t"))  # doctest: +NORMALIZE_WHITESPACE
        #!/usr/bin/env bash
        # written by nni-pl's remote agent; `bash run.sh` from the trial code directory re-runs this trial
        export NNI_PLATFORM=remote
        export PL_TRAINER_DEFAULT_ROOT_DIR=${PL_TRAINER_DEFAULT_ROOT_DIR:-/t}
        cd /c
        python t.py
        __nni_pl_rc=$?
        printf "%s %s\\n" "$__nni_pl_rc" "$EPOCHREALTIME" > /t/.nni/exitcode
        exit $__nni_pl_rc
    """
    lines = [
        "#!/usr/bin/env bash",
        "# written by nni-pl's remote agent; `bash run.sh` from the trial code directory re-runs this trial",
    ]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    root = protocol.ENV_DEFAULT_ROOT_DIR
    lines.append(f"export {root}=${{{root}:-{shlex.quote(trial_dir)}}}")
    lines.append(f"cd {shlex.quote(cwd)}")
    lines.append(command)
    exitcode = shlex.quote(os.path.join(trial_dir, protocol.CONTROL_DIR, protocol.EXITCODE_FILE))
    lines.append("__nni_pl_rc=$?")
    lines.append(f'printf "%s %s\\n" "$__nni_pl_rc" "$EPOCHREALTIME" > {exitcode}')
    lines.append("exit $__nni_pl_rc")
    return "\n".join(lines) + "\n"


def _tail(path: Path, limit: int = TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


@dataclass
class _Trial:
    trial_id: str
    folder: Path
    reader: protocol.MetricsReader
    pid: int | None = None
    pid_started_at: float | None = None
    popen: subprocess.Popen[bytes] | None = None  # None when an earlier agent started it
    pidfd: int | None = None  # readable once the process ended: the agent wakes at once
    kill_at: float | None = None
    graceful_until: float | None = None
    ended: bool = False  # its end was sent; it is watched no more until the service forgets it


class Agent:
    """The ``serve`` loop: trials started and watched on this host, events written to ``out``.

    Example:
        >>> import io, tempfile
        >>> out = io.BytesIO()
        >>> agent = Agent(out=out)
        >>> agent.handle({"op": "ping"})
        >>> json.loads(out.getvalue())["event"]
        'pong'
    """

    def __init__(self, out: Any = None) -> None:
        self.out = out
        self.trials: dict[str, _Trial] = {}
        self._last_beat = 0.0

    # --- output -------------------------------------------------------------------------------------------
    def emit(self, event: str, **fields: Any) -> None:
        data = encode_event(event, **fields)
        if self.out is None:
            view = memoryview(data)
            while view:
                n = os.write(1, view)  # BrokenPipeError: the service is gone; serve() ends
                view = view[n:]
        else:
            self.out.write(data)

    # --- commands -----------------------------------------------------------------------------------------
    def handle(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        try:
            if op == "start":
                self._start(msg)
            elif op == "watch":
                self._watch(msg)
            elif op == "stop":
                self._stop(msg)
            elif op == "terminate":
                self._terminate(msg["trial"], float(msg.get("grace", 10.0)))
            elif op == "abandon":
                self._abandon(msg)
            elif op == "forget":
                forgotten = self.trials.pop(msg["trial"], None)
                if forgotten is not None:
                    self._close_pidfd(forgotten)
            elif op == "busy_gpus":
                self.emit("busy_gpus", gpus=sorted(busy_gpus()))
            elif op == "ping":
                self.emit("pong", time=time.time())
            else:
                self.emit("error", op=op, trial=msg.get("trial"), message=f"unknown op {op!r}")
        except Exception as e:  # one bad command must not end the agent (and the trials' watch)
            self.emit("error", op=op, trial=msg.get("trial"), message=f"{type(e).__name__}: {e}")

    def _start(self, msg: dict[str, Any]) -> None:
        trial_id, folder = msg["trial"], Path(msg["dir"])
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():  # what an earlier start of this trial id left (it never ran, or a reused id)
            shutil.rmtree(folder)
        protocol.write_parameter_file(folder, msg["parameter"])
        script = folder / "run.sh"
        script.write_text(
            wrapper_script(env=msg["env"], cwd=msg["cwd"], command=msg["command"], trial_dir=str(folder)),
            encoding="utf-8",
        )
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        out = os.open(folder / protocol.STDOUT_FILE, flags, 0o644)
        err = os.open(folder / protocol.STDERR_FILE, flags, 0o644)
        started = time.time()
        try:
            popen = subprocess.Popen(
                ["bash", str(script)],
                cwd=msg["cwd"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group: signalled as a whole, independent of the agent
            )
        finally:
            os.close(out)
            os.close(err)
        pid_started = process_start_time(popen.pid)
        protocol.write_pid(folder, popen.pid, pid_started)
        self.trials[trial_id] = _Trial(
            trial_id,
            folder,
            protocol.MetricsReader(folder),
            popen.pid,
            pid_started,
            popen,
            pidfd_open(popen.pid),
        )
        self.emit("started", trial=trial_id, pid=popen.pid, pid_started_at=pid_started, time=started)

    def _watch(self, msg: dict[str, Any]) -> None:
        trial_id, folder = msg["trial"], Path(msg["dir"])
        reader = protocol.MetricsReader(folder)
        reader.offset = int(msg.get("offset") or 0)
        found = protocol.read_pid(folder)
        if found is None and protocol.read_exitcode(folder) is None:
            self.emit("gone", trial=trial_id, reason="the trial never started on this host")
            return
        pid, started = found if found is not None else (None, None)
        self.trials[trial_id] = _Trial(
            trial_id, folder, reader, pid, started, None, pidfd_open(pid) if pid is not None else None
        )
        self.emit("watching", trial=trial_id, pid=pid, pid_started_at=started)

    def _abandon(self, msg: dict[str, Any]) -> None:
        """End a trial the service gave up on while this host was unreachable (it ran again elsewhere)."""
        self.trials.pop(msg["trial"], None)
        found = protocol.read_pid(Path(msg["dir"]))
        if found is not None and alive(*found):
            try:
                os.killpg(found[0], signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _stop(self, msg: dict[str, Any]) -> None:
        trial = self.trials.get(msg["trial"])
        if trial is None:
            return
        protocol.request_stop(trial.folder)
        if protocol.graceful_declared(trial.folder):
            trial.graceful_until = time.time() + float(msg.get("graceful_timeout", 30.0))
        else:
            self._terminate(trial.trial_id, float(msg.get("grace", 10.0)))

    def _terminate(self, trial_id: str, grace: float) -> None:
        trial = self.trials.get(trial_id)
        if trial is None or trial.pid is None or trial.kill_at is not None:
            return
        self._signal(trial, signal.SIGTERM)
        trial.kill_at = time.time() + grace

    @staticmethod
    def _close_pidfd(trial: _Trial) -> None:
        if trial.pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(trial.pidfd)
            trial.pidfd = None

    def _wait_fds(self) -> list[int]:
        return [t.pidfd for t in self.trials.values() if t.pidfd is not None and not t.ended]

    @staticmethod
    def _signal(trial: _Trial, sig: int) -> None:
        if trial.pid is None or (trial.popen is None and not alive(trial.pid, trial.pid_started_at)):
            return
        try:
            os.killpg(trial.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    # --- watching -----------------------------------------------------------------------------------------
    def tick(self) -> None:
        now = time.time()
        for trial in list(self.trials.values()):
            if trial.graceful_until is not None and now >= trial.graceful_until and trial.kill_at is None:
                trial.graceful_until = None
                self._terminate(trial.trial_id, 10.0)
            if trial.kill_at is not None and now >= trial.kill_at:
                self._signal(trial, signal.SIGKILL)
                trial.kill_at = float("inf")
            code = self._exit_of(trial)
            records = trial.reader.read()  # after the exit check: an ended trial's last lines come now
            if records:
                self.emit("metrics", trial=trial.trial_id, records=records, offset=trial.reader.offset)
            if code is not False:
                self._ended(trial, code)
        if now - self._last_beat >= HEARTBEAT_S:
            self._last_beat = now
            self.emit("hb", time=now, trials=sorted(self.trials))

    def _exit_of(self, trial: _Trial) -> int | bool | None:
        """The exit code once the trial ended (``None`` if unknown), ``False`` while it runs."""
        if trial.ended:
            return False
        if trial.popen is not None:
            code = trial.popen.poll()
            if code is None:
                return False
            if code >= 0:
                return code
            ended = protocol.read_exitcode(trial.folder)
            return ended[0] if ended is not None else 128 - code
        if trial.pid is not None and alive(trial.pid, trial.pid_started_at):
            return False
        ended = protocol.read_exitcode(trial.folder)
        return ended[0] if ended is not None else None

    def _ended(self, trial: _Trial, code: int | None) -> None:
        trial.ended = True
        self._close_pidfd(trial)
        if trial.pid is not None:  # children the trial left behind end with it, as on the local service
            try:
                os.killpg(trial.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        ended = protocol.read_exitcode(trial.folder)
        when = ended[1] if ended is not None and ended[1] else time.time()
        error = None
        if code != 0:
            error = protocol.stderr_tail(trial.folder) or (
                "the trial process ended while no agent watched it and left no exit code"
                if code is None
                else None
            )
        self.emit(
            "end",
            trial=trial.trial_id,
            code=code,
            time=when,
            error=error,
            stdout=_tail(trial.folder / protocol.STDOUT_FILE),
            stderr=_tail(trial.folder / protocol.STDERR_FILE),
            offset=trial.reader.offset,
        )

    def serve(self) -> None:
        """Read commands from stdin until it closes; watch the trials meanwhile."""
        buf = b""
        stdin = sys.stdin.fileno()
        self.emit("ready", pid=os.getpid(), time=time.time())
        try:
            while True:
                # wake for a command, for a trial's end (its pidfd), or every tick for new metric lines
                ready, _, _ = select.select([stdin, *self._wait_fds()], [], [], TICK_S)
                if stdin in ready:
                    chunk = os.read(stdin, 1 << 16)
                    if not chunk:
                        return  # the service closed the channel; the trials go on
                    buf += chunk
                    while (end := buf.find(b"\n")) >= 0:
                        line, buf = buf[:end], buf[end + 1 :]
                        if line.strip():
                            self.handle(json.loads(line))
                self.tick()
        except (BrokenPipeError, KeyboardInterrupt):
            return


def busy_gpus() -> set[int]:
    """GPUs of this host that run compute processes (empty without ``nvidia-smi``)."""
    from nni_pl.training.local import busy_gpus as local_busy

    return local_busy()


def probe() -> dict[str, Any]:
    """What the service checks before it uses a host."""
    import nni_pl
    from nni_pl.training.local import visible_gpus

    return {
        "version": nni_pl.__version__,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "home": os.path.expanduser("~"),
        "gpus": visible_gpus() if shutil.which("nvidia-smi") else None,
        "bash": shutil.which("bash") is not None,
    }


def call(target: str) -> int:
    """Run the function trial ``module:qualname`` in this process (a command trial of the function)."""
    from nni_pl._imports import import_object
    from nni_pl.training.functions import _run_one, _takes_argument

    fn = import_object(target, "trialFunction", what="function")
    ctx = protocol.read_parameter_file(Path(os.environ[protocol.ENV_SYS_DIR]) / protocol.PARAMETER_FILE)
    job = {
        "trial_dir": os.environ[protocol.ENV_SYS_DIR],
        "experiment_id": os.environ[protocol.ENV_EXPERIMENT_ID],
        "trial_id": os.environ[protocol.ENV_TRIAL_ID],
        "sequence_id": int(os.environ[protocol.ENV_SEQUENCE_ID]),
        "parameters": ctx.get("parameters") or {},
    }
    code, _error = _run_one(fn, _takes_argument(fn), job)
    return code


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("probe", "busy", "serve", "call"):
        sys.stderr.write(
            "usage: python -m nni_pl.training.remote_agent probe|busy|serve|call module:function\n"
        )
        return 2
    if args[0] == "probe":
        sys.stdout.write(json.dumps(probe()) + "\n")
        return 0
    if args[0] == "busy":
        sys.stdout.write(json.dumps(sorted(busy_gpus())) + "\n")
        return 0
    if args[0] == "call":
        return call(args[1])
    Agent().serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
