"""QuantizationCallback on small CNNs: QAT on sklearn's digits near fp32 accuracy with BatchNorm folded, ranges and
BatchNorm statistics frozen at freeze_epoch, a resumed fit identical to an uninterrupted one, restore() for
inference, LSQ's scales trained, every quantizer in fit, prune-then-quantize with ONNX export, the LightningCLI
preset, argument validation. The 2-process DDP run is in test_quantization_ddp.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nni_pl.callbacks import PruningCallback, QuantizationCallback
from nni_pl.compression.quantization import QAT_Quantizer, find_wrappers, is_quantized
from nni_pl.errors import ConfigError, NniPlError

REPO = Path(__file__).resolve().parents[2]

QAT = [
    {"quant_types": ["weight", "input"], "quant_bits": 8, "op_types": ["Conv2d", "Linear"]},
    {"quant_types": ["output"], "quant_bits": 8, "op_types": ["ReLU"]},
]
LSQ = [{"quant_types": ["weight", "input", "output"], "quant_bits": 8, "op_types": ["Conv2d", "Linear"]}]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """These models are tiny: one intra-op thread is fastest, and several oversubscribe a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TinyNet(pl.LightningModule):
    """Conv-BN-ReLU, Conv-ReLU, pool, Linear on 8x8 single-channel images (as in the pruning tests)."""

    def __init__(self, lr: float = 0.05, momentum: float = 0.9) -> None:
        super().__init__()
        self.lr, self.momentum = lr, momentum
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

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], _idx: int) -> None:
        x, y = batch
        self.log("test_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self) -> Any:
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)
        return {
            "optimizer": opt,
            "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
        }


class TinyData(pl.LightningDataModule):
    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(32, 1, 8, 8, generator=g)
        y = torch.randint(0, 3, (32,), generator=g)
        return DataLoader(TensorDataset(x, y), batch_size=8)

    def test_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(1)
        x = torch.randn(16, 1, 8, 8, generator=g)
        return DataLoader(TensorDataset(x, torch.randint(0, 3, (16,), generator=g)), batch_size=16)


class DigitsNet(pl.LightningModule):
    """Two Conv-BN-ReLU blocks and a classifier for sklearn's 8x8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 10),
        )
        self.example_input_array = torch.zeros(1, 1, 8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def _trainer(root: Path, callbacks: list, epochs: int, **kwargs: Any) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        callbacks=[*callbacks, pl.callbacks.ModelCheckpoint(dirpath=root, save_last=True)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **kwargs,
    )


class Record(pl.Callback):
    """After each training epoch: the first ReLU's tracked output range and the first folded BatchNorm's mean."""

    def __init__(self) -> None:
        self.ranges: list[tuple[float, float] | None] = []
        self.bn_mean: list[torch.Tensor | None] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        relu, conv = pl_module.net[2], pl_module.net[0]
        self.ranges.append(
            (float(relu.tracked_min_output), float(relu.tracked_max_output))
            if hasattr(relu, "module")
            else None
        )
        bn = getattr(conv, "bn_module", None)
        self.bn_mean.append(None if bn is None else bn.running_mean.detach().clone())


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """fp32 and QAT (float epochs 0-1, QAT from epoch 2, frozen from epoch 4) fits of the same net, 5 epochs."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    train = DataLoader(TensorDataset(x[:1400], y[:1400]), batch_size=64, shuffle=False)
    test_x, test_y = x[1400:], y[1400:]
    root = tmp_path_factory.mktemp("digits")
    torch.manual_seed(0)
    fp32 = DigitsNet()
    _trainer(root / "fp32", [], 5).fit(fp32, train)
    torch.manual_seed(0)
    qat = DigitsNet()
    cb, record = (
        QuantizationCallback(quantizer="qat", config_list=QAT, start_epoch=2, freeze_epoch=4),
        Record(),
    )
    trainer = _trainer(root / "qat", [cb, record], 5)
    trainer.fit(qat, train)
    return {
        "fp32": _accuracy(fp32, test_x, test_y),
        "qat": _accuracy(qat, test_x, test_y),
        "model": qat,
        "callback": cb,
        "record": record,
        "trainer": trainer,
        "last": root / "qat" / "last.ckpt",
        "test_x": test_x,
    }


def test_qat_during_fit_keeps_accuracy_near_fp32_with_batchnorm_folded(digits: dict[str, Any]) -> None:
    print(f"digits test accuracy: fp32 {digits['fp32']:.4f}, QAT 8-bit {digits['qat']:.4f}")
    assert digits["fp32"] > 0.9
    assert digits["qat"] >= digits["fp32"] - 0.03
    model, cb = digits["model"], digits["callback"]
    assert cb.wrapped and is_quantized(model) and model is digits["trainer"].lightning_module
    conv0, conv1 = model.net[0], model.net[3]
    assert isinstance(model.net[1], nn.Identity) and isinstance(conv0.bn_module, nn.BatchNorm2d)
    assert isinstance(model.net[4], nn.Identity) and isinstance(conv1.bn_module, nn.BatchNorm2d)
    assert conv0.bn_name == "net.1" and model.net[8].bn_module is None
    # the trained weights are the Parameters the fit began with; the rebuilt optimizer trains exactly them
    optimized = {id(p) for g in digits["trainer"].optimizers[0].param_groups for p in g["params"]}
    assert optimized == {id(p) for p in model.parameters()}
    calibration = cb.quantizer.calibration_config()
    assert calibration["net.2"]["tracked_max_output"] > 0 and len(calibration["net.0"]["weight_scale"]) == 1
    # 3 epochs of 22 batches counted as optimizer steps
    assert cb.steps == 3 * 22 and int(conv0.steps) == 3 * 22


def test_freeze_epoch_stops_range_and_batchnorm_updates(digits: dict[str, Any]) -> None:
    ranges, means = digits["record"].ranges, digits["record"].bn_mean
    assert ranges[:2] == [None, None]  # float epochs
    assert ranges[2] != ranges[3]  # tracked (EMA) in epochs 2 and 3
    assert ranges[3] == ranges[4]  # frozen from the start of epoch 4
    assert not torch.equal(means[2], means[3]) and torch.equal(means[3], means[4])
    assert digits["callback"].quantizer.frozen


def test_restore_rebuilds_the_trained_quantized_module(digits: dict[str, Any]) -> None:
    checkpoint = torch.load(digits["last"], weights_only=False)
    assert (
        checkpoint["nni_pl_quantization"]["quantizer"] == "qat"
        and checkpoint["nni_pl_quantization"]["frozen"]
    )
    assert "net.0.module.old_weight" in checkpoint["state_dict"]
    restored = QuantizationCallback.restore(DigitsNet(), digits["last"])
    assert not restored.training and is_quantized(restored)
    x = digits["test_x"]
    model = digits["model"].eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)
    assert (
        find_wrappers(restored)[0].quantizer.calibration_config()
        == digits["callback"].quantizer.calibration_config()
    )


def test_quantizer_freeze_uses_running_statistics_in_training() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    q = QAT_Quantizer(model, QAT[:1] + QAT[1:], dummy_input=torch.randn(1, 1, 6, 6))
    for _ in range(3):
        model(torch.randn(8, 1, 6, 6))
    q.freeze()
    x = torch.randn(8, 1, 6, 6)
    mean, low = model[0].bn_module.running_mean.clone(), float(model[2].tracked_min_output)
    trained = model(x)
    assert torch.equal(model[0].bn_module.running_mean, mean) and float(model[2].tracked_min_output) == low
    torch.testing.assert_close(trained, model.eval()(x))


@pytest.mark.parametrize(("name", "config"), [("qat", QAT), ("lsq", LSQ)])
def test_a_resumed_fit_continues_exactly_as_an_uninterrupted_one(
    tmp_path: Path, name: str, config: list
) -> None:
    """Wrapped at epoch 1 (optimizers rebuilt with their momentum and LR schedule), frozen at 2; the checkpoint of
    epoch 1 resumed into a freshly built float module gives the same weights, ranges and scales."""

    def callback() -> QuantizationCallback:
        return QuantizationCallback(quantizer=name, config_list=config, start_epoch=1, freeze_epoch=2)

    torch.manual_seed(0)
    straight, cb = TinyNet(), callback()
    _trainer(tmp_path / "straight", [cb], 3).fit(straight, datamodule=TinyData())
    torch.manual_seed(0)
    _trainer(tmp_path / "first", [callback()], 2).fit(TinyNet(), datamodule=TinyData())
    last = tmp_path / "first" / "last.ckpt"
    saved = torch.load(last, weights_only=False)
    assert not saved["nni_pl_quantization"]["frozen"]
    assert (
        len(saved["optimizer_states"][0]["param_groups"]) == 1
    )  # the scales are in configure_optimizers' group

    torch.manual_seed(1)  # another initialisation: everything must come from the checkpoint
    fresh, again = TinyNet(), callback()
    seen: dict[str, Any] = {}

    class Watch(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            seen["calibration"] = again.quantizer.calibration_config()
            seen["lr"] = trainer.optimizers[0].param_groups[0]["lr"]

    resumed = _trainer(tmp_path / "resumed", [again, Watch()], 3)
    resumed.fit(fresh, datamodule=TinyData(), ckpt_path=last)
    restored_at_save = QuantizationCallback.restore(TinyNet(), saved)
    assert seen["calibration"] == find_wrappers(restored_at_save)[0].quantizer.calibration_config()
    assert seen["lr"] == pytest.approx(0.05 * 0.5**2)  # the StepLR schedule went on
    assert resumed.global_step == 12 and again.steps == cb.steps == 8
    assert again.quantizer.frozen and "load_model_state_dict" not in resumed.strategy.__dict__
    final, expected = fresh.state_dict(), straight.state_dict()
    assert final.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(final[key], value, rtol=0, atol=0, msg=f"{key} differs after resuming")
    assert again.quantizer.calibration_config() == cb.quantizer.calibration_config()
    # trainer.test(ckpt_path=...) with a float module: wrapped before the weights load too
    tested = _trainer(tmp_path / "test", [callback()], 1).test(
        TinyNet(), datamodule=TinyData(), ckpt_path=tmp_path / "resumed" / "last.ckpt", verbose=False
    )
    expected_loss = _trainer(tmp_path / "test", [], 1).test(fresh, datamodule=TinyData(), verbose=False)
    assert tested[0]["test_loss"] == pytest.approx(expected_loss[0]["test_loss"], abs=0)


def test_lsq_scales_are_trained_by_the_rebuilt_optimizer(tmp_path: Path) -> None:
    scales: list[dict[str, float]] = []

    class Scales(pl.Callback):
        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            scales.append({n: float(p) for n, p in pl_module.named_parameters() if n.endswith("_scale")})

    torch.manual_seed(0)
    model, cb = TinyNet(), QuantizationCallback(quantizer="lsq", config_list=LSQ, start_epoch=1)
    trainer = _trainer(tmp_path, [cb, Scales()], 3)
    trainer.fit(model, datamodule=TinyData())
    names = {n for n, _ in model.named_parameters() if n.endswith("_scale")}
    assert names == {f"net.{i}.{k}_scale" for i in (0, 3, 7) for k in ("weight", "input", "output")}
    optimized = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert {id(p) for n, p in model.named_parameters() if n in names} <= optimized
    assert scales[0] == {}  # float epoch
    changed = [n for n in names if scales[1][n] != scales[2][n]]
    assert len(changed) == len(names), f"scales not trained in epoch 2: {sorted(names - set(changed))}"


class ScalesOutside(TinyNet):
    """configure_optimizers trains only the layers' own weights (leaves LSQ's scales out)."""

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for n, p in self.named_parameters() if not n.endswith("_scale")]
        return torch.optim.SGD(params, lr=self.lr)


def test_scales_left_out_of_configure_optimizers_join_as_a_group_also_when_resuming(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, cb = ScalesOutside(), QuantizationCallback(quantizer="lsq", config_list=LSQ[:1], start_epoch=0)
    trainer = _trainer(tmp_path / "a", [cb], 1)
    trainer.fit(model, datamodule=TinyData())
    assert len(trainer.optimizers[0].param_groups) == 2
    resumed = _trainer(tmp_path / "b", [QuantizationCallback(quantizer="lsq", config_list=LSQ[:1])], 2)
    resumed.fit(ScalesOutside(), datamodule=TinyData(), ckpt_path=tmp_path / "a" / "last.ckpt")
    assert len(resumed.optimizers[0].param_groups) == 2 and resumed.global_step == 8


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("qat", [{**QAT[0], "quant_start_step": 3}, QAT[1]]),
        ("lsq", LSQ),
        ("dorefa", [{"quant_types": ["weight"], "quant_bits": 4, "op_types": ["Conv2d", "Linear"]}]),
        ("bnn", [{"quant_types": ["weight"], "quant_bits": 1, "op_types": ["Conv2d"]}]),
        ("naive", None),
        ("observer", QAT),
    ],
)
def test_every_quantizer_runs_in_fit(tmp_path: Path, name: str, config: list | None) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    cb = QuantizationCallback(quantizer=name, config_list=config, start_epoch=0, freeze_epoch=1)
    trainer = _trainer(tmp_path, [cb], 2)
    trainer.fit(model, datamodule=TinyData())
    assert is_quantized(model) and cb.steps == 8
    # freeze_epoch=1: every BatchNorm, folded or not, on its running statistics (the folded ones no longer update)
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.isfinite(model.eval()(torch.randn(4, 1, 8, 8))).all()
    if name == "bnn":
        assert set(model.net[0].module.weight.unique().tolist()) <= {-1.0, 1.0}
    if name == "observer":
        assert all(bool(w.calibrated) for w in cb.quantizer.get_modules_wrapper())
    if name == "qat":
        assert int(model.net[0].steps) == 8  # quant_start_step counted the optimizer steps
    restored = QuantizationCallback.restore(TinyNet(), tmp_path / "last.ckpt")
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), model.eval()(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_quantization_callback_on_cuda_wraps_mid_fit_resumes_and_restores_on_cpu(tmp_path: Path) -> None:
    def callback() -> QuantizationCallback:
        return QuantizationCallback(quantizer="qat", config_list=QAT, start_epoch=1, freeze_epoch=2)

    torch.manual_seed(0)
    model = TinyNet()
    _trainer(tmp_path / "a", [callback()], 2, accelerator="gpu", devices=1).fit(model, datamodule=TinyData())
    assert all(b.device.type == "cuda" for w in find_wrappers(model) for b in w.buffers())
    last = tmp_path / "a" / "last.ckpt"
    fresh = TinyNet()
    _trainer(tmp_path / "b", [callback()], 3, accelerator="gpu", devices=1).fit(
        fresh, datamodule=TinyData(), ckpt_path=last
    )
    assert is_quantized(fresh) and fresh.device.type == "cuda"
    restored = QuantizationCallback.restore(TinyNet(), last)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), model.eval()(x.cuda()).cpu(), rtol=0, atol=0.05)


def test_prune_and_speed_up_then_quantize_the_smaller_model(tmp_path: Path) -> None:
    from nni_pl.compression.export import export_onnx, verify_onnx

    def callbacks() -> list[pl.Callback]:
        return [
            PruningCallback(
                pruner="l1", config_list=[{"sparsity": 0.5, "op_types": ["Conv2d"]}], start_epoch=1
            ),
            QuantizationCallback(quantizer="qat", config_list=QAT, start_epoch=2),
        ]

    torch.manual_seed(0)
    model = TinyNet()
    _trainer(tmp_path / "fit", callbacks(), 3).fit(model, datamodule=TinyData())
    assert is_quantized(model) and isinstance(model.net[1], nn.Identity)
    assert model.net[0].module.out_channels == 4 and model.net[0].bn_module.num_features == 4
    assert model.net[3].module.in_channels == 4 and model.net[3].module.out_channels == 8
    assert model.net[7].module.in_features == 8

    onnx_path = export_onnx(model, torch.randn(1, 1, 8, 8), tmp_path / "small_int8.onnx")
    import onnx

    ops = {n.op_type for n in onnx.load(str(onnx_path)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    report = verify_onnx(onnx_path, model, torch.randn(64, 1, 8, 8))
    assert report.top1_agreement is not None and report.top1_agreement >= 0.9

    last = tmp_path / "fit" / "last.ckpt"
    restored = QuantizationCallback.restore(TinyNet(), last)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), model.eval()(x))
    # a resumed fit shrinks the fresh dense module, then wraps it, then loads the weights (either callback order)
    for order in (1, -1):
        fresh = TinyNet()
        trainer = _trainer(tmp_path / f"resumed{order}", callbacks()[::order], 4)
        trainer.fit(fresh, datamodule=TinyData(), ckpt_path=last)
        assert is_quantized(fresh) and fresh.net[3].module.out_channels == 8 and trainer.global_step == 16
        assert (
            "on_load_checkpoint" not in fresh.__dict__
            and "load_model_state_dict" not in trainer.strategy.__dict__
        )


def test_lightning_cli_preset(tmp_path: Path) -> None:
    pytest.importorskip("jsonargparse", reason="LightningCLI needs jsonargparse[signatures]")
    from lightning.pytorch.cli import LightningCLI

    cli = LightningCLI(
        TinyNet,
        TinyData,
        run=False,
        save_config_callback=None,
        args=[
            "--config",
            str(REPO / "callbacks" / "quantization.yaml"),
            "--trainer.callbacks.init_args.freeze_epoch=1",
            "--trainer.max_epochs=2",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_checkpointing=false",
            f"--trainer.default_root_dir={tmp_path}",
        ],
    )
    (cb,) = [c for c in cli.trainer.callbacks if isinstance(c, QuantizationCallback)]
    assert (cb.quantizer_name, cb.start_epoch, cb.freeze_epoch, cb.fold_bn) == ("qat", 0, 1, True)
    assert cb.config_list == QAT
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert is_quantized(cli.model) and cb.quantizer.frozen and isinstance(cli.model.net[1], nn.Identity)


# --- a thin adapter: keyword-only, validated, its own state ------------------------------------------------------------
def test_quantization_callback_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError, match="positional"):
        QuantizationCallback("qat", QAT)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"quantizer": "qta"},
            r"QuantizationCallback\.quantizer.*unknown quantizer 'qta' \(did you mean 'qat'\?\)",
        ),
        ({"quantizer": 3}, r"QuantizationCallback\.quantizer.*got int 3"),
        ({"quantizer": "torch.nn.Linear"}, r"QuantizationCallback\.quantizer.*not a subclass of .*Quantizer"),
        ({"quantizer": "no_such.Module"}, r"QuantizationCallback\.quantizer.*cannot import 'no_such.Module'"),
        ({"config_list": None}, r"QuantizationCallback\.config_list.*required.*got None"),
        (
            {"config_list": [{"quant_types": ["weight"], "op_types": ["Conv2d"]}]},
            r"config_list\[0\].*quant_bits",
        ),
        (
            {"config_list": [{"quant_types": ["wieght"], "quant_bits": 8, "op_types": ["Conv2d"]}]},
            r"'weight'",
        ),
        (
            {"quantizer": "dorefa", "config_list": QAT},
            r"config_list\[0\]\.quant_types.*'input' is not quantized by DoReFaQuantizer",
        ),
        (
            {
                "quantizer": "bnn",
                "config_list": [{"quant_types": ["weight"], "quant_bits": 8, "op_types": ["Conv2d"]}],
            },
            r"config_list\[0\]\.quant_bits.*must be 1, got 8",
        ),
        (
            {"quantizer": "lsq", "config_list": [{**QAT[0], "quant_scheme": "per_channel_symmetric"}]},
            r"config_list\[0\]\.quant_scheme.*per_tensor_symmetric",
        ),
        ({"start_epoch": -1}, r"QuantizationCallback\.start_epoch.*>= 0, got -1"),
        ({"start_epoch": True}, r"QuantizationCallback\.start_epoch.*got True"),
        (
            {"start_epoch": 2, "freeze_epoch": 2},
            r"QuantizationCallback\.freeze_epoch.*> start_epoch \(2\).*got 2",
        ),
        ({"freeze_epoch": 1.5}, r"QuantizationCallback\.freeze_epoch.*got 1\.5"),
        (
            {"quantizer": "observer"},
            r"QuantizationCallback\.freeze_epoch.*set freeze_epoch, e\.g\. 1, got None",
        ),
        ({"fold_bn": "yes"}, r"QuantizationCallback\.fold_bn.*True or False, got str 'yes'"),
        (
            {"dummy_input": "x"},
            r"QuantizationCallback\.dummy_input.*shape such as \[1, 3, 32, 32\], got str 'x'",
        ),
        ({"dummy_input": [1, 0, 8]}, r"QuantizationCallback\.dummy_input.*got list \[1, 0, 8\]"),
        ({"quantizer_params": [1]}, r"QuantizationCallback\.quantizer_params.*dict.*got list"),
        (
            {"quantizer_params": {"ema_decy": 0.9}},
            r"quantizer_params\.ema_decy.*not an argument of QAT_Quantizer \(did you mean 'ema_decay'\?\)",
        ),
    ],
)
def test_quantization_callback_invalid_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        QuantizationCallback(**{"config_list": QAT, **kwargs})


def test_quantizer_given_by_class_name_path_or_class() -> None:
    from nni_pl.compression.quantization import LsqQuantizer, Quantizer

    class Mine(Quantizer):
        pass

    assert QuantizationCallback(quantizer="LsqQuantizer", config_list=LSQ).quantizer_cls is LsqQuantizer
    path = "nni_pl.compression.quantization.quantizers.LsqQuantizer"
    assert QuantizationCallback(quantizer=path, config_list=LSQ).quantizer_name == "lsq"
    cb = QuantizationCallback(quantizer=Mine, config_list=QAT)
    assert cb.quantizer_cls is Mine and cb.quantizer_name.endswith("Mine")


def test_model_dependent_config_errors_come_at_setup_before_training(tmp_path: Path) -> None:
    cb = QuantizationCallback(
        config_list=[{"quant_types": ["weight"], "quant_bits": 8, "op_names": ["net.9"]}], start_epoch=1
    )
    with pytest.raises(ConfigError, match=r"config_list\[0\]\.op_names.*'net\.9' matches no module"):
        _trainer(tmp_path, [cb], 2).fit(TinyNet(), datamodule=TinyData())
    model = TinyNet()
    QAT_Quantizer(model, QAT)
    with pytest.raises(NniPlError, match="already quantized"):
        _trainer(tmp_path, [QuantizationCallback(config_list=QAT)], 1).fit(model, datamodule=TinyData())


def test_restore_refuses_a_checkpoint_without_quantization(tmp_path: Path) -> None:
    _trainer(tmp_path, [QuantizationCallback(config_list=QAT, start_epoch=5)], 1).fit(
        TinyNet(), datamodule=TinyData()
    )
    with pytest.raises(ConfigError, match="has no quantization information"):
        QuantizationCallback.restore(TinyNet(), tmp_path / "last.ckpt")


def test_quantization_callback_state_key_and_state_dict(tmp_path: Path) -> None:
    a = QuantizationCallback(quantizer="qat", config_list=QAT, dummy_input=[1, 1, 8, 8])
    b = QuantizationCallback(quantizer="lsq", config_list=LSQ, start_epoch=1)
    assert a.state_key != b.state_key and "qat" in a.state_key
    torch.manual_seed(0)
    _trainer(tmp_path, [a], 1).fit(TinyNet(), datamodule=TinyData())
    state = torch.load(tmp_path / "last.ckpt", weights_only=False)["callbacks"][a.state_key]
    assert state == {
        "quantizer": "qat",
        "config_list": QAT,
        "dummy_input_shape": [1, 1, 8, 8],
        "wrapped": True,
        "frozen": False,
        "steps": 4,
    }
    fresh = QuantizationCallback(quantizer="qat", config_list=QAT)
    fresh.load_state_dict(state)
    assert fresh.steps == 4 and not fresh.wrapped  # wrapped follows the module, when its checkpoint loads
