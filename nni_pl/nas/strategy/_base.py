"""The extension point of multi-trial NAS: :class:`Strategy`, its trial records, and :func:`simulate`.

A strategy sees the search space of a model space (NNI's JSON: one ``choice`` per label) and proposes
architectures (dicts label -> value). Its public lifecycle is :meth:`Strategy.run`: set up on the space,
then, while the engine has room, :meth:`Strategy.ask` (which calls the one method to override,
:meth:`Strategy.propose`) and hand the architecture to the engine; :meth:`Strategy.tell` it each result.
The experiment engine drives the same :meth:`ask`/:meth:`tell` pair through :class:`StrategyTuner`;
:func:`simulate` runs :meth:`run` with direct calls instead of trials.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from nni_pl._checks import ArgumentError, check_optimize_mode, check_seed, fail, owner_name
from nni_pl._imports import import_object
from nni_pl.errors import ConfigError, SearchSpaceError, WaitForResults
from nni_pl.hpo import extract_scalar, make_rng, param_key
from nni_pl.space import Choice, SearchSpace

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Engine", "Strategy", "TrialRecord", "simulate"]

log = logging.getLogger(__name__)

RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"


@dataclass
class TrialRecord:
    """One architecture a strategy proposed (or the engine ran), and its outcome once known.

    Attributes:
        id: the strategy's own number for it (proposals and results in the order the strategy saw them).
        arch: the architecture (label -> value).
        status: ``"running"``, ``"succeeded"`` or ``"failed"`` (ended without a usable result).
        metric: the reported final metric (a number or a dict with ``default``), ``None`` until known.
        value: the number the strategy optimises (``metric`` or its ``default``), NaN when unusable.
        order: the position in which the result arrived (``-1`` while running).
        trial_id: the engine's id for it (the experiment's parameter id); ``None`` for a proposal that
            never ran (rejected by the strategy's ``arch_filter``).
    """

    id: int
    arch: dict[str, Any]
    status: str = RUNNING
    metric: Any = None
    value: float = math.nan
    order: int = -1
    trial_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status != RUNNING


class Engine(Protocol):
    """What :meth:`Strategy.run` drives: where architectures are evaluated.

    ``submit`` starts an evaluation, ``wait`` blocks until at least one running evaluation has ended
    and returns ``(id, metric_or_None)`` pairs (``None``: it failed), ``free_slots`` says how many more
    may start now (``0`` once the budget is spent) and ``running`` how many are under way.
    """

    def free_slots(self) -> int: ...

    def running(self) -> int: ...

    def submit(self, trial_id: int, arch: dict[str, Any]) -> None: ...

    def wait(self) -> list[tuple[int, Any]]: ...


class Strategy(ABC):
    """A multi-trial exploration strategy: override :meth:`propose`, the rest is done here.

    ``propose(history)`` gets every record so far (running ones included, in proposal order) and
    returns the next architecture, or ``None`` when it has nothing more to try (the search ends once
    running trials finish). It may raise :class:`~nni_pl.errors.WaitForResults` to be asked again after
    the next result. Helpers: :attr:`space` (the parsed :class:`~nni_pl.space.SearchSpace`), :attr:`rng`
    (seeded), :meth:`random_arch`, :meth:`score` (bigger is better whatever ``optimize_mode``),
    :meth:`key` (identity of an architecture, for deduplication).

    A subclass stores each constructor argument under the same attribute name, so :meth:`to_config`
    can rebuild it in another process (and ``resume`` can rebuild it from the stored config).

    Args:
        optimize_mode: ``"maximize"`` or ``"minimize"`` the reported metric.
        seed: makes the proposals reproducible for the same sequence of results.
        model_filter: NNI's ``model_filter``: ``filter(arch) -> bool``; architectures it rejects never run
            (e.g. :class:`~nni_pl.nas.hardware.LatencyFilter`). To rebuild in the manager it must have
            ``to_config()``/``from_config()`` or be a module-level function; a subclass that offers it takes
            ``model_filter`` as an argument and passes it here.

    Example:
        >>> class FirstOption(Strategy):
        ...     def propose(self, history):
        ...         if history:
        ...             return None
        ...         return {label: p.options[0] for label, p in self.space.items()}
        >>> space = {"op": {"_type": "choice", "_value": ["conv", "pool"]}}
        >>> simulate(FirstOption(), space, lambda arch: 1.0, budget=5, seed=0)
        [({'op': 'conv'}, 1.0)]
    """

    #: whether every label must have finitely many values (a continuous evaluator argument cannot be
    #: enumerated by GridSearch).
    finite_only: ClassVar[bool] = False

    def __init__(
        self, *, optimize_mode: str = "maximize", seed: int | None = None, model_filter: Any = None
    ) -> None:
        self.optimize_mode = check_optimize_mode(self, optimize_mode)
        self.seed = check_seed(self, seed)
        self.model_filter: Callable[[dict[str, Any]], bool] | None = _check_model_filter(self, model_filter)
        self.rng: np.random.Generator = make_rng(self.seed)
        self._space: SearchSpace | None = None
        self.history: list[TrialRecord] = []
        self._by_trial: dict[int, TrialRecord] = {}
        self._proposals = 0
        self._results = 0
        self.proposing_id = 0
        #: an optional predicate on architectures set by the engine (the space's constraints), checked with
        #: :attr:`model_filter`: proposals either rejects never run (see :meth:`ask`).
        self.arch_filter: Callable[[dict[str, Any]], bool] | None = None
        self.max_rejections = 1000

    # --- the method to override --------------------------------------------------------------------------
    @abstractmethod
    def propose(self, history: Sequence[TrialRecord]) -> dict[str, Any] | None:
        """The next architecture to evaluate, or ``None`` when the strategy is done."""

    def on_setup(self) -> None:  # noqa: B027 - optional hook
        """Called by :meth:`setup` once :attr:`space` is known (build models of the space here)."""

    def on_result(self, record: TrialRecord) -> None:  # noqa: B027 - optional hook
        """Called when ``record`` has finished (``record.status`` says how)."""

    # --- lifecycle ------------------------------------------------------------------------------------------
    @property
    def space(self) -> SearchSpace:
        if self._space is None:
            raise RuntimeError(f"{type(self).__name__}: call setup(search_space) (or run()) first")
        return self._space

    def setup(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        """Start over on ``search_space``: a fresh history and random stream."""
        space = SearchSpace.parse(search_space)
        for dim in space.dimensions():
            nested = isinstance(dim.param, Choice) and dim.param.is_nested
            if nested or (self.finite_only and not dim.param.is_finite):
                raise SearchSpaceError(
                    dim.name,
                    f"strategy {type(self).__name__} needs "
                    + ("flat choices (no nested _name options)" if nested else "a finite search space"),
                    f"got {dim.param.to_json()}",
                    "write the parameter as a choice of values (ValueChoice), or use Random or TPE",
                )
        self._space = space
        self.rng = make_rng(self.seed)
        self.history, self._by_trial, self._proposals, self._results = [], {}, 0, 0
        self.on_setup()

    def ask(self, trial_id: int | None = None) -> dict[str, Any] | None:
        """Ask :meth:`propose` for the next architecture and record it as running under the engine's ``trial_id``.

        A proposal that :attr:`arch_filter` or :attr:`model_filter` rejects never runs: it is recorded as
        failed (so deduplicating strategies skip it and learning ones learn it is bad) and :meth:`propose` is
        asked again, up to :attr:`max_rejections` times in a row. Returns ``None`` when the strategy is done; re-raises
        :class:`WaitForResults`.
        """
        for _ in range(self.max_rejections + 1):
            self.proposing_id = self._proposals  # the record's id (model-based strategies key on it)
            arch = self.propose(list(self.history))
            if arch is None:
                return None
            arch = dict(arch)
            self.space.check(arch)
            record = TrialRecord(self._proposals, copy.deepcopy(arch))
            self._proposals += 1
            self.history.append(record)
            if not self.accepts(arch):
                log.debug("%s: architecture rejected by the filter: %s", type(self).__name__, arch)
                self._finish(record, None)
                continue
            record.trial_id = record.id if trial_id is None else trial_id
            self._by_trial[record.trial_id] = record
            return arch
        log.warning(
            "%s: %d proposals in a row were rejected by the architecture filter; stopping",
            type(self).__name__,
            self.max_rejections + 1,
        )
        return None

    def accepts(self, arch: dict[str, Any]) -> bool:
        """Whether ``arch`` passes both :attr:`arch_filter` (the space's constraints) and :attr:`model_filter`."""
        return all(f is None or f(arch) for f in (self.arch_filter, self.model_filter))

    def tell(self, trial_id: int, metric: Any, *, arch: Mapping[str, Any] | None = None) -> TrialRecord:
        """Record the result of the engine's ``trial_id`` (``metric=None``: it failed). ``arch`` is needed for
        a trial the strategy did not propose (a resumed or user-added one)."""
        record = self._by_trial.get(trial_id)
        if record is None:
            if arch is None:
                raise KeyError(f"{type(self).__name__}: no trial {trial_id} was proposed; pass arch=")
            record = TrialRecord(self._proposals, dict(arch), trial_id=trial_id)
            self._proposals += 1
            self.history.append(record)
            self._by_trial[trial_id] = record
        elif record.finished:
            return record  # a second report (e.g. trial_end after the result)
        self._finish(record, metric)
        return record

    def _finish(self, record: TrialRecord, metric: Any) -> None:
        value = extract_scalar(metric) if metric is not None else math.nan
        record.metric = metric
        record.value = value
        record.status = SUCCEEDED if metric is not None and math.isfinite(value) else FAILED
        record.order = self._results
        self._results += 1
        self.on_result(record)

    def record_of(self, trial_id: int) -> TrialRecord | None:
        """The record the engine's ``trial_id`` runs, if any."""
        return self._by_trial.get(trial_id)

    def run(self, engine: Engine) -> list[TrialRecord]:
        """Explore until the strategy is done or the engine has no budget left; returns the history.

        :meth:`setup` must have been called (``simulate`` does it).
        """
        while True:
            waiting = False
            while engine.free_slots() > 0:
                try:
                    arch = self.ask()
                except WaitForResults:
                    waiting = True
                    break
                if arch is None:
                    break
                engine.submit(self.history[-1].id, arch)  # ask() without an id: the trial id is the record's
            if engine.running() == 0:
                if waiting:
                    raise RuntimeError(f"{type(self).__name__} waits for results, but none is running")
                return list(self.history)
            for trial_id, metric in engine.wait():
                self.tell(trial_id, metric)

    def resume(self, records: Sequence[tuple[int, Mapping[str, Any], Any, bool]]) -> None:
        """Rebuild the history from stored trials ``(id, arch, metric, finished)`` after :meth:`setup`.

        Unfinished trials come back as running records (the engine runs them again under the same id and
        reports them then), so they are not proposed a second time; the random stream continues on a fresh,
        reproducible branch.
        """
        for trial_id, arch, metric, finished in sorted(records, key=lambda r: r[0]):
            if self.key(arch) is None:
                log.info(
                    "%s: a stored architecture outside the space is ignored: %s", type(self).__name__, arch
                )
                continue
            if not finished and metric is None:
                if trial_id not in self._by_trial:
                    record = TrialRecord(self._proposals, dict(arch), trial_id=trial_id)
                    self._proposals += 1
                    self.history.append(record)
                    self._by_trial[trial_id] = record
                continue
            self.tell(trial_id, metric, arch=arch)
        self.rng = make_rng(self.seed, len(records) + 1)

    # --- helpers for subclasses -------------------------------------------------------------------------------
    def random_arch(self) -> dict[str, Any]:
        """One architecture drawn uniformly (each label independently)."""
        return self.space.sample(self.rng)

    def key(self, arch: Mapping[str, Any]) -> str | None:
        """A canonical identity of ``arch`` (``None`` if it is not in the space)."""
        return param_key(self.space, arch)

    def score(self, record: TrialRecord) -> float:
        """``record``'s value turned so that bigger is better; failed or unusable results are ``-inf``."""
        if record.status != SUCCEEDED or not math.isfinite(record.value):
            return -math.inf
        return record.value if self.optimize_mode == "maximize" else -record.value

    def seen(self, history: Sequence[TrialRecord]) -> set[str | None]:
        """Keys of every architecture in ``history`` (running ones included)."""
        return {self.key(r.arch) for r in history}

    # --- configuration -------------------------------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        """``{"class": "module:Qual", "kwargs": {...}}``: enough to rebuild this strategy anywhere."""
        kwargs = {}
        for name, p in inspect.signature(type(self).__init__).parameters.items():
            if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if not hasattr(self, name):
                fail(
                    self,
                    name,
                    f"{type(self).__name__} does not keep its argument {name!r} as an attribute, so to_config() "
                    "cannot rebuild it; store each constructor argument under its own name",
                )
            kwargs[name] = getattr(self, name)
            if name == "model_filter" and kwargs[name] is not None:
                kwargs[name] = _model_filter_config(self, kwargs[name])
        return {"class": f"{type(self).__module__}:{type(self).__qualname__}", "kwargs": kwargs}

    @staticmethod
    def from_config(config: Mapping[str, Any]) -> Strategy:
        """Rebuild a strategy from :meth:`to_config` output.

        Raises:
            ConfigError: the class cannot be imported or is no strategy, or an argument is invalid (named
                ``strategy.kwargs.<argument>``).
        """
        cls = import_object(str(config["class"]), "strategy.class", what="class")
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise ConfigError(
                "strategy.class",
                f"{config['class']!r} is not a Strategy subclass; name a subclass of Strategy",
            )
        kwargs = dict(config.get("kwargs") or {})
        try:
            return cls(**kwargs)
        except ArgumentError as e:
            raise e.in_config("strategy.kwargs") from e
        except TypeError as e:  # an argument the class does not take
            raise ConfigError("strategy.kwargs", f"{cls.__name__}(**{kwargs!r}) failed: {e}") from e


def _check_model_filter(owner: Strategy, value: Any) -> Callable[[dict[str, Any]], bool] | None:
    """``value`` as a predicate: ``None``, a callable, or what :func:`_model_filter_config` wrote."""
    if value is None or (callable(value) and not isinstance(value, type)):
        return value
    if isinstance(value, str):
        return _check_model_filter(owner, import_object(value, "model_filter", what="function"))
    if isinstance(value, Mapping) and "class" in value:
        cls = import_object(str(value["class"]), "model_filter.class", what="class")
        try:
            built = (
                cls.from_config(value) if hasattr(cls, "from_config") else cls(**(value.get("kwargs") or {}))
            )
        except ArgumentError as e:
            raise ArgumentError(owner_name(owner), f"model_filter.kwargs.{e.argument}", e.reason) from e
        return _check_model_filter(owner, built)
    fail(
        owner,
        "model_filter",
        f"must be a callable taking an architecture and returning a bool (e.g. LatencyFilter(threshold, "
        f"predictor)), got {value!r}",
    )


def _model_filter_config(owner: Strategy, value: Any) -> Any:
    """JSON for ``value``: its ``to_config()``, or ``"module:function"`` for a module-level function."""
    if callable(getattr(value, "to_config", None)):
        return value.to_config()
    name = getattr(value, "__qualname__", "<")
    if inspect.isfunction(value) and "<" not in name:
        return f"{value.__module__}:{name}"
    fail(
        owner,
        "model_filter",
        f"{value!r} cannot be stored in the experiment's config; give an object with to_config()/from_config() "
        "(such as LatencyFilter) or a module-level function",
    )


class _DirectEngine:
    """Evaluates architectures by calling ``fn`` at once (one at a time), ``budget`` calls at most."""

    def __init__(self, fn: Callable[[dict[str, Any]], Any], budget: int) -> None:
        self.fn, self.budget = fn, budget
        self.done: list[tuple[int, Any]] = []
        self.calls = 0

    def free_slots(self) -> int:
        return 1 if self.calls < self.budget and not self.done else 0

    def running(self) -> int:
        return len(self.done)

    def submit(self, trial_id: int, arch: dict[str, Any]) -> None:
        self.calls += 1
        try:
            value = self.fn(copy.deepcopy(arch))
        except Exception:
            log.warning("simulate: fn failed on %s", arch, exc_info=True)
            value = None
        self.done.append((trial_id, value))

    def wait(self) -> list[tuple[int, Any]]:
        out, self.done = self.done, []
        return out


def simulate(
    strategy: Strategy,
    search_space: SearchSpace | Mapping[str, Any],
    fn: Callable[[dict[str, Any]], Any],
    budget: int,
    seed: int | None = None,
) -> list[tuple[dict[str, Any], Any]]:
    """Run ``strategy`` on ``search_space`` with ``fn(arch)`` as the evaluation, ``budget`` times at most.

    No processes: the same :meth:`Strategy.run` lifecycle, with each trial a direct call (an exception
    in ``fn`` counts as a failed trial). ``seed`` (when given) replaces the strategy's seed, so the same
    seed gives the same sequence. Returns ``(arch, value)`` in evaluation order (``value`` ``None`` for a
    failure). The strategy maximises ``fn`` unless it was built with ``optimize_mode="minimize"``.
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ValueError(f"simulate: budget must be a non-negative integer, got {budget!r}")
    if seed is not None:
        strategy.seed = check_seed("simulate", seed)
    strategy.setup(search_space)
    history = strategy.run(_DirectEngine(fn, budget))
    return [
        (r.arch, r.metric)
        for r in sorted(history, key=lambda r: r.order)
        if r.finished and r.trial_id is not None
    ]
