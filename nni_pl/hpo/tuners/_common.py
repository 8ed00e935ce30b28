"""Helpers shared by the built-in tuners and the NAS strategies: seeding and parameter identity.

Exported as :func:`nni_pl.hpo.make_rng` and :func:`nni_pl.hpo.param_key`. The argument checks live in
``nni_pl._checks`` (shared with the assessors and strategies). numpy is imported on first use.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nni_pl.errors import SearchSpaceError
from nni_pl.space import SearchSpace

if TYPE_CHECKING:
    import numpy as np

__all__ = ["make_rng", "param_key"]


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
