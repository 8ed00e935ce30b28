"""A real 2-process DDP one-shot search on CPU (gloo), for ``test_oneshot_ddp.py``: ``python _ddp_oneshot.py OUT``.

Lightning's ``strategy="ddp"`` starts rank 1 by running this script again. Each rank trains on its own data (no
distributed sampler; the ranks shuffle differently), so the architecture each would learn alone differs; the
strategies average the architecture gradients and take sampled architectures from rank 0. For DARTS, ENAS and
SPOS, each rank saves ``OUT/<strategy>_rank<r>.pt``: its architecture parameters and the exported architecture.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

from nni_pl._lightning import quiet_trainer_kwargs
from nni_pl.nas.evaluator import Classification
from nni_pl.nas.evaluator.data import digits_loaders
from nni_pl.nas.oneshot.runner import paired_loader
from nni_pl.nas.oneshot.supernet import build_supernet
from nni_pl.nas.strategy import DARTS, ENAS, Proxyless, RandomOneShot

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.nas.oneshot_spaces import DigitsConvSpace


def main(out: Path) -> None:
    torch.set_num_threads(1)
    for strategy in (
        DARTS(seed=0),
        ENAS(seed=0, ctrl_steps_aggregate=2),
        RandomOneShot(seed=0),
        Proxyless(seed=0),
    ):
        torch.manual_seed(0)
        space = DigitsConvSpace()
        net = build_supernet(space, strategy.name)
        ev = Classification(train_dataloaders="nni_pl.nas.evaluator.data:digits_loaders", learning_rate=0.01)
        module = strategy.build_module(ev.build_module(net), net)
        trainer = pl.Trainer(
            **quiet_trainer_kwargs(
                max_epochs=1,
                limit_train_batches=6,
                limit_val_batches=2,
                accelerator="cpu",
                devices=2,
                strategy="ddp",
                use_distributed_sampler=False,
                num_sanity_val_steps=0,
            )
        )
        rank = int(__import__("os").environ.get("LOCAL_RANK", "0"))
        train, val = digits_loaders(batch_size=50, limit=600, seed=rank)  # each rank its own order of data
        loader = paired_loader(train, val) if module.bilevel else train
        trainer.fit(module, loader, val)
        state = {
            "world_size": trainer.world_size,
            "rank": trainer.global_rank,
            "arch": module.export(),
            "arch_params": {
                k: v.detach().clone()
                for k, v in module.state_dict().items()
                if k.startswith(("alpha", "controller"))
            },
            "weights": {k: v.detach().clone() for k, v in module.inner.named_parameters()},
        }
        torch.save(state, out / f"{strategy.name}_rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
