"""What every training service does: submit a trial, report when it ends, read its metrics, stop it."""

from __future__ import annotations

import json
import logging
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nni_pl.errors import NniPlError
from nni_pl.trial._context import (
    CONTROL_DIR,
    DEFAULT_MAX_METRIC_BYTES,
    ENV_MAX_METRIC_BYTES,
    GRACEFUL_FILE,
    METRICS_FILE,
    PARAMETER_FILE,
    STOP_FILE,
    max_metric_bytes,
)

__all__ = [
    "MetricsReader",
    "SubmitInfo",
    "TrainingService",
    "TrialEnd",
    "TrialJob",
    "read_exitcode",
    "stderr_tail",
    "write_parameter_file",
]

logger = logging.getLogger(__name__)

EXITCODE_FILE = "exitcode"  # "<code> [<unix time>]", written by the trial's wrapper when it ends
PID_FILE = "pid"  # "<pid> <process start time>", written when the trial starts


@dataclass
class TrialJob:
    """A trial as the manager hands it to a training service."""

    experiment_id: str
    trial_id: str
    sequence_id: int
    parameter_id: int | None
    parameter_source: str
    parameters: dict[str, Any]
    trial_dir: Path

    @property
    def control_dir(self) -> Path:
        return self.trial_dir / CONTROL_DIR


@dataclass
class SubmitInfo:
    """Where and how a submitted trial runs."""

    pid: int | None
    host: str
    started_at: float
    pid_started_at: float | None = None
    gpu_indices: list[int] | None = None


@dataclass
class TrialEnd:
    """A trial has ended. ``exit_code`` is ``None`` when it is unknown (the process was lost)."""

    trial_id: str
    exit_code: int | None
    ended_at: float = field(default_factory=time.time)
    error: str | None = None


def read_exitcode(control_dir: Path) -> tuple[int, float] | None:
    """``(exit code, end time)`` from a trial's ``.nni/exitcode``, or ``None`` if it has not ended."""
    path = control_dir / EXITCODE_FILE
    try:
        text = path.read_text(encoding="utf-8").split()
        # "<code>" alone (a POSIX sh wrapper has no clock): the file was written when the trial ended
        return int(text[0]), float(text[1]) if len(text) > 1 else path.stat().st_mtime
    except (OSError, ValueError, IndexError):
        return None


def write_parameter_file(job: TrialJob) -> None:
    job.control_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "parameter_id": job.parameter_id,
        "parameter_source": job.parameter_source,
        "parameters": job.parameters,
        "experiment_id": job.experiment_id,
        "trial_id": job.trial_id,
        "sequence_id": job.sequence_id,
    }
    tmp = job.trial_dir / (PARAMETER_FILE + ".tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    tmp.replace(job.trial_dir / PARAMETER_FILE)


def stderr_tail(trial_dir: Path, *, max_bytes: int = 4000, name: str = "stderr") -> str | None:
    """The last lines of a trial's stderr (what a failed trial said), or ``None`` if empty."""
    path = trial_dir / name
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return None
    text = data.decode("utf-8", errors="replace")
    if size > max_bytes:
        text = text.split("\n", 1)[-1]
    return text.strip() or None


class MetricsReader:
    """Reads the complete new lines of a trial's ``metrics.jsonl`` (a half-written last line waits).

    The file is read in chunks and a line longer than the trial SDK allows (``NNI_PL_MAX_METRIC_BYTES`` plus the
    record's own fields; the SDK refuses such reports, so only a hand-written line can be one) is skipped with a
    warning as it streams past, so the manager's memory stays bounded whatever a trial writes.
    """

    _CHUNK = 1 << 20
    _RECORD_OVERHEAD = 1024  # {"seq":..,"type":"PERIODICAL","value":..,"time":..} around the metric

    def __init__(self, trial_dir: Path) -> None:
        self.path = trial_dir / METRICS_FILE
        self.offset = 0
        self._skipping = False  # inside an over-long line: drop everything up to its newline
        try:
            limit = max_metric_bytes()
        except NniPlError as e:
            logger.warning("%s; using the default", e)
            limit = DEFAULT_MAX_METRIC_BYTES
        self.max_line = limit + self._RECORD_OVERHEAD

    def read(self) -> list[dict[str, Any]]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size <= self.offset:
            return []
        out: list[dict[str, Any]] = []
        buf = b""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            remaining = size - self.offset
            while remaining > 0:
                chunk = f.read(min(self._CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                buf += chunk
                start = 0
                while (end := buf.find(b"\n", start)) >= 0:
                    line, start = buf[start:end], end + 1
                    if self._skipping:  # the end of a line already reported as too long
                        self._skipping = False
                    elif len(line) > self.max_line:
                        self._too_long(f"{len(line)} bytes")
                    else:
                        self._parse(line, out)
                self.offset += start
                buf = buf[start:]
                if self._skipping or len(buf) > self.max_line:
                    if not self._skipping:
                        self._too_long(f"over {self.max_line} bytes")
                        self._skipping = True
                    self.offset += len(buf)
                    buf = b""
        return out

    def _parse(self, line: bytes, out: list[dict[str, Any]]) -> None:
        if not line.strip():
            return
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or "seq" not in rec or "type" not in rec:
                raise ValueError("not a metric record")
            out.append(rec)
        except ValueError:
            logger.warning("skipping a malformed line in %s: %r", self.path, line[:200])

    def _too_long(self, size: str) -> None:
        logger.warning(
            "skipping a line of %s in %s: a report may hold at most %d bytes of JSON (%s, set where nni-pl runs)",
            size,
            self.path,
            self.max_line - self._RECORD_OVERHEAD,
            ENV_MAX_METRIC_BYTES,
        )


class TrainingService(ABC):
    """Runs trials somewhere. The manager is the only caller; all methods are called from one thread."""

    host: str = "localhost"

    @abstractmethod
    def free_slots(self) -> int:
        """How many more trials can start right now."""

    @abstractmethod
    def submit(self, job: TrialJob) -> SubmitInfo:
        """Start a trial (its directory and parameter file exist already)."""

    @abstractmethod
    def poll(self, timeout: float) -> list[TrialEnd]:
        """Wait up to ``timeout`` seconds for trials to end; return those that did."""

    @abstractmethod
    def terminate(self, trial_id: str, *, grace: float = 10.0) -> None:
        """Stop a trial now: SIGTERM (or equivalent), then SIGKILL after ``grace`` seconds."""

    @abstractmethod
    def running(self) -> set[str]:
        """Ids of the trials this service is running."""

    def reattach(self, job: TrialJob, pid: int | None, pid_started_at: float | None) -> TrialEnd | bool:
        """On resume: pick up a trial started by an earlier manager.

        Returns a :class:`TrialEnd` if it has ended since, ``True`` if it is still running and is now tracked,
        ``False`` if it never started (the manager should submit it again).
        """
        return False

    def request_stop(self, trial_id: str, trial_dir: Path, *, graceful_timeout: float) -> None:
        """Ask a trial to stop: write the stop file, and terminate it unless it stops by itself."""
        control = trial_dir / CONTROL_DIR
        control.mkdir(parents=True, exist_ok=True)
        (control / STOP_FILE).write_text(str(time.time()), encoding="utf-8")
        if (control / GRACEFUL_FILE).exists():
            self._graceful_deadline(trial_id, time.time() + graceful_timeout)
        else:
            self.terminate(trial_id)

    def _graceful_deadline(self, trial_id: str, deadline: float) -> None:
        """Terminate ``trial_id`` if it is still running at ``deadline`` (services override)."""
        self.terminate(trial_id)

    def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release resources (workers, connections). Running trials were terminated before."""
