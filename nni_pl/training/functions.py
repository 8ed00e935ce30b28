"""Function trials: a Python function called in pre-warmed worker processes.

Each worker is started once, imports the trial function's module (and so torch/lightning, if the
function uses them) once, then runs trial after trial: a trial costs a message, a directory and a few
store writes instead of a process start. The trial function reports through the same trial SDK and the
same durable ``metrics.jsonl`` as a command trial; its stdout/stderr go to the trial directory.

The function gets the parameters if it takes an argument (``fn(params)``) and may instead call
``nni_pl.get_next_parameter()``. If it returns a number or a dict with ``default`` and has not reported
a final result, the return value becomes the final result.

Each worker is its own session (process group), as a local trial is: stopping a trial (a kill, an assessor,
``maxTrialDuration``) signals the worker's whole group, so processes the trial started end with it, and a
fresh worker replaces the stopped one. A Ctrl-C in the terminal reaches only the manager, which ends the
workers on its way out. Workers die with the manager (the thread that started them): on Linux the kernel
SIGKILLs them (``PR_SET_PDEATHSIG``); elsewhere a watchdog thread in each worker ends its group once its
parent is gone. A trial therefore never outlives its manager (``reattaches_trials`` is ``False``): a resumed
manager records it lost and runs its parameters again.

A trial that calls ``sys.exit(n)`` ends with exit code ``n`` (``sys.exit()`` and ``sys.exit(0)`` succeed,
``sys.exit("text")`` writes the text to stderr and exits 1), as a command trial would.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import multiprocessing as mp
import os
import pickle
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from nni_pl.training.process import alive, process_start_time
from nni_pl.training.service import SubmitInfo, TrainingService, TrialEnd, TrialJob
from nni_pl.trial import protocol

__all__ = ["FunctionTrainingService"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PARENT_CHECK_S = 1.0  # how often a worker without PR_SET_PDEATHSIG looks for its parent


def _takes_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return bool(positional)


@contextlib.contextmanager
def _redirect(trial_dir: Path):
    """Point fds 1 and 2 (so C-level output too) at the trial's stdout/stderr files."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    out = os.open(trial_dir / "stdout", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    err = os.open(trial_dir / "stderr", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(out)
    os.close(err)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _exit_status(code: object) -> tuple[int, str | None]:
    """The exit code of ``sys.exit(code)``, as Python's own exit gives it, and the text it writes to stderr."""
    if code is None:
        return 0, None
    if isinstance(code, int):
        return code & 0xFF, None  # what the OS keeps of a process's exit status
    return 1, str(code)


def _run_one(fn: Callable[..., Any], takes_arg: bool, job: dict[str, Any]) -> tuple[int, str | None]:
    from nni_pl.trial import FINAL, TrialContext, activate
    from nni_pl.trial.protocol import ENV_DEFAULT_ROOT_DIR

    trial_dir = Path(job["trial_dir"])
    ctx = TrialContext(
        experiment_id=job["experiment_id"],
        trial_id=job["trial_id"],
        sequence_id=job["sequence_id"],
        trial_dir=trial_dir,
        parameters=job["parameters"],
    )
    activate(ctx)
    code, error, exit_arg = 0, None, None
    # Lightning's default loggers and checkpoints go to the trial directory unless the user chose a place
    root_env = os.environ.get(ENV_DEFAULT_ROOT_DIR)
    if not root_env:
        os.environ[ENV_DEFAULT_ROOT_DIR] = str(trial_dir)
    try:
        with _redirect(trial_dir):
            try:
                result = fn(dict(job["parameters"])) if takes_arg else fn()
                if result is not None and not ctx.final_reported:
                    ctx.report(FINAL, result)
            except SystemExit as e:  # the trial ends as a process would: its code, its stderr
                exit_arg = e.code
                code, text = _exit_status(e.code)
                if text is not None:
                    sys.stderr.write(text + "\n")
            except BaseException:
                code = 1
                error = traceback.format_exc()
                sys.stderr.write(error)
    finally:
        if not root_env:
            os.environ.pop(ENV_DEFAULT_ROOT_DIR, None)
        ctx.close()
        activate(None)
    if code and error is None:  # sys.exit(n): what the trial said before, as for a command trial
        error = protocol.stderr_tail(trial_dir) or (
            f"the trial function called sys.exit({exit_arg!r}) and wrote nothing to stderr"
        )
    with contextlib.suppress(OSError):
        (trial_dir / protocol.CONTROL_DIR).mkdir(exist_ok=True)
        (trial_dir / protocol.CONTROL_DIR / protocol.EXITCODE_FILE).write_text(
            f"{code} {time.time()}\n", encoding="utf-8"
        )
    return code, error


_fork_fn: Callable[..., Any] | None = None  # the function fork workers inherit (it need not pickle)


def _pickled(fn: Callable[..., Any]) -> bytes:
    """The trial function for a spawned worker. One that lives in the user's script or notebook (``__main__``)
    goes by value (cloudpickle), so the worker never runs that script again; others go by reference."""
    payload = pickle.dumps(fn)
    if b"__main__" in payload:
        import cloudpickle

        payload = cloudpickle.dumps(fn)
    return payload


@contextlib.contextmanager
def _main_module_hidden(hide: bool) -> Iterator[None]:
    """Start a spawn/forkserver worker without the user's ``__main__``.

    multiprocessing re-runs the parent's main script in every spawned child (so that functions pickled by name
    can be found there). Run unguarded, as a README snippet or a notebook is, that script would start a new
    experiment in every worker. The trial function travels by value instead (:func:`_pickled`), so the child
    is told nothing about the script: ``__main__`` looks like an interactive session while it starts.
    """
    main = sys.modules.get("__main__")
    if not hide or main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _in_own_group() -> bool:
    return os.getpgrp() == os.getpid()


def _end_own_group() -> None:
    """End this worker and every process its trials started (its process group). Never returns."""
    if _in_own_group():  # never the manager's group
        with contextlib.suppress(OSError):
            os.killpg(0, signal.SIGKILL)
    os._exit(1)


def _die_with_parent() -> bool:
    """Have the kernel SIGKILL this process when the thread that started it ends (Linux ``PR_SET_PDEATHSIG``).

    Returns ``False`` where that is not available.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    """A worker's watchdog where the kernel does not end it with its parent: end its group once ``parent`` is
    gone (the worker is then re-parented)."""
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK_S)
    _end_own_group()


def _worker_main(conn: Connection, payload: bytes | None, preload: Sequence[str], parent: int | None) -> None:
    # Its own session, as a local trial: terminate() signals the worker with every process its trial started,
    # and a Ctrl-C in the terminal reaches only the manager, which ends the workers on its way out.
    with contextlib.suppress(OSError):
        os.setsid()
    # The manager owns Ctrl-C and SIGTERM (a fork worker inherits its Python handlers): a worker finishes its
    # trial or gets terminated.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = os.getppid() if parent is None else parent
    if not _die_with_parent():
        threading.Thread(
            target=_watch_parent, args=(parent,), name="nni-pl-parent-watch", daemon=True
        ).start()
    if os.getppid() != parent:  # the manager ended before the kernel was told to end this worker with it
        _end_own_group()
    for name in preload:
        __import__(name)
    fn = pickle.loads(payload) if payload is not None else _fork_fn
    assert fn is not None
    takes_arg = _takes_argument(fn)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the manager is gone
        if msg[0] == "exit":
            return
        job = msg[1]
        code, error = _run_one(fn, takes_arg, job)
        if os.getppid() != parent:
            _end_own_group()  # the manager is gone: whatever this worker did next would land unheard
        try:
            conn.send(("done", job["trial_id"], code, error))
        except (BrokenPipeError, OSError):
            return


def _signal_group(pid: int, sig: int, *, reaped: bool = False) -> None:
    """Signal worker ``pid`` with every process its trials started (its process group).

    Call it only while the worker is not reaped (its pid cannot name another process), or with ``reaped``
    right after reaping it, for what it left behind (the group keeps its id while it has members).
    """
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:  # no group: a worker still starting (before its setsid()), or nothing left
        if not reaped:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
    except PermissionError:
        pass


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    conn: Connection
    pid_started_at: float | None = None
    ready: bool = False
    trial_id: str | None = None
    started_at: float | None = None
    kill_at: float | None = None
    killed: bool = False  # SIGKILL sent
    graceful_until: float | None = None
    doomed: bool = False  # told to stop (or found dead, or retired): never given another trial


class FunctionTrainingService(TrainingService):
    """Runs a Python function as trials in ``concurrency`` long-lived worker processes.

    Args:
        fn: the trial function. Picklable functions (defined at module level, also in the script or notebook
            that runs the experiment, which then travels by value) run in ``spawn`` workers, which never import
            the user's main script; others (lambdas, closures) in ``fork`` workers.
        concurrency: number of workers.
        preload: modules every worker imports before its first trial (e.g. ``["torch", "lightning.pytorch"]``).
        start_method: force ``"spawn"``, ``"forkserver"`` or ``"fork"``.

    Start it and call it from one thread, as the manager does: on Linux a worker ends with the thread that
    started it (``PR_SET_PDEATHSIG``).

    Example:
        What the manager does with it, for one trial:

        >>> import tempfile
        >>> from pathlib import Path
        >>> from nni_pl.training.service import TrialJob
        >>> from nni_pl.trial.protocol import MetricsReader
        >>> def objective(params):
        ...     return (params["x"] - 2) ** 2  # the return value is the final result
        >>> service = FunctionTrainingService(objective, concurrency=1)
        >>> service.start()
        >>> job = TrialJob(experiment_id="e", trial_id="t0", sequence_id=0, parameter_id=0,
        ...                parameter_source="algorithm", parameters={"x": 5}, trial_dir=Path(tempfile.mkdtemp()))
        >>> _ = service.submit(job)
        >>> ends = []
        >>> while not ends:
        ...     ends = service.poll(timeout=1.0)
        >>> ends[0].exit_code, [r["value"] for r in MetricsReader(job.trial_dir).read()]
        (0, [9])
        >>> service.shutdown()
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        concurrency: int = 1,
        preload: Sequence[str] = (),
        start_method: str | None = None,
    ) -> None:
        self.fn = fn
        self.concurrency = concurrency
        self.preload = tuple(preload)
        self.host = socket.gethostname()
        try:
            self._payload: bytes | None = _pickled(fn)
            method = start_method or "spawn"
        except (pickle.PicklingError, AttributeError, TypeError):
            self._payload = None
            method = start_method or "fork"
            if method != "fork":
                raise ValueError(
                    f"the trial function {fn!r} cannot be pickled, so it can only run in fork workers"
                ) from None
        self.start_method = method
        self._ctx = mp.get_context(method)
        self.workers: list[_Worker] = []
        self.jobs: dict[str, TrialJob] = {}

    # --- workers ----------------------------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        global _fork_fn
        parent, child = self._ctx.Pipe()
        if self._payload is None:
            _fork_fn = self.fn
        # the worker checks that this process is its parent; a forkserver worker's parent is the fork server
        manager = None if self.start_method == "forkserver" else os.getpid()
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child, self._payload, self.preload, manager),
            daemon=False,  # not daemonic: trials may start DataLoader workers
            name="nni-pl-worker",
        )
        with _main_module_hidden(self.start_method != "fork"):
            proc.start()
        child.close()
        assert proc.pid is not None
        worker = _Worker(proc, parent, pid_started_at=process_start_time(proc.pid))
        self.workers.append(worker)
        return worker

    def _fit_pool(self) -> None:
        """Keep ``concurrency`` workers, busy or idle: start the missing ones (warm, ready for the next trial)
        and retire idle ones beyond it (busy ones finish their trial first and go at a later call)."""
        live = [w for w in self.workers if not w.doomed]
        for _ in range(self.concurrency - len(live)):
            self._spawn()
        surplus = len(live) - self.concurrency
        if surplus <= 0:
            return
        idle = sorted((w for w in live if w.trial_id is None), key=lambda w: w.ready)  # still starting: first
        for w in idle[:surplus]:
            w.doomed = True
            with contextlib.suppress(OSError):
                w.conn.send(("exit",))  # it exits; _receive reaps it

    def start(self, *, wait_ready: bool = True, timeout: float = 300.0) -> None:
        """Start the workers (and wait until they imported the function and the preloads)."""
        self._fit_pool()
        if wait_ready:
            deadline = time.time() + timeout
            while not all(w.ready for w in self.workers if not w.doomed):
                if time.time() > deadline:
                    raise RuntimeError(f"function-trial workers did not start within {timeout:.0f} s")
                self._receive(0.1)

    def _receive(self, timeout: float) -> list[TrialEnd]:
        ends: list[TrialEnd] = []
        waitables: list[Any] = []
        for w in self.workers:
            waitables += [w.conn, w.process.sentinel]
        if not waitables:
            time.sleep(timeout)
            return ends
        ready = wait(waitables, timeout)
        for w in list(self.workers):
            if w.conn in ready:
                try:
                    while w.conn.poll():
                        msg = w.conn.recv()
                        if msg[0] == "ready":
                            w.ready = True
                        elif msg[0] == "done":
                            _, trial_id, code, error = msg
                            ends.append(self._done(w, trial_id, code, error))
                except (EOFError, OSError):
                    pass
            if w.process.sentinel in ready and not w.process.is_alive():
                ends += self._worker_died(w)
        return ends

    def _done(self, worker: _Worker, trial_id: str, code: int, error: str | None) -> TrialEnd:
        # a worker told to stop may finish its call before the signal lands: it stays doomed (and its kill
        # deadline stands), so no trial is handed to a process that is about to die
        worker.trial_id = None
        worker.graceful_until = None
        job = self.jobs.pop(trial_id, None)
        if error and job is not None:
            error = error.strip()[-4000:]
        return TrialEnd(trial_id, code, time.time(), error)

    def _worker_died(self, worker: _Worker) -> list[TrialEnd]:
        worker.process.join(timeout=0)
        self.workers.remove(worker)
        worker.conn.close()
        assert worker.process.pid is not None
        # processes its trials started and left behind end with it (they hold its group id, so it is not reused)
        _signal_group(worker.process.pid, signal.SIGKILL, reaped=True)
        code = worker.process.exitcode
        ends = []
        if worker.trial_id is not None:
            job = self.jobs.pop(worker.trial_id, None)
            exit_code = code if code is not None and code >= 0 else 128 - (code or 0)
            error = protocol.stderr_tail(job.trial_dir) if job else None
            ends.append(
                TrialEnd(
                    worker.trial_id,
                    exit_code,
                    time.time(),
                    # stopped on purpose (user, assessor, timeout): the status says why, it is no crash
                    error
                    or (
                        None if worker.kill_at is not None else f"the worker process died (exit code {code})"
                    ),
                )
            )
        elif not worker.ready and not worker.doomed:
            raise RuntimeError(
                f"a function-trial worker failed to start (exit code {code}); its error is above. The modules of "
                f"`preload` ({', '.join(self.preload) or 'none'}) and of the trial function must import in a fresh "
                "Python process."
            )
        self._fit_pool()  # a replacement imports everything again
        return ends

    def _signal(self, worker: _Worker, sig: int) -> None:
        if worker.process.exitcode is None:  # not reaped: its pid is still its own
            assert worker.process.pid is not None
            _signal_group(worker.process.pid, sig)

    # --- TrainingService ------------------------------------------------------------------------------------
    @staticmethod
    def _idle(w: _Worker) -> bool:
        return w.ready and w.trial_id is None and not w.doomed and w.process.is_alive()

    def free_slots(self) -> int:
        busy = sum(1 for w in self.workers if w.trial_id is not None)
        idle = sum(1 for w in self.workers if self._idle(w))
        return max(0, min(idle, self.concurrency - busy))

    def set_concurrency(self, concurrency: int) -> None:
        """Apply a live change of ``trialConcurrency``: more workers start now (and take trials once ready);
        idle workers beyond the new number stop now, busy ones once their trial ended."""
        self.concurrency = concurrency
        self._fit_pool()

    def running(self) -> set[str]:
        return {w.trial_id for w in self.workers if w.trial_id is not None}

    def submit(self, job: TrialJob) -> SubmitInfo:
        candidates = [w for w in self.workers if self._idle(w)]
        if not candidates:
            raise RuntimeError("no idle worker; call free_slots() before submit()")
        job.control_dir.mkdir(parents=True, exist_ok=True)
        message = (
            "run",
            {
                "experiment_id": job.experiment_id,
                "trial_id": job.trial_id,
                "sequence_id": job.sequence_id,
                "parameters": job.parameters,
                "trial_dir": str(job.trial_dir),
            },
        )
        for worker in candidates:
            try:
                worker.conn.send(message)
            except (BrokenPipeError, OSError):
                worker.doomed = True  # died since free_slots(); _receive reaps it and keeps the pool full
                continue
            return self._assign(worker, job)
        # every idle worker had died: a fresh one runs the trial as soon as it has started (the message waits
        # in its pipe)
        worker = self._spawn()
        worker.conn.send(message)
        return self._assign(worker, job)

    def _assign(self, worker: _Worker, job: TrialJob) -> SubmitInfo:
        worker.trial_id = job.trial_id
        worker.started_at = time.time()
        self.jobs[job.trial_id] = job
        return SubmitInfo(
            pid=worker.process.pid,
            host=self.host,
            started_at=worker.started_at,
            pid_started_at=worker.pid_started_at,
        )

    def reattach(
        self,
        job: TrialJob,
        pid: int | None,
        pid_started_at: float | None,
        gpu_indices: Sequence[int] | None = None,
    ) -> TrialEnd | bool:
        """On resume: a trial that ended meanwhile is reported as it ended; one whose worker still runs (it
        belonged to the manager that is gone, so the call cannot be picked up) is ended with everything it
        started and reported lost (``exit_code=None``: the manager runs it again); one never started is
        ``False``. Function trials hold no GPUs of their own, so ``gpu_indices`` is not used."""
        ended = protocol.read_exitcode(job.trial_dir)
        if ended is None and pid is not None and pid_started_at is not None and alive(pid, pid_started_at):
            # the worker (same pid, same start time) outlived its manager: end it before the trial is recorded
            # lost, so nothing it writes lands after that
            _signal_group(pid, signal.SIGKILL)
            ended = protocol.read_exitcode(job.trial_dir)  # it may have ended by itself meanwhile
        if ended is not None:
            code, when = ended
            return TrialEnd(
                job.trial_id, code, when, protocol.stderr_tail(job.trial_dir) if code != 0 else None
            )
        if pid is None:
            return False
        return TrialEnd(
            job.trial_id,
            None,
            time.time(),
            "the worker running this function trial was lost with its manager",
        )

    def poll(self, timeout: float) -> list[TrialEnd]:
        now = time.time()
        for w in self.workers:
            if w.graceful_until is not None and now >= w.graceful_until and w.kill_at is None and w.trial_id:
                self.terminate(w.trial_id)
            if w.kill_at is not None and now >= w.kill_at and not w.killed:
                w.killed = True
                self._signal(w, signal.SIGKILL)
        ends = self._receive(timeout)
        # after _receive: a replacement started now cannot be offered before the next poll
        self._fit_pool()
        return ends

    def terminate(self, trial_id: str, *, grace: float = 10.0) -> None:
        # a trial is a call inside a worker: stopping it means ending that worker's process group (a fresh
        # worker replaces it)
        for w in self.workers:
            if w.trial_id == trial_id and w.kill_at is None:
                w.doomed = True
                w.kill_at = time.time() + grace
                self._signal(w, signal.SIGTERM)

    def _graceful_deadline(self, trial_id: str, deadline: float) -> None:
        for w in self.workers:
            if w.trial_id == trial_id:
                w.graceful_until = deadline

    def shutdown(self) -> None:
        """End every worker with whatever its trials left running (idle workers exit by themselves first)."""
        for w in self.workers:
            w.doomed = True
            if not w.ready:  # still importing: nothing to finish
                self._signal(w, signal.SIGKILL)
            with contextlib.suppress(OSError):
                w.conn.send(("exit",))
        deadline = time.time() + 5
        pending = {w.process.sentinel for w in self.workers}
        try:
            while pending and time.time() < deadline:  # sentinels: waiting reaps nobody
                pending -= set(wait(list(pending), max(0.0, deadline - time.time())))
        finally:  # also after a Ctrl-C meanwhile: workers are in their own sessions, it never reached them
            for w in self.workers:
                self._signal(w, signal.SIGKILL)  # a worker that did not exit (busy or stuck)
                w.process.join(timeout=5)
                w.conn.close()
                assert w.process.pid is not None
                _signal_group(w.process.pid, signal.SIGKILL, reaped=True)  # what its trials left behind
            self.workers.clear()
