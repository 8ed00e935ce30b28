"""Typed readers of config values (the experiment config, training-platform sections): each names the field
(camelCase, as the user wrote it) in its error.

Example:
    >>> read_int(3.0, "trialConcurrency", minimum=1)
    3
    >>> read_gpu_indices("0, 2", "trainingService.gpuIndices")
    [0, 2]
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nni_pl.errors import ConfigError, did_you_mean

__all__ = ["check_keys", "read_bool", "read_gpu_indices", "read_int", "read_path", "read_str"]

_EXACT_FLOAT_INT = 2**53  # every whole number up to this is exact as a float


def read_int(value: Any, field: str, *, minimum: int | None = None, optional: bool = True) -> int | None:
    if value is None:
        if optional:
            return None
        raise ConfigError(field, "is required; give a whole number")
    if isinstance(value, bool) or not isinstance(value, int):
        # a float is taken only while it is exact: past 2**53 it is no longer the number that was written
        if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_FLOAT_INT:
            value = int(value)
        elif isinstance(value, float) and value.is_integer():
            raise ConfigError(
                field,
                f"got {value!r}, a float too large to be exact; write the whole number without a decimal point or exponent",
            )
        else:
            raise ConfigError(field, f"got {value!r} ({type(value).__name__}); give a whole number")
    if minimum is not None and value < minimum:
        raise ConfigError(field, f"got {value}; it must be at least {minimum}")
    return value


def read_bool(value: Any, field: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(field, f"got {value!r}; write true or false")
    return value


def read_str(value: Any, field: str, *, optional: bool = True) -> str | None:
    if value is None:
        if optional:
            return None
        raise ConfigError(field, "is required")
    if not isinstance(value, str):
        raise ConfigError(field, f"got {value!r} ({type(value).__name__}); give a string")
    return value


def read_path(value: Any, field: str, base: Path) -> Path | None:
    text = read_str(value, field)
    if text is None:
        return None
    path = Path(os.path.expanduser(text))
    return (path if path.is_absolute() else base / path).resolve()


def read_gpu_indices(value: Any, field: str) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        items: list[Any] = [value]
    elif isinstance(value, str):
        items = [s.strip() for s in value.split(",") if s.strip()]
    elif isinstance(value, list):
        items = value
    else:
        raise ConfigError(field, f"got {value!r}; give a list of GPU indices such as [0, 1] or '0,1'")
    out = []
    for item in items:
        try:
            idx = int(item)
        except (TypeError, ValueError):
            raise ConfigError(field, f"got {value!r}; {item!r} is not a GPU index") from None
        if idx < 0:
            raise ConfigError(field, f"got {value!r}; GPU indices are >= 0")
        out.append(idx)
    return out


def check_keys(raw: Mapping[str, Any], known: list[str], prefix: str) -> None:
    for key in raw:
        if key not in known:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(
                where, f"unknown key{did_you_mean(str(key), known)}; valid keys here: {', '.join(known)}"
            )
