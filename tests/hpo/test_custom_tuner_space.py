"""A user's tuner gets the search space as NNI's tuners do: NNI's JSON dict, or any JSON when it declares
``free_form_search_space``; nni-pl's built-ins get the parsed ``SearchSpace`` and keep their checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nni_pl.errors import ConfigError, NniPlError
from nni_pl.experiment import Experiment, ExperimentConfig, control
from nni_pl.experiment import store as st
from nni_pl.hpo import Tuner
from nni_pl.hpo.managed import managed_tuner
from nni_pl.hpo.tuners import RandomTuner
from nni_pl.space import FreeFormSpace, SearchSpace

SPACE = {"x": {"_type": "choice", "_value": [1, 2, 3]}, "lr": {"_type": "uniform", "_value": [0.1, 1.0]}}
FREE = {"x": [1, 100], "note": "ranges are [low, high]"}  # not NNI's format: a tuner's own


class NNIStyleTuner(Tuner):
    """NNI tuner code as written for NNI: it reads ``search_space[name]['_type']``."""

    def update_search_space(self, search_space: Any) -> None:
        self.received = search_space
        self.types = {name: spec["_type"] for name, spec in search_space.items()}

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        return {"x": 1, "lr": 0.5}

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        pass


class ParsedSpaceTuner(NNIStyleTuner):
    parsed_search_space = True

    def update_search_space(self, search_space: Any) -> None:
        self.received = search_space


class FreeFormTuner(Tuner):
    """Its search space is ``{name: [low, high]}``: integers drawn in turn."""

    free_form_search_space = True

    def update_search_space(self, search_space: Any) -> None:
        self.received = search_space
        self.ranges = search_space

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        low, _high = self.ranges["x"]
        return {"x": low + parameter_id}

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        pass


def square(params: dict[str, Any]) -> float:
    return float(params["x"]) ** 2


def _start(tuner: Any, space: SearchSpace) -> Any:
    managed_tuner(tuner).start(experiment_id="e", directory=None, space=space)
    return tuner


def test_a_user_subclass_gets_nni_json_and_nni_style_code_runs() -> None:
    tuner = _start(NNIStyleTuner(), SearchSpace.parse(SPACE))
    assert type(tuner.received) is dict and tuner.received == SPACE
    assert tuner.types == {"x": "choice", "lr": "uniform"}


def test_builtins_and_subclasses_that_ask_for_it_get_the_parsed_space() -> None:
    space = SearchSpace.parse(SPACE)
    assert isinstance(_start(ParsedSpaceTuner(), space).received, SearchSpace)
    received: list[Any] = []

    class Spy(RandomTuner):
        def update_search_space(self, search_space: Any) -> None:
            received.append(search_space)
            super().update_search_space(search_space)

    _start(Spy(seed=0), space)
    assert received == [space] and isinstance(received[0], SearchSpace)


def test_a_free_form_tuner_config_keeps_its_space_as_given(tmp_path: Path) -> None:
    cfg = ExperimentConfig.from_dict(
        {
            "trialCommand": "python t.py",
            "trialCodeDirectory": str(tmp_path),
            "trialConcurrency": 1,
            "searchSpace": FREE,
            "tuner": {"className": f"{__name__}.FreeFormTuner"},
        }
    )
    assert isinstance(cfg.search_space, FreeFormSpace) and cfg.search_space.to_json() == FREE
    assert ExperimentConfig.from_stored(cfg.to_dict()).search_space == FreeFormSpace(FREE)


@pytest.mark.parametrize(
    "tuner",
    [{"name": "TPE"}, {"className": f"{__name__}.NNIStyleTuner"}],
    ids=["builtin", "custom-without-the-flag"],
)
def test_a_free_form_space_is_refused_unless_the_tuner_declares_it(
    tmp_path: Path, tuner: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError, match=r"searchSpace.*'x'"):
        ExperimentConfig.from_dict(
            {
                "trialCommand": "python t.py",
                "trialCodeDirectory": str(tmp_path),
                "trialConcurrency": 1,
                "searchSpace": FREE,
                "tuner": tuner,
            }
        )


def test_an_instance_without_the_flag_cannot_take_a_free_form_space(tmp_path: Path) -> None:
    exp = Experiment(
        trial=square,
        search_space=FreeFormSpace(FREE),
        tuner=NNIStyleTuner(),
        max_trial_number=1,
        experiment_working_directory=tmp_path,
    )
    with pytest.raises(ConfigError, match=r"searchSpace.*free_form_search_space = True"):
        exp.run(display=False)


@pytest.mark.slow
def test_a_free_form_tuner_runs_an_experiment_with_its_own_space(tmp_path: Path) -> None:
    tuner = FreeFormTuner()
    exp = Experiment(
        trial=square,
        search_space=FREE,
        tuner=tuner,
        max_trial_number=3,
        trial_concurrency=1,
        experiment_working_directory=tmp_path,
    )
    exp.run(display=False)
    assert tuner.received == FREE
    assert sorted(t.parameters["x"] for t in exp.trials()) == [1, 2, 3]
    assert all(t.status == st.SUCCEEDED for t in exp.trials())
    # customised trials are not checked against a free-form space; a new free-form space is accepted as given
    control.update_limits(exp.store, exp.id, max_trials=4)
    assert control.add_trial(exp.store, exp.id, {"x": 50, "anything": [1]}).parameters == {
        "x": 50,
        "anything": [1],
    }
    assert control.update_search_space(exp.store, exp.id, {"x": [5, 6]}) == FreeFormSpace({"x": [5, 6]})
    with pytest.raises(NniPlError):
        control.update_search_space(exp.store, exp.id, {"x": object()})
