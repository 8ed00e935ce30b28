"""Local process helpers shared by everything that starts, finds or stops processes on this machine.

A pid alone cannot tell a process from a later one that reused its number, so every recorded pid is paired
with the process's start time (:func:`process_start_time`, clock ticks since boot from ``/proc``), and
:func:`alive` checks both.

Example:
    >>> import os
    >>> alive(os.getpid(), process_start_time(os.getpid()))
    True
    >>> alive(os.getpid(), -1.0)   # the same pid, but another process's start time: a reused pid
    False
"""

from __future__ import annotations

import os

__all__ = ["alive", "pidfd_open", "process_start_time"]


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    return data[data.rfind(b")") + 2 :].split()


def process_start_time(pid: int) -> float | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), to tell a process from a reused pid."""
    fields = _stat_fields(pid)
    try:
        return float(fields[19]) if fields is not None else None  # field 22 overall
    except (IndexError, ValueError):
        return None


def alive(pid: int, started_at: float | None) -> bool:
    """Whether ``pid`` runs and, when ``started_at`` is given, is the process that started then (not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    if fields is None:
        return True  # no /proc (not Linux): trust kill(0)
    if started_at is not None:
        try:
            if float(fields[19]) != started_at:
                return False  # the pid was reused by another process
        except (IndexError, ValueError):
            pass
    return not (fields and fields[0] == b"Z")  # a zombie has exited already


def pidfd_open(pid: int) -> int | None:
    """A pidfd that becomes readable when ``pid`` exits (Linux 5.3+), or ``None`` where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
