"""Prune, then quantize, a digits CNN inside one Lightning fit; export it as an int8 ONNX model and run it.

    python examples/quantization_digits/train.py                 # prune 50% + QAT 8-bit, ~1 minute on a CPU
    python examples/quantization_digits/train.py --no-prune      # QAT only
    python examples/quantization_digits/train.py --quantizer lsq # learned step sizes instead of QAT

Epochs 0-1 train the float model; at epoch 2 PruningCallback removes half of the convolutions' channels
(L1 norm) and speeds the model up; at epoch 4 QuantizationCallback wraps the smaller model for 8-bit
quantization-aware training (BatchNorm folded), frozen from epoch 6. The result is written as a QDQ ONNX file
that ONNX Runtime runs in int8, checked against the PyTorch model, and timed against the float ONNX model.
Data: scikit-learn's digits (offline).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from nni_pl.callbacks import PruningCallback, QuantizationCallback
from nni_pl.compression.export import export_onnx, ort_session, verify_onnx
from nni_pl.nas.evaluator.data import digits_loaders


class DigitsCNN(pl.LightningModule):
    def __init__(self, lr: float = 3e-3) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(64, 10),
        )  # fmt: skip
        self.example_input_array = torch.zeros(1, 1, 8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def accuracy(predict, loader) -> float:
    hits = total = 0
    for x, y in loader:
        hits += int((predict(x).argmax(1) == y).sum())
        total += len(y)
    return hits / total


def latency_ms(path: Path, batch: int = 32, runs: int = 200) -> float:
    session = ort_session(path, threads=1)
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).random((batch, 1, 8, 8), dtype=np.float32)
    for _ in range(20):
        session.run(None, {name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quantizer", default="qat", choices=["qat", "lsq"])
    parser.add_argument("--no-prune", action="store_true")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="nni-pl-quant-")))
    args = parser.parse_args()
    pl.seed_everything(0, verbose=False)
    torch.set_num_threads(1)
    train, val = digits_loaders(batch_size=64)

    float_model = DigitsCNN()
    callbacks: list[pl.Callback] = []
    if not args.no_prune:
        callbacks.append(
            PruningCallback(
                pruner="l1",
                config_list=[{"sparsity": 0.5, "op_types": ["Conv2d"]}],
                start_epoch=2,
                end_epoch=2,
            )
        )
    callbacks.append(
        QuantizationCallback(
            quantizer=args.quantizer,
            config_list=[
                {"quant_types": ["weight", "input"], "quant_bits": 8, "op_types": ["Conv2d", "Linear"],
                 "quant_scheme": {"weight": "per_channel_symmetric", "input": "per_tensor_affine"}},
                {"quant_types": ["output"], "quant_bits": 8, "op_types": ["ReLU"]},
            ],
            start_epoch=4,
            freeze_epoch=6,
        )
    )  # fmt: skip
    model = DigitsCNN()
    model.load_state_dict(float_model.state_dict())
    kwargs = dict(
        max_epochs=args.epochs, logger=False, enable_checkpointing=False, enable_model_summary=False
    )
    pl.Trainer(callbacks=callbacks, enable_progress_bar=False, **kwargs).fit(model, train, val)
    pl.Trainer(enable_progress_bar=False, **kwargs).fit(float_model, train, val)  # the same budget, float

    model.eval()
    float_model.eval()
    sample = next(iter(val))[0]
    int8_path = export_onnx(model, sample[:1], args.out / "digits_int8.onnx")
    fp32_path = export_onnx(float_model, sample[:1], args.out / "digits_fp32.onnx")
    report = verify_onnx(int8_path, model, sample)
    session = ort_session(int8_path, threads=1)

    def onnx_predict(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])

    with torch.no_grad():
        print(f"float accuracy            {accuracy(float_model, val):.4f}")
        print(f"quantized (PyTorch)       {accuracy(model, val):.4f}")
    print(f"int8 ONNX Runtime         {accuracy(onnx_predict, val):.4f}   ({report})")
    print(
        f"ONNX Runtime latency, batch 32, 1 thread: fp32/int8 = {latency_ms(fp32_path) / latency_ms(int8_path):.2f}x"
    )
    print(f"files: {int8_path}, {fp32_path}")


if __name__ == "__main__":
    main()
