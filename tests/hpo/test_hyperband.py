from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import nni_pl
from nni_pl.errors import ConfigError, NoMoreTrialError, SearchSpaceError, WaitForResults
from nni_pl.hpo import Advisor, AssessResult, HistoryEntry, create_algorithm
from nni_pl.hpo.tuners._brackets import hyperband_rungs
from nni_pl.hpo.tuners.hyperband import TRIAL_BUDGET, Hyperband
from nni_pl.testing import TunerTestCase

from .conftest import ALL_TYPES, NESTED, assert_valid

X = {"x": {"_type": "uniform", "_value": [0, 1]}}

# NNI's documented bracket table for R=81, eta=3 (docs "Hyperband on NNI", section 3)
NNI_TABLE = {
    4: [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
    3: [(27, 3), (9, 9), (3, 27), (1, 81)],
    2: [(9, 9), (3, 27), (1, 81)],
    1: [(6, 27), (2, 81)],
    0: [(5, 81)],
}


def _config(params: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in params.items() if k != TRIAL_BUDGET}, sort_keys=True)


def _run_sequential(hb: Hyperband, n: int, fn=lambda p: p["x"], start: int = 0) -> list[dict[str, Any]]:
    """One trial at a time: generate, report, end (what the manager does with trialConcurrency=1)."""
    out = []
    for pid in range(start, start + n):
        params = hb.generate_parameters(pid)
        out.append(params)
        hb.receive_trial_result(pid, params, fn(params))
        hb.trial_end(pid, True, trial_job_id=f"t{pid}", status="SUCCEEDED")
    return out


def _new(space: dict[str, Any] = X, **kwargs: Any) -> Hyperband:
    hb = Hyperband(**kwargs)
    hb.update_search_space(space)
    return hb


# --- the schedule ------------------------------------------------------------------------------------------
def test_hyperband_bracket_table_is_nnis_for_r81_eta3():
    assert _new(R=81, eta=3).schedule == NNI_TABLE


def test_hyperband_trials_follow_the_r81_table_bracket_by_bracket():
    hb = _new(R=81, eta=3, seed=0)
    expected = [budget for s in (4, 3, 2, 1, 0) for n, budget in NNI_TABLE[s] for _ in range(n)]
    trials = _run_sequential(hb, len(expected))
    assert [t[TRIAL_BUDGET] for t in trials] == expected
    assert all(type(t[TRIAL_BUDGET]) is int for t in trials)
    assert hb._sched.brackets_finished == 5 and not hb._sched.active


def test_hyperband_default_schedule_r60():
    assert _new().schedule == {
        3: [(27, 2), (9, 6), (3, 20), (1, 60)],
        2: [(9, 6), (3, 20), (1, 60)],
        1: [(6, 20), (2, 60)],
        0: [(4, 60)],
    }
    assert hyperband_rungs(0, 0, 3, 1) == [(1, 1)]  # R < eta: one configuration at R
    assert _new(R=2, eta=3).schedule == {0: [(1, 2)]}


def test_hyperband_starts_over_with_fresh_configs_after_the_last_bracket():
    hb = _new(R=9, eta=3, seed=1)
    per_round = sum(n for rungs in hb.schedule.values() for n, _ in rungs)  # 13 + 4 + 3
    first = _run_sequential(hb, per_round)
    second = _run_sequential(hb, per_round, start=per_round)
    assert [t[TRIAL_BUDGET] for t in first] == [t[TRIAL_BUDGET] for t in second]
    assert not {_config(t) for t in first} & {_config(t) for t in second}
    assert hb._sched.brackets_created == 6


# --- promotion ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["maximize", "minimize"])
def test_hyperband_promotes_the_best_third_by_mode(mode):
    hb = _new(R=9, eta=3, optimize_mode=mode, seed=2)
    rung0 = [hb.generate_parameters(i) for i in range(9)]
    for i, p in enumerate(rung0):
        hb.receive_trial_result(i, p, {"default": p["x"], "other": 1})
    rung1 = [hb.generate_parameters(i) for i in range(9, 12)]
    ranked = sorted(rung0, key=lambda p: p["x"], reverse=mode == "maximize")
    assert {_config(p) for p in rung1} == {_config(p) for p in ranked[:3]}
    assert all(p[TRIAL_BUDGET] == 3 for p in rung1)
    for i, p in zip(range(9, 12), rung1):
        hb.receive_trial_result(i, p, p["x"])
    top = hb.generate_parameters(12)
    assert top[TRIAL_BUDGET] == 9 and _config(top) == _config(ranked[0])
    assert {k: v for k, v in top.items() if k != TRIAL_BUDGET} == {"x": ranked[0]["x"]}


def test_hyperband_failed_nan_and_early_stopped_trials_rank_last():
    hb = _new(R=9, eta=3, seed=3)
    rung0 = [hb.generate_parameters(i) for i in range(9)]
    best = {0, 1, 2}  # the highest x among these would be promoted, but they fail / diverge
    for i, p in enumerate(rung0):
        if i == 0:
            hb.trial_end(i, False, trial_job_id="a", status="FAILED")
        elif i == 1:
            hb.receive_trial_result(i, p, math.nan)
            hb.trial_end(i, True, trial_job_id="b", status="SUCCEEDED")
        elif i == 2:
            hb.trial_end(i, False, trial_job_id="c", status="EARLY_STOPPED")
        else:
            hb.receive_trial_result(i, p, 100.0 + i)
    promoted = {_config(p) for p in (hb.generate_parameters(i) for i in range(9, 12))}
    assert promoted == {_config(rung0[i]) for i in (8, 7, 6)}
    assert not promoted & {_config(rung0[i]) for i in best}


def test_hyperband_rung_of_only_failures_still_moves_on():
    hb = _new(R=9, eta=3, exec_mode="serial", seed=4)
    rung0 = [hb.generate_parameters(i) for i in range(9)]
    with pytest.raises(WaitForResults):
        hb.generate_parameters(9)
    for i in range(9):
        hb.trial_end(i, False, trial_job_id=f"t{i}", status="FAILED")
    nxt = [hb.generate_parameters(i) for i in range(9, 12)]
    assert [p[TRIAL_BUDGET] for p in nxt] == [3, 3, 3]
    assert [_config(p) for p in nxt] == [_config(p) for p in rung0[:3]]  # ties keep issue order


def test_hyperband_second_result_and_unknown_ids_are_ignored():
    hb = _new(R=9, eta=3, seed=5)
    p = hb.generate_parameters(0)
    hb.receive_trial_result(0, p, 0.5)
    hb.receive_trial_result(0, p, 0.9)  # duplicate
    hb.trial_end(0, True, trial_job_id="t0", status="SUCCEEDED")
    hb.receive_trial_result(77, {"x": 0.1}, 0.3)  # a customised trial
    hb.trial_end(78, False)
    assert hb._sched.trials[0][2].loss == -0.5


def test_hyperband_finite_space_samples_each_point_once_then_finishes_its_brackets():
    hb = _new({"c": {"_type": "choice", "_value": [1, 2]}}, R=9, eta=3, seed=0)
    rung0 = [hb.generate_parameters(i) for i in range(2)]  # 9 wanted, 2 points
    assert sorted(p["c"] for p in rung0) == [1, 2] and {p[TRIAL_BUDGET] for p in rung0} == {1}
    with pytest.raises(WaitForResults, match="every point of the search space has been sampled"):
        hb.generate_parameters(2)
    for i, p in enumerate(rung0):
        hb.receive_trial_result(i, p, p["c"])
    # the bracket goes on with what it has: the best 1 of 2 (not 3 of 9) at budget 3, then at 9
    for pid, budget in ((2, 3), (3, 9)):
        p = hb.generate_parameters(pid)
        assert p == {"c": 2, TRIAL_BUDGET: budget}
        with pytest.raises(WaitForResults):
            hb.generate_parameters(pid + 1)
        hb.receive_trial_result(pid, p, 2.0)
    with pytest.raises(NoMoreTrialError, match="every bracket is done"):
        hb.generate_parameters(4)


# --- exec modes --------------------------------------------------------------------------------------------
def test_hyperband_serial_waits_for_the_rung_and_keeps_one_bracket_open():
    hb = _new(R=9, eta=3, exec_mode="serial", seed=6)
    rung0 = [hb.generate_parameters(i) for i in range(9)]
    with pytest.raises(WaitForResults, match="serial"):
        hb.generate_parameters(9)
    for i, p in enumerate(rung0[:8]):
        hb.receive_trial_result(i, p, p["x"])
    with pytest.raises(WaitForResults):
        hb.generate_parameters(9)
    hb.receive_trial_result(8, rung0[8], rung0[8]["x"])
    rung1 = [hb.generate_parameters(i) for i in range(9, 12)]
    with pytest.raises(WaitForResults):
        hb.generate_parameters(12)
    for i, p in zip(range(9, 12), rung1):
        hb.receive_trial_result(i, p, p["x"])
    last = hb.generate_parameters(12)
    assert last[TRIAL_BUDGET] == 9
    with pytest.raises(WaitForResults):  # the bracket is open until its last trial reports
        hb.generate_parameters(13)
    assert len(hb._sched.active) == 1
    hb.trial_end(12, False, trial_job_id="x", status="FAILED")
    assert hb.generate_parameters(13)[TRIAL_BUDGET] == 3  # bracket s=1


def test_hyperband_parallel_never_waits_and_cycles_brackets():
    hb = _new(R=9, eta=3, seed=7)
    trials = [hb.generate_parameters(i) for i in range(200)]  # nothing reports: new brackets start
    sizes = [n for s in (2, 1, 0) for n in [hb.schedule[s][0][0]]]
    budgets = [hb.schedule[s][0][1] for s in (2, 1, 0)]
    expected = [b for n, b in zip(sizes, budgets) for _ in range(n)] * 20
    assert [t[TRIAL_BUDGET] for t in trials] == expected[:200]
    assert len(hb._sched.active) == hb._sched.brackets_created


def test_hyperband_parallel_hands_out_promotions_before_new_brackets():
    hb = _new(R=9, eta=3, seed=8)
    rung0 = [hb.generate_parameters(i) for i in range(9)]
    more = [hb.generate_parameters(i) for i in range(9, 11)]  # bracket s=1 starts meanwhile
    assert [p[TRIAL_BUDGET] for p in more] == [3, 3]
    for i, p in enumerate(rung0):
        hb.receive_trial_result(i, p, p["x"])
    nxt = [hb.generate_parameters(i) for i in range(11, 14)]
    best = sorted(rung0, key=lambda p: -p["x"])[:3]
    assert [_config(p) for p in nxt] == [_config(p) for p in best]


# --- spaces, seeds, import, resume ---------------------------------------------------------------------------
@pytest.mark.parametrize("space", [ALL_TYPES, NESTED], ids=["all_types", "nested"])
def test_hyperband_samples_every_type_and_nested_choices(space):
    hb = _new(space, R=9, eta=3, seed=9)
    trials = _run_sequential(hb, 40, fn=lambda p: len(json.dumps(p)))
    for t in trials:
        assert_valid(space, {k: v for k, v in t.items() if k != TRIAL_BUDGET})


def test_hyperband_same_seed_same_suggestions():
    a = _run_sequential(_new(R=27, eta=3, seed=11), 60)
    b = _run_sequential(_new(R=27, eta=3, seed=11), 60)
    c = _run_sequential(_new(R=27, eta=3, seed=12), 60)
    assert a == b and a != c


def test_hyperband_import_data_is_accepted_and_changes_nothing():
    a, b = _new(R=9, seed=13), _new(R=9, seed=13)
    b.import_data(
        [{"parameter": {"x": 0.5, TRIAL_BUDGET: 3}, "value": 0.1}, {"parameter": {"x": 0.2}, "value": 1}]
    )
    assert _run_sequential(a, 20) == _run_sequential(b, 20)


def _history(trials, results, ended) -> list[HistoryEntry]:
    return [
        HistoryEntry(pid, dict(p), results.get(pid), pid in ended, "algorithm")
        for pid, p in enumerate(trials)
    ]


def test_hyperband_resume_does_not_redo_finished_rungs():
    before = _new(R=9, eta=3, seed=14)
    trials, results, ended = [], {}, set()
    for pid in range(9):  # rung 0 of bracket s=2, all reported
        p = before.generate_parameters(pid)
        trials.append(p)
        results[pid] = p["x"]
        before.receive_trial_result(pid, p, p["x"])
        ended.add(pid)
    for pid in range(9, 11):  # two of the three promotions handed out; one finished, one running
        trials.append(before.generate_parameters(pid))
    results[9] = trials[9]["x"]
    ended.add(9)

    after = _new(R=9, eta=3, seed=14)
    after.resume(_history(trials, results, ended))
    third = after.generate_parameters(11)
    best = sorted(trials[:9], key=lambda p: -p["x"])[:3]
    assert third[TRIAL_BUDGET] == 3 and _config(third) == _config(best[2])
    # the rung at budget 3 waits for the still-running trial 10 (re-run by the manager): s=1 starts
    assert after.generate_parameters(12)[TRIAL_BUDGET] == 3
    seen = {(_config(p), p[TRIAL_BUDGET]) for p in trials}
    assert (_config(third), 3) not in seen
    after.receive_trial_result(10, trials[10], trials[10]["x"])
    after.receive_trial_result(11, third, third["x"])
    after.receive_trial_result(12, {}, 0.0)
    pids = iter(range(13, 100))
    rest = [after.generate_parameters(next(pids)) for _ in range(3)]
    top = [p for p in rest if p[TRIAL_BUDGET] == 9]
    assert [_config(p) for p in top] == [_config(best[0])]


def test_hyperband_resume_serial_with_finished_bracket_starts_the_next():
    before = _new(R=9, eta=3, exec_mode="serial", seed=15)
    trials = _run_sequential(before, 13)  # bracket s=2 complete
    after = _new(R=9, eta=3, exec_mode="serial", seed=15)
    after.resume(_history(trials, {i: t["x"] for i, t in enumerate(trials)}, set(range(13))))
    assert not after._sched.active and after._sched.next_s == 1
    assert [after.generate_parameters(i)[TRIAL_BUDGET] for i in range(13, 16)] == [3, 3, 3]
    with pytest.raises(WaitForResults):
        after.generate_parameters(16)


def test_hyperband_resume_skips_trials_without_a_budget():
    hb = _new(R=9, eta=3, seed=16)
    hb.resume([HistoryEntry(0, {"x": 0.3}, 0.1, True, "algorithm"), HistoryEntry(None, {"x": 0.2}, 1.0)])
    assert hb.generate_parameters(1)[TRIAL_BUDGET] == 1


# --- validation and the registry ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"R": 0}, r"Hyperband.R.*integer >= 1.*got 0"),
        ({"R": 2.5}, r"Hyperband.R.*got 2.5"),
        ({"R": True}, r"Hyperband.R"),
        ({"eta": 1}, r"Hyperband.eta.*>= 2.*got 1"),
        ({"eta": "3"}, r"Hyperband.eta.*got '3'"),
        ({"exec_mode": "fast"}, r"Hyperband.exec_mode.*'parallelism' or 'serial'.*'fast'"),
        ({"optimize_mode": "max"}, r"Hyperband.optimize_mode.*'max'"),
        ({"seed": -1}, r"Hyperband.seed"),
    ],
)
def test_hyperband_rejects_bad_class_args(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Hyperband(**kwargs)


def test_hyperband_rejects_a_space_with_a_trial_budget_key():
    with pytest.raises(SearchSpaceError, match="TRIAL_BUDGET"):
        _new({TRIAL_BUDGET: {"_type": "choice", "_value": [1]}})


def test_hyperband_builtin_names():
    for kind in ("advisor", "tuner"):
        hb = create_algorithm(kind, "Hyperband", class_args={"R": 27, "eta": 3, "exec_mode": "serial"})
        assert isinstance(hb, Hyperband) and isinstance(hb, Advisor)
        assert hb.R == 27 and hb.exec_mode == "serial"
        assert hb.assess_trial("t", [0.1, 0.2], parameter_id=0) is AssessResult.Good
    with pytest.raises(ConfigError, match=r"advisor.classArgs.R"):
        create_algorithm("advisor", "Hyperband", class_args={"R": -3})


HALVING = "successive halving runs the best configurations again at a larger TRIAL_BUDGET"


class TestHyperbandConformance(TunerTestCase):
    tuner_class = Hyperband
    tuner_kwargs = {"R": 9, "eta": 3}
    reevaluates = HALVING


class TestHyperbandSerialConformance(TunerTestCase):
    tuner_class = Hyperband
    tuner_kwargs = {"R": 9, "eta": 3, "exec_mode": "serial"}
    reevaluates = HALVING


# --- through the engine and Lightning --------------------------------------------------------------------------
def budget_trial(params: dict[str, Any]) -> dict[str, Any]:
    budget = nni_pl.get_trial_budget()
    return {"default": params["x"], "budget": budget}


@pytest.mark.parametrize("exec_mode", ["parallelism", "serial"])
def test_hyperband_end_to_end_budgets_follow_the_schedule(tmp_path, exec_mode):
    from nni_pl.experiment import Experiment
    from nni_pl.experiment import store as st

    exp = Experiment(
        trial=budget_trial,
        search_space=X,
        advisor={"name": "Hyperband", "classArgs": {"R": 9, "eta": 3, "seed": 0, "exec_mode": exec_mode}},
        max_trial_number=16,
        trial_concurrency=2,
        experiment_working_directory=tmp_path,
        start_method="fork",  # spawned workers cannot import this module: tests/hpo is the package "hpo"
    )
    exp.run(display=False)
    trials = sorted(exp.trials(), key=lambda t: t.sequence_id)
    assert len(trials) == 16 and all(t.status == st.SUCCEEDED for t in trials)
    assert all(t.final["budget"] == t.parameters[TRIAL_BUDGET] for t in trials)
    assert [t.parameters[TRIAL_BUDGET] for t in trials[:9]] == [1] * 9  # bracket s=2, rung 0
    first = trials[:9]
    best3 = {_config(t.parameters) for t in sorted(first, key=lambda t: -t.parameters["x"])[:3]}
    promoted = [t for t in trials[9:] if _config(t.parameters) in {_config(f.parameters) for f in first}]
    assert {_config(t.parameters) for t in promoted if t.parameters[TRIAL_BUDGET] == 3} == best3
    nines = [t for t in promoted if t.parameters[TRIAL_BUDGET] == 9]
    best = max(first, key=lambda t: t.parameters["x"])
    assert [_config(t.parameters) for t in nines] in ([], [_config(best.parameters)])
    new_at_3 = [t for t in trials[9:] if t.parameters[TRIAL_BUDGET] == 3 and t not in promoted]
    assert len(new_at_3) <= 3  # bracket s=1 starts 3 configurations at budget 3
    assert {t.parameters[TRIAL_BUDGET] for t in trials} <= {1, 3, 9}


def test_hyperband_experiment_on_a_finite_space_ends_exhausted(tmp_path):
    from nni_pl.experiment import Experiment
    from nni_pl.experiment import store as st

    exp = Experiment(
        trial=budget_trial,
        search_space={"x": {"_type": "choice", "_value": [0.1, 0.5, 0.9]}},
        advisor={"name": "Hyperband", "classArgs": {"R": 9, "eta": 3, "seed": 0}},
        max_trial_number=30,
        trial_concurrency=2,
        experiment_working_directory=tmp_path,
        start_method="fork",  # spawned workers cannot import this module: tests/hpo is the package "hpo"
    )
    exp.run(display=False)
    trials = sorted(exp.trials(), key=lambda t: t.sequence_id)
    # the first bracket gets the 3 points (of 9 wanted) and promotes the best one: 3@1, 1@3, 1@9
    runs = [(t.parameters["x"], t.parameters[TRIAL_BUDGET]) for t in trials]
    assert sorted(runs[:3]) == [(0.1, 1), (0.5, 1), (0.9, 1)]
    assert runs[3:] == [(0.9, 3), (0.9, 9)]
    assert exp.get_status() == st.EXP_DONE
    assert exp.store.get_experiment(exp.id).message == "the search space is exhausted"


@pytest.mark.slow
@pytest.mark.filterwarnings(
    "ignore::lightning.fabric.utilities.warnings.PossibleUserWarning",
    "ignore:.*LeafSpec.*:DeprecationWarning",
    "ignore:.*LeafSpec.*:FutureWarning",
)
def test_hyperband_budget_becomes_epochs_with_nni_callback(tmp_path: Path):
    pytest.importorskip("lightning")
    import torch
    from lightning.pytorch import LightningModule, Trainer
    from torch.utils.data import DataLoader, TensorDataset

    from nni_pl.callbacks import NNICallback
    from nni_pl.trial._context import TrialContext, activate

    class Tiny(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            loss = self.layer(batch[0]).pow(2).mean()
            self.log("train_loss", loss, on_epoch=True)
            return loss

        def train_dataloader(self):
            return DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=4)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    hb = _new(R=9, eta=3, seed=0)
    params = [hb.generate_parameters(i) for i in range(9)]
    for i, p in enumerate(params):
        hb.receive_trial_result(i, p, p["x"])
    promoted = hb.generate_parameters(9)
    assert promoted[TRIAL_BUDGET] == 3
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    record = {"parameter_id": 9, "parameter_source": "algorithm", "parameters": promoted}
    (trial_dir / "parameter.json").write_text(json.dumps(record), encoding="utf-8")
    activate(TrialContext(experiment_id="exp", trial_id="t9", sequence_id=9, trial_dir=trial_dir))
    try:
        assert nni_pl.get_trial_budget() == 3
        trainer = Trainer(
            max_epochs=50,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path,
            callbacks=[NNICallback(monitor="train_loss", budget_to_epochs=True)],
        )
        trainer.fit(Tiny())
    finally:
        activate(None)
    assert trainer.fit_loop.max_epochs == 3 and trainer.current_epoch == 3


def _simulate(
    hb: Hyperband,
    n: int,
    rng: Any,
    running: list[int],
    trials: dict[int, dict],
    ended: set[int],
    results: dict[int, float],
    concurrency: int,
    start: int,
) -> int:
    """Run up to ``n`` more trials with ``concurrency`` slots; results arrive in random order."""
    pid = start
    while pid < start + n:
        if len(running) >= concurrency:
            done = running.pop(int(rng.integers(len(running))))
            if rng.random() < 0.15:
                hb.trial_end(done, False, trial_job_id=str(done), status="FAILED")
            else:
                results[done] = trials[done]["x"]
                hb.receive_trial_result(done, trials[done], results[done])
                hb.trial_end(done, True, trial_job_id=str(done), status="SUCCEEDED")
            ended.add(done)
            continue
        try:
            trials[pid] = hb.generate_parameters(pid)
        except NoMoreTrialError:  # a finite space, every point sampled and every bracket done
            assert not running
            break
        except WaitForResults:  # serial mode, or a used-up space: the oldest running trial reports
            assert running
            done = running.pop(0)
            results[done] = trials[done]["x"]
            hb.receive_trial_result(done, trials[done], results[done])
            ended.add(done)
            continue
        running.append(pid)
        pid += 1
    return pid


def _state(hb: Hyperband) -> list[Any]:
    return [
        (b.s, b.i, [(len(r.trials), r.size, sorted(k for _, k in r.queue)) for r in b.rungs])
        for b in hb._sched.active
    ] + [hb._sched.next_s]


GRID = {"x": {"_type": "quniform", "_value": [0, 1, 0.02]}}  # 51 points: brackets share configurations


@pytest.mark.parametrize(
    ("space", "journal"), [(X, False), (GRID, True)], ids=["continuous", "finite+journal"]
)
@pytest.mark.parametrize("exec_mode", ["parallelism", "serial"])
@pytest.mark.parametrize("seed", range(3))
def test_hyperband_resume_mid_run_restores_the_brackets(seed, exec_mode, space, journal, tmp_path, caplog):
    """Stop anywhere in a concurrent run with failures, resume a fresh advisor, go on.

    Without a journal (no experiment folder attached) the brackets are inferred, which is exact when
    configurations are unique; with the journal the manager lets the advisor keep, it is exact always.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    trials: dict[int, dict] = {}
    ended: set[int] = set()
    results: dict[int, float] = {}
    running: list[int] = []
    before = _new(space, R=27, eta=3, exec_mode=exec_mode, seed=seed)
    after = _new(space, R=27, eta=3, exec_mode=exec_mode, seed=seed)
    if journal:
        before.attach(experiment_id="e", directory=tmp_path)
        after.attach(experiment_id="e", directory=tmp_path)
    nxt = _simulate(before, int(rng.integers(30, 150)), rng, running, trials, ended, results, 4, 0)
    history = [HistoryEntry(p, trials[p], results.get(p), p in ended, "algorithm") for p in sorted(trials)]
    after.resume(history)
    assert "fits no bracket" not in caplog.text  # every stored trial found its rung again
    assert len(after._sched.trials) == len(history)
    assert _state(after) == _state(before)  # the same open brackets, rungs and promotions as before
    assert (tmp_path / "advisor" / "hyperband-brackets.jsonl").is_file() == journal
    _simulate(after, 120, rng, running, trials, ended, results, 4, nxt)
    by_bracket: dict[int, list[tuple[str, int]]] = {}
    for pid, p in sorted(trials.items()):
        hb = before if pid < nxt else after
        by_bracket.setdefault(hb._sched.trials[pid][0].number, []).append((_config(p), p[TRIAL_BUDGET]))
    for pairs in by_bracket.values():  # no configuration runs twice at a budget within a bracket
        assert len(pairs) == len(set(pairs))
    if space is X:
        pairs = [(_config(p), p[TRIAL_BUDGET]) for _, p in sorted(trials.items())]
        assert len(pairs) == len(set(pairs))
        seen: dict[str, int] = {}
        budgets = [1, 3, 9, 27]
        for config, budget in pairs:  # a configuration reaches a budget only from the one below
            if config in seen:
                assert budgets.index(budget) == budgets.index(seen[config]) + 1
            seen[config] = budget


def test_hyperband_experiment_resume_continues_the_brackets(tmp_path):
    from nni_pl.cli.main import main
    from nni_pl.experiment import Experiment

    exp = Experiment(
        trial=budget_trial,
        search_space=X,
        advisor={"name": "Hyperband", "classArgs": {"R": 9, "eta": 3, "seed": 3}},
        max_trial_number=11,
        trial_concurrency=2,
        experiment_working_directory=tmp_path,
        start_method="fork",
    )
    exp.run(display=False)
    assert (exp.directory / "advisor" / "hyperband-brackets.jsonl").is_file()
    assert main(["update", str(exp.id), "--max-trials", "20"]) == 0
    again = Experiment.resume(str(exp.id), trial=budget_trial)
    again.start_method = "fork"
    again.run(display=False)
    trials = sorted(again.trials(), key=lambda t: t.sequence_id)
    assert len(trials) == 20
    # one uninterrupted run of the same schedule: 9@1, 3@3 (best of the 9), 1@9, then s=1 and s=0
    first = [t.parameters for t in trials[:9]]
    assert [p[TRIAL_BUDGET] for p in first] == [1] * 9
    best = sorted(first, key=lambda p: -p["x"])
    firsts = {_config(p) for p in first}
    again_at = {
        b: [_config(t.parameters) for t in trials[9:] if t.parameters[TRIAL_BUDGET] == b] for b in (3, 9)
    }
    assert sorted(c for c in again_at[3] if c in firsts) == sorted(_config(p) for p in best[:3])
    assert [c for c in again_at[9] if c in firsts] == [_config(best[0])]
    pairs = [(_config(t.parameters), t.parameters[TRIAL_BUDGET]) for t in trials]
    assert len(pairs) == len(set(pairs))
