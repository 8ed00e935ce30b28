"""The model side of SMAC: parameter sets as points of a unit box, a random-forest surrogate with expected
improvement, and the one-exchange neighbourhood its local search walks.

A :class:`UnitSpace` maps every dimension of a search space (the SMAC types: ``choice``, ``randint``,
``uniform``, ``loguniform``, ``quniform``) to a coordinate: numbers to ``[0, 1]`` over their internal
range (log scale for ``loguniform``; quantised values sit at their exact positions), ``choice`` to its
option index, and an inactive dimension (a nested option not chosen) to NaN. The surrogate sees numbers
as they are, choices as one-hot columns and inactive dimensions as ``-1``; its prediction is the mean
and variance over the trees.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sklearn
from scipy.special import ndtr
from sklearn.tree import DecisionTreeRegressor

from nni_pl.hpo.tuners._parzen import DimCodec
from nni_pl.hpo.tuners._store import ObservationStore
from nni_pl.space import LogUniform, QLogUniform, Randint

__all__ = ["ForestSurrogate", "UnitSpace", "expected_improvement"]

_INACTIVE = -1.0
_MAX_GRID = 64  # discrete dimensions with at most this many values get grid neighbours
_CAT_NEIGHBOURS = 16  # at most this many other options of a choice are neighbours


def expected_improvement(mu: np.ndarray, var: np.ndarray, best: float) -> np.ndarray:
    """EI of minimising below ``best`` for a normal predictive ``N(mu, var)``."""
    s = np.sqrt(np.maximum(var, 1e-12))
    z = (best - mu) / s
    return (best - mu) * ndtr(z) + s * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


class UnitSpace:
    """The dimensions of an :class:`ObservationStore` as a unit box with conditional activity."""

    def __init__(self, store: ObservationStore) -> None:
        self.store = store
        self.codecs: list[DimCodec] = store.codecs
        self.parent = np.asarray(store.parent, dtype=int)
        self.parent_index = np.asarray(store.parent_index, dtype=float)
        self.d = len(self.codecs)
        self.conditional = bool((self.parent >= 0).any())
        self.is_cat = np.array([c.kind == "cat" for c in self.codecs], dtype=bool)
        self.n_options = np.array([c.n_options for c in self.codecs], dtype=int)
        lo = np.array([0.0 if c.kind == "cat" else c.lo for c in self.codecs])
        hi = np.array([1.0 if c.kind == "cat" else c.hi for c in self.codecs])
        self.lo, self.width = lo, np.where(hi > lo, hi - lo, 1.0)
        # unit positions of every value of small discrete dimensions (for neighbours)
        self.grid: list[np.ndarray | None] = []
        for j, c in enumerate(self.codecs):
            if c.kind == "num" and c.discrete and c.param.size <= _MAX_GRID:
                values = np.asarray(c.param.grid(), dtype=float)
                self.grid.append(np.unique(self._encode_values(j, values)))
            else:
                self.grid.append(None)
        # one-hot layout of the surrogate's features
        self._columns: list[tuple[int, int]] = []  # (first column, width) per dimension
        n = 0
        for j in range(self.d):
            width = int(self.n_options[j]) if self.is_cat[j] else 1
            self._columns.append((n, width))
            n += width
        self.n_features = n

    # --- coordinates -------------------------------------------------------------------------------------
    def _encode_values(self, j: int, v: np.ndarray) -> np.ndarray:
        """Quantised values (original scale) -> unit coordinates."""
        param = self.codecs[j].param
        if isinstance(param, Randint):
            x = v + 0.5
        elif isinstance(param, (LogUniform, QLogUniform)):
            x = np.log(v)
        else:
            x = v
        return (x - self.lo[j]) / self.width[j]

    def from_internal(self, x: np.ndarray) -> np.ndarray:
        """Rows of the store's internal coordinates -> unit rows."""
        u = (x - self.lo) / self.width
        u[:, self.is_cat] = x[:, self.is_cat]
        return u

    def snap(self, u: np.ndarray) -> np.ndarray:
        """Clip numeric coordinates to ``[0, 1]`` and move quantised ones onto their values (in place)."""
        for j, c in enumerate(self.codecs):
            if c.kind == "cat":
                continue
            col = u[:, j]
            ok = ~np.isnan(col)
            if not ok.any():
                continue
            if c.kind == "const":
                u[ok, j] = 0.0
                continue
            v = np.clip(col[ok], 0.0, 1.0)
            if c.discrete:
                v = self._encode_values(j, c.values(self.lo[j] + v * self.width[j]))
            u[ok, j] = v
        return u

    def to_params(self, row: np.ndarray) -> dict[str, Any]:
        """A unit row (active dimensions only are read) -> the nested parameter set."""
        values = {}
        for j, c in enumerate(self.codecs):
            if not math.isnan(row[j]):
                values[j] = float(row[j]) if c.kind == "cat" else float(self.lo[j] + row[j] * self.width[j])
        return self.store.decode(values)

    # --- sampling and neighbourhoods ---------------------------------------------------------------------
    def repair(self, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Make activity consistent (in place): inactive dimensions become NaN, newly active ones are drawn."""
        n = u.shape[0]
        for j in range(self.d):
            p = self.parent[j]
            active = np.ones(n, dtype=bool) if p < 0 else (u[:, p] == self.parent_index[j])
            u[~active, j] = np.nan
            need = active & np.isnan(u[:, j])
            if need.any():
                u[need, j] = self._draw(j, int(need.sum()), rng)
        return u

    def _draw(self, j: int, size: int, rng: np.random.Generator) -> np.ndarray:
        if self.is_cat[j]:
            return rng.integers(self.n_options[j], size=size).astype(float)
        u = rng.random(size)[:, None]
        return self.snap(np.where(np.arange(self.d) == j, u, np.nan))[:, j]

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` unit rows drawn from the prior (NNI's distributions)."""
        return self.repair(np.full((size, self.d), np.nan), rng)

    def neighbours(
        self, rows: np.ndarray, rng: np.random.Generator, n_numeric: int = 4
    ) -> tuple[np.ndarray, np.ndarray]:
        """SMAC's one-exchange neighbourhood of each unit row: every active dimension changed on its own.

        Returns the neighbours and, for each, the index of the row it belongs to.
        """
        blocks, owners = [], []
        index = np.arange(len(rows))
        for j, c in enumerate(self.codecs):
            active = ~np.isnan(rows[:, j])
            if c.kind == "const" or not active.any():
                continue
            base, who, x = rows[active], index[active], rows[active, j]
            if c.kind == "cat":
                n = int(self.n_options[j])
                shifts = np.arange(1, n)
                if len(shifts) > _CAT_NEIGHBOURS:
                    shifts = rng.choice(shifts, size=_CAT_NEIGHBOURS, replace=False)
                values = (x[:, None] + shifts[None, :]) % n
            elif self.grid[j] is not None:
                grid = self.grid[j]
                k = np.abs(grid[None, :] - x[:, None]).argmin(axis=1)
                if len(grid) <= 6:
                    values = grid[(k[:, None] + np.arange(1, len(grid))[None, :]) % len(grid)]
                else:
                    adjacent = grid[np.clip(np.stack([k - 1, k + 1], axis=1), 0, len(grid) - 1)]
                    values = np.concatenate([adjacent, self._gauss(x, 2, rng, j)], axis=1)
            else:
                values = self._gauss(x, n_numeric, rng, j)
            m = values.shape[1]
            block = np.repeat(base, m, axis=0)
            block[:, j] = values.ravel()
            keep = block[:, j] != np.repeat(x, m)
            blocks.append(block[keep])
            owners.append(np.repeat(who, m)[keep])
        if not blocks:
            return np.empty((0, self.d)), np.empty(0, dtype=int)
        out = np.concatenate(blocks)
        if self.conditional:
            self.repair(out, rng)
        return out, np.concatenate(owners)

    def _gauss(self, x: np.ndarray, size: int, rng: np.random.Generator, j: int) -> np.ndarray:
        """``(len(x), size)`` Gaussian steps (sd 0.2 of the range) from ``x``, kept inside, snapped."""
        v = x[:, None] + 0.2 * rng.standard_normal((len(x), size))
        for _ in range(3):  # SMAC re-draws a neighbour that falls outside the bounds
            bad = (v < 0) | (v > 1)
            if not bad.any():
                break
            v[bad] = np.broadcast_to(x[:, None], v.shape)[bad] + 0.2 * rng.standard_normal(int(bad.sum()))
        block = np.full((v.size, self.d), np.nan)
        block[:, j] = np.clip(v.ravel(), 0.0, 1.0)
        return self.snap(block)[:, j].reshape(v.shape)

    def sq_distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``(len(a), len(b))`` squared distances: numbers by their unit difference, a differing choice
        or a dimension active in only one row by 1."""
        out = np.zeros((len(a), len(b)))
        for j in range(self.d):
            x, y = a[:, j][:, None], b[:, j][None, :]
            nx, ny = np.isnan(x), np.isnan(y)
            if self.is_cat[j]:
                diff = (x != y).astype(float)
            else:
                diff = np.square(np.nan_to_num(x - y))
            out += np.where(nx & ny, 0.0, np.where(nx | ny, 1.0, diff))
        return out

    # --- surrogate features --------------------------------------------------------------------------
    def features(self, u: np.ndarray) -> np.ndarray:
        """Unit rows -> the surrogate's inputs (float32): numbers as they are, choices one-hot, inactive -1."""
        out = np.zeros((u.shape[0], self.n_features), dtype=np.float32)
        for j, (start, width) in enumerate(self._columns):
            col = u[:, j]
            inactive = np.isnan(col)
            if self.is_cat[j]:
                idx = np.where(inactive, 0, col).astype(int)
                out[np.arange(len(col)), start + idx] = 1.0
                out[inactive, start : start + width] = _INACTIVE
            else:
                out[:, start] = np.where(inactive, _INACTIVE, col)
        return out


class ForestSurrogate:
    """A bagged forest of regression trees whose spread is the predictive variance (SMAC's model).

    The trees are scikit-learn's; the bagging is done here (bootstrap samples as repeated rows) to skip
    the forest's per-tree cloning and validation, which cost more than fitting a tree on a few hundred
    points.

    Args:
        n_trees: number of trees.
        min_samples_leaf: smallest leaf.
        max_features: fraction of features tried at each split.
        rng: draws the bootstrap samples and the trees' seeds.
    """

    def __init__(
        self,
        *,
        n_trees: int,
        min_samples_leaf: int,
        max_features: float,
        rng: np.random.Generator,
        bootstrap: bool = True,
        splitter: str = "best",
    ) -> None:
        self.bootstrap = bootstrap
        self.splitter = splitter
        self.n_trees = n_trees
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.rng = rng
        self.trees: list[DecisionTreeRegressor] = []

    def fit(self, features: np.ndarray, y: np.ndarray) -> ForestSurrogate:
        x = np.ascontiguousarray(features, dtype=np.float32)
        y = np.ascontiguousarray(y, dtype=np.float64)
        n = len(y)
        self.trees = []
        state = np.random.RandomState(int(self.rng.integers(2**31 - 1)))  # shared by the trees, in order
        with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
            for _ in range(self.n_trees):
                idx = self.rng.integers(n, size=n) if self.bootstrap else np.arange(n)
                tree = DecisionTreeRegressor(
                    splitter=self.splitter,
                    min_samples_leaf=self.min_samples_leaf,
                    min_samples_split=max(2, 2 * self.min_samples_leaf),
                    max_features=self.max_features,
                    random_state=state,
                )
                self.trees.append(tree.fit(x[idx], y[idx], check_input=False))
        return self

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance over the trees."""
        x = np.ascontiguousarray(features, dtype=np.float32)
        # the fitted Tree objects directly: the estimators' predict re-validates on every call
        per_tree = np.stack([t.tree_.predict(x)[:, 0] for t in self.trees])
        return per_tree.mean(axis=0), per_tree.var(axis=0)
