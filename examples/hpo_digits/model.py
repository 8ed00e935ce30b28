"""A small MLP on scikit-learn's 8x8 handwritten digits: fast enough for HPO demos on a laptop CPU.

The data (1797 images, 10 classes) ships with scikit-learn, so nothing is downloaded. The split into
training and validation sets is fixed by ``seed``, so every trial sees the same validation set and
the tuner compares like with like.
"""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["DigitsDataModule", "DigitsMLP"]


class DigitsDataModule(pl.LightningDataModule):
    """scikit-learn's ``load_digits``, scaled to [0, 1] and split deterministically into train/val.

    Args:
        batch_size: training batch size (validation uses one batch of everything).
        val_fraction: the share of the 1797 images held out for validation.
        seed: fixes the split (not the training randomness; use ``seed_everything`` for that).
    """

    def __init__(self, batch_size: int = 64, val_fraction: float = 0.2, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, but got {batch_size!r}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"`0 < val_fraction < 1` must hold, but got {val_fraction=}")
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.seed = seed
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None

    def setup(self, stage: str) -> None:
        if self.train_set is not None:
            return
        from sklearn.datasets import load_digits  # imported here: scikit-learn is an example-only dependency

        digits = load_digits()
        x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
        y = torch.tensor(digits.target, dtype=torch.long)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))
        n_val = round(len(x) * self.val_fraction)
        val, train = order[:n_val], order[n_val:]
        self.train_set = TensorDataset(x[train], y[train])
        self.val_set = TensorDataset(x[val], y[val])

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None
        return DataLoader(self.val_set, batch_size=len(self.val_set))


class DigitsMLP(pl.LightningModule):
    """A two-layer perceptron for 8x8 digits; logs ``val_acc`` and ``val_loss`` once per validation.

    Args:
        learning_rate: the optimiser's learning rate.
        hidden_size: width of the hidden layer.
        dropout: dropout probability after the hidden layer.
        optimizer: ``"Adam"`` or ``"SGD"`` (with momentum 0.9).
    """

    def __init__(
        self,
        learning_rate: float = 1e-2,
        hidden_size: int = 128,
        dropout: float = 0.1,
        optimizer: Literal["Adam", "SGD"] = "Adam",
    ) -> None:
        super().__init__()
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, but got {learning_rate!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`0 <= dropout < 1` must hold, but got {dropout=}")
        if optimizer not in ("Adam", "SGD"):
            raise ValueError(f"optimizer must be 'Adam' or 'SGD', but got {optimizer!r}")
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Linear(64, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, 10),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y), prog_bar=True)
        self.log("val_acc", (logits.argmax(dim=1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        lr = self.hparams["learning_rate"]
        if self.hparams["optimizer"] == "SGD":
            return torch.optim.SGD(self.parameters(), lr=lr, momentum=0.9)
        return torch.optim.Adam(self.parameters(), lr=lr)
