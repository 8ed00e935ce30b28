"""BOHB's model: parameter sets as points of the unit cube, and a multivariate product-kernel KDE on them.

:class:`UnitCodec` maps every searched dimension to one column: numbers to ``[0, 1]`` (linearly in the
dimension's internal coordinate, the log for log types, so the prior of a bounded type is uniform;
through the prior's CDF for the unbounded normal types), a ``choice`` to its option index. Columns of
a nested branch that was not chosen are NaN.

:class:`ProductKDE` is a kernel density estimate with one product kernel per observation: a Gaussian
truncated to ``[0, 1]`` on numeric columns and an Aitchison-Aitken kernel (``1 - lambda`` on the
observed option, ``lambda / (c - 1)`` on each other) on ``choice`` columns, with bandwidths from the
normal reference rule (as statsmodels' ``KDEMultivariate`` that HpBandSter's BOHB uses).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from nni_pl.errors import SearchSpaceError
from nni_pl.hpo.tuners._parzen import DimCodec
from nni_pl.space import SearchSpace

__all__ = ["ProductKDE", "UnitCodec", "impute"]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class UnitCodec:
    """Parameter sets of ``space`` <-> rows of the unit cube (see the module docstring).

    Attributes:
        levels: per column, the number of options of a ``choice``, or 0 for a number.
        columns: the dimensions that are modelled (constants, whose bounds coincide, are not).
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.dims = space.dimensions()
        self.codecs = [DimCodec(d.param) for d in self.dims]
        index = {d.key: j for j, d in enumerate(self.dims)}
        self.parent = [index[d.parent] if d.parent is not None else -1 for d in self.dims]
        self.parent_index = [int(d.parent_index) if d.parent_index is not None else -1 for d in self.dims]
        self.columns = [j for j, c in enumerate(self.codecs) if c.kind != "const"]
        self.levels = np.array([self.codecs[j].n_options for j in self.columns], dtype=int)

    @property
    def width(self) -> int:
        return len(self.columns)

    def encode(self, params: Mapping[str, Any]) -> np.ndarray | None:
        """The row of ``params`` (NaN where inactive), or ``None`` if it is not a point of the space."""
        try:
            self.space.check(params)
            flat = self.space.flatten(params)
        except SearchSpaceError:
            return None
        row = np.full(self.width, np.nan)
        for k, j in enumerate(self.columns):
            key = self.dims[j].key
            if key in flat:
                row[k] = self._to_unit(self.codecs[j], self.codecs[j].encode(flat[key]))
        return row

    def decode(self, row: np.ndarray) -> dict[str, Any]:
        """The parameter set of a row (NaN or out-of-range entries of inactive columns are ignored)."""
        col = {j: k for k, j in enumerate(self.columns)}
        chosen: dict[int, int] = {}
        flat: dict[Any, Any] = {}
        for j, (dim, codec) in enumerate(zip(self.dims, self.codecs)):
            p = self.parent[j]
            if p >= 0 and chosen.get(p) != self.parent_index[j]:
                continue
            if codec.kind == "const":
                flat[dim.key] = codec.decode(codec.lo)
                continue
            u = float(row[col[j]])
            if math.isnan(u):
                u = 0.5
            if codec.kind == "cat":
                idx = min(max(round(u), 0), codec.n_options - 1)
                chosen[j] = idx
                flat[dim.key] = idx
            else:
                flat[dim.key] = codec.decode(self._from_unit(codec, u))
        return self.space.assemble(flat)

    @staticmethod
    def _to_unit(codec: DimCodec, x: float) -> float:
        if codec.kind == "cat":
            return float(x)
        if math.isinf(codec.lo):
            return float(ndtr((x - codec.prior_mu) / codec.prior_sigma))
        return min(max((x - codec.lo) / (codec.hi - codec.lo), 0.0), 1.0)

    @staticmethod
    def _from_unit(codec: DimCodec, u: float) -> float:
        u = min(max(u, 0.0), 1.0)
        if math.isinf(codec.lo):
            return codec.prior_mu + codec.prior_sigma * float(ndtri(min(max(u, 1e-12), 1 - 1e-12)))
        return codec.lo + u * (codec.hi - codec.lo)

    def random_rows(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Rows drawn from the prior (uniform numbers, uniform options)."""
        out = rng.random((size, self.width))
        for k, c in enumerate(self.levels):
            if c:
                out[:, k] = rng.integers(c, size=size)
        return out


def impute(data: np.ndarray, levels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fill NaN (inactive) entries with values of the same column in other rows, or prior draws.

    As HpBandSter does for conditional parameters, so that every row is a full point of the cube.
    """
    data = np.array(data, dtype=float)
    for k in range(data.shape[1]):
        missing = np.isnan(data[:, k])
        if not missing.any():
            continue
        present = data[~missing, k]
        m = int(missing.sum())
        if present.size:
            data[missing, k] = rng.choice(present, size=m)
        elif levels[k]:
            data[missing, k] = rng.integers(levels[k], size=m)
        else:
            data[missing, k] = rng.random(m)
    return data


class ProductKDE:
    """A product-kernel KDE on the unit cube (see the module docstring).

    Args:
        data: ``(n, d)`` observations without NaN (see :func:`impute`).
        levels: ``(d,)`` number of options of each ``choice`` column, 0 for numeric columns.
        bandwidth: ``(d,)`` Gaussian standard deviations (numeric) or ``lambda`` (choice).

    Example:
        >>> kde = ProductKDE.fit(np.array([[0.2, 0.0], [0.3, 1.0], [0.25, 0.0]]), np.array([0, 2]), min_bandwidth=1e-3)
        >>> bool(kde.log_pdf(np.array([[0.25, 0.0]]))[0] > kde.log_pdf(np.array([[0.9, 1.0]]))[0])
        True
    """

    def __init__(self, data: np.ndarray, levels: np.ndarray, bandwidth: np.ndarray) -> None:
        self.data = np.asarray(data, dtype=float)
        self.levels = np.asarray(levels, dtype=int)
        self.bandwidth = np.asarray(bandwidth, dtype=float)
        self._num = np.flatnonzero(self.levels == 0)
        self._cat = np.flatnonzero(self.levels > 0)

    @classmethod
    def fit(cls, data: np.ndarray, levels: np.ndarray, *, min_bandwidth: float) -> ProductKDE:
        """Bandwidths by the normal reference rule ``1.06 * std * n**(-1 / (4 + d))``, at least ``min_bandwidth``.

        For a ``choice`` column the spread is the Gini impurity of the observed options, and ``lambda``
        is at most ``(c - 1) / c`` (the uniform kernel).
        """
        data = np.asarray(data, dtype=float)
        n, d = data.shape
        factor = n ** (-1.0 / (4 + d))
        bw = np.empty(d)
        for k in range(d):
            c = int(levels[k])
            if c:
                counts = np.bincount(data[:, k].astype(int), minlength=c)[:c]
                gini = 1.0 - float(np.sum((counts / n) ** 2))
                bw[k] = min(max(gini * factor, min_bandwidth), (c - 1) / c)
            else:
                bw[k] = max(1.06 * float(np.std(data[:, k])) * factor, min_bandwidth)
        return cls(data, levels, bw)

    def with_data(self, extra: np.ndarray) -> ProductKDE:
        """The same kernels with more observations (used for the pending trials' constant liar)."""
        return ProductKDE(np.vstack([self.data, extra]), self.levels, self.bandwidth)

    def log_pdf(self, x: np.ndarray) -> np.ndarray:
        """``(m,)`` log density at the rows of ``x`` (``(m, d)``, no NaN)."""
        x = np.asarray(x, dtype=float)
        n = self.data.shape[0]
        total = np.zeros((x.shape[0], n))
        if self._num.size:
            mu = self.data[:, self._num]  # (n, k)
            h = self.bandwidth[self._num]  # (k,)
            z = (x[:, None, self._num] - mu[None]) / h
            mass = ndtr((1.0 - mu) / h) - ndtr(-mu / h)  # truncation to [0, 1]
            log_norm = np.log(h) + _LOG_SQRT_2PI + np.log(np.maximum(mass, 1e-300))
            total += np.sum(-0.5 * z * z - log_norm[None], axis=2)
        for k in self._cat:
            c, lam = int(self.levels[k]), self.bandwidth[k]
            same = np.rint(x[:, None, k]) == self.data[None, :, k]
            other = lam / (c - 1) if c > 1 else 1.0
            total += np.where(same, math.log(max(1.0 - lam, 1e-300)), math.log(max(other, 1e-300)))
        m = total.max(axis=1, keepdims=True)
        return (m + np.log(np.exp(total - m).sum(axis=1, keepdims=True)))[:, 0] - math.log(n)

    def sample(self, rng: np.random.Generator, size: int, *, widen: float = 1.0) -> np.ndarray:
        """``(size, d)`` draws from the KDE with every bandwidth multiplied by ``widen``."""
        centres = self.data[rng.integers(self.data.shape[0], size=size)]
        out = np.empty_like(centres)
        for k in self._num:
            h = self.bandwidth[k] * widen
            mu = centres[:, k]
            lo, hi = ndtr(-mu / h), ndtr((1.0 - mu) / h)
            u = lo + rng.random(size) * (hi - lo)
            out[:, k] = np.clip(mu + h * ndtri(np.clip(u, 1e-300, 1 - 1e-16)), 0.0, 1.0)
        for k in self._cat:
            c = int(self.levels[k])
            lam = min(self.bandwidth[k] * widen, (c - 1) / c) if c > 1 else 0.0
            move = rng.random(size) < lam
            # a move goes to one of the other c - 1 options, uniformly
            shift = rng.integers(1, max(c, 2), size=size)
            out[:, k] = np.where(move, (centres[:, k] + shift) % max(c, 1), centres[:, k])
        return out
