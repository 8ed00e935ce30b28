"""Running a one-shot search: the supernet, the strategy's LightningModule around the evaluator's, a Trainer.

:func:`search` is what a one-shot ``NasExperiment`` trial runs, and what a script calls directly.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import CombinedLoader, rank_zero_info

from nni_pl.nas._trial import TOP_MODELS_FILE
from nni_pl.nas.oneshot.lightning import OneShotModule, RandomOneShotModule
from nni_pl.nas.oneshot.supernet import Supernet, build_supernet

__all__ = ["OneShotResult", "SearchReporter", "count_flops", "paired_loader", "search"]

log = logging.getLogger(__name__)


def paired_loader(train: Any, val: Any) -> CombinedLoader:
    """Batches ``{"train": ..., "val": ...}`` for bilevel search: the longer loader sets the epoch, the shorter
    one cycles (Lightning's ``CombinedLoader`` in ``max_size_cycle`` mode)."""
    return CombinedLoader({"train": train, "val": val}, mode="max_size_cycle")


@dataclass
class OneShotResult:
    """What a search found: ``arch`` (the best), ``top_models`` (best first), the trained ``module`` and
    ``supernet``, the reported ``score`` of ``arch`` (the evaluator's monitored metric), and ``history``
    (per epoch: the exported architecture and the probabilities of each label's values)."""

    arch: dict[str, Any]
    top_models: list[dict[str, Any]]
    module: OneShotModule
    supernet: Supernet
    score: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class SearchReporter(pl.Callback):
    """Reports a search: after each validation, the monitored metric of the current architecture with the
    probabilities of every label's values (``{"default": metric, "p/<label>/<value>": ...}``) as an intermediate
    result of the trial (in an experiment), and a line with the metric and the current architecture."""

    def __init__(self, monitor: str | None) -> None:
        self.monitor = monitor

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (
            trainer.sanity_checking
            or trainer.state.fn != "fit"
            or not isinstance(pl_module, OneShotModule)
            or not trainer.is_global_zero
        ):
            return
        import nni_pl

        value = trainer.callback_metrics.get(self.monitor) if self.monitor else None
        if value is None:
            return
        report: dict[str, Any] = {"default": float(value)}
        for label, probs in pl_module.probabilities().items():
            for v, p in zip(pl_module.state.decisions[label], probs.tolist()):
                report[f"p/{label}/{json.dumps(v) if not isinstance(v, str) else v}"] = round(p, 6)
        if nni_pl.get_output_dir() is not None:  # in a trial; standalone, the line below says it
            nni_pl.report_intermediate_result(report)
        rank_zero_info(
            f"epoch {trainer.current_epoch}: {self.monitor} {float(value):.4f}, architecture {pl_module.export()}"
        )


def count_flops(model: torch.nn.Module, example: Any) -> float:
    """The FLOPs of one forward of ``model`` on ``example`` (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(example)
    model.train(was)
    return float(counter.get_total_flops())


def _first_input(loader: Any) -> Any:
    batch = next(iter(loader))
    x = batch[0] if isinstance(batch, (list, tuple)) else batch
    return x[:1]


def search(
    space: torch.nn.Module,
    evaluator: Any,
    strategy: Any,
    *,
    top_k: int = 1,
    trainer_kwargs: Mapping[str, Any] | None = None,
    callbacks: Iterable[pl.Callback] = (),
    ckpt_path: str | None = None,
) -> OneShotResult:
    """Train ``strategy``'s supernet of ``space`` with ``evaluator``'s module, data and Trainer settings.

    Args:
        space: a model space.
        evaluator: ``Classification``, ``Regression`` or ``Lightning`` (its ``build_module`` and ``dataloaders``).
        strategy: a one-shot strategy (:mod:`nni_pl.nas.strategy.oneshot`).
        top_k: how many architectures to return.
        trainer_kwargs: override the evaluator's Trainer arguments (``accelerator``, ``devices``, ``max_epochs``...).
        callbacks: more Lightning callbacks (e.g. ``ModelCheckpoint`` to resume with ``ckpt_path``).
        ckpt_path: resume the search from this checkpoint.

    Raises:
        OneShotError: the space has a choice the strategy cannot search (before anything trains).
        ValueError: a bilevel strategy (DARTS, GumbelDARTS, ENAS, Proxyless) without validation data.
    """
    from nni_pl import trial
    from nni_pl._lightning import quiet_trainer_kwargs

    supernet = build_supernet(space, strategy.name)
    inner = evaluator.build_module(supernet)
    train, val = evaluator.dataloaders()
    extra: dict[str, Any] = {}
    module = strategy.build_module(inner, supernet, **extra)
    if module.bilevel and val is None:
        raise ValueError(
            f"{strategy.name} trains the architecture on validation batches and the weights on training ones: "
            "give the evaluator val_dataloaders (a held-out part of the training data)"
        )
    kwargs = dict(getattr(evaluator, "trainer_kwargs", None) or {})
    kwargs.update(trainer_kwargs or {})
    in_trial = trial.get_output_dir() is not None
    monitor = getattr(evaluator, "monitor", None)
    trainer = pl.Trainer(
        callbacks=[SearchReporter(monitor), *callbacks],
        # outside a trial a search is watched: Lightning's bar, and each epoch's architecture (SearchReporter)
        **quiet_trainer_kwargs(
            kwargs, keep_logger=in_trial, log_every_n_steps=1, enable_progress_bar=not in_trial
        ),
    )
    fit_train = paired_loader(train, val) if module.bilevel else train
    trainer.fit(module, train_dataloaders=fit_train, val_dataloaders=val, ckpt_path=ckpt_path)
    if isinstance(module, RandomOneShotModule):
        _spos_search(module, space, strategy, val if val is not None else train, train, top_k)
    top = module.export_top_models(top_k)
    score = None
    if monitor:
        metrics = trainer.validate(module, dataloaders=val if val is not None else train, verbose=False)
        if metrics and monitor in metrics[0]:
            score = float(metrics[0][monitor])
    return OneShotResult(top[0], top, module, supernet, score, list(module.history))


def _spos_search(
    module: RandomOneShotModule, space: Any, strategy: Any, loader: Any, train: Any, top_k: int
) -> None:
    batches = []
    for i, batch in enumerate(loader):
        if strategy.search_batches is not None and i >= strategy.search_batches:
            break
        batches.append(batch)
    recalibrate = []
    for i, batch in enumerate(train if strategy.bn_recalibration_batches else ()):
        if i >= strategy.bn_recalibration_batches:
            break
        recalibrate.append(batch)
    cost = None
    limit = None
    if strategy.max_latency is not None:
        from nni_pl.nas.hardware import LatencyPredictor

        predictor = LatencyPredictor.load(strategy.latency_predictor)
        cost, limit = predictor.predict, strategy.max_latency
    if strategy.max_flops is not None:
        example = _first_input(loader)
        flops_cache: dict[str, float] = {}

        def flops(arch: Mapping[str, Any]) -> float:
            key = repr(sorted(arch.items()))
            if key not in flops_cache:
                flops_cache[key] = count_flops(space.freeze(dict(arch)), example)
            return flops_cache[key]

        if cost is None:
            cost, limit = flops, strategy.max_flops
        else:
            latency, max_latency = cost, limit
            cost = lambda a: max(latency(a) / max_latency, flops(a) / strategy.max_flops)  # noqa: E731
            limit = 1.0
    module.search(
        batches,
        cost=cost,
        max_cost=limit,
        top_k=max(top_k, 1),
        recalibrate=recalibrate,
        **strategy.search_kwargs(),
    )


def write_top_models(directory: str | Path, result: OneShotResult) -> Path:
    """Save the architectures a search found (best first) where ``NasExperiment.export_top_models`` reads them."""
    path = Path(directory) / TOP_MODELS_FILE
    data = {"top_models": result.top_models, "score": result.score, "history": result.history}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_json_default), encoding="utf-8")
    tmp.replace(path)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")
