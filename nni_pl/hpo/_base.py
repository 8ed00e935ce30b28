"""The extension points of HPO: :class:`Tuner` and :class:`Assessor` (NNI's interface names)."""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

from nni_pl._checks import ArgumentError, check_optimize_mode
from nni_pl.errors import ConfigError, NoMoreTrialError, SearchSpaceError, WaitForResults
from nni_pl.space import SearchSpace

__all__ = [
    "Advisor",
    "AssessResult",
    "Assessor",
    "HistoryEntry",
    "Tuner",
    "extract_scalar",
    "to_loss",
    "validate_optimize_mode",
]


def validate_optimize_mode(mode: Any, *, field: str = "classArgs.optimize_mode") -> str:
    """Return ``mode`` if it is ``"maximize"`` or ``"minimize"``, else raise a :class:`ConfigError` naming ``field``.

    The built-in algorithms check their own ``optimize_mode`` with ``nni_pl._checks.check_optimize_mode``,
    which names the class in Python and the config field when built from a config.
    """
    try:
        return check_optimize_mode("", mode)
    except ArgumentError as e:
        raise ConfigError(field, e.reason) from None


def extract_scalar(value: Any) -> float:
    """The number a tuner optimises: the metric itself, or its ``default`` key (NaN when unusable)."""
    if isinstance(value, Mapping):
        value = value.get("default")
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return math.nan


def to_loss(value: Any, optimize_mode: str) -> float:
    """Turn a reported metric into a loss to minimise; NaN/inf (diverged runs) become ``+inf``, the worst."""
    x = extract_scalar(value)
    if not math.isfinite(x):
        return math.inf
    return -x if optimize_mode == "maximize" else x


@dataclass(frozen=True)
class HistoryEntry:
    """One stored trial, as handed to :meth:`Tuner.resume` when an experiment is resumed.

    Attributes:
        parameter_id: the id the tuner generated the parameters under (``None`` for customised trials).
        parameters: the parameters the trial ran with.
        value: its final metric, or ``None`` if it has none (yet).
        finished: whether the trial has ended (a running or re-queued trial is not finished).
        source: ``"algorithm"``, ``"customized"``, ``"imported"`` or ``"resumed"``.
    """

    parameter_id: int | None
    parameters: dict[str, Any]
    value: Any = None
    finished: bool = True
    source: str = "algorithm"
    extra: dict[str, Any] = field(default_factory=dict)


class Tuner(ABC):
    """Generates parameter sets and learns from their results (NNI's ``nni.tuner.Tuner`` contract).

    A subclass implements three methods; the rest have working defaults. Class attributes declare which
    search spaces it understands, and the experiment checks them before the first trial starts.

    The finite-space rule, which every built-in tuner that samples follows: on a finite space (only
    ``choice``, ``randint``, ``quniform``, ``qloguniform``; nested options count by their sub-spaces) a
    point is never suggested twice in an experiment, counting the points a tuner learns of (results,
    :meth:`import_data`, customised trials, :meth:`resume`'s history), and :meth:`generate_parameters`
    raises :class:`~nni_pl.errors.NoMoreTrialError` once every point is used, which ends the experiment.
    The built-ins share one implementation (``nni_pl.hpo.tuners._seen.SeenPoints``); their documented
    exceptions re-run configurations on purpose (Hyperband/BOHB's promotions, PBT's generations, Metis's
    re-sampling). :class:`nni_pl.testing.TunerTestCase` checks the rule.

    Example:
        >>> import numpy as np
        >>> class MyRandom(Tuner):
        ...     def __init__(self, *, seed=None):
        ...         self.rng = np.random.default_rng(seed)
        ...     def update_search_space(self, search_space):
        ...         self.space = SearchSpace.parse(search_space)
        ...     def generate_parameters(self, parameter_id, **kwargs):
        ...         return self.space.sample(self.rng)
        ...     def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
        ...         pass
        >>> t = MyRandom(seed=0)
        >>> t.update_search_space({"x": {"_type": "uniform", "_value": [0, 1]}})
        >>> 0 <= t.generate_parameters(0)["x"] <= 1
        True
    """

    #: ``_type`` s this tuner can search (``None``: all ten).
    supported_types: ClassVar[frozenset[str] | None] = None
    #: whether nested ``choice`` (``_name`` options) is understood.
    supports_nested: ClassVar[bool] = True
    #: whether ``choice`` options must all be numbers (distance-based tuners).
    numeric_choices_only: ClassVar[bool] = False
    #: whether an assessor may stop this tuner's trials early (PBT's cannot: its trials are generations).
    accepts_assessor: ClassVar[bool] = True
    #: what an experiment hands :meth:`update_search_space`: NNI's JSON dict (``False``, the default, so NNI
    #: tuner code such as ``search_space["x"]["_type"]`` runs unchanged) or the parsed
    #: :class:`~nni_pl.space.SearchSpace` (``True``: the built-ins, which would otherwise parse it again).
    parsed_search_space: ClassVar[bool] = False
    #: whether the search space is this tuner's own format, any JSON (NNI passes any JSON to a custom
    #: tuner): the experiment neither validates nor reads it and hands it over as given, in a
    #: :class:`~nni_pl.space.FreeFormSpace`. Built-ins leave it ``False``: their spaces are checked before launch.
    free_form_search_space: ClassVar[bool] = False

    @abstractmethod
    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        """Receive the search space (called before the first ``generate_parameters``, and on every update).

        In an experiment it is NNI's JSON dict, or the parsed :class:`~nni_pl.space.SearchSpace` when the class
        sets :attr:`parsed_search_space`; ``SearchSpace.parse(search_space)`` accepts either.
        """

    @abstractmethod
    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        """Return one parameter set.

        Raises:
            NoMoreTrialError: the search space is exhausted: every point of a finite space has been
                suggested or learnt of (the experiment ends when trials finish).
            WaitForResults: nothing to suggest until a running trial reports (asked again later).
        """

    @abstractmethod
    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        """Receive the final metric of the trial that ran ``parameters`` (a number or a dict with ``default``)."""

    def generate_multiple_parameters(
        self, parameter_id_list: Sequence[int], **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Several parameter sets at once; fewer (possibly none) when the space runs out."""
        out = []
        for pid in parameter_id_list:
            try:
                out.append(self.generate_parameters(pid, **kwargs))
            except (NoMoreTrialError, WaitForResults):
                break
        return out

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:  # noqa: B027 - optional hook
        """Called when a trial ends, successfully or not, after its result (if any) was received.

        The manager passes ``trial_job_id=`` and ``status=`` (e.g. ``"EARLY_STOPPED"``) as keywords.
        """

    def attach(self, *, experiment_id: str, directory: Path) -> None:  # noqa: B027 - optional hook
        """Called once before :meth:`update_search_space` with the experiment's id and folder
        (a tuner that keeps files, such as PBT's checkpoints, puts them there)."""

    def import_data(self, data: Sequence[Mapping[str, Any]]) -> None:
        """Learn from earlier results: a list of ``{"parameter": {...}, "value": metric}``.

        Imported records get negative parameter ids (-1, -2, ... over all imports), never a real trial's.
        """
        for record in data:
            if record.get("value") is None:
                continue
            self._imported = getattr(self, "_imported", 0) + 1
            self.receive_trial_result(
                -self._imported, dict(record["parameter"]), record["value"], imported=True
            )

    def resume(self, history: Sequence[HistoryEntry]) -> None:
        """Rebuild state from an experiment's stored trials (called after ``update_search_space``).

        The default imports every finished result; tuners with more state (a grid position, an RNG that
        must not repeat itself) override it.
        """
        self.import_data(
            [{"parameter": h.parameters, "value": h.value} for h in history if h.value is not None]
        )

    def check_budget(self, *, max_trial_number: int | None, max_duration_s: float | None) -> list[str]:
        """Called once at launch with the experiment's budget (``None``: unlimited); returns warnings.

        A tuner whose settings make it degenerate for this budget says so here, naming the setting, its
        value and a value that fits (a ``population_size`` of 100 with 50 trials is random search); the
        experiment shows each warning once before it starts. A tuner may also keep the budget. The default
        has nothing to say.
        """
        return []

    # --- validation the experiment runs before starting --------------------------------------------------
    @classmethod
    def check_search_space(cls, space: SearchSpace, *, name: str | None = None) -> None:
        """Raise :class:`SearchSpaceError` naming this tuner and the parameter it cannot handle."""
        check_space_support(
            space,
            tuner=name or cls.__name__,
            supported_types=cls.supported_types,
            supports_nested=cls.supports_nested,
            numeric_choices_only=cls.numeric_choices_only,
        )


def check_space_support(
    space: SearchSpace,
    *,
    tuner: str,
    supported_types: frozenset[str] | None,
    supports_nested: bool,
    numeric_choices_only: bool,
) -> None:
    """The rule of :meth:`Tuner.check_search_space` for explicit declarations (a tuner whose instances
    can be restricted further, such as GP's ``nni_types_only``, checks them with it)."""
    for dim in space.dimensions():
        p = dim.param
        if supported_types is not None and p.TYPE not in supported_types:
            raise SearchSpaceError(
                dim.name,
                f"tuner {tuner} does not support _type {p.TYPE!r}",
                "",
                f"it supports {', '.join(sorted(supported_types))}; change the type or pick another tuner (e.g. TPE)",
            )
        if p.TYPE == "choice":
            if dim.parent is None and getattr(p, "is_nested", False) and not supports_nested:
                raise SearchSpaceError(
                    dim.name,
                    f"tuner {tuner} does not support nested choices (_name options)",
                    "",
                    "use TPE, Random, Anneal, Evolution or GridSearch",
                )
            if numeric_choices_only and not p.is_numeric:
                raise SearchSpaceError(
                    dim.name,
                    f"tuner {tuner} needs numeric choice options",
                    f"got {p.to_json()['_value']}",
                    "use numbers, or a tuner such as TPE",
                )


class AssessResult(Enum):
    """An assessor's verdict: ``Good`` lets the trial go on, ``Bad`` stops it early."""

    Good = True
    Bad = False


class Assessor(ABC):
    """Looks at a running trial's intermediate results and says whether to stop it early.

    ``trial_history`` always grows and is never empty; an assessor may be asked again after saying
    ``Bad``. Values are the numbers (the ``default`` of dict metrics) in report order.

    Example:
        >>> class StopBelow(Assessor):
        ...     def __init__(self, *, threshold=0.5):
        ...         self.threshold = threshold
        ...     def assess_trial(self, trial_job_id, trial_history):
        ...         return AssessResult.Bad if trial_history[-1] < self.threshold else AssessResult.Good
        >>> StopBelow().assess_trial("abc", [0.3])
        <AssessResult.Bad: False>
    """

    @abstractmethod
    def assess_trial(self, trial_job_id: str, trial_history: list[float]) -> AssessResult:
        """Judge a running trial from its intermediate results so far."""

    def trial_end(self, trial_job_id: str, success: bool) -> None:  # noqa: B027 - optional hook
        """Called when a trial ends (``success`` is False for failed and early-stopped trials)."""

    def resume(self, histories: Sequence[tuple[str, list[float], bool | None]]) -> None:
        """Rebuild state from stored trials: ``(trial_id, history, success)``; ``success`` is ``None`` if running."""
        for trial_id, history, success in histories:
            for n in range(1, len(history) + 1):
                self.assess_trial(trial_id, history[:n])
            if success is not None:
                self.trial_end(trial_id, success)


class Advisor(Tuner):
    """A tuner that also judges running trials (NNI's ``advisor:`` slot: Hyperband, BOHB).

    It is a :class:`Tuner` (the same three abstract methods) with an assessor's hook that defaults to
    letting every trial run. When a config names an advisor, the manager uses it as both the tuner and
    the assessor; its :meth:`Tuner.trial_end` gets ``trial_job_id=`` and ``status=`` keywords.

    Example:
        >>> class HalfBudget(Advisor):
        ...     def update_search_space(self, search_space):
        ...         self.space = SearchSpace.parse(search_space)
        ...     def generate_parameters(self, parameter_id, **kwargs):
        ...         return {"x": 1, "TRIAL_BUDGET": 5}
        ...     def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
        ...         pass
        ...     def assess_trial(self, trial_job_id, trial_history, **kwargs):
        ...         return AssessResult.Bad if len(trial_history) > 2 and trial_history[-1] < 0.1 else AssessResult.Good
        >>> HalfBudget().assess_trial("t", [0.5, 0.05, 0.01])
        <AssessResult.Bad: False>
    """

    def assess_trial(self, trial_job_id: str, trial_history: list[float], **kwargs: Any) -> AssessResult:
        """Judge a running trial from its intermediate results (``parameter_id=`` is passed as a keyword)."""
        return AssessResult.Good
