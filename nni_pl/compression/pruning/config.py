"""NNI 2.5 ``config_list``: validation and matching to the model's modules.

Each entry is a dict applied in order; a later entry overrides an earlier one for the modules both match, and an
``exclude`` entry removes the modules it matches. Keys:

* ``sparsity`` (alias ``sparsity_per_layer``): the fraction of each matched layer to prune, in [0, 1).
* ``total_sparsity``: the fraction of all matched layers together; layers may differ (global ranking).
* ``max_sparsity_per_layer``: a cap per layer, only with ``total_sparsity``.
* ``op_types``: module class names, or ``"default"`` for the pruner's default types.
* ``op_names``: module names as in ``model.named_modules()``; with ``op_types``, both must match.
* ``exclude``: ``True`` to leave the matched modules unpruned.

Example:
    >>> import torch
    >>> from nni_pl.compression.pruning.config import resolve
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3))
    >>> targets = resolve(model, [{"sparsity": 0.5, "op_types": ["Conv2d"]}, {"exclude": True, "op_names": ["2"]}])
    >>> [(t.name, t.sparsity) for t in targets]
    [('0', 0.5)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from nni_pl.compression._matching import check_entries, check_entry, entry_field, select_modules
from nni_pl.errors import ConfigError

__all__ = ["DEFAULT_OP_TYPES", "KNOWN_KEYS", "LayerTarget", "resolve", "validate_config_list"]

#: NNI's ``default_layers.weighted_modules`` for PyTorch: what ``op_types: ["default"]`` means for Level.
DEFAULT_OP_TYPES: tuple[str, ...] = (
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "Linear",
    "Bilinear",
    "PReLU",
    "Embedding",
    "EmbeddingBag",
)

KNOWN_KEYS: tuple[str, ...] = (
    "sparsity",
    "sparsity_per_layer",
    "total_sparsity",
    "max_sparsity_per_layer",
    "op_types",
    "op_names",
    "exclude",
)


@dataclass
class LayerTarget:
    """One module to prune, with the sparsity the config_list asks of it.

    Attributes:
        name: qualified module name.
        module: the module.
        sparsity: its own sparsity (for a ``total_sparsity`` entry: the total, as a uniform fallback).
        group_total: the ``total_sparsity`` of its entry, or ``None`` for a per-layer entry.
        max_sparsity: the per-layer cap (1.0 when none).
        entry: index of the config_list entry that set it; layers with the same ``entry`` and a ``group_total``
            share one global budget.
        extra: the entry's other accepted keys (e.g. ``rho`` for ADMM).
    """

    name: str
    module: nn.Module
    sparsity: float
    group_total: float | None = None
    max_sparsity: float = 1.0
    entry: int = 0
    extra: dict[str, Any] | None = None


_field = entry_field


def _fraction(i: int, entry: Mapping[str, Any], key: str, *, upper_inclusive: bool = False) -> float:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(_field(i, key), f"must be a number, got {value!r}")
    ok = 0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    if not ok:
        interval = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise ConfigError(_field(i, key), f"must be in {interval}, got {value!r}; give the fraction to prune")
    return float(value)


def validate_config_list(config_list: Any, *, extra_keys: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Check the structure of a config_list (without a model) and return it as a list of dicts.

    Raises:
        ConfigError: naming ``config_list[i].key`` for unknown keys, bad values or contradictory keys.
    """
    check_entries(config_list, "{'sparsity': 0.5, 'op_types': ['Conv2d']}")
    known = set(KNOWN_KEYS) | set(extra_keys)
    out = []
    for i, entry in enumerate(config_list):
        exclude = check_entry(i, entry, known)
        given = [k for k in ("sparsity", "sparsity_per_layer", "total_sparsity") if k in entry]
        if exclude:
            bad = given + [k for k in ("max_sparsity_per_layer",) if k in entry]
            if bad:
                raise ConfigError(
                    _field(i, bad[0]),
                    f"an exclude entry takes no sparsity, got {bad[0]}={entry[bad[0]]!r}; "
                    "drop it or set exclude to false",
                )
        else:
            if not given:
                raise ConfigError(
                    _field(i),
                    f"{dict(entry)!r} has no sparsity; add 'sparsity' (per layer) or 'total_sparsity', "
                    "or set 'exclude': True",
                )
            if len(given) > 1:
                raise ConfigError(
                    _field(i, given[1]),
                    f"contradicts {given[0]!r}: got {given[0]}={entry[given[0]]!r} and {given[1]}={entry[given[1]]!r}; "
                    "keep one of them",
                )
            _fraction(i, entry, given[0])
            if "max_sparsity_per_layer" in entry:
                if given[0] != "total_sparsity":
                    raise ConfigError(
                        _field(i, "max_sparsity_per_layer"),
                        f"only applies with 'total_sparsity', but the entry uses {given[0]!r}; "
                        "drop it or switch to total_sparsity",
                    )
                cap = _fraction(i, entry, "max_sparsity_per_layer", upper_inclusive=True)
                if cap < entry["total_sparsity"]:
                    raise ConfigError(
                        _field(i, "max_sparsity_per_layer"),
                        f"{cap!r} is below total_sparsity={entry['total_sparsity']!r}, which then cannot be "
                        "reached; raise the cap or lower the total",
                    )
        out.append(dict(entry))
    return out


def resolve(
    model: nn.Module,
    config_list: Sequence[Mapping[str, Any]],
    *,
    default_op_types: Sequence[str] = DEFAULT_OP_TYPES,
    supported_op_types: Sequence[str] | None = None,
    extra_keys: Iterable[str] = (),
) -> list[LayerTarget]:
    """Validate ``config_list`` against ``model`` and return the layers to prune, in module order.

    Args:
        model: the model.
        config_list: NNI-style config list.
        default_op_types: what ``"default"`` in ``op_types`` expands to.
        supported_op_types: module class names the pruner can prune (``None``: any module with a weight).
        extra_keys: further keys the pruner accepts in an entry (e.g. ``"rho"``).

    Raises:
        ConfigError: naming the entry, for any invalid entry, an ``op_names`` name the model lacks, a matched
            module the pruner cannot prune, or a config that selects nothing.
    """
    entries = validate_config_list(config_list, extra_keys=extra_keys)
    modules = dict(model.named_modules())
    extra_keys = tuple(extra_keys)
    chosen: dict[str, LayerTarget] = {}
    for i, entry in enumerate(entries):
        matched = select_modules(
            model, i, entry, default_op_types=default_op_types, supported_op_types=supported_op_types
        )
        if entry.get("exclude", False):
            for name, _ in matched:
                chosen.pop(name, None)
            continue
        total = entry.get("total_sparsity")
        sparsity = entry.get("sparsity", entry.get("sparsity_per_layer", total))
        for name, mod in matched:
            if supported_op_types is not None and type(mod).__name__ not in supported_op_types:
                raise ConfigError(
                    _field(i, "op_names"),
                    f"{name!r} is a {type(mod).__name__}, which this pruner cannot prune; "
                    f"supported: {list(supported_op_types)}",
                )
            if not isinstance(getattr(mod, "weight", None), nn.Parameter):
                raise ConfigError(
                    _field(i),
                    f"{name!r} ({type(mod).__name__}) has no weight to prune; exclude it or narrow op_types",
                )
            chosen[name] = LayerTarget(
                name=name,
                module=mod,
                sparsity=float(sparsity),
                group_total=None if total is None else float(total),
                max_sparsity=float(entry.get("max_sparsity_per_layer", 1.0)),
                entry=i,
                extra={k: entry[k] for k in extra_keys if k in entry},
            )
    order = {name: k for k, name in enumerate(modules)}
    return sorted(chosen.values(), key=lambda t: order[t.name])
