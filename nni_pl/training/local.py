"""The local training service: each trial is a process group on this machine.

A trial runs ``run.sh`` in the trial code directory. ``run.sh`` (kept in the trial directory, so a
trial can be re-run by hand) exports NNI's environment variables, runs the trial command and writes the
exit code to ``.nni/exitcode``. A plain command (words and quotes only, e.g. ``python train.py --lr 0.1``)
means the same to every POSIX shell and runs under ``/bin/sh``, which starts faster than bash (dash on
Debian: about 1 ms less per trial); any other command (expansions, redirections, pipes, bash syntax) runs
under bash, as in NNI. Because each trial is its own session, a Ctrl-C in the terminal reaches
only the manager, and a manager that dies (even by SIGKILL) leaves its trials running: ``resume``
re-attaches to them, or collects their exit codes and metrics if they ended meanwhile.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nni_pl._config_readers import check_keys, read_bool, read_gpu_indices, read_int
from nni_pl.training.process import alive as _alive
from nni_pl.training.process import pidfd_open as _pidfd_open
from nni_pl.training.process import process_start_time
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


def _plain_command(command: str) -> bool:
    """Whether ``command`` is one simple command that bash and any POSIX ``sh`` run alike.

    Words, ``VAR=value`` prefixes, single-quoted text and double-quoted text without ``$``, backquotes or
    backslashes qualify; a first word that is a bash builtin or keyword does not.

    Example:
        >>> _plain_command("python train.py --lr 0.1 --name 'a b$c'")
        True
        >>> [_plain_command(c) for c in ("python t.py > log", "echo -e x", "source env.sh; python t.py")]
        [False, False, False]
    """
    quote = None  # the quote we are inside of
    for ch in command:
        if quote == "'":
            quote = None if ch == "'" else quote
        elif quote == '"':
            if ch in "$`\\":
                return False
            quote = None if ch == '"' else quote
        elif ch in "'\"":
            quote = ch
        elif ch not in _PLAIN_CHARS:
            return False
    if quote is not None:
        return False
    words = shlex.split(command)
    while words and _ASSIGNMENT.match(words[0]):
        words.pop(0)
    return bool(words) and words[0] not in _BASH_WORDS


def _nvidia_smi(query: str) -> list[str] | None:
    """Lines of ``nvidia-smi --query-...=... --format=csv,noheader``; ``None`` without a working nvidia-smi."""
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
def _plain_command_cached(command: str) -> bool:
    return _plain_command(command)


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


@dataclass
class _Proc:
    pid: int
    pid_started_at: float | None
    job: TrialJob
    popen: subprocess.Popen[bytes] | None  # None for a re-attached process (not our child)
    pidfd: int | None
    term_at: float | None = None  # when SIGTERM was sent
    kill_at: float | None = None  # when to send SIGKILL
    graceful_until: float | None = None  # a graceful stop was requested; terminate after this


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

    @classmethod
    def from_spec(cls, spec: ServiceSpec) -> LocalTrainingService:
        """The service of ``trainingService: {platform: local}`` for an experiment (see :mod:`.platforms`)."""
        from nni_pl.training.lightning_cli import lightning_cli_args

        section = spec.section if isinstance(spec.section, LocalConfig) else LocalConfig()
        if spec.trial_command is None:
            raise ValueError("the local training service runs a trialCommand; none was given")
        mode = spec.lightning_cli
        return cls(
            command=spec.trial_command,
            code_directory=spec.trial_code_directory,
            concurrency=spec.trial_concurrency,
            gpu_number=spec.trial_gpu_number,
            gpu_indices=section.gpu_indices,
            max_trial_number_per_gpu=section.max_trial_number_per_gpu,
            use_active_gpu=section.use_active_gpu,
            extra_args=lambda params: lightning_cli_args(params, mode),
        )

    # --- scheduling ---------------------------------------------------------------------------------------
    def free_slots(self) -> int:
        free = self.concurrency - len(self.procs)
        if free <= 0 or not self.gpu_number:
            return max(free, 0)
        return 1 if self.gpus.can_acquire() else 0

    def running(self) -> set[str]:
        return set(self.procs)

    def _script(self, job: TrialJob, gpus: list[int] | None) -> str:
        env = job.environment(self.platform)
        if self.gpu_number is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus or []))
        command = self._command(job)
        shell = "sh" if _HAVE_SH and _plain_command_cached(command) else "bash"
        lines = [
            "#!/bin/sh" if shell == "sh" else "#!/usr/bin/env bash",
            f"# written by nni-pl; `{shell} run.sh` from the trial code directory re-runs this trial",
        ]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
        lines.append(self._path_line)
        # Lightning's default loggers and checkpoints go to the trial directory unless the user chose a place
        root = protocol.ENV_DEFAULT_ROOT_DIR
        lines.append(f"export {root}=${{{root}:-{shlex.quote(str(job.trial_dir))}}}")
        lines.append(self._cd_line)
        lines.append(command)
        ctl = shlex.quote(str(job.control_dir / protocol.EXITCODE_FILE))
        lines.append("__nni_pl_rc=$?")
        if shell == "sh":  # no $EPOCHREALTIME in POSIX sh: the file's modification time is the end time
            lines.append(f'printf "%s\\n" "$__nni_pl_rc" > {ctl}')
        else:
            lines.append(f'printf "%s %s\\n" "$__nni_pl_rc" "$EPOCHREALTIME" > {ctl}')
        lines.append("exit $__nni_pl_rc")
        return "\n".join(lines) + "\n"

    @functools.cached_property
    def _path_line(self) -> str:
        # `python` in the trial command means the interpreter nni-pl runs under, even without an activated venv
        return f"export PATH={shlex.quote(os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))}"

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

    def submit(self, job: TrialJob) -> SubmitInfo:
        gpus = self.gpus.acquire(job.trial_id)
        if gpus is None:
            raise RuntimeError("no GPU free; call free_slots() before submit()")
        # the trial directory and its .nni/ exist (the parameter file was written); plain os calls below, as this
        # runs once per trial on the manager's hot path
        folder = os.fspath(job.trial_dir)
        script = os.path.join(folder, "run.sh")
        text = self._script(job, gpus)
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, text.encode("utf-8"))
        finally:
            os.close(fd)
        shell = "/bin/sh" if text.startswith("#!/bin/sh") else "bash"
        started = time.time()
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        out = os.open(os.path.join(folder, protocol.STDOUT_FILE), flags, 0o644)
        try:
            err = os.open(os.path.join(folder, protocol.STDERR_FILE), flags, 0o644)
            try:
                popen = subprocess.Popen(
                    [shell, script],
                    cwd=self.code_directory,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,  # own process group: we signal the whole tree; Ctrl-C does not reach it
                )
            finally:
                os.close(err)
        finally:
            os.close(out)
        pid_started = process_start_time(popen.pid)
        protocol.write_pid(job.trial_dir, popen.pid, pid_started)
        self.procs[job.trial_id] = _Proc(popen.pid, pid_started, job, popen, _pidfd_open(popen.pid))
        return SubmitInfo(
            pid=popen.pid,
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
    def _exit_of(self, proc: _Proc) -> int | bool | None:
        """Exit code if ended (None if unknown), False if still running."""
        if proc.popen is not None:
            code = proc.popen.poll()
            if code is None:
                return False
            if code >= 0:
                return code  # the wrapper exits with the trial's code (it wrote it to .nni/exitcode for reattach)
            # the wrapper was signalled: it may have recorded the trial's code just before
            ended = protocol.read_exitcode(proc.job.trial_dir)
            return ended[0] if ended is not None else 128 - code  # killed by a signal: shell convention
        if _alive(proc.pid, proc.pid_started_at):
            return False
        ended = protocol.read_exitcode(proc.job.trial_dir)
        return ended[0] if ended is not None else None

    def poll(self, timeout: float) -> list[TrialEnd]:
        self._escalate()
        fds = [p.pidfd for p in self.procs.values() if p.pidfd is not None]
        if timeout > 0:
            if fds and len(fds) == len(self.procs):
                select.select(fds, [], [], timeout)
            else:
                time.sleep(min(timeout, 0.05) if self.procs else timeout)
        ends = []
        for trial_id, proc in list(self.procs.items()):
            code = self._exit_of(proc)
            if code is False:
                continue
            ends.append(self._finish(trial_id, code))
        return ends

    def _finish(self, trial_id: str, code: int | None) -> TrialEnd:
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
        return TrialEnd(trial_id, code if isinstance(code, int) else None, time.time(), error)

    # --- stopping ---------------------------------------------------------------------------------------------
    def _signal_group(self, proc: _Proc, sig: int) -> None:
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
        self.procs.clear()
