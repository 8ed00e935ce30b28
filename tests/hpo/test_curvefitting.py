from __future__ import annotations

import math
import time

import numpy as np
import pytest

import nni_pl as nni
from nni_pl.errors import ConfigError
from nni_pl.experiment import Experiment
from nni_pl.experiment import store as st
from nni_pl.hpo import AssessResult, create_algorithm
from nni_pl.hpo.assessors import CurvefittingAssessor, _curves
from nni_pl.hpo.assessors import curvefitting as cf_module
from nni_pl.testing import AssessorTestCase

Good, Bad = AssessResult.Good, AssessResult.Bad


def _pow3(n: int, top: float = 0.9, start: float = 0.3, alpha: float = 0.8) -> list[float]:
    return [top - (top - start) * x**-alpha for x in range(1, n + 1)]


GOOD = _pow3(20)  # ends at 0.834
BAD = _pow3(20, top=0.3, start=0.1)  # heads for 0.3


def _feed(
    a: CurvefittingAssessor, trial: str, history: list[float], *, end: bool | None = None
) -> list[AssessResult]:
    verdicts = [a.assess_trial(trial, history[:n]) for n in range(1, len(history) + 1)]
    if end is not None:
        a.trial_end(trial, end)
    return verdicts


def _with_best(**kwargs) -> CurvefittingAssessor:
    a = CurvefittingAssessor(seed=0, **kwargs)
    _feed(a, "best", GOOD, end=True)
    assert a.best_final == pytest.approx(GOOD[-1])
    return a


class _FixedPrediction:
    """Stands in for the curve extrapolation: returns ``value`` and records the histories it saw."""

    def __init__(self, value: float | None) -> None:
        self.value = value
        self.calls: list[int] = []

    def __call__(self, history, target, rng, **kw):
        self.calls.append(len(history))
        return _curves.CurvePrediction(self.value, ("a", "b", "c", "d") if self.value is not None else (), {})


# --- the curve models ------------------------------------------------------------------------------------
TRUE_PARAMETERS = {
    "vap": (-0.1, -1.0, 0.02),
    "pow3": (0.9, 0.6, 0.7),
    "linear": (0.02, 0.4),
    "logx_linear": (0.15, 0.3),
    "dr_hill_zero_background": (0.9, 1.5, 2.0),
    "log_power": (0.9, 0.5, -1.2),
    "pow4": (0.8, 0.5, 1.0, 0.95),
    "mmf": (0.9, 0.2, 0.3, 1.5),
    "exp4": (0.9, 0.5, -0.3, 0.8),
    "ilog2": (0.9, 0.3),
    "weibull": (0.9, 0.2, 0.25, 1.2),
    "janoschek": (0.9, 0.2, 0.3, 0.9),
}


def test_curvefitting_has_nnis_twelve_families():
    assert [m.name for m in _curves.CURVE_MODELS] == [
        "vap",
        "pow3",
        "linear",
        "logx_linear",
        "dr_hill_zero_background",
        "log_power",
        "pow4",
        "mmf",
        "exp4",
        "ilog2",
        "weibull",
        "janoschek",
    ]


@pytest.mark.parametrize("model", _curves.CURVE_MODELS, ids=lambda m: m.name)
def test_curvefitting_each_family_recovers_a_curve_of_its_own_kind(model):
    x = np.arange(1, 11, dtype=float)
    theta = TRUE_PARAMETERS[model.name]
    y = model.fn(x, *theta)
    fitted = _curves.fit_curves(y.tolist())
    assert model.name in fitted
    at20 = model.fn(np.array([20.0]), *fitted[model.name])[0]
    assert at20 == pytest.approx(model.fn(np.array([20.0]), *theta)[0], abs=1e-3)


@pytest.mark.parametrize(
    "curve",
    [
        _pow3(20),
        [0.95 - 0.7 * math.exp(-0.3 * (x - 1)) for x in range(1, 21)],
        [0.9 - 0.6 * math.exp(-0.25 * x**0.9) for x in range(1, 21)],
    ],
    ids=["pow3", "exponential", "janoschek-like"],
)
def test_curvefitting_ensemble_extrapolates_smooth_curves(curve):
    rng = np.random.default_rng(0)
    noisy = np.array(curve) + rng.normal(0, 0.003, len(curve))
    p = _curves.predict_final(noisy[:10].tolist(), 20, np.random.default_rng(1))
    assert p.value is not None and len(p.models) >= _curves.MIN_EFFECTIVE_MODELS
    # NNI's ensemble averages the families nearly evenly (its MCMC barely moves the weights), so the
    # unbounded ones (logx_linear, vap) pull an exponential curve's prediction up by a few points
    assert p.value == pytest.approx(curve[-1], abs=0.07)


def test_curvefitting_prediction_is_none_when_families_disagree():
    # three points on a line: the saturating families run off to infinity or disagree
    p = _curves.predict_final([0.2, 0.23, 0.26], 20, np.random.default_rng(0))
    assert p.value is None


def test_curvefitting_prediction_is_reproducible_and_fast():
    history = (np.array(_pow3(8)) + np.random.default_rng(3).normal(0, 0.01, 8)).tolist()
    start = time.perf_counter()
    first = _curves.predict_final(history, 20, np.random.default_rng(7))
    elapsed = time.perf_counter() - start
    second = _curves.predict_final(history, 20, np.random.default_rng(7))
    assert first.value == second.value and first.models == second.models
    assert elapsed < 1.0  # tens of milliseconds normally; generous for a loaded machine


# --- verdicts ---------------------------------------------------------------------------------------------
def test_curvefitting_good_until_a_trial_has_completed():
    a = CurvefittingAssessor(seed=0)
    assert set(_feed(a, "bad", BAD)) == {Good}
    a.trial_end("bad", success=False)  # a failed or stopped trial sets no best
    assert a.best_final is None
    assert set(_feed(a, "bad2", BAD)) == {Good}


def test_curvefitting_stops_a_clearly_bad_curve_and_keeps_a_good_one():
    a = _with_best()
    verdicts = _feed(a, "bad", BAD[:8])
    assert verdicts[:5] == [Good] * 5  # before start_step = 6
    assert verdicts[5] is Bad
    assert set(_feed(a, "good", _pow3(12, top=0.92))) == {Good}


def test_curvefitting_judges_only_on_the_start_step_and_gap_grid(monkeypatch):
    fake = _FixedPrediction(0.0)  # always hopeless
    monkeypatch.setattr(cf_module, "predict_final", fake)
    a = _with_best(start_step=6, gap=2)
    verdicts = _feed(a, "x", BAD[:11])
    assert [n for n, v in enumerate(verdicts, start=1) if v is Bad] == [6, 8, 10]
    assert fake.calls == [6, 8, 10]


def test_curvefitting_judges_a_grid_step_skipped_by_the_caller(monkeypatch):
    fake = _FixedPrediction(0.0)
    monkeypatch.setattr(cf_module, "predict_final", fake)
    a = _with_best(start_step=6, gap=3)
    assert a.assess_trial("x", BAD[:5]) is Good
    assert a.assess_trial("x", BAD[:7]) is Bad  # step 6 was passed over
    assert a.assess_trial("x", BAD[:8]) is Good  # next judgement at 9
    assert a.assess_trial("x", BAD[:9]) is Bad


@pytest.mark.parametrize(("predicted", "verdict"), [(0.9 * 0.95 + 1e-9, Good), (0.9 * 0.95, Bad), (0.5, Bad)])
def test_curvefitting_threshold_is_strict(monkeypatch, predicted, verdict):
    a = CurvefittingAssessor(seed=0, start_step=1)
    a.assess_trial("A", [0.9])
    a.trial_end("A", success=True)
    monkeypatch.setattr(cf_module, "predict_final", _FixedPrediction(predicted))
    assert a.assess_trial("X", [0.1]) is verdict


def test_curvefitting_no_convergence_is_good(monkeypatch):
    a = _with_best()
    monkeypatch.setattr(cf_module, "predict_final", _FixedPrediction(None))
    assert set(_feed(a, "x", BAD[:10])) == {Good}


def test_curvefitting_best_final_is_the_best_successful_last_value():
    a = CurvefittingAssessor(seed=0)
    a.assess_trial("A", [0.5, 0.6])
    a.assess_trial("B", [0.9, 0.99])
    a.assess_trial("C", [0.7, 0.8])
    a.trial_end("B", success=False)  # stopped: does not count
    a.trial_end("A", success=True)  # NNI would take B's history here (the last one seen); we take A's
    assert a.best_final == 0.6
    a.trial_end("C", success=True)
    assert a.best_final == 0.8


def test_curvefitting_negative_best_scales_towards_zero(monkeypatch):
    a = CurvefittingAssessor(seed=0, start_step=1, threshold=0.9)
    a.assess_trial("A", [-1.0])
    a.trial_end("A", success=True)
    monkeypatch.setattr(cf_module, "predict_final", _FixedPrediction(-1.05))
    assert a.assess_trial("X", [-2.0]) is Good  # -1.05 > -1 - 0.1 * 1
    monkeypatch.setattr(cf_module, "predict_final", _FixedPrediction(-1.2))
    assert a.assess_trial("Y", [-2.0]) is Bad


def test_curvefitting_dict_metrics_and_divergence():
    a = CurvefittingAssessor(seed=0)
    _feed(a, "best", [{"default": v, "loss": 1.0} for v in GOOD], end=True)
    assert a.best_final == pytest.approx(GOOD[-1])
    diverged = [*BAD[:5], math.nan]
    assert a.assess_trial("nan", diverged[:5]) is Good
    assert a.assess_trial("nan", diverged) is Bad


def test_curvefitting_same_seed_same_verdicts_in_any_interleaving(monkeypatch):
    seen: list[tuple[int, float]] = []

    def spy(history, target, rng, **kw):
        p = _curves.predict_final(history, target, rng, **kw)
        seen.append((len(history), p.value))
        return p

    monkeypatch.setattr(cf_module, "predict_final", spy)
    curve = (np.array(_pow3(10, top=0.85)) + np.random.default_rng(0).normal(0, 0.01, 10)).tolist()
    a = _with_best()
    _feed(a, "x", curve)
    first = list(seen)
    seen.clear()
    b = _with_best()
    _feed(b, "other", BAD[:7])  # other judgements in between do not shift x's random stream
    seen.clear()
    _feed(b, "x", curve)
    assert seen == first and len(first) == 5


def test_curvefitting_resume_rebuilds_state_without_fitting(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("resume must not fit curves")

    monkeypatch.setattr(cf_module, "predict_final", boom)
    a = CurvefittingAssessor(seed=0, start_step=6, gap=2)
    a.resume([("A", GOOD[:10], True), ("B", [0.99] * 10, False), ("C", BAD[:7], None)])
    assert a.best_final == GOOD[9]
    fake = _FixedPrediction(0.0)
    monkeypatch.setattr(cf_module, "predict_final", fake)
    assert a.assess_trial("C", BAD[:7]) is Good  # seen before the restart; next grid step is 8
    assert a.assess_trial("C", BAD[:8]) is Bad
    assert fake.calls == [8]


# --- configuration ---------------------------------------------------------------------------------------
def test_curvefitting_defaults_follow_nni():
    a = CurvefittingAssessor()
    assert (a.epoch_num, a.start_step, a.threshold, a.gap, a.optimize_mode) == (20, 6, 0.95, 1, "maximize")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epoch_num": 0}, "CurvefittingAssessor.epoch_num"),
        ({"epoch_num": "20"}, "CurvefittingAssessor.epoch_num"),
        ({"start_step": -1}, "CurvefittingAssessor.start_step"),
        ({"start_step": 2.5}, "CurvefittingAssessor.start_step"),
        ({"threshold": 0}, "CurvefittingAssessor.threshold"),
        ({"threshold": -0.5}, "CurvefittingAssessor.threshold"),
        ({"threshold": math.nan}, "CurvefittingAssessor.threshold"),
        ({"threshold": "0.9"}, "number > 0"),
        ({"threshold": True}, "CurvefittingAssessor.threshold"),
        ({"gap": 0}, "CurvefittingAssessor.gap"),
        ({"optimize_mode": "minimize"}, "supports only 'maximize'.*Medianstop or ASHA"),
        ({"optimize_mode": "maximise"}, "CurvefittingAssessor.optimize_mode"),
        ({"seed": -1}, "CurvefittingAssessor.seed"),
    ],
)
def test_curvefitting_rejects_bad_class_args(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CurvefittingAssessor(**kwargs)


def test_curvefitting_builtin_name():
    a = create_algorithm(
        "assessor", "Curvefitting", class_args={"epoch_num": 10, "start_step": 4, "threshold": 0.9, "gap": 2}
    )
    assert isinstance(a, CurvefittingAssessor)
    assert (a.epoch_num, a.start_step, a.threshold, a.gap) == (10, 4, 0.9, 2)


# --- through the manager ---------------------------------------------------------------------------------
def learning_curve(params):
    """A function trial: 10 epochs of a pow3 curve scaled by ``quality``."""
    q = params["quality"]
    value = 0.0
    for x in range(1, 11):
        value = q * (1 - 0.6 * x**-0.8)
        nni.report_intermediate_result(value)
        time.sleep(0.05)
    return value


@pytest.mark.slow
def test_curvefitting_stops_poor_trials_in_an_experiment(tmp_path):
    from tests.hpo import test_curvefitting  # the importable name, which spawned workers can load

    exp = Experiment(
        trial=test_curvefitting.learning_curve,
        search_space={"quality": {"_type": "choice", "_value": [1.0, 0.3, 1.05, 0.2]}},
        tuner={"name": "GridSearch"},
        assessor={"name": "Curvefitting", "classArgs": {"epoch_num": 10, "start_step": 4, "seed": 0}},
        max_trial_number=4,
        trial_concurrency=1,
        experiment_working_directory=tmp_path,
    )
    exp.run(display=False)
    status = {t.parameters["quality"]: t.status for t in exp.trials()}
    assert status[1.0] == st.SUCCEEDED  # the first trial: nothing to compare with yet
    assert status[1.05] == st.SUCCEEDED
    assert status[0.3] == status[0.2] == st.EARLY_STOPPED
    counts = {t.parameters["quality"]: t.intermediate_count for t in exp.trials()}
    assert counts[0.3] < 10 and counts[0.2] < 10


class TestCurvefittingConformance(AssessorTestCase):
    # shorter curves and judgements every other step keep the suite to a few seconds (each one fits curves)
    assessor_class = CurvefittingAssessor
    assessor_kwargs = {"epoch_num": 12, "start_step": 6, "gap": 2}
    history_length = 12
    seed_arg = "seed"
