"""The conformance suite can fail: each deliberately broken tuner or assessor trips the check meant for it."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from nni_pl.errors import NoMoreTrialError, SearchSpaceError, WaitForResults
from nni_pl.hpo._base import Assessor, AssessResult, Tuner, extract_scalar
from nni_pl.hpo.assessors.medianstop import MedianstopAssessor
from nni_pl.hpo.tuners.gridsearch import GridSearchTuner
from nni_pl.hpo.tuners.random import RandomTuner
from nni_pl.space import SearchSpace
from nni_pl.testing import AssessorTestCase, TunerTestCase, check_parameters, parameter_problems
from nni_pl.testing.tuners import FINITE_NESTED_12

# --- broken tuners -------------------------------------------------------------------------------------------


class UpperBoundRandint(RandomTuner):
    """Off by one: draws randint from [low, high]."""

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        params = super().generate_parameters(parameter_id)
        for name, p in self._space.items():
            if p.TYPE == "randint":
                params[name] = int(self._rng.integers(p.low, p.high + 1))
        return params


class FloatRandint(RandomTuner):
    """Returns randint values as floats (3.0 instead of 3)."""

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        params = super().generate_parameters(parameter_id)
        return {k: float(v) if self._space[k].TYPE == "randint" else v for k, v in params.items()}


class NumpyRandint(RandomTuner):
    """Returns numpy integers, which are not JSON."""

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        params = super().generate_parameters(parameter_id)
        return {k: np.int64(v) if self._space[k].TYPE == "randint" else v for k, v in params.items()}


class FixedSeed(RandomTuner):
    """Ignores the seed: always seeds its generator with 42."""

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self._rng = np.random.default_rng(42)


class EntropySeed(RandomTuner):
    """Ignores the seed: always draws fresh entropy."""

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self._rng = np.random.default_rng()


class RepeatsPoints(GridSearchTuner):
    """Hands out the first grid point twice."""

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if parameter_id == 1 and getattr(self, "_first", None) is not None:
            return copy.deepcopy(self._first)
        params = super().generate_parameters(parameter_id)
        if parameter_id == 0:
            self._first = copy.deepcopy(params)
        return params


class NeverExhausts(GridSearchTuner):
    """Starts the grid over instead of raising NoMoreTrialError."""

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        try:
            return super().generate_parameters(parameter_id)
        except NoMoreTrialError:
            self._used.clear()
            self._grid = self._space.grid()
            return super().generate_parameters(parameter_id)


class OutsideSpace(RandomTuner):
    """Steps past the upper bound of continuous parameters."""

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        params = super().generate_parameters(parameter_id)
        for name, p in self._space.items():
            if p.TYPE in ("uniform", "loguniform"):
                params[name] = float(p.high) * 1.5 + 1.0
        return params


class FloatChoice(RandomTuner):
    """Decodes numeric choice options as floats (16.0 for 16), as a careless distance-based tuner does."""

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        params = super().generate_parameters(parameter_id)
        return {
            k: float(v) if self._space[k].TYPE == "choice" and type(v) is int else v
            for k, v in params.items()
        }


class CrashesOnDictMetrics(RandomTuner):
    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        self.last = float(value)


class CrashesOnNaN(RandomTuner):
    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        if not math.isfinite(extract_scalar(value)):
            raise ValueError("cannot learn from a non-finite metric")


class TrialEndWithoutKeywords(RandomTuner):
    """Implements NNI's old trial_end signature, which cannot take trial_job_id= and status=."""

    def trial_end(self, parameter_id: int, success: bool) -> None:  # type: ignore[override]
        pass


class BrokenResume(RandomTuner):
    def resume(self, history: Any) -> None:
        raise NotImplementedError("resume")


class BrokenImport(RandomTuner):
    def import_data(self, data: Any) -> None:
        for record in data:
            float(record["value"])


class WaitsWithNothingRunning(RandomTuner):
    """Waits for results after two suggestions, whether or not a trial is running."""

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if parameter_id >= 2:
            raise WaitForResults()
        return super().generate_parameters(parameter_id)


class WaitsForFailedTrials(RandomTuner):
    """Waits for a result of every suggestion: a failed trial never reports, so it waits forever."""

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self._open: set[int] = set()

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if len(self._open) >= 2:
            raise WaitForResults()
        self._open.add(parameter_id)
        return super().generate_parameters(parameter_id)

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        self._open.discard(parameter_id)


class SameWhilePending(RandomTuner):
    """Suggests its current best guess again until a result arrives (no constant liar or equivalent)."""

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self._guess: dict[str, Any] | None = None

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if self._guess is None:
            self._guess = super().generate_parameters(parameter_id)
        return copy.deepcopy(self._guess)

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        self._guess = None


class PriorOnly(Tuner):
    """NNI's Random: independent prior draws, so points repeat and a finite space never runs out."""

    def __init__(self, *, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        self._space = SearchSpace.parse(search_space)

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        return self._space.sample(self._rng)

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        pass


class ForgetsHistoryOnResume(RandomTuner):
    """Resumes on a fresh stream but forgets the stored trials' points."""

    def resume(self, history: Any) -> None:
        super().resume([])


class ForgetsImports(RandomTuner):
    """Does not count imported points and customised trials as seen."""

    def import_data(self, data: Any) -> None:
        pass

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        pass


class ReRunsAtLargerBudget(RandomTuner):
    """Suggests every point twice, at budgets 1 and then 2 (a correct re-evaluating tuner)."""

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self._again: list[dict[str, Any]] = []

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if self._again:
            return {**self._again.pop(0), "TRIAL_BUDGET": 2}
        params = super().generate_parameters(parameter_id)
        self._again.append(copy.deepcopy(params))
        return {**params, "TRIAL_BUDGET": 1}

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        super().receive_trial_result(parameter_id, _without_budget(parameters), value)

    def resume(self, history: Any) -> None:
        super().resume([dataclasses.replace(h, parameters=_without_budget(h.parameters)) for h in history])


def _without_budget(parameters: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in parameters.items() if k != "TRIAL_BUDGET"}


class SameBudgetTwice(ReRunsAtLargerBudget):
    """Re-runs points at the same budget: a re-evaluation that repeats a whole suggestion."""

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        params = super().generate_parameters(parameter_id)
        return {**params, "TRIAL_BUDGET": 1}


REEVALUATES = "runs every point again at a larger TRIAL_BUDGET"


class AcceptsEverything(GridSearchTuner):
    """Declares GridSearch's types but its check_search_space lets everything through."""

    @classmethod
    def check_search_space(cls, space: SearchSpace, *, name: str | None = None) -> None:
        pass


class UnnamedRejection(GridSearchTuner):
    """Rejects unsupported types without naming the parameter."""

    @classmethod
    def check_search_space(cls, space: SearchSpace, *, name: str | None = None) -> None:
        try:
            super().check_search_space(space, name=name)
        except SearchSpaceError as e:
            raise SearchSpaceError("", "unsupported type") from e


# (tuner, test-case attributes, the check that must fail, what its message says, a check that still passes)
BROKEN_TUNERS = [
    (UpperBoundRandint, {}, "test_randint_values", "upper bound", "test_quantized_values"),
    (FloatRandint, {}, "test_randint_values", "expected an int", "test_quantized_values"),
    (NumpyRandint, {}, "test_randint_values", "not plain JSON", "test_quantized_values"),
    (FixedSeed, {}, "test_different_seeds_differ", "seed is ignored", "test_same_seed_same_suggestions"),
    (EntropySeed, {}, "test_same_seed_same_suggestions", "different suggestions", "test_different_seeds_differ"),
    (RepeatsPoints, {"deterministic": True}, "test_exhausts_finite_spaces", "repeated the point", "test_randint_values"),
    (NeverExhausts, {"deterministic": True}, "test_exhausts_finite_spaces", "no NoMoreTrialError", "test_randint_values"),
    (OutsideSpace, {}, "test_corpus_suggestions_are_valid", "outside", "test_randint_values"),
    (FloatChoice, {}, "test_choice_values_are_exact", "not exactly the option", "test_randint_values"),
    (CrashesOnDictMetrics, {}, "test_receives_number_and_dict_metrics", "receive_trial_result.*raised TypeError", "test_randint_values"),
    (CrashesOnNaN, {}, "test_survives_nan_and_inf_metrics", "raised ValueError: cannot learn", "test_randint_values"),
    (TrialEndWithoutKeywords, {}, "test_failed_trials_without_result", "trial_end.*raised TypeError", "test_unsupported_spaces_are_rejected"),
    (BrokenResume, {}, "test_resume_from_history", "resume.*raised NotImplementedError", "test_randint_values"),
    (BrokenImport, {}, "test_import_data_before_first_suggestion", "import_data.*raised TypeError", "test_randint_values"),
    (WaitsWithNothingRunning, {}, "test_many_running_trials_and_waiting", "wait forever", "test_unsupported_spaces_are_rejected"),
    (WaitsForFailedTrials, {}, "test_failed_trials_without_result", "wait forever", "test_receives_number_and_dict_metrics"),
    (SameWhilePending, {}, "test_many_running_trials_and_waiting", "while both trials run", "test_randint_values"),
    (PriorOnly, {}, "test_exhausts_finite_spaces", "repeated the point|no NoMoreTrialError", "test_randint_values"),
    (PriorOnly, {"exhausts_finite_spaces": False}, "test_exhausts_finite_spaces", "without a reason", "test_randint_values"),
    (ForgetsHistoryOnResume, {}, "test_resume_continues_a_finite_space", "points it already knew of", "test_exhausts_finite_spaces"),
    (ForgetsImports, {}, "test_imported_and_customised_points_are_not_suggested", "points it already knew of", "test_exhausts_finite_spaces"),
    (ReRunsAtLargerBudget, {}, "test_exhausts_finite_spaces", "repeated the point", "test_randint_values"),
    (SameBudgetTwice, {"reevaluates": REEVALUATES}, "test_exhausts_finite_spaces", "repeated the point", "test_randint_values"),
    (AcceptsEverything, {"deterministic": True}, "test_unsupported_spaces_are_rejected", "accepted", "test_exhausts_finite_spaces"),
    (UnnamedRejection, {"deterministic": True}, "test_unsupported_spaces_are_rejected", "naming ''", "test_exhausts_finite_spaces"),
]  # fmt: skip


def _case(base: type, **attrs: Any) -> Any:
    return type(f"Test{attrs.get('tuner_class', attrs.get('assessor_class')).__name__}", (base,), attrs)()


@pytest.mark.parametrize(
    ("tuner", "attrs", "check", "match", "passes"), BROKEN_TUNERS, ids=[t[0].__name__ for t in BROKEN_TUNERS]
)
def test_broken_tuner_fails_its_check(tuner: type, attrs: dict, check: str, match: str, passes: str) -> None:
    case = _case(TunerTestCase, tuner_class=tuner, **attrs)
    with pytest.raises(AssertionError, match=match):
        getattr(case, check)()
    getattr(case, passes)()  # the suite points at the bug, not at everything


# --- broken assessors ------------------------------------------------------------------------------------------


class ReturnsNone(MedianstopAssessor):
    def assess_trial(self, trial_job_id: str, trial_history: Any) -> Any:
        super().assess_trial(trial_job_id, trial_history)
        return None


class ReturnsNumpyBool(MedianstopAssessor):
    def assess_trial(self, trial_job_id: str, trial_history: Any) -> Any:
        return np.bool_(super().assess_trial(trial_job_id, trial_history).value)


class AssessorCrashesOnNaN(MedianstopAssessor):
    def assess_trial(self, trial_job_id: str, trial_history: Any) -> AssessResult:
        if any(math.isnan(v) for v in trial_history):
            raise ValueError("NaN in the history")
        return super().assess_trial(trial_job_id, trial_history)


class CrashesOnShortHistory(MedianstopAssessor):
    def assess_trial(self, trial_job_id: str, trial_history: Any) -> AssessResult:
        slope = trial_history[-1] - trial_history[-2]
        return (
            AssessResult.Good
            if slope >= 0 or len(trial_history) < 5
            else super().assess_trial(trial_job_id, trial_history)
        )


class RandomVerdicts(Assessor):
    def __init__(self) -> None:
        self._rng = np.random.default_rng()

    def assess_trial(self, trial_job_id: str, trial_history: Any) -> AssessResult:
        return AssessResult.Good if self._rng.random() < 0.5 else AssessResult.Bad


class NeverBad(Assessor):
    def assess_trial(self, trial_job_id: str, trial_history: Any) -> AssessResult:
        return AssessResult.Good


class TrialEndNeedsHistory(MedianstopAssessor):
    def trial_end(self, trial_job_id: str, success: bool) -> None:
        if trial_job_id not in self._running:
            raise KeyError(trial_job_id)
        super().trial_end(trial_job_id, success)


class AssessorBrokenResume(MedianstopAssessor):
    def resume(self, histories: Any) -> None:
        for trial_id, _history, success in histories:
            self.trial_end(trial_id, bool(success))
            len(self._completed_avg[trial_id])


BROKEN_ASSESSORS = [
    (ReturnsNone, "test_verdicts_for_growing_histories", "returned None", None),
    (ReturnsNumpyBool, "test_verdicts_for_growing_histories", r"returned np.True_ \(numpy.bool\)", None),
    (AssessorCrashesOnNaN, "test_verdicts_for_growing_histories", "raised ValueError: NaN", "test_trial_end"),
    (CrashesOnShortHistory, "test_short_histories", "raised IndexError", None),
    (RandomVerdicts, "test_verdicts_are_deterministic", "different verdicts", "test_short_histories"),
    (NeverBad, "test_stops_bad_trials", "never judged Bad", "test_verdicts_are_deterministic"),
    (TrialEndNeedsHistory, "test_trial_end", "trial_end.*raised KeyError", "test_verdicts_are_deterministic"),
    (AssessorBrokenResume, "test_resume", "resume.*raised KeyError", "test_stops_bad_trials"),
]


@pytest.mark.parametrize(
    ("assessor", "check", "match", "passes"), BROKEN_ASSESSORS, ids=[a[0].__name__ for a in BROKEN_ASSESSORS]
)
def test_broken_assessor_fails_its_check(assessor: type, check: str, match: str, passes: str | None) -> None:
    case = _case(AssessorTestCase, assessor_class=assessor)
    with pytest.raises(AssertionError, match=match):
        getattr(case, check)()
    if passes is not None:  # every check meets a first verdict: some bugs trip all of them
        getattr(case, passes)()


# --- a correct tuner that waits for results passes everything ------------------------------------------------


class GenerationalTuner(Tuner):
    """Suggests generations of three random points and waits until a generation has ended (like PBT)."""

    def __init__(self, *, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)
        self._open: set[int] = set()
        self._in_generation = 0

    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        self._space = SearchSpace.parse(search_space)

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if self._in_generation == 3:
            if self._open:
                raise WaitForResults()
            self._in_generation = 0
        self._in_generation += 1
        self._open.add(parameter_id)
        return {**self._space.sample(self._rng), "TRIAL_BUDGET": 3}

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        pass

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        self._open.discard(parameter_id)


class TestGenerationalTuner(TunerTestCase):
    tuner_class = GenerationalTuner
    finite_space_exemption = "generations of prior draws, like PBT's: it never runs out"


def test_waiting_tuner_is_driven_through_waits() -> None:
    case = TestGenerationalTuner()
    space = case.seed_space()
    tuner = case.new_tuner(space)
    log = case.run_trials(tuner, space, 9, concurrency=5)
    assert len(log.trials) == 9
    assert log.waits > 0
    assert all(t.parameters["TRIAL_BUDGET"] == 3 for t in log.trials)


# --- documented exceptions to the finite-space rule pass, with their reason --------------------------------------


class TestReRunsAtLargerBudget(TunerTestCase):
    tuner_class = ReRunsAtLargerBudget
    reevaluates = REEVALUATES


class TestPriorOnlyExempt(TunerTestCase):
    tuner_class = PriorOnly
    finite_space_exemption = "a baseline that samples the prior with replacement, as NNI's Random did"


def test_a_reevaluating_tuner_still_suggests_every_point_then_runs_out() -> None:
    case = TestReRunsAtLargerBudget()
    space = case.finite_spaces()[0][1]
    assert space == FINITE_NESTED_12
    tuner = case.new_tuner(space)
    log = case.run_trials(tuner, space, 100)
    assert log.exhausted and len(log.trials) == 24
    assert sorted(t.parameters["TRIAL_BUDGET"] for t in log.trials) == [1] * 12 + [2] * 12


def test_an_exemption_needs_a_reason() -> None:
    case = _case(TunerTestCase, tuner_class=PriorOnly, finite_space_exemption="  ")
    with pytest.raises(AssertionError, match="must say why"):
        case.test_exhausts_finite_spaces()


# --- the suite's own plumbing --------------------------------------------------------------------------------


def test_only_concrete_subclasses_are_collected() -> None:
    assert TunerTestCase.__test__ is False
    assert AssessorTestCase.__test__ is False

    class MyBase(TunerTestCase):
        n_suggestions = 5

    class TestMine(MyBase):
        tuner_class = RandomTuner

    class TestViaFactory(TunerTestCase):
        def make_tuner(self, **overrides: Any) -> Tuner:
            return RandomTuner(**overrides)

    class TestOptOut(TunerTestCase):
        __test__ = False
        tuner_class = RandomTuner

    class TestAssessor(AssessorTestCase):
        assessor_class = MedianstopAssessor

    assert MyBase.__test__ is False
    assert TestMine.__test__ is True
    assert TestViaFactory.__test__ is True
    assert TestOptOut.__test__ is False
    assert TestAssessor.__test__ is True


def test_nni_pl_testing_does_not_import_pytest() -> None:
    import subprocess
    import sys

    code = "import sys, nni_pl.testing; assert 'pytest' not in sys.modules, 'pytest was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_parameter_problems_name_the_rule() -> None:
    space = {
        "n": {"_type": "randint", "_value": [0, 3]},
        "c": {"_type": "choice", "_value": [1.0, None, "a"]},
        "q": {"_type": "quniform", "_value": [2, 10, 5]},
    }
    assert parameter_problems(space, {"n": 2, "c": 1.0, "q": 2}) == []
    assert parameter_problems(space, {"n": 1, "c": None, "q": 10}) == []
    problems = parameter_problems(space, {"n": 3, "c": 1, "q": 7, "extra": 0})
    assert any("unexpected key 'extra'" in p for p in problems)
    assert any("upper bound" in p for p in problems)
    assert any("not exactly the option" in p for p in problems)
    assert any("not a multiple of q=5" in p for p in problems)
    assert (
        parameter_problems(space, {"n": 2, "c": None, "q": 5, "TRIAL_BUDGET": 3}, extra_keys={"TRIAL_BUDGET"})
        == []
    )
    with pytest.raises(AssertionError, match="n: missing"):
        check_parameters(space, {"c": None, "q": 5})
