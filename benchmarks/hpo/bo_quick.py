"""Quick check of the Bayesian-optimisation tuners (GP, Metis, DNGO) against random search.

Runs each tuner on Branin, Hartmann-6 and Rosenbrock-5 (the problems of ``tpe_quick.py``) for
``--seeds`` seeds and reports the mean regret of the best result after each budget in ``--budgets``,
with the share of (problem, budget) pairs on which a tuner beats random search; then the latency of
one suggestion with 100 and 200 observations on Hartmann-6 with the tuners' default settings.

Usage::

    python benchmarks/hpo/bo_quick.py                         # 10 seeds, budgets 50 and 100
    python benchmarks/hpo/bo_quick.py --tuners GP --seeds 3 --no-latency
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tpe_quick import PROBLEMS, Problem

import nni_pl.hpo.tuners as tuners_module

log = logging.getLogger("bo_quick")

TUNERS = {
    "GP": "GPTuner",
    "Metis": "MetisTuner",
    "DNGO": "DNGOTuner",
    "TPE": "TPETuner",
    "random": "RandomTuner",
}


def make_tuner(name: str, seed: int) -> Any:
    """A tuner by its short name, with default settings, minimising."""
    cls = getattr(tuners_module, TUNERS[name])
    return cls(seed=seed) if name == "random" else cls(optimize_mode="minimize", seed=seed)


DEFAULT_PROBLEMS = ("branin", "hartmann6", "rosenbrock5")


def _run(tuner: Any, problem: Problem, trials: int) -> list[float]:
    tuner.update_search_space(problem.space)
    values = []
    for i in range(trials):
        params = tuner.generate_parameters(i)
        value = problem.fn(params)
        tuner.receive_trial_result(i, params, value)
        values.append(value)
    return values


def _job(args: tuple[str, str, int, int]) -> tuple[str, str, int, list[float], float]:
    tuner_name, problem_name, seed, trials = args
    problem = PROBLEMS[problem_name]
    t0 = time.perf_counter()
    values = _run(make_tuner(tuner_name, seed), problem, trials)
    return tuner_name, problem_name, seed, values, time.perf_counter() - t0


def latency(tuner_name: str, n_obs: int, repeats: int = 5) -> tuple[float, float]:
    """Seconds per suggestion on Hartmann-6 with ``n_obs`` results (default settings).

    Returns the first suggestion after importing the results (for DNGO it trains the network on
    them) and the mean of the next ``repeats`` (a first call on a fresh process also pays for
    importing scikit-learn/torch, so an untimed suggestion on another tuner comes first).
    """
    from nni_pl.space import SearchSpace

    problem = PROBLEMS["hartmann6"]
    space = SearchSpace.parse(problem.space)
    rng = np.random.default_rng(0)
    history = [{"parameter": p, "value": problem.fn(p)} for p in (space.sample(rng) for _ in range(n_obs))]
    warm = make_tuner(tuner_name, 1)
    warm.update_search_space(problem.space)
    warm.import_data(history[:12])
    warm.generate_parameters(0)

    tuner = make_tuner(tuner_name, 0)
    tuner.update_search_space(problem.space)
    tuner.import_data(history)
    t0 = time.perf_counter()
    params = tuner.generate_parameters(0)
    first = time.perf_counter() - t0
    tuner.receive_trial_result(0, params, problem.fn(params))
    elapsed = 0.0
    for i in range(1, repeats + 1):
        t0 = time.perf_counter()
        params = tuner.generate_parameters(i)
        elapsed += time.perf_counter() - t0
        tuner.receive_trial_result(i, params, problem.fn(params))
    return first, elapsed / repeats


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--problems", nargs="+", default=list(DEFAULT_PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument(
        "--tuners", nargs="+", default=["GP", "Metis", "DNGO", "random"], choices=list(TUNERS)
    )
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1)))
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    tuners = list(args.tuners)
    if "random" not in tuners:
        tuners.append("random")
    trials = max(args.budgets)

    jobs = [(t, p, s, trials) for p in args.problems for s in range(args.seeds) for t in tuners]
    if args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            results = pool.map(_job, jobs, chunksize=1)
    else:
        results = [_job(j) for j in jobs]

    regret: dict[tuple[str, str, int], list[float]] = {}
    seconds: dict[str, float] = dict.fromkeys(tuners, 0.0)
    for t, p, s, values, sec in results:
        best = np.minimum.accumulate(values) - PROBLEMS[p].optimum
        regret[(t, p, s)] = [float(best[b - 1]) for b in args.budgets]
        seconds[t] += sec

    lines = [
        f"## BO tuners vs random: mean regret of the best result ({args.seeds} seeds; lower is better)",
        "",
    ]
    header = [f"{p} @{b}" for p in args.problems for b in args.budgets]
    lines.append("| tuner | " + " | ".join(header) + " | beats random | seconds |")
    lines.append("|---|" + "---|" * (len(header) + 2))
    mean = {
        (t, p, bi): float(np.mean([regret[(t, p, s)][bi] for s in range(args.seeds)]))
        for t in tuners
        for p in args.problems
        for bi in range(len(args.budgets))
    }
    for t in tuners:
        cells, wins = [], 0
        for p in args.problems:
            for bi in range(len(args.budgets)):
                m = mean[(t, p, bi)]
                cells.append(f"{m:.4g}")
                wins += m < mean[("random", p, bi)]
        share = "-" if t == "random" else f"{wins}/{len(header)}"
        lines.append(f"| {t} | " + " | ".join(cells) + f" | {share} | {seconds[t]:.0f} |")

    out: dict[str, Any] = {"mean": mean}
    if not args.no_latency:
        lines += [
            "",
            "Seconds per suggestion on Hartmann-6 with the default settings, after importing 100 or 200",
            "results: the first suggestion (DNGO trains its network on them there) and the mean of the",
            "next 5:",
            "",
            "| tuner | 100: first | 100: next | 200: first | 200: next |",
            "|---|---|---|---|---|",
        ]
        for t in tuners:
            if t == "random":
                continue
            lat = [latency(t, n) for n in (100, 200)]
            out[f"latency_{t}"] = lat
            lines.append(f"| {t} | " + " | ".join(f"{a:.3f} | {b:.3f}" for a, b in lat) + " |")
    lines += [
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}.",
    ]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return out


if __name__ == "__main__":
    main()
