"""``platform: ray``: trials on a Ray cluster, each in a warm Ray actor that runs one trial at a time.

The section is :class:`~nni_pl.training.ray_config.RayConfig`. This module needs the ``ray`` extra and is imported
only when a Ray experiment runs.

**How a trial runs.** The service keeps a pool of detached actors (:class:`TrialActor`), at most
``trialConcurrency``, each created with the trial's resources (``trialCpuNumber``, ``trialGpuNumber``,
``trialMemorySize``, ``trialResources``), so Ray places it on a node that offers them and reserves them while it
lives. ``submit`` hands the actor the trial (its parameter record and command, or the import path of a function
trial); the actor makes the trial's folder on its node (:class:`~nni_pl.training.job_runner.TrialRun`: the
trial-directory protocol, unchanged), starts the command in its own process group or calls the function in a
thread, and keeps the records the trial appends to ``metrics.jsonl``. The manager fetches new records with
``read_metrics`` (every record carries its ``seq``: the service asks for those after the last one it got, and
the store keeps each ``seq`` once) and learns of the end from a call that returns when the trial ends, so
``poll`` wakes at once. A warm actor then takes the next trial: a function trial's module is imported once per
actor, as the local function workers do (``reuseMode: false`` makes an actor per trial).

**Crashes.** The actors are detached and named ``<experiment id>-<n>`` in the section's namespace; each trial's
actor is written to ``.nni/ray.json`` in its folder. If the manager dies, trials go on; a resumed manager finds
each trial's actor by name (:meth:`RayTrainingService.reattach`), fetches every record from the first and goes on
waiting for the end. Without an ``address`` nni-pl starts a one-node cluster for the experiment (``ray start
--head --block`` in a session of its own, bound to 127.0.0.1, recorded with its log in
:func:`cluster_directory`): it outlives a crashed manager too, and the experiment's end stops it by process group.

**Faults.** A trial whose node dies (its actor with it) ends FAILED with the node named, or is run again as a new
trial when ``retryOnNodeFailure`` is set; the pool makes a new actor on a node that is left. ``nni-pl stop`` and
kills end the trial's process group (SIGTERM, SIGKILL after the grace period); a function trial's actor is
killed with its child processes, and replaced.

**Bad input** is refused before anything is submitted: an address with no cluster behind it, a trial that asks
for a resource no node offers (the error names the resource and lists what each node has).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from nni_pl.errors import ConfigError, NniPlError
from nni_pl.training.job_runner import TrialRun
from nni_pl.training.ray_config import RayConfig
from nni_pl.training.service import SubmitInfo, TrainingService, TrialEnd, TrialJob
from nni_pl.trial import protocol

__all__ = ["LocalRayCluster", "RayClusterError", "RayTrainingService", "TrialActor"]

logger = logging.getLogger(__name__)

ACTOR_FILE = "ray.json"  # in the trial's .nni/: which actor runs it
CLUSTER_FILE = "ray-cluster.json"  # in the experiment's .nni/: the cluster nni-pl started
_TAIL = 64 * 1024  # bytes of the trial's stdout/stderr copied back to the manager's trial folder
_START_ATTEMPTS = 3  # actors tried for a trial whose actor dies before the trial starts
_CALL_TIMEOUT = 30.0  # seconds a status call to an actor may take before the node counts as unreachable


class RayClusterError(NniPlError):
    """The Ray cluster cannot be reached, or cannot run the trials as configured."""


# --- the actor (runs on the cluster's nodes) -----------------------------------------------------------------------
class TrialActor:
    """Runs one trial at a time on its node (a threaded actor: status calls are answered while a trial runs)."""

    def __init__(self, trial_root: str | None = None) -> None:
        self.trial_root = Path(trial_root) if trial_root else None
        self.lock = threading.Lock()
        self.trials: dict[str, dict[str, Any]] = {}
        self.functions: dict[str, Any] = {}  # import path -> (function, takes_argument): imported once

    def where(self) -> dict[str, Any]:
        ctx = ray.get_runtime_context()
        return {
            "node_id": ctx.get_node_id(),
            "ip": ray.util.get_node_ip_address(),
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
        }

    def start(self, payload: dict[str, Any], code_dir: str | None, code_host: str | None) -> dict[str, Any]:
        """Start a trial: ``payload`` is a job document (:func:`~nni_pl.training.job_runner.decode_job`) with
        either ``command`` or ``function`` (an import path)."""
        cwd = code_dir if code_dir and code_host == socket.gethostname() and os.path.isdir(code_dir) else None
        trial_id = str(payload["record"]["trial_id"])
        state: dict[str, Any] = {"done": threading.Event(), "code": None, "error": None, "records": []}
        if cwd and cwd not in sys.path:
            sys.path.insert(0, cwd)
        elif cwd is None and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # Ray's working_dir

        def on_record(rec: dict[str, Any]) -> None:
            with self.lock:
                state["records"].append(rec)

        run = TrialRun(
            {"record": payload["record"], "command": payload.get("command") or "", "platform": "ray"},
            cwd=cwd,
            trial_root=self.trial_root,
            on_record=on_record,
        )
        state["run"] = run
        state["reader"] = None
        with self.lock:
            self.trials = {
                k: v for k, v in self.trials.items() if not v["done"].is_set()
            }  # forget ended ones
            self.trials[trial_id] = state
        if payload.get("function"):
            state["function"] = True
            protocol.write_parameter_file(run.trial_dir, run.record)
            state["reader"] = protocol.MetricsReader(run.trial_dir)
            threading.Thread(target=self._call, args=(state, payload["function"]), daemon=True).start()
            pid = os.getpid()
        else:
            state["function"] = False
            pid = run.start()  # its records arrive through on_record as finish() reads them
            threading.Thread(target=self._finish, args=(state,), daemon=True).start()
        return {**self.where(), "trial_pid": pid, "trial_dir": str(run.trial_dir)}

    def _finish(self, state: dict[str, Any]) -> None:
        run: TrialRun = state["run"]
        try:
            code = run.finish(poll=0.05)
            state["error"] = run.error() if code else None
        except Exception as e:  # reported as the trial's failure
            code, state["error"] = 1, f"the Ray actor lost the trial: {e}"
        state["code"] = code
        state["done"].set()

    def _call(self, state: dict[str, Any], path: str) -> None:
        from nni_pl._imports import import_object
        from nni_pl.training.functions import _run_one, _takes_argument

        run: TrialRun = state["run"]
        try:
            entry = self.functions.get(path)
            if entry is None:
                fn = import_object(path, "trial", what="function")
                entry = self.functions[path] = (fn, _takes_argument(fn))
            job = {**run.record, "trial_dir": str(run.trial_dir)}
            code, error = _run_one(entry[0], entry[1], job)
        except BaseException as e:  # an import error is the trial's failure
            code, error = 1, f"cannot run the trial function {path}: {e}"
        state["code"], state["error"] = code, error
        state["done"].set()

    def wait(self, trial_id: str) -> bool:
        """Returns when the trial has ended (the manager keeps one such call open per trial)."""
        state = self.trials.get(trial_id)
        if state is None:
            return False
        state["done"].wait()
        return True

    def fetch(self, trial_id: str, after_seq: int, tails: bool = False) -> dict[str, Any] | None:
        """The trial's records after ``after_seq``; its exit code and error once it ended (``None``: unknown)."""
        state = self.trials.get(trial_id)
        if state is None:
            return None
        ended = state["done"].is_set()
        with self.lock:
            reader = state["reader"]
            if reader is not None:
                state["records"].extend(reader.read())
            records = [r for r in state["records"] if int(r["seq"]) > after_seq]
        out: dict[str, Any] = {"records": records, "code": state["code"] if ended else None, "ended": ended}
        if ended:
            out["error"] = state["error"]
        if tails:
            trial_dir: Path = state["run"].trial_dir
            for name in (protocol.STDOUT_FILE, protocol.STDERR_FILE):
                with contextlib.suppress(OSError), open(trial_dir / name, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - _TAIL))
                    out[name] = f.read()
        return out

    def request_stop(self, trial_id: str) -> bool:
        """Write the trial's stop file; returns whether the trial declared that it stops by itself."""
        state = self.trials.get(trial_id)
        if state is None or state["done"].is_set():
            return False
        trial_dir = state["run"].trial_dir
        protocol.request_stop(trial_dir)
        return protocol.graceful_declared(trial_dir)

    def terminate(self, trial_id: str, grace: float) -> bool:
        """SIGTERM to a command trial's process group, SIGKILL after ``grace``; ``False`` for a function trial
        (the caller kills this actor) after ending the processes it started."""
        state = self.trials.get(trial_id)
        if state is None or state["done"].is_set():
            return True
        if state["function"]:
            _kill_children()
            return False
        run: TrialRun = state["run"]
        run.signal(signal.SIGTERM)

        def later() -> None:
            if not state["done"].wait(grace):
                run.signal(signal.SIGKILL)

        threading.Thread(target=later, daemon=True).start()
        return True


def _kill_children() -> None:
    """End every process this actor's process started (a function trial's children)."""
    import psutil  # a dependency of ray

    me = psutil.Process()
    children = me.children(recursive=True)
    for p in children:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(children, timeout=3)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()


_RemoteActor = ray.remote(max_concurrency=16)(TrialActor)


# --- the local cluster nni-pl starts ---------------------------------------------------------------------------------
def cluster_directory(experiment_id: str) -> Path:
    """Where the local cluster of an experiment is recorded (its address and pid) and logs: a folder of this
    machine's temporary directory (the cluster does not outlive a reboot either)."""
    return Path(tempfile.gettempdir()) / "nni-pl-ray" / experiment_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalRayCluster:
    """A one-node Ray cluster on this machine (``ray start --head --block`` in its own session).

    Example:
        >>> LocalRayCluster.read(Path("/nowhere")) is None
        True
    """

    address: str
    pid: int
    directory: Path | None = None

    @classmethod
    def start(
        cls,
        *,
        num_cpus: int | None = None,
        num_gpus: int | None = None,
        resources: dict[str, float] | None = None,
        object_store_memory: int = 200 << 20,
        directory: Path | None = None,
        timeout: float = 120.0,
    ) -> LocalRayCluster:
        ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
        if ray_bin is None:
            raise RayClusterError(
                "the `ray` command is not installed next to this Python; pip install 'nni-pl[ray]'"
            )
        port = _free_port()
        args = [
            ray_bin, "start", "--head", "--block", "--disable-usage-stats", "--include-dashboard=false",
            "--node-ip-address=127.0.0.1", f"--port={port}", f"--ray-client-server-port={_free_port()}",
            f"--object-store-memory={object_store_memory}",
            f"--num-cpus={num_cpus if num_cpus is not None else os.cpu_count() or 1}",
        ]  # fmt: skip
        if num_gpus is not None:
            args.append(f"--num-gpus={num_gpus}")
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        log = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            log = open(directory / "ray-cluster.log", "ab")  # the child keeps it
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )  # fmt: skip
        if log is not None:
            log.close()
        cluster = cls(address=f"127.0.0.1:{port}", pid=proc.pid, directory=directory)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RayClusterError(
                    f"`ray start --head` ended with exit code {proc.returncode} before the cluster was up"
                    + (f"; see {directory / 'ray-cluster.log'}" if directory else "")
                )
            if _gcs_answers(cluster.address):
                break
            time.sleep(0.2)
        else:
            cluster.stop()
            raise RayClusterError(f"the local Ray cluster did not come up within {timeout:.0f} s")
        if directory is not None:
            (directory / CLUSTER_FILE).write_text(json.dumps({"address": cluster.address, "pid": proc.pid}))
        return cluster

    @classmethod
    def read(cls, directory: Path) -> LocalRayCluster | None:
        """The cluster recorded in ``directory`` if it still runs."""
        try:
            data = json.loads((directory / CLUSTER_FILE).read_text())
            pid, address = int(data["pid"]), str(data["address"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return cls(address=address, pid=pid, directory=directory) if _gcs_answers(address) else None

    def stop(self, timeout: float = 3.0) -> None:
        """End the cluster's processes (its session), SIGKILL what is left after ``timeout``.

        The cluster is the experiment's own and its actors were killed before: nothing is lost by not waiting for
        Ray's own shutdown, which can take tens of seconds once a driver has connected."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not _session_members(self.pid):
                break
            time.sleep(0.05)
        _kill_session_leftovers(self.pid)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, os.WNOHANG)  # our child (not after a resume): reap it
        if self.directory is not None:
            with contextlib.suppress(OSError):
                (self.directory / CLUSTER_FILE).unlink()


def _session_members(sid: int) -> list[Any]:
    """The live processes (zombies left out: a container's init may never reap them) of session ``sid``."""
    import psutil  # a dependency of ray

    out = []
    for p in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(p.pid) == sid:
                out.append(p)
    return out


def _kill_session_leftovers(sid: int) -> None:
    """Ray's processes may leave the head's process group; end what is left of its session."""
    for p in _session_members(sid):
        with contextlib.suppress(Exception):
            p.kill()


def _gcs_answers(address: str, timeout: float = 1.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


# --- the manager's side ------------------------------------------------------------------------------------------
@dataclass
class _Trial:
    job: TrialJob
    actor: Any
    name: str
    start_ref: Any = None
    done_ref: Any = None
    where: dict[str, Any] = field(default_factory=dict)
    after_seq: int = -1
    leftover: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False
    killed: bool = False
    actor_lost: bool = False  # its actor died (or was killed): never reused
    payload: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0  # actors that died before the trial started
    function: bool = False
    graceful_deadline: float | None = None


class RayTrainingService(TrainingService):
    """Trials on a Ray cluster (see the module docstring).

    Example:
        >>> RayTrainingService.platform, RayTrainingService.reattaches_trials
        ('ray', True)
    """

    platform = "ray"
    reattaches_trials = True

    def __init__(
        self,
        section: RayConfig,
        *,
        experiment_id: str,
        experiment_directory: Path,
        command: str | None = None,
        function: str | None = None,
        code_directory: Path | None = None,
        concurrency: int = 1,
        trial_gpu_number: int | None = None,
        resumed: bool = False,
        trial_root: str | None = None,
    ) -> None:
        if not command and not function:
            raise ConfigError("trialCommand", "platform ray needs a trialCommand or a function trial")
        self.section = section
        self.experiment_id = experiment_id
        self.experiment_directory = Path(experiment_directory)
        self.command = command
        self.function = function
        self.code_directory = Path(code_directory or ".").resolve()
        self.concurrency = concurrency
        self.trial_gpu_number = trial_gpu_number
        self.trial_root = trial_root
        self.host = "ray"
        self.cluster: LocalRayCluster | None = None
        self.trials: dict[str, _Trial] = {}
        self.idle: list[tuple[str, Any]] = []  # warm actors with no trial
        self.busy: set[str] = set()  # names of actors with a trial
        self._counter = 0
        self._ended_early: list[
            TrialEnd
        ] = []  # ends seen outside poll (a terminate that waited for the start)
        self._connect(resumed)

    @classmethod
    def from_spec(cls, spec: Any) -> RayTrainingService:
        return cls(
            spec.section,
            experiment_id=str(spec.experiment_id or "exp"),
            experiment_directory=spec.experiment_directory,
            command=spec.trial_command,
            function=spec.trial_function,
            code_directory=spec.trial_code_directory,
            concurrency=spec.trial_concurrency,
            trial_gpu_number=spec.trial_gpu_number,
            resumed=spec.resumed,
        )

    # --- the cluster ---------------------------------------------------------------------------------------------
    def _connect(self, resumed: bool) -> None:
        field = getattr(self.section, "config_field", "trainingService")
        address = self.section.address
        runtime_env = dict(self.section.runtime_env)
        if address is None:
            # not in the experiment's folder: the service is built (the cluster checked) before that exists
            control = cluster_directory(self.experiment_id)
            # a cluster recorded for this experiment still runs: started by the process that checked the
            # platform before handing over to this detached manager, or by a manager that crashed
            self.cluster = LocalRayCluster.read(control)
            if self.cluster is None:
                lc = self.section.local_cluster
                self.cluster = LocalRayCluster.start(
                    num_cpus=lc.num_cpus, num_gpus=lc.num_gpus, resources=lc.resources,
                    object_store_memory=lc.object_store_memory, directory=control,
                )  # fmt: skip
            address = self.cluster.address
        else:
            if (
                address != "auto"
                and not address.startswith("ray://")
                and not _gcs_answers(address, timeout=5.0)
            ):
                raise ConfigError(
                    f"{field}.address",
                    f"no Ray cluster answers at {address!r}; start one with `ray start --head --port "
                    f"{address.rpartition(':')[2]}` there, or leave address out for a cluster nni-pl starts here",
                )
            runtime_env.setdefault("working_dir", str(self.code_directory))
        if ray.is_initialized():
            ray.shutdown()
        try:
            ray.init(
                address=address, namespace=self.section.namespace, log_to_driver=False,
                runtime_env=runtime_env or None, configure_logging=False, include_dashboard=False,
            )  # fmt: skip
        except (ConnectionError, RuntimeError, ValueError, RayError) as e:
            if self.cluster is not None and not resumed:
                self.cluster.stop()
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(
                f"{field}.address", f"cannot connect to the Ray cluster at {address!r}: {first}"
            ) from e
        try:
            self._check_resources(field)
        except BaseException:
            ray.shutdown()  # nothing of this service stays behind in this process
            if self.cluster is not None and not resumed:
                self.cluster.stop()
                self.cluster = None
            raise
        self.host = f"ray:{address}"

    def _check_resources(self, field: str) -> None:
        wanted = self.section.requested(gpus=self.trial_gpu_number)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        for node in nodes:
            offered = node.get("Resources", {})
            if all(offered.get(k, 0.0) >= v for k, v in wanted.items()):
                return
        missing = sorted(
            k for k, v in wanted.items() if not any(n.get("Resources", {}).get(k, 0.0) >= v for n in nodes)
        )
        what = ", ".join(f"{k}={wanted[k]:g}" for k in missing) or ", ".join(
            f"{k}={v:g}" for k, v in wanted.items()
        )
        offers = "; ".join(
            f"{n.get('NodeManagerAddress')} ({n.get('NodeID', '')[:8]}): "
            + ", ".join(f"{k}={v:g}" for k, v in sorted(n.get("Resources", {}).items()) if not k.startswith("node:") and k != "object_store_memory")
            for n in nodes
        )  # fmt: skip
        key = (
            "trialResources" if any(k not in ("CPU", "GPU", "memory") for k in missing) else "trialCpuNumber"
        )
        raise ConfigError(
            f"{field}.{key}",
            f"no node of the Ray cluster offers {what} (together with the rest a trial asks for: "
            f"{', '.join(f'{k}={v:g}' for k, v in wanted.items())}); nodes offer: {offers or 'no live node'}",
        )

    # --- capacity ------------------------------------------------------------------------------------------------
    def free_slots(self) -> int:
        return max(0, self.concurrency - len(self.running()))

    def set_concurrency(self, concurrency: int) -> None:
        self.concurrency = concurrency
        while self.idle and len(self.idle) + len(self.busy) > concurrency:
            _kill(self.idle.pop()[1])

    def running(self) -> set[str]:
        return {tid for tid, t in self.trials.items() if not t.ended}

    # --- running -------------------------------------------------------------------------------------------------
    def _actor(self) -> tuple[str, Any]:
        if self.idle:
            return self.idle.pop()
        self._counter += 1
        while True:
            name = f"{self.experiment_id}-{self._counter}"
            try:
                ray.get_actor(name, namespace=self.section.namespace)
            except ValueError:
                break
            self._counter += 1  # a resumed experiment: this name is taken by a surviving actor
        actor = _RemoteActor.options(
            name=name, namespace=self.section.namespace, lifetime="detached", max_restarts=0,
            **self.section.actor_options(gpus=self.trial_gpu_number),
        ).remote(self.trial_root)  # fmt: skip
        return name, actor

    def submit(self, job: TrialJob) -> SubmitInfo:
        payload: dict[str, Any] = {"record": job.parameter_record()}
        if self.function:
            payload["function"] = self.function
        else:
            payload["command"] = self.command
        trial = _Trial(job=job, actor=None, name="", function=bool(self.function), payload=payload)
        self.trials[job.trial_id] = trial
        self._hand(trial)
        return SubmitInfo(pid=None, host=self.host, started_at=time.time())

    def _hand(self, t: _Trial) -> None:
        """Give the trial to an actor (a warm one, or a new one that Ray places)."""
        t.name, t.actor = self._actor()
        t.start_ref = t.actor.start.remote(t.payload, str(self.code_directory), socket.gethostname())
        self.busy.add(t.name)
        _write_json(t.job.control_dir / ACTOR_FILE, {"actor": t.name, "namespace": self.section.namespace,
                                                     "address": self.host})  # fmt: skip

    def poll(self, timeout: float) -> list[TrialEnd]:
        ended, self._ended_early = self._ended_early, []
        deadline = time.time() + max(0.0, timeout)
        while True:
            refs = {}
            for t in self.trials.values():
                if t.ended:
                    continue
                if t.start_ref is not None:
                    refs[t.start_ref] = t
                elif t.done_ref is not None:
                    refs[t.done_ref] = t
            self._graceful(ended)
            if not refs:
                if not ended:
                    time.sleep(max(0.0, min(deadline - time.time(), 0.05)))
                return ended
            wait = 0.0 if ended else max(0.0, min(deadline - time.time(), 0.5))
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=wait)
            for ref in ready:
                t = refs[ref]
                if ref is t.start_ref:
                    self._started(t, ended)
                else:
                    self._done(t, ended)
            if ended or time.time() >= deadline:
                return ended

    def _started(self, t: _Trial, ended: list[TrialEnd]) -> None:
        ref, t.start_ref = t.start_ref, None
        try:
            t.where = ray.get(ref)
        except RayActorError as e:
            if t.attempts < _START_ATTEMPTS and not t.killed:
                # the actor died before the trial started (Ray placed it on a node that was dying, say): the
                # trial never ran, so it goes to another actor
                t.attempts += 1
                logger.warning("trial %s: its Ray actor %s died before the trial started (%s); trying another",
                               t.job.trial_id, t.name, _first(e))  # fmt: skip
                self.busy.discard(t.name)
                _kill(t.actor)
                time.sleep(min(2.0 * t.attempts, 5.0))
                self._hand(t)
                return
            ended.append(self._lost(t, e))
            return
        except RayError as e:
            t.ended = True
            ended.append(
                TrialEnd(t.job.trial_id, 1, error=f"the Ray actor could not start the trial: {_first(e)}")
            )
            return
        _write_json(t.job.control_dir / ACTOR_FILE, {"actor": t.name, "namespace": self.section.namespace,
                                                     "address": self.host, "node": t.where})  # fmt: skip
        t.done_ref = t.actor.wait.remote(t.job.trial_id)

    def _done(self, t: _Trial, ended: list[TrialEnd]) -> None:
        try:
            ray.get(t.done_ref)
            out = ray.get(t.actor.fetch.remote(t.job.trial_id, t.after_seq, True), timeout=_CALL_TIMEOUT)
        except (RayActorError, GetTimeoutError) as e:
            ended.append(self._lost(t, e))
            return
        t.done_ref = None
        t.ended = True
        if out is None:
            ended.append(TrialEnd(t.job.trial_id, None, error="the Ray actor no longer knows the trial"))
            return
        self._take(t, out["records"])
        for name in (protocol.STDOUT_FILE, protocol.STDERR_FILE):
            if out.get(name):
                with contextlib.suppress(OSError):
                    (t.job.trial_dir / name).write_bytes(out[name])
        code = out.get("code")
        protocol.write_exitcode(t.job.trial_dir, code if code is not None else 1)
        ended.append(TrialEnd(t.job.trial_id, code, error=out.get("error")))

    def _lost(self, t: _Trial, e: BaseException) -> TrialEnd:
        t.ended, t.start_ref, t.done_ref, t.actor_lost = True, None, None, True
        self.busy.discard(t.name)
        if t.killed:
            return TrialEnd(t.job.trial_id, 128 + signal.SIGTERM, error=None)
        node = t.where.get("ip") or "unknown"
        node_id = (t.where.get("node_id") or "")[:12]
        where = f"Ray node {node}" + (f" (node id {node_id})" if node_id else "")
        return TrialEnd(
            t.job.trial_id,
            None,
            error=f"{where} running the trial was lost ({_first(e)}); its actor {t.name} died",
            requeue=True if self.section.retry_on_node_failure else False,
        )

    def _take(self, t: _Trial, records: list[dict[str, Any]]) -> None:
        new = [r for r in records if int(r["seq"]) > t.after_seq]
        if new:
            t.after_seq = max(int(r["seq"]) for r in new)
            t.leftover.extend(new)

    def read_metrics(self, job: TrialJob) -> list[dict[str, Any]]:
        t = self.trials.get(job.trial_id)
        if t is None:
            return []
        if not t.ended and t.start_ref is None:
            try:
                out = ray.get(t.actor.fetch.remote(job.trial_id, t.after_seq), timeout=_CALL_TIMEOUT)
            except (RayError, GetTimeoutError):
                out = None  # the end (or the loss) comes through poll
            if out:
                self._take(t, out["records"])
        records, t.leftover = t.leftover, []
        return records

    def cleanup(self, job: TrialJob) -> None:
        t = self.trials.pop(job.trial_id, None)
        if t is None:
            return
        self.busy.discard(t.name)
        if t.actor_lost or (t.killed and t.function):
            _kill(t.actor)  # dead, or killed with its function trial
            return
        if not self.section.reuse_mode or len(self.idle) + len(self.busy) >= self.concurrency:
            _kill(t.actor)
        else:
            self.idle.append((t.name, t.actor))

    # --- stopping ------------------------------------------------------------------------------------------------
    def terminate(self, trial_id: str, *, grace: float = 10.0) -> None:
        t = self.trials.get(trial_id)
        if t is None or t.ended:
            return
        t.killed = True
        if t.start_ref is not None:
            # the actor runs calls concurrently: a terminate sent now could overtake the start it must stop
            ready, _ = ray.wait([t.start_ref], timeout=min(_CALL_TIMEOUT, max(grace, 1.0)))
            if not ready:  # still waiting for a node with room: it never started
                _kill(t.actor)
                self._ended_early.append(self._lost(t, RuntimeError("stopped before it started")))
                return
            self._started(t, self._ended_early)
            if t.ended:
                return
        try:
            handled = ray.get(t.actor.terminate.remote(trial_id, grace), timeout=_CALL_TIMEOUT)
        except (RayError, GetTimeoutError):
            handled = False
        if not handled:  # a function trial (or an actor that does not answer): the actor goes
            _kill(t.actor)

    def request_stop(self, trial_id: str, trial_dir: Path, *, graceful_timeout: float) -> None:
        t = self.trials.get(trial_id)
        if t is None or t.ended:
            return
        protocol.request_stop(trial_dir)
        try:
            graceful = bool(ray.get(t.actor.request_stop.remote(trial_id), timeout=_CALL_TIMEOUT))
        except (RayError, GetTimeoutError):
            graceful = False
        if graceful:
            t.graceful_deadline = time.time() + graceful_timeout
        else:
            self.terminate(trial_id)

    def _graceful(self, ended: list[TrialEnd]) -> None:
        now = time.time()
        for tid, t in list(self.trials.items()):
            if not t.ended and t.graceful_deadline is not None and now >= t.graceful_deadline:
                t.graceful_deadline = None
                self.terminate(tid)

    # --- recovery and the end ----------------------------------------------------------------------------------
    def reattach(
        self,
        job: TrialJob,
        pid: int | None,
        pid_started_at: float | None,
        gpu_indices: Sequence[int] | None = None,
    ) -> TrialEnd | bool:
        try:
            record = json.loads((job.control_dir / ACTOR_FILE).read_text(encoding="utf-8"))
            name = str(record["actor"])
        except (OSError, ValueError, KeyError, TypeError):
            return False  # never handed to an actor
        try:
            actor = ray.get_actor(name, namespace=record.get("namespace") or self.section.namespace)
        except ValueError:
            return TrialEnd(
                job.trial_id,
                None,
                error=f"the trial's Ray actor {name} is gone (its node or cluster stopped)",
            )
        trial = _Trial(
            job=job, actor=actor, name=name, where=record.get("node") or {}, function=bool(self.function)
        )
        try:
            out = ray.get(actor.fetch.remote(job.trial_id, -1), timeout=_CALL_TIMEOUT)
        except (RayError, GetTimeoutError) as e:
            return TrialEnd(
                job.trial_id, None, error=f"the trial's Ray actor {name} does not answer: {_first(e)}"
            )
        if out is None:
            _kill(actor)
            return TrialEnd(
                job.trial_id, None, error=f"the trial's Ray actor {name} no longer knows the trial"
            )
        self.trials[job.trial_id] = trial
        self.busy.add(name)
        self._take(trial, out["records"])
        trial.done_ref = actor.wait.remote(job.trial_id)
        return True

    def hand_over(self) -> None:
        """A detached manager takes over: disconnect, keeping the actors and the local cluster (recorded in
        :func:`cluster_directory`, where the manager's service finds it)."""
        self.cluster = None
        with contextlib.suppress(Exception):
            ray.shutdown()

    def shutdown(self) -> None:
        if not ray.is_initialized():  # shut down already (a Ray call now would start a new local Ray)
            return
        for trial_id, t in list(self.trials.items()):
            if (
                not t.ended
            ):  # the manager terminated them already; a trial's processes must not outlive its actor
                self.terminate(trial_id, grace=1.0)
            _kill(t.actor)
        for _, actor in self.idle:
            _kill(actor)
        self.trials.clear()
        self.idle.clear()
        self.busy.clear()
        with contextlib.suppress(Exception):
            for entry in ray.util.list_named_actors(all_namespaces=True):
                if entry.get("namespace") == self.section.namespace and str(entry.get("name", "")).startswith(
                    f"{self.experiment_id}-"
                ):
                    _kill(ray.get_actor(entry["name"], namespace=entry["namespace"]))
        with contextlib.suppress(Exception):
            ray.shutdown()
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None


def _kill(actor: Any) -> None:
    with contextlib.suppress(Exception):
        ray.kill(actor, no_restart=True)


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
