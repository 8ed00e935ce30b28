"""Issue 16's grouped-conv reproduction exactly as written: ``b(y) + c(y)`` is the model's output. The masks keep
4/8/8 channels (per group in ``b``); speed-up shrinks ``a`` to 4 but never changes the shape of the model's output,
so ``b`` and ``c`` keep their 32 output channels and each is reported with what blocks it."""

from __future__ import annotations

import copy

import torch
from torch import nn

from nni_pl.compression.pruning import L1NormPruner
from nni_pl.compression.speedup import ModelSpeedup


class _AddedBranches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 16, 3)
        self.b = nn.Conv2d(16, 32, 3, groups=4)
        self.c = nn.Conv2d(16, 32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        return self.b(y) + self.c(y)


def _kept(mask: torch.Tensor) -> torch.Tensor:
    return mask.flatten(1).amax(1).ne(0)


def test_speedup_keeps_the_model_outputs_channels_and_reports_them_with_the_reason() -> None:
    torch.manual_seed(0)
    model = _AddedBranches().eval()
    x = torch.randn(2, 1, 12, 12)
    config = [{"sparsity": 0.75, "op_types": ["Conv2d"]}]
    _, masks = L1NormPruner(model, config, mode="dependency_aware", dummy_input=x).compress()
    kept = {name: _kept(masks[name]["weight"]) for name in "abc"}
    assert [int(k.sum()) for k in kept.values()] == [4, 8, 8]
    assert kept["b"].view(4, 8).sum(dim=1).tolist() == [2, 2, 2, 2]  # was [2, 2, 1, 3] (issue 16)
    with torch.no_grad():
        masked_out = copy.deepcopy(model)(x)

    sp = ModelSpeedup(model, x, masks)
    sp.speedup_model()
    assert (model.a.out_channels, model.b.in_channels, model.c.in_channels) == (4, 4, 4)
    assert (model.b.out_channels, model.c.out_channels, model.b.groups) == (32, 32, 4)
    blocked = {layer: (n, why) for layer, n, why in sp.report.blocked}
    assert blocked == {"b": (24, "reaches the model output"), "c": (24, "reaches the model output")}
    assert "keeps 24 masked channel(s) of b: reaches the model output" in str(sp.report)
    with torch.no_grad():
        out = model(x)
    assert out.shape == masked_out.shape == (2, 32, 8, 8)
    assert torch.allclose(out, masked_out, atol=1e-5)
