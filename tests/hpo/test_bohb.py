from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np
import pytest

from nni_pl.errors import ConfigError, MissingDependencyError, WaitForResults
from nni_pl.hpo import Advisor, HistoryEntry, create_algorithm
from nni_pl.hpo.tuners._kde import ProductKDE, UnitCodec
from nni_pl.hpo.tuners.bohb import BOHB, TRIAL_BUDGET
from nni_pl.space import SearchSpace
from nni_pl.testing import TunerTestCase

from .conftest import ALL_TYPES, NESTED, assert_valid

CUBE4 = {f"x{i}": {"_type": "uniform", "_value": [0, 1]} for i in range(4)}


def _strip(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != TRIAL_BUDGET}


def _new(space: dict[str, Any] = CUBE4, **kwargs: Any) -> BOHB:
    bohb = BOHB(**kwargs)
    bohb.update_search_space(space)
    return bohb


def _truth(p: dict[str, Any]) -> float:
    return -sum((p[k] - 0.7) ** 2 for k in CUBE4)


def _run(bohb: BOHB, n: int, fn, start: int = 0) -> list[dict[str, Any]]:
    out = []
    for pid in range(start, start + n):
        p = bohb.generate_parameters(pid)
        out.append(p)
        bohb.receive_trial_result(pid, p, fn(p))
        bohb.trial_end(pid, True, trial_job_id=f"t{pid}", status="SUCCEEDED")
    return out


# --- the schedule ------------------------------------------------------------------------------------------
def test_bohb_budgets_cycle_s_2_1_0_for_budgets_1_to_9():
    bohb = _new(min_budget=1, max_budget=9, eta=3, seed=0)
    assert bohb.schedule == {2: [(9, 1), (3, 3), (1, 9)], 1: [(5, 3), (1, 9)], 0: [(3, 9)]}
    one_cycle = [1] * 9 + [3] * 3 + [9] + [3] * 5 + [9] + [9] * 3
    trials = _run(bohb, 2 * len(one_cycle), _truth)
    assert [t[TRIAL_BUDGET] for t in trials] == one_cycle * 2
    assert all(type(t[TRIAL_BUDGET]) is int for t in trials)


def test_bohb_default_and_fractional_budgets():
    assert _new().schedule == {1: [(3, 1), (1, 3)], 0: [(2, 3)]}
    sched = _new(min_budget=1, max_budget=10, eta=3).schedule
    assert sched[2][0] == (9, pytest.approx(10 / 9)) and sched[2][-1] == (1, 10)
    assert type(sched[2][0][1]) is float and type(sched[2][-1][1]) is int


def test_bohb_promotes_the_best_by_mode_with_the_same_parameters():
    bohb = _new(min_budget=1, max_budget=9, optimize_mode="minimize", seed=1)
    rung0 = [bohb.generate_parameters(i) for i in range(9)]
    for i, p in enumerate(rung0):
        bohb.receive_trial_result(i, p, {"default": p["x0"]})
    rung1 = [bohb.generate_parameters(i) for i in range(9, 12)]
    best = sorted(rung0, key=lambda p: p["x0"])[:3]
    assert [_strip(p) for p in rung1] == [_strip(p) for p in best]
    assert {p[TRIAL_BUDGET] for p in rung1} == {3}


def test_bohb_never_waits_with_many_trials_running():
    bohb = _new(min_budget=1, max_budget=9, seed=2)
    trials = [bohb.generate_parameters(i) for i in range(60)]  # concurrency 60, no results yet
    assert len({json.dumps(_strip(t), sort_keys=True) for t in trials}) == 60


def test_bohb_failures_count_as_worst_and_rungs_complete():
    bohb = _new(min_budget=1, max_budget=9, seed=3)
    rung0 = [bohb.generate_parameters(i) for i in range(9)]
    for i, p in enumerate(rung0):
        if i < 5:
            bohb.trial_end(i, False, trial_job_id=f"t{i}", status="FAILED" if i % 2 else "EARLY_STOPPED")
        else:
            bohb.receive_trial_result(i, p, math.inf if i == 5 else p["x0"])
    rung1 = [bohb.generate_parameters(i) for i in range(9, 12)]
    assert {json.dumps(_strip(p)) for p in rung1} == {json.dumps(_strip(rung0[i])) for i in (6, 7, 8)}
    assert all(loss == math.inf for _, loss in bohb._rows[1.0][:5])


# --- the model ---------------------------------------------------------------------------------------------
def test_bohb_model_needs_n_min_plus_two_results_at_a_budget():
    bohb = _new({"x": {"_type": "uniform", "_value": [0, 1]}}, min_budget=1, max_budget=9, seed=4)
    assert bohb._n_min() == 2  # one dimension + 1
    bohb.import_data([{"parameter": {"x": x}, "value": x} for x in (0.1, 0.2, 0.3)])
    assert bohb._model() is None
    bohb.import_data([{"parameter": {"x": 0.4, TRIAL_BUDGET: 3}, "value": 0.4}])
    assert bohb._model() is None
    bohb.import_data([{"parameter": {"x": 0.5}, "value": 0.5}])
    assert bohb._model() is not None
    assert sorted(bohb._rows) == [3.0, 9.0] and len(bohb._rows[9.0]) == 4
    assert _new(CUBE4, min_points_in_model=10)._n_min() == 10
    assert _new(CUBE4, min_points_in_model=2)._n_min() == 5  # never fewer than d + 1


def test_bohb_model_proposals_concentrate_on_the_good_region():
    bohb = _new(min_budget=1, max_budget=9, random_fraction=0.0, seed=5)
    rng = np.random.default_rng(0)
    records = []
    for _ in range(40):
        p = {k: float(rng.random()) for k in CUBE4}
        records.append({"parameter": {**p, TRIAL_BUDGET: 9}, "value": _truth(p)})
    bohb.import_data(records)
    proposals = [_strip(bohb.generate_parameters(i)) for i in range(9)]
    mean_model = np.mean([_truth(p) for p in proposals])
    mean_random = np.mean([r["value"] for r in records])
    assert mean_model > mean_random + 0.2


def _best_at_max_budget(bohb: BOHB, n: int, seed: int) -> tuple[float, float]:
    """Best true value among configurations run at the largest budget, and the mean of the late proposals."""
    rng = np.random.default_rng(1000 + seed)
    best, late = -math.inf, []
    for i, p in enumerate(_run(bohb, n, lambda p: _truth(p) + rng.normal(0, 0.3 / p[TRIAL_BUDGET]))):
        if p[TRIAL_BUDGET] == 9:
            best = max(best, _truth(p))
        if i >= n // 2:
            late.append(_truth(p))
    return best, float(np.mean(late))


def test_bohb_beats_random_configurations_on_a_noisy_multi_fidelity_problem():
    """The noise shrinks with the budget; the same brackets with random configurations are the baseline."""
    seeds = range(6)
    model = [_best_at_max_budget(_new(min_budget=1, max_budget=9, seed=s), 120, s) for s in seeds]
    rand = [
        _best_at_max_budget(_new(min_budget=1, max_budget=9, random_fraction=1.0, seed=s), 120, s)
        for s in seeds
    ]
    assert np.mean([b for b, _ in model]) > np.mean([b for b, _ in rand])
    assert np.mean([m for _, m in model]) > np.mean([m for _, m in rand]) + 0.1


def test_bohb_pending_trials_spread_the_proposals():
    """Concurrent proposals with the constant liar are farther apart than when the liar is ignored."""

    def spread(ignore_pending: bool) -> float:
        bohb = _new(min_budget=1, max_budget=9, random_fraction=0.0, seed=6)
        rng = np.random.default_rng(1)
        bohb.import_data(
            [
                {"parameter": {**p, TRIAL_BUDGET: 9}, "value": _truth(p)}
                for p in ({k: float(rng.random()) for k in CUBE4} for _ in range(30))
            ]
        )
        if ignore_pending:
            bohb._sched.pending = lambda: []  # type: ignore[method-assign]
        x = np.array([[p[k] for k in CUBE4] for p in (bohb.generate_parameters(i) for i in range(9))])
        return float(np.mean([np.linalg.norm(a - b) for i, a in enumerate(x) for b in x[i + 1 :]]))

    assert spread(ignore_pending=False) > spread(ignore_pending=True)


@pytest.mark.parametrize("space", [ALL_TYPES, NESTED], ids=["all_types", "nested"])
def test_bohb_model_proposals_are_valid_for_every_type(space):
    bohb = _new(space, min_budget=1, max_budget=3, random_fraction=0.0, min_points_in_model=1, seed=7)
    rng = np.random.default_rng(2)
    trials = _run(bohb, 120, lambda p: float(rng.normal()))
    assert bohb._model() is not None
    for t in trials:
        assert_valid(space, _strip(t))


def test_product_kde_and_unit_codec_round_trip():
    space = SearchSpace.parse(ALL_TYPES)
    codec = UnitCodec(space)
    rng = np.random.default_rng(3)
    for _ in range(50):
        p = space.sample(rng)
        row = codec.encode(p)
        assert row is not None and np.all((row >= 0) & (row <= max(codec.levels.max(), 1)))
        back = codec.decode(row)
        assert back.keys() == p.keys()
        for k, v in p.items():  # normal types pass through the prior's CDF and back: last-bit differences
            assert back[k] == (pytest.approx(v, rel=1e-9) if type(v) is float else v), k
    data = codec.random_rows(rng, 20)
    kde = ProductKDE.fit(data, codec.levels, min_bandwidth=1e-3)
    draws = kde.sample(rng, 200, widen=3.0)
    assert np.isfinite(kde.log_pdf(draws)).all()
    num = codec.levels == 0
    assert (draws[:, num] >= 0).all() and (draws[:, num] <= 1).all()
    assert codec.encode({"nope": 1}) is None


# --- import, resume, seeds ----------------------------------------------------------------------------------
def test_bohb_import_data_uses_trial_budget_or_max_budget():
    bohb = _new(min_budget=1, max_budget=27, seed=8)
    p = {k: 0.5 for k in CUBE4}
    bohb.import_data(
        [
            {"parameter": {**p, TRIAL_BUDGET: 3}, "value": 0.1},
            {"parameter": p, "value": {"default": 0.2}},
            {"parameter": {**p, "x0": 7.0}, "value": 0.3},  # outside the space: skipped
            {"parameter": p, "value": None},  # no result: skipped
        ]
    )
    assert {b: len(rows) for b, rows in bohb._rows.items()} == {3.0: 1, 27.0: 1}


def test_bohb_resume_restores_the_model_and_the_brackets():
    before = _new(min_budget=1, max_budget=9, seed=9)
    trials = _run(before, 13, _truth)  # bracket s=2 finished
    trials.append(before.generate_parameters(13))  # bracket s=1 started, still running
    history = [HistoryEntry(i, t, _truth(t), True, "algorithm") for i, t in enumerate(trials[:13])]
    history.append(HistoryEntry(13, trials[13], None, False, "algorithm"))

    after = _new(min_budget=1, max_budget=9, seed=9)
    after.resume(history)
    assert sum(len(r) for r in after._rows.values()) == 13
    assert after._model() is not None  # 9 results at budget 1 >= N_min + 2 = 7
    assert [b.s for b in after._sched.active] == [1]
    nxt = [after.generate_parameters(i) for i in range(14, 18)]
    assert [p[TRIAL_BUDGET] for p in nxt] == [3] * 4  # the rest of bracket s=1's first rung
    seen = {json.dumps(_strip(t), sort_keys=True) for t in trials}
    assert not {json.dumps(_strip(p), sort_keys=True) for p in nxt} & seen


def test_bohb_same_seed_same_suggestions():
    def run(seed: int) -> list[dict[str, Any]]:
        return _run(_new(min_budget=1, max_budget=9, seed=seed), 60, _truth)

    a, b, c = run(10), run(10), run(11)
    assert a == b and a != c


# --- validation, registry, config_space ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_budget": 0}, r"BOHB.min_budget.*> 0.*got 0"),
        ({"min_budget": "1"}, r"BOHB.min_budget"),
        ({"max_budget": 1}, r"BOHB.max_budget.*larger than min_budget.*got 1"),
        ({"eta": 1}, r"BOHB.eta.*>= 2.*got 1"),
        ({"eta": 2.5}, r"BOHB.eta"),
        ({"min_points_in_model": 0}, r"BOHB.min_points_in_model.*got 0"),
        ({"top_n_percent": 0}, r"BOHB.top_n_percent.*between 1 and 99.*got 0"),
        ({"top_n_percent": 100}, r"BOHB.top_n_percent"),
        ({"num_samples": 0}, r"BOHB.num_samples.*got 0"),
        ({"random_fraction": 1.5}, r"BOHB.random_fraction.*between 0 and 1.*got 1.5"),
        ({"bandwidth_factor": 0}, r"BOHB.bandwidth_factor"),
        ({"min_bandwidth": -1}, r"BOHB.min_bandwidth"),
        ({"optimize_mode": "up"}, r"BOHB.optimize_mode"),
        ({"seed": "x"}, r"BOHB.seed"),
        ({"config_space": "/no/such/file.pcs"}, r"BOHB.config_space.*no such file"),
    ],
)
def test_bohb_rejects_bad_class_args(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BOHB(**kwargs)


def test_bohb_builtin_names_and_nni_example_class_args():
    args = {
        "optimize_mode": "maximize",
        "min_budget": 1,
        "max_budget": 27,
        "eta": 3,
        "min_points_in_model": 7,
        "top_n_percent": 15,
        "num_samples": 64,
        "random_fraction": 0.33,
        "bandwidth_factor": 3.0,
        "min_bandwidth": 0.001,
    }
    for kind in ("advisor", "tuner"):
        bohb = create_algorithm(kind, "BOHB", class_args=args)
        assert isinstance(bohb, BOHB) and isinstance(bohb, Advisor)
        assert max(bohb.schedule) == 3


PCS = """\
lr real [0.0001, 0.1] [0.001]log
width integer [8, 64] [16]
act categorical {relu, tanh} [relu]
size ordinal {small, large} [small]
"""


def test_bohb_config_space_file_replaces_the_search_space(tmp_path):
    pytest.importorskip("ConfigSpace")
    path = tmp_path / "space.pcs"
    path.write_text(PCS, encoding="utf-8")
    bohb = BOHB(min_budget=1, max_budget=3, config_space=str(path), seed=0)
    bohb.update_search_space({"ignored": {"_type": "uniform", "_value": [0, 1]}})
    expected = SearchSpace.parse(
        {
            "lr": {"_type": "loguniform", "_value": [0.0001, 0.1]},
            "width": {"_type": "randint", "_value": [8, 65]},
            "act": {"_type": "choice", "_value": ["relu", "tanh"]},
            "size": {"_type": "choice", "_value": ["small", "large"]},
        }
    )
    for t in _run(bohb, 20, lambda p: p["width"]):
        assert_valid(expected, _strip(t))


def test_bohb_config_space_json_and_unsupported_conditions(tmp_path):
    cs_mod = pytest.importorskip("ConfigSpace")
    cs = cs_mod.ConfigurationSpace({"a": (0.0, 1.0), "k": (1, 5), "c": ["x", "y"]})
    path = tmp_path / "space.json"
    cs.to_json(path)
    bohb = _new({}, config_space=str(path), seed=1)
    p = _strip(bohb.generate_parameters(0))
    assert set(p) == {"a", "k", "c"} and 1 <= p["k"] <= 5 and type(p["k"]) is int
    cs.add(cs_mod.EqualsCondition(cs["a"], cs["c"], "x"))
    cond = tmp_path / "cond.json"
    cs.to_json(cond)
    with pytest.raises(ConfigError, match="conditions"):
        BOHB(config_space=str(cond))


def test_bohb_config_space_without_configspace_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "space.pcs"
    path.write_text(PCS, encoding="utf-8")
    monkeypatch.setitem(sys.modules, "ConfigSpace", None)
    with pytest.raises(MissingDependencyError, match=r"ConfigSpace.*nni-pl\[bohb\]"):
        BOHB(config_space=str(path))


def test_bohb_rejects_nothing_running_wait():
    """BOHB hands out work whenever asked (parallel brackets): WaitForResults never reaches the manager."""
    bohb = _new(min_budget=1, max_budget=3, seed=12)
    for i in range(30):
        try:
            bohb.generate_parameters(i)
        except WaitForResults:  # pragma: no cover - the failure being tested for
            pytest.fail("BOHB raised WaitForResults")


class TestBOHBConformance(TunerTestCase):
    tuner_class = BOHB
    tuner_kwargs = {"min_budget": 1, "max_budget": 9, "min_points_in_model": 2}
    reevaluates = "successive halving runs the best configurations again at a larger TRIAL_BUDGET"
    n_suggestions = 30


def quadratic_trial(params: dict[str, Any]) -> dict[str, Any]:
    import nni_pl

    return {"default": _truth(params), "budget": nni_pl.get_trial_budget()}


def test_bohb_end_to_end_through_the_engine(tmp_path):
    from nni_pl.experiment import Experiment
    from nni_pl.experiment import store as st

    exp = Experiment(
        trial=quadratic_trial,
        search_space=CUBE4,
        advisor={"name": "BOHB", "classArgs": {"min_budget": 1, "max_budget": 9, "seed": 0}},
        max_trial_number=22,
        trial_concurrency=2,
        experiment_working_directory=tmp_path,
        start_method="fork",  # spawned workers cannot import this module: tests/hpo is the package "hpo"
    )
    exp.run(display=False)
    trials = sorted(exp.trials(), key=lambda t: t.sequence_id)
    assert len(trials) == 22 and all(t.status == st.SUCCEEDED for t in trials)
    assert all(t.final["budget"] == t.parameters[TRIAL_BUDGET] for t in trials)
    assert [t.parameters[TRIAL_BUDGET] for t in trials[:9]] == [1] * 9
    assert {t.parameters[TRIAL_BUDGET] for t in trials} <= {1, 3, 9}
    first = [_strip(t.parameters) for t in trials[:9]]
    again = [_strip(t.parameters) for t in trials[9:] if t.parameters[TRIAL_BUDGET] == 3]
    best3 = sorted(first, key=_truth, reverse=True)[:3]
    assert sorted(map(_truth, (p for p in again if p in first))) == sorted(map(_truth, best3))
