"""The DDPG agent of AMC (He et al. 2018): one continuous action per layer, a preserve ratio in ``[lbound, rbound]``.

An actor ``mu(s) -> [0, 1]`` and a critic ``Q(s, a)`` (two hidden layers each, AMC's shapes), target copies updated
softly by ``tau``, a replay memory, and AMC's exploration: random actions during the warm-up episodes, then a
truncated normal around the actor's action whose width ``init_delta`` shrinks by ``delta_decay`` every episode.
Rewards are centred by a moving average before the critic's target is formed (AMC's variance reduction).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["DDPG_PARAMS", "DDPGAgent"]

#: ``AMCPruner(ddpg_params=...)`` (NNI's names): default and accepted values; :class:`DDPGAgent`'s defaults are read
#: from here. ``window_length``, ``max_episode_length`` and ``epsilon`` are accepted for compatibility and have no
#: effect (one-step windows, episodes of one pass over the layers).
DDPG_PARAMS: dict[str, tuple[Any, str]] = {
    "hidden1": (300, "int>=1"),
    "hidden2": (300, "int>=1"),
    "lr_c": (1e-3, ">0"),
    "lr_a": (1e-4, ">0"),
    "warmup": (100, "int>=0"),
    "discount": (1.0, "[0,1]"),
    "bsize": (64, "int>=1"),
    "rmsize": (100, "int>=1"),
    "window_length": (1, "any"),
    "tau": (0.01, "[0,1]"),
    "init_delta": (0.5, ">0"),
    "delta_decay": (0.99, "[0,1]"),
    "max_episode_length": (1e9, "any"),
    "epsilon": (50000, "any"),
    "lbound": (0.2, "(0,1]"),
    "rbound": (1.0, "(0,1]"),
    "seed": (None, "seed"),
}


def _default(key: str) -> Any:
    return DDPG_PARAMS[key][0]


def _init_last(layer: nn.Linear, bound: float = 3e-3) -> None:
    # the DDPG paper's initialisation of the output layers: outputs start near 0 (the actor's sigmoid near 0.5),
    # so neither network starts saturated
    nn.init.uniform_(layer.weight, -bound, bound)
    nn.init.uniform_(layer.bias, -bound, bound)


class _Actor(nn.Module):
    def __init__(self, n_states: int, hidden1: int, hidden2: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_states, hidden1),
            nn.ReLU(),
            nn.Linear(hidden1, hidden2),
            nn.ReLU(),
            nn.Linear(hidden2, 1),
            nn.Sigmoid(),
        )
        _init_last(self.net[4])

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.net(s)


class _Critic(nn.Module):
    def __init__(self, n_states: int, hidden1: int, hidden2: int) -> None:
        super().__init__()
        self.fs, self.fa = nn.Linear(n_states, hidden1), nn.Linear(1, hidden1)
        self.rest = nn.Sequential(nn.ReLU(), nn.Linear(hidden1, hidden2), nn.ReLU(), nn.Linear(hidden2, 1))
        _init_last(self.rest[3])

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.rest(self.fs(s) + self.fa(a))


class DDPGAgent:
    """Deep deterministic policy gradient over a single action in ``[lbound, rbound]``.

    Args:
        n_states: length of a state vector.
        hidden1, hidden2: hidden widths of the actor and the critic.
        lr_c, lr_a: Adam learning rates of the critic and the actor.
        discount: weight of the next state's value in the critic's target.
        bsize: transitions per update.
        memory: replay memory capacity (transitions).
        tau: soft-update rate of the target networks.
        init_delta, delta_decay: exploration width and its decay per episode.
        lbound, rbound: the action range.
        seed: seeds the networks' initialisation, the exploration and the replay sampling.

    Example:
        >>> agent = DDPGAgent(1, hidden1=32, hidden2=32, lr_a=3e-3, lr_c=1e-2, bsize=32, lbound=0.0, rbound=1.0,
        ...                   seed=0)
        >>> s = [1.0]
        >>> for episode in range(600):  # a bandit whose best action is 0.7
        ...     a = agent.random_action() if episode < 50 else agent.select_action(s, episode - 50)
        ...     agent.observe(s, a, -((a - 0.7) ** 2), s, True)
        ...     _ = episode >= 50 and agent.update()
        >>> abs(agent.policy(s) - 0.7) < 0.1
        True
    """

    def __init__(
        self,
        n_states: int,
        *,
        hidden1: int = _default("hidden1"),
        hidden2: int = _default("hidden2"),
        lr_c: float = _default("lr_c"),
        lr_a: float = _default("lr_a"),
        discount: float = _default("discount"),
        bsize: int = _default("bsize"),
        memory: int = 10_000,
        tau: float = _default("tau"),
        init_delta: float = _default("init_delta"),
        delta_decay: float = _default("delta_decay"),
        lbound: float = _default("lbound"),
        rbound: float = _default("rbound"),
        seed: int | None = None,
    ) -> None:
        self.rng = np.random.default_rng(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.rng.integers(2**31)))
            self.actor, self.critic = _Actor(n_states, hidden1, hidden2), _Critic(n_states, hidden1, hidden2)
            self.actor_target, self.critic_target = (
                _Actor(n_states, hidden1, hidden2),
                _Critic(n_states, hidden1, hidden2),
            )
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=lr_a)
        self.critic_optim = torch.optim.Adam(self.critic.parameters(), lr=lr_c)
        self.discount, self.bsize, self.tau = discount, bsize, tau
        self.init_delta, self.delta_decay = init_delta, delta_decay
        self.lbound, self.rbound = lbound, rbound
        self.memory: deque[tuple[list[float], float, float, list[float], bool]] = deque(maxlen=memory)
        self.moving_average: float | None = None
        self.moving_alpha = 0.5

    # -- acting -------------------------------------------------------------------------------------------------------
    def random_action(self) -> float:
        """A uniform action in ``[lbound, rbound]`` (the warm-up episodes)."""
        return float(self.rng.uniform(self.lbound, self.rbound))

    def policy(self, state: Sequence[float]) -> float:
        """The actor's action for ``state``, without exploration."""
        with torch.no_grad():
            return float(self.actor(torch.tensor([list(state)], dtype=torch.float32))[0, 0])

    def select_action(self, state: Sequence[float], episode: int) -> float:
        """The actor's action plus truncated-normal exploration of width ``init_delta * delta_decay**episode``."""
        mean = self.policy(state)
        delta = self.init_delta * self.delta_decay**episode
        for _ in range(100):  # rejection sampling of the truncated normal
            a = float(self.rng.normal(mean, delta))
            if self.lbound <= a <= self.rbound:
                return a
        return float(np.clip(mean, self.lbound, self.rbound))

    # -- learning -----------------------------------------------------------------------------------------------------
    def observe(
        self, state: Sequence[float], action: float, reward: float, next_state: Sequence[float], done: bool
    ) -> None:
        """Store one transition in the replay memory."""
        self.memory.append((list(state), float(action), float(reward), list(next_state), bool(done)))

    def update(self) -> tuple[float, float]:
        """One critic and one actor step on a sampled batch; returns ``(critic_loss, actor_loss)``."""
        n = min(self.bsize, len(self.memory))
        if n == 0:
            return 0.0, 0.0
        idx = self.rng.choice(len(self.memory), size=n, replace=False)
        s, a, r, s2, d = zip(*(self.memory[i] for i in idx))
        s_t = torch.tensor(s, dtype=torch.float32)
        a_t = torch.tensor(a, dtype=torch.float32)[:, None]
        r_np = np.asarray(r, dtype=np.float64)
        mean = float(r_np.mean())
        self.moving_average = (
            mean
            if self.moving_average is None
            else (1 - self.moving_alpha) * self.moving_average + self.moving_alpha * mean
        )
        r_t = torch.tensor(r_np - self.moving_average, dtype=torch.float32)[:, None]
        s2_t = torch.tensor(s2, dtype=torch.float32)
        d_t = torch.tensor(d, dtype=torch.float32)[:, None]
        with torch.no_grad():
            target = r_t + self.discount * (1 - d_t) * self.critic_target(s2_t, self.actor_target(s2_t))
        critic_loss = nn.functional.mse_loss(self.critic(s_t, a_t), target)
        self.critic_optim.zero_grad()
        critic_loss.backward()
        self.critic_optim.step()
        actor_loss = -self.critic(s_t, self.actor(s_t)).mean()
        self.actor_optim.zero_grad()
        actor_loss.backward()
        self.actor_optim.step()
        with torch.no_grad():
            for net, tgt in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                for p, q in zip(net.parameters(), tgt.parameters()):
                    q.mul_(1 - self.tau).add_(p, alpha=self.tau)
        return float(critic_loss.detach()), float(actor_loss.detach())
