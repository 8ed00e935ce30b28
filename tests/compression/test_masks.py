from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from nni_pl.compression.pruning import L1NormPruner, LevelPruner
from nni_pl.compression.pruning.masks import apply_masks, layer_sparsity, load_masks, save_masks, sparsity_of
from nni_pl.errors import ConfigError


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)
    )


def test_masks_export_and_reapply_round_trip(tmp_path: Path) -> None:
    model = _net()
    fresh = _net()
    pruner = L1NormPruner(model, [{"sparsity": 0.5, "op_types": ["Conv2d"]}])
    _, masks = pruner.compress()
    path = tmp_path / "masks.pt"
    assert pruner.export_masks(path) is masks
    loaded = load_masks(path)
    assert loaded.keys() == masks.keys()
    apply_masks(fresh, loaded)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(fresh(x), model(x))
    assert layer_sparsity(loaded) == {"0": 0.5, "2": 0.5}


def test_masks_sparsity_of_weights_by_size() -> None:
    masks = {"a": {"weight": torch.zeros(10)}, "b": {"weight": torch.ones(30)}}
    assert sparsity_of(masks) == 0.25


def test_masks_apply_rejects_wrong_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no module named 'conv'"):
        apply_masks(_net(), {"conv": {"weight": torch.ones(1)}})
    with pytest.raises(ConfigError, match=r"mask shape \(2,\) does not match"):
        apply_masks(_net(), {"0": {"weight": torch.ones(2)}})
    with pytest.raises(ConfigError, match="no mask file"):
        load_masks(tmp_path / "missing.pt")


def test_masks_save_load_level(tmp_path: Path) -> None:
    _, masks = LevelPruner(_net(), [{"sparsity": 0.7, "op_types": ["default"]}]).compress()
    save_masks(masks, tmp_path / "m.pt")
    again = load_masks(tmp_path / "m.pt")
    for name in masks:
        assert torch.equal(again[name]["weight"], masks[name]["weight"])
