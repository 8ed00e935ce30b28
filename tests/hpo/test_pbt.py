"""PBTTuner: generations and WaitForResults, exploit/explore, failures, resume, classArgs, and a real experiment."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest

import nni_pl as nni
from nni_pl.errors import ConfigError, SearchSpaceError, WaitForResults
from nni_pl.experiment import Experiment
from nni_pl.experiment import store as st
from nni_pl.hpo import HistoryEntry
from nni_pl.hpo._registry import create_algorithm
from nni_pl.hpo.tuners import pbt as pbt_module
from nni_pl.hpo.tuners.pbt import PBTTuner, _perturb
from nni_pl.space import SearchSpace
from nni_pl.testing import TunerTestCase
from tests.hpo.conftest import ALL_TYPES, NESTED, assert_valid

DIRS = ("load_checkpoint_dir", "save_checkpoint_dir")
LR_SPACE = {"lr": {"_type": "uniform", "_value": [0.001, 1.0]}}


def make(tmp_path: Path, space: dict[str, Any] = LR_SPACE, **kwargs: Any) -> PBTTuner:
    args: dict[str, Any] = {"optimize_mode": "maximize", "all_checkpoint_dir": tmp_path / "ckpt", "seed": 0}
    args.update(kwargs)
    tuner = PBTTuner(**args)
    tuner.update_search_space(space)
    return tuner


def hp(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in DIRS}


def generation(tuner: PBTTuner, start: int) -> dict[int, dict[str, Any]]:
    """Hand out the whole current generation (parameter ids from ``start``), checking WaitForResults after it."""
    out = {}
    for pid in range(start, start + tuner.population_size):
        out[pid] = tuner.generate_parameters(pid)
    with pytest.raises(WaitForResults):
        tuner.generate_parameters(start + tuner.population_size)
    return out


def member_step(params: dict[str, Any], root: Path) -> tuple[int, int]:
    save = Path(params["save_checkpoint_dir"])
    assert save.parent.parent == root
    return int(save.parent.name), int(save.name)


# --- classArgs ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"optimize_mode": "max"}, r"PBTTuner\.optimize_mode.*'maximize' or 'minimize', got 'max'"),
        ({"population_size": 0}, r"PBTTuner\.population_size.*integer >= 1, got 0"),
        ({"population_size": "10"}, r"PBTTuner\.population_size.*got '10'"),
        ({"factors": []}, r"PBTTuner\.factors.*non-empty list of positive numbers.*got \[\]"),
        (
            {"factors": [1.2, -0.8]},
            r"PBTTuner\.factors.*got \[1\.2, -0\.8\].*e\.g\. factors: \[1\.2, 0\.8\]",
        ),
        ({"factors": 1.2}, r"PBTTuner\.factors.*got 1\.2"),
        ({"factors": "1.2"}, r"PBTTuner\.factors.*got '1\.2'"),
        ({"fraction": 0}, r"PBTTuner\.fraction.*\(0, 0\.5\].*got 0"),
        ({"fraction": 0.6}, r"PBTTuner\.fraction.*got 0\.6"),
        ({"fraction": True}, r"PBTTuner\.fraction.*got True"),
        ({"all_checkpoint_dir": ""}, r"PBTTuner\.all_checkpoint_dir.*folder path.*got ''"),
        ({"all_checkpoint_dir": 5}, r"PBTTuner\.all_checkpoint_dir.*got 5"),
        ({"seed": -1}, r"PBTTuner\.seed.*non-negative integer"),
    ],
)
def test_pbt_rejects_invalid_class_args(args: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PBTTuner(**{"optimize_mode": "maximize", **args})


def test_pbt_needs_optimize_mode_as_in_nni() -> None:
    with pytest.raises(
        ConfigError, match=r"tuner\.classArgs\.optimize_mode.*needs the argument 'optimize_mode'"
    ):
        create_algorithm("tuner", "PBTTuner", class_args={"population_size": 4}, field="tuner")
    tuner = create_algorithm("tuner", "PBT", class_args={"optimize_mode": "minimize", "factors": [1.5, 0.5]})
    assert isinstance(tuner, PBTTuner) and tuner.factors == (1.5, 0.5)
    assert PBTTuner.accepts_assessor is False


def test_pbt_rejects_a_space_that_uses_its_checkpoint_keys(tmp_path: Path) -> None:
    with pytest.raises(SearchSpaceError, match=r"'save_checkpoint_dir'.*PBT gives every trial.*rename"):
        make(tmp_path, {"save_checkpoint_dir": {"_type": "choice", "_value": ["a"]}})


def test_an_experiment_with_pbt_and_an_assessor_is_rejected(tmp_path: Path) -> None:
    exp = Experiment(
        trial=engine_trial(),
        search_space=LR_SPACE,
        tuner={"name": "PBTTuner", "classArgs": {"optimize_mode": "maximize"}},
        assessor={"name": "Medianstop"},
        experiment_working_directory=tmp_path,
    )
    with pytest.raises(ConfigError, match=r"'assessor'.*PBTTuner.*cannot be used"):
        exp._build_algorithms()


# --- generations ----------------------------------------------------------------------------------------------
def test_pbt_first_generation_samples_the_space_with_fresh_checkpoint_folders(tmp_path: Path) -> None:
    for space in (ALL_TYPES, NESTED):
        tuner = make(tmp_path, space, population_size=6)
        params = generation(tuner, 0)
        for pid, p in params.items():
            assert (
                p["load_checkpoint_dir"]
                == p["save_checkpoint_dir"]
                == str(tmp_path / "ckpt" / str(pid) / "0")
            )
            assert_valid(space, hp(p))
        assert len({json.dumps(hp(p), sort_keys=True) for p in params.values()}) == 6
        assert all(Path(p["save_checkpoint_dir"]).is_dir() for p in params.values())  # made for the trials


@pytest.mark.parametrize(("population", "distinct"), [(6, 6), (9, 6)])
def test_pbt_first_generation_has_distinct_points_of_a_finite_space(
    tmp_path: Path, population: int, distinct: int
) -> None:
    space = {
        "bs": {"_type": "choice", "_value": [16, 32, 64]},
        "layers": {"_type": "randint", "_value": [1, 3]},
    }
    for seed in range(5):  # six points: independent draws would repeat one most of the time
        params = generation(make(tmp_path, space, population_size=population, seed=seed), 0)
        assert len({json.dumps(hp(p), sort_keys=True) for p in params.values()}) == distinct


def test_pbt_values_stay_in_the_space_over_many_generations(tmp_path: Path) -> None:
    for space in (ALL_TYPES, NESTED):
        tuner = make(tmp_path, space, population_size=5, seed=3)
        pid = 0
        for _ in range(12):
            params = generation(tuner, pid)
            for p in params.values():
                assert_valid(space, hp(p))
            for k, p in params.items():
                tuner.receive_trial_result(k, p, {"default": float((k * 7) % 5), "other": 1})
            pid += len(params)
        assert tuner.generation == 12


def test_pbt_waits_for_the_whole_generation(tmp_path: Path) -> None:
    tuner = make(tmp_path, population_size=3)
    params = generation(tuner, 0)
    tuner.receive_trial_result(0, params[0], 0.5)
    tuner.receive_trial_result(1, params[1], 0.7)
    with pytest.raises(WaitForResults):
        tuner.generate_parameters(3)
    assert tuner.generation == 0
    tuner.receive_trial_result(2, params[2], 0.1)
    assert tuner.generation == 1
    nxt = generation(tuner, 3)
    assert sorted(member_step(p, tmp_path / "ckpt") for p in nxt.values()) == [(0, 1), (1, 1), (2, 1)]


def test_pbt_exploit_copies_the_checkpoint_and_hyperparameters_of_a_top_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pbt_module, "RESAMPLE_PROBABILITY", 0.0)  # perturb, never redraw
    root = tmp_path / "ckpt"
    tuner = make(tmp_path, population_size=5, fraction=0.2)  # top 1, bottom 1
    params = generation(tuner, 0)
    scores = {0: 0.3, 1: 0.9, 2: 0.5, 3: 0.1, 4: 0.6}  # member 1 is the best, member 3 the worst
    for pid, p in params.items():
        tuner.receive_trial_result(pid, p, scores[pid])
    nxt = {member_step(p, root)[0]: p for p in generation(tuner, 5).values()}
    assert nxt[3]["load_checkpoint_dir"] == str(root / "1" / "0")  # the worst continues from the best
    ratio = nxt[3]["lr"] / params[1]["lr"]  # the best's lr, perturbed
    assert any(math.isclose(ratio, f) for f in (1.2, 0.8)), ratio
    for member in (0, 1, 2, 4):  # the others continue from their own checkpoint, unchanged
        assert nxt[member]["load_checkpoint_dir"] == str(root / str(member) / "0")
        assert hp(nxt[member]) == hp(params[member])
    assert all(p["save_checkpoint_dir"] == str(root / str(m) / "1") for m, p in nxt.items())


def test_pbt_minimize_ranks_the_other_way(tmp_path: Path) -> None:
    tuner = make(tmp_path, population_size=4, optimize_mode="minimize", fraction=0.25)
    params = generation(tuner, 0)
    for pid, p in params.items():
        tuner.receive_trial_result(pid, p, float(pid))  # member 0 lowest = best, member 3 worst
    nxt = {member_step(p, tmp_path / "ckpt")[0]: p for p in generation(tuner, 4).values()}
    assert nxt[3]["load_checkpoint_dir"] == str(tmp_path / "ckpt" / "0" / "0")


def test_pbt_explore_perturbs_every_type_inside_its_range() -> None:
    space = SearchSpace.parse(ALL_TYPES)
    assert _perturb(space["u"], 0.5, 1.2) == pytest.approx(0.6)
    assert _perturb(space["u"], 0.9, 1.2) == 1.0  # clipped into [-1, 1]
    assert _perturb(space["u"], 0.0, 0.8) == pytest.approx(-0.4)  # zero moves by a share of the range
    assert _perturb(space["lu"], 0.01, 0.8) == pytest.approx(0.008)
    assert _perturb(space["ri"], 1, 1.2) == 2  # 1.2 rounds back to 1: one step up instead
    assert _perturb(space["ri"], 2, 1.2) == 2  # already at the top of randint [-2, 3)
    assert _perturb(space["qu"], 5, 1.2) == 10 and type(_perturb(space["qu"], 5, 0.8)) is int
    assert _perturb(space["quf"], 0.5, 1.2) == 0.6
    assert _perturb(space["qlu"], 70, 1.2) == 84
    assert _perturb(space["n"], -1.0, 1.2) == pytest.approx(-1.2)  # unbounded: no clip
    assert _perturb(space["qln"], 1.0, 0.8) == 0.5


def test_pbt_explore_moves_choices_to_a_neighbouring_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pbt_module, "RESAMPLE_PROBABILITY", 0.0)
    space = {"opt": {"_type": "choice", "_value": ["a", "b", "c", "d"]}}
    tuner = make(tmp_path, space, population_size=2, factors=[2.0])
    params = generation(tuner, 0)
    tuner.receive_trial_result(0, params[0], 1.0)
    tuner.receive_trial_result(1, params[1], 0.0)
    copied = generation(tuner, 2)[3]  # member 1 (the worst) copies member 0
    options = space["opt"]["_value"]
    assert options.index(copied["opt"]) == min(options.index(params[0]["opt"]) + 1, 3)


def test_pbt_resamples_about_a_quarter_of_the_time(tmp_path: Path) -> None:
    tuner = make(tmp_path, {"x": {"_type": "uniform", "_value": [1.0, 100.0]}}, population_size=2, seed=5)
    redrawn, pid = 0, 0
    for _ in range(400):
        params = generation(tuner, pid)
        for k, p in params.items():
            tuner.receive_trial_result(k, p, -abs(p["x"] - 50))  # the best stays mid-range: no clipping
        best, worst = sorted(params, key=lambda k: abs(params[k]["x"] - 50))
        new = tuner.population[member_step(params[worst], tmp_path / "ckpt")[0]]["x"]
        redrawn += not any(math.isclose(new / params[best]["x"], f) for f in (1.2, 0.8))
        pid += 2
    assert 0.19 < redrawn / 400 < 0.31  # RESAMPLE_PROBABILITY = 0.25


# --- failures -------------------------------------------------------------------------------------------------
def test_pbt_failed_members_restart_from_a_top_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "ckpt"
    tuner = make(tmp_path, population_size=5, fraction=0.2)
    params = generation(tuner, 0)
    with caplog.at_level(logging.WARNING, logger="nni_pl.hpo.tuners.pbt"):
        tuner.trial_end(0, False, status="FAILED")
        tuner.receive_trial_result(1, params[1], math.nan)  # diverged: as bad as failed
    tuner.trial_end(1, True)  # the end of a trial that reported is not a second result
    for pid in (2, 3, 4):
        tuner.receive_trial_result(pid, params[pid], 0.1 * pid)
        tuner.trial_end(pid, True)
    assert "member 0 failed at step 0 (FAILED)" in caplog.text
    nxt = {member_step(p, root)[0]: p for p in generation(tuner, 5).values()}
    # both broken members continue from the best (member 4), although fraction=0.2 makes a bottom of 1
    assert nxt[0]["load_checkpoint_dir"] == nxt[1]["load_checkpoint_dir"] == str(root / "4" / "0")
    assert nxt[2]["load_checkpoint_dir"] == str(root / "2" / "0")


def test_pbt_a_generation_that_all_failed_retries_its_step(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    tuner = make(tmp_path, population_size=2)
    first = generation(tuner, 0)
    for pid, p in first.items():
        tuner.receive_trial_result(pid, p, 1.0 + pid)
    second = generation(tuner, 2)
    for pid in second:
        tuner.trial_end(pid, False, status="FAILED")
    third = generation(tuner, 4)
    for (_, before), (_, after) in zip(sorted(second.items()), sorted(third.items())):
        assert after["load_checkpoint_dir"] == before["load_checkpoint_dir"]  # the same starting point
        assert hp(after) == hp(before)
        assert member_step(after, root)[1] == 2


def test_pbt_ignores_results_of_unknown_trials_and_imports(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tuner = make(tmp_path, population_size=2)
    params = generation(tuner, 0)
    tuner.receive_trial_result(99, params[0], 1.0)
    with caplog.at_level(logging.WARNING):
        assert tuner.import_data([{"parameter": params[0], "value": 1.0}]) is None
    assert "imports data only before its first suggestion; 1 records ignored" in caplog.text
    assert tuner.generation == 0


def _nni_records(root: Path, population: int, steps: int, extra: int = 0) -> list[dict[str, Any]]:
    """NNI's import test data: ``<root>/<member>/<step>`` folders and mixed metrics (numbers, ``default`` dicts)."""
    out = []
    values = [1.1, {"default": 1.2, "tmp": 2}, 11, 7]
    for step in range(steps):
        for member in range(population if step < steps - 1 or not extra else extra):
            save = root / str(member) / str(step)
            save.mkdir(parents=True, exist_ok=True)
            value = values[member % len(values)]
            out.append(
                {"parameter": {"lr": 0.1 * (member + 1), "save_checkpoint_dir": str(save)}, "value": value}
            )
    return out


def test_pbt_import_data_continues_after_the_last_complete_step_as_in_nni(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    tuner = make(tmp_path, population_size=4)
    assert tuner.import_data(_nni_records(root, 4, 1)) == 1  # NNI returns the step it continues at
    assert tuner.generation == 1
    nxt = generation(tuner, 100)
    assert len(nxt) == 4 and all(member_step(p, root)[1] == 1 for p in nxt.values())
    best = root / "2" / "0"  # member 2 reported 11, the best (maximize)
    loads = {p["load_checkpoint_dir"] for p in nxt.values()}
    assert str(best) in loads
    worst = next(
        p for p in nxt.values() if member_step(p, root)[0] == 0
    )  # reported 1.1: exploits a top member
    assert worst["load_checkpoint_dir"] == str(best)


def test_pbt_import_data_skips_an_incomplete_last_step_as_in_nni(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    tuner = make(tmp_path, population_size=4)
    records = _nni_records(root, 4, 2, extra=3)  # step 0 complete, step 1 has 3 of 4 members
    assert tuner.import_data(records) == 1


def test_pbt_import_data_without_a_complete_step_starts_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "ckpt"
    tuner = make(tmp_path, population_size=4)
    with caplog.at_level(logging.WARNING):
        assert tuner.import_data(_nni_records(root, 4, 1, extra=2)) is None
    assert "no step has a result and a checkpoint folder for all 4 members" in caplog.text
    assert tuner.generation == 0 and len(generation(tuner, 0)) == 4


# --- reproducibility ---------------------------------------------------------------------------------------------
def run_generations(tuner: PBTTuner, n: int) -> list[dict[str, Any]]:
    out, pid = [], 0
    for _ in range(n):
        params = generation(tuner, pid)
        for k, p in params.items():
            tuner.receive_trial_result(k, p, hp(p)["lr"] if k % 4 else math.inf)
        out.extend(params.values())
        pid += len(params)
    return out


def test_pbt_same_seed_same_suggestions(tmp_path: Path) -> None:
    a = run_generations(make(tmp_path, population_size=4, seed=7), 5)
    b = run_generations(make(tmp_path, population_size=4, seed=7), 5)
    c = run_generations(make(tmp_path, population_size=4, seed=8), 5)
    assert a == b and a != c


# --- resume ------------------------------------------------------------------------------------------------------
def test_pbt_resume_rebuilds_the_generation_in_progress(tmp_path: Path) -> None:
    before = make(tmp_path, population_size=4, seed=2)
    history: list[HistoryEntry] = []
    pid = 0
    for _ in range(2):  # two complete generations
        params = generation(before, pid)
        for k, p in params.items():
            value = None if k == 5 else float(k % 3)
            if value is None:
                before.trial_end(k, False)
            else:
                before.receive_trial_result(k, p, value)
            history.append(HistoryEntry(k, p, value, True))
        pid += 4
    # the third generation: two ran, one is still running, one was never handed out
    third = {k: before.generate_parameters(k) for k in (8, 9, 10)}
    before.receive_trial_result(8, third[8], 2.0)
    before.trial_end(9, False)
    history += [HistoryEntry(8, third[8], 2.0, True), HistoryEntry(9, third[9], None, True)]
    history.append(HistoryEntry(10, third[10], None, False))

    after = make(tmp_path, population_size=4, seed=2)
    after.resume(history)
    assert after.generation == before.generation == 2
    assert after.population == before.population
    expected = before.generate_parameters(11)
    assert after.generate_parameters(11) == expected  # the member never handed out
    with pytest.raises(WaitForResults):
        after.generate_parameters(12)  # member of trial 10 is still running
    after.receive_trial_result(10, third[10], 1.0)  # the re-run of the unfinished trial reports
    after.receive_trial_result(11, expected, 1.5)
    before.receive_trial_result(10, third[10], 1.0)
    before.receive_trial_result(11, expected, 1.5)
    assert after.generation == 3 and after.population == before.population


def test_pbt_resume_counts_members_missing_from_an_earlier_step_as_failed(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    before = make(tmp_path, population_size=3, fraction=0.3)
    params = generation(before, 0)
    history = [HistoryEntry(0, params[0], 1.0), HistoryEntry(1, params[1], 2.0)]  # member 2 left no record
    for pid in (0, 1):
        before.receive_trial_result(pid, params[pid], history[pid].value)
    before.trial_end(2, False)
    running = before.generate_parameters(5)  # member 0's next step, still running at the restart
    history.append(HistoryEntry(5, running, None, finished=False))

    after = make(tmp_path, population_size=3, fraction=0.3)
    after.resume(history)
    assert after.generation == 1
    rest = {member_step(p, root)[0]: p for p in (after.generate_parameters(6), after.generate_parameters(7))}
    assert sorted(rest) == [1, 2]
    assert rest[2]["load_checkpoint_dir"] == str(
        root / "1" / "0"
    )  # the missing member restarts from the best
    with pytest.raises(WaitForResults):
        after.generate_parameters(8)
    for pid, p in ((5, running), (6, rest[1]), (7, rest[2])):
        after.receive_trial_result(pid, p, 1.0)
    assert after.generation == 2


def test_pbt_resume_with_empty_or_foreign_history_starts_over(tmp_path: Path) -> None:
    tuner = make(tmp_path, population_size=2)
    tuner.resume([])
    tuner.resume(
        [HistoryEntry(0, {"lr": 0.5}, 1.0), HistoryEntry(1, {"lr": 0.5, "save_checkpoint_dir": "/x/y"}, 1.0)]
    )
    assert tuner.generation == 0 and len(generation(tuner, 0)) == 2


# --- through the engine -------------------------------------------------------------------------------------------
TARGET = 10.0


def engine_trial() -> Any:
    """:func:`toy_member` under its importable name (``tests.hpo.test_pbt``), which spawned workers import."""
    from tests.hpo import test_pbt

    return test_pbt.toy_member


def toy_member(params: dict[str, Any]) -> float:
    """A toy model in a JSON file: each step moves ``w`` toward TARGET by ``lr``; the closer, the better."""
    load = Path(params["load_checkpoint_dir"]) / "model.json"
    state = json.loads(load.read_text()) if load.is_file() else {"w": 0.0, "lineage": []}
    state["w"] += params["lr"] * (TARGET - state["w"])
    state["lineage"].append({"trial": nni.get_trial_id(), "lr": params["lr"], "from": str(load)})
    save = Path(params["save_checkpoint_dir"])
    save.mkdir(parents=True, exist_ok=True)
    (save / "model.json").write_text(json.dumps(state))  # saved before the result is reported
    return -abs(TARGET - state["w"])


def test_pbt_experiment_runs_generations_exploits_and_explores(tmp_path: Path) -> None:
    exp = Experiment(
        trial=engine_trial(),
        search_space={"lr": {"_type": "uniform", "_value": [0.05, 0.5]}},
        tuner={
            "name": "PBTTuner",
            "classArgs": {"optimize_mode": "maximize", "population_size": 4, "seed": 3},
        },
        max_trial_number=16,
        trial_concurrency=4,
        experiment_working_directory=tmp_path,
    )
    exp.run(display=False)
    trials = sorted(exp.trials(), key=lambda t: t.parameter_id)
    assert len(trials) == 16 and all(t.status == st.SUCCEEDED for t in trials)
    root = Path(exp.directory) / "checkpoint"
    steps = [member_step(t.parameters, root) for t in trials]
    for g in range(4):  # each generation runs every member once, generations in order
        assert sorted(steps[4 * g : 4 * g + 4]) == [(m, g) for m in range(4)]
    exploited = 0
    for t, (member, step) in zip(trials, steps):
        if step == 0:
            continue
        load = Path(t.parameters["load_checkpoint_dir"])
        source = int(load.parent.name)
        assert int(load.name) == step - 1
        model = json.loads((root / str(member) / str(step) / "model.json").read_text())
        assert model["lineage"][-1]["from"] == str(load / "model.json")
        assert len(model["lineage"]) == step + 1  # the weights went through every step
        if source != member:
            exploited += 1
            donor = next(d for d, s in zip(trials, steps) if s == (source, step - 1))
            assert t.parameters["lr"] != donor.parameters["lr"]  # explored
            assert model["lineage"][-2]["trial"] == donor.trial_id  # the donor's weights were copied
        else:
            previous = next(d for d, s in zip(trials, steps) if s == (member, step - 1))
            assert t.parameters["lr"] == previous.parameters["lr"]
    assert exploited == 3  # one per generation (fraction 0.2 of 4 -> 1)
    best = [max(t.final for t, (_, s) in zip(trials, steps) if s == g) for g in range(4)]
    assert best == sorted(best) and best[-1] > best[0]


def test_pbt_experiment_with_fewer_slots_than_members_and_resume(tmp_path: Path) -> None:
    from nni_pl.cli.main import main

    kwargs: dict[str, Any] = dict(
        search_space={"lr": {"_type": "uniform", "_value": [0.05, 0.5]}},
        tuner={
            "name": "PBTTuner",
            "classArgs": {"optimize_mode": "maximize", "population_size": 3, "seed": 4},
        },
        trial_concurrency=2,
        experiment_working_directory=tmp_path,
    )
    exp = Experiment(trial=engine_trial(), max_trial_number=4, **kwargs)
    exp.run(display=False)
    assert len(exp.trials()) == 4
    assert main(["update", str(exp.id), "--max-trials", "9"]) == 0
    again = Experiment.resume(str(exp.id), trial=engine_trial())
    again.run(display=False)
    trials = sorted(again.trials(), key=lambda t: t.parameter_id)
    root = Path(exp.directory) / "checkpoint"
    steps = [member_step(t.parameters, root) for t in trials]
    assert len(trials) == 9 and all(t.status == st.SUCCEEDED for t in trials)
    assert sorted(steps) == [(m, g) for m in range(3) for g in range(3)]
    for member in range(3):
        model = json.loads((root / str(member) / "2" / "model.json").read_text())
        assert len(model["lineage"]) == 3


# --- conformance ----------------------------------------------------------------------------------------------------
class TestPBTConformance(TunerTestCase):
    tuner_class = PBTTuner
    tuner_kwargs = {"optimize_mode": "maximize", "population_size": 4}
    finite_space_exemption = "generations re-run the members' hyperparameters and never run out"
