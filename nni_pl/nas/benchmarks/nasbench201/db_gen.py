"""Convert NAS-Bench-201's official file into ``nasbench201.db``.

``python -m nni_pl.nas.benchmarks.nasbench201.db_gen NAS-Bench-201-v1_1-096897.pth [--output FILE]``; the output
defaults to ``$NASBENCHMARK_DIR/nasbench201.db`` (``~/.nni/nasbenchmark``). Reading the ``.pth`` needs torch.

The file is a dict: ``meta_archs`` (architecture strings such as ``|avg_pool_3x3~0|+|nor_conv_1x1~0|...|``) and
``arch2infos``: per architecture, ``less`` (12 epochs) and ``full`` (200 epochs), each with ``all_results`` keyed
by ``(dataset, seed)``: ``params``, ``flop``, ``latency``, ``train_acc1es`` / ``train_losses`` / ``train_times``
per epoch, and ``eval_acc1es`` / ``eval_losses`` / ``eval_times`` per ``"<split>@<epoch>"``. Which evaluation
split is this benchmark's validation, test and original test set depends on the dataset (:data:`SPLITS`).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nni_pl.errors import StoreError
from nni_pl.nas.benchmarks._db import create_database, database_path
from nni_pl.nas.benchmarks.nasbench201.constants import (
    AVG_POOL_3X3,
    CONV_1X1,
    CONV_3X3,
    EDGES,
    NONE,
    SKIP_CONNECT,
)
from nni_pl.nas.benchmarks.nasbench201.model import (
    MODELS,
    Nb201IntermediateStats,
    Nb201TrialConfig,
    Nb201TrialStats,
)

__all__ = ["convert", "parse_arch_str"]

log = logging.getLogger(__name__)

_OP_NAMES = {
    "none": NONE,
    "skip_connect": SKIP_CONNECT,
    "nor_conv_1x1": CONV_1X1,
    "nor_conv_3x3": CONV_3X3,
    "avg_pool_3x3": AVG_POOL_3X3,
}

#: the official evaluation split read as (validation, test, original test), per dataset.
SPLITS = {
    "cifar10-valid": ("x-valid", "ori-test", "ori-test"),
    "cifar10": ("ori-test", "ori-test", "ori-test"),
    "cifar100": ("x-valid", "x-test", "ori-test"),
    "imagenet16-120": ("x-valid", "x-test", "ori-test"),
}
_EPOCHS = {"less": 12, "full": 200}


def parse_arch_str(arch_str: str) -> dict[str, str]:
    """An official architecture string as an architecture dict (keys ``j_t``).

    Example:
        >>> parse_arch_str("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|")
        {'0_1': 'avg_pool_3x3', '0_2': 'conv_1x1', '1_2': 'skip_connect', '0_3': 'conv_1x1', '1_3': 'none', '2_3': 'conv_3x3'}
    """
    arch: dict[str, str] = {}
    try:
        for t, node in enumerate(arch_str.strip().split("+"), start=1):
            for edge in filter(None, node.strip("|").split("|")):
                op, j = edge.rsplit("~", 1)
                arch[f"{int(j)}_{t}"] = _OP_NAMES[op]
    except (KeyError, ValueError) as e:
        raise StoreError(f"cannot read the NAS-Bench-201 architecture string {arch_str!r}: {e!r}") from e
    if sorted(arch) != sorted(EDGES):
        raise StoreError(
            f"the NAS-Bench-201 architecture string {arch_str!r} does not give the six edges {EDGES}"
        )
    return arch


def _load(file: Path, trust: bool) -> Mapping[str, Any]:
    import pickle

    import torch

    try:
        return torch.load(file, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        raise StoreError(
            f"{str(file)!r} holds objects other than plain data, which a safe load refuses ({e}); "
            "if you trust the file, run again with --trust"
        ) from e


def _records(r: Mapping[str, Any], dataset: str, epochs: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    valid, test, ori = SPLITS[dataset]
    acc, loss, times = r["eval_acc1es"], r["eval_losses"], r["eval_times"]
    last = epochs - 1
    final = {
        "train_acc": r["train_acc1es"][last],
        "valid_acc": acc[f"{valid}@{last}"],
        "test_acc": acc[f"{test}@{last}"],
        "ori_test_acc": acc[f"{ori}@{last}"],
        "train_loss": _number(r["train_losses"].get(last)),
        "valid_loss": _number(loss.get(f"{valid}@{last}")),
        "test_loss": _number(loss.get(f"{test}@{last}")),
        "ori_test_loss": _number(loss.get(f"{ori}@{last}")),
        "parameters": r["params"],
        "flops": r["flop"],
        "latency": r["latency"][0] if r.get("latency") else 0.0,
        "training_time": r["train_times"][last] * epochs,
        "valid_evaluation_time": times.get(f"{valid}@{last}", 0.0),
        "test_evaluation_time": times.get(f"{test}@{last}", 0.0),
        "ori_test_evaluation_time": times.get(f"{ori}@{last}", 0.0),
    }
    inter = []
    for e in range(epochs):
        row = {
            "train_acc": r["train_acc1es"].get(e),
            "valid_acc": acc.get(f"{valid}@{e}"),
            "test_acc": acc.get(f"{test}@{e}"),
            "ori_test_acc": acc.get(f"{ori}@{e}"),
            "train_loss": _number(r["train_losses"].get(e)),
            "valid_loss": _number(loss.get(f"{valid}@{e}")),
            "test_loss": _number(loss.get(f"{test}@{e}")),
            "ori_test_loss": _number(loss.get(f"{ori}@{e}")),
        }
        if any(v is not None for v in row.values()):
            inter.append({"current_epoch": e + 1, **row})
    return final, inter


def _number(x: Any) -> float | None:
    return None if x is None or x != x else float(x)


def convert(
    input_file: str | os.PathLike[str], output: str | os.PathLike[str], *, trust: bool = False
) -> int:
    """Write the database of the official file ``input_file`` to ``output``; returns the number of trials.

    Raises:
        StoreError: the file is not in the official format (the message names what is missing).
    """
    data = _load(Path(input_file), trust)
    if not isinstance(data, Mapping) or "arch2infos" not in data:
        raise StoreError(
            f"{str(input_file)!r} is not NAS-Bench-201's file: expected a dict with 'arch2infos' "
            f"(e.g. NAS-Bench-201-v1_1-096897.pth), got {type(data).__name__}"
            + (f" with keys {sorted(data)[:5]}" if isinstance(data, Mapping) else "")
        )
    db = create_database(output, MODELS)
    configs: dict[tuple[str, int, str], Nb201TrialConfig] = {}
    trials = 0
    with db.bind_ctx(MODELS), db.atomic():
        for index, info in data["arch2infos"].items():
            for schedule, d in info.items():
                epochs = _EPOCHS.get(schedule)
                if epochs is None:
                    continue
                arch = parse_arch_str(d["arch_str"])
                for (dataset_name, seed), r in d["all_results"].items():
                    dataset = str(dataset_name).lower()
                    if dataset not in SPLITS:
                        log.warning("architecture %s: unknown dataset %r skipped", index, dataset_name)
                        continue
                    try:
                        final, inter = _records(r, dataset, epochs)
                    except (KeyError, IndexError, TypeError) as e:
                        raise StoreError(
                            f"architecture {index} ({schedule}, {dataset_name}, seed {seed}): "
                            f"the result lacks {e!r}; is this NAS-Bench-201's official file?"
                        ) from e
                    key = (d["arch_str"], epochs, dataset)
                    if key not in configs:
                        configs[key] = Nb201TrialConfig.create(
                            arch=arch, num_epochs=epochs, dataset=dataset, num_channels=16, num_cells=5
                        )
                    trial = Nb201TrialStats.create(config=configs[key], seed=int(seed), **final)
                    if inter:
                        Nb201IntermediateStats.insert_many(
                            [{"trial": trial, **row} for row in inter]
                        ).execute()
                    trials += 1
    db.close()
    return trials


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert NAS-Bench-201's official .pth into nasbench201.db")
    parser.add_argument("input_file", help="the official file, e.g. NAS-Bench-201-v1_1-096897.pth")
    parser.add_argument("--output", help="the database to write (default: $NASBENCHMARK_DIR/nasbench201.db)")
    parser.add_argument("--trust", action="store_true", help="load a file holding more than plain data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    output = Path(args.output) if args.output else database_path("nasbench201")
    start = time.perf_counter()
    n = convert(args.input_file, output, trust=args.trust)
    log.info("wrote %d trials to %s in %.0f s", n, output, time.perf_counter() - start)


if __name__ == "__main__":
    main()
