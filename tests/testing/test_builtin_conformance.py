"""Every built-in tuner, advisor and assessor passes the conformance suite of :mod:`nni_pl.testing`.

One test class per registered name (``TestTPE``, ``TestHyperband``, ``TestMedianstop``, ...), with
small, fast ``classArgs`` where the defaults are slow. A class whose module is not written yet is
skipped with "not implemented yet".
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest

from nni_pl.hpo._registry import BUILTIN_ADVISORS, BUILTIN_ASSESSORS, BUILTIN_TUNERS
from nni_pl.testing import AssessorTestCase, TunerTestCase

# BatchTuner's space: one `combine_params` choice listing whole parameter sets (of mixed JSON types).
BATCH_SPACE = {
    "combine_params": {
        "_type": "choice",
        "_value": [
            {"lr": 0.1, "optimizer": "sgd", "layers": 2},
            {"lr": 0.01, "optimizer": "adam", "layers": 3, "dropout": None},
            {"lr": 1, "optimizer": "adam", "nested": {"a": [1, 2.5]}, "flag": True},
            {"lr": 1.0, "optimizer": "rmsprop", "flag": False},
            {},
        ],
    }
}


def _batch_to_space_point(self: TunerTestCase, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"combine_params": parameters}  # NNI's BatchTuner hands a trial the chosen set itself


def _batch_from_space_point(self: TunerTestCase, point: dict[str, Any]) -> dict[str, Any]:
    return point["combine_params"]


# The documented exceptions to the finite-space rule (each point once, then NoMoreTrialError).
PBT_EXEMPTION = "PBT's generations re-run their members' hyperparameters and never run out"
HALVING = "successive halving runs the best configurations again at a larger TRIAL_BUDGET"

# Per name: attributes of the test class. Model-based tuners get short warm-ups so that the model is
# exercised within a few suggestions, and fewer suggestions where a suggestion is slow.
TUNERS: dict[str, dict[str, Any]] = {
    # GP for 4 results (2 random, 2 modelled), TPE after: each run crosses the switch
    "Auto": {
        "tuner_kwargs": {
            "switch_after": 4,
            "gp_args": {
                "cold_start_num": 2,
                "selection_num_warm_up": 200,
                "selection_num_starting_points": 2,
            },
            "tpe_args": {"n_startup_jobs": 3},
        },
        "n_suggestions": 10,
    },
    "TPE": {"tuner_kwargs": {"n_startup_jobs": 3}},
    "Random": {},
    "Anneal": {},
    "GridSearch": {"deterministic": True},
    "Evolution": {"tuner_kwargs": {"population_size": 6}},
    "RegularizedEvolutionTuner": {"tuner_kwargs": {"population_size": 6, "sample_size": 3}},
    "BatchTuner": {
        "deterministic": True,
        "space_override": BATCH_SPACE,
        "to_space_point": _batch_to_space_point,
        "from_space_point": _batch_from_space_point,
    },
    "SMAC": {"n_suggestions": 10},
    # model-based tuners: 2 random points, then 4 suggestions from the model per run (about 0.05 s each
    # with one BLAS thread)
    "GPTuner": {
        "tuner_kwargs": {
            "cold_start_num": 2,
            "selection_num_warm_up": 200,
            "selection_num_starting_points": 2,
        },
        "n_suggestions": 6,
    },
    "MetisTuner": {
        "tuner_kwargs": {"cold_start_num": 2, "selection_num_starting_points": 10},
        "n_suggestions": 6,
    },
    "DNGOTuner": {
        "tuner_kwargs": {"sample_size": 50, "trials_per_update": 3, "num_epochs_per_training": 20},
        "n_suggestions": 6,
    },
    "PBTTuner": {
        "tuner_kwargs": {"optimize_mode": "maximize", "population_size": 4},
        "finite_space_exemption": PBT_EXEMPTION,
    },
    "PPOTuner": {
        "tuner_kwargs": {
            "optimize_mode": "maximize",
            "trials_per_update": 4,
            "epochs_per_update": 1,
            "minibatch_size": 2,
        },
        "n_suggestions": 10,
    },
    # it ignores the search space (its parameters are network graphs): its conformance class, with the
    # space-shaped checks skipped, runs in tests/hpo/test_network_morphism.py
    "NetworkMorphism": {
        "pytestmark": pytest.mark.skip(reason="runs in tests/hpo/test_network_morphism.py (graphs, no space)")
    },
}
ADVISORS: dict[str, dict[str, Any]] = {
    "Hyperband": {"tuner_kwargs": {"R": 9, "eta": 3}, "reevaluates": HALVING},
    "BOHB": {"tuner_kwargs": {"min_budget": 1, "max_budget": 9, "eta": 3}, "reevaluates": HALVING},
}
# Other settings worth proving: (registered name, attributes), one more test class each.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    # serial Hyperband waits for a bracket to finish (WaitForResults); parallelism never waits
    "HyperbandSerial": (
        "Hyperband",
        {"tuner_kwargs": {"R": 9, "eta": 3, "exec_mode": "serial"}, "reevaluates": HALVING},
    ),
    # NNI's config_dedup: true is accepted and changes nothing (no SMAC suggestion ever repeats a point)
    "SMACDedup": ("SMAC", {"tuner_kwargs": {"config_dedup": True}, "n_suggestions": 10}),
    # the constant liar spreads concurrent suggestions
    "TPEConstantLiar": ("TPE", {"tuner_kwargs": {"n_startup_jobs": 3, "parallel_optimize": True}}),
}
ASSESSORS: dict[str, dict[str, Any]] = {
    "Medianstop": {},
    # every assessment past start_step fits the curve models: keep the curves short
    "Curvefitting": {
        "assessor_kwargs": {"epoch_num": 10, "start_step": 6},
        "history_length": 10,
        "n_trials": 5,
    },
    "ASHA": {},
}


@pytest.fixture(scope="module", autouse=True)
def _loaded_numeric_libraries() -> None:
    """Load the BLAS/OpenMP libraries the model-based tuners use, so that the limit below reaches them."""
    importlib.import_module("scipy.linalg")
    if importlib.util.find_spec("sklearn") is not None:
        importlib.import_module("sklearn.gaussian_process")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One BLAS/OpenMP thread: on a busy machine, threads spinning over 5 x 5 matrices make a GP fit
    about 20 times slower (measured: GPTuner 1 s instead of 0.05 s of CPU per suggestion)."""
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    if torch is not None and before is not None:
        torch.set_num_threads(before)


@cache
def _load(target: str) -> type:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _exists(target: str) -> bool:
    return importlib.util.find_spec(target.partition(":")[0]) is not None


def _tuner_case(name: str, target: str, settings: dict[str, Any]) -> type:
    def make_tuner(self: TunerTestCase, **overrides: Any) -> Any:
        return _load(target)(**{**self.tuner_kwargs, **overrides})

    def tuner_type(self: TunerTestCase) -> type:
        return _load(target)

    attrs: dict[str, Any] = {
        "__test__": True,
        "__module__": __name__,
        "__doc__": f"The conformance suite on {name} ({target}).",
        "make_tuner": make_tuner,
        "tuner_type": tuner_type,
        **settings,
    }
    if not _exists(target):
        attrs["pytestmark"] = pytest.mark.skip(reason="not implemented yet")
    return type(f"Test{name}", (TunerTestCase,), attrs)


def _assessor_case(name: str, target: str, settings: dict[str, Any]) -> type:
    def make_assessor(self: AssessorTestCase, **overrides: Any) -> Any:
        return _load(target)(**{**self.assessor_kwargs, **overrides})

    attrs: dict[str, Any] = {
        "__test__": True,
        "__module__": __name__,
        "__doc__": f"The conformance suite on {name} ({target}).",
        "make_assessor": make_assessor,
        **settings,
    }
    if not _exists(target):
        attrs["pytestmark"] = pytest.mark.skip(reason="not implemented yet")
    return type(f"Test{name}", (AssessorTestCase,), attrs)


for _name, _target in {**BUILTIN_TUNERS, **BUILTIN_ADVISORS}.items():
    globals()[f"Test{_name}"] = _tuner_case(_name, _target, {**TUNERS, **ADVISORS}.get(_name, {}))
for _variant, (_name, _settings) in VARIANTS.items():
    _target = {**BUILTIN_TUNERS, **BUILTIN_ADVISORS}[_name]
    globals()[f"Test{_variant}"] = _tuner_case(_variant, _target, _settings)
for _name, _target in BUILTIN_ASSESSORS.items():
    globals()[f"Test{_name}"] = _assessor_case(_name, _target, ASSESSORS.get(_name, {}))


def test_settings_name_only_registered_algorithms():
    assert set(TUNERS) <= set(BUILTIN_TUNERS)
    assert {name for name, _ in VARIANTS.values()} <= set(BUILTIN_TUNERS) | set(BUILTIN_ADVISORS)
    assert set(ADVISORS) <= set(BUILTIN_ADVISORS)
    assert set(ASSESSORS) <= set(BUILTIN_ASSESSORS)


def test_every_registered_algorithm_has_a_conformance_class():
    for name in [*BUILTIN_TUNERS, *BUILTIN_ADVISORS, *BUILTIN_ASSESSORS]:
        cls = globals()[f"Test{name}"]
        assert cls.__test__ is True
        assert issubclass(cls, (TunerTestCase, AssessorTestCase))
