"""The Lightning callback that turns a ``Trainer.fit`` into an NNI trial.

It is a thin adapter over the trial SDK (:mod:`nni_pl.trial`): every hook maps to one SDK call, and the
only state it keeps (best score, last score, counts) lives in :meth:`NNICallback.state_dict`.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from typing_extensions import override

from nni_pl import trial
from nni_pl._lightning import destroy_process_group_at_exit
from nni_pl.callbacks._logdir import use_trial_dir
from nni_pl.errors import ConfigError, did_you_mean
from nni_pl.trial.protocol import TRIAL_BUDGET

__all__ = ["NNICallback"]

log = logging.getLogger(__name__)

_MODES = ("min", "max")
_FINALS = ("best", "last")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        raise ConfigError(
            f"NNICallback.{name}",
            f"must be one of {', '.join(map(repr, choices))}, but got {value!r}{hint}",
        )


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(
            f"NNICallback.{name}", f"must be True or False, but got {type(value).__name__} {value!r}"
        )


class NNICallback(Callback):
    """Report a monitored metric to the NNI experiment and obey its stop requests.

    At the end of every validation run during ``fit`` (the sanity check excluded) the callback reads
    ``trainer.callback_metrics[monitor]`` and reports it with
    :func:`nni_pl.report_intermediate_result`, which is what assessors (Medianstop, Curvefitting) judge.
    When ``fit`` ends (normally, through ``EarlyStopping``, or because the manager asked the trial to stop)
    it reports the best or the last value once with :func:`nni_pl.report_final_result`, which is what the
    tuner optimises. Only the global-zero rank reports.

    When the assessor judges the trial bad, the manager asks it to stop (:func:`nni_pl.should_stop`).
    The callback checks this after every validation run and at every training-epoch end, reduces the
    decision across ranks with ``trainer.strategy.reduce_boolean_decision`` so all ranks stop together,
    and sets ``trainer.should_stop``: the trial leaves ``fit`` at that boundary with its checkpoints
    (``ModelCheckpoint``) written and its final result reported. Because it does so, the callback declares
    the trial *graceful* (:func:`nni_pl.trial.enable_graceful_stop`) at setup, and the manager waits for
    it to exit rather than killing it. (``Trainer(min_epochs=...)`` still holds: Lightning does not stop
    before it is reached.)

    With Hyperband or BOHB, each trial gets a budget (NNI's ``TRIAL_BUDGET`` parameter). With
    ``budget_to_epochs=True`` the budget is the number of epochs: ``trainer.fit_loop.max_epochs`` is set to
    ``max(1, round(budget))`` when ``fit`` starts, whatever ``Trainer(max_epochs=...)`` said
    (a ``max_steps`` or ``max_time`` limit still applies too).

    If the model has no validation loop (no ``validation_step``, or ``limit_val_batches=0``) the metric
    is read at each training-epoch end instead, so ``monitor`` may name a metric logged in
    ``training_step`` with ``on_epoch=True``.

    Outside an experiment (a plain ``python train.py``) everything still works: reports are logged
    and stop is never requested.

    In an experiment, the trainer's default loggers (TensorBoard, CSV) and checkpoints go to the trial's own
    directory unless ``default_root_dir`` or a logger's ``save_dir`` was chosen, so ``nni-pl tensorboard ID``
    shows every trial (this also works with ``LightningCLI``).

    Args:
        monitor: the logged metric to report, e.g. ``"val_acc"``; it must be a key of
            ``trainer.callback_metrics`` (log it with ``self.log("val_acc", ...)``).
        mode: ``"max"`` if higher is better, ``"min"`` if lower is better; decides which value is "best".
            Match the tuner's ``optimize_mode`` (``maximize``/``minimize``).
        final: report the ``"best"`` value seen during ``fit`` (by ``mode``) or the ``"last"`` one.
        report_intermediate: report every value as an intermediate result (turn off when a second
            instance monitors another metric only for its final result).
        stop_on_request: stop training when the manager asks (assessor said Bad, or a user stopped it).
        budget_to_epochs: map a Hyperband/BOHB ``TRIAL_BUDGET`` to ``max_epochs``.

    Raises:
        ConfigError: an argument is invalid (when constructed), or ``monitor`` is not among the logged
            metrics (at the first validation end; the message lists the metrics that exist).

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from lightning.pytorch.demos.boring_classes import BoringModel
        >>> from nni_pl.callbacks import NNICallback
        >>> class Model(BoringModel):  # any LightningModule that logs the metric to tune
        ...     def validation_step(self, batch, batch_idx):
        ...         self.log("val_loss", super().validation_step(batch, batch_idx)["x"])
        >>> trainer = Trainer(max_epochs=2, limit_train_batches=4, enable_progress_bar=False,
        ...                   enable_model_summary=False, callbacks=[NNICallback(monitor="val_loss", mode="min")])
        >>> trainer.fit(Model())  # a plain run: the reports are logged; in an experiment they reach the tuner

        With ``LightningCLI``: ``python train.py fit --config callbacks/hpo.yaml``.
    """

    def __init__(
        self,
        *,
        monitor: str,
        mode: Literal["min", "max"] = "max",
        final: Literal["best", "last"] = "best",
        report_intermediate: bool = True,
        stop_on_request: bool = True,
        budget_to_epochs: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(monitor, str) or not monitor.strip():
            raise ConfigError(
                "NNICallback.monitor",
                f"must be the non-empty name of a logged metric (e.g. 'val_acc'), but got {monitor!r}",
            )
        _check_choice("mode", mode, _MODES)
        _check_choice("final", final, _FINALS)
        _check_bool("report_intermediate", report_intermediate)
        _check_bool("stop_on_request", stop_on_request)
        _check_bool("budget_to_epochs", budget_to_epochs)
        self.monitor = monitor
        self.mode = mode
        self.final = final
        self.report_intermediate = report_intermediate
        self.stop_on_request = stop_on_request
        self.budget_to_epochs = budget_to_epochs

        self.best_score: float | None = None
        self.last_score: float | None = None
        self.num_evaluations = 0
        self.final_reported = False
        self.stopped_epoch: int | None = None  # epoch at which a stop request ended fit, if one did
        self._on_train_epoch_end = False

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    @property
    def final_score(self) -> float | None:
        """The value reported (or to be reported) as the final result: best or last, per ``final``."""
        return self.best_score if self.final == "best" else self.last_score

    # --- hooks --------------------------------------------------------------------------------------------
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == TrainerFn.FITTING and self.stop_on_request and trainer.is_global_zero:
            trial.enable_graceful_stop()
        if trainer.world_size > 1:
            destroy_process_group_at_exit()
        trial_dir = trial.get_output_dir()
        if trial_dir is not None:  # in an experiment: the trial's logs go to its folder (nni-pl tensorboard)
            use_trial_dir(trainer, trial_dir)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._on_train_epoch_end = (
            not is_overridden("validation_step", pl_module) or trainer.limit_val_batches == 0
        )
        if self.budget_to_epochs:
            self._apply_budget(trainer)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        self._evaluate(trainer)
        self._check_stop_request(trainer)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._on_train_epoch_end:
            self._evaluate(trainer)
        self._check_stop_request(trainer)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.final_reported:
            return
        if self.num_evaluations == 0:
            why = (
                "the manager asked the trial to stop before the first validation"
                if self.stopped_epoch is not None
                else "no validation ran during fit (check `check_val_every_n_epoch`, "
                "`val_check_interval` and `max_epochs`)"
            )
            rank_zero_warn(
                f"NNICallback(monitor={self.monitor!r}) reports no final result: {why}, so no value of "
                f"{self.monitor!r} was seen. The tuner gets no result for this trial."
            )
            return
        value = self.final_score
        assert value is not None
        if trainer.is_global_zero:
            trial.report_final_result(value)
        self.final_reported = True

    # --- state --------------------------------------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "best_score": self.best_score,
            "last_score": self.last_score,
            "num_evaluations": self.num_evaluations,
            "final_reported": self.final_reported,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict["best_score"]
        self.last_score = state_dict["last_score"]
        self.num_evaluations = state_dict["num_evaluations"]
        self.final_reported = state_dict["final_reported"]

    # --- helpers ------------------------------------------------------------------------------------------
    def _read_metric(self, trainer: pl.Trainer) -> float:
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            available = sorted(metrics)
            listed = ", ".join(map(repr, available)) if available else "none (nothing was logged)"
            raise ConfigError(
                "NNICallback.monitor",
                f"metric {self.monitor!r} is not among the logged metrics{did_you_mean(self.monitor, available)}. "
                f"Available: {listed}. Log it with `self.log({self.monitor!r}, value)` in "
                "`validation_step`, or pass monitor=<one of the available names>",
            )
        value = metrics[self.monitor]
        try:
            return float(value)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ConfigError(
                "NNICallback.monitor",
                f"metric {self.monitor!r} must be a scalar, but got {type(value).__name__} {value!r:.80}",
            ) from e

    def _is_better(self, value: float) -> bool:
        best = self.best_score
        if best is None or (math.isnan(best) and not math.isnan(value)):
            return True
        if math.isnan(value):
            return False
        return value > best if self.mode == "max" else value < best

    def _evaluate(self, trainer: pl.Trainer) -> None:
        # every rank tracks the value (so state_dict agrees everywhere); only global zero reports it
        value = self._read_metric(trainer)
        self.last_score = value
        if self._is_better(value):
            self.best_score = value
        self.num_evaluations += 1
        if self.report_intermediate and trainer.is_global_zero:
            trial.report_intermediate_result(value)

    def _check_stop_request(self, trainer: pl.Trainer) -> None:
        if not self.stop_on_request:
            return
        # every rank must take part in the reduction, even if it already knows the answer
        requested = trainer.strategy.reduce_boolean_decision(trial.should_stop(), all=False)
        if requested:
            if self.stopped_epoch is None:
                log.info(
                    "NNI asked this trial to stop; stopping at the end of epoch %d", trainer.current_epoch
                )
                self.stopped_epoch = trainer.current_epoch
            trainer.should_stop = True

    def _apply_budget(self, trainer: pl.Trainer) -> None:
        budget = trial.get_trial_budget()
        if budget is None:
            return
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget):
            raise ConfigError(
                f"parameters.{TRIAL_BUDGET}",
                f"must be a finite number of epochs, but the tuner sent {budget!r}; "
                "pass NNICallback(budget_to_epochs=False) to handle the budget yourself",
            )
        epochs = max(1, round(budget))
        if epochs != trainer.fit_loop.max_epochs:
            log.info(
                "%s=%s: training for max_epochs=%d (was %s)",
                TRIAL_BUDGET,
                budget,
                epochs,
                trainer.fit_loop.max_epochs,
            )
        trainer.fit_loop.max_epochs = epochs

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(monitor={self.monitor!r}, mode={self.mode!r}, final={self.final!r}, "
            f"report_intermediate={self.report_intermediate}, stop_on_request={self.stop_on_request}, "
            f"budget_to_epochs={self.budget_to_epochs})"
        )
