"""The supernet: every architecture it runs equals the frozen sub-net holding the sliced weights (NNI parity),
mixing and gating semantics, and spaces a strategy cannot search refused at the start."""

from __future__ import annotations

import itertools

import pytest
import torch

from nni_pl.nas import (
    Cell,
    InputChoice,
    LayerChoice,
    ModelParameterChoice,
    ModelSpace,
    Repeat,
    ValueChoice,
    nn,
)
from nni_pl.nas.oneshot.supernet import OneShotError, build_supernet, freeze_supernet


class ConvSpace(ModelSpace):
    def __init__(self):
        super().__init__()
        k = ValueChoice([3, 5, 7], label="k")
        ch = ValueChoice([8, 16], label="ch")
        self.conv = nn.Conv2d(3, ch, k, padding=k // 2)
        self.bn = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, 4, 3, padding=1)
        self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="act")
        self.fc = nn.Linear(4, ValueChoice([5, 10], label="out"))

    def forward(self, x):
        x = self.act(self.bn(self.conv(x)))
        return self.fc(self.conv2(x).mean((2, 3)))


def _arches(space):
    ss = space.search_space()
    labels = list(ss)
    for combo in itertools.product(*(ss[la]["_value"] for la in labels)):
        yield dict(zip(labels, combo))


@pytest.mark.parametrize("train", [False, True])
def test_every_sampled_subnet_equals_the_frozen_module_with_the_sliced_weights(train):
    torch.manual_seed(0)
    space = ConvSpace()
    net = build_supernet(space, "RandomOneShot")
    assert net.model.conv.weight.shape == (16, 3, 7, 7)
    x = torch.randn(4, 3, 9, 9)
    arches = list(_arches(space))
    assert len(arches) == 3 * 2 * 2 * 2
    for arch in arches:
        net.train(train)
        frozen = freeze_supernet(net, space, arch).train(train)
        assert type(frozen.conv) is torch.nn.Conv2d and frozen.conv.weight.shape[1:] == (
            3,
            arch["k"],
            arch["k"],
        )
        net.state.set_arch(arch)
        torch.testing.assert_close(net(x), frozen(x), rtol=0, atol=1e-5)


def test_the_kernel_slice_is_the_centre_of_the_largest_kernel():
    space = ConvSpace()
    net = build_supernet(space, "RandomOneShot")
    frozen = freeze_supernet(net, space, {"k": 3, "ch": 8, "act": "relu", "out": 5})
    torch.testing.assert_close(frozen.conv.weight, net.model.conv.weight[:8, :, 2:5, 2:5])


def test_mixing_weighs_every_candidate_and_one_hot_weights_give_the_subnet():
    torch.manual_seed(0)
    space = ConvSpace()
    net = build_supernet(space, "DARTS").eval()
    x = torch.randn(2, 3, 9, 9)
    state = net.state
    for arch in [{"k": 5, "ch": 16, "act": "tanh", "out": 10}, {"k": 3, "ch": 8, "act": "relu", "out": 5}]:
        state.mode = "mix"
        state.probs = {
            la: torch.tensor([1.0 if v == arch[la] else 0.0 for v in vals])
            for la, vals in state.decisions.items()
        }
        mixed = net(x)
        state.set_arch(arch)
        sampled = net(x)
        # channels beyond the chosen ones are zero in the mixed output; compare the chosen ones
        torch.testing.assert_close(mixed[:, : arch["out"]], sampled, rtol=0, atol=1e-5)
    state.mode = "mix"
    state.probs = {
        la: torch.full((len(v),), 1.0 / len(v), requires_grad=True) for la, v in state.decisions.items()
    }
    net(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in state.probs.values())


def test_gates_mode_mixes_value_choice_layers_by_their_probabilities():
    torch.manual_seed(0)
    space = ConvSpace()
    net = build_supernet(space, "Proxyless").eval()
    x = torch.randn(2, 3, 9, 9)
    arch = {"k": 5, "ch": 8, "act": "relu", "out": 10}
    net.state.set_arch(arch)
    sampled = net(x)
    state = net.state
    state.mode = "gates"
    state.gates = {"act": [(0, torch.tensor(1.0)), (1, torch.tensor(0.0))]}
    logits = {la: torch.zeros(len(v), requires_grad=True) for la, v in state.decisions.items() if la != "act"}
    state.probs = {
        la: torch.where(torch.tensor([v == arch[la] for v in state.decisions[la]]), 1.0, 0.0) + 0 * t
        for la, t in logits.items()
    }
    torch.testing.assert_close(net(x)[:, :10], sampled, rtol=0, atol=1e-5)  # one-hot probabilities: the slice
    state.probs = {la: t.softmax(0) for la, t in logits.items()}
    net(x).sum().backward()
    assert all(float(t.grad.abs().sum()) > 0 for t in logits.values())


def test_gates_run_at_most_two_paths_and_pass_gradients_to_both():
    calls = []

    class Probe(nn.Module):
        def __init__(self, i):
            super().__init__()
            self.i = i
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            calls.append(self.i)
            return self.lin(x)

    class S(ModelSpace):
        def __init__(self):
            super().__init__()
            self.op = LayerChoice([Probe(i) for i in range(5)], label="op")

        def forward(self, x):
            return self.op(x)

    net = build_supernet(S(), "Proxyless")
    state = net.state
    state.mode = "gates"
    logits = torch.zeros(2, requires_grad=True)
    soft = logits.softmax(0)
    hard = torch.tensor([1.0, 0.0])
    gate = hard - soft.detach() + soft
    state.gates = {"op": [(1, gate[0]), (3, gate[1])]}
    x = torch.randn(2, 3)
    out = net(x)
    assert calls == [1]  # forward holds the picked path only; the other runs in backward, without autograd
    torch.testing.assert_close(out, net.model.op.candidates["1"](x))
    out.pow(2).sum().backward()
    assert sorted(calls) == [1, 1, 3]
    # the gates' gradients are those of out = g_a * o_a + g_b * o_b computed with both paths in memory
    ref_logits = torch.zeros(2, requires_grad=True)
    soft = ref_logits.softmax(0)
    g = torch.tensor([1.0, 0.0]) - soft.detach() + soft
    mods = net.model.op.candidates
    ref = g[0] * mods["1"](x) + g[1] * mods["3"](x)
    ref.pow(2).sum().backward()
    torch.testing.assert_close(logits.grad, ref_logits.grad)
    assert logits.grad.abs().sum() > 0


def test_input_choice_repeat_and_cell_in_a_supernet():
    class S(ModelSpace):
        def __init__(self):
            super().__init__()
            self.rep = Repeat(lambda i: nn.Linear(4, 4), (1, 3), label="depth")
            self.skip = InputChoice(2, 1, label="skip")
            self.cell = Cell([nn.Identity(), nn.Tanh()], num_nodes=2, num_predecessors=1, label="c")

        def forward(self, x):
            y = self.rep(x)
            return self.cell([self.skip([x, y])])

    torch.manual_seed(0)
    space = S()
    net = build_supernet(space, "DARTS")
    x = torch.randn(2, 4)
    for arch in _arches(space):
        frozen = freeze_supernet(net, space, arch)
        net.state.set_arch(arch)
        torch.testing.assert_close(net(x), frozen(x))
    net.state.mode = "mix"
    net.state.probs = {la: torch.full((len(v),), 1 / len(v)) for la, v in net.state.decisions.items()}
    assert net(x).shape == (2, 8)


def test_nested_layer_choice_and_value_choice_attribute():
    class S(ModelSpace):
        def __init__(self):
            super().__init__()
            inner = LayerChoice([nn.ReLU(), nn.Sigmoid()], label="inner")
            self.op = LayerChoice([inner, nn.Identity()], label="outer")
            self.scale = ValueChoice([1.0, 3.0], label="scale")

        def forward(self, x):
            return self.op(x) * self.scale

    net = build_supernet(S(), "RandomOneShot")
    net.state.set_arch({"outer": "0", "inner": "1", "scale": 3.0})
    torch.testing.assert_close(net(torch.zeros(1)), torch.tensor([1.5]))
    with pytest.raises(OneShotError, match=r"'scale'.*DARTS"):
        build_supernet(S(), "DARTS")


def test_spaces_a_strategy_cannot_search_are_refused_naming_the_label_and_the_strategy():
    class Strided(ModelSpace):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, stride=ValueChoice([1, 2], label="stride"))

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(OneShotError, match=r"'stride'.*DARTS.*stride"):
        build_supernet(Strided(), "DARTS")
    build_supernet(Strided(), "RandomOneShot")  # sampling runs one stride at a time
    with pytest.raises(OneShotError, match=r"'stride'.*Proxyless.*stride"):
        build_supernet(Strided(), "Proxyless")

    class Param(ModelSpace):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, ModelParameterChoice([2, 3], label="width"))

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(OneShotError, match=r"'width'.*ModelParameterChoice.*ENAS"):
        build_supernet(Param(), "ENAS")


@pytest.mark.parametrize("hub_space", ["DARTS", "NasBench201", "ProxylessNAS", "MobileNetV2Space"])
def test_the_hub_spaces_become_supernets_for_every_kind_of_strategy(hub_space):
    from nni_pl.nas import hub, random_arch

    torch.manual_seed(0)
    space = getattr(hub, hub_space)()
    x = torch.randn(2, 3, 16, 16)
    for strategy in ("DARTS", "RandomOneShot", "Proxyless"):
        net = build_supernet(space, strategy).eval()
        for seed in range(2):
            arch = random_arch(space, seed=seed)
            frozen = freeze_supernet(net, space, arch).eval()
            net.state.set_arch(arch)
            torch.testing.assert_close(net(x), frozen(x))
        state = net.state
        state.mode = "mix"
        state.probs = {la: torch.full((len(v),), 1 / len(v)) for la, v in state.decisions.items()}
        assert net(x).shape == (2, 10)
