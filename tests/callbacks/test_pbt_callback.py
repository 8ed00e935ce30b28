"""PBTCheckpoint: the first step saves, the next step continues from it (weights, optimizer state, new lr)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from nni_pl.callbacks import NNICallback, PBTCheckpoint
from nni_pl.errors import ConfigError
from nni_pl.trial._context import TrialContext, activate

pytestmark = pytest.mark.filterwarnings(
    "ignore::lightning.fabric.utilities.warnings.PossibleUserWarning",
    "ignore:.*LeafSpec.*:DeprecationWarning",
    "ignore:.*LeafSpec.*:FutureWarning",
)


class TinyRegressor(LightningModule):
    """y = w.x on random data; ``lr`` and the optimizer are hyperparameters, as PBT would tune them."""

    def __init__(self, lr: float = 0.1, optimizer: str = "sgd") -> None:
        super().__init__()
        self.lr = lr
        self.optimizer_name = optimizer
        self.layer = nn.Linear(4, 1)
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(16, 4, generator=gen)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = (self.layer(x).squeeze(-1) - y).pow(2).mean()
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=8)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_name == "adam":
            return torch.optim.Adam(self.parameters(), lr=self.lr)
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class Snapshot(Callback):
    """Records the weights and the optimizer when training starts (after PBTCheckpoint has loaded)."""

    def __init__(self) -> None:
        self.weights: dict[str, Tensor] = {}
        self.lr: float | None = None
        self.momentum: list[Tensor] = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        optimizer = trainer.optimizers[0]
        self.lr = optimizer.param_groups[0]["lr"]
        self.momentum = [
            optimizer.state[p]["momentum_buffer"].clone()
            for p in optimizer.param_groups[0]["params"]
            if "momentum_buffer" in optimizer.state[p]
        ]


class FileExistsAtReport(Callback):
    """Plays NNICallback's timing: notes whether the checkpoint is on disk when fit ends (the final report)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.existed: bool | None = None

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.existed = self.path.exists()


def fit(tmp_path: Path, model: LightningModule, callbacks: list[Callback], **kwargs: Any) -> Trainer:
    options: dict[str, Any] = {
        "max_epochs": 1,
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
    trainer = Trainer(**options)
    trainer.fit(model)
    return trainer


def start_trial(trial_dir: Path, parameters: dict[str, Any]) -> None:
    trial_dir.mkdir(parents=True, exist_ok=True)
    record = {"parameter_id": 0, "parameter_source": "algorithm", "parameters": parameters}
    (trial_dir / "parameter.json").write_text(json.dumps(record), encoding="utf-8")
    activate(TrialContext(experiment_id="exp", trial_id=trial_dir.name, sequence_id=0, trial_dir=trial_dir))


def step_params(
    root: Path, member: int, step: int, load_from: tuple[int, int] | None, **hp: Any
) -> dict[str, Any]:
    save = str(root / str(member) / str(step))
    load = str(root / str(load_from[0]) / str(load_from[1])) if load_from else save
    return {**hp, "load_checkpoint_dir": load, "save_checkpoint_dir": save}


@pytest.fixture(autouse=True)
def _clean_context(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("NNI_PL_PARAMETERS", raising=False)
    yield
    activate(None)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "checkpoint"


def first_step(tmp_path: Path, root: Path, **hp: Any) -> tuple[TinyRegressor, PBTCheckpoint]:
    start_trial(tmp_path / "t0", step_params(root, 0, 0, None, **hp))
    model, callback = TinyRegressor(**hp), PBTCheckpoint()
    fit(tmp_path, model, [callback])
    return model, callback


# --- arguments ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("filename", ["", "a/model.ckpt", "..", 3])
def test_pbt_checkpoint_rejects_a_filename_with_folders(filename: Any) -> None:
    with pytest.raises(ConfigError, match=r"PBTCheckpoint\.filename.*plain file name"):
        PBTCheckpoint(filename=filename)


def test_pbt_checkpoint_rejects_a_non_bool_flag() -> None:
    with pytest.raises(ConfigError, match=r"load_optimizer_state.*True or False.*'yes'"):
        PBTCheckpoint(load_optimizer_state="yes")  # type: ignore[arg-type]


def test_pbt_checkpoint_repr_and_state_key() -> None:
    cb = PBTCheckpoint(filename="w.ckpt", load_optimizer_state=False)
    assert repr(cb) == "PBTCheckpoint(filename='w.ckpt', load_optimizer_state=False)"
    assert cb.state_key != PBTCheckpoint().state_key


# --- the two steps ------------------------------------------------------------------------------------------------
def test_pbt_checkpoint_first_step_saves_into_save_checkpoint_dir(tmp_path: Path, root: Path) -> None:
    model, callback = first_step(tmp_path, root, lr=0.05)
    path = root / "0" / "0" / "model.ckpt"
    assert path.is_file() and callback.saved_to == str(path)
    assert callback.loaded_from is None  # load dir == save dir: the first step starts from scratch
    saved = torch.load(path, weights_only=False)
    for key, value in model.state_dict().items():
        assert torch.equal(saved["state_dict"][key], value)
    assert saved["callbacks"][callback.state_key]["optimizers"] == ["torch.optim.sgd.SGD"]


def test_pbt_checkpoint_next_step_continues_with_the_new_learning_rate(tmp_path: Path, root: Path) -> None:
    first, _ = first_step(tmp_path, root, lr=0.05)
    saved = torch.load(root / "0" / "0" / "model.ckpt", weights_only=False)

    # member 1 exploits member 0: it loads 0's step-0 checkpoint and trains with an explored lr
    start_trial(tmp_path / "t1", step_params(root, 1, 1, (0, 0), lr=0.06))
    snapshot, callback = Snapshot(), PBTCheckpoint()
    model = TinyRegressor(lr=0.06)
    fit(tmp_path, model, [callback, snapshot])

    for key, value in first.state_dict().items():
        assert torch.equal(snapshot.weights[key], value)  # training started from the saved weights
    assert snapshot.lr == pytest.approx(0.06)  # the new hyperparameter, not the saved 0.05
    saved_momentum = [s["momentum_buffer"] for s in saved["optimizer_states"][0]["state"].values()]
    assert len(snapshot.momentum) == len(saved_momentum) == 2
    for got, want in zip(snapshot.momentum, saved_momentum):
        assert torch.equal(got, want)  # the optimizer state continued
    assert callback.loaded_from == str(root / "0" / "0" / "model.ckpt") and callback.optimizer_state_loaded
    assert (root / "1" / "1" / "model.ckpt").is_file()
    assert not torch.equal(model.layer.weight, first.layer.weight)  # and it trained further


def test_pbt_checkpoint_loads_weights_only_when_the_optimizer_changed(tmp_path: Path, root: Path) -> None:
    first, _ = first_step(tmp_path, root, lr=0.05)
    start_trial(tmp_path / "t1", step_params(root, 0, 1, (0, 0), lr=0.01, optimizer="adam"))
    snapshot, callback = Snapshot(), PBTCheckpoint()
    with pytest.warns(
        UserWarning, match=r"not its optimizer state: its optimizers are \['torch.optim.sgd.SGD'\]"
    ):
        fit(tmp_path, TinyRegressor(lr=0.01, optimizer="adam"), [callback, snapshot])
    for key, value in first.state_dict().items():
        assert torch.equal(snapshot.weights[key], value)
    assert callback.loaded_from is not None and not callback.optimizer_state_loaded
    assert snapshot.lr == pytest.approx(0.01)


def test_pbt_checkpoint_weights_only_mode_keeps_a_fresh_optimizer(tmp_path: Path, root: Path) -> None:
    first, _ = first_step(tmp_path, root, lr=0.05)
    start_trial(tmp_path / "t1", step_params(root, 0, 1, (0, 0), lr=0.05))
    snapshot, callback = Snapshot(), PBTCheckpoint(load_optimizer_state=False)
    fit(tmp_path, TinyRegressor(lr=0.05), [callback, snapshot])
    assert torch.equal(snapshot.weights["layer.weight"], first.layer.weight)
    assert snapshot.momentum == [] and not callback.optimizer_state_loaded


def test_pbt_checkpoint_is_on_disk_before_the_final_result_is_reported(tmp_path: Path, root: Path) -> None:
    start_trial(tmp_path / "t0", step_params(root, 0, 0, None, lr=0.05))
    path = root / "0" / "0" / "model.ckpt"
    probe = FileExistsAtReport(path)
    nni = NNICallback(monitor="train_loss", mode="min")
    fit(tmp_path, TinyRegressor(lr=0.05), [probe, nni, PBTCheckpoint()])  # listed before PBTCheckpoint
    assert probe.existed is True
    metrics = (tmp_path / "t0" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(metrics[-1])["type"] == "FINAL"


def test_pbt_checkpoint_warns_and_trains_from_scratch_without_a_checkpoint(
    tmp_path: Path, root: Path
) -> None:
    start_trial(tmp_path / "t1", step_params(root, 1, 1, (0, 0), lr=0.05))  # nothing was saved at 0/0
    callback = PBTCheckpoint()
    with pytest.warns(UserWarning, match=r"no checkpoint at .*model\.ckpt; this step trains from scratch"):
        fit(tmp_path, TinyRegressor(), [callback])
    assert callback.loaded_from is None and (root / "1" / "1" / "model.ckpt").is_file()


def test_pbt_checkpoint_leaves_an_explicit_ckpt_path_resume_alone(tmp_path: Path, root: Path) -> None:
    first_step(tmp_path, root, lr=0.05)
    own = tmp_path / "own.ckpt"
    start_trial(tmp_path / "t1", step_params(root, 0, 1, (0, 0), lr=0.05))
    model, callback = TinyRegressor(lr=0.05), PBTCheckpoint()
    trainer = Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[callback],
    )  # fmt: skip
    (tmp_path / "own.ckpt").write_bytes((root / "0" / "0" / "model.ckpt").read_bytes())
    with pytest.warns(UserWarning, match=r"ckpt_path=.*own\.ckpt.*PBT's .*model\.ckpt is not loaded"):
        trainer.fit(model, ckpt_path=own)
    assert callback.loaded_from is None and trainer.current_epoch == 2


def test_pbt_checkpoint_warns_when_the_tuner_is_not_pbt(tmp_path: Path) -> None:
    start_trial(tmp_path / "t0", {"lr": 0.1})
    callback = PBTCheckpoint()
    with pytest.warns(UserWarning, match=r"no 'save_checkpoint_dir'.*PBTTuner"):
        fit(tmp_path, TinyRegressor(), [callback])
    assert callback.saved_to is None


def test_pbt_checkpoint_does_nothing_standalone(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    activate(TrialContext())  # a plain `python train.py`
    callback = PBTCheckpoint()
    fit(tmp_path, TinyRegressor(), [callback])
    assert callback.saved_to is None and callback.loaded_from is None
    assert not [w for w in recwarn if "PBTCheckpoint" in str(w.message)]
    assert not list(tmp_path.rglob("*.ckpt"))


def test_pbt_checkpoint_rejects_a_non_path_folder(tmp_path: Path) -> None:
    start_trial(tmp_path / "t0", {"save_checkpoint_dir": 7})
    with pytest.raises(ConfigError, match=r"parameters\.save_checkpoint_dir.*folder path.*7"):
        fit(tmp_path, TinyRegressor(), [PBTCheckpoint()])


def test_pbt_checkpoint_state_dict_round_trip(tmp_path: Path, root: Path) -> None:
    first_step(tmp_path, root, lr=0.05)
    start_trial(tmp_path / "t1", step_params(root, 0, 1, (0, 0), lr=0.05))
    callback = PBTCheckpoint()
    fit(tmp_path, TinyRegressor(lr=0.05), [callback])
    state = callback.state_dict()
    other = PBTCheckpoint()
    other.load_state_dict(state)
    assert other.loaded_from == callback.loaded_from == str(root / "0" / "0" / "model.ckpt")
    assert other.optimizer_state_loaded is True
    saved = torch.load(root / "0" / "1" / "model.ckpt", weights_only=False)
    assert saved["callbacks"][callback.state_key]["loaded_from"] == callback.loaded_from


# --- through the engine: a real PBT experiment of Lightning trials --------------------------------------------------
def lightning_member(params: dict[str, Any]) -> float:
    """One PBT step of TinyRegressor: fit one epoch from the checkpoint PBT names, report the loss."""
    torch.manual_seed(0)
    nni = NNICallback(monitor="train_loss", mode="min")
    trainer = Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[nni, PBTCheckpoint()],
    )
    trainer.fit(TinyRegressor(lr=params["lr"]))
    return float(nni.final_score)  # type: ignore[arg-type]


@pytest.mark.slow
def test_pbt_experiment_of_lightning_trials_continues_each_member(tmp_path: Path) -> None:
    from nni_pl.experiment import Experiment
    from nni_pl.experiment import store as st

    exp = Experiment(
        trial=lightning_member,
        search_space={"lr": {"_type": "loguniform", "_value": [0.001, 0.05]}},
        tuner={
            "name": "PBTTuner",
            "classArgs": {"optimize_mode": "minimize", "population_size": 2, "seed": 1},
        },
        max_trial_number=6,
        trial_concurrency=1,  # one worker imports Lightning once; the population still steps in generations
        experiment_working_directory=tmp_path,
    )
    exp.run(display=False)
    trials = sorted(exp.trials(), key=lambda t: t.parameter_id)
    assert [t.status for t in trials] == [st.SUCCEEDED] * 6
    root = Path(exp.directory) / "checkpoint"
    for member in (0, 1):
        for step in (0, 1, 2):
            assert (root / str(member) / str(step) / "model.ckpt").is_file()
    # every step continued from a checkpoint of the step before, and the loss kept going down
    for t in trials[2:]:
        load = Path(t.parameters["load_checkpoint_dir"])
        assert (
            load.parent.parent == root
            and int(load.name) == int(Path(t.parameters["save_checkpoint_dir"]).name) - 1
        )
    best = [min(t.final_default for t in trials[2 * g : 2 * g + 2]) for g in range(3)]
    assert best[2] < best[0]
