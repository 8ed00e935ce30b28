"""One evaluator mechanism for every pruner that needs training or activations.

A pruner never owns a training loop: it asks an :class:`Evaluator` to ``train`` the model for some steps, passing
hooks that run between ``loss.backward()`` and ``optimizer.step()`` (where gradients can be read or changed), or to
``forward`` a few batches (activations are collected by forward hooks the pruner registers).

Three ways to build one:

* :meth:`Evaluator.from_lightning`: a LightningModule (which is, or contains, the model being pruned), Trainer
  keyword arguments and a datamodule or dataloaders. Training is ``Trainer(max_steps=...).fit(...)``; hooks run in
  the ``on_before_optimizer_step`` callback hook.
* :meth:`Evaluator.from_nni`: NNI v2's ``trainer(model, optimizer, criterion)``, optimizer and criterion (the
  pruners also take these three as keyword arguments, as in NNI).
* :meth:`Evaluator.from_function`: ``train_fn(model, optimizer_step_hook, max_steps)`` — your loop, which calls
  ``optimizer_step_hook()`` after ``loss.backward()`` and before ``optimizer.step()``, and stops after
  ``max_steps`` steps when that is not ``None``. ``forward_fn(model, n_batches)`` is optional.

Example:
    >>> import torch
    >>> from nni_pl.compression import Evaluator
    >>> model = torch.nn.Linear(4, 2)
    >>> def train_fn(model, optimizer_step_hook, max_steps):
    ...     opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ...     for _ in range(max_steps or 10):
    ...         opt.zero_grad()
    ...         model(torch.randn(8, 4)).pow(2).mean().backward()
    ...         optimizer_step_hook()
    ...         opt.step()
    >>> ev = Evaluator.from_function(train_fn)
    >>> calls = []
    >>> ev.train(model, steps=3, hooks=[lambda: calls.append(1)])
    >>> len(calls)
    3
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from nni_pl._lightning import quiet_trainer_kwargs
from nni_pl.errors import ConfigError

__all__ = ["Evaluator", "StepHook"]

logger = logging.getLogger(__name__)

StepHook = Callable[[], None]
TrainFn = Callable[[nn.Module, StepHook, "int | None"], Any]
ForwardFn = Callable[[nn.Module, int], Any]


class Evaluator:
    """Runs training steps or forward passes for a pruner (build with ``from_lightning`` / ``from_function``)."""

    def __init__(self) -> None:
        raise TypeError(
            "build an Evaluator with Evaluator.from_lightning(...) or Evaluator.from_function(...)"
        )

    # -- constructors -------------------------------------------------------------------------------------------
    @classmethod
    def from_function(cls, train_fn: TrainFn, *, forward_fn: ForwardFn | None = None) -> Evaluator:
        """Wrap a plain training function.

        Args:
            train_fn: ``train_fn(model, optimizer_step_hook, max_steps)``; calls ``optimizer_step_hook()`` before
                each ``optimizer.step()`` and stops after ``max_steps`` steps (``None``: its own length).
            forward_fn: ``forward_fn(model, n_batches)`` runs ``n_batches`` forward passes without training. When
                omitted, ``forward`` runs ``train_fn`` for ``n_batches`` steps and restores the weights.
        """
        if not callable(train_fn):
            raise ConfigError("evaluator.train_fn", f"must be callable, got {train_fn!r}")
        if forward_fn is not None and not callable(forward_fn):
            raise ConfigError("evaluator.forward_fn", f"must be callable or None, got {forward_fn!r}")
        self = object.__new__(_FunctionEvaluator)
        self._train_fn = train_fn
        self._forward_fn = forward_fn
        return self

    @classmethod
    def from_lightning(
        cls,
        module: Any,
        trainer_kwargs: dict[str, Any] | None = None,
        datamodule: Any = None,
        *,
        train_dataloaders: Any = None,
    ) -> Evaluator:
        """Wrap a LightningModule, Trainer keyword arguments and data.

        Args:
            module: the ``LightningModule``; the model given to the pruner is this module or one of its submodules.
            trainer_kwargs: passed to ``lightning.pytorch.Trainer`` (``max_steps`` and ``callbacks`` are set per
                call; logging and checkpointing are off unless you set them). Without ``max_epochs`` or
                ``max_steps``, the evaluator's own length is one epoch.
            datamodule: a ``LightningDataModule``, or dataloader(s) for training (then leave ``train_dataloaders``).
            train_dataloaders: training dataloader(s) when no datamodule is given.
        """
        import lightning.pytorch as pl

        if not isinstance(module, pl.LightningModule):
            raise ConfigError(
                "evaluator.module",
                f"must be a lightning.pytorch.LightningModule, got {type(module).__name__}",
            )
        if datamodule is not None and not isinstance(datamodule, pl.LightningDataModule):
            train_dataloaders, datamodule = datamodule, None
        if datamodule is None and train_dataloaders is None:
            raise ConfigError("evaluator.datamodule", "give a LightningDataModule or train dataloaders")
        self = object.__new__(_LightningEvaluator)
        self._module = module
        self._trainer_kwargs = dict(trainer_kwargs or {})
        self._datamodule = datamodule
        self._loaders = train_dataloaders
        return self

    @classmethod
    def from_nni(
        cls, trainer: Callable[..., Any], optimizer: Any, criterion: Callable[..., Any]
    ) -> Evaluator:
        """Wrap NNI v2's ``trainer(model, optimizer, criterion)`` (one epoch per call) and its optimizer.

        Hooks run by patching ``optimizer.step`` (so, as in NNI, use that optimizer for nothing else); a call of
        ``train(steps=n)`` calls ``trainer`` until ``n`` steps have run and stops it mid-epoch.
        """
        if not callable(trainer):
            raise ConfigError(
                "trainer", f"must be callable as trainer(model, optimizer, criterion), got {trainer!r}"
            )
        if not hasattr(optimizer, "step"):
            raise ConfigError("optimizer", f"must be a torch.optim.Optimizer, got {optimizer!r}")
        self = object.__new__(_NniEvaluator)
        self._trainer = trainer
        self._optimizer = optimizer
        self._criterion = criterion
        return self

    # -- interface ----------------------------------------------------------------------------------------------
    def train(self, model: nn.Module, steps: int | None = None, hooks: Sequence[StepHook] = ()) -> None:
        """Train ``model`` for ``steps`` optimizer steps (``None``: the evaluator's own length), calling each hook
        between ``backward`` and ``optimizer.step``."""
        raise NotImplementedError

    def forward(self, model: nn.Module, n_batches: int) -> None:
        """Run ``n_batches`` batches forward through ``model`` (no weight update)."""
        raise NotImplementedError


def _call_hooks(hooks: Iterable[StepHook]) -> None:
    for hook in hooks:
        hook()


class _FunctionEvaluator(Evaluator):
    _train_fn: TrainFn
    _forward_fn: ForwardFn | None

    def __repr__(self) -> str:
        return f"Evaluator.from_function({getattr(self._train_fn, '__name__', self._train_fn)!r})"

    def train(self, model: nn.Module, steps: int | None = None, hooks: Sequence[StepHook] = ()) -> None:
        count = 0

        def step_hook() -> None:
            nonlocal count
            count += 1
            _call_hooks(hooks)

        was_training = model.training
        model.train()
        try:
            self._train_fn(model, step_hook, steps)
        finally:
            model.train(was_training)
        if count == 0:
            logger.warning(
                "the training function never called optimizer_step_hook(); pruners that read gradients "
                "(Slim, TaylorFOWeight, ADMM, Movement) need it called before each optimizer.step()"
            )

    def forward(self, model: nn.Module, n_batches: int) -> None:
        was_training = model.training
        if self._forward_fn is not None:
            model.eval()
            try:
                with torch.no_grad():
                    self._forward_fn(model, n_batches)
            finally:
                model.train(was_training)
            return
        state = copy.deepcopy(model.state_dict())
        try:
            self.train(model, steps=n_batches)
        finally:
            model.load_state_dict(state)


class _StopTraining(Exception):
    pass


class _NniEvaluator(Evaluator):
    _trainer: Callable[..., Any]
    _optimizer: Any
    _criterion: Callable[..., Any]

    def __repr__(self) -> str:
        return f"Evaluator.from_nni({getattr(self._trainer, '__name__', self._trainer)!r})"

    def train(self, model: nn.Module, steps: int | None = None, hooks: Sequence[StepHook] = ()) -> None:
        opt = self._optimizer
        original = opt.step
        patched_before = "step" in vars(opt)
        count = 0

        def step(*args: Any, **kwargs: Any) -> Any:
            nonlocal count
            if steps is not None and count >= steps:
                raise _StopTraining
            _call_hooks(hooks)
            count += 1
            return original(*args, **kwargs)

        opt.step = step
        was_training = model.training
        try:
            while True:
                before = count
                self._trainer(model, opt, self._criterion)
                if steps is None or count >= steps or count == before:
                    break
        except _StopTraining:
            pass
        finally:
            if patched_before:
                opt.step = original
            else:
                del opt.step
            model.train(was_training)

    def forward(self, model: nn.Module, n_batches: int) -> None:
        state = copy.deepcopy(model.state_dict())
        opt_state = copy.deepcopy(self._optimizer.state_dict())
        try:
            self.train(model, steps=n_batches)
        finally:
            model.load_state_dict(state)
            self._optimizer.load_state_dict(opt_state)


class _LightningEvaluator(Evaluator):
    _module: Any
    _trainer_kwargs: dict[str, Any]
    _datamodule: Any
    _loaders: Any

    def __repr__(self) -> str:
        return f"Evaluator.from_lightning({type(self._module).__name__})"

    def _check_model(self, model: nn.Module) -> None:
        if model is not self._module and not any(m is model for m in self._module.modules()):
            raise ConfigError(
                "evaluator.module",
                f"the pruned model ({type(model).__name__}) is not the LightningModule "
                f"{type(self._module).__name__} or one of its submodules; prune the module the evaluator trains",
            )

    def _trainer(self, steps: int | None, callbacks: list[Any]) -> Any:
        import lightning.pytorch as pl

        kwargs = quiet_trainer_kwargs(self._trainer_kwargs)
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + callbacks
        if steps is not None:
            kwargs["max_steps"] = steps
            kwargs.setdefault("max_epochs", -1)
            kwargs["limit_val_batches"] = 0
        elif "max_epochs" not in kwargs and "max_steps" not in kwargs:
            kwargs["max_epochs"] = 1  # Lightning's own default (1000 epochs) is no "length" for a pruner
        return pl.Trainer(**kwargs)

    def train(self, model: nn.Module, steps: int | None = None, hooks: Sequence[StepHook] = ()) -> None:
        import lightning.pytorch as pl

        self._check_model(model)

        class _Hooks(pl.Callback):
            def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
                _call_hooks(hooks)

        trainer = self._trainer(steps, [_Hooks()])
        if self._datamodule is not None:
            trainer.fit(self._module, datamodule=self._datamodule)
        else:
            trainer.fit(self._module, train_dataloaders=self._loaders)

    def _batches(self) -> Iterable[Any]:
        if self._datamodule is not None:
            dm = self._datamodule
            dm.prepare_data()
            dm.setup("fit")
            loader = dm.train_dataloader()
        else:
            loader = self._loaders
        if isinstance(loader, (list, tuple)):
            loader = loader[0]
        return loader

    def forward(self, model: nn.Module, n_batches: int) -> None:
        self._check_model(model)
        device = next(self._module.parameters()).device
        was_training = self._module.training
        self._module.eval()
        try:
            with torch.no_grad():
                for i, batch in enumerate(self._batches()):
                    if i >= n_batches:
                        break
                    inputs = batch[0] if isinstance(batch, (list, tuple)) else batch
                    if isinstance(inputs, torch.Tensor):
                        inputs = inputs.to(device)
                    self._module(inputs)
        finally:
            self._module.train(was_training)
