"""Helpers shared by the built-in tuners and the NAS strategies: seeding and parameter identity.

Exported as :func:`nni_pl.hpo.make_rng` and :func:`nni_pl.hpo.param_key`. The argument checks live in
``nni_pl._checks`` (shared with the assessors and strategies). numpy is imported on first use.
"""

from __future__ import annotations

import json
import math
import numbers
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nni_pl.errors import SearchSpaceError
from nni_pl.space import SearchSpace

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PythonRng", "make_rng", "param_key"]


def make_rng(seed: int | None, *stream: int) -> np.random.Generator:
    """A generator for ``seed``; extra ``stream`` numbers give independent, reproducible streams.

    Example:
        >>> a, b = make_rng(7, 1), make_rng(7, 1)
        >>> int(a.integers(1000)) == int(b.integers(1000))
        True
    """
    import numpy as np

    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([seed, *stream]) if stream else np.random.default_rng(seed)


class PythonRng:
    """The part of :class:`numpy.random.Generator` that sampling a search space uses, on Python's ``random``.

    For tuners that only draw from the prior (``Random``): a launcher running one needs no numpy, which is
    ~50 ms of every ``nni-pl launch``. ``seed`` and ``stream`` play the same roles as in :func:`make_rng`;
    the draws differ from numpy's for the same seed.

    Example:
        >>> a, b = PythonRng(7, 1), PythonRng(7, 1)
        >>> a.integers(1000) == b.integers(1000), 0 <= a.integers(3, 5) - 3 < 2, 1.0 <= a.uniform(1.0, 2.0) < 2.0
        (True, True, True)
        >>> PythonRng(7, 1).normal(0.0, 1.0) == PythonRng(7, 1).normal(0.0, 1.0)
        True
    """

    def __init__(self, seed: int | None = None, *stream: int) -> None:
        # a string seed is hashed with SHA-512 by ``random``: the same stream on every run and platform
        self._random = random.Random(None if seed is None else ":".join(map(str, (seed, *stream))))

    def integers(self, low: int, high: int | None = None) -> int:
        """A uniform integer in ``[low, high)``, or in ``[0, low)`` when ``high`` is not given."""
        if high is None:
            low, high = 0, low
        return self._random.randrange(int(low), int(high))

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        """A uniform float in ``[low, high)``."""
        value = low + (high - low) * self._random.random()
        return value if value < high or low == high else low  # rounding must not reach ``high``

    def normal(self, loc: float = 0.0, scale: float = 1.0) -> float:
        return self._random.normalvariate(loc, scale)


def param_key(space: SearchSpace, params: Mapping[str, Any]) -> str | None:
    """A canonical identity of a parameter set (``1`` and ``1.0`` agree); ``None`` if not in ``space``.

    Example:
        >>> space = SearchSpace.parse({"x": {"_type": "choice", "_value": [1, 2]}})
        >>> param_key(space, {"x": 1}) == param_key(space, {"x": 1.0}), param_key(space, {"x": 3})
        (True, None)
    """
    try:
        space.check(params)
        flat = space.flatten(params)
    except SearchSpaceError:
        return None
    items = []
    for key, value in flat.items():
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = float(value)
            if math.isfinite(value) and value == 0.0:
                value = 0.0  # -0.0 and 0.0 are the same point
        items.append(["/".join(map(str, key)), value])
    return json.dumps(sorted(items, key=lambda kv: kv[0]))
