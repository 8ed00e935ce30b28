"""The Gaussian-process surrogate shared by the GP and Metis tuners, with fast batched prediction.

The kernel's hyperparameters are fitted by type-II maximum likelihood (L-BFGS-B warm-started from
the previous fit, with random restarts), the likelihood's gradient computed here in closed form for
Matern 1.5, 2.5 and ``inf`` (scikit-learn's :class:`~sklearn.gaussian_process.GaussianProcessRegressor`
for other ``nu``, which gives the same fit); predictions, their gradients and the acquisition
functions are computed in vectorised numpy from the fitted factors, so that thousands of warm-up
candidates and the L-BFGS-B runs (done as one batched problem) take milliseconds.

The kernel is ``C * Matern(nu)`` with one length scale per axis of the unit cube (ARD); losses are
standardised before fitting. Predictions are in the loss's own units.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable

import numpy as np
from scipy.linalg import LinAlgError, cho_solve, cholesky, solve_triangular
from scipy.optimize import Bounds, minimize
from scipy.special import gamma, kv, ndtr

__all__ = ["GaussianProcess", "acquisition", "maximize_batch", "unique_rows"]

log = logging.getLogger(__name__)

_SQRT3 = math.sqrt(3.0)
_SQRT5 = math.sqrt(5.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_LENGTH_BOUNDS = (5e-3, 1e2)  # in unit-cube units: finer than any grid step, wider than irrelevant
_AMPLITUDE_BOUNDS = (1e-2, 1e2)  # of the standardised losses
_VAR_FLOOR = 1e-12
_FIT_MAXITER = 50  # L-BFGS-B iterations per hyperparameter fit: enough from a warm start
_FAILED = 1e25  # the negative log likelihood of hyperparameters whose kernel matrix is not positive definite
_LOG_2PI = math.log(2.0 * math.pi)


def _optimizer(
    obj_func: Callable[..., tuple[float, np.ndarray]], theta: np.ndarray, bounds: np.ndarray
) -> tuple[np.ndarray, float]:
    """scikit-learn's default optimiser (L-BFGS-B on the log marginal likelihood) with fewer iterations."""
    res = minimize(
        obj_func, theta, method="L-BFGS-B", jac=True, bounds=bounds, options={"maxiter": _FIT_MAXITER}
    )
    return res.x, float(res.fun)


def unique_rows(u: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge identical rows of ``u`` (their ``y`` are averaged): a GP needs distinct inputs."""
    if len(u) == 0:
        return u, y
    keys, inverse = np.unique(u, axis=0, return_inverse=True)
    if len(keys) == len(u):
        return u, y
    inverse = inverse.reshape(-1)
    sums = np.bincount(inverse, weights=y, minlength=len(keys))
    counts = np.bincount(inverse, minlength=len(keys))
    return keys, sums / counts


def _matern(r: np.ndarray, nu: float) -> np.ndarray:
    """The unit-amplitude Matern correlation at scaled distance ``r`` (scikit-learn's definition)."""
    if nu == 0.5:
        return np.exp(-r)
    if nu == 1.5:
        s = _SQRT3 * r
        return (1.0 + s) * np.exp(-s)
    if nu == 2.5:
        s = _SQRT5 * r
        return (1.0 + s + s * s / 3.0) * np.exp(-s)
    if math.isinf(nu):
        return np.exp(-0.5 * r * r)
    s = math.sqrt(2.0 * nu) * r
    with np.errstate(invalid="ignore", over="ignore"):
        k = (2.0 ** (1.0 - nu) / gamma(nu)) * np.where(s > 0, s, 1.0) ** nu * kv(nu, np.where(s > 0, s, 1.0))
    return np.where(s > 0, np.nan_to_num(k, nan=0.0), 1.0)


def _matern_slope(r: np.ndarray, nu: float) -> np.ndarray | None:
    """``k'(r) / r`` (finite at ``r = 0``) for the kernels that have a closed form, else ``None``."""
    if nu == 1.5:
        return -3.0 * np.exp(-_SQRT3 * r)
    if nu == 2.5:
        return -(5.0 / 3.0) * (1.0 + _SQRT5 * r) * np.exp(-_SQRT5 * r)
    if math.isinf(nu):
        return -np.exp(-0.5 * r * r)
    return None


class _NegativeLogLikelihood:
    """``-log p(y | theta)`` of ``C * Matern(nu)`` (ARD) plus ``alpha`` noise, and its gradient in ``theta``.

    ``theta`` is ``log(amplitude), log(length scales)`` as in scikit-learn; the per-axis squared
    differences of the inputs are computed once, so an evaluation is one kernel matrix, one Cholesky
    factorisation and one inverse (``O(n^3)``, with no ``(n, n, d)`` gradient tensor). With
    ``hyperprior``, the negative log prior of the hyperparameters is added (a maximum a posteriori fit).
    """

    def __init__(
        self, u: np.ndarray, yn: np.ndarray, nu: float, alpha: float, hyperprior: bool = False
    ) -> None:
        self.diff2 = (u[:, None, :] - u[None, :, :]) ** 2
        self.yn = yn
        self.nu = nu
        self.alpha = alpha
        self.hyperprior = hyperprior
        self.eye = np.eye(len(u))

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        amp = math.exp(theta[0])
        inv_l2 = np.exp(-2.0 * theta[1:])
        r = np.sqrt(self.diff2 @ inv_l2)
        kf = amp * _matern(r, self.nu)
        k = kf + self.alpha * self.eye
        try:
            chol = cholesky(k, lower=True, check_finite=False)
        except (LinAlgError, ValueError):
            return _FAILED, np.zeros_like(theta)
        a = cho_solve((chol, True), self.yn, check_finite=False)
        n = len(self.yn)
        value = 0.5 * float(self.yn @ a) + float(np.log(np.diag(chol)).sum()) + 0.5 * n * _LOG_2PI
        kinv = cho_solve((chol, True), self.eye, check_finite=False)
        g = np.outer(a, a) - kinv  # d(log likelihood) = tr(g dK) / 2
        slope = _matern_slope(r, self.nu)
        assert slope is not None
        grad = np.empty_like(theta)
        grad[0] = -0.5 * float((g * kf).sum())
        # dK/dlog(l_j) = -amp * (k'(r) / r) * (u_ij - u_kj)^2 / l_j^2
        w = g * (-amp * slope)
        grad[1:] = -0.5 * np.einsum("ik,ikj->j", w, self.diff2) * inv_l2
        if self.hyperprior:
            # MAP instead of maximum likelihood: -log p(1/l^2) = 0.1 (l^2 + 1/l^2) per axis keeps length scales
            # off both bounds; a Gamma(2, 1) amplitude, -log p = amp - log(amp)
            l2 = 1.0 / inv_l2
            value += 0.1 * float((l2 + inv_l2).sum()) - (theta[0] - amp)
            grad[1:] += 0.2 * (l2 - inv_l2)
            grad[0] -= 1.0 - amp
        if not math.isfinite(value) or not np.all(np.isfinite(grad)):
            return _FAILED, np.zeros_like(theta)
        return value, grad


class GaussianProcess:
    """A GP regression of losses over the unit cube.

    Args:
        nu: smoothness of the Matern kernel (``0.5``, ``1.5``, ``2.5`` and ``inf`` have closed forms).
        alpha: value added to the kernel's diagonal (observation noise, in standardised units).
        n_restarts: random restarts of the hyperparameter fit besides the warm start.
        restart_stride: a warm-started fit on ``n`` results makes the random restarts only on every
            ``n // restart_stride``-th fit (their cost grows as ``n^3``, and the previous optimum moves
            little as one result arrives); ``0``, or a cold fit, makes them every time.
        hyperprior: fit the hyperparameters by maximum a posteriori under weak priors (per axis
            ``-log p = 0.1 (l^2 + 1/l^2)`` on the inverse squared length scale, as Optuna's GP sampler;
            Gamma(2, 1) on the amplitude) instead of maximum likelihood. Without it, a few results can fit
            length scales long enough to make the model sure of regions it never saw, and the search
            settles in a local optimum. Closed-form ``nu`` only (1.5, 2.5, ``inf``); others fit as scikit-learn does.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> u = rng.random((20, 2)); y = ((u - 0.3) ** 2).sum(1)
        >>> gp = GaussianProcess(nu=2.5).fit(u, y, rng)
        >>> mu, sigma = gp.predict(np.array([[0.3, 0.3], [0.9, 0.9]]))
        >>> bool(mu[0] < mu[1])
        True
    """

    def __init__(
        self,
        *,
        nu: float = 2.5,
        alpha: float = 1e-6,
        n_restarts: int = 2,
        restart_stride: int = 0,
        hyperprior: bool = False,
    ) -> None:
        self.nu = float(nu)
        self.hyperprior = hyperprior
        self.alpha = float(alpha)
        self.n_restarts = n_restarts
        self.restart_stride = restart_stride
        self._fits_since_restart = 0
        self._theta: np.ndarray | None = None  # log(amplitude), log(length scales) of the last fit
        self.x = np.empty((0, 0))
        self.y_mean, self.y_std = 0.0, 1.0

    # --- fitting -----------------------------------------------------------------------------------------
    def fit(self, u: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> GaussianProcess:
        """Fit the hyperparameters on ``(u, y)`` (finite losses) and condition on the data.

        Type-II maximum likelihood by L-BFGS-B from the previous fit's hyperparameters, plus
        ``n_restarts`` random starts on a cold fit (no previous fit, or a new number of axes) and, with
        ``restart_stride``, on every ``n // restart_stride``-th warm fit. Matern 1.5, 2.5 and ``inf`` have the likelihood's gradient
        in closed form here; other ``nu`` go through scikit-learn.
        """
        u, y = unique_rows(np.asarray(u, dtype=float), np.asarray(y, dtype=float))
        d = u.shape[1]
        self.y_mean = float(np.mean(y))
        std = float(np.std(y))
        self.y_std = std if std > 0 and math.isfinite(std) else 1.0
        yn = (y - self.y_mean) / self.y_std
        warm = self._theta is not None and len(self._theta) == d + 1
        theta0 = self._theta if warm else np.concatenate([[0.0], np.full(d, math.log(0.5))])
        every = max(1, len(u) // self.restart_stride) if self.restart_stride > 0 else 1
        restarts = 0
        if len(u) > 1 and (not warm or self._fits_since_restart + 1 >= every):
            restarts = self.n_restarts
        alpha = max(self.alpha, 1e-10)
        if _matern_slope(np.zeros(1), self.nu) is not None:
            theta, alpha = self._fit_closed_form(u, yn, theta0, restarts, alpha, rng)
        else:
            theta, alpha = self._fit_sklearn(u, yn, theta0, restarts, alpha, rng)
        self._fits_since_restart = 0 if restarts or not warm else self._fits_since_restart + 1
        self._theta = theta
        self._set_hyper(theta, alpha)
        self._condition(u, yn)
        return self

    def _bounds(self, d: int) -> np.ndarray:
        return np.log(np.array([_AMPLITUDE_BOUNDS] + [_LENGTH_BOUNDS] * d, dtype=float))

    def _fit_closed_form(
        self,
        u: np.ndarray,
        yn: np.ndarray,
        theta0: np.ndarray,
        restarts: int,
        alpha: float,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, float]:
        """Maximise the log marginal likelihood with its analytic gradient (numpy, no scikit-learn)."""
        bounds = self._bounds(u.shape[1])
        theta0 = np.clip(theta0, bounds[:, 0], bounds[:, 1])
        for _ in range(6):
            # one draw per attempt, restarts or not, as scikit-learn's random_state took: the tuner's
            # random stream does not depend on when restarts happen
            restart_rng = np.random.RandomState(int(rng.integers(2**31 - 1)))
            starts = [theta0] + [restart_rng.uniform(bounds[:, 0], bounds[:, 1]) for _ in range(restarts)]
            objective = _NegativeLogLikelihood(u, yn, self.nu, alpha, self.hyperprior)
            best: tuple[float, np.ndarray] | None = None
            for start in starts:
                with np.errstate(all="ignore"):
                    res = minimize(
                        objective,
                        start,
                        method="L-BFGS-B",
                        jac=True,
                        bounds=bounds,
                        options={"maxiter": _FIT_MAXITER},
                    )
                if math.isfinite(res.fun) and res.fun < _FAILED and (best is None or res.fun < best[0]):
                    best = (float(res.fun), np.asarray(res.x, dtype=float))
            if best is not None:
                return best[1], alpha
            log.debug("GP fit failed with alpha=%g; retrying with more jitter", alpha)
            alpha = max(alpha, 1e-8) * 100
        raise LinAlgError("the Gaussian process could not be fitted")  # pragma: no cover

    def _fit_sklearn(
        self,
        u: np.ndarray,
        yn: np.ndarray,
        theta0: np.ndarray,
        restarts: int,
        alpha: float,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, float]:
        """scikit-learn's fit, for the ``nu`` without a closed-form gradient here."""
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern

        amp0, ls0 = float(np.exp(theta0[0])), np.exp(theta0[1:])
        kernel = ConstantKernel(amp0, _AMPLITUDE_BOUNDS) * Matern(ls0, _LENGTH_BOUNDS, nu=self.nu)
        for _ in range(6):
            gpr = GaussianProcessRegressor(
                kernel,
                alpha=alpha,
                optimizer=_optimizer,
                normalize_y=False,
                n_restarts_optimizer=restarts,
                random_state=int(rng.integers(2**31 - 1)),
            )
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    gpr.fit(u, yn)
                return np.asarray(gpr.kernel_.theta, dtype=float), alpha
            except (LinAlgError, ValueError) as e:  # an ill-conditioned kernel: more jitter
                log.debug("GP fit failed with alpha=%g (%s); retrying with more jitter", alpha, e)
                alpha = max(alpha, 1e-8) * 100
        raise LinAlgError("the Gaussian process could not be fitted")  # pragma: no cover

    def _set_hyper(self, theta: np.ndarray, jitter: float) -> None:
        self.amplitude = float(np.exp(theta[0]))
        self.length = np.exp(theta[1:])
        self.jitter = jitter

    def _kernel(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Kernel matrix between rows of ``a`` and ``b`` (cube units) and the scaled distances."""
        a = a / self.length
        b = b / self.length
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
        r = np.sqrt(np.maximum(d2, 0.0))
        return self.amplitude * _matern(r, self.nu), r

    def _condition(self, u: np.ndarray, yn: np.ndarray) -> None:
        self.x = u
        self.yn = yn
        k, _ = self._kernel(u, u)
        k[np.diag_indices_from(k)] += self.jitter
        jitter = self.jitter
        while True:
            try:
                chol = cholesky(k, lower=True, check_finite=False)
                break
            except LinAlgError:
                jitter *= 10
                k[np.diag_indices_from(k)] += jitter
        self._linv = solve_triangular(chol, np.eye(len(u)), lower=True, check_finite=False)
        self._coef = self._linv.T @ (self._linv @ yn)  # K^-1 y

    def conditioned(self, u: np.ndarray, y: np.ndarray) -> GaussianProcess:
        """A copy with the same hyperparameters and standardisation, conditioned on other data."""
        other = GaussianProcess(
            nu=self.nu,
            alpha=self.alpha,
            n_restarts=self.n_restarts,
            restart_stride=self.restart_stride,
            hyperprior=self.hyperprior,
        )
        other._theta = self._theta
        other.amplitude, other.length, other.jitter = self.amplitude, self.length, self.jitter
        other.y_mean, other.y_std = self.y_mean, self.y_std
        u, y = unique_rows(np.asarray(u, dtype=float), np.asarray(y, dtype=float))
        other._condition(u, (y - self.y_mean) / self.y_std)
        return other

    def loo(self) -> tuple[np.ndarray, np.ndarray]:
        """Leave-one-out predictive mean and standard deviation at each training point (closed form)."""
        kinv = self._linv.T @ self._linv
        diag = np.maximum(np.diag(kinv), 1e-300)
        mu = self.yn - self._coef / diag
        return mu * self.y_std + self.y_mean, np.sqrt(1.0 / diag) * self.y_std

    # --- prediction --------------------------------------------------------------------------------------
    def predict(self, u: np.ndarray, *, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the loss at ``(m, d)`` cube points."""
        m = len(u)
        mu, sd = np.empty(m), np.empty(m)
        for i in range(0, m, chunk):
            mu[i : i + chunk], sd[i : i + chunk] = self._predict(u[i : i + chunk])
        return mu, sd

    def _predict(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ks, _ = self._kernel(u, self.x)
        w = ks @ self._linv.T
        var = np.maximum(self.amplitude - np.einsum("ij,ij->i", w, w), _VAR_FLOOR * self.amplitude)
        return (ks @ self._coef) * self.y_std + self.y_mean, np.sqrt(var) * self.y_std

    def predict_grad(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Mean, standard deviation and their gradients ``(m, d)`` with respect to the cube point."""
        ks, r = self._kernel(u, self.x)
        slope = _matern_slope(r, self.nu)
        w = ks @ self._linv.T
        var = np.maximum(self.amplitude - np.einsum("ij,ij->i", w, w), _VAR_FLOOR * self.amplitude)
        mu = ks @ self._coef
        sd = np.sqrt(var)
        if slope is None:  # no closed form: forward differences, one batched evaluation per axis
            h = 1e-6
            dmu, dsd = np.empty_like(u), np.empty_like(u)
            for j in range(u.shape[1]):
                step = np.where(u[:, j] + h <= 1.0, h, -h)
                shifted = u.copy()
                shifted[:, j] += step
                m2, s2 = self._predict(shifted)
                dmu[:, j] = ((m2 - self.y_mean) / self.y_std - mu) / step
                dsd[:, j] = (s2 / self.y_std - sd) / step
        else:
            g = self.amplitude * slope  # dk/dr / r
            inv_l2 = 1.0 / self.length**2
            gm = g * self._coef[None, :]
            dmu = (u * gm.sum(1)[:, None] - gm @ self.x) * inv_l2
            q = w @ self._linv  # K^-1 k
            gq = g * q
            dvar = -2.0 * (u * gq.sum(1)[:, None] - gq @ self.x) * inv_l2
            dsd = dvar / (2.0 * sd[:, None])
        return (
            mu * self.y_std + self.y_mean,
            sd * self.y_std,
            dmu * self.y_std,
            dsd * self.y_std,
        )


def acquisition(
    kind: str,
    mu: np.ndarray,
    sd: np.ndarray,
    best: float,
    *,
    xi: float = 0.0,
    kappa: float = 5.0,
    dmu: np.ndarray | None = None,
    dsd: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """An acquisition to maximise, for minimising a loss with posterior ``(mu, sd)``; and its gradient.

    ``"ei"``: expected improvement over ``best - xi``; ``"poi"``: probability of improving on
    ``best - xi``; ``"ucb"``: the confidence bound ``-mu + kappa * sd`` (NNI's ``mean + kappa * std``
    of the maximised metric).
    """
    if kind == "ucb":
        value = -mu + kappa * sd
        grad = None if dmu is None else -dmu + kappa * dsd
        return value, grad
    imp = best - xi - mu
    z = imp / sd
    cdf = ndtr(z)
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * z * z)
    if kind == "ei":
        value = imp * cdf + sd * pdf
        grad = None if dmu is None else -cdf[:, None] * dmu + pdf[:, None] * dsd
        return value, grad
    if kind == "poi":
        value = cdf
        grad = None
        if dmu is not None:
            dz = (-dmu * sd[:, None] - imp[:, None] * dsd) / (sd * sd)[:, None]
            grad = pdf[:, None] * dz
        return value, grad
    raise ValueError(f"unknown acquisition {kind!r}")


def maximize_batch(
    fun: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    starts: np.ndarray,
    *,
    maxiter: int = 200,
    fixed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Maximise ``fun`` (values and gradients of ``(b, d)`` points) from each start, within ``[0, 1]^d``.

    The runs are independent, so their sum is maximised as one L-BFGS-B problem over all starts at
    once: one vectorised evaluation per iteration instead of one Python call per start and point.
    ``fixed`` (``(b, d)`` booleans) marks coordinates that stay at their start value (one-hot axes
    and inactive dimensions of :meth:`UnitCube.fixed <nni_pl.hpo.tuners._numeric.UnitCube.fixed>`).
    """
    b, d = starts.shape
    v0, _ = fun(starts)
    scale = float(np.max(np.abs(v0)))
    scale = 1.0 / scale if scale > 0 and math.isfinite(scale) else 1.0

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = fun(flat.reshape(b, d))
        return -scale * float(v.sum()), -scale * g.ravel()

    if fixed is None:
        bounds = Bounds(np.zeros(b * d), np.ones(b * d))
    else:
        start = np.clip(starts, 0.0, 1.0).ravel()
        bounds = Bounds(np.where(fixed.ravel(), start, 0.0), np.where(fixed.ravel(), start, 1.0))
    with np.errstate(all="ignore"):
        res = minimize(
            objective,
            starts.ravel(),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": maxiter},
        )
    u = np.clip(res.x.reshape(b, d), 0.0, 1.0)
    return u, fun(u)[0]
