"""Quick TPE benchmark: nni-pl's TPETuner vs Optuna's TPESampler vs random search.

Runs every tuner on a few synthetic problems (Branin, Hartmann-6, Rosenbrock-5, Ackley-5, a
categorical one and a conditional one, all written as NNI search spaces) for ``--trials`` trials and
``--seeds`` seeds, then prints the mean final regret per problem and the mean rank per tuner (rank 1 =
lowest final regret on a (problem, seed) pair, ties averaged), followed by the suggestion latency
with 1,000 observations. Optuna is a benchmark-only dependency (``pip install optuna``).

Usage::

    python benchmarks/hpo/tpe_quick.py                     # 100 trials x 10 seeds, all problems
    python benchmarks/hpo/tpe_quick.py --trials 200 --seeds 5 --problems branin hartmann6
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing as mp
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nni_pl.hpo.tuners import RandomTuner, TPETuner
from nni_pl.space import Branch, Choice, SearchSpace

log = logging.getLogger("tpe_quick")


# --- problems (all minimised) --------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    name: str
    space: dict[str, Any]
    fn: Callable[[dict[str, Any]], float]
    optimum: float


def _branin(p: dict[str, Any]) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def _hartmann6(p: dict[str, Any]) -> float:
    x = np.array([p[f"x{i}"] for i in range(6)])
    return float(-np.sum(_H6_ALPHA * np.exp(-np.sum(_H6_A * (x - _H6_P) ** 2, axis=1))))


def _rosenbrock(p: dict[str, Any]) -> float:
    x = np.array([p[f"x{i}"] for i in range(5)])
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def _ackley(p: dict[str, Any]) -> float:
    x = np.array([p[f"x{i}"] for i in range(5)])
    d = len(x)
    return float(
        -20 * math.exp(-0.2 * math.sqrt(np.sum(x**2) / d))
        - math.exp(np.sum(np.cos(2 * math.pi * x)) / d)
        + 20
        + math.e
    )


# categorical: a chain of 8 choices with 6 options each, unary + pairwise costs; exact optimum by DP
_CAT_RNG = np.random.default_rng(12345)
_CAT_UNARY = _CAT_RNG.uniform(0, 1, size=(8, 6))
_CAT_PAIR = _CAT_RNG.uniform(0, 0.5, size=(7, 6, 6))


def _categorical(p: dict[str, Any]) -> float:
    c = [int(p[f"c{i}"][1:]) for i in range(8)]
    return float(
        sum(_CAT_UNARY[i, c[i]] for i in range(8)) + sum(_CAT_PAIR[i, c[i], c[i + 1]] for i in range(7))
    )


def _categorical_optimum() -> float:
    best = _CAT_UNARY[0].copy()
    for i in range(1, 8):
        best = np.min(best[:, None] + _CAT_PAIR[i - 1], axis=0) + _CAT_UNARY[i]
    return float(best.min())


def _conditional(p: dict[str, Any]) -> float:
    m = p["model"]
    base = (p["w"] - 0.3) ** 2
    if m["_name"] == "linear":
        return base + 0.5 + (m["x"] - 1) ** 2 + (m["y"] + 2) ** 2
    if m["_name"] == "tree":
        return base + (math.log10(m["lr"]) + 2) ** 2 + 0.1 * (m["depth"] - 6) ** 2
    return base + 1.0 + (m["z"] - 3.5) ** 2 / 4


def _u(low: float, high: float) -> dict[str, Any]:
    return {"_type": "uniform", "_value": [low, high]}


PROBLEMS: dict[str, Problem] = {
    "branin": Problem("branin", {"x1": _u(-5, 10), "x2": _u(0, 15)}, _branin, 0.397887357729738),
    "hartmann6": Problem("hartmann6", {f"x{i}": _u(0, 1) for i in range(6)}, _hartmann6, -3.322368011391339),
    "rosenbrock5": Problem("rosenbrock5", {f"x{i}": _u(-5, 10) for i in range(5)}, _rosenbrock, 0.0),
    "ackley5": Problem("ackley5", {f"x{i}": _u(-32.768, 32.768) for i in range(5)}, _ackley, 0.0),
    "categorical": Problem(
        "categorical",
        {f"c{i}": {"_type": "choice", "_value": [f"o{k}" for k in range(6)]} for i in range(8)},
        _categorical,
        _categorical_optimum(),
    ),
    "conditional": Problem(
        "conditional",
        {
            "w": _u(0, 1),
            "model": {
                "_type": "choice",
                "_value": [
                    {"_name": "linear", "x": _u(-5, 5), "y": _u(-5, 5)},
                    {
                        "_name": "tree",
                        "lr": {"_type": "loguniform", "_value": [1e-4, 1]},
                        "depth": {"_type": "randint", "_value": [1, 11]},
                    },
                    {"_name": "knn", "z": {"_type": "quniform", "_value": [0, 10, 0.5]}},
                ],
            },
        },
        _conditional,
        0.0,
    ),
}


# --- runners -------------------------------------------------------------------------------------------
def _run_nni(tuner: Any, problem: Problem, trials: int) -> list[float]:
    tuner.update_search_space(problem.space)
    values = []
    for i in range(trials):
        params = tuner.generate_parameters(i)
        value = problem.fn(params)
        tuner.receive_trial_result(i, params, value)
        values.append(value)
    return values


def _optuna_suggest(trial: Any, space: SearchSpace, prefix: str = "") -> dict[str, Any]:
    """Ask an Optuna trial for a parameter set of an NNI space (define-by-run, nested branches too)."""
    out: dict[str, Any] = {}
    for name, p in space.items():
        key = prefix + name
        if isinstance(p, Choice):
            names = [o.name if isinstance(o, Branch) else o for o in p.options]
            picked = trial.suggest_categorical(key, names)
            opt = p.options[names.index(picked)]
            if isinstance(opt, Branch):
                sub = SearchSpace({k: v for k, v in opt.params.items()})
                out[name] = {"_name": opt.name, **_optuna_suggest(trial, sub, f"{key}/{opt.name}/")}
            else:
                out[name] = picked
        elif p.TYPE == "randint":
            out[name] = trial.suggest_int(key, p.low, p.high - 1)
        elif p.TYPE in ("uniform", "loguniform"):
            out[name] = trial.suggest_float(key, p.low, p.high, log=p.TYPE == "loguniform")
        elif p.TYPE == "quniform":
            out[name] = trial.suggest_float(key, p.low, p.high, step=p.q)
        else:
            raise ValueError(f"the benchmark has no Optuna mapping for {p.TYPE}")
    return out


def _run_optuna(problem: Problem, trials: int, seed: int) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.parse(problem.space)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), direction="minimize")
    values = []
    for _ in range(trials):
        trial = study.ask()
        value = problem.fn(_optuna_suggest(trial, space))
        study.tell(trial, value)
        values.append(value)
    return values


TUNERS = ("nni-pl TPE", "optuna TPE", "random")


def _job(args: tuple[str, str, int, int, dict[str, Any]]) -> tuple[str, str, int, float, float]:
    tuner_name, problem_name, seed, trials, knobs = args
    problem = PROBLEMS[problem_name]
    t0 = time.perf_counter()
    if tuner_name == "nni-pl TPE":
        tuner = TPETuner(optimize_mode="minimize", seed=seed, **knobs.get("args", {}))
        for k, v in knobs.get("private", {}).items():
            setattr(tuner, f"_{k}", v)
        values = _run_nni(tuner, problem, trials)
    elif tuner_name == "optuna TPE":
        values = _run_optuna(problem, trials, seed)
    else:
        values = _run_nni(RandomTuner(seed=seed), problem, trials)
    return tuner_name, problem_name, seed, min(values) - problem.optimum, time.perf_counter() - t0


def _ranks(regrets: np.ndarray) -> np.ndarray:
    """Ranks along the last axis (1 = best), ties averaged."""
    out = np.empty_like(regrets)
    for idx in np.ndindex(regrets.shape[:-1]):
        row = regrets[idx]
        for t in range(len(row)):
            out[(*idx, t)] = 1 + np.sum(row < row[t]) + 0.5 * (np.sum(row == row[t]) - 1)
    return out


# --- latency -------------------------------------------------------------------------------------------
def latency(n_obs: int = 1000, repeats: int = 20, problem_name: str = "hartmann6") -> dict[str, float]:
    """Mean seconds per suggestion with ``n_obs`` completed observations, for ours and Optuna's TPE."""
    import optuna

    problem = PROBLEMS[problem_name]
    space = SearchSpace.parse(problem.space)
    rng = np.random.default_rng(0)
    history = [space.sample(rng) for _ in range(n_obs)]

    tuner = TPETuner(optimize_mode="minimize", seed=0)
    tuner.update_search_space(space)
    tuner.import_data([{"parameter": p, "value": problem.fn(p)} for p in history])
    t0 = time.perf_counter()
    for i in range(repeats):
        params = tuner.generate_parameters(i)
        tuner.receive_trial_result(i, params, problem.fn(params))
    ours = (time.perf_counter() - t0) / repeats

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0), direction="minimize")
    dists = {name: optuna.distributions.FloatDistribution(p.low, p.high) for name, p in space.items()}
    study.add_trials(
        [optuna.trial.create_trial(params=p, distributions=dists, value=problem.fn(p)) for p in history]
    )
    elapsed = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        trial = study.ask()
        params = _optuna_suggest(trial, space)
        elapsed += time.perf_counter() - t0
        study.tell(trial, problem.fn(params))
    return {"nni-pl TPE": ours, "optuna TPE": elapsed / repeats}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--tuners", nargs="+", default=list(TUNERS), choices=list(TUNERS))
    parser.add_argument("--jobs", type=int, default=max(1, (mp.cpu_count() or 1)))
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables to this Markdown file")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KNOB=VALUE",
        help="TPE settings, e.g. n_ei_candidates=48 or _gamma=0.15",
    )
    args = parser.parse_args(argv)

    knobs: dict[str, Any] = {"args": {}, "private": {}}
    for item in args.set:
        k, v = item.split("=", 1)
        value = eval(v, {}, {})  # a benchmark knob from the command line: a Python literal
        if k.startswith("_"):
            knobs["private"][k[1:]] = value
        else:
            knobs["args"][k] = value

    jobs = [
        (t, p, s, args.trials, knobs) for p in args.problems for s in range(args.seeds) for t in args.tuners
    ]
    if args.jobs > 1:
        with mp.Pool(args.jobs) as pool:
            results = pool.map(_job, jobs, chunksize=1)
    else:
        results = [_job(j) for j in jobs]

    tuners, problems = list(args.tuners), list(args.problems)
    regret = np.zeros((len(problems), args.seeds, len(tuners)))
    seconds = np.zeros(len(tuners))
    for t, p, s, r, sec in results:
        regret[problems.index(p), s, tuners.index(t)] = r
        seconds[tuners.index(t)] += sec
    ranks = _ranks(regret)

    lines = [
        f"## TPE quick benchmark: {args.trials} trials x {args.seeds} seeds (mean final regret; lower is better)",
        "",
    ]
    lines.append("| problem | " + " | ".join(tuners) + " |")
    lines.append("|---|" + "---|" * len(tuners))
    for i, p in enumerate(problems):
        lines.append(
            f"| {p} | "
            + " | ".join(
                f"{regret[i, :, t].mean():.4g} (rank {ranks[i, :, t].mean():.2f})" for t in range(len(tuners))
            )
            + " |"
        )
    lines.append(
        "| **mean rank** | "
        + " | ".join(f"**{ranks[:, :, t].mean():.3f}**" for t in range(len(tuners)))
        + " |"
    )
    lines.append("| total seconds | " + " | ".join(f"{seconds[t]:.1f}" for t in range(len(tuners))) + " |")
    out: dict[str, Any] = {"regret": regret, "ranks": ranks, "tuners": tuners, "problems": problems}
    if not args.no_latency and "optuna TPE" in tuners:
        lat = latency()
        out["latency"] = lat
        lines += ["", "Suggestion latency with 1,000 observations (Hartmann-6, mean of 20):", ""]
        lines += ["| tuner | ms per suggestion |", "|---|---|"]
        lines += [f"| {k} | {v * 1e3:.2f} |" for k, v in lat.items()]
    try:
        import optuna

        peer = f", optuna {optuna.__version__}"
    except ImportError:
        peer = ""
    lines += [
        "",
        f"Machine: {platform.platform()}, {mp.cpu_count()} CPUs, Python {platform.python_version()}{peer}.",
    ]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return out


if __name__ == "__main__":
    main()
