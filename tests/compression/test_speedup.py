from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

from nni_pl.compression.speedup import ModelSpeedup, SpeedupError

F = nn.functional


def filter_masks(model: nn.Module, ratio: float = 0.5, types: tuple = (nn.Conv2d,), seed: int = 0) -> dict:
    """Random structured masks: ``ratio`` of each layer's output channels all zero (weight and bias)."""
    g = torch.Generator().manual_seed(seed)
    masks = {}
    for name, m in model.named_modules():
        if isinstance(m, types) and getattr(m, "groups", 1) == 1:
            n = m.weight.shape[0]
            k = int(n * ratio)
            if k == 0:
                continue
            drop = torch.randperm(n, generator=g)[:k]
            w = torch.ones_like(m.weight)
            w[drop] = 0
            masks[name] = {"weight": w}
            if m.bias is not None:
                b = torch.ones_like(m.bias)
                b[drop] = 0
                masks[name]["bias"] = b
    return masks


def check(model: nn.Module, x: torch.Tensor, masks: dict, shrinks: bool = True) -> ModelSpeedup:
    """Speed up ``model`` and assert it equals the masked model (with the effective masks)."""
    model.eval()
    ref = copy.deepcopy(model)
    sp = ModelSpeedup(model, x, masks)
    small = sp.speedup_model()
    with torch.no_grad():
        for name, mm in sp.masks.items():
            for key, mask in mm.items():
                getattr(ref.get_submodule(name), key).mul_(mask)
        want, got = ref(x), small(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * (1 + float(want.abs().max())))
    if shrinks:
        assert sp.report.params_after < sp.report.params_before
    return sp


def conv_bn(cin: int, cout: int, **kw: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, **kw), nn.BatchNorm2d(cout), nn.ReLU())


def _init_bn(model: nn.Module) -> nn.Module:
    # Non-trivial norm statistics, so a removed channel's BN constant would show if mishandled.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    return model


X = torch.randn(2, 3, 16, 16)


def test_speedup_sequential_conv_linear_shrinks_both_sides() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 7 * 7, 5))
    sp = check(net, X, filter_masks(net))
    assert net[0].out_channels == 4
    assert net[4].in_features == 4 * 7 * 7  # channel x spatial after flatten
    assert "0" in sp.report.replaced and "4" in sp.report.replaced


def test_speedup_batchnorm_of_removed_channels_is_removed_too() -> None:
    net = _init_bn(nn.Sequential(conv_bn(3, 8), nn.Conv2d(8, 4, 1)))
    sp = check(net, X, filter_masks(net, types=(nn.Conv2d,)) | {})
    assert net[0][1].num_features == 4
    assert sp.masks["0.1"]["bias"].sum() == 4  # the BN is part of the effective masks


def test_speedup_residual_add_keeps_union_of_kept_channels() -> None:
    class Res(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = conv_bn(3, 8)
            self.b = conv_bn(8, 8)
            self.head = nn.Conv2d(8, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.a(x)
            return self.head(F.relu(y + self.b(y)))

    net = _init_bn(Res())
    masks = filter_masks(net)
    masks["b.0"]["weight"] = masks["a.0"]["weight"][:, :1].expand(-1, 8, -1, -1).clone()  # same channels
    masks["b.0"]["bias"] = masks["a.0"]["bias"].clone()
    check(net, X, masks)
    assert net.a[0].out_channels == net.b[0].out_channels == 4

    net2 = _init_bn(Res())
    masks2 = filter_masks(net2, seed=1)
    check(net2, X, masks2, shrinks=False)  # different channels: union kept, still equal outputs


def test_speedup_concat_offsets() -> None:
    class Cat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 6, 1)
            self.b = nn.Conv2d(3, 4, 3, padding=1)
            self.c = nn.Conv2d(10, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(torch.cat([F.relu(self.a(x)), self.b(x)], dim=1))

    net = Cat()
    check(net, X, filter_masks(net, types=(nn.Conv2d,)) | {})
    assert net.c.in_channels == 3 + 2


def test_speedup_depthwise_and_squeeze_excitation() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.expand = conv_bn(3, 8)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.fc1 = nn.Conv2d(8, 4, 1)
            self.fc2 = nn.Conv2d(4, 8, 1)
            self.proj = nn.Conv2d(8, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = F.hardswish(self.dw(self.expand(x)))
            s = torch.sigmoid(self.fc2(F.silu(self.fc1(F.adaptive_avg_pool2d(y, 1)))))
            return self.proj(y * s)

    net = _init_bn(Block())
    masks = filter_masks(net)
    drop = masks["expand.0"]["weight"].flatten(1).sum(1) == 0
    dwm = torch.ones_like(net.dw.weight)
    dwm[drop] = 0
    masks["dw"] = {"weight": dwm, "bias": (~drop).float()}
    fc2 = torch.ones_like(net.fc2.weight)
    fc2[drop] = 0
    masks["fc2"] = {"weight": fc2, "bias": (~drop).float()}
    check(net, X, masks)
    assert net.dw.groups == net.dw.out_channels == net.proj.in_channels == 4
    assert net.fc1.out_channels == 2


def test_speedup_custom_activation_upsample_dropout_pooling() -> None:
    class Swish(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.sigmoid(x)

    class Gate(nn.Module):  # not traceable: kept as one call, still recognised as channel-wise
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.clamp(min=0) if x.sum() > -1e9 else x

    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        Swish(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        Gate(),
        nn.Dropout(0.3),
        nn.AvgPool2d(2),
        nn.Conv2d(8, 6, 3),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 3),
    )
    sp = check(net, X, filter_masks(net))
    assert net[6].in_channels == 4 and net[9].in_features == 3 * 4
    assert sp.report.opaque == ["3"]


def test_speedup_view_reshape_permute_and_layernorm_on_other_dim() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc1 = nn.Linear(8, 16)
            self.fc2 = nn.Linear(16, 4)
            self.fc3 = nn.Linear(4 * 16 * 16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x).permute(0, 2, 3, 1)  # channels last
            y = self.fc2(F.gelu(self.fc1(y)))  # Linear on the last dim
            y = y.permute(0, 3, 1, 2).contiguous()
            return self.fc3(y.view(y.size(0), -1))

    net = Net()
    masks = filter_masks(net, types=(nn.Conv2d, nn.Linear))
    del masks["fc3"]
    check(net, X, masks)
    assert (net.conv.out_channels, net.fc1.in_features, net.fc1.out_features, net.fc2.out_features) == (
        4,
        4,
        8,
        2,
    )
    assert net.fc3.in_features == 2 * 16 * 16


def test_speedup_unsupported_op_is_reported_and_rest_shrinks() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.b = nn.Conv2d(8, 8, 1)
            self.c = nn.Conv2d(8, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.softmax(self.a(x), dim=1)  # mixes channels: a keeps its channels
            return self.c(self.b(y))

    net = Net()
    sp = check(net, X, filter_masks(net))
    assert net.a.out_channels == 8 and net.b.out_channels == 4
    (op, reason, blocked), *_ = sp.report.unsupported
    assert "softmax" in op and "mixes channels" in reason and blocked == ["a"]
    assert "unsupported" in str(sp.report)


def test_speedup_nonzero_at_zero_before_conv_keeps_channels() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Sigmoid(), nn.Conv2d(8, 2, 1))
    sp = check(net, X, filter_masks(net), shrinks=False)
    assert net[0].out_channels == 8  # sigmoid(0) = 0.5 reaches the next conv: removing would change outputs
    assert sp.report.params_after == sp.report.params_before


def test_speedup_output_channels_are_kept() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    check(net, X, filter_masks(net))
    assert net[2].out_channels == 4 and net[0].out_channels == 4


def test_speedup_grouped_conv_loses_equally_many_channels_per_group() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2), nn.Conv2d(8, 2, 1))
    w = torch.ones(8, 3, 1, 1)
    w[[0, 1, 2, 5]] = 0  # group 0 could lose 3, group 1 only 1: both lose 1
    g = torch.ones(8, 4, 3, 3)
    g[[1, 2, 6, 7]] = 0
    masks = {"0": {"weight": w, "bias": w[:, 0, 0, 0]}, "2": {"weight": g, "bias": g[:, 0, 0, 0]}}
    check(net, X, masks)
    assert (net[0].out_channels, net[2].in_channels, net[2].out_channels, net[2].groups) == (6, 6, 4, 2)
    assert net[3].in_channels == 4


def test_speedup_layer_scale_parameter_is_sliced() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.scale = nn.Parameter(torch.rand(8, 1, 1))
            self.b = nn.Conv2d(8, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.scale * self.a(x))

    net = Net()
    check(net, X, filter_masks(net))
    assert net.scale.shape == (4, 1, 1)


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda: {"nope": {"weight": torch.ones(1)}}, r"masks\['nope'\]: no module"),
        (lambda: {"0": {"weight": torch.ones(2, 2)}}, r"masks\['0'\]\['weight'\]: shape \(2, 2\)"),
    ],
)
def test_speedup_bad_masks_name_the_entry(bad: Callable[[], dict], match: str) -> None:
    with pytest.raises(SpeedupError, match=match):
        ModelSpeedup(nn.Sequential(nn.Conv2d(3, 8, 1)), X, bad())


def test_speedup_masks_from_file(tmp_path) -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 2, 1))
    path = tmp_path / "masks.pth"
    torch.save(filter_masks(net), path)
    ModelSpeedup(net, X, str(path)).speedup_model()
    assert net[0].out_channels == 4


def test_speedup_interpolate_to_another_tensors_size_and_train_mode_dropout() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.drop = nn.Dropout2d(0.5)
            self.b = nn.Conv2d(8, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.drop(F.relu(self.a(x)))
            return self.b(F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False))

    net = Net().train()
    sp = ModelSpeedup(net, X, filter_masks(net))
    sp.speedup_model()
    assert net.training and not sp.report.unsupported
    assert net.a.out_channels == net.b.in_channels == 4
    net.eval()
    assert net(X).shape == (2, 2, 16, 16)


def test_speedup_mlp_with_batchnorm1d() -> None:
    net = nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    net[1].running_mean.uniform_(-1, 1)
    nn.init.uniform_(net[1].bias, -0.5, 0.5)
    masks = filter_masks(net, types=(nn.Linear,))
    del masks["3"]
    check(net, torch.randn(4, 12), masks)
    assert net[0].out_features == net[1].num_features == net[3].in_features == 8


def test_speedup_reports_layers_the_dummy_input_never_reaches() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.b = nn.Conv2d(8, 2, 1)
            self.aux = nn.Conv2d(8, 2, 1)
            self.use_aux = False  # a branch neither train nor eval mode takes with these settings

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.a(x)
            return self.b(y) + self.aux(y) if self.use_aux else self.b(y)

    net = Net().eval()
    sp = ModelSpeedup(net, X, filter_masks(net))
    sp.speedup_model()
    assert sp.report.unreached == ["aux"]
    assert "not reached" in str(sp.report)


def test_speedup_unmasked_depthwise_conv_passes_empty_channels_on() -> None:
    net = _init_bn(
        nn.Sequential(
            conv_bn(3, 8), nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.ReLU6(), nn.Conv2d(8, 4, 1)
        )
    )
    masks = filter_masks(net)
    del masks["3"]
    check(net, X, masks)
    assert net[1].groups == net[1].out_channels == net[3].in_channels == 4


def test_speedup_batchnorm_masks_remove_the_filters_feeding_them() -> None:
    net = _init_bn(nn.Sequential(conv_bn(3, 8), nn.Conv2d(8, 4, 1)))
    gamma = torch.tensor([1.0, 0, 1, 0, 1, 0, 0, 1])  # SlimPruner-style masks on the batch norm
    check(net, X, {"0.1": {"weight": gamma, "bias": gamma.clone()}})
    assert net[0][0].out_channels == net[0][1].num_features == net[1].in_channels == 4


def test_speedup_conv_transpose_both_sides() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.ConvTranspose2d(8, 6, 2, 2), nn.ReLU(), nn.Conv2d(6, 2, 1)
    )
    masks = filter_masks(net)
    t = torch.ones(8, 6, 2, 2)
    t[:, [0, 2, 4]] = 0
    masks["2"] = {"weight": t, "bias": torch.tensor([0.0, 1, 0, 1, 0, 1])}
    del masks["4"]
    check(net, X, masks)
    assert (net[2].in_channels, net[2].out_channels, net[4].in_channels) == (4, 3, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_speedup_on_cuda() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = conv_bn(3, 8, groups=1)
            self.b = nn.Conv2d(8, 8, 3, padding=1, groups=2)
            self.c = nn.Conv2d(8, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(F.hardswish(self.b(self.a(x))))

    net = Net().cuda()
    masks = {k: {kk: v.cuda() for kk, v in m.items()} for k, m in filter_masks(net).items()}
    del masks["c"]
    check(net, X.cuda(), masks)
    assert net.a[0].out_channels < 8


def test_speedup_hard_coded_view_keeps_channels_and_says_why() -> None:
    class Naive(nn.Module):  # NNI's tutorial model style
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3)
            self.conv2 = nn.Conv2d(8, 4, 3)
            self.fc = nn.Linear(4 * 12 * 12, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv2(F.relu(self.conv1(x)))
            return self.fc(x.view(-1, 4 * 12 * 12))

    net = Naive()
    masks = filter_masks(net)
    sp = check(net, X, masks)
    assert net.conv1.out_channels == 4 and net.conv2.out_channels == 4
    assert any("hard-coded" in r for _, r, _ in sp.report.unsupported)


def test_speedup_reports_masked_channels_it_keeps_with_the_blocking_layer() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.b = nn.Conv2d(8, 8, 1, groups=2)
            self.c = nn.Conv2d(8, 8, 1)
            self.d = nn.Conv2d(8, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.a(x))
            return self.d(torch.relu(self.b(y) + self.c(y)))

    net = Net()
    wa = torch.ones(8, 3, 1, 1)
    wa[[0, 1, 2]] = 0  # group 0 of b's input loses 3, group 1 none: nothing can go
    wb = torch.ones(8, 4, 1, 1)
    wb[[0, 4]] = 0  # one per group, but c keeps them
    masks = {"a": {"weight": wa, "bias": wa[:, 0, 0, 0]}, "b": {"weight": wb, "bias": wb[:, 0, 0, 0]}}
    sp = check(net, X, masks, shrinks=False)
    assert net.a.out_channels == 8 and net.b.out_channels == 8
    blocked = {layer: (n, by) for layer, n, by in sp.report.blocked}
    assert blocked["a"][0] == 3 and "b" in blocked["a"][1] and "groups" in blocked["a"][1]
    assert blocked["b"][0] == 2 and "c" in blocked["b"][1]
    assert "keeps 3 masked channel(s) of a" in str(sp.report)


class _AuxNet(nn.Module):
    """An auxiliary head that runs only in train mode (as inception_v3's), optionally behind a channel shuffle."""

    def __init__(self, shuffle: bool = False) -> None:
        super().__init__()
        self.shuffle = shuffle
        self.stem = conv_bn(3, 8)
        self.body = nn.Conv2d(8, 16, 3, padding=1)
        self.aux = nn.Sequential(nn.Conv2d(16, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        self.head = nn.Sequential(nn.Conv2d(16, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        y = torch.relu(self.body(self.stem(x)))
        if not self.training:
            return self.head(y)
        z = y[:, torch.arange(15, -1, -1)] if self.shuffle else y
        return self.head(y), self.aux(z)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_speedup_traces_train_and_eval_so_a_train_only_branch_still_fits(mode: str) -> None:
    torch.manual_seed(0)
    net = _AuxNet().train(mode == "train")
    masks = filter_masks(net)
    sp = ModelSpeedup(net, X, masks)
    sp.speedup_model()
    assert net.training == (mode == "train")
    assert sp.report.unreached == []
    assert (net.body.out_channels, net.aux[0].in_channels, net.head[0].in_channels) == (8, 8, 8)
    # tracing and the final check ran no batch statistics into the norms
    assert int(net.stem[1].num_batches_tracked) == 0 and not net.stem[1].running_mean.any()
    out, aux = net.train()(X)
    assert out.shape == aux.shape == (X.shape[0], 2)
    assert net.eval()(X).shape == (X.shape[0], 2)


def test_speedup_train_only_op_that_mixes_channels_keeps_them_and_is_reported() -> None:
    torch.manual_seed(0)
    net = _AuxNet(shuffle=True).eval()
    sp = ModelSpeedup(net, X, filter_masks(net))
    sp.speedup_model()
    assert net.body.out_channels == 16 and net.stem[0].out_channels == 4
    assert any("body" in blocked for _op, _why, blocked in sp.report.unsupported)
    assert any(layer == "body" and n == 8 for layer, n, _why in sp.report.blocked)
    net.train()(X)
