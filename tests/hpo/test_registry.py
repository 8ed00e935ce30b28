from __future__ import annotations

import sys
import textwrap

import pytest

from nni_pl.cli.main import main
from nni_pl.errors import ConfigError
from nni_pl.hpo import Tuner, _user_registry, create_algorithm
from nni_pl.hpo.assessors import MedianstopAssessor
from nni_pl.hpo.tuners import AnnealTuner, GridSearchTuner, RandomTuner, TPETuner


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("TPE", TPETuner),
        ("Random", RandomTuner),
        ("Anneal", AnnealTuner),
        ("GridSearch", GridSearchTuner),
        ("Grid", GridSearchTuner),
        ("RandomSearch", RandomTuner),
    ],
)
def test_builtin_tuner_names_and_short_forms(name, cls):
    assert type(create_algorithm("tuner", name)) is cls


def test_builtin_assessor_and_nni_class_names():
    assert (
        type(create_algorithm("assessor", "Medianstop", class_args={"start_step": 2})) is MedianstopAssessor
    )
    assert type(create_algorithm("assessor", "MedianstopAssessor")) is MedianstopAssessor


@pytest.mark.parametrize(
    ("algorithm", "cls"), [("tpe", TPETuner), ("random_search", RandomTuner), ("anneal", AnnealTuner)]
)
def test_nni_hyperopt_tuner_class_picks_the_algorithm(algorithm, cls):
    tuner = create_algorithm(
        "tuner", "HyperoptTuner", class_args={"algorithm_name": algorithm, "optimize_mode": "minimize"}
    )
    assert type(tuner) is cls


def test_unknown_names_and_args_are_explained():
    with pytest.raises(ConfigError, match=r"tuner.name.*unknown tuner 'tpe' \(did you mean 'TPE'\?\)"):
        create_algorithm("tuner", "tpe")
    with pytest.raises(ConfigError, match=r"tuner.classArgs.optimise_mode.*did you mean 'optimize_mode'"):
        create_algorithm("tuner", "TPE", class_args={"optimise_mode": "maximize"})
    with pytest.raises(ConfigError, match=r"classArgs.optimize_mode.*'maximize' or 'minimize', got 'max'"):
        create_algorithm("tuner", "TPE", class_args={"optimize_mode": "max"})
    with pytest.raises(ConfigError, match=r"tuner.classArgs.algorithm_name.*got 'bayes'"):
        create_algorithm("tuner", "HyperoptTuner", class_args={"algorithm_name": "bayes"})


def test_custom_class_from_code_directory_and_missing_required_arg(tmp_path):
    (tmp_path / "my_tuners.py").write_text(
        textwrap.dedent(
            """
            from nni_pl.hpo import Tuner
            class Fixed(Tuner):
                def __init__(self, *, value):
                    self.value = value
                def update_search_space(self, search_space): pass
                def generate_parameters(self, parameter_id, **kwargs): return {"x": self.value}
                def receive_trial_result(self, parameter_id, parameters, value, **kwargs): pass
            """
        )
    )
    try:
        tuner = create_algorithm(
            "tuner", class_name="my_tuners.Fixed", code_directory=tmp_path, class_args={"value": 3}
        )
        assert isinstance(tuner, Tuner) and tuner.generate_parameters(0) == {"x": 3}
        with pytest.raises(ConfigError, match=r"tuner.classArgs.value.*needs the argument 'value'"):
            create_algorithm("tuner", class_name="my_tuners.Fixed", code_directory=tmp_path)
        with pytest.raises(ConfigError, match=r"tuner.className.*has no class 'Nope'"):
            create_algorithm("tuner", class_name="my_tuners.Nope", code_directory=tmp_path)
        with pytest.raises(ConfigError, match=r"cannot import module 'missing_mod'"):
            create_algorithm("tuner", class_name="missing_mod.X", code_directory=tmp_path)

        # registered under a name with `nni-pl algo register`, usable like a built-in
        meta = tmp_path / "meta.yml"
        meta.write_text("algoType: tuner\nbuiltinName: fixed\nclassName: my_tuners.Fixed\n")
        assert main(["algo", "register", "--meta", str(meta)]) == 0
        assert _user_registry.lookup("tuner", "fixed") == "my_tuners.Fixed"
        assert create_algorithm("tuner", "fixed", class_args={"value": 5}).value == 5
        assert main(["algo", "list"]) == 0
        assert main(["algo", "unregister", "fixed"]) == 0
        assert main(["algo", "unregister", "fixed"]) == 2
        meta.write_text("algoType: tuner\nbuiltinName: TPE\nclassName: my_tuners.Fixed\n")
        assert main(["algo", "register", "--meta", str(meta)]) == 2  # built-in names are taken
    finally:
        sys.modules.pop("my_tuners", None)


def test_default_import_data_never_reuses_parameter_ids():
    class Recorder(Tuner):
        def __init__(self):
            self.ids = []

        def update_search_space(self, search_space):
            pass

        def generate_parameters(self, parameter_id, **kwargs):
            return {}

        def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
            self.ids.append(parameter_id)

    t = Recorder()
    t.import_data([{"parameter": {}, "value": 1}, {"parameter": {}, "value": None}])
    t.import_data([{"parameter": {}, "value": 2}])
    assert t.ids == [-1, -2]
