"""The space hub: each space runs, freezes to every sampled architecture, stays small, rebuilds by import path."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import pytest
import torch

from nni_pl.nas import Mutable, fixed_arch, load_space, random_arch
from nni_pl.nas.hub import DARTS, NasBench201, ProxylessNAS
from nni_pl.space import SearchSpace

SPACES = [
    (NasBench201, {"in_channels": 1}, (2, 1, 8, 8)),
    (DARTS, {}, (2, 3, 8, 8)),
    (ProxylessNAS, {"num_labels": 5}, (2, 3, 16, 16)),
]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def _plain(module: torch.nn.Module) -> bool:
    return not any(
        isinstance(m, Mutable) or getattr(m, "_nas_init", None) is not None for m in module.modules()
    )


@pytest.mark.parametrize(("cls", "kwargs", "shape"), SPACES, ids=[c.__name__ for c, _, _ in SPACES])
def test_hub_space_runs_freezes_and_rebuilds(cls: type, kwargs: dict, shape: tuple[int, ...]) -> None:
    space = cls(**kwargs)
    classes = kwargs.get("num_labels", 10)
    assert sum(p.numel() for p in space.parameters()) < 50_000
    x = torch.randn(*shape)
    assert space(x).shape == (shape[0], classes)
    ss = space.search_space()
    SearchSpace.parse(ss)
    for seed in range(3):
        arch = random_arch(space, seed=seed)
        model = space.freeze(arch)
        assert _plain(model)
        assert model(x).shape == (shape[0], classes)
        assert sum(p.numel() for p in model.parameters()) < 50_000
    rebuilt = load_space(space.import_path, space.init_kwargs)
    assert rebuilt.search_space() == ss
    with fixed_arch(arch, verbose=False):
        fixed = cls(**kwargs)
    assert str(fixed) == str(model)
    fixed.load_state_dict(model.state_dict())  # weights trained on one load into the other
    model.eval(), fixed.eval()
    assert torch.allclose(fixed(x), model(x))
    clone = pickle.loads(pickle.dumps(model))
    assert torch.allclose(clone(x), model(x))


def test_nasbench201_one_topology_for_all_cells() -> None:
    space = NasBench201(stem_out_channels=4, num_modules_per_stack=2)
    ss = space.search_space()
    assert list(ss) == ["cell/0_1", "cell/0_2", "cell/1_2", "cell/0_3", "cell/1_3", "cell/2_3"]
    assert ss["cell/0_1"]["_value"] == ["none", "skip_connect", "conv_1x1", "conv_3x3", "avg_pool_3x3"]
    arch = dict.fromkeys(ss, "conv_3x3")
    arch["cell/0_3"] = "skip_connect"
    model = space.freeze(arch)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 1 + 2 * 2 + 6 * 5  # stem, two residual blocks, five 3x3 edges in each of six cells


def test_darts_normal_and_reduction_cells() -> None:
    space = DARTS(width=4, num_cells=3, num_nodes=2)
    ss = space.search_space()
    assert {k.split("/")[0] for k in ss} == {"normal", "reduce"}
    assert ss["normal/input_3_1"]["_value"] == [[0], [1], [2]]
    assert "skip_connect" in ss["reduce/op_2_0"]["_value"] and "none" not in ss["reduce/op_2_0"]["_value"]
    arch = {k: v["_value"][-1] for k, v in ss.items()}
    model = space.freeze(arch)
    assert model.cells[0].cell.inputs_used() == [[[1], [1]], [[2], [2]]]
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_proxyless_depth_kernel_and_expansion() -> None:
    space = ProxylessNAS(stage_channels=(8, 12), stage_strides=(1, 2), max_depth=2)
    ss = space.search_space()
    assert ss["s1/depth"]["_value"] == [1, 2]
    assert ss["s0_b1/kernel"]["_value"] == [3, 5] and ss["s0_b1/expand"]["_value"] == [2, 4]
    arch = {k: v["_value"][0] for k, v in ss.items()}
    arch.update({"s1/depth": 2, "s1_b1/kernel": 5, "s1_b1/expand": 4})
    model = space.freeze(arch)
    assert len(model.stages[0]) == 1 and len(model.stages[1]) == 2
    block = model.stages[1][1]
    depthwise = block.layers[3]
    assert depthwise.kernel_size == (5, 5) and depthwise.in_channels == 12 * 4 == depthwise.groups
    assert block.use_residual and not model.stages[1][0].use_residual
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"one entry per stage"):
        ProxylessNAS(stage_channels=(8,), stage_strides=(1, 2))


def test_freeze_and_fixed_arch_agree_on_many_archs() -> None:
    # regression: freezing once confused modules whose ids Python reused after the originals were freed
    space = DARTS()
    for seed in range(10):
        arch = random_arch(space, seed=seed)
        with fixed_arch(arch, verbose=False):
            fixed = DARTS()
        assert str(space.freeze(arch)) == str(fixed)


@pytest.mark.parametrize("cls", [NasBench201, DARTS, ProxylessNAS], ids=lambda c: c.__name__)
def test_hub_spaces_take_mnist_sized_images(cls: type) -> None:
    space = cls(in_channels=1)
    model = space.freeze(random_arch(space, seed=5))
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
