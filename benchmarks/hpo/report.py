"""Tables, targets and the regret plot of the side-by-side HPO benchmark (``run.py`` calls :func:`build`).

Definitions used throughout:

* **found(n)**: the best objective value among a run's first n evaluations (in completion order). For
  Hyperband/BOHB, which see a noisy low-fidelity value, n counts full-evaluation equivalents of cost and
  found(n) is the true value of the configuration with the best observed value at the highest budget
  evaluated so far.
* **normalised regret** = (found(n) - optimum) / (median_random - optimum), where median_random is the
  median of the objective over a large random sample of the space (so a single random guess scores
  about 1 and the optimum 0). The optimum is known for the synthetic problems; for a surrogate it is
  the best of the random sample or of every value any tuner found, whichever is lower.
* **rank**: on each (problem, seed, mode), tuners are ranked by found(n) (1 = best, ties share the mean
  rank) among the tuners that ran there; the mean rank averages over problems and seeds.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import platform
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SYNTHETIC = ("branin", "hartmann6", "rosenbrock5", "ackley10", "categorical", "conditional")
CLASSES = {"synthetic": "synthetic functions", "surrogate": "scikit-learn surrogates"}
MODES = {"seq": "sequential", "c4": "concurrency 4"}
MODEL_BASED = (
    "nni-pl TPE",
    "nni-pl SMAC",
    "nni-pl GPTuner",
    "nni-pl MetisTuner",
    "nni-pl DNGOTuner",
    "nni-pl BOHB",
)
RANDOM = "nni-pl Random"


def problem_class(name: str) -> str:
    return "synthetic" if name in SYNTHETIC else "surrogate"


def found_curve(run: dict[str, Any], horizon: int) -> np.ndarray:
    """found(n) for n = 1..horizon (NaN before the first result; the last value carried past the end)."""
    out = np.full(horizon, np.nan)
    values = run.get("values") or []
    if not values:
        return out
    if "costs" not in run:
        best = np.minimum.accumulate(np.asarray(values, dtype=float))
        k = min(len(best), horizon)
        out[:k] = best[:k]
        out[k:] = best[k - 1]
        return out
    spent, top, inc_seen, inc_true = 0.0, -1.0, math.inf, math.nan
    marks: list[tuple[float, float]] = []
    for true, seen, cost in zip(values, run["observed"], run["costs"]):
        spent += cost
        if cost > top + 1e-12:
            top, inc_seen, inc_true = cost, seen, true
        elif abs(cost - top) <= 1e-12 and seen < inc_seen:
            inc_seen, inc_true = seen, true
        marks.append((spent, inc_true))
    j = 0
    current = math.nan
    for n in range(1, horizon + 1):
        while j < len(marks) and marks[j][0] <= n + 1e-9:
            current = marks[j][1]
            j += 1
        out[n - 1] = current
    return out


def _ranks(values: dict[str, float]) -> dict[str, float]:
    names = list(values)
    v = np.array([values[n] for n in names])
    return {n: 1 + float(np.sum(v < v[i]) + 0.5 * (np.sum(v == v[i]) - 1)) for i, n in enumerate(names)}


DEFAULT_TUNER = "nni-pl Auto"
PEER_GP = "optuna GP"


def _against_random(
    t: str, b: int, probs: list[str], modes: list[str], regrets: Any, med: Any
) -> tuple[int, int, list[str]]:
    """On how many problem-modes ``t``'s median regret at ``b`` trials is below random search's: wins, the
    problem-modes both ran, and the ones lost (``problem/mode``)."""
    wins, total, lost = 0, 0, []
    for p in probs:
        for m in modes:
            mine, base = regrets(t, None, m, b, p), regrets(RANDOM, None, m, b, p)
            if not mine or not base:
                continue
            total += 1
            if med(mine) < med(base):
                wins += 1
            else:
                lost.append(f"{p}/{m}")
    return wins, total, lost


def _issue18_targets(
    add: Any,
    tuners: list[str],
    probs: list[str],
    modes: list[str],
    budgets: list[int],
    curves: dict[tuple[str, str, int, str], np.ndarray],
    regrets: Any,
    med: Any,
) -> None:
    """Issue 18's targets: mean rank over every problem and mode on the (problem, seed, mode) cells every tuner
    ran (so a tuner with fewer seeds is compared on the same cells); the default tuner in the top three; every
    nni-pl model-based tuner beating random search on >= 90% of problem-modes at the first budget."""
    if PEER_GP not in tuners or DEFAULT_TUNER not in tuners:
        return
    cells = {(p, s, m) for (_, p, s, m) in curves}
    n_cells = {t: sum((t, *c) in curves for c in cells) for t in tuners}
    fields = [list(tuners)]
    many = [t for t in tuners if n_cells[t] >= max(n_cells.values()) / 2]
    if len(many) < len(tuners) and PEER_GP in many and DEFAULT_TUNER in many:
        fields.append(many)  # the slow tuners with few seeds left out: more runs in common for the rest
    for field in fields:
        common = sorted(c for c in cells if all((t, *c) in curves for t in field))
        if not common:
            continue
        seeds = sorted({s for _, s, _ in common})
        left_out = [t for t in tuners if t not in field]
        add("")
        add(
            "### Issue 18: the whole field on common runs"
            + (f" (without {', '.join(left_out)})" if left_out else "")
        )
        add("")
        add(
            f"Mean rank over all problems and both modes on the {len(common)} (problem, seed, mode) runs that every "
            f"tuner below made (seeds {', '.join(map(str, seeds))}); runs per tuner in the tables above."
        )
        add("")
        add("| tuner | " + " | ".join(f"rank @{b}" for b in budgets) + " |")
        add("|---|" + "---|" * len(budgets))
        means: dict[int, dict[str, float]] = {}
        for b in budgets:
            acc: dict[str, list[float]] = defaultdict(list)
            for p, s, m in common:
                for t, rk in _ranks({t: float(curves[(t, p, s, m)][b - 1]) for t in field}).items():
                    acc[t].append(rk)
            means[b] = {t: float(np.mean(v)) for t, v in acc.items()}
        last = budgets[-1]
        for t in sorted(field, key=lambda t: means[last][t]):
            add(f"| {t} | " + " | ".join(f"{means[b][t]:.2f}" for b in budgets) + " |")
        add("")
        for b in budgets:
            order = sorted(field, key=lambda t: means[b][t])
            best_ours = next(t for t in order if t.startswith("nni-pl"))
            first = order[0] == best_ours and means[b][best_ours] < means[b][PEER_GP]
            add(
                f"- **{'PASS' if first else 'FAIL'}** nni-pl's best tuner ranks first, ahead of Optuna GP, at {b} "
                f"trials: {best_ours} {means[b][best_ours]:.2f}, first {order[0]} {means[b][order[0]]:.2f}, "
                f"Optuna GP {means[b][PEER_GP]:.2f}."
            )
            place = order.index(DEFAULT_TUNER) + 1
            add(
                f"- **{'PASS' if place <= 3 else 'FAIL'}** the default tuner ({DEFAULT_TUNER}) ranks within the top "
                f"three at {b} trials: place {place} of {len(order)} ({means[b][DEFAULT_TUNER]:.2f})."
            )
    add("")
    b = budgets[0]
    if RANDOM in tuners:
        for t in [x for x in (*MODEL_BASED, DEFAULT_TUNER) if x in tuners]:
            wins, total, lost = _against_random(t, b, probs, modes, regrets, med)
            if total:
                share = wins / total
                extra = f"; not on {', '.join(lost)}" if lost else ""
                add(
                    f"- **{'PASS' if share >= 0.9 else 'FAIL'}** {t} beats random search (lower median regret at "
                    f"{b} trials, every seed it ran) on {wins}/{total} problem-modes = {share:.0%} (target 90%){extra}."
                )


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x == 0:
        return "0"
    if abs(x) < 1e-3:
        return f"{x:.1e}"
    return f"{x:.{digits}g}"


def build(
    runs: Sequence[dict[str, Any]],
    refs: dict[str, dict[str, Any]],
    notes: Sequence[str],
    meta: dict[str, Any],
    latency: dict[str, Any] | None,
    plot_path: Path | None = None,
) -> str:
    """The Markdown report (and the plot at ``plot_path``) from the recorded runs."""
    horizon = int(meta["trials"])
    budgets = list(meta["budgets"])
    tuners = sorted({r["tuner"] for r in runs}, key=lambda t: (not t.startswith("nni-pl"), t))
    probs = [p for p in refs if any(r["problem"] == p for r in runs)]

    # optimum per problem: known, or the best value seen anywhere (random sample or any run)
    optimum: dict[str, float] = {}
    scale: dict[str, float] = {}
    for p in probs:
        opt = refs[p]["optimum"]
        if problem_class(p) == "surrogate":
            seen = [min(r["values"]) for r in runs if r["problem"] == p and r.get("values")]
            opt = min([opt, *seen])
        optimum[p] = opt
        scale[p] = max(refs[p]["median_random"] - opt, 1e-12)

    # normalised regret curves per run
    curves: dict[tuple[str, str, int, str], np.ndarray] = {}
    for r in runs:
        c = found_curve(r, horizon)
        curves[(r["tuner"], r["problem"], r["seed"], r["mode"])] = np.maximum(
            (c - optimum[r["problem"]]) / scale[r["problem"]], 0
        )
    modes = [m for m in MODES if any(k[3] == m for k in curves)]
    seeds_all = sorted({k[2] for k in curves})
    rank_seeds = [s for s in seeds_all if s < meta.get("slow_seeds", len(seeds_all))]

    full_seed = [t for t in tuners if max(k[2] for k in curves if k[0] == t) == seeds_all[-1]]

    def compute_ranks(among: list[str], seeds: list[int]) -> dict[tuple[str, str, int, str, int], float]:
        """Rank per (tuner, problem, seed, mode, budget) among the tuners of ``among`` that ran there."""
        out: dict[tuple[str, str, int, str, int], float] = {}
        for p in probs:
            for s in seeds:
                for m in modes:
                    for b in budgets:
                        vals = {t: curves[(t, p, s, m)][b - 1] for t in among if (t, p, s, m) in curves}
                        vals = {t: v for t, v in vals.items() if not math.isnan(v)}
                        for t, rk in _ranks(vals).items():
                            out[(t, p, s, m, b)] = rk
        return out

    ranks = compute_ranks(tuners, rank_seeds)
    ranks_full = compute_ranks(full_seed, seeds_all) if rank_seeds != seeds_all else ranks

    def mean_rank(
        t: str, cls: str | None, m: str | None, b: int, table: dict[Any, float] | None = None
    ) -> float:
        xs = [
            v for (tt, p, s, mm, bb), v in (ranks if table is None else table).items()
            if tt == t and bb == b and (m is None or mm == m) and (cls is None or problem_class(p) == cls)
        ]  # fmt: skip
        return float(np.mean(xs)) if xs else math.nan

    def regrets(t: str, cls: str | None, m: str | None, b: int, problem: str | None = None) -> list[float]:
        return [
            float(c[b - 1]) for (tt, p, s, mm), c in curves.items()
            if tt == t and (m is None or mm == m) and (cls is None or problem_class(p) == cls)
            and (problem is None or p == problem) and not math.isnan(c[b - 1])
        ]  # fmt: skip

    def med(xs: list[float]) -> float:
        return float(np.median(xs)) if xs else math.nan

    by_tuner_runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by_tuner_runs[r["tuner"]].append(r)

    lines: list[str] = []
    add = lines.append
    quick = " (QUICK MODE: a smoke run, not the benchmark)" if meta.get("quick") else ""
    add(f"# HPO benchmark: nni-pl tuners side by side with Optuna, hyperopt and NNI 3.0{quick}")
    add("")
    add(
        f"{len(probs)} problems x {len(seeds_all)} seeds x {len(modes)} modes, {horizon} trials per run "
        f"(read at {', '.join(map(str, budgets))}); {len(runs)} runs. Generated by `benchmarks/hpo/run.py "
        f"{meta.get('command', '')}".rstrip()
        + "`."
    )
    add("")
    add("Definitions: *normalised regret* = (best value found - optimum) / (median of the objective over "
        "random configurations - optimum): 0 is the optimum, about 1 is one random guess. *Rank*: tuners "
        "ranked by best value found on each (problem, seed, mode), 1 = best, ties share the mean rank, "
        "averaged over problems and seeds; a tuner is ranked only on problems whose search space it "
        "supports, against the tuners that ran there. Sequential = one trial at a time; concurrency 4 = "
        "four suggestions pending, results returned in completion order (random durations).")  # fmt: skip
    if rank_seeds != seeds_all:
        add("")
        add(
            f"The slow tuners ran seeds 0-{rank_seeds[-1]} only, so `rank` columns rank every tuner on seeds "
            f"0-{rank_seeds[-1]}; `rank{len(seeds_all)}` ranks the tuners that ran all {len(seeds_all)} seeds "
            "among themselves on every seed. Regrets use every seed a tuner ran."
        )

    if any(t in ("nni-pl Hyperband", "nni-pl BOHB") for t in tuners):
        add("")
        add("Hyperband and BOHB need a budget. Here the trial budget b (`TRIAL_BUDGET`, 1 to R = 27, eta = 3) "
            "is a fidelity: the tuner sees f(x) + s (1 - ln b / ln R) N(0, 1), with s half the distance from "
            "the optimum to the random median, a trial costs b / R of a full evaluation, and their x axis is "
            "cost in full evaluations. Their found(n) is the true value of the best-observed configuration "
            "at the highest budget evaluated so far.")  # fmt: skip

    # --- main tables -----------------------------------------------------------------------------------
    for cls in ("synthetic", "surrogate"):
        if not any(problem_class(p) == cls for p in probs):
            continue
        for m in modes:
            add("")
            add(f"## {CLASSES[cls].capitalize()}, {MODES[m]}")
            add("")
            extra = [f"rank{len(seeds_all)} @{budgets[-1]}"] if ranks_full is not ranks else []
            head = " | ".join([f"rank @{b}" for b in budgets] + extra + [f"regret @{b}" for b in budgets])
            add(f"| tuner | {head} | runs | CPU s/run | tuner ms/trial |")
            add("|---|" + "---|" * (2 * len(budgets) + len(extra) + 3))
            rows = []
            for t in tuners:
                rs = [r for r in by_tuner_runs[t] if r["mode"] == m and problem_class(r["problem"]) == cls]
                if not rs:
                    continue
                mr = [mean_rank(t, cls, m, b) for b in budgets]
                if ranks_full is not ranks:
                    mr.append(mean_rank(t, cls, m, budgets[-1], ranks_full))
                rg = [med(regrets(t, cls, m, b)) for b in budgets]
                secs = float(np.mean([r.get("cpu_seconds", r.get("wall_seconds", 0)) for r in rs]))
                per_trial = float(np.mean([r.get("tuner_seconds", 0) / max(1, len(r["values"])) for r in rs]))
                key = mr[len(budgets) - 1]
                rows.append((key if not math.isnan(key) else 1e9, t, mr, rg, len(rs), secs, per_trial))
            for _, t, mr, rg, n, secs, per_trial in sorted(rows):
                name = f"**{t}**" if t.startswith("nni-pl") else t
                cells = " | ".join(_fmt(x) for x in mr + rg)
                add(f"| {name} | {cells} | {n} | {secs:.1f} | {per_trial * 1e3:.1f} |")

    # --- per problem -----------------------------------------------------------------------------------
    b = budgets[-1]
    for m in modes:
        add("")
        add(f"## Median normalised regret per problem at {b} trials, {MODES[m]}")
        add("")
        add("| tuner | " + " | ".join(probs) + " |")
        add("|---|" + "---|" * len(probs))
        for t in tuners:
            cells = []
            for p in probs:
                xs = regrets(t, None, m, b, p)
                cells.append(_fmt(med(xs)) if xs else "n/a")
            if any(c != "n/a" for c in cells):
                add(f"| {t} | " + " | ".join(cells) + " |")

    # --- targets ---------------------------------------------------------------------------------------
    add("")
    add("## Targets")
    add("")
    ours, theirs = "nni-pl TPE", "optuna TPE"
    if ours in tuners and theirs in tuners:
        # head to head on the pairs where both ran, so the other tuners do not tilt the comparison
        table = ranks_full if ours in full_seed and theirs in full_seed else ranks
        n_seeds = len(seeds_all) if table is ranks_full else len(rank_seeds)
        a = mean_rank(ours, None, None, b, table)
        o = mean_rank(theirs, None, None, b, table)
        status = "PASS" if a <= o else "FAIL"
        add(f"- **{status}** nni-pl TPE's mean rank is no worse than Optuna TPE's: {a:.2f} vs {o:.2f} "
            f"(all problems, both modes, {b} trials, {n_seeds} seeds).")  # fmt: skip
        if table is not ranks:
            a3, o3 = mean_rank(ours, None, None, b), mean_rank(theirs, None, None, b)
            add(f"  - ranked against every tuner on seeds 0-{rank_seeds[-1]}: {a3:.2f} vs {o3:.2f}")
        for cls in ("synthetic", "surrogate"):
            for m in modes:
                a2, o2 = mean_rank(ours, cls, m, b, table), mean_rank(theirs, cls, m, b, table)
                if not math.isnan(a2):
                    add(f"  - {CLASSES[cls]}, {MODES[m]}: {a2:.2f} vs {o2:.2f}")
    if RANDOM in tuners:
        for t in [x for x in MODEL_BASED if x in tuners]:
            wins, total, lost = _against_random(t, b, probs, modes, regrets, med)
            if total:
                share = wins / total
                status = "PASS" if share >= 0.8 else "FAIL"
                extra = f"; not on {', '.join(lost)}" if lost else ""
                add(f"- **{status}** {t} beats random search (lower median regret at {b} trials) on "
                    f"{wins}/{total} problem-modes = {share:.0%} (target 80%){extra}.")  # fmt: skip
        missing = [x for x in MODEL_BASED if x not in tuners]
        if missing:
            add(f"- not measured (tuner missing): {', '.join(missing)}.")
    _issue18_targets(add, tuners, probs, modes, budgets, curves, regrets, med)
    if latency and latency.get("tuners"):
        lat = latency["tuners"]
        if "seconds" in lat.get(ours, {}) and "seconds" in lat.get(theirs, {}):
            a, o = lat[ours]["seconds"], lat[theirs]["seconds"]
            status = "PASS" if a <= o else "FAIL"
            add(f"- **{status}** suggestion latency at {latency['n_obs']:,} observations no slower than "
                f"Optuna TPE's: {a * 1e3:.2f} ms vs {o * 1e3:.2f} ms ({o / a:.1f}x faster).")  # fmt: skip

    # --- latency ---------------------------------------------------------------------------------------
    if latency and latency.get("tuners"):
        add("")
        add(f"## Suggestion latency with {latency['n_obs']:,} observations ({latency['problem']})")
        add("")
        add(
            "Mean time of one `ask` after importing the observations (NNI 3.0: measured inside its "
            "process, without the pipe)."
        )
        add("")
        add("| tuner | ms per suggestion | median ms | suggestions timed | import/setup s |")
        add("|---|---|---|---|---|")
        items = sorted(lat.items(), key=lambda kv: kv[1].get("seconds", math.inf))
        for t, v in items:
            if "seconds" in v:
                add(
                    f"| {t} | {v['seconds'] * 1e3:.2f} | {v['median'] * 1e3:.2f} | {v['n']} | {v['setup']:.1f} |"
                )
            else:
                add(f"| {t} | failed: {v.get('error', '?')} | | | |")

    # --- problems and surrogates -----------------------------------------------------------------------
    add("")
    add("## Problems")
    add("")
    add("| problem | optimum used | median random | how the optimum is known |")
    add("|---|---|---|---|")
    for p in probs:
        how = "analytic" if problem_class(p) == "synthetic" else (
            f"best of {meta.get('samples', 0):,} random samples" if optimum[p] >= refs[p]["sample_min"] - 1e-15
            else f"found by a tuner (random-sample best {refs[p]['sample_min']:.4g})"
        )  # fmt: skip
        add(f"| {p} | {optimum[p]:.6g} | {refs[p]['median_random']:.6g} | {how} |")
    sur = [p for p in probs if problem_class(p) == "surrogate"]
    if sur:
        add("")
        add("Surrogates: an extra-trees regressor (100 trees, min_samples_leaf 2) on the "
            "real 3-fold CV error rates in `benchmarks/data/hpo_sklearn/` (built by "
            "`benchmarks/data/build_hpo_sklearn.py`). Rank correlation between its cross-validated "
            "predictions and the real error, with the folds split by configuration (all checkpoints of a "
            "configuration in one fold):")  # fmt: skip
        add("")
        add("| surrogate | configurations | evaluations | Spearman | Kendall | MAE | best real error |")
        add("|---|---|---|---|---|---|---|")
        for p in sur:
            r = refs[p]
            add(f"| {p} | {r.get('configurations', '?')} | {r.get('evaluations', '?')} | {r.get('spearman', math.nan):.3f} | "
                f"{r.get('kendall', math.nan):.3f} | {r.get('mae', math.nan):.4f} | {r.get('best_real_error', math.nan):.4f} |")  # fmt: skip

    # --- what did not run ------------------------------------------------------------------------------
    bad = [r for r in runs if r.get("status") not in ("ok", "exhausted")]
    add("")
    add("## Runs that did not finish, skipped tuners, reductions")
    add("")
    if meta.get("slow_seeds", meta["seeds"]) < meta["seeds"]:
        add(f"- Slow tuners ran {meta['slow_seeds']} seeds instead of {meta['seeds']}.")
    add(f"- Time limit per run: {meta['time_limit']:.0f} CPU s; slow tuners {meta['slow_time_limit']:.0f} CPU s "
        "(a run that hits it keeps what it found so far: its regret at later budgets is that of its last "
        "result, a handicap).")  # fmt: skip
    if bad:
        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for r in bad:
            groups[(r["tuner"], r["status"])].append(r)
        add("")
        add("| tuner | status | runs | mean trials done | example |")
        add("|---|---|---|---|---|")
        for (t, st), rs in sorted(groups.items()):
            ex = rs[0].get("error", "") or f"{rs[0]['problem']} seed {rs[0]['seed']} {rs[0]['mode']}"
            add(f"| {t} | {st} | {len(rs)} | {np.mean([len(r['values']) for r in rs]):.0f} | {ex[:160]} |")
    else:
        add("- Every run finished.")
    for n in notes:
        add(f"- {n}")
    add("")
    add(
        f"Run time: {meta.get('elapsed', 0) / 3600:.2f} h of this invocation with {meta['workers']} worker "
        f"processes. `CPU s/run`: CPU time of a run (tuner and objective; for NNI 3.0 the time inside its tuner calls); `tuner ms/trial`: wall time in the tuner's ask and tell per trial, on a loaded machine. Machine: "
        f"{platform.platform()}, {mp.cpu_count()} CPUs (shared), Python {platform.python_version()}"
        f"{_versions()}."
    )
    text = "\n".join(lines) + "\n"
    if plot_path is not None:
        _plot(curves, tuners, modes, horizon, plot_path)
        add("")
    return text


def _versions() -> str:
    out = []
    for mod in ("optuna", "hyperopt"):
        try:
            out.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            pass
    return (", " + ", ".join(out) + ", NNI 3.0") if out else ""


def _plot(
    curves: dict[tuple[str, str, int, str], np.ndarray],
    tuners: list[str],
    modes: list[str],
    horizon: int,
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = [c for c in ("synthetic", "surrogate") if any(problem_class(k[1]) == c for k in curves)]
    fig, axes = plt.subplots(
        len(classes), len(modes), figsize=(6.5 * len(modes), 4.6 * len(classes)), squeeze=False
    )
    cmap = plt.get_cmap("tab20")
    x = np.arange(1, horizon + 1)
    for i, cls in enumerate(classes):
        for j, m in enumerate(modes):
            ax = axes[i][j]
            for k, t in enumerate(tuners):
                cs = [
                    c
                    for (tt, p, s, mm), c in curves.items()
                    if tt == t and mm == m and problem_class(p) == cls
                ]
                if not cs:
                    continue
                y = np.nanmedian(np.vstack(cs), axis=0)
                style = "-" if t.startswith("nni-pl") else "--"
                ax.plot(
                    x,
                    np.maximum(y, 1e-4),
                    style,
                    color=cmap(k % 20),
                    lw=1.6 if t.startswith("nni-pl") else 1.1,
                    label=t,
                )
            ax.set_yscale("log")
            ax.set_title(f"{CLASSES[cls]}, {MODES[m]}")
            ax.set_xlabel("trials (full-evaluation equivalents)")
            ax.set_ylabel("median normalised regret")
            ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for row in axes:
        for ax in row:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
    fig.legend(handles, labels, loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.82, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
