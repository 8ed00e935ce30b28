"""Helpers shared by the built-in tuners: ``classArgs`` validation, seeding and parameter identity."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from nni_pl.errors import ConfigError, SearchSpaceError
from nni_pl.space import SearchSpace

__all__ = ["check_bool", "check_int", "check_seed", "make_rng", "param_key"]


def check_seed(seed: Any) -> int | None:
    """Return ``seed`` if it is ``None`` or a non-negative integer, else raise :class:`ConfigError`."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(
            "classArgs.seed", f"must be a non-negative integer or null, got {seed!r}; e.g. seed: 42"
        )
    return int(seed)


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a boolean, else raise :class:`ConfigError` naming ``classArgs.<name>``."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(
            f"classArgs.{name}", f"must be true or false, got {value!r} ({type(value).__name__})"
        )
    return bool(value)


def check_int(name: str, value: Any, *, minimum: int) -> int:
    """Return ``value`` if it is an integer ``>= minimum``, else raise :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"classArgs.{name}", f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def make_rng(seed: int | None, *stream: int) -> np.random.Generator:
    """A generator for ``seed``; extra ``stream`` numbers give independent, reproducible streams."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([seed, *stream]) if stream else np.random.default_rng(seed)


def param_key(space: SearchSpace, params: Mapping[str, Any]) -> str | None:
    """A canonical identity of a parameter set (``1`` and ``1.0`` agree); ``None`` if not in ``space``."""
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
