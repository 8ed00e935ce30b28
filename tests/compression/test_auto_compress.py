from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nni_pl.compression.auto import (
    AbstractAutoCompressionModule,
    AutoCompressionExperiment,
    AutoCompressionSearchSpaceGenerator,
    compress_and_evaluate,
    parse_parameters,
)
from nni_pl.compression.quantization import QuantizerModuleWrapper
from nni_pl.errors import ConfigError
from nni_pl.space import SearchSpace


# --- a pre-trained digits model, the same in every process (trial workers import this module) -----------------------
@functools.cache
def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    return x[:1200], y[:1200], x[1200:], y[1200:]


@functools.cache
def _pretrained() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = _net()
    xtr, ytr, _, _ = _digits()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(model(xtr), ytr).backward()
        opt.step()
    return model.state_dict()


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, criterion, epoch: int) -> None:
    xtr, ytr, _, _ = _digits()
    model.train()
    for i in range(0, len(ytr), 200):
        optimizer.zero_grad()
        criterion(model(xtr[i : i + 200]), ytr[i : i + 200]).backward()
        optimizer.step()


def _accuracy(model: nn.Module) -> float:
    _, _, xte, yte = _digits()
    model.eval()
    with torch.no_grad():
        return float((model(xte).argmax(1) == yte).float().mean())


class DigitsModule(AbstractAutoCompressionModule):
    @classmethod
    def model(cls) -> nn.Module:
        model = _net()
        model.load_state_dict(_pretrained())
        return model

    @classmethod
    def evaluator(cls):
        return _accuracy

    @classmethod
    def optimizer_factory(cls):
        return lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9)

    @classmethod
    def criterion(cls):
        return F.cross_entropy

    @classmethod
    def sparsifying_trainer(cls, compress_algorithm_name: str):
        return _train

    @classmethod
    def post_compress_finetuning_trainer(cls, compress_algorithm_name: str):
        return _train

    @classmethod
    def post_compress_finetuning_epochs(cls, compress_algorithm_name: str) -> int:
        return 3


class NoTraining(AbstractAutoCompressionModule):
    @classmethod
    def model(cls) -> nn.Module:
        return DigitsModule.model()

    @classmethod
    def evaluator(cls):
        return _accuracy


# --- search space ----------------------------------------------------------------------------------------------------
def seed_example() -> AutoCompressionSearchSpaceGenerator:
    """NNI 2.5's documented example (L12650-12672)."""
    g = AutoCompressionSearchSpaceGenerator()
    g.add_config(
        "level", [{"sparsity": {"_type": "uniform", "_value": [0.01, 0.99]}, "op_types": ["default"]}]
    )
    g.add_config(
        "qat",
        [
            {
                "quant_types": ["weight", "output"],
                "quant_bits": {"weight": 8, "output": 8},
                "op_types": ["Conv2d", "Linear"],
            }
        ],
    )
    return g


def test_search_space_generator_dumps_nni_layout() -> None:
    space = seed_example().dumps()
    assert space == {
        "algorithm_name": {
            "_type": "choice",
            "_value": [
                {
                    "_name": "level",
                    "config_list::default::::sparsity": {"_type": "uniform", "_value": [0.01, 0.99]},
                },
                {
                    "_name": "qat",
                    "config_list::weight:output::Conv2d:Linear::::quant_bits::weight": {
                        "_type": "choice",
                        "_value": [8],
                    },
                    "config_list::weight:output::Conv2d:Linear::::quant_bits::output": {
                        "_type": "choice",
                        "_value": [8],
                    },
                },
            ],
        }
    }
    assert json.loads(seed_example().dump_json()) == space
    assert AutoCompressionSearchSpaceGenerator.loads(space).dumps() == space
    SearchSpace.parse(space)  # nni-pl's tuners take it as it is


def test_sampled_parameters_become_valid_config_lists() -> None:
    g = seed_example()
    g.add_config(
        "l1",
        [
            {"sparsity": {"_type": "choice", "_value": [0.25, 0.5]}, "op_types": ["Linear"]},
            {"exclude": True, "op_names": ["4"]},
        ],
        mode="normal",
    )
    space = SearchSpace.parse(g.dumps())
    rng = np.random.default_rng(0)
    seen = {}
    for _ in range(30):
        name, config_list, kwargs = parse_parameters(space.sample(rng))
        seen[name] = (config_list, kwargs)
    assert set(seen) == {"level", "qat", "l1"}
    level, _ = seen["level"]
    assert level[0]["op_types"] == ["default"] and 0.01 <= level[0]["sparsity"] <= 0.99
    assert seen["qat"] == (
        [
            {
                "quant_bits": {"weight": 8, "output": 8},
                "quant_types": ["weight", "output"],
                "op_types": ["Conv2d", "Linear"],
            }
        ],
        {},
    )
    l1, l1_kwargs = seen["l1"]
    assert l1[0]["sparsity"] in (0.25, 0.5) and l1[1] == {"exclude": True, "op_names": ["4"]}
    assert l1_kwargs == {"mode": "normal"}


@pytest.mark.parametrize(
    ("name", "config_list", "match"),
    [
        ("levl", [{"sparsity": 0.5}], r"'algorithm_name'.*'levl'.*did you mean 'level'"),
        ("l1", {"sparsity": 0.5}, "'config_list'"),
        ("l1", [{"sparsity": 0.5, "op_types": "Conv2d"}], r"'config_list\[0\].op_types'"),
        (
            "l1",
            [{"sparsity": 0.5, "op_types": ["A"]}, {"sparsity": 0.2, "op_types": ["A"]}],
            r"'config_list\[1\]'",
        ),
    ],
)
def test_search_space_generator_bad_input(name: str, config_list: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        AutoCompressionSearchSpaceGenerator().add_config(name, config_list)


def test_parse_parameters_rejects_foreign_parameters() -> None:
    with pytest.raises(ConfigError, match=r"'parameters'.*algorithm_name"):
        parse_parameters({"lr": 0.1})


# --- one trial -------------------------------------------------------------------------------------------------------
def params(name: str, **values: object) -> dict:
    return {"algorithm_name": {"_name": name, **values}}


def test_trial_prunes_fine_tunes_and_scores() -> None:
    base = _accuracy(DigitsModule.model())
    assert base > 0.9
    hidden = {"config_list::Linear::0:2::sparsity": 0.75}  # the two hidden layers lose 24 of 32 units
    bare = compress_and_evaluate(NoTraining, params("l1", **hidden))
    tuned = compress_and_evaluate(DigitsModule, params("l1", **hidden))
    print(
        f"digits accuracy: pre-trained {base:.3f}, l1 75% {bare['default']:.3f}, fine-tuned {tuned['default']:.3f}"
    )
    assert bare["sparsity"] == tuned["sparsity"] == pytest.approx(0.75, abs=0.03)
    assert bare["default"] < base - 0.1
    assert tuned["default"] > bare["default"] + 0.1  # fine-tuning (with the masks held) recovers accuracy
    # the user's model is never changed: each trial compresses a copy
    assert _accuracy(DigitsModule.model()) == base


def test_trial_runs_training_pruner_and_quantizer() -> None:
    slim_like = compress_and_evaluate(
        DigitsModule,
        params("taylorfo", **{"config_list::Linear::::sparsity": 0.5, "parameter::training_batches": 2}),
    )
    assert 0.45 <= slim_like["sparsity"] <= 0.55 and slim_like["default"] > 0.5
    qat = compress_and_evaluate(
        DigitsModule,
        params(
            "qat",
            **{
                "config_list::weight:output::Linear::::quant_bits::weight": 8,
                "config_list::weight:output::Linear::::quant_bits::output": 8,
            },
        ),
    )
    assert qat["default"] > 0.85 and set(qat) == {"default"}


def test_trial_names_missing_module_methods() -> None:
    with pytest.raises(ConfigError, match=r"'optimizer_factory\(\)'.*'taylorfo'"):
        compress_and_evaluate(NoTraining, params("taylorfo", **{"config_list::Linear::::sparsity": 0.5}))


def test_quantizer_trial_wraps_layers() -> None:
    captured = {}

    class Capture(NoTraining):
        @classmethod
        def evaluator(cls):
            def evaluate(model: nn.Module) -> float:
                captured["types"] = [type(m) for m in model]
                return _accuracy(model)

            return evaluate

    compress_and_evaluate(Capture, params("naive", **{"config_list::weight::Linear::::quant_bits": 8}))
    assert captured["types"][0] is QuantizerModuleWrapper


# --- the experiment --------------------------------------------------------------------------------------------------
def test_auto_compression_experiment_runs_trials_end_to_end(tmp_path) -> None:
    g = AutoCompressionSearchSpaceGenerator()
    g.add_config("level", [{"sparsity": {"_type": "choice", "_value": [0.5, 0.9]}, "op_types": ["Linear"]}])
    g.add_config("l1", [{"sparsity": {"_type": "choice", "_value": [0.25, 0.5]}, "op_types": ["Linear"]}])
    experiment = AutoCompressionExperiment(DigitsModule, "local")
    experiment.config.experiment_name = "auto compression digits"
    experiment.config.trial_concurrency = 1
    experiment.config.max_trial_number = 3
    experiment.config.search_space = g.dumps()
    experiment.config.experiment_working_directory = tmp_path
    experiment.config.tuner.name = "TPE"
    experiment.config.tuner.class_args["optimize_mode"] = "maximize"
    experiment.config.tuner.class_args["seed"] = 0
    try:
        assert experiment.run(display=False) is True
        trials = experiment.trials()
        assert len(trials) == 3 and all(t.status == "SUCCEEDED" for t in trials)
        for t in trials:
            name, _, _ = parse_parameters(t.parameters)
            assert name in ("level", "l1")
            assert 0.0 < t.final_default <= 1.0 and "sparsity" in t.final
        best = experiment.best_trial()
        assert best is not None and best.final_default > 0.8
    finally:
        experiment.close()


def test_auto_compression_experiment_takes_only_module_classes() -> None:
    with pytest.raises(ConfigError, match="'auto_compress_module'"):
        AutoCompressionExperiment(DigitsModule(), "local")
