"""NNI 2.x's evaluator form: pl.Lightning(module, pl.Trainer(...), train_dataloader=pl.DataLoader(...)) whose
module, trainer and loaders are rebuilt from their recorded arguments in the trial process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import nni_pl
import nni_pl.nas.evaluator as pl
from nni_pl.errors import ConfigError
from nni_pl.nas import basic_unit
from nni_pl.nas._trial import run_trial
from nni_pl.nas.evaluator import Evaluator, EvaluatorError


def reports(trial_dir: Path, kind: str) -> list[Any]:
    path = trial_dir / "metrics.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [r["value"] for r in map(json.loads, lines) if r["type"] == kind]


@nni_pl.trace
class Digits(Dataset):
    """scikit-learn digits, flattened; rebuilt from ``limit`` in the trial (nothing is pickled)."""

    def __init__(self, limit: int = 200, train: bool = True) -> None:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        part = slice(0, limit) if train else slice(limit, limit + limit // 2)
        self.x = torch.tensor(x[part] / 16.0, dtype=torch.float32)
        self.y = torch.tensor(y[part])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


class _Steps(pl.LightningModule):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.lr = lr

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.model(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_acc", (self.model(x).argmax(-1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


@nni_pl.trace
class ReportingModule(_Steps):
    """Reports through the trial SDK itself, as NNI's docs ask."""

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            nni_pl.report_intermediate_result(float(self.trainer.callback_metrics["val_acc"]))

    def teardown(self, stage: str) -> None:
        if stage == "fit":
            nni_pl.report_final_result(float(self.trainer.callback_metrics["val_acc"]))


@basic_unit
class QuietModule(_Steps):
    """NNI 2.5's spelling (@basic_unit on the module class); reports nothing itself."""


def _nni_evaluator(module: Any, **kwargs: Any) -> pl.Lightning:
    return pl.Lightning(
        module,
        pl.Trainer(max_epochs=2, enable_progress_bar=False, enable_model_summary=False, logger=False),
        train_dataloader=pl.DataLoader(Digits(limit=200), batch_size=50, shuffle=True),
        val_dataloaders=pl.DataLoader(Digits(limit=200, train=False), batch_size=100),
        **kwargs,
    )


def test_nni_form_travels_as_json_and_is_rebuilt_in_the_trial(trial_dir: Path) -> None:
    ev = _nni_evaluator(ReportingModule(lr=0.5))
    config = json.loads(json.dumps(ev.to_config()))
    assert config["kwargs"]["module"]["__trace__"] == f"{__name__}:ReportingModule"
    assert config["kwargs"]["trainer"]["kwargs"]["max_epochs"] == 2
    loader = config["kwargs"]["train_dataloaders"]
    assert loader["__trace__"] == "torch.utils.data.dataloader:DataLoader"
    assert loader["args"][0] == {"__trace__": f"{__name__}:Digits", "args": [], "kwargs": {"limit": 200}}
    spec = {
        "model_space": {
            "import_path": "tests.nas.conftest:TinySpace",
            "init_kwargs": {"in_features": 64, "classes": 10},
        },
        "evaluator": config,
    }
    run_trial(spec, {"hidden": 16, "act": "relu", "skip": [0], "dropout": 0.0})
    assert len(reports(trial_dir, "PERIODICAL")) == 2
    assert reports(trial_dir, "FINAL") == [pytest.approx(reports(trial_dir, "PERIODICAL")[-1])]
    assert ev.metric_mode is None


def test_nni_form_with_monitor_reports_through_the_callback(trial_dir: Path) -> None:
    ev = Evaluator.from_config(_nni_evaluator(QuietModule(lr=0.5), monitor="val_acc", mode="max").to_config())
    assert isinstance(ev, pl.Lightning) and ev.metric_mode == "maximize"
    score = ev.evaluate(nn.Linear(64, 10))
    assert len(reports(trial_dir, "PERIODICAL")) == 2
    assert reports(trial_dir, "FINAL") == [pytest.approx(score)] and 0.0 <= score <= 1.0


def test_classification_takes_nni_train_dataloader_keyword() -> None:
    ev = pl.Classification(
        train_dataloader=pl.DataLoader(Digits(limit=100), batch_size=50),
        val_dataloaders=pl.DataLoader(Digits(limit=100, train=False), batch_size=50),
        max_epochs=1,
    )
    rebuilt = Evaluator.from_config(json.loads(json.dumps(ev.to_config())))
    assert isinstance(rebuilt.train_dataloaders, torch.utils.data.DataLoader)
    assert 0.0 <= rebuilt.evaluate(nn.Linear(64, 10)) <= 1.0


class Untraced(pl.LightningModule):
    pass


def test_nni_form_errors_name_the_argument() -> None:
    loader = pl.DataLoader(Digits(limit=50), batch_size=10)
    with pytest.raises(ConfigError, match=r"Lightning.module.*decorate class Untraced with @nni_pl.trace"):
        pl.Lightning(Untraced(), pl.Trainer(max_epochs=1), train_dataloader=loader)
    import lightning.pytorch

    with pytest.raises(ConfigError, match=r"Lightning.trainer.*traced Trainer"):
        pl.Lightning(ReportingModule(), lightning.pytorch.Trainer(max_epochs=1), train_dataloader=loader)
    bad = pl.DataLoader(Digits(limit=50), collate_fn=lambda b: b)
    ev = pl.Lightning(ReportingModule(), pl.Trainer(max_epochs=1), train_dataloader=bad)
    with pytest.raises(EvaluatorError, match=r"'?train_dataloaders.collate_fn'?: .*lambda"):
        ev.to_config()
