"""The manager's side of the advisor contract: WaitForResults, assess_trial on the advisor, trial_end keywords."""

from __future__ import annotations

import time

import pytest

import nni_pl as nni
from nni_pl.errors import NniPlError, WaitForResults
from nni_pl.experiment import Experiment
from nni_pl.experiment import store as st
from nni_pl.hpo import Advisor, AssessResult


class TwoRungs(Advisor):
    """Hands out configs in rungs of two and waits until a rung has reported before the next."""

    def __init__(self, *, rungs: int = 2) -> None:
        self.rungs = rungs
        self.pending: set[int] = set()
        self.rung = 0
        self.given_in_rung = 0
        self.ends: list[tuple[int, bool, str, str]] = []
        self.waits = 0
        self.attached: tuple[str, str] | None = None

    def attach(self, *, experiment_id, directory):
        self.attached = (experiment_id, str(directory))

    def update_search_space(self, search_space):
        self.space = search_space

    def generate_parameters(self, parameter_id, **kwargs):
        if self.given_in_rung == 2:
            if self.pending:
                self.waits += 1
                raise WaitForResults()
            self.rung += 1
            self.given_in_rung = 0
        if self.rung >= self.rungs:
            raise nni.NoMoreTrialError()
        self.given_in_rung += 1
        self.pending.add(parameter_id)
        x = -1.0 if (self.rung, self.given_in_rung) == (0, 1) else float(parameter_id)
        return {"x": x, "TRIAL_BUDGET": 3**self.rung}

    def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
        pass

    def trial_end(self, parameter_id, success, **kwargs):
        self.pending.discard(parameter_id)
        self.ends.append((parameter_id, success, kwargs["trial_job_id"], kwargs["status"]))

    def assess_trial(self, trial_job_id, trial_history, **kwargs):
        assert kwargs["parameter_id"] is not None
        return AssessResult.Bad if trial_history[-1] < 0 else AssessResult.Good


def curve(params):
    budget = nni.get_trial_budget()
    for _ in range(5):
        nni.report_intermediate_result(params["x"])
        time.sleep(0.05)
    return params["x"] + budget


def test_advisor_waits_between_rungs_and_stops_bad_trials(tmp_path):
    advisor = TwoRungs()
    exp = Experiment(
        trial=curve,
        search_space={"x": {"_type": "uniform", "_value": [0, 1]}},
        advisor=advisor,
        max_trial_number=10,
        trial_concurrency=2,
        experiment_working_directory=tmp_path,
    )
    exp.run(display=False)
    trials = exp.trials()
    assert len(trials) == 4
    assert [t.parameters["TRIAL_BUDGET"] for t in trials] == [1, 1, 3, 3]
    # the second rung started only after the first had ended (the advisor said WaitForResults meanwhile)
    first, second = trials[:2], trials[2:]
    assert min(t.started_at for t in second) >= max(t.ended_at for t in first) - 0.01
    assert advisor.attached == (exp.id, str(exp.directory))
    # the advisor acted as the assessor: the trial with x = -1 was stopped early
    stopped = [t for t in trials if t.status == st.EARLY_STOPPED]
    assert [t.parameters["x"] for t in stopped] == [-1.0]
    assert {e[3] for e in advisor.ends} == {st.SUCCEEDED, st.EARLY_STOPPED}
    assert sorted(e[2] for e in advisor.ends) == sorted(t.trial_id for t in trials)
    assert exp.store.get_experiment(exp.id).message == "the search space is exhausted"


class AlwaysWaits(TwoRungs):
    def generate_parameters(self, parameter_id, **kwargs):
        raise WaitForResults()


def test_a_tuner_that_waits_with_nothing_running_is_an_error(tmp_path):
    exp = Experiment(
        trial=curve,
        search_space={"x": {"_type": "uniform", "_value": [0, 1]}},
        advisor=AlwaysWaits(),
        max_trial_number=3,
        experiment_working_directory=tmp_path,
    )
    with pytest.raises(NniPlError, match="waits for results, but no trial is running"):
        exp.run(display=False)
    assert exp.store.get_experiment(exp.id).status == st.EXP_ERROR
