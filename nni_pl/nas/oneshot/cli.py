"""One-shot NAS from ``LightningCLI``: :class:`OneShotSearch` wraps your LightningModule, whose network is a model
space, in a one-shot strategy (DARTS by default) and writes the architecture it finds when ``fit`` ends.

A one-shot strategy is not a callback: it *replaces* the LightningModule (its training step trains the weights and
the architecture in turn) and, for the bilevel strategies, needs a training and a validation batch per step. So
the search is a LightningModule that LightningCLI builds with yours nested inside it::

    # python train.py fit --config callbacks/oneshot_nas.yaml --model.model=my_package.DigitsNet
    model:
      class_path: nni_pl.nas.oneshot.cli.OneShotSearch
      init_args:
        model:                              # your LightningModule (a model space inside)
          class_path: my_package.DigitsNet
          init_args: {lr: 0.01}
        strategy: darts                     # gumbel_darts (gumbel) | enas | spos | proxyless
        strategy_args: {arc_learning_rate: 0.0003}

Your module's ``training_step`` returns the loss, its ``validation_step`` logs the metrics, its
``configure_optimizers`` gives the weights' optimizer(s); the strategy adds its own for the architecture.

``train.py`` must let the config choose the model class: ``LightningCLI(datamodule_class=MyData)`` (or
``LightningCLI(subclass_mode_model=True)``); ``LightningCLI(MyNet, MyData)`` fixes the model to ``MyNet``.

What happens:

* the model space inside your module (the one :class:`~nni_pl.nas.space.ModelSpace` submodule, or the attribute
  named by ``space``, e.g. ``"net"`` or ``"backbone.body"``) is replaced by its supernet
  (:func:`~nni_pl.nas.oneshot.build_supernet`), and the strategy's module of :mod:`nni_pl.nas.oneshot.lightning`
  is built around your module; your ``training_step``, ``validation_step``, ``configure_optimizers`` and epoch
  hooks run inside it (validation runs the architecture exported so far);
* for DARTS, GumbelDARTS, ENAS and Proxyless the datamodule's ``train_dataloader`` is paired with its
  ``val_dataloader`` for the length of ``fit`` (:func:`~nni_pl.nas.oneshot.paired_loader`: each step gets a
  training and a validation batch; also for loaders given to ``trainer.fit`` directly, and for your module's own
  ``train_dataloader``/``val_dataloader`` hooks);
* after each validation epoch the current architecture is logged; when ``fit`` ends (after SPOS's evolution
  search over the trained supernet) the architecture is written as JSON to ``export_path`` (relative paths are
  under ``trainer.log_dir``) and logged. :func:`nni_pl.nas.load_arch` reads it back and ``space.freeze(arch)``
  builds the model to train from scratch; :meth:`OneShotSearch.export_model` gives it with the supernet's weights;
* checkpoints hold the supernet, the architecture parameters or controller and the optimizers: ``fit
  --ckpt_path=...`` resumes the search.

Example:
    >>> import lightning.pytorch as pl, torch
    >>> from nni_pl.nas import ModelSpace, LayerChoice, ValueChoice, nn
    >>> class Space(ModelSpace):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(64, ValueChoice([16, 32], label="hidden"))
    ...         self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="act")
    ...         self.out = nn.Linear(ValueChoice([16, 32], label="hidden"), 10)
    ...     def forward(self, x):
    ...         return self.out(self.act(self.fc(x)))
    >>> class Net(pl.LightningModule):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.net = Space()
    ...     def forward(self, x):
    ...         return self.net(x)
    ...     def training_step(self, batch, batch_idx):
    ...         return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])
    ...     def configure_optimizers(self):
    ...         return torch.optim.SGD(self.parameters(), lr=0.1)
    >>> search = OneShotSearch(model=Net(), strategy="darts")
    >>> search.extra_repr()
    "model=Net, strategy='DARTS', space='net', export_path='architecture.json'"
    >>> sorted(search.export())
    ['act', 'hidden']
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import nn

from nni_pl.errors import ConfigError, did_you_mean
from nni_pl.nas.oneshot.lightning import OneShotModule, RandomOneShotModule
from nni_pl.nas.oneshot.supernet import build_supernet
from nni_pl.nas.strategy.oneshot import (
    DARTS,
    ENAS,
    GumbelDARTS,
    OneShotStrategy,
    Proxyless,
    RandomOneShot,
)

__all__ = ["STRATEGIES", "OneShotSearch"]

#: the names ``strategy`` accepts (the short ones, and the settings classes' own names)
STRATEGIES: dict[str, type[OneShotStrategy]] = {
    "darts": DARTS,
    "gumbel_darts": GumbelDARTS,
    "gumbel": GumbelDARTS,
    "enas": ENAS,
    "spos": RandomOneShot,
    "random_one_shot": RandomOneShot,
    "proxyless": Proxyless,
    "DARTS": DARTS,
    "GumbelDARTS": GumbelDARTS,
    "ENAS": ENAS,
    "SPOS": RandomOneShot,
    "RandomOneShot": RandomOneShot,
    "Proxyless": Proxyless,
}

CHECKPOINT_KEY = "nni_pl_oneshot_search"


def _field(name: str) -> str:
    return f"OneShotSearch.{name}"


def _strategy(strategy: Any, strategy_args: Any) -> OneShotStrategy:
    if isinstance(strategy, OneShotStrategy):
        if strategy_args:
            raise ConfigError(
                _field("strategy_args"),
                f"give the settings either in the strategy object or in strategy_args, not both; got {strategy_args!r}",
            )
        return strategy
    names = list(STRATEGIES)[:7]
    if not isinstance(strategy, str):
        raise ConfigError(
            _field("strategy"),
            f"must be one of {names} or a nni_pl.nas.strategy settings object (DARTS(...), ...), got "
            f"{type(strategy).__name__} {strategy!r}",
        )
    if strategy not in STRATEGIES:
        raise ConfigError(
            _field("strategy"),
            f"unknown one-shot strategy {strategy!r}{did_you_mean(strategy, STRATEGIES)}; use one of {names} "
            "(NNI's class names DARTS, GumbelDARTS, ENAS, RandomOneShot, SPOS, Proxyless work too)",
        )
    if strategy_args is None:
        strategy_args = {}
    if not isinstance(strategy_args, Mapping):
        raise ConfigError(
            _field("strategy_args"),
            f"must be a dict of {STRATEGIES[strategy].__name__}'s arguments, got {type(strategy_args).__name__} "
            f"{strategy_args!r}",
        )
    cls = STRATEGIES[strategy]
    known = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in strategy_args:
        if key not in known:
            raise ConfigError(
                _field(f"strategy_args.{key}"),
                f"{key!r} is not an argument of {cls.__name__}{did_you_mean(str(key), known)}; it takes {known}",
            )
    return cls(**strategy_args)


def _find_space(model: pl.LightningModule, space: str | None) -> tuple[nn.Module, str, nn.Module]:
    """``(parent, attribute name, space)`` of the model space inside ``model``."""
    from nni_pl.nas.space import ModelSpace, collect_choices

    if space is not None:
        if not isinstance(space, str) or not space:
            raise ConfigError(
                _field("space"), f"must be the attribute path of the model space (e.g. 'net'), got {space!r}"
            )
        parent: nn.Module = model
        *path, name = space.split(".")
        try:
            for part in path:
                parent = getattr(parent, part)
            found = getattr(parent, name)
        except AttributeError:
            found = None
        if not isinstance(found, nn.Module) or name not in parent._modules:
            names = [n for n, _ in model.named_modules() if n]
            raise ConfigError(
                _field("space"),
                f"{type(model).__name__} has no submodule {space!r}{did_you_mean(space, names)}; "
                "name the attribute that holds the model space",
            )
        if not collect_choices(found):
            raise ConfigError(
                _field("space"),
                f"{space!r} ({type(found).__name__}) has no LayerChoice, ValueChoice or other choice to search",
            )
        return parent, name, found
    # the outermost ModelSpace submodules; else the direct children holding choices
    spaces: list[tuple[str, nn.Module]] = []
    for qualified, sub in model.named_modules():
        if qualified and isinstance(sub, ModelSpace) and sub.frozen_arch is None:
            if not any(qualified.startswith(f"{outer}.") for outer, _ in spaces):
                spaces.append((qualified, sub))
    if not spaces:
        spaces = [(n, c) for n, c in model.named_children() if collect_choices(c)]
    if len(spaces) != 1:
        what = (
            f"holds several ({[n for n, _ in spaces]})"
            if spaces
            else "holds no model space (a ModelSpace or a module with LayerChoice/ValueChoice inside)"
        )
        raise ConfigError(
            _field("space" if spaces else "model"),
            f"{type(model).__name__} {what}; "
            + (
                "set space to the attribute to search, e.g. space: net"
                if spaces
                else "put one in it, e.g. self.net"
            ),
        )
    qualified, found = spaces[0]
    *path, name = qualified.split(".")
    parent = model
    for part in path:
        parent = getattr(parent, part)
    return parent, name, found


class _OnDevice:
    """A loader's batches moved to the module's device (SPOS's search runs the supernet on them)."""

    def __init__(self, loader: Any, module: pl.LightningModule) -> None:
        self.loader, self.module = loader, module

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield self.module.transfer_batch_to_device(batch, self.module.device, 0)


class OneShotSearch(pl.LightningModule):
    """A one-shot architecture search over the model space inside ``model``, as a LightningModule for ``fit``.

    Args:
        model: your LightningModule; one of its submodules is a model space (see ``space``). Its
            ``training_step`` must return the loss; its ``validation_step`` logs the metrics; its
            ``configure_optimizers`` gives the weights' optimizer(s) (the strategy adds its own).
        strategy: ``"darts"`` (default), ``"gumbel_darts"`` (or ``"gumbel"``), ``"enas"``, ``"spos"``
            (RandomOneShot: uniform path sampling, then an evolution search), ``"proxyless"`` (also NNI's class
            names ``"DARTS"``, ``"GumbelDARTS"``, ...), or a settings object of :mod:`nni_pl.nas.strategy` (in YAML:
            ``strategy: {class_path: nni_pl.nas.strategy.DARTS, init_args: {unrolled: true}}``).
        strategy_args: keyword arguments of the strategy's settings class (e.g. ``{"unrolled": True}`` for DARTS,
            ``{"num_candidates": 20}`` for SPOS), checked by it.
        space: the attribute path of the model space in ``model`` (``"net"``, ``"backbone.body"``); ``None``: the
            one :class:`~nni_pl.nas.space.ModelSpace` submodule (or the one child holding choices).
        export_path: where the architecture found is written as JSON when ``fit`` ends; a relative path is
            under ``trainer.log_dir`` (``default_root_dir`` without a logger). ``None``: not written.

    Attributes:
        arch: the architecture exported when ``fit`` ended (``None`` before).
        exported_to: the file it was written to.
        search_module: the strategy's :class:`~nni_pl.nas.oneshot.lightning.OneShotModule` around ``model``.
        supernet: the supernet that replaced the space inside ``model``.
        space: the model space as it was built (untrained): ``space.freeze(arch)`` is a model to train anew.

    Raises:
        ConfigError: an argument is invalid (the message names it and echoes the value).
        OneShotError: the space has a choice the strategy cannot search.

    Example:
        >>> OneShotSearch(model=torch.nn.Linear(2, 2))
        Traceback (most recent call last):
        ...
        nni_pl.errors.ConfigError: config field 'OneShotSearch.model': must be a LightningModule whose network is a model space, got Linear
    """

    def __init__(
        self,
        *,
        model: pl.LightningModule,
        strategy: str | OneShotStrategy = "darts",
        strategy_args: dict[str, Any] | None = None,
        space: str | None = None,
        export_path: str | None = "architecture.json",
    ) -> None:
        super().__init__()
        if not isinstance(model, pl.LightningModule):
            raise ConfigError(
                _field("model"),
                f"must be a LightningModule whose network is a model space, got {type(model).__name__}",
            )
        if export_path is not None and (not isinstance(export_path, (str, Path)) or not str(export_path)):
            raise ConfigError(
                _field("export_path"),
                f"must be a file path such as 'architecture.json' or None, got {export_path!r}",
            )
        settings = _strategy(strategy, strategy_args)
        parent, name, found = _find_space(model, space)
        supernet = build_supernet(found, settings.name)  # a copy: ``found`` stays the untrained space
        setattr(parent, name, supernet)
        self.automatic_optimization = False
        self.search_module: OneShotModule = settings.build_module(model, supernet)
        self.strategy = settings
        self.space_path = ".".join(q for q, m in model.named_modules() if m is supernet)
        self.export_path = None if export_path is None else str(export_path)
        # the untrained space, kept out of the module tree: not trained, not in checkpoints
        object.__setattr__(self, "space", found)
        object.__setattr__(self, "supernet", supernet)
        self.arch: dict[str, Any] | None = None
        self.exported_to: Path | None = None
        self._patched: tuple[Any, ...] | None = None
        # your module's own *_dataloader hooks (used by Lightning when fit has neither a datamodule nor loaders)
        for hook in ("train_dataloader", "val_dataloader", "test_dataloader", "predict_dataloader"):
            if is_overridden(hook, model):
                object.__setattr__(self, hook, getattr(model, hook))
        if self.search_module.bilevel and is_overridden("train_dataloader", model):
            object.__setattr__(self, "train_dataloader", self._paired_own_loaders)

    @property
    def model(self) -> pl.LightningModule:
        """Your LightningModule (its space replaced by the supernet)."""
        return self.search_module.inner

    def extra_repr(self) -> str:
        return (
            f"model={type(self.model).__name__}, strategy={self.strategy.name!r}, space={self.space_path!r}, "
            f"export_path={self.export_path!r}"
        )

    # --- the architecture ---------------------------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        """The architecture the strategy picks now (label -> value)."""
        return self.search_module.export()

    def export_model(self, arch: Mapping[str, Any] | None = None) -> nn.Module:
        """The space frozen to ``arch`` (default: :attr:`arch`, else :meth:`export`) with the supernet's trained
        weights (:func:`~nni_pl.nas.oneshot.supernet.freeze_supernet`), a plain module."""
        from nni_pl.nas.oneshot.supernet import freeze_supernet

        chosen = dict(arch) if arch is not None else (self.arch or self.export())
        with torch.no_grad():
            return freeze_supernet(self.supernet, self.space, chosen)

    # --- delegation: the strategy's module, and your module's own hooks ------------------------------------------
    def _call(self, module: pl.LightningModule, hook: str, *args: Any) -> Any:
        module._current_fx_name = self._current_fx_name  # its self.log goes to this loop's results
        return getattr(module, hook)(*args)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.search_module(*args, **kwargs)

    def configure_optimizers(self) -> Any:
        return self.search_module.configure_optimizers()

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        return self._call(self.search_module, "training_step", batch, batch_idx)

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        return self._call(self.search_module, "validation_step", batch, batch_idx)

    def test_step(self, batch: Any, batch_idx: int) -> Any:
        return self._call(self.search_module, "test_step", batch, batch_idx)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        self.search_module.state.set_arch(self.arch or self.export())
        return self._call(self.model, "predict_step", batch, batch_idx)

    def on_train_epoch_start(self) -> None:
        self._call(self.model, "on_train_epoch_start")

    def on_train_epoch_end(self) -> None:
        self._call(self.search_module, "on_train_epoch_end")
        self._call(self.model, "on_train_epoch_end")

    def on_validation_epoch_start(self) -> None:
        self._call(self.model, "on_validation_epoch_start")

    def on_validation_epoch_end(self) -> None:
        self._call(self.model, "on_validation_epoch_end")
        if not self.trainer.sanity_checking:
            search = self.search_module
            if isinstance(search, RandomOneShotModule) and not getattr(search, "_best", None):
                what = f"validated the random architecture {getattr(search, '_val_arch', None)}"
            else:
                what = f"architecture {self.export()}"
            metric = self.trainer.callback_metrics
            shown = ", ".join(f"{k} {float(v):.4f}" for k, v in metric.items() if k.startswith("val"))
            rank_zero_info(
                f"OneShotSearch ({self.strategy.name}) epoch {self.current_epoch}: {what}"
                + (f" ({shown})" if shown else "")
            )

    def on_test_epoch_end(self) -> None:
        self._call(self.model, "on_test_epoch_end")

    # --- fit: pairing the loaders, exporting -----------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if "configure_optimizers" in self.__dict__:
            # LightningCLI's --optimizer/--lr_scheduler replace the top module's configure_optimizers with one
            # optimizer over every parameter: the architecture's with the weights', so the strategy could not work
            raise ConfigError(
                "optimizer",
                "OneShotSearch takes the weights' optimizer from your module's configure_optimizers and adds the "
                "strategy's own; drop --optimizer/--lr_scheduler (and optimizer:/lr_scheduler: in the config) and "
                "set the optimizer in your LightningModule",
            )
        self.search_module.setup(stage)
        self.model.setup(stage)
        if stage == "fit" and self.search_module.bilevel:
            self._pair_loaders()

    def teardown(self, stage: str) -> None:
        self._unpair_loaders()
        self.model.teardown(stage)

    def _pair_loaders(self) -> None:
        """Train on ``paired_loader(train, val)``: the datamodule's ``train_dataloader`` for this fit, or the
        loaders given to ``trainer.fit``."""
        from nni_pl.nas.oneshot.runner import paired_loader

        name = self.strategy.name
        need = (
            f"{name} trains the architecture on validation batches and the weights on training ones: give the "
            "datamodule a val_dataloader (a held-out part of the training data)"
        )
        datamodule = self.trainer.datamodule
        if datamodule is not None and is_overridden("train_dataloader", datamodule):
            if not is_overridden("val_dataloader", datamodule):
                raise ConfigError(_field("strategy"), need)
            train_loader = datamodule.train_dataloader

            def paired() -> Any:
                return paired_loader(train_loader(), datamodule.val_dataloader())

            datamodule.train_dataloader = paired
            self._patched = ("datamodule", datamodule)
            return
        # loaders given to trainer.fit(train_dataloaders=..., val_dataloaders=...)
        train_source = getattr(self.trainer.fit_loop, "_data_source", None)
        val_source = getattr(self.trainer.fit_loop.epoch_loop.val_loop, "_data_source", None)
        if train_source is None or train_source.is_module():
            return  # your module's own hooks (paired by _paired_own_loaders), or none: Lightning says so
        train = train_source.instance
        if isinstance(train, Mapping) or {"train", "val"} <= set(getattr(train, "iterables", {}) or {}):
            return  # already paired by the caller
        val = None if val_source is None or val_source.is_module() else val_source.instance
        if val is None:
            raise ConfigError(
                _field("strategy"), need.replace("the datamodule a val_dataloader", "fit val_dataloaders")
            )
        train_source.instance = paired_loader(train, val)
        self._patched = ("source", train_source, train)

    def _paired_own_loaders(self) -> Any:
        from nni_pl.nas.oneshot.runner import paired_loader

        if not is_overridden("val_dataloader", self.model):
            raise ConfigError(
                _field("strategy"),
                f"{self.strategy.name} trains the architecture on validation batches and the weights on training "
                f"ones: give {type(self.model).__name__} a val_dataloader (a held-out part of the training data)",
            )
        return paired_loader(self.model.train_dataloader(), self.model.val_dataloader())

    def _unpair_loaders(self) -> None:
        if self._patched is None:
            return
        if self._patched[0] == "datamodule":
            self._patched[1].__dict__.pop("train_dataloader", None)
        else:
            self._patched[1].instance = self._patched[2]
        self._patched = None

    def on_fit_end(self) -> None:
        search = self.search_module
        if isinstance(search, RandomOneShotModule) and not getattr(search, "_best", None):
            self._spos_search(search)
        self.arch = self.export()
        target = None
        if self.export_path is not None:
            target = Path(self.export_path)
            if not target.is_absolute():
                target = (
                    Path(self.trainer.log_dir or self.trainer.default_root_dir) / target
                )  # log_dir: every rank
        if self.trainer.is_global_zero:
            if target is not None:
                from nni_pl.nas.space import save_arch

                target.parent.mkdir(parents=True, exist_ok=True)
                save_arch(self.arch, target)
                self.exported_to = target
            rank_zero_info(
                f"OneShotSearch ({self.strategy.name}): architecture {self.arch}"
                + (f" written to {target}" if target is not None else "")
            )
        self._call(self.model, "on_fit_end")

    def _spos_search(self, search: RandomOneShotModule) -> None:
        """SPOS's search over the trained supernet, on the validation loader (else the training one)."""
        from nni_pl.nas.oneshot.runner import _spos_search

        val = self.trainer.val_dataloaders
        train = self.trainer.train_dataloader
        if isinstance(val, (list, tuple)):
            val = val[0] if val else None
        evaluate_on = _OnDevice(val if val is not None else train, self)
        _spos_search(search, self.space, self.strategy, evaluate_on, _OnDevice(train, self), 1)
        search._best = search.broadcast(search._best)  # every rank exports rank 0's choice

    # --- checkpoints ---------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.search_module.on_save_checkpoint(checkpoint)
        self.model.on_save_checkpoint(checkpoint)
        checkpoint[CHECKPOINT_KEY] = {
            "strategy": self.strategy.name,
            "space": self.space_path,
            "arch": self.export(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(CHECKPOINT_KEY)
        if saved is not None and saved.get("space") != self.space_path:
            raise ConfigError(
                _field("space"),
                f"the checkpoint searched the space at {saved.get('space')!r}, this search the one at "
                f"{self.space_path!r}; build the same model",
            )
        self.search_module.on_load_checkpoint(checkpoint)
        self.model.on_load_checkpoint(checkpoint)
