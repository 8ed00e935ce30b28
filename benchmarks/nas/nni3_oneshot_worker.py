"""NNI 3.0 side of ``benchmarks/nas_oneshot.py``: one one-shot strategy on the digits space, run with the NNI 3.0
venv's interpreter (``benchmarks/.venv-nni``).

The job (JSON on the command line: strategy, epochs, seed, batch, lr) searches the table's space written with
``nni.nas.nn.pytorch`` (``MutableLinear``/``MutableBatchNorm1d`` with a shared ``width`` choice, ``Repeat`` depth,
``LayerChoice`` norm/activation/skip; Proxyless gets the width as a ``LayerChoice`` of four networks) with
``NasExperiment`` and NNI's ``Classification`` evaluator on the same data halves as nni-pl. The last stdout line
is ``{"arch": {...}}`` in the table's values, or the script exits non-zero with the error on stderr.

Example:
    benchmarks/.venv-nni/bin/python benchmarks/nas/nni3_oneshot_worker.py '{"strategy": "DARTS", "epochs": 1}'
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
warnings.filterwarnings("ignore")

import build_table  # noqa: E402
import torch  # noqa: E402


def build_space(gated: bool) -> Any:
    import nni
    from nni.nas.nn.pytorch import LayerChoice, ModelSpace, MutableBatchNorm1d, MutableLinear, Repeat
    from torch import nn

    class NoShortcut(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.new_zeros(x.shape[0], 10)

    def act() -> Any:
        return LayerChoice(
            {"relu": nn.ReLU(), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid()}, label="activation"
        )

    class Space(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            if gated:

                def network(w: int) -> nn.Module:
                    def block(i: int) -> nn.Module:
                        norm = LayerChoice(
                            {"none": nn.Identity(), "batchnorm": nn.BatchNorm1d(w)}, label="norm"
                        )
                        return nn.Sequential(nn.Linear(64 if i == 0 else w, w), norm, act())

                    return nn.Sequential(Repeat(block, (1, 3), label="depth"), nn.Linear(w, 10))

                self.body = LayerChoice({str(w): network(w) for w in (8, 16, 32, 64)}, label="width")
            else:
                width = nni.choice("width", [8, 16, 32, 64])

                def block(i: int) -> nn.Module:
                    norm = LayerChoice(
                        {"none": nn.Identity(), "batchnorm": MutableBatchNorm1d(width)}, label="norm"
                    )
                    return nn.Sequential(MutableLinear(64 if i == 0 else width, width), norm, act())

                self.body = nn.Sequential(Repeat(block, (1, 3), label="depth"), MutableLinear(width, 10))
            self.skip = LayerChoice({"False": NoShortcut(), "True": nn.Linear(64, 10)}, label="skip")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x) + self.skip(x)

    return Space()


def main() -> None:
    job = json.loads(sys.argv[1])
    torch.set_num_threads(1)
    torch.manual_seed(job.get("seed", 0))
    import nni
    from nni.nas.evaluator.pytorch import Classification, DataLoader
    from nni.nas.experiment import NasExperiment
    from nni.nas.strategy import DARTS, ENAS, Proxyless, RandomOneShot
    from sklearn.model_selection import train_test_split
    from torch.utils.data import TensorDataset

    x_tr, y_tr, _, _ = build_table.load_split()
    ia, ib = train_test_split(list(range(len(y_tr))), test_size=0.5, stratify=y_tr.numpy(), random_state=0)
    ia, ib = torch.tensor(ia), torch.tensor(ib)
    bs = job.get("batch", 64)
    train = DataLoader(TensorDataset(x_tr[ia], y_tr[ia]), batch_size=bs, shuffle=True)
    val = DataLoader(TensorDataset(x_tr[ib], y_tr[ib]), batch_size=bs, shuffle=True)
    evaluator = Classification(
        learning_rate=job.get("lr", 3e-3),
        train_dataloaders=train,
        val_dataloaders=val,
        max_epochs=job.get("epochs", 1),
        num_classes=10,
    )
    name = job["strategy"]
    strategy = {"DARTS": DARTS, "ENAS": ENAS, "RandomOneShot": RandomOneShot, "Proxyless": Proxyless}[name]()
    space = build_space(gated=name == "Proxyless")
    nni.random.seed(job.get("seed", 0)) if hasattr(nni, "random") else None
    exp = NasExperiment(space, evaluator, strategy)
    exp.run()
    arch = exp.export_top_models(formatter="dict")[0]
    out = {}
    for label, spec in build_table.SEARCH_SPACE.items():
        if label not in arch:
            raise KeyError(f"NNI exported {json.dumps(arch, default=str)} without {label!r}")
        value = arch[label]
        out[label] = next(v for v in spec["_value"] if str(v) == str(value))
    print(json.dumps({"arch": out}))


if __name__ == "__main__":
    main()
