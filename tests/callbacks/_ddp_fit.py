"""A real 2-process DDP fit on CPU (gloo) as one NNI trial, for ``test_ddp.py``: ``python _ddp_fit.py OUT_DIR``.

Run with the trial's environment (``NNI_SYS_DIR``...). Lightning's ``strategy="ddp"`` starts rank 1 by running this
script again, so both ranks are in the trial. Each rank trains on data of its own (no distributed sampler, seeded by
the rank), so a pruner that reads data (Taylor) would choose other channels on each rank; the model carries
``NNICallback`` (monitor ``val_epoch``: the epoch number) and ``PruningCallback`` (TaylorFO, one-shot at epoch 1,
speed-up). Rank 0 plays the manager: during epoch 2 it writes the trial's stop file. At the end of ``fit`` each rank
saves ``OUT_DIR/rank<r>.pt``: its state dict, the callback's masks and where it stopped.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

from nni_pl import trial
from nni_pl.callbacks import NNICallback, PruningCallback

MAX_EPOCHS = 4
STOP_DURING_EPOCH = 2
PRUNE_AT_EPOCH = 1


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 3),
        )
        self.example_input_array = torch.randn(1, 1, 8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("val_epoch", float(self.current_epoch), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def _data(self, seed: int, n: int) -> DataLoader:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 1, 8, 8, generator=g) * (1 + self.global_rank)
        return DataLoader(TensorDataset(x, torch.randint(0, 3, (n,), generator=g)), batch_size=8)

    def train_dataloader(self) -> DataLoader:
        return self._data(100 + self.global_rank, 32)  # each rank its own data

    def val_dataloader(self) -> DataLoader:
        return self._data(200 + self.global_rank, 8)


class Manager(pl.Callback):
    """Asks the trial to stop, as the manager does when the assessor says Bad: at any moment, on one machine."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        out = trial.get_output_dir()
        if trainer.is_global_zero and trainer.current_epoch == STOP_DURING_EPOCH and out is not None:
            (out / ".nni").mkdir(exist_ok=True)
            (out / ".nni" / "stop").touch()


class Record(pl.Callback):
    def __init__(self, out: Path, nni: NNICallback, pruning: PruningCallback) -> None:
        self.out, self.nni, self.pruning = out, nni, pruning
        self.wrapped = False

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        ddp = trainer.model
        self.wrapped = isinstance(ddp, DistributedDataParallel) and ddp.module is pl_module

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.save(
            {
                "state_dict": {k: v.detach().cpu() for k, v in pl_module.state_dict().items()},
                "masks": self.pruning.masks,
                "done_steps": self.pruning.done_steps,
                "sped_up": self.pruning.sped_up,
                "current_epoch": trainer.current_epoch,
                "stopped_epoch": self.nni.stopped_epoch,
                "world_size": trainer.world_size,
                "ddp_wraps_the_small_module": self.wrapped,
            },
            self.out / f"rank{trainer.global_rank}.pt",
        )


def main(out: Path) -> None:
    torch.manual_seed(0)
    nni = NNICallback(monitor="val_epoch", mode="max")
    pruning = PruningCallback(
        pruner="taylorfo",
        config_list=[{"sparsity": 0.5, "op_types": ["Conv2d"]}],
        start_epoch=PRUNE_AT_EPOCH,
        pruning_params={"training_batches": 2},
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=MAX_EPOCHS,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[nni, pruning, Manager(), Record(out, nni, pruning)],
    )
    trainer.fit(Net())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
