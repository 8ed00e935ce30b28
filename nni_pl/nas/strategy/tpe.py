"""TPE over a model space (NNI's ``strategy.TPEStrategy``), reusing the HPO TPE tuner."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from nni_pl.nas.strategy._tuner_backed import TunerBackedStrategy

if TYPE_CHECKING:
    from nni_pl.hpo import Tuner

__all__ = ["TPE"]


class TPE(TunerBackedStrategy):
    """Tree-structured Parzen Estimator over the architecture's choices.

    The model is :class:`nni_pl.hpo.tuners.tpe.TPETuner` (categorical kernels for the choices, a random
    start, never the same architecture twice); the strategy feeds it every result, including those of
    trials it did not propose (resumed or user-added ones). A finite space that is used up ends the
    search. Failed trials are forgotten.

    Args:
        n_startup_jobs: random architectures before the model is used.
        n_ei_candidates: candidates drawn from the model per proposal.
        tpe_args: further :class:`~nni_pl.hpo.tuners.tpe.TPETuner` arguments.
        optimize_mode: ``"maximize"`` or ``"minimize"`` the metric.
        seed: makes the search reproducible.

    Example:
        >>> from nni_pl.nas.strategy import simulate
        >>> space = {f"x{i}": {"_type": "choice", "_value": [0, 1, 2]} for i in range(4)}
        >>> runs = simulate(TPE(n_startup_jobs=5), space, lambda a: sum(a.values()), budget=30, seed=0)
        >>> len(runs), max(v for _, v in runs) >= 7
        (30, True)
    """

    tuner_args_name: ClassVar[str] = "tpe_args"

    def __init__(
        self,
        *,
        n_startup_jobs: int = 10,
        n_ei_candidates: int = 24,
        tpe_args: Mapping[str, Any] | None = None,
        optimize_mode: str = "maximize",
        seed: int | None = None,
    ) -> None:
        super().__init__(optimize_mode=optimize_mode, seed=seed)
        self.n_startup_jobs = n_startup_jobs
        self.n_ei_candidates = n_ei_candidates
        self.tpe_args = dict(tpe_args or {})
        self.build_tuner()  # the tuner checks the arguments: fail now, not at the first proposal

    def make_tuner(self) -> Tuner:
        from nni_pl.hpo.tuners import TPETuner

        args = {"parallel_optimize": True, **self.tpe_args}
        return TPETuner(
            optimize_mode=self.optimize_mode,
            seed=self.seed,
            n_startup_jobs=self.n_startup_jobs,
            n_ei_candidates=self.n_ei_candidates,
            **args,
        )
