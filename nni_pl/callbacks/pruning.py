"""PruningCallback: NNI pruning during ``Trainer.fit``, ending with a physically smaller model.

One-shot or scheduled (linear / AGP over epochs): at the start of each pruning epoch the LightningModule is pruned
with one of nni-pl's pruners; the epochs in between fine-tune it while masked weights are kept at zero. After the
last pruning step ``ModelSpeedup`` replaces the module's layers in place (``trainer.model`` *is* the small model),
the optimizers are rebuilt from ``configure_optimizers`` and the remaining epochs fine-tune the small model, so
the checkpoints saved from then on hold the small model. A checkpoint carries the pruning masks and the dummy input
under ``"nni_pl_pruning"``: ``trainer.fit(model, ckpt_path=...)`` with a freshly built (dense) module and this
callback resumes the fit (the module is shrunk before the weights load), and :meth:`PruningCallback.restore` rebuilds
the small architecture for inference.

Example (YAML for ``LightningCLI``)::

    trainer:
      callbacks:
        - class_path: nni_pl.callbacks.PruningCallback
          init_args:
            pruner: l1
            config_list: [{sparsity: 0.5, op_types: [Conv2d]}]
            schedule: agp
            start_epoch: 0
            end_epoch: 2
            dummy_input: [1, 3, 32, 32]   # a shape, or leave out to use module.example_input_array

    >>> from nni_pl.callbacks import PruningCallback
    >>> PruningCallback(pruner="l1", config_list=[{"sparsity": 0.5, "op_types": ["Conv2d"]}], schedule="agp",
    ...                 start_epoch=0, end_epoch=2)
    PruningCallback(pruner='l1', schedule='agp', start_epoch=0, end_epoch=2, speedup=True)
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from nni_pl.errors import ConfigError

__all__ = ["PruningCallback"]

logger = logging.getLogger(__name__)

SCHEDULES = ("oneshot", "linear", "agp")
CHECKPOINT_KEY = "nni_pl_pruning"


def _fraction(schedule: str, i: int, n: int) -> float:
    """Share of the final sparsity after step ``i`` of ``n`` (1-based)."""
    if schedule == "oneshot" or n <= 1:
        return 1.0
    if schedule == "linear":
        return i / n
    return 1.0 - (1.0 - i / n) ** 3


class PruningCallback(pl.Callback):
    """Prune the LightningModule during ``fit`` and speed it up at the end of the schedule.

    Args:
        pruner: a ``pruning_algorithm`` name (``"level"``, ``"l1"``, ``"l2"``, ``"fpgm"``, ...; see
            ``nni_pl.compression.pruning.scheduled.PRUNING_ALGORITHMS``) or a pruner class name.
        config_list: NNI ``config_list`` with the final sparsities; module names are those of the LightningModule
            (e.g. ``model.conv1`` when the network is ``self.model``).
        schedule: ``"oneshot"`` (prune once at ``start_epoch``), ``"linear"`` or ``"agp"`` (one step at the start
            of every epoch from ``start_epoch`` to ``end_epoch``, sparsity rising linearly / cubically).
        start_epoch: first pruning epoch.
        end_epoch: last pruning epoch (``None``: ``start_epoch`` for one-shot, else ``max_epochs // 2``).
        dummy_input: example input (a tensor, a tuple of them, or a shape list such as ``[1, 3, 32, 32]``);
            ``None``: ``module.example_input_array``. Needed for the speed-up and dependency-aware pruning.
        speedup: replace the layers by smaller ones after the last step (``False``: the model stays masked).
        pruning_params: extra keyword arguments of the pruner (``mode`` defaults to ``"dependency_aware"`` for
            structured pruners when there is a dummy input). Pruners that train or read activations (taylorfo,
            apoz, mean_activation, slim, admm, movement) get an evaluator over the running fit (its train
            dataloader, ``training_step`` and first optimizer) unless ``pruning_params["evaluator"]`` is given.

    Example:
        >>> cb = PruningCallback(pruner="l1", config_list=[{"sparsity": 0.5, "op_types": ["Conv2d"]}])
        >>> cb.steps(max_epochs=5)
        [0]
    """

    def __init__(
        self,
        pruner: str = "l1",
        config_list: list[dict[str, Any]] | None = None,
        schedule: str = "oneshot",
        start_epoch: int = 0,
        end_epoch: int | None = None,
        dummy_input: Any = None,
        speedup: bool = True,
        pruning_params: dict[str, Any] | None = None,
    ) -> None:
        from nni_pl.compression.pruning.config import validate_config_list
        from nni_pl.compression.pruning.scheduled import pruner_class

        if schedule not in SCHEDULES:
            raise ConfigError("schedule", f"must be one of {list(SCHEDULES)}, got {schedule!r}")
        if not config_list:
            raise ConfigError("config_list", "is required, e.g. [{'sparsity': 0.5, 'op_types': ['Conv2d']}]")
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ConfigError("start_epoch", f"must be an integer >= 0, got {start_epoch!r}")
        if end_epoch is not None and (not isinstance(end_epoch, int) or end_epoch < start_epoch):
            raise ConfigError(
                "end_epoch", f"must be an integer >= start_epoch ({start_epoch}), got {end_epoch!r}"
            )
        self.pruner_cls = pruner_class(pruner)
        validate_config_list(config_list, extra_keys=getattr(self.pruner_cls, "extra_keys", ()))
        self.pruner = pruner
        self.config_list = [dict(c) for c in config_list]
        self.schedule = schedule
        self.start_epoch = start_epoch
        self.end_epoch = end_epoch
        self.dummy_input = dummy_input
        self.speedup = speedup
        self.pruning_params = dict(pruning_params or {})
        self.masks: dict[str, dict[str, Any]] = {}
        self.done_steps: list[int] = []
        self.sped_up = False
        self.speedup_report: Any = None
        self._hooked: tuple[Any, Any] | None = None

    def __repr__(self) -> str:
        return (
            f"PruningCallback(pruner={self.pruner!r}, schedule={self.schedule!r}, start_epoch={self.start_epoch}, "
            f"end_epoch={self.end_epoch}, speedup={self.speedup})"
        )

    # -- schedule -----------------------------------------------------------------------------------------------------
    def steps(self, max_epochs: int | None) -> list[int]:
        """The epochs at whose start the model is pruned."""
        if self.schedule == "oneshot":
            return [self.start_epoch]
        end = self.end_epoch
        if end is None:
            end = max(self.start_epoch, ((max_epochs or 2) // 2))
        return list(range(self.start_epoch, end + 1))

    def _dummy(self, pl_module: pl.LightningModule) -> Any:
        import torch

        dummy = self.dummy_input if self.dummy_input is not None else pl_module.example_input_array
        if isinstance(dummy, (list, tuple)) and dummy and all(isinstance(d, int) for d in dummy):
            dummy = torch.randn(*dummy)
        if isinstance(dummy, torch.Tensor):
            dummy = dummy.to(pl_module.device)
        return dummy

    # -- pruning ------------------------------------------------------------------------------------------------------
    def _trainer_evaluator(self, pl_module: pl.LightningModule) -> Any:
        """An Evaluator over the running fit: the trainer's train dataloader, ``training_step`` and first optimizer."""
        from nni_pl.compression import Evaluator

        trainer = pl_module.trainer

        def train_fn(model: Any, optimizer_step_hook: Any, max_steps: int | None) -> None:
            optimizer = trainer.optimizers[0]
            loader = trainer.train_dataloader
            for i, batch in enumerate(loader):
                if max_steps is not None and i >= max_steps:
                    break
                batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
                out = pl_module.training_step(batch, i)
                loss = out["loss"] if isinstance(out, dict) else out
                optimizer.zero_grad()
                loss.backward()
                optimizer_step_hook()
                optimizer.step()
            optimizer.zero_grad()

        return Evaluator.from_function(train_fn)

    def _prune(self, pl_module: pl.LightningModule, fraction: float) -> None:
        import torch

        from nni_pl.compression.pruning.masks import apply_masks
        from nni_pl.compression.pruning.scheduled import _with_sparsity

        dummy = self._dummy(pl_module)
        params = dict(self.pruning_params)
        modes = getattr(self.pruner_cls, "modes", ("normal",))
        if "mode" not in params and dummy is not None and getattr(self.pruner_cls, "structured", False):
            if "dependency_aware" in modes:
                params["mode"] = "dependency_aware"
        if params.get("mode") == "dependency_aware":
            params.setdefault("dummy_input", dummy)
        if getattr(self.pruner_cls, "needs_evaluator", False) and "evaluator" not in params:
            params["evaluator"] = self._trainer_evaluator(pl_module)
        config = _with_sparsity(self.config_list, lambda s: s * fraction)
        if self.masks:
            apply_masks(pl_module, self.masks)
        was_training = pl_module.training
        pl_module.eval()
        try:
            _, masks = self.pruner_cls(pl_module, config, **params).compress()
        finally:
            pl_module.train(was_training)
        for name, entry in self.masks.items():
            for key, old in entry.items():
                if name in masks and key in masks[name]:
                    masks[name][key] = masks[name][key] * old.to(masks[name][key])
                elif name not in masks:
                    masks[name] = entry
        with torch.no_grad():
            apply_masks(pl_module, masks)
        self.masks = masks

    def _speedup(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dummy = self._dummy(pl_module)
        if dummy is None:
            raise ConfigError(
                "dummy_input",
                "the speed-up traces the model: pass dummy_input (a tensor or a shape like [1, 3, 32, 32]) "
                "or set example_input_array on the LightningModule",
            )
        self._apply_speedup(pl_module, dummy, self.masks)
        logger.info("PruningCallback: speed-up done: %s", self.speedup_report)

    def _apply_speedup(
        self, pl_module: pl.LightningModule, dummy: Any, masks: dict[str, dict[str, Any]]
    ) -> None:
        from nni_pl.compression.speedup import ModelSpeedup

        was_training = pl_module.training
        pl_module.eval()
        try:
            speedup = ModelSpeedup(pl_module, dummy, masks)
            speedup.speedup_model()  # replaces the module's layers in place
        finally:
            pl_module.train(was_training)
        self.speedup_report = speedup.report
        self.sped_up = True

    def _rebuild_optimizers(self, trainer: pl.Trainer) -> None:
        # the optimizers hold the old (replaced) parameters: build them again from configure_optimizers
        trainer.strategy.setup_optimizers(trainer)

    # -- hooks --------------------------------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        steps = self.steps(trainer.max_epochs)
        epoch = trainer.current_epoch
        if epoch not in steps or epoch in self.done_steps:
            return
        if self.sped_up:  # e.g. resumed from a checkpoint of a fit that ended before the schedule did
            logger.warning(
                "PruningCallback: epoch %d was a pruning step, but the model is already sped up; not pruning it again",
                epoch,
            )
            return
        i = steps.index(epoch) + 1
        fraction = _fraction(self.schedule, i, len(steps))
        self._prune(pl_module, fraction)
        self.done_steps.append(epoch)
        logger.info(
            "PruningCallback: epoch %d, step %d/%d, %.0f%% of the final sparsity",
            epoch,
            i,
            len(steps),
            fraction * 100,
        )
        if i == len(steps) and self.speedup:
            self._speedup(trainer, pl_module)
            self._rebuild_optimizers(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self.masks and not self.sped_up:
            from nni_pl.compression.pruning.masks import apply_masks

            apply_masks(pl_module, self.masks)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.masks and self.speedup and not self.sped_up:
            logger.warning(
                "PruningCallback: fit ended before the last pruning step (epochs %s, done %s); speeding up the model "
                "as pruned so far",
                self.steps(trainer.max_epochs),
                self.done_steps,
            )
            self._speedup(trainer, pl_module)
            self._rebuild_optimizers(trainer)
            # rewrite the newest checkpoint so that it holds the small model (and says so: fit(ckpt_path=...) and
            # restore() rebuild it from the masks saved with it)
            for cb in trainer.checkpoint_callbacks:
                path = getattr(cb, "last_model_path", "") or getattr(cb, "best_model_path", "")
                if path:
                    trainer.save_checkpoint(path)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.masks:
            dummy = self._dummy(pl_module)
            checkpoint[CHECKPOINT_KEY] = {
                "masks": {n: {k: v.detach().cpu() for k, v in e.items()} for n, e in self.masks.items()},
                "dummy_input": dummy.detach().cpu() if hasattr(dummy, "detach") else dummy,
                "sped_up": self.sped_up,
            }

    def state_dict(self) -> dict[str, Any]:
        return {"done_steps": list(self.done_steps), "sped_up": self.sped_up}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.done_steps = list(state_dict.get("done_steps", []))

    # -- resuming a fit (``trainer.fit(model, ckpt_path=...)``) -----------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Lightning loads the checkpoint's weights right after the LightningModule's ``on_load_checkpoint`` and before
        # any callback sees the checkpoint. A checkpoint written after the speed-up holds the small model, so the
        # freshly built dense module must be shrunk first: wrap the module's hook for the length of this run.
        if stage != "fit" or self._hooked is not None:
            return
        original = pl_module.__dict__.get("on_load_checkpoint")
        bound = pl_module.on_load_checkpoint

        def on_load_checkpoint(checkpoint: dict[str, Any]) -> None:
            self._shrink_before_load(pl_module, checkpoint)
            return bound(checkpoint)

        pl_module.on_load_checkpoint = on_load_checkpoint  # type: ignore[method-assign]
        self._hooked = (pl_module, original)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._hooked is None:
            return
        module, original = self._hooked
        if original is None:
            module.__dict__.pop("on_load_checkpoint", None)
        else:
            module.on_load_checkpoint = original  # type: ignore[method-assign]
        self._hooked = None

    def _shrink_before_load(self, pl_module: pl.LightningModule, checkpoint: Mapping[str, Any]) -> None:
        info = checkpoint.get(CHECKPOINT_KEY)
        if not info:
            return
        masks = copy.deepcopy(info["masks"])
        if info.get("sped_up") and not self.sped_up:
            self._apply_speedup(pl_module, info["dummy_input"], masks)
            logger.info("PruningCallback: resuming a sped-up model: %s", self.speedup_report)
        # masked but not yet sped up: the loaded weights are already zero where masked; keep them masked while
        # fine-tuning and let the next pruning steps build on these masks
        self.masks = masks

    # -- loading ------------------------------------------------------------------------------------------------------
    @staticmethod
    def restore(
        module: pl.LightningModule, checkpoint_path: str | Path, map_location: Any = "cpu"
    ) -> pl.LightningModule:
        """Load a checkpoint written after the speed-up into a freshly built (dense) module.

        The masks stored in the checkpoint are applied and ``ModelSpeedup`` shrinks ``module`` the same way, then the
        weights are loaded. Returns ``module`` (modified in place).

        Example:
            >>> model = PruningCallback.restore(MyModule(), "checkpoints/last.ckpt")  # doctest: +SKIP
        """
        import torch

        from nni_pl.compression.pruning.masks import apply_masks
        from nni_pl.compression.speedup import ModelSpeedup

        checkpoint = torch.load(checkpoint_path, map_location=map_location, weights_only=False)
        info = checkpoint.get(CHECKPOINT_KEY)
        if info is None:
            raise ConfigError(
                "checkpoint_path", f"{checkpoint_path} has no pruning information ({CHECKPOINT_KEY!r})"
            )
        masks = copy.deepcopy(info["masks"])
        if info.get("sped_up"):
            module.eval()
            ModelSpeedup(module, info["dummy_input"], masks).speedup_model()
        else:
            apply_masks(module, masks)
        module.load_state_dict(checkpoint["state_dict"])
        return module
