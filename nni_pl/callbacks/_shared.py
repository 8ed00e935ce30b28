"""Pieces the compression callbacks share: the ``dummy_input`` argument and re-wrapping DDP after a module change."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from nni_pl.errors import ConfigError

__all__ = ["check_dummy_input", "dummy_from", "rewrap_ddp"]


def check_dummy_input(value: Any, field: str) -> None:
    """``value`` must be ``None``, a tensor, a tuple of tensors or a shape such as ``[1, 3, 32, 32]``."""
    if value is None or isinstance(value, torch.Tensor):
        return
    if isinstance(value, (list, tuple)) and value:
        if all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in value):
            return  # a shape
        if all(isinstance(d, torch.Tensor) for d in value):
            return
    raise ConfigError(
        field,
        f"must be a tensor, a tuple of tensors or a shape such as [1, 3, 32, 32], got {type(value).__name__} "
        f"{value!r:.80}",
    )


def dummy_from(value: Any, pl_module: pl.LightningModule, device: torch.device | None = None) -> Any:
    """The example input: ``value`` (a shape becomes random data), else the module's ``example_input_array``."""
    dummy = value if value is not None else pl_module.example_input_array
    if isinstance(dummy, (list, tuple)) and dummy and all(isinstance(d, int) for d in dummy):
        dummy = torch.randn(*dummy)
    if device is not None and isinstance(dummy, torch.Tensor):
        dummy = dummy.to(device)
    return dummy


def rewrap_ddp(trainer: pl.Trainer) -> None:
    """After the module's layers or parameters changed: drop the old DistributedDataParallel wrapper, wrap again."""
    from lightning.pytorch.strategies import DDPStrategy

    strategy = trainer.strategy
    module = trainer.lightning_module
    if isinstance(strategy, DDPStrategy) and strategy.model is not module:
        # the old wrapper holds the old parameters (and no new buffers) and their gradient hooks
        strategy.model = module
        strategy.configure_ddp()  # every rank does this at the same hook, as DDP's constructor requires
