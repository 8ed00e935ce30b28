"""Every built-in tuner, advisor and assessor takes NNI 2.x's constructor arguments in NNI's positional order.

NNI code builds algorithms positionally (``CurvefittingAssessor(20)``, ``Hyperband(81, 3, 'minimize')``);
the orders and defaults are NNI 2.5's (``shared/NNI-REFERENCE.md`` §1(b), §1(c)). nni-pl's own extras
(``seed``, TPE's model settings, Curvefitting's ``optimize_mode``) stay keyword-only after them.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from nni_pl.hpo import create_algorithm, resolve_class
from nni_pl.hpo._registry import BUILTIN_ADVISORS, BUILTIN_ASSESSORS, BUILTIN_TUNERS
from nni_pl.hpo.assessors import CurvefittingAssessor, MedianstopAssessor
from nni_pl.hpo.tuners import (
    BOHB,
    AnnealTuner,
    AutoTuner,
    BatchTuner,
    DNGOTuner,
    EvolutionTuner,
    GPTuner,
    GridSearchTuner,
    Hyperband,
    MetisTuner,
    NetworkMorphismTuner,
    PBTTuner,
    PPOTuner,
    RandomTuner,
    RegularizedEvolutionTuner,
    SMACTuner,
    TPETuner,
)

# class -> (NNI's positional arguments, the attribute each one sets), in NNI's order
NNI_POSITIONAL: dict[type, tuple[tuple[Any, ...], tuple[str, ...]]] = {
    TPETuner: (("minimize", True, "mean"), ("optimize_mode", "parallel_optimize", "constant_liar_type")),
    # nni-pl's default (NNI has none by this name) takes the order of NNI's default, TPE
    AutoTuner: (("minimize", True, "mean"), ("optimize_mode", "parallel_optimize", "constant_liar_type")),
    RandomTuner: (("minimize",), ("optimize_mode",)),
    AnnealTuner: (("minimize",), ("optimize_mode",)),
    GridSearchTuner: ((), ()),
    EvolutionTuner: (("minimize", 12), ("optimize_mode", "population_size")),
    RegularizedEvolutionTuner: (
        ("minimize", 20, 5),
        ("optimize_mode", "population_size", "sample_size"),
    ),
    BatchTuner: ((), ()),
    SMACTuner: (("minimize", True), ("optimize_mode", "config_dedup")),
    GPTuner: (
        ("minimize", "ucb", 3, 0.1, 1.5, 1e-5, 4, 1000, 5),
        (
            "optimize_mode",
            "utility",
            "kappa",
            "xi",
            "nu",
            "alpha",
            "cold_start_num",
            "selection_num_warm_up",
            "selection_num_starting_points",
        ),
    ),
    MetisTuner: (
        ("minimize", False, True, 100, 5, 0.5),
        (
            "optimize_mode",
            "no_resampling",
            "no_candidates",
            "selection_num_starting_points",
            "cold_start_num",
            "exploration_probability",
        ),
    ),
    DNGOTuner: (
        ("minimize", 100, 5, 10),
        ("optimize_mode", "sample_size", "trials_per_update", "num_epochs_per_training"),
    ),
    PPOTuner: (
        ("minimize", 8, 2, 2, 0.01, 1e-3, 0.4, 0.3, 0.9, 0.9, 0.1),
        (
            "optimize_mode",
            "trials_per_update",
            "epochs_per_update",
            "minibatch_size",
            "ent_coef",
            "lr",
            "vf_coef",
            "max_grad_norm",
            "gamma",
            "lam",
            "cliprange",
        ),
    ),
    Hyperband: (("minimize",), ()),  # replaced below: R and eta come first
    BOHB: (
        ("minimize", 1, 9, 3, 4, 20, 32, 0.2, 2.0, 0.01),
        (
            "optimize_mode",
            "min_budget",
            "max_budget",
            "eta",
            "min_points_in_model",
            "top_n_percent",
            "num_samples",
            "random_fraction",
            "bandwidth_factor",
            "min_bandwidth",
        ),
    ),
    NetworkMorphismTuner: (
        ("common", 8, 1, 4, "Bayesian", "minimize", "mp", False, 1.0, 0.01, 10**6, 2, 16),
        (
            "task",
            "input_width",
            "input_channel",
            "n_classes",
            "algorithm_name",
            "optimize_mode",
            "path",
            "verbose",
            "beta",
            "t_min",
            "max_model_size",
            "default_model_len",
            "default_model_width",
        ),
    ),
    MedianstopAssessor: (("minimize", 3), ("optimize_mode", "start_step")),
    CurvefittingAssessor: ((30, 5, 0.9, 2), ("epoch_num", "start_step", "threshold", "gap")),
}
NNI_POSITIONAL[Hyperband] = ((81, 2, "minimize", "serial"), ("R", "eta", "optimize_mode", "exec_mode"))


@pytest.mark.parametrize("cls", list(NNI_POSITIONAL), ids=lambda c: c.__name__)
def test_builtin_takes_nni_positional_arguments(cls: type) -> None:
    args, attrs = NNI_POSITIONAL[cls]
    algo = cls(*args)
    for attr, value in zip(attrs, args, strict=True):
        got = getattr(algo, attr)
        assert got == value, f"{cls.__name__}: positional argument {attr} = {value!r}, attribute is {got!r}"


def test_pbt_takes_nni_positional_arguments(tmp_path: Path) -> None:
    tuner = PBTTuner("minimize", tmp_path, 4, (1.5, 0.5), 0.25)
    assert (tuner.optimize_mode, tuner.all_checkpoint_dir, tuner.population_size) == (
        "minimize",
        str(tmp_path),
        4,
    )
    assert (tuner.factors, tuner.fraction) == ((1.5, 0.5), 0.25)


def test_curvefitting_takes_epoch_num_positionally_as_in_nni() -> None:
    assert CurvefittingAssessor(20).epoch_num == 20


def test_pbt_defaults_to_nni_optimize_mode_in_python_but_a_config_still_names_it() -> None:
    assert PBTTuner().optimize_mode == "maximize"
    with pytest.raises(Exception, match=r"tuner\.classArgs\.optimize_mode.*needs the argument"):
        create_algorithm("tuner", "PBTTuner", class_args={"population_size": 4}, field="tuner")


def test_nni_pl_extras_stay_keyword_only() -> None:
    with pytest.raises(TypeError):
        TPETuner("maximize", False, "min", 0)  # seed is nni-pl's, by keyword only
    assert TPETuner("maximize", seed=3).seed == 3


@pytest.mark.parametrize("name", sorted({**BUILTIN_TUNERS, **BUILTIN_ADVISORS, **BUILTIN_ASSESSORS}), ids=str)
def test_every_builtin_is_covered_here(name: str) -> None:
    cls = resolve_class("assessor" if name in BUILTIN_ASSESSORS else "tuner", name)
    if cls.__name__ == "ASHAAssessor":  # nni-pl's own (NNI has no ASHA): no NNI order to follow
        return
    assert cls in NNI_POSITIONAL or cls is PBTTuner, f"{name}: add NNI's positional arguments to this test"
    assert inspect.signature(cls).bind_partial(*NNI_POSITIONAL.get(cls, ((),))[0])
