"""Ray cluster trial overhead: nni-pl on a Ray cluster against local trials and against Ray Tune on that cluster.

Starts one real Ray cluster on this machine (``ray start --head --block`` plus one ``ray start --address ...
--block`` worker node, each in a session of its own, bound to 127.0.0.1; stopped by session at the end, also on
errors and Ctrl-C; other Ray clusters on the machine are left alone), runs N trivial trials at concurrency c
(default 40 and 2) with every mode, side by side, repeats the whole round ``--repeats`` times (interleaved, so
drifting machine load hits every mode alike) and writes medians, ratios and the pass/fail of the target to
``benchmarks/results/cluster_overhead.md``.

A trivial trial takes its parameter ``x``, reports one intermediate and one final result, and appends one line
of time stamps to a stamps file (its first line ran, its reports had returned, its trial id). Modes:

* ``local cmd``: ``nni-pl launch`` of ``trialCommand: python trial.py`` on ``platform: local`` (the baseline).
* ``local fn``: ``Experiment(config, trial="bench_trial:trial")`` on ``platform: local`` (pre-warmed workers).
* ``ray cmd``: ``nni-pl launch`` of ``trialCommand: python trial.py`` on ``platform: ray`` with ``address`` =
  the benchmark's cluster and ``trialCpuNumber: 1`` (warm detached actors start the trial processes).
* ``ray fn``: ``Experiment(config, trial="bench_trial:trial")`` on ``platform: ray``: the actors import the
  function from the code directory (Ray uploads ``trialCodeDirectory`` as the default ``working_dir``).
* ``ray tune fn``: the peer. Ray Tune on the same cluster, ``tune.Tuner`` of a function trainable that calls
  ``tune.report`` twice (``num_samples=N``, ``max_concurrent_trials=c``, 1 CPU per trial, Tune's defaults
  otherwise: ``reuse_actors=False``); ``ray tune fn reuse`` the same with ``reuse_actors=True``.
* ``ray tune cmd``: a Tune function trainable that runs ``python trial.py`` (the same file as the command modes,
  the SDK in standalone mode) in a subprocess and then reports to Tune: the like-for-like peer of ``ray cmd``.

Every experiment runs in a runner process of its own (started and timed by this script, so the wall time holds
the interpreter's start, imports, the connection to the cluster and the shutdown).

Usage::

    .venv/bin/python benchmarks/cluster_overhead.py                  # N=40, c=2, 3 repeats (~10 min on 2 cores)
    .venv/bin/python benchmarks/cluster_overhead.py --quick --output /tmp/cluster_overhead.md
    .venv/bin/python benchmarks/cluster_overhead.py --quick --modes "local cmd,ray fn,ray tune fn"
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "cluster_overhead.md"
SEARCH_SPACE = {"x": {"_type": "uniform", "_value": [0, 1]}}
PHASES = ("launch", "body", "exit", "turn")
NODE_CPUS = 2  # logical CPUs per node (head and worker)
OBJECT_STORE = 100_000_000  # bytes per node
BASE = "local cmd"
PEER = "ray tune fn"
# (nni-pl mode, Ray Tune mode): nni-pl on Ray at least as fast per trial as Ray Tune on the same cluster
TARGETS = (
    ("ray fn", "ray tune fn"),
    ("ray cmd", "ray tune fn"),
    ("ray fn", "ray tune fn reuse"),
    ("ray cmd", "ray tune cmd"),
)
TARGET_RATIO = 1.0

# One trial for every nni-pl mode (and, standalone, for `ray tune cmd`). BENCH_TRIAL_ID: Tune's trial id there.
TRIAL_BODY = """\
    params = nni.get_next_parameter() or {{}}
    x = params.get("x", 0.5)
    nni.report_intermediate_result(x)
    nni.report_final_result(x)
    _tid = _os.environ.get("BENCH_TRIAL_ID") or nni.get_trial_id()
    with open({stamps!r}, "a") as _f:
        _f.write(f"{{_T0!r}} {{_time.time()!r}} {{_tid}}\\n")
"""

TRIAL_SCRIPT = """\
import time as _time
_T0 = _time.time()
import os as _os

import nni_pl as nni


def _main():
{body}

_main()
"""

FUNCTION_MODULE = """\
import os as _os
import time as _time

import nni_pl as nni


def trial():
    _T0 = _time.time()
{body}"""

# An nni-pl experiment runs here: `nni-pl launch` in-process, or a function trial through the Experiment API.
NNI_RUNNER = """\
import json
import resource
import sys
import time

t_start = time.perf_counter()
from nni_pl.experiment import manager as _mg
from nni_pl.experiment.experiment import Experiment

# when the manager handed each trial to its service, and when the service's poll() told it the trial had ended
trace = {"submit": {}, "seen": {}}
_init = _mg.Manager.__init__


def init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    submit, poll = self.service.submit, self.service.poll

    def traced_submit(job):
        t = time.time()
        info = submit(job)
        trace["submit"][job.trial_id] = (t, time.time())
        return info

    def traced_poll(timeout):
        ends = poll(timeout)
        now = time.time()
        for end in ends:
            trace["seen"].setdefault(end.trial_id, now)
        return ends

    self.service.submit, self.service.poll = traced_submit, traced_poll


_mg.Manager.__init__ = init
timings = {}


def _timed(name, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t
    return wrapper


Experiment.prepare = _timed("prepare", Experiment.prepare)  # checks, the experiment created
Experiment.run = _timed("run", Experiment.run)

kind, config_file, exp_id = sys.argv[1:4]
on_ray = sys.argv[6] == "ray"
if on_ray:
    from nni_pl.training import ray_service

    # the connection to the cluster (ray.init, resource check) and the service's end (actors killed, shutdown)
    ray_service.RayTrainingService._connect = _timed("ray_connect", ray_service.RayTrainingService._connect)
    ray_service.RayTrainingService.shutdown = _timed("ray_shutdown", ray_service.RayTrainingService.shutdown)
if kind == "launch":
    from nni_pl.cli.main import main

    rc = main(["launch", config_file, "--no-display", "--no-webui", "--id", exp_id])
    exp = Experiment.view(exp_id, working_directory=sys.argv[4])
else:
    sys.path.insert(0, sys.argv[4])  # the trial code directory: `bench_trial` is imported here too
    with open(config_file) as f:
        config = json.load(f)
    exp = Experiment(config, trial="bench_trial:trial", id=exp_id)
    exp.prepare()  # as `nni-pl launch` does, so both kinds time the same steps
    exp.run(display=False)
    rc = 0
statuses, platforms = {}, set()
for t in exp.trials():
    statuses[t.status] = statuses.get(t.status, 0) + 1
    platforms.add(getattr(t, "platform", None))
cpu = resource.getrusage(resource.RUSAGE_SELF)
timings["total"] = time.perf_counter() - t_start
print("RESULT " + json.dumps({
    "ok": rc == 0 and statuses.get("SUCCEEDED") == int(sys.argv[5]) and platforms == {sys.argv[6]},
    "summary": f"exit {rc}, experiment {exp.get_status()}, trials {statuses} on {sorted(map(str, platforms))}",
    "timings": timings, "trace": trace, "driver_cpu": cpu.ru_utime + cpu.ru_stime,
}))
"""

# A Ray Tune experiment runs here, as a user would write it (Tune's defaults but for the silenced console).
TUNE_RUNNER = """\
import json
import os
import resource
import subprocess
import sys
import time

t_start = time.perf_counter()
kind, address, n, c, reuse, code_dir, stamps, storage = sys.argv[1:9]
n, c, reuse = int(n), int(c), reuse == "1"

import ray
from ray import tune

timings = {}
trace = {"submit": {}, "seen": {}}
TRIAL = os.path.join(code_dir, "trial.py")


class Trace(tune.Callback):
    # on_trial_start: Tune started the trial (its actor scheduled); on_trial_complete: Tune saw it end
    def on_trial_start(self, iteration, trials, trial, **info):
        t = time.time()
        trace["submit"][trial.trial_id] = (t, t)

    def on_trial_complete(self, iteration, trials, trial, **info):
        trace["seen"].setdefault(trial.trial_id, time.time())

    on_trial_error = on_trial_complete


def fn_trainable(config):
    t0 = time.time()
    x = config["x"]
    tune.report({"x": x})
    tune.report({"x": x, "final": 1})
    with open(stamps, "a") as f:
        f.write(f"{t0!r} {time.time()!r} {tune.get_context().get_trial_id()}\\n")


def cmd_trainable(config):
    env = dict(os.environ, BENCH_TRIAL_ID=tune.get_context().get_trial_id())
    subprocess.run([sys.executable, TRIAL], cwd=code_dir, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    x = config["x"]
    tune.report({"x": x})
    tune.report({"x": x, "final": 1})


t = time.perf_counter()
ray.init(address=address)
timings["connect"] = time.perf_counter() - t
trainable = tune.with_resources(fn_trainable if kind == "fn" else cmd_trainable, {"cpu": 1})
tuner = tune.Tuner(
    trainable,
    param_space={"x": tune.uniform(0, 1)},
    tune_config=tune.TuneConfig(num_samples=n, max_concurrent_trials=c, reuse_actors=reuse),
    run_config=tune.RunConfig(name="bench", storage_path=storage, verbose=0, callbacks=[Trace()]),
)
t = time.perf_counter()
results = tuner.fit()
timings["run"] = time.perf_counter() - t
errors, done = results.num_errors, results.num_terminated
t = time.perf_counter()
ray.shutdown()
timings["shutdown"] = time.perf_counter() - t
cpu = resource.getrusage(resource.RUSAGE_SELF)
timings["total"] = time.perf_counter() - t_start
print("RESULT " + json.dumps({
    "ok": errors == 0 and done == n,
    "summary": f"{done} trials terminated, {errors} errors",
    "timings": timings, "trace": trace, "driver_cpu": cpu.ru_utime + cpu.ru_stime,
}))
"""


@dataclass
class Sample:
    """One run of one mode: wall time, the trials' stamps, the runner's trace and timings, CPU."""

    wall: float
    n: int
    slots: int
    stamps: list[tuple[float, float, str]]  # each trial's first line ran, its reports returned, its id
    timings: dict[str, float] = field(default_factory=dict)
    trace: dict[str, dict[str, Any]] = field(default_factory=dict)  # the runner's submit and end-seen times
    driver_cpu: float | None = None  # CPU seconds of the process that ran the experiment
    machine_cpu: float | None = None  # busy CPU seconds of the whole machine during the run
    error: str | None = None

    @property
    def slot_e2e(self) -> float:
        """Seconds each slot was busy per trial, from start to exit of the whole run."""
        return self.wall * self.slots / self.n

    @property
    def slot_steady(self) -> float | None:
        """The same from the trials' own end stamps: first to last end holds (n - slots) trial turns."""
        if len(self.stamps) < self.n or self.n <= self.slots:
            return None
        ends = sorted(end for _, end, _ in self.stamps)
        return (ends[-1] - ends[0]) * self.slots / (self.n - self.slots)

    @property
    def in_trial(self) -> float | None:
        """Median time from the trial's first line to its last report (interpreter start excluded)."""
        return statistics.median(end - start for start, end, _ in self.stamps) if self.stamps else None

    def phases(self) -> dict[str, float | None]:
        """Medians over the trials of where a slot's time goes, from the stamps and the runner's trace."""
        submit, seen = self.trace.get("submit", {}), self.trace.get("seen", {})
        stamps = {tid: (start, end) for start, end, tid in self.stamps}
        starts, ends = sorted(t for t, _ in submit.values()), sorted(seen.values())
        c = self.slots
        return {
            "launch": _median([stamps[t][0] - submit[t][0] for t in stamps if t in submit]),
            "body": _median([end - start for start, end in stamps.values()]),
            "exit": _median([seen[t] - stamps[t][1] for t in stamps if t in seen]),
            # the i-th trial started when the (i-c)-th end freed its slot
            "turn": _median([starts[i] - ends[i - c] for i in range(c, len(starts)) if i - c < len(ends)]),
        }

    def per_trial(self, cpu: float | None) -> float | None:
        return None if cpu is None else cpu / self.n


# --- helpers -----------------------------------------------------------------------------------------------------
def _read_stamps(path: Path) -> list[tuple[float, float, str]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.append((float(parts[0]), float(parts[1]), parts[2]))
    return out


def _machine_busy() -> float | None:
    """Busy CPU seconds of the whole machine since boot (``/proc/stat``; every process, ours or not)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NNI_", "RAY_ADDRESS"))}
    env.update(extra)
    return env


def _result_line(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError("the runner printed no RESULT line")


def _run_group(cmd: list[str], *, timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` in a new session, so a timeout (or Ctrl-C) ends the runner's whole process tree."""
    proc = subprocess.Popen(
        cmd, start_new_session=True, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise RuntimeError(f"{cmd[1:3]} timed out after {timeout:.0f} s: {err[-1500:]}") from None
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _write_code(code: Path, stamps: Path) -> None:
    code.mkdir(parents=True)
    body = TRIAL_BODY.format(stamps=str(stamps))
    (code / "trial.py").write_text(TRIAL_SCRIPT.format(body=body), encoding="utf-8")
    (code / "bench_trial.py").write_text(FUNCTION_MODULE.format(body=body), encoding="utf-8")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the cluster -------------------------------------------------------------------------------------------------
def _session_members(sid: int) -> list[Any]:
    """The live processes of session ``sid`` (Ray's processes may leave the node's process group, not its
    session)."""
    import psutil  # a dependency of ray

    out = []
    for p in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(p.pid) == sid:
                out.append(p)
    return out


def _become_subreaper() -> None:
    """Linux: orphaned descendants (a node's raylet once its ``ray start`` is gone) become this process's
    children, so :meth:`Cluster.stop` reaps them instead of leaving zombies to an init that may never."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _reap(timeout: float = 3.0) -> None:
    """Collect every ended child (the runners are all done by now)."""
    deadline = time.time() + timeout
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # no children left
        if pid == 0:
            if time.time() >= deadline:
                return
            time.sleep(0.05)


@dataclass
class Cluster:
    """A Ray cluster of a head and worker nodes on this machine, each ``ray start --block`` in its own session."""

    folder: Path
    address: str = ""
    pids: list[int] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def start(self, workers: int = 1) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.address = f"127.0.0.1:{_free_port()}"
        # `python` in command trials and the trials' folders: what every node's workers inherit
        self.env = _clean_env(
            RAY_USAGE_STATS_ENABLED="0",
            NNI_PL_TRIAL_ROOT=str(self.folder / "trials"),
            PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        )
        self._node(head=True)
        self._wait(1)
        for _ in range(workers):
            self._node(head=False)
        self._wait(1 + workers)

    def _node(self, *, head: bool) -> None:
        ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable))
        if ray_bin is None:
            raise RuntimeError("the `ray` command is missing next to this Python (pip install 'ray[tune]')")
        common = [
            "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1", f"--num-cpus={NODE_CPUS}",
            "--num-gpus=0", f"--object-store-memory={OBJECT_STORE}",
        ]  # fmt: skip
        if head:
            args = [ray_bin, "start", "--head", f"--port={self.address.rpartition(':')[2]}",
                    "--include-dashboard=false", f"--ray-client-server-port={_free_port()}", *common]  # fmt: skip
        else:
            args = [ray_bin, "start", f"--address={self.address}", *common]
        with open(self.folder / f"node-{len(self.pids)}.log", "ab") as log:
            proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env=self.env,
            )  # fmt: skip
        self.pids.append(proc.pid)

    def live_nodes(self) -> int | None:
        """How many nodes are alive, asked by a fresh driver (this process never initialises Ray)."""
        code = (
            f"import ray; ray.init(address={self.address!r}, log_to_driver=False, configure_logging=False); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))"
        )
        try:
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=self.env
            )
        except subprocess.TimeoutExpired:
            return None
        lines = out.stdout.strip().splitlines()
        return int(lines[-1]) if out.returncode == 0 and lines and lines[-1].isdigit() else None

    def _wait(self, nodes: int, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if (self.live_nodes() or 0) >= nodes:
                return
            time.sleep(0.5)
        logs = "\n".join(
            p.read_text(errors="replace")[-1500:] for p in sorted(self.folder.glob("node-*.log"))
        )
        raise RuntimeError(f"the Ray cluster did not show {nodes} live nodes within {timeout:.0f} s:\n{logs}")

    def stop(self) -> None:
        """SIGTERM to each node's process group, then SIGKILL to whatever is left of each node's session."""
        for pid in reversed(self.pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.time() + 5.0
        while time.time() < deadline and any(_session_members(pid) for pid in self.pids):
            time.sleep(0.1)
        for pid in reversed(self.pids):
            for p in _session_members(pid):
                with contextlib.suppress(Exception):
                    p.kill()
        _reap()
        self.pids.clear()


# --- modes -------------------------------------------------------------------------------------------------------
@dataclass
class Bench:
    """What every run shares: the work folder, the cluster's address, the concurrency."""

    root: Path
    address: str
    c: int
    runs: int = 0

    def _runner(self, name: str, text: str) -> Path:
        path = self.root / name
        if not path.exists():
            path.write_text(text, encoding="utf-8")
        return path

    def _prepare(self, work: Path) -> Path:
        work.mkdir(parents=True)
        stamps = work / "stamps.txt"
        stamps.touch()
        _write_code(work / "code", stamps)
        self.runs += 1
        return stamps

    def _timed(self, cmd: list[str], work: Path, n: int, stamps: Path) -> Sample:
        busy0, t0 = _machine_busy(), time.perf_counter()
        try:
            proc = _run_group(
                cmd,
                timeout=120 + 5 * n,
                cwd=work / "code",
                env=_clean_env(NNI_PL_HOME=str(work / "home"), NNI_PL_TRIAL_ROOT=str(work / "trials")),
            )
        except RuntimeError as e:
            return Sample(time.perf_counter() - t0, n, self.c, _read_stamps(stamps), error=str(e))
        wall = time.perf_counter() - t0
        busy1 = _machine_busy()
        (work / "runner.out").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr, encoding="utf-8")
        sample = Sample(wall, n, self.c, _read_stamps(stamps))
        if busy0 is not None and busy1 is not None:
            sample.machine_cpu = busy1 - busy0
        try:
            result = _result_line(proc.stdout)
        except RuntimeError:
            sample.error = f"runner exited {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}"
            return sample
        sample.timings, sample.trace, sample.driver_cpu = (
            result["timings"],
            result["trace"],
            result["driver_cpu"],
        )
        if not result["ok"]:
            sample.error = result["summary"]
        return sample

    def nni(self, work: Path, n: int, platform: str, *, fn: bool) -> Sample:
        """One nni-pl experiment of ``n`` trials: ``nni-pl launch`` or, with ``fn``, a function trial."""
        stamps = self._prepare(work)
        cfg: dict[str, Any] = {
            "searchSpace": SEARCH_SPACE,
            "trialCodeDirectory": str(work / "code"),
            "trialConcurrency": self.c,
            "maxTrialNumber": n,
            "tuner": {"name": "Random"},
            "experimentWorkingDirectory": str(work / "experiments"),
            "trainingService": {"platform": "local"},
        }
        if platform == "ray":
            cfg["trainingService"] = {"platform": "ray", "address": self.address, "trialCpuNumber": 1}
        exp_id = f"cb{os.getpid() % 10000:04d}r{self.runs:03d}"  # fresh: a fresh set of actor names too
        if fn:
            config_file = work / "config.json"
            config_file.write_text(json.dumps(cfg), encoding="utf-8")
            argv = ["fn", str(config_file), exp_id, str(work / "code"), str(n), platform]
        else:
            import yaml

            cfg["trialCommand"] = "python trial.py"
            config_file = work / "config.yml"
            config_file.write_text(yaml.safe_dump(cfg), encoding="utf-8")
            argv = ["launch", str(config_file), exp_id, str(work / "experiments"), str(n), platform]
        runner = self._runner("nni_runner.py", NNI_RUNNER)
        return self._timed([sys.executable, str(runner), *argv], work, n, stamps)

    def tune(self, work: Path, n: int, *, fn: bool, reuse: bool) -> Sample:
        """One Ray Tune experiment of ``n`` trials on the benchmark's cluster."""
        stamps = self._prepare(work)
        argv = [
            "fn" if fn else "cmd", self.address, str(n), str(self.c), "1" if reuse else "0",
            str(work / "code"), str(stamps), str(work / "tune"),
        ]  # fmt: skip
        runner = self._runner("tune_runner.py", TUNE_RUNNER)
        return self._timed([sys.executable, str(runner), *argv], work, n, stamps)


def modes_of(bench: Bench, n: int, *, tune_cmd: bool = True) -> dict[str, Callable[[Path], Sample]]:
    """The modes, each a function of its work folder."""
    modes: dict[str, Callable[[Path], Sample]] = {
        "local cmd": lambda w: bench.nni(w, n, "local", fn=False),
        "local fn": lambda w: bench.nni(w, n, "local", fn=True),
        "ray cmd": lambda w: bench.nni(w, n, "ray", fn=False),
        "ray fn": lambda w: bench.nni(w, n, "ray", fn=True),
        "ray tune fn": lambda w: bench.tune(w, n, fn=True, reuse=False),
        "ray tune fn reuse": lambda w: bench.tune(w, n, fn=True, reuse=True),
    }
    if tune_cmd:
        modes["ray tune cmd"] = lambda w: bench.tune(w, n, fn=False, reuse=False)
    return modes


# --- report ------------------------------------------------------------------------------------------------------
def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _ms(v: float | None, digits: int = 0) -> str:
    return "—" if v is None else f"{v * 1000:,.{digits}f}"


def _x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}x"


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def _verdict(text: str, ok: bool | None) -> str:
    return "n/a" if ok is None else f"{text} {'**PASS**' if ok else '**FAIL**'}"


def summarise(samples: dict[str, list[Sample]]) -> dict[str, dict[str, float | None]]:
    out = {}
    for mode, runs in samples.items():
        good = [s for s in runs if s.error is None]
        keys = {k for s in good for k in s.timings}
        phases = [s.phases() for s in good]
        out[mode] = {
            **{f"phase_{k}": _median([p[k] for p in phases]) for k in PHASES},
            "wall": _median([s.wall for s in good]),
            "slot_e2e": _median([s.slot_e2e for s in good]),
            "slot_steady": _median([s.slot_steady for s in good]),
            "in_trial": _median([s.in_trial for s in good]),
            "driver_cpu": _median([s.per_trial(s.driver_cpu) for s in good]),
            "machine_cpu": _median([s.per_trial(s.machine_cpu) for s in good]),
            **{k: _median([s.timings.get(k) for s in good]) for k in sorted(keys)},
        }
    return out


def render(args: argparse.Namespace, meta: dict[str, Any], samples: dict[str, list[Sample]]) -> str:
    c, n = args.concurrency, args.n
    s = summarise(samples)
    # ratios pair two modes of the same repeat, then take the median over the repeats
    reps = [summarise({m: runs[i : i + 1] for m, runs in samples.items()}) for i in range(args.repeats)]

    def paired(mode: str, key: str, base: str = BASE) -> float | None:
        return _median([_div(r.get(mode, {}).get(key), r.get(base, {}).get(key)) for r in reps])

    lines = [
        "# Ray cluster trial overhead: nni-pl on Ray against local trials and Ray Tune on the same cluster",
        "",
        f"Generated by `benchmarks/cluster_overhead.py` on {meta['date']} (`{meta['command']}`), "
        f"in {meta['elapsed']:.0f} s.",
        "",
        f"- Machine: {meta['machine']}. Load average (1/5/15 min) before: {meta['load_before']}, after: "
        f"{meta['load_after']}. Other work may share the machine; the modes are interleaved so it hits all alike.",
        f"- Python {meta['python']}; nni-pl {meta['nni_pl']} ({meta['revision']}); Ray {meta['ray']} (Ray Tune "
        "from the same package).",
        f"- Cluster: {meta['cluster']}.",
        f"- N = {n} trivial trials per run, concurrency c = {c}, {args.repeats} repeats with the modes interleaved "
        "within each repeat"
        + (", after one untimed warm-up run of every Ray mode" if meta.get("warmup") else "")
        + ". Absolute numbers are medians over the repeats; ratios are taken within each repeat and then the "
        "median.",
        "",
        "## Target",
        "",
        "nni-pl on Ray at least as fast per trial as Ray Tune on the same cluster: slot/trial of the nni-pl mode / "
        f"slot/trial of the Ray Tune mode <= {TARGET_RATIO:.2f}. `{PEER}` is Tune as a user gets it "
        "(`reuse_actors=False` is Tune's default).",
        "",
        "| nni-pl mode | Ray Tune mode | steady state | end-to-end |",
        "|---|---|---|---|",
    ]
    for mine, peer in TARGETS:
        if mine not in s or peer not in s:
            continue
        cells = []
        for key in ("slot_steady", "slot_e2e"):
            r = paired(mine, key, peer)
            cells.append(_verdict(_x(r), None if r is None else r <= TARGET_RATIO))
        lines.append(f"| {mine} | {peer} | " + " | ".join(cells) + " |")
    tune_modes = [m for m in samples if m.startswith("ray tune")]
    lines += [
        "",
        "## Per-trial time",
        "",
        f"slot/trial = the time one of the c = {c} slots spends per trial.",
        "",
        f"| mode | wall (s) | e2e slot/trial (ms) | e2e / {BASE} | steady slot/trial (ms) | steady / {BASE} "
        f"| steady / {PEER} | trial's own time (ms) | driver CPU/trial (ms) | machine CPU/trial (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, runs in samples.items():
        m = s[mode]
        errors = [x.error for x in runs if x.error]
        if m["wall"] is None:
            lines.append(
                f"| {mode} | failed: {(errors[0] if errors else '?')[:200].replace('|', '/')} ||||||||"
            )
            continue
        note = f" ({len(errors)}/{len(runs)} failed)" if errors else ""
        lines.append(
            f"| {mode}{note} | {m['wall']:.2f} | {_ms(m['slot_e2e'], 1)} | {_x(paired(mode, 'slot_e2e'))} "
            f"| {_ms(m['slot_steady'], 1)} | {_x(paired(mode, 'slot_steady'))} "
            f"| {_x(paired(mode, 'slot_steady', PEER))} | {_ms(m['in_trial'], 1)} "
            f"| {_ms(m['driver_cpu'], 1)} | {_ms(m['machine_cpu'], 1)} |"
        )
    if tune_modes:
        lines += [
            "",
            "## nni-pl on Ray against each Ray Tune mode",
            "",
            "nni-pl slot/trial / Ray Tune slot/trial, steady state (end-to-end in brackets); below 1.00x nni-pl "
            "is faster.",
            "",
            "| nni-pl mode | " + " | ".join(tune_modes) + " |",
            "|---|" + "---:|" * len(tune_modes),
        ]
        for mine in ("ray cmd", "ray fn"):
            if mine in s:
                lines.append(
                    f"| {mine} | "
                    + " | ".join(
                        f"{_x(paired(mine, 'slot_steady', t))} ({_x(paired(mine, 'slot_e2e', t))})"
                        for t in tune_modes
                    )
                    + " |"
                )
    lines += [
        "",
        "## Where the time goes",
        "",
        "A slot's time per trial, split at four moments of each trial (medians over the trials of a run, then over "
        "the repeats, in ms): the driver hands the trial over (nni-pl: the manager calls the service's `submit()`; "
        "Tune: its `Callback.on_trial_start`), the trial's first line runs, its last report returns, and the driver "
        "learns that it ended (nni-pl: the service's `poll()` returns it; Tune: `on_trial_complete`). Their sum is "
        "close to the steady slot/trial. Tune calls `on_trial_start` once the trial's actor is up, so the start of "
        "a new actor (each trial with `reuse_actors=False`) lands in its *end seen -> next hand-over*; nni-pl's "
        "warm actors take the next trial at once (only the first trial of each actor waits for its start, in "
        "*hand-over -> first line*).",
        "",
        "| mode | hand-over -> first line | trial's own time | last report -> end seen | end seen -> next hand-over "
        "| sum | steady slot/trial |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in samples:
        m = s[mode]
        if m.get("phase_launch") is None:
            continue
        parts = [m[f"phase_{k}"] for k in PHASES]
        total = None if any(v is None for v in parts) else sum(parts)  # type: ignore[arg-type]
        lines.append(
            f"| {mode} | "
            + " | ".join(_ms(v, 1) for v in parts)
            + f" | {_ms(total, 1)} | {_ms(m['slot_steady'], 1)} |"
        )
    lines.append("")
    for mode in samples:
        m = s[mode]
        if m.get("prepare") is not None:
            ray_part = ""
            if m.get("ray_connect") is not None:
                ray_part = (
                    f"; in them the service's connection to the cluster (`ray.init()` with the code upload, the "
                    f"resource check) {_ms(m['ray_connect'])} ms and its end (actors killed, `ray.shutdown()`) "
                    f"{_ms(m.get('ray_shutdown'))} ms"
                )
            lines.append(
                f"- {mode}: `prepare()` {_ms(m['prepare'])} ms, `run()` {_ms(m.get('run'))} ms{ray_part}, "
                f"runner process {_ms(m.get('total'))} ms of a {_ms(m['wall'])} ms wall."
            )
        elif m.get("connect") is not None:
            lines.append(
                f"- {mode}: `ray.init()` {_ms(m['connect'])} ms, `Tuner.fit()` {_ms(m.get('run'))} ms, "
                f"`ray.shutdown()` {_ms(m.get('shutdown'))} ms, runner process {_ms(m.get('total'))} ms of a "
                f"{_ms(m['wall'])} ms wall."
            )
    lines += [
        "",
        METHOD.format(c=c, cores=os.cpu_count(), cpus=NODE_CPUS, store=OBJECT_STORE // 1_000_000).strip(),
        "",
        "## Every run",
        "",
        "| repeat | mode | wall (s) | e2e slot (ms) | steady slot (ms) | note |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for mode, runs in samples.items():
        for i, x in enumerate(runs, 1):
            note = (x.error or "")[:160].replace("|", "/").replace("\n", " ")
            lines.append(
                f"| {i} | {mode} | {x.wall:.2f} | {_ms(x.slot_e2e, 1)} | {_ms(x.slot_steady, 1)} | {note} |"
            )
    return "\n".join(lines) + "\n"


METHOD = """
## Method

- **Cluster**: one Ray cluster started by the benchmark and stopped at its end: `ray start --head --block` and
  one `ray start --address ... --block` worker node, each in a session of its own, bound to 127.0.0.1, {cpus}
  logical CPUs and a {store} MB object store per node, no dashboard. Both nodes, every driver and every trial
  share this machine's {cores} cores, and there is no network between the nodes. Every Ray mode of every run
  connects to this one cluster; the cluster's start is in no mode's time.
- **Trivial trial**: takes `x`, reports one intermediate and one final result, then appends one line of time
  stamps to a stamps file (its first line ran, its reports had returned). nni-pl's command modes run
  `python trial.py` (`import nni_pl as nni`, `get_next_parameter()`, `report_intermediate_result`,
  `report_final_result`); the function modes run the same body as `bench_trial:trial` (a module in the trial
  code directory). Ray Tune's `fn` trainable calls `tune.report` twice (each report waits for Tune's driver
  to take the result, Tune's design); its `cmd` trainable runs the same `trial.py` in a subprocess (the SDK in
  standalone mode, so no metric transport of nni-pl's) and then calls `tune.report` twice.
- **nni-pl runs**: each experiment runs in a runner process of its own with a fresh `NNI_PL_HOME`, experiment
  folder and experiment id: `nni-pl launch config.yml --no-display --no-webui` called in-process for the command
  modes, `Experiment(config, trial="bench_trial:trial").run()` for the function modes, `tuner: Random`,
  `trialConcurrency: {c}`. The Ray modes use `trainingService: {{platform: ray, address: <the cluster>,
  trialCpuNumber: 1}}` and the defaults otherwise: `reuseMode: true` ({c} warm detached actors, one trial at a
  time each), `runtimeEnv.working_dir` = `trialCodeDirectory` (uploaded once per experiment). Their time holds
  the manager's start, the SQLite store, the connection to the cluster, the code upload, the actors' start and
  the experiment's end (actors killed, `ray.shutdown()`).
- **Ray Tune runs**: each in a runner process of its own: `ray.init(address=<the cluster>)`, then
  `tune.Tuner(tune.with_resources(trainable, {{"cpu": 1}}), param_space={{"x": tune.uniform(0, 1)}},
  tune_config=TuneConfig(num_samples=N, max_concurrent_trials={c}, reuse_actors=...),
  run_config=RunConfig(storage_path=<temp dir>, verbose=0, callbacks=[<timing callback>])).fit()`, then
  `ray.shutdown()`. Everything else is Tune's default (random search, FIFO scheduler, its result loggers and
  experiment-state checkpoints under the storage path). Its time holds Tune's experiment setup, a trial actor
  per trial (or reused actors with `reuse_actors=True`), its bookkeeping and its end.
- **Accounting** (as in `trial_overhead.py`): **e2e** `slot = wall * c / N`, the wall time measured by this
  script from the runner's start to its exit (interpreter start, imports, connection to the cluster, setup and
  shutdown included); **steady state** `slot = c * (last end - first end) / (N - c)` from the trials' own end
  stamps (start-up and shutdown excluded). The trial's own time is the median from its first line to its last
  report. **driver CPU** is the runner process's user + system CPU (nni-pl's manager or Tune's driver; not the
  Ray workers, raylets or GCS); **machine CPU** is the busy time of all cores over the run from `/proc/stat`
  (drivers, Ray's processes, trials, and anything else that ran meanwhile), each divided by N.
"""


# --- main --------------------------------------------------------------------------------------------------------
def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu})"


def _revision() -> str:
    """The commit the benchmark ran at, and whether ``nni_pl/`` had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "nni_pl"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "revision unknown"
    return f"commit {head}" + (", with uncommitted changes in nni_pl/" if dirty else "")


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` that stops the cluster


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=40, help="trivial trials per run (default 40)")
    p.add_argument("--concurrency", type=int, default=2, help="trials at a time (default 2)")
    p.add_argument(
        "--repeats", type=int, default=3, help="rounds over all modes; medians are reported (default 3)"
    )
    p.add_argument("--skip-tune-cmd", action="store_true", help="leave out the `ray tune cmd` mode")
    p.add_argument(
        "--no-warmup", action="store_true", help="no untimed warm-up run of each Ray mode before the rounds"
    )
    p.add_argument(
        "--modes",
        help="comma-separated modes to run (default: all); e.g. 'local cmd,ray fn,ray tune fn' (ratios need "
        f"`{BASE}` and `{PEER}`)",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: N=8, 1 repeat")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown results file")
    p.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.repeats = 8, 1
    if args.n <= args.concurrency:
        p.error(f"--n must exceed --concurrency, got n={args.n}, concurrency={args.concurrency}")
    wanted = [m.strip() for m in args.modes.split(",")] if args.modes else []
    unknown = sorted(set(wanted) - set(modes_of(Bench(Path("."), "", 1), 3)))
    if unknown:
        p.error(f"unknown modes {unknown}; the modes are {', '.join(modes_of(Bench(Path('.'), '', 1), 3))}")
    if args.concurrency > 2 * NODE_CPUS:
        p.error(f"--concurrency must be at most {2 * NODE_CPUS} (the cluster's CPUs)")

    import ray

    import nni_pl

    started = time.perf_counter()
    c = args.concurrency
    meta: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": _machine(),
        "python": platform.python_version(),
        "nni_pl": nni_pl.__version__,
        "ray": ray.__version__,
        "revision": _revision(),
        "load_before": _load(),
        "warmup": not args.no_warmup,
        "command": " ".join(
            ["python", "benchmarks/cluster_overhead.py", *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    _become_subreaper()
    root = Path(tempfile.mkdtemp(prefix="cluster_overhead_"))
    cluster = Cluster(root / "cluster")
    samples: dict[str, list[Sample]] = {}
    old_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        cluster.start(workers=1)
        meta["cluster"] = (
            f"head + 1 worker node at {cluster.address}, {NODE_CPUS} CPUs and "
            f"{OBJECT_STORE // 1_000_000} MB object store each"
        )
        bench = Bench(root, cluster.address, c)
        modes = modes_of(bench, args.n, tune_cmd=not args.skip_tune_cmd)
        if wanted:
            modes = {m: fn for m, fn in modes.items() if m in wanted}
        samples.update({m: [] for m in modes})
        if not args.no_warmup:  # a fresh cluster's first drivers and workers pay one-off costs
            for mode, fn in modes_of(bench, c + 1, tune_cmd=not args.skip_tune_cmd).items():
                if mode.startswith("ray") and mode in modes:
                    sample = fn(root / "warmup" / mode.replace(" ", "_"))
                    print(
                        f"[warm-up] {mode:<18} wall {sample.wall:7.2f} s  {sample.error or 'ok'}", flush=True
                    )
        for rep in range(1, args.repeats + 1):
            for mode, fn in modes.items():
                work = root / f"r{rep}" / mode.replace(" ", "_")
                try:
                    sample = fn(work)
                except Exception as e:  # record and go on: one failed mode must not hide the others
                    sample = Sample(0.0, args.n, c, [], error=f"{type(e).__name__}: {e}")
                samples[mode].append(sample)
                status = sample.error or (
                    f"e2e slot {_ms(sample.slot_e2e, 1)} ms, steady {_ms(sample.slot_steady, 1)} ms"
                )
                print(
                    f"[{rep}/{args.repeats}] {mode:<18} wall {sample.wall:7.2f} s  {status[:300]}", flush=True
                )
    finally:
        cluster.stop()
        signal.signal(signal.SIGTERM, old_term)
        if args.keep:
            print(f"work folder kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    meta["load_after"] = _load()
    meta["elapsed"] = time.perf_counter() - started
    report = render(args, meta, samples)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")
    print(report)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
