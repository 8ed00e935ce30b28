"""GP tuner (NNI's ``GPTuner``): Bayesian optimisation with a Gaussian-process surrogate.

After ``cold_start_num`` random trials, each suggestion fits a Gaussian process (Matern kernel, the
type-II maximum likelihood of scikit-learn's ``GaussianProcessRegressor``) to the results and maximises an acquisition function
(expected improvement, upper confidence bound or probability of improvement): it scores
``selection_num_warm_up`` random points, then refines the ``selection_num_starting_points`` best of
them with L-BFGS-B (by default both numbers adapt to the number of results, see below). Everything happens in the unit cube of :mod:`._numeric`, so suggestions are
decoded with NNI's rounding and are always exactly in the space; string choices are one-hot axes
(kept as the warm-up point chose them while L-BFGS-B moves the ordered axes), normal types are
quantile axes and nested choices are flattened with their inactive dimensions at a fixed point.

Speed: the kernel's hyperparameters are fitted with the likelihood's gradient in closed form, the
acquisition and its gradient are computed in vectorised numpy from the fitted GP (:mod:`._gp`), and
the L-BFGS-B runs are one batched problem; with the default settings a suggestion takes about 45 ms
of one core with 100 observations, less than Optuna's ``GPSampler`` (``benchmarks/hpo/gp_latency.py``
measures both; ``benchmarks/hpo/bo_quick.py`` checks the regret).

Differences from NNI, none of them in the ``classArgs``:

- the kernel is ``C * Matern(nu)`` with one length scale per axis of the unit cube (NNI: one length
  scale over the raw values, so a parameter with a wide range dominated the distances);
- the kernel's hyperparameters are warm-started from the previous fit, with 2 random restarts on
  every suggestion up to 40 results and on every ``n // 20``-th suggestion with ``n`` results after
  that (NNI: 25 restarts from scratch per suggestion, most of a suggestion's time);
- unless ``selection_num_warm_up`` / ``selection_num_starting_points`` are given, a suggestion with
  ``n`` results scores ``500,000 // n`` random points (at least 4,096, at most NNI's 100,000) and
  refines the 10 best (plus one per ten axes of the cube; NNI: 100,000 and 250 every time, about
  half a second with 100 results); values that are given are used as given;
- L-BFGS-B starts from the best warm-up points (NNI: from fresh random points, which mostly sit on
  flat parts of the acquisition), all runs in one batched problem;
- pending trials get a constant liar, and NaN/inf results count as the worst (NNI had neither);
- every NNI ``_type`` and nested choices are accepted (NNI: the numeric types and numeric choices
  only; ``nni_types_only=True`` restores that);
- the options of a numeric choice are evenly spaced on its axis in order of value (NNI: linear in the
  value; ``choice_spacing="value"`` restores that), and the kernel is fitted by maximum a posteriori
  (NNI: maximum likelihood; ``hyperprior=False``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from nni_pl._checks import check_bool, check_choice, check_int, check_number
from nni_pl.hpo.tuners._gp import GaussianProcess, acquisition, maximize_batch
from nni_pl.hpo.tuners._numeric import NUMERIC_TYPES, UnitCube, check_nni_types, single_threaded
from nni_pl.hpo.tuners._store import ObservationStore, StoreTuner
from nni_pl.space import SearchSpace

__all__ = ["GPTuner"]

log = logging.getLogger(__name__)

_UTILITIES = ("ei", "ucb", "poi")

#: NNI's ``selection_num_warm_up`` and ``selection_num_starting_points``: the most a default suggestion uses.
_NNI_WARM_UP = 100000
_NNI_STARTING_POINTS = 250
#: Kernel evaluations (warm-up points x observations) a default suggestion spends on the warm-up.
_WARM_UP_KERNEL_BUDGET = 500_000
_MIN_WARM_UP = 4096
#: L-BFGS-B runs of a default suggestion: the best warm-up points, plus one per ten dimensions.
_STARTING_POINTS = 10
#: With ``n`` results, a warm-started hyperparameter fit makes its random restarts every ``n // 20`` suggestions.
_RESTART_STRIDE = 20


def _warm_up_size(requested: int | None, n: int) -> int:
    """Random points a suggestion scores with ``n`` observations: ``requested`` if given, else an
    adaptive number that keeps the cost flat as ``n`` grows (100,000 up to 5 observations, 4,096 from 123
    on), at most NNI's 100,000."""
    if requested is not None:
        return requested
    return min(_NNI_WARM_UP, max(_MIN_WARM_UP, _WARM_UP_KERNEL_BUDGET // max(n, 1)))


def _starting_points(requested: int | None, d: int) -> int:
    """L-BFGS-B runs of a suggestion in a ``d``-axis cube: ``requested`` if given, else 10 plus one per
    ten axes, at most NNI's 250."""
    if requested is not None:
        return requested
    return min(_NNI_STARTING_POINTS, _STARTING_POINTS + d // 10)


def training_data(
    tuner: StoreTuner, store: ObservationStore, cube: UnitCube
) -> tuple[np.ndarray, np.ndarray, float]:
    """Cube points and losses to model: results (NaN/inf as the worst finite loss) plus pending points.

    Pending (generated, not yet reported) points get the mean loss so far, a *constant liar*: the model
    believes it knows the result there, and that it is unremarkable, so concurrent suggestions spread
    out (lying with the best loss, they would crowd around the optimum). Returns the points, their
    losses and the best real loss.
    """
    loss = np.array(store.loss, dtype=float)
    finite = np.isfinite(loss)
    if finite.any():
        loss = np.where(finite, loss, loss[finite].max())
    else:
        loss = np.zeros_like(loss)
    u = cube.from_internal(store.x) if len(store) else np.empty((0, cube.d))
    best = float(loss.min()) if len(loss) else 0.0
    pending = [r for r in (cube.encode(p) for p in tuner._pending.values()) if r is not None]
    if pending and len(loss):
        u = np.vstack([u, np.asarray(pending)])
        loss = np.concatenate([loss, np.full(len(pending), float(np.mean(loss)))])
    return u, loss, best


class GPTuner(StoreTuner):
    """Gaussian-process Bayesian optimisation, for trials that are expensive to run.

    Supported ``_type`` s: all ten, and nested choices (NNI: ``randint``, ``uniform``, ``quniform``,
    ``loguniform``, ``qloguniform`` and ``choice`` of numbers, which ``nni_types_only=True``
    restores). A ``choice`` of numbers uses their values as distances and decodes to the nearest
    option; any other ``choice`` (strings, booleans, mixed, nested ``_name`` branches) is one-hot.
    ``randint`` and the q-types are modelled as ordered numbers and rounded as NNI rounds them; the
    normal types are modelled by their prior quantile. Dimensions of branches that were not chosen
    are left out of the comparison of two points. Diverged trials (NaN/inf metrics) count as the
    worst result. With concurrent trials, pending points get the mean result so far as a constant liar.

    No point is suggested twice (a model proposal already suggested or learnt of gives way to an unseen
    point), and a finite space ends with :class:`~nni_pl.errors.NoMoreTrialError` once every point
    has been seen.

    The cost of a suggestion grows as ``O(n^3)`` in the number of results ``n`` (NNI: "not suitable
    when lots of trials are needed").

    Args:
        optimize_mode: ``"maximize"`` (NNI's default) or ``"minimize"`` the reported metric.
        utility: the acquisition function: ``"ei"`` (expected improvement), ``"ucb"`` (upper
            confidence bound) or ``"poi"`` (probability of improvement).
        kappa: exploration weight of ``"ucb"`` (larger explores more).
        xi: margin of ``"ei"`` and ``"poi"``, in the metric's units (larger explores more).
        nu: smoothness of the Matern kernel (smaller: rougher functions); 0.5, 1.5, 2.5 and
            ``inf`` are computed in closed form.
        alpha: value added to the kernel's diagonal; larger values model noisier observations.
        cold_start_num: random trials before the first model.
        selection_num_warm_up: random points scored per suggestion (default: ``500,000 // n`` with
            ``n`` results, between 4,096 and NNI's default 100,000).
        selection_num_starting_points: L-BFGS-B runs per suggestion, started from the best warm-up
            points (default: 10 plus one per ten axes of the unit cube; NNI's default: 250).
        seed: makes the suggestions reproducible for the same sequence of results.
        nni_types_only: refuse what NNI's GP tuner refused (the types above other than NNI's, string
            choices, nested choices) with a :class:`~nni_pl.errors.SearchSpaceError` naming the parameter.
        hyperprior: fit the kernel's hyperparameters by maximum a posteriori under weak priors on the length
            scales and amplitude (the default; it keeps the model from settling in a local optimum, e.g. on
            Hartmann-6 and on conditional spaces); ``False`` is NNI's maximum-likelihood fit.
        choice_spacing: where the options of a numeric ``choice`` sit on its axis: ``"rank"`` (the default:
            evenly, in order of value, so ``[1e-5, 1e-4, 1e-3, 0.01, 0.1]`` is five equal steps) or ``"value"``
            (NNI: linear in the value, where 1e-5 to 1e-3 lie within 1% of the axis and the model cannot tell
            them apart). On the scikit-learn MLP surrogates of ``benchmarks/hpo`` (three numeric choices
            spread over decades) rank spacing turns a GP that loses to random search into one that beats it.

    Example:
        >>> tuner = GPTuner(optimize_mode="minimize", seed=0, cold_start_num=5,
        ...                 selection_num_warm_up=2000, selection_num_starting_points=10)
        >>> tuner.update_search_space({"x": {"_type": "uniform", "_value": [-5, 5]}})
        >>> for i in range(15):
        ...     p = tuner.generate_parameters(i)
        ...     tuner.receive_trial_result(i, p, (p["x"] - 1.0) ** 2)
        >>> best = min(tuner.observations(), key=lambda o: o[1])
        >>> abs(best[0]["x"] - 1.0) < 0.1
        True
    """

    #: the ``_type`` s NNI's GP tuner accepted (``nni_types_only=True``)
    nni_types = NUMERIC_TYPES

    def __init__(
        self,
        optimize_mode: str = "maximize",
        utility: str = "ei",
        kappa: float = 5,
        xi: float = 0,
        nu: float = 2.5,
        alpha: float = 1e-6,
        cold_start_num: int = 10,
        selection_num_warm_up: int | None = None,
        selection_num_starting_points: int | None = None,
        *,
        seed: int | None = None,
        nni_types_only: bool = False,
        hyperprior: bool = True,
        choice_spacing: str = "rank",
    ) -> None:
        super().__init__(optimize_mode=optimize_mode, seed=seed)
        self.nni_types_only = check_bool(self, "nni_types_only", nni_types_only)
        self.hyperprior = check_bool(self, "hyperprior", hyperprior)
        self.choice_spacing = check_choice(self, "choice_spacing", choice_spacing, ("rank", "value"))
        self.utility = check_choice(self, "utility", utility, _UTILITIES)
        self.kappa = check_number(self, "kappa", kappa, low=0.0)
        self.xi = check_number(self, "xi", xi, low=0.0)
        self.nu = check_number(self, "nu", nu, low=0, low_open=True, allow_inf=True)
        self.alpha = check_number(self, "alpha", alpha, low=0.0)
        self.cold_start_num = check_int(self, "cold_start_num", cold_start_num, minimum=0)
        self.selection_num_warm_up = (
            None
            if selection_num_warm_up is None
            else check_int(self, "selection_num_warm_up", selection_num_warm_up, minimum=1)
        )
        self.selection_num_starting_points = (
            None
            if selection_num_starting_points is None
            else check_int(self, "selection_num_starting_points", selection_num_starting_points, minimum=0)
        )
        self.n_startup_jobs = self.cold_start_num
        self._gp = GaussianProcess(
            nu=self.nu, alpha=self.alpha, restart_stride=_RESTART_STRIDE, hyperprior=self.hyperprior
        )
        self._cube: UnitCube | None = None

    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        space = SearchSpace.parse(search_space)
        self.check_search_space(space)
        if self.nni_types_only:
            check_nni_types(space, tuner=type(self).__name__, types=self.nni_types)
        super().update_search_space(space)
        self._cube = UnitCube(self._require_store(), choice_spacing=self.choice_spacing)

    # --- the model ---------------------------------------------------------------------------------------
    def _suggest(self, store: ObservationStore) -> dict[str, Any]:
        with single_threaded():
            return self._model_suggest(store)

    def _model_suggest(self, store: ObservationStore) -> dict[str, Any]:
        cube = self._cube
        assert cube is not None
        if cube.d == 0:
            return store.random_unseen(self._rng)
        u, loss, best = training_data(self, store, cube)
        gp = self._gp.fit(u, loss, self._rng)

        def score(points: np.ndarray) -> np.ndarray:
            mu, sd = gp.predict(points)
            return acquisition(self.utility, mu, sd, best, xi=self.xi, kappa=self.kappa)[0]

        def score_grad(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            mu, sd, dmu, dsd = gp.predict_grad(points)
            value, grad = acquisition(
                self.utility, mu, sd, best, xi=self.xi, kappa=self.kappa, dmu=dmu, dsd=dsd
            )
            assert grad is not None
            return value, grad

        warm = cube.sample(self._rng, _warm_up_size(self.selection_num_warm_up, len(loss)))
        values = score(warm)
        order = np.argsort(-values, kind="stable")
        candidates = [warm[order[: max(1, min(64, len(order)))]]]
        k = min(_starting_points(self.selection_num_starting_points, cube.d), len(order))
        if k > 0:
            starts = warm[order[:k]]
            refined, _ = maximize_batch(score_grad, starts, fixed=cube.fixed(starts))
            candidates.insert(0, cube.snap(refined))
        return self._best_unseen(store, cube, np.vstack(candidates), score)

    def _best_unseen(
        self, store: ObservationStore, cube: UnitCube, points: np.ndarray, score: Any
    ) -> dict[str, Any]:
        """The decoded candidate with the highest acquisition that was not generated before."""
        values = score(points)
        for i in np.argsort(-values, kind="stable")[:200]:
            params = cube.decode(points[i])
            if store.is_new(params):
                return params
        return store.random_unseen(self._rng)
