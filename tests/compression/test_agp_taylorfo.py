"""AGP (and the other scheduled pruners) over TaylorFO end at exactly the configured sparsity (issue 16, bug 2: conv
layers ended at 78.1% instead of 75% when the last step's mask was multiplied into the previous one instead of being
computed for the target)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from nni_pl.compression import Evaluator
from nni_pl.compression.pruning import AGPPruner, LinearPruner, LotteryTicketPruner


def _regrowing_taylor_evaluator(layer: str) -> Evaluator:
    """Each pruning step's training gives every channel of the conv ``layer`` a new, non-zero weight (as training
    without held masks may regrow pruned ones): odd steps make channel ``k`` the ``k``-th least important, even steps
    reverse it. The loss is the output's sum, so a channel's Taylor score ``(g * w)^2`` follows its weight's size."""
    calls = [0]

    def train_fn(model: nn.Module, optimizer_step_hook: Callable[[], None], max_steps: int | None) -> None:
        calls[0] += 1
        conv = model.get_submodule(layer)  # the evaluator may train a copy of the model
        n = conv.out_channels
        scale = torch.arange(1.0, n + 1.0) if calls[0] % 2 else torch.arange(float(n), 0.0, -1.0)
        with torch.no_grad():
            conv.weight.copy_(scale.view(-1, 1, 1, 1).expand_as(conv.weight))
        for _ in range(max_steps or 1):
            model.zero_grad()
            model(torch.ones(2, conv.in_channels, 5, 5)).sum().backward()
            optimizer_step_hook()

    return Evaluator.from_function(train_fn)


@pytest.mark.parametrize(
    ("cls", "channels", "sparsity", "iterations"),
    [
        (AGPPruner, 32, 0.75, 3),
        (AGPPruner, 8, 0.5, 3),
        (AGPPruner, 20, 0.75, 4),
        (LinearPruner, 20, 0.3, 4),
        (LotteryTicketPruner, 10, 0.55, 3),
    ],
)
def test_scheduled_taylorfo_ends_at_the_configured_sparsity_when_training_regrows_weights(
    cls: type, channels: int, sparsity: float, iterations: int
) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, channels, 3))
    params = {"evaluator": _regrowing_taylor_evaluator("0"), "training_batches": 1}
    config = [{"sparsity": sparsity, "op_types": ["Conv2d"]}]
    pruner = cls(model, config, "taylorfo", iterations, pruning_params=params)
    _, masks = pruner.compress()
    pruned = int(masks["0"]["weight"].flatten(1).amax(1).eq(0).sum())
    assert pruned == round(sparsity * channels)  # 24 of 32 at 75%, not 25 (78.1%); round(5.5) is 6
    assert int(model[0].weight.detach().flatten(1).abs().amax(1).eq(0).sum()) == pruned
