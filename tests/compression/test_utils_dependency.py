from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn

from nni_pl.compression.pruning import L1NormPruner, save_masks
from nni_pl.compression.speedup import ModelSpeedup
from nni_pl.compression.utils import (
    ChannelDependency,
    GroupDependency,
    fix_mask_conflict,
    not_safe_to_prune,
)
from nni_pl.compression.utils.mask_conflict import ChannelMaskConflict, GroupMaskConflict
from nni_pl.errors import ConfigError


class Residual(nn.Module):
    """conv1 -> two residual blocks sharing its channels -> head conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.block1 = nn.Conv2d(8, 8, 3, padding=1)
        self.block2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = x + self.block1(x)
        x = x + self.block2(x)
        x = self.head(x)
        return self.fc(x.mean(dim=(2, 3)))


X = torch.randn(2, 3, 8, 8)


def channels(mask: torch.Tensor) -> list[bool]:
    return mask.reshape(mask.shape[0], -1).ne(0).any(dim=1).tolist()


def test_channel_dependency_sets_and_csv(tmp_path) -> None:
    dep = ChannelDependency(Residual(), X)
    assert dep.dependency_sets == [{"conv1", "block1", "block2"}, {"head"}]
    assert dep.dependency["block1"] == {"conv1", "block1", "block2"}
    assert "head" not in dep.dependency
    dep.export(tmp_path / "dependency.csv")
    rows = list(csv.reader(open(tmp_path / "dependency.csv")))
    assert rows == [
        ["Dependency Set", "Convolutional Layers"],
        ["Set 1", "conv1", "block1", "block2"],
        ["Set 2", "head"],
    ]


def test_channel_dependency_matches_nni_resnet18_example() -> None:
    torchvision = pytest.importorskip("torchvision")
    dep = ChannelDependency(torchvision.models.resnet18(), torch.randn(1, 3, 32, 32))
    # NNI 2.5's documented output for resnet18 (order within a set is not meaningful)
    expected = [
        {"layer1.1.conv2", "layer1.0.conv2", "conv1"},
        {"layer1.0.conv1"},
        {"layer1.1.conv1"},
        {"layer2.0.conv1"},
        {"layer2.1.conv2", "layer2.0.conv2", "layer2.0.downsample.0"},
        {"layer2.1.conv1"},
        {"layer3.0.conv1"},
        {"layer3.0.downsample.0", "layer3.1.conv2", "layer3.0.conv2"},
        {"layer3.1.conv1"},
        {"layer4.0.conv1"},
        {"layer4.0.downsample.0", "layer4.1.conv2", "layer4.0.conv2"},
        {"layer4.1.conv1"},
    ]
    assert sorted(map(sorted, dep.dependency_sets)) == sorted(map(sorted, expected))


def test_channel_dependency_bad_prune_type_and_input() -> None:
    with pytest.raises(ConfigError, match=r"'prune_type'.*'Channel'"):
        ChannelDependency(Residual(), X, prune_type="Channel")
    with pytest.raises(ConfigError, match="'dummy_input'"):
        ChannelDependency(Residual(), None)


def test_group_dependency_combines_grouped_convs(tmp_path) -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3),  # read by a 4-group conv: its filters in 4 equal blocks
        nn.Conv2d(8, 12, 3, groups=4),  # own 4 groups, read by a 6-group conv: lcm 12
        nn.Conv2d(12, 6, 1, groups=6),
        nn.Conv2d(6, 6, 3, groups=6),  # depthwise: no constraint of its own
    )
    dep = GroupDependency(net, torch.randn(1, 3, 10, 10))
    assert dep.dependency == {"0": 4, "1": math.lcm(4, 6), "2": 6, "3": 1}
    assert dep.dependency_sets is dep.dependency
    dep.export(tmp_path / "group.csv")
    rows = list(csv.reader(open(tmp_path / "group.csv")))
    assert rows[0] == ["Conv Layer Name", "Group"] and rows[1:] == [
        ["0", "4"],
        ["1", "12"],
        ["2", "6"],
        ["3", "1"],
    ]


class ViewNet(nn.Module):
    def __init__(self, hard_coded: bool) -> None:
        super().__init__()
        self.hard_coded = hard_coded
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.fc = nn.Linear(4 * 2 * 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(torch.relu(self.conv1(x)))
        x = torch.relu(x)
        x = x.view(-1, 16) if self.hard_coded else torch.flatten(x, 1)
        return self.fc(x)


def test_not_safe_to_prune_names_layers_feeding_a_reshape() -> None:
    x = torch.randn(1, 1, 6, 6)
    assert not_safe_to_prune(ViewNet(hard_coded=True), x) == ["conv2"]
    assert not_safe_to_prune(ViewNet(hard_coded=False), x) == []


def l1_masks(model: nn.Module, sparsities: dict[str, float]) -> dict:
    config = [{"sparsity": s, "op_names": [n]} for n, s in sparsities.items()]
    _, masks = L1NormPruner(model, config).compress()
    return masks


def test_fix_mask_conflict_keeps_the_union_of_coupled_channels(tmp_path) -> None:
    torch.manual_seed(0)
    model = Residual().eval()
    masks = l1_masks(model, {"conv1": 0.5, "block1": 0.25, "block2": 0.75, "head": 0.5})
    union = [
        any(c)
        for c in zip(*(channels(masks[n]["weight"]) for n in ("conv1", "block1", "block2")), strict=True)
    ]
    fixed = fix_mask_conflict(masks, Residual(), X)
    for n in ("conv1", "block1", "block2"):
        assert channels(fixed[n]["weight"]) == union
        assert fixed[n]["bias"].bool().tolist() == union
    torch.testing.assert_close(fixed["head"]["weight"], masks["head"]["weight"])
    assert channels(masks["block2"]["weight"]).count(True) == 2  # the input is not changed
    # from a file too; the fixed masks let speed-up remove the agreed channels
    again = fix_mask_conflict(save_masks(masks, tmp_path / "m.pth"), model, X)
    assert all(torch.equal(again[n]["weight"], fixed[n]["weight"]) for n in fixed)
    sp = ModelSpeedup(Residual().eval(), X, fixed)
    small = sp.speedup_model()
    assert small.conv1.out_channels == sum(union)


def test_fix_mask_conflict_unmasked_member_keeps_all_channels() -> None:
    masks = l1_masks(Residual(), {"conv1": 0.5, "block1": 0.5})  # block2 not pruned
    fixed = ChannelMaskConflict(masks, Residual(), X).fix_mask()
    assert all(channels(fixed["conv1"]["weight"])) and all(channels(fixed["block1"]["weight"]))


def test_group_mask_conflict_equalises_the_blocks() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=2))
    keep = torch.tensor([0, 0, 0, 1, 1, 0, 1, 1], dtype=torch.float)  # block 0 loses 3, block 1 loses 1
    masks = {"0": {"weight": keep.view(8, 1, 1, 1).expand(8, 3, 3, 3).clone()}}
    fixed = GroupMaskConflict(masks, net, torch.randn(1, 3, 8, 8)).fix_mask()
    got = channels(fixed["0"]["weight"])
    assert got[:4].count(False) == got[4:].count(False) == 1
    assert got == [False, True, True, True, True, False, True, True]
    assert channels(fix_mask_conflict(masks, net, torch.randn(1, 3, 8, 8))["0"]["weight"]) == got


@pytest.mark.parametrize(
    ("masks", "match"),
    [
        ({"nope": {"weight": torch.ones(1)}}, r"masks\['nope'\].*no module named 'nope'"),
        ({"conv1": {"weight": torch.ones(3)}}, r"masks\['conv1'\]\['weight'\].*shape"),
        ({"conv1": {"gamma": torch.ones(3)}}, r"masks\['conv1'\]\['gamma'\]"),
        ([1, 2], "'masks'"),
    ],
)
def test_fix_mask_conflict_bad_masks(masks: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        fix_mask_conflict(masks, Residual(), X)
    with pytest.raises(ConfigError, match="'masks'"):
        fix_mask_conflict("/nonexistent/masks.pth", Residual(), X)


def test_fix_mask_conflict_depthwise_and_norm_members_only_carry_channels() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, groups=4))
    keep = torch.tensor([1.0, 0.0, 1.0, 0.0])
    masks = {"0": {"weight": keep.view(4, 1, 1, 1).expand(4, 3, 1, 1).clone()}}
    fixed = fix_mask_conflict(masks, net, torch.randn(1, 3, 6, 6))
    assert channels(fixed["0"]["weight"]) == [True, False, True, False]


def test_channel_dependency_batchnorm_prune_type_lists_norms() -> None:
    dep = ChannelDependency(Residual(), X, prune_type="Batchnorm")
    assert dep.dependency_sets == [{"bn1"}]
