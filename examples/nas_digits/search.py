"""Search DigitsSpace with a multi-trial strategy: every architecture trains in its own trial process.

cd examples/nas_digits
python search.py --strategy evolution --trials 12 --epochs 3
nni-pl list; nni-pl show ID; nni-pl export ID; nni-pl resume ID   # as for any experiment
"""

from __future__ import annotations

import argparse
import json
import logging

from digits_space import DigitsSpace

from nni_pl.nas import ValueChoice
from nni_pl.nas.evaluator import Classification
from nni_pl.nas.experiment import NasExperiment
from nni_pl.nas.strategy import TPE, GridSearch, PolicyBasedRL, Random, RegularizedEvolution

STRATEGIES = {
    "random": lambda seed: Random(seed=seed),
    "grid": lambda seed: GridSearch(seed=seed),
    "evolution": lambda seed: RegularizedEvolution(
        population_size=6, sample_size=3, mutation_prob=0.3, seed=seed
    ),
    "tpe": lambda seed: TPE(n_startup_jobs=4, seed=seed),
    "rl": lambda seed: PolicyBasedRL(trial_per_collect=4, seed=seed),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), default="evolution")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--search-lr", action="store_true", help="search the learning rate with the architecture"
    )
    parser.add_argument(
        "--execution",
        choices=["process", "function", "cgo"],
        default="process",
        help="a process per trial (resumable with nni-pl resume), pre-warmed workers (faster), or "
        "cgo: up to --max-models trials trained together in one process (one data pipeline)",
    )
    parser.add_argument(
        "--max-models", type=int, default=4, help="with --execution cgo: trials merged per process"
    )
    parser.add_argument("--port", type=int, default=None, help="serve the dashboard on this port")
    parser.add_argument("--workdir", default=None, help="experiment working directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    evaluator = Classification(
        train_dataloaders={
            "factory": "nni_pl.nas.evaluator.data:digits_loaders",
            "kwargs": {"batch_size": 64},
        },
        learning_rate=ValueChoice([0.01, 0.003], label="lr") if args.search_lr else 0.01,
        max_epochs=args.epochs,
    )
    fields = {"experiment_working_directory": args.workdir} if args.workdir else {}
    exp = NasExperiment(
        DigitsSpace(),
        evaluator,
        STRATEGIES[args.strategy](args.seed),
        seed=args.seed,
        execution=args.execution,
        cgo={"max_models": args.max_models, "batch_wait_s": 2.0} if args.execution == "cgo" else None,
        max_trial_number=args.trials,
        trial_concurrency=args.concurrency,
        experiment_name=f"nas-digits-{args.strategy}",
        **fields,
    )
    exp.run(port=args.port)
    print(f"experiment {exp.id}: {len(exp.trials())} trials")
    for rank, arch in enumerate(exp.export_top_models(top_k=3), 1):
        print(rank, json.dumps(arch))


if __name__ == "__main__":
    main()
