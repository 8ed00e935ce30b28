"""DNGO tuner (NNI's ``DNGOTuner``): Bayesian optimisation with a neural network's features.

DNGO (Snoek et al., "Scalable Bayesian Optimization Using Deep Neural Networks", ICML 2015) trains a
small network (three hidden layers of 50 ``tanh`` units) to predict the loss, then treats the last
hidden layer's outputs as basis functions of a Bayesian linear regression whose prior and noise
precisions (``alpha``, ``beta``) maximise the marginal likelihood. That gives a predictive mean and
variance at any point at a cost linear in the number of results; in NNI each suggestion is the best of
``sample_size`` random points by expected improvement.

NNI used pybnn; this is written in numpy (no torch) and differs in these ways, each of which
made it beat random search where it had lost (``benchmarks/hpo``):

- the first model is trained after a few random trials (``min(trials_per_update, 10)``, at least 2)
  instead of after ``trials_per_update``; between re-trainings of the network (every
  ``trials_per_update`` results) the cheap Bayesian layer is refitted on every new result;
- the Bayesian layer's basis is the network's features plus a constant and a quadratic in the inputs
  (a quadratic trend), so it can follow a bowl that a network trained on a few dozen results misses;
- expected improvement is taken over the best result so far (NNI's used a fixed 0.95) and maximised
  over ``sample_size`` random points and two rounds of ``sample_size // 2`` points near the five best
  results and the five best candidates so far (:meth:`UnitCube.neighbours`), not the random points only,
  which rarely fall near a narrow optimum in ten dimensions;
- with concurrent trials, pending points take the model's predicted loss, but no better than the median
  result (a kriging believer with a floor): the Bayesian layer's variance shrinks around them, and the
  next suggestion moves away from them without a made-up worst result pulling the whole model;
- a numeric ``choice`` is spaced by rank by default (``choice_spacing``, as in :class:`GPTuner`).

Every NNI ``_type`` and nested choices are accepted, in the unit cube of :mod:`._numeric` (string
choices one-hot, normal types by their prior quantile; NNI: the numeric types and numeric choices
only, which ``nni_types_only=True`` restores).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import ndtr

from nni_pl._checks import check_bool, check_choice, check_int
from nni_pl.hpo.tuners._numeric import NUMERIC_TYPES, UnitCube, check_nni_types, single_threaded
from nni_pl.hpo.tuners._store import ObservationStore, StoreTuner
from nni_pl.space import SearchSpace

__all__ = ["DNGOTuner"]

log = logging.getLogger(__name__)

_HIDDEN = 50
_BATCH = 10
_LR = 1e-2
_MAX_BATCHES_PER_EPOCH = 10  # larger batches beyond 100 results keep a training's cost bounded
_COLD_START = 10
_LOCAL_ROUNDS = 2  # rounds of sample_size // 2 points near the best results and the best candidates so far
_LOCAL_STARTS = 5  # ... near this many of each


class _Net:
    """The network, in numpy: three ``tanh`` layers of ``_HIDDEN`` units and a linear output, trained on
    the mean squared error by minibatch Adam (``lr=_LR``, betas ``(0.9, 0.999)``, ``eps=1e-8``), with
    PyTorch's default initialisation (weights and biases uniform in ``+-1/sqrt(fan_in)``).

    The parameters live in one flat array (each layer's weight and bias are views into it) so that an
    Adam step is a handful of vector operations: on a 10-result batch a step costs ~0.12 ms here, an
    eighth of the same step in ``torch`` (whose per-call overhead dominates on a network this small).

    Example:
        >>> net = _Net(2, np.random.default_rng(0))
        >>> x = np.random.default_rng(1).uniform(-1, 1, (40, 2))
        >>> y = x[:, 0] ** 2 - x[:, 1]
        >>> before = float(np.mean((net.predict(x) - y) ** 2))
        >>> net.fit(x, y, epochs=200, rng=np.random.default_rng(2))
        >>> float(np.mean((net.predict(x) - y) ** 2)) < before / 10
        True
    """

    def __init__(self, d: int, rng: np.random.Generator) -> None:
        sizes = [d, _HIDDEN, _HIDDEN, _HIDDEN, 1]
        self.theta = np.empty(sum(a * b + b for a, b in itertools.pairwise(sizes)))
        self.grad = np.zeros_like(self.theta)
        self.layers: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        k = 0
        for a, b in itertools.pairwise(sizes):
            bound = 1.0 / math.sqrt(a)
            self.theta[k : k + a * b + b] = rng.uniform(-bound, bound, a * b + b)
            w, gw = (v[k : k + a * b].reshape(a, b) for v in (self.theta, self.grad))
            bias, gb = (v[k + a * b : k + a * b + b] for v in (self.theta, self.grad))
            self.layers.append((w, bias, gw, gb))
            k += a * b + b

    def features(self, x: np.ndarray) -> np.ndarray:
        """The last hidden layer's outputs, ``(n, _HIDDEN)``."""
        h = x
        for w, b, _, _ in self.layers[:-1]:
            h = np.tanh(h @ w + b)
        return h

    def predict(self, x: np.ndarray) -> np.ndarray:
        w, b, _, _ = self.layers[-1]
        return (self.features(x) @ w + b)[:, 0]

    def fit(self, x: np.ndarray, y: np.ndarray, *, epochs: int, rng: np.random.Generator) -> None:
        n = len(x)
        batch = max(_BATCH, math.ceil(n / _MAX_BATCHES_PER_EPOCH))
        m, v = np.zeros_like(self.theta), np.zeros_like(self.theta)
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        t = 0
        for _ in range(epochs):
            perm = rng.permutation(n)
            for i in range(0, n, batch):
                idx = perm[i : i + batch]
                self._backward(x[idx], y[idx])
                t += 1
                m *= beta1
                m += (1 - beta1) * self.grad
                v *= beta2
                v += (1 - beta2) * self.grad * self.grad
                step = _LR / (1 - beta1**t)
                self.theta -= step * m / (np.sqrt(v / (1 - beta2**t)) + eps)

    def _backward(self, x: np.ndarray, y: np.ndarray) -> None:
        """The mean squared error's gradient on one batch, into ``self.grad``."""
        acts = [x]
        for w, b, _, _ in self.layers[:-1]:
            acts.append(np.tanh(acts[-1] @ w + b))
        w, b, gw, gb = self.layers[-1]
        delta = (2.0 / len(x)) * ((acts[-1] @ w + b)[:, 0] - y)[:, None]
        for (w, _, gw, gb), h in zip(reversed(self.layers), reversed(acts)):
            np.matmul(h.T, delta, out=gw)
            np.sum(delta, axis=0, out=gb)
            if h is x:
                break
            delta = (delta @ w.T) * (1.0 - h * h)


class _BayesianLinear:
    """Bayesian linear regression on fixed features, with ``alpha``/``beta`` by marginal likelihood."""

    def __init__(self, phi: np.ndarray, y: np.ndarray) -> None:
        n, m = phi.shape
        lam, vec = np.linalg.eigh(phi.T @ phi)
        self.lam = np.maximum(lam, 0.0)
        self.vec = vec
        b = vec.T @ (phi.T @ y)
        yy = float(y @ y)

        def neg_log_evidence(theta: np.ndarray) -> float:
            alpha, beta = np.exp(theta)
            denom = beta * self.lam + alpha
            c = beta * b / denom
            resid = yy - 2 * float(c @ b) + float((self.lam * c * c).sum())
            value = (
                0.5 * m * math.log(alpha)
                + 0.5 * n * math.log(beta)
                - 0.5 * beta * max(resid, 0.0)
                - 0.5 * alpha * float(c @ c)
                - 0.5 * float(np.log(denom).sum())
                - 0.5 * n * math.log(2 * math.pi)
            )
            return -value

        starts = [np.array([0.0, math.log(100.0)]), np.array([0.0, math.log(1000.0)]), np.array([2.0, 2.0])]
        best = None
        for x0 in starts:
            res = minimize(neg_log_evidence, x0, method="L-BFGS-B", bounds=[(-10.0, 10.0), (-5.0, 15.0)])
            if best is None or res.fun < best.fun:
                best = res
        assert best is not None
        self.alpha, self.beta = (float(v) for v in np.exp(best.x))
        self.denom = self.beta * self.lam + self.alpha
        self.coef = self.vec @ (self.beta * b / self.denom)

    def predict(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        proj = phi @ self.vec
        var = (proj * proj / self.denom).sum(1) + 1.0 / self.beta
        return phi @ self.coef, np.sqrt(np.maximum(var, 1e-12))


class DNGOTuner(StoreTuner):
    """Deep networks for global optimisation: a network's features plus Bayesian linear regression.

    Applicable to large-scale hyperparameter optimisation (its cost grows linearly with the number
    of results, unlike a Gaussian process's cubic growth). Supported ``_type`` s: all ten, and nested
    choices (NNI: ``randint``, ``uniform``, ``quniform``, ``loguniform``, ``qloguniform`` and
    ``choice`` of numbers, which ``nni_types_only=True`` restores). A ``choice`` of numbers sits on
    one axis (by rank, or by value with ``choice_spacing="value"``); any other ``choice`` (strings,
    booleans, mixed, nested ``_name`` branches) is one-hot; the normal types are modelled by their prior quantile. Diverged trials (NaN/inf
    metrics) count as the worst result. The network is trained in numpy on one thread, so it does not compete
    with trials for cores.

    No point is suggested twice (a model proposal already suggested or learnt of gives way to an unseen
    point), and a finite space ends with :class:`~nni_pl.errors.NoMoreTrialError` once every point
    has been seen.

    Args:
        optimize_mode: ``"maximize"`` (NNI's default) or ``"minimize"`` the reported metric.
        sample_size: random points scored per suggestion (plus two rounds of ``sample_size // 2`` points
            near the best results and candidates); the best by expected improvement is taken.
        trials_per_update: results between two trainings of the network.
        num_epochs_per_training: passes over the results per training.
        seed: makes the suggestions reproducible for the same sequence of results.
        nni_types_only: refuse what NNI's DNGO tuner refused (the types above other than NNI's,
            string choices, nested choices) with a :class:`~nni_pl.errors.SearchSpaceError` naming
            the parameter.
        choice_spacing: where the options of a numeric ``choice`` sit on its axis: ``"rank"`` (the default:
            evenly, in order of value) or ``"value"`` (NNI: linear in the value); see :class:`GPTuner`.

    Example:
        >>> tuner = DNGOTuner(optimize_mode="minimize", seed=0, num_epochs_per_training=100)
        >>> tuner.update_search_space({"x": {"_type": "uniform", "_value": [-5, 5]}})
        >>> for i in range(20):
        ...     p = tuner.generate_parameters(i)
        ...     tuner.receive_trial_result(i, p, (p["x"] - 1.0) ** 2)
        >>> best = min(tuner.observations(), key=lambda o: o[1])
        >>> abs(best[0]["x"] - 1.0) < 0.3
        True
    """

    #: the ``_type`` s NNI's DNGO tuner accepted (``nni_types_only=True``)
    nni_types = NUMERIC_TYPES

    def __init__(
        self,
        optimize_mode: str = "maximize",
        sample_size: int = 1000,
        trials_per_update: int = 20,
        num_epochs_per_training: int = 500,
        *,
        seed: int | None = None,
        nni_types_only: bool = False,
        choice_spacing: str = "rank",
    ) -> None:
        super().__init__(optimize_mode=optimize_mode, seed=seed)
        self.nni_types_only = check_bool(self, "nni_types_only", nni_types_only)
        self.choice_spacing = check_choice(self, "choice_spacing", choice_spacing, ("rank", "value"))
        self.sample_size = check_int(self, "sample_size", sample_size, minimum=1)
        self.trials_per_update = check_int(self, "trials_per_update", trials_per_update, minimum=1)
        self.num_epochs_per_training = check_int(
            self, "num_epochs_per_training", num_epochs_per_training, minimum=1
        )
        self.n_startup_jobs = max(2, min(self.trials_per_update, _COLD_START))
        self._cube: UnitCube | None = None
        self._net: _Net | None = None
        self._trained_on = 0  # results the network was last trained on

    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        space = SearchSpace.parse(search_space)
        self.check_search_space(space)
        if self.nni_types_only:
            check_nni_types(space, tuner=type(self).__name__, types=self.nni_types)
        super().update_search_space(space)
        self._cube = UnitCube(self._require_store(), choice_spacing=self.choice_spacing)
        self._net = None
        self._trained_on = 0

    # --- the model ---------------------------------------------------------------------------------------
    def _data(self, store: ObservationStore, cube: UnitCube) -> tuple[np.ndarray, np.ndarray, int, float]:
        loss = np.array(store.loss, dtype=float)
        finite = np.isfinite(loss)
        loss = np.where(finite, loss, loss[finite].max()) if finite.any() else np.zeros_like(loss)
        u = cube.from_internal(store.x)
        best = float(loss.min())
        pending = [r for r in (cube.encode(p) for p in self._pending.values()) if r is not None]
        n_real = len(u)
        if pending:  # their losses are placeholders: _model_suggest replaces them by the model's prediction
            u = np.vstack([u, np.asarray(pending)])
            loss = np.concatenate([loss, np.full(len(pending), best)])
        return u, loss, n_real, best

    def _train(self, x: np.ndarray, y: np.ndarray) -> None:
        net = _Net(x.shape[1], self._rng)
        net.fit(x, y, epochs=self.num_epochs_per_training, rng=self._rng)
        self._net = net

    def _features(self, x: np.ndarray) -> np.ndarray:
        assert self._net is not None
        return np.hstack([self._net.features(x), np.ones((len(x), 1)), x, x * x])

    def _suggest(self, store: ObservationStore) -> dict[str, Any]:
        with single_threaded():
            return self._model_suggest(store)

    def _model_suggest(self, store: ObservationStore) -> dict[str, Any]:
        cube = self._cube
        assert cube is not None
        if cube.d == 0:
            return store.random_unseen(self._rng)
        u, loss, n_real, best = self._data(store, cube)
        x = 2.0 * u - 1.0
        mean, std = float(loss[:n_real].mean()), float(loss[:n_real].std())
        std = std if std > 0 else 1.0
        y = (loss - mean) / std
        best_n = (best - mean) / std
        if self._net is None or n_real - self._trained_on >= self.trials_per_update:
            log.info("DNGO: training the network on %d results", n_real)
            self._train(x[:n_real], y[:n_real])
            self._trained_on = n_real
        phi = self._features(x)
        if len(x) > n_real:  # pending points: the model's prediction, at best the median result
            mu_p, _ = _BayesianLinear(phi[:n_real], y[:n_real]).predict(phi[n_real:])
            y[n_real:] = np.maximum(mu_p, np.median(y[:n_real]))
        blr = _BayesianLinear(phi, y)

        def expected_improvement(points: np.ndarray) -> np.ndarray:
            mu, sd = blr.predict(self._features(2.0 * points - 1.0))
            z = (best_n - mu) / sd
            return (best_n - mu) * ndtr(z) + sd * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

        cand = cube.sample(self._rng, self.sample_size)
        ei = expected_improvement(cand)
        top = u[np.argsort(loss[:n_real], kind="stable")[:_LOCAL_STARTS]]
        for _ in range(_LOCAL_ROUNDS):
            starts = np.vstack([top, cand[np.argsort(-ei, kind="stable")[:_LOCAL_STARTS]]])
            near = cube.neighbours(self._rng, starts, self.sample_size // 2)
            cand, ei = np.vstack([cand, near]), np.concatenate([ei, expected_improvement(near)])
        for i in np.argsort(-ei, kind="stable")[:200]:
            params = cube.decode(cand[i])
            if store.is_new(params):
                return params
        return store.random_unseen(self._rng)

    def resume(self, history: Any) -> None:
        super().resume(history)
        self._net = None  # retrain on the reloaded results at the next suggestion
