"""Per-trial overhead: nni-pl command trials, nni-pl function trials, NNI 3.0, and the bare process.

Runs N trivial trials at concurrency c (default 50 and 2) with every launcher, side by side, repeats
the whole round ``--repeats`` times (interleaved, so drifting machine load hits every mode alike) and
writes the medians, the ratios and the pass/fail of the targets to ``benchmarks/results/trial_overhead.md``.

A trivial trial imports the SDK (``import nni_pl as nni`` / ``import nni``), calls
``get_next_parameter()``, reports one intermediate and one final result, and appends one line of
timestamps (its first line ran, its reports returned) to a stamps file. Modes:

* ``bare``: the same ``trial.py`` run standalone, ``python trial.py`` N times one after the other
  (what the trial itself costs); ``bare xc`` runs them c at a time with a thread pool (what c cores
  allow at best, with no bookkeeping at all).
* ``nni-pl cmd``: ``nni-pl launch config.yml --no-display`` as a subprocess (``trialCommand: python trial.py``);
  ``nni-pl cmd x1`` the same with ``trialConcurrency: 1`` (compared with the sequential bare runs).
* ``nni-pl fn``: ``Experiment(trial=fn, ...).run(display=False)`` in a subprocess, pre-warmed workers.
* ``NNI 3.0``: ``nni.experiment.Experiment('local')`` started from its own venv (``benchmarks/.venv-nni``,
  created with ``pip install nni==3.0`` when missing; ``--skip-nni`` skips it). Its ``run()`` polls the
  status every 10 s, so the runner calls ``start()``, polls ``get_status()`` every 0.1 s, then ``stop()``.

Usage::

    .venv/bin/python benchmarks/trial_overhead.py                      # N=50, c=2, 3 repeats, with NNI
    .venv/bin/python benchmarks/trial_overhead.py --skip-nni --n 20 --repeats 1
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "trial_overhead.md"
DEFAULT_NNI_VENV = ROOT / "benchmarks" / ".venv-nni"
NNI_VERSION = "3.0"
SEARCH_SPACE = {"x": {"_type": "uniform", "_value": [0, 1]}}

TRIAL_TEMPLATE = """\
import time as _time
_T0 = _time.time()
import {sdk} as nni

params = nni.get_next_parameter() or {{}}
x = params.get("x", 0.5)
nni.report_intermediate_result(x)
nni.report_final_result(x)
with open({stamps!r}, "a") as _f:
    _f.write(f"{{_T0!r}} {{_time.time()!r}}\\n")
"""

FUNCTION_RUNNER = """\
import json
import time

import nni_pl as nni

STAMPS = {stamps!r}


def trial():
    t0 = time.time()
    params = nni.get_next_parameter()
    nni.report_intermediate_result(params["x"])
    nni.report_final_result(params["x"])
    with open(STAMPS, "a") as f:
        f.write(f"{{t0!r}} {{time.time()!r}}\\n")


if __name__ == "__main__":
    from nni_pl.experiment import Experiment
    from nni_pl.training.functions import FunctionTrainingService

    timings = {{}}
    _start = FunctionTrainingService.start

    def _timed_start(self, *args, **kwargs):  # times the worker start-up inside the real run
        t = time.perf_counter()
        _start(self, *args, **kwargs)
        timings["worker_start"] = time.perf_counter() - t

    FunctionTrainingService.start = _timed_start
    t0 = time.perf_counter()
    exp = Experiment(trial=trial, search_space={space!r}, tuner="Random", max_trial_number={n},
                     trial_concurrency={c}, experiment_working_directory={workdir!r})
    exp.run(display=False)
    timings["run"] = time.perf_counter() - t0
    statuses = {{}}
    for t in exp.trials():
        statuses[t.status] = statuses.get(t.status, 0) + 1
    print("RESULT " + json.dumps({{"timings": timings, "statuses": statuses, "status": exp.get_status()}}))
"""

NNI_RUNNER = """\
import json
import socket
import sys
import time

t_import = time.perf_counter()
from nni.experiment import Experiment

t0 = time.perf_counter()
s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
exp = Experiment("local")
exp.config.trial_command = sys.executable + " trial.py"
exp.config.trial_code_directory = {code!r}
exp.config.experiment_working_directory = {workdir!r}
exp.config.search_space = {space!r}
exp.config.tuner.name = "Random"
exp.config.max_trial_number = {n}
exp.config.trial_concurrency = {c}
status, statuses = "?", {{}}
try:
    exp.start(port)
    t1 = time.perf_counter()
    while True:  # Experiment.run() would poll every 10 s; 0.1 s keeps the measurement fair to NNI
        status = exp.get_status()
        if status in ("DONE", "STOPPED", "ERROR"):
            break
        time.sleep(0.1)
    t2 = time.perf_counter()
    for job in exp.list_trial_jobs():
        statuses[job.status] = statuses.get(job.status, 0) + 1
finally:
    exp.stop()
t3 = time.perf_counter()
timings = {{"import": t0 - t_import, "start": t1 - t0, "run": t2 - t1, "stop": t3 - t2}}
print("RESULT " + json.dumps({{"timings": timings, "statuses": statuses, "status": status}}))
"""


@dataclass
class Sample:
    """One run of one mode: its wall time, the trials' stamps and the launcher's own timings."""

    wall: float
    n: int
    slots: int
    stamps: list[tuple[float, float]]
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    cpu: float | None = None  # user + sys CPU seconds of the whole (reaped) process tree
    repeat: int = 0  # which repeat it belongs to (numbered from 1)
    round: int = 1  # which round within the repeat (the quick nni-pl modes run --rounds times per repeat)

    @property
    def cpu_per_trial(self) -> float | None:
        return None if self.cpu is None else self.cpu / self.n

    @property
    def slot_e2e(self) -> float:
        """Seconds each of the ``slots`` slots was busy per trial, from start to exit of the whole run."""
        return self.wall * self.slots / self.n

    @property
    def slot_steady(self) -> float | None:
        """The same from the trials' own end stamps: first to last end holds (n - slots) trial turns."""
        if len(self.stamps) < self.n or self.n <= self.slots:
            return None
        ends = sorted(end for _, end in self.stamps)
        return (ends[-1] - ends[0]) * self.slots / (self.n - self.slots)

    @property
    def in_trial(self) -> float | None:
        """Median time from the trial script's first line to its last report (no interpreter start)."""
        return statistics.median(end - start for start, end in self.stamps) if self.stamps else None


# --- helpers -----------------------------------------------------------------------------------------------------
def _read_stamps(path: Path) -> list[tuple[float, float]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2:
            out.append((float(parts[0]), float(parts[1])))
    return out


def file_creation_cost(folder: Path, count: int = 100) -> float:
    """Seconds of CPU to create one folder or file in ``folder``: ``count`` folders with one empty file each.

    nni-pl creates 8 per local trial (trial folder, ``.nni``, ``parameter.json``, ``run.sh``, ``stdout``,
    ``stderr``, ``.nni/pid``, ``metrics.jsonl``); a bare trial creates none. The cost depends on
    the file system's state: on ext4 without a journal, the kernel checks recently freed inodes before reusing one
    (``recently_deleted()``), and near folders where many files were deleted a creation costs ~10x more
    (measured here: ~20 us in an untouched folder, 150-300 us under a /tmp that test runs had churned). Nothing is
    deleted afterwards: deleting would cause exactly that.
    """
    probe = Path(tempfile.mkdtemp(prefix="probe_", dir=folder))
    c0 = time.thread_time()
    for i in range(count):
        os.mkdir(probe / f"d{i}")
        os.close(os.open(probe / f"d{i}" / "f", os.O_WRONLY | os.O_CREAT, 0o644))
    return (time.thread_time() - c0) / (2 * count)


def _children_cpu() -> float:
    """CPU seconds used by this process's terminated, reaped descendants (and theirs, when they reaped them)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without NNI's variables (a benchmark may run inside a trial), plus ``extra``."""
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
        raise RuntimeError(f"{cmd[0]} timed out after {timeout:.0f} s; stderr tail: {err[-1500:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _write_trial(code: Path, sdk: str) -> Path:
    code.mkdir(parents=True)
    stamps = code / "stamps.txt"
    (code / "trial.py").write_text(TRIAL_TEMPLATE.format(sdk=sdk, stamps=str(stamps)), encoding="utf-8")
    return stamps


def _nni_pl_cli() -> list[str]:
    exe = Path(sys.executable).with_name("nni-pl")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "nni_pl"]


# --- modes -----------------------------------------------------------------------------------------------------
def run_bare(work: Path, python: str, sdk: str, n: int, slots: int) -> Sample:
    stamps = _write_trial(work, sdk)
    env = clean_env()

    def one(_: int) -> None:
        subprocess.run(
            [python, "trial.py"],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )

    cpu0, t0 = _children_cpu(), time.perf_counter()
    if slots == 1:
        for i in range(n):
            one(i)
    else:
        with cf.ThreadPoolExecutor(slots) as pool:
            list(pool.map(one, range(n)))
    wall = time.perf_counter() - t0
    return Sample(wall, n, slots, _read_stamps(stamps), cpu=_children_cpu() - cpu0)


def write_command_experiment(work: Path, n: int, c: int) -> tuple[Path, Path]:
    """The trivial trial in ``work/code`` and the config of ``n`` of them at concurrency ``c`` (experiments under
    ``work/experiments``); returns the config's path and the trials' stamps file."""
    stamps = _write_trial(work / "code", "nni_pl")
    config = work / "code" / "config.yml"
    config.write_text(
        textwrap.dedent(f"""\
            searchSpace: {json.dumps(SEARCH_SPACE)}
            trialCommand: python trial.py
            trialCodeDirectory: {work / "code"}
            trialConcurrency: {c}
            maxTrialNumber: {n}
            tuner: {{name: Random}}
            trainingService: {{platform: local}}
            experimentWorkingDirectory: {work / "experiments"}
            """),
        encoding="utf-8",
    )
    return config, stamps


def run_nni_pl_command(work: Path, n: int, c: int) -> Sample:
    config, stamps = write_command_experiment(work, n, c)
    exps = work / "experiments"
    cmd = [*_nni_pl_cli(), "launch", str(config), "--no-display", "--id", "bench"]
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = _run_group(
        cmd, timeout=120 + 10 * n, cwd=work / "code", env=clean_env(NNI_PL_HOME=str(work / "home"))
    )
    wall = time.perf_counter() - t0
    sample = Sample(wall, n, c, _read_stamps(stamps), cpu=_children_cpu() - cpu0)
    if proc.returncode != 0:
        sample.error = f"nni-pl launch exited {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}"
        return sample
    from nni_pl.experiment import Experiment

    exp = Experiment.view("bench", working_directory=exps)
    statuses = [t.status for t in exp.trials()]
    exp.close()
    if statuses.count("SUCCEEDED") != n:
        sample.error = f"expected {n} SUCCEEDED trials, got {statuses}"
    return sample


def run_nni_pl_function(work: Path, n: int, c: int) -> Sample:
    work.mkdir(parents=True)
    stamps = work / "stamps.txt"
    script = work / "fn_runner.py"
    script.write_text(
        FUNCTION_RUNNER.format(
            stamps=str(stamps), space=SEARCH_SPACE, n=n, c=c, workdir=str(work / "experiments")
        ),
        encoding="utf-8",
    )
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = _run_group(
        [sys.executable, str(script)],
        timeout=120 + 5 * n,
        cwd=work,
        env=clean_env(NNI_PL_HOME=str(work / "home")),
    )
    wall = time.perf_counter() - t0
    sample = Sample(wall, n, c, _read_stamps(stamps), cpu=_children_cpu() - cpu0)
    if proc.returncode != 0:
        sample.error = f"function runner exited {proc.returncode}: {proc.stderr[-1500:]}"
        return sample
    result = _result_line(proc.stdout)
    sample.timings = result["timings"]
    if result["statuses"].get("SUCCEEDED") != n:
        sample.error = f"expected {n} SUCCEEDED trials, got {result['statuses']}"
    return sample


def run_nni(work: Path, python: str, n: int, c: int) -> Sample:
    stamps = _write_trial(work / "code", "nni")
    (work / "home").mkdir()  # NNI keeps its experiment registry in ~/nni-experiments: keep it in here
    script = work / "nni_runner.py"
    script.write_text(
        NNI_RUNNER.format(
            code=str(work / "code"), workdir=str(work / "experiments"), space=SEARCH_SPACE, n=n, c=c
        ),
        encoding="utf-8",
    )
    cpu0, t0 = _children_cpu(), time.perf_counter()
    try:
        proc = _run_group(
            [python, str(script)], timeout=300 + 30 * n, cwd=work, env=clean_env(HOME=str(work / "home"))
        )
    except RuntimeError as e:
        return Sample(time.perf_counter() - t0, n, c, _read_stamps(stamps), error=str(e))
    wall = time.perf_counter() - t0
    sample = Sample(wall, n, c, _read_stamps(stamps), cpu=_children_cpu() - cpu0)
    try:
        result = _result_line(proc.stdout)
    except RuntimeError:
        sample.error = f"NNI runner exited {proc.returncode}: {proc.stderr[-1500:]}"
        return sample
    sample.timings = result["timings"]
    if result["status"] != "DONE" or result["statuses"].get("SUCCEEDED") != n:
        sample.error = f"NNI ended {result['status']} with trials {result['statuses']}"
    return sample


def ensure_nni(venv: Path) -> tuple[str, str]:
    """The NNI venv's python and NNI's version; creates the venv and installs NNI when missing."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import nni, sys; sys.stdout.write(nni.__version__)"]
    if python.exists():
        done = subprocess.run(probe, capture_output=True, text=True)
        if done.returncode == 0:
            return str(python), done.stdout.strip()
    print(f"installing nni=={NNI_VERSION} into {venv} (once; it pins old filelock/typeguard) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"nni=={NNI_VERSION}",
        ],
        check=True,
    )
    done = subprocess.run(probe, capture_output=True, text=True, check=True)
    return str(python), done.stdout.strip()


# --- report ----------------------------------------------------------------------------------------------------
def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _ms(v: float | None, digits: int = 0) -> str:
    return "—" if v is None else f"{v * 1000:,.{digits}f}"


def _x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}x"


def summarise(samples: dict[str, list[Sample]]) -> dict[str, dict[str, float | None]]:
    out = {}
    for mode, runs in samples.items():
        good = [s for s in runs if s.error is None]
        keys = {k for s in good for k in s.timings}
        out[mode] = {
            "wall": _median([s.wall for s in good]),
            "slot_e2e": _median([s.slot_e2e for s in good]),
            "slot_steady": _median([s.slot_steady for s in good]),
            "in_trial": _median([s.in_trial for s in good]),
            "cpu": _median([s.cpu_per_trial for s in good]),
            **{k: _median([s.timings.get(k) for s in good]) for k in sorted(keys)},
        }
    return out


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def _verdict(value: float | None, ok: bool | None, fmt: Any = None) -> str:
    if value is None or ok is None:
        return "n/a"
    return f"{(fmt or _x)(value)} {'**PASS**' if ok else '**FAIL**'}"


def render(args: argparse.Namespace, meta: dict[str, Any], samples: dict[str, list[Sample]]) -> str:
    c, n = args.concurrency, args.n
    s = summarise(samples)  # medians of the absolute numbers
    # overheads and ratios pair each launcher with the baselines of the same repeat, then take the median
    reps = [
        summarise({m: [x for x in runs if x.repeat == i] for m, runs in samples.items()})
        for i in range(1, args.repeats + 1)
    ]
    sdk_of = {
        "bare nni-pl": "nni-pl",
        f"bare nni-pl x{c}": "nni-pl",
        "nni-pl cmd": "nni-pl",
        "nni-pl cmd x1": "nni-pl",
        "nni-pl fn": None,  # a function trial's own work is ~0: its whole slot time is overhead
        "bare NNI": "NNI",
        f"bare NNI x{c}": "NNI",
        "NNI 3.0": "NNI",
    }
    has_nni = "bare NNI" in s and s.get("NNI 3.0", {}).get("wall") is not None

    def bare(r: dict[str, dict[str, float | None]], mode: str, kind: str) -> float | None:
        """The baseline of ``mode``'s trial script in summary ``r``: ``seq``, ``par`` (x c) or ``cpu``."""
        sdk = sdk_of[mode]
        if sdk is None:
            return 0.0
        if kind == "par":
            return r.get(f"bare {sdk} x{c}", {}).get("slot_steady")
        return r.get(f"bare {sdk}", {}).get("cpu" if kind == "cpu" else "slot_e2e")

    def paired(fn: Any) -> float | None:
        return _median([fn(r) for r in reps])

    def over(mode: str, key: str) -> float | None:
        kind = "cpu" if key == "cpu" else "seq"
        return paired(lambda r: _sub(r.get(mode, {}).get(key), bare(r, mode, kind)))

    def ratio(mode: str, key: str, kind: str = "seq") -> float | None:
        return paired(lambda r: _div(r.get(mode, {}).get(key), bare(r, mode, kind)))

    def ratio_of_overheads(a: str, b: str, key: str) -> float | None:
        kind = "cpu" if key == "cpu" else "seq"
        return paired(
            lambda r: _div(
                _sub(r.get(a, {}).get(key), bare(r, a, kind)), _sub(r.get(b, {}).get(key), bare(r, b, kind))
            )
        )

    def per_repeat(mode: str, key: str) -> str:
        """How the per-repeat ratios of ``mode`` spread: what decides a verdict near its limit."""
        kind = "cpu" if key == "cpu" else "seq"
        values = sorted(
            v for r in reps if (v := _div(r.get(mode, {}).get(key), bare(r, mode, kind))) is not None
        )
        if len(values) < 4:
            return ""
        q1, _, q3 = statistics.quantiles(values, n=4)
        return f"{_x(values[0])}-{_x(values[-1])} (middle half {_x(q1)}-{_x(q3)})"

    def cpu_spread(mode: str) -> float | None:
        values = [x.cpu_per_trial for x in samples.get(mode, []) if x.error is None and x.cpu is not None]
        return max(values) - min(values) if len(values) > 1 else None

    keys = ("slot_steady", "slot_e2e", "cpu")
    fn_run = _div(s["nni-pl fn"].get("run"), n / c)  # run() * c / N: creation, workers and shutdown included

    def fn_ok(v: float | None) -> str:
        return _verdict(v, None if v is None else v < 0.020, lambda v: f"{v * 1000:.1f} ms")

    pl, fn = s["nni-pl cmd"], s["nni-pl fn"]
    cmd_ratios = [ratio("nni-pl cmd", k, "cpu" if k == "cpu" else "seq") for k in keys]
    nni_ratios = [ratio_of_overheads("NNI 3.0", "nni-pl cmd", k) for k in keys] if has_nni else []
    lines = [
        "# Trial overhead: nni-pl vs NNI 3.0 vs the bare process",
        "",
        f"Generated by `benchmarks/trial_overhead.py` on {meta['date']} (`{meta['command']}`).",
        "",
        f"- Machine: {meta['machine']}. Load average (1/5/15 min) before: {meta['load_before']}, after: "
        f"{meta['load_after']}. Other work shared the machine, so wall-clock numbers carry its contention; the "
        "`bare x c` rows and the CPU table show how much.",
        f"- Python {meta['python']}; nni-pl {meta['nni_pl']}; NNI {meta['nni']}.",
        f"- Work folder under `{meta['workdir']}`. Creating one file or folder there cost "
        f"{meta['create_before'] * 1e6:.0f} us of CPU before the runs and "
        f"{meta['create_after'] * 1e6:.0f} us after them. nni-pl creates 8 per local trial, "
        "a bare trial none, so this file system state is part of nni-pl's overhead: on ext4 without a journal, "
        "folders near many recently deleted files (a churned /tmp) cost ~10x more per creation than untouched "
        "ones (see `file_creation_cost`).",
        f"- N = {n} trials per run, concurrency c = {c}, {args.repeats} repeats, the modes interleaved within each "
        f"repeat; in each repeat the nni-pl modes run {args.rounds} times in turn (rounds), NNI's once. Absolute "
        "numbers are medians over all runs; overheads and ratios are computed within each repeat (against that "
        "repeat's bare runs, each mode's rounds by their median) and then the median over the repeats is taken. "
        f"The bare NNI baselines run {meta['nni_bare_n']} trials per repeat (each imports `nni`, seconds apiece).",
        "",
        "## Targets",
        "",
        "| target | steady state | end-to-end | CPU time (whole run) |",
        "|---|---|---|---|",
        "| nni-pl command trials against the bare process (slot / bare: steady <= 1.05, end-to-end <= 1.20, "
        "CPU <= 1.10) | "
        + " | ".join(
            _verdict(r, None if r is None else r <= limit) for r, limit in zip(cmd_ratios, (1.05, 1.20, 1.10))
        )
        + " |",
    ]
    if nni_ratios:
        cells = [_verdict(r, None if r is None else r >= 10) for r in nni_ratios]
        nni_cpu_over, noise = over("NNI 3.0", "cpu"), cpu_spread("bare NNI")
        if nni_cpu_over is not None and noise is not None and nni_cpu_over <= noise:
            cells[2] = (
                f"{_x(nni_ratios[2])} n/a: NNI's CPU overhead ({_ms(nni_cpu_over)} ms/trial) is within the "
                f"run-to-run spread of its bare trial's CPU ({_ms(noise)} ms, mostly `import nni`)"
            )
        lines.append(
            "| at least 10x less overhead per trial than NNI 3.0 (NNI overhead / nni-pl cmd overhead) | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "| nni-pl function trials under 20 ms each | "
        + " | ".join(
            (
                f"{fn_ok(fn_run)} by `run() * c / N`; {fn_ok(fn['slot_e2e'])} for the whole process"
                if key == "slot_e2e"
                else fn_ok(fn[key])
            )
            for key in keys
        )
        + " |",
        "",
        *(
            [
                f"Per repeat, the nni-pl command trials' ratios ranged {per_repeat('nni-pl cmd', 'slot_steady')} in "
                f"steady state and {per_repeat('nni-pl cmd', 'slot_e2e')} end to end; the targets take the median "
                f"of the {args.repeats} repeats.",
                "",
            ]
            if per_repeat("nni-pl cmd", "slot_steady")
            else []
        ),
        f"For scale: `bare nni-pl x{c}` (the bare trials {c} at a time, no bookkeeping) took "
        f"{_x(ratio(f'bare nni-pl x{c}', 'slot_steady'))} of the sequential bare cost per slot: that much is the "
        f"machine's contention alone. Against it, nni-pl command trials take "
        f"{_x(ratio('nni-pl cmd', 'slot_steady', 'par'))} in steady state."
        + (
            f" Run one at a time (`nni-pl cmd x1`, trialConcurrency 1, against the sequential bare runs), they take "
            f"{_x(ratio('nni-pl cmd x1', 'slot_steady'))} in steady state "
            f"({_ms(over('nni-pl cmd x1', 'slot_steady'), 1)} ms per trial), against "
            f"{_x(ratio('nni-pl cmd', 'slot_steady'))} ({_ms(over('nni-pl cmd', 'slot_steady'), 1)} ms) at c = {c}, "
            f"where the manager's own CPU time competes with {c} trials for the cores."
            if "nni-pl cmd x1" in s
            else ""
        ),
        "",
        "## Wall clock",
        "",
        "| mode | wall (s) | e2e slot/trial (ms) | e2e overhead (ms) | e2e slot/bare | steady slot/trial (ms) "
        f"| steady overhead (ms) | steady slot/bare | steady slot / bare x{c} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in sdk_of:
        if mode not in s:
            continue
        m, runs = s[mode], samples[mode]
        errors = [x.error for x in runs if x.error]
        if m["wall"] is None:
            lines.append(
                f"| {mode} | failed: {(errors[0] if errors else '?')[:200].replace('|', '/')} ||||||||"
            )
            continue
        is_fn = sdk_of[mode] is None
        note = f" ({len(errors)}/{len(runs)} failed)" if errors else ""
        lines.append(
            f"| {mode}{note} | {m['wall']:.2f} | {_ms(m['slot_e2e'], 1)} | {_ms(over(mode, 'slot_e2e'), 1)} "
            f"| {'—' if is_fn else _x(ratio(mode, 'slot_e2e'))} | {_ms(m['slot_steady'], 1)} "
            f"| {_ms(over(mode, 'slot_steady'), 1)} | {'—' if is_fn else _x(ratio(mode, 'slot_steady'))} "
            f"| {'—' if is_fn else _x(ratio(mode, 'slot_steady', 'par'))} |"
        )
    lines += [
        "",
        "## CPU time",
        "",
        "| mode | CPU/trial (ms) | spread over repeats (ms) | CPU overhead/trial (ms) | CPU/bare |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode in sdk_of:
        if mode in s and s[mode]["cpu"] is not None:
            lines.append(
                f"| {mode} | {_ms(s[mode]['cpu'], 1)} | {_ms(cpu_spread(mode), 1)} | {_ms(over(mode, 'cpu'), 1)} "
                f"| {'—' if sdk_of[mode] is None else _x(ratio(mode, 'cpu', 'cpu'))} |"
            )
    if has_nni:
        lines += [
            "",
            "## NNI 3.0 against nni-pl",
            "",
            "| ratio | steady state | end-to-end | CPU time |",
            "|---|---:|---:|---:|",
            "| overhead per trial, NNI 3.0 / nni-pl cmd | " + " | ".join(map(_x, nni_ratios)) + " |",
            "| overhead per trial, NNI 3.0 / nni-pl fn | "
            + " | ".join(_x(ratio_of_overheads("NNI 3.0", "nni-pl fn", k)) for k in keys)
            + " |",
            "| slot time (CPU) per trial, NNI 3.0 / nni-pl cmd | "
            + " | ".join(_x(paired(lambda r, k=k: _div(r["NNI 3.0"][k], r["nni-pl cmd"][k]))) for k in keys)
            + " |",
        ]
    lines += [
        "",
        "## Where the time goes",
        "",
        f"- The trial script from its first line to its last report (interpreter start excluded), median: nni-pl "
        f"{_ms(s['bare nni-pl']['in_trial'], 1)} ms standalone, {_ms(pl['in_trial'], 1)} ms under `nni-pl launch` "
        "(there each report is appended to `metrics.jsonl`, which the reaper fsyncs after the trial ended; standalone "
        "it is only logged)"
        + (
            f"; NNI {_ms(s['bare NNI']['in_trial'], 1)} ms standalone, {_ms(s['NNI 3.0']['in_trial'], 1)} ms "
            "under NNI."
            if has_nni
            else "."
        ),
        f"- nni-pl fn: worker start-up {_ms(fn.get('worker_start'))} ms ({c} spawn workers), `run()` "
        f"{_ms(fn.get('run'))} ms for {n} trials, i.e. `run() * c / N` = {_ms(_div(fn.get('run'), n / c), 1)} ms "
        "per trial with creation, worker start and shutdown included.",
    ]
    if has_nni:
        nni = s["NNI 3.0"]
        lines.append(
            f"- NNI 3.0: `import nni.experiment` {_ms(nni.get('import'))} ms, `start()` {_ms(nni.get('start'))} ms, "
            f"trials until DONE {_ms(nni.get('run'))} ms, `stop()` {_ms(nni.get('stop'))} ms."
        )
    elif "NNI 3.0" in samples:
        errors = [x.error for x in samples["NNI 3.0"] if x.error]
        lines += ["", "NNI 3.0 did not run:", "", "```", (errors[0] if errors else "?")[-1500:], "```"]
    else:
        lines.append("- NNI 3.0 was skipped (`--skip-nni`).")
    lines += [
        "",
        METHOD.format(c=c).strip(),
        "",
        "## Every run",
        "",
        "| repeat | round | mode | wall (s) | e2e slot (ms) | steady slot (ms) | CPU/trial (ms) | note |",
        "|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for mode, runs in samples.items():
        for x in runs:
            note = (x.error or "")[:160].replace("|", "/").replace("\n", " ")
            lines.append(
                f"| {x.repeat} | {x.round} | {mode} | {x.wall:.2f} | {_ms(x.slot_e2e, 1)} | {_ms(x.slot_steady, 1)} "
                f"| {_ms(x.cpu_per_trial, 1)} | {note} |"
            )
    return "\n".join(lines) + "\n"


METHOD = """
## Method

A trivial trial: `import nni_pl as nni` (NNI: `import nni`), `get_next_parameter()`, one
`report_intermediate_result`, one `report_final_result`, then one line of time stamps appended to a file (when
its first line ran, when its reports had returned). Every mode runs this same script; the function mode runs the
same body as a function.

- **bare**: `python trial.py` standalone (no experiment), N times one after the other: `bare = wall / N` is what
  the trial itself costs (interpreter start, SDK import, reports). **bare x{c}** runs them {c} at a time from a
  thread pool: the best {c} slots can do on this machine, with no bookkeeping at all.
- **nni-pl cmd**: `nni-pl launch config.yml --no-display` as a subprocess (`trialCommand: python trial.py`,
  `tuner: {{name: Random}}`, `trainingService: {{platform: local}}`, a fresh `NNI_PL_HOME` and experiment folder).
  **nni-pl cmd x1** is the same launch with `trialConcurrency: 1`, compared with the sequential bare runs: there
  the manager never competes with a second trial for a core.
- **nni-pl fn**: a generated script runs `Experiment(trial=fn, tuner="Random", ...).run(display=False)` with
  spawn workers, pre-warmed before the first trial; the worker start-up inside that run is timed on its own.
- **NNI 3.0**: a runner in NNI's own venv calls `Experiment('local').start(port)`, polls `get_status()` every 0.1 s
  until DONE, then `stop()`. NNI's `run()` polls every 10 s, which would add up to 10 s; NNI is not charged for
  that. Its own fixed delays are charged: its manager loop ticks every 0.5 s with the v3 local training service
  (`nni_node/core/nnimanager.js`, `pollInterval = 0.5`), and `stop()` waits for the Node.js manager to exit.

Accounting, for a launcher that runs c trials at a time:

- **end-to-end (e2e)**: `slot = wall * c / N`, the wall time measured by the parent from process start to exit:
  experiment creation, manager and worker start-up and shutdown included.
- **steady state**: from the trials' own end stamps, `slot = c * (last end - first end) / (N - c)` (that window
  holds N - c trial turns on c slots); start-up before the first trial ends and shutdown after the last are
  excluded.
- **CPU time**: user + system CPU of the whole process tree (the launcher, its daemons and every trial) over
  the whole run, start-up and shutdown included like e2e, read with `getrusage(RUSAGE_CHILDREN)` around the run
  and divided by N. It depends little on other load. Processes nobody reaps are not counted, so a launcher's CPU
  is a lower bound.
- `overhead = slot - bare` (or `CPU - bare CPU`) of the same trial script: nni-pl trials against `bare nni-pl`,
  NNI trials against `bare NNI`, function trials against 0. `slot / bare` is the ratio.
"""


# --- main ------------------------------------------------------------------------------------------------------
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=50, help="trials per run (default 50)")
    p.add_argument("--concurrency", type=int, default=2, help="trials at a time (default 2)")
    p.add_argument(
        "--repeats", type=int, default=3, help="rounds over all modes; medians are reported (default 3)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs of each quick nni-pl mode per repeat, interleaved; each repeat takes their median (default 3)",
    )
    p.add_argument("--skip-nni", action="store_true", help="do not install or run NNI 3.0")
    p.add_argument(
        "--nni-venv", type=Path, default=DEFAULT_NNI_VENV, help="NNI's own venv (created if missing)"
    )
    p.add_argument(
        "--nni-bare-n", type=int, default=10, help="bare NNI trials per repeat (each imports nni, ~3 s)"
    )
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown results file")
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary work folder (deleting many files makes creating files near them slower for minutes)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the temporary work folder goes (default: the system's temporary folder, $TMPDIR); the report "
        "gives the cost of creating a file there",
    )
    args = p.parse_args(argv)
    if args.n <= args.concurrency:
        p.error(f"--n must exceed --concurrency, got n={args.n}, concurrency={args.concurrency}")

    import compileall

    import nni_pl

    # what an installed package has: byte-compiled modules. An editable install run with PYTHONDONTWRITEBYTECODE
    # set would compile nni_pl again in every process (~90 ms for the manager) and charge it to the bare runs too.
    compileall.compile_dir(Path(nni_pl.__file__).parent, quiet=1)

    nni_python, nni_version = None, "skipped"
    if not args.skip_nni:
        try:
            nni_python, nni_version = ensure_nni(args.nni_venv)
        except (subprocess.CalledProcessError, OSError) as e:
            nni_version = f"install failed: {e}"
    n, c = args.n, args.concurrency
    nni_bare_n = min(args.nni_bare_n, n)
    meta = {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": _machine(),
        "python": platform.python_version(),
        "nni_pl": nni_pl.__version__,
        "nni": nni_version,
        "nni_bare_n": nni_bare_n,
        "load_before": _load(),
        "command": " ".join(
            ["python", "benchmarks/trial_overhead.py", *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    modes: dict[str, Any] = {
        "bare nni-pl": lambda w: run_bare(w, sys.executable, "nni_pl", n, 1),
        f"bare nni-pl x{c}": lambda w: run_bare(w, sys.executable, "nni_pl", n, c),
        "nni-pl cmd": lambda w: run_nni_pl_command(w, n, c),
        "nni-pl fn": lambda w: run_nni_pl_function(w, n, c),
    }
    if c > 1:  # one trial at a time: no second trial competes with the manager for a core
        modes["nni-pl cmd x1"] = lambda w: run_nni_pl_command(w, n, 1)
    if not args.skip_nni:
        if nni_python is not None:
            modes["bare NNI"] = lambda w: run_bare(w, nni_python, "nni", nni_bare_n, 1)
            modes[f"bare NNI x{c}"] = lambda w: run_bare(w, nni_python, "nni", max(nni_bare_n, c + 1), c)
            modes["NNI 3.0"] = lambda w: run_nni(w, nni_python, n, c)
        else:
            modes["NNI 3.0"] = lambda w: Sample(0.0, n, c, [], error=nni_version)
    samples: dict[str, list[Sample]] = {m: [] for m in modes}
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="trial_overhead_", dir=args.workdir))
    meta["workdir"] = str(root.parent)
    meta["create_before"] = file_creation_cost(root)
    try:
        for rep in range(1, args.repeats + 1):
            # the quick nni-pl modes run --rounds times, interleaved, so that each repeat compares runs made
            # seconds apart (this machine's speed drifts by several percent over a minute); NNI's modes once
            plan = [(r, m) for r in range(1, args.rounds + 1) for m in modes if "NNI" not in m]
            plan += [(1, m) for m in modes if "NNI" in m]
            for rnd, mode in plan:
                work = root / f"r{rep}" / f"{mode.replace(' ', '_')}-{rnd}"
                try:
                    sample = modes[mode](work)
                except Exception as e:  # record and go on: one failed mode must not hide the others
                    sample = Sample(0.0, n, c, [], error=f"{type(e).__name__}: {e}")
                sample.repeat, sample.round = rep, rnd
                samples[mode].append(sample)
                status = (
                    sample.error
                    or f"e2e slot {_ms(sample.slot_e2e, 1)} ms, steady {_ms(sample.slot_steady, 1)} ms"
                )
                print(
                    f"[{rep}/{args.repeats} {rnd}] {mode:<16} wall {sample.wall:7.2f} s  {status[:300]}",
                    flush=True,
                )
        meta["create_after"] = file_creation_cost(root)
    finally:
        if args.keep:
            print(f"work folder kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    meta["load_after"] = _load()
    report = render(args, meta, samples)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")
    print(report)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
