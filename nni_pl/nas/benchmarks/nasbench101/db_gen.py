"""Convert NAS-Bench-101's official ``.tfrecord`` into ``nasbench101.db`` (no TensorFlow needed).

``python -m nni_pl.nas.benchmarks.nasbench101.db_gen nasbench_full.tfrecord [--output FILE]`` (or
``nasbench_only108.tfrecord``); the output defaults to ``$NASBENCHMARK_DIR/nasbench101.db``. Each record becomes a
trial of its (cell, epochs) config, with the half-way and final evaluations as intermediates; the stored hash is
checked against the cell's own (:func:`~nni_pl.nas.benchmarks.nasbench101.hash_module`).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

from nni_pl.errors import StoreError
from nni_pl.nas.benchmarks._db import create_database, database_path
from nni_pl.nas.benchmarks.nasbench101.graph_util import hash_module, nasbench_format_to_architecture_repr
from nni_pl.nas.benchmarks.nasbench101.model import (
    MODELS,
    Nb101IntermediateStats,
    Nb101TrialConfig,
    Nb101TrialStats,
)
from nni_pl.nas.benchmarks.nasbench101.tfrecord import read_nasbench_records

__all__ = ["convert"]

log = logging.getLogger(__name__)


def convert(input_file: str | os.PathLike[str], output: str | os.PathLike[str]) -> int:
    """Write the database of the official ``input_file`` to ``output``; returns the number of trials.

    Raises:
        StoreError: a record is malformed, or its hash is not its cell's.
    """
    db = create_database(output, MODELS)
    configs: dict[tuple[str, int], Nb101TrialConfig] = {}
    trials = 0
    with open(input_file, "rb") as f, db.bind_ctx(MODELS), db.atomic():
        for rec in read_nasbench_records(f):
            try:
                n, arch = nasbench_format_to_architecture_repr(rec.adjacency, rec.operations)
                digest = hash_module(arch, n)
            except (ValueError, KeyError) as e:
                raise StoreError(f"cell {rec.module_hash}: {e}") from e
            if digest != rec.module_hash:
                raise StoreError(
                    f"cell {rec.module_hash}: its graph hashes to {digest}; is this NAS-Bench-101's file?"
                )
            evaluations = rec.metrics["evaluation_data"]
            if len(evaluations) < 3:
                raise StoreError(
                    f"cell {rec.module_hash} ({rec.epochs} epochs): {len(evaluations)} evaluations, expected 3 "
                    "(start, half-way, end)"
                )
            key = (rec.module_hash, rec.epochs)
            if key not in configs:
                configs[key] = Nb101TrialConfig.create(
                    arch=arch, num_vertices=n, hash=rec.module_hash, num_epochs=rec.epochs
                )
            final = evaluations[2]
            trial = Nb101TrialStats.create(
                config=configs[key],
                **_accuracies(final),
                parameters=rec.metrics["trainable_parameters"] / 1e6,
                training_time=final["training_time"],
            )
            Nb101IntermediateStats.insert_many(
                [
                    {
                        "trial": trial,
                        "current_epoch": epoch,
                        "training_time": ev["training_time"],
                        **_accuracies(ev),
                    }
                    for epoch, ev in ((rec.epochs // 2, evaluations[1]), (rec.epochs, final))
                ]
            ).execute()
            trials += 1
    db.close()
    return trials


def _accuracies(ev: dict[str, Any]) -> dict[str, float]:
    return {
        "train_acc": ev["train_accuracy"] * 100,
        "valid_acc": ev["validation_accuracy"] * 100,
        "test_acc": ev["test_accuracy"] * 100,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert NAS-Bench-101's .tfrecord into nasbench101.db")
    parser.add_argument("input_file", help="the official file, e.g. nasbench_full.tfrecord")
    parser.add_argument("--output", help="the database to write (default: $NASBENCHMARK_DIR/nasbench101.db)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    output = Path(args.output) if args.output else database_path("nasbench101")
    start = time.perf_counter()
    n = convert(args.input_file, output)
    log.info("wrote %d trials to %s in %.0f s", n, output, time.perf_counter() - start)


if __name__ == "__main__":
    main()
