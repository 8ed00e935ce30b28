"""Side-by-side HPO benchmark: every nni-pl tuner against Optuna, hyperopt, NNI 3.0 and random search.

Problems (``problems.py``): six synthetic functions with known optima and six surrogates of real model
tuning (NNI's random-forest and MLP search spaces on scikit-learn's digits, wine and breast_cancer).
Each tuner runs ``--trials`` evaluations per (problem, seed), sequentially and with 4 trials in flight
(simulated: 4 suggestions pending, results returned in completion order with random durations), and the
report (``report.py``) reads the 50/100/200-trial prefixes: mean rank and median normalised regret per
tuner and problem class, a regret-vs-budget plot, suggestion latency at 1,000 observations and the
targets' pass/fail.

nni-pl tuners are created by registry name and driven by ask/tell (generate_parameters /
receive_trial_result / trial_end); a name whose module does not exist yet is skipped with a note.
Hyperband and BOHB need a budget: they run on a fidelity defined here (see :func:`simulate`).
Results are appended to ``benchmarks/.work/hpo/runs.jsonl`` as they finish, so a stopped run resumes.

Usage::

    nice -n 10 .venv/bin/python benchmarks/hpo/run.py                 # the full grid (hours)
    .venv/bin/python benchmarks/hpo/run.py --quick                     # 2 seeds, 30 trials, 2 problems
    .venv/bin/python benchmarks/hpo/run.py --tuners "nni-pl TPE" "optuna TPE" --problems branin
    .venv/bin/python benchmarks/hpo/run.py --report-only               # tables and plot from the runs file
"""

from __future__ import annotations

# ruff: noqa: E402  (the thread limits must be set before numpy is imported)
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core per worker process

import argparse
import heapq
import importlib.util
import inspect
import json
import logging
import math
import multiprocessing as mp
import shlex
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
sys.path.insert(0, str(_HERE.parents[1]))

import peers
import problems
import report

from nni_pl.errors import NoMoreTrialError, SearchSpaceError, WaitForResults
from nni_pl.hpo._registry import BUILTIN_ADVISORS, BUILTIN_TUNERS
from nni_pl.space import SearchSpace

log = logging.getLogger("hpo_bench")

WORK = _HERE.parents[0] / ".work" / "hpo"
RESULTS = _HERE.parents[0] / "results"

# nni-pl registry names in the benchmark (GridSearch/BatchTuner enumerate, PBT trains populations: skipped)
NNI_PL = (
    "Auto",
    "TPE",
    "Random",
    "Anneal",
    "Evolution",
    "RegularizedEvolutionTuner",
    "SMAC",
    "GPTuner",
    "MetisTuner",
    "DNGOTuner",
    "PPOTuner",
    "Hyperband",
    "BOHB",
)
PEERS = (
    "optuna TPE",
    "optuna GP",
    "optuna CMA-ES",
    "hyperopt TPE",
    "NNI TPE",
    "NNI Anneal",
    "NNI Evolution",
    "NNI GPTuner",
    "NNI SMAC",
)
ALL_TUNERS = tuple(f"nni-pl {n}" for n in NNI_PL) + PEERS
BUDGET_TUNERS = ("nni-pl Hyperband", "nni-pl BOHB")
# Tuners whose suggestions cost seconds: each run gets --slow-time-limit seconds and --slow-seeds seeds.
SLOW = ("nni-pl GPTuner", "nni-pl MetisTuner", "nni-pl DNGOTuner", "optuna GP", "NNI GPTuner", "NNI SMAC")
# NNI 3.0's GP at its defaults (100,000 warm-up points and 250 L-BFGS-B starts per suggestion) needed
# ~100 s per suggestion here: it runs with a cheaper acquisition search, on fewer seeds, sequentially.
REDUCED: dict[str, dict[str, Any]] = {
    "NNI GPTuner": {
        "class_args": {"selection_num_warm_up": 5000, "selection_num_starting_points": 10},
        "seeds": 2,
        "modes": ["seq"],
    },
}
FIDELITY_R = 27  # Hyperband's R / BOHB's max_budget: budgets 1, 3, 9, 27 with eta = 3
MODES = {"seq": 1, "c4": 4}


# --- which tuners exist and apply ----------------------------------------------------------------------
def nni_pl_target(name: str) -> str:
    return {**BUILTIN_TUNERS, **BUILTIN_ADVISORS}[name]


def available(tuner: str) -> tuple[bool, str]:
    """Whether ``tuner`` can run here, and why not."""
    family, _, algo = tuner.partition(" ")
    if family == "nni-pl":
        module = nni_pl_target(algo).split(":")[0]
        if importlib.util.find_spec(module) is None:
            return False, f"`{module}` does not exist yet"
        return True, ""
    if family == "NNI":
        if not peers.NNI_PYTHON.exists():
            return False, f"no NNI 3.0 venv at {peers.NNI_PYTHON.parent.parent}"
        return True, ""
    mod = {"optuna": "optuna", "hyperopt": "hyperopt"}[family]
    if importlib.util.find_spec(mod) is None:
        return False, f"{mod} is not installed (pip install -e '.[bench]')"
    if algo == "CMA-ES" and importlib.util.find_spec("cmaes") is None:
        return False, "Optuna's CmaEsSampler needs `pip install cmaes`"
    return True, ""


def applies(tuner: str, space: dict[str, Any]) -> tuple[bool, str]:
    """Whether ``tuner`` supports the search space (nni-pl: the tuner's own declaration)."""
    family, _, algo = tuner.partition(" ")
    parsed = SearchSpace.parse(space)
    if family == "nni-pl":
        from nni_pl.hpo._registry import resolve_class

        try:
            resolve_class("tuner", algo).check_search_space(parsed, name=algo)
        except SearchSpaceError as e:
            return False, str(e)
        return True, ""
    if family == "NNI" and algo in ("GPTuner", "SMAC"):
        types = {"choice", "randint", "uniform", "quniform", "loguniform"} | (
            {"qloguniform"} if algo == "GPTuner" else set()
        )
        for dim in parsed.dimensions():
            p = dim.param
            if p.TYPE not in types or (p.TYPE == "choice" and p.is_nested):
                return (
                    False,
                    f"NNI {algo} does not support {p.TYPE}{' (nested)' if p.TYPE == 'choice' else ''}",
                )
            if algo == "GPTuner" and p.TYPE == "choice" and not p.is_numeric:
                return False, "NNI GPTuner needs numeric choices"
    return True, ""


# --- runners -------------------------------------------------------------------------------------------
class NniPlRunner:
    """An nni-pl tuner by registry name, driven as the experiment manager drives it."""

    def __init__(self, name: str, space: dict[str, Any], seed: int, concurrency: int) -> None:
        from nni_pl.hpo._registry import create_algorithm, resolve_class

        cls = resolve_class("tuner", name)
        accepted = inspect.signature(cls).parameters
        args: dict[str, Any] = {"optimize_mode": "minimize", "seed": seed}
        if concurrency > 1 and "parallel_optimize" in accepted:
            args["parallel_optimize"] = True  # NNI's documented setting for concurrent trials (TPE)
        if name == "Hyperband":
            args.update(R=FIDELITY_R, eta=3)
        elif name == "BOHB":
            args.update(min_budget=1, max_budget=FIDELITY_R, eta=3)
        args = {
            k: v
            for k, v in args.items()
            if k in accepted or any(p.kind is p.VAR_KEYWORD for p in accepted.values())
        }
        self.tuner = create_algorithm("tuner", name, class_args=args)
        self.tuner.update_search_space(SearchSpace.parse(space))

    def ask(self, parameter_id: int) -> dict[str, Any]:
        try:
            return self.tuner.generate_parameters(parameter_id)
        except WaitForResults:
            raise peers.Wait() from None
        except NoMoreTrialError:
            raise peers.Exhausted() from None

    def tell(self, parameter_id: int, params: dict[str, Any], loss: float) -> None:
        self.tuner.receive_trial_result(parameter_id, params, loss)
        self.tuner.trial_end(parameter_id, True, trial_job_id=f"t{parameter_id}", status="SUCCEEDED")

    def close(self) -> None:
        pass


def make_runner(
    tuner: str, space: dict[str, Any], seed: int, concurrency: int, class_args: dict[str, Any] | None = None
) -> Any:
    family, _, algo = tuner.partition(" ")
    if family == "nni-pl":
        return NniPlRunner(algo, space, seed, concurrency)
    return peers.peer_runner(tuner, space, seed, concurrency, class_args)


# --- one run -------------------------------------------------------------------------------------------
def simulate(
    runner: Any,
    fn: Any,
    *,
    trials: int,
    concurrency: int,
    seed: int,
    time_limit: float,
    noise_scale: float | None = None,
) -> dict[str, Any]:
    """Run ``trials`` evaluations with ``concurrency`` in flight; results return in completion order.

    Every suggestion gets a duration drawn uniformly from [0.5, 1.5] (the same sequence for every tuner
    of a seed); the earliest-finishing pending trial reports first. With ``noise_scale`` (Hyperband,
    BOHB) a suggestion's ``TRIAL_BUDGET`` b in [1, R] is a fidelity: the tuner sees
    ``f(x) + noise_scale * (1 - log b / log R) * N(0, 1)``, the trial costs b / R of a full evaluation
    (and lasts b / R as long), and the run stops at ``trials`` full evaluations' worth of cost. What is
    recorded is the true ``f(x)`` (and the observed value and cost for budgeted runs).
    """
    dur_rng = np.random.default_rng([seed, 424242])
    noise_rng = np.random.default_rng([seed, 77])
    heap: list[tuple[float, int]] = []
    pending: dict[int, tuple[dict[str, Any], float]] = {}
    out: dict[str, Any] = {"values": [], "status": "ok"}
    if noise_scale is not None:
        out.update(observed=[], costs=[])
    now, next_id, waiting, spent = 0.0, 0, False, 0.0
    tuner_seconds = 0.0
    t0 = time.perf_counter()
    cpu0 = time.process_time()

    def used() -> float:
        """CPU seconds of this process, plus the time spent inside an NNI worker's tuner calls."""
        return time.process_time() - cpu0 + getattr(runner, "tuner_seconds", 0.0)

    def schedule(pid: int, params: dict[str, Any]) -> None:
        cost = 1.0
        if noise_scale is not None:
            b = float(params.get("TRIAL_BUDGET", FIDELITY_R))
            cost = min(max(b, 1e-9), FIDELITY_R) / FIDELITY_R
        pending[pid] = (params, cost)
        heapq.heappush(heap, (now + cost * dur_rng.uniform(0.5, 1.5), pid))

    def done() -> bool:
        return (spent >= trials) if noise_scale is not None else len(out["values"]) >= trials

    while not done():
        if used() > time_limit:
            out["status"] = "timeout"
            break
        while not waiting and len(pending) < concurrency and out["status"] == "ok":
            if noise_scale is None and len(out["values"]) + len(pending) >= trials:
                break
            s = time.perf_counter()
            try:
                params = runner.ask(next_id)
            except peers.Wait:
                if not pending:
                    raise RuntimeError("the tuner waits for results, but no trial is running") from None
                waiting = True
                if isinstance(runner, peers.NniRunner):
                    next_id += 1  # NNI keeps the id and answers it later; nni-pl is asked again with it
                break
            except peers.Exhausted:
                out["status"] = "exhausted"
                break
            finally:
                tuner_seconds += time.perf_counter() - s
            schedule(next_id, params)
            next_id += 1
        if not heap:
            break
        now, pid = heapq.heappop(heap)
        params, cost = pending.pop(pid)
        clean = {k: v for k, v in params.items() if k != "TRIAL_BUDGET"}
        value = fn(clean)
        seen = value
        if noise_scale is not None:
            b = cost * FIDELITY_R
            seen = value + noise_scale * (1 - math.log(max(b, 1)) / math.log(FIDELITY_R)) * noise_rng.normal()
            out["observed"].append(seen)
            out["costs"].append(cost)
            spent += cost
        out["values"].append(value)
        s = time.perf_counter()
        runner.tell(pid, params, seen)
        tuner_seconds += time.perf_counter() - s
        for rpid, rparams in list(getattr(runner, "ready", {}).items()):  # NNI answering an earlier ask
            runner.ready.pop(rpid)
            schedule(rpid, rparams)
            waiting = False
        if waiting and not isinstance(runner, peers.NniRunner):
            waiting = False  # ask again after a trial ended (the manager's rule)
        if waiting and not pending and not heap:
            raise RuntimeError("the tuner waits for results, but no trial is running")
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = used()
    out["tuner_seconds"] = tuner_seconds
    return out


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """One (tuner, problem, seed, mode) run; never raises (errors are recorded)."""
    problem = problems.get(job["problem"])
    rec = {k: job[k] for k in ("tuner", "problem", "seed", "mode", "trials")}
    t0 = time.perf_counter()
    runner = None
    try:
        runner = make_runner(
            job["tuner"], problem.space, job["seed"], MODES[job["mode"]], job.get("class_args")
        )
        res = simulate(
            runner,
            problem.fn,
            trials=job["trials"],
            concurrency=MODES[job["mode"]],
            seed=job["seed"],
            time_limit=job["time_limit"],
            noise_scale=job.get("noise_scale"),
        )
        rec.update(res)
    except Exception as e:
        rec.update(status="error", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()[-1500:])
        rec.setdefault("values", [])
    finally:
        if runner is not None:
            try:
                if isinstance(runner, peers.NniRunner):
                    runner.close(failed=rec.get("status") != "ok")
                else:
                    runner.close()
            except Exception:
                pass
    rec["wall_seconds"] = time.perf_counter() - t0
    return rec


def _init_worker() -> None:
    logging.disable(logging.WARNING)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


# --- the grid ------------------------------------------------------------------------------------------
def job_key(j: dict[str, Any]) -> tuple[Any, ...]:
    return (j["tuner"], j["problem"], j["seed"], j["mode"], j["trials"])


def load_runs(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by an interrupted run
                continue
    return out


def plan(
    args: argparse.Namespace, refs: dict[str, dict[str, float]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The jobs of the grid and notes on what was skipped."""
    notes: list[str] = []
    jobs: list[dict[str, Any]] = []
    runnable = []
    for t in args.tuners:
        ok, why = available(t)
        if ok:
            runnable.append(t)
        else:
            notes.append(f"{t}: skipped, {why}")
    for seed in range(args.seeds):
        for pname in args.problems:
            space = problems.get(pname).space
            for mode in args.modes:
                for t in runnable:
                    ok, why = applies(t, space)
                    if not ok:
                        continue
                    slow = t in SLOW
                    if slow and (seed >= args.slow_seeds or mode not in args.slow_modes):
                        continue
                    cut = REDUCED.get(t, {})
                    if seed >= cut.get("seeds", seed + 1) or mode not in cut.get("modes", [mode]):
                        continue
                    job = {
                        "tuner": t,
                        "problem": pname,
                        "seed": seed,
                        "mode": mode,
                        "trials": args.trials,
                        "time_limit": args.slow_time_limit if slow else args.time_limit,
                    }
                    if "class_args" in cut:
                        job["class_args"] = cut["class_args"]
                    if t in BUDGET_TUNERS:
                        ref = refs[pname]
                        job["noise_scale"] = 0.5 * (ref["median_random"] - ref["optimum"])
                    jobs.append(job)
    jobs.sort(
        key=lambda j: (j["tuner"] in SLOW, j["seed"])
    )  # cheap runs first: a stopped grid is still useful
    if set(args.slow_modes) != set(args.modes):
        slow_run = [t for t in runnable if t in SLOW and t not in REDUCED]
        if slow_run:
            notes.append(
                f"{', '.join(slow_run)}: {args.slow_seeds} seeds, "
                f"{', '.join({'seq': 'sequential', 'c4': 'concurrency 4'}[m] for m in args.slow_modes if m in args.modes)} only "
                "(seconds per suggestion: the full grid does not fit the time this run had)"
            )
    for t, cut in REDUCED.items():
        if t in runnable:
            notes.append(
                f"{t}: reduced to {cut['seeds']} seeds, {', '.join({'seq': 'sequential', 'c4': 'concurrency 4'}[m] for m in cut['modes'])} only, "
                f"classArgs {cut.get('class_args', {})}"
            )
    for t in runnable:
        na = [p for p in args.problems if not applies(t, problems.get(p).space)[0]]
        if na:
            notes.append(
                f"{t}: not applicable to {', '.join(na)} ({applies(t, problems.get(na[0]).space)[1]})"
            )
    return jobs, notes


def references(names: list[str], samples: int) -> dict[str, dict[str, Any]]:
    """Regret anchors per problem, cached in the work folder (surrogate quality too)."""
    WORK.mkdir(parents=True, exist_ok=True)
    cache_path = WORK / f"references_{samples}.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    stamp = {
        p: os.path.getmtime(problems.DATA_DIR / f"{p.replace('-', '_', 1)}.jsonl")
        for p in names
        if p in problems.SURROGATES
    }
    changed = False
    for name in names:
        if name in cache and cache[name].get("stamp") == stamp.get(name):
            continue
        log.info("reference values of %s (%d random samples)", name, samples)
        ref = problems.reference(name, samples)
        if name in problems.SURROGATES:
            model, _, dataset = name.partition("-")
            ref.update(problems.surrogate_quality(model, dataset))
            ref.update(problems.get(name).info)
        ref["stamp"] = stamp.get(name)
        cache[name] = ref
        changed = True
    if changed:
        cache_path.write_text(json.dumps(cache, indent=1))
    return {n: cache[n] for n in names}


def iterate(jobs: list[dict[str, Any]], workers: int) -> Iterator[dict[str, Any]]:
    if workers <= 1:
        _init_worker()
        for j in jobs:
            yield run_one(j)
        return
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap_unordered(run_one, jobs, chunksize=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 30 trials, branin + rf-wine")
    parser.add_argument(
        "--tuners", nargs="+", default=list(ALL_TUNERS), choices=list(ALL_TUNERS), metavar="TUNER"
    )
    parser.add_argument("--problems", nargs="+", default=list(problems.ALL), choices=list(problems.ALL))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--slow-seeds", type=int, default=None, help="seeds for the slow tuners (default --seeds)"
    )
    parser.add_argument("--time-limit", type=float, default=1800.0, help="CPU seconds per run")
    parser.add_argument(
        "--slow-modes",
        nargs="+",
        choices=sorted(MODES),
        default=None,
        help="modes for the slow tuners (default --modes)",
    )
    parser.add_argument(
        "--slow-time-limit", type=float, default=600.0, help="CPU seconds per run of a slow tuner"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=100_000, help="random samples for the regret anchors")
    parser.add_argument(
        "--runs", type=Path, default=WORK / "runs.jsonl", help="results file (JSON lines, resumable)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "hpo.md")
    parser.add_argument("--plot", type=Path, default=RESULTS / "hpo_regret.png")
    parser.add_argument("--latency", choices=["full", "none", "tpe"], default="full")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--rerun", nargs="+", default=[], metavar="TUNER",
        help="drop these tuners' recorded runs first ('nni-pl' = every nni-pl tuner), e.g. after a code change",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.trials, args.budgets = 2, 30, [10, 20, 30]
        if args.problems == list(problems.ALL):
            args.problems = ["branin", "rf-wine"]
        args.samples = min(args.samples, 10_000)
    args.budgets = sorted({b for b in args.budgets if b <= args.trials} | {args.trials})
    if args.slow_seeds is None:
        args.slow_seeds = args.seeds
    if args.slow_modes is None:
        args.slow_modes = list(args.modes)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    refs = references(args.problems, args.samples)
    jobs, notes = plan(args, refs)
    args.runs.parent.mkdir(parents=True, exist_ok=True)
    if args.rerun and args.runs.exists():
        drop = [t for t in ALL_TUNERS if t in args.rerun or t.split(" ")[0] in args.rerun]
        kept = [r for r in load_runs(args.runs) if r["tuner"] not in drop]
        args.runs.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        log.info("dropped the recorded runs of %s", ", ".join(drop))
    done = {job_key(r) for r in load_runs(args.runs)}
    todo = [j for j in jobs if job_key(j) not in done]
    log.info(
        "%d runs planned, %d already in %s, %d to go", len(jobs), len(jobs) - len(todo), args.runs, len(todo)
    )
    t0 = time.time()
    if not args.report_only:
        with args.runs.open("a", encoding="utf-8") as f:
            for i, rec in enumerate(iterate(todo, args.workers), 1):
                rec.pop("traceback", None) if rec.get("status") != "error" else None
                f.write(json.dumps(rec) + "\n")
                f.flush()
                if rec["status"] != "ok" or i % 25 == 0 or i == len(todo):
                    log.info(
                        "%d/%d %s %s seed %d %s: %s, %d values, %.1fs%s",
                        i, len(todo), rec["tuner"], rec["problem"], rec["seed"], rec["mode"], rec["status"],
                        len(rec["values"]), rec["wall_seconds"], f" ({rec.get('error')})" if rec.get("error") else "",
                    )  # fmt: skip
    elapsed = time.time() - t0
    wanted = {job_key(j) for j in jobs}
    runs = [r for r in load_runs(args.runs) if job_key(r) in wanted]
    latency = None
    if args.latency != "none" and not args.report_only:
        latency = measure_latency(args.tuners, full=args.latency == "full")
        (WORK / "latency.json").write_text(json.dumps(latency, indent=1))
    elif (WORK / "latency.json").exists() and args.latency != "none":
        latency = json.loads((WORK / "latency.json").read_text())
    meta = {
        "seeds": args.seeds,
        "slow_seeds": args.slow_seeds,
        "slow_modes": args.slow_modes,
        "trials": args.trials,
        "budgets": args.budgets,
        "time_limit": args.time_limit,
        "slow_time_limit": args.slow_time_limit,
        "workers": args.workers,
        "elapsed": elapsed,
        "samples": args.samples,
        "command": shlex.join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
    }
    text = report.build(runs, refs, notes, meta, latency, plot_path=args.plot)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return 0


# --- latency -------------------------------------------------------------------------------------------
LATENCY_TUNERS = (
    "nni-pl TPE",
    "optuna TPE",
    "hyperopt TPE",
    "NNI TPE",
    "nni-pl Anneal",
    "nni-pl Evolution",
    "nni-pl RegularizedEvolutionTuner",
    "nni-pl Random",
    "NNI Anneal",
    "NNI Evolution",
    "nni-pl SMAC",
    "nni-pl PPOTuner",
    "optuna CMA-ES",
)  # the GP/Metis/DNGO family needs seconds to minutes per suggestion at 1,000 observations: not here


def measure_latency(
    tuners: list[str], *, full: bool = True, n_obs: int = 1000, repeats: int = 20, cap: float = 60.0
) -> dict[str, Any]:
    """Seconds per suggestion (ask + tell of the result) with ``n_obs`` completed observations of
    Hartmann-6; each tuner gets ``repeats`` suggestions or ``cap`` seconds, whichever comes first."""
    problem = problems.get("hartmann6")
    space = SearchSpace.parse(problem.space)
    rng = np.random.default_rng(0)
    history = [space.sample(rng) for _ in range(n_obs)]
    values = [problem.fn(p) for p in history]
    order = [t for t in LATENCY_TUNERS if t in tuners and (full or t.endswith("TPE"))]
    out: dict[str, Any] = {"n_obs": n_obs, "problem": "hartmann6", "tuners": {}}
    for tuner in order:
        if not available(tuner)[0]:
            continue
        log.info("latency of %s with %d observations", tuner, n_obs)
        try:
            out["tuners"][tuner] = _latency_one(tuner, problem, history, values, repeats, cap)
        except Exception as e:
            out["tuners"][tuner] = {"error": f"{type(e).__name__}: {e}"}
    return out


def _latency_one(
    tuner: str,
    problem: problems.Problem,
    history: list[dict[str, Any]],
    values: list[float],
    repeats: int,
    cap: float,
) -> dict[str, Any]:
    family, _, algo = tuner.partition(" ")
    records = [{"parameter": p, "value": v} for p, v in zip(history, values)]
    t_setup = time.perf_counter()
    if family == "nni-pl":
        runner: Any = NniPlRunner(algo, problem.space, 0, 1)
        runner.tuner.import_data(records)
    elif family == "NNI":
        runner = peers.NniRunner(algo, problem.space, 0)
        runner.import_data(records)
    elif family == "optuna":
        import optuna

        runner = peers.OptunaRunner(algo, problem.space, 0)
        dists = {
            name: optuna.distributions.FloatDistribution(p.low, p.high)
            for name, p in SearchSpace.parse(problem.space).items()
        }
        runner.study.add_trials(
            [
                optuna.trial.create_trial(params=p, distributions=dists, value=v)
                for p, v in zip(history, values)
            ]
        )
    else:
        from hyperopt import JOB_STATE_DONE, STATUS_OK, rand

        runner = peers.HyperoptRunner(problem.space, 0)
        ids = runner.trials.new_trial_ids(len(history))
        docs = rand.suggest(ids, runner.domain, runner.trials, 0)
        for doc in docs:  # random points with the objective's values there
            vals = {k: x[0] for k, x in doc["misc"]["vals"].items()}
            doc["state"], doc["result"] = JOB_STATE_DONE, {"loss": problem.fn(vals), "status": STATUS_OK}
        runner.trials.insert_trial_docs(docs)
        runner.trials.refresh()
    setup = time.perf_counter() - t_setup
    times = []
    t_all = time.perf_counter()
    for i in range(repeats):
        pid = 100_000 + i
        before = getattr(runner, "tuner_seconds", None)
        s = time.perf_counter()
        params = runner.ask(pid)
        ask = time.perf_counter() - s
        if family == "NNI":  # the tuner's own time, without the pipe
            ask = runner.tuner_seconds - before
        runner.tell(pid, params, problem.fn({k: v for k, v in params.items() if k != "TRIAL_BUDGET"}))
        times.append(ask)
        if time.perf_counter() - t_all > cap:
            break
    runner.close()
    return {
        "seconds": float(np.mean(times)),
        "median": float(np.median(times)),
        "n": len(times),
        "setup": setup,
    }


if __name__ == "__main__":
    sys.exit(main())
