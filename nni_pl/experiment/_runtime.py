"""The process around a running manager: its lock, its log file and what signals do meanwhile."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nni_pl.errors import NniPlError
from nni_pl.experiment import locate
from nni_pl.experiment._setup import private_fd

LOG_LEVELS = {
    "trace": 5,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}


@contextlib.contextmanager
def manager_lock(directory: Path, experiment_id: str) -> Iterator[None]:
    """One manager per experiment: an exclusive lock on its folder's ``.manager.lock`` (a killed manager's
    lock is released with it).

    Raises:
        NniPlError: another manager holds it.
    """
    path = locate.lock_path(directory)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NniPlError(
                f"experiment {experiment_id} is already running (another manager holds {path}); stop it first"
            ) from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def log_file(directory: Path, log_level: str | None) -> Iterator[None]:
    """nni-pl's log records go to ``log/manager.log`` (owner-only) at the config's ``logLevel``."""
    root = logging.getLogger("nni_pl")
    path = directory / "log" / "manager.log"
    os.close(private_fd(path))
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    level = LOG_LEVELS.get(log_level or "info", logging.INFO)
    handler.setLevel(level)
    old_level = root.level
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def stop_signals(request_stop: Callable[[], None]) -> Callable[[], None]:
    """Ctrl-C and SIGTERM ask for a graceful stop (a second Ctrl-C stops waiting); returns the undo.

    Only the main thread can take signals; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    presses = {"n": 0}

    def on_signal(signum: int, frame: Any) -> None:
        presses["n"] += 1
        if presses["n"] > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for trials to end
        request_stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)

    return restore


def sigterm_while(running: Callable[[], bool], request_stop: Callable[[], None]) -> Callable[[], None]:
    """While ``running()``, SIGTERM (``nni-pl stop``) asks for a graceful stop instead of ending the process;
    afterwards SIGTERM does what it did before. Returns the undo (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)
    fallback = previous if previous is not None else signal.SIG_DFL

    def on_term(signum: int, frame: Any) -> None:
        if running():
            request_stop()
            return
        signal.signal(signal.SIGTERM, fallback)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)

    def restore() -> None:
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGTERM) is on_term:
            signal.signal(signal.SIGTERM, fallback)

    return restore
