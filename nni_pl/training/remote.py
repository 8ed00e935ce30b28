"""The remote training service (NNI's ``platform: remote``): trials on SSH hosts, metrics streamed back.

Each host of ``machineList`` gets one SSH connection (paramiko). Before the first trial, the service checks
the host (its ``pythonPath`` Python runs, nni-pl is installed there with the same major version, the declared
``gpuIndices`` exist) and uploads the trial code directory once, packed as NNI does (``.nniignore``, 2000 files,
300 MB), to ``<remoteWorkingDirectory>/<experiment id>/code`` on the host. Trials run there under nni-pl's agent
(:mod:`nni_pl.training.remote_agent`), each in its own process group, in ``<experiment id>/trials/<trial id>``.

**Metrics come back over the SSH connection.** The trial writes them with the usual trial SDK into its remote
folder (durable there); the agent streams new complete lines back as they appear, with the byte offset they end
at. The host never has to reach the manager (NNI needed ``nniManagerIp``). A dropped connection loses nothing:
the service reconnects and the new agent resumes reading each trial's file from the offset already read; the
store keeps each ``(trial, seq)`` once.

**Reuse mode** (``reuseMode: true``, NNI's default): one agent per host runs trial after trial: a trial costs
one message and a process start, as a local trial does. Without reuse, every trial gets an agent of its own on a
new SSH channel (a channel and a Python start per trial).

**Faults.** The agent writes a heartbeat every second; a host silent for ``silence_timeout`` seconds, or whose
connection breaks, is reconnected in the background with back-off (``hostRetryInterval``, doubling up to five
minutes). Trials that were running there are reattached when the host answers within ``host_failure_timeout``
seconds; after that they end: FAILED with the reason, or, with ``retryOnHostFailure``, run again on another
host. The host is used again once it answers. A manager killed with ``kill -9`` leaves the remote trials
running; ``resume`` reattaches to them (the host of each trial is recorded in its local folder,
``.nni/remote.json``) and reads what they wrote meanwhile.

**Security.** Host keys are checked against ``known_hosts`` (``strictHostKeyChecking: yes``); with
``accept-new`` an unknown host's key is accepted on first contact and recorded, a changed key is refused either
way. Passwords and passphrases are only held in memory (see :mod:`nni_pl.training.remote_config`). Every value
that goes into a remote shell command is quoted with :func:`shlex.quote`; trial commands go into the trial's
``run.sh`` as the user wrote them, as on the local service.

Logging in, host-key checks and remote commands are in :mod:`nni_pl.training.remote_hosts`.

Example:
    >>> RemoteTrainingService.platform, RemoteTrainingService.reattaches_trials
    ('remote', True)
"""

from __future__ import annotations

import contextlib
import json
import logging
import posixpath
import queue
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nni_pl.errors import ConfigError
from nni_pl.training.local import GpuScheduler
from nni_pl.training.remote_hosts import _AGENT, HostError, SshAccess, _Host, _Link, clean_hosts
from nni_pl.training.service import SubmitInfo, TrainingService, TrialEnd, TrialJob
from nni_pl.trial import protocol

if TYPE_CHECKING:
    from nni_pl.training.platforms import ServiceSpec
    from nni_pl.training.remote_config import RemoteMachineConfig

__all__ = ["HOST_FILE", "HostError", "RemoteTrainingService", "clean_hosts"]

logger = logging.getLogger(__name__)

HOST_FILE = "remote.json"  # in a trial's local .nni/: which host runs it, and where
MAX_BACKOFF_S = 300.0


@dataclass
class _RTrial:
    job: TrialJob
    host: _Host
    remote_dir: str
    link: _Link | None = None  # the trial's own agent (non-reuse mode)
    pid: int | None = None
    offset: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    terminate_grace: float | None = None  # a terminate to send once the host answers again
    ended: bool = False


class RemoteTrainingService(SshAccess, TrainingService):
    """Runs command (or importable function) trials on SSH hosts; see the module docstring.

    Args:
        machines: the hosts (``machineList``), :class:`~nni_pl.training.remote_config.RemoteMachineConfig`.
        command: the trial command (run in the uploaded code folder on the host).
        code_directory: the local trial code directory (packed and uploaded once per host).
        concurrency: how many trials run at once over all hosts.
        gpu_number: GPUs per trial (``None`` leaves ``CUDA_VISIBLE_DEVICES`` alone).
        reuse: one long-lived agent per host (``reuseMode``) instead of one per trial.
        known_hosts: the known_hosts file host keys are checked against (default ``~/.ssh/known_hosts``).
        accept_new_host_keys: accept and record the key of a host not yet in ``known_hosts``.
        retry_on_host_failure: run a trial whose host failed again elsewhere instead of recording it FAILED.
        host_retry_interval: the first reconnect back-off in seconds (doubles up to five minutes).
        host_failure_timeout: how long a silent host's trials wait for it before they end.
        silence_timeout: seconds without a word from an agent (it beats every second) before its host is lost.
        remote_directory: where experiments live on the hosts (``~`` is the login user's home).
        function: ``"module:function"``: run this importable function as the trial instead of ``command``.
        extra_args: ``parameters -> list[str]`` appended to the command (LightningCLI overrides).
        connect_timeout: seconds for one SSH connection attempt.
        strict: fail (raise) when a host cannot be used at start; otherwise it is retried in the background.
        experiment_id: the experiment's id, when known at construction: the code is uploaded while the hosts are
            checked (else with each host's first trial).
    """

    platform = "remote"
    reattaches_trials = True

    def __init__(
        self,
        *,
        machines: Sequence[RemoteMachineConfig],
        command: str | None,
        code_directory: Path,
        concurrency: int = 1,
        gpu_number: int | None = None,
        reuse: bool = True,
        known_hosts: Path | None = None,
        accept_new_host_keys: bool = False,
        retry_on_host_failure: bool = False,
        host_retry_interval: float = 10.0,
        host_failure_timeout: float = 60.0,
        silence_timeout: float = 15.0,
        remote_directory: str = "~/nni-pl",
        function: str | None = None,
        extra_args: Callable[[dict[str, Any]], list[str]] | None = None,
        connect_timeout: float = 10.0,
        strict: bool = True,
        experiment_id: str | None = None,
    ) -> None:
        if not machines:
            raise ConfigError(
                "trainingService.machineList", "is empty; list at least one {host, user} machine"
            )
        if command is None and function is None:
            raise ConfigError(
                "trialCommand", "the remote training service runs a trialCommand; none was given"
            )
        self.command = command
        self.function = function
        self.code_directory = Path(code_directory)
        self.concurrency = concurrency
        self.gpu_number = gpu_number
        self.reuse = reuse
        self.known_hosts = (
            Path(known_hosts).expanduser() if known_hosts else Path("~/.ssh/known_hosts").expanduser()
        )
        self.accept_new_host_keys = accept_new_host_keys
        self.retry_on_host_failure = retry_on_host_failure
        self.host_retry_interval = host_retry_interval
        self.host_failure_timeout = host_failure_timeout
        self.silence_timeout = silence_timeout
        self.remote_directory = remote_directory
        self.extra_args = extra_args
        self.connect_timeout = connect_timeout
        self.experiment_id = experiment_id
        self.host = "remote"
        self.events: queue.Queue[tuple[_Host, _Link, dict[str, Any]]] = queue.Queue()
        self.trials: dict[str, _RTrial] = {}
        self._ends: list[TrialEnd] = []
        self._ended_metrics: dict[str, _RTrial] = {}  # ended trials whose last metrics the manager reads next
        self._stash: list[tuple[_Host, _Link, dict[str, Any]]] = []
        self._closed = False
        self._lock = threading.Lock()  # guards host state changed by reconnect threads
        self.hosts = [_Host(i, m, backoff=host_retry_interval) for i, m in enumerate(machines)]
        self._archive = self._pack()
        errors = self._connect_all()
        for host in self.hosts:  # in machineList order: the first host's error is the one reported
            e = errors.get(host.index)
            if e is None:
                continue
            if strict:
                self._close_all()
                raise e
            self._host_down(host, str(e))
        if self.gpu_number and not any(
            h.gpus and len(h.gpus.indices) >= self.gpu_number for h in self.hosts if h.up
        ):
            if strict:
                self._close_all()
                raise ConfigError(
                    "trialGpuNumber",
                    f"each trial needs {self.gpu_number} GPU(s) but no host has that many "
                    f"({', '.join(f'{h.label}: {h.gpus.indices if h.gpus else []}' for h in self.hosts)}); "
                    "list them in machineList[].gpuIndices or lower trialGpuNumber",
                )

    # --- building ----------------------------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: ServiceSpec, **overrides: Any) -> RemoteTrainingService:
        """The service of ``trainingService: {platform: remote, ...}`` for an experiment."""
        from nni_pl.training.lightning_cli import lightning_cli_args

        section = spec.section
        mode = spec.lightning_cli
        args: dict[str, Any] = {
            "machines": list(section.machine_list),
            "command": spec.trial_command,
            "code_directory": spec.trial_code_directory,
            "concurrency": spec.trial_concurrency,
            "gpu_number": spec.trial_gpu_number,
            "reuse": section.reuse_mode,
            "known_hosts": section.known_hosts_file,
            "accept_new_host_keys": section.strict_host_key_checking == "accept-new",
            "retry_on_host_failure": section.retry_on_host_failure,
            "host_retry_interval": section.host_retry_interval,
            "remote_directory": section.remote_working_directory,
            "function": getattr(spec, "trial_function", None),
            "extra_args": (lambda params: lightning_cli_args(params, mode)),
            "strict": not getattr(spec, "resumed", False),
            "experiment_id": getattr(spec, "experiment_id", None),
        }
        args.update(overrides)
        return cls(**args)

    def _pack(self) -> Any:
        from nni_pl.training.code_archive import pack_code_directory

        return pack_code_directory(self.code_directory)

    def _connect(self, host: _Host) -> None:
        """Connect, check the host, upload the code, start the reuse agent; raises :class:`HostError`."""
        client = self._client(host)
        host.client = client
        try:
            self._check(host)
            self._upload(host)
            if self.reuse:
                host.link = self._start_agent(host)
        except HostError:
            with contextlib.suppress(Exception):
                client.close()
            host.client = None
            raise
        except Exception as e:
            with contextlib.suppress(Exception):
                client.close()
            host.client = None
            raise HostError(host.field + ".host", f"{host.label}: {type(e).__name__}: {e}") from None
        host.up = True
        host.lost_at = None
        host.backoff = self.host_retry_interval

    def _connect_all(self) -> dict[int, Exception]:
        """Connect to, check and prepare every host at once (one thread each); the errors by host index."""
        errors: dict[int, Exception] = {}

        def one(host: _Host) -> None:
            try:
                self._connect(host)
            except HostError as e:
                errors[host.index] = e
            except Exception as e:  # anything else, named by host
                errors[host.index] = HostError(host.field + ".host", f"{host.label}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=one, args=(h,), daemon=True) for h in self.hosts[1:]]
        for t in threads:
            t.start()
        if self.hosts:
            one(self.hosts[0])
        for t in threads:
            t.join()
        return errors

    def _check(self, host: _Host) -> None:
        import nni_pl

        status, out, err = self._exec(
            host, self._python(host) + f'exec "$__py" -m {_AGENT} probe', timeout=60
        )
        pp = host.machine.python_path
        if status == 127 or ("not found" in err and not out.strip()):
            raise HostError(
                f"{host.field}.pythonPath",
                f"no python on {host.label}"
                + (f" in {pp!r}" if pp else " on PATH")
                + "; set pythonPath to the folder of the Python that has nni-pl installed (e.g. /opt/venv/bin)",
            )
        if status != 0 or not out.strip():
            if "No module named" in err:
                raise HostError(
                    f"{host.field}.pythonPath",
                    f"nni-pl is not installed for the Python on {host.label}"
                    + (f" in {pp!r}" if pp else "")
                    + f"; install it there: python -m pip install 'nni-pl=={nni_pl.__version__}'",
                )
            raise HostError(
                f"{host.field}.pythonPath", f"{host.label}: checking the host failed: {err.strip()[-300:]}"
            )
        probe = json.loads(out.strip().splitlines()[-1])
        host.probe = probe
        host.home = probe.get("home") or "~"
        theirs, ours = str(probe.get("version")), nni_pl.__version__
        if theirs.split(".")[0] != ours.split(".")[0]:
            raise HostError(
                f"{host.field}.pythonPath",
                f"{host.label} has nni-pl {theirs}, this manager {ours} (major versions differ); install the same "
                f"version there: python -m pip install 'nni-pl=={ours}'",
            )
        found = probe.get("gpus")
        declared = host.machine.gpu_indices
        if declared is not None and found is not None:
            missing = [g for g in declared if g not in found]
            if missing:
                raise HostError(
                    f"{host.field}.gpuIndices",
                    f"{missing} not on {host.label} (its GPUs: {found}); list GPUs the host has",
                )
        indices = declared if declared is not None else (found or [])
        host.gpus = GpuScheduler(
            gpu_number=self.gpu_number,
            indices=indices,
            per_gpu=host.machine.max_trial_number_per_gpu,
            use_active_gpu=host.machine.use_active_gpu or not found,  # no nvidia-smi there: nothing to ask
            busy=lambda: self._busy_gpus(host),
        )

    def _busy_gpus(self, host: _Host) -> set[int]:
        """GPUs of ``host`` running compute processes (``useActiveGpu: false`` leaves those not running our trials),
        asked with ``nvidia-smi`` there; the scheduler asks at most every few seconds."""
        try:
            status, out, _ = self._exec(
                host, self._python(host) + f'exec "$__py" -m {_AGENT} busy', timeout=30
            )
            return set(json.loads(out.strip().splitlines()[-1])) if status == 0 and out.strip() else set()
        except Exception as e:  # a host that does not answer runs nothing new anyway
            logger.debug("host %s: asking for busy GPUs failed: %s", host.label, e)
            return set()

    def _upload(self, host: _Host) -> None:
        host.code_ready = False
        if self.experiment_id is not None:  # known: the code goes up now (else with the first trial)
            self._ensure_code(host, self.experiment_id)

    def _ensure_code(self, host: _Host, experiment_id: str) -> str:
        """Upload and unpack the code directory on ``host`` (once per archive); returns the remote code folder."""
        root = self._root(host, experiment_id)
        code = posixpath.join(root, "code")
        if host.code_ready:
            return code
        archive = self._archive
        marker = posixpath.join(code, f".nni-pl-code-{archive.sha256[:16]}")
        q = shlex.quote
        status, _, _ = self._exec(host, f"test -e {q(marker)}")
        if status != 0:
            sftp = host.client.open_sftp()
            try:
                self._exec(host, f"mkdir -p {q(root)}")
                # a name of this upload's own: hosts that share a home (NFS, two addresses of one machine) may
                # upload at the same moment
                remote_archive = posixpath.join(
                    root, f"code-{archive.sha256[:16]}-{uuid.uuid4().hex[:8]}.tar.gz"
                )
                sftp.put(str(archive.path), remote_archive)
            finally:
                sftp.close()
            # unpacked next to the code folder under a lock (hosts that share a home, over NFS or as two
            # addresses of one machine, may unpack at the same moment), marked complete, then renamed over it
            script = (
                "import sys, tarfile, os, shutil, fcntl\n"
                "archive, dest, marker = sys.argv[1:4]\n"
                "tmp = archive + '.unpacking'\n"
                "try:\n"
                "    with open(os.path.join(os.path.dirname(dest), '.code.lock'), 'w') as lock:\n"
                "        fcntl.flock(lock, fcntl.LOCK_EX)\n"
                "        if not os.path.exists(marker):\n"
                "            os.makedirs(tmp)\n"
                "            with tarfile.open(archive) as t:\n"
                "                kw = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}\n"
                "                t.extractall(tmp, **kw)\n"
                "            open(os.path.join(tmp, os.path.basename(marker)), 'w').close()\n"
                "            old = tmp + '.old'\n"
                "            if os.path.exists(dest):\n"
                "                os.rename(dest, old)\n"
                "            os.rename(tmp, dest)\n"
                "            shutil.rmtree(old, ignore_errors=True)\n"
                "finally:\n"
                "    shutil.rmtree(tmp, ignore_errors=True)\n"
                "    os.remove(archive)\n"
            )
            status, _, err = self._exec(
                host,
                self._python(host) + f'exec "$__py" -c {q(script)} {q(remote_archive)} {q(code)} {q(marker)}',
            )
            if status != 0:
                raise HostError(
                    host.field + ".host",
                    f"unpacking the trial code on {host.label} failed: {err.strip()[-300:]}",
                )
        host.code_ready = True
        return code

    def _start_agent(self, host: _Host) -> _Link:
        transport = host.client.get_transport()
        channel = transport.open_session(timeout=self.connect_timeout)
        channel.exec_command(self._python(host) + f'exec "$__py" -u -m {_AGENT} serve')
        link = _Link(host, channel, self.events)
        return link

    def _host_down(self, host: _Host, reason: str) -> None:
        """``host`` stopped answering: drop its connection and reconnect in the background."""
        with self._lock:
            was_up = host.up
            host.up = False
            if host.lost_at is None:
                host.lost_at = time.monotonic()
                host.lost_reason = reason
            for link in [host.link, *(t.link for t in self.trials.values() if t.host is host)]:
                if link is not None:
                    link.close()
            host.link = None
            for t in self.trials.values():
                if t.host is host:
                    t.link = None
            client, host.client = host.client, None
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            if was_up:
                logger.warning("host %s lost: %s; reconnecting", host.label, reason)
            if not host.reconnecting and not self._closed:
                host.reconnecting = True
                threading.Thread(
                    target=self._reconnect_loop,
                    args=(host,),
                    name=f"nni-pl-reconnect-{host.label}",
                    daemon=True,
                ).start()

    def _reconnect_loop(self, host: _Host) -> None:
        delay = 0.0  # the first attempt at once: a dropped connection is often back immediately
        while not self._closed:
            if delay:
                time.sleep(delay)
            if self._closed:
                return
            try:
                self._connect(host)
            except Exception as e:
                delay = host.backoff if delay else min(1.0, host.backoff)
                host.backoff = min(host.backoff * 2, MAX_BACKOFF_S) if delay == host.backoff else host.backoff
                logger.info("host %s: reconnect failed (%s); next try in %.0f s", host.label, e, delay)
                continue
            with self._lock:
                host.reconnecting = False
            self.events.put((host, host.link, {"event": "reconnected"}))  # type: ignore[arg-type]
            return

    # --- capacity ---------------------------------------------------------------------------------------------
    def _capacity(self, host: _Host) -> int:
        if not host.up:
            return 0
        if not self.gpu_number:
            return self.concurrency
        return 1 if host.gpus is not None and host.gpus.can_acquire() else 0

    def free_slots(self) -> int:
        free = self.concurrency - len(self.trials)
        if free <= 0:
            return 0
        return min(free, sum(self._capacity(h) for h in self.hosts))

    def running(self) -> set[str]:
        return set(self.trials)

    # --- submitting -----------------------------------------------------------------------------------------
    def _pick(self) -> _Host:
        candidates = [h for h in self.hosts if self._capacity(h) > 0]
        if not candidates:
            raise RuntimeError("no host can take a trial; call free_slots() before submit()")
        return min(candidates, key=lambda h: (len(h.trials), h.index))

    def _trial_command(self, job: TrialJob) -> str:
        if self.function is not None:
            return f"python -m {_AGENT} call {shlex.quote(self.function)}"
        command = self.command or ""
        if callable(self.extra_args):
            args = self.extra_args(job.parameters)
            if args:
                command += " " + " ".join(shlex.quote(a) for a in args)
        return command

    def submit(self, job: TrialJob) -> SubmitInfo:
        host = self._pick()
        gpus = host.gpus.acquire(job.trial_id) if host.gpus is not None else []
        if gpus is None:
            raise RuntimeError("no GPU free; call free_slots() before submit()")
        started = time.time()
        remote_dir = posixpath.join(self._root(host, job.experiment_id), "trials", job.trial_id)
        try:
            code = self._ensure_code(host, job.experiment_id)
        except Exception as e:  # the host failed under us: the trial never started; its parameters run again
            trial = _RTrial(job, host, remote_dir)
            self.trials[job.trial_id] = trial
            host.trials.add(job.trial_id)
            self._host_down(host, f"{type(e).__name__}: {e}")
            self._end(
                trial,
                TrialEnd(
                    job.trial_id,
                    None,
                    time.time(),
                    f"host {host.label} failed as the trial started: {e}",
                    requeue=True,
                ),
            )
            return SubmitInfo(pid=None, host=host.machine.host, started_at=started, platform=self.platform)
        env = protocol.trial_environment(
            platform=self.platform,
            experiment_id=job.experiment_id,
            trial_id=job.trial_id,
            sequence_id=job.sequence_id,
            trial_dir=remote_dir,
        )
        if self.gpu_number is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus or []))
        trial = _RTrial(job, host, remote_dir)
        # where it runs, in its local folder first: a manager that dies now finds the trial again on resume
        self._write_host_file(job, host, remote_dir)
        self.trials[job.trial_id] = trial
        host.trials.add(job.trial_id)
        message = {
            "op": "start",
            "trial": job.trial_id,
            "dir": remote_dir,
            "cwd": code,
            "command": self._trial_command(job),
            "env": env,
            "parameter": job.parameter_record(),
        }
        try:
            if self.reuse:
                assert host.link is not None
                host.link.send(**message)
            else:
                trial.link = self._start_agent(host)
                trial.link.send(**message)
        except Exception as e:
            self._host_down(host, f"{type(e).__name__}: {e}")
        return SubmitInfo(
            pid=None,
            host=host.machine.host,
            started_at=started,
            platform=self.platform,
            gpu_indices=gpus if self.gpu_number is not None else None,
        )

    def _write_host_file(self, job: TrialJob, host: _Host, remote_dir: str) -> None:
        m = host.machine
        record = {"host": m.host, "port": m.port, "user": m.user, "index": host.index, "dir": remote_dir}
        path = job.control_dir / HOST_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        tmp.replace(path)

    # --- events ---------------------------------------------------------------------------------------------------
    def _handle(self, host: _Host, link: _Link | None, event: dict[str, Any]) -> bool:
        """Apply one event; ``True`` when the manager should look now (metrics or an end arrived)."""
        kind = event.get("event")
        trial = self.trials.get(event.get("trial", "")) if "trial" in event else None
        if kind == "metrics" and trial is not None and not trial.ended:
            fresh = [r for r in event["records"] if not trial.metrics or r["seq"] > trial.metrics[-1]["seq"]]
            trial.metrics.extend(fresh)
            trial.offset = max(trial.offset, int(event.get("offset") or 0))
            return True
        if kind == "started" and trial is not None:
            trial.pid = event.get("pid")
            return False
        if kind == "end" and trial is not None and not trial.ended:
            trial.offset = max(trial.offset, int(event.get("offset") or 0))
            self._keep_tails(trial, event)
            code = event.get("code")
            self._end(
                trial,
                TrialEnd(
                    trial.job.trial_id, code, float(event.get("time") or time.time()), event.get("error")
                ),
            )
            return True
        if kind == "gone" and trial is not None and not trial.ended:
            self._end(trial, TrialEnd(trial.job.trial_id, None, time.time(), event.get("reason")))
            return True
        if kind == "error" and trial is not None and not trial.ended:
            self._end(
                trial,
                TrialEnd(
                    trial.job.trial_id,
                    None,
                    time.time(),
                    f"the agent on {host.label} could not {event.get('op')} the trial: {event.get('message')}",
                    requeue=False,
                ),
            )
            return True
        if kind == "error":
            logger.warning("host %s: agent error: %s", host.label, event.get("message"))
        if kind == "closed" and link is not None and not self._closed:
            if link is host.link or (trial is None and any(t.link is link for t in self.trials.values())):
                owner = next((t for t in self.trials.values() if t.link is link), None)
                if owner is not None and owner.ended:
                    return False
                self._host_down(host, "the SSH connection closed")
            return False
        if kind == "reconnected":
            self._rewatch(host)
            return True
        return False

    def _keep_tails(self, trial: _RTrial, event: dict[str, Any]) -> None:
        """Copy the end of the trial's stdout/stderr into its local folder (``nni-pl log`` reads them there)."""
        for name in (protocol.STDOUT_FILE, protocol.STDERR_FILE):
            text = event.get(name)
            if text:
                with contextlib.suppress(OSError):
                    (trial.job.trial_dir / name).write_text(text, encoding="utf-8")

    def _end(self, trial: _RTrial, end: TrialEnd) -> None:
        trial.ended = True
        host = trial.host
        host.trials.discard(trial.job.trial_id)
        if host.gpus is not None:
            host.gpus.release(trial.job.trial_id)
        if trial.link is not None:
            with contextlib.suppress(Exception):
                trial.link.send(op="forget", trial=trial.job.trial_id)
            trial.link.close()
            trial.link = None
        elif host.link is not None and host.up:
            with contextlib.suppress(Exception):
                host.link.send(op="forget", trial=trial.job.trial_id)
        self._ends.append(end)

    def _rewatch(self, host: _Host) -> None:
        """The host answers again: its agent resumes every trial from the offset already read."""
        logger.info("host %s is back", host.label)
        for trial_id, remote_dir in list(host.abandoned.items()):
            if self._send(host, None, op="abandon", trial=trial_id, dir=remote_dir):
                host.abandoned.pop(trial_id, None)
        for trial in list(self.trials.values()):
            if trial.host is host and not trial.ended:
                self._watch(trial)
                if trial.terminate_grace is not None:
                    self._send(
                        host, trial, op="terminate", trial=trial.job.trial_id, grace=trial.terminate_grace
                    )

    def _watch(self, trial: _RTrial) -> None:
        host = trial.host
        if not self.reuse:
            trial.link = self._start_agent(host)
        self._send(
            host, trial, op="watch", trial=trial.job.trial_id, dir=trial.remote_dir, offset=trial.offset
        )

    def _send(self, host: _Host, owner: _RTrial | None, /, **msg: Any) -> bool:
        link = owner.link if owner is not None and owner.link is not None else host.link
        if link is None or not host.up:
            return False
        try:
            link.send(**msg)
            return True
        except Exception as e:
            self._host_down(host, f"{type(e).__name__}: {e}")
            return False

    def _check_hosts(self) -> None:
        now = time.monotonic()
        for host in self.hosts:
            if host.up:
                links = (
                    [host.link] if self.reuse else [t.link for t in self.trials.values() if t.host is host]
                )
                for link in links:
                    if link is not None and now - link.last_heard > self.silence_timeout:
                        self._host_down(host, f"no word from its agent for {self.silence_timeout:g} s")
                        break
            elif host.lost_at is not None and now - host.lost_at > self.host_failure_timeout:
                lost = [t for t in self.trials.values() if t.host is host and not t.ended]
                for trial in lost:
                    host.abandoned[trial.job.trial_id] = trial.remote_dir
                    retry = " (it runs again on another host)" if self.retry_on_host_failure else ""
                    self._end(
                        trial,
                        TrialEnd(
                            trial.job.trial_id,
                            None,
                            time.time(),
                            f"host {host.label} failed: {host.lost_reason}; no answer for "
                            f"{self.host_failure_timeout:g} s{retry}",
                            requeue=self.retry_on_host_failure,
                        ),
                    )

    def poll(self, timeout: float) -> list[TrialEnd]:
        deadline = time.monotonic() + max(timeout, 0.0)
        stash, self._stash = self._stash, []
        for item in stash:
            self._handle(*item)
        while not self._ends:
            self._check_hosts()
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self.events.get(timeout=max(0.0, min(remaining, 0.5)))
                    if remaining > 0
                    else self.events.get_nowait()
                )
            except queue.Empty:
                if remaining <= 0:
                    break
                continue
            if self._handle(*item):
                break
        while True:  # whatever else has arrived
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                break
            self._handle(*item)
        self._check_hosts()
        ends, self._ends = self._ends, []
        for end in ends:
            trial = self.trials.pop(end.trial_id, None)
            if trial is not None:
                self._ended_metrics[end.trial_id] = trial  # the manager reads the last metrics next
        return ends

    # --- metrics --------------------------------------------------------------------------------------------
    def read_metrics(self, job: TrialJob) -> list[dict[str, Any]]:
        trial = self.trials.get(job.trial_id) or self._ended_metrics.get(job.trial_id)
        if trial is None:
            return []
        records, trial.metrics = trial.metrics, []
        return records

    def cleanup(self, job: TrialJob) -> None:
        self._ended_metrics.pop(job.trial_id, None)

    # --- stopping -------------------------------------------------------------------------------------------
    def terminate(self, trial_id: str, *, grace: float = 10.0) -> None:
        trial = self.trials.get(trial_id)
        if trial is None or trial.ended:
            return
        trial.terminate_grace = grace
        self._send(trial.host, trial, op="terminate", trial=trial_id, grace=grace)

    def request_stop(self, trial_id: str, trial_dir: Path, *, graceful_timeout: float) -> None:
        trial = self.trials.get(trial_id)
        if trial is None or trial.ended:
            return
        if not self._send(trial.host, trial, op="stop", trial=trial_id, graceful_timeout=graceful_timeout):
            trial.terminate_grace = 10.0

    # --- recovery ---------------------------------------------------------------------------------------------
    def reattach(
        self,
        job: TrialJob,
        pid: int | None,
        pid_started_at: float | None,
        gpu_indices: Sequence[int] | None = None,
    ) -> TrialEnd | bool:
        try:
            record = json.loads((job.control_dir / HOST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False  # never handed to a host
        host = next(
            (
                h
                for h in self.hosts
                if (h.machine.host, h.machine.port, h.machine.user)
                == (record.get("host"), record.get("port"), record.get("user"))
            ),
            None,
        )
        if host is None:
            return TrialEnd(
                job.trial_id,
                None,
                time.time(),
                f"the trial ran on {record.get('user')}@{record.get('host')}, which is no longer in machineList",
            )
        trial = _RTrial(job, host, str(record["dir"]))
        self.trials[job.trial_id] = trial
        host.trials.add(job.trial_id)
        if gpu_indices and host.gpus is not None:
            host.gpus.take(job.trial_id, gpu_indices)
        if not host.up:
            return True  # resolved when the host answers (or after host_failure_timeout)
        self._watch(trial)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and host.up:
            try:
                item = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            h, link, event = item
            mine = event.get("trial") == job.trial_id
            if mine and event.get("event") == "metrics":
                self._handle(h, link, event)
            elif mine and event.get("event") in ("watching", "gone", "end", "error"):
                self._handle(h, link, event)
                if not trial.ended:
                    return True
                end = next(e for e in self._ends if e.trial_id == job.trial_id)
                self._ends.remove(end)
                self.trials.pop(job.trial_id, None)
                if event.get("event") == "gone":
                    return False
                self._ended_metrics[job.trial_id] = trial
                return end
            else:
                self._stash.append(item)
        return True

    # --- the end --------------------------------------------------------------------------------------------
    def _close_all(self) -> None:
        self._closed = True
        for host in self.hosts:
            links = [host.link, *(t.link for t in self.trials.values() if t.host is host)]
            for link in links:
                if link is not None:
                    link.close()
            if host.client is not None:
                with contextlib.suppress(Exception):
                    host.client.close()
                host.client = None
            host.up = False

    def shutdown(self) -> None:
        self._close_all()
