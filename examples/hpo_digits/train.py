"""Train the digits MLP once: an NNI trial when run by ``nni-pl launch``, a plain run otherwise.

    python examples/hpo_digits/train.py                                # standalone, default parameters
    NNI_PL_PARAMETERS='{"learning_rate": 0.003}' python examples/hpo_digits/train.py
    nni-pl launch examples/hpo_digits/config.yml                       # 10 trials, TPE + Medianstop

The only NNI-specific lines are ``nni.get_next_parameter()`` and the ``NNICallback``, which reports
``val_acc`` after every epoch (for the assessor) and the best one at the end (for the tuner), and
stops training early when the assessor asks.
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from model import DigitsDataModule, DigitsMLP

import nni_pl as nni
from nni_pl.callbacks import NNICallback

DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-2,
    "hidden_size": 128,
    "dropout": 0.1,
    "batch_size": 64,
    "optimizer": "Adam",
    "max_epochs": 8,
    "seed": 0,
}
# Keys the trial receives but does not consume itself: NNICallback maps TRIAL_BUDGET to max_epochs.
PASSED_THROUGH = {"TRIAL_BUDGET"}


def get_params() -> dict[str, Any]:
    """The tuner's parameters merged over ``DEFAULTS``; an unknown key is an error, not a silent no-op."""
    params = nni.get_next_parameter()
    unknown = set(params) - set(DEFAULTS) - PASSED_THROUGH
    if unknown:
        raise SystemExit(
            f"unknown parameter(s) {sorted(unknown)} for this trial; the search space may only use "
            f"{sorted(DEFAULTS)}"
        )
    merged = {**DEFAULTS, **{k: v for k, v in params.items() if k in DEFAULTS}}
    for key in ("hidden_size", "batch_size", "max_epochs", "seed"):  # quniform/randint may give floats
        merged[key] = int(merged[key])
    return merged


def main() -> float:
    # Two trials usually share the machine's cores; one thread each avoids oversubscription.
    torch.set_num_threads(1)
    params = get_params()
    pl.seed_everything(params["seed"], verbose=False)

    model = DigitsMLP(
        learning_rate=params["learning_rate"],
        hidden_size=params["hidden_size"],
        dropout=params["dropout"],
        optimizer=params["optimizer"],
    )
    data = DigitsDataModule(batch_size=params["batch_size"], seed=params["seed"])

    nni_callback = NNICallback(monitor="val_acc", mode="max")
    callbacks: list[Callback] = [nni_callback]
    # Inside an experiment, keep logs and the best checkpoint in the trial's own directory.
    trial_dir = nni.get_output_dir()  # None when run standalone
    output_dir = str(trial_dir) if trial_dir else None
    if output_dir:
        callbacks.append(
            ModelCheckpoint(dirpath=os.path.join(output_dir, "checkpoints"), monitor="val_acc", mode="max")
        )
    trainer = pl.Trainer(
        max_epochs=params["max_epochs"],
        accelerator="cpu",
        devices=1,
        callbacks=callbacks,
        logger=CSVLogger(output_dir, name="logs", version="") if output_dir else False,
        enable_checkpointing=bool(output_dir),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=output_dir,
    )
    trainer.fit(model, datamodule=data)

    score = nni_callback.final_score
    assert score is not None
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    print(f"best val_acc={score:.4f} after {trainer.current_epoch} epoch(s) ({shown})")
    return score


if __name__ == "__main__":
    main()
