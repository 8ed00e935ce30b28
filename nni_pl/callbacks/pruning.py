"""PruningCallback: NNI pruning during ``Trainer.fit``, ending with a physically smaller model.

A thin adapter: the schedule (:func:`~nni_pl.compression.pruning.schedule.schedule_fraction`) and each pruning
step (:func:`~nni_pl.compression.pruning.schedule.prune_step`, which keeps earlier masks) are the functions the
scheduled pruners use; the callback maps them to Trainer hooks. One-shot or scheduled (linear / AGP over epochs):
at the start of each pruning epoch the LightningModule is pruned with one of nni-pl's pruners; the epochs in
between fine-tune it while masked weights are kept at zero. After the last pruning step ``ModelSpeedup`` replaces
the module's layers in place (``trainer.model`` *is* the small model), the optimizers are rebuilt from
``configure_optimizers`` and the remaining epochs fine-tune the small model, so the checkpoints saved from then on
hold the small model. A checkpoint carries the pruning masks and the dummy input under ``"nni_pl_pruning"``:
``trainer.fit(model, ckpt_path=...)`` with a freshly built (dense) module and this callback resumes the fit (the
module is shrunk before the weights load), and :meth:`PruningCallback.restore` rebuilds the small architecture for
inference.

Under DDP the masks are computed on global rank 0 only and broadcast (``trainer.strategy.broadcast``), so pruners
that read data (activations, gradients) give every rank the same architecture; after the speed-up the small
module is wrapped in DDP again.

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
import inspect
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from typing_extensions import override

from nni_pl.callbacks._shared import check_dummy_input, dummy_from, rewrap_ddp
from nni_pl.compression.pruning.schedule import SCHEDULES, prune_step, schedule_fraction, with_sparsity
from nni_pl.errors import ConfigError, NniPlError

__all__ = ["PruningCallback"]

logger = logging.getLogger(__name__)

CHECKPOINT_KEY = "nni_pl_pruning"

Masks = dict[str, dict[str, torch.Tensor]]


def _field(name: str) -> str:
    return f"PruningCallback.{name}"


def _pruner_class(pruner: Any) -> type:
    from nni_pl.compression.pruning.scheduled import PRUNING_ALGORITHMS, pruner_class

    if not isinstance(pruner, str):
        raise ConfigError(
            _field("pruner"), f"must be a pruning_algorithm name or a pruner class name, got {pruner!r}"
        )
    try:
        return pruner_class(pruner)
    except ConfigError as e:
        raise ConfigError(
            _field("pruner"),
            f"unknown pruning_algorithm {pruner!r}; use one of {sorted(PRUNING_ALGORITHMS)} or a pruner class "
            "name such as 'L1NormPruner'",
        ) from e


def _pruner_arguments(cls: type) -> set[str]:
    """The keyword arguments ``cls`` accepts besides ``model`` and ``config_list`` (following ``**kwargs`` up)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    if getattr(cls, "needs_evaluator", False):
        names |= {"trainer", "optimizer", "criterion"}  # NNI v2's way of giving an evaluator
    return names - {"self", "model", "config_list", "nni"}


class _Batches:
    """The running fit's training batches for a second Trainer, without the loader's sampler (whose epoch the
    second Trainer would otherwise set)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[Any]:
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


def _batches(loaders: Any) -> Any:
    if isinstance(loaders, Mapping):
        return {k: _Batches(v) for k, v in loaders.items()}
    if isinstance(loaders, (list, tuple)):
        return [_Batches(v) for v in loaders]
    return _Batches(loaders)


class PruningCallback(Callback):
    """Prune the LightningModule during ``fit`` and speed it up at the end of the schedule.

    Args:
        pruner: a ``pruning_algorithm`` name (``"level"``, ``"l1"``, ``"l2"``, ``"fpgm"``, ...; see
            ``nni_pl.compression.pruning.scheduled.PRUNING_ALGORITHMS``) or a pruner class name.
        config_list: NNI ``config_list`` with the final sparsities; module names are those of the LightningModule
            (e.g. ``model.conv1`` when the network is ``self.model``).
        schedule: ``"oneshot"`` (prune once at ``start_epoch``), ``"linear"`` or ``"agp"`` (one step at the start
            of every epoch from ``start_epoch`` to ``end_epoch``, sparsity rising linearly / cubically). A unit
            pruned at one step stays pruned and counts toward the next step's sparsity.
        start_epoch: first pruning epoch.
        end_epoch: last pruning epoch (``None``: ``start_epoch`` for one-shot, else ``max_epochs // 2``).
        dummy_input: example input (a tensor, a tuple of them, or a shape list such as ``[1, 3, 32, 32]``);
            ``None``: ``module.example_input_array``. Needed for the speed-up and dependency-aware pruning.
        speedup: replace the layers by smaller ones after the last step (``False``: the model stays masked).
        pruning_params: extra keyword arguments of the pruner (``mode`` defaults to ``"dependency_aware"`` for
            structured pruners when there is a dummy input). Pruners that train or read activations (taylorfo,
            apoz, mean_activation, slim, admm, movement) get an evaluator
            (:meth:`~nni_pl.compression.Evaluator.from_lightning`) over a copy of the module and the running
            fit's training batches, unless ``pruning_params["evaluator"]`` is given: the copy trains (a second,
            quiet ``Trainer`` on the module's device), so the fit's own weights and optimizer state are untouched.

    Raises:
        ConfigError: an argument is invalid; the message names it and echoes the value.

    Example:
        >>> cb = PruningCallback(pruner="l1", config_list=[{"sparsity": 0.5, "op_types": ["Conv2d"]}])
        >>> cb.steps(max_epochs=5)
        [0]
    """

    def __init__(
        self,
        *,
        pruner: str = "l1",
        config_list: list[dict[str, Any]] | None,
        schedule: str = "oneshot",
        start_epoch: int = 0,
        end_epoch: int | None = None,
        dummy_input: Any = None,
        speedup: bool = True,
        pruning_params: dict[str, Any] | None = None,
    ) -> None:
        from nni_pl.compression.pruning.config import validate_config_list

        super().__init__()
        if schedule not in SCHEDULES:
            raise ConfigError(_field("schedule"), f"must be one of {list(SCHEDULES)}, got {schedule!r}")
        if config_list is None:
            raise ConfigError(
                _field("config_list"),
                "is required, e.g. [{'sparsity': 0.5, 'op_types': ['Conv2d']}], got None",
            )
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ConfigError(_field("start_epoch"), f"must be an integer >= 0, got {start_epoch!r}")
        if end_epoch is not None and (
            isinstance(end_epoch, bool) or not isinstance(end_epoch, int) or end_epoch < start_epoch
        ):
            raise ConfigError(
                _field("end_epoch"), f"must be an integer >= start_epoch ({start_epoch}), got {end_epoch!r}"
            )
        check_dummy_input(dummy_input, _field("dummy_input"))
        if not isinstance(speedup, bool):
            raise ConfigError(
                _field("speedup"), f"must be True or False, got {type(speedup).__name__} {speedup!r}"
            )
        self.pruner_cls = _pruner_class(pruner)
        validate_config_list(config_list, extra_keys=getattr(self.pruner_cls, "extra_keys", ()))
        params = self._check_pruning_params(pruning_params)

        self.pruner = pruner
        self.config_list = [dict(c) for c in config_list]
        self.schedule = schedule
        self.start_epoch = start_epoch
        self.end_epoch = end_epoch
        self.dummy_input = dummy_input
        self.speedup = speedup
        self.pruning_params = params
        self.masks: Masks = {}
        self.done_steps: list[int] = []
        self.sped_up = False
        self.speedup_report: Any = None
        self._hooked: tuple[Any, Any] | None = None

    def _check_pruning_params(self, pruning_params: Any) -> dict[str, Any]:
        if pruning_params is None:
            return {}
        if not isinstance(pruning_params, Mapping):
            raise ConfigError(
                _field("pruning_params"),
                f"must be a dict of the pruner's keyword arguments, got {type(pruning_params).__name__}",
            )
        known = _pruner_arguments(self.pruner_cls)
        for key, value in pruning_params.items():
            if key not in known:
                raise ConfigError(
                    _field(f"pruning_params.{key}"),
                    f"{key!r} is not an argument of {self.pruner_cls.__name__}; it takes {sorted(known)}",
                )
            if key == "mode" and value not in getattr(self.pruner_cls, "modes", ("normal",)):
                raise ConfigError(
                    _field("pruning_params.mode"),
                    f"{self.pruner_cls.__name__} takes mode in {list(self.pruner_cls.modes)}, got {value!r}",
                )
            if key == "evaluator" and not (
                callable(getattr(value, "train", None)) and hasattr(value, "forward")
            ):
                raise ConfigError(
                    _field("pruning_params.evaluator"),
                    f"must be an nni_pl.compression.Evaluator, got {type(value).__name__}",
                )
        return dict(pruning_params)

    def __repr__(self) -> str:
        return (
            f"PruningCallback(pruner={self.pruner!r}, schedule={self.schedule!r}, start_epoch={self.start_epoch}, "
            f"end_epoch={self.end_epoch}, speedup={self.speedup})"
        )

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(
            pruner=self.pruner, schedule=self.schedule, start_epoch=self.start_epoch
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
        return dummy_from(self.dummy_input, pl_module, pl_module.device)

    # -- pruning ------------------------------------------------------------------------------------------------------
    def _evaluator(self, trainer: pl.Trainer, module: pl.LightningModule) -> Any:
        """An Evaluator that trains ``module`` (a copy) with a second Trainer on the running fit's batches."""
        from nni_pl.compression import Evaluator

        device = module.device
        if device.type == "cuda":
            placement: dict[str, Any] = {"accelerator": "gpu", "devices": [device.index or 0]}
        else:
            placement = {"accelerator": device.type, "devices": 1}
        kwargs = {
            **placement,
            "precision": trainer.precision,
            "num_sanity_val_steps": 0,
            "use_distributed_sampler": False,
        }
        return Evaluator.from_lightning(module, kwargs, train_dataloaders=_batches(trainer.train_dataloader))

    def _compute_masks(self, trainer: pl.Trainer, pl_module: pl.LightningModule, fraction: float) -> Masks:
        """This step's masks (merged with the earlier ones), on CPU. Runs on global rank 0 only."""
        dummy = self._dummy(pl_module)
        params = dict(self.pruning_params)
        modes = getattr(self.pruner_cls, "modes", ("normal",))
        structured = getattr(self.pruner_cls, "structured", False)
        if "mode" not in params and dummy is not None and structured and "dependency_aware" in modes:
            params["mode"] = "dependency_aware"
        if params.get("mode") == "dependency_aware":
            params.setdefault("dummy_input", dummy)
        target = pl_module
        if getattr(self.pruner_cls, "needs_evaluator", False) and "evaluator" not in params:
            # the pruner trains or runs the model: let it do so on a copy, so that the fit's weights and
            # optimizer state stay as they are (only the masks are taken from it)
            target = copy.deepcopy(pl_module)  # LightningModule.__getstate__ leaves the trainer out
            params["evaluator"] = self._evaluator(trainer, target)
        config = with_sparsity(self.config_list, lambda s: s * fraction)
        was_training = target.training
        if target is pl_module:
            target.eval()  # tracing the dummy input (dependency-aware mode) must not move BatchNorm statistics
        try:
            masks = prune_step(target, self.pruner_cls, config, self.masks or None, **params)
        finally:
            target.train(was_training)
        return {n: {k: v.detach().cpu() for k, v in e.items()} for n, e in masks.items()}

    def _prune(self, trainer: pl.Trainer, pl_module: pl.LightningModule, fraction: float) -> None:
        from nni_pl.compression.pruning.masks import apply_masks

        masks: Masks | None = None
        failure: BaseException | None = None
        if trainer.is_global_zero:
            try:
                masks = self._compute_masks(trainer, pl_module, fraction)
            except Exception as e:  # the other ranks wait in the broadcast: tell them, rather than hang
                failure = e
        # one set of masks for every rank: data-dependent pruners would pick other units on each rank's data
        shared, error = trainer.strategy.broadcast(
            (masks, None if failure is None else f"{type(failure).__name__}: {failure}"), src=0
        )
        if failure is not None:
            raise failure
        if error is not None or shared is None:
            raise NniPlError(f"PruningCallback: global rank 0 failed to compute the pruning masks ({error})")
        device = pl_module.device
        self.masks = {n: {k: v.to(device) for k, v in e.items()} for n, e in shared.items()}
        apply_masks(pl_module, self.masks)

    def _speedup(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dummy = self._dummy(pl_module)
        if dummy is None:
            raise ConfigError(
                _field("dummy_input"),
                "the speed-up traces the model: pass dummy_input (a tensor or a shape like [1, 3, 32, 32]) "
                "or set example_input_array on the LightningModule",
            )
        self._apply_speedup(pl_module, dummy, self.masks)
        logger.info("PruningCallback: speed-up done: %s", self.speedup_report)
        self._rebuild_training(trainer)

    def _apply_speedup(
        self, pl_module: pl.LightningModule, dummy: Any, masks: Mapping[str, Mapping[str, Any]]
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

    @staticmethod
    def _rebuild_training(trainer: pl.Trainer) -> None:
        """After the layers were replaced: DDP and the optimizers hold the old parameters; build them again."""
        rewrap_ddp(trainer)
        trainer.strategy.setup_optimizers(trainer)

    # -- hooks --------------------------------------------------------------------------------------------------------
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

        if stage != TrainerFn.FITTING:
            return
        if not isinstance(trainer.strategy, (SingleDeviceStrategy, DDPStrategy)):
            raise ConfigError(
                "trainer.strategy",
                f"PruningCallback runs on one device or under DDP (strategy='ddp', 'ddp_spawn', ...), "
                f"got {type(trainer.strategy).__name__}; sharded strategies split the weights it masks",
            )
        # Lightning loads the checkpoint's weights right after the LightningModule's ``on_load_checkpoint`` and before
        # any callback sees the checkpoint. A checkpoint written after the speed-up holds the small model, so the
        # freshly built dense module must be shrunk first: wrap the module's hook for the length of this run.
        if self._hooked is not None:
            return
        original = pl_module.__dict__.get("on_load_checkpoint")
        bound = pl_module.on_load_checkpoint

        def on_load_checkpoint(checkpoint: dict[str, Any]) -> None:
            self._shrink_before_load(pl_module, checkpoint)
            return bound(checkpoint)

        pl_module.on_load_checkpoint = on_load_checkpoint  # type: ignore[method-assign]
        self._hooked = (pl_module, original)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._hooked is None:
            return
        module, original = self._hooked
        if original is None:
            module.__dict__.pop("on_load_checkpoint", None)
        else:
            module.on_load_checkpoint = original  # type: ignore[method-assign]
        self._hooked = None

    @override
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
        fraction = schedule_fraction(self.schedule, i, len(steps))
        self._prune(trainer, pl_module, fraction)
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

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.masks and not self.sped_up:
            from nni_pl.compression.pruning.masks import apply_masks

            apply_masks(pl_module, self.masks)  # the optimizer step moved masked weights: zero them again

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.masks and self.speedup and not self.sped_up:
            logger.warning(
                "PruningCallback: fit ended before the last pruning step (epochs %s, done %s); speeding up the model "
                "as pruned so far",
                self.steps(trainer.max_epochs),
                self.done_steps,
            )
            self._speedup(trainer, pl_module)
            # rewrite the newest checkpoint so that it holds the small model (and says so: fit(ckpt_path=...) and
            # restore() rebuild it from the masks saved with it); every rank calls save_checkpoint, rank 0 writes
            for cb in trainer.checkpoint_callbacks:
                path = getattr(cb, "last_model_path", "") or getattr(cb, "best_model_path", "")
                if path:
                    trainer.save_checkpoint(path)

    @override
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

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"done_steps": list(self.done_steps), "sped_up": self.sped_up}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # ``sped_up`` follows the module: _shrink_before_load sets it when it shrinks the freshly built one
        self.done_steps = list(state_dict.get("done_steps", []))

    # -- resuming a fit (``trainer.fit(model, ckpt_path=...)``) -------------------------------------------------------
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
            ``MyModule`` is the LightningModule that was pruned, ``last.ckpt`` a checkpoint its pruning fit
            wrote (``tests/callbacks/test_pruning_callback.py`` makes one):

            >>> model = PruningCallback.restore(MyModule(), "checkpoints/last.ckpt")  # doctest: +SKIP
        """
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
