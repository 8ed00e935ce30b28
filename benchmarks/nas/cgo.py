"""CGO wall time: N candidate models trained in one merged run vs N separate runs (N = 2, 4, 8).

The data pipeline has a real per-sample cost, as augmentation does: every digit (scikit-learn's 8x8 digits)
is upsampled to 32x32, randomly rotated and shifted (``affine_grid``/``grid_sample``), blurred, and pooled
to 16x16 features in the Dataset's ``__getitem__`` (``num_workers=0``, as in a trial on a small CPU box).
The candidates are MLPs of different depth/width on those 256 features. Both sides use
:func:`nni_pl.nas.cgo.train_merged` with the same settings and seed: the merged side with all N models,
the separate side once per model (in-process, so the ratio leaves out the per-trial process start-up that
separate trials would add on top). Results: ``benchmarks/results/nas_cgo.md``.

Example:
    nice -n 10 .venv/bin/python benchmarks/nas/cgo.py                 # N = 2, 4, 8; 3 repeats
    .venv/bin/python benchmarks/nas/cgo.py --quick --out /tmp/cgo.md   # N = 2, 1 repeat, 1 epoch
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

logger = logging.getLogger("nas.cgo_bench")

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "results" / "nas_cgo.md"


class AugmentedDigits(Dataset):
    """Digits with a per-sample augmentation and feature transform (the cost CGO shares)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, augment: bool) -> None:
        self.x, self.y, self.augment = x.view(-1, 1, 8, 8), y, augment
        self.blur = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]).div(16).view(1, 1, 3, 3)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = F.interpolate(self.x[i : i + 1], size=(32, 32), mode="bilinear", align_corners=False)
        if self.augment:
            angle = (torch.rand(()) - 0.5) * 0.5  # +-0.25 rad
            shift = (torch.rand(2) - 0.5) * 0.2
            cos, sin = torch.cos(angle), torch.sin(angle)
            theta = torch.stack([torch.stack([cos, -sin, shift[0]]), torch.stack([sin, cos, shift[1]])])
            grid = F.affine_grid(theta.unsqueeze(0), [1, 1, 32, 32], align_corners=False)
            img = F.grid_sample(img, grid, align_corners=False)
        img = F.conv2d(img, self.blur, padding=1)
        feats = F.adaptive_avg_pool2d(img, 16).flatten()
        return (feats - 0.25) / 0.3, self.y[i]


def loaders(batch_size: int, seed: int = 0) -> tuple[DataLoader, DataLoader]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(x / 16.0, y, test_size=0.3, stratify=y, random_state=seed)
    as_x = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.long)  # noqa: E731
    train = AugmentedDigits(as_x(x_tr), as_y(y_tr), augment=True)
    val = AugmentedDigits(as_x(x_va), as_y(y_va), augment=False)
    return DataLoader(train, batch_size=batch_size, shuffle=True), DataLoader(val, batch_size=256)


def candidates(n: int, seed: int = 0) -> list[nn.Module]:
    """N different MLPs on the 256 features (depth 1-3, width 32-128, ReLU/Tanh)."""
    torch.manual_seed(seed)
    models = []
    for k in range(n):
        depth, width = 1 + k % 3, (32, 64, 128)[(k // 3) % 3]
        act = (nn.ReLU, nn.Tanh)[k % 2]
        layers: list[nn.Module] = []
        d_in = 256
        for _ in range(depth):
            layers += [nn.Linear(d_in, width), act()]
            d_in = width
        models.append(nn.Sequential(*layers, nn.Linear(d_in, 10)))
    return models


def time_data_pass(batch_size: int) -> float:
    """Seconds to iterate the training loader once (the data cost of one epoch, no model)."""
    train, _ = loaders(batch_size)
    start = time.perf_counter()
    for _ in train:
        pass
    return time.perf_counter() - start


def measure(n: int, epochs: int, batch_size: int) -> dict[str, Any]:
    from nni_pl.nas.cgo import train_merged

    kwargs = {"max_epochs": epochs, "max_models": n, "seed": 0, "learning_rate": 3e-3}
    train, val = loaders(batch_size)
    start = time.perf_counter()
    merged = train_merged(candidates(n), train, val, **kwargs)
    t_merged = time.perf_counter() - start
    t_separate, solo_acc = 0.0, []
    for model in candidates(n):
        train, val = loaders(batch_size)
        start = time.perf_counter()
        (result,) = train_merged([model], train, val, **kwargs)
        t_separate += time.perf_counter() - start
        solo_acc.append(result.final)
    assert all(r.status == "succeeded" for r in merged), [r.error for r in merged]
    same = all(abs(r.final - a) < 1e-6 for r, a in zip(merged, solo_acc))
    return {
        "merged": t_merged,
        "separate": t_separate,
        "same_metrics": same,
        "acc": [r.final for r in merged],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[2, 4, 8], help="models per merged run")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="the median of this many measurements")
    parser.add_argument("--quick", action="store_true", help="N = 2, 1 epoch, 1 repeat (seconds)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for noisy in ("lightning", "lightning.pytorch", "nni_pl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.quick:
        args.n, args.epochs, args.repeats = [2], 1, 1
    torch.set_num_threads(1)

    data_s = statistics.median(time_data_pass(args.batch_size) for _ in range(3))
    rows = []
    for n in args.n:
        runs = [measure(n, args.epochs, args.batch_size) for _ in range(args.repeats)]
        merged = statistics.median(r["merged"] for r in runs)
        separate = statistics.median(r["separate"] for r in runs)
        same = all(r["same_metrics"] for r in runs)
        rows.append((n, merged, separate, same))
        logger.info("N=%d merged %.2f s, separate %.2f s, ratio %.2f", n, merged, separate, merged / separate)

    lines = [
        "# CGO: N models in one merged run vs N separate runs",
        "",
        "Produced by `benchmarks/nas/cgo.py`. Data: scikit-learn digits (1,257 train / 540 val), each sample "
        "upsampled to 32x32, randomly rotated/shifted, blurred and pooled to 256 features in the Dataset "
        f"(`num_workers=0`); one pass over the training data alone takes {data_s:.2f} s. Models: N different "
        f"MLPs (depth 1-3, width 32-128). {args.epochs} epochs, batch {args.batch_size}, Adam, 1 torch thread, "
        f"median of {args.repeats} measurements; torch {torch.__version__}, Python {platform.python_version()}, "
        "on a shared 2-core CPU box (absolute times vary with its load; the ratio is the figure).",
        "",
        "Both sides run `nni_pl.nas.cgo.train_merged` in-process (the separate side once per model), so the "
        "ratio leaves out the process start-up each separate trial would add.",
        "",
        "| N | merged run (s) | N separate runs (s) | merged / separate | speed-up | same per-model metrics |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for n, merged, separate, same in rows:
        lines.append(
            f"| {n} | {merged:.2f} | {separate:.2f} | {merged / separate:.2f} | {separate / merged:.2f}x | "
            f"{'yes' if same else 'NO'} |"
        )
    lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
