"""NNICallback: reports, final result, stop requests, budget, state, and the hpo_digits example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from nni_pl.callbacks import NNICallback
from nni_pl.errors import ConfigError, NniPlError
from nni_pl.space import SearchSpace
from nni_pl.training.lightning_cli import lightning_cli_args
from nni_pl.trial._context import TrialContext, activate

pytestmark = pytest.mark.filterwarnings(
    "ignore::lightning.fabric.utilities.warnings.PossibleUserWarning",
    "ignore:.*LeafSpec.*:DeprecationWarning",
    "ignore:.*LeafSpec.*:FutureWarning",
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hpo_digits"
SCORES = (0.3, 0.9, 0.5)


class ScriptedModel(LightningModule):
    """A tiny regression model whose logged ``val_score`` follows a script, one value per epoch."""

    def __init__(self, scores: Sequence[float] = SCORES, name: str = "val_score") -> None:
        super().__init__()
        self.scores = tuple(scores)
        self.name = name
        self.layer = nn.Linear(4, 1)

    def _loss(self, batch: list[Tensor]) -> Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        return self._loss(batch)

    def validation_step(self, batch: list[Tensor], batch_idx: int) -> None:
        score = self.scores[min(self.current_epoch, len(self.scores) - 1)]
        self.log(self.name, score)
        self.log("val_loss", self._loss(batch))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.randn(4, 4)), batch_size=4)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class TrainOnlyModel(ScriptedModel):
    """No validation loop: the metric is logged per training epoch."""

    validation_step = None  # type: ignore[assignment]
    val_dataloader = None  # type: ignore[assignment]

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        self.log("train_score", self.scores[min(self.current_epoch, len(self.scores) - 1)], on_epoch=True)
        return self._loss(batch)


class RequestStopAt(Callback):
    """Plays the manager: writes the stop file when training epoch ``epoch`` starts."""

    def __init__(self, trial_dir: Path, epoch: int) -> None:
        self.trial_dir = trial_dir
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            (self.trial_dir / ".nni").mkdir(exist_ok=True)
            (self.trial_dir / ".nni" / "stop").touch()


def make_trainer(tmp_path: Path, callbacks: list[Callback], **kwargs: Any) -> Trainer:
    options: dict[str, Any] = {
        "max_epochs": len(SCORES),
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
        "callbacks": callbacks,
    }
    options.update(kwargs)
    return Trainer(**options)


def start_trial(trial_dir: Path, parameters: dict[str, Any] | None = None) -> TrialContext:
    trial_dir.mkdir(parents=True, exist_ok=True)
    record = {"parameter_id": 0, "parameter_source": "algorithm", "parameters": parameters or {}}
    (trial_dir / "parameter.json").write_text(json.dumps(record), encoding="utf-8")
    ctx = TrialContext(experiment_id="exp", trial_id="trial0", sequence_id=0, trial_dir=trial_dir)
    activate(ctx)
    return ctx


def reports(trial_dir: Path) -> list[dict[str, Any]]:
    path = trial_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def values(trial_dir: Path, kind: str) -> list[float]:
    return [r["value"] for r in reports(trial_dir) if r["type"] == kind]


@pytest.fixture
def trial_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "trial"
    start_trial(path)
    yield path
    activate(None)


@pytest.fixture(autouse=True)
def _no_standalone_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NNI_PL_PARAMETERS", raising=False)


# --- reports ----------------------------------------------------------------------------------------------
def test_nni_callback_reports_each_validation_then_best(trial_dir: Path, tmp_path: Path) -> None:
    callback = NNICallback(monitor="val_score")
    trainer = make_trainer(tmp_path, [callback], num_sanity_val_steps=2)
    trainer.fit(ScriptedModel())

    assert values(trial_dir, "PERIODICAL") == pytest.approx(SCORES)  # the sanity check is not reported
    assert values(trial_dir, "FINAL") == pytest.approx([0.9])
    assert [r["seq"] for r in reports(trial_dir)] == [0, 1, 2, 3]
    assert reports(trial_dir)[-1]["type"] == "FINAL"
    assert callback.num_evaluations == 3 and callback.final_reported


@pytest.mark.parametrize(
    ("mode", "final", "expected"),
    [("max", "best", 0.9), ("min", "best", 0.3), ("max", "last", 0.5), ("min", "last", 0.5)],
)
def test_nni_callback_final_follows_mode_and_final(
    trial_dir: Path, tmp_path: Path, mode: str, final: str, expected: float
) -> None:
    callback = NNICallback(monitor="val_score", mode=mode, final=final)  # type: ignore[arg-type]
    make_trainer(tmp_path, [callback], num_sanity_val_steps=0).fit(ScriptedModel())
    assert values(trial_dir, "FINAL") == pytest.approx([expected])
    assert callback.final_score == pytest.approx(expected)


def test_nni_callback_best_ignores_nan(trial_dir: Path, tmp_path: Path) -> None:
    callback = NNICallback(monitor="val_score", mode="min")
    make_trainer(tmp_path, [callback], num_sanity_val_steps=0).fit(ScriptedModel((float("nan"), 0.7, 0.8)))
    assert values(trial_dir, "FINAL") == pytest.approx([0.7])


def test_nni_callback_report_intermediate_off_reports_only_final(trial_dir: Path, tmp_path: Path) -> None:
    make_trainer(tmp_path, [NNICallback(monitor="val_score", report_intermediate=False)]).fit(ScriptedModel())
    assert [r["type"] for r in reports(trial_dir)] == ["FINAL"]


def test_nni_callback_without_validation_reads_train_epoch_metric(trial_dir: Path, tmp_path: Path) -> None:
    make_trainer(tmp_path, [NNICallback(monitor="train_score")]).fit(TrainOnlyModel())
    assert values(trial_dir, "PERIODICAL") == pytest.approx(SCORES)
    assert values(trial_dir, "FINAL") == pytest.approx([0.9])


def test_nni_callback_validate_after_fit_reports_nothing_more(trial_dir: Path, tmp_path: Path) -> None:
    model = ScriptedModel()
    trainer = make_trainer(tmp_path, [NNICallback(monitor="val_score")], num_sanity_val_steps=0)
    trainer.fit(model)
    before = reports(trial_dir)
    trainer.validate(model, verbose=False)
    assert reports(trial_dir) == before


def test_nni_callback_missing_monitor_lists_available_metrics(trial_dir: Path, tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, [NNICallback(monitor="val_scor")], num_sanity_val_steps=0)
    with pytest.raises(
        ConfigError, match=r"'val_scor'.*did you mean 'val_score'.*Available: 'val_loss', 'val_score'"
    ):
        trainer.fit(ScriptedModel())
    assert reports(trial_dir) == []


def test_nni_callback_no_validation_run_warns_and_reports_no_final(trial_dir: Path, tmp_path: Path) -> None:
    trainer = make_trainer(
        tmp_path, [NNICallback(monitor="val_score")], max_epochs=1, check_val_every_n_epoch=5
    )
    with pytest.warns(UserWarning, match=r"reports no final result: no validation ran"):
        trainer.fit(ScriptedModel())
    assert reports(trial_dir) == []


# --- stop requests ----------------------------------------------------------------------------------------
def test_nni_callback_stop_request_stops_at_epoch_boundary_with_checkpoint(
    trial_dir: Path, tmp_path: Path
) -> None:
    callback = NNICallback(monitor="val_score", final="last")
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = make_trainer(
        tmp_path,
        [RequestStopAt(trial_dir, epoch=1), callback, checkpoint],
        max_epochs=10,
        enable_checkpointing=True,
        num_sanity_val_steps=0,
    )
    trainer.fit(ScriptedModel())

    assert callback.stopped_epoch == 1
    assert trainer.current_epoch == 2  # epochs 0 and 1 completed, nothing after
    assert values(trial_dir, "PERIODICAL") == pytest.approx([0.3, 0.9])
    assert values(trial_dir, "FINAL") == pytest.approx([0.9])  # the trial still reports its result
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert saved["epoch"] == 1
    assert saved["callbacks"][callback.state_key]["num_evaluations"] == 2


def test_nni_callback_stop_request_checked_at_train_epoch_end(trial_dir: Path, tmp_path: Path) -> None:
    callback = NNICallback(monitor="val_score")
    trainer = make_trainer(
        tmp_path, [RequestStopAt(trial_dir, epoch=0), callback], max_epochs=10, check_val_every_n_epoch=5
    )
    with pytest.warns(UserWarning, match="asked the trial to stop before the first validation"):
        trainer.fit(ScriptedModel())
    assert callback.stopped_epoch == 0
    assert trainer.current_epoch == 1
    assert reports(trial_dir) == []


def test_nni_callback_declares_graceful_stop_at_fit_setup(trial_dir: Path, tmp_path: Path) -> None:
    make_trainer(tmp_path, [NNICallback(monitor="val_score")], max_epochs=1).fit(ScriptedModel())
    assert (trial_dir / ".nni" / "graceful").is_file()


def test_nni_callback_stop_on_request_off_ignores_stop_file(trial_dir: Path, tmp_path: Path) -> None:
    callback = NNICallback(monitor="val_score", stop_on_request=False)
    trainer = make_trainer(tmp_path, [RequestStopAt(trial_dir, epoch=0), callback], num_sanity_val_steps=0)
    trainer.fit(ScriptedModel())
    assert callback.stopped_epoch is None
    assert trainer.current_epoch == len(SCORES)
    assert not (trial_dir / ".nni" / "graceful").exists()  # the manager may kill this trial at once


# --- budget -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("budget_to_epochs", "epochs"), [(True, 2), (False, 1)])
def test_nni_callback_trial_budget_sets_max_epochs(
    tmp_path: Path, budget_to_epochs: bool, epochs: int
) -> None:
    trial_dir = tmp_path / "trial"
    start_trial(trial_dir, {"TRIAL_BUDGET": 2.4})
    try:
        callback = NNICallback(monitor="val_score", budget_to_epochs=budget_to_epochs)
        trainer = make_trainer(tmp_path, [callback], max_epochs=1, num_sanity_val_steps=0)
        trainer.fit(ScriptedModel())
    finally:
        activate(None)
    assert trainer.fit_loop.max_epochs == epochs
    assert len(values(trial_dir, "PERIODICAL")) == epochs


def test_nni_callback_rejects_non_numeric_budget(tmp_path: Path) -> None:
    start_trial(tmp_path / "trial", {"TRIAL_BUDGET": "lots"})
    try:
        trainer = make_trainer(tmp_path, [NNICallback(monitor="val_score")])
        with pytest.raises(ConfigError, match=r"TRIAL_BUDGET.*'lots'"):
            trainer.fit(ScriptedModel())
    finally:
        activate(None)


# --- arguments and state ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"monitor": ""}, r"NNICallback.monitor.*non-empty"),
        ({"monitor": 3}, r"NNICallback.monitor.*got 3"),
        ({"monitor": "a", "mode": "maximize"}, r"NNICallback.mode.*'min', 'max'.*'maximize'"),
        ({"monitor": "a", "mode": "MAX"}, r"did you mean 'max'"),
        ({"monitor": "a", "final": "first"}, r"NNICallback.final.*'best', 'last'.*'first'"),
        ({"monitor": "a", "report_intermediate": "yes"}, r"report_intermediate.*True or False.*'yes'"),
        ({"monitor": "a", "stop_on_request": 1}, r"stop_on_request.*True or False.*int 1"),
        ({"monitor": "a", "budget_to_epochs": None}, r"budget_to_epochs.*None"),
    ],
)
def test_nni_callback_invalid_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        NNICallback(**kwargs)
    assert isinstance(info.value, NniPlError)


def test_nni_callback_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        NNICallback("val_acc")  # type: ignore[misc]


def test_nni_callback_state_dict_round_trip_and_state_key(trial_dir: Path, tmp_path: Path) -> None:
    acc = NNICallback(monitor="val_score", mode="min")
    loss = NNICallback(monitor="val_loss", mode="min", report_intermediate=False)
    assert acc.state_key != loss.state_key and "val_score" in acc.state_key
    trainer = make_trainer(tmp_path, [acc, loss], num_sanity_val_steps=0)
    trainer.fit(ScriptedModel())
    state = acc.state_dict()
    assert state == {
        "monitor": "val_score",
        "mode": "min",
        "best_score": pytest.approx(0.3),
        "last_score": pytest.approx(0.5),
        "num_evaluations": 3,
        "final_reported": True,
    }
    restored = NNICallback(monitor="val_score", mode="min")
    restored.load_state_dict(state)
    assert restored.state_dict() == state

    trainer.save_checkpoint(tmp_path / "both.ckpt")
    saved = torch.load(tmp_path / "both.ckpt", weights_only=False)["callbacks"]
    assert saved[acc.state_key]["best_score"] == pytest.approx(0.3)
    assert saved[loss.state_key]["monitor"] == "val_loss"


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_nni_callback_resume_keeps_best_from_before(tmp_path: Path) -> None:
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    start_trial(first_dir)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = make_trainer(
        tmp_path, [NNICallback(monitor="val_score"), checkpoint], max_epochs=2, enable_checkpointing=True
    )
    first.fit(ScriptedModel(scores=(0.3, 0.9)))
    assert values(first_dir, "FINAL") == pytest.approx([0.9])

    start_trial(second_dir)  # e.g. the trial restarted after a crash, resuming its last checkpoint
    try:
        callback = NNICallback(monitor="val_score")
        checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
        second = make_trainer(tmp_path, [callback, checkpoint], max_epochs=3, enable_checkpointing=True)
        second.fit(ScriptedModel(scores=(0.0, 0.0, 0.5)), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    finally:
        activate(None)
    assert callback.num_evaluations == 3
    assert values(second_dir, "PERIODICAL") == pytest.approx([0.5])
    assert values(second_dir, "FINAL") == pytest.approx([0.9])  # the best of the whole run


def test_nni_callback_standalone_logs_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("NNI_SYS_DIR", "NNI_TRIAL_JOB_ID", "NNI_EXP_ID"):
        monkeypatch.delenv(var, raising=False)
    activate(TrialContext())
    try:
        callback = NNICallback(monitor="val_score")
        make_trainer(tmp_path, [callback], num_sanity_val_steps=0).fit(ScriptedModel())
    finally:
        activate(None)
    assert callback.final_score == pytest.approx(0.9)
    assert callback.stopped_epoch is None
    assert not list(tmp_path.rglob("metrics.jsonl")) and not list(tmp_path.rglob("graceful"))
    assert callback.final_reported


# --- the example ------------------------------------------------------------------------------------------
def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNI_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def test_hpo_digits_example_runs_as_a_trial(tmp_path: Path) -> None:
    """``train.py`` accepts a point sampled from its search space and writes NNI's reports."""
    space = SearchSpace.load(EXAMPLE / "search_space.json")
    params = {**space.sample(np.random.default_rng(0)), "max_epochs": 2}
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    record = {"parameter_id": 0, "parameter_source": "algorithm", "parameters": params}
    (trial_dir / "parameter.json").write_text(json.dumps(record), encoding="utf-8")
    env = {**_clean_env(), "NNI_EXP_ID": "exp", "NNI_TRIAL_JOB_ID": "t0", "NNI_TRIAL_SEQ_ID": "0"}
    env.update({"NNI_SYS_DIR": str(trial_dir), "NNI_OUTPUT_DIR": str(trial_dir)})
    proc = subprocess.run(
        [sys.executable, "train.py"], cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "best val_acc=" in proc.stdout
    assert [r["type"] for r in reports(trial_dir)] == ["PERIODICAL", "PERIODICAL", "FINAL"]
    assert 0.0 <= values(trial_dir, "FINAL")[0] <= 1.0
    assert (trial_dir / ".nni" / "graceful").is_file()
    assert list((trial_dir / "checkpoints").glob("*.ckpt"))


def test_hpo_digits_example_runs_standalone(tmp_path: Path) -> None:
    env = {**_clean_env(), "NNI_PL_PARAMETERS": json.dumps({"max_epochs": 1, "hidden_size": 32})}
    script = EXAMPLE / "train.py"
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "best val_acc=" in proc.stdout and "hidden_size=32" in proc.stdout
    assert "[nni-pl standalone] final result" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # a standalone run leaves no files behind


@pytest.mark.filterwarnings("ignore::DeprecationWarning:lightning.pytorch.cli")  # Lightning vs jsonargparse
@pytest.mark.parametrize(
    ("overrides", "monitor", "mode"),
    [
        ([], "val_acc", "max"),
        (
            ["--trainer.callbacks.init_args.monitor=val_loss", "--trainer.callbacks.init_args.mode=min"],
            "val_loss",
            "min",
        ),
    ],
)
def test_hpo_preset_with_lightning_cli_example(
    trial_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    overrides: list[str],
    monitor: str,
    mode: str,
) -> None:
    """``train_cli.py fit --config callbacks/hpo.yaml`` reports; CLI-path parameters reach the model."""
    pytest.importorskip("jsonargparse", reason="LightningCLI needs jsonargparse[signatures]")
    params = {"model.hidden_size": 16, "data.batch_size": 128, "model.optimizer": "SGD"}
    start_trial(trial_dir, params)
    monkeypatch.setattr(sys, "argv", ["train_cli.py"])
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delitem(sys.modules, "model", raising=False)
    monkeypatch.delitem(sys.modules, "train_cli", raising=False)
    import train_cli

    try:
        cli = train_cli.main(
            [
                "fit",
                "--config",
                str(REPO / "callbacks" / "hpo.yaml"),
                "--trainer.max_epochs=2",
                f"--trainer.default_root_dir={tmp_path}",
                *overrides,
                *lightning_cli_args(params),  # what the manager appends to the trial command
            ]
        )
    finally:
        sys.modules.pop("model", None)
        sys.modules.pop("train_cli", None)
    callbacks = [cb for cb in cli.trainer.callbacks if isinstance(cb, NNICallback)]
    assert len(callbacks) == 1 and callbacks[0].monitor == monitor and callbacks[0].mode == mode
    assert cli.model.hparams["hidden_size"] == 16 and cli.model.hparams["optimizer"] == "SGD"
    assert cli.datamodule.batch_size == 128
    assert [r["type"] for r in reports(trial_dir)] == ["PERIODICAL", "PERIODICAL", "FINAL"]
