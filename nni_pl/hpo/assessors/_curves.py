"""Learning-curve extrapolation for :class:`~nni_pl.hpo.assessors.curvefitting.CurvefittingAssessor`.

NNI's LPA ("learn, predict, assess"; Domhan et al., IJCAI 2015, as simplified by NNI): twelve parametric
families of increasing, saturating curves are each fitted to the observed points by least squares, the
families whose fit is poor or whose extrapolation is an outlier are dropped, and the rest are combined
linearly, ``f_comb(x) = sum_k w_k f_k(x)``, with the weights sampled by Metropolis-Hastings under a
Gaussian likelihood (noise at its maximum-likelihood value for each weight vector) and a prior that
asks for positive weights and an increasing combined curve. The prediction is the mean of
``f_comb(target)`` over the final samples.

Everything here is a pure function of its inputs and a :class:`numpy.random.Generator`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize

__all__ = ["CURVE_MODELS", "CurveModel", "CurvePrediction", "fit_curves", "predict_final"]

# MCMC settings: NNI's (20 rounds of 10 parallel chains, random-walk steps of 0.0005 on the weights).
# Vectorised over chains they cost well under a millisecond, so there is no need to reduce them.
MCMC_ROUNDS = 20
MCMC_CHAINS = 10
MCMC_STEP = 0.0005
# Fewer surviving families than this means the extrapolations disagree: ask for more data (NNI: 4).
MIN_EFFECTIVE_MODELS = 4


@dataclass(frozen=True)
class CurveModel:
    """One parametric learning-curve family ``y = fn(x, *theta)``.

    ``p0`` holds NNI's default parameters (curvefunctions.py). NNI fits from scipy's default start (all
    ones) and so do we; ``p0`` fixes the number of parameters and documents a typical curve.
    """

    name: str
    fn: Callable[..., np.ndarray]
    p0: tuple[float, ...]


def _vap(x, a, b, c):
    return np.exp(a + b / x + c * np.log(x))


def _pow3(x, c, a, alpha):
    return c - a * x ** (-alpha)


def _linear(x, a, b):
    return a * x + b


def _logx_linear(x, a, b):
    return a * np.log(x) + b


def _dr_hill_zero_background(x, theta, eta, kappa):
    return (theta * x**eta) / (kappa**eta + x**eta)


def _log_power(x, a, b, c):
    return a / (1.0 + (x / np.exp(b)) ** c)


def _pow4(x, alpha, a, b, c):
    return c - (a * x + b) ** (-alpha)


def _mmf(x, alpha, beta, kappa, delta):
    return alpha - (alpha - beta) / (1.0 + (kappa * x) ** delta)


def _exp4(x, c, a, b, alpha):
    return c - np.exp(-a * x**alpha + b)


def _ilog2(x, c, a):
    # NNI writes c - a / log(x), which is infinite at the first epoch (x = 1) and so never fits;
    # shifting by one keeps the shape and makes the family usable.
    return c - a / np.log(x + 1.0)


def _weibull(x, alpha, beta, kappa, delta):
    return alpha - (alpha - beta) * np.exp(-((kappa * x) ** delta))


def _janoschek(x, a, beta, k, delta):
    return a - (a - beta) * np.exp(-k * x**delta)


#: NNI's twelve families (curvefunctions.py), in NNI's order, with its default parameters.
CURVE_MODELS: tuple[CurveModel, ...] = (
    CurveModel("vap", _vap, (-0.622028, -0.470050, 0.042322)),
    CurveModel("pow3", _pow3, (0.84, 0.52, 0.01)),
    CurveModel("linear", _linear, (1.0, 0.0)),
    CurveModel("logx_linear", _logx_linear, (0.378106, 0.046506)),
    CurveModel("dr_hill_zero_background", _dr_hill_zero_background, (0.772320, 0.586449, 2.460843)),
    CurveModel("log_power", _log_power, (0.77, 2.98, -0.51)),
    CurveModel("pow4", _pow4, (0.1, 200.0, 0.0, 0.8)),
    CurveModel("mmf", _mmf, (0.7, 0.1, 0.01, 5.0)),
    CurveModel("exp4", _exp4, (0.7, 0.8, -0.8, 0.3)),
    CurveModel("ilog2", _ilog2, (0.78, 0.43)),
    CurveModel("weibull", _weibull, (0.7, 0.1, 0.01, 1.0)),
    CurveModel("janoschek", _janoschek, (0.73, 0.07, 0.355, 0.46)),
)


@dataclass(frozen=True)
class CurvePrediction:
    """The outcome of one extrapolation.

    Attributes:
        value: the predicted value at the target epoch, or ``None`` when the fit did not converge
            (fewer than :data:`MIN_EFFECTIVE_MODELS` families agree).
        models: the families that took part in the combination.
        fitted: parameters of every family whose least-squares fit succeeded.
    """

    value: float | None
    models: tuple[str, ...]
    fitted: dict[str, tuple[float, ...]]


def _evaluate(model: CurveModel, theta: Sequence[float], x: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        y = np.asarray(model.fn(x, *theta), dtype=float)
    return np.broadcast_to(y, x.shape)


def _fit_one(model: CurveModel, x: np.ndarray, y: np.ndarray) -> tuple[float, ...] | None:
    """Least-squares fit of one family, from all-ones parameters as NNI does (scipy's default start).

    Returns ``None`` when the fit does not converge to finite values within scipy's default budget of
    ``100 * (parameters + 1)`` evaluations (NNI's too), which bounds the time of a judgement.
    """
    if len(model.p0) > x.size:  # under-determined: least squares needs a point per parameter
        return None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            theta = optimize.curve_fit(model.fn, x, y, p0=np.ones(len(model.p0)))[0]
        except (RuntimeError, ValueError, FloatingPointError, OverflowError, ZeroDivisionError):
            return None
    if not (np.all(np.isfinite(theta)) and np.all(np.isfinite(_evaluate(model, theta, x)))):
        return None
    return tuple(float(t) for t in theta)


def _observed(history: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Epochs (1-based) and values of the finite entries of ``history``."""
    y = np.asarray(history, dtype=float)
    x = np.arange(1, y.size + 1, dtype=float)
    finite = np.isfinite(y)
    return x[finite], y[finite]


def fit_curves(history: Sequence[float]) -> dict[str, tuple[float, ...]]:
    """Fit every family to ``history`` (the values at epochs 1, 2, ...; NaN/inf entries are skipped).

    Failed fits are left out of the result.
    """
    x, y = _observed(history)
    return _fit_all(x, y)


def _fit_all(x: np.ndarray, y: np.ndarray) -> dict[str, tuple[float, ...]]:
    fitted = {}
    for model in CURVE_MODELS:
        theta = _fit_one(model, x, y)
        if theta is not None:
            fitted[model.name] = theta
    return fitted


def _log_posterior(
    w: np.ndarray, f_obs: np.ndarray, y: np.ndarray, f_first: np.ndarray, f_target: np.ndarray
):
    """Log posterior of weight vectors ``w`` (chains x models), up to a constant."""
    residual = y[None, :] - w @ f_obs
    n = y.size
    sigma_sq = np.maximum(np.mean(residual**2, axis=1), 1e-12)
    # Gaussian likelihood with sigma at its maximum-likelihood estimate: sum(r^2) / (2 sigma^2) = n / 2.
    log_lik = -0.5 * n * (np.log(2.0 * math.pi * sigma_sq) + 1.0)
    ok = np.all(w > 0, axis=1) & (w @ f_first < w @ f_target)
    return np.where(ok, log_lik, -np.inf)


def predict_final(
    history: Sequence[float],
    target: int,
    rng: np.random.Generator,
    *,
    rounds: int = MCMC_ROUNDS,
    chains: int = MCMC_CHAINS,
    step: float = MCMC_STEP,
) -> CurvePrediction:
    """Predict the value at epoch ``target`` of a curve observed at epochs ``1..len(history)``.

    Args:
        history: the observed values; NaN and infinite entries are left out of the fit.
        target: the epoch to predict (NNI's ``epoch_num``).
        rng: the random source of the MCMC sampling.
        rounds: Metropolis-Hastings rounds.
        chains: parallel chains; the prediction averages their final states.
        step: standard deviation of the random-walk proposal on the (normalised) weights.

    Example:
        >>> import numpy as np
        >>> curve = [0.9 - 0.5 * x**-0.8 for x in range(1, 9)]  # heading for 0.854 at epoch 20
        >>> p = predict_final(curve, 20, np.random.default_rng(0))
        >>> round(p.value, 2), len(p.models) >= 4
        (0.87, True)
    """
    x, y = _observed(history)
    n = y.size
    fitted = _fit_all(x, y)
    if n == 0 or not fitted:
        return CurvePrediction(None, (), fitted)
    by_name = {m.name: m for m in CURVE_MODELS}

    # Drop poor fits: as NNI, keep a family whose summed squared error is below n * mean(y)^2
    # (a root-mean-square error below the curve's mean level).
    scale = float(np.mean(y) ** 2)
    good: list[tuple[str, np.ndarray, float, float]] = []  # name, fit at x, value at target, at epoch 1
    for name, theta in fitted.items():
        f = _evaluate(by_name[name], theta, x)
        sse = float(np.sum((f - y) ** 2))
        y_target, y_first = _evaluate(by_name[name], theta, np.array([float(target), 1.0]))
        if sse < n * scale and math.isfinite(y_target) and math.isfinite(y_first):
            good.append((name, f, float(y_target), float(y_first)))
    if len(good) < MIN_EFFECTIVE_MODELS:
        return CurvePrediction(None, tuple(g[0] for g in good), fitted)

    # Drop outlying extrapolations: keep the families within (n / 10) standard deviations of the median.
    preds = np.array([g[2] for g in good])
    median, spread = float(np.median(preds)), float(np.std(preds))
    eps = n / 10.0 * spread
    effective = [g for g in good if abs(g[2] - median) <= eps]
    if len(effective) < MIN_EFFECTIVE_MODELS:
        return CurvePrediction(None, tuple(g[0] for g in effective), fitted)

    k = len(effective)
    f_obs = np.stack([g[1] for g in effective])  # models x points
    f_target = np.array([g[2] for g in effective])
    f_first = np.array([g[3] for g in effective])
    w = np.full((chains, k), 1.0 / k)
    lp = _log_posterior(w, f_obs, y, f_first, f_target)
    for _ in range(rounds):
        proposal = w + rng.standard_normal((chains, k)) * step
        proposal /= proposal.sum(axis=1, keepdims=True)
        lp_new = _log_posterior(proposal, f_obs, y, f_first, f_target)
        with np.errstate(invalid="ignore"):
            accept = np.log(rng.random(chains)) < lp_new - lp  # -inf - -inf is nan: rejected
        # from a state the prior rules out, any admissible proposal is taken
        accept |= np.isneginf(lp) & np.isfinite(lp_new)
        w = np.where(accept[:, None], proposal, w)
        lp = np.where(accept, lp_new, lp)
    value = float(np.mean(w @ f_target))
    return CurvePrediction(value if math.isfinite(value) else None, tuple(g[0] for g in effective), fitted)
