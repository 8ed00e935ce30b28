"""Policy-based reinforcement learning over a model space (NNI's ``strategy.PolicyBasedRL``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from nni_pl._checks import check_int
from nni_pl.nas.strategy._base import TrialRecord
from nni_pl.nas.strategy._tuner_backed import TunerBackedStrategy

if TYPE_CHECKING:
    from nni_pl.hpo import Tuner

__all__ = ["PolicyBasedRL"]


class PolicyBasedRL(TunerBackedStrategy):
    """A tianshou 2 PPO policy that picks one option per label, rewarded with the trial's metric.

    The policy is the one of :class:`nni_pl.hpo.tuners.ppo.PPOTuner` (an autoregressive masked actor and
    a critic; PPO's clipped losses and GAE are tianshou's): it samples ``trial_per_collect``
    architectures, waits for all their results (a failed trial is the worst reward), updates, and
    samples the next batch; after ``max_collect`` batches the search ends. Results of trials it did
    not propose (resumed or user-added ones) are learnt from too.

    Needs the ``ppo`` extra (``pip install 'nni-pl[ppo]'``: tianshou 2, gymnasium, torch).

    Args:
        max_collect: how many batches to sample (NNI's ``max_collect``).
        trial_per_collect: architectures per batch and policy update (NNI's ``trial_per_collect``).
        ppo_args: further :class:`~nni_pl.hpo.tuners.ppo.PPOTuner` arguments (``lr``, ``ent_coef``,
            ``epochs_per_update``, ``minibatch_size``, ...). NNI's ``policy_fn`` is not supported.
        optimize_mode: ``"maximize"`` or ``"minimize"`` the metric.
        seed: makes the policy and its samples reproducible.

    Example:
        >>> from nni_pl.nas.strategy import simulate
        >>> space = {"op": {"_type": "choice", "_value": ["conv", "pool"]},
        ...          "k": {"_type": "choice", "_value": [1, 3, 5, 7]}}
        >>> runs = simulate(PolicyBasedRL(trial_per_collect=4), space, lambda a: a["k"], budget=8, seed=0)
        >>> len(runs)  # two batches of 4, every architecture once
        8
    """

    tuner_args_name: ClassVar[str] = "ppo_args"

    def __init__(
        self,
        *,
        max_collect: int = 100,
        trial_per_collect: int = 20,
        ppo_args: Mapping[str, Any] | None = None,
        optimize_mode: str = "maximize",
        seed: int | None = None,
    ) -> None:
        super().__init__(optimize_mode=optimize_mode, seed=seed)
        self.max_collect = check_int(self, "max_collect", max_collect, minimum=1)
        self.trial_per_collect = check_int(self, "trial_per_collect", trial_per_collect, minimum=1)
        self.ppo_args = dict(ppo_args or {})
        self._proposed = 0
        self.build_tuner()  # check the arguments (and that tianshou is installed) now

    def make_tuner(self) -> Tuner:
        from nni_pl.hpo.tuners import PPOTuner

        return PPOTuner(
            optimize_mode=self.optimize_mode,
            trials_per_update=self.trial_per_collect,
            seed=self.seed,
            **self.ppo_args,
        )

    def on_setup(self) -> None:
        super().on_setup()
        self._proposed = 0

    def propose(self, history: Sequence[TrialRecord]) -> dict[str, Any] | None:
        if self._proposed >= self.max_collect * self.trial_per_collect:
            return None
        arch = super().propose(history)  # WaitForResults: the batch is out
        if arch is not None:
            self._proposed += 1
        return arch
