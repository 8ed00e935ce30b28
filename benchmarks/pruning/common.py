"""Shared pieces of the pruning benchmark, importable from the project venv and from the NNI 3.0 venv.

Only torch (and torchvision for the ImageNet-style models) is needed here, so `nni3_worker.py` can use the
same model builders, counters, latency timer and digits training loop as `run.py`: every tool is measured by
the same code.

Example:
    >>> from benchmarks.pruning.common import DigitsCNN, count_macs_params  # doctest: +SKIP
    >>> count_macs_params(DigitsCNN(), (1, 1, 8, 8))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

MODELS = ("resnet18", "mobilenet_v2")


def build_model(name: str) -> nn.Module:
    """A torchvision model with random weights (no download), in eval mode."""
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    return model.eval()


def classifier_of(model: nn.Module) -> nn.Module:
    """The final Linear layer every tool leaves alone (its outputs are the classes)."""
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise ValueError("model has no Linear layer")
    return last


def count_macs_params(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """Multiply-accumulates of Conv2d and Linear layers for one forward, and the parameter count."""
    macs = 0
    handles = []

    def conv_hook(module: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        nonlocal macs
        kernel = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]
        macs += out.numel() * kernel

    def linear_hook(module: nn.Linear, _inp: Any, out: torch.Tensor) -> None:
        nonlocal macs
        macs += out.numel() * module.in_features

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    try:
        with torch.inference_mode():
            model(torch.randn(*input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return int(macs), sum(p.numel() for p in model.parameters())


def latency_ms(model: nn.Module, input_shape: tuple[int, ...], repeats: int, warmup: int = 2) -> float:
    """Median forward time in milliseconds over `repeats` timed runs (after `warmup` untimed ones)."""
    model = model.eval()
    x = torch.randn(*input_shape)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def measure(model: nn.Module, size: int, batches: tuple[int, ...], repeats: int) -> dict[str, float]:
    """MACs, parameters and latency at each batch size of one model."""
    macs, params = count_macs_params(model, (1, 3, size, size))
    row: dict[str, float] = {"macs": macs, "params": params}
    for batch in batches:
        row[f"lat_b{batch}"] = latency_ms(model, (batch, 3, size, size), repeats)
    return row


def measure_interleaved(
    models: dict[str, nn.Module], size: int, batches: tuple[int, ...], repeats: int, warmup: int = 2
) -> dict[str, dict[str, float]]:
    """Like :func:`measure` for several models, timing them in turns (round-robin) so load changes hit all alike."""
    rows: dict[str, dict[str, float]] = {}
    for key, model in models.items():
        macs, params = count_macs_params(model, (1, 3, size, size))
        rows[key] = {"macs": macs, "params": params}
        model.eval()
    for batch in batches:
        x = torch.randn(batch, 3, size, size)
        times: dict[str, list[float]] = {key: [] for key in models}
        with torch.inference_mode():
            for model in models.values():
                for _ in range(warmup):
                    model(x)
            for _ in range(repeats):
                for key, model in models.items():
                    start = time.perf_counter()
                    model(x)
                    times[key].append((time.perf_counter() - start) * 1000.0)
        for key in models:
            rows[key][f"lat_b{batch}"] = statistics.median(times[key])
    return rows


class DigitsCNN(nn.Module):
    """A small CNN for sklearn's 8x8 digits (three conv blocks, global pooling, a Linear classifier)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1),
            nn.BatchNorm2d(4 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(4 * width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def train_epochs(
    model: nn.Module,
    data: dict[str, torch.Tensor],
    epochs: int,
    lr: float = 1e-3,
    seed: int = 0,
    after_step: Callable[[], None] | None = None,
) -> nn.Module:
    """Adam on the digits training split, batch 64, fixed shuffling seed; `after_step` runs after each step."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = data["x_train"], data["y_train"]
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            idx = order[start : start + 64]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step()
    return model.eval()


def accuracy(model: nn.Module, data: dict[str, torch.Tensor]) -> float:
    """Test-split accuracy in percent."""
    model.eval()
    with torch.inference_mode():
        pred = model(data["x_test"]).argmax(1)
    return float((pred == data["y_test"]).float().mean() * 100.0)


def masked_finetune(model: nn.Module, masks: dict[str, dict[str, torch.Tensor]]) -> Callable[[], None]:
    """A hook that re-applies masks after each optimiser step (fine-tuning a masked, not yet shrunk model)."""
    modules = dict(model.named_modules())

    def reapply() -> None:
        with torch.no_grad():
            for name, entry in masks.items():
                for param_name, mask in entry.items():
                    param = getattr(modules[name], param_name, None)
                    if param is not None and mask is not None:
                        param.mul_(mask.to(param.dtype))

    return reapply


def clone(model: nn.Module) -> nn.Module:
    """A deep copy (every tool starts from the same dense weights)."""
    return copy.deepcopy(model)
