"""Bayesian optimisation over network graphs (Auto-Keras): an edit-distance kernel, a GP, simulated annealing.

The distance between two networks (:func:`edit_distances`) is the edit distance between their main chains of
layers (inserting or deleting a layer costs 1, replacing it 1 across types, or the relative difference of
widths, kernel sizes and strides within a type) plus the matching distance between their skip connections
(an optimal assignment, as in Auto-Keras). :class:`EditDistanceGP` regresses the metric on ``exp(-(d/l)^2)``
of these distances, choosing the length scale ``l`` and the noise by marginal likelihood; :func:`anneal`
searches the tree of morphs for the graph with the best upper confidence bound.

Example:
    >>> from nni_pl.hpo.tuners._nm_transform import cnn_graph
    >>> a, b = cnn_graph(10, (8, 8, 1), 2, 8), cnn_graph(10, (8, 8, 1), 3, 8)
    >>> [float(d) for d in edit_distances(Descriptor.of(a), [Descriptor.of(a), Descriptor.of(b)])]
    [0.0, 4.0]
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import LinAlgError, cho_solve, cholesky
from scipy.optimize import linear_sum_assignment

from nni_pl.hpo.tuners._nm_graph import Graph

__all__ = ["Descriptor", "EditDistanceGP", "anneal", "distance_matrix", "edit_distances"]

_TYPE_IDS: dict[str, int] = {}
_N_ATTR = 3
KERNEL_LAMBDA = 1.0


@dataclass(frozen=True)
class Descriptor:
    """A graph as the kernel sees it: its main chain's layers as arrays, and its skip connections."""

    types: np.ndarray  # (L,) type ids
    attrs: np.ndarray  # (L, 3) the numbers compared within a type (0-padded)
    n_attrs: np.ndarray  # (L,) how many of them
    skips: np.ndarray  # (S, 3): from, to, kind (0 add, 1 concat)
    key: str

    @staticmethod
    def of(graph: Graph) -> Descriptor:
        layers, skips = graph.extract_descriptor()
        key = json.dumps([layers, skips])
        n = len(layers)
        types = np.empty(n, dtype=np.int64)
        attrs = np.zeros((n, _N_ATTR))
        n_attrs = np.zeros(n)
        for i, desc in enumerate(layers):
            types[i] = _TYPE_IDS.setdefault(desc[0], len(_TYPE_IDS))
            numbers = desc[1:]
            attrs[i, : len(numbers)] = numbers
            n_attrs[i] = len(numbers)
        skip_rows = np.array([[u, v, kind == "concat"] for u, v, kind in skips], dtype=float).reshape(-1, 3)
        return Descriptor(types, attrs, n_attrs, skip_rows, key)


def _skips_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Auto-Keras' distance between two sets of skip connections (rows ``from, to, kind``): an optimal
    matching of ``(|from_a - from_b| + |len_a - len_b|) / (max from + max len)`` (1 across kinds), plus the
    unmatched ones."""
    if not len(a) or not len(b):
        return float(abs(len(a) - len(b)))
    fa, fb = a[:, None, 0], b[None, :, 0]
    la, lb = np.abs(a[:, None, 1] - fa), np.abs(b[None, :, 1] - fb)
    denom = np.maximum(fa, fb) + np.maximum(la, lb)
    cost = np.where(denom > 0, (np.abs(fa - fb) + np.abs(la - lb)) / np.where(denom > 0, denom, 1.0), 0.0)
    cost = np.where(a[:, None, 2] == b[None, :, 2], cost, 1.0)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum()) + abs(len(a) - len(b))


def _pad(ds: Sequence[Descriptor]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lengths = np.array([len(d.types) for d in ds])
    width = max(int(lengths.max()), 1)
    types = np.full((len(ds), width), -1, dtype=np.int64)
    attrs = np.zeros((len(ds), width, _N_ATTR))
    n_attrs = np.ones((len(ds), width))
    for k, d in enumerate(ds):
        types[k, : lengths[k]] = d.types
        attrs[k, : lengths[k]] = d.attrs
        n_attrs[k, : lengths[k]] = np.maximum(d.n_attrs, 1)
    return lengths, types, attrs, n_attrs


def distance_matrix(xs: Sequence[Descriptor], ys: Sequence[Descriptor]) -> np.ndarray:
    """The distances between each of ``xs`` and each of ``ys`` (layer edit distance + skip-connection distance).

    The layer edit distances of all pairs run at once: one row of the dynamic programme per layer, where the
    insertion recurrence ``f[j] = min(g[j], f[j-1] + 1)`` is ``j + cummin(g[k] - k)``.
    """
    m, n = len(xs), len(ys)
    if m == 0 or n == 0:
        return np.zeros((m, n))
    la, ta, aa, na = _pad(xs)
    lb, tb, ab, _ = _pad(ys)
    # substitution costs of every pair of layers: (m, n, La, Lb)
    same = ta[:, None, :, None] == tb[None, :, None, :]
    x, y = aa[:, None, :, None, :], ab[None, :, None, :, :]
    top = np.maximum(x, y)
    rel = (np.abs(x - y) / np.where(top > 0, top, 1.0)).sum(-1) / na[:, None, :, None]
    sub = np.where(same, rel, 1.0).reshape(m * n, ta.shape[1], tb.shape[1])
    cols = np.arange(tb.shape[1] + 1, dtype=float)
    prev = np.broadcast_to(cols, (m * n, len(cols))).copy()
    rows_len = np.repeat(la, n)
    ends = np.tile(lb, m)
    out = np.where(rows_len == 0, ends, 0).astype(float)
    g = np.empty_like(prev)
    for i in range(ta.shape[1]):
        g[:, 0] = i + 1
        np.minimum(prev[:, 1:] + 1.0, prev[:, :-1] + sub[:, i], out=g[:, 1:])
        prev = cols + np.minimum.accumulate(g - cols, axis=1)
        done = rows_len == i + 1
        out[done] = prev[done, ends[done]]
    skips = np.array([[_skips_distance(a.skips, b.skips) for b in ys] for a in xs])
    return out.reshape(m, n) + KERNEL_LAMBDA * skips


def edit_distances(a: Descriptor, others: Sequence[Descriptor]) -> np.ndarray:
    """The distances from ``a`` to each of ``others`` (see :func:`distance_matrix`)."""
    return distance_matrix([a], others)[0]


class EditDistanceGP:
    """A Gaussian process on graphs with the kernel ``exp(-(d / l)^2)`` of their edit distance ``d``.

    The targets are standardised; ``l`` and the noise variance are picked from a small grid by the marginal
    likelihood at every fit (the kernel need not be positive definite on every set of graphs: a fit whose
    Cholesky factorisation fails is skipped, and the noise grid keeps one that works).

    Example:
        >>> from nni_pl.hpo.tuners._nm_transform import cnn_graph
        >>> ds = [Descriptor.of(cnn_graph(10, (8, 8, 1), n, 8)) for n in (1, 2, 3)]
        >>> gp = EditDistanceGP().fit(ds, np.array([0.5, 0.7, 0.9]))
        >>> mean, std = gp.predict([ds[1]])
        >>> bool(abs(mean[0] - 0.7) < 0.1 and std[0] < 0.2)
        True
    """

    LENGTH_SCALES = (0.5, 1.0, 2.0, 4.0, 8.0)
    NOISES = (1e-4, 1e-2, 1e-1, 0.5)

    def __init__(self) -> None:
        self.x: list[Descriptor] = []
        self._d = np.zeros((0, 0))

    def fit(self, x: Sequence[Descriptor], y: np.ndarray) -> EditDistanceGP:
        """Fit on ``x`` (the distance rows of points fitted before are reused) and targets ``y``."""
        old = {d.key: k for k, d in enumerate(self.x)}
        idx = [old.get(xi.key) for xi in x]
        known = [j for j in range(len(x)) if idx[j] is not None]
        fresh = [j for j in range(len(x)) if idx[j] is None]
        n = len(x)
        d = np.zeros((n, n))
        if known:
            d[np.ix_(known, known)] = self._d[np.ix_([idx[j] for j in known], [idx[j] for j in known])]
        if fresh:
            d[fresh, :] = distance_matrix([x[j] for j in fresh], x)
            d[:, fresh] = d[fresh, :].T
        self.x, self._d = list(x), (d + d.T) / 2
        y = np.asarray(y, dtype=float)
        self._mu = float(y.mean())
        self._sd = float(y.std()) or 1.0
        z = (y - self._mu) / self._sd
        best = None
        for ls in self.LENGTH_SCALES:
            k = np.exp(-((self._d / ls) ** 2))
            for noise in self.NOISES:
                try:
                    chol = cholesky(k + noise * np.eye(n), lower=True)
                except LinAlgError:
                    continue
                alpha = cho_solve((chol, True), z)
                lml = -0.5 * float(z @ alpha) - float(np.log(np.diag(chol)).sum())
                if best is None or lml > best[0]:
                    best = (lml, ls, noise, chol, alpha)
        if best is None:  # cannot happen with the largest noise, but never leave the model unusable
            chol = np.linalg.cholesky(np.eye(n) * 2.0)
            best = (0.0, 1.0, 1.0, chol, cho_solve((chol, True), z))
        _, self.length_scale, self.noise, self._chol, self._alpha = best
        return self

    def predict(self, x: Sequence[Descriptor]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (of the latent function) at each of ``x``, in the targets' units."""
        kx = np.exp(-((distance_matrix(x, self.x) / self.length_scale) ** 2))
        mean = kx @ self._alpha
        v = cho_solve((self._chol, True), kx.T)
        var = np.maximum(1.0 - np.einsum("ij,ji->i", kx, v), 0.0)
        return self._mu + self._sd * mean, self._sd * np.sqrt(var)


def anneal(
    start: Sequence[tuple[float, int, Graph]],
    acquisition: Callable[[list[Graph]], np.ndarray],
    neighbours: Callable[[Graph], list[Graph]],
    seen: set[str],
    rng: Any,
    *,
    t_min: float,
    cooling: float = 0.9,
) -> tuple[Graph, int] | None:
    """Auto-Keras' search: simulated annealing over the tree of morphs, maximising ``acquisition``.

    ``start`` holds ``(score, father model id, graph)`` of the trained models (higher is better, in the
    acquisition's units). The best-scored element is expanded (its morphs, minus architectures in ``seen``,
    are scored and queued under the same father) when ``exp(min((score - best) / t, 1))`` beats a uniform draw;
    the temperature ``t`` falls from 1 by ``cooling`` per step until ``t_min``. Returns the best-scored new
    graph and its father's model id, or ``None`` if every morph was already seen.
    """
    heap: list[tuple[float, int, int, Graph]] = []
    for k, (score, father, graph) in enumerate(start):
        heapq.heappush(heap, (-score, k, father, graph))
    counter = len(heap)
    best_score, best = -math.inf, None
    t = 1.0
    while heap and t > t_min:
        neg, _, father, graph = heapq.heappop(heap)
        gap = -neg - best_score
        accept = math.exp(min(gap / t, 1.0)) if math.isfinite(gap) else math.e
        if accept >= rng.uniform():
            fresh = []
            for child in neighbours(graph):
                key = child.key()
                if key not in seen:
                    seen.add(key)
                    fresh.append(child)
            if fresh:
                scores = acquisition(fresh)
                for child, score in zip(fresh, scores):
                    heapq.heappush(heap, (-float(score), counter, father, child))
                    counter += 1
                    if score > best_score:
                        best_score, best = float(score), (child, father)
        t *= cooling
    return best
