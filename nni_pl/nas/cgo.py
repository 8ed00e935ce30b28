"""Cross-graph optimisation (CGO): several candidate models trained together in one trial.

When candidate models train on the same data, loading and pre-processing each batch once for all of them
saves the data pipeline's cost N-1 times. :class:`MultiModelSupervisedModule` is a LightningModule over N
models: every batch is fed to every model, each model has its own optimiser, loss, random-number stream and
metrics, and each reports its own intermediate (per validation epoch) and final results through
``report(model_index, kind, value)``. So N trials can run in one process and still appear as N trials.

:func:`train_merged` is the entry point: it groups models by ``max_models``, trains each group in one merged
run, drops a model that raises (a shape error in ``forward``, a NaN guard, ...) from the merged run without
stopping the others, and retries it alone from its initial weights afterwards (NNI: "bad merged model =>
each model re-run separately"). :class:`CgoBatcher` collects incoming candidates into merged trials: a group
is ready when ``max_models`` wait or the first of them has waited ``batch_wait_s`` seconds (NNI's
``max_concurrency_cgo`` and ``batch_waiting_time``).

Integration with the experiment engine (``NasExperiment(..., execution="cgo")``): the engine submits each
candidate as its own trial; :class:`nni_pl.nas.cgo_service.CgoTrainingService` groups them (at most
``max_models``, or fewer after ``batch_wait_s``) and starts one process per group
(:mod:`nni_pl.nas._cgo_trial`) that calls :func:`run_merged_trials` with the NAS trial spec and each trial's
``(parameters, TrialContext)``. It rebuilds
the model space once, freezes every architecture, merges the trials whose (resolved) evaluator is the same
``Classification``/``Regression`` and trains them with :func:`train_merged` and
``report=context_reporter(contexts)``: each model's reports land in its own trial's metrics file, so the
store, CLI and dashboard see ordinary trials. A model whose retry fails too comes back ``"failed"`` (the
runner marks that trial failed). Intermediate results a model reported in the merged run before failing
stay; its retry reports from its first epoch again.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> data = TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
    >>> models = [nn.Linear(4, 2), nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))]
    >>> results = train_merged(models, DataLoader(data, batch_size=16), DataLoader(data, batch_size=32),
    ...                        max_epochs=2, seed=0)
    >>> [r.status for r in results]
    ['succeeded', 'succeeded']
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import lightning.pytorch as pl
import torch
from torch import nn

from nni_pl._lightning import quiet_trainer_kwargs
from nni_pl.errors import ConfigError
from nni_pl.nas.cgo_service import CgoError

__all__ = [
    "CgoBatcher",
    "CgoError",
    "ModelResult",
    "MultiModelSupervisedModule",
    "context_reporter",
    "run_merged_trials",
    "train_merged",
]

log = logging.getLogger(__name__)

#: report kinds passed to ``report(model_index, kind, value)``
INTERMEDIATE, FINAL, FAILED = "intermediate", "final", "failed"
#: the status of a model stopped on request (``should_stop``)
STOPPED = "stopped"

Report = Callable[[int, str, Any], None]
T = TypeVar("T")


class _AllFailed(Exception):
    """Every model of a run has failed: the run stops (no more batches are loaded for nobody)."""


def _accuracy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out.argmax(dim=-1) == y).float().mean()


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(out.reshape(y.shape).float(), y.float())


_TASKS: dict[str, tuple[type[nn.Module], str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = {
    "classification": (nn.CrossEntropyLoss, "acc", _accuracy),
    "regression": (nn.MSELoss, "mse", _mse),
}


@dataclass
class ModelResult:
    """What happened to one model of a CGO run.

    Attributes:
        index: the model's position in the list given to :func:`train_merged`.
        status: ``"succeeded"``, ``"failed"`` or ``"stopped"`` (asked to stop by ``should_stop``).
        final: the final metric (the last validation epoch's), ``None`` when failed.
        intermediate: the per-validation-epoch metrics of the run that produced ``final``.
        retried_alone: the model failed in the merged run and was trained again on its own.
        error: the last error's message, ``""`` when none.
    """

    index: int
    status: str = "succeeded"
    final: float | None = None
    intermediate: list[float] = field(default_factory=list)
    retried_alone: bool = False
    error: str = ""


class MultiModelSupervisedModule(pl.LightningModule):
    """Trains several models on the same batches, each with its own optimiser, loss and metric.

    Each model draws random numbers (dropout, ...) from its own stream seeded with ``seed``, so a model gives
    the same result merged or alone. A model whose step raises is dropped (``failed[i]`` holds the error)
    and the others go on.

    Args:
        models: the candidate networks (each maps a batch's input to outputs).
        criterion: a loss class or instance (one instance per model is used).
        metric: ``fn(outputs, targets) -> tensor``, averaged over validation samples.
        metric_name: logged as ``val_<metric_name>/<index>``.
        learning_rate, weight_decay, optimizer: each model's optimiser (``optimizer`` a class).
        seed: seeds each model's random stream.
        report: ``report(model_index, kind, value)`` with ``kind`` ``"intermediate"`` after each validation
            epoch (``"final"`` is sent by :func:`train_merged`).
        index_map: the models' indices as reported (default ``0..N-1``).
        should_stop: ``should_stop(model_index) -> bool``, asked before each training step: a model asked to
            stop leaves the run (``stopped`` holds it) and is not retried (the experiment cancelled its trial).

    Example:
        >>> module = MultiModelSupervisedModule([nn.Linear(4, 2), nn.Linear(4, 2)], seed=0)
        >>> len(module.models)
        2
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        *,
        criterion: Any = nn.CrossEntropyLoss,
        metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _accuracy,
        metric_name: str = "acc",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
        seed: int = 0,
        report: Report | None = None,
        index_map: Sequence[int] | None = None,
        should_stop: Callable[[int], bool] | None = None,
    ) -> None:
        super().__init__()
        if not models:
            raise CgoError("models: got an empty list; give at least one model to train")
        self.models = nn.ModuleList(models)
        self.criteria = [
            criterion() if inspect.isclass(criterion) else copy.deepcopy(criterion) for _ in models
        ]
        self.metric, self.metric_name = metric, metric_name
        self.learning_rate, self.weight_decay, self.optimizer_class = learning_rate, weight_decay, optimizer
        self.report = report
        self.index_map = list(index_map) if index_map is not None else list(range(len(models)))
        self.automatic_optimization = False
        gen = torch.Generator().manual_seed(seed)
        self._rng_states = [gen.get_state() for _ in models]
        self._seed = seed
        self._cuda_states: dict[int, torch.Tensor] = {}
        self.failed: dict[int, str] = {}
        self.should_stop = should_stop
        self.stopped: set[int] = set()
        self.history: list[list[float]] = [[] for _ in models]
        self._val_sums = [0.0] * len(models)
        self._val_count = [0] * len(models)

    @property
    def active(self) -> list[int]:
        """Positions (in ``models``) of the models still training."""
        return [i for i in range(len(self.models)) if i not in self.failed and i not in self.stopped]

    @contextmanager
    def _own_rng(self, i: int) -> Iterator[None]:
        outer = torch.get_rng_state()
        torch.set_rng_state(self._rng_states[i])
        cuda = self.device.type == "cuda"
        if cuda:  # dropout on the GPU draws from the device's generator
            outer_cuda = torch.cuda.get_rng_state(self.device)
            if i not in self._cuda_states:
                torch.cuda.manual_seed(self._seed)
                self._cuda_states[i] = torch.cuda.get_rng_state(self.device)
            torch.cuda.set_rng_state(self._cuda_states[i], self.device)
        try:
            yield
        finally:
            self._rng_states[i] = torch.get_rng_state()
            torch.set_rng_state(outer)
            if cuda:
                self._cuda_states[i] = torch.cuda.get_rng_state(self.device)
                torch.cuda.set_rng_state(outer_cuda, self.device)

    def _fail(self, i: int, err: BaseException) -> None:
        self.failed[i] = f"{type(err).__name__}: {err}"
        log.warning(
            "CGO: model %d failed in the merged run and leaves it (%s)", self.index_map[i], self.failed[i]
        )

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            self.optimizer_class(m.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
            for m in self.models
        ]

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        if self.should_stop is not None:
            for i in self.active:
                if self.should_stop(self.index_map[i]):
                    self.stopped.add(i)
                    log.info("CGO: model %d was asked to stop and leaves the run", self.index_map[i])
        if not self.active:
            raise _AllFailed
        for i in self.active:
            opt = optimizers[i]
            try:
                with self._own_rng(i):
                    loss = self.criteria[i](self.models[i](x), y)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"the training loss is {loss.item()}")
                    opt.zero_grad()
                    self.manual_backward(loss)
                    opt.step()
            except Exception as err:  # a broken candidate must not stop the others
                self._fail(i, err)
                continue
            self.log(f"train_loss/{self.index_map[i]}", loss.detach(), on_step=False, on_epoch=True)
        if not self.active:
            raise _AllFailed

    def on_validation_epoch_start(self) -> None:
        self._val_sums = [0.0] * len(self.models)
        self._val_count = [0] * len(self.models)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        for i in self.active:
            try:
                with self._own_rng(i):
                    value = float(self.metric(self.models[i](x), y))
            except Exception as err:
                self._fail(i, err)
                continue
            self._val_sums[i] += value * len(y)
            self._val_count[i] += len(y)
        if not self.active:
            raise _AllFailed

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        for i in self.active:
            if not self._val_count[i]:
                continue
            value = self._val_sums[i] / self._val_count[i]
            self.history[i].append(value)
            self.log(f"val_{self.metric_name}/{self.index_map[i]}", value)
            if self.report is not None:
                self.report(self.index_map[i], INTERMEDIATE, value)


def _chunks(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CgoError(f"{name} must be a positive integer, got {value!r}; e.g. {name}=4")
    return value


def train_merged(
    models: Sequence[nn.Module],
    train_loader: Any,
    val_loader: Any,
    *,
    task: str = "classification",
    criterion: Any = None,
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
    max_epochs: int = 1,
    max_models: int = 4,
    seed: int = 0,
    report: Report | None = None,
    retry_failed: bool = True,
    trainer_kwargs: Mapping[str, Any] | None = None,
    should_stop: Callable[[int], bool] | None = None,
) -> list[ModelResult]:
    """Train ``models`` in merged runs of at most ``max_models``, each batch loaded once per run.

    Args:
        models: the candidates, built and initialised (each is trained in place).
        train_loader, val_loader: the shared data (``(x, y)`` batches).
        task: ``"classification"`` (cross-entropy, metric accuracy) or ``"regression"`` (MSE loss and metric),
            as :class:`~nni_pl.nas.evaluator.Classification` and ``Regression`` report them.
        criterion, metric: override the task's loss (class or instance) and metric.
        learning_rate, weight_decay, optimizer: each model's own optimiser.
        max_epochs: epochs per run (validation after each).
        max_models: the most models merged in one run (NNI's ``max_concurrency_cgo``).
        seed: seeds the data order and every model's random stream: a model trained merged gives the same
            metrics as trained alone with the same seed.
        report: ``report(model_index, kind, value)``: ``"intermediate"`` per validation epoch, then
            ``"final"`` (the last epoch's metric) or ``"failed"`` (the error message).
        retry_failed: retry a model that failed in a merged run alone, from its initial weights.
        trainer_kwargs: more ``lightning.pytorch.Trainer`` arguments (``accelerator``, ``limit_train_batches``).
        should_stop: ``should_stop(model_index) -> bool``, asked before each training step and before a retry:
            such a model ends ``"stopped"`` (no final result, no retry, nothing reported).

    Returns:
        One :class:`ModelResult` per model, in the order given.
    """
    if task not in _TASKS:
        raise CgoError(f"task must be one of {sorted(_TASKS)}, got {task!r}")
    max_models = _check_positive_int("max_models", max_models)
    max_epochs = _check_positive_int("max_epochs", max_epochs)
    default_criterion, metric_name, default_metric = _TASKS[task]
    settings = {
        "criterion": criterion if criterion is not None else default_criterion,
        "metric": metric if metric is not None else default_metric,
        "metric_name": metric_name,
        "learning_rate": learning_rate,
        "weight_decay": weight_decay,
        "optimizer": optimizer,
        "seed": seed,
        "report": report,
        "should_stop": should_stop,
    }
    initial = [copy.deepcopy(m.state_dict()) for m in models]
    results = [ModelResult(index=i) for i in range(len(models))]
    fit = _Fit(train_loader, val_loader, max_epochs, seed, dict(trainer_kwargs or {}))
    failed: list[int] = []
    for group in _chunks(range(len(models)), max_models):
        module = fit([models[i] for i in group], group, settings)
        for pos, i in enumerate(group):
            if pos in module.stopped:
                results[i].status, results[i].error = STOPPED, "stopped on request"
            elif pos in module.failed:
                results[i].error = module.failed[pos]
                failed.append(i)
            else:
                _finish(results[i], module.history[pos], report)
    for i in failed:
        if should_stop is not None and should_stop(i):
            results[i].status, results[i].error = STOPPED, "stopped on request"
            continue
        if not retry_failed:
            _give_up(results[i], report)
            continue
        log.info("CGO: retrying model %d alone after %s", i, results[i].error)
        models[i].load_state_dict(initial[i])
        results[i].retried_alone = True
        try:
            module = fit([models[i]], [i], settings)
            error = module.failed.get(0)
        except Exception as err:  # e.g. a failure outside the model's steps
            module, error = None, f"{type(err).__name__}: {err}"
        if module is not None and 0 in module.stopped:
            results[i].status, results[i].error = STOPPED, "stopped on request"
        elif error is None and module is not None:
            results[i].error = ""
            _finish(results[i], module.history[0], report)
        else:
            results[i].error = error or results[i].error
            _give_up(results[i], report)
    return results


class _Fit:
    """One Lightning fit of a group of models on the shared loaders."""

    def __init__(
        self, train: Any, val: Any, max_epochs: int, seed: int, trainer_kwargs: dict[str, Any]
    ) -> None:
        self.train, self.val, self.max_epochs, self.seed = train, val, max_epochs, seed
        self.trainer_kwargs = quiet_trainer_kwargs(
            trainer_kwargs, num_sanity_val_steps=0, accelerator="cpu", devices=1
        )

    def __call__(self, models: list[nn.Module], indices: list[int], settings: dict[str, Any]) -> Any:
        module = MultiModelSupervisedModule(models, index_map=indices, **settings)
        torch.manual_seed(self.seed)  # the data order: the same merged or alone
        trainer = pl.Trainer(max_epochs=self.max_epochs, **self.trainer_kwargs)
        try:
            trainer.fit(module, train_dataloaders=self.train, val_dataloaders=self.val)
        except _AllFailed:
            log.debug("CGO: every model of the run %s failed; run stopped", indices)
        return module


def _finish(result: ModelResult, history: list[float], report: Report | None) -> None:
    result.intermediate = list(history)
    result.final = history[-1] if history else None
    if result.final is None or not math.isfinite(result.final):
        result.error = result.error or "no validation metric was computed (is val_loader empty?)"
        _give_up(result, report)
        return
    result.status = "succeeded"
    if report is not None:
        report(result.index, FINAL, result.final)


def _give_up(result: ModelResult, report: Report | None) -> None:
    result.status, result.final = "failed", None
    log.warning("CGO: model %d failed: %s", result.index, result.error)
    if report is not None:
        report(result.index, FAILED, result.error)


def context_reporter(contexts: Sequence[Any]) -> Report:
    """A ``report`` callable that writes model ``i``'s results to trial ``contexts[i]``.

    ``contexts`` are :class:`nni_pl.trial.TrialContext` objects (one per merged trial); a failure is
    logged for the runner, which marks that trial failed.
    """
    from nni_pl.trial import FINAL as FINAL_KIND
    from nni_pl.trial import PERIODICAL

    def report(index: int, kind: str, value: Any) -> None:
        if kind == INTERMEDIATE:
            contexts[index].report(PERIODICAL, value)
        elif kind == FINAL:
            contexts[index].report(FINAL_KIND, value)
        else:
            log.error("CGO: trial %s failed: %s", getattr(contexts[index], "trial_id", index), value)

    return report


class CgoBatcher(Generic[T]):
    """Collects candidates into merged trials (NNI's ``max_concurrency_cgo`` and ``batch_waiting_time``).

    Args:
        max_models: a group is released as soon as this many candidates wait.
        batch_wait_s: a smaller group is released once its first candidate has waited this long.
        clock: the time source (seconds).

    Example:
        >>> batcher = CgoBatcher(max_models=2, batch_wait_s=10.0)
        >>> batcher.add("a"); batcher.pop_ready() is None
        True
        >>> batcher.add("b"); batcher.pop_ready()
        ['a', 'b']
    """

    def __init__(
        self, *, max_models: int = 4, batch_wait_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_models = _check_positive_int("max_models", max_models)
        if isinstance(batch_wait_s, bool) or not isinstance(batch_wait_s, (int, float)) or batch_wait_s < 0:
            raise ConfigError("batch_wait_s", f"must be a number of seconds >= 0, got {batch_wait_s!r}")
        self.batch_wait_s = float(batch_wait_s)
        self.clock = clock
        self._waiting: list[tuple[float, T]] = []

    def add(self, item: T) -> None:
        """Queue one candidate."""
        self._waiting.append((self.clock(), item))

    def __len__(self) -> int:
        return len(self._waiting)

    def items(self) -> list[T]:
        """The candidates waiting, oldest first."""
        return [item for _, item in self._waiting]

    def remove(self, item: T) -> bool:
        """Take ``item`` out of the queue (a cancelled candidate); ``False`` if it was not waiting."""
        for k, (_, waiting) in enumerate(self._waiting):
            if waiting is item or waiting == item:
                del self._waiting[k]
                return True
        return False

    def seconds_left(self) -> float | None:
        """Seconds until the oldest candidate has waited ``batch_wait_s`` (``None`` when none waits)."""
        if not self._waiting:
            return None
        return max(0.0, self._waiting[0][0] + self.batch_wait_s - self.clock())

    def pop_ready(self, *, flush: bool = False) -> list[T] | None:
        """The next group to train, or ``None`` while the batch should still fill (``flush``: release now)."""
        if not self._waiting:
            return None
        full = len(self._waiting) >= self.max_models
        waited = self.clock() - self._waiting[0][0] >= self.batch_wait_s
        if not (full or waited or flush):
            return None
        group, self._waiting = self._waiting[: self.max_models], self._waiting[self.max_models :]
        return [item for _, item in group]


def run_merged_trials(
    spec: Mapping[str, Any],
    trials: Sequence[tuple[Mapping[str, Any], Any]],
    *,
    max_models: int = 4,
    should_stop: Callable[[int], bool] | None = None,
) -> list[ModelResult]:
    """Run several NAS trials of one experiment in this process, merged where they can be.

    The multi-trial counterpart of :func:`nni_pl.nas._trial.run_trial`: ``spec`` is the NAS trial spec
    (``model_space`` import path and arguments, ``evaluator`` config, optional ``seed``), ``trials`` are
    ``(parameters, context)`` pairs, ``context`` each trial's :class:`nni_pl.trial.TrialContext`.
    Trials whose evaluator (after resolving its choices) is the same ``Classification`` or ``Regression``
    are merged (one data pipeline for all), in groups of at most ``max_models``; each trial's intermediate
    and final results go to its own context. Trials with any other evaluator run one by one as usual.
    ``should_stop(trial_index) -> bool`` is asked before each training step: a trial asked to stop (its
    experiment cancelled it) ends ``"stopped"``. The space is built after seeding with ``spec["seed"]`` as in a
    trial process, so each model starts from the same weights as in its own trial, whatever it is merged with.

    Returns:
        One :class:`ModelResult` per trial, in the order given (``index`` is the position in ``trials``);
        the runner marks the ``"failed"`` ones failed.
    """
    import json

    from nni_pl import trial as trial_sdk
    from nni_pl.nas._trial import run_trial
    from nni_pl.nas.evaluator import Classification, Evaluator, Regression, freeze_config
    from nni_pl.nas.evaluator._base import resolve_factory
    from nni_pl.nas.space import load_space

    max_models = _check_positive_int("max_models", max_models)
    seed = int(spec.get("seed") or 0)
    space_spec = spec["model_space"]
    # seeded as run_trial does before building the space: frozen copies start from the weights a trial
    # process would have, so a merged model trains as it would alone
    pl.seed_everything(seed, workers=True, verbose=False)
    space = load_space(space_spec["import_path"], space_spec.get("init_kwargs") or {})
    labels = set(space.search_space())
    groups: dict[str, list[int]] = {}
    configs: dict[str, dict[str, Any]] = {}
    for i, (parameters, _) in enumerate(trials):
        config = freeze_config(spec["evaluator"], parameters)
        key = json.dumps(config, sort_keys=True, default=str)
        groups.setdefault(key, []).append(i)
        configs[key] = config
    results: list[ModelResult] = [ModelResult(index=i) for i in range(len(trials))]
    for key, members in groups.items():
        evaluator = Evaluator.from_config(configs[key])
        if not isinstance(evaluator, (Classification, Regression)):
            for i in members:  # CGO merges supervised training only
                if should_stop is not None and should_stop(i):
                    results[i].status, results[i].error = STOPPED, "stopped on request"
                    continue
                trial_sdk.activate(trials[i][1])
                try:
                    results[i].final = run_trial(spec, trials[i][0])
                except Exception as err:
                    results[i].status, results[i].error = "failed", f"{type(err).__name__}: {err}"
                finally:
                    trial_sdk.activate(None)
            continue
        train = resolve_factory(evaluator.train_dataloaders, f"{type(evaluator).__name__}.train_dataloaders")
        val = evaluator.val_dataloaders
        if isinstance(train, tuple) and len(train) == 2 and val is None:
            train, val = train
        else:
            val = resolve_factory(val, f"{type(evaluator).__name__}.val_dataloaders")
        trainer_kwargs = dict(evaluator.trainer_kwargs)
        trainer_kwargs.setdefault("accelerator", "auto")  # as the evaluator's own Trainer in a trial process
        max_epochs = int(trainer_kwargs.pop("max_epochs", 1))
        models = []
        for i in members:
            models.append(space.freeze({k: v for k, v in trials[i][0].items() if k in labels}))
        contexts = [trials[i][1] for i in members]
        merged = train_merged(
            models,
            train,
            val,
            task="classification" if isinstance(evaluator, Classification) else "regression",
            criterion=evaluator.criterion,
            learning_rate=float(evaluator.learning_rate),
            weight_decay=float(evaluator.weight_decay),
            optimizer=evaluator.optimizer,
            max_epochs=max_epochs,
            max_models=max_models,
            seed=seed,
            report=context_reporter(contexts),
            trainer_kwargs=trainer_kwargs,
            should_stop=None if should_stop is None else (lambda j, m=members: should_stop(m[j])),
        )
        for i, result in zip(members, merged):
            result.index = i
            results[i] = result
    return results
