from __future__ import annotations

import math
import time

import numpy as np
import pytest

from nni_pl._checks import ArgumentError
from nni_pl.errors import ConfigError, NoMoreTrialError, SearchSpaceError
from nni_pl.hpo import HistoryEntry, create_algorithm
from nni_pl.hpo.tuners import AutoTuner, TPETuner
from nni_pl.hpo.tuners.gp import GPTuner
from nni_pl.space import SearchSpace
from nni_pl.testing import TunerTestCase

from .conftest import QUAD, assert_valid, optimise, quad

GP_FAST = {"cold_start_num": 2, "selection_num_warm_up": 200, "selection_num_starting_points": 2}
# 6 x 5 = 30 points, all numeric: GP accepts it
FINITE_30 = {
    "a": {"_type": "randint", "_value": [0, 6]},
    "b": {"_type": "choice", "_value": [1, 2, 4, 8, 16]},
}


def _auto(**kwargs) -> AutoTuner:
    return AutoTuner(**{"optimize_mode": "minimize", "seed": 0, "gp_args": GP_FAST, **kwargs})


def _key(p: dict) -> tuple:
    return tuple(sorted(p.items()))


class TestAutoConformance(TunerTestCase):
    """GP for four results, TPE after: every run of the suite crosses the switch."""

    tuner_class = AutoTuner
    tuner_kwargs = {"switch_after": 4, "gp_args": GP_FAST}
    n_suggestions = 12


class TestAutoGPOnlyConformance(TunerTestCase):
    """A switch never reached: GP throughout where it accepts the space (TPE where it does not)."""

    tuner_class = AutoTuner
    tuner_kwargs = {"switch_after": 10_000, "gp_args": GP_FAST}
    n_suggestions = 6


def test_auto_gp_before_switch_tpe_after_with_every_observation():
    tuner = _auto(switch_after=8)
    tuner.update_search_space(QUAD)
    models, suggested = [], []
    for i in range(14):
        params = tuner.generate_parameters(i)
        models.append(tuner.model)
        suggested.append(params)
        tuner.receive_trial_result(i, params, quad(params))
        tuner.trial_end(i, True)
        if i == 7:
            before = tuner.observations()
    assert models == ["GP"] * 8 + ["TPE"] * 6
    after = tuner.observations()
    assert len(after) == 14 and after[:8] == before  # TPE holds the 8 GP results, then its own
    assert [p for p, _ in after] == suggested


def test_auto_switch_keeps_running_trials_pending_and_failures_seen():
    tuner = _auto(switch_after=6)
    tuner.update_search_space(FINITE_30)
    running = {}
    for i in range(10):  # 10 suggested by GP, 4 still running, 1 failed
        running[i] = tuner.generate_parameters(i)
    tuner.trial_end(9, False)
    for i in range(6):
        tuner.receive_trial_result(i, running[i], quad({"x": running[i]["a"], "y": running[i]["b"]}))
        tuner.trial_end(i, True)
    assert tuner.model == "GP"
    seen = [_key(p) for p in running.values()]
    for i in range(10, 30):  # the switch happens at the first of these; every point exactly once
        params = tuner.generate_parameters(i)
        assert tuner.model == "TPE"
        seen.append(_key(params))
        tuner.receive_trial_result(i, params, float(i))
    assert len(set(seen)) == 30
    with pytest.raises(NoMoreTrialError):
        tuner.generate_parameters(30)
    for i in (6, 7, 8):  # results of trials GP suggested arrive after the switch: TPE learns them
        tuner.receive_trial_result(i, running[i], 0.0)
    assert len(tuner.observations()) == 6 + 20 + 3


def test_auto_finite_space_no_repeats_across_switch():
    tuner = _auto(switch_after=10)
    tuner.update_search_space(FINITE_30)
    keys = []
    with pytest.raises(NoMoreTrialError):
        for i in range(31):
            params = tuner.generate_parameters(i)
            keys.append(_key(params))
            tuner.receive_trial_result(i, params, float(params["a"] * params["b"]))
    assert len(keys) == 30 and len(set(keys)) == 30


def test_auto_imported_points_are_not_suggested_after_switch():
    tuner = _auto(switch_after=3)
    tuner.update_search_space(FINITE_30)
    imported = [{"a": a, "b": 1} for a in range(6)]
    tuner.import_data([{"parameter": p, "value": float(p["a"])} for p in imported[:5]])
    tuner.import_data([{"parameter": imported[5], "value": None}])  # seen, no result
    assert tuner.model == "GP"
    keys = {_key(p) for p in imported}
    for i in range(24):
        params = tuner.generate_parameters(i)
        assert tuner.model == "TPE"  # 5 imported results >= 3
        assert _key(params) not in keys
        keys.add(_key(params))
        tuner.receive_trial_result(i, params, 1.0)
    with pytest.raises(NoMoreTrialError):
        tuner.generate_parameters(24)


def test_auto_falls_back_to_tpe_when_gp_refuses_the_space(monkeypatch):
    def refuse(cls, space, *, name=None):
        raise SearchSpaceError("x", f"tuner {name or cls.__name__} refuses it", "", "")

    monkeypatch.setattr(GPTuner, "check_search_space", classmethod(refuse))
    tuner = _auto()
    tuner.update_search_space(QUAD)
    assert tuner.model == "TPE"
    assert tuner.gp_refusal(SearchSpace.parse(QUAD)) is not None
    values = optimise(tuner, QUAD, quad, 5)
    assert len(values) == 5


def test_auto_tpe_from_the_start_beyond_max_gp_dims():
    space = {f"x{i}": {"_type": "uniform", "_value": [0, 1]} for i in range(4)}
    wide = _auto(max_gp_dims=3)
    wide.update_search_space(space)
    assert wide.model == "TPE"
    narrow = _auto(max_gp_dims=4)
    narrow.update_search_space(space)
    assert narrow.model == "GP"


def test_auto_switch_after_zero_is_tpe():
    tuner = _auto(switch_after=0)
    tuner.update_search_space(QUAD)
    assert tuner.model == "TPE"
    # the same suggestions as TPE itself
    assert optimise(tuner, QUAD, quad, 15) == optimise(
        TPETuner(optimize_mode="minimize", seed=0), QUAD, quad, 15
    )


def test_auto_space_update_gp_refuses_switches_with_observations(monkeypatch):
    tuner = _auto(switch_after=100)
    optimise(tuner, QUAD, quad, 5)
    assert tuner.model == "GP"
    wider = {**QUAD, "x": {"_type": "uniform", "_value": [-10, 10]}}  # the old results stay in it
    monkeypatch.setattr(AutoTuner, "gp_refusal", lambda self, space: "refused for the test")
    tuner.update_search_space(wider)
    assert tuner.model == "TPE"
    assert len(tuner.observations()) == 5
    assert -10 <= tuner.generate_parameters(5)["x"] <= 10


def test_auto_same_seed_same_suggestions_across_switch():
    runs = [optimise(_auto(switch_after=6, seed=s), QUAD, quad, 14) for s in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_auto_resume_picks_the_phase_and_repeats_nothing():
    history = [HistoryEntry(i, {"a": i % 6, "b": [1, 2, 4, 8, 16][i // 6]}, float(i)) for i in range(7)]
    running = HistoryEntry(7, {"a": 1, "b": 2}, None, finished=False)
    for switch_after, model in ((5, "TPE"), (50, "GP")):
        tuner = _auto(switch_after=switch_after)
        tuner.update_search_space(FINITE_30)
        tuner.resume([*history, running])
        keys = {_key(h.parameters) for h in [*history, running]}
        for i in range(8, 30):
            params = tuner.generate_parameters(i)
            assert tuner.model == model
            assert _key(params) not in keys
            keys.add(_key(params))
            tuner.receive_trial_result(i, params, 1.0)
        with pytest.raises(NoMoreTrialError):
            tuner.generate_parameters(30)


def test_auto_resumed_in_gp_phase_carries_history_into_the_switch():
    tuner = _auto(switch_after=4)
    tuner.update_search_space(QUAD)
    history = [HistoryEntry(i, {"x": float(i), "y": 0.0}, float(i)) for i in range(3)]
    tuner.resume(history)
    assert tuner.model == "GP"
    params = tuner.generate_parameters(3)
    tuner.receive_trial_result(3, params, 0.5)
    tuner.generate_parameters(4)
    assert tuner.model == "TPE"
    assert [p for p, _ in tuner.observations()][:3] == [h.parameters for h in history]


def test_auto_budget_shortens_gp_start_up():
    tuner = _auto(gp_args={"selection_num_warm_up": 200, "selection_num_starting_points": 2})
    assert tuner.check_budget(max_trial_number=20, max_duration_s=None) == []
    tuner.update_search_space(QUAD)
    assert tuner.max_trial_number == 20
    assert tuner._gp is not None and tuner._gp.cold_start_num == 3  # 2 dimensions + 1 > 20 / 10
    unknown = _auto(gp_args={})
    unknown.update_search_space(QUAD)
    assert unknown._gp is not None and unknown._gp.cold_start_num == 10


def test_auto_argument_errors_name_the_nested_argument():
    with pytest.raises(ArgumentError, match=r"AutoTuner.gp_args.utility"):
        AutoTuner(gp_args={"utility": "nope"})
    with pytest.raises(ArgumentError, match=r"AutoTuner.gp_args.*nope"):
        AutoTuner(gp_args={"nope": 1})
    with pytest.raises(ArgumentError, match=r"AutoTuner.tpe_args.*seed"):
        AutoTuner(tpe_args={"seed": 1})
    with pytest.raises(ConfigError, match=r"tuner.classArgs.switch_after"):
        create_algorithm("tuner", "Auto", class_args={"switch_after": -1})
    assert isinstance(create_algorithm("tuner", "Auto", class_args={"seed": 1}), AutoTuner)


def test_auto_values_in_space_with_concurrency():
    space = SearchSpace.parse(FINITE_30)
    tuner = _auto(switch_after=5, parallel_optimize=True)
    tuner.update_search_space(FINITE_30)
    pending = []
    for i in range(20):
        params = tuner.generate_parameters(i)
        assert_valid(space, params)
        pending.append((i, params))
        if len(pending) == 3:
            pid, p = pending.pop(0)
            tuner.receive_trial_result(pid, p, float(p["a"]))


def test_auto_suggests_as_fast_as_tpe_after_the_switch():
    space = {f"x{i}": {"_type": "uniform", "_value": [-5, 5]} for i in range(4)}
    space["c"] = {"_type": "choice", "_value": [1, 2, 4]}
    parsed = SearchSpace.parse(space)
    rng = np.random.default_rng(0)
    records = [
        {"parameter": p, "value": float(sum(p.values()))} for p in (parsed.sample(rng) for _ in range(1000))
    ]

    def seconds_per_suggestion(tuner, n=60) -> float:
        start = time.perf_counter()
        for i in range(n):
            tuner.generate_parameters(10_000 + i)
            tuner.trial_end(10_000 + i, False)
        return (time.perf_counter() - start) / n

    tuners = {"auto": AutoTuner(seed=0), "tpe": TPETuner(seed=0)}
    for t in tuners.values():
        t.update_search_space(space)
        t.import_data(records)
        t.generate_parameters(0)  # Auto switches to TPE here
    assert tuners["auto"].model == "TPE"
    # rounds interleaved, the best of each: a machine busy with other work slows both alike
    best = {k: math.inf for k in tuners}
    for _ in range(7):
        for k, t in tuners.items():
            best[k] = min(best[k], seconds_per_suggestion(t, n=30))
    assert best["auto"] <= 1.2 * best["tpe"], best


def test_auto_falls_back_to_tpe_when_its_gp_settings_refuse_the_space():
    space = {"act": {"_type": "choice", "_value": ["relu", "tanh"]}, **QUAD}
    strict = _auto(gp_args={**GP_FAST, "nni_types_only": True})  # NNI's GP: numeric choices only
    strict.update_search_space(space)
    assert strict.model == "TPE"
    wide = _auto()
    wide.update_search_space(space)
    assert wide.model == "GP"
