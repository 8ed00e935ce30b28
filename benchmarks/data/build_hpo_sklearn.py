"""Build the real evaluations behind the scikit-learn surrogate problems of ``benchmarks/hpo/run.py``.

For each (model, dataset) pair -- NNI's random-forest and MLP search spaces (NNI v2.5 docs, "HPO
Benchmark") on scikit-learn's bundled digits, wine and breast_cancer -- configurations are sampled from
the search space and scored by 3-fold stratified cross-validated accuracy, the metric NNI's benchmark
architectures report (``cross_val_score`` of the classifier). Each pair gets a CPU-time budget; the
configurations are sampled in a fixed order, so the file is reproducible and a stopped build resumes.

Each configuration is trained once along its most expensive axis and scored at checkpoints on the way,
which are themselves configurations of the space:

* random forest: trees are added with ``warm_start`` and the fold accuracy is recorded at 4, 8, 16, ...,
  1024 trees and at the sampled ``n_estimators`` (a forest's first k trees are a k-tree forest);
* MLP: training runs one epoch per ``partial_fit`` with the same stopping rule as ``fit`` (stop once
  the training loss has not improved by ``tol`` for ``n_iter_no_change`` epochs), and the accuracy is
  recorded at ``max_iter`` = 2, 4, ..., 128 and the sampled ``max_iter``.

NNI's conventions: ``max_depth`` 0 and ``max_leaf_nodes`` 0 mean "no limit"; ``max_leaf_nodes`` 1, which
scikit-learn rejects, is run as 2. ``momentum`` only affects the SGD solver, so with NNI's default Adam
solver it has no effect (as in NNI's benchmark). MLP inputs are standardised on the training fold.

Budgets and the cap count the process's CPU time (not wall time), so the file does not depend on the
load of the machine. A configuration that runs past ``--eval-cap`` CPU seconds is cut: the checkpoints every fold reached are
kept and the line says ``"complete": false``.

Usage (about 46 min of CPU, 23 min on two free cores)::

    nice -n 10 .venv/bin/python benchmarks/data/build_hpo_sklearn.py
"""

from __future__ import annotations

# ruff: noqa: E402  (the thread limits must be set before numpy is imported)
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core per process: the pool runs two of them

import argparse
import json
import logging
import multiprocessing as mp
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hpo"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from problems import MLP_SPACE, RF_SPACE

from nni_pl.space import SearchSpace

log = logging.getLogger("build_hpo_sklearn")

OUT_DIR = Path(__file__).resolve().parent / "hpo_sklearn"
FOLDS = 3
RF_CHECKPOINTS = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
MLP_CHECKPOINTS = (2, 4, 8, 16, 32, 64, 128)
# CPU seconds per pair (digits is the large data set); the two workers take three pairs each.
BUDGETS = {
    ("rf", "digits"): 660,
    ("mlp", "digits"): 780,
    ("rf", "wine"): 300,
    ("rf", "breast_cancer"): 360,
    ("mlp", "wine"): 300,
    ("mlp", "breast_cancer"): 360,
}
GROUPS = [
    [("mlp", "digits"), ("rf", "wine"), ("mlp", "breast_cancer")],
    [("rf", "digits"), ("mlp", "wine"), ("rf", "breast_cancer")],
]


def load_data(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    loader = {
        "digits": datasets.load_digits,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
    }[dataset]
    x, y = loader(return_X_y=True)
    return np.asarray(x, dtype=np.float64), np.asarray(y)


def folds(y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(np.zeros(len(y)), y))


def rf_fold(
    params: dict[str, Any], x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, deadline: float
) -> dict[int, float]:
    """Accuracy on one fold at each checkpoint up to ``n_estimators`` (fewer if the deadline passes)."""
    from sklearn.ensemble import RandomForestClassifier

    n = int(params["n_estimators"])
    leaves = int(params["max_leaf_nodes"])
    clf = RandomForestClassifier(
        n_estimators=1,
        max_depth=None if params["max_depth"] == 0 else int(params["max_depth"]),
        min_samples_leaf=int(params["min_samples_leaf"]),
        min_samples_split=int(params["min_samples_split"]),
        max_leaf_nodes=None if leaves == 0 else max(2, leaves),
        warm_start=True,
        random_state=0,
        n_jobs=1,
    )
    out: dict[int, float] = {}
    proba = None
    done = 0
    for c in [k for k in RF_CHECKPOINTS if k < n] + [n]:
        clf.set_params(n_estimators=c)
        clf.fit(x[train], y[train])
        for tree in clf.estimators_[done:c]:
            p = tree.predict_proba(x[test])
            proba = p if proba is None else proba + p
        done = c
        out[c] = float(np.mean(clf.classes_[np.argmax(proba, axis=1)] == y[test]))
        if time.process_time() > deadline:
            break
    return out


def mlp_fold(
    params: dict[str, Any], x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, deadline: float
) -> dict[int, float]:
    """Accuracy on one fold after 2, 4, ..., ``max_iter`` epochs, stopping as ``fit`` would."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    m = int(params["max_iter"])
    scaler = StandardScaler().fit(x[train])
    xtr, xte = scaler.transform(x[train]), scaler.transform(x[test])
    clf = MLPClassifier(
        hidden_layer_sizes=tuple(params["hidden_layer_sizes"]),
        learning_rate_init=float(params["learning_rate_init"]),
        alpha=float(params["alpha"]),
        momentum=float(params["momentum"]),
        beta_1=float(params["beta_1"]),
        tol=float(params["tol"]),
        max_iter=m,
        random_state=0,
    )
    checkpoints = [k for k in MLP_CHECKPOINTS if k < m] + [m]
    classes = np.unique(y)
    out: dict[int, float] = {}

    def score() -> float:
        with np.errstate(all="ignore"):
            pred = clf.predict(xte)
        return float(np.mean(pred == y[test]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        for epoch in range(1, m + 1):
            with np.errstate(all="ignore"):
                clf.partial_fit(xtr, y[train], classes=classes)
            stopped = clf._no_improvement_count > clf.n_iter_no_change
            if stopped:  # fit() would stop here: every later checkpoint has this model
                acc = score()
                for c in checkpoints:
                    if c >= epoch:
                        out[c] = acc
                break
            if epoch in checkpoints:
                out[epoch] = score()
            if time.process_time() > deadline:
                break
    return out


def evaluate(
    model: str, params: dict[str, Any], data: tuple[np.ndarray, np.ndarray], cap: float
) -> dict[str, Any]:
    x, y = data
    t0 = time.process_time()
    per_fold = []
    for k, (train, test) in enumerate(folds(y)):
        deadline = t0 + cap * (k + 1) / FOLDS
        fn = rf_fold if model == "rf" else mlp_fold
        per_fold.append(fn(params, x, y, train, test, deadline))
    common = sorted(set.intersection(*(set(f) for f in per_fold)))
    full = int(params["n_estimators"] if model == "rf" else params["max_iter"])
    return {
        "scores": {str(c): float(np.mean([f[c] for f in per_fold])) for c in common},
        "complete": full in common,
        "cpu_seconds": round(time.process_time() - t0, 3),
    }


def config(model: str, dataset: str, index: int) -> dict[str, Any]:
    """The ``index``-th sampled configuration of a pair (a fixed sequence per pair)."""
    space = SearchSpace.parse(RF_SPACE if model == "rf" else MLP_SPACE)
    pair = ["rf", "mlp"].index(model) * 10 + ["digits", "wine", "breast_cancer"].index(dataset)
    return space.sample(np.random.default_rng([2024, pair, index]))


def build_pair(model: str, dataset: str, budget: float, cap: float, max_configs: int) -> None:
    path = OUT_DIR / f"{model}_{dataset}.jsonl"
    done, spent = 0, 0.0
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            done, spent = rec["index"] + 1, spent + rec["cpu_seconds"]
    data = load_data(dataset)
    with path.open("a", encoding="utf-8") as f:
        while spent < budget and done < max_configs:
            params = config(model, dataset, done)
            rec = {"index": done, "params": params, **evaluate(model, params, data, cap)}
            f.write(json.dumps(rec) + "\n")
            f.flush()
            spent += rec["cpu_seconds"]
            done += 1
            log.info(
                "%s/%s #%d %.1fs (total %.0fs) %s",
                model,
                dataset,
                done,
                rec["cpu_seconds"],
                spent,
                rec["scores"],
            )


def _group(args: tuple[list[tuple[str, str]], float, float, int]) -> None:
    pairs, scale, cap, max_configs = args
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for model, dataset in pairs:
        build_pair(model, dataset, BUDGETS[(model, dataset)] * scale, cap, max_configs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every pair's CPU budget")
    parser.add_argument(
        "--eval-cap", type=float, default=60.0, help="CPU seconds per configuration (3 folds)"
    )
    parser.add_argument("--max-configs", type=int, default=600)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    jobs = [(g, args.scale, args.eval_cap, args.max_configs) for g in GROUPS]
    t0 = time.time()
    if args.workers > 1:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            pool.map(_group, jobs, chunksize=1)
    else:
        for j in jobs:
            _group(j)
    logging.basicConfig(level=logging.INFO)
    log.info("built in %.0f s", time.time() - t0)


if __name__ == "__main__":
    main()
