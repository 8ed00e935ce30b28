"""A tuner whose settings are degenerate for the experiment's budget says so once, at launch
(``Tuner.check_budget``): the setting, its value and a value that fits."""

from __future__ import annotations

import logging
import re

import pytest

from nni_pl.hpo import Tuner
from nni_pl.hpo.tuners import BOHB, AutoTuner, EvolutionTuner, Hyperband, RegularizedEvolutionTuner, TPETuner

from .conftest import QUAD, _neg_quad


def _budget(tuner, n: int | None) -> list[str]:
    return tuner.check_budget(max_trial_number=n, max_duration_s=None)


def test_regularized_evolution_population_above_budget_warns_with_a_fitting_value():
    [warning] = _budget(RegularizedEvolutionTuner(), 50)
    assert "population_size=100" in warning and "maxTrialNumber=50" in warning and "random search" in warning
    fit = int(re.search(r"population_size to (\d+)", warning).group(1))
    sample = int(re.search(r"sample_size \(now 25\) to (\d+)", warning).group(1))
    assert _budget(RegularizedEvolutionTuner(population_size=fit, sample_size=sample), 50) == []


def test_evolution_population_above_budget_warns_with_a_fitting_value():
    [warning] = _budget(EvolutionTuner(), 32)  # equal: still every trial random
    assert "EvolutionTuner: population_size=32" in warning and "maxTrialNumber=32" in warning
    fit = int(re.search(r"population_size to (\d+)", warning).group(1))
    assert _budget(EvolutionTuner(population_size=fit), 32) == []


def test_evolution_budget_too_small_for_any_population_says_raise_the_budget():
    [warning] = _budget(EvolutionTuner(population_size=4), 2)
    assert "population_size to" not in warning and "raise maxTrialNumber above 4" in warning


def test_hyperband_single_bracket_warns_naming_r_and_eta():
    [warning] = _budget(Hyperband(R=2, eta=3), None)  # whatever the budget
    assert "R=2 and eta=3" in warning and "single bracket" in warning
    assert "R to at least eta=3" in warning and "eta to at most 2" in warning
    assert _budget(Hyperband(R=3, eta=3), None) == [] and _budget(Hyperband(R=2, eta=2), None) == []


def test_hyperband_first_bracket_beyond_budget_warns_with_a_fitting_r():
    [warning] = _budget(Hyperband(R=60, eta=3), 20)
    assert "R=60 and eta=3" in warning and "runs 40 trials" in warning and "maxTrialNumber=20" in warning
    fit = int(re.search(r"set R to (\d+)", warning).group(1))
    assert _budget(Hyperband(R=fit, eta=3), 20) == []
    assert _budget(Hyperband(R=60, eta=3), 40) == []


def test_bohb_single_bracket_and_first_bracket_warn_with_fitting_budgets():
    [single] = _budget(BOHB(min_budget=1, max_budget=2, eta=3), None)
    assert "max_budget=2" in single and "set max_budget to at least eta * min_budget = 3" in single
    assert _budget(BOHB(min_budget=1, max_budget=3, eta=3), None) == []
    [first] = _budget(BOHB(min_budget=1, max_budget=81, eta=3), 20)
    fit = float(re.search(r"set max_budget to ([\d.]+)", first).group(1))
    assert _budget(BOHB(min_budget=1, max_budget=fit, eta=3), 20) == []


@pytest.mark.parametrize(
    "tuner",
    [
        TPETuner(),
        AutoTuner(),
        EvolutionTuner(population_size=4),
        RegularizedEvolutionTuner(population_size=10),
    ],
    ids=lambda t: type(t).__name__,
)
def test_settings_that_fit_or_no_budget_say_nothing(tuner: Tuner):
    assert _budget(tuner, 100) == [] and _budget(tuner, None) == []


def test_experiment_warns_once_at_launch(tmp_path, caplog, capsys):
    from nni_pl.experiment import Experiment

    exp = Experiment(
        trial=_neg_quad,
        search_space=QUAD,
        tuner={"name": "RegularizedEvolutionTuner", "classArgs": {"population_size": 10, "sample_size": 3}},
        max_trial_number=4,
        trial_concurrency=2,
        experiment_working_directory=tmp_path,
        start_method="fork",  # spawned workers cannot import this module: tests/hpo is the package "hpo"
    )
    with caplog.at_level(logging.WARNING):
        exp.run(display=False)
    mine = [r.getMessage() for r in caplog.records if "population_size=10" in r.getMessage()]
    assert len(mine) == 1
    assert "maxTrialNumber=4" in mine[0] and "raise maxTrialNumber above 10" in mine[0]
    assert capsys.readouterr().err.count("population_size=10 is not below maxTrialNumber=4") == 1


def test_experiment_tells_auto_its_budget(tmp_path):
    from nni_pl.experiment import Experiment

    exp = Experiment(
        trial=_neg_quad, search_space=QUAD, max_trial_number=20, experiment_working_directory=tmp_path
    )
    tuner, _ = exp._build_algorithms()  # no tuner configured: Auto
    assert isinstance(tuner, AutoTuner) and tuner.max_trial_number == 20
    assert exp._budget_warnings == []
