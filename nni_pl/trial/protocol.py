"""The trial-directory protocol: everything a trial and the side that runs it share.

A trial is a process (or, for Python-function trials, a call in a warm worker) with a directory of its
own. The two sides never talk to each other directly: they exchange files in that directory, under the
names below, and the trial learns who it is from environment variables. A training service that runs
trials elsewhere (an SSH host, a cluster) implements this module's side of the contract there and copies
the files back; nothing else is needed.

Who writes what, in order:

1. **The runner** creates ``<trial_dir>/`` and ``<trial_dir>/.nni/`` and writes :data:`PARAMETER_FILE`
   atomically (a temporary file renamed over it; or in place by a runner that writes it again before any start
   should the write be cut short) with :func:`write_parameter_file`: ``{"parameter_id", "parameter_source",
   "parameters", "experiment_id", "trial_id", "sequence_id"}``.
2. **The runner** starts the trial with the environment of :func:`trial_environment` (NNI's variable names,
   so NNI-era tooling keeps working) and writes ``.nni/pid`` (:data:`PID_FILE`: ``"<pid> <start time>"``,
   the start time in clock ticks since boot, to tell the process from a reused pid).
3. **The trial** reads :data:`PARAMETER_FILE` (:func:`read_parameter_file`) when it first asks for its
   parameters, and appends one JSON line per report to :data:`METRICS_FILE` with a single ``write()`` on an
   ``O_APPEND`` descriptor (:func:`encode_record`)::

       {"seq": 0, "type": "PERIODICAL", "value": 0.71, "time": 1733350000.1}
       {"seq": 1, "type": "FINAL", "value": {"default": 0.93, "loss": 0.2}, "time": 1733350009.4}

   ``seq`` counts the file's lines from 0; ``type`` is :data:`PERIODICAL` (intermediate) or :data:`FINAL`;
   ``value`` is a number or a dict with a numeric ``"default"``. Only the first FINAL counts.
4. **The runner** may ask the trial to stop early by creating ``.nni/stop`` (:func:`request_stop`). A trial
   that polls :func:`stop_requested` at safe points says so beforehand by creating ``.nni/graceful``
   (:func:`declare_graceful`); it is then given time to end by itself, otherwise it is signalled.
5. **Whatever waits for the trial process** records how it ended, even when the runner is gone:
   ``"<code> [<unix time>]"`` (without the time, the file's modification time is the end time). A shell wrapper,
   a host's agent or a function worker writes it to ``.nni/exitcode`` (:data:`EXITCODE_FILE`); the local
   service's reaper, which wrote ``.nni/pid`` itself, appends it to that file as its second line (one file
   created per trial instead of two). :func:`read_exitcode` reads either: the pid file's line first (it belongs
   to the latest start), then ``.nni/exitcode``.
6. **The runner** reads new complete lines of :data:`METRICS_FILE` with a :class:`MetricsReader` while the
   trial runs and once more after it ends. ``seq`` makes reading idempotent: the store keeps each
   ``(trial, seq)`` once, so a reader that restarts from offset 0 after a crash duplicates nothing.

What is durable: a report is in the kernel once the SDK call returns, so a crash or kill of the trial or of
the runner cannot lose it. A FINAL report is also fsync'd before the call returns (it survives a machine
crash), unless the trial was started with :data:`ENV_SYNC_AT_EXIT` set to ``1``: then whatever waits for the
trial process fsyncs :data:`METRICS_FILE` after the process ended (the local service's reaper does, within a
second), which keeps that disk write off the trial's own time; a machine crash between the report and that fsync
can then lose what the kernel had not yet written back (Linux writes dirty pages back within ~30 s). The
parameter file of a started trial is complete. The exit code is recorded after the trial's last report.

Reserved parameter keys that tuners put into a trial's parameters: :data:`TRIAL_BUDGET` (Hyperband/BOHB) and
:data:`LOAD_CHECKPOINT_DIR` / :data:`SAVE_CHECKPOINT_DIR` (PBT).

This module is import-light (standard library only): every trial process imports it.

Example:
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> write_parameter_file(d, {"parameter_id": 0, "parameter_source": "algorithm",
    ...                          "parameters": {"lr": 0.1}, "experiment_id": "e", "trial_id": "t",
    ...                          "sequence_id": 0})
    >>> read_parameter_file(d / PARAMETER_FILE)["parameters"]
    {'lr': 0.1}
    >>> with open(d / METRICS_FILE, "ab") as f:
    ...     _ = f.write(encode_record(0, FINAL, 0.93, when=1.0))
    >>> [(r["seq"], r["type"], r["value"]) for r in MetricsReader(d).read()]
    [(0, 'FINAL', 0.93)]
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nni_pl.errors import NniPlError

__all__ = [
    "CONTROL_DIR",
    "DEFAULT_MAX_METRIC_BYTES",
    "ENV_DEFAULT_ROOT_DIR",
    "ENV_EXPERIMENT_ID",
    "ENV_MAX_METRIC_BYTES",
    "ENV_OUTPUT_DIR",
    "ENV_PARAMETERS",
    "ENV_PLATFORM",
    "ENV_SEQUENCE_ID",
    "ENV_SYNC_AT_EXIT",
    "ENV_SYS_DIR",
    "ENV_TRIAL_ID",
    "EXITCODE_FILE",
    "FINAL",
    "GRACEFUL_FILE",
    "LOAD_CHECKPOINT_DIR",
    "METRICS_FILE",
    "PARAMETER_FILE",
    "PERIODICAL",
    "PID_FILE",
    "SAVE_CHECKPOINT_DIR",
    "STANDALONE",
    "STDERR_FILE",
    "STDOUT_FILE",
    "STOP_FILE",
    "TRIAL_BUDGET",
    "MetricsReader",
    "TrialSetupError",
    "declare_graceful",
    "encode_record",
    "end_line",
    "graceful_declared",
    "json_default",
    "make_trial_dir",
    "max_metric_bytes",
    "read_exitcode",
    "read_parameter_file",
    "read_pid",
    "request_stop",
    "stderr_tail",
    "stop_requested",
    "trial_environment",
    "write_exitcode",
    "write_parameter_file",
    "write_pid",
]

logger = logging.getLogger(__name__)

# --- environment variables (NNI's names) -------------------------------------------------------------------------
ENV_PLATFORM = "NNI_PLATFORM"
ENV_EXPERIMENT_ID = "NNI_EXP_ID"
ENV_TRIAL_ID = "NNI_TRIAL_JOB_ID"
ENV_SEQUENCE_ID = "NNI_TRIAL_SEQ_ID"
ENV_SYS_DIR = "NNI_SYS_DIR"  # the trial directory
ENV_OUTPUT_DIR = "NNI_OUTPUT_DIR"  # where the trial puts its own files (the trial directory)
ENV_PARAMETERS = "NNI_PL_PARAMETERS"  # standalone runs: JSON text, or a path to a JSON/YAML file
ENV_MAX_METRIC_BYTES = "NNI_PL_MAX_METRIC_BYTES"  # the largest report, in bytes of JSON
# "1": the runner fsyncs metrics.jsonl when the trial process ends, so the SDK does not fsync the final report
ENV_SYNC_AT_EXIT = "NNI_PL_SYNC_AT_EXIT"
# Lightning reads PL_TRAINER_<ARG> as Trainer defaults: a trial's logs and checkpoints go to its directory
ENV_DEFAULT_ROOT_DIR = "PL_TRAINER_DEFAULT_ROOT_DIR"

# --- files in the trial directory --------------------------------------------------------------------------------
PARAMETER_FILE = "parameter.json"
METRICS_FILE = "metrics.jsonl"
STDOUT_FILE = "stdout"
STDERR_FILE = "stderr"
CONTROL_DIR = ".nni"
# in CONTROL_DIR:
STOP_FILE = "stop"  # the runner asks the trial to stop (assessor verdict, a user's kill)
GRACEFUL_FILE = "graceful"  # the trial checks should_stop() and will end by itself when asked
EXITCODE_FILE = "exitcode"  # "<code> [<unix time>]", written by whatever waits for the trial when it ends
PID_FILE = "pid"  # "<pid> <process start time>" at the start [+ a line "<code> <unix time>" from the reaper]

# --- records -----------------------------------------------------------------------------------------------------
PERIODICAL = "PERIODICAL"
FINAL = "FINAL"
STANDALONE = "STANDALONE"  # the ids of a run outside any experiment

# --- reserved parameter keys ---------------------------------------------------------------------------------------
TRIAL_BUDGET = "TRIAL_BUDGET"  # Hyperband/BOHB: the resource this trial may use (epochs, by NNICallback)
LOAD_CHECKPOINT_DIR = "load_checkpoint_dir"  # PBT: where this trial's starting checkpoint is
SAVE_CHECKPOINT_DIR = "save_checkpoint_dir"  # PBT: where this trial saves its checkpoint

# A report is a few numbers for the tuner and the dashboard; 64 KiB of JSON leaves room for hundreds of named
# values while a runaway dict or string (megabytes per epoch) cannot fill the store and the CLI's tables.
DEFAULT_MAX_METRIC_BYTES = 64 * 1024


class TrialSetupError(NniPlError, ValueError):
    """What a trial was given cannot be read: its parameter file, ``NNI_PL_PARAMETERS``, or an nni-pl variable."""


def _size(n: int) -> str:
    return f"{n // 1024} KiB ({n} bytes)" if n >= 1024 and n % 1024 == 0 else f"{n} bytes"


def max_metric_bytes(environ: Mapping[str, str] = os.environ) -> int:
    """The largest metric report accepted, in bytes of compact JSON: ``NNI_PL_MAX_METRIC_BYTES`` or 64 KiB.

    Set it where ``nni-pl launch`` runs: trials inherit the manager's environment, and the manager skips
    ``metrics.jsonl`` lines larger than this (plus the record's own fields).

    Raises:
        TrialSetupError: the variable is set but is not a whole number of at least 1.
    """
    raw = environ.get(ENV_MAX_METRIC_BYTES, "").strip()
    if not raw:
        return DEFAULT_MAX_METRIC_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise TrialSetupError(
            f"{ENV_MAX_METRIC_BYTES} must be a whole number of bytes of at least 1, got {raw[:40]!r}; "
            f"unset it for the default of {_size(DEFAULT_MAX_METRIC_BYTES)}"
        )
    return value


# --- the runner's side ----------------------------------------------------------------------------------------------
def trial_environment(
    *, platform: str, experiment_id: str, trial_id: str, sequence_id: int, trial_dir: str | os.PathLike[str]
) -> dict[str, str]:
    """The environment variables a trial is started with (NNI's names).

    Example:
        >>> trial_environment(platform="local", experiment_id="e", trial_id="t", sequence_id=3,
        ...                   trial_dir="/x")[ENV_SEQUENCE_ID]
        '3'
    """
    return {
        ENV_PLATFORM: platform,
        ENV_EXPERIMENT_ID: experiment_id,
        ENV_TRIAL_ID: trial_id,
        ENV_SEQUENCE_ID: str(sequence_id),
        ENV_SYS_DIR: str(trial_dir),
        ENV_OUTPUT_DIR: str(trial_dir),
        "MULTI_PHASE": "false",
    }


def make_trial_dir(trial_dir: Path) -> None:
    """Create the trial folder and its control folder (``.nni/``), and the parents the folder lacks."""
    # plain os calls: this runs once per trial on the manager's hot path (pathlib's mkdir(parents=True) and
    # write_text cost several times more)
    folder = os.fspath(trial_dir)
    for path in (folder, os.path.join(folder, CONTROL_DIR)):
        try:
            os.mkdir(path)
        except FileExistsError:
            pass
        except FileNotFoundError:  # the parent is missing too (not the manager's trials/ folder)
            os.makedirs(path, exist_ok=True)


def write_parameter_file(trial_dir: Path, record: Mapping[str, Any], *, in_place: bool = False) -> None:
    """Write ``parameter.json`` atomically (and create the folders: :func:`make_trial_dir`) before the trial starts.

    ``in_place``: write the file itself, without a temporary file renamed over it. Only for a runner that writes
    it again before it starts the trial if this write is cut short (the experiment manager: a trial it never
    started is submitted again, file and all, on resume).
    """
    folder = os.fspath(trial_dir)
    data = json.dumps(record).encode("utf-8")
    # where the folders exist (the manager makes them between turns) this is two failing mkdir calls
    make_trial_dir(trial_dir)
    if in_place:
        _write_file(os.path.join(folder, PARAMETER_FILE), data)
        return
    tmp = os.path.join(folder, PARAMETER_FILE + ".tmp")
    _write_file(tmp, data)
    os.replace(tmp, os.path.join(folder, PARAMETER_FILE))


def _write_file(path: str, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def write_pid(trial_dir: Path, pid: int, started_at: float | None) -> None:
    """Record the trial's process (``.nni/pid``), so it can be found again after a crash of the runner."""
    text = f"{pid} {started_at if started_at is not None else ''}\n"
    _write_file(os.path.join(os.fspath(trial_dir), CONTROL_DIR, PID_FILE), text.encode("ascii"))


def read_pid(trial_dir: Path) -> tuple[int, float | None] | None:
    """``(pid, process start time)`` from ``.nni/pid``, or ``None`` when the trial was never started."""
    try:
        text = (Path(trial_dir) / CONTROL_DIR / PID_FILE).read_text(encoding="utf-8")
        fields = text.split("\n", 1)[0].split()
        return int(fields[0]), float(fields[1]) if len(fields) > 1 else None
    except (OSError, ValueError, IndexError):
        return None


def end_line(code: int, when: float) -> bytes:
    """How a trial ended, as :data:`EXITCODE_FILE` holds it and the local reaper appends it to :data:`PID_FILE`.

    Example:
        >>> end_line(0, 1733350000.25)
        b'0 1733350000.25\\n'
    """
    return f"{code} {when!r}\n".encode("ascii")


def request_stop(trial_dir: Path) -> None:
    """Ask the trial to stop (``.nni/stop``)."""
    control = Path(trial_dir) / CONTROL_DIR
    control.mkdir(parents=True, exist_ok=True)
    (control / STOP_FILE).write_text(str(time.time()), encoding="utf-8")


def graceful_declared(trial_dir: Path) -> bool:
    """Whether the trial said it ends by itself when asked to stop (``.nni/graceful``)."""
    return (Path(trial_dir) / CONTROL_DIR / GRACEFUL_FILE).exists()


def read_exitcode(trial_dir: Path) -> tuple[int, float] | None:
    """``(exit code, end time)``, or ``None`` if the trial has not ended.

    From the second line of ``.nni/pid`` (the local reaper's), else from ``.nni/exitcode``.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); (d / CONTROL_DIR).mkdir()
        >>> write_pid(d, 4242, 17.0)
        >>> read_exitcode(d) is None
        True
        >>> with open(d / CONTROL_DIR / PID_FILE, "ab") as f:
        ...     _ = f.write(end_line(3, 1733350000.5))
        >>> read_exitcode(d), read_pid(d)
        ((3, 1733350000.5), (4242, 17.0))
    """
    control = os.path.join(os.fspath(trial_dir), CONTROL_DIR)
    try:
        with open(os.path.join(control, PID_FILE), "rb") as f:
            lines = f.read().split(b"\n")
        # a complete second line: the reaper writes it with one write() after the first
        if len(lines) > 2:
            fields = lines[1].split()
            return int(fields[0]), float(fields[1])
    except (OSError, ValueError, IndexError):
        pass
    path = os.path.join(control, EXITCODE_FILE)
    try:
        with open(path, "rb") as f:
            fields = f.read().split()
        # "<code>" alone (a POSIX sh wrapper has no clock): the file was written when the trial ended
        return int(fields[0]), float(fields[1]) if len(fields) > 1 else os.stat(path).st_mtime
    except (OSError, ValueError, IndexError):
        return None


def stderr_tail(trial_dir: Path, *, max_bytes: int = 4000, name: str = STDERR_FILE) -> str | None:
    """The last lines of a trial's stderr (what a failed trial said), or ``None`` if empty."""
    path = Path(trial_dir) / name
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
        self._file = os.path.join(trial_dir, METRICS_FILE)
        self.offset = 0
        self._skipping = False  # inside an over-long line: drop everything up to its newline
        try:
            limit = max_metric_bytes()
        except TrialSetupError as e:
            logger.warning("%s; using the default", e)
            limit = DEFAULT_MAX_METRIC_BYTES
        self.max_line = limit + self._RECORD_OVERHEAD

    @property
    def path(self) -> Path:
        """The file it reads."""
        return Path(self._file)

    def read(self) -> list[dict[str, Any]]:
        # plain os calls: the manager reads each trial's file at least once per trial, on its hot path
        try:
            fd = os.open(self._file, os.O_RDONLY)
        except FileNotFoundError:
            return []
        try:
            return self._read(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    def _read(self, fd: int, size: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        buf = b""
        position = self.offset
        while position < size:
            chunk = os.pread(fd, min(self._CHUNK, size - position), position)
            if not chunk:
                break
            position += len(chunk)
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


# --- the trial's side --------------------------------------------------------------------------------------------------
def read_parameter_file(path: Path) -> dict[str, Any]:
    """The parameter record the runner wrote for this trial (``parameter.json``).

    Raises:
        TrialSetupError: the file is missing, is not JSON, or has no ``"parameters"`` object.
    """
    hint = (
        "the manager writes it before the trial starts; run the script through nni-pl, "
        f"or unset {ENV_SYS_DIR} and {ENV_TRIAL_ID} to run it standalone"
    )
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrialSetupError(f"this trial's parameter file {str(path)!r} does not exist; {hint}") from None
    except (OSError, ValueError) as e:
        raise TrialSetupError(
            f"this trial's parameter file {str(path)!r} cannot be read as JSON "
            f"({' '.join(str(e).split())[:160]}); {hint}"
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("parameters"), dict):
        got = type(record).__name__ if not isinstance(record, dict) else f"keys {sorted(record)[:8]}"
        raise TrialSetupError(
            f'this trial\'s parameter file {str(path)!r} must hold an object with a "parameters" object, '
            f"got {got}; {hint}"
        )
    return record


def json_default(obj: Any) -> Any:
    """``json.dumps`` fallback for numpy/torch values, converted as NNI's ``json_tricks`` does for scalars.

    Arrays and tensors (anything with ``.tolist()``) become nested lists, scalars (``.item()``) Python
    numbers: ``np.float32(0.5)`` is ``0.5``, ``np.arange(3)`` is ``[0, 1, 2]``. (NNI's ``json_tricks``
    writes an array as ``{"__ndarray__": [...], "dtype": ..., "shape": ...}``; nni-pl stores the plain list.)

    Example:
        >>> import numpy as np
        >>> json.dumps({"acc": np.float32(0.5), "per_class": np.array([0.25, 1.0])}, default=json_default)
        '{"acc": 0.5, "per_class": [0.25, 1.0]}'
    """
    for method in ("tolist", "item"):
        convert = getattr(obj, method, None)
        if callable(convert):
            try:
                return convert()
            except (TypeError, ValueError, RuntimeError):
                pass
    raise TypeError(f"{type(obj).__name__} {obj!r:.80} is not JSON-serialisable")


def encode_record(seq: int, kind: str, value: Any, *, when: float | None = None) -> bytes:
    """One line of ``metrics.jsonl`` (``value`` is already a validated metric)."""
    record = {"seq": seq, "type": kind, "value": value, "time": time.time() if when is None else when}
    return (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")


def stop_requested(trial_dir: Path) -> bool:
    """Whether the runner asked this trial to stop."""
    return (Path(trial_dir) / CONTROL_DIR / STOP_FILE).exists()


def declare_graceful(trial_dir: Path) -> None:
    """Tell the runner this trial ends by itself when asked to stop (it polls :func:`stop_requested`)."""
    control = Path(trial_dir) / CONTROL_DIR
    control.mkdir(exist_ok=True)
    (control / GRACEFUL_FILE).touch()


def write_exitcode(trial_dir: Path, code: int, *, when: float | None = None) -> None:
    """Record how the trial ended (for runners whose trials have no shell wrapper to do it)."""
    control = Path(trial_dir) / CONTROL_DIR
    control.mkdir(parents=True, exist_ok=True)
    tmp = control / (EXITCODE_FILE + ".tmp")
    tmp.write_bytes(end_line(code, time.time() if when is None else when))
    tmp.replace(control / EXITCODE_FILE)
