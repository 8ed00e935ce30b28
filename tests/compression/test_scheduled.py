"""Scheduled and iterative pruners on a tiny CNN with synthetic data: schedules, kept masks, rewinding,
annealing/AMC budgets, bad arguments."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nni_pl.compression.pruning.scheduled import (
    AGPPruner,
    AMCPruner,
    AutoCompressPruner,
    LinearPruner,
    LotteryTicketPruner,
    SimulatedAnnealingPruner,
)
from nni_pl.errors import ConfigError


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )


X = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(1))
Y = torch.randint(0, 4, (32,), generator=torch.Generator().manual_seed(2))
CONV = [{"sparsity": 0.5, "op_types": ["Conv2d"]}]


def finetuner(model: nn.Module, steps: int = 3) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), Y).backward()
        opt.step()


def accuracy(model: nn.Module) -> float:
    with torch.no_grad():
        return float((model(X).argmax(1) == Y).float().mean())


def pruned_channels(weight: torch.Tensor) -> int:
    return int((weight.detach().flatten(1).abs().sum(1) == 0).sum())


def test_linear_and_agp_schedules_follow_nni() -> None:
    lin = LinearPruner(tiny_cnn(), CONV, "l1", total_iteration=5)
    assert lin.schedule() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    agp = AGPPruner(tiny_cnn(), CONV, "l1", total_iteration=4)
    expected = [0.5 * (1 - (1 - i / 4) ** 3) for i in range(1, 5)]
    assert agp.schedule() == pytest.approx(expected)
    lt = LotteryTicketPruner(
        tiny_cnn(), [{"sparsity": 0.75, "op_types": ["Conv2d"]}], "l1", total_iteration=2
    )
    assert lt.schedule() == pytest.approx([0.5, 0.75])


def test_agp_prunes_gradually_keeps_masks_through_finetuning_and_reaches_exact_sparsity() -> None:
    model = tiny_cnn()
    seen: list[int] = []

    def tracking_finetuner(m: nn.Module) -> None:
        finetuner(m)
        seen.append(pruned_channels(m[2].weight))

    pruner = AGPPruner(model, CONV, "l1", total_iteration=3, finetuner=tracking_finetuner, evaluator=accuracy)
    model, masks = pruner.compress()
    assert seen == sorted(seen) and seen[-1] == 8  # masked channels stay zero while finetuning, count grows
    assert pruned_channels(model[0].weight) == 4 and pruned_channels(model[2].weight) == 8
    assert masks["2"]["weight"].flatten(1).amax(1).eq(0).sum() == 8
    task_id, _model, _masks, score, config = pruner.get_best_result()
    assert 1 <= task_id <= 3 and isinstance(score, float) and config[0]["op_types"] == ["Conv2d"]
    assert len(pruner.history) == 3


def test_linear_without_evaluator_keeps_last_and_saves_intermediate(tmp_path) -> None:
    pruner = LinearPruner(
        tiny_cnn(), CONV, "level", total_iteration=2, log_dir=tmp_path, keep_intermediate_result=True
    )
    model, _ = pruner.compress()
    assert pruner.get_best_result()[0] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iteration_1.pt", "iteration_2.pt"]
    w = model[2].weight
    assert int((w == 0).sum()) == w.numel() // 2


def test_lottery_ticket_rewinds_surviving_weights_to_initial_values() -> None:
    model = tiny_cnn()
    initial = model[2].weight.detach().clone()
    pruner = LotteryTicketPruner(model, CONV, "l1", total_iteration=2, finetuner=None, reset_weight=True)
    model, masks = pruner.compress()
    keep = masks["2"]["weight"].bool()
    assert torch.equal(model[2].weight[keep], initial[keep])
    assert pruned_channels(model[2].weight) == 8


def test_lottery_ticket_trains_between_rounds() -> None:
    calls: list[int] = []
    pruner = LotteryTicketPruner(
        tiny_cnn(), CONV, "l1", total_iteration=2, finetuner=lambda m: calls.append(1)
    )
    pruner.compress()
    assert len(calls) == 3  # before the first round, then after each


def overall_sparsity(model: nn.Module, names: list[str]) -> float:
    modules = dict(model.named_modules())
    zeros = sum(int((modules[n].weight == 0).sum()) for n in names)
    return zeros / sum(modules[n].weight.numel() for n in names)


def test_simulated_annealing_meets_total_sparsity_and_returns_best_scored() -> None:
    scores: list[float] = []

    def evaluator(m: nn.Module) -> float:
        scores.append(accuracy(m))
        return scores[-1]

    config = [{"total_sparsity": 0.5, "op_types": ["Conv2d"]}]
    sa = SimulatedAnnealingPruner(
        tiny_cnn(), config, "level", evaluator=evaluator, cool_down_rate=0.6, seed=0
    )
    model, _ = sa.compress()
    n = math.ceil(math.log(20 / 100) / math.log(0.6))
    assert len(scores) == n + 1
    assert sa.get_best_result()[3] == max(scores)
    assert overall_sparsity(model, ["0", "2"]) == pytest.approx(0.5, abs=0.03)
    assert set(sa.best_distribution) == {"0", "2"}


def test_auto_compress_rounds_reach_target() -> None:
    config = [{"total_sparsity": 0.6, "op_types": ["Conv2d"]}]
    ac = AutoCompressPruner(
        tiny_cnn(), config, total_iteration=2, admm_params={}, sa_params={"cool_down_rate": 0.5, "seed": 0},
        evaluator=accuracy, finetuner=finetuner,
    )  # fmt: skip
    model, _ = ac.compress()
    assert len(ac.history) == 2
    assert overall_sparsity(model, ["0", "2"]) == pytest.approx(0.6, abs=0.05)


def train_fn(model: nn.Module, optimizer_step_hook, max_steps: int | None) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for _ in range(max_steps or 3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), Y).backward()
        optimizer_step_hook()
        opt.step()


def test_training_pruners_get_the_evaluator_through_pruning_params_and_finetuner_may_be_an_evaluator() -> (
    None
):
    from nni_pl.compression import Evaluator

    ev = Evaluator.from_function(train_fn)
    pruner = LinearPruner(
        tiny_cnn(), CONV, "taylorfo", total_iteration=2, finetuner=ev, pruning_params={"evaluator": ev}
    )
    model, _ = pruner.compress()
    assert pruned_channels(model[2].weight) == 8 and pruned_channels(model[0].weight) == 4


def test_auto_compress_with_admm() -> None:
    from nni_pl.compression import Evaluator

    ev = Evaluator.from_function(train_fn)
    config = [{"total_sparsity": 0.5, "op_types": ["Conv2d"]}]
    ac = AutoCompressPruner(
        tiny_cnn(), config, total_iteration=1, admm_params={"evaluator": ev, "iterations": 2, "training_steps": 2},
        sa_params={"cool_down_rate": 0.3, "seed": 0}, evaluator=accuracy,
    )  # fmt: skip
    assert ac.pruning_algorithm == "admm"
    model, _ = ac.compress()
    assert overall_sparsity(model, ["0", "2"]) == pytest.approx(0.5, abs=0.05)


def test_amc_policy_meets_flops_budget() -> None:
    config = [{"total_sparsity": 0.5, "op_types": ["Conv2d"]}]
    amc = AMCPruner(
        6,
        tiny_cnn(),
        config,
        torch.randn(1, 3, 8, 8),
        evaluator=accuracy,
        ddpg_params={"warmup": 3, "seed": 0},
    )
    model, _ = amc.compress()
    assert amc.best_flops_ratio <= 0.5 + 1e-3
    assert len(amc.history) == 6 and set(amc.best_policy) == {"0", "2"}
    for name, keep in amc.best_policy.items():
        n_out = dict(model.named_modules())[name].weight.shape[0]
        assert pruned_channels(dict(model.named_modules())[name].weight) == min(
            round((1 - keep) * n_out), n_out - 1
        )


def test_amc_agent_learns_which_layer_to_keep() -> None:
    # the reward is the share of the first conv's channels kept: the budget (half the FLOPs) is best spent there.
    # After a random warm-up the DDPG agent must keep more of it than the warm-up's random policies did.
    def keep_first(model: nn.Module) -> float:
        return 1.0 - pruned_channels(model[0].weight) / 8

    config = [{"total_sparsity": 0.5, "op_types": ["Conv2d"]}]
    gains = []
    for seed in range(3):
        ddpg = {
            "warmup": 10,
            "seed": seed,
            "hidden1": 32,
            "hidden2": 32,
            "lr_a": 3e-3,
            "lr_c": 1e-2,
            "bsize": 32,
        }
        amc = AMCPruner(
            60, tiny_cnn(), config, torch.randn(1, 3, 8, 8), evaluator=keep_first, ddpg_params=ddpg
        )
        amc.compress()
        scores = [h["score"] for h in amc.history]
        gains.append(sum(scores[-10:]) / 10 - sum(scores[:10]) / 10)  # last 10 episodes vs the random warm-up
        assert amc.best_policy["0"] > amc.best_policy["2"]
        assert amc.best_flops_ratio <= 0.5 + 1e-3
    assert sum(gains) / 3 > 0.1, gains


def test_amc_ddpg_params_are_checked() -> None:
    args = (4, tiny_cnn(), [{"total_sparsity": 0.5, "op_types": ["Conv2d"]}], torch.randn(1, 3, 8, 8))
    with pytest.raises(ConfigError, match=r"ddpg_params\.hiden1"):
        AMCPruner(*args, evaluator=accuracy, ddpg_params={"hiden1": 8})
    with pytest.raises(ConfigError, match="lbound"):
        AMCPruner(*args, evaluator=accuracy, ddpg_params={"lbound": 0.0})
    with pytest.raises(ConfigError, match=r"ddpg_params\.lbound.*<= rbound"):
        AMCPruner(*args, evaluator=accuracy, ddpg_params={"lbound": 0.8, "rbound": 0.5})
    for key, bad, words in [
        ("hidden1", 0, "an integer >= 1"),
        ("bsize", 2.5, "an integer >= 1"),
        ("lr_a", "fast", "a number > 0"),
        ("tau", 1.5, r"a number in \[0, 1\]"),
        ("seed", -1, "an integer >= 0 or null"),
    ]:
        with pytest.raises(ConfigError, match=rf"ddpg_params\.{key}.*must be {words}, got {bad!r}"):
            AMCPruner(*args, evaluator=accuracy, ddpg_params={key: bad})
    amc = AMCPruner(*args, evaluator=accuracy, ddpg_params={"hidden1": 16.0, "seed": 3})
    assert amc.ddpg["hidden1"] == 16 and amc.agent.actor.net[0].out_features == 16 and amc.warmup == 1


def test_speed_up_each_iteration_gives_a_small_model() -> None:
    try:
        from nni_pl.compression.speedup import ModelSpeedup  # noqa: F401
    except ImportError:
        pytest.skip("ModelSpeedup not available yet")
    model = tiny_cnn()
    pruner = AGPPruner(
        model, CONV, "l1", total_iteration=2, speed_up=True, dummy_input=torch.randn(1, 3, 8, 8)
    )
    small, _ = pruner.compress()
    assert small[0].out_channels == 4 and small[2].out_channels == 8 and small[2].in_channels == 4
    assert small(X).shape == (32, 4)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"total_iteration": 0}, "total_iteration"),
        ({"pruning_algorithm": "nope"}, "pruning_algorithm"),
        ({"speed_up": True}, "dummy_input"),
        ({"evaluator": 3}, "evaluator"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict, field: str) -> None:
    args = {"pruning_algorithm": "l1", "total_iteration": 2, **kwargs}
    with pytest.raises(ConfigError, match=field):
        AGPPruner(tiny_cnn(), CONV, **args)


def test_bad_config_entry_is_reported_at_construction() -> None:
    with pytest.raises(ConfigError, match=r"config_list\[0\]"):
        LinearPruner(tiny_cnn(), [{"sparsity": 1.5, "op_types": ["Conv2d"]}], "l1", total_iteration=2)


@pytest.mark.parametrize(
    ("cls", "channels", "iterations", "sparsity"),
    [
        (AGPPruner, 20, 3, 0.75),
        (LinearPruner, 10, 3, 0.5),
        (AGPPruner, 50, 5, 0.5),
        (LinearPruner, 32, 4, 0.3),
    ],
)
def test_speed_up_each_iteration_ends_at_the_configured_sparsity(
    cls: type, channels: int, iterations: int, sparsity: float
) -> None:
    # rounding per step must not compound: the end is round(sparsity * channels) pruned, as one shot
    torch.manual_seed(0)
    n = channels
    model = nn.Sequential(
        nn.Conv2d(3, n, 3, padding=1), nn.ReLU(), nn.Conv2d(n, n, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(n, 4),
    )  # fmt: skip
    config = [{"sparsity": sparsity, "op_types": ["Conv2d"]}]
    pruner = cls(model, config, "l1", total_iteration=iterations, speed_up=True, dummy_input=X[:1])
    small, _ = pruner.compress()
    assert small[0].out_channels == small[2].out_channels == n - round(sparsity * n)
