"""Build the tabular NAS benchmark ``benchmarks/data/nas_digits.json`` (run once; ~10 CPU minutes).

The space (:data:`SEARCH_SPACE`, NNI search-space JSON, 144 architectures) is a small MLP on scikit-learn's 8x8
digits: ``depth`` hidden layers of ``width`` units with ``activation``, optional ``norm`` after each hidden
layer and an optional ``skip``: a linear shortcut from the input straight to the logits. Every architecture is
trained with one fixed recipe (:data:`RECIPE`) for three seeds; the table stores per architecture the mean and
standard deviation of the validation accuracy, the per-seed accuracies, the parameter count and the training
seconds, plus the torch version and the recipe.

The builder (:func:`build_model`) is plain PyTorch so the table does not depend on the NAS primitives.

Example:
    nice -n 10 .venv/bin/python benchmarks/nas/build_table.py            # full table
    .venv/bin/python benchmarks/nas/build_table.py --limit 4 --out /tmp/t.json   # a few archs
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("nas.build_table")

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "benchmarks" / "data" / "nas_digits.json"

SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "depth": {"_type": "choice", "_value": [1, 2, 3]},
    "width": {"_type": "choice", "_value": [8, 16, 32, 64]},
    "activation": {"_type": "choice", "_value": ["relu", "tanh", "sigmoid"]},
    "norm": {"_type": "choice", "_value": ["none", "batchnorm"]},
    "skip": {"_type": "choice", "_value": [False, True]},
}

RECIPE: dict[str, Any] = {
    "dataset": "sklearn.datasets.load_digits, X / 16",
    "split": "stratified 70/30 train/val, random_state=0",
    "optimizer": "Adam",
    "lr": 3e-3,
    "weight_decay": 0.0,
    "epochs": 8,
    "batch_size": 128,
    "loss": "cross_entropy",
    "init": "torch default, torch.manual_seed(seed) before building",
    "seeds": [0, 1, 2],
    "threads": 1,
}


def arch_key(arch: dict[str, Any]) -> str:
    """The table key of an architecture: its values in :data:`SEARCH_SPACE` order joined by ``|``."""
    return "|".join(str(arch[label]) for label in SEARCH_SPACE)


def all_archs() -> list[dict[str, Any]]:
    """Every architecture of :data:`SEARCH_SPACE`, in grid order."""
    labels = list(SEARCH_SPACE)
    values = [SEARCH_SPACE[label]["_value"] for label in labels]
    return [dict(zip(labels, combo)) for combo in itertools.product(*values)]


def build_model(arch: dict[str, Any]) -> Any:
    """A plain ``nn.Module`` for ``arch`` (input ``(N, 64)``, logits ``(N, 10)``)."""
    import torch
    from torch import nn

    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}

    class DigitsMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            width_in = 64
            for _ in range(int(arch["depth"])):
                layers.append(nn.Linear(width_in, int(arch["width"])))
                if arch["norm"] == "batchnorm":
                    layers.append(nn.BatchNorm1d(int(arch["width"])))
                layers.append(acts[arch["activation"]]())
                width_in = int(arch["width"])
            self.body = nn.Sequential(*layers)
            self.head = nn.Linear(width_in, 10)
            self.skip = nn.Linear(64, 10) if arch["skip"] else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.head(self.body(x))
            return out + self.skip(x) if self.skip is not None else out

    return DigitsMLP()


def load_split() -> tuple[Any, Any, Any, Any]:
    """The recipe's fixed train/val split of digits as float/long tensors."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(x / 16.0, y, test_size=0.3, stratify=y, random_state=0)
    as_x = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.long)  # noqa: E731
    return as_x(x_tr), as_y(y_tr), as_x(x_va), as_y(y_va)


def train_once(arch: dict[str, Any], seed: int, data: tuple[Any, Any, Any, Any]) -> tuple[float, int, float]:
    """Train ``arch`` with :data:`RECIPE` and ``seed``; returns (val accuracy, parameter count, seconds)."""
    import torch
    import torch.nn.functional as F

    x_tr, y_tr, x_va, y_va = data
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = build_model(arch)
    opt = torch.optim.Adam(model.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    gen = torch.Generator().manual_seed(seed)
    n, bs = len(x_tr), RECIPE["batch_size"]
    for _ in range(RECIPE["epochs"]):
        model.train()
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            opt.zero_grad()
            F.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x_va).argmax(1) == y_va).float().mean().item()
    params = sum(p.numel() for p in model.parameters())
    return acc, params, time.perf_counter() - start


def build(limit: int | None = None) -> dict[str, Any]:
    """Train every architecture (the first ``limit`` if given) for every seed; returns the table."""
    import numpy as np
    import sklearn
    import torch

    torch.set_num_threads(RECIPE["threads"])
    data = load_split()
    archs = all_archs()[:limit] if limit else all_archs()
    rows: dict[str, Any] = {}
    start = time.perf_counter()
    for i, arch in enumerate(archs):
        accs, secs, params = [], [], 0
        for seed in RECIPE["seeds"]:
            acc, params, sec = train_once(arch, seed, data)
            accs.append(acc)
            secs.append(sec)
        rows[arch_key(arch)] = {
            "arch": arch,
            "val_acc_mean": float(np.mean(accs)),
            "val_acc_std": float(np.std(accs)),
            "val_acc": accs,
            "params": params,
            "train_seconds": float(np.mean(secs)),
        }
        logger.info("%d/%d %s acc=%.4f", i + 1, len(archs), arch_key(arch), np.mean(accs))
    best = max(rows.values(), key=lambda r: r["val_acc_mean"])
    return {
        "name": "nas_digits",
        "search_space": SEARCH_SPACE,
        "recipe": RECIPE,
        "n_archs": len(rows),
        "optimum": {"arch": best["arch"], "val_acc_mean": best["val_acc_mean"]},
        "built_with": {
            "torch": torch.__version__,
            "sklearn": sklearn.__version__,
            "python": platform.python_version(),
            "seconds": round(time.perf_counter() - start, 1),
        },
        "archs": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="table file (default: %(default)s)")
    parser.add_argument(
        "--limit", type=int, default=None, help="only the first N architectures (a quick check)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    table = build(args.limit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    logger.info("wrote %s (%d archs, %.0f s)", args.out, table["n_archs"], table["built_with"]["seconds"])


if __name__ == "__main__":
    main()
