"""L1 filter pruning at 50% + speed-up on the torchvision classification models (random weights).

Each model: Conv2d filters (groups == 1) with the smallest L1 norm masked at 50% per layer, speed-up,
forward on the small input, fewer parameters, and outputs equal to the masked model (with the effective
masks speed-up reports, which add the batch norms of removed channels). ConvNeXt's convolutions all feed
layer norms over the channels (kept whole, see the report), so there its Linear layers are pruned as well.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nni_pl.compression.speedup import ModelSpeedup

torchvision = pytest.importorskip("torchvision")


def l1_filter_masks(model: nn.Module, sparsity: float, types: tuple[type[nn.Module], ...]) -> dict:
    """Per layer, mask the ``sparsity`` fraction of output channels with the smallest L1 norm."""
    masks = {}
    for name, m in model.named_modules():
        if not isinstance(m, types) or getattr(m, "groups", 1) != 1:
            continue
        w = m.weight.detach()
        k = int(w.shape[0] * sparsity)
        if k == 0:
            continue
        drop = w.flatten(1).abs().sum(1).argsort()[:k]
        masks[name] = {"weight": torch.ones_like(w)}
        masks[name]["weight"][drop] = 0
        if m.bias is not None:
            masks[name]["bias"] = torch.ones_like(m.bias)
            masks[name]["bias"][drop] = 0
    return masks


slow = pytest.mark.slow
# name -> the reason speed-up reports for ops it leaves whole (None: nothing unsupported)
ARCHS = [
    pytest.param("resnet18", None),
    pytest.param("resnet50", None, marks=slow),
    pytest.param("resnext50_32x4d", None, marks=slow),
    pytest.param("wide_resnet50_2", None, marks=slow),
    pytest.param("mobilenet_v2", None),
    pytest.param("mobilenet_v3_small", None),
    pytest.param("vgg11", None, marks=slow),
    pytest.param("alexnet", None, marks=slow),
    pytest.param("squeezenet1_0", None),
    pytest.param("densenet121", None, marks=slow),
    pytest.param("efficientnet_b0", None),
    pytest.param("mnasnet0_5", None),
    pytest.param("shufflenet_v2_x0_5", "reshapes the channel dimension"),  # channel shuffle
    pytest.param("inception_v3", None, marks=slow),
    pytest.param("convnext_tiny", "normalizes across channels", marks=slow),
]


@pytest.mark.parametrize(("arch", "unsupported"), ARCHS)
def test_torchvision_l1_50_speedup(arch: str, unsupported: str | None) -> None:
    torch.manual_seed(0)
    kwargs = {"aux_logits": False, "init_weights": False} if arch == "inception_v3" else {}
    model = getattr(torchvision.models, arch)(weights=None, **kwargs).eval()
    side = 75 if arch == "inception_v3" else 64
    x = torch.randn(1, 3, side, side)
    types = (nn.Conv2d, nn.Linear) if arch == "convnext_tiny" else (nn.Conv2d,)
    masks = l1_filter_masks(model, 0.5, types)
    masks = {
        k: v
        for k, v in masks.items()
        if not (isinstance(model.get_submodule(k), nn.Linear) and v["weight"].shape[0] == 1000)
    }
    ref = copy.deepcopy(model)

    sp = ModelSpeedup(model, x, masks)
    small = sp.speedup_model()

    with torch.no_grad():
        for name, mm in sp.masks.items():
            for key, mask in mm.items():
                getattr(ref.get_submodule(name), key).mul_(mask)
        want, got = ref(x), small(x)
    assert got.shape == want.shape == (1, 1000)
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    assert sp.report.params_after < sp.report.params_before
    reasons = {r for _, r, _ in sp.report.unsupported}
    if unsupported is None:
        assert not reasons
    else:
        assert reasons and all(unsupported in r for r in reasons)
