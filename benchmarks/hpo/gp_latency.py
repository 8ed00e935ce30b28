"""Suggestion latency of the GP tuners: nni-pl ``GPTuner`` and ``Auto`` against Optuna's ``GPSampler``.

Every tuner gets the same ``n`` observations of Hartmann-6 (random points, seed 0), makes one untimed
suggestion (which imports, warm-starts and fits from scratch), then ``--repeats`` timed suggestions,
each told its result before the next: the suggestions are made with ``n`` to ``n + repeats - 1``
observations, and the table reports their median CPU time (``time.process_time``) on one thread
(``OMP_NUM_THREADS=1`` and friends are set before numpy is imported). TPE (nni-pl and Optuna) is timed
the same way at 1,000 observations. Default settings everywhere; Optuna through ``ask``/``tell``. glibc's
heap top pad is set to 16 MiB before anything runs (nni-pl's TPE does so itself), so every tuner runs with the
same allocator settings.

``Auto`` models with GP until it has ``switch_after=100`` results, so from 100 observations on its
row times TPE (the table says which model answered).

Usage::

    python benchmarks/hpo/gp_latency.py                    # 25/50/100/200 observations, 7 repeats
    python benchmarks/hpo/gp_latency.py --obs 100 --repeats 5 --no-tpe --out /tmp/gp.md
"""

from __future__ import annotations

import os

# one thread for every BLAS/OpenMP pool, before numpy (and torch, for Optuna) is imported
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ["NUMEXPR_NUM_THREADS"] = "1"

import argparse
import logging
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tpe_quick import PROBLEMS

from nni_pl.hpo.tuners import AutoTuner, GPTuner, TPETuner
from nni_pl.space import SearchSpace

log = logging.getLogger("gp_latency")

PROBLEM = PROBLEMS["hartmann6"]
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "gp_latency.md"


def history(n: int) -> list[dict[str, Any]]:
    """``n`` random observations of Hartmann-6 (the same for every tuner)."""
    space = SearchSpace.parse(PROBLEM.space)
    rng = np.random.default_rng(0)
    return [{"parameter": p, "value": PROBLEM.fn(p)} for p in (space.sample(rng) for _ in range(n))]


class _NniPl:
    """An nni-pl tuner driven by ``generate_parameters`` / ``receive_trial_result``."""

    def __init__(self, tuner: Any, data: list[dict[str, Any]]) -> None:
        self.tuner = tuner
        tuner.update_search_space(PROBLEM.space)
        tuner.import_data(data)
        self._id = 0

    def suggest(self) -> tuple[float, str]:
        self._id += 1
        t0 = time.process_time()
        params = self.tuner.generate_parameters(self._id)
        seconds = time.process_time() - t0
        model = getattr(self.tuner, "model", None) or ""  # Auto: the model that just answered
        self.tuner.receive_trial_result(self._id, params, PROBLEM.fn(params))
        return seconds, model


class _Optuna:
    """An Optuna sampler driven by ``ask`` / ``tell`` on a study holding the observations."""

    def __init__(self, sampler: str, data: list[dict[str, Any]]) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        warnings.filterwarnings("ignore", module="optuna")
        s = optuna.samplers.GPSampler(seed=0) if sampler == "GP" else optuna.samplers.TPESampler(seed=0)
        self.study = optuna.create_study(sampler=s, direction="minimize")
        self.dist = {k: optuna.distributions.FloatDistribution(0.0, 1.0) for k in PROBLEM.space}
        self.study.add_trials(
            [
                optuna.trial.create_trial(params=d["parameter"], distributions=self.dist, value=d["value"])
                for d in data
            ]
        )

    def suggest(self) -> tuple[float, str]:
        t0 = time.process_time()
        trial = self.study.ask(self.dist)
        params = dict(trial.params)
        seconds = time.process_time() - t0
        self.study.tell(trial, PROBLEM.fn(params))
        return seconds, ""


RUNNERS: dict[str, Callable[[list[dict[str, Any]]], Any]] = {
    "nni-pl GPTuner": lambda data: _NniPl(GPTuner(optimize_mode="minimize", seed=0), data),
    "nni-pl Auto": lambda data: _NniPl(AutoTuner(optimize_mode="minimize", seed=0), data),
    "optuna GP": lambda data: _Optuna("GP", data),
}
TPE_RUNNERS: dict[str, Callable[[list[dict[str, Any]]], Any]] = {
    "nni-pl TPE": lambda data: _NniPl(TPETuner(optimize_mode="minimize", seed=0), data),
    "optuna TPE": lambda data: _Optuna("TPE", data),
}


def measure(make: Callable[[list[dict[str, Any]]], Any], n: int, repeats: int) -> tuple[float, str]:
    """Median CPU milliseconds of ``repeats`` suggestions made with ``n`` .. ``n + repeats - 1`` results."""
    runner = make(history(n - 1))
    runner.suggest()  # untimed: a fit from scratch and one-off imports
    times, models = [], set()
    for _ in range(repeats):
        seconds, model = runner.suggest()
        times.append(seconds * 1000.0)
        models.add(model)
    return statistics.median(times), "/".join(sorted(m for m in models if m))


def same_allocator_settings() -> None:
    """Every tuner timed with glibc's heap top pad at 16 MiB.

    nni-pl's Parzen models set ``M_TOP_PAD`` (process-wide) when the first one is built, so that a
    suggestion's temporary arrays do not fault fresh pages; set here before anything runs, Optuna's samplers
    get the same allocator, whatever the order of the rows.
    """
    import ctypes

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        ctypes.CDLL(None).mallopt(-2, 16 << 20)  # M_TOP_PAD


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--obs", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tpe-obs", type=int, default=1000)
    parser.add_argument("--no-tpe", action="store_true")
    parser.add_argument("--tuners", nargs="+", default=list(RUNNERS), choices=list(RUNNERS))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    same_allocator_settings()
    try:
        import torch  # Optuna's GP runs on torch: one thread like the rest

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - Optuna's GPSampler needs torch anyway
        pass
    tuners = list(dict.fromkeys([*args.tuners, "optuna GP"]))

    ms: dict[tuple[str, int], float] = {}
    model: dict[tuple[str, int], str] = {}
    for n in args.obs:
        for name in tuners:
            ms[(name, n)], model[(name, n)] = measure(RUNNERS[name], n, args.repeats)
            log.info("%s at %d: %.1f ms %s", name, n, ms[(name, n)], model[(name, n)])

    lines = [
        "# GP suggestion latency",
        "",
        f"Median CPU time of one suggestion on Hartmann-6 (6 continuous dimensions), {args.repeats} suggestions"
        " after an untimed one, one thread, default settings; ratio to Optuna's GPSampler in the same run"
        " (lower is faster), CPU ms in brackets.",
        "",
        "| tuner | " + " | ".join(f"{n} obs" for n in args.obs) + " |",
        "|---|" + "---|" * len(args.obs),
    ]
    for name in tuners:
        cells = []
        for n in args.obs:
            ratio = ms[(name, n)] / ms[("optuna GP", n)]
            note = f", {model[(name, n)]}" if name == "nni-pl Auto" else ""
            cells.append(f"{ratio:.2f} ({ms[(name, n)]:.1f} ms{note})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    out: dict[str, Any] = {"ms": ms}

    targets = []
    if 100 in args.obs:
        gp, opt = ms[("nni-pl GPTuner", 100)] if "nni-pl GPTuner" in tuners else None, ms[("optuna GP", 100)]
        if gp is not None:
            verdict = "PASS" if gp <= opt else "FAIL"
            targets.append(
                f"- **{verdict}** nni-pl GPTuner median suggestion latency at 100 observations <= Optuna"
                f" GPSampler's: {gp:.1f} ms vs {opt:.1f} ms."
            )
    if not args.no_tpe:
        tpe = {name: measure(make, args.tpe_obs, args.repeats)[0] for name, make in TPE_RUNNERS.items()}
        out["tpe"] = tpe
        lines += [
            "",
            f"TPE with {args.tpe_obs:,} observations (same protocol), ratio to Optuna's TPESampler:",
            "",
            "| tuner | ratio | CPU ms |",
            "|---|---|---|",
        ]
        for name, value in tpe.items():
            lines.append(f"| {name} | {value / tpe['optuna TPE']:.3f} | {value:.2f} |")
        verdict = "PASS" if tpe["nni-pl TPE"] < 1.0 else "FAIL"
        targets.append(
            f"- **{verdict}** nni-pl TPE under 1 ms per suggestion at {args.tpe_obs:,} observations:"
            f" {tpe['nni-pl TPE']:.2f} ms."
        )
    if targets:
        lines += ["", "## Targets", "", *targets]

    import optuna

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines += [
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs (load average {load:.1f} at the end),"
        f" Python {platform.python_version()}, numpy {np.__version__}, optuna {optuna.__version__}.",
        "Command: `.venv/bin/python benchmarks/hpo/gp_latency.py "
        + " ".join(argv if argv is not None else sys.argv[1:])
        + "`",
    ]
    text = "\n".join(lines).replace("gp_latency.py `", "gp_latency.py`") + "\n"
    sys.stdout.write(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
