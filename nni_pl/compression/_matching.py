"""``config_list`` matching shared by pruners and quantizers: which modules an entry's ``op_types``/``op_names`` select.

Example:
    >>> import torch
    >>> from nni_pl.compression._matching import select_modules
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
    >>> [name for name, _ in select_modules(model, 0, {"op_types": ["ReLU"]}, default_op_types=())]
    ['1']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from torch import nn

from nni_pl.errors import ConfigError, did_you_mean

__all__ = ["check_entries", "check_entry", "entry_field", "select_modules", "str_list"]


def entry_field(i: int, key: str | None = None) -> str:
    """The user's spelling of entry ``i`` (and its ``key``): ``config_list[2].quant_bits``."""
    return f"config_list[{i}]" + (f".{key}" if key else "")


def str_list(i: int, entry: Mapping[str, Any], key: str) -> list[str] | None:
    """``entry[key]`` as a non-empty list of strings, ``None`` when absent; otherwise a ConfigError naming it."""
    if key not in entry:
        return None
    value = entry[key]
    if (
        isinstance(value, str)
        or not isinstance(value, (list, tuple))
        or not all(isinstance(v, str) for v in value)
    ):
        raise ConfigError(entry_field(i, key), f"must be a list of strings, got {value!r}; e.g. [{value!r}]")
    if not value:
        raise ConfigError(entry_field(i, key), "is empty; list at least one name or drop the key")
    return list(value)


def check_entries(config_list: Any, example: str) -> Sequence[Any]:
    """``config_list`` must be a non-empty list (``example`` shows an entry in the error)."""
    if not isinstance(config_list, (list, tuple)):
        raise ConfigError("config_list", f"must be a list of dicts, got {type(config_list).__name__}")
    if not config_list:
        raise ConfigError("config_list", f"is empty; give at least one entry such as {example}")
    return config_list


def check_entry(i: int, entry: Any, known: Iterable[str]) -> bool:
    """The keys every entry shares: a dict of ``known`` keys that selects layers; returns its ``exclude``."""
    if not isinstance(entry, Mapping):
        raise ConfigError(entry_field(i), f"must be a dict, got {entry!r}")
    known = set(known)
    for key in entry:
        if key not in known:
            raise ConfigError(
                entry_field(i, str(key)),
                f"unknown key {key!r}{did_you_mean(str(key), known)}; known keys: {sorted(known)}",
            )
    exclude = entry.get("exclude", False)
    if not isinstance(exclude, bool):
        raise ConfigError(entry_field(i, "exclude"), f"must be true or false, got {exclude!r}")
    if str_list(i, entry, "op_types") is None and str_list(i, entry, "op_names") is None:
        raise ConfigError(entry_field(i), f"{dict(entry)!r} selects no layers; add 'op_types' or 'op_names'")
    return exclude


def select_modules(
    model: nn.Module,
    i: int,
    entry: Mapping[str, Any],
    *,
    default_op_types: Sequence[str],
    supported_op_types: Sequence[str] | None = None,
    what: str = "pruned by this pruner",
) -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` pairs entry ``i`` selects, in module order.

    ``op_types`` (``"default"`` expands to ``default_op_types``) and ``op_names`` must both match when both are
    given. An ``op_names`` name the model lacks, or (for a non-exclude entry) a type outside ``supported_op_types``,
    is a ConfigError naming the entry.
    """
    modules = dict(model.named_modules())
    exclude = bool(entry.get("exclude", False))
    op_types = entry.get("op_types")
    if op_types is not None:
        expanded: list[str] = []
        for t in op_types:
            expanded.extend(default_op_types if t == "default" else [t])
        if supported_op_types is not None and not exclude:
            for t in expanded:
                if t not in supported_op_types:
                    raise ConfigError(
                        entry_field(i, "op_types"),
                        f"{t!r} cannot be {what}{did_you_mean(t, supported_op_types)}; "
                        f"supported: {list(supported_op_types)}",
                    )
        op_types = set(expanded)
    op_names = entry.get("op_names")
    if op_names is not None:
        for n in op_names:
            if n not in modules or n == "":
                raise ConfigError(
                    entry_field(i, "op_names"),
                    f"{n!r} matches no module of the model{did_you_mean(n, [m for m in modules if m])}; "
                    "use names from model.named_modules()",
                )
    matched = [
        (name, mod)
        for name, mod in modules.items()
        if name
        and (op_types is None or type(mod).__name__ in op_types)
        and (op_names is None or name in op_names)
    ]
    if not exclude and op_names is not None and not matched:
        raise ConfigError(
            entry_field(i),
            f"op_names {op_names!r} and op_types {entry.get('op_types')!r} match no module together; "
            "check the types of the named modules",
        )
    return matched
