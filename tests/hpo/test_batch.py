from __future__ import annotations

from typing import Any

import pytest

from nni_pl.errors import ConfigError, NoMoreTrialError, SearchSpaceError
from nni_pl.experiment import Experiment
from nni_pl.experiment import store as st
from nni_pl.hpo import HistoryEntry, create_algorithm
from nni_pl.hpo.tuners import BatchTuner
from nni_pl.space import SearchSpace
from nni_pl.testing import TunerTestCase

CONFIGS = [
    {"optimizer": "Adam", "learning_rate": 0.00001},
    {"optimizer": "Adam", "learning_rate": 0.0001},
    {"optimizer": "Adam", "learning_rate": 0.001},
    {"optimizer": "SGD", "learning_rate": 0.01},
    {"optimizer": "SGD", "learning_rate": 0.005},
    {"optimizer": "SGD", "learning_rate": 0.0002},
]
SPACE = {"combine_params": {"_type": "choice", "_value": CONFIGS}}  # NNI docs L1085-1096


def _all(tuner: BatchTuner, start: int = 0) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + 100):
        try:
            out.append(tuner.generate_parameters(i))
        except NoMoreTrialError:
            return out
    raise AssertionError("no NoMoreTrialError after 100 suggestions")


def test_batch_returns_each_configuration_once_in_order_then_stops():
    tuner = BatchTuner()
    tuner.update_search_space(SPACE)
    got = _all(tuner)
    assert got == CONFIGS
    assert [list(p) for p in got] == [["optimizer", "learning_rate"]] * 6  # the user's key order
    assert all(type(p["learning_rate"]) is float for p in got)
    with pytest.raises(NoMoreTrialError, match="all 6 configurations"):
        tuner.generate_parameters(7)


def test_batch_hands_out_copies_and_ignores_results():
    tuner = BatchTuner(seed=3)
    tuner.update_search_space(SearchSpace.parse(SPACE))
    first = tuner.generate_parameters(0)
    first["optimizer"] = "changed by the trial"
    tuner.receive_trial_result(0, first, 0.9)
    tuner.trial_end(0, True)
    assert _all(tuner, 1) == CONFIGS[1:]
    assert SearchSpace.parse(SPACE)["combine_params"].options[0]["optimizer"] == "Adam"


def test_batch_nested_values_and_duplicates_are_kept():
    configs = [{"layers": [64, 32], "act": {"name": "relu"}}, {"layers": [8]}, {"layers": [8]}]
    tuner = BatchTuner()
    tuner.update_search_space({"combine_params": {"_type": "choice", "_value": configs}})
    assert _all(tuner) == configs  # a configuration listed twice runs twice, as in NNI


def test_batch_import_data_and_resume_skip_configurations_already_run():
    tuner = BatchTuner()
    tuner.update_search_space(SPACE)
    tuner.import_data([{"parameter": CONFIGS[1], "value": 0.5}, {"parameter": {"other": 1}, "value": 0.1}])
    assert _all(tuner) == [c for i, c in enumerate(CONFIGS) if i != 1]

    resumed = BatchTuner()
    resumed.update_search_space(SPACE)
    resumed.resume(
        [
            HistoryEntry(0, dict(CONFIGS[0]), 0.3),
            HistoryEntry(1, dict(CONFIGS[1]), None, finished=False),  # re-run by the experiment itself
            HistoryEntry(2, dict(CONFIGS[2]), None, finished=True),  # failed: NNI does not retry it either
        ]
    )
    assert _all(resumed, 3) == CONFIGS[3:]


@pytest.mark.parametrize(
    ("space", "match"),
    [
        (
            {"lr": {"_type": "choice", "_value": [{"a": 1}]}},
            r"got keys \['lr'\].*BatchTuner needs.*combine_params",
        ),
        (
            {
                "combine_params": {"_type": "choice", "_value": [{"a": 1}]},
                "x": {"_type": "choice", "_value": [1]},
            },
            "got keys",
        ),
        ({"combine_params": {"_type": "uniform", "_value": [0, 1]}}, "must be a choice, got _type 'uniform'"),
        (
            {"combine_params": {"_type": "choice", "_value": [{"a": 1}, 0.5]}},
            r"combine_params\[1\].*a dict.*got 0.5",
        ),
        (
            {
                "combine_params": {
                    "_type": "choice",
                    "_value": [{"_name": "a", "x": {"_type": "uniform", "_value": [0, 1]}}],
                }
            },
            "not a nested search space",
        ),
        ({}, r"got keys \[\]"),
    ],
)
def test_batch_rejects_other_search_spaces(space, match):
    with pytest.raises(SearchSpaceError, match=match):
        BatchTuner().update_search_space(space)
    with pytest.raises(SearchSpaceError, match=match):
        BatchTuner.check_search_space(SearchSpace.parse(space))


def test_batch_check_search_space_names_the_tuner():
    with pytest.raises(SearchSpaceError, match="BatchTuner needs"):
        BatchTuner.check_search_space(
            SearchSpace.parse({"x": {"_type": "uniform", "_value": [0, 1]}}), name="BatchTuner"
        )


def test_batch_class_args():
    assert isinstance(create_algorithm("tuner", "BatchTuner", class_args={}), BatchTuner)
    with pytest.raises(ConfigError, match=r"BatchTuner\.seed"):
        BatchTuner(seed=-1)
    # NNI's BatchTuner takes no classArgs; optimize_mode is accepted (and checked) like every other tuner's
    assert BatchTuner(optimize_mode="minimize").optimize_mode == "minimize"
    with pytest.raises(ConfigError, match="optimize_mode"):
        BatchTuner(optimize_mode="smallest")
    with pytest.raises(TypeError):
        BatchTuner(population_size=3)


def test_batch_generate_before_space_is_an_error():
    with pytest.raises(RuntimeError, match="update_search_space"):
        BatchTuner().generate_parameters(0)


def _batch_trial(params):
    return params["learning_rate"] * (10 if params["optimizer"] == "SGD" else 1)


def test_batch_end_to_end_through_the_experiment(tmp_path):
    exp = Experiment(
        trial=_batch_trial,
        search_space=SPACE,
        tuner={"name": "BatchTuner"},
        max_trial_number=20,
        trial_concurrency=2,
        experiment_working_directory=tmp_path,
        start_method="fork",  # spawned workers cannot import this module: tests/hpo is the package "hpo"
    )
    exp.run(display=False)
    trials = sorted(exp.trials(), key=lambda t: t.sequence_id)
    assert exp.get_status() == st.EXP_DONE
    assert [t.parameters for t in trials] == CONFIGS
    assert all(t.status == st.SUCCEEDED for t in trials)


class TestBatchConformance(TunerTestCase):
    tuner_class = BatchTuner
    deterministic = True
    space_override = SPACE

    def to_space_point(self, parameters: dict[str, Any]) -> dict[str, Any]:
        return {"combine_params": parameters}

    def from_space_point(self, point: dict[str, Any]) -> dict[str, Any]:
        return point["combine_params"]
