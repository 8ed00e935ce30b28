"""A search space as a unit cube: the coordinates the Bayesian-optimisation tuners model.

The GP, Metis and DNGO tuners see a search space as ``[0, 1]^d``. Every searched dimension whose
value can vary gets one axis, except a categorical ``choice``, which gets one axis per option:

- ``uniform`` / ``quniform`` / ``randint``: linear between the bounds (a ``randint`` value ``v`` sits
  at the centre of its cell ``[v, v + 1)``);
- ``loguniform`` / ``qloguniform``: linear in ``log`` between the bounds;
- ``normal`` / ``qnormal`` / ``lognormal`` / ``qlognormal``: the prior's quantile, i.e. the normal
  CDF of the value (of its ``log`` for the log types), kept in ``[eps, 1 - eps]``; a uniform point
  of the axis is a draw from NNI's prior, and decoding applies the inverse CDF;
- numeric ``choice``: linear in the option's value between the smallest and largest option, so that
  distances between options are distances between numbers (as in NNI), or, with
  ``choice_spacing="rank"`` (the GP tuner's default), evenly spaced in order of value, so that options
  spread over decades (learning rates) are as far apart as options spread linearly; a point decodes to the
  nearest option;
- any other ``choice`` (strings, booleans, ``None``, mixed values, nested ``_name`` branches):
  *one-hot*, one axis per option, decoding to the option with the largest coordinate.

One-hot rather than a categorical kernel: the three surrogates (a GP with one length scale per axis,
DNGO's network, Metis's Gaussian mixtures) all take the encoding as it is, and a per-option length
scale lets the GP learn which options differ, as a categorical kernel with per-option weights
would. The acquisition search keeps one-hot axes fixed (:meth:`UnitCube.fixed`): its start points
choose the options, L-BFGS-B moves the ordered axes.

Nested choices are flattened (the store's columns): an inactive dimension (its branch was not
chosen) sits at a fixed point, ``0.5`` on an ordered axis and all zeros on one-hot axes, so two
points differ only where their active structure differs; decoding builds the chosen branches only.

Decoding applies NNI's rounding and clipping (``param.quantize``), so every suggestion is exactly a
point of the space; :meth:`UnitCube.snap` moves cube points onto the decodable ones. On a flat space
of numeric types (NNI's) the encoding, the prior and the random draws are exactly those of earlier
versions.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from nni_pl.hpo._base import check_space_support
from nni_pl.hpo.tuners._store import ObservationStore
from nni_pl.space import QLogNormal, Randint, SearchSpace

__all__ = ["NUMERIC_TYPES", "UnitCube", "check_nni_types", "single_threaded"]

#: The ``_type`` s of NNI's GP and DNGO tuners (``choice`` with numeric options only, no nesting).
NUMERIC_TYPES = frozenset({"choice", "randint", "uniform", "quniform", "loguniform", "qloguniform"})

#: The quantile range of the normal-family axes: ``[EPS, 1 - EPS]`` spans ``+-4.75`` standard deviations.
EPS = 1e-6
#: Where an inactive dimension sits on an ordered axis (one-hot axes of an inactive choice are all 0).
INACTIVE = 0.5


def check_nni_types(space: SearchSpace, *, tuner: str, types: frozenset[str]) -> None:
    """Refuse what NNI's version of ``tuner`` refused (its ``nni_types_only=True``): a ``_type``
    outside ``types``, a nested choice, a choice with non-numeric options; the error names the parameter."""
    check_space_support(
        space, tuner=tuner, supported_types=types, supports_nested=False, numeric_choices_only=True
    )


@dataclass
class _Group:
    """The axes of one store column: ``kind`` is ``"linear"``, ``"normal"``, ``"ordered"`` or ``"onehot"``."""

    column: int
    start: int
    size: int
    kind: str
    lo: float = math.nan  # linear: internal lower bound; normal: the prior's mean
    width: float = math.nan  # linear: internal range; normal: the prior's standard deviation
    options: np.ndarray | None = None  # ordered: option values scaled to [0, 1]


class UnitCube:
    """Maps the rows of an :class:`ObservationStore` to ``[0, 1]^d`` and back.

    Attributes:
        store: the observation store whose internal coordinates are mapped.
        columns: the store column of each axis (a one-hot choice repeats its column once per option;
            constant dimensions are left out of the cube).
        d: the cube's dimension.

    Example:
        >>> from nni_pl.space import SearchSpace
        >>> store = ObservationStore(SearchSpace.parse({
        ...     "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
        ...     "bs": {"_type": "choice", "_value": [16, 32, 64]},
        ...     "act": {"_type": "choice", "_value": ["relu", "tanh"]}}))
        >>> cube = UnitCube(store)
        >>> cube.d  # lr, bs, and one axis per option of act
        4
        >>> cube.decode(np.array([0.5, 0.9, 0.2, 0.7]))["bs"], cube.decode(np.array([0.5, 0.9, 0.2, 0.7]))["act"]
        (64, 'tanh')
    """

    def __init__(self, store: ObservationStore, *, choice_spacing: str = "value") -> None:
        if choice_spacing not in ("value", "rank"):
            raise ValueError(f"choice_spacing must be 'value' or 'rank', got {choice_spacing!r}")
        self.store = store
        self.choice_spacing = choice_spacing
        self.columns: list[int] = []
        self._groups: list[_Group] = []
        self._group_of: dict[int, _Group] = {}
        for j, codec in enumerate(store.codecs):
            group = self._make_group(j, codec)
            if group is None:
                continue
            self._groups.append(group)
            self._group_of[j] = group
            self.columns.extend([j] * group.size)
        self.d = len(self.columns)
        self._nested = any(p >= 0 for p in store.parent)
        self._onehot = np.zeros(self.d, dtype=bool)
        for g in self._groups:
            if g.kind == "onehot":
                self._onehot[g.start : g.start + g.size] = True

    def _make_group(self, j: int, codec: Any) -> _Group | None:
        start = len(self.columns)
        if codec.kind == "const":
            return None
        if codec.kind == "cat":
            param = codec.param
            if len(param.options) < 2:
                return None
            if param.is_numeric:
                values = np.array([float(o) for o in param.options])
                lo, hi = float(values.min()), float(values.max())
                if not hi > lo:
                    return None
                if self.choice_spacing == "rank":  # evenly spaced in the options' order of value
                    ranks = np.unique(values, return_inverse=True)[1].astype(float)
                    return _Group(j, start, 1, "ordered", options=ranks / ranks.max())
                return _Group(j, start, 1, "ordered", options=(values - lo) / (hi - lo))
            return _Group(j, start, len(param.options), "onehot")
        if math.isinf(codec.lo):
            return _Group(j, start, 1, "normal", lo=codec.prior_mu, width=codec.prior_sigma)
        return _Group(j, start, 1, "linear", lo=codec.lo, width=codec.hi - codec.lo)

    # --- rows of the store <-> cube ------------------------------------------------------------------
    def from_internal(self, x: np.ndarray) -> np.ndarray:
        """``(n, n_dims)`` internal coordinates of the store (NaN: inactive) -> ``(n, d)`` cube points."""
        x = np.atleast_2d(x)
        n = x.shape[0]
        u = np.empty((n, self.d))
        for g in self._groups:
            xj = x[:, g.column]
            inactive = np.isnan(xj)
            k = g.start
            if g.kind == "onehot":
                block = np.zeros((n, g.size))
                block[np.arange(n), np.where(inactive, 0, xj).astype(int)] = 1.0
                block[inactive] = 0.0
                u[:, k : k + g.size] = block
                continue
            if g.kind == "ordered":
                assert g.options is not None
                u[:, k] = g.options[np.where(inactive, 0, xj).astype(int)]
            elif g.kind == "normal":
                u[:, k] = np.clip(ndtr((xj - g.lo) / g.width), EPS, 1.0 - EPS)
            else:
                u[:, k] = (xj - g.lo) / g.width
            if inactive.any():
                u[inactive, k] = INACTIVE
        return np.clip(u, 0.0, 1.0)

    def encode(self, params: dict[str, Any]) -> np.ndarray | None:
        """The cube point of a parameter set, or ``None`` if it is not a point of the space."""
        row = self.store.encode(params, quiet=True)
        return None if row is None else self.from_internal(row)[0]

    def decode(self, u: np.ndarray) -> dict[str, Any]:
        """A cube point -> the parameter set it stands for (exact values, NNI's types, chosen branches only)."""
        store = self.store
        values: dict[int, float] = {}
        for j, codec in enumerate(store.codecs):  # parents come before their children
            p = store.parent[j]
            if p >= 0 and (p not in values or int(values[p]) != store.parent_index[j]):
                continue
            g = self._group_of.get(j)
            if g is None:
                values[j] = codec.lo if codec.kind == "const" else 0.0
                continue
            k = g.start
            if g.kind == "onehot":
                values[j] = float(np.argmax(u[k : k + g.size]))
                continue
            uk = min(max(float(u[k]), 0.0), 1.0)
            if g.kind == "ordered":
                assert g.options is not None
                values[j] = float(np.argmin(np.abs(g.options - uk)))
            elif g.kind == "normal":
                values[j] = g.lo + g.width * float(ndtri(min(max(uk, EPS), 1.0 - EPS)))
            else:
                values[j] = g.lo + uk * g.width
        return store.decode(values)

    def snap(self, u: np.ndarray) -> np.ndarray:
        """Move ``(m, d)`` cube points onto the points that decode exactly to them (vectorised)."""
        out = np.clip(np.array(u, dtype=float, copy=True), 0.0, 1.0)
        chosen: dict[int, np.ndarray] = {}  # column of a one-hot choice -> chosen option per point
        for g in self._groups:
            k = g.start
            if g.kind == "onehot":
                idx = np.argmax(out[:, k : k + g.size], axis=1)
                out[:, k : k + g.size] = 0.0
                out[np.arange(len(out)), k + idx] = 1.0
                chosen[g.column] = idx
                continue
            if g.kind == "ordered":
                opts = g.options
                assert opts is not None
                out[:, k] = opts[np.argmin(np.abs(out[:, k, None] - opts[None, :]), axis=1)]
                continue
            codec = self.store.codecs[g.column]
            if g.kind == "normal":
                out[:, k] = np.clip(out[:, k], EPS, 1.0 - EPS)
                if codec.discrete:
                    v = codec.values(g.lo + g.width * ndtri(out[:, k]))
                    if isinstance(codec.param, QLogNormal):
                        x = np.log(np.maximum(v, 0.25 * codec.q))
                    else:
                        x = np.log(v) if codec.log else v
                    out[:, k] = np.clip(ndtr((x - g.lo) / g.width), EPS, 1.0 - EPS)
                continue
            if not codec.discrete:
                continue
            v = codec.values(g.lo + out[:, k] * g.width)  # quantised, clipped values
            if isinstance(codec.param, Randint):
                x = v + 0.5
            else:
                x = np.log(v) if codec.log else v
            out[:, k] = np.clip((x - g.lo) / g.width, 0.0, 1.0)
        if self._nested:
            active = self._active(len(out), chosen)
            for g in self._groups:
                off = ~active[g.column]
                if off.any():
                    out[off, g.start : g.start + g.size] = 0.0 if g.kind == "onehot" else INACTIVE
        return out

    def _active(self, m: int, chosen: dict[int, np.ndarray]) -> list[np.ndarray]:
        """Per store column, which of ``m`` points activate it, given the options chosen per one-hot column."""
        store = self.store
        active: list[np.ndarray] = []
        for j in range(len(store.codecs)):
            p = store.parent[j]
            if p < 0:
                active.append(np.ones(m, dtype=bool))
            else:
                idx = chosen.get(p, np.zeros(m, dtype=int))  # a one-option choice always picks option 0
                active.append(active[p] & (idx == store.parent_index[j]))
        return active

    def fixed(self, u: np.ndarray) -> np.ndarray | None:
        """For snapped ``(m, d)`` points, the axes a local search must leave as they are: one-hot axes
        (the start point chose the option) and inactive dimensions; ``None`` when there are none."""
        if not self._nested and not self._onehot.any():
            return None
        mask = np.broadcast_to(self._onehot, u.shape).copy()
        if self._nested:
            chosen = {
                g.column: np.argmax(u[:, g.start : g.start + g.size], axis=1)
                for g in self._groups
                if g.kind == "onehot"
            }
            active = self._active(len(u), chosen)
            for g in self._groups:
                mask[~active[g.column], g.start : g.start + g.size] = True
        return mask

    def sample(self, rng: np.random.Generator, m: int) -> np.ndarray:
        """``(m, d)`` points from the prior: uniform in the cube (snapped), options of a choice equally likely."""
        u = rng.random((m, self.d))
        for g in self._groups:
            if g.kind == "ordered":
                assert g.options is not None
                u[:, g.start] = g.options[rng.integers(len(g.options), size=m)]
            elif g.kind == "onehot":
                block = np.zeros((m, g.size))
                block[np.arange(m), rng.integers(g.size, size=m)] = 1.0
                u[:, g.start : g.start + g.size] = block
        return self.snap(u)

    def neighbours(self, rng: np.random.Generator, starts: np.ndarray, m: int) -> np.ndarray:
        """``(m, d)`` snapped points near ``starts`` (``(k, d)`` cube points), for a local acquisition search.

        Each point takes a start at random and a Gaussian step on every ordered axis, its scale log-uniform
        in ``[0.005, 0.2]`` of the axis; each categorical (one-hot) choice is redrawn uniformly with
        probability ``1 / (number of searched dimensions)``, so at most about one choice changes per point.
        Points that snap back onto their start are left out (``m`` is an upper bound).

        Example:
            >>> from nni_pl.space import SearchSpace
            >>> store = ObservationStore(SearchSpace.parse({
            ...     "x": {"_type": "uniform", "_value": [0, 1]},
            ...     "act": {"_type": "choice", "_value": ["relu", "tanh"]}}))
            >>> cube = UnitCube(store)
            >>> near = cube.neighbours(np.random.default_rng(0), np.array([[0.5, 1.0, 0.0]]), 1000)
            >>> float(np.median(np.abs(near[:, 0] - 0.5))) < 0.05  # small steps on x
            True
            >>> 0 < int((near[:, 2] == 1.0).sum()) < 500  # act switched to "tanh" on some points
            True
        """
        starts = np.atleast_2d(starts)
        which = rng.integers(len(starts), size=m)
        base = starts[which]
        scale = np.exp(rng.uniform(math.log(0.005), math.log(0.2), size=(m, 1)))
        out = base + np.where(self._onehot, 0.0, rng.normal(size=base.shape) * scale)
        flip = 1.0 / max(len(self._groups), 1)
        for g in self._groups:
            if g.kind != "onehot":
                continue
            change = rng.random(m) < flip
            if change.any():
                block = np.zeros((int(change.sum()), g.size))
                block[np.arange(len(block)), rng.integers(g.size, size=len(block))] = 1.0
                out[change, g.start : g.start + g.size] = block
        out = self.snap(out)
        return out[np.any(np.abs(out - base) > 1e-12, axis=1)]

    @property
    def is_discrete(self) -> bool:
        """Whether every axis takes finitely many values."""
        return all(
            g.kind in ("ordered", "onehot") or self.store.codecs[g.column].discrete for g in self._groups
        )


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run numpy/scipy's BLAS on one thread inside the block (restored afterwards).

    A tuner's linear algebra is small; with trials keeping every core busy, a multi-threaded BLAS
    spends most of its time waiting for cores (measured: four times slower on a loaded machine).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with threadpool_limits(limits=1):
        yield
