"""The LightningCLI presets in ``callbacks/``: pruning (one-shot L1, AGP with TaylorFO) and one-shot NAS, each run
in-process by ``LightningCLI(..., args=["--config", preset, ...])`` on scikit-learn's digits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pytest.importorskip("jsonargparse", reason="LightningCLI needs jsonargparse[signatures]")
pytest.importorskip("sklearn", reason="the presets are tested on scikit-learn's digits")

from lightning.pytorch.cli import LightningCLI

REPO = Path(__file__).resolve().parents[2]
QUIET = [
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.enable_checkpointing=false",
]


# --- digits: data and a small CNN ----------------------------------------------------------------------------------
class DigitsData(pl.LightningDataModule):
    """scikit-learn's 8x8 digits, 80 % for training and 20 % for validation (a fixed split)."""

    def __init__(self, batch_size: int = 64, flat: bool = False) -> None:
        super().__init__()
        self.batch_size, self.flat = batch_size, flat

    def setup(self, stage: str) -> None:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x = torch.tensor(x, dtype=torch.float32) / 16.0
        x = x if self.flat else x.reshape(-1, 1, 8, 8)
        y = torch.tensor(y)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        cut = int(0.8 * len(y))
        self.train_set = TensorDataset(x[order[:cut]], y[order[:cut]])
        self.val_set = TensorDataset(x[order[cut:]], y[order[cut:]])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(1),
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)


class Classifier(pl.LightningModule):
    """Cross-entropy training, ``val_acc``/``val_loss`` logged per validation epoch; the network is ``forward``."""

    lr = 0.01

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(-1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class DigitsCNN(Classifier):
    """conv 16 -> BN -> ReLU -> conv 32 -> ReLU -> pool -> fc 64 -> ReLU -> ``classifier`` (10 classes)."""

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__()
        self.lr = lr
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(128, 64),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(64, 10)
        self.example_input_array = torch.zeros(1, 1, 8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _widths(model: DigitsCNN) -> tuple[int, int, int, int]:
    f = model.features
    return f[0].out_channels, f[3].out_channels, f[7].out_features, model.classifier.out_features


def _accuracy(model: pl.LightningModule, data: DigitsData) -> float:
    model.eval()
    x, y = data.val_set.tensors
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


def _pruning_cli(preset: str, tmp_path: Path, *extra: str) -> LightningCLI:
    return LightningCLI(
        DigitsCNN,
        DigitsData,
        run=False,
        save_config_callback=None,
        seed_everything_default=0,
        args=[
            "--config",
            str(REPO / "callbacks" / preset),
            *QUIET,
            f"--trainer.default_root_dir={tmp_path}",
            *extra,
        ],
    )


# --- pruning ---------------------------------------------------------------------------------------------------------
def test_pruning_preset_prunes_once_and_fine_tunes_the_smaller_model(tmp_path: Path) -> None:
    from nni_pl.callbacks import PruningCallback

    cli = _pruning_cli("pruning.yaml", tmp_path, "--trainer.max_epochs=4")
    (cb,) = [c for c in cli.trainer.callbacks if isinstance(c, PruningCallback)]
    assert (cb.pruner, cb.schedule, cb.start_epoch, cb.speedup) == ("l1", "oneshot", 1, True)
    assert _widths(cli.model) == (16, 32, 64, 10)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cb.done_steps == [1] and cb.sped_up
    # half of every hidden Conv2d/Linear layer is gone, the output layer keeps its 10 classes
    assert _widths(cli.model) == (8, 16, 32, 10)
    assert cli.model.features[1].num_features == 8  # the BatchNorm shrank with its convolution
    assert cli.model.classifier.in_features == 32
    dense = sum(p.numel() for p in DigitsCNN().parameters())
    assert sum(p.numel() for p in cli.model.parameters()) < 0.4 * dense
    assert _accuracy(cli.model, cli.datamodule) > 0.85


def test_pruning_agp_preset_prunes_gradually_with_taylor_importance(tmp_path: Path) -> None:
    from nni_pl.callbacks import PruningCallback

    cli = _pruning_cli("pruning_agp.yaml", tmp_path, "--trainer.max_epochs=5")
    (cb,) = [c for c in cli.trainer.callbacks if isinstance(c, PruningCallback)]
    assert (cb.pruner, cb.schedule, cb.pruning_params) == ("taylorfo", "agp", {"training_batches": 5})
    assert cb.steps(5) == [0, 1, 2]  # end_epoch null: max_epochs // 2

    sparsity: list[int] = []

    class ZeroUnits(pl.Callback):
        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            w = pl_module.features[7].weight.detach()
            sparsity.append(int((w.abs().sum(1) == 0).sum()) if not cb.sped_up else 64 - w.shape[0])

    cli.trainer.callbacks.append(ZeroUnits())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cb.done_steps == [0, 1, 2] and cb.sped_up
    # AGP: 1 - (1 - t/3)^3 of 50 % of 64 units after step t = 1, 2, 3 -> 23, 31, 32 units pruned
    assert sparsity == [23, 31, 32, 32, 32]
    assert _widths(cli.model) == (8, 16, 32, 10)
    assert _accuracy(cli.model, cli.datamodule) > 0.85


# --- one-shot NAS ----------------------------------------------------------------------------------------------------
def _space() -> Any:
    from nni_pl.nas import LayerChoice, ModelSpace, ValueChoice
    from nni_pl.nas import nn as nas_nn

    class DigitsSpace(ModelSpace):
        """64 -> hidden (16 | 32 | 64) -> relu | tanh | identity -> 10."""

        def __init__(self) -> None:
            super().__init__()
            hidden = ValueChoice([16, 32, 64], label="hidden")
            self.fc = nas_nn.Linear(64, hidden)
            self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "none": nn.Identity()}, label="act")
            self.out = nas_nn.Linear(hidden, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.act(self.fc(x)))

    return DigitsSpace()


class DigitsNAS(Classifier):
    """A LightningModule whose network ``self.net`` is a model space."""

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__()
        self.lr = lr
        self.net = _space()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _nas_cli(tmp_path: Path, *extra: str) -> LightningCLI:
    return LightningCLI(
        datamodule_class=DigitsData,
        run=False,
        save_config_callback=None,
        seed_everything_default=0,
        args=[
            "--config",
            str(REPO / "callbacks" / "oneshot_nas.yaml"),
            f"--model.model={__name__}.DigitsNAS",
            "--data.flat=true",
            *QUIET,
            f"--trainer.default_root_dir={tmp_path}",
            *extra,
        ],
    )


def test_oneshot_nas_preset_searches_with_darts_and_exports_a_frozen_able_architecture(
    tmp_path: Path,
) -> None:
    from nni_pl.nas import load_arch
    from nni_pl.nas.oneshot.cli import OneShotSearch
    from nni_pl.nas.oneshot.lightning import DartsModule

    cli = _nas_cli(
        tmp_path,
        "--trainer.max_epochs=4",
        "--model.model.lr=0.02",
        "--model.strategy_args.arc_learning_rate=0.01",
    )
    search = cli.model
    assert isinstance(search, OneShotSearch) and isinstance(search.search_module, DartsModule)
    assert search.model.lr == 0.02 and search.space_path == "net"
    assert search.search_module.arc_learning_rate == 0.01
    cli.trainer.fit(search, datamodule=cli.datamodule)
    arch = load_arch(tmp_path / "architecture.json")
    assert arch == search.arch and set(arch) == {"hidden", "act"}
    model = _space().freeze(arch)
    assert model.fc.out_features == arch["hidden"]
    # the architecture parameters moved from their 1e-3 initialisation: they were trained on validation batches
    probs = search.search_module.probabilities()
    assert max(float(p.max() - p.min()) for p in probs.values()) > 0.01
    assert len(search.search_module.history) == 4
    # the supernet learned the task; the subnet it exports keeps the weights
    assert cli.trainer.callback_metrics["val_acc"] > 0.85
    assert _accuracy(search.export_model(), cli.datamodule) > 0.8


def test_oneshot_nas_preset_fit_resumes_from_a_checkpoint(tmp_path: Path) -> None:
    first = _nas_cli(tmp_path, "--trainer.max_epochs=2", "--trainer.enable_checkpointing=true")
    first.trainer.fit(first.model, datamodule=first.datamodule)
    (ckpt,) = (tmp_path / "checkpoints").glob("*.ckpt")
    saved = torch.load(ckpt, weights_only=False)
    assert saved["nni_pl_oneshot_search"]["space"] == "net"
    alpha = [a.detach().clone() for a in first.model.search_module.alpha]

    class AlphaAtStart(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.alpha = [a.detach().clone() for a in pl_module.search_module.alpha]

    probe = AlphaAtStart()
    second = _nas_cli(tmp_path / "resumed", "--trainer.max_epochs=3")
    second.trainer.callbacks.append(probe)
    second.trainer.fit(second.model, datamodule=second.datamodule, ckpt_path=str(ckpt))
    assert all(torch.equal(a, b) for a, b in zip(alpha, probe.alpha))  # the architecture parameters came back
    history = second.model.search_module.history
    assert [h["epoch"] for h in history] == [0, 1, 2]  # two epochs from the checkpoint, one more trained
    assert history[:2] == first.model.search_module.history
    assert second.trainer.global_step == 3 * first.trainer.global_step // 2
    assert (tmp_path / "resumed" / "architecture.json").is_file()


def test_oneshot_nas_preset_runs_spos_with_its_search_after_training(tmp_path: Path) -> None:
    from nni_pl.nas.oneshot.lightning import RandomOneShotModule

    cli = _nas_cli(
        tmp_path,
        "--trainer.max_epochs=2",
        "--model.strategy=spos",
        "--model.strategy_args={num_candidates: 6, population_size: 3, bn_recalibration_batches: 0}",
        "--model.export_path=found/spos.json",
    )
    search = cli.model
    assert isinstance(search.search_module, RandomOneShotModule) and search.strategy.num_candidates == 6
    cli.trainer.fit(search, datamodule=cli.datamodule)
    # (arch, score) of the 6 architectures evaluated on the validation batches, best first; the module has no
    # ``metrics``, so the score is minus its training_step loss
    scored = search.search_module.searched
    assert len(scored) == 6 and search.arch == scored[0][0]
    assert scored[0][1] > scored[-1][1] and scored[0][1] > -1.0
    from nni_pl.nas import load_arch

    assert load_arch(tmp_path / "found" / "spos.json") == search.arch


def test_oneshot_search_pairs_loaders_given_to_fit(tmp_path: Path) -> None:
    from nni_pl.nas.oneshot.cli import OneShotSearch

    data = DigitsData(flat=True)
    data.setup("fit")
    search = OneShotSearch(
        model=DigitsNAS(), strategy="enas", strategy_args={"ctrl_steps_aggregate": 5}, export_path=None
    )
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=10,
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    seen: list[Any] = []
    original = search.search_module.step

    def step(train_batch: Any, val_batch: Any, batch_idx: int) -> None:
        seen.append((train_batch[0].shape[0], val_batch[0].shape[0]))
        original(train_batch, val_batch, batch_idx)

    search.search_module.step = step  # type: ignore[method-assign]
    train, val = data.train_dataloader(), data.val_dataloader()
    trainer.fit(search, train_dataloaders=train, val_dataloaders=val)
    assert len(seen) == 10 and seen[0] == (64, 256)  # a training and a validation batch per step
    assert trainer.fit_loop._data_source.instance is train  # the fit's own loaders are given back
    assert set(search.arch) == {"hidden", "act"} and search.exported_to is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"strategy": "dart"},
            r"'OneShotSearch\.strategy'.*unknown one-shot strategy 'dart' \(did you mean 'darts'\?\)",
        ),
        (
            {"strategy": 3},
            r"'OneShotSearch\.strategy'.*or a nni_pl\.nas\.strategy settings object.*got int 3",
        ),
        (
            {"strategy_args": {"arc_learning_rat": 0.1}},
            r"'OneShotSearch\.strategy_args\.arc_learning_rat'.*not an argument of DARTS \(did you mean 'arc_learning_rate'\?\)",
        ),
        (
            {"strategy_args": [1]},
            r"'OneShotSearch\.strategy_args'.*dict of DARTS's arguments, got list \[1\]",
        ),
        ({"strategy_args": {"arc_learning_rate": -1}}, r"DARTS\.arc_learning_rate.*got -1"),
        ({"space": "nett"}, r"'OneShotSearch\.space'.*has no submodule 'nett' \(did you mean 'net'\?\)"),
        ({"space": "net.act.relu"}, r"'OneShotSearch\.space'.*'net\.act\.relu' \(ReLU\) has no LayerChoice"),
        ({"export_path": ""}, r"'OneShotSearch\.export_path'.*got ''"),
    ],
)
def test_oneshot_search_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    from nni_pl.errors import ConfigError
    from nni_pl.nas.oneshot.cli import OneShotSearch

    with pytest.raises(ConfigError, match=match):
        OneShotSearch(model=DigitsNAS(), **kwargs)


def test_oneshot_search_needs_exactly_one_space() -> None:
    from nni_pl.errors import ConfigError
    from nni_pl.nas.oneshot.cli import OneShotSearch

    with pytest.raises(ConfigError, match=r"'OneShotSearch\.model'.*DigitsCNN holds no model space"):
        OneShotSearch(model=DigitsCNN())
    two = DigitsNAS()
    two.other = _space()
    with pytest.raises(
        ConfigError, match=r"'OneShotSearch\.space'.*holds several \(\['net', 'other'\]\).*space: net"
    ):
        OneShotSearch(model=two)
    assert OneShotSearch(model=two, space="other").space_path == "other"


def test_oneshot_search_bilevel_strategy_needs_validation_data(tmp_path: Path) -> None:
    from nni_pl.errors import ConfigError
    from nni_pl.nas.oneshot.cli import OneShotSearch

    class TrainOnly(DigitsData):
        val_dataloader = pl.LightningDataModule.val_dataloader

    trainer = pl.Trainer(max_epochs=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    with pytest.raises(
        ConfigError, match=r"DARTS trains the architecture on validation batches.*val_dataloader"
    ):
        trainer.fit(OneShotSearch(model=DigitsNAS()), datamodule=TrainOnly(flat=True))


def test_oneshot_search_pairs_the_modules_own_loaders(tmp_path: Path) -> None:
    from nni_pl.nas.oneshot.cli import OneShotSearch

    class WithLoaders(DigitsNAS):
        def setup(self, stage: str) -> None:
            self.data = DigitsData(flat=True)
            self.data.setup(stage)

        def train_dataloader(self) -> DataLoader:
            return self.data.train_dataloader()

        def val_dataloader(self) -> DataLoader:
            return self.data.val_dataloader()

    search = OneShotSearch(model=WithLoaders(), strategy="DARTS", export_path=str(tmp_path / "arch.json"))
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=5,
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(search)
    assert set(trainer.train_dataloader) == {"train", "val"}  # the CombinedLoader's iterables
    assert "val_acc" in trainer.callback_metrics  # the module's val_dataloader fed validation too
    assert (tmp_path / "arch.json").is_file()


@pytest.mark.parametrize("strategy", ["gumbel", "proxyless", "enas", "spos"])
def test_oneshot_search_trains_every_strategy_a_few_steps(strategy: str, tmp_path: Path) -> None:
    from nni_pl.nas.oneshot.cli import STRATEGIES, OneShotSearch

    data = DigitsData(flat=True)
    args = {"ctrl_steps_aggregate": 2} if strategy == "enas" else {}
    if strategy == "spos":
        args = {"num_candidates": 3, "population_size": 2, "bn_recalibration_batches": 0, "search_batches": 1}
    search = OneShotSearch(model=DigitsNAS(), strategy=strategy, strategy_args=args, export_path="a.json")
    assert search.strategy.name == STRATEGIES[strategy].name == search.search_module.strategy_name
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=4,
        limit_val_batches=1,
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(search, datamodule=data)
    assert trainer.global_step >= 4 and "val_acc" in trainer.callback_metrics
    assert _space().check_arch(search.arch) == search.arch
    assert (tmp_path / "a.json").is_file()


def test_oneshot_search_refuses_lightning_clis_optimizer(tmp_path: Path) -> None:
    from nni_pl.errors import ConfigError

    cli = _nas_cli(tmp_path, "--trainer.max_epochs=1", "--optimizer=Adam")
    with pytest.raises(ConfigError, match=r"'optimizer'.*drop --optimizer/--lr_scheduler"):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)


def test_oneshot_nas_preset_takes_a_strategy_object_from_the_config(tmp_path: Path) -> None:
    from nni_pl.nas.oneshot.lightning import GumbelDartsModule
    from nni_pl.nas.strategy import GumbelDARTS

    cli = _nas_cli(
        tmp_path, "--model.strategy=nni_pl.nas.strategy.GumbelDARTS", "--model.strategy.min_temp=0.5"
    )
    assert isinstance(cli.model.strategy, GumbelDARTS) and cli.model.strategy.min_temp == 0.5
    assert isinstance(cli.model.search_module, GumbelDartsModule) and cli.model.search_module.min_temp == 0.5
