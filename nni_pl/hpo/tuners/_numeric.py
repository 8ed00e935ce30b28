"""A numeric search space as a unit cube: the coordinates the Bayesian-optimisation tuners model.

The GP, Metis and DNGO tuners see a flat, numeric search space (no nested ``choice``, numeric
options only) as ``[0, 1]^d``, one axis per searched dimension whose value can vary:

- ``uniform`` / ``quniform`` / ``randint``: linear between the bounds (a ``randint`` value ``v`` sits
  at the centre of its cell ``[v, v + 1)``);
- ``loguniform`` / ``qloguniform``: linear in ``log`` between the bounds;
- numeric ``choice``: linear in the option's value between the smallest and largest option, so that
  distances between options are distances between numbers (as in NNI); a point decodes to the
  nearest option.

Decoding applies NNI's rounding and clipping (``param.quantize``), so every suggestion is exactly a
point of the space; :meth:`UnitCube.snap` moves cube points onto the decodable ones.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from nni_pl.hpo.tuners._store import ObservationStore
from nni_pl.space import Randint

__all__ = ["NUMERIC_TYPES", "UnitCube", "single_threaded"]

#: The ``_type`` s of NNI's GP and DNGO tuners (``choice`` with numeric options only, no nesting).
NUMERIC_TYPES = frozenset({"choice", "randint", "uniform", "quniform", "loguniform", "qloguniform"})


class UnitCube:
    """Maps the rows of an :class:`ObservationStore` (flat numeric space) to ``[0, 1]^d`` and back.

    Attributes:
        store: the observation store whose internal coordinates are mapped.
        columns: the store columns that vary (constant dimensions are left out of the cube).
        d: the cube's dimension.

    Example:
        >>> from nni_pl.space import SearchSpace
        >>> store = ObservationStore(SearchSpace.parse({
        ...     "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
        ...     "bs": {"_type": "choice", "_value": [16, 32, 64]}}))
        >>> cube = UnitCube(store)
        >>> cube.decode(np.array([0.5, 0.9]))["bs"]
        64
    """

    def __init__(self, store: ObservationStore) -> None:
        self.store = store
        self.columns: list[int] = []
        self._lo: list[float] = []
        self._width: list[float] = []
        self._options: dict[int, np.ndarray] = {}  # cube axis -> option values scaled to [0, 1]
        for j, codec in enumerate(store.codecs):
            if store.parent[j] >= 0:
                raise ValueError("UnitCube needs a flat search space (no nested choice)")
            if codec.kind == "const":
                continue
            if codec.kind == "cat":
                values = np.array([float(o) for o in codec.param.options])  # type: ignore[attr-defined]
                lo, hi = float(values.min()), float(values.max())
                if len(values) < 2 or not hi > lo:
                    continue
                self._options[len(self.columns)] = (values - lo) / (hi - lo)
                self.columns.append(j)
                self._lo.append(math.nan)
                self._width.append(math.nan)
                continue
            self.columns.append(j)
            self._lo.append(codec.lo)
            self._width.append(codec.hi - codec.lo)
        self.d = len(self.columns)

    # --- rows of the store <-> cube ------------------------------------------------------------------
    def from_internal(self, x: np.ndarray) -> np.ndarray:
        """``(n, n_dims)`` internal coordinates of the store -> ``(n, d)`` cube points."""
        x = np.atleast_2d(x)
        u = np.empty((x.shape[0], self.d))
        for k, j in enumerate(self.columns):
            if k in self._options:
                u[:, k] = self._options[k][x[:, j].astype(int)]
            else:
                u[:, k] = (x[:, j] - self._lo[k]) / self._width[k]
        return np.clip(u, 0.0, 1.0)

    def encode(self, params: dict[str, Any]) -> np.ndarray | None:
        """The cube point of a parameter set, or ``None`` if it is not a point of the space."""
        row = self.store.encode(params, quiet=True)
        return None if row is None else self.from_internal(row)[0]

    def decode(self, u: np.ndarray) -> dict[str, Any]:
        """A cube point -> the parameter set it stands for (exact values, NNI's types)."""
        values: dict[int, float] = {}
        for j, codec in enumerate(self.store.codecs):
            values[j] = codec.lo if codec.kind == "const" else 0.0
        for k, j in enumerate(self.columns):
            uk = min(max(float(u[k]), 0.0), 1.0)
            if k in self._options:
                values[j] = float(np.argmin(np.abs(self._options[k] - uk)))
            else:
                values[j] = self._lo[k] + uk * self._width[k]
        return self.store.decode(values)

    def snap(self, u: np.ndarray) -> np.ndarray:
        """Move ``(m, d)`` cube points onto the points that decode exactly to them (vectorised)."""
        out = np.clip(np.array(u, dtype=float, copy=True), 0.0, 1.0)
        for k, j in enumerate(self.columns):
            if k in self._options:
                opts = self._options[k]
                out[:, k] = opts[np.argmin(np.abs(out[:, k, None] - opts[None, :]), axis=1)]
                continue
            codec = self.store.codecs[j]
            if not codec.discrete:
                continue
            v = codec.values(self._lo[k] + out[:, k] * self._width[k])  # quantised, clipped values
            if isinstance(codec.param, Randint):
                x = v + 0.5
            else:
                x = np.log(v) if codec.log else v
            out[:, k] = np.clip((x - self._lo[k]) / self._width[k], 0.0, 1.0)
        return out

    def sample(self, rng: np.random.Generator, m: int) -> np.ndarray:
        """``(m, d)`` points from the prior: uniform in the cube (snapped), options of a choice equally likely."""
        u = rng.random((m, self.d))
        for k, opts in self._options.items():
            u[:, k] = opts[rng.integers(len(opts), size=m)]
        return self.snap(u)

    @property
    def is_discrete(self) -> bool:
        """Whether every axis takes finitely many values."""
        return all(k in self._options or self.store.codecs[j].discrete for k, j in enumerate(self.columns))


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
