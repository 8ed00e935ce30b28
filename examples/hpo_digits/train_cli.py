"""The digits MLP behind ``LightningCLI``: tuned with LightningCLI paths as search-space keys.

    python examples/hpo_digits/train_cli.py fit --config callbacks/hpo.yaml --model.learning_rate=0.003
    nni-pl launch examples/hpo_digits/config_cli.yml

Nothing in this script knows about nni-pl: the search space (``search_space_cli.json``) names parameters
by their CLI path (``model.learning_rate``, ``data.batch_size``), the manager appends them to the trial
command as ``--model.learning_rate=...`` (after the config files, so the tuner's values win), and
``callbacks/hpo.yaml`` adds the ``NNICallback``.
"""

from __future__ import annotations

import torch
from lightning.pytorch.cli import LightningCLI
from model import DigitsDataModule, DigitsMLP


def main(args: list[str] | None = None) -> LightningCLI:
    torch.set_num_threads(1)  # trials run side by side; one thread each avoids oversubscription
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
