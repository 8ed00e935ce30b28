"""The assessor conformance suite: :class:`AssessorTestCase`, which every built-in and any user assessor passes.

Each check feeds an assessor intermediate results the way the experiment manager does: for each new
result, ``assess_trial(trial_id, history)`` with the whole (growing, never empty) history so far, and
``trial_end(trial_id, success)`` when the trial ends, for many trials interleaved. A failing check
raises :class:`AssertionError` naming the call.

Example:
    >>> from nni_pl.hpo.assessors.medianstop import MedianstopAssessor
    >>> class TestMedianstop(AssessorTestCase):
    ...     assessor_class = MedianstopAssessor
    >>> TestMedianstop().test_verdicts_are_deterministic()
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NoReturn

from nni_pl.hpo import Assessor, AssessResult

__all__ = ["AssessorTestCase", "Event"]

#: ``("assess", trial_id, history)`` or ``("end", trial_id, success)``.
Event = tuple[str, str, Any]

#: Shapes of learning curves, written for a metric to maximise (mirrored when minimising).
SHAPES: tuple[str, ...] = (
    "rising",
    "falling",
    "flat",
    "noisy",
    "negative",
    "huge",
    "tiny",
    "nan_middle",
    "all_nan",
    "inf",
    "neg_inf",
    "zero",
)


def _fail(message: str) -> NoReturn:
    raise AssertionError(message)


def _fail_from(error: BaseException, message: str) -> NoReturn:
    raise AssertionError(message) from error


def _ensure(condition: Any, message: str | Callable[[], str]) -> None:
    if not condition:
        _fail(message() if callable(message) else message)


def _curve_value(shape: str, t: int, salt: int) -> float:
    """The ``t``-th (1-based) result of a curve of ``shape`` (a metric to maximise)."""
    wiggle = 0.01 * math.sin(1.7 * t + salt)
    good = 0.9 - 0.6 * math.exp(-t / 4) + wiggle
    if shape == "good":
        return good
    if shape == "bad":
        return 0.05 + 0.005 * math.sin(t + salt)
    if shape == "rising":
        return 0.1 + 0.04 * t
    if shape == "falling":
        return 0.9 - 0.04 * t
    if shape == "flat":
        return 0.5
    if shape == "noisy":
        return 0.5 + 0.4 * math.sin(3.1 * t + salt)
    if shape == "negative":
        return -100.0 + good
    if shape == "huge":
        return 1e12 * good
    if shape == "tiny":
        return 1e-12 * good
    if shape == "nan_middle":
        return math.nan if t in (3, 4) else good
    if shape == "all_nan":
        return math.nan
    if shape == "inf":
        return math.inf if t == 2 else good
    if shape == "neg_inf":
        return -math.inf if t % 3 == 0 else good
    if shape == "zero":
        return 0.0
    raise ValueError(f"unknown curve shape {shape!r}")


class AssessorTestCase:
    """The assessor contract as a test class: subclass it, name the assessor, and pytest runs every check.

    Attributes:
        assessor_class: the assessor under test.
        assessor_kwargs: keyword arguments for it; ``optimize_mode`` there sets the curves' direction.
        seed_arg: name of the constructor's seed argument (``None``: the assessor takes no seed).
        history_length: how many intermediate results a full trial reports.
        n_trials: trials per run (the interleaved run uses twice as many).
        stops_bad_trials: after ``n_trials`` good trials completed, a trial whose curve stays far
            below them must get a ``Bad`` verdict at some step.

    Example:
        >>> from nni_pl.hpo.assessors.medianstop import MedianstopAssessor
        >>> class TestMedianstop(AssessorTestCase):
        ...     assessor_class = MedianstopAssessor
        ...     assessor_kwargs = {"optimize_mode": "minimize"}
        >>> TestMedianstop().test_stops_bad_trials()
    """

    __test__: ClassVar[bool] = False

    assessor_class: ClassVar[type | None] = None
    assessor_kwargs: ClassVar[Mapping[str, Any]] = {}
    seed_arg: ClassVar[str | None] = None
    history_length: ClassVar[int] = 20
    n_trials: ClassVar[int] = 8
    stops_bad_trials: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = (
                cls.assessor_class is not None or cls.make_assessor is not AssessorTestCase.make_assessor
            )

    # --- hooks -------------------------------------------------------------------------------------------
    def make_assessor(self, **overrides: Any) -> Assessor:
        """A fresh assessor; ``overrides`` (e.g. the seed) win over ``assessor_kwargs``."""
        if self.assessor_class is None:
            _fail(f"{type(self).__name__}: set assessor_class or override make_assessor()")
        return self.assessor_class(**{**self.assessor_kwargs, **overrides})

    def curve(self, shape: str, length: int, *, salt: int = 0) -> list[float]:
        """A learning curve of ``shape`` in the direction of the assessor's ``optimize_mode``."""
        values = [_curve_value(shape, t, salt) for t in range(1, length + 1)]
        if self.assessor_kwargs.get("optimize_mode", "maximize") == "minimize":
            values = [1.0 - v for v in values]  # a loss going down where an accuracy goes up
        return values

    # --- building blocks ---------------------------------------------------------------------------------
    def new_assessor(self, *, seed: int = 0) -> Assessor:
        overrides = {self.seed_arg: seed} if self.seed_arg is not None else {}
        try:
            return self.make_assessor(**overrides)
        except Exception as e:
            _fail_from(e, f"{type(self).__name__}.make_assessor({overrides}) raised {type(e).__name__}: {e}")

    def assess(self, assessor: Assessor, trial_id: str, history: Sequence[float]) -> bool:
        """``assess_trial`` on a copy of ``history``; checks the verdict's type and returns it as a bool."""
        verdict = self._call(assessor, "assess_trial", trial_id, list(history))
        _ensure(
            isinstance(verdict, (AssessResult, bool)),
            lambda: (
                f"assess_trial({trial_id!r}, {_short(history)}) returned {verdict!r} "
                f"({_qualified_type(verdict)}); return AssessResult.Good or AssessResult.Bad"
            ),
        )
        return bool(verdict.value) if isinstance(verdict, AssessResult) else verdict

    def end(self, assessor: Assessor, trial_id: str, success: bool) -> None:
        self._call(assessor, "trial_end", trial_id, success)

    def play(self, assessor: Assessor, events: Sequence[Event]) -> list[bool]:
        """Run a script of events; returns the verdicts in order."""
        verdicts = []
        for kind, trial_id, arg in events:
            if kind == "assess":
                verdicts.append(self.assess(assessor, trial_id, arg))
            else:
                self.end(assessor, trial_id, arg)
        return verdicts

    def interleaved(self, n_trials: int, *, prefix: str = "t") -> list[Event]:
        """Trials starting one per tick and reporting one result per tick each; some fail half-way."""
        length = self.history_length
        shapes = ("good", *SHAPES)
        events: list[Event] = []
        running: dict[str, tuple[list[float], int]] = {}
        steps: dict[str, int] = {}
        for tick in range(n_trials + length):
            if tick < n_trials:
                tid = f"{prefix}{tick}"
                stop = length // 2 if tick % 5 == 4 else length
                running[tid] = (self.curve(shapes[tick % len(shapes)], length, salt=tick), stop)
            for tid in list(running):
                curve, stop = running[tid]
                steps[tid] = step = steps.get(tid, 0) + 1
                events.append(("assess", tid, curve[:step]))
                if step == stop:
                    events.append(("end", tid, stop == length))
                    del running[tid]
        return events

    # --- the checks ------------------------------------------------------------------------------------------
    def test_verdicts_for_growing_histories(self) -> None:
        """Every curve shape (NaN, inf, huge, tiny, negative ...) gets a verdict at every length."""
        assessor = self.new_assessor()
        for i in range(2):
            self._full_trial(assessor, f"good{i}", self.curve("good", self.history_length, salt=i), True)
        for shape in SHAPES:
            self._full_trial(assessor, shape, self.curve(shape, self.history_length), True)

    def test_short_histories(self) -> None:
        """Histories of one or two results never error, before and after trials complete."""
        assessor = self.new_assessor()
        for i in range(self.n_trials):
            curve = self.curve(("good", "bad", "all_nan")[i % 3], 2, salt=i)
            self.assess(assessor, f"a{i}", curve[:1])
            self.assess(assessor, f"a{i}", curve)
            self.end(assessor, f"a{i}", i % 2 == 0)
        for i in range(3):
            self._full_trial(assessor, f"full{i}", self.curve("good", self.history_length, salt=i), True)
        for i in range(self.n_trials):
            curve = self.curve(("good", "bad", "nan_middle")[i % 3], 2, salt=i)
            self.assess(assessor, f"b{i}", curve[:1])
            self.assess(assessor, f"b{i}", curve)

    def test_trial_end(self) -> None:
        """``trial_end`` works for successful, failed and never-assessed trials, and twice for one trial."""
        assessor = self.new_assessor()
        self.end(assessor, "never-assessed", True)
        self.end(assessor, "never-assessed-failed", False)
        curve = self.curve("good", self.history_length)
        self._full_trial(assessor, "ok", curve, True)
        self._full_trial(assessor, "failed", curve[: self.history_length // 2], False)
        self.end(assessor, "ok", True)
        self.assess(assessor, "after", curve[:3])

    def test_verdicts_are_deterministic(self) -> None:
        """The same calls (and seed) give the same verdicts."""
        events = self.interleaved(self.n_trials)
        first = self.play(self.new_assessor(seed=0), events)
        second = self.play(self.new_assessor(seed=0), events)
        _ensure(first == second, lambda: _first_difference(first, second, events))

    def test_resume(self) -> None:
        """``resume`` from stored histories (finished and running trials); verdicts go on, deterministically."""
        events = self.interleaved(self.n_trials)
        cut = len(events) // 2
        histories: dict[str, list[float]] = {}
        success: dict[str, bool | None] = {}
        for kind, tid, arg in events[:cut]:
            if kind == "assess":
                histories[tid] = list(arg)
                success.setdefault(tid, None)
            else:
                success[tid] = arg
        records = [(tid, histories[tid], success[tid]) for tid in histories]
        rest = events[cut:]
        outcomes = []
        for _ in range(2):
            assessor = self.new_assessor(seed=0)
            self._call(assessor, "resume", records)
            outcomes.append(self.play(assessor, rest))
        _ensure(outcomes[0] == outcomes[1], lambda: "after resume: " + _first_difference(*outcomes, rest))
        empty = self.new_assessor(seed=0)
        self._call(empty, "resume", [])
        self.assess(empty, "fresh", self.curve("good", 3))

    def test_many_trials_interleaved(self) -> None:
        """Many trials at once, some failing half-way, some still asked after a Bad verdict."""
        assessor = self.new_assessor()
        events = self.interleaved(2 * self.n_trials)
        verdicts = self.play(assessor, events)
        _ensure(len(verdicts) == sum(1 for e in events if e[0] == "assess"), "a verdict is missing")

    def test_stops_bad_trials(self) -> None:
        """After good trials completed, a trial far below them is judged ``Bad`` at some step."""
        if not self.stops_bad_trials:
            return
        assessor = self.new_assessor()
        for i in range(self.n_trials):
            self._full_trial(assessor, f"good{i}", self.curve("good", self.history_length, salt=i), True)
        bad = self.curve("bad", self.history_length)
        verdicts = [self.assess(assessor, "bad", bad[:n]) for n in range(1, self.history_length + 1)]
        _ensure(
            not all(verdicts),
            f"a trial reporting {_short(bad)} after {self.n_trials} completed trials reporting "
            f"{_short(self.curve('good', self.history_length))} was never judged Bad in "
            f"{self.history_length} steps (set stops_bad_trials = False if the assessor is not meant to)",
        )

    # --- internals -------------------------------------------------------------------------------------------
    def _full_trial(
        self, assessor: Assessor, trial_id: str, curve: Sequence[float], success: bool
    ) -> list[bool]:
        verdicts = [self.assess(assessor, trial_id, curve[:n]) for n in range(1, len(curve) + 1)]
        self.end(assessor, trial_id, success)
        return verdicts

    @staticmethod
    def _call(assessor: Assessor, method: str, *args: Any) -> Any:
        try:
            return getattr(assessor, method)(*args)
        except AssertionError:
            raise
        except Exception as e:
            shown = ", ".join(_short(a) if isinstance(a, list) else repr(a) for a in args)
            _fail_from(e, f"{type(assessor).__name__}.{method}({shown}) raised {type(e).__name__}: {e}")


def _short(values: Any, limit: int = 6, width: int = 300) -> str:
    values = list(values)
    text = (
        repr(values)
        if len(values) <= limit
        else f"[{', '.join(repr(v) for v in values[:limit])}, ... ({len(values)} values)]"
    )
    return text if len(text) <= width else text[:width] + "...]"


def _qualified_type(value: Any) -> str:
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _first_difference(first: list[bool], second: list[bool], events: Sequence[Event]) -> str:
    assessed = [e for e in events if e[0] == "assess"]
    i = next((k for k, (a, b) in enumerate(zip(first, second)) if a != b), min(len(first), len(second)))
    what = f"assess_trial({assessed[i][1]!r}, {_short(assessed[i][2])})" if i < len(assessed) else "the end"
    return (
        f"the same calls gave different verdicts, first at {what}: {first[i : i + 1]} vs {second[i : i + 1]}"
    )
