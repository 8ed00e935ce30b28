"""Quick benchmark of SMAC, Evolution and RegularizedEvolution against random search (and TPE).

Runs every tuner on Branin, Hartmann-6, a categorical and a nested-conditional problem (the problem
definitions of ``tpe_quick.py``) for ``--trials`` trials and ``--seeds`` seeds, and prints the mean final
regret per problem with the share of seeds on which each tuner beat random search, then the mean
suggestion latency of SMAC. ``--concurrency`` runs the tuners as an experiment with that many trials at
once would (results arrive one suggestion after the batch is handed out).

Usage::

    python benchmarks/hpo/evo_smac_quick.py                       # 100 trials x 10 seeds
    python benchmarks/hpo/evo_smac_quick.py --trials 50 --tuners SMAC random
    python benchmarks/hpo/evo_smac_quick.py --set SMAC:random_fraction=0.1 SMAC:_n_trees=10
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import platform
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tpe_quick import PROBLEMS, Problem

from nni_pl.hpo.tuners import (
    EvolutionTuner,
    RandomTuner,
    RegularizedEvolutionTuner,
    SMACTuner,
    TPETuner,
)

log = logging.getLogger("evo_smac_quick")

# name -> (class, classArgs)
TUNERS: dict[str, tuple[type, dict[str, Any]]] = {
    "SMAC": (SMACTuner, {}),
    "Evolution": (EvolutionTuner, {}),
    "Evolution p=10": (EvolutionTuner, {"population_size": 10}),
    "RegEvo": (RegularizedEvolutionTuner, {}),
    "RegEvo p=20 s=5": (RegularizedEvolutionTuner, {"population_size": 20, "sample_size": 5}),
    "TPE": (TPETuner, {}),
    "random": (RandomTuner, {}),
}
DEFAULT_TUNERS = ["SMAC", "Evolution", "Evolution p=10", "RegEvo", "RegEvo p=20 s=5", "TPE", "random"]
DEFAULT_PROBLEMS = ["branin", "hartmann6", "categorical", "conditional"]


def run(tuner: Any, problem: Problem, trials: int, concurrency: int = 1) -> list[float]:
    """Ask/tell loop; with ``concurrency`` > 1 a result arrives only after ``concurrency`` are pending."""
    tuner.update_search_space(problem.space)
    running: deque[tuple[int, dict[str, Any]]] = deque()
    values = []
    for i in range(trials):
        params = tuner.generate_parameters(i)
        running.append((i, params))
        if len(running) >= concurrency or i == trials - 1:
            while running and (len(running) >= concurrency or i == trials - 1):
                pid, p = running.popleft()
                value = problem.fn(p)
                tuner.receive_trial_result(pid, p, value)
                tuner.trial_end(pid, True)
                values.append(value)
    return values


def _job(args: tuple[str, str, int, int, int, dict[str, Any]]) -> tuple[str, str, int, float, float]:
    name, problem_name, seed, trials, concurrency, knobs = args
    cls, class_args = TUNERS[name]
    problem = PROBLEMS[problem_name]
    tuner = cls(seed=seed, **({"optimize_mode": "minimize"} | class_args))
    for k, v in knobs.get(name.split()[0], {}).items():
        setattr(tuner, k, v)
    t0 = time.perf_counter()
    values = run(tuner, problem, trials, concurrency)
    return name, problem_name, seed, min(values) - problem.optimum, time.perf_counter() - t0


def smac_latency(n_obs: int = 100, repeats: int = 20, problem_name: str = "conditional") -> float:
    """Mean seconds per SMAC suggestion with ``n_obs`` observations."""
    problem = PROBLEMS[problem_name]
    tuner = SMACTuner(optimize_mode="minimize", seed=0)
    tuner.random_fraction = 0.0
    tuner.update_search_space(problem.space)
    rng = np.random.default_rng(0)
    from nni_pl.space import SearchSpace

    space = SearchSpace.parse(problem.space)
    tuner.import_data(
        [{"parameter": p, "value": problem.fn(p)} for p in (space.sample(rng) for _ in range(n_obs))]
    )
    t0 = time.perf_counter()
    for i in range(repeats):
        params = tuner.generate_parameters(i)
        tuner.receive_trial_result(i, params, problem.fn(params))
    return (time.perf_counter() - t0) / repeats


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--problems", nargs="+", default=DEFAULT_PROBLEMS, choices=list(PROBLEMS))
    parser.add_argument("--tuners", nargs="+", default=DEFAULT_TUNERS, choices=list(TUNERS))
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables to this Markdown file")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="TUNER:ATTR=VALUE", help="e.g. SMAC:_n_trees=10"
    )
    args = parser.parse_args(argv)

    knobs: dict[str, dict[str, Any]] = {}
    for item in args.set:
        who, rest = item.split(":", 1)
        k, v = rest.split("=", 1)
        knobs.setdefault(who, {})[k] = eval(v, {}, {})  # a benchmark knob from the command line

    tuners, problems = list(args.tuners), list(args.problems)
    if "random" not in tuners:
        tuners.append("random")
    lines: list[str] = []
    out: dict[str, Any] = {}
    for trials in args.trials:
        jobs = [
            (t, p, s, trials, args.concurrency, knobs)
            for p in problems
            for s in range(args.seeds)
            for t in tuners
        ]
        if args.jobs > 1:
            with mp.Pool(args.jobs) as pool:
                results = pool.map(_job, jobs, chunksize=1)
        else:
            results = [_job(j) for j in jobs]
        regret = np.zeros((len(problems), args.seeds, len(tuners)))
        seconds = np.zeros(len(tuners))
        for t, p, s, r, sec in results:
            regret[problems.index(p), s, tuners.index(t)] = r
            seconds[tuners.index(t)] += sec
        rnd = regret[:, :, tuners.index("random")]
        lines += [
            f"## {trials} trials x {args.seeds} seeds, concurrency {args.concurrency}: mean final regret "
            "(lower is better); in brackets, the share of seeds that beat random",
            "",
            "| problem | " + " | ".join(tuners) + " |",
            "|---|" + "---|" * len(tuners),
        ]
        for i, p in enumerate(problems):
            cells = []
            for t, name in enumerate(tuners):
                mean = regret[i, :, t].mean()
                if name == "random":
                    cells.append(f"{mean:.4g}")
                else:
                    cells.append(f"{mean:.4g} ({np.mean(regret[i, :, t] < rnd[i]):.0%})")
            lines.append(f"| {p} | " + " | ".join(cells) + " |")
        wins = [
            sum(regret[i, :, t].mean() < rnd[i].mean() for i in range(len(problems)))
            for t in range(len(tuners))
        ]
        lines.append(
            "| **problems where the mean beats random** | "
            + " | ".join("" if n == "random" else f"**{w}/{len(problems)}**" for n, w in zip(tuners, wins))
            + " |"
        )
        lines.append(
            "| total seconds | " + " | ".join(f"{seconds[t]:.1f}" for t in range(len(tuners))) + " |"
        )
        lines.append("")
        out[trials] = {"regret": regret, "tuners": tuners, "problems": problems}
    if not args.no_latency and "SMAC" in tuners:
        lat = smac_latency()
        out["latency"] = lat
        lines += [
            f"SMAC suggestion latency with 100 observations (conditional problem): {lat * 1e3:.1f} ms",
            "",
        ]
    lines.append(
        f"Machine: {platform.platform()}, {mp.cpu_count()} CPUs, Python {platform.python_version()}."
    )
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return out


if __name__ == "__main__":
    main()
