"""Generate the digits benchmark: train every architecture of its space on scikit-learn's digits, 3 seeds.

``python -m nni_pl.nas.benchmarks.digits.db_gen [output.db]`` (default: the ``digits.db`` shipped in this
package). The network: the 64 pixel features (standardised) -> ``Linear(64, 16)`` -> the cell -> ReLU ->
``Linear(16, 10)``. Node ``t`` of the cell is the sum over ``j < t`` of ``op_{j_t}(node_j)``, node 0 is the stem's
output and node 3 the cell's. Each run: Adam (lr 5e-3), batches of 128, 12 epochs; after each epoch the accuracy and
loss on the training, validation and test splits are stored.

All 729 architectures of a seed train at once, as one batched model in which each edge's output is the chosen op's
(a one-hot mask over the three ops): the ops not chosen get zero gradients, and Adam leaves a parameter with zero
gradients where it is, so each architecture trains as it would alone (``tests/nas/benchmarks/test_digits.py`` checks
it). ``training_time`` is measured by training one architecture alone on one thread, for each number of ``linear``
edges (0..6); it depends on the machine and its load.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from nni_pl.nas.benchmarks._db import create_database
from nni_pl.nas.benchmarks.digits.constants import (
    DATASET,
    EDGES,
    LINEAR,
    NUM_CHANNELS,
    NUM_EPOCHS,
    OPS,
    SEEDS,
    SKIP_CONNECT,
)
from nni_pl.nas.benchmarks.digits.model import (
    MODELS,
    DigitsIntermediateStats,
    DigitsTrialConfig,
    DigitsTrialStats,
)

log = logging.getLogger(__name__)

BATCH_SIZE = 128
LR = 5e-3
DEFAULT_OUTPUT = Path(__file__).with_name("digits.db")


def load_splits() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Digits, standardised with the training split's statistics: train 1078, valid 359, test 360 images."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order].astype(np.float32), y[order].astype(np.int64)
    n_train, n_valid = 1078, 359
    mean, std = x[:n_train].mean(0), x[:n_train].std(0) + 1e-6
    x = (x - mean) / std
    cut = {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, len(x))}
    return {k: (torch.from_numpy(x[a:b]), torch.from_numpy(y[a:b])) for k, (a, b) in cut.items()}


def all_archs() -> list[dict[str, str]]:
    return [dict(zip(EDGES, ops)) for ops in itertools.product(OPS, repeat=len(EDGES))]


class BatchedNets:
    """``A`` networks of the space with their own weights, evaluated together (weights stacked on dim 0)."""

    def __init__(self, archs: list[dict[str, str]], seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        a, c = len(archs), NUM_CHANNELS

        def uniform(*shape: int, fan_in: int) -> torch.Tensor:  # nn.Linear's default initialisation
            bound = 1 / fan_in**0.5
            return ((torch.rand(*shape, generator=g) * 2 - 1) * bound).requires_grad_()

        self.stem_w, self.stem_b = uniform(a, 64, c, fan_in=64), uniform(a, 1, c, fan_in=64)
        self.edge_w = uniform(a, len(EDGES), c, c, fan_in=c)
        self.edge_b = uniform(a, len(EDGES), 1, c, fan_in=c)
        self.head_w, self.head_b = uniform(a, c, 10, fan_in=c), uniform(a, 1, 10, fan_in=c)
        idx = torch.tensor([[OPS.index(arch[e]) for e in EDGES] for arch in archs])
        mask = F.one_hot(idx, len(OPS)).float()  # [A, edges, ops]
        self.skip = mask[:, :, OPS.index(SKIP_CONNECT), None, None]
        self.linear = mask[:, :, OPS.index(LINEAR), None, None]

    def parameters(self) -> list[torch.Tensor]:
        return [self.stem_w, self.stem_b, self.edge_w, self.edge_b, self.head_w, self.head_b]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: [N, 64] -> logits [A, N, 10]."""
        a = self.stem_w.shape[0]
        nodes = [torch.baddbmm(self.stem_b, x.expand(a, *x.shape), self.stem_w)]
        relus = [torch.relu(nodes[0])]
        for t in range(1, 4):
            total = 0
            for j in range(t):
                e = EDGES.index(f"{j}_{t}")
                # the linear op's weights masked (a weight masked to zero gets zero gradients): cheaper than
                # masking its output
                lin = torch.baddbmm(
                    self.linear[:, e] * self.edge_b[:, e], relus[j], self.linear[:, e] * self.edge_w[:, e]
                )
                total = total + self.skip[:, e] * nodes[j] + lin
            nodes.append(total)
            relus.append(torch.relu(total))
        return torch.baddbmm(self.head_b, relus[3], self.head_w)


def _evaluate(nets: BatchedNets, x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        logits = nets(x)
        loss = F.cross_entropy(logits.transpose(1, 2), y.expand(logits.shape[0], -1), reduction="none").mean(
            1
        )
        acc = (logits.argmax(-1) == y).float().mean(1) * 100
    return acc.numpy(), loss.numpy()


def train(
    archs: list[dict[str, str]],
    seed: int,
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
    *,
    nets: BatchedNets | None = None,
    epochs: int = NUM_EPOCHS,
) -> list[dict[str, np.ndarray]]:
    """Train ``archs`` (all at once) with ``seed`` (or the given ``nets`` of them); the metrics of every
    architecture after each epoch."""
    nets = BatchedNets(archs, seed) if nets is None else nets
    opt = torch.optim.Adam(nets.parameters(), lr=LR, foreach=True)
    x_train, y_train = splits["train"]
    order_rng = torch.Generator().manual_seed(10_000 + seed)
    history = []
    for _ in range(epochs):
        perm = torch.randperm(len(x_train), generator=order_rng)
        for start in range(0, len(perm), BATCH_SIZE):
            b = perm[start : start + BATCH_SIZE]
            logits = nets(x_train[b])
            target = y_train[b].expand(logits.shape[0], -1)
            # the sum over architectures keeps each one's gradient its own
            loss = F.cross_entropy(logits.transpose(1, 2), target, reduction="none").mean(1).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        metrics = {}
        for split, (x, y) in splits.items():
            metrics[f"{split}_acc"], metrics[f"{split}_loss"] = _evaluate(nets, x, y)
        history.append(metrics)
    return history


def cost(arch: dict[str, str]) -> tuple[float, float]:
    """(parameters, multiply-adds of one forward pass), both in million."""
    c, n = NUM_CHANNELS, sum(op == LINEAR for op in arch.values())
    params = 64 * c + c + n * (c * c + c) + c * 10 + 10
    flops = 64 * c + n * c * c + c * 10
    return params / 1e6, flops / 1e6


def measure_training_times(splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[int, float]:
    """Seconds to train one architecture alone (one thread), per number of linear edges: the faster of two runs."""
    train([all_archs()[-1]], 0, splits)  # warm-up
    times = {}
    for n in range(len(EDGES) + 1):
        arch = {e: LINEAR if i < n else SKIP_CONNECT for i, e in enumerate(EDGES)}
        runs = []
        for _ in range(2):
            start = time.perf_counter()
            train([arch], 0, splits)
            runs.append(time.perf_counter() - start)
        times[n] = min(runs)
    return times


def generate(output: str | Path = DEFAULT_OUTPUT, *, seeds: tuple[int, ...] = SEEDS) -> Path:
    """Train every architecture with each of ``seeds`` and write the database to ``output``."""
    splits = load_splits()
    archs = all_archs()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times = measure_training_times(splits)
    torch.set_num_threads(threads)
    log.info("training time of one architecture alone by number of linear edges: %s", times)
    runs: dict[int, list[dict[str, np.ndarray]]] = {}
    for seed in seeds:
        start = time.perf_counter()
        runs[seed] = train(archs, seed, splits)
        log.info("seed %d: %d architectures in %.1f s", seed, len(archs), time.perf_counter() - start)
    db = create_database(output, MODELS)
    with db.bind_ctx(MODELS), db.atomic():
        for i, arch in enumerate(archs):
            config = DigitsTrialConfig.create(
                arch=arch, num_epochs=NUM_EPOCHS, num_channels=NUM_CHANNELS, dataset=DATASET
            )
            params, flops = cost(arch)
            n_linear = sum(op == LINEAR for op in arch.values())
            for seed in seeds:
                epochs = runs[seed]
                final = {k: _round(v[i]) for k, v in epochs[-1].items()}
                trial = DigitsTrialStats.create(
                    config=config,
                    seed=seed,
                    parameters=params,
                    flops=flops,
                    training_time=round(times[n_linear], 3),
                    **final,
                )
                rows: list[dict[str, Any]] = [
                    {"trial": trial, "current_epoch": e, **{k: _round(v[i]) for k, v in m.items()}}
                    for e, m in enumerate(epochs, start=1)
                ]
                DigitsIntermediateStats.insert_many(rows).execute()
    db.execute_sql("VACUUM")
    db.close()
    return Path(output)


def _round(x: Any) -> float | None:
    x = float(x)
    return None if x != x else round(x, 4)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output", nargs="?", default=str(DEFAULT_OUTPUT), help="the database to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    out = generate(args.output)
    log.info("wrote %s (%.0f KiB) in %.0f s", out, out.stat().st_size / 1024, time.perf_counter() - start)


if __name__ == "__main__":
    main()
