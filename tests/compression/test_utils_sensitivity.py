from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from nni_pl.compression.utils import SensitivityAnalysis
from nni_pl.errors import ConfigError


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small CNN trained briefly on scikit-learn's 8x8 digits, and the held-out half."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(y), generator=g)
    train, val = order[:1000], order[1000:]
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(512, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(4):
        for i in range(0, len(train), 50):
            idx = train[i : i + 50]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval(), x[val], y[val]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_sensitivity_analysis_on_digits(digits, tmp_path) -> None:
    model, x, y = digits
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = SensitivityAnalysis(model, accuracy, sparsities=[0.75, 0.25, 0.5])
    result = s.analysis(val_args=[model, x, y])
    assert s.ori_metric > 0.9  # the model learned the task
    assert list(result) == ["0", "2"]
    assert all(list(per) == [0.25, 0.5, 0.75] for per in result.values())
    for per in result.values():
        assert per[0.75] < s.ori_metric  # pruning 3/4 of a layer's filters costs accuracy
        assert per[0.25] >= per[0.75] - 0.02
    # every layer is back to its weights afterwards
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    s.export(tmp_path / "sensitivity.csv")
    rows = list(csv.reader(open(tmp_path / "sensitivity.csv")))
    assert rows[0] == ["layername", "0.25", "0.5", "0.75"]
    assert [r[0] for r in rows[1:]] == ["0", "2"]
    assert [float(v) for v in rows[1][1:]] == [result["0"][s] for s in (0.25, 0.5, 0.75)]


def kept_fraction(layer: nn.Module) -> float:
    return float(layer.weight.ne(0).float().mean())


def test_sensitivity_analysis_early_stop_and_specified_layers(tmp_path) -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 5), nn.Conv2d(4, 4, 3))  # layer "0" has 100 weights
    # the metric is the kept fraction of layer "0": fine-grained pruning makes it exactly 1 - sparsity
    s = SensitivityAnalysis(
        net,
        kept_fraction,
        sparsities=[0.2, 0.4, 0.6, 0.8],
        prune_type="fine-grained",
        early_stop_mode="minimize",
        early_stop_value=0.5,
    )
    result = s.analysis(val_kwargs={"layer": net[0]}, specified_layers=["0"])
    assert result == {"0": pytest.approx({0.2: 0.8, 0.4: 0.6, 0.6: 0.4})}  # stopped once below 0.5
    s.export(tmp_path / "s.csv")
    assert open(tmp_path / "s.csv").read().splitlines()[1].count(",") == 3  # a shorter row
    dropped = SensitivityAnalysis(net, kept_fraction, [0.2, 0.4, 0.6], "level", "dropped", 0.3)
    assert list(dropped.analysis(val_args=[net[0]], specified_layers=["0"])["0"]) == [0.2, 0.4]
    raised = SensitivityAnalysis(net, lambda: 1.0, [0.5], early_stop_mode="raised", early_stop_value=0.0)
    assert raised.analysis() == {"0": {0.5: 1.0}, "1": {0.5: 1.0}}


def test_sensitivity_analysis_already_pruned_is_relative() -> None:
    net = nn.Sequential(nn.Conv2d(1, 10, 3))
    s = SensitivityAnalysis(net, kept_fraction, sparsities=[0.5], prune_type="level")
    s.update_already_pruned("0", 0.4)
    assert s.analysis(val_args=[net[0]])["0"][0.5] == pytest.approx(0.3)  # 0.4 + 0.6 * 0.5 pruned
    filters = SensitivityAnalysis(net, kept_fraction, sparsities=[0.5, 1.0], prune_type="l2")
    assert filters.analysis(val_args=[net[0]])["0"] == pytest.approx({0.5: 0.5, 1.0: 0.0})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prune_type": "l3"}, r"'prune_type'.*'l3'"),
        ({"early_stop_mode": "lower"}, r"'early_stop_mode'.*'lower'"),
        ({"early_stop_mode": "dropped"}, "'early_stop_value'"),
        ({"sparsities": [0.5, 1.5]}, "'sparsities'"),
        ({"val_func": 3}, "'val_func'"),
    ],
)
def test_sensitivity_analysis_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"model": nn.Sequential(nn.Conv2d(1, 2, 1)), "val_func": lambda: 0.0, **kwargs}
    with pytest.raises(ConfigError, match=match):
        SensitivityAnalysis(**args)


def test_sensitivity_analysis_unknown_specified_layer() -> None:
    s = SensitivityAnalysis(nn.Sequential(nn.Conv2d(1, 2, 1), nn.Linear(2, 2)), lambda: 0.0)
    with pytest.raises(ConfigError, match=r"'specified_layers'.*'1'.*not a Conv1d/Conv2d"):
        s.analysis(specified_layers=["1"])
