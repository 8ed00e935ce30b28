"""Where nni-pl's own CPU time per trial goes: the manager, its reaper, and the kernel's threads.

At ``trialConcurrency`` 2 on a 2-core machine the cores are always busy, so every trial's slot also pays for the
CPU time nni-pl spends besides the trials: most of the steady-state overhead that ``trial_overhead.py`` measures is
that CPU time (its run 11 gave 2.8 ms per slot; this script, right after, 2.0 ms of CPU per trial; the rest is the
trials' own share of the caches and cores that nni-pl's processes take between them). The steady target
(<= 1.05x the bare trial) is therefore at most a CPU budget of 5% of the bare trial's CPU time, and this script
says how much of it each part takes.

It runs ``nni-pl launch`` with N of ``trial_overhead.py``'s trivial trials at concurrency c and reads the CPU time
of the manager (all its threads) and of its reaper from ``/proc/<pid>/task/*/schedstat`` (nanoseconds) when the
``--warmup``-th trial has reported and when the last one has, so the window holds only steady-state turns (no
start-up, no shutdown). The kernel's threads (write-back, I/O completion: the fsync of each trial's reports and
the trial folders' files) are read the same way; other work on the machine adds to them. The bare trial's CPU
time (the script run standalone, one after the other) gives the budget.

``--base PATH`` runs another checkout of nni-pl (its ``nni_pl`` package first on ``sys.path``) in turn with this
one, ``--runs`` times each: an A/B of a change, resolved to a few microseconds per trial where ``/proc/<pid>/stat``
gives 10 ms ticks. The trials import this checkout's ``nni_pl`` in both cases.

Usage::

    .venv/bin/python benchmarks/trial_cpu.py                       # N=300, c=2, 3 runs
    .venv/bin/python benchmarks/trial_cpu.py --base /tmp/main-before --runs 4
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from trial_overhead import clean_env, file_creation_cost, run_bare, write_command_experiment  # noqa: E402

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "trial_cpu.md"
SAMPLE_EVERY = 0.005  # seconds between looks at the stamps file (the sampler's own CPU is not counted)

# `nni-pl launch` from the checkout named by NNI_PL_BENCH_BASE (its package first, an editable install's finder
# removed), or from whatever nni_pl this interpreter imports
LAUNCHER = """\
import os, sys
base = os.environ.pop("NNI_PL_BENCH_BASE", "")
if base:
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, base)
import nni_pl
print("NNI_PL_FROM " + os.path.dirname(nni_pl.__file__), file=sys.stderr, flush=True)
from nni_pl.cli.main import run
sys.argv[0] = "nni-pl"
run()
"""


@dataclass
class Split:
    """CPU milliseconds per trial over one run's steady window."""

    code: str
    trials: int
    manager: float
    reaper: float
    kernel: float

    @property
    def total(self) -> float:
        return self.manager + self.reaper + self.kernel


def _schedstat_ns(pid: int) -> int:
    """CPU nanoseconds used so far by all threads of ``pid`` (0 once it is gone)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rfind(b")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _kernel_threads_ns() -> int:
    """CPU nanoseconds used so far by the kernel's threads (kthreadd and its children)."""
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (entry == "2" or _ppid(int(entry)) == 2):
            total += _schedstat_ns(int(entry))
    return total


def _children(pid: int) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and _ppid(int(e)) == pid]


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def measure(work: Path, *, n: int, c: int, warmup: int, base: Path | None) -> Split:
    """One ``nni-pl launch`` of ``n`` trivial trials; the CPU per trial between the ``warmup``-th and the last
    trial's report."""
    config, stamps = write_command_experiment(work, n, c)
    env = clean_env(NNI_PL_HOME=str(work / "home"))
    if base is not None:
        env["NNI_PL_BENCH_BASE"] = str(base)
    err = work / "launch.err"
    with open(err, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "launch", str(config), "--no-display", "--id", "cpu"],
            cwd=config.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    reaper = None
    start: tuple[int, int, int, int] | None = None  # (trials reported, manager ns, reaper ns, kernel ns)
    end: tuple[int, int, int, int] | None = None
    deadline = time.monotonic() + 120 + 2 * n
    while proc.poll() is None and time.monotonic() < deadline:
        if reaper is None:
            found = _children(proc.pid)
            reaper = found[0] if found else None
        done = _lines(stamps)
        if reaper is not None and start is None and done >= warmup:
            start = (done, _schedstat_ns(proc.pid), _schedstat_ns(reaper), _kernel_threads_ns())
        elif start is not None and end is None and done >= n:
            end = (done, _schedstat_ns(proc.pid), _schedstat_ns(reaper), _kernel_threads_ns())
        time.sleep(SAMPLE_EVERY)
    if proc.poll() is None:
        proc.kill()
        raise RuntimeError(f"nni-pl launch did not end in time; stderr tail: {err.read_text()[-1500:]}")
    if proc.returncode != 0 or start is None or end is None or end[0] <= start[0]:
        raise RuntimeError(
            f"nni-pl launch exited {proc.returncode} with {_lines(stamps)} of {n} trials reported "
            f"(window {start} .. {end}); stderr tail: {err.read_text()[-1500:]}"
        )
    used = next(
        (line.split(" ", 1)[1] for line in err.read_text().splitlines() if line.startswith("NNI_PL_FROM ")),
        "?",
    )
    trials = end[0] - start[0]

    def per_trial(i: int) -> float:
        return (end[i] - start[i]) / trials / 1e6

    return Split(used, trials, per_trial(1), per_trial(2), per_trial(3))


def bare_cpu(work: Path, count: int) -> float:
    """CPU milliseconds of one trivial trial run standalone (the mean of ``count``, one after the other)."""
    sample = run_bare(work, sys.executable, "nni_pl", count, 1)
    assert sample.cpu_per_trial is not None
    return sample.cpu_per_trial * 1e3


def render(args: argparse.Namespace, splits: list[Split], bare: float, creation: tuple[float, float]) -> str:
    codes = list(dict.fromkeys(s.code for s in splits))
    mine = str(ROOT / "nni_pl")
    label = {code: "this checkout" if code == mine else f"`{code}`" for code in codes}
    lines = [
        "# Where nni-pl's own CPU time per trial goes",
        "",
        f"Generated by `benchmarks/trial_cpu.py` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"(`python benchmarks/trial_cpu.py {' '.join(sys.argv[1:])}`).",
        "",
        f"- Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores; Python "
        f"{platform.python_version()}.",
        f"- Each run: `nni-pl launch` with N = {args.n} trivial trials (those of `trial_overhead.py`) at concurrency "
        f"c = {args.c}; CPU time read from `/proc/<pid>/task/*/schedstat` between the {args.warmup}th trial's "
        "report and the last one's (steady state only), divided by the trials in that window.",
        f"- Creating one file or folder in the work folder cost {creation[0] * 1e6:.0f} us of CPU before the runs and "
        f"{creation[1] * 1e6:.0f} us after them (nni-pl creates 8 per local trial; see `trial_overhead.py`).",
        f"- The bare trial (run standalone, {args.bare} times) used {bare:.1f} ms of CPU. The steady-state target "
        f"of `trial_overhead.py` (<= 1.05x at c = 2 on 2 cores, where the cores are always busy) leaves nni-pl "
        f"{0.05 * bare:.2f} ms of CPU per trial.",
        "",
        "| run | nni-pl | manager (ms/trial) | reaper (ms/trial) | kernel threads (ms/trial) | total (ms/trial) "
        "| total / bare trial |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for i, s in enumerate(splits, 1):
        lines.append(
            f"| {i} | {label[s.code]} | {s.manager:.3f} | {s.reaper:.3f} | {s.kernel:.3f} | {s.total:.3f} "
            f"| {s.total / bare * 100:.1f}% |"
        )
    lines += [
        "",
        "Medians:",
        "",
        "| nni-pl | manager | reaper | kernel threads | total | total / bare trial |",
    ]
    lines.append("|---|---:|---:|---:|---:|---:|")
    for code in codes:
        mine = [s for s in splits if s.code == code]

        def med(key: str, mine: list[Split] = mine) -> float:
            return statistics.median(getattr(s, key) for s in mine)

        lines.append(
            f"| {label[code]} | {med('manager'):.3f} | {med('reaper'):.3f} | {med('kernel'):.3f} "
            f"| {med('total'):.3f} | {med('total') / bare * 100:.1f}% |"
        )
    lines += [
        "",
        "The manager is one Python process: per trial it reads the ended trial's reports, records its end and the "
        "next trial's row in one store transaction, asks the tuner, writes the parameter file and `run.sh`, and "
        "asks the reaper to start the trial. The reaper starts each trial (`posix_spawn`, its `stdout`/`stderr`/"
        "`.nni/pid` files), records how it ended, and fsyncs its `metrics.jsonl`. Between two turns the trials run "
        "on both cores and evict the caches, so each turn runs cold (with trivial shell trials, which leave the "
        "caches warm, the manager's turn takes about half as long).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--n", type=int, default=300, help="trials per run (default 300)")
    parser.add_argument("--c", type=int, default=2, help="trialConcurrency (default 2)")
    parser.add_argument("--warmup", type=int, default=10, help="trials before the window opens (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="runs (of each checkout with --base; default 3)")
    parser.add_argument("--bare", type=int, default=30, help="standalone runs of the trial for its CPU time")
    parser.add_argument("--base", type=Path, help="another checkout of nni-pl to run in turn with this one")
    parser.add_argument(
        "--workdir", type=Path, help="where the runs' folders go (default: a temporary folder)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (deleting churns the file system)"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if not 0 < args.warmup < args.n:
        parser.error(f"--warmup must be between 1 and --n - 1 ({args.n - 1}), got {args.warmup}")
    if args.base is not None and not (args.base / "nni_pl" / "__init__.py").is_file():
        parser.error(f"--base {args.base}: no nni_pl package there; give the root of a checkout of nni-pl")
    if not Path("/proc/self/task").is_dir():
        parser.error("this benchmark reads /proc (Linux only)")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="nni-pl-cpu-", dir=args.workdir))
    try:
        before = file_creation_cost(work)
        bare = bare_cpu(work / "bare", args.bare)
        splits = []
        for i in range(args.runs):
            for base in ([args.base] if args.base is not None else []) + [None]:
                split = measure(work / f"run{len(splits)}", n=args.n, c=args.c, warmup=args.warmup, base=base)
                print(
                    f"[{i + 1}/{args.runs}] {split.code}: manager {split.manager:.3f} reaper {split.reaper:.3f} "
                    f"kernel {split.kernel:.3f} ms/trial over {split.trials} trials",
                    flush=True,
                )
                splits.append(split)
        after = file_creation_cost(work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(args, splits, bare, (before, after)), encoding="utf-8")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
