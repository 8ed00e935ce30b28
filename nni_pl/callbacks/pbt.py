"""The Lightning side of Population Based Training: continue from the checkpoint PBT names, save the next one.

The algorithm (who copies whom, which hyperparameters change) lives in :class:`nni_pl.hpo.tuners.PBTTuner`;
this callback only maps two Trainer hooks to the two checkpoint folders the tuner puts in every trial's
parameters (``load_checkpoint_dir`` and ``save_checkpoint_dir``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from typing_extensions import override

from nni_pl import trial
from nni_pl.errors import ConfigError
from nni_pl.trial.protocol import LOAD_CHECKPOINT_DIR, SAVE_CHECKPOINT_DIR

__all__ = ["PBTCheckpoint"]

log = logging.getLogger(__name__)


class PBTCheckpoint(Callback):
    """Make each ``Trainer.fit`` one step of a PBT population member.

    With ``tuner: PBTTuner`` every trial trains one step (say ``Trainer(max_epochs=1)``) of one member of
    the population. The tuner's parameters name two folders:

    * when ``fit`` starts, if ``load_checkpoint_dir`` holds ``filename`` (a checkpoint an earlier step
      saved, this member's own or, after exploit, a better member's), the model weights are loaded from
      it, and with ``load_optimizer_state=True`` the optimizer state too (momentum buffers, Adam moments):
      the optimizers ``configure_optimizers`` built from the *new* hyperparameters are loaded and then
      their hyperparameters (``lr``, ``weight_decay``, ``betas``, ..., every param-group entry but the
      parameters) are set back to the new values, so the explored hyperparameters take effect. The
      optimizer state is skipped, with a warning, when the optimizers do not match the checkpoint's (other
      classes, numbers of optimizers, param groups or parameters). LR schedulers, loop counters
      (epoch, global step) and other callbacks' states are *not* restored: the step trains its full
      ``max_epochs`` with fresh schedulers built from the new hyperparameters. In the first generation
      ``load_checkpoint_dir`` is the (empty) ``save_checkpoint_dir``, and nothing is loaded.
    * when training ends (``on_train_end``, which runs before ``on_fit_end``, where
      :class:`~nni_pl.callbacks.NNICallback` reports the final result; so the checkpoint is on disk
      before the tuner hears of the result), ``trainer.save_checkpoint`` writes ``filename`` into
      ``save_checkpoint_dir``. It is called on every rank, as sharded strategies need; Lightning
      writes the file on global rank zero only.

    Outside an experiment (a plain ``python train.py``) the callback does nothing. Inside one whose
    tuner is not PBT (no checkpoint folders in the parameters) it warns once and does nothing. A
    ``Trainer.fit(ckpt_path=...)`` resume wins over PBT's checkpoint (a warning says so).

    Args:
        filename: the checkpoint's file name inside the step folders.
        load_optimizer_state: also continue the optimizer state (with the new hyperparameters) rather
            than only the weights.

    Raises:
        ConfigError: an argument is invalid, or the tuner's checkpoint folders are not paths.

    Example:
        Two steps of one member, each a trial whose parameters ``PBTTuner`` chose (simulated here with
        :func:`nni_pl.trial.activate`, as a function-trial worker does): the first starts afresh and saves,
        the second continues from it.

        >>> import os, tempfile
        >>> from lightning.pytorch import Trainer
        >>> from lightning.pytorch.demos.boring_classes import BoringModel
        >>> from nni_pl.callbacks import PBTCheckpoint
        >>> from nni_pl.trial import TrialContext, activate
        >>> root = tempfile.mkdtemp()
        >>> def step(n, load_dir, save_dir):
        ...     activate(TrialContext(trial_id=f"t{n}", sequence_id=n, trial_dir=tempfile.mkdtemp(),
        ...                           parameters={"load_checkpoint_dir": load_dir, "save_checkpoint_dir": save_dir}))
        ...     pbt = PBTCheckpoint()
        ...     trainer = Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False,
        ...                       enable_checkpointing=False, enable_progress_bar=False,
        ...                       enable_model_summary=False, callbacks=[pbt])
        ...     trainer.fit(BoringModel())
        ...     activate(None)
        ...     return pbt
        >>> first = step(0, f"{root}/0/0", f"{root}/0/0")  # load == save: the member's first step
        >>> first.loaded_from, os.listdir(f"{root}/0/0")
        (None, ['model.ckpt'])
        >>> second = step(1, f"{root}/0/0", f"{root}/0/1")
        >>> second.loaded_from == f"{root}/0/0/model.ckpt", os.listdir(f"{root}/0/1")
        (True, ['model.ckpt'])
    """

    def __init__(self, *, filename: str = "model.ckpt", load_optimizer_state: bool = True) -> None:
        super().__init__()
        if (
            not isinstance(filename, str)
            or not filename.strip()
            or os.path.basename(filename) != filename
            or filename in (".", "..")
        ):
            raise ConfigError(
                "PBTCheckpoint.filename",
                f"must be a plain file name (no folders: PBT chooses the folder), but got {filename!r}; "
                "e.g. 'model.ckpt'",
            )
        if not isinstance(load_optimizer_state, bool):
            raise ConfigError(
                "PBTCheckpoint.load_optimizer_state",
                f"must be True or False, but got {type(load_optimizer_state).__name__} {load_optimizer_state!r}",
            )
        self.filename = filename
        self.load_optimizer_state = load_optimizer_state

        self.loaded_from: str | None = None  # the checkpoint this step started from
        self.optimizer_state_loaded = False
        self.saved_to: str | None = None  # where this step saved (set once saved)
        self._save_path: str | None = None
        self._optimizer_classes: list[str] | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(filename=self.filename)

    # --- hooks --------------------------------------------------------------------------------------------
    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._optimizer_classes = [_class_name(o) for o in trainer.optimizers]
        if trial.get_output_dir() is None:
            log.debug("PBTCheckpoint: standalone run, nothing to load or save")
            return
        params = trial.get_current_parameter()
        load_dir, save_dir = params.get(LOAD_CHECKPOINT_DIR), params.get(SAVE_CHECKPOINT_DIR)
        if save_dir is None:
            rank_zero_warn(
                f"PBTCheckpoint does nothing: this trial's parameters have no {SAVE_CHECKPOINT_DIR!r} "
                "(it is set by tuner: PBTTuner)."
            )
            return
        for key, value in ((SAVE_CHECKPOINT_DIR, save_dir), (LOAD_CHECKPOINT_DIR, load_dir)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"parameters.{key}", f"must be a folder path, but the tuner sent {value!r}")
        self._save_path = os.path.join(save_dir, self.filename)
        if not load_dir or os.path.abspath(load_dir) == os.path.abspath(save_dir):
            return  # the first step of a member: it starts from scratch
        path = os.path.join(load_dir, self.filename)
        if not os.path.isfile(path):
            rank_zero_warn(
                f"PBTCheckpoint: no checkpoint at {path}; this step trains from scratch. (Does the earlier "
                f"step save with PBTCheckpoint(filename={self.filename!r}) too?)"
            )
            return
        if trainer.ckpt_path is not None:
            rank_zero_warn(
                f"PBTCheckpoint: Trainer.fit(ckpt_path={trainer.ckpt_path!r}) resumes from that checkpoint; "
                f"PBT's {path} is not loaded."
            )
            return
        self._load(trainer, pl_module, path)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._save_path is None or trainer.state.fn != TrainerFn.FITTING:
            return
        trainer.save_checkpoint(self._save_path)  # every rank calls it; rank zero writes
        self.saved_to = self._save_path
        rank_zero_info(f"PBTCheckpoint: saved {self._save_path}")

    # --- state --------------------------------------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "loaded_from": self.loaded_from,
            "optimizer_state_loaded": self.optimizer_state_loaded,
            "optimizers": self._optimizer_classes,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.loaded_from = state_dict.get("loaded_from")
        self.optimizer_state_loaded = bool(state_dict.get("optimizer_state_loaded", False))

    # --- helpers ------------------------------------------------------------------------------------------
    def _load(self, trainer: pl.Trainer, pl_module: pl.LightningModule, path: str) -> None:
        checkpoint = trainer.strategy.load_checkpoint(path)
        if "state_dict" not in checkpoint:
            raise ConfigError(
                f"parameters.{LOAD_CHECKPOINT_DIR}",
                f"{path} is not a Lightning checkpoint (no 'state_dict'); save it with PBTCheckpoint",
            )
        trainer.strategy.load_model_state_dict(checkpoint, strict=pl_module.strict_loading)
        self.loaded_from = path
        self.optimizer_state_loaded = False
        if self.load_optimizer_state:
            problem = self._optimizer_mismatch(trainer, checkpoint)
            if problem:
                rank_zero_warn(
                    f"PBTCheckpoint: loaded the weights of {path} but not its optimizer state: {problem}."
                )
            else:
                new = [[_hyperparameters(g) for g in o.param_groups] for o in trainer.optimizers]
                trainer.strategy.load_optimizer_state_dict(checkpoint)
                for optimizer, groups in zip(trainer.optimizers, new):
                    for group, hparams in zip(optimizer.param_groups, groups):
                        group.update(hparams)  # the explored hyperparameters win over the saved ones
                self.optimizer_state_loaded = True
        rank_zero_info(
            f"PBTCheckpoint: continuing from {path} (weights{' and optimizer state' if self.optimizer_state_loaded else ''})"
        )

    def _optimizer_mismatch(self, trainer: pl.Trainer, checkpoint: dict[str, Any]) -> str:
        states = checkpoint.get("optimizer_states")
        if not states:
            return "the checkpoint has none (saved with weights_only=True?)"
        optimizers = trainer.optimizers
        if len(states) != len(optimizers):
            return f"it has {len(states)} optimizer(s), this model configures {len(optimizers)}"
        saved = (checkpoint.get("callbacks") or {}).get(self.state_key, {}).get("optimizers")
        current = [_class_name(o) for o in optimizers]
        if saved is not None and list(saved) != current:
            return f"its optimizers are {saved}, this model configures {current}"
        for state, optimizer in zip(states, optimizers):
            saved_sizes = [len(g["params"]) for g in state.get("param_groups", [])]
            sizes = [len(g["params"]) for g in optimizer.param_groups]
            if saved_sizes != sizes:
                return f"its param groups hold {saved_sizes} parameters, this model's hold {sizes}"
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(filename={self.filename!r}, load_optimizer_state={self.load_optimizer_state})"


def _class_name(optimizer: Any) -> str:
    inner = getattr(optimizer, "optimizer", optimizer)  # LightningOptimizer wraps the torch optimizer
    return f"{type(inner).__module__}.{type(inner).__qualname__}"


def _hyperparameters(group: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in group.items() if k != "params"}
