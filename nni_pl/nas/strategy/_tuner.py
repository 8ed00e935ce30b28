"""The bridge from a :class:`Strategy` to the experiment engine, which drives tuners."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from nni_pl._checks import ArgumentError, fail
from nni_pl.errors import ConfigError, NoMoreTrialError
from nni_pl.hpo import HistoryEntry, Tuner
from nni_pl.nas.strategy._base import Strategy
from nni_pl.space import SearchSpace

__all__ = ["StrategyTuner"]

log = logging.getLogger(__name__)


class StrategyTuner(Tuner):
    """A :class:`~nni_pl.hpo.Tuner` that asks a NAS strategy for architectures (what ``NasExperiment`` runs).

    The manager's ``generate_parameters`` / ``receive_trial_result`` / ``trial_end`` become the
    strategy's :meth:`~Strategy.ask` / :meth:`~Strategy.tell`; ``resume`` rebuilds the strategy's
    history from the stored trials. It is built from the stored experiment config, so ``nni-pl resume``
    rebuilds it too.

    Args:
        strategy: ``{"class": "module:Qual", "kwargs": {...}}`` (:meth:`Strategy.to_config`) or a
            strategy instance.
        optimize_mode: what the experiment optimises (also given to the strategy).
        model_space: ``{"import_path": ..., "init_kwargs": {...}}`` of a space with constraints between its
            choices (e.g. NAS-Bench-101's edge limit): the space is built here once and proposals it rejects
            never run (they count as failed for the strategy).

    Example:
        >>> from nni_pl.nas.strategy import GridSearch
        >>> tuner = StrategyTuner(strategy=GridSearch(shuffle=False).to_config())
        >>> tuner.update_search_space({"op": {"_type": "choice", "_value": ["conv", "pool"]}})
        >>> tuner.generate_parameters(0)
        {'op': 'conv'}
    """

    def __init__(
        self,
        *,
        strategy: Mapping[str, Any] | Strategy,
        optimize_mode: str = "maximize",
        model_space: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(strategy, Strategy):
            self.strategy = strategy
        elif isinstance(strategy, Mapping) and "class" in strategy:
            try:
                self.strategy = Strategy.from_config(strategy)
            except ArgumentError as e:  # named strategy.kwargs.<argument>: put it under this tuner's argument
                raise ArgumentError(type(self).__name__, e.field, e.reason) from e
            except ConfigError as e:
                fail(self, e.field or "strategy", str(e).split(": ", 1)[-1])
        else:
            fail(
                self,
                "strategy",
                f"got {strategy!r}; give {{'class': 'module:Strategy', 'kwargs': {{...}}}} or a Strategy",
            )
        if self.strategy.optimize_mode != optimize_mode:
            fail(
                self,
                "optimize_mode",
                f"the experiment optimises {optimize_mode!r} but the strategy {self.strategy.optimize_mode!r}; "
                "give the strategy the same optimize_mode",
            )
        self.optimize_mode = optimize_mode
        self.model_space = dict(model_space) if model_space is not None else None
        if self.model_space is not None:
            self.strategy.arch_filter = _space_filter(self, self.model_space)

    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        self.strategy.setup(search_space)

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        arch = self.strategy.ask(parameter_id)  # WaitForResults passes through to the manager
        if arch is None:
            raise NoMoreTrialError(f"the strategy {type(self.strategy).__name__} has nothing more to propose")
        return arch

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        self.strategy.tell(parameter_id, value, arch=parameters)

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        record = self.strategy.record_of(parameter_id)
        if record is not None and not record.finished:
            self.strategy.tell(parameter_id, None)  # ended without a result

    def resume(self, history: Sequence[HistoryEntry]) -> None:
        records = []
        next_free = max((h.parameter_id for h in history if h.parameter_id is not None), default=-1) + 1
        for h in history:
            pid = h.parameter_id
            if pid is None:
                pid, next_free = next_free, next_free + 1
            records.append((pid, h.parameters, h.value, h.finished))
        self.strategy.resume(records)


def _space_filter(owner: StrategyTuner, spec: Mapping[str, Any]) -> Any:
    """A predicate: whether an architecture (model labels, plus others ignored) satisfies the space's constraints.

    Builds the model space, so it imports torch: only spaces with constraints between their choices need it.
    """
    from nni_pl.nas.mutables import ArchitectureError
    from nni_pl.nas.space import load_space

    try:
        space = load_space(spec["import_path"], spec.get("init_kwargs") or {})
    except (KeyError, ArchitectureError) as e:
        reason = f"cannot build the model space {dict(spec)!r}: {e}"
        raise ArgumentError(type(owner).__name__, "model_space", reason) from e

    def valid(arch: dict[str, Any]) -> bool:
        try:
            space.check_arch(arch, strict=False)
        except ArchitectureError:
            return False
        return True

    return valid
