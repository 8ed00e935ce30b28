"""The tuner conformance suite: :class:`TunerTestCase`, which every built-in and any user tuner passes.

A test module subclasses it once per tuner; pytest collects the ``Test*`` subclass and runs every
``test_*`` method (no plugin, no fixtures). Each check drives the tuner the way the experiment
manager does: ``attach``, ``update_search_space``, ``generate_parameters`` with ids 0, 1, 2, ...,
``receive_trial_result`` with the JSON round trip of the parameters, ``trial_end`` with
``trial_job_id=`` and ``status=``, ``assess_trial`` for advisors, and on ``WaitForResults`` it ends a
running trial and asks again. A check that fails raises :class:`AssertionError` saying which call,
which parameters and which rule; an exception from the tuner is turned into one naming the call.

Example:
    >>> from nni_pl.hpo.tuners.random import RandomTuner
    >>> class TestRandom(TunerTestCase):
    ...     tuner_class = RandomTuner
    >>> TestRandom().test_exhausts_finite_spaces()   # raises AssertionError if the tuner breaks the contract
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import re
import shutil
import tempfile
import weakref
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import numpy as np

from nni_pl.errors import NoMoreTrialError, SearchSpaceError, WaitForResults
from nni_pl.hpo import Advisor, AssessResult, HistoryEntry, Tuner, extract_scalar
from nni_pl.space import Branch, Choice, Param, SearchSpace, canonical_json
from nni_pl.testing import corpus

__all__ = [
    "DEFAULT_EXTRA_KEYS",
    "FINITE_FLAT_12",
    "FINITE_NESTED_12",
    "RunLog",
    "Trial",
    "TunerTestCase",
    "check_parameters",
    "parameter_problems",
    "point_key",
]

#: Keys NNI's tuners add beside the space's own (Hyperband/BOHB's budget, PBT's checkpoint folders).
DEFAULT_EXTRA_KEYS: frozenset[str] = frozenset({"TRIAL_BUDGET", "load_checkpoint_dir", "save_checkpoint_dir"})
#: The statuses of a trial that ends without a final result.
FAILED_STATUSES: tuple[str, ...] = ("FAILED", "EARLY_STOPPED", "USER_CANCELED", "TIMEOUT")
#: Metrics of every form a trial can report (numbers, dicts with ``default``).
METRIC_FORMS: tuple[Any, ...] = (
    0.5,
    3,
    {"default": 0.25, "other": 3.0},
    {"default": 0.75, "loss": 0.1, "note": "text"},
    -0.0,
    {"default": 2},
    1e300,
    -17.5,
)
#: Non-finite metrics (a diverged run): they count as the worst and must not crash a tuner.
NON_FINITE_METRICS: tuple[Any, ...] = (
    math.nan,
    math.inf,
    -math.inf,
    {"default": math.nan, "other": 1.0},
    {"default": math.inf},
)

#: The finite space of the finite-space rule: 12 points behind a nested choice (1 + 6 + 4 + 1).
FINITE_NESTED_12: dict[str, Any] = {
    "model": {
        "_type": "choice",
        "_value": [
            {"_name": "linear"},
            {
                "_name": "mlp",
                "width": {"_type": "choice", "_value": [16, 32]},
                "depth": {"_type": "randint", "_value": [1, 4]},
            },
            {
                "_name": "conv",
                "kernel": {"_type": "choice", "_value": [3, 5]},
                "padding": {"_type": "choice", "_value": ["same", "valid"]},
            },
            {"_name": "identity", "scale": 1.0},
        ],
    }
}
#: The same rule's space for tuners without nested choices (numeric options only): 12 points.
FINITE_FLAT_12: dict[str, Any] = {
    "width": {"_type": "choice", "_value": [16, 32, 64]},
    "depth": {"_type": "randint", "_value": [1, 5]},
}

_BOUNDED_Q = ("quniform", "qloguniform")
_TMP_PREFIX = "nni-pl-conformance-"
_TMP_PATTERN = re.compile(re.escape(_TMP_PREFIX) + r"[^/\\]+")


# ------------------------------------------------------------------------------------------------
# checking one parameter set
# ------------------------------------------------------------------------------------------------


def _fail(message: str) -> NoReturn:
    raise AssertionError(message)


def _ensure(condition: Any, message: str | Callable[[], str]) -> None:
    """``assert`` that survives ``python -O`` (a conformance check must never be compiled away)."""
    if not condition:
        _fail(message() if callable(message) else message)


def _fmt(value: Any, limit: int = 300) -> str:
    try:
        text = json.dumps(value, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _json_value(value: Any) -> Any:
    """An option as the space writes it, normalised to plain JSON types (tuples become lists)."""
    return json.loads(canonical_json(value))


def _same_json(a: Any, b: Any) -> bool:
    """Equal and of the same JSON types all the way down (``1 != 1.0 != True`` here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b))
    return a == b


def _type_name(value: Any) -> str:
    return type(value).__name__


def _on_grid(value: float, q: float) -> bool:
    ratio = value / q
    return abs(ratio - round(ratio)) <= 1e-9 * max(1.0, abs(ratio))


def _numeric_problems(path: str, param: Any, value: Any, problems: list[str]) -> None:
    where = f"{path}={value!r} ({param.TYPE} {_fmt(param.to_json()['_value'])})"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        problems.append(f"{where} is a {_type_name(value)}, not a number")
        return
    expected = int if param.integer_valued else float
    if type(value) is not expected:
        why = (
            "randint gives ints"
            if param.TYPE == "randint"
            else "q-types give ints exactly when all their numbers are ints"
            if param.q is not None
            else "continuous types give floats"
        )
        article = "an" if expected is int else "a"
        problems.append(f"{where} is a {_type_name(value)}, expected {article} {expected.__name__} ({why})")
        return
    if expected is float and not math.isfinite(value):
        problems.append(f"{where} is not finite")
        return
    if param.TYPE == "randint" and value == param.high:
        problems.append(f"{where} is the upper bound, which randint [low, high) excludes")
        return
    if param.q is not None:
        at_bound = param.TYPE in _BOUNDED_Q and value in (param.low, param.high)
        if not at_bound and not _on_grid(value, param.q):
            problems.append(f"{where} is not a multiple of q={param.q!r} (only a clip onto a bound may be)")
            return
    if not param.contains(value):
        problems.append(f"{where} is outside the parameter's range")


def _choice_problems(path: str, param: Choice, value: Any, problems: list[str]) -> None:
    index = param.index_of(value)
    if index is None:
        problems.append(f"{path}={_fmt(value)} is not one of the options {_fmt(param.to_json()['_value'])}")
        return
    option = param.options[index]
    if not isinstance(option, Branch):
        expected = _json_value(option)
        if not _same_json(value, expected):
            problems.append(
                f"{path}={_fmt(value)} ({_type_name(value)}) is not exactly the option {_fmt(expected)} "
                f"({_type_name(expected)}): choice options must come back as written"
            )
        return
    if type(value) is not dict:
        problems.append(f"{path}: the nested option {option.name!r} must be a dict, got {_type_name(value)}")
        return
    if not _same_json(value.get("_name"), _json_value(option.name)):
        problems.append(f"{path}: _name is {_fmt(value.get('_name'))}, expected exactly {_fmt(option.name)}")
    branch = f"{path}/{option.name}"
    extra = sorted(map(str, set(value) - set(option.params) - {"_name"}))
    if extra:
        problems.append(f"{branch}: unexpected key(s) {extra}")
    for key, sub in option.params.items():
        if key not in value:
            problems.append(f"{branch}/{key}: missing")
        elif isinstance(sub, Param):
            _value_problems(f"{branch}/{key}", sub, value[key], problems)
        elif not _same_json(value[key], _json_value(sub)):
            problems.append(f"{branch}/{key}={_fmt(value[key])} must be the constant {_fmt(sub)}")


def _value_problems(path: str, param: Param, value: Any, problems: list[str]) -> None:
    if isinstance(param, Choice):
        _choice_problems(path, param, value, problems)
    else:
        _numeric_problems(path, param, value, problems)


def parameter_problems(
    space: SearchSpace | Mapping[str, Any], params: Any, *, extra_keys: Iterable[str] = ()
) -> list[str]:
    """Everything wrong with ``params`` as a point of ``space`` (an empty list when it is fine).

    Beyond :meth:`SearchSpace.check` it demands the exact Python types NNI gives: ``int`` for randint
    and integer q-types, a finite ``float`` for continuous types, choice options of the same JSON types
    as written (``1.0`` is not ``1``, ``True`` is not ``1``), plain JSON values throughout.

    Example:
        >>> space = SearchSpace.parse({"n": {"_type": "randint", "_value": [0, 3]}})
        >>> parameter_problems(space, {"n": 3})
        ['n=3 (randint [0, 3]) is the upper bound, which randint [low, high) excludes']
        >>> parameter_problems(space, {"n": 1})
        []
    """
    space = SearchSpace.parse(space)
    extra_keys = set(extra_keys)
    if not isinstance(params, dict):
        return [f"a parameter set must be a dict, got {_type_name(params)} {_fmt(params)}"]
    problems: list[str] = []
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as e:
        problems.append(f"it is not plain JSON ({e}); return int/float/str/bool/None/list/dict values")
    for key in params:
        if key not in space and key not in extra_keys:
            problems.append(
                f"unexpected key {key!r}: the space has {sorted(space)}"
                + (f", extra keys may be {sorted(extra_keys)}" if extra_keys else "")
            )
    for name, param in space.items():
        if name not in params:
            problems.append(f"{name}: missing")
        else:
            _value_problems(name, param, params[name], problems)
    if not problems:
        try:
            space.check({k: params[k] for k in space})
        except SearchSpaceError as e:
            problems.append(f"SearchSpace.check rejects it: {e}")
    return problems


def check_parameters(
    space: SearchSpace | Mapping[str, Any], params: Any, *, extra_keys: Iterable[str] = (), where: str = ""
) -> None:
    """Raise :class:`AssertionError` listing the :func:`parameter_problems` of ``params``, if any."""
    problems = parameter_problems(space, params, extra_keys=extra_keys)
    if problems:
        _fail(f"{where or 'parameters'} {_fmt(params)} is not a valid point:\n  - " + "\n  - ".join(problems))


def point_key(space: SearchSpace, params: Mapping[str, Any]) -> str:
    """A canonical identity of a point of ``space`` (``2`` and ``2.0``, ``0.30000000000000004`` and ``0.3`` agree)."""
    flat = space.flatten({k: params[k] for k in space})
    items = []
    for key, value in flat.items():
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = float(f"{float(value):.12g}") + 0.0  # + 0.0 turns -0.0 into 0.0
        items.append(["/".join(map(str, key)), value])
    return json.dumps(sorted(items, key=lambda kv: kv[0]))


def _describe_call(obj: Any, method: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    parts = [_fmt(a, 120) for a in args] + [f"{k}={_fmt(v, 120)}" for k, v in kwargs.items()]
    return f"{type(obj).__name__}.{method}({', '.join(parts)})"


def _call(
    obj: Any, method: str, *args: Any, expect: tuple[type[BaseException], ...] = (), **kwargs: Any
) -> Any:
    """Call ``obj.method``; any exception but ``expect`` ones becomes an AssertionError naming the call."""
    try:
        return getattr(obj, method)(*args, **kwargs)
    except expect:
        raise
    except AssertionError:
        raise
    except Exception as e:
        _fail_from(e, f"{_describe_call(obj, method, args, kwargs)} raised {type(e).__name__}: {e}")


def _fail_from(error: BaseException, message: str) -> NoReturn:
    raise AssertionError(message) from error


# ------------------------------------------------------------------------------------------------
# driving a tuner like the experiment manager
# ------------------------------------------------------------------------------------------------


@dataclass
class Trial:
    """One generated parameter set and what the trial sees of it.

    Attributes:
        parameter_id: the id it was generated under.
        parameters: what ``generate_parameters`` returned.
        sent: its JSON round trip, as the trial reads it and the manager reports it back.
        index: its position in the run that generated it (``-1`` for trials carried over).
    """

    parameter_id: int
    parameters: dict[str, Any]
    sent: dict[str, Any]
    index: int = -1


@dataclass
class RunLog:
    """What happened in one :meth:`TunerTestCase.run_trials`.

    Attributes:
        trials: the trials generated in this run, in order.
        exhausted: whether ``generate_parameters`` raised ``NoMoreTrialError``.
        waits: how often it raised ``WaitForResults``.
        results: final metric per parameter id, for trials that reported one.
        ended: status per parameter id, for trials that ended.
        pending: trials still running when the run stopped (``finish=False``).
        next_id: the parameter id the next suggestion would get.
    """

    trials: list[Trial] = field(default_factory=list)
    exhausted: bool = False
    waits: int = 0
    results: dict[int, Any] = field(default_factory=dict)
    ended: dict[int, str] = field(default_factory=dict)
    pending: list[Trial] = field(default_factory=list)
    next_id: int = 0


def _cycle(forms: Sequence[Any]) -> Callable[[Trial], Any]:
    return lambda trial: copy.deepcopy(forms[max(trial.index, 0) % len(forms)])


def _score(value: Any) -> float:
    if isinstance(value, bool):
        return 0.3 if value else 0.0
    if isinstance(value, numbers.Real):
        x = float(value)
        return math.tanh(0.37 * x) if math.isfinite(x) else 0.0
    if isinstance(value, str):
        return (zlib.crc32(value.encode()) % 1000) / 1000
    if value is None:
        return 0.1
    if isinstance(value, dict):
        return 0.5 * sum(_score(value[k]) for k in sorted(value, key=str))
    if isinstance(value, list):
        return 0.5 * sum(_score(v) for v in value)
    return 0.0


class TunerTestCase:
    """The tuner contract as a test class: subclass it, name the tuner, and pytest runs every check.

    Set ``tuner_class`` (and ``tuner_kwargs``), or override :meth:`make_tuner`. The checks read what
    the tuner declares (``supported_types``, ``supports_nested``, ``numeric_choices_only``) and these
    attributes of the test class:

    Attributes:
        tuner_class: the tuner under test.
        tuner_kwargs: keyword arguments for it (keep model-based tuners small and fast here).
        seed_arg: name of the constructor's seed argument (``None``: the tuner takes no seed).
        exhausts_finite_spaces: the tuner follows the finite-space rule (every built-in sampling tuner
            does): on a finite space it never suggests a point twice, counting points it learnt of
            (results, ``import_data``, customised trials, ``resume``), and raises ``NoMoreTrialError``
            once every point is used. ``False`` alone fails the finite-space checks: set
            :attr:`finite_space_exemption` instead.
        finite_space_exemption: the documented reason a tuner does not follow that rule (PBT: its
            generations re-run the members' hyperparameters and never end). Setting it opts out: the
            finite-space checks then only ask for valid points.
        reevaluates: the documented reason a tuner deliberately suggests a configuration again with
            other extra keys (Hyperband and BOHB: successive halving re-runs the best configurations at
            a larger ``TRIAL_BUDGET``). The rule then holds for fresh configurations: every point of a
            finite space once, no suggestion twice with the same extra keys, then ``NoMoreTrialError``.
        deterministic: the suggestions do not depend on the seed (GridSearch, Batch).
        extra_keys: keys a suggestion may carry beside the space's (``TRIAL_BUDGET``, PBT's folders).
        space_override: a space to use instead of the corpus, for tuners that need a special one
            (BatchTuner's ``combine_params``); see also :meth:`to_space_point`.
        n_suggestions: suggestions per run; lower it for slow model-based tuners.
        concurrency: trials running at once in the runs that test parallel use.

    Example:
        >>> from nni_pl.hpo.tuners.gridsearch import GridSearchTuner
        >>> class TestGridSearch(TunerTestCase):
        ...     tuner_class = GridSearchTuner
        ...     deterministic = True
        >>> TestGridSearch.__test__
        True
        >>> TestGridSearch().test_exhausts_finite_spaces()
    """

    __test__: ClassVar[bool] = False

    tuner_class: ClassVar[type | None] = None
    tuner_kwargs: ClassVar[Mapping[str, Any]] = {}
    seed_arg: ClassVar[str | None] = "seed"
    exhausts_finite_spaces: ClassVar[bool] = True
    finite_space_exemption: ClassVar[str | None] = None
    reevaluates: ClassVar[str | None] = None
    deterministic: ClassVar[bool] = False
    extra_keys: ClassVar[frozenset[str]] = DEFAULT_EXTRA_KEYS
    space_override: ClassVar[Mapping[str, Any] | None] = None
    n_suggestions: ClassVar[int] = 20
    concurrency: ClassVar[int] = 3

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # collect concrete subclasses only (an intermediate base class without a tuner is not a test)
        if "__test__" not in cls.__dict__:
            cls.__test__ = cls.tuner_class is not None or cls.make_tuner is not TunerTestCase.make_tuner

    # --- hooks a subclass may override -----------------------------------------------------------------
    def make_tuner(self, **overrides: Any) -> Tuner:
        """A fresh tuner; ``overrides`` (e.g. the seed) win over ``tuner_kwargs``."""
        if self.tuner_class is None:
            _fail(f"{type(self).__name__}: set tuner_class or override make_tuner()")
        return self.tuner_class(**{**self.tuner_kwargs, **overrides})

    def metric_for(self, parameters: Mapping[str, Any]) -> float:
        """The final metric a trial with ``parameters`` reports: a deterministic function of them."""
        values = {k: v for k, v in parameters.items() if k not in self.extra_keys}
        x = sum(_score(values[k]) for k in sorted(values)) / (1 + len(values))
        x += 0.01 * (zlib.crc32(_fmt(values, 10_000).encode()) % 100) / 100
        budget = parameters.get("TRIAL_BUDGET")
        if isinstance(budget, numbers.Real) and not isinstance(budget, bool) and math.isfinite(budget):
            x += 0.05 * math.tanh(float(budget) / 10)
        return x

    def simulate_trial(self, parameters: Mapping[str, Any]) -> None:
        """What a trial does besides reporting: by default it writes PBT's ``save_checkpoint_dir``."""
        folder = parameters.get("save_checkpoint_dir")
        if isinstance(folder, str) and folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / "model.ckpt").write_text("conformance", encoding="utf-8")

    def to_space_point(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """A suggestion (without extra keys) as a point of the space; BatchTuner wraps it in ``combine_params``."""
        return parameters

    def from_space_point(self, point: dict[str, Any]) -> dict[str, Any]:
        """Inverse of :meth:`to_space_point`: a point of the space as the tuner's own parameter set."""
        return point

    # --- building blocks -----------------------------------------------------------------------------------
    def tuner_type(self) -> type:
        """The class whose declarations (``supported_types``, ...) the checks read."""
        if self.tuner_class is not None:
            return self.tuner_class
        return type(self.make_tuner())

    def new_tuner(self, space: Mapping[str, Any], *, seed: int | None = 0, as_json: bool = False) -> Tuner:
        """A tuner attached to a temporary folder and given ``space`` (a ``SearchSpace``, as the manager does)."""
        overrides = {self.seed_arg: seed} if self.seed_arg is not None and seed is not None else {}
        try:
            tuner = self.make_tuner(**overrides)
        except Exception as e:
            _fail_from(
                e, f"{type(self).__name__}.make_tuner({_fmt(overrides)}) raised {type(e).__name__}: {e}"
            )
        if hasattr(tuner, "attach"):
            _call(tuner, "attach", experiment_id="conformance", directory=self._tmpdir())
        parsed = SearchSpace.parse(space)
        _call(tuner, "update_search_space", parsed.to_json() if as_json else parsed)
        return tuner

    def spaces_to_run(self) -> list[tuple[str, dict[str, Any]]]:
        """``(name, space)`` of each corpus case, cut to the parameters the tuner supports."""
        if self.space_override is not None:
            return [("space_override", dict(self.space_override))]
        out = []
        cls = self.tuner_type()
        for case in corpus.CORPUS:
            kept, _ = corpus.supported_part(cls, case.space)
            if kept:
                out.append((case.name, kept))
        return out

    def seed_space(self) -> dict[str, Any]:
        """A space with much randomness in it, for the seed checks and the results checks."""
        if self.space_override is not None:
            return dict(self.space_override)
        kept, _ = corpus.supported_part(self.tuner_type(), corpus.SEED_SPACE)
        if kept:
            return kept
        cases = self.spaces_to_run()
        _ensure(cases, self._accepts_nothing)
        return cases[0][1]

    def finite_spaces(self) -> list[tuple[str, dict[str, Any]]]:
        """Small finite spaces (cut to what the tuner supports) to exhaust: first twelve points behind a
        nested choice (:data:`FINITE_NESTED_12`, or :data:`FINITE_FLAT_12` for a tuner without nested
        choices), then the corpus's finite cases."""
        if self.space_override is not None:
            space = dict(self.space_override)
            return [("space_override", space)] if SearchSpace.parse(space).is_finite else []
        out = []
        for name, twelve in (("finite_nested_12", FINITE_NESTED_12), ("finite_flat_12", FINITE_FLAT_12)):
            if corpus.supported_part(self.tuner_type(), twelve)[0] == twelve:
                out.append((name, copy.deepcopy(twelve)))
                break
        for case in corpus.FINITE_CASES:
            kept, _ = corpus.supported_part(self.tuner_type(), case.space)
            if kept:
                out.append((case.name, kept))
        return out

    def key_of(self, space: SearchSpace, parameters: Mapping[str, Any]) -> str:
        """The :func:`point_key` of a suggestion (extra keys removed)."""
        return point_key(space, self.to_space_point(self._strip(parameters)))

    def check_suggestion(self, space: SearchSpace, parameters: Any, *, where: str = "") -> None:
        """Fail unless ``parameters`` is a valid suggestion for ``space`` (type, range, q, exact choices)."""
        where = where or "a suggestion"
        _ensure(
            parameters is not None,
            f"{where} returned None; raise NoMoreTrialError when the space is exhausted",
        )
        _ensure(
            isinstance(parameters, dict), lambda: f"{where} returned a {_type_name(parameters)}, not a dict"
        )
        try:
            json.dumps(parameters, allow_nan=False)
        except (TypeError, ValueError) as e:
            _fail(f"{where} returned {_fmt(parameters)}, which is not plain JSON: {e}")
        point = self.to_space_point(self._strip(parameters))
        problems = parameter_problems(space, point)
        if problems:
            _fail(f"{where} returned {_fmt(parameters)}:\n  - " + "\n  - ".join(problems))

    def run_trials(
        self,
        tuner: Tuner,
        space: Mapping[str, Any],
        n: int,
        *,
        concurrency: int = 1,
        outcome: Callable[[Trial], str] | None = None,
        metric: Callable[[Trial], Any] | None = None,
        start_id: int = 0,
        running: Sequence[Trial] = (),
        finish: bool = True,
        known_points: Iterable[str] = (),
    ) -> RunLog:
        """Ask for ``n`` suggestions with up to ``concurrency`` trials running, as the manager would.

        Every suggestion is checked. A trial ends when a slot is needed or the tuner raises
        ``WaitForResults``: the oldest running one reports ``metric(trial)`` (default
        :meth:`metric_for`) and ends with ``outcome(trial)`` (default ``"SUCCEEDED"``; any other status
        ends it without a result). ``NoMoreTrialError`` stops the run, and is checked to be earned:
        the space is finite and every point was suggested (here or in ``known_points``).
        """
        parsed = SearchSpace.parse(space)
        log = RunLog(next_id=start_id)
        queue: deque[Trial] = deque(running)
        calls_left = 4 * n + 4 * len(queue) + 20
        while len(log.trials) < n:
            if len(queue) >= max(1, concurrency):
                self._end_trial(tuner, queue.popleft(), log, outcome, metric)
                continue
            calls_left -= 1
            _ensure(
                calls_left >= 0, f"{n} suggestions took more than {4 * n + 20} calls to generate_parameters"
            )
            pid = log.next_id
            try:
                params = _call(tuner, "generate_parameters", pid, expect=(NoMoreTrialError, WaitForResults))
            except NoMoreTrialError:
                log.exhausted = True
                break
            except WaitForResults:
                log.waits += 1
                _ensure(
                    queue,
                    lambda pid=pid: (
                        f"generate_parameters({pid}) raised WaitForResults although no trial is running "
                        f"({len(log.trials)} generated, all ended, "
                        f"{sum(1 for s in log.ended.values() if s != 'SUCCEEDED')} of them without a result): "
                        "the experiment would wait forever"
                    ),
                )
                self._end_trial(tuner, queue.popleft(), log, outcome, metric)
                continue
            self.check_suggestion(parsed, params, where=f"generate_parameters({pid})")
            trial = Trial(pid, params, json.loads(json.dumps(params)), len(log.trials))
            log.trials.append(trial)
            queue.append(trial)
            log.next_id += 1
        if log.exhausted:
            self._check_earned_exhaustion(parsed, log, set(known_points))
        if finish:
            while queue:
                self._end_trial(tuner, queue.popleft(), log, outcome, metric)
        log.pending = list(queue)
        return log

    def end_trials(
        self,
        tuner: Tuner,
        trials: Iterable[Trial],
        log: RunLog,
        *,
        outcome: Callable[[Trial], str] | None = None,
        metric: Callable[[Trial], Any] | None = None,
    ) -> None:
        """End running ``trials`` in order (see :meth:`run_trials` for ``outcome`` and ``metric``)."""
        for trial in trials:
            self._end_trial(tuner, trial, log, outcome, metric)

    # --- the checks ------------------------------------------------------------------------------------------
    def test_corpus_suggestions_are_valid(self) -> None:
        """On every corpus space it supports, each suggestion is a point of the space with NNI's types."""
        cases = self.spaces_to_run()
        _ensure(cases, self._accepts_nothing)
        failures = []
        for name, space in cases:
            try:
                tuner = self.new_tuner(space)
                self.run_trials(tuner, space, self.n_suggestions)
            except AssertionError as e:
                failures.append(f"[{name}] {e}")
        _ensure(
            not failures,
            lambda: f"{len(failures)} of {len(cases)} corpus spaces failed:\n" + "\n".join(failures),
        )

    def test_randint_values(self) -> None:
        """randint gives ints in ``[low, high)``: never the upper bound, the only value of ``[3, 4]``."""
        space = {
            "r_single": {"_type": "randint", "_value": [3, 4]},
            "r_two": {"_type": "randint", "_value": [0, 2]},
            "r_neg": {"_type": "randint", "_value": [-3, -1]},
            "r_wide": {"_type": "randint", "_value": [0, 100]},
        }
        if not self._supports(space):
            return
        tuner = self.new_tuner(space)
        log = self.run_trials(tuner, space, self.n_suggestions, concurrency=2)
        for trial in log.trials:
            _ensure(
                trial.parameters["r_single"] == 3, f"randint [3, 4] gave {trial.parameters['r_single']!r}"
            )

    def test_quantized_values(self) -> None:
        """q-types land on multiples of q (or on a bound they were clipped to), with the right type."""
        space = {
            "qu_clip": {"_type": "quniform", "_value": [2, 10, 5]},
            "qu_float": {"_type": "quniform", "_value": [0, 1, 0.1]},
            "qu_mixed": {"_type": "quniform", "_value": [0, 10.0, 2]},
            "qlu": {"_type": "qloguniform", "_value": [1, 1000, 7]},
            "qn": {"_type": "qnormal", "_value": [10, 3, 2]},
            "qln": {"_type": "qlognormal", "_value": [1, 1, 0.5]},
        }
        kept, _ = corpus.supported_part(self.tuner_type(), space)
        if self.space_override is not None or not kept:
            return
        tuner = self.new_tuner(kept)
        self.run_trials(tuner, kept, self.n_suggestions, concurrency=2)

    def test_choice_values_are_exact(self) -> None:
        """Choice options come back exactly as written: ``None``, bools, strings, ``1`` vs ``1.0``, lists, dicts."""
        if self.space_override is not None:
            tuner = self.new_tuner(self.space_override)
            self.run_trials(tuner, self.space_override, self.n_suggestions)
            return
        for name in ("mixed_choice", "numeric_choice"):
            kept, _ = corpus.supported_part(self.tuner_type(), corpus.CORPUS_BY_NAME[name].space)
            if kept:
                tuner = self.new_tuner(kept)
                self.run_trials(tuner, kept, self.n_suggestions)

    def test_receives_number_and_dict_metrics(self) -> None:
        """Final metrics may be ints, floats or dicts with ``default`` (and other keys)."""
        space = self.seed_space()
        tuner = self.new_tuner(space)
        self.run_trials(
            tuner, space, self.n_suggestions, concurrency=self.concurrency, metric=_cycle(METRIC_FORMS)
        )

    def test_survives_nan_and_inf_metrics(self) -> None:
        """NaN and infinite metrics (a diverged run, also as a dict's ``default``) count as the worst, no crash."""
        space = self.seed_space()
        forms = list(NON_FINITE_METRICS) * 2 + [0.5, math.nan, 0.1, {"default": -math.inf}]
        tuner = self.new_tuner(space)
        self.run_trials(tuner, space, self.n_suggestions, concurrency=self.concurrency, metric=_cycle(forms))

    def test_failed_trials_without_result(self) -> None:
        """Trials may end without a result (failed, early stopped, cancelled, timed out); the tuner goes on."""
        space = self.seed_space()

        def outcome(trial: Trial) -> str:
            if trial.index < 4 or trial.index % 3 == 0:
                return FAILED_STATUSES[max(trial.index, 0) % len(FAILED_STATUSES)]
            return "SUCCEEDED"

        tuner = self.new_tuner(space)
        self.run_trials(tuner, space, self.n_suggestions, concurrency=self.concurrency, outcome=outcome)

    def test_import_data_before_first_suggestion(self) -> None:
        """``import_data`` right after ``update_search_space``; the suggestions stay valid."""
        space = self.seed_space()
        tuner = self.new_tuner(space)
        records, keys = self._records(space, 6, seed=11)
        _call(tuner, "import_data", records)
        self.run_trials(tuner, space, self.n_suggestions, concurrency=2, known_points=keys)

    def test_import_data_mid_run(self) -> None:
        """``import_data`` between suggestions, with trials running."""
        space = self.seed_space()
        tuner = self.new_tuner(space)
        half = max(2, self.n_suggestions // 2)
        first = self.run_trials(tuner, space, half, concurrency=2, finish=False)
        known = {self.key_of(SearchSpace.parse(space), t.parameters) for t in first.trials}
        records, keys = self._records(space, 5, seed=12)
        _call(tuner, "import_data", records)
        self.run_trials(
            tuner,
            space,
            half,
            concurrency=2,
            start_id=first.next_id,
            running=first.pending,
            known_points=known | keys,
        )

    def test_resume_from_history(self) -> None:
        """A fresh tuner resumed from stored trials (finished, failed, still running) goes on validly."""
        space = self.seed_space()
        parsed = SearchSpace.parse(space)
        k = max(4, self.n_suggestions // 2)
        before = self.new_tuner(space, seed=0)
        log = self.run_trials(
            before,
            space,
            k,
            concurrency=3,
            outcome=lambda t: "FAILED" if t.index == 1 else "SUCCEEDED",
            finish=False,
        )
        history = self._history(log)
        after = self.new_tuner(space, seed=0)
        _call(after, "resume", history)
        known = {self.key_of(parsed, t.parameters) for t in log.trials}
        self.run_trials(
            after, space, k, concurrency=3, start_id=log.next_id, running=log.pending, known_points=known
        )
        empty = self.new_tuner(space, seed=1)
        _call(empty, "resume", [])
        self.run_trials(empty, space, 3)

    def test_exhausts_finite_spaces(self) -> None:
        """The finite-space rule: each point once (twelve behind a nested choice, and the corpus's finite
        spaces), then ``NoMoreTrialError``, and it stays so.

        A tuner with a :attr:`finite_space_exemption` must instead keep giving valid points (or raise
        ``NoMoreTrialError`` only once every point was given); one that :attr:`reevaluates` may suggest
        a configuration again, with other extra keys, but still each configuration and then
        ``NoMoreTrialError``.
        """
        cases = self.finite_spaces()
        obeys = self._obeys_finite_rule()
        for name, space in cases:
            parsed = SearchSpace.parse(space)
            size = int(parsed.size)
            tuner = self.new_tuner(space)
            if not obeys:
                self.run_trials(tuner, space, 2 * size + 2, concurrency=2)
                continue
            log = self.run_trials(
                tuner,
                space,
                self._finite_budget(size),
                concurrency=2,
                outcome=lambda t: "FAILED" if t.index == 2 else "SUCCEEDED",
            )
            self._check_exhausted(parsed, tuner, log, size, f"[{name}, one trial at a time]")
        if cases and obeys:
            name, space = cases[0]
            parsed = SearchSpace.parse(space)
            size = int(parsed.size)
            tuner = self.new_tuner(space)
            log = self.run_trials(tuner, space, self._finite_budget(size), concurrency=size + 1, finish=False)
            self._check_exhausted(parsed, tuner, log, size, f"[{name}, all trials running, no results yet]")

    def test_resume_continues_a_finite_space(self) -> None:
        """After ``resume`` with half of a finite space as history (finished, failed, still running and a
        customised trial), only the other points are suggested, each once, then ``NoMoreTrialError``."""
        cases = self.finite_spaces()
        if not cases:
            return
        name, space = cases[0]
        parsed = SearchSpace.parse(space)
        size = int(parsed.size)
        obeys = self._obeys_finite_rule()
        before = self.new_tuner(space)
        log = self.run_trials(
            before,
            space,
            max(2, size // 2),
            concurrency=2,
            outcome=lambda t: "FAILED" if t.index == 1 else "SUCCEEDED",
            finish=False,
        )
        history = self._history(log)
        taken = {self.key_of(parsed, h.parameters) for h in history}
        unseen = [p for p in parsed.grid() if point_key(parsed, p) not in taken]
        if len(unseen) > 1:  # a trial the user added by hand, which the tuner never suggested
            custom = self.from_space_point(copy.deepcopy(unseen[len(unseen) // 2]))
            history.append(HistoryEntry(None, custom, self.metric_for(custom), True, "customized"))
            taken.add(self.key_of(parsed, custom))
        after = self.new_tuner(space)
        _call(after, "resume", history)
        if not obeys:
            self.run_trials(after, space, size, start_id=log.next_id, running=log.pending, known_points=taken)
            return
        rest = self.run_trials(
            after,
            space,
            self._finite_budget(size),
            start_id=log.next_id,
            running=log.pending,
            known_points=taken,
        )
        where = f"[{name}, resumed with {len(taken)} of its {size} points as history]"
        self._check_rest(parsed, rest, history, taken, size, where)

    def test_imported_and_customised_points_are_not_suggested(self) -> None:
        """Points imported with ``import_data`` (with or without a value) and the point of a customised
        trial (a result for a parameter id the tuner did not hand out) count as seen on a finite space."""
        cases = self.finite_spaces()
        if not cases or not self._obeys_finite_rule():
            return
        name, space = cases[0]
        parsed = SearchSpace.parse(space)
        size = int(parsed.size)
        grid = list(parsed.grid())
        order = np.random.default_rng(7).permutation(size)
        imported = [grid[int(i)] for i in order[: min(3, size - 2)]]
        tuner = self.new_tuner(space)
        values = [0.4, None, {"default": 0.7, "other": 1}]
        records = [
            {"parameter": self.from_space_point(copy.deepcopy(p)), "value": v}
            for p, v in zip(imported, values)
        ]
        _call(tuner, "import_data", records)
        known = {point_key(parsed, p) for p in imported}
        first = self.run_trials(tuner, space, 1, known_points=known)
        taken = known | {self.key_of(parsed, t.parameters) for t in first.trials}
        custom_point = next((p for p in grid if point_key(parsed, p) not in taken), None)
        if custom_point is None:
            return
        custom = self.from_space_point(copy.deepcopy(custom_point))
        # as the manager does: the customised trial takes the next parameter id, reports, and gets no trial_end
        _call(
            tuner,
            "receive_trial_result",
            first.next_id,
            copy.deepcopy(custom),
            self.metric_for(custom),
            customized=True,
            trial_job_id="customised-trial",
        )
        taken.add(point_key(parsed, custom_point))
        rest = self.run_trials(
            tuner, space, self._finite_budget(size), start_id=first.next_id + 1, known_points=taken
        )
        history = [
            HistoryEntry(t.parameter_id, t.sent, first.results.get(t.parameter_id)) for t in first.trials
        ]
        where = f"[{name}, {len(imported)} points imported, 1 customised]"
        self._check_rest(parsed, rest, history, taken, size, where)

    def test_same_seed_same_suggestions(self) -> None:
        """Two tuners with the same seed give the same suggestions for the same results (seed 0 included)."""
        if self.seed_arg is None and not self.deterministic:
            return
        space = self.seed_space()
        first, second = (self._signature(space, seed=0) for _ in range(2))
        self._ensure_same(first, second, "two tuners with seed 0")

    def test_different_seeds_differ(self) -> None:
        """Different seeds give different suggestions (a ``deterministic`` tuner: the same ones)."""
        if self.seed_arg is None:
            return
        space = self.seed_space()
        base = self._signature(space, seed=1)
        if self.deterministic:
            self._ensure_same(base, self._signature(space, seed=2), "seeds 1 and 2 of a deterministic tuner")
            return
        others = [self._signature(space, seed=s) for s in (2, 3)]
        _ensure(
            any(o != base for o in others),
            f"seeds 1, 2 and 3 gave the same {len(base)} suggestions: the seed is ignored "
            "(set deterministic = True if the tuner is meant to ignore it)",
        )

    def test_many_running_trials_and_waiting(self) -> None:
        """All suggestions running at once (``WaitForResults`` only while trials run), then one at a time.

        Trials running together get different parameter sets (a model-based tuner spreads its
        suggestions while results are pending, e.g. with a constant liar).
        """
        space = self.seed_space()
        parsed = SearchSpace.parse(space)
        n = self.n_suggestions
        tuner = self.new_tuner(space)
        log = self.run_trials(tuner, space, n, concurrency=n, finish=False)
        running = [t for t in log.trials if t.parameter_id not in log.ended]
        seen: dict[str, Trial] = {}
        for trial in running:
            extras = {k: v for k, v in trial.sent.items() if k in self.extra_keys}
            key = self.key_of(parsed, trial.parameters) + json.dumps(extras, sort_keys=True)
            _ensure(
                key not in seen,
                lambda trial=trial, key=key: (
                    f"generate_parameters({trial.parameter_id}) repeated "
                    f"generate_parameters({seen[key].parameter_id}) while both trials run: {_fmt(trial.parameters)}"
                ),
            )
            seen[key] = trial
        self.end_trials(
            tuner, log.pending, log, outcome=lambda t: "FAILED" if t.index % 4 == 1 else "SUCCEEDED"
        )
        known = {self.key_of(parsed, t.parameters) for t in log.trials}
        self.run_trials(tuner, space, max(3, n // 2), start_id=log.next_id, known_points=known)

    def test_update_search_space_accepts_json(self) -> None:
        """``update_search_space`` also takes NNI's JSON dict (what NNI's own tuners are given)."""
        space = self.seed_space()
        tuner = self.new_tuner(space, as_json=True)
        self.run_trials(tuner, space, 3)

    def test_unsupported_spaces_are_rejected(self) -> None:
        """``check_search_space`` rejects what the tuner does not declare, naming the parameter."""
        cls = self.tuner_type()
        types = cls.supported_types
        ok = {"ok": corpus.TYPE_PROBES["choice"]}
        probes: list[tuple[str, dict[str, Any], str]] = []
        for type_name, spec in corpus.TYPE_PROBES.items():
            if types is not None and type_name not in types:
                probes.append((f"bad_{type_name}", spec, f"{type_name!r} is not in supported_types"))
        if not cls.supports_nested:
            probes.append(("bad_nested", corpus.NESTED_PROBE, "supports_nested is False"))
        if cls.numeric_choices_only:
            probes.append(("bad_strings", corpus.STRING_CHOICE_PROBE, "numeric_choices_only is True"))
        if cls.supports_nested and types is not None:
            unsupported = [t for t in corpus.TYPE_PROBES if t not in types]
            if unsupported and "choice" in types:
                inner = {
                    "_type": "choice",
                    "_value": [{"_name": "a"}, {"_name": "b", "x": corpus.TYPE_PROBES[unsupported[0]]}],
                }
                probes.append(("bad_branch", inner, f"{unsupported[0]!r} inside a branch is not supported"))
        for name, spec, why in probes:
            space = SearchSpace.parse({**ok, name: spec})
            try:
                cls.check_search_space(space)
            except SearchSpaceError as e:
                _ensure(
                    e.path == name or e.path.startswith(name + "/"),
                    f"check_search_space rejected {name} ({why}) with an error naming {e.path!r}: {e}",
                )
            except Exception as e:
                _fail_from(
                    e,
                    f"check_search_space raised {type(e).__name__} for {name} ({why}), not SearchSpaceError: {e}",
                )
            else:
                _fail(f"check_search_space accepted {_fmt({name: spec})} although {why}")

    # --- internals -----------------------------------------------------------------------------------------
    def teardown_method(self, method: Any = None) -> None:
        for folder in self.__dict__.pop("_conformance_dirs", []):
            shutil.rmtree(folder, ignore_errors=True)

    def _tmpdir(self) -> Path:
        folder = tempfile.mkdtemp(prefix=_TMP_PREFIX)
        self.__dict__.setdefault("_conformance_dirs", []).append(folder)
        weakref.finalize(self, shutil.rmtree, folder, True)
        return Path(folder)

    def _strip(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in parameters.items() if k not in self.extra_keys}

    def _supports(self, space: Mapping[str, Any]) -> bool:
        """Whether the whole ``space`` is declared supported (and no override replaces the corpus)."""
        if self.space_override is not None:
            return False
        kept, _ = corpus.supported_part(self.tuner_type(), space)
        return len(kept) == len(space)

    def _accepts_nothing(self) -> str:
        return (
            f"{self.tuner_type().__name__}.check_search_space accepts none of the corpus spaces; "
            "set space_override to a space it needs"
        )

    def _end_trial(
        self,
        tuner: Tuner,
        trial: Trial,
        log: RunLog,
        outcome: Callable[[Trial], str] | None,
        metric: Callable[[Trial], Any] | None,
    ) -> None:
        status = outcome(trial) if outcome is not None else "SUCCEEDED"
        value = (
            (metric(trial) if metric is not None else self.metric_for(trial.sent))
            if status == "SUCCEEDED"
            else None
        )
        job = f"trial-{trial.parameter_id}"
        if status == "SUCCEEDED" and (
            isinstance(tuner, Advisor) or callable(getattr(tuner, "assess_trial", None))
        ):
            history: list[float] = []
            x = extract_scalar(value)
            for fraction in (0.5, 0.8):
                history.append(x * fraction)
                verdict = _call(tuner, "assess_trial", job, list(history), parameter_id=trial.parameter_id)
                _ensure(
                    isinstance(verdict, (AssessResult, bool)),
                    lambda verdict=verdict: (
                        f"assess_trial({job!r}, ...) returned {verdict!r}, not an AssessResult"
                    ),
                )
                if verdict in (AssessResult.Bad, False):  # the manager stops the trial: no final result
                    status, value = "EARLY_STOPPED", None
                    break
        self.simulate_trial(trial.sent)
        if status == "SUCCEEDED":
            _call(tuner, "receive_trial_result", trial.parameter_id, copy.deepcopy(trial.sent), value)
            log.results[trial.parameter_id] = value
        _call(tuner, "trial_end", trial.parameter_id, status == "SUCCEEDED", trial_job_id=job, status=status)
        log.ended[trial.parameter_id] = status

    def _check_earned_exhaustion(self, space: SearchSpace, log: RunLog, known: set[str]) -> None:
        given = len(log.trials)
        _ensure(
            space.is_finite,
            f"generate_parameters({log.next_id}) raised NoMoreTrialError after {given} suggestions, "
            "but the space is infinite",
        )
        size = int(space.size)
        keys = known | {self.key_of(space, t.parameters) for t in log.trials}
        repeats = self._repeats(space, log.trials)
        _ensure(
            len(keys) >= size,
            lambda: (
                f"generate_parameters({log.next_id}) raised NoMoreTrialError after {given} suggestions, "
                f"but only {len(keys)} of the space's {size} points were suggested"
                + (f"; {len(repeats)} suggestion(s) repeated a point: {repeats[0]}" if repeats else "")
            ),
        )
        if size <= 10_000:
            missing = [p for p in space.grid() if point_key(space, p) not in keys]
            _ensure(
                not missing,
                lambda: (
                    f"generate_parameters({log.next_id}) raised NoMoreTrialError after {given} suggestions, "
                    f"but {len(missing)} of the space's {size} points were never suggested, e.g. {_fmt(missing[:3])}"
                ),
            )

    def _obeys_finite_rule(self) -> bool:
        """Whether the finite-space checks apply in full (they do unless an exemption gives its reason)."""
        reason = self.finite_space_exemption
        if reason is not None:
            _ensure(
                isinstance(reason, str) and reason.strip(),
                f"{type(self).__name__}.finite_space_exemption must say why the tuner may repeat points or "
                f"never run out, got {reason!r}",
            )
            return False
        _ensure(
            self.exhausts_finite_spaces,
            f"{type(self).__name__} sets exhausts_finite_spaces = False without a reason: every sampling "
            "tuner must suggest each point of a finite space once, then raise NoMoreTrialError; for a "
            "documented exception set finite_space_exemption = '<why>' instead",
        )
        return True

    def _finite_budget(self, size: int) -> int:
        """Suggestions to ask for on a space of ``size`` points: one past it, more for re-evaluations."""
        return 3 * size + 10 if self.reevaluates else size + 1

    def _identity(self, space: SearchSpace, parameters: Mapping[str, Any]) -> str:
        """What must not repeat: the point, and for a tuner that :attr:`reevaluates`, its extra keys too."""
        key = self.key_of(space, parameters)
        if self.reevaluates:
            extras = {k: v for k, v in parameters.items() if k in self.extra_keys}
            key += " " + json.dumps(extras, sort_keys=True, default=str)
        return key

    def _repeats(self, space: SearchSpace, trials: Sequence[Trial]) -> list[str]:
        """A message per suggestion that repeats an earlier one of ``trials`` (with its extra keys, for a
        tuner that :attr:`reevaluates`)."""
        seen: dict[str, Trial] = {}
        out = []
        for trial in trials:
            key = self._identity(space, trial.parameters)
            if key in seen:
                out.append(
                    f"generate_parameters({trial.parameter_id}) repeated the point of "
                    f"generate_parameters({seen[key].parameter_id}): {_fmt(trial.parameters)}"
                )
            else:
                seen[key] = trial
        return out

    def _check_exhausted(self, space: SearchSpace, tuner: Tuner, log: RunLog, size: int, where: str) -> None:
        problems = self._repeats(space, log.trials)
        configs = {self.key_of(space, t.parameters) for t in log.trials}
        if not log.exhausted:
            problems.append(
                f"{len(log.trials)} suggestions over a space of {size} points and no NoMoreTrialError "
                "(every sampling tuner must run out of a finite space; for a documented exception set "
                "finite_space_exemption)"
            )
        elif len(configs) != size or (not self.reevaluates and len(log.trials) != size):
            problems.append(
                f"NoMoreTrialError after {len(log.trials)} suggestions of {len(configs)} distinct points; "
                f"the space has {size} points"
            )
        _ensure(not problems, lambda: f"{where} " + "; ".join(problems))
        for pid in (log.next_id, log.next_id + 1):
            try:
                params = _call(tuner, "generate_parameters", pid, expect=(NoMoreTrialError, WaitForResults))
            except NoMoreTrialError:
                continue
            except WaitForResults:
                _fail(f"{where} after NoMoreTrialError, generate_parameters({pid}) raised WaitForResults")
            _fail(f"{where} after NoMoreTrialError, generate_parameters({pid}) returned {_fmt(params)}")

    def _check_rest(
        self,
        space: SearchSpace,
        rest: RunLog,
        history: Sequence[HistoryEntry],
        taken: set[str],
        size: int,
        where: str,
    ) -> None:
        """After ``taken`` points were known to the tuner, ``rest`` gave each other point once, then ran out."""
        problems = self._repeats(space, rest.trials)
        keys = [self.key_of(space, t.parameters) for t in rest.trials]
        before = {self._identity(space, h.parameters) for h in history}
        again = [
            t.parameters
            for t, key in zip(rest.trials, keys)
            if key in taken and (not self.reevaluates or self._identity(space, t.parameters) in before)
        ]
        if again:
            problems.append(f"suggested points it already knew of: {_fmt(again)}")
        fresh = {key for key in keys if key not in taken}
        if not rest.exhausted:
            problems.append(f"{len(rest.trials)} suggestions and still no NoMoreTrialError")
        elif len(fresh) != size - len(taken):
            problems.append(f"NoMoreTrialError after {len(fresh)} new points; {size - len(taken)} were left")
        _ensure(not problems, lambda: f"{where} " + "; ".join(problems))

    def _records(
        self, space: Mapping[str, Any], n: int, *, seed: int
    ) -> tuple[list[dict[str, Any]], set[str]]:
        """``n`` import records of points sampled from ``space``, with metrics of every form."""
        parsed = SearchSpace.parse(space)
        rng = np.random.default_rng(seed)
        forms = [0.3, {"default": 0.6, "other": 2.0}, math.nan, 7, {"default": math.inf}, -0.25]
        records, keys = [], set()
        for i in range(n):
            point = parsed.sample(rng)
            keys.add(point_key(parsed, point))
            records.append(
                {"parameter": self.from_space_point(point), "value": copy.deepcopy(forms[i % len(forms)])}
            )
        return records, keys

    def _history(self, log: RunLog) -> list[HistoryEntry]:
        """The stored trials of a run, as the manager hands them to ``resume``."""
        out = []
        for trial in log.trials:
            finished = trial.parameter_id in log.ended
            value = log.results.get(trial.parameter_id)
            out.append(
                HistoryEntry(trial.parameter_id, copy.deepcopy(trial.sent), value, finished, "algorithm")
            )
        return out

    def _signature(self, space: Mapping[str, Any], *, seed: int) -> list[Any]:
        tuner = self.new_tuner(space, seed=seed)
        log = self.run_trials(
            tuner,
            space,
            self.n_suggestions,
            concurrency=2,
            outcome=lambda t: "FAILED" if t.index % 5 == 3 else "SUCCEEDED",
        )
        return [_TMP_PATTERN.sub("<dir>", json.dumps(t.sent, sort_keys=True)) for t in log.trials] + [
            log.exhausted
        ]

    def _ensure_same(self, first: list[Any], second: list[Any], what: str) -> None:
        if first == second:
            return
        diff = next(
            (i for i, (a, b) in enumerate(zip(first, second)) if a != b), min(len(first), len(second))
        )
        a = first[diff] if diff < len(first) else "<none>"
        b = second[diff] if diff < len(second) else "<none>"
        _fail(f"{what} gave different suggestions; first difference at suggestion {diff}: {a} vs {b}")
