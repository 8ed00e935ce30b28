"""Assessor benchmark: epochs saved and best result kept by early-stopping rules on replayed learning curves.

Two curve sets:

* ``digits``: real Lightning training. ``--digits-configs`` configurations of ``examples/hpo_digits``'s
  ``DigitsMLP`` on ``DigitsDataModule`` (scikit-learn's 8x8 digits), sampled from its
  ``search_space.json``, each trained for ``--epochs`` epochs in this one process, ``val_acc`` recorded
  after every epoch. Stored in ``benchmarks/data/digits_curves.json`` (with seeds and versions) and only
  retrained with ``--rebuild-digits``.
* ``synthetic``: ``--synthetic-curves`` curves from parametric families (power law, exponential,
  sigmoidal late bloomers, overfitting, slow linear, diverged) with Gaussian noise, seeded.

Each assessor is replayed on each set like an experiment: the curves arrive in a seeded random order,
``--concurrency`` trials run at once, each epoch of a trial lasts a trial-specific time (so reports
interleave and an assessor sees only what has happened so far), a trial stops when the assessor says
Bad, and a freed slot starts the next trial. Measured: the fraction of epochs saved against running
every trial to the end, and the best final value among the trials that ran to the end, as a ratio to
the best final value without early stopping. Compared: nni-pl's Medianstop, Curvefitting and ASHA,
Optuna's MedianPruner and SuccessiveHalvingPruner (driven by ask/tell, ``trial.report`` and
``trial.should_prune``), and no early stopping.

Usage::

    python benchmarks/hpo/assessors.py                      # full run: both sets, 10 orderings, sweep
    python benchmarks/hpo/assessors.py --rebuild-digits     # retrain the digits curves first (minutes)
    python benchmarks/hpo/assessors.py --quick --out /tmp/a.md   # a few curves, one ordering
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from nni_pl.hpo import AssessResult  # noqa: E402
from nni_pl.hpo.assessors import ASHAAssessor, CurvefittingAssessor, MedianstopAssessor  # noqa: E402
from nni_pl.hpo.assessors import curvefitting as _curvefitting_module  # noqa: E402
from nni_pl.space import SearchSpace  # noqa: E402

log = logging.getLogger("assessors_bench")

DIGITS_DATA = ROOT / "benchmarks" / "data" / "digits_curves.json"
DIGITS_EXAMPLE = ROOT / "examples" / "hpo_digits"
TARGET_SAVED = 0.40
TARGET_RATIO = 0.99


# --- curve sets ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CurveSet:
    name: str
    curves: np.ndarray  # trials x epochs
    description: str


def build_digits_curves(n_configs: int, epochs: int, seed: int, path: Path) -> dict[str, Any]:
    """Train ``n_configs`` digits MLPs for ``epochs`` epochs each, in this process; write ``path``."""
    import warnings

    import lightning
    import lightning.pytorch as pl
    import sklearn
    import torch

    sys.path.insert(0, str(DIGITS_EXAMPLE))
    from model import DigitsDataModule, DigitsMLP

    warnings.filterwarnings("ignore", module="lightning")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(1)

    class _Record(pl.Callback):
        def __init__(self) -> None:
            self.values: list[float] = []

        def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if not trainer.sanity_checking:
                self.values.append(float(trainer.callback_metrics["val_acc"]))

    space_json = json.loads((DIGITS_EXAMPLE / "search_space.json").read_text())
    space = SearchSpace.parse(space_json)
    rng = np.random.default_rng(seed)
    runs = []
    started = time.time()
    for i in range(n_configs):
        params = space.sample(rng)
        train_seed = seed * 1000 + i
        pl.seed_everything(train_seed, verbose=False)
        record = _Record()
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[record],
        )
        model = DigitsMLP(
            learning_rate=params["learning_rate"],
            hidden_size=int(params["hidden_size"]),
            dropout=params["dropout"],
            optimizer=params["optimizer"],
        )
        data = DigitsDataModule(batch_size=int(params["batch_size"]), seed=0)
        t0 = time.time()
        trainer.fit(model, data)
        assert len(record.values) == epochs, record.values
        runs.append(
            {"params": params, "train_seed": train_seed, "val_acc": [round(v, 6) for v in record.values]}
        )
        log.info(
            "digits %d/%d: %s -> final val_acc %.4f (%.1f s)",
            i + 1,
            n_configs,
            params,
            record.values[-1],
            time.time() - t0,
        )
    payload = {
        "description": "val_acc after each epoch of DigitsMLP on DigitsDataModule (examples/hpo_digits)",
        "built_by": "python benchmarks/hpo/assessors.py --rebuild-digits "
        f"--digits-configs {n_configs} --epochs {epochs} --digits-seed {seed}",
        "search_space": space_json,
        "sampling_seed": seed,
        "data_split_seed": 0,
        "train_seed": "sampling_seed * 1000 + index (lightning seed_everything)",
        "epochs": epochs,
        "seconds": round(time.time() - started, 1),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
        },
        "machine": f"{platform.platform()}, {_cpus()} CPUs, torch threads 1",
        "runs": runs,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return payload


def load_digits(path: Path, limit: int | None = None) -> CurveSet:
    if not path.exists():
        raise SystemExit(f"{path} does not exist; build it with --rebuild-digits")
    payload = json.loads(path.read_text(encoding="utf-8"))
    curves = np.array([r["val_acc"] for r in payload["runs"]], dtype=float)
    if limit is not None:
        curves = curves[:limit]
    return CurveSet(
        "digits",
        curves,
        f"{len(curves)} DigitsMLP configurations x {curves.shape[1]} epochs, val_acc "
        f"({path.relative_to(ROOT)}; torch {payload['versions']['torch']}, "
        f"lightning {payload['versions']['lightning']})",
    )


SYNTHETIC_FAMILIES = (
    ("power law", 0.30),
    ("exponential", 0.30),
    ("late bloomer (sigmoid)", 0.12),
    ("overfitting", 0.10),
    ("slow linear", 0.10),
    ("diverged", 0.08),
)


def synthetic_curves(n: int, epochs: int, seed: int) -> CurveSet:
    """Accuracy-like learning curves in [0, 1] from six families, with noise (seeded)."""
    rng = np.random.default_rng(seed)
    x = np.arange(1, epochs + 1, dtype=float)
    names = [f for f, _ in SYNTHETIC_FAMILIES]
    probs = np.array([p for _, p in SYNTHETIC_FAMILIES])
    out = np.empty((n, epochs))
    for i in range(n):
        family = names[rng.choice(len(names), p=probs / probs.sum())]
        y0 = rng.uniform(0.1, 0.5)  # value after the first epoch
        top = y0 + (0.97 - y0) * rng.beta(2.0, 1.3)  # asymptote: mostly mediocre, a few near 0.97
        if family == "power law":
            y = top - (top - y0) * x ** -rng.uniform(0.3, 1.5)
        elif family == "exponential":
            y = top - (top - y0) * np.exp(-rng.uniform(0.05, 0.8) * (x - 1))
        elif family == "late bloomer (sigmoid)":
            mid, width = rng.uniform(3, 12), rng.uniform(0.8, 3)
            s = 1 / (1 + np.exp(-(x - mid) / width))
            y = y0 + (top - y0) * (s - s[0]) / (1 - s[0])
        elif family == "overfitting":
            peak = top - (top - y0) * np.exp(-rng.uniform(0.2, 0.8) * (x - 1))
            y = peak - rng.uniform(0.002, 0.015) * np.maximum(x - rng.uniform(4, 10), 0)
        elif family == "slow linear":
            y = y0 + (top - y0) * (x - 1) / (epochs - 1) * rng.uniform(0.5, 1.0)
        else:  # diverged: stuck near chance
            y = np.full(epochs, rng.uniform(0.08, 0.12))
        y = y + rng.normal(0, rng.uniform(0.002, 0.02), epochs)
        out[i] = np.clip(y, 0.0, 1.0)
    return CurveSet(
        "synthetic",
        out,
        f"{n} curves x {epochs} epochs from six families ("
        + ", ".join(f"{f} {p:.0%}" for f, p in SYNTHETIC_FAMILIES)
        + f"), Gaussian noise sd 0.002-0.02, seed {seed}",
    )


# --- assessors under test --------------------------------------------------------------------------------
class Judge:
    """One assessor in one replay: ``start`` a trial, ``report`` its history (-> stop?), ``end`` it."""

    def start(self, tid: int) -> None:
        pass

    def report(self, tid: int, history: np.ndarray) -> bool:
        return False

    def end(self, tid: int, success: bool, final: float) -> None:
        pass


class NniPlJudge(Judge):
    def __init__(self, assessor: Any) -> None:
        self.assessor = assessor

    def report(self, tid: int, history: np.ndarray) -> bool:
        return self.assessor.assess_trial(str(tid), history.tolist()) is AssessResult.Bad

    def end(self, tid: int, success: bool, final: float) -> None:
        self.assessor.trial_end(str(tid), success)


class OptunaJudge(Judge):
    def __init__(self, pruner: Any) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.study = optuna.create_study(
            direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0)
        )
        self.trials: dict[int, Any] = {}

    def start(self, tid: int) -> None:
        self.trials[tid] = self.study.ask()

    def report(self, tid: int, history: np.ndarray) -> bool:
        trial = self.trials[tid]
        trial.report(float(history[-1]), len(history))
        return bool(trial.should_prune())

    def end(self, tid: int, success: bool, final: float) -> None:
        trial = self.trials.pop(tid)
        if success:
            self.study.tell(trial, final)
        else:
            self.study.tell(trial, state=self._optuna.trial.TrialState.PRUNED)


class _PredictionCache:
    """Memoises Curvefitting's curve extrapolation per (trial, history); exact, since each judgement's
    MCMC is seeded by (assessor seed, trial id, step) and the fit is deterministic. The time a cached
    prediction took to compute is charged again on every hit, so timings stay those of uncached runs."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.memo: dict[tuple[Any, ...], tuple[Any, float]] = {}
        self.charged = 0.0  # seconds the predictions would have taken
        self.spent = 0.0  # seconds actually spent computing
        self.computed: list[float] = []  # per computed prediction

    def __call__(self, history: Sequence[float], target: int, rng: np.random.Generator, **kw: Any) -> Any:
        key = (tuple(history), target, tuple(rng.bit_generator.state["state"].values()))
        hit = self.memo.get(key)
        if hit is None:
            t0 = time.perf_counter()
            result = self.fn(history, target, rng, **kw)
            dt = time.perf_counter() - t0
            self.spent += dt
            self.computed.append(dt)
            hit = self.memo[key] = (result, dt)
        self.charged += hit[1]
        return hit[0]


PREDICTIONS = _PredictionCache(_curvefitting_module.predict_final)
_curvefitting_module.predict_final = PREDICTIONS


@dataclass(frozen=True)
class Contender:
    label: str
    make: Callable[[int], Judge]  # epochs -> a fresh judge
    family: str  # "Medianstop", "Curvefitting", "ASHA" (ours, swept), "optuna" or "none"
    settings: str = ""  # canonical "name=value, ..." (identifies a configuration across tables)
    note: str = ""  # e.g. "NNI default"

    @property
    def shown(self) -> str:
        return f"{self.settings} ({self.note})" if self.note else self.settings


def _nni(factory: Callable[[int], Any]) -> Callable[[int], Judge]:
    return lambda epochs: NniPlJudge(factory(epochs))


def _optuna(kind: str, **kw: Any) -> Callable[[int], Judge]:
    def make(epochs: int) -> Judge:
        import optuna

        cls = optuna.pruners.MedianPruner if kind == "median" else optuna.pruners.SuccessiveHalvingPruner
        return OptunaJudge(cls(**kw))

    return make


def medianstop(start_step: int, note: str = "") -> Contender:
    return Contender(
        "nni-pl Medianstop",
        _nni(lambda e: MedianstopAssessor(optimize_mode="maximize", start_step=start_step)),
        "Medianstop",
        f"start_step={start_step}",
        note,
    )


def curvefitting(start_step: int, threshold: float, note: str = "") -> Contender:
    return Contender(
        "nni-pl Curvefitting",
        _nni(lambda e: CurvefittingAssessor(epoch_num=e, start_step=start_step, threshold=threshold, seed=0)),
        "Curvefitting",
        f"start_step={start_step}, threshold={threshold}",
        note,
    )


def asha(min_resource: int, reduction_factor: int, rate: int, note: str = "") -> Contender:
    return Contender(
        "nni-pl ASHA",
        _nni(
            lambda e: ASHAAssessor(
                min_resource=min_resource,
                reduction_factor=reduction_factor,
                min_early_stopping_rate=rate,
                max_resource=e,
            )
        ),
        "ASHA",
        f"min_resource={min_resource}, reduction_factor={reduction_factor}, min_early_stopping_rate={rate}",
        note,
    )


def default_contenders() -> list[Contender]:
    return [
        Contender("no early stopping", lambda e: Judge(), "none"),
        medianstop(0, "NNI default"),
        medianstop(5, "NNI's example"),
        curvefitting(6, 0.95, "NNI default; epoch_num=20, gap=1"),
        asha(1, 3, 0, "default; max_resource=20"),
        Contender(
            "optuna MedianPruner",
            _optuna("median"),
            "optuna",
            "n_startup_trials=5, n_warmup_steps=0",
            "defaults",
        ),
        Contender("optuna MedianPruner", _optuna("median", n_warmup_steps=5), "optuna", "n_warmup_steps=5"),
        Contender(
            "optuna SuccessiveHalving",
            _optuna("sha"),
            "optuna",
            "min_resource='auto', reduction_factor=4, min_early_stopping_rate=0",
            "defaults",
        ),
        Contender(
            "optuna SuccessiveHalving",
            _optuna("sha", min_resource=1, reduction_factor=3),
            "optuna",
            "min_resource=1, reduction_factor=3, min_early_stopping_rate=0",
            "= nni-pl ASHA default",
        ),
    ]


def sweep_contenders(epochs: int) -> list[Contender]:
    """Settings of our assessors besides the defaults (those already in the main table are left out)."""
    out = [medianstop(s) for s in (2, 8, 10, 12)]
    out += [
        curvefitting(start, thr)
        for start in (4, 6, 8)
        for thr in (0.9, 0.95, 0.97, 0.99)
        if (start, thr) != (6, 0.95)
    ]
    out += [
        asha(rmin, rf, rate)
        for rmin in (1, 2, 3)
        for rf in (2, 3, 4)
        for rate in (0, 1)
        if (rmin, rf, rate) != (1, 3, 0) and rmin * rf**rate < epochs
    ]
    return out


# --- replay ----------------------------------------------------------------------------------------------
@dataclass
class Replay:
    epochs_used: int
    epochs_total: int
    best_final: float
    stopped: int
    calls: int
    seconds: float  # in assessor calls (Curvefitting: as if uncached)

    @property
    def saved(self) -> float:
        return 1.0 - self.epochs_used / self.epochs_total


def replay(
    curves: np.ndarray, judge: Judge, order: Sequence[int], pace: np.ndarray, concurrency: int
) -> Replay:
    """Run the trials of ``order`` through ``judge`` as an experiment with ``concurrency`` slots would.

    Trial ``i``'s epochs take ``pace[i]`` time units each. Events are processed in time order; a trial
    stopped (Bad) frees its slot at once. The verdict on a trial's last epoch is asked (and timed) but
    cannot stop it: its final result is reported with that epoch.
    """
    import heapq

    n_epochs = curves.shape[1]
    queue = list(order)[::-1]
    events: list[tuple[float, int, int, int]] = []  # (time, tie-break, trial, epoch)
    seq = 0
    used = stopped = calls = 0
    seconds = 0.0
    finals: list[float] = []

    def launch(now: float) -> None:
        nonlocal seq
        if queue:
            tid = queue.pop()
            judge.start(tid)
            heapq.heappush(events, (now + pace[tid], seq, tid, 1))
            seq += 1

    for _ in range(concurrency):
        launch(0.0)
    while events:
        now, _, tid, epoch = heapq.heappop(events)
        used += 1
        charged0, spent0 = PREDICTIONS.charged, PREDICTIONS.spent
        t0 = time.perf_counter()
        stop = judge.report(tid, curves[tid, :epoch])
        seconds += time.perf_counter() - t0 - (PREDICTIONS.spent - spent0) + (PREDICTIONS.charged - charged0)
        calls += 1
        if epoch == n_epochs:
            final = float(curves[tid, -1])
            finals.append(final)
            judge.end(tid, True, final)
            launch(now)
        elif stop:
            stopped += 1
            judge.end(tid, False, math.nan)
            launch(now)
        else:
            heapq.heappush(events, (now + pace[tid], seq, tid, epoch + 1))
            seq += 1
    return Replay(used, curves.size, max(finals) if finals else -math.inf, stopped, calls, seconds)


@dataclass
class Summary:
    contender: Contender
    curve_set: str
    runs: list[Replay] = field(default_factory=list)
    best_without: float = math.nan

    @property
    def saved(self) -> float:
        return float(np.mean([r.saved for r in self.runs]))

    @property
    def ratios(self) -> list[float]:
        return [r.best_final / self.best_without for r in self.runs]

    @property
    def ms_per_call(self) -> float:
        return 1000 * sum(r.seconds for r in self.runs) / max(1, sum(r.calls for r in self.runs))

    @property
    def meets(self) -> bool:
        return self.saved >= TARGET_SAVED and min(self.ratios) >= TARGET_RATIO


def run_set(
    curve_set: CurveSet, contenders: Sequence[Contender], seeds: int, concurrency: int
) -> list[Summary]:
    curves = curve_set.curves
    n, epochs = curves.shape
    best_without = float(curves[:, -1].max())
    out = []
    for c in contenders:
        s = Summary(c, curve_set.name, best_without=best_without)
        t0 = time.time()
        for seed in range(seeds):
            rng = np.random.default_rng([seed, zlib.crc32(curve_set.name.encode())])
            order = rng.permutation(n)
            pace = rng.uniform(0.7, 1.3, n)  # per-trial epoch duration: reports interleave
            s.runs.append(replay(curves, c.make(epochs), order, pace, concurrency))
        log.info(
            "%s | %s [%s]: saved %.1f%%, best ratio min %.4f, %.3f ms/call (%.1f s)",
            curve_set.name,
            c.label,
            c.shown,
            100 * s.saved,
            min(s.ratios),
            s.ms_per_call,
            time.time() - t0,
        )
        out.append(s)
    return out


# --- report ---------------------------------------------------------------------------------------------
def _row(s: Summary) -> str:
    ratios = s.ratios
    stopped = np.mean([r.stopped for r in s.runs])
    ok = "yes" if s.meets else "no"
    if s.contender.family == "none":
        ok = "-"
    return (
        f"| {s.contender.label} | {s.contender.shown} | {100 * s.saved:.2f} | {np.mean(ratios):.4f} | "
        f"{min(ratios):.4f} | {stopped:.1f} | {s.ms_per_call:.3f} | {ok} |"
    )


HEADER = (
    "| assessor | settings | epochs saved % | best ratio (mean) | best ratio (worst) | trials stopped | "
    "ms per call | target met |\n|---|---|---|---|---|---|---|---|"
)


def write_report(
    path: Path,
    sets: Sequence[CurveSet],
    main: dict[str, list[Summary]],
    sweep: dict[str, list[Summary]],
    args: argparse.Namespace,
    seconds: float,
) -> str:
    import optuna
    import scipy

    lines = [
        "# Assessor benchmark: epochs saved vs best result kept",
        "",
        f"Generated by `{' '.join(['python benchmarks/hpo/assessors.py', *sys.argv[1:]])}` in {seconds:.0f} s "
        "(under `nice -n 10` on a shared machine).",
        "",
        "## Method",
        "",
        "Learning curves are replayed through each early-stopping rule as in an experiment: the curves of a set "
        f"arrive in a random order (one order per seed, {args.seeds} seeds), {args.concurrency} trials run at once, "
        "each epoch of a trial lasts a trial-specific time drawn from U(0.7, 1.3) (so reports of concurrent "
        "trials interleave and a rule only sees what has happened so far), a trial stops when the rule says "
        "Bad (Optuna: `should_prune()`), and the freed slot starts the next trial. A trial's final value is its "
        "last epoch's value; the verdict on the last epoch is asked but cannot stop the trial. Early-stopped "
        "trials have no final value (as in NNI).",
        "",
        "* **epochs saved %**: 1 - (epochs run) / (trials x epochs), mean over seeds.",
        "* **best ratio**: the best final value among the trials that ran to the end, divided by the best "
        "final value without early stopping (the best of all curves); mean and worst over seeds. "
        "1 - ratio is the relative regret.",
        "* **ms per call**: assessor time per reported epoch (every call, judging or not), mean over all "
        "calls. Curvefitting's predictions are memoised across seeds and sweep settings (exact: each "
        "judgement's MCMC is seeded by seed, trial and step); a hit is charged the time its computation "
        "took, so the column shows uncached cost.",
        f"* **target**: at least {TARGET_SAVED:.0%} of epochs saved while the best result stays within 1% "
        f"of the run without early stopping in every seed (worst ratio >= {TARGET_RATIO}).",
        "",
        "Optuna's pruners are driven through `study.ask()`, `trial.report(value, epoch)`, "
        "`trial.should_prune()` and `study.tell(...)` (PRUNED for stopped trials), one study per replay.",
        "",
        "The settings sweeps are run on the same curves they are judged on, so the best swept setting is an "
        "optimistic (in-sample) choice; a setting that meets the target on both curve sets is the safer pick.",
        "",
    ]
    for cs in sets:
        lines += [f"## Curve set `{cs.name}`", "", cs.description + ".", ""]
        finals = cs.curves[:, -1]
        lines += [
            f"Final values: best {finals.max():.4f}, median {np.median(finals):.4f}; "
            f"{int(np.sum(finals >= TARGET_RATIO * finals.max()))} of {len(finals)} curves end within 1% of the best. "
            f"The best curve ends at {finals.max():.4f} after {cs.curves[np.argmax(finals), -2]:.4f} at the epoch "
            f"before; the runner-up ends at {np.sort(finals)[-2]:.4f} (ratio {np.sort(finals)[-2] / finals.max():.4f}).",
            "",
            HEADER,
        ]
        lines += [_row(s) for s in main[cs.name]]
        lines.append("")
        if sweep.get(cs.name):
            lines += [f"### Settings sweep on `{cs.name}` (nni-pl assessors)", "", HEADER]
            lines += [_row(s) for s in sweep[cs.name]]
            lines.append("")
    lines += _target_check(sets, main, sweep)
    if PREDICTIONS.computed:
        comp = np.array(PREDICTIONS.computed) * 1000
        lines += [
            "",
            f"Curvefitting: one judgement that fits curves takes {np.mean(comp):.1f} ms on average "
            f"(median {np.median(comp):.1f}, 95th percentile {np.percentile(comp, 95):.1f}, max {comp.max():.1f}; "
            f"{len(comp)} computed), with NNI's MCMC size (20 rounds x 10 chains).",
        ]
    lines += [
        "",
        f"Machine: {platform.platform()}, {_cpus()} CPUs (shared), Python {platform.python_version()}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, optuna {optuna.__version__}.",
    ]
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text


def _target_check(
    sets: Sequence[CurveSet], main: dict[str, list[Summary]], sweep: dict[str, list[Summary]]
) -> list[str]:
    lines = [
        "## Target check",
        "",
        f"Target: >= {TARGET_SAVED:.0%} of epochs saved and the best result within 1% of no early stopping "
        "in every ordering.",
        "",
        "| assessor | curve set | default settings | saved % | worst ratio | met | best swept setting that meets it "
        "| saved % | worst ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    families = ("Medianstop", "Curvefitting", "ASHA")
    for fam in families:
        for cs in sets:
            rows = [s for s in main[cs.name] + sweep.get(cs.name, []) if s.contender.family == fam]
            if not rows:
                continue
            d = rows[0]
            ok = [s for s in rows if s.meets]
            best = max(ok, key=lambda s: s.saved) if ok else None
            tail = (
                f"{best.contender.settings} | {100 * best.saved:.2f} | {min(best.ratios):.4f}"
                if best is not None
                else ("none | | " if sweep.get(cs.name) else "(no sweep) | | ")
            )
            lines.append(
                f"| {fam} | {cs.name} | {d.contender.shown} | {100 * d.saved:.2f} | {min(d.ratios):.4f} | "
                f"{'yes' if d.meets else '**no**'} | {tail} |"
            )
    if len(sets) > 1 and sweep:
        lines += [
            "",
            "Settings that meet the target on every curve set (up to three per assessor, most epochs saved first):",
            "",
        ]
        for fam in families:
            by_setting: dict[str, list[Summary]] = {}
            for cs in sets:
                for s in main[cs.name] + sweep.get(cs.name, []):
                    if s.contender.family == fam:
                        by_setting.setdefault(s.contender.settings, []).append(s)
            good = [v for v in by_setting.values() if len(v) == len(sets) and all(s.meets for s in v)]
            good.sort(key=lambda v: -min(s.saved for s in v))
            shown = [
                f"`{v[0].contender.settings}` ("
                + ", ".join(f"{s.curve_set} {100 * s.saved:.1f}%" for s in v)
                + ")"
                for v in good[:3]
            ]
            lines.append(f"* {fam}: " + ("; ".join(shown) if shown else "none of the swept settings"))
    parity = []
    for cs in sets:
        ours = next((s for s in main[cs.name] if s.contender.label == "nni-pl ASHA"), None)
        theirs = next((s for s in main[cs.name] if s.contender.note == "= nni-pl ASHA default"), None)
        if ours is not None and theirs is not None:
            same = [(r.epochs_used, r.best_final) for r in ours.runs] == [
                (r.epochs_used, r.best_final) for r in theirs.runs
            ]
            parity.append(f"{cs.name}: {'identical' if same else 'different'}")
    if parity:
        lines += [
            "",
            "nni-pl ASHA vs Optuna's SuccessiveHalvingPruner with the same settings (epochs run and best result "
            "in every ordering): " + "; ".join(parity) + ".",
        ]
    return lines


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sets", nargs="+", choices=["digits", "synthetic"], default=["digits", "synthetic"])
    p.add_argument("--rebuild-digits", action="store_true", help="retrain the digits curves (minutes)")
    p.add_argument("--digits-configs", type=int, default=100)
    p.add_argument("--digits-seed", type=int, default=0)
    p.add_argument("--digits-data", type=Path, default=DIGITS_DATA)
    p.add_argument("--epochs", type=int, default=20, help="epochs per curve (synthetic; digits when rebuilt)")
    p.add_argument("--synthetic-curves", type=int, default=300)
    p.add_argument("--synthetic-seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=10, help="orderings per curve set")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--no-sweep", action="store_true", help="only the default settings")
    p.add_argument("--limit", type=int, default=None, help="use only the first N curves of each set")
    p.add_argument("--quick", action="store_true", help="smoke run: 12 curves per set, 1 seed, no sweep")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "assessors.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.quick:
        args.seeds, args.no_sweep, args.limit = 1, True, args.limit or 12
    started = time.time()

    if args.rebuild_digits:
        build_digits_curves(args.digits_configs, args.epochs, args.digits_seed, args.digits_data)
    sets = []
    for name in args.sets:
        if name == "digits":
            sets.append(load_digits(args.digits_data, args.limit))
        else:
            cs = synthetic_curves(args.limit or args.synthetic_curves, args.epochs, args.synthetic_seed)
            sets.append(cs)
    main_rows = {cs.name: run_set(cs, default_contenders(), args.seeds, args.concurrency) for cs in sets}
    sweep_rows = {}
    if not args.no_sweep:
        sweep_rows = {
            cs.name: run_set(cs, sweep_contenders(cs.curves.shape[1]), args.seeds, args.concurrency)
            for cs in sets
        }
    text = write_report(args.out, sets, main_rows, sweep_rows, args, time.time() - started)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
