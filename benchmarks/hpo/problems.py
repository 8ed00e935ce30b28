"""Problems of the side-by-side HPO benchmark (``benchmarks/hpo/run.py``), all minimised.

Synthetic functions with known optima (Branin, Hartmann-6, Rosenbrock-5, Ackley-10, a chain of 8
categorical choices and a space with nested ``_name`` choices) and surrogates of real model tuning:
NNI's random-forest and MLP search spaces (NNI v2.5 docs, "HPO Benchmark") on scikit-learn's digits,
wine and breast_cancer, where the objective is the 3-fold cross-validated error rate (1 - accuracy).

A surrogate is an extra-trees regressor (100 trees) fitted on the real evaluations cached in
``benchmarks/data/hpo_sklearn/*.jsonl`` (built by ``benchmarks/data/build_hpo_sklearn.py``), over an
encoding of the parameters (logs of the sizes, "no limit" as a large value, MLP layer lists as depth and
widths). Its trees are packed into arrays so that one prediction takes tens of microseconds.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
sys.path.insert(0, str(_HERE.parents[1]))

import tpe_quick  # noqa: E402  (problem code shared with the quick TPE check)

from nni_pl.space import SearchSpace  # noqa: E402

DATA_DIR = _HERE.parent / "data" / "hpo_sklearn"

# --- NNI's HPO-benchmark search spaces (NNI v2.5 docs, "Search Space for Random Forest / MLP") -----------
RF_SPACE: dict[str, Any] = {
    "n_estimators": {"_type": "randint", "_value": [4, 2048]},
    "max_depth": {"_type": "choice", "_value": [4, 8, 16, 32, 64, 128, 256, 0]},
    "min_samples_leaf": {"_type": "randint", "_value": [1, 8]},
    "min_samples_split": {"_type": "randint", "_value": [2, 16]},
    "max_leaf_nodes": {"_type": "randint", "_value": [0, 4096]},
}
# fmt: off
_HIDDEN_LAYER_SIZES = [
    [16], [64], [128], [256], [16, 16], [64, 64], [128, 128], [256, 256], [16, 16, 16],
    [64, 64, 64], [128, 128, 128], [256, 256, 256], [256, 128, 64, 16], [128, 64, 16],
    [64, 16], [16, 64, 128, 256], [16, 64, 128], [16, 64],
]
# fmt: on
MLP_SPACE: dict[str, Any] = {
    "hidden_layer_sizes": {"_type": "choice", "_value": _HIDDEN_LAYER_SIZES},
    "learning_rate_init": {
        "_type": "choice",
        "_value": [0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001, 0.00005, 0.00001],
    },
    "alpha": {"_type": "choice", "_value": [0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001]},
    "momentum": {"_type": "uniform", "_value": [0, 1]},
    "beta_1": {"_type": "uniform", "_value": [0, 1]},
    "tol": {"_type": "choice", "_value": [0.001, 0.0005, 0.0001, 0.00005, 0.00001]},
    "max_iter": {"_type": "randint", "_value": [2, 256]},
}
MODELS = ("rf", "mlp")
DATASETS = ("digits", "wine", "breast_cancer")


@dataclass(frozen=True)
class Problem:
    """A minimisation problem in NNI's search-space format.

    Attributes:
        name: short id used on the command line and in the results.
        kind: ``"synthetic"`` or ``"surrogate"`` (the two problem classes of the report).
        space: the NNI search space.
        fn: the objective of one parameter set.
        optimum: the known minimum, or ``None`` for a surrogate (estimated from a large random sample).
        batch: the objective of many parameter sets at once (surrogates), for that estimate.
        info: facts for the report (surrogate quality, evaluation counts).
    """

    name: str
    kind: str
    space: dict[str, Any]
    fn: Callable[[dict[str, Any]], float]
    optimum: float | None
    batch: Callable[[list[dict[str, Any]]], np.ndarray] | None = None
    info: dict[str, Any] = field(default_factory=dict)


# --- synthetic -----------------------------------------------------------------------------------------
def _ackley(p: dict[str, Any], d: int = 10) -> float:
    x = np.array([p[f"x{i}"] for i in range(d)])
    return float(
        -20 * math.exp(-0.2 * math.sqrt(np.sum(x**2) / d))
        - math.exp(np.sum(np.cos(2 * math.pi * x)) / d)
        + 20
        + math.e
    )


def _synthetic() -> dict[str, Problem]:
    q = tpe_quick.PROBLEMS
    out = {
        name: Problem(name, "synthetic", q[name].space, q[name].fn, q[name].optimum)
        for name in ("branin", "hartmann6", "rosenbrock5")
    }
    out["ackley10"] = Problem(
        "ackley10",
        "synthetic",
        {f"x{i}": {"_type": "uniform", "_value": [-32.768, 32.768]} for i in range(10)},
        _ackley,
        0.0,
    )
    for name in ("categorical", "conditional"):
        out[name] = Problem(name, "synthetic", q[name].space, q[name].fn, q[name].optimum)
    return out


# --- surrogates ----------------------------------------------------------------------------------------
_UNLIMITED_DEPTH = 10.0  # log2 of a depth no tree here reaches (max_depth 0 = no limit)
_UNLIMITED_LEAVES = 13.0  # log2 of 8192 > 4095 (max_leaf_nodes 0 = no limit)


def encode(model: str, p: dict[str, Any]) -> list[float]:
    """Numeric features of a parameter set for the surrogate regressor."""
    if model == "rf":
        depth, leaves = p["max_depth"], p["max_leaf_nodes"]
        return [
            math.log2(p["n_estimators"]),
            _UNLIMITED_DEPTH if depth == 0 else math.log2(depth),
            float(p["min_samples_leaf"]),
            float(p["min_samples_split"]),
            _UNLIMITED_LEAVES if leaves == 0 else math.log2(max(2, leaves)),
        ]
    h = list(p["hidden_layer_sizes"])
    return [
        float(len(h)),
        math.log2(h[0]),
        math.log2(h[-1]),
        math.log2(max(h)),
        math.log2(sum(h)),
        math.log10(p["learning_rate_init"]),
        math.log10(p["alpha"]),
        float(p["momentum"]),
        float(p["beta_1"]),
        math.log10(p["tol"]),
        math.log2(p["max_iter"]),
    ]


def load_evaluations(model: str, dataset: str) -> list[tuple[dict[str, Any], float, int]]:
    """Real evaluations as ``(params, error rate, configuration index)``, one per checkpoint."""
    path = DATA_DIR / f"{model}_{dataset}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run benchmarks/data/build_hpo_sklearn.py first")
    axis = "n_estimators" if model == "rf" else "max_iter"
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        for c, acc in rec["scores"].items():
            rows.append(({**rec["params"], axis: int(c)}, 1.0 - float(acc), int(rec["index"])))
    return rows


class PackedForest:
    """A fitted scikit-learn tree ensemble as padded arrays: fast one-row and batch predictions."""

    def __init__(self, forest: Any) -> None:
        trees = [est.tree_ for est in forest.estimators_]
        n = max(t.node_count for t in trees)
        self.left = np.full((len(trees), n), -1, dtype=np.int64)
        self.right = np.full((len(trees), n), -1, dtype=np.int64)
        self.feature = np.zeros((len(trees), n), dtype=np.int64)
        self.threshold = np.zeros((len(trees), n))
        self.value = np.zeros((len(trees), n))
        for i, t in enumerate(trees):
            k = t.node_count
            self.left[i, :k], self.right[i, :k] = t.children_left, t.children_right
            self.feature[i, :k] = np.maximum(t.feature, 0)
            self.threshold[i, :k] = t.threshold
            self.value[i, :k] = t.value[:, 0, 0]
        self.rows = np.arange(len(trees))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Mean over trees for each row of ``x`` (shape ``(n, features)``)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float32)).astype(np.float64)  # as scikit-learn compares
        node = np.zeros((len(self.rows), len(x)), dtype=np.int64)
        cols = np.arange(len(x))[None, :]
        rows = self.rows[:, None]
        while True:
            left = self.left[rows, node]
            active = left >= 0
            if not active.any():
                break
            go_left = x[cols, self.feature[rows, node]] <= self.threshold[rows, node]
            node = np.where(active, np.where(go_left, left, self.right[rows, node]), node)
        return self.value[rows, node].mean(axis=0)


def _forest(seed: int = 0) -> Any:
    from sklearn.ensemble import ExtraTreesRegressor

    # extremely randomised trees: a smoother surface and a better cross-validated rank correlation than
    # a random forest or gradient boosting on these data (checked on mlp-digits: Spearman 0.93 vs 0.89/0.90)
    return ExtraTreesRegressor(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1)


def surrogate_quality(model: str, dataset: str, n_splits: int = 5) -> dict[str, float]:
    """Cross-validated quality of the surrogate: folds split by configuration (its checkpoints together)."""
    from scipy.stats import kendalltau, spearmanr
    from sklearn.model_selection import GroupKFold

    rows = load_evaluations(model, dataset)
    x = np.array([encode(model, p) for p, _, _ in rows])
    y = np.array([v for _, v, _ in rows])
    groups = np.array([g for _, _, g in rows])
    pred = np.zeros_like(y)
    for train, test in GroupKFold(n_splits).split(x, y, groups):
        pred[test] = _forest().fit(x[train], y[train]).predict(x[test])
    return {
        "spearman": float(spearmanr(pred, y).statistic),
        "kendall": float(kendalltau(pred, y).statistic),
        "mae": float(np.mean(np.abs(pred - y))),
    }


@functools.cache
def _surrogate(model: str, dataset: str) -> Problem:
    rows = load_evaluations(model, dataset)
    x = np.array([encode(model, p) for p, _, _ in rows])
    y = np.array([v for _, v, _ in rows])
    packed = PackedForest(_forest().fit(x, y))

    def fn(p: dict[str, Any]) -> float:
        return float(packed.predict(np.asarray(encode(model, p)))[0])

    def batch(ps: list[dict[str, Any]]) -> np.ndarray:
        feats = np.array([encode(model, p) for p in ps])
        return np.concatenate([packed.predict(feats[i : i + 20000]) for i in range(0, len(feats), 20000)])

    configs = len({g for _, _, g in rows})
    info = {"evaluations": len(rows), "configurations": configs, "best_real_error": float(y.min())}
    return Problem(
        f"{model}-{dataset}", "surrogate", RF_SPACE if model == "rf" else MLP_SPACE, fn, None, batch, info
    )


SYNTHETIC = _synthetic()
SURROGATES = tuple(f"{m}-{d}" for m in MODELS for d in DATASETS)
ALL = (*SYNTHETIC, *SURROGATES)


def get(name: str) -> Problem:
    """The problem called ``name`` (surrogates are fitted on first use, ~1 s each)."""
    if name in SYNTHETIC:
        return SYNTHETIC[name]
    model, _, dataset = name.partition("-")
    if model not in MODELS or dataset not in DATASETS:
        raise KeyError(f"unknown problem {name!r}; known: {', '.join(ALL)}")
    return _surrogate(model, dataset)


def reference(name: str, n: int = 100_000, seed: int = 0) -> dict[str, float]:
    """Regret anchors of a problem: the optimum (known, or the best of ``n`` random samples of a surrogate)
    and the median of the objective over ``n`` random samples (what a single random guess achieves)."""
    problem = get(name)
    space = SearchSpace.parse(problem.space)
    rng = np.random.default_rng(seed)
    samples = [space.sample(rng) for _ in range(n)]
    values = problem.batch(samples) if problem.batch else np.array([problem.fn(p) for p in samples])
    optimum = problem.optimum if problem.optimum is not None else float(values.min())
    return {"optimum": optimum, "median_random": float(np.median(values)), "sample_min": float(values.min())}
