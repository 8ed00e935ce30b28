"""A reinforcement-learning tuner: a policy picks one option per parameter and learns from results with PPO.

NNI's ``PPOTuner`` (ppo2 from OpenAI baselines, adapted to NAS): each trial is an *episode* of one
decision per search-space parameter, its reward is the trial's metric, and every ``trials_per_update``
results the policy is improved with Proximal Policy Optimization. Here the policy, the critic, the PPO
loss and the update are tianshou's (2.x): :class:`tianshou.algorithm.PPO` over a
:class:`~tianshou.algorithm.modelfree.reinforce.DiscreteActorPolicy`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from nni_pl._checks import check_int, check_number, check_optimize_mode, check_seed
from nni_pl.errors import MissingDependencyError, SearchSpaceError, WaitForResults
from nni_pl.hpo._base import HistoryEntry, Tuner, to_loss
from nni_pl.hpo.tuners._common import make_rng
from nni_pl.hpo.tuners._evolution_base import mutate
from nni_pl.hpo.tuners._seen import SeenPoints
from nni_pl.space import Choice, SearchSpace

__all__ = ["PPOTuner"]

log = logging.getLogger(__name__)

#: the most values one parameter may have (one policy output per value).
MAX_OPTIONS = 1000
_HIDDEN = (64,)  # one hidden layer for the actor and for the critic
_RESAMPLES = 16  # more episodes drawn from the policy when its episode repeats a point
_MASKED = -1e9  # logit of an option the current parameter does not have (not -inf: the entropy stays finite)


def _tianshou() -> Any:
    """Import what the tuner uses from tianshou (and torch, gymnasium), or name the extra to install."""
    try:
        import gymnasium
        import tianshou  # noqa: F401 - first, so that a missing package is reported as such
        import torch
        from tianshou.algorithm import PPO
        from tianshou.algorithm.modelfree.reinforce import DiscreteActorPolicy
        from tianshou.algorithm.optim import AdamOptimizerFactory
        from tianshou.data import Batch, ReplayBuffer
        from tianshou.utils.net.common import AbstractDiscreteActor, Net
        from tianshou.utils.net.discrete import DiscreteActor, DiscreteCritic
        from tianshou.utils.torch_utils import policy_within_training_step
    except ImportError as e:
        raise MissingDependencyError("tianshou", "ppo", "the PPO tuner") from e

    class MaskedActor(AbstractDiscreteActor):
        """tianshou's DiscreteActor whose logits are masked to the options of the step's parameter."""

        def __init__(self, inner: Any, mask: Any, n_steps: int) -> None:
            super().__init__(inner.output_dim)
            self.inner = inner
            self.n_steps = n_steps
            self.register_buffer("mask", mask)

        def get_preprocess_net(self) -> Any:
            return self.inner.get_preprocess_net()

        def forward(self, obs: Any, state: Any = None, info: Any = None) -> tuple[Any, Any]:
            obs = torch.as_tensor(obs, dtype=torch.float32, device=self.mask.device)
            logits, hidden = self.inner(obs, state)
            step = obs[:, : self.n_steps].argmax(dim=1)
            return logits.masked_fill(~self.mask[step], _MASKED), hidden

    return SimpleNamespace(
        torch=torch,
        gymnasium=gymnasium,
        PPO=PPO,
        DiscreteActorPolicy=DiscreteActorPolicy,
        AdamOptimizerFactory=AdamOptimizerFactory,
        Batch=Batch,
        ReplayBuffer=ReplayBuffer,
        Net=Net,
        DiscreteActor=DiscreteActor,
        DiscreteCritic=DiscreteCritic,
        MaskedActor=MaskedActor,
        policy_within_training_step=policy_within_training_step,
    )


@dataclass
class _Episode:
    """One trial: the policy's action for each parameter, the parameters they gave, and the loss once known."""

    actions: list[int]
    params: dict[str, Any] | None = None
    loss: float | None = None


class _Axis:
    """The values of one finite parameter as indices ``0 .. n-1``, and the policy's actions over them.

    A parameter with more than :data:`MAX_OPTIONS` values is cut into that many contiguous bins: the
    policy picks a bin, and the value inside it is drawn uniformly.
    """

    def __init__(self, param: Any) -> None:
        self.param = param
        if isinstance(param, Choice):
            self.first, self.n = 0, len(param.options)
        elif param.TYPE == "randint":
            self.first, self.n = param.low, param.high - param.low
        else:  # quniform, qloguniform: the multiples of q between the bounds (each clipped into them)
            self.first = round(param.low / param.q)
            self.n = round(param.high / param.q) - self.first + 1
        self.actions = min(self.n, MAX_OPTIONS)

    def value(self, k: int) -> Any:
        """The flat value (a choice's option index) of index ``k``."""
        p = self.param
        if isinstance(p, Choice):
            return k
        if p.TYPE == "randint":
            return self.first + k
        return p.quantize((self.first + k) * p.q)

    def index(self, value: Any) -> int | None:
        if isinstance(self.param, Choice):
            return int(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            return None
        q = 1 if self.param.TYPE == "randint" else self.param.q
        k = round(value / q) - self.first
        if not 0 <= k < self.n or not math.isclose(self.value(k), value, rel_tol=1e-9, abs_tol=1e-12):
            return None
        return k

    def _start(self, action: int) -> int:
        return int(action) * self.n // self.actions

    def action_of(self, k: int) -> int:
        a = min(k * self.actions // self.n, self.actions - 1)
        while self._start(a) > k:
            a -= 1
        while a + 1 < self.actions and self._start(a + 1) <= k:
            a += 1
        return a

    def draw(self, action: int, rng: np.random.Generator) -> int:
        start, stop = self._start(action), self._start(action + 1)
        return start if stop - start <= 1 else int(rng.integers(start, stop))


class PPOTuner(Tuner):
    """Proximal Policy Optimization over one categorical decision per parameter (NNI's ``PPOTuner``).

    A trial is an episode of the policy: it chooses an option for the first parameter, then, seeing
    that choice, one for the second, and so on (the observation is the step and the choices so far, so
    later decisions can depend on earlier ones). The reward, given at the last decision, is the trial's
    metric turned towards maximisation and standardised by the mean and deviation of all results so
    far; a failed trial or a NaN/inf metric gets a reward below every finite one of its batch. The
    policy samples ``trials_per_update`` episodes at a time; once they have all reported, tianshou's PPO
    (clipped surrogate loss, clipped value loss, GAE) runs ``epochs_per_update`` passes over them in
    minibatches of ``minibatch_size`` trials, and the next batch is sampled from the improved policy.
    Until a batch has reported, :meth:`generate_parameters` raises :class:`~nni_pl.errors.WaitForResults`
    (so ``trialConcurrency`` above ``trials_per_update`` leaves slots idle).

    The policy needs finite parameters: ``choice`` (not nested), ``randint``, ``quniform``,
    ``qloguniform``. One with more than 1000 values is cut into 1000 contiguous bins: the policy picks a
    bin and the value inside it is drawn uniformly.

    A point is never suggested twice (NNI's tuner repeated points once the policy had converged): when
    the policy's episode gives a point already suggested or learnt of (results, imported records,
    customised trials, a resumed experiment's stored trials), more episodes are drawn from the policy,
    then points near its point (a few parameters changed) are tried, then the prior, and the unseen
    point found stands in the batch with the actions that give it.
    Once every point of the space has been suggested, :meth:`generate_parameters` raises
    :class:`~nni_pl.errors.NoMoreTrialError`, which ends the experiment.
    Imported or resumed results (and results of trials it did not suggest) are learnt from too, in
    batches of ``trials_per_update`` (their probability under the current policy stands in for the one
    they were drawn with).

    Needs the ``ppo`` extra (``pip install 'nni-pl[ppo]'``: tianshou 2, gymnasium, torch).

    Args:
        optimize_mode: ``"maximize"`` or ``"minimize"`` the reported metric (required, as in NNI).
        trials_per_update: trials per policy update (the batch sampled at once).
        epochs_per_update: passes over a batch per update.
        minibatch_size: trials per minibatch (each contributes one transition per parameter).
        ent_coef: weight of the entropy bonus in the loss.
        lr: Adam's learning rate for the actor and the critic.
        vf_coef: weight of the value loss.
        max_grad_norm: gradient-norm clipping.
        gamma: discount factor.
        lam: GAE's lambda.
        cliprange: PPO's clip range for the probability ratio (and for the value).
        seed: makes the policy's initialisation, its samples and its updates reproducible.

    Example:
        >>> tuner = PPOTuner(optimize_mode="maximize", trials_per_update=4, seed=0)
        >>> tuner.update_search_space({"op": {"_type": "choice", "_value": ["conv3", "conv5", "pool"]},
        ...                            "width": {"_type": "quniform", "_value": [16, 64, 16]}})
        >>> params = tuner.generate_parameters(0)
        >>> params["op"] in ("conv3", "conv5", "pool"), params["width"] in (16, 32, 48, 64)
        (True, True)
    """

    parsed_search_space = True  # a built-in: the experiment hands it the parsed SearchSpace

    supported_types = frozenset({"choice", "randint", "quniform", "qloguniform"})
    supports_nested = False

    def __init__(
        self,
        optimize_mode: str,
        trials_per_update: int = 20,
        epochs_per_update: int = 4,
        minibatch_size: int = 4,
        ent_coef: float = 0.0,
        lr: float = 3e-4,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        gamma: float = 0.99,
        lam: float = 0.95,
        cliprange: float = 0.2,
        *,
        seed: int | None = None,
    ) -> None:
        self.optimize_mode = check_optimize_mode(self, optimize_mode)
        self.trials_per_update = check_int(self, "trials_per_update", trials_per_update, minimum=1)
        self.epochs_per_update = check_int(self, "epochs_per_update", epochs_per_update, minimum=1)
        self.minibatch_size = check_int(self, "minibatch_size", minibatch_size, minimum=1)
        self.ent_coef = check_number(self, "ent_coef", ent_coef, low=0, hint="e.g. ent_coef: 0.01")
        self.lr = check_number(self, "lr", lr, low=0, low_open=True, hint="e.g. lr: 0.0003")
        self.vf_coef = check_number(self, "vf_coef", vf_coef, low=0, hint="e.g. vf_coef: 0.5")
        self.max_grad_norm = check_number(
            self, "max_grad_norm", max_grad_norm, low=0, low_open=True, hint="e.g. max_grad_norm: 0.5"
        )
        self.gamma = check_number(self, "gamma", gamma, low=0, high=1, hint="e.g. gamma: 0.99")
        self.lam = check_number(self, "lam", lam, low=0, high=1, hint="e.g. lam: 0.95")
        self.cliprange = check_number(
            self, "cliprange", cliprange, low=0, low_open=True, hint="e.g. cliprange: 0.2"
        )
        self.seed = check_seed(self, seed)
        self._ts = _tianshou()

        self._rng = make_rng(self.seed)
        self._space: SearchSpace | None = None
        self._seen: SeenPoints | None = None  # points suggested or learnt of
        self._keys: list[tuple[Any, ...]] = []
        self._axes: list[_Axis] = []
        self._sizes: list[int] = []  # actions per parameter
        self._offsets = np.zeros(0, dtype=int)  # where each parameter's block starts in an observation
        self._algo: Any = None
        self._batch: list[_Episode] | None = None  # the episodes sampled from the current policy
        self._issued = 0
        self._running: dict[int, _Episode] = {}  # parameter id -> episode of the current batch
        self._extra: list[_Episode] = []  # results of trials not from the current batch
        self._finite_losses: list[float] = []
        self.updates = 0

    # --- the tuner contract ----------------------------------------------------------------------------------
    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        space = SearchSpace.parse(search_space)
        type(self).check_search_space(space)
        dims = space.dimensions()
        self._space, self._keys = space, [d.key for d in dims]
        self._seen = self._seen.rebuilt(space) if self._seen is not None else SeenPoints(space)
        self._axes = [_Axis(d.param) for d in dims]
        self._sizes = [axis.actions for axis in self._axes]
        self._offsets = (len(dims) + np.concatenate([[0], np.cumsum(self._sizes)[:-1]])).astype(int)
        self._batch, self._issued, self._running, self._extra = None, 0, {}, []
        self._algo = self._build() if self._keys else None

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        """The next episode of the current batch (a new batch is sampled when the last one has reported).

        Raises:
            NoMoreTrialError: every point of the space has been suggested.
            WaitForResults: the whole batch is out and the policy update waits for its results.
        """
        if self._space is None or self._seen is None:
            raise RuntimeError("update_search_space() must be called before generate_parameters()")
        if self._keys:
            self._seen.check()
        if self._batch is None:
            self._batch, self._issued = self._sample(self.trials_per_update), 0
        if self._issued == len(self._batch):
            raise WaitForResults()
        episode = self._batch[self._issued] = self._unseen(self._batch[self._issued])
        self._issued += 1
        if self._keys:
            self._seen.add(episode.params)
        self._running[parameter_id] = episode
        assert episode.params is not None
        return copy.deepcopy(episode.params)

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        loss = to_loss(value, self.optimize_mode)
        episode = self._running.pop(parameter_id, None)
        if episode is not None:
            episode.loss = loss
            self._note(loss)
            self._maybe_update()
            return
        if self._seen is not None:
            self._seen.add(parameters)  # a customised trial's point is not suggested later
        actions = self._actions(parameters)
        if actions is None:
            log.info("PPOTuner: a result for parameters outside the space is ignored: %s", parameters)
            return
        self._note(loss)
        self._extra.append(_Episode(actions, loss=loss))  # joins the next update

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        episode = self._running.pop(parameter_id, None)
        if episode is None:
            return  # its result was received (or it is not ours)
        episode.loss = math.inf  # ended without a result: the worst
        self._maybe_update()

    def import_data(self, data: Sequence[Mapping[str, Any]]) -> None:
        """Learn from earlier results, ``trials_per_update`` at a time (a remainder joins the next update)."""
        if self._space is None:
            raise RuntimeError("update_search_space() must be called before import_data()")
        episodes = []
        for record in data:
            value = record.get("value")
            if self._seen is not None:
                self._seen.add(record.get("parameter"))
            actions = self._actions(record.get("parameter"))
            if value is None or actions is None:
                continue
            loss = to_loss(value, self.optimize_mode)
            self._note(loss)
            episodes.append(_Episode(actions, loss=loss))
        self._learn_in_batches(episodes)
        log.info("PPOTuner learnt from %d imported results", len(episodes))

    def resume(self, history: Sequence[HistoryEntry]) -> None:
        """Relearn from the stored results (in their order) and continue on a fresh random stream.

        Trials that had not finished are run again by the experiment; their results count when they
        arrive. A trial that ended without a result counts as the worst. No stored point is suggested again.
        """
        if self._space is None or self._seen is None:
            raise RuntimeError("update_search_space() must be called before resume()")
        episodes = []
        for h in sorted(history, key=lambda h: -1 if h.parameter_id is None else h.parameter_id):
            self._seen.add(h.parameters)
            if h.value is None and not h.finished:
                continue
            actions = self._actions(h.parameters)
            if actions is None:
                continue
            loss = to_loss(h.value, self.optimize_mode) if h.value is not None else math.inf
            self._note(loss)
            episodes.append(_Episode(actions, loss=loss))
        self._learn_in_batches(episodes)
        self._rng = make_rng(self.seed, len(history))
        self._batch, self._issued, self._running = None, 0, {}

    # --- encoding --------------------------------------------------------------------------------------------
    def _parameters(self, actions: Sequence[int]) -> dict[str, Any]:
        """The parameter set of one episode (a value is drawn inside a binned parameter's bin)."""
        assert self._space is not None
        flat = {
            key: axis.value(axis.draw(a, self._rng)) for key, axis, a in zip(self._keys, self._axes, actions)
        }
        return self._space.assemble(flat)

    def _actions(self, parameters: Any) -> list[int] | None:
        """The policy's action for each parameter of ``parameters``, or ``None`` if it is not a point of the space."""
        assert self._space is not None
        if not isinstance(parameters, Mapping):
            return None
        try:
            flat = self._space.flatten({k: parameters[k] for k in self._space})
        except (KeyError, SearchSpaceError):
            return None
        out = []
        for key, axis in zip(self._keys, self._axes):
            k = axis.index(flat.get(key))
            if k is None:
                return None
            out.append(axis.action_of(k))
        return out

    def _unseen(self, episode: _Episode) -> _Episode:
        """``episode``, or one in its place whose point was not suggested or learnt of before: another
        episode of the policy (up to :data:`_RESAMPLES`), else a point near the policy's (short walks
        of one-parameter changes, as evolution mutates: a converged policy keeps proposing the same
        point), else an unseen point of the prior."""
        seen = self._seen
        assert seen is not None and self._space is not None
        if not self._keys or episode.params not in seen:
            return episode
        space, start = self._space, episode.params

        def candidates() -> Iterator[dict[str, Any] | None]:
            for other in self._sample(_RESAMPLES):
                yield other.params
            for _ in range(_RESAMPLES // 4):  # short random walks: the nearest unseen points first
                point = start
                for _ in range(4):
                    point = mutate(space, point, self._rng)
                    yield point

        params = seen.fresh(self._rng, candidates())
        actions = self._actions(params)
        assert actions is not None
        return _Episode(actions, params)

    @property
    def _obs_dim(self) -> int:
        return len(self._sizes) + sum(self._sizes)

    def _observation(self, actions: np.ndarray, t: int) -> np.ndarray:
        """``[n, D]``: decision ``t`` (one-hot; none after the last) and the options chosen before it."""
        n, steps = actions.shape[0], len(self._sizes)
        obs = np.zeros((n, self._obs_dim), dtype=np.float32)
        if t < steps:
            obs[:, t] = 1.0
        for s in range(t):
            obs[np.arange(n), self._offsets[s] + actions[:, s]] = 1.0
        return obs

    # --- the policy ----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _torch(self) -> Iterator[Any]:
        """Seeded, single-threaded torch and numpy for the policy; the caller's RNG states are left untouched."""
        ts = self._ts
        torch = ts.torch
        seed = int(self._rng.integers(2**31 - 1))
        numpy_state = np.random.get_state()
        threads = torch.get_num_threads()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed)  # tianshou shuffles minibatches with numpy's global generator
            torch.set_num_threads(1)
            try:
                yield torch
            finally:
                torch.set_num_threads(threads)
                np.random.set_state(numpy_state)

    def _build(self) -> Any:
        ts = self._ts
        steps, width, dim = len(self._sizes), max(self._sizes), self._obs_dim
        with self._torch() as torch:
            mask = torch.zeros(steps, width, dtype=torch.bool)
            for t, size in enumerate(self._sizes):
                mask[t, :size] = True
            inner = ts.DiscreteActor(
                preprocess_net=ts.Net(state_shape=dim, hidden_sizes=_HIDDEN),
                action_shape=width,
                softmax_output=False,
            )
            actor = ts.MaskedActor(inner, mask, steps)
            critic = ts.DiscreteCritic(preprocess_net=ts.Net(state_shape=dim, hidden_sizes=_HIDDEN))
            policy = ts.DiscreteActorPolicy(
                actor=actor,
                action_space=ts.gymnasium.spaces.Discrete(width),
                observation_space=ts.gymnasium.spaces.Box(0.0, 1.0, (dim,), dtype=np.float32),
            )
            return ts.PPO(
                policy=policy,
                critic=critic,
                optim=ts.AdamOptimizerFactory(lr=self.lr),
                eps_clip=self.cliprange,
                value_clip=True,
                advantage_normalization=True,
                vf_coef=self.vf_coef,
                ent_coef=self.ent_coef,
                max_grad_norm=self.max_grad_norm,
                gae_lambda=self.lam,
                gamma=self.gamma,
            )

    def _sample(self, n: int) -> list[_Episode]:
        """``n`` episodes from the current policy, one decision per parameter in turn."""
        if self._algo is None:  # an empty space: one empty parameter set per trial
            return [_Episode([], {}) for _ in range(n)]
        steps = len(self._sizes)
        actions = np.zeros((n, steps), dtype=np.int64)
        policy = self._algo.policy
        with self._torch() as torch, torch.no_grad():
            policy.eval()
            for t in range(steps):
                out = policy(self._ts.Batch(obs=self._observation(actions, t), info={}))
                actions[:, t] = out.act.cpu().numpy()
        return [_Episode(row.tolist(), self._parameters(row.tolist())) for row in actions]

    def _note(self, loss: float) -> None:
        if math.isfinite(loss):
            self._finite_losses.append(loss)

    def _maybe_update(self) -> None:
        batch = self._batch
        if batch is None or self._issued < len(batch) or any(e.loss is None for e in batch):
            return
        episodes, self._extra = batch + self._extra, []
        self._batch, self._issued = None, 0
        self._learn(episodes)

    def _learn_in_batches(self, episodes: list[_Episode]) -> None:
        pending = self._extra + episodes
        self._extra = []
        while len(pending) >= self.trials_per_update:
            self._learn(pending[: self.trials_per_update])
            pending = pending[self.trials_per_update :]
        self._extra = pending

    def _rewards(self, episodes: Sequence[_Episode]) -> np.ndarray:
        """Rewards to maximise: losses standardised by all finite results so far; no result is the worst."""
        losses = np.array([e.loss for e in episodes], dtype=np.float64)
        finite = np.isfinite(losses)
        seen = np.array(self._finite_losses) if self._finite_losses else losses[finite]
        with np.errstate(all="ignore"):
            center = float(np.mean(seen)) if len(seen) else 0.0
            scale = float(np.std(seen)) if len(seen) > 1 else 1.0
            rewards = (center - losses) / (scale if scale > 0 else 1.0)
        if not np.isfinite(rewards[finite]).all():  # metrics too large to standardise: use their ranks
            order = np.argsort(np.argsort(-losses[finite]))
            rewards[finite] = (order - order.mean()) / max(order.std(), 1.0)
        rewards = np.clip(rewards, -10.0, 10.0)
        worst = min(float(rewards[finite].min()) if finite.any() else 0.0, 0.0) - 1.0
        rewards[~finite] = worst
        return rewards

    def _learn(self, episodes: list[_Episode]) -> None:
        """One PPO update on ``episodes`` with tianshou's learning step."""
        if self._algo is None or not episodes:
            return
        ts = self._ts
        steps = len(self._sizes)
        actions = np.array([e.actions for e in episodes], dtype=np.int64)
        rewards = self._rewards(episodes)
        obs = np.stack([self._observation(actions, t) for t in range(steps + 1)], axis=1)
        n = len(episodes)
        rew = np.zeros((n, steps), dtype=np.float32)
        rew[:, -1] = rewards  # the metric arrives when the last decision is made
        terminated = np.zeros((n, steps), dtype=bool)
        terminated[:, -1] = True
        # One transition per decision, episodes one after another: tianshou's GAE walks them in order.
        buffer = ts.ReplayBuffer.from_data(
            obs=obs[:, :-1].reshape(n * steps, -1),
            act=actions.reshape(-1),
            rew=rew.reshape(-1),
            terminated=terminated.reshape(-1),
            truncated=np.zeros(n * steps, dtype=bool),
            done=terminated.reshape(-1),
            obs_next=obs[:, 1:].reshape(n * steps, -1),
        )
        with self._torch():
            # Algorithm.update() refuses to run outside a training step; outside a tianshou Trainer,
            # tianshou's documented way is to mark the step with policy_within_training_step.
            with ts.policy_within_training_step(self._algo.policy):
                stats = self._algo.update(
                    buffer, batch_size=self.minibatch_size * steps, repeat=self.epochs_per_update
                )
        self.updates += 1
        log.info(
            "PPOTuner update %d on %d trials: loss %.4g (%d gradient steps)",
            self.updates,
            n,
            stats.loss.mean,
            stats.gradient_steps,
        )
