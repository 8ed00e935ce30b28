from __future__ import annotations

import math

import pytest

from nni_pl.errors import ConfigError
from nni_pl.hpo import AssessResult, create_algorithm
from nni_pl.hpo.assessors import MedianstopAssessor

Good, Bad = AssessResult.Good, AssessResult.Bad


def _with_completed(mode: str = "maximize", start_step: int = 0) -> MedianstopAssessor:
    a = MedianstopAssessor(optimize_mode=mode, start_step=start_step)
    for tid, history in {"A": [1.0, 2.0, 3.0], "B": [3.0, 3.0, 3.0], "C": [0.0, 0.0]}.items():
        for n in range(1, len(history) + 1):
            a.assess_trial(tid, history[:n])
        a.trial_end(tid, success=True)
    return a


# running averages of completed trials: A 1, 1.5, 2; B 3, 3, 3; C 0, 0
@pytest.mark.parametrize(
    ("history", "verdict"),
    [
        ([0.5], Bad),  # step 1: averages [0, 1, 3], median 1
        ([1.0], Good),  # equal to the median is not strictly worse
        ([1.0, 1.4], Bad),  # step 2: averages [0, 1.5, 3], median 1.5; best 1.4
        ([0.1, 1.5], Good),  # the best so far counts, not the last value
        ([1.9, 1.0, 1.0], Bad),  # step 3: only A and B reached it; [2, 3] -> lower middle 2 when maximising
        ([0.0, 0.0, 2.0], Good),
        ([0.0, 0.0, 0.0, 0.0], Good),  # step 4: no completed trial got that far
    ],
)
def test_medianstop_verdicts_maximize(history, verdict):
    assert _with_completed().assess_trial("X", history) is verdict


@pytest.mark.parametrize(
    ("history", "verdict"),
    [
        ([1.5], Bad),  # step 1: averages [0, 1, 3], median (upper middle of 3 = middle) 1
        ([0.9], Good),
        ([2.0, 1.6], Bad),  # step 2: median 1.5
        ([3.5, 2.9, 3.5], Good),  # step 3: [2, 3] -> upper middle 3 when minimising
        ([3.5, 3.5, 3.1], Bad),
    ],
)
def test_medianstop_verdicts_minimize(history, verdict):
    assert _with_completed("minimize").assess_trial("X", history) is verdict


def test_medianstop_good_without_completed_trials():
    a = MedianstopAssessor()
    assert a.assess_trial("A", [0.1]) is Good
    assert a.assess_trial("B", [-100.0, -200.0]) is Good  # A is still running


def test_medianstop_start_step_delays_judgement():
    a = _with_completed(start_step=3)
    assert a.assess_trial("X", [-5.0]) is Good
    assert a.assess_trial("X", [-5.0, -5.0]) is Good
    assert a.assess_trial("X", [-5.0, -5.0, -5.0]) is Bad


def test_medianstop_failed_and_stopped_trials_do_not_count():
    a = MedianstopAssessor()
    a.assess_trial("A", [10.0])
    a.trial_end("A", success=False)
    a.trial_end("never-reported", success=True)
    assert a.assess_trial("X", [0.0]) is Good


def test_medianstop_dict_metrics_and_nan():
    a = MedianstopAssessor()
    a.assess_trial("A", [{"default": 1.0, "loss": 3}, {"default": 2.0}])
    a.trial_end("A", success=True)
    assert a.assess_trial("X", [{"default": 1.5}]) is Good
    assert a.assess_trial("Y", [math.nan]) is Bad  # a diverged trial is the worst


def test_medianstop_can_recover_after_bad():
    a = _with_completed()
    assert a.assess_trial("X", [1.0, 1.4]) is Bad
    assert a.assess_trial("X", [1.0, 1.4, 2.5]) is Good


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimize_mode": "maximise"}, "MedianstopAssessor.optimize_mode"),
        ({"start_step": -1}, "MedianstopAssessor.start_step"),
        ({"start_step": "3"}, "integer >= 0"),
        ({"start_step": True}, "MedianstopAssessor.start_step"),
    ],
)
def test_medianstop_rejects_bad_class_args(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        MedianstopAssessor(**kwargs)


def test_medianstop_builtin_name():
    a = create_algorithm("assessor", "Medianstop", class_args={"optimize_mode": "minimize", "start_step": 2})
    assert isinstance(a, MedianstopAssessor) and a.start_step == 2 and a.optimize_mode == "minimize"
