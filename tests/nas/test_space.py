"""ModelSpace: search_space() in NNI JSON, freeze, random_arch, fixed_arch, save/load, load_space, errors."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from nni_pl.nas import (
    ArchitectureError,
    AutoActivation,
    LayerChoice,
    ModelSpace,
    Mutable,
    ValueChoice,
    fixed_arch,
    load_arch,
    load_space,
    model_wrapper,
    nn,
    random_arch,
    save_arch,
)
from nni_pl.space import Choice, SearchSpace
from tests.nas.conftest import TinySpace

ARCH = {"hidden": 16, "act": "tanh", "skip": [1], "dropout": 0.5}


def _plain(module: torch.nn.Module) -> bool:
    return not any(
        isinstance(m, Mutable) or getattr(m, "_nas_init", None) is not None for m in module.modules()
    )


def test_search_space_is_nni_json_that_nni_pl_space_parses(tiny_space: TinySpace) -> None:
    ss = tiny_space.search_space()
    assert ss == {
        "hidden": {"_type": "choice", "_value": [4, 8, 16]},
        "act": {"_type": "choice", "_value": ["relu", "tanh", "id"]},
        "skip": {"_type": "choice", "_value": [[0], [1]]},
        "dropout": {"_type": "choice", "_value": [0.0, 0.5]},
    }
    parsed = SearchSpace.parse(json.dumps(ss))
    assert isinstance(parsed["act"], Choice) and parsed.to_json() == ss


def test_space_runs_forward_with_defaults(tiny_space: TinySpace) -> None:
    assert tiny_space(torch.randn(5, 8)).shape == (5, 3)


def test_freeze_gives_plain_module_and_leaves_space_intact(tiny_space: TinySpace) -> None:
    model = tiny_space.freeze(ARCH)
    assert _plain(model)
    assert model.fc1.out_features == 16 and isinstance(model.act, torch.nn.Tanh)
    assert model.frozen_arch == ARCH
    assert model(torch.randn(2, 8)).shape == (2, 3)
    assert model.search_space() == {}
    with pytest.raises(ArchitectureError, match=r"already frozen"):
        model.freeze(ARCH)
    assert tiny_space.fc1.out_features == 4 and "act" in tiny_space.search_space()  # the space is unchanged


def test_every_random_arch_freezes_and_runs(tiny_space: TinySpace) -> None:
    seen = set()
    for seed in range(12):
        arch = random_arch(tiny_space, seed=seed)
        assert set(arch) == set(tiny_space.search_space())
        seen.add(json.dumps(arch, sort_keys=True))
        tiny_space.freeze(arch).eval()(torch.randn(3, 8))
    assert len(seen) > 3
    assert random_arch(tiny_space, seed=7) == random_arch(tiny_space, seed=7)
    assert random_arch(tiny_space.search_space(), seed=3) in [
        random_arch(tiny_space, seed=s) for s in range(64)
    ]
    assert set(random_arch(SearchSpace.parse(tiny_space.search_space()), seed=1)) == set(ARCH)


def test_random_arch_rejects_non_choice_spaces() -> None:
    with pytest.raises(ArchitectureError, match=r"'lr'.*only 'choice'"):
        random_arch({"lr": {"_type": "uniform", "_value": [0, 1]}})


def test_freeze_errors_name_label_echo_value_list_allowed(tiny_space: TinySpace) -> None:
    with pytest.raises(ArchitectureError, match=r"'hidden'.*value 12.*allowed values \[4, 8, 16\]"):
        tiny_space.freeze({**ARCH, "hidden": 12})
    missing = dict(ARCH)
    del missing["act"]
    with pytest.raises(ArchitectureError, match=r"'act'.*no value.*\['relu', 'tanh', 'id'\]"):
        tiny_space.freeze(missing)
    with pytest.raises(ArchitectureError, match=r"'hiden'.*no such label.*did you mean 'hidden'"):
        tiny_space.freeze({**ARCH, "hiden": 4})
    assert tiny_space.freeze({**ARCH, "lr": 0.1}, strict=False).fc1.out_features == 16
    with pytest.raises(ArchitectureError, match=r"dict label -> value"):
        tiny_space.freeze([1, 2])  # type: ignore[arg-type]
    # JSON round trips may turn 16 into 16.0 and lists stay lists
    assert tiny_space.freeze({**ARCH, "hidden": 16.0}).fc1.out_features == 16


def test_init_kwargs_and_import_path_rebuild_the_space(monkeypatch: pytest.MonkeyPatch) -> None:
    space = TinySpace(8, classes=5)
    assert space.init_kwargs == {"in_features": 8, "classes": 5}
    module, _, qual = space.import_path.partition(":")
    assert qual == "TinySpace" and module == TinySpace.__module__
    fake = types.ModuleType("nas_fake_mod")
    fake.TinySpace = TinySpace  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nas_fake_mod", fake)
    rebuilt = load_space("nas_fake_mod:TinySpace", space.init_kwargs)
    assert rebuilt.search_space() == space.search_space() and rebuilt.fc2.out_features == 5
    with pytest.raises(ArchitectureError, match=r"'package.module:ClassName'"):
        load_space("nas_fake_mod.TinySpace")
    with pytest.raises(ArchitectureError, match=r"has no 'Nope'"):
        load_space("nas_fake_mod:Nope")
    with pytest.raises(ArchitectureError, match=r"cannot import module"):
        load_space("no_such_module_xyz:Space")


def test_subclass_records_most_derived_kwargs() -> None:
    class Wider(TinySpace):
        def __init__(self, width: int = 2, **kwargs: int) -> None:
            super().__init__(in_features=width, **kwargs)

    space = Wider(width=6, classes=2)
    assert space.init_kwargs == {"width": 6, "classes": 2}
    assert space.import_path.endswith(":" + Wider.__qualname__)


def test_model_wrapper_makes_a_space() -> None:
    @model_wrapper
    class Net(torch.nn.Module):
        def __init__(self, n: int = 2) -> None:
            super().__init__()
            self.op = LayerChoice([nn.Linear(2, n), nn.Linear(2, 1)], label="op")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.op(x)

    space = Net(n=3)
    assert isinstance(space, ModelSpace) and Net.__name__ == "Net"
    assert space.init_kwargs == {"n": 3}
    assert space.search_space() == {"op": {"_type": "choice", "_value": ["0", "1"]}}
    assert space.freeze({"op": "1"})(torch.zeros(1, 2)).shape == (1, 1)
    with pytest.raises(TypeError, match=r"nn.Module class"):
        model_wrapper(int)


def test_fixed_arch_builds_frozen_model(tiny_space: TinySpace, tmp_path: Path) -> None:
    with fixed_arch(ARCH):
        model = TinySpace()
    assert _plain(model) and isinstance(model, TinySpace) and isinstance(model.act, torch.nn.Tanh)
    assert model.frozen_arch == ARCH and model(torch.randn(2, 8)).shape == (2, 3)
    path = tmp_path / "arch.json"
    save_arch(ARCH, path)
    assert load_arch(path) == ARCH
    with fixed_arch(str(path)):
        again = TinySpace()
    assert again.frozen_arch == ARCH
    assert _plain(TinySpace()) is False  # outside the block: a space again
    with pytest.raises(ArchitectureError, match=r"'hidden'.*value 3"), fixed_arch({**ARCH, "hidden": 3}):
        TinySpace()
    with pytest.raises(ArchitectureError, match=r"'lr'.*no such label"), fixed_arch({**ARCH, "lr": 0.1}):
        TinySpace()
    with fixed_arch({**ARCH, "lr": 0.1}, strict=False):
        assert TinySpace().frozen_arch == ARCH


def test_save_load_arch_round_trip_through_random_arch(tiny_space: TinySpace, tmp_path: Path) -> None:
    arch = random_arch(tiny_space, seed=11)
    save_arch(arch, tmp_path / "a.json")
    loaded = load_arch(tmp_path / "a.json")
    assert loaded == arch
    a = tiny_space.freeze(loaded)
    with fixed_arch(loaded):
        b = TinySpace()
    assert str(a) == str(b)


def test_load_arch_errors(tmp_path: Path) -> None:
    with pytest.raises(ArchitectureError, match=r"no architecture file"):
        load_arch(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ArchitectureError, match=r"not valid JSON"):
        load_arch(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ArchitectureError, match=r"JSON object"):
        load_arch(tmp_path / "list.json")
    with pytest.raises(ArchitectureError, match=r"not JSON-able"):
        save_arch({"op": object()}, tmp_path / "x.json")


def test_nested_space_is_one_space() -> None:
    class Inner(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.op = LayerChoice([nn.ReLU(), nn.Tanh()])

    class Outer(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = Inner()
            self.b = Inner()
            self.w = nn.Linear(2, ValueChoice([1, 2]))

    assert list(Outer().search_space()) == ["layerchoice_1", "layerchoice_2", "valuechoice_1"]
    with fixed_arch({"layerchoice_1": "1", "layerchoice_2": "0", "valuechoice_1": 2}):
        model = Outer()
    assert isinstance(model.a.op, torch.nn.Tanh) and isinstance(model.b.op, torch.nn.ReLU)


def test_frozen_models_pickle(tiny_space: TinySpace) -> None:
    model = tiny_space.freeze(ARCH).eval()
    clone = pickle.loads(pickle.dumps(model))
    x = torch.randn(2, 8)
    assert torch.equal(clone(x), model(x)) and clone.frozen_arch == ARCH
    act = AutoActivation(unit_num=1, label="a")
    frozen = act.freeze({"a/unary_0": "sin", "a/unary_1": "max0", "a/binary_0": "beta_mix"})
    assert torch.equal(pickle.loads(pickle.dumps(frozen))(x), frozen(x))


def test_import_nni_pl_stays_light() -> None:
    code = "import sys, nni_pl; assert 'torch' not in sys.modules and 'nni_pl.nas' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


class _DepthwiseSeparableConv(torch.nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, kernel_size=3, groups=in_ch)
        self.pointwise = nn.Conv2d(in_ch, out_ch, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class _NniQuickStart(ModelSpace):
    """NNI 2.5's quick-start MNIST space, unchanged but for the imports."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = LayerChoice([nn.Conv2d(32, 64, 3, 1), _DepthwiseSeparableConv(32, 64)])
        self.dropout1 = nn.Dropout(ValueChoice([0.25, 0.5, 0.75]))
        self.dropout2 = nn.Dropout(0.5)
        feature = ValueChoice([64, 128, 256])
        self.fc1 = nn.Linear(9216, feature)
        self.fc2 = nn.Linear(feature, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.max_pool2d(self.conv2(x), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.fc2(self.dropout2(torch.relu(self.fc1(x))))
        return torch.log_softmax(x, dim=1)


def test_nni_quick_start_space() -> None:
    space = _NniQuickStart()
    assert space.search_space() == {
        "layerchoice_1": {"_type": "choice", "_value": ["0", "1"]},
        "valuechoice_1": {"_type": "choice", "_value": [0.25, 0.5, 0.75]},
        "valuechoice_2": {"_type": "choice", "_value": [64, 128, 256]},
    }
    x = torch.randn(2, 1, 28, 28)
    assert space(x).shape == (2, 10)
    model = space.freeze({"layerchoice_1": "1", "valuechoice_1": 0.75, "valuechoice_2": 256})
    assert isinstance(model.conv2, _DepthwiseSeparableConv) and model.dropout1.p == 0.75
    assert model.fc1.out_features == 256 == model.fc2.in_features
    assert model(x).shape == (2, 10)
