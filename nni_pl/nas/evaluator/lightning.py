"""Lightning-based evaluators: :class:`Classification`, :class:`Regression` and :class:`Lightning`.

Each trains the model with a Lightning ``Trainer`` that carries an :class:`~nni_pl.callbacks.NNICallback`:
the monitored validation metric is reported as an intermediate result after every validation epoch and as
the final result when ``fit`` ends (an assessor can stop the trial early).

NNI 2.x's form works too (``import nni_pl.nas.evaluator as pl``): ``pl.Lightning(MyModule(), pl.Trainer(max_epochs=3),
train_dataloader=pl.DataLoader(dataset, batch_size=64), val_dataloaders=pl.DataLoader(...))``, where
:data:`Trainer` and :data:`DataLoader` are the Lightning/torch classes wrapped by :func:`nni_pl.trace` and
``MyModule`` subclasses :class:`LightningModule` and is decorated with ``@nni_pl.trace`` (or NNI 2.5's
``@basic_unit``), so that all of them are rebuilt from their arguments in the trial process.
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
from nni_pl.serialization import is_traced, trace, trace_copy, trace_info

__all__ = [
    "Classification",
    "DataLoader",
    "Lightning",
    "LightningModule",
    "Regression",
    "SupervisedModule",
    "Trainer",
]

#: ``lightning.pytorch.Trainer`` that records its arguments (NNI's ``pl.Trainer``), so it can be rebuilt in a trial.
Trainer = trace(pl.Trainer)
#: ``torch.utils.data.DataLoader`` that records its arguments (NNI's ``pl.DataLoader``); trace the dataset class
#: too (``nni_pl.trace(MyDataset)(...)``), or it is pickled.
DataLoader = trace(torch.utils.data.DataLoader)


class LightningModule(pl.LightningModule):
    """Base class of the LightningModule of NNI's ``pl.Lightning`` evaluator: the model arrives by :meth:`set_model`.

    Write ``training_step`` and friends against ``self.model``; report with ``nni_pl.report_intermediate_result``
    and ``nni_pl.report_final_result`` (or give the evaluator ``monitor=`` and let it report). Decorate the
    subclass with ``@nni_pl.trace`` so the evaluator can rebuild it in a trial.
    """

    model: nn.Module

    def set_model(self, model: nn.Module | Callable[[], nn.Module]) -> None:
        """Set the model to train (a module, or a class/factory called with no arguments)."""
        self.model = model if isinstance(model, nn.Module) else model()


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


def _single_alias(train_dataloaders: Any, more: dict[str, Any], name: str) -> Any:
    """NNI 2.x spells it ``train_dataloader``; take it out of the Trainer keywords."""
    if "train_dataloader" not in more:
        return train_dataloaders
    if train_dataloaders is not None:
        raise ConfigError(
            f"{name}.train_dataloader", "given together with train_dataloaders; give one of them"
        )
    return more.pop("train_dataloader")


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
        train_dataloaders = _single_alias(train_dataloaders, more_trainer_kwargs, name)
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

    def build_module(self, model: nn.Module) -> SupervisedModule:
        """The LightningModule that trains ``model`` (what a one-shot strategy wraps around its supernet)."""
        return self.module(model)

    def dataloaders(self) -> tuple[Any, Any]:
        """``(train, val)``: the data loaders, factories called."""
        return _loaders(self.train_dataloaders, self.val_dataloaders, type(self).__name__)

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
    """Evaluate with any LightningModule (NNI's ``pl.Lightning``), in one of two forms.

    nni-pl's form: ``module`` builds the LightningModule around the model: a class (or import path, or factory
    function) called as ``module(model, **module_kwargs)``; the Trainer is built from ``trainer_kwargs``.

    NNI 2.x's form: ``Lightning(MyModule(...), Trainer(max_epochs=3), train_dataloader=DataLoader(...),
    val_dataloaders=DataLoader(...))`` with a :class:`LightningModule` instance (its ``set_model`` receives the
    model) and a :data:`Trainer`. The module, trainer and data loaders travel to a trial by their constructor
    arguments, so the module's class must be decorated with ``@nni_pl.trace`` (or ``@basic_unit``) and the trainer
    and loaders built with :data:`Trainer` / :data:`DataLoader` (or other ``nni_pl.trace``'d classes); every
    evaluation builds a fresh module and trainer from those arguments. Lambdas, local classes and objects that
    neither are traced nor pickle cannot travel (the error names the argument).

    Reporting: with ``monitor`` the logged metric is reported per validation epoch and, at the end of ``fit``, as
    the final result (``final``: the ``"last"`` or the ``"best"`` value). nni-pl's form monitors ``"val_loss"`` by
    default; in NNI's form the module reports itself (``nni_pl.report_final_result`` in ``teardown``) unless
    ``monitor`` is given.

    Args:
        module: the LightningModule class/factory (or its import path), or (NNI's form) a LightningModule.
        trainer: (NNI's form) a :data:`Trainer`; the Trainer's ``callbacks`` are kept and the reporting one added.
        module_kwargs: JSON-able arguments for ``module`` (may hold choices); nni-pl's form only.
        trainer_kwargs: ``lightning.Trainer`` arguments (nni-pl's form, or NNI's form without ``trainer``).
        train_dataloaders, val_dataloaders: DataLoaders or data factories (see :class:`Classification`);
            ``train_dataloader`` is NNI's spelling.
        datamodule: a LightningDataModule factory (import path), instead of the dataloaders.
        monitor: the logged metric to report.
        mode: ``"max"`` or ``"min"``: which value is best.
        final: report the ``"last"`` or the ``"best"`` value as the final result.
    """

    def __init__(
        self,
        module: Any,
        trainer: Any = None,
        *,
        module_kwargs: Mapping[str, Any] | None = None,
        trainer_kwargs: Mapping[str, Any] | None = None,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: Any = None,
        monitor: str | None = None,
        mode: str = "min",
        final: str = "last",
        train_dataloader: Any = None,
    ) -> None:
        if train_dataloader is not None:
            if train_dataloaders is not None:
                raise ConfigError(
                    "Lightning.train_dataloader", "given together with train_dataloaders; give one of them"
                )
            train_dataloaders = train_dataloader
        nni_form = isinstance(module, pl.LightningModule)
        trainer_kw = _trainer_kwargs(trainer_kwargs, {}, "Lightning")
        recorded: dict[str, Any] = {"module": module}
        if trainer is not None:
            recorded["trainer"] = trainer
        recorded.update(
            module_kwargs=dict(module_kwargs or {}),
            trainer_kwargs=trainer_kw,
            train_dataloaders=train_dataloaders,
            val_dataloaders=val_dataloaders,
            datamodule=datamodule,
            monitor=monitor,
            mode=mode,
            final=final,
        )
        super().__init__(**recorded)
        if mode not in ("max", "min"):
            raise ConfigError("Lightning.mode", f"must be 'max' or 'min', got {mode!r}")
        if final not in ("last", "best"):
            raise ConfigError("Lightning.final", f"must be 'last' or 'best', got {final!r}")
        if train_dataloaders is None and datamodule is None:
            raise ConfigError("Lightning.train_dataloaders", "give train_dataloaders or a datamodule factory")
        if nni_form:
            _check_nni_form(module, trainer, module_kwargs, trainer_kw)
            self.module: Any = module
        else:
            if trainer is not None:
                raise ConfigError(
                    "Lightning.trainer",
                    "a Trainer goes with a LightningModule instance (NNI's form); with a module class or factory "
                    "give trainer_kwargs",
                )
            self.module = _class(module, "Lightning.module")
            if not callable(self.module):
                raise ConfigError(
                    "Lightning.module", f"must be a LightningModule class or factory, got {module!r}"
                )
        self.nni_form = nni_form
        self.trainer_instance = trainer
        self.module_kwargs = dict(module_kwargs or {})
        self.trainer_kwargs = trainer_kw
        self.train_dataloaders, self.val_dataloaders, self.datamodule = (
            train_dataloaders,
            val_dataloaders,
            datamodule,
        )
        self.monitor = monitor if monitor is not None or nni_form else "val_loss"  # type: ignore[assignment]
        self.mode, self.final = mode, final
        self.export_onnx = False

    @property
    def metric_mode(self) -> str | None:  # type: ignore[override]
        if self.monitor is None:
            return None  # the module reports; its direction is the strategy's to know
        return "maximize" if self.mode == "max" else "minimize"

    def trainer(self) -> pl.Trainer:
        if not self.nni_form:
            return super().trainer()
        if self.trainer_instance is None:
            kwargs: dict[str, Any] = dict(self.trainer_kwargs)
            args: tuple[Any, ...] = ()
        else:
            _fn, args, kwargs = trace_info(self.trainer_instance)
        from nni_pl import trial
        from nni_pl.callbacks import NNICallback

        callbacks = list(kwargs.pop("callbacks", None) or [])
        if self.monitor is not None:
            callbacks.insert(0, NNICallback(monitor=self.monitor, mode=self.mode, final=self.final))  # type: ignore[arg-type]
        out = trial.get_output_dir()
        if out is not None:
            kwargs.setdefault("default_root_dir", str(out))  # logs and checkpoints in the trial directory
        return pl.Trainer(*args, callbacks=callbacks, **kwargs)

    def build_module(self, model: nn.Module) -> pl.LightningModule:
        """A fresh LightningModule around ``model`` (what a one-shot strategy wraps around its supernet)."""
        if self.nni_form:
            module = trace_copy(self.module)  # a fresh module for every model
            if hasattr(module, "set_model"):
                module.set_model(model)
            else:
                module.model = model
        else:
            module = self.module(model, **self.module_kwargs)
        if not isinstance(module, pl.LightningModule):
            raise EvaluatorError(
                f"Lightning.module returned a {type(module).__name__}, not a LightningModule"
            )
        return module

    def dataloaders(self) -> tuple[Any, Any]:
        """``(train, val)``: the data loaders (factories called; a datamodule's after its ``setup("fit")``)."""
        if self.datamodule is not None:
            dm = resolve_factory(self.datamodule, "Lightning.datamodule")
            dm.prepare_data()
            dm.setup("fit")
            val = (
                dm.val_dataloader()
                if type(dm).val_dataloader is not pl.LightningDataModule.val_dataloader
                else None
            )
            return dm.train_dataloader(), val
        return _loaders(self.train_dataloaders, self.val_dataloaders, "Lightning")

    def evaluate(self, model: nn.Module) -> Any:
        module = self.build_module(model)
        if self.datamodule is not None:
            return self._fit(module, None, None, resolve_factory(self.datamodule, "Lightning.datamodule"))
        return self._fit(module, *_loaders(self.train_dataloaders, self.val_dataloaders, "Lightning"))


def _check_nni_form(module: Any, trainer: Any, module_kwargs: Any, trainer_kwargs: Mapping[str, Any]) -> None:
    name = type(module).__name__
    if not is_traced(module):
        raise ConfigError(
            "Lightning.module",
            f"the {name} instance records no constructor arguments, so a trial cannot rebuild it; decorate "
            f"class {name} with @nni_pl.trace (or @nni_pl.nas.basic_unit)",
        )
    if module_kwargs:
        raise ConfigError("Lightning.module_kwargs", f"goes with a module class, not a {name} instance")
    if trainer is not None:
        if not isinstance(trainer, pl.Trainer) or not is_traced(trainer):
            raise ConfigError(
                "Lightning.trainer",
                f"must be built with nni_pl.nas.evaluator.Trainer(...) (a traced Trainer), got {trainer!r}",
            )
        if trainer_kwargs:
            raise ConfigError("Lightning.trainer_kwargs", "given together with a trainer; give one of them")
