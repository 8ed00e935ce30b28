from __future__ import annotations

import math
import time

import pytest

import nni_pl as nni
from nni_pl.errors import ConfigError
from nni_pl.experiment import Experiment
from nni_pl.experiment import store as st
from nni_pl.hpo import AssessResult, create_algorithm
from nni_pl.hpo.assessors import ASHAAssessor
from nni_pl.testing import AssessorTestCase

Good, Bad = AssessResult.Good, AssessResult.Bad


def _feed(a: ASHAAssessor, trial: str, history: list[float]) -> list[AssessResult]:
    return [a.assess_trial(trial, history[:n]) for n in range(1, len(history) + 1)]


# --- rung math --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "max_step", "rungs"),
    [
        ({}, 100, [1, 3, 9, 27, 81]),
        ({"max_resource": 20}, 100, [1, 3, 9]),
        ({"max_resource": 27}, 100, [1, 3, 9]),  # a rung at max_resource is the end of the trial
        ({"max_resource": 28}, 100, [1, 3, 9, 27]),
        ({"min_resource": 2, "reduction_factor": 2}, 40, [2, 4, 8, 16, 32]),
        ({"min_resource": 1, "reduction_factor": 4, "min_early_stopping_rate": 1}, 100, [4, 16, 64]),
        ({}, 8, [1, 3]),
    ],
)
def test_asha_rungs(kwargs, max_step, rungs):
    assert ASHAAssessor(**kwargs).rungs(max_step) == rungs


def test_asha_rungs_of_an_unbounded_assessor_need_a_limit():
    with pytest.raises(ValueError, match="max_step"):
        ASHAAssessor().rungs()
    assert ASHAAssessor(max_resource=10).rungs() == [1, 3, 9]


# --- verdicts ---------------------------------------------------------------------------------------------
def test_asha_keeps_the_top_third_of_each_rung_asynchronously():
    a = ASHAAssessor(reduction_factor=3)
    # rung 1 (step 1): values arrive one by one; keep max(1, n // 3) best
    assert a.assess_trial("A", [0.5]) is Good  # [0.5]: the first always continues
    assert a.assess_trial("B", [0.4]) is Bad  # [0.5, 0.4]: keep 1
    assert a.assess_trial("C", [0.5]) is Good  # ties with the cut-off pass
    assert a.assess_trial("D", [0.45]) is Bad
    assert a.assess_trial("E", [0.3]) is Bad
    assert a.assess_trial("F", [0.5]) is Good  # 6 values: keep 2, cut-off 0.5
    assert a.assess_trial("G", [0.49]) is Bad  # 7 values: keep 2
    assert a.rung_values(0) == {"A": 0.5, "B": 0.4, "C": 0.5, "D": 0.45, "E": 0.3, "F": 0.5, "G": 0.49}


def test_asha_judges_only_at_rungs_and_uses_the_value_there():
    a = ASHAAssessor(reduction_factor=2, max_resource=10)  # rungs 1, 2, 4, 8
    assert _feed(a, "A", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]) == [Good] * 10
    verdicts = _feed(a, "B", [0.5, 0.5, 0.0, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0])
    # step 1: 0.5 >= 0.1; step 2: 0.5 >= 0.2; step 3: no rung; step 4: 0.9 >= 0.4; steps 5-7: no rung
    assert verdicts[:8] == [Good] * 7 + [Bad]  # step 8: 0.0 < 0.8
    assert verdicts[8] is Bad  # once stopped, stays stopped
    assert a.rung_values(3) == {"A": 0.8, "B": 0.0}


def test_asha_minimize():
    a = ASHAAssessor(optimize_mode="minimize", reduction_factor=2)
    assert a.assess_trial("A", [1.0]) is Good
    assert a.assess_trial("B", [2.0]) is Bad
    assert a.assess_trial("C", [0.5]) is Good


def test_asha_nan_is_the_worst_and_dicts_use_default():
    a = ASHAAssessor(reduction_factor=2)
    assert a.assess_trial("A", [{"default": 0.1, "loss": 3}]) is Good
    assert a.assess_trial("B", [math.nan]) is Bad
    assert a.assess_trial("C", [math.inf]) is Bad  # a diverged run, not the best
    b = ASHAAssessor(optimize_mode="minimize", reduction_factor=2)
    assert b.assess_trial("A", [5.0]) is Good
    assert b.assess_trial("B", [-math.inf]) is Bad


def test_asha_judges_every_rung_a_call_skipped():
    a = ASHAAssessor(reduction_factor=3)  # rungs 1, 3, 9
    _feed(a, "A", [0.5] * 9)
    assert a.assess_trial("B", [0.9, 0.9, 0.1, 0.9]) is Bad  # step 3 (0.1 < 0.5) was passed over
    assert a.rung_values(0)["B"] == 0.9 and a.rung_values(1)["B"] == 0.1
    assert a.assess_trial("C", [0.95]) is Good
    assert a.assess_trial("C", [0.95]) is Good  # asked again with the same history: nothing new


def test_asha_records_survive_trial_end():
    a = ASHAAssessor(reduction_factor=2)
    a.assess_trial("A", [0.9])
    a.trial_end("A", success=False)
    assert a.assess_trial("B", [0.5]) is Bad  # still compared with A's record


def test_asha_resume_rebuilds_rung_records():
    stored = [("A", [0.5, 0.6, 0.7], True), ("B", [0.2, 0.3], False), ("C", [0.9, 0.8], None)]
    a = ASHAAssessor(reduction_factor=3)
    a.resume(stored)
    assert a.rung_values(0) == {"A": 0.5, "B": 0.2, "C": 0.9}
    assert a.rung_values(1) == {"A": 0.7}
    # C is still running: its rung-0 value is not recorded twice, and step 3 is judged against A's 0.7
    assert a.assess_trial("C", [0.9, 0.8, 0.75]) is Good
    assert a.rung_values(1) == {"A": 0.7, "C": 0.75}
    b = ASHAAssessor(reduction_factor=3)
    b.resume(stored)
    assert b.assess_trial("D", [0.1]) is Bad  # 4 values at rung 0: keep the best 1 (0.9)


def test_asha_same_calls_same_verdicts():
    calls = [(f"t{i % 7}", [((i * 37) % 11) / 10.0] * (1 + i // 7)) for i in range(70)]

    def run():
        a = ASHAAssessor(reduction_factor=2, max_resource=12)
        return [a.assess_trial(tid, h) for tid, h in calls]

    assert run() == run()


# --- configuration ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimize_mode": "max"}, "ASHAAssessor.optimize_mode"),
        ({"min_resource": 0}, "ASHAAssessor.min_resource"),
        ({"min_resource": 1.5}, "ASHAAssessor.min_resource"),
        ({"reduction_factor": 1}, "ASHAAssessor.reduction_factor"),
        ({"reduction_factor": "3"}, "ASHAAssessor.reduction_factor"),
        ({"min_early_stopping_rate": -1}, "ASHAAssessor.min_early_stopping_rate"),
        ({"max_resource": 0}, "ASHAAssessor.max_resource"),
        ({"max_resource": 3, "min_resource": 3}, "greater than the first rung"),
        ({"max_resource": 9, "min_early_stopping_rate": 2}, r"first rung.*= 9, got 9"),
    ],
)
def test_asha_rejects_bad_class_args(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ASHAAssessor(**kwargs)


def test_asha_builtin_name():
    a = create_algorithm(
        "assessor", "ASHA", class_args={"optimize_mode": "minimize", "min_resource": 2, "max_resource": 50}
    )
    assert isinstance(a, ASHAAssessor) and a.rungs() == [2, 6, 18]


class TestASHAConformance(AssessorTestCase):
    assessor_class = ASHAAssessor
    assessor_kwargs = {"optimize_mode": "maximize", "max_resource": 20}


class TestASHAMinimizeConformance(AssessorTestCase):
    assessor_class = ASHAAssessor
    assessor_kwargs = {"optimize_mode": "minimize", "reduction_factor": 2, "min_early_stopping_rate": 1}


# --- through the manager ---------------------------------------------------------------------------------
def learning_curve(params):
    """A function trial: 9 epochs of a curve scaled by ``quality``."""
    value = 0.0
    for x in range(1, 10):
        value = params["quality"] * (1 - 0.5 * x**-0.7)
        nni.report_intermediate_result(value)
        time.sleep(0.05)
    return value


@pytest.mark.slow
def test_asha_stops_trials_in_an_experiment(tmp_path):
    from tests.hpo import test_asha  # the importable name, which spawned workers can load

    exp = Experiment(
        trial=test_asha.learning_curve,
        search_space={"quality": {"_type": "choice", "_value": [0.5, 0.9, 0.3, 0.4, 0.95, 0.2]}},
        tuner={"name": "GridSearch"},
        assessor={"name": "ASHA", "classArgs": {"min_resource": 1, "reduction_factor": 3, "max_resource": 9}},
        max_trial_number=6,
        trial_concurrency=1,
        experiment_working_directory=tmp_path,
    )
    exp.run(display=False)
    status = {t.parameters["quality"]: t.status for t in exp.trials()}
    # one at a time: each trial is compared at step 1 with all before it
    assert status == {
        0.5: st.SUCCEEDED,
        0.9: st.SUCCEEDED,
        0.3: st.EARLY_STOPPED,
        0.4: st.EARLY_STOPPED,
        0.95: st.SUCCEEDED,
        0.2: st.EARLY_STOPPED,
    }
    stopped = [t for t in exp.trials() if t.status == st.EARLY_STOPPED]
    assert all(t.intermediate_count < 9 for t in stopped)
