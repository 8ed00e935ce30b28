"""PruningCallback on a small CNN: one-shot and AGP pruning during fit, the speed-up at the end (trainer.model and
the last checkpoint are the small model, restorable), masks kept while fine-tuning, LightningCLI + YAML."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nni_pl.callbacks import PruningCallback
from nni_pl.errors import ConfigError


class TinyNet(pl.LightningModule):
    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 3),
        )
        self.example_input_array = torch.randn(1, 1, 8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class TinyData(pl.LightningDataModule):
    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(32, 1, 8, 8, generator=g)
        y = torch.randint(0, 3, (32,), generator=g)
        return DataLoader(TensorDataset(x, y), batch_size=8)


def trainer(tmp_path: Path, callbacks: list, epochs: int = 3) -> pl.Trainer:
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    return pl.Trainer(
        max_epochs=epochs,
        callbacks=[*callbacks, ckpt],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )


CONV = [{"sparsity": 0.5, "op_types": ["Conv2d"]}]


class ZeroChannels(pl.Callback):
    """Records, after each training epoch, how many output channels of the second conv are all zero."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        w = pl_module.net[3].weight
        self.counts.append(int((w.detach().flatten(1).abs().sum(1) == 0).sum()))


def test_oneshot_prunes_speeds_up_and_checkpoint_holds_small_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    cb = PruningCallback(pruner="l1", config_list=CONV, schedule="oneshot", start_epoch=1)
    t = trainer(tmp_path, [cb])
    t.fit(model, datamodule=TinyData())
    assert cb.done_steps == [1] and cb.sped_up
    assert t.lightning_module is model
    assert model.net[0].out_channels == 4 and model.net[1].num_features == 4
    assert model.net[3].in_channels == 4 and model.net[3].out_channels == 8 and model.net[7].in_features == 8
    # the optimiser was rebuilt: the small model's parameters are the ones trained after the speed-up
    assert {id(p) for g in t.optimizers[0].param_groups for p in g["params"]} == {
        id(p) for p in model.parameters()
    }
    last = tmp_path / "last.ckpt"
    state = torch.load(last, weights_only=False)
    assert state["state_dict"]["net.0.weight"].shape == (4, 1, 3, 3)
    restored = PruningCallback.restore(TinyNet(), last).eval()
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(restored(x), model.eval()(x))


def test_agp_schedule_prunes_each_epoch_and_keeps_masks_while_finetuning(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    cb = PruningCallback(
        pruner="l1", config_list=CONV, schedule="agp", start_epoch=0, end_epoch=2, speedup=False
    )
    assert cb.steps(4) == [0, 1, 2]
    zeros = ZeroChannels()
    t = trainer(tmp_path, [cb, zeros], epochs=4)
    t.fit(model, datamodule=TinyData())
    # AGP over 3 steps: round(16 * 0.5 * (1 - (1 - i/3)^3)) = 6, 8, 8 channels, still zero after each epoch's training
    assert zeros.counts == [6, 8, 8, 8]
    assert model.net[3].out_channels == 16  # speedup=False: masked only


def test_scheduled_with_speedup_at_the_last_step(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    cb = PruningCallback(pruner="l1", config_list=CONV, schedule="linear", start_epoch=0, end_epoch=1)
    trainer(tmp_path, [cb], epochs=3).fit(model, datamodule=TinyData())
    assert cb.done_steps == [0, 1] and model.net[3].out_channels == 8


def test_fit_resumes_from_a_checkpoint_saved_after_the_speedup(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    first = trainer(tmp_path, [PruningCallback(pruner="l1", config_list=CONV, start_epoch=0)], epochs=2)
    first.fit(model, datamodule=TinyData())
    last = tmp_path / "last.ckpt"
    saved = torch.load(last, weights_only=False)["state_dict"]

    # a new process would build the dense module again: fit(ckpt_path=...) shrinks it before the weights load
    fresh = TinyNet()
    cb = PruningCallback(pruner="l1", config_list=CONV, start_epoch=0)
    seen: dict[str, torch.Tensor] = {}

    class Watch(pl.Callback):
        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            seen.setdefault("w", pl_module.net[3].weight.detach().clone())

    resumed = trainer(tmp_path / "resumed", [cb, Watch()], epochs=4)
    resumed.fit(fresh, datamodule=TinyData(), ckpt_path=last)
    assert cb.sped_up and cb.done_steps == [0]  # not pruned a second time
    assert fresh.net[0].out_channels == 4 and fresh.net[3].out_channels == 8 and fresh.net[7].in_features == 8
    torch.testing.assert_close(seen["w"], saved["net.3.weight"])  # training went on from the saved weights
    assert (
        resumed.current_epoch == 4 and resumed.global_step == 16
    )  # 2 epochs from the checkpoint + 2 more, 4 batches each
    assert not torch.equal(fresh.net[3].weight.detach(), saved["net.3.weight"])
    assert {id(p) for g in resumed.optimizers[0].param_groups for p in g["params"]} == {
        id(p) for p in fresh.parameters()
    }
    assert "on_load_checkpoint" not in fresh.__dict__  # the hook wrapper is gone after fit


def test_fit_resumes_mid_schedule_with_the_masks_so_far(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    agp = {"pruner": "l1", "config_list": CONV, "schedule": "agp", "start_epoch": 0, "end_epoch": 2}
    every_epoch = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, filename="{epoch}")
    pl.Trainer(
        max_epochs=4,
        callbacks=[PruningCallback(**agp), every_epoch],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(model, datamodule=TinyData())
    last = tmp_path / "epoch=0.ckpt"  # written after the first of three AGP steps
    assert not torch.load(last, weights_only=False)["nni_pl_pruning"]["sped_up"]
    fresh, cb = TinyNet(), PruningCallback(**agp)
    zeros = ZeroChannels()
    trainer(tmp_path / "resumed", [cb, zeros], epochs=4).fit(fresh, datamodule=TinyData(), ckpt_path=last)
    # epoch 0's step (6 of 16 channels) came from the checkpoint; epoch 1 prunes 8 and speeds up at epoch 2
    assert cb.done_steps == [0, 1, 2] and cb.sped_up
    assert zeros.counts[0] == 8 and fresh.net[3].out_channels == 8


def test_a_fit_ended_before_the_schedule_leaves_a_resumable_small_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    agp = {"pruner": "l1", "config_list": CONV, "schedule": "agp", "start_epoch": 0, "end_epoch": 2}
    model, cb = TinyNet(), PruningCallback(**agp)
    trainer(tmp_path, [cb], epochs=1).fit(
        model, datamodule=TinyData()
    )  # stops after the first of three steps
    assert cb.sped_up and model.net[3].out_channels == 10  # 6 of 16 channels pruned so far
    state = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert state["nni_pl_pruning"]["sped_up"] and state["state_dict"]["net.3.weight"].shape[0] == 10
    fresh, again = TinyNet(), PruningCallback(**agp)
    trainer(tmp_path / "more", [again], epochs=3).fit(
        fresh, datamodule=TinyData(), ckpt_path=tmp_path / "last.ckpt"
    )
    assert again.done_steps == [0] and fresh.net[3].out_channels == 10  # already small: not pruned again


@pytest.mark.parametrize("pruner", ["taylorfo", "apoz"])
def test_pruners_needing_training_use_the_running_fit(tmp_path: Path, pruner: str) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    params = {"training_batches": 2}
    cb = PruningCallback(pruner=pruner, config_list=CONV, start_epoch=1, pruning_params=params)
    trainer(tmp_path, [cb], epochs=2).fit(model, datamodule=TinyData())
    assert cb.sped_up and model.net[0].out_channels == 4 and model.net[3].out_channels == 8


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ConfigError, match="schedule"):
        PruningCallback(config_list=CONV, schedule="cubic")
    with pytest.raises(ConfigError, match="config_list"):
        PruningCallback(config_list=None)
    with pytest.raises(ConfigError, match="pruning_algorithm"):
        PruningCallback(pruner="nope", config_list=CONV)
    with pytest.raises(ConfigError, match=r"config_list\[0\]"):
        PruningCallback(config_list=[{"sparsity": 2.0, "op_types": ["Conv2d"]}])


def test_lightning_cli_config(tmp_path: Path) -> None:
    script = tmp_path / "cli.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from lightning.pytorch.cli import LightningCLI
            from test_pruning_callback import TinyNet, TinyData
            cli = LightningCLI(TinyNet, TinyData, run=True, save_config_callback=None)
            print("OUT", cli.model.net[0].out_channels, cli.model.net[3].out_channels)
            """
        )
    )
    (tmp_path / "config.yaml").write_text(
        textwrap.dedent(
            """
            trainer:
              max_epochs: 2
              logger: false
              enable_progress_bar: false
              enable_checkpointing: false
              callbacks:
                - class_path: nni_pl.callbacks.PruningCallback
                  init_args:
                    pruner: l1
                    config_list: [{sparsity: 0.5, op_types: [Conv2d]}]
                    schedule: agp
                    start_epoch: 0
                    end_epoch: 1
                    dummy_input: [1, 1, 8, 8]
            """
        )
    )
    import subprocess

    done = subprocess.run(
        [sys.executable, str(script), "fit", "--config", str(tmp_path / "config.yaml")],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OUT 4 8" in done.stdout, done.stdout[-2000:]


# --- a thin adapter: keyword-only, validated, the shared schedule, its own state ------------------------------------
def test_pruning_callback_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError, match="positional"):
        PruningCallback("l1", CONV)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pruner": 3}, r"PruningCallback\.pruner.*got 3"),
        ({"pruner": "l3"}, r"PruningCallback\.pruner.*unknown pruning_algorithm 'l3'"),
        ({"schedule": "cubic"}, r"PruningCallback\.schedule.*'agp'.*got 'cubic'"),
        ({"start_epoch": -1}, r"PruningCallback\.start_epoch.*>= 0, got -1"),
        ({"start_epoch": 2, "end_epoch": 1}, r"PruningCallback\.end_epoch.*>= start_epoch \(2\), got 1"),
        ({"end_epoch": True}, r"PruningCallback\.end_epoch.*got True"),
        ({"speedup": "yes"}, r"PruningCallback\.speedup.*True or False, got str 'yes'"),
        ({"dummy_input": "x"}, r"PruningCallback\.dummy_input.*shape such as \[1, 3, 32, 32\], got str 'x'"),
        ({"dummy_input": [1, 0, 8]}, r"PruningCallback\.dummy_input.*got list \[1, 0, 8\]"),
        ({"pruning_params": [1]}, r"PruningCallback\.pruning_params.*dict.*got list"),
        ({"pruning_params": {"sparsity": 1}}, r"pruning_params\.sparsity.*not an argument of L1NormPruner"),
        (
            {"pruner": "taylorfo", "pruning_params": {"training_batch": 2}},
            r"pruning_params\.training_batch.*not an argument of TaylorFOWeightPruner.*'training_batches'",
        ),
        (
            {"pruning_params": {"mode": "fast"}},
            r"pruning_params\.mode.*L1NormPruner takes mode in.*got 'fast'",
        ),
        (
            {"pruner": "apoz", "pruning_params": {"evaluator": 3}},
            r"pruning_params\.evaluator.*Evaluator, got int",
        ),
        ({"config_list": None}, r"PruningCallback\.config_list.*required.*got None"),
    ],
)
def test_pruning_callback_invalid_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PruningCallback(**{"config_list": CONV, **kwargs})


def test_pruning_callback_takes_the_schedule_and_the_step_of_the_scheduled_pruners() -> None:
    from nni_pl.callbacks import pruning
    from nni_pl.compression.pruning import schedule, scheduled

    assert pruning.schedule_fraction is schedule.schedule_fraction
    assert pruning.prune_step is schedule.prune_step is scheduled.prune_step
    assert pruning.with_sparsity is schedule.with_sparsity


def test_pruning_callback_state_key_and_state_dict(tmp_path: Path) -> None:
    a = PruningCallback(pruner="l1", config_list=CONV, start_epoch=1)
    b = PruningCallback(pruner="l2", config_list=CONV, schedule="agp", start_epoch=0, end_epoch=1)
    assert a.state_key != b.state_key and "l1" in a.state_key
    torch.manual_seed(0)
    trainer(tmp_path, [a], epochs=2).fit(TinyNet(), datamodule=TinyData())
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert ckpt["callbacks"][a.state_key] == {"done_steps": [1], "sped_up": True}
    fresh = PruningCallback(pruner="l1", config_list=CONV, start_epoch=1)
    fresh.load_state_dict(ckpt["callbacks"][a.state_key])
    assert fresh.done_steps == [1]


def test_a_schedule_step_reaches_its_target_when_the_pruner_prefers_units_pruned_before(
    tmp_path: Path,
) -> None:
    """Issue 16 in the callback: a step's masks are computed for its target, not multiplied into the previous."""
    from nni_pl.compression import Evaluator

    def train_fn(model: nn.Module, optimizer_step_hook: Any, max_steps: int | None) -> None:
        calls.append(1)
        # odd calls: channels 0-2 look least important; even calls: most important (as if they had regrown)
        gamma = torch.arange(1.0, 9.0) if len(calls) % 2 else torch.arange(8.0, 0.0, -1.0)
        with torch.no_grad():
            model.net[1].weight.copy_(gamma)
        optimizer_step_hook()

    calls: list[int] = []
    cb = PruningCallback(
        pruner="slim",
        config_list=[{"sparsity": 0.5, "op_types": ["BatchNorm2d"]}],
        schedule="agp",
        start_epoch=0,
        end_epoch=2,
        speedup=False,
        pruning_params={"evaluator": Evaluator.from_function(train_fn), "training_steps": 1},
    )
    torch.manual_seed(0)
    model = TinyNet()
    trainer(tmp_path, [cb], epochs=3).fit(model, datamodule=TinyData())
    assert len(calls) == 3 and cb.done_steps == [0, 1, 2]
    assert int(cb.masks["net.1"]["weight"].eq(0).sum()) == 4  # 0.5 of 8 channels, not 3 + 4
    assert int(model.net[1].weight.detach().eq(0).sum()) == 4


def test_a_pruner_that_trains_does_so_on_a_copy_and_leaves_the_fit_alone(tmp_path: Path) -> None:
    seen: dict[str, torch.Tensor] = {}

    class Watch(pl.Callback):
        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.current_epoch == 0:
                seen["before"] = pl_module.net[3].weight.detach().clone()

        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.current_epoch == 1:  # runs after PruningCallback's hook
                seen["after"] = pl_module.net[3].weight.detach().clone()

    cb = PruningCallback(
        pruner="taylorfo",
        config_list=CONV,
        start_epoch=1,
        speedup=False,
        pruning_params={"training_batches": 3},
    )
    torch.manual_seed(0)
    model = TinyNet()
    trainer(tmp_path, [cb, Watch()], epochs=2).fit(model, datamodule=TinyData())
    mask = cb.masks["net.3"]["weight"]
    assert int(mask.flatten(1).amax(1).eq(0).sum()) == 8
    # the Taylor scores came from three training steps of a copy: the fit's weights are only masked
    torch.testing.assert_close(seen["after"], seen["before"] * mask)
