"""NNI 2.5 quantizer ``config_list``: validation, global dtype/scheme settings, matching to the model's modules.

Each entry is a dict applied in order; a later entry overrides an earlier one for the modules both match, and an
``exclude`` entry removes the modules it matches. Keys:

* ``quant_types``: a list drawn from ``"weight"``, ``"input"``, ``"output"`` (output = the module's activation).
* ``quant_bits``: an int for every listed type, or a dict per type (``{"weight": 8, "output": 4}``); 1 to 16.
* ``quant_dtype``: ``"int"`` (signed) or ``"uint"``, or a dict per type.
* ``quant_scheme``: ``"per_tensor_affine"``, ``"per_tensor_symmetric"``, ``"per_channel_affine"`` or
  ``"per_channel_symmetric"`` (per-channel only for weights), or a dict per type.
* ``quant_start_step``: QAT only quantizes after this many optimizer steps (default 0).
* ``op_types``: module class names (``"default"``: the weighted layers), ``op_names``: module names as in
  ``model.named_modules()``; with both, both must match. ``exclude: True`` leaves the matched modules alone.

A type's dtype and scheme come from its entry, else from :func:`set_quant_scheme_dtype`, else from NNI's defaults
(weights ``int`` ``per_tensor_affine``; inputs and outputs ``uint`` ``per_tensor_affine``).

Example:
    >>> import torch
    >>> from nni_pl.compression.quantization.config import resolve
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
    >>> [(t.name, t.settings["weight"].bits) for t in resolve(model, [{"quant_types": ["weight"], "quant_bits": 8,
    ...                                                               "op_types": ["Conv2d"]}])]
    [('0', 8)]
    >>> resolve(model, [{"quant_types": ["weight"], "quant_bits": 8, "op_types": ["ReLU"]}])
    Traceback (most recent call last):
    ...
    nni_pl.errors.ConfigError: config field 'config_list[0].quant_types': 'weight' needs a module with a weight, but '1' is a ReLU; quantize its 'output' instead or narrow op_types/op_names
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nni_pl.compression._matching import check_entries, check_entry, entry_field, select_modules, str_list
from nni_pl.compression.pruning.config import DEFAULT_OP_TYPES
from nni_pl.errors import ConfigError, did_you_mean

__all__ = [
    "DTYPES",
    "KNOWN_KEYS",
    "QUANT_TYPES",
    "SCHEMES",
    "LayerQuantSetting",
    "QuantTarget",
    "TensorQuantSetting",
    "reset_quant_scheme_dtype",
    "resolve",
    "set_quant_scheme_dtype",
    "validate_config_list",
]

QUANT_TYPES: tuple[str, ...] = ("weight", "input", "output")
DTYPES: tuple[str, ...] = ("int", "uint")
SCHEMES: tuple[str, ...] = (
    "per_tensor_affine",
    "per_tensor_symmetric",
    "per_channel_affine",
    "per_channel_symmetric",
)
KNOWN_KEYS: tuple[str, ...] = (
    "quant_types",
    "quant_bits",
    "quant_dtype",
    "quant_scheme",
    "quant_start_step",
    "op_types",
    "op_names",
    "exclude",
)
MAX_BITS = 16

_NNI_DEFAULTS: dict[str, tuple[str, str]] = {
    "weight": ("per_tensor_affine", "int"),
    "input": ("per_tensor_affine", "uint"),
    "output": ("per_tensor_affine", "uint"),
}
_global: dict[str, tuple[str, str]] = dict(_NNI_DEFAULTS)


def set_quant_scheme_dtype(
    quant_type: str, new_scheme: str | None = None, new_dtype: str | None = None
) -> None:
    """NNI's global setter: the scheme and dtype every quantizer built afterwards uses for ``quant_type``.

    A ``quant_scheme``/``quant_dtype`` in a config_list entry still wins for the modules it matches.

    Example:
        >>> from nni_pl.compression.quantization.config import set_quant_scheme_dtype, reset_quant_scheme_dtype
        >>> set_quant_scheme_dtype("weight", "per_channel_symmetric", "int")
        >>> reset_quant_scheme_dtype()
    """
    if quant_type not in QUANT_TYPES:
        raise ConfigError("quant_type", f"must be one of {list(QUANT_TYPES)}, got {quant_type!r}")
    scheme, dtype = _global[quant_type]
    if new_scheme is not None:
        _check_scheme("new_scheme", quant_type, new_scheme)
        scheme = new_scheme
    if new_dtype is not None:
        if new_dtype not in DTYPES:
            raise ConfigError("new_dtype", f"must be one of {list(DTYPES)}, got {new_dtype!r}")
        dtype = new_dtype
    _global[quant_type] = (scheme, dtype)


def reset_quant_scheme_dtype() -> None:
    """Back to NNI's defaults (undoes every :func:`set_quant_scheme_dtype`)."""
    _global.clear()
    _global.update(_NNI_DEFAULTS)


def _check_scheme(where: str, quant_type: str, scheme: Any) -> None:
    if scheme not in SCHEMES:
        raise ConfigError(
            where,
            f"must be one of {list(SCHEMES)}, got {scheme!r}{did_you_mean(str(scheme), SCHEMES)}",
        )
    if scheme.startswith("per_channel") and quant_type != "weight":
        raise ConfigError(
            where,
            f"{scheme!r} applies to weights only, got it for {quant_type!r}; use per_tensor_affine or "
            "per_tensor_symmetric for inputs and outputs",
        )


@dataclass(frozen=True)
class TensorQuantSetting:
    """How one tensor kind (weight, input or output) of one layer is quantized.

    Attributes:
        bits: bit width, 1 to 16.
        dtype: ``"int"`` (signed range) or ``"uint"``.
        scheme: one of :data:`SCHEMES`.
    """

    bits: int
    dtype: str
    scheme: str

    @property
    def per_channel(self) -> bool:
        return self.scheme.startswith("per_channel")

    @property
    def symmetric(self) -> bool:
        return self.scheme.endswith("symmetric")


#: One layer's settings by tensor kind: ``{"weight": TensorQuantSetting(...), "output": ...}``.
LayerQuantSetting = dict


@dataclass
class QuantTarget:
    """One module to quantize, with what its config_list entry asks.

    Attributes:
        name: qualified module name.
        module: the module.
        settings: per quantized tensor kind, its :class:`TensorQuantSetting`.
        quant_start_step: steps before quantization starts (QAT).
        entry: index of the config_list entry that set it.
        config: the entry itself (NNI's ``wrapper.config``).
    """

    name: str
    module: nn.Module
    settings: dict[str, TensorQuantSetting]
    quant_start_step: int = 0
    entry: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def quant_types(self) -> list[str]:
        return list(self.settings)


def _per_type(i: int, entry: Mapping[str, Any], key: str, types: Sequence[str]) -> dict[str, Any]:
    """A key given as one value for every type or as a dict per type -> a dict over ``types``."""
    value = entry[key]
    if isinstance(value, Mapping):
        for t in value:
            if t not in types:
                raise ConfigError(
                    entry_field(i, key),
                    f"names {t!r}, which is not in quant_types {list(types)}; key the dict by the quantized "
                    "types or add it to quant_types",
                )
        missing = [t for t in types if t not in value]
        if missing and key == "quant_bits":
            raise ConfigError(
                entry_field(i, key),
                f"{dict(value)!r} gives no bits for {missing}; give every type in quant_types its bits, e.g. "
                f"{ {t: 8 for t in types} }",
            )
        return {t: value[t] for t in types if t in value}
    return {t: value for t in types}


def validate_config_list(config_list: Any, *, extra_keys: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Check the structure of a quantizer config_list (without a model) and return it as a list of dicts.

    Raises:
        ConfigError: naming ``config_list[i].key``, echoing the value and saying what is allowed.
    """
    check_entries(config_list, "{'quant_types': ['weight'], 'quant_bits': 8, 'op_types': ['Conv2d']}")
    known = set(KNOWN_KEYS) | set(extra_keys)
    out = []
    for i, entry in enumerate(config_list):
        exclude = check_entry(i, entry, known)
        if exclude:
            out.append(dict(entry))
            continue
        types = str_list(i, entry, "quant_types")
        if types is None:
            raise ConfigError(
                entry_field(i),
                f"{dict(entry)!r} has no quant_types; add e.g. 'quant_types': ['weight'] or set 'exclude': True",
            )
        for t in types:
            if t not in QUANT_TYPES:
                raise ConfigError(
                    entry_field(i, "quant_types"),
                    f"{t!r} is not a quant type{did_you_mean(t, QUANT_TYPES)}; allowed: {list(QUANT_TYPES)}",
                )
        if len(set(types)) != len(types):
            raise ConfigError(entry_field(i, "quant_types"), f"lists a type twice: {types!r}")
        if "quant_bits" not in entry:
            raise ConfigError(
                entry_field(i),
                f"{dict(entry)!r} has no quant_bits; add e.g. 'quant_bits': 8 (or a dict per quant type)",
            )
        for t, bits in _per_type(i, entry, "quant_bits", types).items():
            if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
                raise ConfigError(
                    entry_field(i, "quant_bits"),
                    f"bits for {t!r} must be an integer from 1 to {MAX_BITS}, got {bits!r}",
                )
        if "quant_dtype" in entry:
            for t, dtype in _per_type(i, entry, "quant_dtype", types).items():
                if dtype not in DTYPES:
                    raise ConfigError(
                        entry_field(i, "quant_dtype"),
                        f"dtype for {t!r} must be one of {list(DTYPES)}, got {dtype!r}",
                    )
        if "quant_scheme" in entry:
            for t, scheme in _per_type(i, entry, "quant_scheme", types).items():
                _check_scheme(entry_field(i, "quant_scheme"), t, scheme)
        if "quant_start_step" in entry:
            step = entry["quant_start_step"]
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise ConfigError(
                    entry_field(i, "quant_start_step"),
                    f"must be a non-negative integer (optimizer steps), got {step!r}",
                )
        out.append(dict(entry))
    return out


def resolve(
    model: nn.Module,
    config_list: Sequence[Mapping[str, Any]],
    *,
    default_op_types: Sequence[str] = DEFAULT_OP_TYPES,
    supported_op_types: Sequence[str] | None = None,
    supported_quant_types: Sequence[str] = QUANT_TYPES,
    defaults: Mapping[str, tuple[str, str]] | None = None,
    extra_keys: Iterable[str] = (),
) -> list[QuantTarget]:
    """Validate ``config_list`` against ``model`` and return the modules to quantize, in module order.

    Args:
        model: the model.
        config_list: NNI-style quantizer config list.
        default_op_types: what ``"default"`` in ``op_types`` expands to.
        supported_op_types: module class names the quantizer handles (``None``: any).
        supported_quant_types: the tensor kinds the quantizer quantizes.
        defaults: the quantizer's own ``(scheme, dtype)`` per kind, used when neither the entry nor
            :func:`set_quant_scheme_dtype` set one (e.g. LSQ quantizes activations signed).
        extra_keys: further keys the quantizer accepts.

    Raises:
        ConfigError: naming the entry and key, for any invalid entry or a module that cannot take what it asks.
    """
    entries = validate_config_list(config_list, extra_keys=extra_keys)
    chosen: dict[str, QuantTarget] = {}
    for i, entry in enumerate(entries):
        matched = select_modules(
            model,
            i,
            entry,
            default_op_types=default_op_types,
            supported_op_types=supported_op_types,
            what="quantized by this quantizer",
        )
        if entry.get("exclude", False):
            for name, _ in matched:
                chosen.pop(name, None)
            continue
        types = list(entry["quant_types"])
        for t in types:
            if t not in supported_quant_types:
                raise ConfigError(
                    entry_field(i, "quant_types"),
                    f"{t!r} is not quantized by this quantizer; it quantizes {list(supported_quant_types)}",
                )
        bits = _per_type(i, entry, "quant_bits", types)
        dtypes = _per_type(i, entry, "quant_dtype", types) if "quant_dtype" in entry else {}
        schemes = _per_type(i, entry, "quant_scheme", types) if "quant_scheme" in entry else {}
        for name, mod in matched:
            if "weight" in types and not isinstance(getattr(mod, "weight", None), nn.Parameter):
                raise ConfigError(
                    entry_field(i, "quant_types"),
                    f"'weight' needs a module with a weight, but {name!r} is a {type(mod).__name__}; "
                    "quantize its 'output' instead or narrow op_types/op_names",
                )
            settings = {}
            for t in types:
                scheme, dtype = _global[t]
                if defaults and t in defaults and _global[t] == _NNI_DEFAULTS[t]:
                    scheme, dtype = defaults[t]
                settings[t] = TensorQuantSetting(int(bits[t]), dtypes.get(t, dtype), schemes.get(t, scheme))
            chosen[name] = QuantTarget(
                name=name,
                module=mod,
                settings=settings,
                quant_start_step=int(entry.get("quant_start_step", 0)),
                entry=i,
                config=dict(entry),
            )
    order = {name: k for k, (name, _) in enumerate(model.named_modules())}
    return sorted(chosen.values(), key=lambda t: order[t.name])
