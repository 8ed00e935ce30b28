"""BOHB (NNI's ``BOHB`` advisor): Hyperband's budgets with configurations from a multivariate KDE model."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nni_pl._checks import check_int, check_number
from nni_pl.hpo._base import to_loss
from nni_pl.hpo.tuners._brackets import (
    Bracket,
    BracketScheduler,
    Budget,
    HyperbandBase,
    bohb_rungs,
    s_max_for,
    schedule_warnings,
)
from nni_pl.hpo.tuners._kde import ProductKDE, UnitCodec, impute
from nni_pl.space import SearchSpace
from nni_pl.trial.protocol import TRIAL_BUDGET

__all__ = ["BOHB", "TRIAL_BUDGET"]

log = logging.getLogger(__name__)


class BOHB(HyperbandBase):
    """BOHB: Hyperband's brackets, with new configurations proposed by a Bayesian (KDE) model.

    The budgets follow Hyperband between ``min_budget`` and ``max_budget``: ``s_max = floor(log_eta(
    max_budget / min_budget))``, brackets ``s = s_max, ..., 0`` over and over (``max_budget=9,
    min_budget=1, eta=3``: ``s = 2, 1, 0, 2, 1, 0, ...``), bracket ``s`` starting ``ceil((s_max + 1) *
    eta**s / (s + 1))`` configurations at ``max_budget / eta**s`` and promoting the best ``1 / eta`` of
    each rung. Each trial's parameters carry its budget under ``TRIAL_BUDGET``.

    New configurations come from the model (as in the BOHB paper and HpBandSter): the results at the
    largest budget with at least ``N_min + 2`` of them (``N_min = max(min_points_in_model, d + 1)``, ``d``
    the number of searched dimensions) are split into the best ``max(N_min, top_n_percent% of N)`` and
    the worst ``max(N_min, rest)``; a multivariate product-kernel KDE is fitted on each (``l`` and ``g``,
    see :class:`~nni_pl.hpo.tuners._kde.ProductKDE`); ``num_samples`` candidates are drawn from ``l``
    with bandwidths widened by ``bandwidth_factor`` and the one with the largest ``l(x) / g(x)`` is
    proposed. A ``random_fraction`` of configurations, and all of them before a model exists, are drawn
    from the prior. Trials that are still running count as bad observations of ``g`` (a constant liar),
    so concurrent proposals spread out. Brackets run as Hyperband's ``exec_mode="parallelism"`` (as in
    HpBandSter): a new bracket starts when the open ones have nothing to hand out.

    All ten ``_type`` s and nested choices are supported (inactive parameters are imputed, as in
    HpBandSter). Failed or early-stopped trials without a result, and NaN/inf results, are the worst
    observations.

    As with :class:`~nni_pl.hpo.tuners.Hyperband`, a configuration is proposed once per experiment (a
    model proposal already sampled, imported or run by hand gives way to the next best, then to an unseen
    prior draw); only a promotion runs it again, at a larger budget. On a finite space, once every point
    has been sampled the open brackets finish and :class:`~nni_pl.errors.NoMoreTrialError` ends the
    experiment.

    Args:
        optimize_mode: ``"maximize"`` or ``"minimize"`` the reported metric.
        min_budget: the smallest budget a trial gets (> 0).
        max_budget: the largest budget (> ``min_budget``).
        eta: each rung keeps ``1 / eta`` of its configurations; an integer >= 2.
        min_points_in_model: results needed at a budget before a model is built there (``None``: the
            number of searched dimensions + 1; never fewer than that).
        top_n_percent: percentage (1-99) of the results that are "good".
        num_samples: candidates drawn from ``l(x)`` per proposal.
        random_fraction: share (0-1) of configurations drawn from the prior.
        bandwidth_factor: widens the kernels the candidates are drawn with (> 0).
        min_bandwidth: smallest kernel bandwidth, in the unit-cube coordinates (> 0).
        config_space: path to a ConfigSpace file (``pcs new``, ``.json`` or ``.yaml``) that replaces the
            experiment's search space; needs ``pip install 'nni-pl[bohb]'``. Conditions and forbidden
            clauses are not supported (use a nested ``choice`` in an NNI search space instead).
        seed: makes the proposals reproducible for the same sequence of results.

    Example:
        >>> bohb = BOHB(min_budget=1, max_budget=9, eta=3, seed=0)
        >>> bohb.update_search_space({"x": {"_type": "uniform", "_value": [0, 1]}})
        >>> first = [bohb.generate_parameters(i) for i in range(9)]
        >>> [p["TRIAL_BUDGET"] for p in first][:3], sorted(bohb.schedule)
        ([1, 1, 1], [0, 1, 2])
    """

    def __init__(
        self,
        optimize_mode: str = "maximize",
        min_budget: float = 1,
        max_budget: float = 3,
        eta: int = 3,
        min_points_in_model: int | None = None,
        top_n_percent: int = 15,
        num_samples: int = 64,
        random_fraction: float = 0.33,
        bandwidth_factor: float = 3.0,
        min_bandwidth: float = 0.001,
        config_space: str | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(optimize_mode=optimize_mode, seed=seed)
        self.min_budget = check_number(
            self, "min_budget", min_budget, low=0, low_open=True, rule="a number > 0 (the smallest budget)"
        )
        self.max_budget = check_number(
            self,
            "max_budget",
            max_budget,
            low=self.min_budget,
            low_open=True,
            rule=f"a number larger than min_budget ({min_budget!r})",
        )
        eta = check_int(self, "eta", eta, minimum=2, hint="e.g. eta: 3")
        if min_points_in_model is not None:
            min_points_in_model = check_int(
                self,
                "min_points_in_model",
                min_points_in_model,
                minimum=1,
                hint="or null for the number of parameters + 1",
            )
        top_n_percent = check_int(self, "top_n_percent", top_n_percent, minimum=1, maximum=99)
        num_samples = check_int(self, "num_samples", num_samples, minimum=1)
        self.random_fraction = check_number(
            self,
            "random_fraction",
            random_fraction,
            low=0,
            high=1,
            rule="a number between 0 and 1 (e.g. 0.33)",
        )
        self.bandwidth_factor = check_number(
            self, "bandwidth_factor", bandwidth_factor, low=0, low_open=True, hint="e.g. 3.0"
        )
        self.min_bandwidth = check_number(
            self, "min_bandwidth", min_bandwidth, low=0, low_open=True, hint="e.g. 0.001"
        )
        self.eta = int(eta)
        self.min_points_in_model = None if min_points_in_model is None else int(min_points_in_model)
        self.top_n_percent = int(top_n_percent)
        self.num_samples = int(num_samples)
        self.config_space = config_space
        self._fixed_space: SearchSpace | None = None
        if config_space is not None:
            from nni_pl.hpo.tuners._configspace import load_config_space

            self._fixed_space = load_config_space(config_space, owner=self)
        s_max = s_max_for(self.max_budget / self.min_budget, self.eta)
        self._sched = BracketScheduler(
            lambda s: bohb_rungs(s, s_max, self.eta, self.max_budget),
            s_max,
            parallel=True,
            name="BOHB",
        )
        self._codec: UnitCodec | None = None
        # every result: (parameters, budget, loss), in arrival order
        self._results: list[tuple[dict[str, Any], float, float]] = []
        self._rows: dict[float, list[tuple[np.ndarray, float]]] = {}
        self._models: dict[tuple[float, int], tuple[ProductKDE, ProductKDE]] = {}

    # --- search space and observations -----------------------------------------------------------------
    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        if self._fixed_space is not None:
            if search_space:
                log.info(
                    "BOHB uses classArgs.config_space %s instead of the experiment's search space",
                    self.config_space,
                )
            search_space = self._fixed_space
        super().update_search_space(search_space)
        self._codec = UnitCodec(self._require_space())
        self._rows, self._models = {}, {}
        for params, budget, loss in self._results:
            self._add_row(params, budget, loss)

    def _add_row(self, params: dict[str, Any], budget: float, loss: float) -> bool:
        assert self._codec is not None
        row = self._codec.encode(params)
        if row is None:
            log.warning("BOHB ignores a result whose parameters are outside the search space: %s", params)
            return False
        self._rows.setdefault(float(budget), []).append((row, loss))
        return True

    def _observe(self, config: dict[str, Any], budget: Budget, loss: float) -> None:
        self._results.append((config, float(budget), loss))
        self._add_row(config, float(budget), loss)

    def _observe_history(self, config: dict[str, Any], budget: Budget | None, loss: float) -> None:
        self._observe(config, self.max_budget if budget is None else budget, loss)

    def import_data(self, data: Sequence[Mapping[str, Any]]) -> None:
        """Learn from earlier results ``[{"parameter": {...}, "value": metric}, ...]``.

        A record's budget is its parameters' ``TRIAL_BUDGET``, or ``max_budget`` when it has none (NNI).
        """
        self._require_space()
        seen = self._require_seen()
        n = 0
        for record in data:
            params, value = record.get("parameter"), record.get("value")
            if not isinstance(params, Mapping):
                continue
            config, budget = self._split(params)
            seen.add(config)  # not sampled again
            if value is None:
                continue
            result = (
                config,
                float(self.max_budget if budget is None else budget),
                to_loss(value, self.optimize_mode),
            )
            if self._add_row(*result):
                self._results.append(result)
                n += 1
        log.info("BOHB imported %d of %d records", n, len(data))

    # --- the model ----------------------------------------------------------------------------------------
    def _n_min(self) -> int:
        assert self._codec is not None
        return max(self.min_points_in_model or 0, self._codec.width + 1)

    def _model(self) -> tuple[ProductKDE, ProductKDE] | None:
        """``(l, g)`` fitted on the largest budget with at least ``N_min + 2`` results, or ``None``."""
        assert self._codec is not None
        if self._codec.width == 0:
            return None
        n_min = self._n_min()
        ready = [b for b, rows in self._rows.items() if len(rows) >= n_min + 2]
        if not ready:
            return None
        budget = max(ready)
        rows = self._rows[budget]
        cache_key = (budget, len(rows))
        if cache_key not in self._models:
            x = np.asarray([r for r, _ in rows])
            loss = np.asarray([v for _, v in rows])
            order = np.argsort(loss, kind="stable")
            n = len(rows)
            n_good = max(n_min, self.top_n_percent * n // 100)
            n_bad = max(n_min, n - n_good)
            levels = self._codec.levels
            good = impute(x[order[:n_good]], levels, self._rng)
            bad = impute(x[order[n - n_bad :]], levels, self._rng)
            self._models = {
                cache_key: (
                    ProductKDE.fit(good, levels, min_bandwidth=self.min_bandwidth),
                    ProductKDE.fit(bad, levels, min_bandwidth=self.min_bandwidth),
                )
            }
            log.debug("BOHB: model on budget %s from %d results (%d good, %d bad)", budget, n, n_good, n_bad)
        return self._models[cache_key]

    def check_budget(self, *, max_trial_number: int | None, max_duration_s: float | None) -> list[str]:
        """Warns when ``max_budget / min_budget < eta`` (a single bracket: random search at ``max_budget``)
        and when the first bracket needs more trials than ``maxTrialNumber`` to reach ``max_budget``."""
        s_max = self._sched.s_max
        lowest = self.max_budget / self.eta
        return schedule_warnings(
            "BOHB",
            f"min_budget={self.min_budget:g}, max_budget={self.max_budget:g} and eta={self.eta}",
            s_max=s_max,
            eta=self.eta,
            first_bracket_trials=sum(n for n, _ in bohb_rungs(s_max, s_max, self.eta, self.max_budget)),
            max_trial_number=max_trial_number,
            one_bracket_fix=(
                f"set max_budget to at least eta * min_budget = {self.eta * self.min_budget:g} "
                f"or min_budget to at most max_budget / eta = {lowest:g}"
            ),
            top_for=lambda k: f"max_budget to {self.min_budget * self.eta**k:g}",
        )

    def _new_config(self, bracket: Bracket, budget: Budget) -> dict[str, Any]:
        space = self._require_space()
        assert self._codec is not None
        draw = self._rng.random()
        model = self._model()
        if model is None or draw < self.random_fraction:
            return space.sample(self._rng)
        good, bad = model
        pending = [r for r in (self._codec.encode(t.config) for t in self._sched.pending()) if r is not None]
        if pending:
            bad = bad.with_data(impute(np.asarray(pending), self._codec.levels, self._rng))
        cand = good.sample(self._rng, self.num_samples, widen=self.bandwidth_factor)
        score = good.log_pdf(cand) - bad.log_pdf(cand)
        seen = self._require_seen()
        for k in np.argsort(-score, kind="stable"):
            config = self._codec.decode(cand[k])
            if config not in seen:
                return config
        return space.sample(self._rng)
