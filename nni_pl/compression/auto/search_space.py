"""The search space of an auto-compression experiment (NNI's ``AutoCompressionSearchSpaceGenerator``).

One top-level ``choice`` named ``algorithm_name`` holds one option per added algorithm (``_name`` is the pruner or
quantizer name); inside it, every config_list value and algorithm argument becomes a parameter whose name encodes
where it goes: ``config_list::<op_types>::<op_names>::<key>`` for pruners,
``config_list::<quant_types>::<op_types>::<op_names>::<key>`` for quantizers (lists joined with ``:``) and
``parameter::<argument>``. A plain value becomes a one-option ``choice``; a ``{"_type": ..., "_value": ...}`` stays
as it is. A dict value (``quant_bits: {"weight": 8, "output": 8}``) becomes one parameter per key
(``...::quant_bits::weight``): NNI nests a dict there, which nni-pl's search spaces do not allow below a ``_name``
option.

Example:
    >>> from nni_pl.compression.auto import AutoCompressionSearchSpaceGenerator
    >>> g = AutoCompressionSearchSpaceGenerator()
    >>> g.add_config("level", [{"sparsity": {"_type": "uniform", "_value": [0.01, 0.99]}, "op_types": ["default"]}])
    >>> g.dumps()["algorithm_name"]["_value"][0]
    {'_name': 'level', 'config_list::default::::sparsity': {'_type': 'uniform', '_value': [0.01, 0.99]}}
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from nni_pl.compression.auto.constants import PRUNER_DICT, QUANTIZER_DICT
from nni_pl.errors import ConfigError, did_you_mean

__all__ = ["AutoCompressionSearchSpaceGenerator", "parse_parameters"]

SEP = "::"


def _names(config: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = config.get(key, [])
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not all(isinstance(v, str) for v in value)
    ):
        raise ConfigError(f"{where}.{key}", f"got {value!r}; use a list of strings such as ['Conv2d']")
    for v in value:
        if ":" in v:
            raise ConfigError(
                f"{where}.{key}", f"{v!r} contains ':', which the search-space keys use as separator"
            )
    return list(value)


def _wrap(value: Any, name: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and "_type" in value:
        out[name] = dict(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _wrap(v, f"{name}{SEP}{k}", out)
    else:
        out[name] = {"_type": "choice", "_value": [value]}


class AutoCompressionSearchSpaceGenerator:
    """Build the nested search space: ``add_config(name, config_list, **algo_kwargs)`` per algorithm, then ``dumps()``.

    Example:
        >>> g = AutoCompressionSearchSpaceGenerator()
        >>> g.add_config("qat", [{"quant_types": ["weight"], "quant_bits": {"weight": 8}, "op_types": ["Linear"]}])
        >>> sorted(g.dumps()["algorithm_name"]["_value"][0])
        ['_name', 'config_list::weight::Linear::::quant_bits::weight']
    """

    def __init__(self) -> None:
        self.algorithm_choice_list: list[dict[str, Any]] = []

    def add_config(
        self, algorithm_name: str, config_list: Sequence[Mapping[str, Any]], **algo_kwargs: Any
    ) -> None:
        """Add one algorithm with its config_list (values may be search spaces) and extra arguments.

        Args:
            algorithm_name: a pruner (``level``, ``slim``, ``l1``, ``l2``, ``fpgm``, ``taylorfo``, ``apoz``,
                ``mean_activation``) or quantizer (``naive``, ``qat``, ``dorefa``, ``bnn``) name.
            config_list: its config_list; any value except ``op_types``/``op_names``/``quant_types`` may be
                ``{"_type": ..., "_value": ...}``.
            **algo_kwargs: more constructor arguments of the algorithm (plain values or search spaces), e.g.
                ``mode="dependency_aware"`` or ``training_batches={"_type": "choice", "_value": [1, 2]}``.

        Raises:
            ConfigError: an unknown algorithm, a config_list that is not a list of dicts, or two entries of one
                algorithm over the same layers (their keys would collide).
        """
        if algorithm_name in PRUNER_DICT:
            kind = "pruner"
        elif algorithm_name in QUANTIZER_DICT:
            kind = "quantizer"
        else:
            known = [*PRUNER_DICT, *QUANTIZER_DICT]
            raise ConfigError(
                "algorithm_name",
                f"got {algorithm_name!r}{did_you_mean(str(algorithm_name), known)}; use a pruner "
                f"{list(PRUNER_DICT)} or a quantizer {list(QUANTIZER_DICT)}",
            )
        if isinstance(config_list, Mapping) or not isinstance(config_list, Sequence) or not config_list:
            raise ConfigError("config_list", f"got {config_list!r:.80}; pass a non-empty list of dicts")
        option: dict[str, Any] = {"_name": algorithm_name}
        for i, raw in enumerate(config_list):
            where = f"config_list[{i}]"
            if not isinstance(raw, Mapping):
                raise ConfigError(where, f"got {type(raw).__name__}; each entry is a dict")
            config = copy.deepcopy(dict(raw))
            parts = []
            if kind == "quantizer":
                parts.append(":".join(_names(config, "quant_types", where)))
            parts += [
                ":".join(_names(config, "op_types", where)),
                ":".join(_names(config, "op_names", where)),
            ]
            prefix = SEP.join(["config_list", *parts])
            if any(k.startswith(prefix + SEP) for k in option):
                raise ConfigError(
                    where,
                    f"another entry of {algorithm_name!r} selects the same layers ({prefix!r}); merge the two",
                )
            rest = {k: v for k, v in config.items() if k not in ("quant_types", "op_types", "op_names")}
            if not rest:
                rest = {"exclude": False}  # an entry with only its selection still has to reach the trial
            for key, value in rest.items():
                _wrap(value, f"{prefix}{SEP}{key}", option)
        for name, value in algo_kwargs.items():
            _wrap(value, f"parameter{SEP}{name}", option)
        self.algorithm_choice_list = [o for o in self.algorithm_choice_list if o["_name"] != algorithm_name]
        self.algorithm_choice_list.append(option)

    def dumps(self) -> dict[str, Any]:
        """The search space as a dict (``{"algorithm_name": {"_type": "choice", "_value": [...]}}``)."""
        if not self.algorithm_choice_list:
            raise ConfigError("", "no algorithm added; call add_config(name, config_list) first")
        return {"algorithm_name": {"_type": "choice", "_value": copy.deepcopy(self.algorithm_choice_list)}}

    def dump_json(self) -> str:
        """:meth:`dumps` as JSON text (for a search-space file)."""
        return json.dumps(self.dumps(), indent=2)

    @classmethod
    def loads(cls, search_space: Mapping[str, Any]) -> AutoCompressionSearchSpaceGenerator:
        """A generator holding the options of a space made by :meth:`dumps`."""
        try:
            options = search_space["algorithm_name"]["_value"]
        except (KeyError, TypeError):
            raise ConfigError(
                "search_space", "is not an auto-compression space: it needs an 'algorithm_name' choice"
            ) from None
        g = cls()
        g.algorithm_choice_list = copy.deepcopy(list(options))
        return g


def _set_nested(config: dict[str, Any], keys: list[str], value: Any) -> None:
    for k in keys[:-1]:
        config = config.setdefault(k, {})
    config[keys[-1]] = value


def parse_parameters(parameters: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """A trial's parameters back to ``(algorithm name, config_list, algorithm arguments)``.

    Example:
        >>> parse_parameters({"algorithm_name": {"_name": "l1", "config_list::Conv2d::::sparsity": 0.5,
        ...                                      "parameter::mode": "normal"}})
        ('l1', [{'sparsity': 0.5, 'op_types': ['Conv2d']}], {'mode': 'normal'})
    """
    try:
        chosen = dict(parameters["algorithm_name"])
        name = chosen.pop("_name")
    except (KeyError, TypeError):
        raise ConfigError(
            "parameters",
            f"got {dict(parameters)!r:.120}; an auto-compression trial needs the 'algorithm_name' choice made by "
            "AutoCompressionSearchSpaceGenerator.dumps()",
        ) from None
    quantizer = name in QUANTIZER_DICT
    entries: dict[tuple[str, ...], dict[str, Any]] = {}
    kwargs: dict[str, Any] = {}
    for key, value in chosen.items():
        parts = key.split(SEP)
        if parts[0] == "parameter" and len(parts) >= 2:
            if len(parts) == 2:
                kwargs[parts[1]] = value
            else:
                _set_nested(kwargs, parts[1:], value)
            continue
        head = 4 if quantizer else 3
        if parts[0] != "config_list" or len(parts) < head + 1:
            raise ConfigError(
                f"parameters[{key!r}]", "is not a key made by AutoCompressionSearchSpaceGenerator"
            )
        selection = tuple(parts[1:head])
        _set_nested(entries.setdefault(selection, {}), parts[head:], value)
    config_list = []
    for selection, config in entries.items():
        fields = ("quant_types", "op_types", "op_names") if quantizer else ("op_types", "op_names")
        for field, joined in zip(fields, selection, strict=True):
            if joined:
                config[field] = joined.split(":")
        if config.get("exclude") is False:
            del config["exclude"]
        config_list.append(config)
    return name, config_list, kwargs
