"""The numeric core of the model-based tuners: an internal coordinate per dimension, and Parzen mixtures.

Every searched dimension of a :class:`~nni_pl.space.SearchSpace` gets a :class:`DimCodec` that maps its
values to an internal real coordinate (log scale for the log types, the option index for ``choice``),
knows the prior in that coordinate, and maps back with NNI's rounding and clipping. A
:class:`ParzenMixture` is a weighted mixture of product kernels over several dimensions (truncated
normals for numbers, smoothed one-hot tables for choices), with a prior component; TPE builds two of
them, one on the good and one on the bad observations.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import log_ndtr, ndtr, ndtri

from nni_pl.space import (
    Choice,
    LogNormal,
    LogUniform,
    Normal,
    Param,
    QLogNormal,
    QLogUniform,
    QNormal,
    QUniform,
    Randint,
    Uniform,
)

__all__ = ["DimCodec", "ParzenMixture", "default_weights", "neighbour_bandwidths"]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_HEAP_TOP_PAD = 16 << 20  # bytes glibc keeps at the heap's top (see _keep_heap_pad)
_heap_pad_done = False

_LOG_FLOOR = -1e3  # log-probability given to impossible values, instead of -inf
_NO_TAIL = 8.5  # Phi(8.5) is 1.0 in double precision, and 1.0 - Phi(-8.5) too (checked in the tests)
_EXP_ZERO_BELOW = -746.0  # exp(x) rounds to exactly 0.0 for x below this (exp(-745.2) already does)


@functools.lru_cache(maxsize=64)
def default_weights(n: int) -> np.ndarray:
    """Observation weights in arrival order: the 25 newest weigh 1, older ones ramp down linearly (read-only)."""
    w = np.ones(n) if n < 25 else np.concatenate([np.linspace(1.0 / n, 1.0, num=n - 25), np.ones(25)])
    w.flags.writeable = False
    return w


def _clip(a: np.ndarray, lo: Any, hi: Any) -> np.ndarray:
    """``np.clip(a, lo, hi)`` (the same values, NaN kept) without its Python-level overhead (~5 us a call)."""
    return np.minimum(np.maximum(a, lo), hi)


class DimCodec:
    """One searched dimension in the tuners' internal coordinate.

    Attributes:
        kind: ``"cat"`` (choice; coordinate = option index), ``"num"`` or ``"const"`` (a bounded
            numeric type whose bounds coincide).
        discrete: whether numeric values are quantised (randint and the q-types).
        lo, hi: the internal truncation bounds (infinite for the normal types).
        prior_mu, prior_sigma: the prior as a normal in the internal coordinate (for bounded types a
            wide kernel centred in the range, truncated to it).
        span: the scale bandwidths are clipped against.
    """

    def __init__(self, param: Param) -> None:
        self.param = param
        self.discrete = False
        self.n_options = 0
        self.q = getattr(param, "q", None)
        p: Any = param
        if isinstance(param, Choice):
            self.kind = "cat"
            self.n_options = len(param.options)
            self.lo = self.hi = self.prior_mu = self.prior_sigma = self.span = math.nan
            return
        self.kind = "num"
        self.log = bool(getattr(param, "log", False))
        if isinstance(param, (Normal, QNormal, LogNormal, QLogNormal)):
            self.lo, self.hi = -math.inf, math.inf
            self.prior_mu, self.prior_sigma = float(p.mu), float(p.sigma)
            self.span = self.prior_sigma
        else:
            if isinstance(param, Randint):
                lo, hi = float(p.low), float(p.high)
            elif isinstance(param, (LogUniform, QLogUniform)):
                lo, hi = math.log(p.low), math.log(p.high)
            else:
                lo, hi = float(p.low), float(p.high)
            self.lo, self.hi = lo, hi
            self.prior_mu, self.prior_sigma = 0.5 * (lo + hi), hi - lo
            self.span = hi - lo
            if not hi > lo:
                self.kind = "const"
        self.discrete = isinstance(param, (Randint, QUniform, QLogUniform, QNormal, QLogNormal))

    # --- coordinates ---------------------------------------------------------------------------------
    def encode(self, value: Any) -> float:
        """The internal coordinate of a value of this dimension (a choice's value is its option index)."""
        if self.kind == "cat":
            return float(value)
        v = float(value)
        if isinstance(self.param, Randint):
            return v + 0.5
        if isinstance(self.param, QLogNormal):
            return math.log(max(v, 0.25 * self.q))
        if self.log:
            return math.log(v)
        return v

    def values(self, x: np.ndarray) -> np.ndarray:
        """Internal coordinates -> quantised, clipped values (as floats), vectorised."""
        p: Any = self.param
        if self.kind == "const":
            return np.full(x.shape, float(p.low))
        v = np.exp(x) if self.log else x
        if isinstance(self.param, Randint):
            return np.clip(np.floor(v), p.low, p.high - 1)
        if isinstance(self.param, (Uniform, LogUniform)):
            return np.clip(v, p.low, p.high)
        if isinstance(self.param, (QUniform, QLogUniform)):
            return np.clip(np.round(v / self.q) * self.q, p.low, p.high)
        if isinstance(self.param, QNormal):
            return np.round(v / self.q) * self.q
        if isinstance(self.param, QLogNormal):
            return np.maximum(np.round(v / self.q) * self.q, 0.0)
        return v

    def decode(self, x: float) -> Any:
        """One internal coordinate -> the exact value NNI's formula gives (right Python type)."""
        if self.kind == "cat":
            return int(x)
        p: Any = self.param
        if self.kind == "const":
            return p.quantize(p.low)
        if isinstance(self.param, Randint):
            return p.quantize(x)
        v = math.exp(x) if self.log else float(x)
        return p.quantize(v)

    def bins(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For quantised values ``v``: the internal interval of raw coordinates that round to each."""
        p: Any = self.param
        q = self.q
        if isinstance(self.param, Randint):
            return v, v + 1.0
        if isinstance(self.param, QNormal):
            return v - 0.5 * q, v + 0.5 * q
        if isinstance(self.param, QLogNormal):
            with np.errstate(divide="ignore"):
                return np.log(np.maximum(v - 0.5 * q, 0.0)), np.log(v + 0.5 * q)
        # quniform / qloguniform: multiples of q own a q-wide cell; a bound that is not a multiple
        # collects everything the clip pushes onto it.
        k = np.round(v / q)
        on_grid = np.abs(v / q - k) <= 1e-9 * np.maximum(1.0, np.abs(k))
        a = np.where(on_grid, (k - 0.5) * q, np.where(v <= p.low, -np.inf, (np.ceil(p.high / q) - 0.5) * q))
        b = np.where(on_grid, (k + 0.5) * q, np.where(v >= p.high, np.inf, (np.floor(p.low / q) + 0.5) * q))
        a = np.clip(a, p.low, p.high)
        b = np.clip(b, p.low, p.high)
        if self.log:
            return np.log(a), np.log(b)
        return a, b

    def prior_sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Internal coordinates drawn from the prior (decoding them gives NNI's distribution)."""
        if self.kind == "cat":
            return rng.integers(self.n_options, size=size).astype(float)
        if self.kind == "const":
            return np.full(size, self.lo)
        if math.isinf(self.lo):
            return rng.normal(self.prior_mu, self.prior_sigma, size=size)
        return rng.uniform(self.lo, self.hi, size=size)

    def evaluation_points(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """What the density is evaluated on for raw candidates ``x``: the point, its bin, or the index."""
        if self.kind == "cat":
            return (x.astype(int),)
        v = self.values(x)
        if self.discrete:
            return self.bins(v)
        return (np.log(v) if self.log else v,)


def neighbour_bandwidths(
    mus: np.ndarray, lo: float, hi: float, span: float, n_kernels: int, min_factor: float = 1.0
) -> np.ndarray:
    """Per-kernel bandwidths: the larger gap to a sorted neighbour, clipped to ``[span / min(100, 1 + K) * f, span]``.

    Endpoints (finite bounds) act as neighbours of the outermost observations only through the inner
    gaps, so an observation next to a bound does not get a needlessly wide kernel.
    """
    return _neighbour_bandwidths(
        np.asarray(mus, dtype=float)[None], [lo], [hi], [span], n_kernels, min_factor
    )[0]


def _neighbour_bandwidths(
    cols: np.ndarray,
    lo: Sequence[float],
    hi: Sequence[float],
    span: Sequence[float],
    n_kernels: int,
    min_factor: float,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`neighbour_bandwidths` of every row of ``cols`` (``(d, n)``) at once.

    ``order`` is each row's stable argsort, when the caller keeps it (see
    :meth:`ObservationStore.column_orders <nni_pl.hpo.tuners._store.ObservationStore.column_orders>`).
    """
    d, n = cols.shape
    if n == 0:
        return np.empty((d, 0))
    if order is None:
        order = np.argsort(cols, axis=1, kind="stable")
    s = np.take_along_axis(cols, order, axis=1)
    lo_a, hi_a = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    left = np.empty((d, n + 2))
    # as Python's min(lo, s[0]) and max(hi, s[-1])
    left[:, 0] = np.where(s[:, 0] < lo_a, s[:, 0], lo_a)
    left[:, -1] = np.where(s[:, -1] > hi_a, s[:, -1], hi_a)
    left[:, 1:-1] = s
    gaps = np.diff(left, axis=1)
    sig = np.maximum(gaps[:, :-1], gaps[:, 1:])
    if n >= 2:
        sig[:, 0] = gaps[:, 1]
        sig[:, -1] = gaps[:, -2]
    min_sigma = [sp / min(100.0, 1.0 + n_kernels) * min_factor for sp in span]
    sig = _clip(sig, np.asarray(min_sigma)[:, None], np.asarray(span, dtype=float)[:, None])
    out = np.empty((d, n))
    np.put_along_axis(out, order, sig, axis=1)
    return out


@dataclass
class _NumKernels:
    mus: np.ndarray
    sigmas: np.ndarray
    lo: float
    hi: float
    cdf_lo: np.ndarray | None  # None in a model that is never sampled
    cdf_hi: np.ndarray | None
    log_z: np.ndarray  # log of the truncation mass
    inv_sigmas: np.ndarray
    log_norm: np.ndarray  # log(sigma * sqrt(2 pi) * Z): the continuous density's normaliser
    log_norm2: np.ndarray  # 2 * log_norm (see ParzenMixture.log_pdf)


@dataclass
class _CatKernels:
    table: np.ndarray  # (k, n_options) probabilities, one row per component
    neg2_log: np.ndarray  # -2 * log(table) (see ParzenMixture.log_pdf)


def _log_diff_ndtr(za: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """``log(Phi(zb) - Phi(za))`` for ``za <= zb``, accurate in both tails."""
    flip = za > 0
    lo = np.where(flip, -zb, za)
    hi = np.where(flip, -za, zb)
    with np.errstate(divide="ignore", invalid="ignore"):
        lhi = log_ndtr(hi)
        llo = log_ndtr(lo)
        out = lhi + np.log1p(-np.exp(np.minimum(llo - lhi, 0.0)))
    return np.where(np.isfinite(out), out, _LOG_FLOOR)


def _keep_heap_pad() -> None:
    """Ask glibc to keep 16 MiB at the top of the heap (``M_TOP_PAD``), once per process.

    A suggestion with a thousand observations allocates and frees a few hundred KiB of temporary arrays.
    With glibc's default pad (128 KiB) the heap is trimmed and grown again around them, and every fresh
    page faults: 40% of a suggestion's time at 1,000 observations, measured. The cost: up to 16 MiB of heap
    the process has used stays mapped instead of going back to the system. Process-wide; elsewhere (musl,
    macOS) this does nothing.
    """
    global _heap_pad_done
    if _heap_pad_done:
        return
    _heap_pad_done = True
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-2, _HEAP_TOP_PAD)  # M_TOP_PAD
    except (OSError, AttributeError):  # no mallopt: nothing to tune
        pass


class ParzenMixture:
    """A weighted mixture of product kernels over some dimensions, plus a prior component.

    Args:
        codecs: the dimensions, in column order.
        obs: ``(n, d)`` internal coordinates of the observations (choice columns hold option indices).
        weights: ``(n,)`` non-negative observation weights.
        prior_weight: weight of the prior component, relative to an observation of weight 1.
        min_bandwidth_factor: scales the lower clip of numeric bandwidths.
        cat_smoothing: how much of a choice kernel's mass is spread uniformly (relative to the prior).
        orders: ``(d, n)`` optional: each column's stable argsort, when the caller keeps them up to date
            (the bandwidths need the observations in order; sorting is most of building a large model).
        sampled: ``False`` for a model that is only evaluated (TPE's "bad" one): it skips the kernels'
            cumulative probabilities at the bounds, which only :meth:`sample` needs.
    """

    def __init__(
        self,
        codecs: Sequence[DimCodec],
        obs: np.ndarray,
        weights: np.ndarray,
        *,
        prior_weight: float = 1.0,
        min_bandwidth_factor: float = 1.0,
        cat_smoothing: float = 1.0,
        orders: np.ndarray | None = None,
        sampled: bool = True,
    ) -> None:
        _keep_heap_pad()
        self.sampled = sampled
        n = obs.shape[0]
        k = n + 1
        w = np.append(np.asarray(weights, dtype=float), prior_weight) if n else np.ones(1)
        self.weights = w / w.sum()
        self.log_weights = np.log(np.maximum(self.weights, 1e-300))
        self.codecs = list(codecs)
        self.kernels: list[Any] = [None] * len(self.codecs)
        num: list[int] = []
        for j, codec in enumerate(self.codecs):
            if codec.kind == "cat":
                table = np.full((k, codec.n_options), cat_smoothing * prior_weight / k)
                if n:
                    table[np.arange(n), obs[:, j].astype(int)] += 1.0
                table[-1] = 1.0 / codec.n_options
                table /= table.sum(axis=1, keepdims=True)
                with np.errstate(divide="ignore"):
                    self.kernels[j] = _CatKernels(table, -2.0 * np.log(table))
            elif codec.kind == "num":
                num.append(j)
        if num:
            self._numeric_kernels(
                obs, num, min_bandwidth_factor, None if orders is None else orders[num], sampled
            )

    def _numeric_kernels(
        self,
        obs: np.ndarray,
        num: list[int],
        min_factor: float,
        orders: np.ndarray | None,
        sampled: bool = True,
    ) -> None:
        """The truncated-normal kernels of the numeric columns ``num``, computed for all of them at once."""
        n = obs.shape[0]
        codecs = [self.codecs[j] for j in num]
        # unbounded (normal) types: virtual end points 3 prior sigmas out, so a lone observation
        # gets a prior-wide kernel as in the bounded case
        ends_lo = [c.lo if math.isfinite(c.lo) else c.prior_mu - 3 * c.span for c in codecs]
        ends_hi = [c.hi if math.isfinite(c.hi) else c.prior_mu + 3 * c.span for c in codecs]
        cols = np.ascontiguousarray(obs[:, num].T)
        sig = _neighbour_bandwidths(
            cols, ends_lo, ends_hi, [c.span for c in codecs], n + 1, min_factor, orders
        )
        mus = np.empty((len(num), n + 1))
        mus[:, :n] = cols
        mus[:, n] = [c.prior_mu for c in codecs]
        sigmas = np.empty_like(mus)
        sigmas[:, :n] = sig
        sigmas[:, n] = [c.prior_sigma for c in codecs]
        lo = np.array([c.lo for c in codecs])[:, None]
        hi = np.array([c.hi for c in codecs])[:, None]
        z_lo, z_hi = (lo - mus) / sigmas, (hi - mus) / sigmas
        cdf_lo: np.ndarray | None = None
        cdf_hi: np.ndarray | None = None
        if sampled:
            cdf_lo, cdf_hi = ndtr(z_lo), ndtr(z_hi)
            # every centre lies inside [lo, hi], so the mass is at least ~1/2 of a tail: no underflow
            log_z = np.log(np.maximum(cdf_hi - cdf_lo, 1e-300))
        else:
            # A kernel more than _NO_TAIL sigmas from both bounds has Phi(z_hi) == 1.0 and Phi(z_lo) below half
            # an ulp of 1.0, so its log mass is exactly 0.0: only the kernels near a bound need ndtr (the
            # bits are those of the full computation).
            log_z = np.zeros_like(mus)
            near = (z_lo > -_NO_TAIL) | (z_hi < _NO_TAIL)
            if near.any():
                log_z[near] = np.log(np.maximum(ndtr(z_hi[near]) - ndtr(z_lo[near]), 1e-300))
        log_norm = np.log(sigmas) + _LOG_SQRT_2PI + log_z
        inv_sigmas = 1.0 / sigmas
        log_norm2 = 2.0 * log_norm
        # the numeric columns stacked, for log_pdf's quadratic form over all continuous ones at once
        self._num_rows = {j: r for r, j in enumerate(num)}
        self._num_mus, self._num_inv, self._num_log_norm2 = mus, inv_sigmas, log_norm2
        for r, (j, c) in enumerate(zip(num, codecs)):
            self.kernels[j] = _NumKernels(
                mus[r],
                sigmas[r],
                c.lo,
                c.hi,
                None if cdf_lo is None else cdf_lo[r],
                None if cdf_hi is None else cdf_hi[r],
                log_z[r],
                inv_sigmas[r],
                log_norm[r],
                log_norm2[r],
            )

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``(size, d)`` raw internal coordinates drawn from the mixture."""
        if not self.sampled:
            raise RuntimeError("this mixture was built with sampled=False")
        # what rng.choice(len(w), size, p=w) draws (the same numbers from the same stream), without its
        # checks of p, which cost as much as the draw
        cdf = np.cumsum(self.weights)
        cdf /= cdf[-1]
        ks = cdf.searchsorted(rng.random(size), side="right")
        out = np.empty((size, len(self.codecs)))
        for j, (codec, kern) in enumerate(zip(self.codecs, self.kernels)):
            if codec.kind == "cat":
                cum = np.cumsum(kern.table[ks], axis=1)
                u = rng.random(size)[:, None] * cum[:, -1:]
                out[:, j] = np.minimum((cum < u).sum(axis=1), codec.n_options - 1)
            elif codec.kind == "const":
                out[:, j] = codec.lo
            else:
                u = rng.random(size)
                lo, hi = kern.cdf_lo[ks], kern.cdf_hi[ks]
                z = ndtri(_clip(lo + u * (hi - lo), 1e-300, 1.0 - 1e-16))
                out[:, j] = _clip(kern.mus[ks] + kern.sigmas[ks] * z, kern.lo, kern.hi)
        return out

    def log_pdf(self, points: Sequence[tuple[np.ndarray, ...]], size: int) -> np.ndarray:
        """Log density (log mass for discrete dimensions) of candidates given by :meth:`DimCodec.evaluation_points`."""
        # ``acc`` sums -2 x each dimension's log term, updated in place. Scaling by a power of two
        # commutes with rounding, so this gives the bits of summing the terms themselves, with one
        # pass fewer per numeric dimension: -2 (-z^2 / 2 - log_norm) = z^2 + 2 log_norm.
        acc: np.ndarray | None = None
        # Two or more continuous numeric columns (one evaluation point each): their terms and the weights
        # in one matrix product. -z^2 / 2 summed over them is a quadratic form in the candidates, centred
        # at the candidates' mean c: [x^2, x, 1] @ [-A / 2; B; -sum(mu^2 A) / 2] with A = 1 / sigma^2,
        # B = (mu - c) A. Its cancellation error is ~1e-13 (x and mu lie within a span, sigma >= span / 100).
        quad = [
            j
            for j, (codec, pts) in enumerate(zip(self.codecs, points))
            if codec.kind == "num" and len(pts) == 1
        ]
        logs: np.ndarray | None = None
        if len(quad) >= 2:
            rows = [self._num_rows[j] for j in quad]
            d = len(quad)
            feats = np.empty((size, 2 * d + 1))
            for i, j in enumerate(quad):
                feats[:, d + i] = points[j][0]
            centre = feats[:, d:-1].mean(axis=0)
            feats[:, d:-1] -= centre
            np.square(feats[:, d:-1], out=feats[:, :d])
            feats[:, -1] = 1.0
            mc = self._num_mus[rows] - centre[:, None]  # (D, K)
            a = np.square(self._num_inv[rows])
            coef = np.empty((2 * d + 1, a.shape[1]))
            np.multiply(a, -0.5, out=coef[:d])
            np.multiply(mc, a, out=coef[d:-1])
            coef[-1] = self.log_weights - 0.5 * (
                (mc * coef[d:-1]).sum(axis=0) + self._num_log_norm2[rows].sum(axis=0)
            )
            logs = feats @ coef
        else:
            quad = []
        skip = set(quad)
        for j, (codec, kern, pts) in enumerate(zip(self.codecs, self.kernels, points)):
            if codec.kind == "const" or j in skip:
                continue
            if codec.kind == "cat":
                part = kern.neg2_log[:, pts[0]].T
            else:
                z = np.subtract(pts[0][:, None], kern.mus)
                z *= kern.inv_sigmas
                if len(pts) == 2:
                    zb = np.subtract(pts[1][:, None], kern.mus)
                    zb *= kern.inv_sigmas
                    part = _log_diff_ndtr(z, zb)
                    part -= kern.log_z
                    part *= -2.0
                else:
                    z *= z
                    z += kern.log_norm2
                    part = z
            if acc is None:
                acc = np.ascontiguousarray(part)  # a fresh array (or a view of one): safe to update
            else:
                acc += part
        if acc is None and logs is None:
            return np.zeros(size)
        if acc is None:
            acc = logs
        else:
            acc *= -0.5
            acc += self.log_weights if logs is None else logs
        m = acc.max(axis=1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        acc -= m
        # C order as before: the row sums are pairwise sums in the same order
        return (m + np.log(_exp_nonpositive(acc).sum(axis=1, keepdims=True)))[:, 0]


def _exp_nonpositive(x: np.ndarray) -> np.ndarray:
    """``np.exp(x)`` for ``x <= 0`` (NaN allowed), fast when most entries underflow to exactly 0.

    numpy's vectorised exp falls back to a slow path for results that underflow, which is most of a
    large mixture (the far components of every candidate).
    """
    keep = ~(x <= _EXP_ZERO_BELOW)
    if 4 * np.count_nonzero(keep) > x.size:
        return np.exp(x, out=x)
    out = np.zeros_like(x)
    out[keep] = np.exp(x[keep])
    return out
