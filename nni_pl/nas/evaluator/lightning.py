"""Lightning-based evaluators: :class:`Classification`, :class:`Regression` and :class:`Lightning`.

Each trains the model with a Lightning ``Trainer`` that carries an :class:`~nni_pl.callbacks.NNICallback`:
the monitored validation metric is reported as an intermediate result after every validation epoch and as
the final result when ``fit`` ends (an assessor can stop the trial early).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from torch import nn

from nni_pl._lightning import quiet_trainer_kwargs
from nni_pl.errors import ConfigError
from nni_pl.nas.evaluator._base import Evaluator, EvaluatorError, import_object, is_choice, resolve_factory

__all__ = ["Classification", "Lightning", "Regression", "SupervisedModule"]

log = logging.getLogger(__name__)


def _class(value: Any, field: str) -> Any:
    return import_object(value, field) if isinstance(value, str) else value


def _loaders(train: Any, val: Any, field: str) -> tuple[Any, Any]:
    """Resolve data factories; a factory that returns ``(train, val)`` serves both when ``val`` is not given."""
    train = resolve_factory(train, f"{field}.train_dataloaders")
    if isinstance(train, tuple) and len(train) == 2 and val is None:
        return train
    return train, resolve_factory(val, f"{field}.val_dataloaders")


def _trainer_kwargs(given: Mapping[str, Any] | None, extra: Mapping[str, Any], field: str) -> dict[str, Any]:
    kwargs = dict(given or {})
    for k, v in extra.items():
        if k in kwargs:
            raise ConfigError(f"{field}.{k}", "given both as a keyword and in trainer_kwargs; give it once")
        kwargs[k] = v
    if "callbacks" in kwargs:
        raise ConfigError(
            f"{field}.trainer_kwargs.callbacks",
            "callbacks cannot travel to a trial process; subclass the evaluator and add them in trainer()",
        )
    return kwargs


class _LightningBase(Evaluator):
    """Shared by the Lightning evaluators: builds the Trainer, fits, reports, exports ONNX."""

    monitor: str = "val_loss"
    mode: str = "min"
    final: str = "last"
    #: the metric direction this evaluator reports (``NasExperiment`` checks the strategy agrees).
    metric_mode: ClassVar[str | None] = None

    def trainer(self) -> pl.Trainer:
        """The ``Trainer`` for one evaluation (quiet defaults; logs go to the trial directory in a trial)."""
        from nni_pl import trial
        from nni_pl.callbacks import NNICallback

        # standalone: no lightning_logs/ in the working directory; in a trial, logs go to its directory
        in_trial = trial.get_output_dir() is not None
        kwargs = quiet_trainer_kwargs(self.trainer_kwargs, keep_logger=in_trial, log_every_n_steps=1)
        callback = NNICallback(monitor=self.monitor, mode=self.mode, final=self.final)  # type: ignore[arg-type]
        return pl.Trainer(callbacks=[callback], **kwargs)

    def _fit(self, module: pl.LightningModule, train: Any, val: Any, datamodule: Any = None) -> Any:
        trainer = self.trainer()
        if datamodule is not None:
            trainer.fit(module, datamodule=datamodule)
        else:
            trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
        callback = trainer.callbacks[0] if trainer.callbacks else None
        score = getattr(callback, "final_score", None)
        return score

    def _export(self, model: nn.Module, loaders: tuple[Any, Any]) -> Path | None:
        if not self.export_onnx:
            return None
        from nni_pl import trial

        path = Path(self.export_onnx) if isinstance(self.export_onnx, str) else None
        if path is None:
            out = trial.get_output_dir()
            path = (out if out is not None else Path.cwd()) / "model.onnx"
        loader = next((x for x in (loaders[1], loaders[0]) if x is not None), None)
        if isinstance(loader, (list, tuple)):
            loader = loader[0]
        if loader is None:
            log.warning("export_onnx: no dataloader to take a sample input from; nothing exported")
            return None
        from nni_pl.compression.export import export_onnx

        batch = next(iter(loader))
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        # float: torch.export-based (the TorchScript exporter when that fails); a quantised model: int8 QDQ
        export_onnx(model, x[:1], path)
        log.info("exported the trained model to %s", path)
        return path


def _check_onnx(export_onnx: Any) -> None:
    from nni_pl.compression.export import missing_onnx_packages

    missing = missing_onnx_packages() if export_onnx else []
    if missing:
        raise EvaluatorError(
            f"export_onnx needs {' and '.join(missing)}, not installed; install them with: pip install "
            "'nni-pl[onnx]' (or set export_onnx=False)"
        )


class SupervisedModule(pl.LightningModule):
    """Trains ``model`` with ``criterion`` and logs ``train_loss``, ``val_loss`` and each metric as ``val_<name>``.

    Args:
        model: the network.
        criterion: a loss module class (``nn.CrossEntropyLoss``) or instance.
        metrics: name -> ``fn(outputs, targets) -> tensor``.
        learning_rate, weight_decay: the optimiser's.
        optimizer: an optimiser class (``torch.optim.Adam``).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        criterion: Any,
        metrics: Mapping[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]],
        learning_rate: float,
        weight_decay: float,
        optimizer: Any,
    ) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion() if inspect.isclass(criterion) else criterion
        self.metrics = dict(metrics)
        self.learning_rate, self.weight_decay, self.optimizer_class = learning_rate, weight_decay, optimizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.criterion(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        out = self(x)
        self.log("val_loss", self.criterion(out, y), on_epoch=True)
        for name, fn in self.metrics.items():
            self.log(f"val_{name}", fn(out, y), on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_class(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)


def _accuracy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out.argmax(dim=-1) == y).float().mean()


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(out.reshape(y.shape).float(), y.float())


class _Supervised(_LightningBase):
    _metrics: ClassVar[dict[str, Callable[..., Any]]] = {}

    def __init__(
        self,
        *,
        criterion: Any,
        learning_rate: Any = 1e-3,
        weight_decay: Any = 0.0,
        optimizer: Any = torch.optim.Adam,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        export_onnx: bool | str = False,
        trainer_kwargs: Mapping[str, Any] | None = None,
        **more_trainer_kwargs: Any,
    ) -> None:
        name = type(self).__name__
        trainer = _trainer_kwargs(trainer_kwargs, more_trainer_kwargs, name)
        super().__init__(
            criterion=criterion,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            optimizer=optimizer,
            train_dataloaders=train_dataloaders,
            val_dataloaders=val_dataloaders,
            export_onnx=export_onnx,
            trainer_kwargs=trainer,
        )
        for field, value in (("learning_rate", learning_rate), ("weight_decay", weight_decay)):
            if not is_choice(value) and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
            ):
                raise ConfigError(f"{name}.{field}", f"must be a number >= 0 (or a choice), got {value!r}")
        if train_dataloaders is None:
            raise ConfigError(
                f"{name}.train_dataloaders",
                "is required: a DataLoader, or the import path of a factory ('package.module:make_loaders')",
            )
        _check_onnx(export_onnx)
        self.criterion = _class(criterion, f"{name}.criterion")
        self.learning_rate, self.weight_decay = learning_rate, weight_decay
        self.optimizer = _class(optimizer, f"{name}.optimizer")
        self.train_dataloaders, self.val_dataloaders = train_dataloaders, val_dataloaders
        self.export_onnx = export_onnx
        self.trainer_kwargs = trainer

    def module(self, model: nn.Module) -> SupervisedModule:
        """The LightningModule that trains ``model``."""
        return SupervisedModule(
            model,
            criterion=self.criterion,
            metrics=self._metrics,
            learning_rate=float(self.learning_rate),
            weight_decay=float(self.weight_decay),
            optimizer=self.optimizer,
        )

    def evaluate(self, model: nn.Module) -> Any:
        for field in ("learning_rate", "weight_decay"):
            if is_choice(getattr(self, field)):
                raise EvaluatorError(
                    f"{type(self).__name__}.{field} is still a choice; call evaluator.freeze(arch) first"
                )
        loaders = _loaders(self.train_dataloaders, self.val_dataloaders, type(self).__name__)
        score = self._fit(self.module(model), *loaders)
        self._export(model, loaders)
        return score


class Classification(_Supervised):
    """Train a classifier; report validation accuracy (``val_acc``) per epoch and at the end (NNI's ``Classification``).

    Args:
        criterion: loss class or instance (default ``nn.CrossEntropyLoss``), or its import path.
        learning_rate: the optimiser's learning rate (may be a choice).
        weight_decay: the optimiser's weight decay (may be a choice).
        optimizer: optimiser class (default ``torch.optim.Adam``), or its import path.
        train_dataloaders: a DataLoader (in-process only) or a data factory: ``"package.module:fn"`` or
            ``{"factory": "package.module:fn", "kwargs": {...}}``; a factory returning ``(train, val)``
            serves both.
        val_dataloaders: the same, for validation.
        export_onnx: after training, export the model to ONNX: ``True`` (``model.onnx`` in the trial
            directory) or a path, torch.export-based (the TorchScript exporter when that fails). Needs the ``onnx`` extra.
        trainer_kwargs: ``lightning.Trainer`` arguments (``max_epochs``, ``accelerator``, ...); they may
            also be given as keywords, as in NNI.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> data = DataLoader(TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,))), batch_size=8)
        >>> ev = Classification(train_dataloaders=data, val_dataloaders=data, max_epochs=1)
        >>> 0.0 <= ev.evaluate(torch.nn.Linear(4, 2)) <= 1.0
        True
    """

    monitor = "val_acc"
    mode = "max"
    metric_mode: ClassVar[str | None] = "maximize"
    _metrics: ClassVar[dict[str, Callable[..., Any]]] = {"acc": _accuracy}

    def __init__(self, *, criterion: Any = nn.CrossEntropyLoss, **kwargs: Any) -> None:
        super().__init__(criterion=criterion, **kwargs)


class Regression(_Supervised):
    """Train a regressor; report validation MSE (``val_mse``) per epoch and at the end (NNI's ``Regression``).

    Takes the arguments of :class:`Classification`; the default criterion is ``nn.MSELoss``. The metric is
    minimised: give the strategy ``optimize_mode="minimize"``.
    """

    monitor = "val_mse"
    mode = "min"
    metric_mode: ClassVar[str | None] = "minimize"
    _metrics: ClassVar[dict[str, Callable[..., Any]]] = {"mse": _mse}

    def __init__(self, *, criterion: Any = nn.MSELoss, **kwargs: Any) -> None:
        super().__init__(criterion=criterion, **kwargs)


class Lightning(_LightningBase):
    """Evaluate with any LightningModule (NNI's ``pl.Lightning``).

    ``module`` builds the LightningModule around the model: a class (or import path, or factory
    function) called as ``module(model, **module_kwargs)``. The module logs ``monitor`` (e.g. with
    ``self.log("val_acc", acc)``), which is reported per validation epoch and, at the end of ``fit``, as
    the final result (``final``: the ``"last"`` or the ``"best"`` value).

    Args:
        module: the LightningModule class/factory (or its import path).
        module_kwargs: JSON-able arguments for it (may hold choices).
        trainer_kwargs: ``lightning.Trainer`` arguments.
        train_dataloaders, val_dataloaders: DataLoaders or data factories (see :class:`Classification`).
        datamodule: a LightningDataModule factory (import path), instead of the dataloaders.
        monitor: the logged metric to report.
        mode: ``"max"`` or ``"min"``: which value is best.
        final: report the ``"last"`` or the ``"best"`` value as the final result.
    """

    def __init__(
        self,
        module: Any,
        *,
        module_kwargs: Mapping[str, Any] | None = None,
        trainer_kwargs: Mapping[str, Any] | None = None,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: Any = None,
        monitor: str = "val_loss",
        mode: str = "min",
        final: str = "last",
    ) -> None:
        trainer = _trainer_kwargs(trainer_kwargs, {}, "Lightning")
        super().__init__(
            module=module,
            module_kwargs=dict(module_kwargs or {}),
            trainer_kwargs=trainer,
            train_dataloaders=train_dataloaders,
            val_dataloaders=val_dataloaders,
            datamodule=datamodule,
            monitor=monitor,
            mode=mode,
            final=final,
        )
        if mode not in ("max", "min"):
            raise ConfigError("Lightning.mode", f"must be 'max' or 'min', got {mode!r}")
        if final not in ("last", "best"):
            raise ConfigError("Lightning.final", f"must be 'last' or 'best', got {final!r}")
        if train_dataloaders is None and datamodule is None:
            raise ConfigError("Lightning.train_dataloaders", "give train_dataloaders or a datamodule factory")
        self.module = _class(module, "Lightning.module")
        if not callable(self.module):
            raise ConfigError(
                "Lightning.module", f"must be a LightningModule class or factory, got {module!r}"
            )
        self.module_kwargs = dict(module_kwargs or {})
        self.trainer_kwargs = trainer
        self.train_dataloaders, self.val_dataloaders, self.datamodule = (
            train_dataloaders,
            val_dataloaders,
            datamodule,
        )
        self.monitor, self.mode, self.final = monitor, mode, final
        self.export_onnx = False

    @property
    def metric_mode(self) -> str:  # type: ignore[override]
        return "maximize" if self.mode == "max" else "minimize"

    def evaluate(self, model: nn.Module) -> Any:
        module = self.module(model, **self.module_kwargs)
        if not isinstance(module, pl.LightningModule):
            raise EvaluatorError(
                f"Lightning.module returned a {type(module).__name__}, not a LightningModule"
            )
        if self.datamodule is not None:
            return self._fit(module, None, None, resolve_factory(self.datamodule, "Lightning.datamodule"))
        return self._fit(module, *_loaders(self.train_dataloaders, self.val_dataloaders, "Lightning"))
