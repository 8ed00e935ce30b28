"""Convert NDS's released JSON files into ``nds.db``.

``python -m nni_pl.nas.benchmarks.nds.db_gen <folder> [--output FILE]``: the folder holds the extracted
``*.json`` sweeps (``Amoeba.json``, ``DARTS_fix-w-d.json``, ``ResNet_lr-wd_in.json``, ...); the output defaults to
``$NASBENCHMARK_DIR/nds.db``. A file's name gives the proposer (before the first ``_``, lower case), the dataset
(``_in``: ImageNet, else CIFAR-10) and the generator (``fix-w-d``, ``lr-wd`` or random). Each file is a list of
runs (or ``{"top": [...], "mid": [...]}``); a run has ``net`` (a ``genotype`` for NAS cells, else ``block_type``
and the stage lists), ``optim`` (``base_lr``, ``wd``, ``max_ep``), ``rng_seed``, ``params``, ``flops``,
``iter_time`` and per-epoch ``train_ep_top1`` / ``test_ep_top1`` (errors, %) and ``train_ep_loss``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nni_pl.errors import StoreError
from nni_pl.nas.benchmarks._db import create_database, database_path
from nni_pl.nas.benchmarks.nds.model import MODELS, NdsIntermediateStats, NdsTrialConfig, NdsTrialStats

__all__ = ["convert", "sweep_settings"]

log = logging.getLogger(__name__)

_FAMILIES = {
    "res_bottleneck": "residual_bottleneck",
    "res_basic": "residual_basic",
    "double_plain": "vanilla",
}


def sweep_settings(file_name: str) -> tuple[str, str, str]:
    """``(proposer, dataset, generator)`` of a sweep file's name.

    Example:
        >>> sweep_settings("ResNet_lr-wd_in.json")
        ('resnet', 'imagenet', 'tune_lr_wd')
    """
    stem = Path(file_name).stem
    generator = "fix_w_d" if "fix-w-d" in stem else "tune_lr_wd" if "lr-wd" in stem else "random"
    dataset = "imagenet" if stem.endswith("_in") or "_in_" in stem else "cifar10"
    return stem.split("_")[0].lower(), dataset, generator


def _config(item: Mapping[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    net = item["net"]
    if "genotype" in net:
        genotype = net["genotype"]
        spec: dict[str, Any] = {
            "num_nodes_normal": len(genotype["normal"]) // 2,
            "num_nodes_reduce": len(genotype["reduce"]) // 2,
            "depth": net["depth"],
            "width": net["width"],
            "aux": net["aux"],
            "drop_prob": net["drop_prob"],
        }
        cell: dict[str, Any] = {}
        for kind in ("normal", "reduce"):
            for i in range(len(genotype[kind]) // 2):
                for j, side in enumerate("xy"):
                    op, node = genotype[kind][2 * i + j]
                    cell[f"{kind}_{i}_op_{side}"] = op
                    cell[f"{kind}_{i}_input_{side}"] = node
            cell[f"{kind}_concat"] = genotype[f"{kind}_concat"]
        return "nas_cell", spec, cell
    block = str(net["block_type"])
    family = next((f for prefix, f in _FAMILIES.items() if block.startswith(prefix)), None)
    if family is None:
        raise ValueError(f"unknown block_type {block!r} (expected {sorted(_FAMILIES)} or a genotype)")
    return family, {k: v for k, v in net.items() if v and k != "block_type"}, {}


def _loss(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _inject(
    item: Mapping[str, Any], proposer: str, dataset: str, generator: str, cache: dict[Any, Any]
) -> None:
    family, model_spec, cell_spec = _config(item)
    optim = item["optim"]
    key = (family, json.dumps(model_spec, sort_keys=True), json.dumps(cell_spec, sort_keys=True), proposer,
           optim["base_lr"], optim["wd"], optim["max_ep"], dataset, generator)  # fmt: skip
    config = cache.get(key)
    if config is None:
        config = cache[key] = NdsTrialConfig.create(
            model_family=family,
            model_spec=model_spec,
            cell_spec=cell_spec,
            proposer=proposer,
            base_lr=optim["base_lr"],
            weight_decay=optim["wd"],
            num_epochs=optim["max_ep"],
            dataset=dataset,
            generator=generator,
        )
    train_err, test_err, train_loss = item["train_ep_top1"], item["test_ep_top1"], item["train_ep_loss"]
    if not len(train_err) == len(test_err) == len(train_loss) == config.num_epochs:
        raise ValueError(
            f"{len(train_err)}/{len(test_err)}/{len(train_loss)} per-epoch values for max_ep={config.num_epochs}"
        )
    losses = [v for v in map(_loss, train_loss) if v is not None]
    trial = NdsTrialStats.create(
        config=config,
        seed=item["rng_seed"],
        final_train_acc=100 - train_err[-1],
        final_train_loss=_loss(train_loss[-1]),
        final_test_acc=100 - test_err[-1],
        best_train_acc=100 - min(train_err),
        best_train_loss=min(losses) if losses else None,
        best_test_acc=100 - min(test_err),
        parameters=item["params"] / 1e6,
        flops=item["flops"] / 1e6,
        iter_time=item["iter_time"],
    )
    NdsIntermediateStats.insert_many(
        [
            {
                "trial": trial,
                "current_epoch": i + 1,
                "train_loss": _loss(train_loss[i]),
                "train_acc": 100 - train_err[i],
                "test_acc": 100 - test_err[i],
            }
            for i in range(config.num_epochs)
        ]
    ).execute()


def convert(input_dir: str | os.PathLike[str], output: str | os.PathLike[str]) -> int:
    """Write the database of the sweeps in ``input_dir`` (every ``*.json``) to ``output``; returns the trials.

    Raises:
        StoreError: no ``.json`` file, or a run lacks a field (names the file, the run and the field).
    """
    files = sorted(Path(input_dir).glob("*.json"))
    if not files:
        raise StoreError(
            f"no NDS .json file in {str(input_dir)!r}; pass the folder of the extracted NDS data"
        )
    db = create_database(output, MODELS)
    trials, cache = 0, {}
    with db.bind_ctx(MODELS), db.atomic():
        for file in files:
            proposer, dataset, generator = sweep_settings(file.name)
            data = json.loads(file.read_text())
            runs = data["top"] + data["mid"] if isinstance(data, dict) and "top" in data else data
            for index, item in enumerate(runs):
                try:
                    _inject(item, proposer, dataset, generator, cache)
                except (KeyError, ValueError, TypeError) as e:
                    raise StoreError(f"{file.name}, run {index}: not an NDS run ({e!r})") from e
                trials += 1
            log.info("%s: %d runs (%s, %s, %s)", file.name, len(runs), proposer, dataset, generator)
    db.close()
    return trials


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert NDS's .json sweeps into nds.db")
    parser.add_argument("input_dir", help="the folder of the extracted NDS .json files")
    parser.add_argument("--output", help="the database to write (default: $NASBENCHMARK_DIR/nds.db)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    output = Path(args.output) if args.output else database_path("nds")
    start = time.perf_counter()
    n = convert(args.input_dir, output)
    log.info("wrote %d trials to %s in %.0f s", n, output, time.perf_counter() - start)


if __name__ == "__main__":
    main()
