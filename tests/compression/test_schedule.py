"""The shared schedule and pruning step (nni_pl.compression.pruning.schedule): fractions, mask merging, and a step
that reaches its target even when the pruner's scores prefer units pruned before (issue 16: AGP overshot)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from nni_pl.compression import Evaluator
from nni_pl.compression.pruning import L1NormPruner
from nni_pl.compression.pruning.schedule import merge_masks, prune_step, schedule_fraction, with_sparsity
from nni_pl.compression.pruning.scheduled import AGPPruner, LinearPruner, pruner_class
from nni_pl.errors import ConfigError


def test_schedule_fraction_oneshot_linear_agp() -> None:
    assert [schedule_fraction("oneshot", i, 3) for i in (1, 2, 3)] == [1.0, 1.0, 1.0]
    assert [schedule_fraction("linear", i, 4) for i in (1, 2, 3, 4)] == [0.25, 0.5, 0.75, 1.0]
    assert [schedule_fraction("agp", i, 3) for i in (1, 2, 3)] == pytest.approx([19 / 27, 26 / 27, 1.0])
    assert schedule_fraction("agp", 1, 1) == 1.0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("cubic", 1, 3), r"'schedule'.*\['oneshot', 'linear', 'agp'\].*'cubic'"),
        (("agp", 0, 3), r"'step'.*\[1, 3\].*got 0"),
        (("agp", 1, 0), r"'total'.*>= 1.*got 0"),
    ],
)
def test_schedule_fraction_rejects_bad_arguments(args: tuple, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        schedule_fraction(*args)


def test_scheduled_pruners_follow_the_shared_schedule() -> None:
    model = nn.Sequential(nn.Linear(4, 8))
    config = [{"sparsity": 0.8, "op_types": ["Linear"]}]
    agp = AGPPruner(model, config, "level", total_iteration=4)
    lin = LinearPruner(model, config, "level", total_iteration=4)
    assert agp.schedule() == pytest.approx([0.8 * schedule_fraction("agp", i, 4) for i in range(1, 5)])
    assert lin.schedule() == pytest.approx([0.8 * schedule_fraction("linear", i, 4) for i in range(1, 5)])


def test_with_sparsity_maps_every_sparsity_key_and_copies() -> None:
    config = [{"total_sparsity": 0.5, "op_types": ["Conv2d"]}, {"exclude": True, "op_names": ["fc"]}]
    out = with_sparsity(config, lambda s: s / 2)
    assert out == [{"total_sparsity": 0.25, "op_types": ["Conv2d"]}, {"exclude": True, "op_names": ["fc"]}]
    assert config[0]["total_sparsity"] == 0.5


def test_merge_masks_keeps_pruned_weights_and_layers_outside_the_step() -> None:
    new = {"a": {"weight": torch.tensor([1.0, 1.0, 0.0])}}
    previous = {"a": {"weight": torch.tensor([0.0, 1.0, 1.0])}, "b": {"weight": torch.tensor([0.0, 1.0])}}
    merged = merge_masks(new, previous)
    assert merged["a"]["weight"].tolist() == [0.0, 1.0, 0.0]
    assert merged["b"]["weight"].tolist() == [0.0, 1.0]


def _regrowing_evaluator(set_weights: Callable[[int], None]) -> Evaluator:
    """An evaluator whose 'training' gives the weights new values on each call (as training may regrow them)."""
    calls = [0]

    def train_fn(model: nn.Module, optimizer_step_hook: Callable[[], None], max_steps: int | None) -> None:
        calls[0] += 1
        set_weights(calls[0])
        optimizer_step_hook()

    return Evaluator.from_function(train_fn)


def test_prune_step_counts_units_pruned_before_toward_the_target() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    bn = model[1]

    def set_gamma(call: int) -> None:
        # call 1: channels 0-2 matter least; call 2: they matter most (they "regrew")
        values = torch.arange(1.0, 9.0) if call == 1 else torch.arange(8.0, 0.0, -1.0)
        with torch.no_grad():
            bn.weight.copy_(values)

    ev = _regrowing_evaluator(set_gamma)
    config = [{"sparsity": 0.375, "op_types": ["BatchNorm2d"]}]
    first = prune_step(model, pruner_class("slim"), config, evaluator=ev, training_steps=1)
    assert first["1"]["weight"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    second = prune_step(
        model, pruner_class("slim"), [{"sparsity": 0.5, "op_types": ["BatchNorm2d"]}], first, evaluator=ev
    )
    # the target is 4 of 8 channels: the 3 pruned before and the one that scores lowest now, not 3 + 4
    assert second["1"]["weight"].tolist() == [0, 0, 0, 1, 1, 1, 1, 0]
    assert bn.weight.detach().eq(0).sum() == 4


def test_agp_with_a_training_pruner_reaches_the_target_and_no_more() -> None:
    """Issue 16: the last step's mask was multiplied into the previous one instead of being computed for the target."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))

    def set_gamma(call: int) -> None:
        values = torch.arange(1.0, 9.0) if call % 2 else torch.arange(8.0, 0.0, -1.0)
        with torch.no_grad():
            model[1].weight.copy_(values)

    config = [{"sparsity": 0.5, "op_types": ["BatchNorm2d"]}]
    params = {"evaluator": _regrowing_evaluator(set_gamma), "training_steps": 1}
    pruner = AGPPruner(model, config, "slim", total_iteration=3, pruning_params=params)
    _, masks = pruner.compress()
    assert int(masks["1"]["weight"].eq(0).sum()) == 4
    assert int(model[1].weight.detach().eq(0).sum()) == 4


def test_prune_step_without_previous_masks_is_the_one_shot_pruner() -> None:
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(6, 10))
    b = nn.Sequential(nn.Linear(6, 10))
    b.load_state_dict(a.state_dict())
    config = [{"sparsity": 0.3, "op_types": ["Linear"]}]
    stepped = prune_step(a, L1NormPruner, config)
    _, direct = L1NormPruner(b, config).compress()
    assert torch.equal(stepped["0"]["weight"], direct["0"]["weight"])
