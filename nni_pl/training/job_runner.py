"""One trial inside a container, pod or cluster worker: the far side of the cluster services.

Cluster services (:mod:`~nni_pl.training.kubeflow`, :mod:`~nni_pl.training.aml`, :mod:`~nni_pl.training.ray`)
start a trial on a machine whose file system the manager cannot read. There, ``python -m
nni_pl.training.job_runner`` (:func:`runner_command`) plays the local service's part of the trial-directory
protocol (:mod:`nni_pl.trial.protocol`): it makes a trial folder on the worker, writes ``parameter.json``, runs
the trial command with NNI's environment, reads ``metrics.jsonl`` as the trial appends to it, and sends every
record back the ways the service asked for:

* **its standard output** (which is the pod's or job's log), one marker line per event, which
  :func:`parse_log` reads back on the manager's side::

      nni-pl:start {"host": "pod-0", "pid": 7, "trial_id": "Ab3xY"}
      nni-pl:metric {"seq": 0, "type": "FINAL", "value": 0.93, "time": 1733350009.4}
      nni-pl:exit {"code": 0, "error": null}

* **the experiment's shared store** when it has one (``storeUrl`` naming a PostgreSQL/MySQL server the worker
  can reach): each record is inserted into the store's relay table (:mod:`nni_pl.training.relay`)
  as soon as it is read, keyed by ``(experiment, trial, seq)``. A log can be lost with its pod; the store
  cannot. :func:`read_relayed` is the manager's side.

Either way a record carries its ``seq``, and the store keeps each ``seq`` of a trial once, so reading a log
or the relay table again from the start (a reconnect, a resumed manager) duplicates nothing.

What the runner needs arrives in its environment, made by :func:`job_environment`: NNI's variables (the trial's
ids) and ``NNI_PL_JOB``, the base64 of a JSON document with the parameter record and the trial command. The
store URL may also come as ``NNI_PL_STORE_URL`` (from a Kubernetes secret, say), so that a password in it is
not part of the job's spec. The trial folder is ``$NNI_PL_TRIAL_ROOT/<experiment>/<trial>`` (default: a
folder under the system's temporary directory); the command runs in the current directory, where the image or
the service put the trial code. SIGTERM to the runner is passed on to the trial's process group; the runner
exits with the trial's exit code.

Example:
    >>> import tempfile
    >>> from nni_pl.training.service import TrialJob
    >>> job = TrialJob("exp1", "Ab3xY", 0, 0, "algorithm", {"lr": 0.1}, Path(tempfile.mkdtemp()))
    >>> env = job_environment(job, platform="kubeflow", command="python train.py")
    >>> env["NNI_TRIAL_JOB_ID"], decode_job(env["NNI_PL_JOB"])["command"]
    ('Ab3xY', 'python train.py')
    >>> log = parse_log('nni-pl:start {"host": "p"}\\nepoch 1\\n'
    ...                 'nni-pl:metric {"seq": 0, "type": "FINAL", "value": 0.9, "time": 1.0}\\n'
    ...                 'nni-pl:exit {"code": 0, "error": null}\\n')
    >>> log.started, [r["value"] for r in log.records], log.exit_code
    (True, [0.9], 0)
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nni_pl.errors import NniPlError
from nni_pl.trial import protocol

if TYPE_CHECKING:
    from nni_pl.training.service import TrialJob

__all__ = [
    "ENV_JOB",
    "ENV_STORE_URL",
    "ENV_TRIAL_ROOT",
    "MARKER",
    "RUNNER_MODULE",
    "JobLog",
    "TrialRun",
    "decode_job",
    "job_environment",
    "main",
    "parse_log",
    "read_relayed",
    "runner_command",
]

RUNNER_MODULE = "nni_pl.training.job_runner"
ENV_JOB = "NNI_PL_JOB"
ENV_STORE_URL = "NNI_PL_STORE_URL"
ENV_TRIAL_ROOT = "NNI_PL_TRIAL_ROOT"
MARKER = "nni-pl:"
_POLL = 0.2  # seconds between reads of metrics.jsonl
_ERROR_TAIL = 2000  # bytes of the trial's stderr sent back when it fails


def runner_command(python: str = "python") -> list[str]:
    """The container's command: ``[python, "-m", "nni_pl.training.job_runner"]``."""
    return [python, "-m", RUNNER_MODULE]


def job_environment(
    job: TrialJob, *, platform: str, command: str, store_url: str | None = None
) -> dict[str, str]:
    """The environment a container needs to run ``job``: NNI's id variables and ``NNI_PL_JOB``.

    ``store_url``, when given, is part of ``NNI_PL_JOB``; a URL with a password is better passed to the
    container as ``NNI_PL_STORE_URL`` from the cluster's secret store.
    """
    payload: dict[str, Any] = {"record": job.parameter_record(), "command": command}
    if store_url:
        payload["store_url"] = store_url
    return {
        protocol.ENV_PLATFORM: platform,
        protocol.ENV_EXPERIMENT_ID: job.experiment_id,
        protocol.ENV_TRIAL_ID: job.trial_id,
        protocol.ENV_SEQUENCE_ID: str(job.sequence_id),
        ENV_JOB: base64.b64encode(json.dumps(payload).encode("utf-8")).decode("ascii"),
    }


def decode_job(text: str) -> dict[str, Any]:
    """The document :func:`job_environment` put into ``NNI_PL_JOB``."""
    try:
        payload = json.loads(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, UnicodeError) as e:
        raise protocol.TrialSetupError(
            f"{ENV_JOB} is not what nni-pl wrote ({e}); the job was not made by nni-pl"
        ) from e
    if not isinstance(payload, dict) or "record" not in payload or "command" not in payload:
        raise protocol.TrialSetupError(f"{ENV_JOB} lacks the parameter record or the command")
    return payload


# --- the manager's side ------------------------------------------------------------------------------------------------
@dataclass
class JobLog:
    """What a runner's log says: metric records (in ``seq`` order, each once), whether the trial started, and
    its exit code and error once it ended (``exit_code`` is ``None`` while it runs)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    started: bool = False
    start: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    error: str | None = None


def parse_log(text: str) -> JobLog:
    """Read a runner's log (the trial's own output in between is ignored)."""
    out = JobLog()
    seen: set[int] = set()
    for line in text.splitlines():
        at = line.find(MARKER)
        if at < 0:
            continue
        kind, _, body = line[at + len(MARKER) :].partition(" ")
        try:
            value = json.loads(body)
        except ValueError:
            continue  # a marker-like line the trial printed, or a line cut off by the log's end
        if not isinstance(value, dict):
            continue
        if kind == "metric" and "seq" in value and "type" in value:
            seq = int(value["seq"])
            if seq not in seen:
                seen.add(seq)
                out.records.append(value)
        elif kind == "start":
            out.started, out.start = True, value
        elif kind == "exit":
            code = value.get("code")
            out.exit_code = int(code) if isinstance(code, int) else 1
            out.error = value.get("error") or None
    out.records.sort(key=lambda r: int(r["seq"]))
    return out


def read_relayed(
    store_url: str, experiment_id: str, trial_id: str, after_seq: int = -1
) -> list[dict[str, Any]]:
    """The records a runner relayed through the shared store, with ``seq`` greater than ``after_seq``."""
    from nni_pl.training.relay import RelayTable  # peewee: only where a store is used

    table = RelayTable(store_url)
    try:
        return table.since(experiment_id, trial_id, after_seq=after_seq)
    finally:
        table.close()


# --- the worker's side -----------------------------------------------------------------------------------------------
def _trial_root() -> Path:
    root = os.environ.get(ENV_TRIAL_ROOT)
    return Path(root) if root else Path(tempfile.gettempdir()) / "nni-pl-trials"


class TrialRun:
    """One trial started on this machine from a job document (:func:`decode_job`): folder, process, records.

    ``on_record`` is called with each new metric record as :meth:`pump` reads it. Used by :func:`main` in a
    container and by the Ray service's actors.
    """

    def __init__(
        self,
        payload: Mapping[str, Any],
        *,
        cwd: str | os.PathLike[str] | None = None,
        trial_root: Path | None = None,
        environ: Mapping[str, str] | None = None,
        on_record: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.record = dict(payload["record"])
        self.command = str(payload["command"])
        self.platform = str(payload.get("platform") or os.environ.get(protocol.ENV_PLATFORM) or "cluster")
        self.trial_dir = (
            (trial_root or _trial_root()) / str(self.record["experiment_id"]) / str(self.record["trial_id"])
        )
        self.cwd = cwd
        self.environ = dict(os.environ if environ is None else environ)
        self.on_record = on_record
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self._reader: protocol.MetricsReader | None = None

    def start(self) -> int:
        """Write ``parameter.json`` and start the command in its own process group; returns its pid."""
        protocol.write_parameter_file(self.trial_dir, self.record)
        env = dict(self.environ)
        env.pop(ENV_JOB, None)
        env.update(
            protocol.trial_environment(
                platform=self.platform,
                experiment_id=str(self.record["experiment_id"]),
                trial_id=str(self.record["trial_id"]),
                sequence_id=int(self.record["sequence_id"]),
                trial_dir=self.trial_dir,
            )
        )
        env.setdefault(protocol.ENV_DEFAULT_ROOT_DIR, str(self.trial_dir))
        # `python` in the command is the Python that runs this (the image's or the cluster's, with nni-pl)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", self.command],
            cwd=self.cwd,
            env=env,
            stdout=None,  # the trial's own output goes to the log, between the markers
            stderr=subprocess.PIPE,  # copied to the trial folder (for the error) and to the log
            start_new_session=True,
        )
        self._reader = protocol.MetricsReader(self.trial_dir)
        protocol.write_pid(self.trial_dir, self.proc.pid, None)
        self._err = open(self.trial_dir / protocol.STDERR_FILE, "ab")  # closed in finish()
        return self.proc.pid

    def pump(self) -> list[dict[str, Any]]:
        """Read the trial's new records (and pass each to ``on_record``)."""
        if self._reader is None:
            return []
        new = self._reader.read()
        for rec in new:
            if self.on_record is not None:
                self.on_record(rec)
        return new

    def poll(self) -> int | None:
        """The exit code once the command ended (its stderr copied to the trial folder meanwhile)."""
        assert self.proc is not None
        return self.proc.poll()

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the trial's process group."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def run(self, *, poll: float = _POLL) -> int:
        """Start, then :meth:`finish`; returns the exit code."""
        self.start()
        return self.finish(poll=poll)

    def finish(self, *, poll: float = _POLL) -> int:
        """Pump records until the started command ends, then once more; write the exit code; return it."""
        assert self.proc is not None and self.proc.stderr is not None
        os.set_blocking(self.proc.stderr.fileno(), False)
        while True:
            self._copy_stderr()
            self.pump()
            code = self.proc.poll()
            if code is not None:
                break
            time.sleep(poll)
        self._copy_stderr()
        self.pump()
        self.exit_code = code if code >= 0 else 128 - code
        protocol.write_exitcode(self.trial_dir, self.exit_code)
        self._err.close()
        return self.exit_code

    def _copy_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while True:
            try:
                chunk = self.proc.stderr.read(65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            self._err.write(chunk)
            self._err.flush()
            sys.stderr.buffer.write(chunk)  # the log shows the trial's stderr too
            sys.stderr.flush()

    def error(self) -> str | None:
        """The tail of the trial's stderr (what it said before it failed)."""
        return protocol.stderr_tail(self.trial_dir, max_bytes=_ERROR_TAIL)


def _emit(kind: str, value: Mapping[str, Any]) -> None:
    # one write per marker: lines of the trial's own output never split a marker
    sys.stdout.write(f"\n{MARKER}{kind} {json.dumps(value, default=protocol.json_default)}\n")
    sys.stdout.flush()


class _Relay:
    """Records into the shared store's relay table, retried with the next record when the database is away."""

    def __init__(self, url: str, experiment_id: str, trial_id: str) -> None:
        self.url, self.experiment_id, self.trial_id = url, experiment_id, trial_id
        self.pending: list[dict[str, Any]] = []
        self.store: Any = None

    def add(self, record: dict[str, Any]) -> None:
        self.pending.append(record)
        self.flush()

    def flush(self) -> bool:
        if not self.pending:
            return True
        try:
            if self.store is None:
                from nni_pl.training.relay import RelayTable

                self.store = RelayTable(self.url)
            self.store.put(self.experiment_id, self.trial_id, self.pending)
        except Exception as e:  # the log still carries the record; retried with the next one
            print(f"nni-pl: cannot relay metrics through the store yet: {e}", file=sys.stderr, flush=True)
            if self.store is not None:
                self.store.close()
                self.store = None
            return False
        self.pending.clear()
        return True


def main(argv: list[str] | None = None) -> int:
    """``python -m nni_pl.training.job_runner``: run the trial described by ``$NNI_PL_JOB``."""
    try:
        payload = decode_job(os.environ.get(ENV_JOB, ""))
    except NniPlError as e:
        _emit("exit", {"code": 2, "error": str(e)})
        return 2
    record = payload["record"]
    store_url = os.environ.get(ENV_STORE_URL) or payload.get("store_url")
    relay = _Relay(store_url, str(record["experiment_id"]), str(record["trial_id"])) if store_url else None

    def on_record(rec: dict[str, Any]) -> None:
        _emit("metric", rec)
        if relay is not None:
            relay.add(rec)

    run = TrialRun(payload, on_record=on_record)
    signal.signal(signal.SIGTERM, lambda *_: run.signal(signal.SIGTERM))
    signal.signal(signal.SIGINT, lambda *_: run.signal(signal.SIGINT))
    try:
        run.start()
    except OSError as e:
        _emit("exit", {"code": 127, "error": f"cannot start the trial command {run.command!r}: {e}"})
        return 127
    _emit("start", {"host": socket.gethostname(), "pid": run.proc.pid if run.proc else None,
                    "trial_id": record["trial_id"], "rank": os.environ.get("RANK")})  # fmt: skip
    code = run.finish()
    if relay is not None:
        for _ in range(10):  # the records are in the log already; give the store a few chances
            if relay.flush():
                break
            time.sleep(1.0)
    _emit("exit", {"code": code, "error": run.error() if code != 0 else None})
    return code


if __name__ == "__main__":
    sys.exit(main())
