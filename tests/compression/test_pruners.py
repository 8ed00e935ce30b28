from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from nni_pl.compression import Evaluator
from nni_pl.compression.pruning import (
    ActivationAPoZRankPruner,
    ActivationMeanRankPruner,
    ADMMPruner,
    FPGMPruner,
    L1NormPruner,
    L2NormPruner,
    LevelPruner,
    MovementPruner,
    SlimPruner,
    TaylorFOWeightPruner,
)
from nni_pl.compression.pruning.masks import layer_sparsity, sparsity_of
from nni_pl.errors import ConfigError, NniPlError


class Net(nn.Module):
    """conv1 -> bn1 -> relu -> conv2 -> bn2 -> relu (+ residual from conv1) -> pool -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = nn.Conv2d(8, 16, 3, padding=1, groups=4)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.bn1(self.conv1(x)))
        b = torch.relu(self.bn2(self.conv2(a)) + a)
        c = torch.relu(self.conv3(b))
        return self.fc(c.mean(dim=(2, 3)))


def _data(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def _train_fn(model: nn.Module, optimizer_step_hook: Callable[[], None], max_steps: int | None) -> None:
    x, y = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(max_steps or 3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer_step_hook()
        opt.step()


def _forward_fn(model: nn.Module, n_batches: int) -> None:
    for _ in range(n_batches):
        model(_data()[0])


def _evaluator() -> Any:
    return Evaluator.from_function(_train_fn, forward_fn=_forward_fn)


def _net() -> Net:
    torch.manual_seed(0)
    return Net()


def _channels_kept(mask: torch.Tensor) -> torch.Tensor:
    return mask.reshape(mask.shape[0], -1).amax(dim=1)


def _assert_structured(masks: dict[str, dict[str, torch.Tensor]]) -> None:
    for name, entry in masks.items():
        w = entry["weight"]
        rows = w.reshape(w.shape[0], -1)
        # every output channel is all-kept or all-pruned, and the bias mask matches
        assert torch.equal(rows.amin(dim=1), rows.amax(dim=1)), name
        if "bias" in entry:
            assert torch.equal(entry["bias"], rows[:, 0]), name


CONV = [{"sparsity": 0.5, "op_types": ["Conv2d"]}]

STRUCTURED: list[tuple[str, Callable[[nn.Module, list[dict[str, Any]]], Any]]] = [
    ("l1", lambda m, c: L1NormPruner(m, c)),
    ("l2", lambda m, c: L2NormPruner(m, c)),
    ("fpgm", lambda m, c: FPGMPruner(m, c)),
    ("apoz", lambda m, c: ActivationAPoZRankPruner(m, c, _evaluator(), training_batches=2)),
    ("mean", lambda m, c: ActivationMeanRankPruner(m, c, _evaluator(), training_batches=2)),
    ("taylor", lambda m, c: TaylorFOWeightPruner(m, c, _evaluator(), training_batches=2)),
]


@pytest.mark.parametrize(("label", "make"), STRUCTURED, ids=[s[0] for s in STRUCTURED])
def test_pruners_structured_exact_per_layer_sparsity(label: str, make: Callable[..., Any]) -> None:
    model = _net()
    config = [{"sparsity": 0.5, "op_types": ["Conv2d"]}, {"sparsity": 0.25, "op_names": ["fc"]}]
    out, masks = make(model, config).compress()
    assert out is model
    assert layer_sparsity(masks) == {"conv1": 0.5, "conv2": 0.5, "conv3": 0.5, "fc": 0.25}
    _assert_structured(masks)
    # the model is masked in place
    for name, entry in masks.items():
        w = dict(model.named_modules())[name].weight
        assert torch.all(w[entry["weight"] == 0] == 0)


@pytest.mark.parametrize(("label", "make"), STRUCTURED[:3], ids=[s[0] for s in STRUCTURED[:3]])
def test_pruners_total_sparsity_global_ranking(label: str, make: Callable[..., Any]) -> None:
    model = _net()
    config = [{"total_sparsity": 0.5, "max_sparsity_per_layer": 0.7, "op_types": ["Conv2d"]}]
    _, masks = make(model, config).compress()
    _assert_structured(masks)
    per_channel = {n: m["weight"][0].numel() for n, m in masks.items()}
    total = sum(m["weight"].numel() for m in masks.values())
    pruned = sum((m["weight"] == 0).sum().item() for m in masks.values())
    assert abs(pruned - 0.5 * total) <= max(per_channel.values()) / 2
    assert all(s <= 0.7 for s in layer_sparsity(masks).values())


def test_pruners_total_sparsity_respects_max_per_layer() -> None:
    model = _net()
    with torch.no_grad():
        model.conv1.weight.mul_(1e-3)  # conv1 would go first in a global ranking
    _, masks = L1NormPruner(
        model, [{"total_sparsity": 0.3, "max_sparsity_per_layer": 0.5, "op_types": ["Conv2d"]}]
    ).compress()
    assert layer_sparsity(masks)["conv1"] == 0.5


def test_pruners_level_exact_per_layer_and_total() -> None:
    _, masks = LevelPruner(_net(), [{"sparsity": 0.8, "op_types": ["default"]}]).compress()
    assert set(masks) == {"conv1", "conv2", "conv3", "fc"}
    assert all(s == pytest.approx(0.8, abs=0.005) for s in layer_sparsity(masks).values())
    assert all("bias" not in e for e in masks.values())
    model = _net()
    _, masks = LevelPruner(model, [{"total_sparsity": 0.6, "op_types": ["Conv2d", "Linear"]}]).compress()
    total = sum(m["weight"].numel() for m in masks.values())
    assert sum((m["weight"] == 0).sum().item() for m in masks.values()) == round(0.6 * total)
    assert sparsity_of(masks) == pytest.approx(0.6, abs=1 / total)


def test_pruners_level_prunes_smallest_weights() -> None:
    lin = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        lin[0].weight.copy_(torch.tensor([[0.1, -3.0], [2.0, -0.05]]))
    _, masks = LevelPruner(lin, [{"sparsity": 0.5, "op_types": ["Linear"]}]).compress()
    assert masks["0"]["weight"].tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_pruners_l1_prunes_smallest_filters() -> None:
    model = _net()
    with torch.no_grad():
        model.conv1.weight[[1, 4, 6, 7]] *= 1e-3
    _, masks = L1NormPruner(model, [{"sparsity": 0.5, "op_names": ["conv1"]}]).compress()
    assert _channels_kept(masks["conv1"]["weight"]).tolist() == [1, 0, 1, 1, 0, 1, 0, 0]


def test_pruners_dependency_aware_aligns_residual_channels() -> None:
    model = _net()
    x = torch.randn(1, 3, 8, 8)
    config = [{"sparsity": 0.5, "op_types": ["Conv2d"]}, {"sparsity": 0.25, "op_names": ["conv2"]}]
    _, masks = L1NormPruner(model, config, mode="dependency_aware", dummy_input=x).compress()
    k1, k2 = _channels_kept(masks["conv1"]["weight"]), _channels_kept(masks["conv2"]["weight"])
    # conv1 and conv2 are added: the 2 channels conv2 loses are lost by conv1 too, conv1 loses 2 more
    assert (k2 == 0).sum() == 2 and (k1 == 0).sum() == 4
    assert torch.all(k1[k2 == 0] == 0)
    # the grouped conv3 (4 groups of 4) loses 2 channels in each group
    k3 = _channels_kept(masks["conv3"]["weight"]).view(4, 4)
    assert (k3 == 0).sum(dim=1).tolist() == [2, 2, 2, 2]


def test_pruners_dependency_aware_needs_dummy_input() -> None:
    with pytest.raises(ConfigError, match="dummy_input"):
        L1NormPruner(_net(), CONV, mode="dependency_aware")
    with pytest.raises(ConfigError, match=r"mode.*'fast'"):
        L1NormPruner(_net(), CONV, mode="fast")
    with pytest.raises(ConfigError, match="mode"):
        LevelPruner(_net(), CONV, mode="dependency_aware", dummy_input=torch.randn(1, 3, 8, 8))


def test_pruners_dependency_module_missing_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "nni_pl.compression.speedup.dependency", None)
    pruner = L1NormPruner(_net(), CONV, mode="dependency_aware", dummy_input=torch.randn(1, 3, 8, 8))
    with pytest.raises(NniPlError, match="mode='normal'"):
        pruner.compress()


def test_pruners_unsupported_op_type_and_missing_evaluator() -> None:
    with pytest.raises(ConfigError, match=r"config_list\[0\]\.op_types.*'BatchNorm2d' cannot be pruned"):
        L1NormPruner(_net(), [{"sparsity": 0.5, "op_types": ["BatchNorm2d"]}])
    with pytest.raises(ConfigError, match="needs an evaluator"):
        TaylorFOWeightPruner(_net(), CONV)
    with pytest.raises(ConfigError, match="training_batches"):
        ActivationAPoZRankPruner(_net(), CONV, _evaluator(), training_batches=0)
    with pytest.raises(ConfigError, match="activation"):
        ActivationMeanRankPruner(_net(), CONV, _evaluator(), activation="gelu")


def test_pruners_slim_prunes_bn_channels_globally() -> None:
    model = _net()
    config = [{"sparsity": 0.5, "op_types": ["BatchNorm2d"]}]
    pruner = SlimPruner(model, config, _evaluator(), training_steps=3, scale=1e-3)
    _, masks = pruner.compress()
    assert set(masks) == {"bn1", "bn2"}
    assert sparsity_of(masks) == 0.5
    assert torch.equal(masks["bn1"]["weight"], masks["bn1"]["bias"])
    _, masks = SlimPruner(_net(), config, _evaluator(), training_steps=1, mode="normal").compress()
    assert layer_sparsity(masks) == {"bn1": 0.5, "bn2": 0.5}


def test_pruners_slim_penalty_shrinks_gamma() -> None:
    a, b = _net(), _net()
    SlimPruner(
        a, [{"sparsity": 0.1, "op_names": ["bn1"]}], _evaluator(), training_steps=5, scale=0.0
    ).compress()
    SlimPruner(
        b, [{"sparsity": 0.1, "op_names": ["bn1"]}], _evaluator(), training_steps=5, scale=0.5
    ).compress()
    assert b.bn1.weight.abs().sum() < a.bn1.weight.abs().sum()


def test_pruners_taylor_global_mode() -> None:
    _, masks = TaylorFOWeightPruner(_net(), CONV, _evaluator(), training_batches=2, mode="global").compress()
    _assert_structured(masks)
    total = sum(m["weight"].numel() for m in masks.values())
    pruned = sum((m["weight"] == 0).sum().item() for m in masks.values())
    assert abs(pruned - total / 2) <= 8 * 9 / 2 + 1


def test_pruners_activation_apoz_prefers_dead_channels() -> None:
    model = _net()
    with torch.no_grad():
        model.conv1.bias[[0, 3]] = -100.0  # always negative before the relu: APoZ 100%
    _, masks = ActivationAPoZRankPruner(
        model, [{"sparsity": 0.25, "op_names": ["conv1"]}], _evaluator(), training_batches=1
    ).compress()
    assert _channels_kept(masks["conv1"]["weight"]).tolist() == [0, 1, 1, 0, 1, 1, 1, 1]


def test_pruners_forward_falls_back_to_training_and_restores_weights() -> None:
    model = _net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ev = Evaluator.from_function(_train_fn)
    _, masks = ActivationMeanRankPruner(model, [{"sparsity": 0.5, "op_names": ["conv2"]}], ev).compress()
    after = model.state_dict()
    assert torch.equal(after["conv1.weight"], before["conv1.weight"])
    assert layer_sparsity(masks) == {"conv2": 0.5}


def test_pruners_admm_fine_grained_exact() -> None:
    model = _net()
    config = [{"sparsity": 0.7, "op_types": ["Conv2d"], "rho": 1e-2}, {"sparsity": 0.5, "op_names": ["fc"]}]
    _, masks = ADMMPruner(model, config, _evaluator(), iterations=2, training_steps=2).compress()
    sp = layer_sparsity(masks)
    assert sp["fc"] == 0.5 and all(
        sp[n] == pytest.approx(0.7, abs=0.005) for n in ("conv1", "conv2", "conv3")
    )
    with pytest.raises(ConfigError, match=r"config_list\[0\]\.rho"):
        ADMMPruner(_net(), [{"sparsity": 0.5, "op_types": ["Conv2d"], "rho": -1}], _evaluator())


def test_pruners_movement_schedule_and_exact_sparsity() -> None:
    model = _net()
    pruner = MovementPruner(
        model,
        [{"sparsity": 0.6, "op_types": ["Conv2d", "Linear"]}],
        _evaluator(),
        training_steps=6,
        warm_up_step=1,
        cool_down_beginning_step=4,
    )
    assert pruner._sparsity_at(0, 0.6) == 0.0 and pruner._sparsity_at(4, 0.6) == pytest.approx(0.6)
    _, masks = pruner.compress()
    assert all(s == pytest.approx(0.6, abs=0.01) for s in layer_sparsity(masks).values())  # 1 weight of fc
    with pytest.raises(ConfigError, match="cool_down_beginning_step"):
        MovementPruner(_net(), CONV, _evaluator(), warm_up_step=3, cool_down_beginning_step=3)


def test_pruners_export_masks_before_compress_fails() -> None:
    with pytest.raises(NniPlError, match="compress"):
        L1NormPruner(_net(), CONV).export_masks()


def test_pruners_show_pruned_weights() -> None:
    pruner = FPGMPruner(_net(), CONV)
    pruner.compress()
    assert pruner.show_pruned_weights() == {"conv1": 0.5, "conv2": 0.5, "conv3": 0.5}


def test_pruners_lightning_evaluator_taylor_and_slim() -> None:
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _net()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    module = Tiny()
    loader = DataLoader(TensorDataset(*_data(32)), batch_size=8)
    ev = Evaluator.from_lightning(module, {"accelerator": "cpu"}, loader)
    _, masks = TaylorFOWeightPruner(module.net, CONV, ev, training_batches=3).compress()
    assert layer_sparsity(masks) == {"conv1": 0.5, "conv2": 0.5, "conv3": 0.5}
    _, masks = SlimPruner(
        module.net, [{"sparsity": 0.5, "op_types": ["BatchNorm2d"]}], ev, training_steps=2
    ).compress()
    assert sparsity_of(masks) == 0.5
    _, masks = ActivationMeanRankPruner(module, [{"sparsity": 0.5, "op_names": ["net.conv2"]}], ev).compress()
    assert layer_sparsity(masks) == {"net.conv2": 0.5}
    with pytest.raises(ConfigError, match="not the LightningModule"):
        TaylorFOWeightPruner(_net(), CONV, ev).compress()


@pytest.mark.parametrize("arch", ["resnet18", pytest.param("mobilenet_v2", marks=pytest.mark.slow)])
def test_pruners_dependency_aware_torchvision_groups_aligned_and_speedup(arch: str) -> None:
    torchvision = pytest.importorskip("torchvision")
    from nni_pl.compression.speedup import ModelSpeedup
    from nni_pl.compression.speedup.dependency import channel_groups

    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    _, masks = L1NormPruner(
        model, [{"sparsity": 0.5, "op_types": ["Conv2d"]}], mode="dependency_aware", dummy_input=x
    ).compress()
    groups = channel_groups(model, x)
    assert groups
    for group in groups:
        kept = [_channels_kept(masks[n]["weight"]) for n in group if n in masks]
        for k in kept[1:]:
            assert torch.equal(k, kept[0]), group
    expected = model(x)
    dense = sum(p.numel() for p in model.parameters())
    small = ModelSpeedup(model, x, masks).speedup_model()
    assert sum(p.numel() for p in small.parameters()) < 0.5 * dense
    torch.testing.assert_close(small(x), expected, atol=1e-4, rtol=1e-3)


def test_pruners_accept_nni_trainer_optimizer_criterion() -> None:
    model = _net()
    x, y = _data()
    calls = []

    def trainer(
        model: nn.Module, optimizer: torch.optim.Optimizer, criterion: Callable[..., torch.Tensor]
    ) -> None:
        calls.append(1)
        for i in range(0, 16, 4):  # one epoch = 4 batches
            optimizer.zero_grad()
            criterion(model(x[i : i + 4]), y[i : i + 4]).backward()
            optimizer.step()

    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    pruner = TaylorFOWeightPruner(
        model, CONV, trainer=trainer, optimizer=opt, criterion=nn.functional.cross_entropy, training_batches=6
    )
    _, masks = pruner.compress()
    assert len(calls) == 2  # 6 steps = one full epoch and two batches of the next
    assert layer_sparsity(masks) == {"conv1": 0.5, "conv2": 0.5, "conv3": 0.5}
    assert "step" not in vars(opt)  # the optimizer is restored
    _, masks = SlimPruner(
        _net(),
        [{"sparsity": 0.5, "op_types": ["BatchNorm2d"]}],
        trainer=trainer,
        optimizer=opt,
        criterion=nn.functional.cross_entropy,
    ).compress()
    assert sparsity_of(masks) == 0.5
    with pytest.raises(ConfigError, match="together"):
        SlimPruner(_net(), [{"sparsity": 0.5, "op_types": ["BatchNorm2d"]}], trainer=trainer)
    with pytest.raises(ConfigError, match="not both"):
        SlimPruner(
            _net(), CONV, _evaluator(), trainer=trainer, optimizer=opt, criterion=nn.functional.mse_loss
        )


def test_pruners_training_epochs_repeat_the_evaluator() -> None:
    runs: list[int | None] = []

    def train_fn(model: nn.Module, hook: Callable[[], None], max_steps: int | None) -> None:
        runs.append(max_steps)
        _train_fn(model, hook, 1)

    ev = Evaluator.from_function(train_fn)
    SlimPruner(_net(), [{"sparsity": 0.5, "op_types": ["BatchNorm2d"]}], ev, training_epochs=3).compress()
    assert runs == [None, None, None]
    runs.clear()
    ADMMPruner(_net(), CONV, ev, iterations=2, training_epochs=2).compress()
    assert runs == [None] * 4
    with pytest.raises(ConfigError, match="not both"):
        MovementPruner(_net(), CONV, ev, training_steps=2, training_epochs=2)


def test_pruners_lightning_evaluator_datamodule_and_errors() -> None:
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _net()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return nn.functional.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    class Data(pl.LightningDataModule):
        def train_dataloader(self) -> DataLoader:
            return DataLoader(TensorDataset(*_data(16)), batch_size=4)

    module = Tiny()
    ev = Evaluator.from_lightning(module, {"accelerator": "cpu"}, Data())
    steps = []
    ev.train(module.net, hooks=[lambda: steps.append(1)])
    assert len(steps) == 4  # no max_epochs given: one epoch of 4 batches
    _, masks = ActivationAPoZRankPruner(module.net, CONV, ev, training_batches=2).compress()
    assert layer_sparsity(masks) == {"conv1": 0.5, "conv2": 0.5, "conv3": 0.5}
    with pytest.raises(ConfigError, match="LightningModule"):
        Evaluator.from_lightning(_net(), {}, Data())
    with pytest.raises(ConfigError, match="datamodule"):
        Evaluator.from_lightning(module, {})
    with pytest.raises(ConfigError, match="train_fn"):
        Evaluator.from_function("train")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="from_lightning"):
        Evaluator()


class _GroupedBranches(nn.Module):
    """a feeds a grouped conv b (4 groups) and a plain conv c; b and c are added (issue 16), then read by d
    (the model's output channels are never removed)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 16, 3)
        self.b = nn.Conv2d(16, 32, 3, groups=4)
        self.c = nn.Conv2d(16, 32, 3)
        self.d = nn.Conv2d(32, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        return self.d(self.b(y) + self.c(y))


@pytest.mark.parametrize("label", ["l1", "l2", "fpgm", "taylor"])
def test_pruners_dependency_aware_grouped_conv_coupled_masks_per_group_and_speedup_shrinks(
    label: str,
) -> None:
    from nni_pl.compression.speedup import ModelSpeedup

    make = {
        "l1": L1NormPruner,
        "l2": L2NormPruner,
        "fpgm": FPGMPruner,
        "taylor": lambda m, c, **kw: TaylorFOWeightPruner(
            m, c, _grouped_evaluator(), training_batches=2, **kw
        ),
    }[label]
    for seed in range(3):
        torch.manual_seed(seed)
        model = _GroupedBranches()
        x = torch.randn(2, 1, 12, 12)
        _, masks = make(
            model, [{"sparsity": 0.75, "op_names": ["a", "b", "c"]}], mode="dependency_aware", dummy_input=x
        ).compress()
        ka, kb, kc = (_channels_kept(masks[n]["weight"]) for n in "abc")
        # a's output feeds b's 4 groups of 4 input channels; b's output has 4 groups of 8
        assert ka.view(4, 4).sum(dim=1).tolist() == [1, 1, 1, 1], seed
        assert kb.view(4, 8).sum(dim=1).tolist() == [2, 2, 2, 2], seed
        assert torch.equal(kb, kc), seed
        sp = ModelSpeedup(model, x, masks)
        sp.speedup_model()
        assert (model.a.out_channels, model.b.out_channels, model.c.out_channels) == (4, 8, 8), seed
        assert (model.b.in_channels, model.b.groups, model.c.in_channels, model.d.in_channels) == (4, 4, 4, 8)
        assert sp.report.blocked == [], seed


def _grouped_evaluator() -> Any:
    def train_fn(model: nn.Module, optimizer_step_hook: Callable[[], None], max_steps: int | None) -> None:
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(8, 1, 12, 12, generator=g), torch.randn(8, 2, 8, 8, generator=g)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(max_steps or 2):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer_step_hook()
            opt.step()

    return Evaluator.from_function(train_fn)
