"""Two real 2-process DDP fits on CPU (gloo) with QuantizationCallback, for ``test_quantization_ddp.py``.

``python _ddp_quant_fit.py OUT_DIR``: Lightning's ``strategy="ddp"`` starts rank 1 by running this script again.
Each rank trains on data of its own (no distributed sampler, scaled by 1 + rank), so activation ranges and LSQ's
first-batch scales differ between the ranks unless the callback shares rank 0's. Fit 1: QAT wrapped at epoch 1 (in
the middle of the fit: DDP and the optimizers are rebuilt), frozen at epoch 2. Fit 2: LSQ from epoch 0. Each rank
saves ``OUT_DIR/<fit>_rank<r>.pt``: the quantizer's state at the end, rank-local snapshots taken right after a
forward (before any sharing), its weights, and whether DDP wraps the quantized module.
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

from nni_pl.callbacks import QuantizationCallback
from nni_pl.callbacks.quantization import _quantizer_tensors

BATCHES = 3


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 3),
        )
        self.example_input_array = torch.zeros(1, 1, 8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    def _data(self, seed: int, n: int) -> DataLoader:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 1, 8, 8, generator=g) * (1 + self.global_rank)
        return DataLoader(TensorDataset(x, torch.randint(0, 3, (n,), generator=g)), batch_size=8)

    def train_dataloader(self) -> DataLoader:
        return self._data(100 + self.global_rank, 8 * BATCHES)  # each rank its own data

    def val_dataloader(self) -> DataLoader:
        return self._data(200 + self.global_rank, 8)


class Record(pl.Callback):
    def __init__(self, out: Path, tag: str, cb: QuantizationCallback) -> None:
        self.out, self.tag, self.cb = out, tag, cb
        self.local: dict[str, dict[str, torch.Tensor]] = {}
        self.wrapped = False

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Any) -> None:
        q = self.cb.quantizer
        if q is not None and trainer.current_epoch == self.cb.start_epoch:
            batch = trainer.fit_loop.epoch_loop.batch_idx
            self.local[f"epoch{trainer.current_epoch}_batch{batch}"] = {
                k: v.detach().clone() for k, v in _quantizer_tensors(q).items()
            }

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        ddp = trainer.model
        self.wrapped = isinstance(ddp, DistributedDataParallel) and ddp.module is pl_module

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        q = self.cb.quantizer
        assert q is not None
        torch.save(
            {
                "final": {k: v.detach().clone() for k, v in _quantizer_tensors(q).items()},
                "local": self.local,
                "calibration": q.calibration_config(),
                "state_dict": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
                "frozen": q.frozen,
                "steps": self.cb.steps,
                "world_size": trainer.world_size,
                "ddp_wraps_the_quantized_module": self.wrapped,
            },
            self.out / f"{self.tag}_rank{trainer.global_rank}.pt",
        )


def fit(out: Path, tag: str, **kwargs: Any) -> None:
    torch.manual_seed(0)
    cb = QuantizationCallback(**kwargs)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=3,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[cb, Record(out, tag, cb)],
    )
    trainer.fit(Net())
    trainer.strategy.barrier()


def main(out: Path) -> None:
    torch.set_num_threads(1)
    qat = [
        {"quant_types": ["weight", "input"], "quant_bits": 8, "op_types": ["Conv2d", "Linear"]},
        {"quant_types": ["output"], "quant_bits": 8, "op_types": ["ReLU"]},
    ]
    fit(out, "qat", quantizer="qat", config_list=qat, start_epoch=1, freeze_epoch=2)
    lsq = [{"quant_types": ["weight", "input", "output"], "quant_bits": 8, "op_types": ["Conv2d", "Linear"]}]
    fit(out, "lsq", quantizer="lsq", config_list=lsq, start_epoch=0)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
