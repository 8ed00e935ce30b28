"""NNI 2.5's one-shot trainers over the Lightning modules: each fits an epoch of digits and exports an
architecture of the space; the user's optimiser is rebuilt on the supernet; the dataset is split as NNI splits
it; bad arguments are refused naming the argument; NNI's custom-trainer example (DartsLayerChoice) runs."""

from __future__ import annotations

import inspect
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset, TensorDataset

import nni_pl.nas.oneshot as oneshot
from nni_pl._checks import ArgumentError
from nni_pl.nas import InputChoice, LayerChoice, ModelSpace
from nni_pl.nas.evaluator.data import digits_loaders
from nni_pl.nas.oneshot import (
    BaseOneShotTrainer,
    DartsTrainer,
    EnasTrainer,
    ProxylessTrainer,
    SinglePathTrainer,
    replace_input_choice,
    replace_layer_choice,
)
from nni_pl.nas.oneshot.lightning import DartsModule, EnasModule, ProxylessModule, RandomOneShotModule
from nni_pl.nas.oneshot.trainers import _device_kwargs
from tests.nas.oneshot_spaces import DigitsConvSpace, DigitsLayerSpace

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def digits():
    train, val = digits_loaders(limit=400)
    return train.dataset, val.dataset  # 300 and 100 samples


def accuracy(output, target):
    return {"acc1": (output.argmax(1) == target).float().mean().item()}


def reward(output, target):
    return (output.argmax(1) == target).float().mean()


LOSS = nn.CrossEntropyLoss()
FAST = {"batch_size": 32, "workers": 0, "device": "cpu"}


def _make(kind, space, optimizer, digits, **kw):
    train, valid = digits
    if kind.startswith("darts"):
        return DartsTrainer(
            space, LOSS, accuracy, optimizer, 1, train, unrolled=kind == "darts-unrolled", **FAST, **kw
        )
    if kind == "enas":
        return EnasTrainer(
            space, LOSS, accuracy, reward, optimizer, 1, train, ctrl_steps_aggregate=2, **FAST, **kw
        )
    if kind == "proxyless":
        return ProxylessTrainer(space, LOSS, accuracy, optimizer, 1, train, **FAST, **kw)
    return SinglePathTrainer(space, LOSS, accuracy, optimizer, 1, train, valid, **FAST, **kw)


@pytest.mark.parametrize(
    "kind, module_cls",
    [
        ("darts", DartsModule),
        ("darts-unrolled", DartsModule),
        ("enas", EnasModule),
        ("proxyless", ProxylessModule),
        ("spos", RandomOneShotModule),
    ],
)
def test_each_trainer_fits_an_epoch_of_digits_and_exports_an_architecture_of_the_space(
    kind, module_cls, digits
):
    torch.manual_seed(0)
    space = DigitsLayerSpace() if kind == "proxyless" else DigitsConvSpace()
    before = {k: v.clone() for k, v in space.state_dict().items()}
    trainer = _make(kind, space, torch.optim.SGD(space.parameters(), lr=0.05, momentum=0.9), digits)
    assert isinstance(trainer, BaseOneShotTrainer) and type(trainer.module) is module_cls
    if module_cls is DartsModule:
        assert trainer.module.unrolled is (kind == "darts-unrolled")
    trainer.fit()
    arch = trainer.export()
    assert space.check_arch(arch) == arch
    assert space.freeze(arch)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    metrics = trainer.trainer.callback_metrics
    assert {"loss", "acc1", "val_loss", "val_acc1"} <= set(metrics)
    assert 0.0 <= float(metrics["val_acc1"]) <= 1.0
    assert all(torch.equal(v, before[k]) for k, v in space.state_dict().items())  # the space is left as it is
    if kind == "spos":
        assert trainer.search_results and arch == trainer.search_results[0][0]


def test_the_optimizer_is_rebuilt_on_the_supernet_with_the_users_class_and_hyper_parameters(digits):
    space = DigitsConvSpace()
    given = torch.optim.Adam(space.parameters(), lr=0.02, betas=(0.8, 0.99), weight_decay=1e-4)
    given.param_groups[0]["lr"] = 0.01  # changed after construction: the group's value is kept
    trainer = _make("darts", space, given, digits)
    opt = trainer.optimizer
    assert type(opt) is torch.optim.Adam and opt is not given and len(opt.param_groups) == 1
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (0.01, (0.8, 0.99), 1e-4)
    supernet_params = {id(p) for p in trainer.supernet.parameters()}
    assert {id(p) for p in group["params"]} == supernet_params
    assert not supernet_params & {id(p) for p in space.parameters()}
    assert (
        not {id(p) for p in trainer.module.alpha.parameters()} & supernet_params
    )  # alpha: the arch optimiser's


def test_the_dataset_is_split_in_halves_as_nni_does(digits):
    data = Subset(digits[0], range(301))
    darts = DartsTrainer(
        DigitsConvSpace(),
        LOSS,
        accuracy,
        torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1),
        1,
        data,
        **FAST,
    )
    enas = EnasTrainer(
        DigitsConvSpace(),
        LOSS,
        accuracy,
        reward,
        torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1),
        1,
        data,
        **FAST,
    )
    sizes = lambda t: (len(t.train_loader.dataset), len(t.valid_loader.dataset))  # noqa: E731
    assert sizes(darts) == (150, 151)  # indices[:n//2] train the weights
    assert sizes(enas) == (151, 150)  # indices[:-(n//2)]
    assert list(darts.valid_loader.dataset.indices) == list(range(150, 301))


def test_enas_rewards_the_controller_with_reward_function_and_takes_skip_target_from_ctrl_kwargs(digits):
    torch.manual_seed(0)
    calls = []

    def counted(output, target):
        calls.append(len(target))
        return reward(output, target)

    space = DigitsConvSpace()
    trainer = EnasTrainer(
        space,
        LOSS,
        accuracy,
        counted,
        torch.optim.SGD(space.parameters(), lr=0.05),
        1,
        digits[0],
        ctrl_kwargs={"lstm_size": 32, "skip_target": 0.3},
        **FAST,
    )
    assert trainer.module.skip_target == 0.3 and trainer.module.controller.lstm.hidden_size == 32
    assert trainer.module.ctrl_grad_clip == 5.0  # NNI clips the controller's gradients with grad_clip too
    trainer.fit()
    assert len(calls) == len(trainer.train_loader) and float(trainer.module.baseline) > 0


def test_log_frequency_logs_the_step_metrics_and_trainer_kwargs_reach_the_trainer(digits, caplog):
    torch.manual_seed(0)
    space = DigitsLayerSpace()
    trainer = _make("proxyless", space, torch.optim.SGD(space.parameters(), lr=0.05), digits, log_frequency=2)
    trainer.trainer_kwargs["limit_train_batches"] = 4
    with caplog.at_level(logging.INFO, logger="nni_pl.nas.oneshot.trainers"):
        trainer.fit()
    steps = [r.getMessage() for r in caplog.records if "Step" in r.getMessage()]
    assert len(steps) == 2 and steps[0].startswith("Epoch [1/1] Step [1/4]") and "acc1" in steps[0]
    assert trainer.trainer.log_every_n_steps == 2


NNI_SIGNATURES = {
    DartsTrainer: "model, loss, metrics, optimizer, num_epochs, dataset, grad_clip=5.0, learning_rate=0.0025, "
    "batch_size=64, workers=4, device=None, log_frequency=None, arc_learning_rate=0.0003, unrolled=False",
    EnasTrainer: "model, loss, metrics, reward_function, optimizer, num_epochs, dataset, batch_size=64, workers=4, "
    "device=None, log_frequency=None, grad_clip=5.0, entropy_weight=0.0001, skip_weight=0.8, baseline_decay=0.999, "
    "ctrl_lr=0.00035, ctrl_steps_aggregate=20, ctrl_kwargs=None",
    ProxylessTrainer: "model, loss, metrics, optimizer, num_epochs, dataset, warmup_epochs=0, batch_size=64, "
    "workers=4, device=None, log_frequency=None, arc_learning_rate=0.001",
    SinglePathTrainer: "model, loss, metrics, optimizer, num_epochs, dataset_train, dataset_valid, mutator=None, "
    "batch_size=64, workers=4, device=None, log_frequency=None",
}


@pytest.mark.parametrize("cls", list(NNI_SIGNATURES), ids=lambda c: c.__name__)
def test_the_signatures_are_nni_2_5s(cls):
    params = list(inspect.signature(cls).parameters.values())
    shown = [p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}" for p in params]
    assert ", ".join(shown) == NNI_SIGNATURES[cls]


def _good(**over):
    space = DigitsConvSpace()
    args = {
        "model": space,
        "loss": LOSS,
        "metrics": accuracy,
        "optimizer": torch.optim.SGD(space.parameters(), lr=0.1),
        "num_epochs": 1,
        "dataset": TensorDataset(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)),
    }
    return {**args, **over}


@pytest.mark.parametrize(
    "cls, over, match",
    [
        (DartsTrainer, {"num_epochs": 0}, r"'DartsTrainer.num_epochs': must be an integer >= 1, got 0"),
        (
            DartsTrainer,
            {"dataset": [1, 2, 3]},
            r"'DartsTrainer.dataset': must be a torch.utils.data.Dataset.*got list",
        ),
        (DartsTrainer, {"batch_size": 2.5}, r"'DartsTrainer.batch_size': must be an integer >= 1, got 2.5"),
        (DartsTrainer, {"batch_size": 0}, r"batch_size': must be an integer >= 1, got 0"),
        (DartsTrainer, {"workers": -1}, r"'DartsTrainer.workers': must be an integer >= 0, got -1"),
        (DartsTrainer, {"grad_clip": -1}, r"'DartsTrainer.grad_clip': must be a number >= 0, got -1"),
        (DartsTrainer, {"arc_learning_rate": 0}, r"arc_learning_rate': must be a number > 0, got 0"),
        (DartsTrainer, {"unrolled": "yes"}, r"'DartsTrainer.unrolled'.*'yes'"),
        (
            DartsTrainer,
            {"optimizer": "sgd"},
            r"'DartsTrainer.optimizer': must be a torch.optim.Optimizer.*'sgd'",
        ),
        (DartsTrainer, {"loss": 3}, r"'DartsTrainer.loss': must be a callable.*got 3"),
        (DartsTrainer, {"model": "net"}, r"'DartsTrainer.model': must be the model space.*'net'"),
        (DartsTrainer, {"device": "tpu-ish"}, r"'DartsTrainer.device': .*got 'tpu-ish'"),
        (DartsTrainer, {"log_frequency": 0}, r"'DartsTrainer.log_frequency': must be an integer >= 1, got 0"),
        (
            DartsTrainer,
            {"dataset": TensorDataset(torch.zeros(1, 1))},
            r"dataset': must hold at least 2 samples, got 1",
        ),
        (
            ProxylessTrainer,
            {"warmup_epochs": -1},
            r"'ProxylessTrainer.warmup_epochs': must be an integer >= 0, got -1",
        ),
        (
            EnasTrainer,
            {"baseline_decay": 1.5},
            r"'EnasTrainer.baseline_decay': must be a number >= 0 and <= 1, got 1.5",
        ),
        (EnasTrainer, {"ctrl_steps_aggregate": 0}, r"ctrl_steps_aggregate': must be an integer >= 1, got 0"),
        (
            EnasTrainer,
            {"ctrl_kwargs": {"entropy_reduction": "sum"}},
            r"'EnasTrainer.ctrl_kwargs.entropy_reduction'.*'sum'",
        ),
        (EnasTrainer, {"reward_function": None}, r"'EnasTrainer.reward_function': must be a callable.*None"),
    ],
)
def test_bad_arguments_are_refused_naming_the_argument_and_the_value(cls, over, match):
    kwargs = _good(**over)
    if cls is EnasTrainer:
        kwargs.setdefault("reward_function", reward)
    with pytest.raises(ArgumentError, match=match):
        cls(**kwargs)


def test_single_path_trainer_refuses_a_mutator_and_a_bad_validation_set(digits):
    args = _good()
    base = {k: args[k] for k in ("model", "loss", "metrics", "optimizer", "num_epochs")}
    with pytest.raises(ArgumentError, match=r"'SinglePathTrainer.mutator': must be None.*got 'm'"):
        SinglePathTrainer(**base, dataset_train=digits[0], dataset_valid=digits[1], mutator="m")
    with pytest.raises(
        ArgumentError, match=r"'SinglePathTrainer.dataset_valid': must be a torch.utils.data.Dataset"
    ):
        SinglePathTrainer(**base, dataset_train=digits[0], dataset_valid=None)


def test_device_maps_to_a_lightning_accelerator_on_one_device():
    assert _device_kwargs("T", None) == {"accelerator": "auto", "devices": 1}
    assert _device_kwargs("T", torch.device("cpu")) == {"accelerator": "cpu", "devices": 1}
    assert _device_kwargs("T", "cuda:1") == {"accelerator": "cuda", "devices": [1]}
    assert _device_kwargs("T", "cuda") == {"accelerator": "cuda", "devices": 1}
    with pytest.raises(ArgumentError, match=r"'T.device': must be a cpu, cuda or mps device, got 'meta'"):
        _device_kwargs("T", "meta")


# ------------------------------------------------------------------ NNI's "Customize a New One-shot Trainer"


class DartsLayerChoice(nn.Module):
    def __init__(self, layer_choice):
        super(DartsLayerChoice, self).__init__()  # noqa: UP008 (NNI's example as written)
        self.name = layer_choice.label
        self.op_choices = nn.ModuleDict(layer_choice.named_children())
        self.alpha = nn.Parameter(torch.randn(len(self.op_choices)) * 1e-3)

    def forward(self, *args, **kwargs):
        op_results = torch.stack([op(*args, **kwargs) for op in self.op_choices.values()])
        alpha_shape = [-1] + [1] * (len(op_results.size()) - 1)
        return torch.sum(op_results * F.softmax(self.alpha, -1).view(*alpha_shape), 0)


def select_best_of_module(module):
    return list(module.op_choices)[int(torch.argmax(module.alpha))]


class CustomDartsTrainer(BaseOneShotTrainer):
    def __init__(self, model, loss, metrics, optimizer, train_loader, valid_loader):
        self.model = model
        self.loss = loss
        self.metrics = metrics
        self.num_epochs = 2

        self.nas_modules = []
        replace_layer_choice(self.model, DartsLayerChoice, self.nas_modules)

        self.train_loader, self.valid_loader = train_loader, valid_loader
        alphas = {id(m.alpha) for _, m in self.nas_modules}
        self.model_optim = optimizer([p for p in model.parameters() if id(p) not in alphas])
        self.ctrl_optim = torch.optim.Adam([m.alpha for _, m in self.nas_modules], lr=3e-2)

    def train_architecture(self, x, y):
        self.ctrl_optim.zero_grad()
        self.loss(self.model(x), y).backward()
        self.ctrl_optim.step()

    def train_model_weight(self, x, y):
        self.model_optim.zero_grad()
        self.loss(self.model(x), y).backward()
        self.model_optim.step()

    def fit(self):
        for i in range(self.num_epochs):  # noqa: B007
            for (trn_X, trn_y), (val_X, val_y) in zip(self.train_loader, self.valid_loader):
                self.train_architecture(val_X, val_y)
                self.train_model_weight(trn_X, trn_y)

    @torch.no_grad()
    def export(self):
        result = dict()
        for name, module in self.nas_modules:
            if name not in result:
                result[name] = select_best_of_module(module)
        return result


class TwoOpsSpace(ModelSpace):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.op = LayerChoice(
            {
                "conv5": nn.Conv2d(8, 8, 5, padding=2),
                "conv3": nn.Conv2d(8, 8, 3, padding=1),
                "id": nn.Identity(),
            },
            label="c_op",
        )
        self.op2 = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="c_act")
        self.head = nn.Linear(8 * 64, 10)

    def forward(self, x):
        return self.head(self.op2(self.op(self.stem(x))).flatten(1))


def test_nnis_custom_darts_layer_choice_trainer_runs_with_only_its_imports_changed():
    torch.manual_seed(0)
    train, val = digits_loaders(limit=300, batch_size=50)
    space = TwoOpsSpace()
    model = TwoOpsSpace()
    trainer = CustomDartsTrainer(model, LOSS, accuracy, lambda p: torch.optim.SGD(p, lr=0.05), train, val)
    assert [name for name, _ in trainer.nas_modules] == ["c_op", "c_act"]
    before = [m.alpha.detach().clone() for _, m in trainer.nas_modules]
    trainer.fit()
    assert any(not torch.equal(b, m.alpha) for b, (_, m) in zip(before, trainer.nas_modules))
    arch = trainer.export()
    assert space.check_arch(arch) == arch
    assert space.freeze(arch)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_replace_input_choice_collects_label_and_replacement_and_base_trainer_is_abstract():
    class Pick(nn.Module):
        def __init__(self, choice):
            super().__init__()
            self.n = choice.n_candidates

        def forward(self, inputs):
            return inputs[-1]

    class Net(ModelSpace):
        def __init__(self):
            super().__init__()
            self.inner = nn.Sequential(InputChoice(2, 1, label="t_in"))
            self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="t_act")

    net = Net()
    found = replace_input_choice(net, Pick)
    assert [(name, type(m).__name__, m.n) for name, m in found] == [("t_in", "Pick", 2)]
    assert net.inner[0] is found[0][1] and isinstance(net.act, LayerChoice)
    with pytest.raises(TypeError, match="abstract"):
        BaseOneShotTrainer()


def test_the_package_re_exports_its_names_lazily():
    assert oneshot.__getattr__("search").__module__ == "nni_pl.nas.oneshot.runner"
    assert callable(oneshot.__getattr__("search"))
    for name in oneshot.__all__:
        assert getattr(oneshot, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        oneshot.nope  # noqa: B018
