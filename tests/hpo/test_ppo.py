"""PPOTuner: classArgs, finite spaces, batches and WaitForResults, learning, seeds, failures, import and resume."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import sys
from typing import Any

import numpy as np
import pytest

from nni_pl.errors import (
    ConfigError,
    MissingDependencyError,
    NoMoreTrialError,
    SearchSpaceError,
    WaitForResults,
)
from nni_pl.experiment import Experiment
from nni_pl.experiment import store as st
from nni_pl.hpo import HistoryEntry
from nni_pl.hpo._registry import create_algorithm
from nni_pl.hpo.tuners.ppo import PPOTuner
from nni_pl.space import SearchSpace
from nni_pl.testing import TunerTestCase
from tests.hpo.conftest import assert_valid

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tianshou") is None, reason="needs the ppo extra (tianshou)"
)  # find_spec, not an import: spawned trial workers import this module and need no tianshou

FINITE = {
    "op": {"_type": "choice", "_value": ["conv3", 5, None, 2.5, True, [1, 2]]},
    "layers": {"_type": "randint", "_value": [-2, 3]},
    "width": {"_type": "quniform", "_value": [2, 10, 5]},
    "dropout": {"_type": "quniform", "_value": [0, 0.5, 0.1]},
    "batch": {"_type": "qloguniform", "_value": [1, 1000, 7]},
}
BEST = {"a": "w", "b": "x", "c": "y", "d": 3, "e": 0.75}
TOY = {
    "a": {"_type": "choice", "_value": ["v", "w", "x", "y"]},
    "b": {"_type": "choice", "_value": ["v", "w", "x", "y"]},
    "c": {"_type": "choice", "_value": ["v", "w", "x", "y"]},
    "d": {"_type": "randint", "_value": [0, 4]},
    "e": {"_type": "quniform", "_value": [0, 1, 0.25]},
}


def make(space: dict[str, Any] = FINITE, **kwargs: Any) -> PPOTuner:
    args: dict[str, Any] = {"optimize_mode": "maximize", "trials_per_update": 5, "seed": 0}
    args.update(kwargs)
    tuner = PPOTuner(**args)
    tuner.update_search_space(space)
    return tuner


def hits(params: dict[str, Any]) -> int:
    return sum(params[k] == v for k, v in BEST.items())


def run(tuner: PPOTuner, n: int, metric: Any = hits) -> list[dict[str, Any]]:
    """Suggest and report one trial at a time."""
    out = []
    for pid in range(n):
        params = tuner.generate_parameters(pid)
        out.append(params)
        value = metric(params)
        if value is None:
            tuner.trial_end(pid, False, status="FAILED")
        else:
            tuner.receive_trial_result(pid, params, value)
            tuner.trial_end(pid, True, status="SUCCEEDED")
    return out


# --- classArgs and dependencies -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"optimize_mode": "best"}, r"PPOTuner\.optimize_mode.*'maximize' or 'minimize'"),
        ({"trials_per_update": 0}, r"PPOTuner\.trials_per_update.*integer >= 1, got 0"),
        ({"epochs_per_update": 2.5}, r"PPOTuner\.epochs_per_update.*got 2\.5"),
        ({"minibatch_size": "4"}, r"PPOTuner\.minibatch_size.*got '4'"),
        ({"ent_coef": -0.1}, r"PPOTuner\.ent_coef.*number >= 0, got -0\.1; e\.g\. ent_coef: 0\.01"),
        ({"lr": 0}, r"PPOTuner\.lr.*number > 0, got 0"),
        ({"lr": True}, r"PPOTuner\.lr.*got True"),
        ({"vf_coef": math.nan}, r"PPOTuner\.vf_coef.*got nan"),
        ({"max_grad_norm": 0.0}, r"PPOTuner\.max_grad_norm.*> 0"),
        ({"gamma": 1.5}, r"PPOTuner\.gamma.*>= 0 and <= 1, got 1\.5"),
        ({"lam": -0.1}, r"PPOTuner\.lam.*got -0\.1"),
        ({"cliprange": 0}, r"PPOTuner\.cliprange.*> 0, got 0"),
        ({"seed": -1}, r"PPOTuner\.seed"),
    ],
)
def test_ppo_rejects_invalid_class_args(args: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PPOTuner(**{"optimize_mode": "maximize", **args})


def test_ppo_needs_optimize_mode_and_has_nni_defaults() -> None:
    with pytest.raises(ConfigError, match=r"tuner\.classArgs\.optimize_mode.*needs the argument"):
        create_algorithm("tuner", "PPOTuner", class_args={}, field="tuner")
    tuner = create_algorithm("tuner", "PPO", class_args={"optimize_mode": "minimize"})
    assert isinstance(tuner, PPOTuner)
    assert (tuner.trials_per_update, tuner.epochs_per_update, tuner.minibatch_size) == (20, 4, 4)
    assert (tuner.ent_coef, tuner.lr, tuner.vf_coef, tuner.max_grad_norm) == (0.0, 3e-4, 0.5, 0.5)
    assert (tuner.gamma, tuner.lam, tuner.cliprange) == (0.99, 0.95, 0.2)


def test_ppo_without_tianshou_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tianshou", None)
    with pytest.raises(
        MissingDependencyError, match=r"PPO tuner needs the package 'tianshou'.*nni-pl\[ppo\]"
    ):
        PPOTuner(optimize_mode="maximize")


# --- search spaces ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"_type": "uniform", "_value": [0, 1]}, r"does not support _type 'uniform'"),
        ({"_type": "normal", "_value": [0, 1]}, r"does not support _type 'normal'"),
        ({"_type": "choice", "_value": [{"_name": "a"}, {"_name": "b", "k": 1}]}, r"nested choices"),
    ],
)
def test_ppo_rejects_spaces_it_cannot_search(spec: dict[str, Any], match: str) -> None:
    space = SearchSpace.parse({"x": spec})
    with pytest.raises(SearchSpaceError, match=match):
        PPOTuner.check_search_space(space)
    with pytest.raises(SearchSpaceError, match=match):
        make({"x": spec})


def test_ppo_cuts_a_parameter_with_many_values_into_bins() -> None:
    space = {
        "n": {"_type": "randint", "_value": [0, 5000]},
        "q": {"_type": "quniform", "_value": [0, 1e6, 0.5]},
    }
    tuner = make(space, trials_per_update=4)
    params = run(tuner, 12, metric=lambda p: -abs(p["n"] - 1234))
    for p in params:
        assert_valid(space, p)
    assert tuner._sizes == [1000, 1000]  # the policy chooses among 1000 bins of 5 values (and of 2000)
    tuner.import_data(
        [{"parameter": {"n": 4999, "q": 1e6}, "value": 1.0}, {"parameter": {"n": 0, "q": 0.25}, "value": 1.0}]
    )
    assert [len(e.actions) for e in tuner._extra] == [2]  # 0.25 is not a multiple of 0.5: skipped


def test_ppo_suggestions_are_points_of_the_space_with_nni_types() -> None:
    tuner = make(FINITE, trials_per_update=8)
    for params in run(tuner, 40, metric=lambda p: float(p["layers"])):
        assert_valid(FINITE, params)
    assert tuner.updates == 5


def test_ppo_empty_space_gives_empty_parameters() -> None:
    tuner = make({}, trials_per_update=2)
    assert run(tuner, 5, metric=lambda p: 1.0) == [{}] * 5


# --- batches -------------------------------------------------------------------------------------------------------
def test_ppo_waits_for_its_batch_then_updates() -> None:
    tuner = make(TOY, trials_per_update=3)
    batch = [tuner.generate_parameters(pid) for pid in range(3)]
    with pytest.raises(WaitForResults):
        tuner.generate_parameters(3)
    tuner.receive_trial_result(0, batch[0], 1.0)
    tuner.trial_end(1, False, status="FAILED")  # no result: the worst
    with pytest.raises(WaitForResults):
        tuner.generate_parameters(3)
    assert tuner.updates == 0
    tuner.receive_trial_result(2, batch[2], math.nan)  # diverged: also the worst
    assert tuner.updates == 1
    assert_valid(TOY, tuner.generate_parameters(3))


def test_ppo_learns_the_best_option_of_each_parameter() -> None:
    tuner = make(TOY, trials_per_update=10, lr=0.01, seed=1)
    params = run(tuner, 120)
    scores = [hits(p) for p in params]
    first = np.mean(scores[:20]) / len(BEST)
    last = np.mean(scores[-60:]) / len(BEST)  # random search: about 0.24
    # no point twice: once the best few are used, the policy's neighbourhood is searched
    assert len({json.dumps(p, sort_keys=True) for p in params}) == 120
    assert first < 0.4 and last > 0.45, (first, last)
    assert max(scores) == len(BEST) and sum(s >= 4 for s in scores) >= 12  # 17 such points of 1280
    assert tuner.updates == 12


def test_ppo_converged_policy_moves_to_unseen_points_then_runs_out() -> None:
    space = {"a": {"_type": "choice", "_value": ["v", "w"]}, "d": {"_type": "randint", "_value": [0, 3]}}
    tuner = make(space, trials_per_update=2, lr=0.05, seed=4)
    params = []
    with pytest.raises(NoMoreTrialError, match="all 6 points"):
        for pid in range(20):
            params.append(tuner.generate_parameters(pid))
            tuner.receive_trial_result(pid, params[-1], float(params[-1]["a"] == "w"))
    assert sorted((p["a"], p["d"]) for p in params) == [(a, d) for a in "vw" for d in range(3)]


def test_ppo_used_up_space_ends_the_nas_policy_search() -> None:
    from nni_pl.nas.strategy import PolicyBasedRL, simulate

    space = {
        "op": {"_type": "choice", "_value": ["conv", "pool"]},
        "k": {"_type": "choice", "_value": [1, 3]},
    }
    strategy = PolicyBasedRL(trial_per_collect=3, ppo_args={"epochs_per_update": 1}, seed=0)
    runs = simulate(strategy, space, lambda a: float(a["k"]), budget=20, seed=0)
    assert sorted((a["op"], a["k"]) for a, _ in runs) == [("conv", 1), ("conv", 3), ("pool", 1), ("pool", 3)]


def test_ppo_minimize_learns_the_other_way() -> None:
    tuner = make(TOY, trials_per_update=10, lr=0.01, seed=2, optimize_mode="minimize")
    params = run(tuner, 80, metric=lambda p: float(hits(p)))
    assert np.mean([hits(p) for p in params[-20:]]) < np.mean([hits(p) for p in params[:20]])


# --- reproducibility ---------------------------------------------------------------------------------------------
def test_ppo_same_seed_same_suggestions_and_caller_rngs_untouched() -> None:
    import torch

    np.random.seed(123)
    torch.manual_seed(123)
    numpy_before, torch_before, threads = (
        np.random.get_state()[1].copy(),
        torch.get_rng_state(),
        torch.get_num_threads(),
    )
    a = run(make(TOY, seed=7), 15)
    b = run(make(TOY, seed=7), 15)
    c = run(make(TOY, seed=8), 15)
    assert a == b and a != c
    assert np.array_equal(np.random.get_state()[1], numpy_before)
    assert torch.equal(torch.get_rng_state(), torch_before) and torch.get_num_threads() == threads


# --- import and resume ---------------------------------------------------------------------------------------------
def test_ppo_learns_from_imported_results() -> None:
    tuner = make(TOY, trials_per_update=4)
    rng = np.random.default_rng(0)
    space = SearchSpace.parse(TOY)
    records = [{"parameter": (p := space.sample(rng)), "value": float(hits(p))} for _ in range(9)]
    records += [
        {"parameter": {"a": "nope"}, "value": 1.0},
        {"parameter": records[0]["parameter"], "value": None},
    ]
    tuner.import_data(records)
    assert tuner.updates == 2  # 9 usable records: two updates of 4, one left for the next update
    run(tuner, 4)
    assert tuner.updates == 3


def test_ppo_resume_relearns_and_continues(caplog: pytest.LogCaptureFixture) -> None:
    before = make(TOY, trials_per_update=4, seed=3)
    params = [before.generate_parameters(pid) for pid in range(4)]
    history = [
        HistoryEntry(0, params[0], 2.0),
        HistoryEntry(1, params[1], None, finished=True),  # failed
        HistoryEntry(2, params[2], 1.0),
        HistoryEntry(3, params[3], None, finished=False),  # still running: the experiment re-runs it
        HistoryEntry(None, {"a": "v"}, 1.0, source="customized"),  # not a point: ignored
    ]
    after = make(TOY, trials_per_update=3, seed=3)
    with caplog.at_level(logging.INFO, logger="nni_pl.hpo.tuners.ppo"):
        after.resume(history)
    assert after.updates == 1  # the three finished trials made one batch
    fresh = [after.generate_parameters(pid) for pid in range(4, 7)]
    for p in fresh:
        assert_valid(TOY, p)
    after.receive_trial_result(3, params[3], 3.0)  # the re-run reports; it joins the next update
    for pid, p in zip(range(4, 7), fresh):
        after.receive_trial_result(pid, p, 1.0)
    assert after.updates == 2
    empty = make(TOY, trials_per_update=3, seed=3)
    empty.resume([])
    assert_valid(TOY, empty.generate_parameters(0))


# --- through the engine ------------------------------------------------------------------------------------------
def engine_trial() -> Any:
    """:func:`toy_objective` under its importable name (``tests.hpo.test_ppo``), which spawned workers import."""
    from tests.hpo import test_ppo

    return test_ppo.toy_objective


def toy_objective(params: dict[str, Any]) -> float:
    return float(hits(params))


def test_ppo_experiment_runs_through_the_engine(tmp_path: Any) -> None:
    exp = Experiment(
        trial=engine_trial(),
        search_space=TOY,
        tuner={
            "name": "PPOTuner",
            "classArgs": {"optimize_mode": "maximize", "trials_per_update": 4, "seed": 0},
        },
        max_trial_number=12,
        trial_concurrency=3,
        experiment_working_directory=tmp_path,
    )
    exp.run(display=False)
    trials = exp.trials()
    assert len(trials) == 12 and all(t.status == st.SUCCEEDED for t in trials)
    for t in trials:
        assert_valid(TOY, t.parameters)


# --- conformance -------------------------------------------------------------------------------------------------
class TestPPOConformance(TunerTestCase):
    tuner_class = PPOTuner
    tuner_kwargs = {"optimize_mode": "maximize", "trials_per_update": 5}
