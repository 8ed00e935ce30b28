"""Function trials: a Python function called in pre-warmed worker processes.

Each worker is started once, imports the trial function's module (and so torch/lightning, if the
function uses them) once, then runs trial after trial: a trial costs a message, a directory and a few
store writes instead of a process start. The trial function reports through the same trial SDK and the
same durable ``metrics.jsonl`` as a command trial; its stdout/stderr go to the trial directory.

The function gets the parameters if it takes an argument (``fn(params)``) and may instead call
``nni_pl.get_next_parameter()``. If it returns a number or a dict with ``default`` and has not reported
a final result, the return value becomes the final result.
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
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from nni_pl.training._base import (
    EXITCODE_FILE,
    SubmitInfo,
    TrainingService,
    TrialEnd,
    TrialJob,
    read_exitcode,
    stderr_tail,
)

__all__ = ["FunctionTrainingService"]

logger = logging.getLogger(__name__)


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


def _run_one(fn: Callable[..., Any], takes_arg: bool, job: dict[str, Any]) -> tuple[int, str | None]:
    from nni_pl.trial._context import ENV_DEFAULT_ROOT_DIR, FINAL, TrialContext, activate

    trial_dir = Path(job["trial_dir"])
    ctx = TrialContext(
        experiment_id=job["experiment_id"],
        trial_id=job["trial_id"],
        sequence_id=job["sequence_id"],
        trial_dir=trial_dir,
        parameters=job["parameters"],
    )
    activate(ctx)
    code, error = 0, None
    # Lightning's default loggers and checkpoints go to the trial directory unless the user chose a place
    root_env = os.environ.get(ENV_DEFAULT_ROOT_DIR)
    if not root_env:
        os.environ[ENV_DEFAULT_ROOT_DIR] = str(trial_dir)
    try:
        with _redirect(trial_dir):
            try:
                result = fn(dict(job["parameters"])) if takes_arg else fn()
                if result is not None and not ctx._final_reported:
                    ctx.report(FINAL, result)
            except BaseException as e:
                if isinstance(e, SystemExit) and e.code in (0, None):
                    code = 0
                else:
                    code = 1
                    error = traceback.format_exc()
                    sys.stderr.write(error)
    finally:
        if not root_env:
            os.environ.pop(ENV_DEFAULT_ROOT_DIR, None)
        ctx.close()
        activate(None)
    with contextlib.suppress(OSError):
        (trial_dir / ".nni").mkdir(exist_ok=True)
        (trial_dir / ".nni" / EXITCODE_FILE).write_text(f"{code} {time.time()}\n", encoding="utf-8")
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


def _worker_main(conn: Connection, payload: bytes | None, preload: Sequence[str]) -> None:
    # The manager owns Ctrl-C; a worker just finishes its trial or gets terminated.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
        try:
            conn.send(("done", job["trial_id"], code, error))
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    conn: Connection
    ready: bool = False
    trial_id: str | None = None
    started_at: float | None = None
    kill_at: float | None = None
    graceful_until: float | None = None
    doomed: bool = False  # told to stop (or found dead): never given another trial


class FunctionTrainingService(TrainingService):
    """Runs a Python function as trials in ``concurrency`` long-lived worker processes.

    Args:
        fn: the trial function. Picklable functions (defined at module level, also in the script or notebook
            that runs the experiment, which then travels by value) run in ``spawn`` workers, which never import
            the user's main script; others (lambdas, closures) in ``fork`` workers.
        concurrency: number of workers.
        preload: modules every worker imports before its first trial (e.g. ``["torch", "lightning.pytorch"]``).
        start_method: force ``"spawn"``, ``"forkserver"`` or ``"fork"``.

    Example:
        >>> def objective(params):
        ...     return (params["x"] - 2) ** 2
        >>> service = FunctionTrainingService(objective, concurrency=2)  # doctest: +SKIP
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
        proc = self._ctx.Process(
            target=_worker_main, args=(child, self._payload, self.preload), daemon=False, name="nni-pl-worker"
        )  # not daemonic: trials may start DataLoader workers
        with _main_module_hidden(self.start_method != "fork"):
            proc.start()
        child.close()
        worker = _Worker(proc, parent)
        self.workers.append(worker)
        return worker

    def start(self, *, wait_ready: bool = True, timeout: float = 300.0) -> None:
        """Start the workers (and wait until they imported the function and the preloads)."""
        while len(self.workers) < self.concurrency:
            self._spawn()
        if wait_ready:
            deadline = time.time() + timeout
            while not all(w.ready for w in self.workers):
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
        code = worker.process.exitcode
        ends = []
        if worker.trial_id is not None:
            job = self.jobs.pop(worker.trial_id, None)
            exit_code = code if code is not None and code >= 0 else 128 - (code or 0)
            error = stderr_tail(job.trial_dir) if job else None
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
        elif not worker.ready:
            raise RuntimeError(
                f"a function-trial worker failed to start (exit code {code}); its error is above. The modules of "
                f"`preload` ({', '.join(self.preload) or 'none'}) and of the trial function must import in a fresh "
                "Python process."
            )
        # keep the pool full (a replacement imports everything again)
        if len(self.workers) < self.concurrency:
            self._spawn()
        return ends

    # --- TrainingService ------------------------------------------------------------------------------------
    @staticmethod
    def _idle(w: _Worker) -> bool:
        return w.ready and w.trial_id is None and not w.doomed and w.process.is_alive()

    def free_slots(self) -> int:
        return sum(1 for w in self.workers if self._idle(w))

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
        return SubmitInfo(pid=worker.process.pid, host=self.host, started_at=worker.started_at)

    def reattach(self, job: TrialJob, pid: int | None, pid_started_at: float | None) -> TrialEnd | bool:
        ended = read_exitcode(job.control_dir)
        if ended is not None:
            code, when = ended
            return TrialEnd(job.trial_id, code, when, stderr_tail(job.trial_dir) if code != 0 else None)
        if pid is None:
            return False
        # its worker belonged to the manager that is gone: the call cannot be re-attached
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
            if w.kill_at is not None and now >= w.kill_at and w.process.is_alive():
                w.process.kill()
        return self._receive(timeout)

    def terminate(self, trial_id: str, *, grace: float = 10.0) -> None:
        # a trial is a call inside a worker: stopping it means ending that worker (a fresh one replaces it)
        for w in self.workers:
            if w.trial_id == trial_id and w.kill_at is None:
                w.doomed = True
                w.kill_at = time.time() + grace
                w.process.terminate()

    def _graceful_deadline(self, trial_id: str, deadline: float) -> None:
        for w in self.workers:
            if w.trial_id == trial_id:
                w.graceful_until = deadline

    def shutdown(self) -> None:
        for w in self.workers:
            if w.process.is_alive():
                with contextlib.suppress(OSError, BrokenPipeError):
                    w.conn.send(("exit",))
        deadline = time.time() + 5
        for w in self.workers:
            w.process.join(timeout=max(0.0, deadline - time.time()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
            w.conn.close()
        self.workers.clear()
