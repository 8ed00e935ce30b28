"""The digits MLP behind ``LightningCLI``: tune it with LightningCLI paths as search-space keys.

    python examples/hpo_digits/train_cli.py fit --config callbacks/hpo.yaml --model.learning_rate=0.003
    nni-pl launch examples/hpo_digits/config_cli.yml

The search space (``search_space_cli.json``) names parameters by their CLI path, e.g.
``model.learning_rate`` or ``data.batch_size``. This script turns the trial's parameters into the
matching ``--model.learning_rate=...`` arguments after the ones it was given, so the tuner's values
win over the config files; ``TRIAL_BUDGET`` (Hyperband/BOHB) is left to ``NNICallback``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch
from lightning.pytorch.cli import LightningCLI
from model import DigitsDataModule, DigitsMLP

import nni_pl as nni


def parameter_args(params: dict[str, Any]) -> list[str]:
    """``{"model.learning_rate": 0.01}`` -> ``["--model.learning_rate=0.01"]``; non-path keys are skipped."""
    # strings go as they are (jsonargparse would keep JSON quotes); other values as JSON, which it parses
    return [
        f"--{key}={value if isinstance(value, str) else json.dumps(value)}"
        for key, value in params.items()
        if "." in key
    ]


def main(args: list[str] | None = None) -> LightningCLI:
    torch.set_num_threads(1)  # trials run side by side; one thread each avoids oversubscription
    extra = parameter_args(nni.get_next_parameter())
    if args is None:
        # LightningCLI warns when `args` is given while sys.argv has arguments too; extend the latter
        sys.argv.extend(extra)
    else:
        args = [*args, *extra]
    return LightningCLI(
        DigitsMLP,
        DigitsDataModule,
        args=args,
        seed_everything_default=0,
        save_config_callback=None,  # the trial directory already records the parameters
        trainer_defaults={
            "max_epochs": 8,
            "accelerator": "cpu",
            "devices": 1,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
        },
    )


if __name__ == "__main__":
    main()
