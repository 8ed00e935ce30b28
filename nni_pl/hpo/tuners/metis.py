"""Metis tuner (NNI's ``MetisTuner``): a Gaussian process plus Gaussian mixtures, choosing by information gain.

Metis (Li et al., "Metis: Robustly tuning tail latencies of cloud systems", ATC 2018) models the
results with a Gaussian process and, after ``cold_start_num`` random trials, proposes per suggestion:

1. the *current optimum*: the point where the GP's mean loss is lowest;
2. unless ``no_candidates``, up to three kinds of candidates:

   - *exploration*: the point where the GP is least confident: the widest 95% interval relative to
     the predicted loss (NNI's ``1.96 * 2 * sigma / mu``, with ``mu`` measured from just below the
     best result, so that the criterion means the same whatever the sign of the metric; NNI's own
     only made sense for positive losses such as Metis's latencies);
   - *exploitation* (from 12 results on): the point that a Gaussian mixture fitted on the best third
     of the results finds most likely relative to a mixture fitted on the rest;
   - *re-sampling* (unless ``no_resampling``; from 50 distinct points on): results that the GP
     fitted on all the *other* results cannot explain (outside a 98% interval), which may have been
     noisy, each re-run at most three times;

3. the *information gain* of each candidate: how far the GP's lowest mean would drop if the
   candidate's result came out at the optimistic or pessimistic end of its 95% interval
   (``mu +- 1.96 sigma``); the candidate with the largest drop is the *next candidate* (none when no
   candidate lowers it).

The suggestion is the current optimum, except when it was already tried or, with probability
``exploration_probability``, when the next candidate is taken instead (a random point if there is
none), exactly as NNI decides. Repeated results for one point are aggregated by their median.

The GP is ``C * Matern(nu=1.5)`` as in NNI (on the unit cube of :mod:`._numeric`, one length scale per
axis; string choices are one-hot axes, normal types quantile axes, nested choices flattened). NNI runs L-BFGS-B from every one of ``selection_num_starting_points`` random points; here those
points are scored and the best of them refined with one batched L-BFGS-B run, which finds the same
optima far faster. The exploitation mixtures are scikit-learn's ``BayesianGaussianMixture``
(at most 8 components) and the candidate maximises the log-density ratio good/bad (NNI minimised a
ratio of log-likelihoods, which flips meaning with their signs). Every NNI ``_type`` and nested
choices are accepted (NNI: ``choice`` of numbers, ``randint``, ``uniform``, ``quniform``;
``nni_types_only=True`` restores that).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nni_pl._checks import check_bool, check_int, check_number
from nni_pl.hpo.tuners._gp import GaussianProcess, maximize_batch
from nni_pl.hpo.tuners._numeric import UnitCube, check_nni_types, single_threaded
from nni_pl.hpo.tuners._store import ObservationStore, StoreTuner
from nni_pl.space import SearchSpace

__all__ = ["MetisTuner"]

log = logging.getLogger(__name__)

_THRESHOLD_EXPLOITATION = 12  # results before the mixture candidate (NNI's threshold)
_THRESHOLD_RESAMPLING = 50  # distinct points before looking for outliers (NNI's threshold)
_MAX_RESAMPLING = 3  # results per point at most, re-samples included
_GOOD_FRACTION = 0.34
_MAX_COMPONENTS = 8
_N_REFINE = 16  # starting points refined by L-BFGS-B per search


@dataclass
class _Candidate:
    u: np.ndarray
    mu: float
    sigma: float
    reason: str
    index: int = -1  # the re-sampled point's row among the distinct points, else -1


class MetisTuner(StoreTuner):
    """Metis: GP-based tuning that weighs exploration, exploitation and re-sampling of noisy results.

    Supported ``_type`` s: all ten, and nested choices (NNI: ``quniform``, ``uniform``, ``randint``
    and ``choice`` of numbers, which ``nni_types_only=True`` restores). A ``choice`` of numbers uses
    their values as distances; any other ``choice`` (strings, booleans, mixed, nested ``_name``
    branches) is one-hot; the log types are modelled in log space, the normal types by their prior
    quantile. Diverged trials (NaN/inf metrics) count as the worst result. With concurrent trials, pending points get the mean result so far as
    a constant liar, so concurrent suggestions spread out.

    A suggestion is never a point suggested or learnt of before (results, imports, customised trials,
    a resumed experiment's trials), and a finite space ends with :class:`~nni_pl.errors.NoMoreTrialError`
    once every point has been seen. The one deliberate exception is a *re-sampling* candidate
    (``no_resampling=False``): it runs a point whose result the model cannot explain again, to measure
    the noise; it is never proposed once the space is used up.

    Args:
        optimize_mode: ``"maximize"`` (NNI's default) or ``"minimize"`` the reported metric.
        no_resampling: skip re-sampling candidates (set ``False`` when results are noisy).
        no_candidates: skip the candidates; the suggestion is then the GP's optimum or, with
            probability ``exploration_probability``, a random point.
        selection_num_starting_points: random points each search of the GP starts from.
        cold_start_num: random trials before the first model.
        exploration_probability: probability of taking the best candidate instead of the GP's optimum.
        seed: makes the suggestions reproducible for the same sequence of results.
        nni_types_only: refuse what NNI's Metis tuner refused (the types above other than NNI's,
            string choices, nested choices) with a :class:`~nni_pl.errors.SearchSpaceError` naming
            the parameter.

    Example:
        >>> tuner = MetisTuner(optimize_mode="minimize", seed=0, cold_start_num=5,
        ...                    selection_num_starting_points=100)
        >>> tuner.update_search_space({"x": {"_type": "uniform", "_value": [-5, 5]}})
        >>> for i in range(20):
        ...     p = tuner.generate_parameters(i)
        ...     tuner.receive_trial_result(i, p, (p["x"] - 1.0) ** 2)
        >>> best = min(tuner.observations(), key=lambda o: o[1])
        >>> abs(best[0]["x"] - 1.0) < 0.2
        True
    """

    #: the ``_type`` s NNI's Metis tuner accepted (``nni_types_only=True``)
    nni_types = frozenset({"choice", "randint", "uniform", "quniform"})

    def __init__(
        self,
        optimize_mode: str = "maximize",
        no_resampling: bool = True,
        no_candidates: bool = False,
        selection_num_starting_points: int = 600,
        cold_start_num: int = 10,
        exploration_probability: float = 0.9,
        *,
        seed: int | None = None,
        nni_types_only: bool = False,
    ) -> None:
        super().__init__(optimize_mode=optimize_mode, seed=seed)
        self.nni_types_only = check_bool(self, "nni_types_only", nni_types_only)
        self.no_resampling = check_bool(self, "no_resampling", no_resampling)
        self.no_candidates = check_bool(self, "no_candidates", no_candidates)
        self.selection_num_starting_points = check_int(
            self, "selection_num_starting_points", selection_num_starting_points, minimum=1
        )
        self.cold_start_num = check_int(self, "cold_start_num", cold_start_num, minimum=0)
        self.exploration_probability = check_number(
            self,
            "exploration_probability",
            exploration_probability,
            low=0,
            high=1,
            rule="a probability in [0, 1]",
        )
        self.n_startup_jobs = self.cold_start_num
        self._gp = GaussianProcess(nu=1.5, alpha=1e-6)
        self._cube: UnitCube | None = None
        self.last_reason: str | None = None  # why the last suggestion was made (for logs and tests)

    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        space = SearchSpace.parse(search_space)
        self.check_search_space(space)
        if self.nni_types_only:
            check_nni_types(space, tuner=type(self).__name__, types=self.nni_types)
        super().update_search_space(space)
        self._cube = UnitCube(self._require_store())

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        store = self._require_store()
        if not store.dims:
            return {}
        store.seen.check()  # a used-up finite space ends the experiment, re-sampling or not
        self.last_reason = "random"
        params = None
        if len(store) >= max(1, self.cold_start_num) and self._cube is not None and self._cube.d > 0:
            params = self._suggest(store)
            resample = self.last_reason == "resampling" and store.seen.key(params) is not None
            if not (resample or store.is_new(params)):
                params = None
        if params is None:
            self.last_reason = "random"
            params = store.random_unseen(self._rng)
        log.debug("Metis suggests %s (%s)", params, self.last_reason)
        return self._hand_out(parameter_id, params)

    # --- the model ---------------------------------------------------------------------------------------
    def _data(self, store: ObservationStore, cube: UnitCube) -> tuple[np.ndarray, list[list[float]]]:
        """Distinct observed points and the losses observed at each (NaN/inf as the worst)."""
        loss = np.array(store.loss, dtype=float)
        finite = np.isfinite(loss)
        loss = np.where(finite, loss, loss[finite].max()) if finite.any() else np.zeros_like(loss)
        u = cube.from_internal(store.x)
        keys, inverse = np.unique(u, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        samples: list[list[float]] = [[] for _ in range(len(keys))]
        for i, k in enumerate(inverse):
            samples[k].append(float(loss[i]))
        return keys, samples

    def _suggest(self, store: ObservationStore) -> dict[str, Any]:
        with single_threaded():
            return self._model_suggest(store)

    def _model_suggest(self, store: ObservationStore) -> dict[str, Any]:
        cube = self._cube
        assert cube is not None
        keys, samples = self._data(store, cube)
        agg = np.array([np.median(s) for s in samples])
        # pending points get the mean result so far (a constant liar)
        seen = {k.tobytes() for k in keys}
        pending = [
            r
            for r in (cube.encode(p) for p in self._pending.values())
            if r is not None and r.tobytes() not in seen
        ]
        u_fit, y_fit = keys, agg
        if pending:
            u_fit = np.vstack([keys, np.asarray(pending)])
            y_fit = np.concatenate([agg, np.full(len(pending), float(np.mean(agg)))])
        gp = self._gp.fit(u_fit, y_fit, self._rng)
        starts = cube.sample(self._rng, self.selection_num_starting_points)

        lm_u, lm_mu = self._lowest_mu(gp, cube, np.vstack([starts, keys]))
        next_candidate: _Candidate | None = None
        if not self.no_candidates:
            candidates = self._candidates(gp, cube, store, keys, samples, agg, starts)
            best_gain = 0.0
            lm_starts = np.vstack([lm_u[None, :], starts[: 4 * _N_REFINE]])
            for cand in candidates:
                lowest = self._lowest_after(gp, cube, cand, u_fit, y_fit, samples, lm_starts)
                gain = lowest - lm_mu
                if gain < best_gain:
                    best_gain, next_candidate = gain, cand
        lm_params = cube.decode(lm_u)
        tried = not store.is_new(lm_params)
        if tried or self._rng.random() <= self.exploration_probability:
            if next_candidate is None:
                self.last_reason = "random"
                return store.random_unseen(self._rng)
            self.last_reason = next_candidate.reason
            return cube.decode(next_candidate.u)
        self.last_reason = "exploitation_gp"
        return lm_params

    # --- searches over the GP ----------------------------------------------------------------------------
    def _minimize(
        self, fun: Any, fun_grad: Any, cube: UnitCube, starts: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """Lowest value of ``fun`` over the cube: score ``starts``, refine the best, snap to the space."""
        values = fun(starts)
        best = starts[np.argsort(values, kind="stable")[:_N_REFINE]]

        def negated(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            v, g = fun_grad(points)
            return -v, -g

        refined, _ = maximize_batch(negated, best, fixed=cube.fixed(best))
        points = np.vstack([cube.snap(refined), cube.snap(best)])
        values = fun(points)
        i = int(np.argmin(values))
        return points[i], float(values[i])

    def _lowest_mu(self, gp: GaussianProcess, cube: UnitCube, starts: np.ndarray) -> tuple[np.ndarray, float]:
        return self._minimize(
            lambda p: gp.predict(p)[0],
            lambda p: (lambda r: (r[0], r[2]))(gp.predict_grad(p)),
            cube,
            starts,
        )

    def _candidates(
        self,
        gp: GaussianProcess,
        cube: UnitCube,
        store: ObservationStore,
        keys: np.ndarray,
        samples: list[list[float]],
        agg: np.ndarray,
        starts: np.ndarray,
    ) -> list[_Candidate]:
        out: list[_Candidate] = []

        def new(u: np.ndarray) -> bool:
            return store.is_new(cube.decode(u))

        # exploration: the lowest confidence, i.e. the widest interval relative to the predicted loss
        floor = float(agg.min()) - 0.05 * max(float(np.ptp(agg)), 1e-12)

        def relative_width(p: np.ndarray) -> np.ndarray:
            mu, sd = gp.predict(p)
            return -sd / np.maximum(mu - floor, 1e-12)

        def relative_width_grad(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            mu, sd, dmu, dsd = gp.predict_grad(p)
            den = np.maximum(mu - floor, 1e-12)
            return -sd / den, -(dsd * den[:, None] - sd[:, None] * dmu) / (den * den)[:, None]

        u_lc, _ = self._minimize(relative_width, relative_width_grad, cube, starts)
        if new(u_lc):
            mu, sd = gp.predict(u_lc[None, :])
            out.append(_Candidate(u_lc, float(mu[0]), float(sd[0]), "exploration"))
        # exploitation: where good results are likely relative to bad ones
        if sum(len(s) for s in samples) >= _THRESHOLD_EXPLOITATION:
            u_gmm = self._mixture_candidate(cube, keys, agg, starts, new)
            if u_gmm is not None:
                mu, sd = gp.predict(u_gmm[None, :])
                out.append(_Candidate(u_gmm, float(mu[0]), float(sd[0]), "exploitation_gmm"))
        # re-sampling: results the rest of the data cannot explain (perhaps noise)
        if not self.no_resampling and len(keys) >= _THRESHOLD_RESAMPLING:
            loo_mu, loo_sd = gp.loo()
            where = {row.tobytes(): j for j, row in enumerate(gp.x)}
            for i, key in enumerate(keys):
                j = where.get(key.tobytes())
                if j is None or len(samples[i]) >= _MAX_RESAMPLING:
                    continue
                if abs(agg[i] - loo_mu[j]) > 2.33 * loo_sd[j]:
                    out.append(_Candidate(key, float(loo_mu[j]), float(loo_sd[j]), "resampling", i))
        return out

    def _mixture_candidate(
        self, cube: UnitCube, keys: np.ndarray, agg: np.ndarray, starts: np.ndarray, new: Any
    ) -> np.ndarray | None:
        from sklearn.mixture import BayesianGaussianMixture

        order = np.argsort(agg, kind="stable")
        n_good = int(len(order) * _GOOD_FRACTION)
        good, bad = keys[order[:n_good]], keys[order[n_good:]]
        if len(good) < 2 or len(bad) < 2:
            return None
        models = []
        try:
            for part in (good, bad):
                gmm = BayesianGaussianMixture(
                    n_components=max(1, min(len(part) - 1, _MAX_COMPONENTS)),
                    reg_covar=1e-4,
                    random_state=int(self._rng.integers(2**31 - 1)),
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    gmm.fit(part)
                models.append(gmm)
            drawn, _ = models[0].sample(len(starts))
        except ValueError as e:  # a collapsed component: no exploitation candidate this time (as NNI)
            log.debug("Metis: no mixture candidate (%s)", e)
            return None
        points = cube.snap(np.vstack([drawn, starts]))
        score = models[0].score_samples(points) - models[1].score_samples(points)
        for i in np.argsort(-score, kind="stable")[:50]:
            if new(points[i]):
                return points[i]
        return None

    def _lowest_after(
        self,
        gp: GaussianProcess,
        cube: UnitCube,
        cand: _Candidate,
        u_fit: np.ndarray,
        y_fit: np.ndarray,
        samples: list[list[float]],
        starts: np.ndarray,
    ) -> float:
        """The GP's lowest mean if the candidate's result were ``mu +- 1.96 sigma`` (the lower of the two)."""
        lowest = np.inf
        for outcome in (cand.mu + 1.96 * cand.sigma, cand.mu - 1.96 * cand.sigma):
            if cand.index >= 0:
                y = y_fit.copy()
                y[cand.index] = float(np.median([*samples[cand.index], outcome]))
                fantasy = gp.conditioned(u_fit, y)
            else:
                fantasy = gp.conditioned(np.vstack([u_fit, cand.u]), np.append(y_fit, outcome))
            _, value = self._lowest_mu(fantasy, cube, np.vstack([cand.u[None, :], starts]))
            lowest = min(lowest, value)
        return float(lowest)
