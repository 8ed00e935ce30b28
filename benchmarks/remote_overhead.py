"""Remote trial overhead: nni-pl trials over SSH (reuse and not) against local command and function trials.

Starts two real OpenSSH hosts on this machine (:mod:`nni_pl.testing.sshd`: as root, network namespaces with
their own addresses, accounts and ``sshd``: "loopback hosts"), runs N trivial trials at concurrency c (default
40 and 2) with every mode, side by side, repeats the whole round ``--repeats`` times (interleaved, so drifting
machine load hits every mode alike) and writes medians, ratios against local command trials, the metric
latency and the pass/fail of the targets to ``benchmarks/results/remote_overhead.md``.

A trivial trial imports the SDK, calls ``get_next_parameter()``, reports one intermediate and one final
result, and appends one line of time stamps to a stamps file (its first line ran, its reports had returned).
Modes:

* ``bare x2``: the same ``trial.py`` standalone, ``python trial.py`` c at a time from a thread pool (what the
  trial itself costs on c busy slots, with no bookkeeping at all); reference only.
* ``local cmd``: ``nni-pl launch`` of ``trialCommand: python trial.py`` on ``platform: local``.
* ``local fn``: ``Experiment(trial="bench_trial:trial")`` on ``platform: local`` (pre-warmed workers).
* ``remote reuse``: ``nni-pl launch`` of ``trialCommand: python trial.py`` on ``platform: remote`` with both
  hosts in ``machineList`` and ``reuseMode: true`` (one agent per host runs trial after trial).
* ``remote no-reuse``: the same with ``reuseMode: false`` (an agent on a new SSH channel per trial).
* ``remote fn``: ``Experiment(config, trial="bench_trial:trial")`` on ``platform: remote``, reuse mode: the
  hosts import the function from the uploaded code directory (``python -m nni_pl.training.remote_agent call``
  in a process per trial).

Every experiment runs in a runner process that wraps :meth:`nni_pl.experiment.store.Store.add_metrics` and
:meth:`~nni_pl.experiment.store.Store.batch` (no nni-pl code changes): each stored metric's latency is the time
its store transaction committed minus the record's own ``time`` (stamped by the SDK in the trial when it
reported). The hosts share this machine's clock, so the difference is meaningful. Besides the trivial trials,
each round runs a short *streaming* experiment per mode (a few trials reporting ``--stream-steps``
intermediates 100 ms apart), the latency of metrics of a running trial.

Usage::

    .venv/bin/python benchmarks/remote_overhead.py                 # N=40, c=2, 3 repeats (as root, a few min)
    .venv/bin/python benchmarks/remote_overhead.py --quick --output /tmp/remote_overhead.md
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import os
import platform
import shutil
import signal
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
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "remote_overhead.md"
SEARCH_SPACE = {"x": {"_type": "uniform", "_value": [0, 1]}}
STREAM_GAP_S = 0.1  # seconds between a streaming trial's intermediate reports
PHASES = ("submit_call", "launch", "body", "exit", "turn")
RATIO_TARGET = 1.5  # remote reuse per-trial time / local cmd per-trial time
LATENCY_TARGET_S = 0.200  # median report -> stored

# One trial program for every mode. ``steps`` (a parameter, 0 by default) turns it into a streaming trial.
TRIAL_BODY = """\
    params = nni.get_next_parameter() or {{}}
    x = params.get("x", 0.5)
    for i in range(int(params.get("steps", 0))):
        nni.report_intermediate_result(x + i)
        _time.sleep({gap!r})
    nni.report_intermediate_result(x)
    nni.report_final_result(x)
    with open({stamps!r}, "a") as _f:
        _f.write(f"{{_T0!r}} {{_time.time()!r}} {{nni.get_trial_id()}}\\n")
"""

TRIAL_SCRIPT = """\
import time as _time
_T0 = _time.time()
import nni_pl as nni


def _main():
{body}

_main()
"""

FUNCTION_MODULE = """\
import time as _time

import nni_pl as nni


def trial():
    _T0 = _time.time()
{body}"""

# The experiment runs here, in a process of its own; the store is wrapped to time when each metric is committed.
RUNNER = """\
import contextlib
import json
import resource
import sys
import time

t_start = time.perf_counter()
from nni_pl.experiment import store as _st
from nni_pl.experiment.experiment import Experiment

stored = []  # [trial_id, type, seq, reported (record time), committed]
_pending = []
_add, _batch = _st.Store.add_metrics, _st.Store.batch


def _stamp(rows):
    now = time.time()
    stored.extend([*row, now] for row in rows)


def add_metrics(self, experiment_id, trial_id, records, **kwargs):
    new = _add(self, experiment_id, trial_id, records, **kwargs)
    rows = [(trial_id, m.type, m.seq, m.timestamp) for m in new]
    if rows:
        (_pending.extend if self._batching else _stamp)(rows)  # a batch commits at its end
    return new


@contextlib.contextmanager
def batch(self):
    outer = not self._batching
    with _batch(self):
        yield
    if outer and _pending:
        _stamp(_pending)
        _pending.clear()


_st.Store.add_metrics, _st.Store.batch = add_metrics, batch

# when the manager handed each trial to its service, and when the service's poll() told it the trial had ended
from nni_pl.experiment import manager as _mg

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


Experiment.prepare = _timed("prepare", Experiment.prepare)  # checks, hosts reached, the experiment created
Experiment.run = _timed("run", Experiment.run)

kind, config_file, exp_id = sys.argv[1:4]
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
statuses = {}
for t in exp.trials():
    statuses[t.status] = statuses.get(t.status, 0) + 1
self_cpu = resource.getrusage(resource.RUSAGE_SELF)
timings["total"] = time.perf_counter() - t_start
print("RESULT " + json.dumps({
    "rc": rc, "statuses": statuses, "status": exp.get_status(), "timings": timings, "stored": stored,
    "trace": trace,
    "manager_cpu": self_cpu.ru_utime + self_cpu.ru_stime,
}))
"""


@dataclass
class Sample:
    """One run of one mode: wall time, the trials' stamps, the stored metrics' latencies, CPU."""

    wall: float
    n: int
    slots: int
    stamps: list[tuple[float, float, str]]  # each trial's first line ran, its reports returned, its id
    timings: dict[str, float] = field(default_factory=dict)
    trace: dict[str, dict[str, Any]] = field(default_factory=dict)  # the runner's submit and end-seen times
    latencies: dict[str, list[float]] = field(default_factory=dict)  # metric type -> seconds
    manager_cpu: float | None = None  # CPU seconds of the process that ran the experiment
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
            "submit_call": _median([b - a for a, b in submit.values()]),
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNI_")}
    env.update(extra)
    return env


def _result_line(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError("the runner printed no RESULT line")


def _run_group(cmd: list[str], *, timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` in a new session, so a timeout ends the runner's whole process tree."""
    proc = subprocess.Popen(
        cmd, start_new_session=True, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise RuntimeError(f"{cmd[-4:]} timed out after {timeout:.0f} s: {err[-1500:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _shared_file(path: Path) -> Path:
    """An empty file every account may append to (remote trials run as the hosts' own users)."""
    path.touch()
    path.chmod(0o666)
    return path


def _write_code(code: Path, stamps: Path) -> None:
    code.mkdir(parents=True)
    body = TRIAL_BODY.format(gap=STREAM_GAP_S, stamps=str(stamps))
    (code / "trial.py").write_text(TRIAL_SCRIPT.format(body=body), encoding="utf-8")
    (code / "bench_trial.py").write_text(FUNCTION_MODULE.format(body=body), encoding="utf-8")


# --- modes -------------------------------------------------------------------------------------------------------
@dataclass
class Bench:
    """What every run shares: the work folder, the runner, the hosts (as config entries) and ``known_hosts``."""

    root: Path
    c: int
    machines: list[dict[str, Any]]
    known_hosts: Path | None
    runs: int = 0

    @property
    def runner(self) -> Path:
        path = self.root / "runner.py"
        if not path.exists():
            path.write_text(RUNNER, encoding="utf-8")
        return path

    def config(
        self, work: Path, n: int, platform: str, *, reuse: bool = True, steps: int = 0
    ) -> dict[str, Any]:
        """The experiment's config (NNI v2 keys) for ``n`` trials in ``work/code``."""
        space = dict(SEARCH_SPACE)
        if steps:
            space["steps"] = {"_type": "choice", "_value": [steps]}
        cfg: dict[str, Any] = {
            "searchSpace": space,
            "trialCodeDirectory": str(work / "code"),
            "trialConcurrency": self.c,
            "maxTrialNumber": n,
            "tuner": {"name": "Random"},
            "experimentWorkingDirectory": str(work / "experiments"),
        }
        if platform == "local":
            cfg["trainingService"] = {"platform": "local"}
        else:
            cfg["trainingService"] = {
                "platform": "remote",
                "reuseMode": reuse,
                "knownHostsFile": str(self.known_hosts),
                "machineList": self.machines,
            }
        return cfg

    def experiment(
        self, work: Path, n: int, platform: str, *, fn: bool = False, reuse: bool = True, steps: int = 0
    ) -> Sample:
        """One experiment of ``n`` trials in a runner process: ``nni-pl launch`` or, with ``fn``, a function."""
        work.mkdir(parents=True)
        work.chmod(0o755)  # the hosts' accounts read the stamps file's folder
        stamps = _shared_file(work / "stamps.txt")
        _write_code(work / "code", stamps)
        cfg = self.config(work, n, platform, reuse=reuse, steps=steps)
        self.runs += 1
        exp_id = f"bench{self.runs:03d}"  # a fresh id per run: a fresh folder on the hosts as well
        if fn:
            config_file = work / "config.json"
            config_file.write_text(json.dumps(cfg), encoding="utf-8")
            argv = ["fn", str(config_file), exp_id, str(work / "code")]
        else:
            import yaml

            cfg["trialCommand"] = "python trial.py"
            config_file = work / "config.yml"
            config_file.write_text(yaml.safe_dump(cfg), encoding="utf-8")
            argv = ["launch", str(config_file), exp_id, str(work / "experiments")]
        busy0, t0 = _machine_busy(), time.perf_counter()
        try:
            proc = _run_group(
                [sys.executable, str(self.runner), *argv],
                timeout=120 + 5 * n * (1 + steps * STREAM_GAP_S),
                cwd=work / "code",
                env=_clean_env(NNI_PL_HOME=str(work / "home")),
            )
        except RuntimeError as e:
            return Sample(time.perf_counter() - t0, n, self.c, _read_stamps(stamps), error=str(e))
        wall = time.perf_counter() - t0
        busy1 = _machine_busy()
        sample = Sample(wall, n, self.c, _read_stamps(stamps))
        if busy0 is not None and busy1 is not None:
            sample.machine_cpu = busy1 - busy0
        try:
            result = _result_line(proc.stdout)
        except RuntimeError:
            sample.error = f"runner exited {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}"
            return sample
        sample.timings = result["timings"]
        sample.trace = result["trace"]
        sample.manager_cpu = result["manager_cpu"]
        for _trial, kind, _seq, reported, committed in result["stored"]:
            sample.latencies.setdefault(kind, []).append(committed - reported)
        if result["rc"] != 0 or result["statuses"].get("SUCCEEDED") != n:
            sample.error = f"exit {result['rc']}, experiment {result['status']}, trials {result['statuses']}"
        return sample

    def bare(self, work: Path, n: int) -> Sample:
        work.mkdir(parents=True)
        stamps = _shared_file(work / "stamps.txt")
        _write_code(work / "code", stamps)
        env = _clean_env()

        def one(_: int) -> None:
            subprocess.run(
                [sys.executable, "trial.py"],
                cwd=work / "code",
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
            )

        busy0, t0 = _machine_busy(), time.perf_counter()
        with cf.ThreadPoolExecutor(self.c) as pool:
            list(pool.map(one, range(n)))
        wall = time.perf_counter() - t0
        busy1 = _machine_busy()
        sample = Sample(wall, n, self.c, _read_stamps(stamps))
        if busy0 is not None and busy1 is not None:
            sample.machine_cpu = busy1 - busy0
        return sample


def modes_of(
    bench: Bench, n: int, *, steps: int = 0, remote_fn: bool = True
) -> dict[str, Callable[[Path], Sample]]:
    """The modes, each a function of its work folder; ``steps`` makes the trials streaming ones."""
    modes: dict[str, Callable[[Path], Sample]] = {}
    if not steps:
        modes[f"bare x{bench.c}"] = lambda w: bench.bare(w, n)
    modes["local cmd"] = lambda w: bench.experiment(w, n, "local", steps=steps)
    modes["local fn"] = lambda w: bench.experiment(w, n, "local", fn=True, steps=steps)
    if bench.machines:
        modes["remote reuse"] = lambda w: bench.experiment(w, n, "remote", steps=steps)
        modes["remote no-reuse"] = lambda w: bench.experiment(w, n, "remote", reuse=False, steps=steps)
        if remote_fn:
            modes["remote fn"] = lambda w: bench.experiment(w, n, "remote", fn=True, steps=steps)
    return modes


# --- report ------------------------------------------------------------------------------------------------------
def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _p90(values: list[float]) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def _ms(v: float | None, digits: int = 0) -> str:
    return "—" if v is None else f"{v * 1000:,.{digits}f}"


def _x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}x"


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


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
            "manager_cpu": _median([s.per_trial(s.manager_cpu) for s in good]),
            "machine_cpu": _median([s.per_trial(s.machine_cpu) for s in good]),
            **{k: _median([s.timings.get(k) for s in good]) for k in sorted(keys)},
        }
    return out


def latencies(runs: list[Sample], kind: str | None = None) -> list[float]:
    """Every stored metric's latency over the runs (of one metric type, or all)."""
    return [
        v for s in runs if s.error is None for k, vs in s.latencies.items() if kind in (None, k) for v in vs
    ]


def render(
    args: argparse.Namespace,
    meta: dict[str, Any],
    samples: dict[str, list[Sample]],
    streams: dict[str, list[Sample]],
) -> str:
    c, n, bare = args.concurrency, args.n, f"bare x{args.concurrency}"
    s = summarise(samples)
    # ratios pair each mode with local cmd of the same repeat, then take the median over the repeats
    reps = [summarise({m: runs[i : i + 1] for m, runs in samples.items()}) for i in range(args.repeats)]

    def paired(
        mode: str, key: str, base: str = "local cmd", op: Callable[..., float | None] = _div
    ) -> float | None:
        return _median([op(r.get(mode, {}).get(key), r.get(base, {}).get(key)) for r in reps])

    reuse = "remote reuse"
    remote_modes = [m for m in ("remote reuse", "remote no-reuse", "remote fn") if m in samples]
    lines = [
        "# Remote trial overhead: trials over SSH (reuse and not) against local command and function trials",
        "",
        f"Generated by `benchmarks/remote_overhead.py` on {meta['date']} (`{meta['command']}`), "
        f"in {meta['elapsed']:.0f} s.",
        "",
        f"- Machine: {meta['machine']}. Load average (1/5/15 min) before: {meta['load_before']}, after: "
        f"{meta['load_after']}. Other work may share the machine; the modes are interleaved so it hits all alike.",
        f"- Python {meta['python']}; nni-pl {meta['nni_pl']} ({meta['revision']}); paramiko {meta['paramiko']}; "
        f"{meta['sshd']}.",
        f"- Hosts: {meta['hosts']}.",
        f"- N = {n} trivial trials per run, concurrency c = {c}, {args.repeats} repeats with the modes interleaved "
        "within each repeat. Absolute numbers are medians over the repeats; ratios are taken within each repeat "
        "(against that repeat's `local cmd`) and then the median. Streaming runs: "
        f"{args.stream_trials} trials per mode and repeat, each reporting {args.stream_steps} intermediates "
        f"{STREAM_GAP_S * 1000:.0f} ms apart.",
        "",
        "## Targets",
        "",
        "| target | steady state | end-to-end |",
        "|---|---|---|",
    ]
    if reuse in s:
        cells = []
        for key in ("slot_steady", "slot_e2e"):
            r = paired(reuse, key)
            cells.append(_verdict(_x(r), None if r is None else r <= RATIO_TARGET))
        lines.append(
            f"| remote reuse within {RATIO_TARGET}x of local command trials per trial (slot / local cmd slot) | "
            + " | ".join(cells)
            + " |"
        )
    for mode in remote_modes:
        trivial, stream = latencies(samples[mode]), latencies(streams.get(mode, []))
        cells = []
        for values, what in ((trivial, "trivial trials"), (stream, "streaming trials")):
            med = _median(values)
            cells.append(
                _verdict(
                    f"{_ms(med, 1)} ms median ({what}, {len(values)} metrics)",
                    None if med is None else med < LATENCY_TARGET_S,
                )
            )
        lines.append(
            f"| {mode}: metric latency report -> stored under 200 ms at the median | "
            + " | ".join(cells)
            + " |"
        )
    if not remote_modes:
        lines.append(f"| remote modes | not run: {meta['hosts']} | |")
    lines += [
        "",
        "## Per-trial time",
        "",
        f"slot/trial = the time one of the c = {c} slots spends per trial; overhead = slot - the `{bare}` slot of "
        "the same repeat (the trial script run standalone c at a time, no bookkeeping).",
        "",
        "| mode | wall (s) | e2e slot/trial (ms) | e2e / local cmd | steady slot/trial (ms) | steady / local cmd "
        f"| steady overhead over {bare} (ms) | trial's own time (ms) | manager CPU/trial (ms) "
        "| machine CPU/trial (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, runs in samples.items():
        m = s[mode]
        errors = [x.error for x in runs if x.error]
        if m["wall"] is None:
            lines.append(
                f"| {mode} | failed: {(errors[0] if errors else '?')[:200].replace('|', '/')} |||||||||"
            )
            continue
        note = f" ({len(errors)}/{len(runs)} failed)" if errors else ""
        lines.append(
            f"| {mode}{note} | {m['wall']:.2f} | {_ms(m['slot_e2e'], 1)} | {_x(paired(mode, 'slot_e2e'))} "
            f"| {_ms(m['slot_steady'], 1)} | {_x(paired(mode, 'slot_steady'))} "
            f"| {_ms(paired(mode, 'slot_steady', bare, _sub), 1)} | {_ms(m['in_trial'], 1)} "
            f"| {_ms(m['manager_cpu'], 1)} | {_ms(m['machine_cpu'], 1)} |"
        )
    lines += [
        "",
        "## Metric latency (report -> stored)",
        "",
        "From the trial's report call (the record's `time`, stamped by the SDK in the trial) to the commit of the "
        "store transaction that holds it, in ms, pooled over the repeats. *Trivial* trials report one intermediate "
        "and the final result right before they end; *streaming* trials report an intermediate every "
        f"{STREAM_GAP_S * 1000:.0f} ms while they run, then the final result.",
        "",
        "| mode | trials | metrics | intermediate median | intermediate p90 | final median | final p90 "
        "| all median | all p90 | max |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in samples:
        if mode == bare:
            continue
        for what, runs in (("trivial", samples[mode]), ("streaming", streams.get(mode, []))):
            every = latencies(runs)
            if not every:
                continue
            inter, final = latencies(runs, "PERIODICAL"), latencies(runs, "FINAL")
            lines.append(
                f"| {mode} | {what} | {len(every)} | {_ms(_median(inter), 1)} | {_ms(_p90(inter), 1)} "
                f"| {_ms(_median(final), 1)} | {_ms(_p90(final), 1)} | {_ms(_median(every), 1)} "
                f"| {_ms(_p90(every), 1)} | {_ms(max(every), 1)} |"
            )
    lines += [
        "",
        "## Where the time goes",
        "",
        "A slot's time per trial, split at four moments of each trial (medians over the trials of a run, then over "
        "the repeats, in ms): the manager calls the service's `submit()`, the trial's first line runs, its last "
        "report returns, and the service's `poll()` tells the manager that it ended. *submit -> first line* holds "
        "the `submit()` call itself (its own column), the message to the host and the agent's work there, "
        "`bash run.sh` and the interpreter's start; *last report -> end seen* the interpreter's exit, the exit code, "
        "the agent noticing and the word coming back; *end seen -> next submit* the manager's turn (store "
        "commit, tuner, the next trial's folder). Their sum is close to the steady slot/trial.",
        "",
        "| mode | submit() call | submit -> first line | trial's own time | last report -> end seen "
        "| end seen -> next submit | sum | steady slot/trial |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in samples:
        m = s[mode]
        if m.get("phase_launch") is None:
            continue
        parts = [m[f"phase_{k}"] for k in ("launch", "body", "exit", "turn")]
        total = None if any(v is None for v in parts) else sum(parts)  # type: ignore[arg-type]
        lines.append(
            f"| {mode} | {_ms(m['phase_submit_call'], 1)} | {_ms(m['phase_launch'], 1)} | {_ms(m['phase_body'], 1)} "
            f"| {_ms(m['phase_exit'], 1)} | {_ms(m['phase_turn'], 1)} | {_ms(total, 1)} | {_ms(m['slot_steady'], 1)} |"
        )
    lines.append("")
    for mode in samples:
        m = s[mode]
        if "prepare" in m and m["prepare"] is not None:
            lines.append(
                f"- {mode}: `prepare()` {_ms(m['prepare'])} ms (config checks"
                + (", hosts connected, probed and sent the code" if mode.startswith("remote") else "")
                + f", the experiment created), `run()` {_ms(m.get('run'))} ms, runner process "
                f"{_ms(m.get('total'))} ms of a {_ms(m['wall'])} ms wall."
            )
    lines += [
        "",
        METHOD.format(c=c, bare=bare, cores=os.cpu_count()).strip(),
        "",
        "## Every run",
        "",
        "| repeat | mode | trials | wall (s) | e2e slot (ms) | steady slot (ms) | latency median (ms) | note |",
        "|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for what, group in (("trivial", samples), ("streaming", streams)):
        for mode, runs in group.items():
            for i, x in enumerate(runs, 1):
                note = (x.error or "")[:160].replace("|", "/").replace("\n", " ")
                lines.append(
                    f"| {i} | {mode} | {what} | {x.wall:.2f} | {_ms(x.slot_e2e, 1)} | {_ms(x.slot_steady, 1)} "
                    f"| {_ms(_median(latencies([x])), 1)} | {note} |"
                )
    return "\n".join(lines) + "\n"


METHOD = """
## Method

- **Hosts**: two real OpenSSH servers started by the benchmark (`nni_pl.testing.sshd.start_hosts(2)`) and
  stopped at its end. As root each is a network namespace on this machine with its own address
  (`10.x.y.z`, a veth pair to ours), its own `sshd` on port 22, and its own login account whose home holds the
  remote experiment folders: "loopback hosts". The SSH protocol, encryption, the accounts, the code upload and
  the remote agent are all real; the network is not: there is no wire latency or bandwidth limit, and the
  manager, both `sshd`s, the agents and every trial share this machine's {cores} cores. The trials run the
  project's interpreter (`pythonPath` = this venv's `bin`). Without root the hosts are `sshd`s on ports of
  `127.0.0.1` under the current user.
- **Trivial trial**: `import nni_pl as nni`, `get_next_parameter()`, one `report_intermediate_result`, one
  `report_final_result`, then one line of time stamps appended to a shared file (its first line ran, its
  reports had returned). The command modes run it as `python trial.py`; the function modes run the same body
  as `bench_trial:trial` (a module in the trial code directory; on the hosts it is imported from the uploaded
  copy, the agent runs `python -m nni_pl.training.remote_agent call bench_trial:trial` with the code folder as
  the working directory).
- **Runs**: each experiment runs in a runner process of its own with a fresh `NNI_PL_HOME`, experiment folder
  and experiment id (so a fresh folder and code upload on the hosts): `nni-pl launch config.yml --no-display
  --no-webui` called in-process for the command modes, `Experiment(config, trial="bench_trial:trial").run()`
  for the function modes, `tuner: Random`, `trialConcurrency: {c}`. The remote modes list both hosts.
  **{bare}** runs `python trial.py` {c} at a time from a thread pool, no experiment at all.
- **Accounting** (as in `trial_overhead.py`): **e2e** `slot = wall * c / N`, the wall time measured by the
  parent from the runner's start to its exit (imports, checks, host connections, code upload, worker start,
  shutdown included); **steady state** `slot = c * (last end - first end) / (N - c)` from the trials' own end
  stamps (start-up and shutdown excluded). The trial's own time is the median from its first line to its last
  report. **manager CPU** is the runner process's user + system CPU (the manager, its threads, paramiko);
  **machine CPU** is the busy time of all cores over the run from `/proc/stat` (the manager, `sshd`s, agents,
  trials, and anything else that ran meanwhile), each divided by N. Remote trials are not children of the
  runner, so only the machine-wide figure sees their CPU.
- **Metric latency**: the runner wraps `Store.add_metrics` and `Store.batch` (the manager stores each turn's
  metrics in one transaction): a metric counts as stored when the transaction holding it has committed. Its
  latency is that moment minus the record's `time` field, stamped by the trial SDK when the trial reported
  (hosts and manager share one clock here). The store keeps only the report time (`MetricRow.timestamp`), so
  the stored-at moment is taken in the runner.
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


def _sshd_version() -> str:
    try:
        done = subprocess.run(["ssh", "-V"], capture_output=True, text=True)
        return (done.stderr or done.stdout).strip().split(",")[0]
    except OSError:
        return "OpenSSH ?"


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


def _known_hosts(hosts: list[Any], folder: Path) -> Path:
    path = folder / "known_hosts"
    path.write_text("".join(h.known_hosts_line + "\n" for h in hosts), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=40, help="trivial trials per run (default 40)")
    p.add_argument("--concurrency", type=int, default=2, help="trials at a time (default 2)")
    p.add_argument(
        "--repeats", type=int, default=3, help="rounds over all modes; medians are reported (default 3)"
    )
    p.add_argument("--stream-trials", type=int, default=4, help="trials per streaming run (default 4)")
    p.add_argument(
        "--stream-steps", type=int, default=10, help="intermediates per streaming trial (default 10)"
    )
    p.add_argument("--skip-remote-fn", action="store_true", help="leave out the remote function trials")
    p.add_argument(
        "--quick", action="store_true", help="a smoke run: N=4, 1 repeat, 2 streaming trials of 3 steps"
    )
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown results file")
    p.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.repeats, args.stream_trials, args.stream_steps = 4, 1, 2, 3
    if args.n <= args.concurrency:
        p.error(f"--n must exceed --concurrency, got n={args.n}, concurrency={args.concurrency}")

    import compileall

    import paramiko

    import nni_pl
    from nni_pl.testing.sshd import skip_reason, start_hosts, stop_hosts

    reason = skip_reason()
    if reason is not None:
        print(f"remote_overhead: skipped: {reason}", file=sys.stderr)
        return 2
    # what an installed package has: byte-compiled modules (the hosts run this same tree)
    compileall.compile_dir(Path(nni_pl.__file__).parent, quiet=1)

    started = time.perf_counter()
    c = args.concurrency
    meta = {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": _machine(),
        "python": platform.python_version(),
        "nni_pl": nni_pl.__version__,
        "paramiko": paramiko.__version__,
        "sshd": _sshd_version(),
        "revision": _revision(),
        "load_before": _load(),
        "command": " ".join(
            ["python", "benchmarks/remote_overhead.py", *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    root = Path(tempfile.mkdtemp(prefix="remote_overhead_"))
    root.chmod(0o755)  # the hosts' accounts append to stamps files in here
    hosts: list[Any] = []
    try:
        hosts = start_hosts(2, base_dir=root / "hosts")
        meta["hosts"] = (
            f"{len(hosts)} `sshd`s in {hosts[0].mode} mode ("
            + ", ".join(f"{h.user}@{h.address}:{h.port}" for h in hosts)
            + ")"
        )
        machines = [
            {
                "host": h.address,
                "port": h.port,
                "user": h.user,
                "sshKeyFile": str(h.key_file),
                "pythonPath": h.python_path,
            }
            for h in hosts
        ]
        bench = Bench(root, c, machines, _known_hosts(hosts, root))
        rounds = {
            "trivial": (modes_of(bench, args.n, remote_fn=not args.skip_remote_fn), {}),
            "streaming": (
                modes_of(
                    bench, args.stream_trials, steps=args.stream_steps, remote_fn=not args.skip_remote_fn
                ),
                {},
            ),
        }
        for modes, samples in rounds.values():
            samples.update({m: [] for m in modes})
        for rep in range(1, args.repeats + 1):
            for what, (modes, samples) in rounds.items():
                for mode, fn in modes.items():
                    work = root / f"r{rep}" / what / mode.replace(" ", "_")
                    try:
                        sample = fn(work)
                    except Exception as e:  # record and go on: one failed mode must not hide the others
                        sample = Sample(0.0, args.n, c, [], error=f"{type(e).__name__}: {e}")
                    samples[mode].append(sample)
                    lat = _median(latencies([sample]))
                    status = sample.error or (
                        f"e2e slot {_ms(sample.slot_e2e, 1)} ms, steady {_ms(sample.slot_steady, 1)} ms, "
                        f"latency median {_ms(lat, 1)} ms"
                    )
                    print(
                        f"[{rep}/{args.repeats}] {what:<9} {mode:<16} wall {sample.wall:7.2f} s  {status[:300]}",
                        flush=True,
                    )
    finally:
        if hosts:
            stop_hosts(hosts)
        if args.keep:
            print(f"work folder kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    meta["load_after"] = _load()
    meta["elapsed"] = time.perf_counter() - started
    report = render(args, meta, rounds["trivial"][1], rounds["streaming"][1])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")
    print(report)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
