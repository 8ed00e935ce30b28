"""The local training service: each trial is a process group on this machine.

The service's trials are started by its reaper (:mod:`nni_pl.training._reaper`, one small process per service
in a session of its own): the manager asks it to start a trial, and it answers with the trial's pid and, when
the trial ends, with its exit code, which it also writes to ``.nni/exitcode``. The trial command runs directly
when it is plain (words and quotes only, e.g. ``python train.py --lr 0.1``), and under bash otherwise
(expansions, redirections, pipes, bash syntax), as in NNI. ``run.sh`` in the trial folder re-runs the trial by
hand: it exports NNI's environment variables, runs the command and records its exit code. Because each trial
is its own session, a Ctrl-C in the terminal reaches only the manager, and a manager that dies (even by SIGKILL)
leaves its trials running and their reaper recording how they end: ``resume`` re-attaches to them, or collects
their exit codes and metrics if they ended meanwhile.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import re
import select
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nni_pl._config_readers import check_keys, read_bool, read_gpu_indices, read_int
from nni_pl.training import _reaper as reaper_messages
from nni_pl.training.process import alive as _alive
from nni_pl.training.process import pidfd_open as _pidfd_open
from nni_pl.training.service import SubmitInfo, TrainingService, TrialEnd, TrialJob
from nni_pl.trial import protocol

if TYPE_CHECKING:
    from nni_pl.training.platforms import ServiceSpec

__all__ = ["GpuScheduler", "LocalConfig", "LocalTrainingService"]

logger = logging.getLogger(__name__)


@dataclass
class LocalConfig:
    """``trainingService: {platform: local, ...}``: trials as process groups on this machine.

    Example:
        >>> LocalConfig.from_dict({"platform": "local", "gpuIndices": "0,1"}, "trainingService").gpu_indices
        [0, 1]
    """

    platform: str = "local"
    use_active_gpu: bool = False
    max_trial_number_per_gpu: int = 1
    gpu_indices: list[int] | None = None

    KEYS = ("platform", "useActiveGpu", "maxTrialNumberPerGpu", "gpuIndices", "reuseMode")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], field: str) -> LocalConfig:
        check_keys(raw, list(cls.KEYS), field)
        return cls(
            use_active_gpu=read_bool(raw.get("useActiveGpu"), f"{field}.useActiveGpu", False),
            max_trial_number_per_gpu=read_int(
                raw.get("maxTrialNumberPerGpu", 1), f"{field}.maxTrialNumberPerGpu", minimum=1
            )
            or 1,
            gpu_indices=read_gpu_indices(raw.get("gpuIndices"), f"{field}.gpuIndices"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "useActiveGpu": self.use_active_gpu,
            "maxTrialNumberPerGpu": self.max_trial_number_per_gpu,
            "gpuIndices": self.gpu_indices,
        }


_HAVE_SH = os.path.exists("/bin/sh")
# Bash builtins and keywords: a command starting with one of these may mean something else (or nothing) in /bin/sh.
_BASH_WORDS = frozenset(
    ". : [ alias bg bind break builtin caller cd command compgen complete compopt continue declare dirs disown echo "
    "enable eval exec exit export false fc fg getopts hash help history jobs kill let local logout mapfile popd "
    "printf pushd pwd read readarray readonly return set shift shopt source suspend test times trap true type "
    "typeset ulimit umask unalias unset wait if then else elif fi case esac for select while until do done in "
    "function time { } ! [[ ]] coproc".split()
)
_PLAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@% ")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def _plain_words(command: str) -> list[str] | None:
    """The words of ``command`` if it is one simple command that bash and any POSIX ``sh`` run alike, else ``None``.

    Words, ``VAR=value`` prefixes, single-quoted text and double-quoted text without ``$``, backquotes or
    backslashes qualify; a first word that is a bash builtin or keyword does not.

    Example:
        >>> _plain_words("python train.py --lr 0.1 --name 'a b$c'")
        ['python', 'train.py', '--lr', '0.1', '--name', 'a b$c']
        >>> [_plain_words(c) for c in ("python t.py > log", "echo -e x", "source env.sh; python t.py")]
        [None, None, None]
    """
    quote = None  # the quote we are inside of
    for ch in command:
        if quote == "'":
            quote = None if ch == "'" else quote
        elif quote == '"':
            if ch in "$`\\":
                return None
            quote = None if ch == '"' else quote
        elif ch in "'\"":
            quote = ch
        elif ch not in _PLAIN_CHARS:
            return None
    if quote is not None:
        return None
    words = shlex.split(command)
    first = next((w for w in words if not _ASSIGNMENT.match(w)), None)
    return words if first is not None and first not in _BASH_WORDS else None


def _nvidia_smi(query: str) -> list[str] | None:
    """Lines of ``nvidia-smi --query-...=... --format=csv,noheader``; ``None`` without a working nvidia-smi."""
    import shutil  # here: the launcher's start-up does without it
    import subprocess

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, query, "--format=csv,noheader"], capture_output=True, text=True, timeout=20, check=True
        )
    except (subprocess.SubprocessError, OSError):
        return None
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def visible_gpus() -> list[int]:
    """Indices of the NVIDIA GPUs on this machine (empty when there is none)."""
    return [int(x) for x in _nvidia_smi("--query-gpu=index") or [] if x.isdigit()]


def busy_gpus() -> set[int]:
    """GPUs running compute processes (``useActiveGpu: false`` skips those not running our trials)."""
    gpus = _nvidia_smi("--query-gpu=index,uuid")
    apps = _nvidia_smi("--query-compute-apps=gpu_uuid")
    if not gpus or apps is None:
        return set()
    by_uuid = {}
    for line in gpus:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit():
            by_uuid[parts[1]] = int(parts[0])
    return {by_uuid[u] for u in apps if u in by_uuid}


@functools.lru_cache(maxsize=64)
def _split_command(command: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]] | None:
    """``(VAR=value prefixes, argv)`` of a plain trial command (:func:`_plain_words`), ``None`` for another.

    Example:
        >>> _split_command("CUDA_LAUNCH_BLOCKING=1 python train.py --name 'a b'")
        ((('CUDA_LAUNCH_BLOCKING', '1'),), ('python', 'train.py', '--name', 'a b'))
        >>> _split_command("python train.py > log.txt") is None
        True
    """
    words = _plain_words(command)
    if words is None:
        return None
    assignments = []
    while _ASSIGNMENT.match(words[0]):
        name, value = words.pop(0).split("=", 1)
        assignments.append((name, value))
    return tuple(assignments), tuple(words)


class GpuScheduler:
    """Hands out GPU indices: ``gpu_number`` per trial, at most ``per_gpu`` trials on one GPU.

    Example:
        >>> s = GpuScheduler(gpu_number=1, indices=[0, 1], per_gpu=2)
        >>> [s.acquire("a"), s.acquire("b"), s.acquire("c"), s.acquire("d"), s.acquire("e")]
        [[0], [1], [0], [1], None]
        >>> s.release("a"); s.acquire("f")
        [0]
    """

    def __init__(
        self,
        *,
        gpu_number: int | None,
        indices: Sequence[int] | None = None,
        per_gpu: int = 1,
        use_active_gpu: bool = True,
        busy: Callable[[], set[int]] | None = None,
    ) -> None:
        self.gpu_number = gpu_number
        self.busy_source = (
            busy or busy_gpus
        )  # where "which GPUs run compute processes" is asked (a host's agent)
        self.per_gpu = per_gpu
        self.use_active_gpu = use_active_gpu
        self.indices = list(indices) if indices is not None else (visible_gpus() if gpu_number else [])
        self.load = dict.fromkeys(self.indices, 0)
        self.assigned: dict[str, list[int]] = {}
        self._busy_cache: set[int] = set()
        self._busy_at: float | None = None

    def require_enough(self, who: str) -> None:
        """Raise :class:`ConfigError` (``trialGpuNumber``) when fewer GPUs exist than ``who`` needs."""
        if self.gpu_number and len(self.indices) < self.gpu_number:
            from nni_pl.errors import ConfigError

            raise ConfigError(
                "trialGpuNumber",
                f"{who} needs {self.gpu_number} GPU(s) but {len(self.indices)} are available "
                f"(found {self.indices}); set trialGpuNumber: 0, or list trainingService.gpuIndices",
            )

    def _busy(self) -> set[int]:
        # nvidia-smi costs ~100 ms and the manager asks several times a second: look every few seconds
        now = time.time()
        if self._busy_at is None or now - self._busy_at > 5.0:
            self._busy_cache, self._busy_at = self.busy_source(), now
        return self._busy_cache

    def _candidates(self) -> list[int]:
        busy = set() if self.use_active_gpu else self._busy()
        ours = {g for gpus in self.assigned.values() for g in gpus}
        free = [g for g in self.indices if self.load[g] < self.per_gpu and (g not in busy or g in ours)]
        return sorted(free, key=lambda g: (self.load[g], self.indices.index(g)))

    def can_acquire(self) -> bool:
        if not self.gpu_number:
            return True
        return len(self._candidates()) >= self.gpu_number

    def acquire(self, trial_id: str) -> list[int] | None:
        if not self.gpu_number:
            return []
        cands = self._candidates()
        if len(cands) < self.gpu_number:
            return None
        chosen = sorted(cands[: self.gpu_number])
        for g in chosen:
            self.load[g] += 1
        self.assigned[trial_id] = chosen
        return chosen

    def take(self, trial_id: str, gpus: Sequence[int]) -> None:
        """Record GPUs already held by a re-attached trial."""
        for g in gpus:
            if g in self.load:
                self.load[g] += 1
        self.assigned[trial_id] = list(gpus)

    def release(self, trial_id: str) -> None:
        for g in self.assigned.pop(trial_id, []):
            self.load[g] -= 1


_REAPER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_reaper.py")
_REAPER_REPLY_TIMEOUT = 60.0  # seconds submit() waits for the reaper to say a trial started
# seconds a re-attached trial's reaper has, after the trial ended, to write its exit code
_EXIT_CODE_GRACE = 2.0


class _Reaper:
    """The manager's end of a reaper process (:mod:`nni_pl.training._reaper`): requests out, events in.

    The reaper is forked from the manager when the manager has no other thread (it is up in ~1 ms, and runs
    nothing of the manager's but :class:`nni_pl.training._reaper.Reaper`); otherwise it is a fresh
    ``python -I -S`` (~10 ms), since forking a process with threads is unsafe. Either way it starts in a session
    of its own, holds only its two pipes, and has the environment the manager had when the reaper started: the
    trials it starts get that environment and their own variables.
    """

    # what subprocess's restore_signals resets: Python ignores SIGPIPE (and SIGXFSZ), and trials must not inherit it
    RESET_SIGNALS = tuple(
        getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
    )

    def __init__(self, *, fork: bool | None = None) -> None:
        if fork is None:
            fork = hasattr(os, "fork") and threading.active_count() == 1
        requests_r, self.requests = os.pipe()
        self.fd, events_w = os.pipe()
        try:
            self.pid = self._fork(requests_r, events_w) if fork else self._spawn(requests_r, events_w)
        finally:
            os.close(requests_r)
            os.close(events_w)
        self.forked = fork
        self.buffer = bytearray()
        self.events: collections.deque[dict[str, Any]] = collections.deque()
        self.alive = True
        self.exit_code: int | None = None

    def _spawn(self, requests_r: int, events_w: int) -> int:
        argv = [sys.executable, "-I", "-S", _REAPER_SCRIPT, ",".join(map(str, self.RESET_SIGNALS))]
        actions = [(os.POSIX_SPAWN_DUP2, requests_r, 0), (os.POSIX_SPAWN_DUP2, events_w, 1)]
        return os.posix_spawn(sys.executable, argv, os.environ, file_actions=actions, setsid=True)

    def _fork(self, requests_r: int, events_w: int) -> int:
        pid = os.fork()
        if pid:
            return pid
        code = 1
        try:  # the reaper: nothing of the manager's runs here, and it never returns into the manager's code
            os.setsid()  # a Ctrl-C for the manager does not reach it; it outlives a killed manager
            os.dup2(requests_r, 0)
            os.dup2(events_w, 1)
            os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536)
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            reaper_messages.Reaper(self.RESET_SIGNALS).run()
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)

    def poll(self) -> int | None:
        """The reaper's exit code once it has ended (it is reaped then), else ``None``."""
        if self.exit_code is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere
                pid, status = self.pid, 0
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
        return self.exit_code

    def wait(self, timeout: float) -> int | None:
        """The reaper's exit code, waiting up to ``timeout`` seconds for it to end."""
        if self.poll() is None:
            pidfd = _pidfd_open(self.pid)
            if pidfd is not None:
                try:
                    select.select([pidfd], [], [], timeout)
                finally:
                    os.close(pidfd)
            else:
                deadline = time.monotonic() + timeout
                while self.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.002)
        return self.poll()

    def send(self, message: dict[str, Any]) -> None:
        data = memoryview(reaper_messages.encode(message))
        while data:
            data = data[os.write(self.requests, data) :]

    def receive(self, timeout: float) -> bool:
        """Read what the reaper said, waiting up to ``timeout`` seconds for something; False once it is gone."""
        if not self.alive:
            return False
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not ready:
            return True
        data = os.read(self.fd, 1 << 16)
        if not data:
            self.alive = False
            return False
        self.buffer += data
        messages, self.buffer = reaper_messages.decode(self.buffer)
        self.events.extend(messages)
        return True

    def wait_started(self, trial_id: str) -> dict[str, Any]:
        """The reaper's ``started`` answer for ``trial_id`` (other events stay queued for ``poll``)."""
        deadline = time.monotonic() + _REAPER_REPLY_TIMEOUT
        while True:
            for event in self.events:
                if event["op"] == "started" and event["id"] == trial_id:
                    self.events.remove(event)
                    return event
            left = deadline - time.monotonic()
            if left <= 0 or not self.receive(left):
                code = self.poll()
                why = (
                    f"it exited with code {code}"
                    if code is not None
                    else f"no answer in {_REAPER_REPLY_TIMEOUT:.0f} s"
                )
                raise RuntimeError(
                    f"the local reaper process (pid {self.pid}) did not start trial {trial_id} ({why})"
                )

    def close(self, *, wait: float = 0.0) -> None:
        """Tell the reaper its manager is done: it exits once its last trial has ended. ``wait``: seconds to wait
        for that (the reaper is reaped, and its trials' CPU time is counted as this process's children's)."""
        if self.requests >= 0:
            os.close(self.requests)
            os.close(self.fd)
            self.requests = -1
        self.alive = False
        if wait > 0:
            self.wait(wait)

    def __del__(self) -> None:  # a service dropped without shutdown(): the reaper still learns it is done
        if getattr(self, "requests", -1) >= 0:
            with contextlib.suppress(Exception):  # at interpreter exit the modules it needs may be gone
                self.close(wait=0.1)  # an idle reaper exits at once: reap it, leaving no zombie


@dataclass
class _Proc:
    pid: int | None
    pid_started_at: float | None
    job: TrialJob
    reaper: _Reaper | None  # None for a re-attached process (started by an earlier manager's reaper)
    pidfd: int | None  # for a re-attached process: readable when it exits
    term_at: float | None = None  # when SIGTERM was sent
    kill_at: float | None = None  # when to send SIGKILL
    graceful_until: float | None = None  # a graceful stop was requested; terminate after this
    gone_at: float | None = None  # a re-attached process ended: when we noticed (its exit code may follow)
    ended: tuple[int, float] | None = None  # what a reaper that then died said of its end


class LocalTrainingService(TrainingService):
    """Runs command trials as local process groups, ``concurrency`` at a time, with GPU assignment.

    Args:
        command: the trial command (run by bash in ``code_directory``).
        code_directory: the trial's working directory.
        concurrency: how many trials run at once (can be changed while running).
        gpu_number: GPUs per trial: ``None`` leaves ``CUDA_VISIBLE_DEVICES`` alone, ``0`` hides all GPUs.
        gpu_indices: the GPUs to use (default: all that ``nvidia-smi`` lists).
        max_trial_number_per_gpu: how many trials may share one GPU.
        use_active_gpu: whether GPUs running other people's processes may be used.
        extra_args: a function ``parameters -> list[str]`` of arguments appended to the command
            (LightningCLI overrides).
    """

    reattaches_trials = True  # each trial is its own session: it outlives a killed manager

    def __init__(
        self,
        *,
        command: str,
        code_directory: Path,
        concurrency: int = 1,
        gpu_number: int | None = None,
        gpu_indices: Sequence[int] | None = None,
        max_trial_number_per_gpu: int = 1,
        use_active_gpu: bool = False,
        extra_args: object = None,
    ) -> None:
        self.command = command
        self.code_directory = Path(code_directory)
        self.concurrency = concurrency
        self.gpu_number = gpu_number
        self.gpus = GpuScheduler(
            gpu_number=gpu_number,
            indices=gpu_indices,
            per_gpu=max_trial_number_per_gpu,
            use_active_gpu=use_active_gpu,
        )
        self.gpus.require_enough("each trial")
        self.extra_args = extra_args
        self.host = socket.gethostname()
        self.procs: dict[str, _Proc] = {}
        self._reaper: _Reaper | None = None  # started by start() or the first submit()

    @classmethod
    def from_spec(cls, spec: ServiceSpec) -> LocalTrainingService:
        """The service of ``trainingService: {platform: local}`` for an experiment (see :mod:`.platforms`)."""
        from nni_pl.training.lightning_cli import lightning_cli_args

        section = spec.section if isinstance(spec.section, LocalConfig) else LocalConfig()
        if spec.trial_command is None:
            raise ValueError("the local training service runs a trialCommand; none was given")
        mode = spec.lightning_cli
        service = cls(
            command=spec.trial_command,
            code_directory=spec.trial_code_directory,
            concurrency=spec.trial_concurrency,
            gpu_number=spec.trial_gpu_number,
            gpu_indices=section.gpu_indices,
            max_trial_number_per_gpu=section.max_trial_number_per_gpu,
            use_active_gpu=section.use_active_gpu,
            extra_args=lambda params: lightning_cli_args(params, mode),
        )
        service.start()  # an experiment's service: the reaper starts up while the manager does
        return service

    def start(self) -> None:
        """Start the reaper that starts the trials now (the first :meth:`submit` does otherwise).

        Its start-up (~10 ms) then overlaps the manager's instead of delaying the first trial.
        """
        self._reaper_for_submit()

    # --- scheduling ---------------------------------------------------------------------------------------
    def free_slots(self) -> int:
        free = self.concurrency - len(self.procs)
        if free <= 0 or not self.gpu_number:
            return max(free, 0)
        return 1 if self.gpus.can_acquire() else 0

    def running(self) -> set[str]:
        return set(self.procs)

    def _script(self, job: TrialJob, env: Mapping[str, str], command: str) -> str:
        """``run.sh``: the trial again by hand (``sh run.sh`` or ``bash run.sh`` in the trial code directory)."""
        shell = "sh" if _HAVE_SH and _split_command(command) is not None else "bash"
        lines = [
            "#!/bin/sh" if shell == "sh" else "#!/usr/bin/env bash",
            f"# written by nni-pl; `{shell} run.sh` from the trial code directory re-runs this trial",
        ]
        root = protocol.ENV_DEFAULT_ROOT_DIR
        lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items() if k not in ("PATH", root)]
        lines.append(self._path_line)
        # Lightning's default loggers and checkpoints go to the trial directory unless the user chose a place
        lines.append(f"export {root}=${{{root}:-{shlex.quote(str(job.trial_dir))}}}")
        lines.append(self._cd_line)
        lines.append(command)
        ctl = shlex.quote(f"{os.fspath(job.trial_dir)}/{protocol.CONTROL_DIR}/{protocol.EXITCODE_FILE}")
        lines.append("__nni_pl_rc=$?")
        if shell == "sh":  # no $EPOCHREALTIME in POSIX sh: the file's modification time is the end time
            lines.append(f'printf "%s\\n" "$__nni_pl_rc" > {ctl}')
        else:
            lines.append(f'printf "%s %s\\n" "$__nni_pl_rc" "$EPOCHREALTIME" > {ctl}')
        lines.append("exit $__nni_pl_rc")
        return "\n".join(lines) + "\n"

    def _environment(self, job: TrialJob, gpus: list[int] | None) -> dict[str, str]:
        """What the trial's environment adds to the manager's."""
        env = job.environment(self.platform)
        if self.gpu_number is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus or []))
        env["PATH"] = self._path
        root = protocol.ENV_DEFAULT_ROOT_DIR
        env[root] = os.environ.get(root) or str(job.trial_dir)
        return env

    @functools.cached_property
    def _path(self) -> str:
        # `python` in the trial command means the interpreter nni-pl runs under, even without an activated venv
        return os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

    @functools.cached_property
    def _path_line(self) -> str:
        return f'export PATH={shlex.quote(os.path.dirname(sys.executable))}{os.pathsep}"$PATH"'

    @functools.cached_property
    def _cd_line(self) -> str:
        return f"cd {shlex.quote(str(self.code_directory))}"

    def _command(self, job: TrialJob) -> str:
        command = self.command
        if callable(self.extra_args):
            args = self.extra_args(job.parameters)
            if args:
                command = command + " " + " ".join(shlex.quote(a) for a in args)
        return command

    def _reaper_for_submit(self) -> _Reaper:
        reaper = self._reaper
        if reaper is not None and (not reaper.alive or reaper.poll() is not None):
            self._reaper_lost(reaper)
        if self._reaper is None:
            self._reaper = _Reaper()
        return self._reaper

    def submit(self, job: TrialJob) -> SubmitInfo:
        gpus = self.gpus.acquire(job.trial_id)
        if gpus is None:
            raise RuntimeError("no GPU free; call free_slots() before submit()")
        # the trial directory and its .nni/ exist (the parameter file was written); plain os calls below, as this
        # runs once per trial on the manager's hot path
        folder = os.fspath(job.trial_dir)  # a Path's text: no "/" at its end, so f"{folder}/{name}" joins
        control = f"{folder}/{protocol.CONTROL_DIR}"
        env = self._environment(job, gpus)
        command = self._command(job)
        spawn_env = dict(env)
        # the reaper fsyncs the reports once the trial ends: the trial's final report need not wait for the disk
        spawn_env[protocol.ENV_SYNC_AT_EXIT] = "1"
        split = _split_command(command)
        if split is None:  # expansions, redirections, pipes, bash syntax: bash runs it, as in NNI
            argv = ["bash", "-c", command]
        else:  # a plain command is the trial process itself; its VAR=value prefixes go to its environment
            spawn_env.update(split[0])
            argv = list(split[1])
        reaper = self._reaper_for_submit()
        started = time.time()
        reaper.send(
            {
                "op": "spawn",
                "id": job.trial_id,
                "argv": argv,
                "cwd": os.fspath(self.code_directory),
                "env": spawn_env,
                "stdout": f"{folder}/{protocol.STDOUT_FILE}",
                "stderr": f"{folder}/{protocol.STDERR_FILE}",
                "pidfile": f"{control}/{protocol.PID_FILE}",
                "exitfile": f"{control}/{protocol.EXITCODE_FILE}",
                "sync": [f"{folder}/{protocol.METRICS_FILE}"],
            }
        )
        # while the reaper starts the trial: run.sh, to re-run the trial by hand
        fd = os.open(f"{folder}/run.sh", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, self._script(job, env, command).encode("utf-8"))
        finally:
            os.close(fd)
        answer = reaper.wait_started(job.trial_id)
        pid, pid_started = answer["pid"], answer["start"]
        self.procs[job.trial_id] = _Proc(pid, pid_started, job, reaper, None)
        return SubmitInfo(
            pid=pid,
            host=self.host,
            started_at=started,
            pid_started_at=pid_started,
            gpu_indices=gpus if self.gpu_number is not None else None,
        )

    def reattach(
        self,
        job: TrialJob,
        pid: int | None,
        pid_started_at: float | None,
        gpu_indices: Sequence[int] | None = None,
    ) -> TrialEnd | bool:
        if pid is None:
            found = protocol.read_pid(job.trial_dir)
            if found is not None:
                pid, pid_started_at = found
        ended = protocol.read_exitcode(job.trial_dir)
        if ended is not None:
            code, when = ended
            return TrialEnd(
                job.trial_id, code, when, protocol.stderr_tail(job.trial_dir) if code != 0 else None
            )
        if pid is None:
            return False  # never started
        if _alive(pid, pid_started_at):
            self.procs[job.trial_id] = _Proc(pid, pid_started_at, job, None, _pidfd_open(pid))
            if gpu_indices:
                self.gpus.take(job.trial_id, gpu_indices)
            return True
        return TrialEnd(
            job.trial_id,
            None,
            time.time(),
            "the trial process ended while no manager was running and left no exit code",
        )

    def take_gpus(self, trial_id: str, gpus: Sequence[int]) -> None:
        """Transitional: ``reattach(..., gpu_indices)`` takes a reattached trial's GPUs itself."""
        self.gpus.take(trial_id, gpus)

    # --- waiting ----------------------------------------------------------------------------------------------
    def _foreign_exit(self, proc: _Proc) -> int | bool | None:
        """A trial this service's reaper does not run: its exit code if ended (None if unknown), else False."""
        if proc.pid is not None and _alive(proc.pid, proc.pid_started_at):
            return False
        ended = protocol.read_exitcode(proc.job.trial_dir)
        if ended is not None:
            return ended[0]
        # its reaper writes the exit code just after the trial ended: give it a moment
        now = time.monotonic()
        if proc.gone_at is None:
            proc.gone_at = now
        return False if now - proc.gone_at < _EXIT_CODE_GRACE else None

    def poll(self, timeout: float) -> list[TrialEnd]:
        self._escalate()
        reaper = self._reaper
        if timeout > 0 and not (reaper is not None and reaper.events):
            self._wait(timeout)
        if reaper is not None:
            self._take_events(reaper)
            if not reaper.alive:
                self._reaper_lost(reaper)
        said = sorted((p.ended[1], trial_id) for trial_id, p in self.procs.items() if p.ended is not None)
        ends = [
            self._finish(trial_id, *self.procs[trial_id].ended) for _, trial_id in said
        ]  # in order of end
        for trial_id, proc in list(self.procs.items()):
            if proc.reaper is None:
                code = self._foreign_exit(proc)
                if code is not False:
                    ends.append(self._finish(trial_id, code))
        return ends

    def _take_events(self, reaper: _Reaper) -> None:
        """Note the ends ``reaper`` reported for its trials (:meth:`poll` collects them)."""
        reaper.receive(0)
        while reaper.events:
            event = reaper.events.popleft()
            proc = self.procs.get(event["id"])
            if event["op"] == "ended" and proc is not None and proc.reaper is reaper:
                proc.ended = (event["code"], event["time"])

    def _wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the reaper to say something or a re-attached trial to end."""
        fds = [self._reaper.fd] if self._reaper is not None and self._reaper.alive else []
        check_often = False  # a re-attached trial without a pidfd, or one whose exit code is awaited
        for proc in self.procs.values():
            if proc.ended is not None:
                return
            if proc.reaper is None:
                if proc.pidfd is not None and proc.gone_at is None:
                    fds.append(proc.pidfd)
                else:
                    check_often = True
        limit = min(timeout, 0.05) if check_often else timeout
        if fds:
            select.select(fds, [], [], limit)
        else:
            time.sleep(limit)

    def _reaper_lost(self, reaper: _Reaper) -> None:
        """The reaper died (killed from outside): watch its trials as re-attached ones; the next submit starts
        another reaper."""
        code = reaper.poll()
        self._take_events(reaper)  # what it said before it ended
        orphans = [p for p in self.procs.values() if p.reaper is reaper and p.ended is None]
        logger.warning(
            "the local reaper process (pid %s) ended unexpectedly (exit code %s); %d running trial(s) will end "
            "without a recorded exit code",
            reaper.pid,
            code,
            len(orphans),
        )
        for proc in self.procs.values():
            if proc.reaper is reaper:
                proc.reaper = None
                if proc.ended is None and proc.pid is not None:
                    proc.pidfd = _pidfd_open(proc.pid)
        reaper.close()
        self._reaper = None

    def _finish(self, trial_id: str, code: int | None, when: float | None = None) -> TrialEnd:
        proc = self.procs.pop(trial_id)
        if proc.pidfd is not None:
            os.close(proc.pidfd)
        self.gpus.release(trial_id)
        # the group may still hold children the trial left behind: end them with it
        self._signal_group(proc, signal.SIGKILL)
        error = None
        if code != 0:
            error = protocol.stderr_tail(proc.job.trial_dir)
            if code is None and not error:
                error = "the trial process ended without an exit code"
        return TrialEnd(trial_id, code if isinstance(code, int) else None, when or time.time(), error)

    # --- stopping ---------------------------------------------------------------------------------------------
    def _signal_group(self, proc: _Proc, sig: int) -> None:
        if proc.pid is None:  # its command could not be started
            return
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self, trial_id: str, *, grace: float = 10.0) -> None:
        proc = self.procs.get(trial_id)
        if proc is None or proc.term_at is not None:
            return
        proc.term_at = time.time()
        proc.kill_at = proc.term_at + grace
        self._signal_group(proc, signal.SIGTERM)

    def _graceful_deadline(self, trial_id: str, deadline: float) -> None:
        proc = self.procs.get(trial_id)
        if proc is not None:
            proc.graceful_until = deadline

    def _escalate(self) -> None:
        now = time.time()
        for trial_id, proc in self.procs.items():
            if proc.graceful_until is not None and proc.term_at is None and now >= proc.graceful_until:
                logger.info("trial %s did not stop by itself in time; terminating it", trial_id)
                self.terminate(trial_id)
            if proc.kill_at is not None and now >= proc.kill_at:
                self._signal_group(proc, signal.SIGKILL)
                proc.kill_at = None

    def shutdown(self) -> None:
        for proc in self.procs.values():
            if proc.pidfd is not None:
                os.close(proc.pidfd)
        running = bool(self.procs)
        self.procs.clear()
        if self._reaper is not None:  # it exits at once, or once the trials it still runs have ended
            self._reaper.close(wait=0 if running else 5.0)
            self._reaper = None
