"""L1 filter pruning at 50% + speed-up on the torchvision classification models (random weights).

Each model: ``L1NormPruner`` at 50% per Conv2d layer, speed-up,
forward on the small input, fewer parameters, and outputs equal to the masked model (with the effective
masks speed-up reports, which add the batch norms of removed channels). ConvNeXt's convolutions all feed
layer norms over the channels (kept whole, see the report), so there its Linear layers are pruned as well.
"""

from __future__ import annotations

import copy

import pytest
import torch

from nni_pl.compression.pruning import L1NormPruner
from nni_pl.compression.speedup import ModelSpeedup, channel_groups

# `make test-extended` (and CI) runs these; the default `make test` leaves them out to stay within its time budget
pytestmark = pytest.mark.extended

torchvision = pytest.importorskip("torchvision")


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
    config = [{"sparsity": 0.5, "op_types": ["Conv2d"]}]
    if arch == "convnext_tiny":
        config = [
            {"sparsity": 0.5, "op_types": ["Conv2d", "Linear"]},
            {"exclude": True, "op_names": ["classifier.2"]},
        ]
    _, masks = L1NormPruner(model, config).compress()
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


def test_torchvision_resnet18_dependency_aware_pruning_shrinks_residual_channels() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    normal = torchvision.models.resnet18(weights=None).eval()
    aware = copy.deepcopy(normal)
    config = [{"sparsity": 0.5, "op_types": ["Conv2d"]}]
    _, masks = L1NormPruner(normal, config).compress()
    _, aware_masks = L1NormPruner(aware, config, mode="dependency_aware", dummy_input=x).compress()
    for group in channel_groups(aware, x):  # coupled convs lose the same filters
        convs = [n for n in group if n in aware_masks]
        kept = [aware_masks[n]["weight"].flatten(1).sum(1) > 0 for n in convs]
        assert all(torch.equal(k, kept[0]) for k in kept)
    ref = copy.deepcopy(aware)
    small_normal = ModelSpeedup(normal, x, masks)
    small_normal.speedup_model()
    sp = ModelSpeedup(aware, x, aware_masks)
    sp.speedup_model()
    assert sp.report.params_after < 0.3 * sp.report.params_before < small_normal.report.params_after
    with torch.no_grad():
        for name, mm in sp.masks.items():
            for key, mask in mm.items():
                getattr(ref.get_submodule(name), key).mul_(mask)
        want, got = ref(x), aware(x)
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()


def test_torchvision_inception_v3_sped_up_in_train_mode_runs_in_both_modes() -> None:
    # 299x299 is the smallest input the auxiliary head accepts (its 5x5 conv after a 5/3 pooling)
    torch.manual_seed(0)
    model = torchvision.models.inception_v3(weights=None, init_weights=False, aux_logits=True)
    x = torch.randn(2, 3, 299, 299)
    _, masks = L1NormPruner(model, [{"sparsity": 0.5, "op_types": ["Conv2d"]}]).compress()
    sp = ModelSpeedup(model, x, masks)
    sp.speedup_model()
    assert model.training and sp.report.unreached == []
    assert model.AuxLogits.conv0.conv.in_channels == 384  # Mixed_6e's 768 channels, halved
    assert sp.report.params_after < 0.5 * sp.report.params_before
    with torch.no_grad():
        out = model(x)
        assert out.logits.shape == out.aux_logits.shape == (2, 1000)
        assert model.eval()(x).shape == (2, 1000)
