"""NNI 2.5's one-shot trainers (``DartsTrainer``, ``EnasTrainer``, ``ProxylessTrainer``, ``SinglePathTrainer``)
as thin shims over the LightningModules of :mod:`nni_pl.nas.oneshot.lightning`.

Each takes NNI's arguments (names, order and defaults), builds the supernet of ``model`` (a copy: the model space
is left as it is), wraps ``loss(output, target)`` and ``metrics(output, target) -> dict`` in a small
LightningModule (it logs ``loss`` and each metric per training step, ``val_loss`` and ``val_<metric>`` per
validation) and runs a Lightning ``Trainer``. ``fit()`` trains; ``export()`` returns the architecture
(label -> value) that ``model.freeze(arch)`` and :func:`nni_pl.nas.fixed_arch` take.

Where they differ from NNI 2.5:

* ``optimizer`` (built on ``model.parameters()``) is rebuilt on the supernet's parameters: the same class and
  hyper-parameters (those of its param group when it has one, else its constructor defaults);
* ``DartsTrainer.learning_rate`` is accepted and ignored, as in NNI 2.5 (the weights train at ``optimizer``'s
  learning rate); ``grad_clip`` is honoured (NNI 2.5 clipped at 5 whatever it was given);
* ``EnasTrainer`` trains the weights and the controller on alternate batches of one epoch (NNI 2.5: an epoch of
  weights, then one of the controller), with NNI's split: the first ``ceil(n/2)`` samples train the weights;
* after each epoch the exported architecture is validated on the validation data (the architecture half of
  ``dataset``; ``dataset_valid`` for ``SinglePathTrainer``);
* ``SinglePathTrainer.fit()`` ends with SPOS's evolution search on ``dataset_valid`` (fitness: the first value
  of ``metrics``, after 4 training batches recalibrate each candidate's batch norm); ``export()`` returns the best architecture it found (NNI 2.5 returned a random one);
* ``device=None`` lets Lightning pick the accelerator (one device); ``trainer_kwargs`` (an attribute, a dict)
  adds ``Trainer`` arguments before ``fit()``, e.g. ``limit_train_batches``.

For a trainer of your own: :class:`BaseOneShotTrainer`, :func:`replace_layer_choice`, :func:`replace_input_choice`.

Example (NNI's ``DartsLayerChoice``, with only its imports changed):
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from torch import nn
    >>> from nni_pl.nas import LayerChoice, ModelSpace
    >>> from nni_pl.nas.oneshot import replace_layer_choice
    >>> class DartsLayerChoice(nn.Module):
    ...     def __init__(self, layer_choice):
    ...         super(DartsLayerChoice, self).__init__()
    ...         self.name = layer_choice.label
    ...         self.op_choices = nn.ModuleDict(layer_choice.named_children())
    ...         self.alpha = nn.Parameter(torch.randn(len(self.op_choices)) * 1e-3)
    ...     def forward(self, *args, **kwargs):
    ...         op_results = torch.stack([op(*args, **kwargs) for op in self.op_choices.values()])
    ...         alpha_shape = [-1] + [1] * (len(op_results.size()) - 1)
    ...         return torch.sum(op_results * F.softmax(self.alpha, -1).view(*alpha_shape), 0)
    >>> class Net(ModelSpace):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="doc_act")
    ...     def forward(self, x):
    ...         return self.act(x)
    >>> net, nas_modules = Net(), []
    >>> [(name, type(m).__name__) for name, m in replace_layer_choice(net, DartsLayerChoice, nas_modules)]
    [('doc_act', 'DartsLayerChoice')]
    >>> net(-torch.ones(1, 2)).shape, list(nas_modules[0][1].op_choices)
    (torch.Size([1, 2]), ['relu', 'tanh'])
"""

from __future__ import annotations

import abc
import logging
import numbers
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from nni_pl._checks import check_bool, check_int, check_number, fail
from nni_pl._lightning import quiet_trainer_kwargs
from nni_pl.nas.mutables import InputChoice, LayerChoice
from nni_pl.nas.oneshot.lightning import (
    DartsModule,
    EnasModule,
    OneShotModule,
    ProxylessModule,
    RandomOneShotModule,
)
from nni_pl.nas.oneshot.runner import paired_loader
from nni_pl.nas.oneshot.supernet import build_supernet

__all__ = [
    "BaseOneShotTrainer",
    "DartsTrainer",
    "EnasTrainer",
    "ProxylessTrainer",
    "SinglePathTrainer",
    "rebuild_optimizer",
    "replace_input_choice",
    "replace_layer_choice",
]

log = logging.getLogger(__name__)

_Loss = Callable[[Any, Any], Any]  # (output, target) -> a tensor or a number
_Metrics = Callable[[Any, Any], Mapping[str, Any]]
_Device = torch.device | str | None
_OPEN_UNIT = {"low": 0, "high": 1, "low_open": True, "high_open": True}
_CTRL_KWARGS = ("lstm_size", "lstm_num_layers", "tanh_constant", "temperature", "skip_target")


class BaseOneShotTrainer(abc.ABC):
    """NNI's base of one-shot trainers: :meth:`fit` trains and searches, :meth:`export` gives the architecture."""

    @abc.abstractmethod
    def fit(self) -> None:
        """Train the supernet and search it."""

    @abc.abstractmethod
    def export(self) -> dict[str, Any]:
        """The architecture found: label -> value, as ``model.freeze`` and ``fixed_arch`` take it."""


def _replace(root: nn.Module, init_fn: Callable[[Any], nn.Module], kind: type, modules: list | None) -> list:
    modules = [] if modules is None else modules

    def apply(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if isinstance(child, kind):
                new = init_fn(child)
                setattr(parent, name, new)
                modules.append((child.label, new))
            else:
                apply(child)

    apply(root)
    return modules


def replace_layer_choice(
    root_module: nn.Module, init_fn: Callable[[LayerChoice], nn.Module], modules: list | None = None
) -> list[tuple[str, nn.Module]]:
    """Replace, in place, each ``LayerChoice`` in ``root_module`` by ``init_fn(layer_choice)`` (NNI's utility).

    The replacements' candidates are not searched further. Returns ``modules`` (a new list when None) with one
    ``(label, replacement)`` pair appended per choice replaced.
    """
    return _replace(root_module, init_fn, LayerChoice, modules)


def replace_input_choice(
    root_module: nn.Module, init_fn: Callable[[InputChoice], nn.Module], modules: list | None = None
) -> list[tuple[str, nn.Module]]:
    """Replace, in place, each ``InputChoice`` in ``root_module`` by ``init_fn(input_choice)``; as
    :func:`replace_layer_choice`."""
    return _replace(root_module, init_fn, InputChoice, modules)


def rebuild_optimizer(optimizer: torch.optim.Optimizer, params: Any) -> torch.optim.Optimizer:
    """An optimiser of ``optimizer``'s class and hyper-parameters over ``params``.

    With one param group its settings are kept (a learning rate changed after construction included); with
    several, the constructor's defaults are used (the groups held parameters of the model space, which the
    supernet does not share).
    """
    settings = dict(optimizer.defaults)
    if len(optimizer.param_groups) == 1:
        group = optimizer.param_groups[0]
        settings.update({k: group[k] for k in settings if k in group})
    else:
        log.warning(
            "%s has %d param groups; the supernet's optimiser uses its defaults for all parameters",
            type(optimizer).__name__,
            len(optimizer.param_groups),
        )
    return type(optimizer)(params, **settings)


def _number(key: str, value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().float()
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"metrics returned {key!r}: {value!r}; every metric must be a number or a tensor")


class _NniModule(pl.LightningModule):
    """The inner module: NNI's ``loss`` and ``metrics`` around the supernet, with the rebuilt optimiser."""

    def __init__(
        self, net: nn.Module, loss: Callable, metrics: Callable, optimizer: torch.optim.Optimizer
    ) -> None:
        super().__init__()
        self.net = net
        self.loss_fn, self.metrics_fn, self.weight_optimizer = loss, metrics, optimizer

    def forward(self, x: Any) -> Any:
        return self.net(x)

    def _step(self, batch: Any, prefix: str) -> torch.Tensor:
        x, y = batch[0], batch[1]
        out = self(x)
        loss = self.loss_fn(out, y)
        n = len(y) if hasattr(y, "__len__") else None
        self.log(f"{prefix}loss", loss.detach(), batch_size=n)
        with torch.no_grad():
            for key, value in (self.metrics_fn(out.detach(), y) or {}).items():
                self.log(f"{prefix}{key}", _number(key, value), batch_size=n)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val_")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.weight_optimizer


class _StepLog(pl.Callback):
    """NNI's ``log_frequency``: the step's metrics to the Python log every ``every`` steps."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx % self.every == 0:
            shown = "  ".join(
                f"{k} {float(v):.4f}" for k, v in trainer.callback_metrics.items() if not k.startswith("val_")
            )
            log.info(
                "Epoch [%d/%d] Step [%d/%d]  %s",
                trainer.current_epoch + 1,
                trainer.max_epochs,
                batch_idx + 1,
                trainer.num_training_batches,
                shown,
            )


def _device_kwargs(owner: object, device: Any) -> dict[str, Any]:
    if device is None:
        return {"accelerator": "auto", "devices": 1}
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        fail(
            owner, "device", f"must be None, a torch.device or a name like 'cpu' or 'cuda:0', got {device!r}"
        )
    if dev.type not in ("cpu", "cuda", "mps"):
        fail(owner, "device", f"must be a cpu, cuda or mps device, got {device!r}")
    return {
        "accelerator": dev.type,
        "devices": [dev.index] if dev.index is not None and dev.type != "cpu" else 1,
    }


def _check_dataset(owner: object, name: str, dataset: Any, minimum: int) -> Dataset:
    if not isinstance(dataset, Dataset) or not hasattr(dataset, "__len__"):
        fail(
            owner,
            name,
            f"must be a torch.utils.data.Dataset of (input, target) pairs with a length "
            f"(e.g. a TensorDataset), got {type(dataset).__name__}: {dataset!r:.80}",
        )
    if len(dataset) < minimum:
        fail(owner, name, f"must hold at least {minimum} samples, got {len(dataset)}")
    return dataset


def _check_callable(owner: object, name: str, value: Any, form: str) -> Callable:
    if not callable(value):
        fail(owner, name, f"must be a callable {form}, got {value!r}")
    return value


class _OneShotTrainer(BaseOneShotTrainer):
    """What the four trainers share: checks, the supernet, the inner module, the loaders and the Trainer run."""

    strategy: ClassVar[str] = ""

    #: more ``lightning.pytorch.Trainer`` arguments for :meth:`fit` (they override the trainer's own)
    trainer_kwargs: dict[str, Any]

    def _setup(
        self,
        model: Any,
        loss: Any,
        metrics: Any,
        optimizer: Any,
        num_epochs: Any,
        batch_size: Any,
        workers: Any,
        device: Any,
        log_frequency: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            fail(
                self, "model", f"must be the model space (a torch nn.Module with choices), got {model!r:.80}"
            )
        self.loss = _check_callable(self, "loss", loss, "loss(output, target) -> tensor")
        self.metrics = _check_callable(self, "metrics", metrics, "metrics(output, target) -> dict")
        if not isinstance(optimizer, torch.optim.Optimizer):
            fail(
                self,
                "optimizer",
                f"must be a torch.optim.Optimizer (built on model.parameters()), got {optimizer!r:.80}",
            )
        self.num_epochs = check_int(self, "num_epochs", num_epochs, minimum=1)
        self.batch_size = check_int(self, "batch_size", batch_size, minimum=1)
        self.workers = check_int(self, "workers", workers, minimum=0)
        self.device_kwargs = _device_kwargs(self, device)
        self.device = device
        self.log_frequency = (
            None if log_frequency is None else check_int(self, "log_frequency", log_frequency, minimum=1)
        )
        self.model = model
        self.trainer_kwargs = {}
        self.trainer: pl.Trainer | None = None
        self._optimizer_given = optimizer

    def _build(self, module_cls: type[OneShotModule], score: Callable | None = None, **kwargs: Any) -> None:
        self.supernet = build_supernet(self.model, self.strategy)
        try:
            self.optimizer = rebuild_optimizer(self._optimizer_given, self.supernet.parameters())
        except (TypeError, ValueError) as e:
            fail(
                self,
                "optimizer",
                f"{type(self._optimizer_given).__name__} cannot be rebuilt on the supernet's "
                f"parameters from its defaults ({e}); use a torch.optim optimiser",
            )
        del self._optimizer_given
        inner = _NniModule(self.supernet, self.loss, self.metrics, self.optimizer)
        seed = int(torch.randint(2**31 - 1, (1,)))  # torch.manual_seed decides the architectures sampled
        self.module = module_cls(inner, self.supernet, seed=seed, score=score, **kwargs)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.workers)

    def _split(self, dataset: Dataset, train_first_half_larger: bool) -> None:
        n = len(dataset)
        cut = n - n // 2 if train_first_half_larger else n // 2
        train, valid = Subset(dataset, range(cut)), Subset(dataset, range(cut, n))
        self.train_loader, self.valid_loader = self._loader(train, True), self._loader(valid, True)
        self._fit_loader = paired_loader(self.train_loader, self.valid_loader)
        self._val_loader = self._loader(valid, False)

    def fit(self) -> None:
        callbacks = [_StepLog(self.log_frequency)] if self.log_frequency else []
        defaults: dict[str, Any] = {
            "max_epochs": self.num_epochs,
            "num_sanity_val_steps": 0,
            **self.device_kwargs,
        }
        if self.log_frequency:
            defaults["log_every_n_steps"] = self.log_frequency
        self.trainer = pl.Trainer(
            callbacks=callbacks, **quiet_trainer_kwargs(self.trainer_kwargs, **defaults)
        )
        self.trainer.fit(self.module, train_dataloaders=self._fit_loader, val_dataloaders=self._val_loader)

    def export(self) -> dict[str, Any]:
        return self.module.export()


class DartsTrainer(_OneShotTrainer):
    """DARTS (:class:`~nni_pl.nas.oneshot.lightning.DartsModule`): the first half of ``dataset`` trains the
    weights, the second the architecture (Adam, ``arc_learning_rate``, betas (0.5, 0.999), weight decay 1e-3);
    ``unrolled=True`` for the second-order gradient. ``learning_rate`` is ignored, as in NNI 2.5.
    See the module docstring for the other arguments."""

    strategy = "DARTS"

    def __init__(
        self,
        model: nn.Module,
        loss: _Loss,
        metrics: _Metrics,
        optimizer: torch.optim.Optimizer,
        num_epochs: int,
        dataset: Dataset,
        grad_clip: float = 5.0,
        learning_rate: float = 0.0025,
        batch_size: int = 64,
        workers: int = 4,
        device: _Device = None,
        log_frequency: int | None = None,
        arc_learning_rate: float = 0.0003,
        unrolled: bool = False,
    ) -> None:
        self._setup(model, loss, metrics, optimizer, num_epochs, batch_size, workers, device, log_frequency)
        self.dataset = _check_dataset(self, "dataset", dataset, 2)
        self.grad_clip = check_number(self, "grad_clip", grad_clip, low=0)
        self.learning_rate = check_number(self, "learning_rate", learning_rate, low=0, low_open=True)
        self.arc_learning_rate = check_number(
            self, "arc_learning_rate", arc_learning_rate, low=0, low_open=True
        )
        self.unrolled = check_bool(self, "unrolled", unrolled)
        self._split(self.dataset, train_first_half_larger=False)
        self._build(
            DartsModule,
            arc_learning_rate=self.arc_learning_rate,
            arc_weight_decay=1e-3,
            unrolled=self.unrolled,
            grad_clip=self.grad_clip,
        )


class EnasTrainer(_OneShotTrainer):
    """ENAS (:class:`~nni_pl.nas.oneshot.lightning.EnasModule`): the first ``ceil(n/2)`` samples of ``dataset``
    train the weights, the rest the controller, rewarded by ``reward_function(output, target)`` (bigger is
    better); the controller's gradients are clipped at ``grad_clip`` too, as NNI's. ``ctrl_kwargs``:
    ``lstm_size``, ``lstm_num_layers``, ``tanh_constant``, ``temperature``, ``skip_target`` (0.4)."""

    strategy = "ENAS"

    def __init__(
        self,
        model: nn.Module,
        loss: _Loss,
        metrics: _Metrics,
        reward_function: _Loss,
        optimizer: torch.optim.Optimizer,
        num_epochs: int,
        dataset: Dataset,
        batch_size: int = 64,
        workers: int = 4,
        device: _Device = None,
        log_frequency: int | None = None,
        grad_clip: float = 5.0,
        entropy_weight: float = 0.0001,
        skip_weight: float = 0.8,
        baseline_decay: float = 0.999,
        ctrl_lr: float = 0.00035,
        ctrl_steps_aggregate: int = 20,
        ctrl_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self._setup(model, loss, metrics, optimizer, num_epochs, batch_size, workers, device, log_frequency)
        self.reward_function = _check_callable(
            self, "reward_function", reward_function, "reward(output, target)"
        )
        self.dataset = _check_dataset(self, "dataset", dataset, 2)
        self.grad_clip = check_number(self, "grad_clip", grad_clip, low=0)
        self.entropy_weight = check_number(self, "entropy_weight", entropy_weight, low=0)
        self.skip_weight = check_number(self, "skip_weight", skip_weight, low=0)
        self.baseline_decay = check_number(self, "baseline_decay", baseline_decay, low=0, high=1)
        self.ctrl_lr = check_number(self, "ctrl_lr", ctrl_lr, low=0, low_open=True)
        self.ctrl_steps_aggregate = check_int(self, "ctrl_steps_aggregate", ctrl_steps_aggregate, minimum=1)
        if ctrl_kwargs is not None and not isinstance(ctrl_kwargs, Mapping):
            fail(self, "ctrl_kwargs", f"must be None or a dict of controller arguments, got {ctrl_kwargs!r}")
        ctrl = dict(ctrl_kwargs or {})
        for key in ctrl:
            if key not in _CTRL_KWARGS:
                fail(
                    self,
                    f"ctrl_kwargs.{key}",
                    f"is not a controller argument (got {ctrl[key]!r}); use {list(_CTRL_KWARGS)}",
                )
        skip_target = check_number(
            self, "ctrl_kwargs.skip_target", ctrl.pop("skip_target", 0.4), **_OPEN_UNIT
        )
        self.ctrl_kwargs = ctrl_kwargs
        self._split(self.dataset, train_first_half_larger=True)
        self._build(
            EnasModule,
            score=self._reward,
            ctrl_lr=self.ctrl_lr,
            entropy_weight=self.entropy_weight,
            skip_weight=self.skip_weight,
            skip_target=skip_target,
            baseline_decay=self.baseline_decay,
            ctrl_steps_aggregate=self.ctrl_steps_aggregate,
            ctrl_grad_clip=self.grad_clip,
            ctrl_kwargs=ctrl,
            grad_clip=self.grad_clip,
        )

    def _reward(self, inner: pl.LightningModule, batch: Any) -> float:
        with torch.no_grad():
            return float(self.reward_function(inner(batch[0]), batch[1]))


class ProxylessTrainer(_OneShotTrainer):
    """ProxylessNAS (:class:`~nni_pl.nas.oneshot.lightning.ProxylessModule`): binary gates; the first half of
    ``dataset`` trains the weights, the second the architecture (Adam, ``arc_learning_rate``, betas (0, 0.999))
    after ``warmup_epochs`` of weights only. No gradient clipping, as NNI's."""

    strategy = "Proxyless"

    def __init__(
        self,
        model: nn.Module,
        loss: _Loss,
        metrics: _Metrics,
        optimizer: torch.optim.Optimizer,
        num_epochs: int,
        dataset: Dataset,
        warmup_epochs: int = 0,
        batch_size: int = 64,
        workers: int = 4,
        device: _Device = None,
        log_frequency: int | None = None,
        arc_learning_rate: float = 0.001,
    ) -> None:
        self._setup(model, loss, metrics, optimizer, num_epochs, batch_size, workers, device, log_frequency)
        self.dataset = _check_dataset(self, "dataset", dataset, 2)
        self.warmup_epochs = check_int(self, "warmup_epochs", warmup_epochs, minimum=0)
        self.arc_learning_rate = check_number(
            self, "arc_learning_rate", arc_learning_rate, low=0, low_open=True
        )
        if self.warmup_epochs >= self.num_epochs:
            log.warning(
                "ProxylessTrainer: warmup_epochs=%d >= num_epochs=%d: the architecture is never trained",
                self.warmup_epochs,
                self.num_epochs,
            )
        self._split(self.dataset, train_first_half_larger=False)
        self._build(
            ProxylessModule,
            arc_learning_rate=self.arc_learning_rate,
            warmup_epochs=self.warmup_epochs,
            grad_clip=0.0,
        )


class SinglePathTrainer(_OneShotTrainer):
    """SPOS (:class:`~nni_pl.nas.oneshot.lightning.RandomOneShotModule`): each step trains one uniformly sampled
    path on ``dataset_train``; after the epochs, an evolution search (50 architectures) scores architectures on
    ``dataset_valid`` with the shared weights by the first value of ``metrics`` (minus the loss when it gives
    none), and :meth:`export` returns the best. ``mutator`` must be None (NNI 1.x's; paths are sampled
    uniformly)."""

    strategy = "RandomOneShot"

    def __init__(
        self,
        model: nn.Module,
        loss: _Loss,
        metrics: _Metrics,
        optimizer: torch.optim.Optimizer,
        num_epochs: int,
        dataset_train: Dataset,
        dataset_valid: Dataset,
        mutator: None = None,
        batch_size: int = 64,
        workers: int = 4,
        device: _Device = None,
        log_frequency: int | None = None,
    ) -> None:
        self._setup(model, loss, metrics, optimizer, num_epochs, batch_size, workers, device, log_frequency)
        self.dataset_train = _check_dataset(self, "dataset_train", dataset_train, 1)
        self.dataset_valid = _check_dataset(self, "dataset_valid", dataset_valid, 1)
        if mutator is not None:
            fail(
                self,
                "mutator",
                f"must be None: paths are sampled uniformly (NNI 1.x mutators are not supported), got {mutator!r}",
            )
        self.mutator = None
        self.train_loader = self._loader(self.dataset_train, True)
        self.valid_loader = self._val_loader = self._loader(self.dataset_valid, False)
        self._fit_loader = self.train_loader
        self.search_results: list[tuple[dict[str, Any], float]] = []
        self._build(RandomOneShotModule, score=self._fitness, grad_clip=0.0)

    def _fitness(self, inner: pl.LightningModule, batch: Any) -> float:
        x, y = batch[0], batch[1]
        with torch.no_grad():
            out = inner(x)
            found = [v for k, v in (self.metrics(out, y) or {}).items() if k != "loss"]
            return float(found[0]) if found else -float(self.loss(out, y))

    def fit(self) -> None:
        from lightning.fabric.utilities.apply_func import move_data_to_device

        super().fit()
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.module.to(device)
        batches = [move_data_to_device(b, device) for b in self.valid_loader]
        recalibrate = [move_data_to_device(b, device) for _, b in zip(range(4), self.train_loader)]
        self.search_results = self.module.search(batches, top_k=50, recalibrate=recalibrate)
        log.info("SPOS search: best %s (score %.4f)", self.search_results[0][0], self.search_results[0][1])
