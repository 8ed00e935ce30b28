"""Anneal (NNI's ``Anneal`` tuner): hyperopt's annealing algorithm, re-implemented on our search spaces.

Each suggestion picks one of the best observations so far (a geometric draw over the sorted results)
and samples every hyperparameter near that observation's value, from a distribution like the prior
but narrower: the neighbourhood shrinks as ``1 / (1 + shrink_coef * T)`` with ``T`` the number of
observations of the hyperparameter. The annealing rate is not adaptive.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from nni_pl.hpo.tuners._parzen import DimCodec
from nni_pl.hpo.tuners._store import ObservationStore, StoreTuner
from nni_pl.space import LogNormal, Normal, QLogNormal, QNormal, Randint

__all__ = ["AnnealTuner"]

log = logging.getLogger(__name__)


class AnnealTuner(StoreTuner):
    """Simulated-annealing-like search: sample from the prior, then ever closer to the best points.

    All ten ``_type`` s and nested ``choice`` s are supported; values are returned in NNI's form
    (``choice`` values, not indices). It behaves like hyperopt's ``anneal.suggest``: the first
    suggestion comes from the prior; afterwards, for each active hyperparameter, an anchor is picked
    among the observations that used it (the ``k``-th best with ``k ~ Geometric(1 / avg_best_idx) - 1``,
    reusing the anchor of earlier hyperparameters of the same suggestion when it has a value), and the
    new value is drawn around the anchor's:

    - ``uniform``-like types: uniformly from a window of ``width * shrink`` around it (log scale for the
      log types, then NNI's rounding and clipping for the q-types), shifted to stay inside the bounds;
    - ``normal``-like types: from a normal centred on it with ``sigma * shrink``;
    - ``choice`` and ``randint``: the anchor's option with probability ``1 - shrink``, else uniformly.

    No point is suggested twice (a model proposal already suggested or learnt of gives way to an unseen
    point), and a finite space ends with :class:`~nni_pl.errors.NoMoreTrialError` once every point
    has been seen.

    Args:
        optimize_mode: ``"maximize"`` (NNI's default) or ``"minimize"`` the reported metric.
        seed: makes the suggestions reproducible for the same sequence of results.

    Example:
        >>> tuner = AnnealTuner(optimize_mode="minimize", seed=0)
        >>> tuner.update_search_space({"x": {"_type": "uniform", "_value": [-5, 5]},
        ...                            "act": {"_type": "choice", "_value": ["relu", "tanh"]}})
        >>> for i in range(50):
        ...     p = tuner.generate_parameters(i)
        ...     tuner.receive_trial_result(i, p, abs(p["x"] - 2) + (p["act"] == "tanh"))
        >>> best = min(tuner.observations(), key=lambda o: o[1])[0]
        >>> best["act"], abs(best["x"] - 2) < 0.5
        ('relu', True)
    """

    avg_best_idx = 2.0
    shrink_coef = 0.1

    def __init__(self, optimize_mode: str = "maximize", *, seed: int | None = None) -> None:
        super().__init__(optimize_mode=optimize_mode, seed=seed)

    def _suggest(self, store: ObservationStore) -> dict[str, Any]:
        x, loss = store.x, store.loss
        rng = self._rng
        anchors: list[int] = []
        chosen: dict[int, float] = {}
        for j, codec in enumerate(store.codecs):
            parent = store.parent[j]
            if parent >= 0 and (parent not in chosen or int(chosen[parent]) != store.parent_index[j]):
                continue  # inactive: its branch was not chosen
            rows = np.flatnonzero(~np.isnan(x[:, j]))
            if len(rows) == 0:
                chosen[j] = float(codec.prior_sample(rng, 1)[0])
                continue
            anchor = next((a for a in anchors if not np.isnan(x[a, j])), None)
            if anchor is None:
                k = min(int(rng.geometric(1.0 / self.avg_best_idx)) - 1, len(rows) - 1)
                anchor = int(rows[np.argsort(loss[rows], kind="stable")[k]])
                anchors.append(anchor)
            shrink = 1.0 / (1.0 + len(rows) * self.shrink_coef)
            chosen[j] = self._near(codec, float(x[anchor, j]), shrink, rng)
        return store.decode(chosen)

    @staticmethod
    def _near(codec: DimCodec, center: float, shrink: float, rng: np.random.Generator) -> float:
        """An internal coordinate drawn from the prior narrowed around ``center``."""
        p: Any = codec.param
        if codec.kind == "cat":
            if rng.random() < 1.0 - shrink:
                return center
            return float(rng.integers(codec.n_options))
        if codec.kind == "const":
            return codec.lo
        if isinstance(p, Randint):
            if rng.random() < 1.0 - shrink:
                return center
            return float(rng.integers(p.low, p.high)) + 0.5
        if isinstance(p, (Normal, QNormal, LogNormal, QLogNormal)):
            return float(rng.normal(center, codec.prior_sigma * shrink))
        half = 0.5 * (codec.hi - codec.lo) * shrink
        mid = min(max(center, codec.lo + half), codec.hi - half)
        return float(rng.uniform(mid - half, mid + half))
