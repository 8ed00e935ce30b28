"""Evaluators: reporting through the trial SDK, configs that travel to trials, choices among arguments."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningModule
from torch import nn

from nni_pl.errors import ConfigError
from nni_pl.nas.evaluator import (
    Classification,
    Evaluator,
    EvaluatorError,
    FunctionalEvaluator,
    Lightning,
    Regression,
    config_search_space,
    freeze_config,
)

DIGITS = {"factory": "nni_pl.nas.evaluator.data:digits_loaders", "kwargs": {"limit": 300, "flatten": True}}


def n_params(model: nn.Module, scale: float = 1.0) -> float:
    return scale * sum(p.numel() for p in model.parameters())


def reports(trial_dir: Path, kind: str) -> list[Any]:
    path = trial_dir / "metrics.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [r["value"] for r in map(json.loads, lines) if r["type"] == kind]


def reports_itself(model: nn.Module) -> float:
    import nni_pl

    nni_pl.report_intermediate_result(0.5)
    nni_pl.report_final_result(0.75)
    return 0.75


# --- FunctionalEvaluator ----------------------------------------------------------------------------------
def test_functional_reports_the_returned_value(trial_dir: Path) -> None:
    assert FunctionalEvaluator(n_params, scale=2.0).evaluate(nn.Linear(3, 1)) == 8.0
    assert reports(trial_dir, "FINAL") == [8.0]


def test_functional_that_reports_is_not_reported_twice(trial_dir: Path) -> None:
    FunctionalEvaluator(reports_itself).evaluate(nn.Linear(3, 1))
    assert reports(trial_dir, "PERIODICAL") == [0.5]
    assert reports(trial_dir, "FINAL") == [0.75]


def test_functional_config_round_trip_and_import_path() -> None:
    ev = FunctionalEvaluator(n_params, scale=3.0)
    cfg = ev.to_config()
    assert cfg["class"] == "nni_pl.nas.evaluator.functional:FunctionalEvaluator"
    assert cfg["kwargs"]["scale"] == 3.0
    json.dumps(cfg)
    again = Evaluator.from_config(cfg)
    assert again.evaluate(nn.Linear(3, 1)) == 12.0
    by_path = FunctionalEvaluator(f"{n_params.__module__}:n_params")
    assert by_path.evaluate(nn.Linear(3, 1)) == 4.0


def test_lambda_and_local_functions_cannot_travel() -> None:
    with pytest.raises(EvaluatorError, match=r"'function'.*module level"):
        FunctionalEvaluator(lambda m: 1.0).to_config()

    def local(model: nn.Module) -> float:
        return 1.0

    with pytest.raises(EvaluatorError, match="module level"):
        FunctionalEvaluator(local).to_config()


# --- choices among the arguments ---------------------------------------------------------------------------
def test_space_spec_arguments_join_the_search_space_and_freeze() -> None:
    ev = FunctionalEvaluator(n_params, scale={"_type": "choice", "_value": [1.0, 10.0]})
    assert ev.search_space() == {"scale": {"_type": "choice", "_value": [1.0, 10.0]}}
    frozen = ev.freeze({"scale": 10.0, "other_label": 1})
    assert frozen.kwargs == {"scale": 10.0}
    assert frozen.evaluate(nn.Linear(3, 1)) == 40.0
    with pytest.raises(EvaluatorError, match="'scale'"):
        ev.freeze({})


def test_value_choice_arguments_with_arithmetic() -> None:
    ValueChoice = pytest.importorskip("nni_pl.nas.mutables").ValueChoice

    lr = ValueChoice([1, 2], label="lr_exp")
    ev = Classification(
        train_dataloaders=DIGITS,
        learning_rate=lr * 0.01,
        trainer_kwargs={"max_epochs": {"_type": "choice", "_value": [1, 2]}},
    )
    assert ev.search_space() == {
        "lr_exp": {"_type": "choice", "_value": [1, 2]},
        "trainer_kwargs.max_epochs": {"_type": "choice", "_value": [1, 2]},
    }
    cfg = ev.to_config()
    json.dumps(cfg)
    assert config_search_space(cfg) == ev.search_space()
    frozen = Evaluator.from_config(freeze_config(cfg, {"lr_exp": 2, "trainer_kwargs.max_epochs": 1}))
    assert frozen.learning_rate == pytest.approx(0.02)
    assert frozen.trainer_kwargs == {"max_epochs": 1}
    with pytest.raises(EvaluatorError, match="still a choice"):
        ev.evaluate(nn.Linear(64, 10))


# --- Lightning evaluators ---------------------------------------------------------------------------------
def test_classification_reports_val_acc_per_epoch_and_final(trial_dir: Path) -> None:
    ev = Classification(train_dataloaders=DIGITS, learning_rate=0.05, max_epochs=2)
    torch.manual_seed(0)
    score = ev.evaluate(nn.Linear(64, 10))
    periodical = reports(trial_dir, "PERIODICAL")
    assert len(periodical) == 2
    assert reports(trial_dir, "FINAL") == [pytest.approx(periodical[-1])]
    assert score == pytest.approx(periodical[-1]) and 0.5 < score <= 1.0
    assert ev.metric_mode == "maximize"
    assert (trial_dir / "lightning_logs").exists()  # in a trial, Lightning's logs go to its directory


def test_regression_reports_val_mse(trial_dir: Path) -> None:
    data = {"factory": "nni_pl.nas.evaluator.data:digits_loaders", "kwargs": {"limit": 200, "flatten": True}}
    ev = Regression(train_dataloaders=data, learning_rate=0.01, trainer_kwargs={"max_epochs": 1})

    class ToFloat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(64, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x).squeeze(-1)

    score = ev.evaluate(ToFloat())
    assert reports(trial_dir, "FINAL") == [pytest.approx(score)]
    assert score > 0 and ev.metric_mode == "minimize"


class TinyModule(LightningModule):
    def __init__(self, model: nn.Module, lr: float = 0.1) -> None:
        super().__init__()
        self.model, self.lr = model, lr

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.model(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_score", (self.model(x).argmax(-1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def test_lightning_evaluator_with_any_module(trial_dir: Path) -> None:
    ev = Lightning(
        TinyModule,
        module_kwargs={"lr": 0.5},
        train_dataloaders=DIGITS,
        trainer_kwargs={"max_epochs": 2},
        monitor="val_score",
        mode="max",
        final="best",
    )
    score = ev.evaluate(nn.Linear(64, 10))
    assert reports(trial_dir, "FINAL") == [pytest.approx(max(reports(trial_dir, "PERIODICAL")))]
    assert score == pytest.approx(reports(trial_dir, "FINAL")[0])
    cfg = ev.to_config()
    assert cfg["kwargs"]["module"] == {"__import__": f"{__name__}:TinyModule"}
    assert isinstance(Evaluator.from_config(cfg), Lightning)
    assert ev.metric_mode == "maximize"


def test_live_dataloaders_work_in_process_but_cannot_travel() -> None:
    from nni_pl.nas.evaluator.data import digits_loaders

    train, val = digits_loaders(limit=100, flatten=True)
    ev = Classification(train_dataloaders=train, val_dataloaders=val, max_epochs=1)
    assert 0.0 <= ev.evaluate(nn.Linear(64, 10)) <= 1.0
    with pytest.raises(EvaluatorError, match=r"'train_dataloaders'.*factory"):
        ev.to_config()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"train_dataloaders": None}, "train_dataloaders"),
        ({"max_epochs": 1, "trainer_kwargs": {"max_epochs": 2}}, "max_epochs"),
        ({"trainer_kwargs": {"callbacks": []}}, "callbacks"),
        ({"optimizer": "torch.optim:NoSuchOptimizer"}, "NoSuchOptimizer"),
    ],
)
def test_classification_argument_errors(kwargs: dict[str, Any], match: str) -> None:
    args = {"train_dataloaders": DIGITS, **kwargs}
    with pytest.raises(ConfigError, match=match):
        Classification(**args)


def test_export_onnx_without_onnx_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "onnx" else real(name))
    with pytest.raises(EvaluatorError, match=r"needs onnx, not installed.*pip install 'nni-pl\[onnx\]'"):
        Classification(train_dataloaders=DIGITS, export_onnx=True)


ONNX = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxscript", "onnxruntime")),
    reason="needs the 'onnx' extra (onnx, onnxscript, onnxruntime): pip install -e .[onnx]",
)


def _run_onnx(path: Path, x: torch.Tensor) -> Any:
    import onnx
    import onnxruntime

    onnx.checker.check_model(onnx.load(str(path)))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


@ONNX
def test_export_onnx_writes_the_trained_model_into_the_trial_dir(trial_dir: Path) -> None:
    import numpy as np

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    Classification(train_dataloaders=DIGITS, export_onnx=True, max_epochs=1).evaluate(model)
    # the file is the *trained* model, and any batch size runs through it
    x = torch.randn(5, 64)
    with torch.no_grad():
        np.testing.assert_allclose(
            _run_onnx(trial_dir / "model.onnx", x), model.eval()(x).numpy(), rtol=1e-4, atol=1e-5
        )
    custom = trial_dir / "custom.onnx"
    Classification(train_dataloaders=DIGITS, export_onnx=str(custom), max_epochs=1).evaluate(model)
    assert _run_onnx(custom, x).shape == (5, 10)


class _DataDependent(nn.Module):
    """Control flow on values: torch.export cannot capture it, the TorchScript exporter traces one branch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) if x.sum() > -1e9 else -self.fc(x)


@ONNX
def test_export_onnx_falls_back_to_the_torchscript_exporter(trial_dir: Path) -> None:
    import numpy as np

    model = _DataDependent()
    Classification(train_dataloaders=DIGITS, export_onnx=True, max_epochs=1).evaluate(model)
    x = torch.rand(3, 64)
    with torch.no_grad():
        np.testing.assert_allclose(
            _run_onnx(trial_dir / "model.onnx", x), model.eval()(x).numpy(), rtol=1e-4, atol=1e-5
        )


def test_from_config_errors() -> None:
    with pytest.raises(ConfigError, match="not an Evaluator"):
        Evaluator.from_config({"class": "torch.nn:Linear", "kwargs": {}})
    with pytest.raises(ConfigError, match="evaluator"):
        Evaluator.from_config({"kwargs": {}})


def tiny_datamodule() -> Any:
    from lightning.pytorch import LightningDataModule

    from nni_pl.nas.evaluator.data import digits_loaders

    train, val = digits_loaders(limit=200, flatten=True)

    class DM(LightningDataModule):
        def train_dataloader(self) -> Any:
            return train

        def val_dataloader(self) -> Any:
            return val

    return DM()


def test_lightning_evaluator_with_a_datamodule_factory(trial_dir: Path) -> None:
    ev = Lightning(
        f"{__name__}:TinyModule",
        datamodule=f"{__name__}:tiny_datamodule",
        trainer_kwargs={"max_epochs": 1},
        monitor="val_score",
        mode="max",
    )
    score = ev.evaluate(nn.Linear(64, 10))
    assert reports(trial_dir, "FINAL") == [pytest.approx(score)]
    with pytest.raises(ConfigError, match="train_dataloaders or a datamodule"):
        Lightning(TinyModule)
    with pytest.raises(ConfigError, match="mode"):
        Lightning(TinyModule, datamodule="x:y", mode="maximize")
