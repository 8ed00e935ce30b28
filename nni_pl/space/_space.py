"""The :class:`SearchSpace`: parse NNI's JSON/YAML format, validate it, sample, enumerate, test membership."""

from __future__ import annotations

import itertools
import json
import math
import numbers
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nni_pl.errors import SearchSpaceError, did_you_mean
from nni_pl.space._params import (
    ALL_TYPES,
    NUMERIC_TYPES,
    Branch,
    Choice,
    Param,
    _Numeric,
    canonical_json,
    value_names,
)

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Dimension", "SearchSpace"]

Key = tuple[Any, ...]
"""A flat key: ``("lr",)`` for a top-level parameter, ``("layer", "conv", "kernel_size")`` inside a branch."""


@dataclass(frozen=True)
class Dimension:
    """One searched parameter of a (possibly nested) space, flattened for tuners.

    Attributes:
        key: path to the parameter: top-level name, then (branch ``_name``, key) pairs.
        param: the parameter.
        parent: key of the ``choice`` that must select ``parent_index`` for this one to be active.
    """

    key: Key
    param: Param
    parent: Key | None = None
    parent_index: int | None = None

    @property
    def name(self) -> str:
        return "/".join(str(k) for k in self.key)


# ------------------------------------------------------------------------------------------------
# parsing
# ------------------------------------------------------------------------------------------------

_SPEC_KEYS = ("_type", "_value")


def _fmt(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _join(path: str, key: Any) -> str:
    return f"{path}/{key}" if path else str(key)


def _number(path: str, type_name: str, what: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SearchSpaceError(
            path,
            f"{type_name} {what} must be a number",
            f"got {_fmt(value)} ({type(value).__name__})",
            "write it as a plain number, e.g. 0.001 or 1e-3",
        )
    if hasattr(value, "item"):  # numpy scalars given through the Python API
        value = value.item()
    if not math.isfinite(value):
        raise SearchSpaceError(
            path, f"{type_name} {what} must be finite", f"got {value}", "use a finite number"
        )
    return value


def _parse_numeric(path: str, type_name: str, values: list[Any]) -> Param:
    cls, n = NUMERIC_TYPES[type_name]
    names = value_names(type_name)
    if len(values) != n:
        hint = f"give [{', '.join(names)}]"
        if type_name == "randint" and len(values) == 1:
            hint += f" (the one-value form [upper] is NNI v1's; write [0, {_fmt(values[0])}])"
        raise SearchSpaceError(
            path, f"{type_name} takes {n} values", f"got {len(values)}: {_fmt(values)}", hint
        )
    nums = [_number(path, type_name, name, v) for name, v in zip(names, values)]

    if type_name == "randint":
        ints = []
        for name, v in zip(names, nums):
            if isinstance(v, float):
                if not v.is_integer():
                    raise SearchSpaceError(
                        path,
                        "randint bounds must be integers",
                        f"got {name}={v}",
                        "use whole numbers, or quniform for fractional steps",
                    )
                v = int(v)
            ints.append(v)
        low, high = ints
        if low >= high:
            raise SearchSpaceError(
                path,
                "randint needs `low < high` (the upper bound is exclusive)",
                f"got [{low}, {high}]",
                f"for the single value {low} write [{low}, {low + 1}]" if low == high else "swap the bounds",
            )
        return cls(low, high)

    if type_name in ("uniform", "quniform", "loguniform", "qloguniform"):
        low, high = nums[0], nums[1]
        if low > high:
            raise SearchSpaceError(
                path, f"{type_name} needs `low <= high`", f"got low={low}, high={high}", "swap the bounds"
            )
        if type_name in ("loguniform", "qloguniform") and low <= 0:
            raise SearchSpaceError(
                path,
                f"{type_name} needs positive bounds (it samples in log space)",
                f"got low={low}",
                "use a positive low, or uniform",
            )
    else:
        sigma = nums[1]
        if sigma <= 0:
            raise SearchSpaceError(
                path,
                f"{type_name} needs `sigma > 0`",
                f"got sigma={sigma}",
                "use a positive standard deviation",
            )
    if n == 3 and nums[2] <= 0:
        raise SearchSpaceError(path, f"{type_name} needs `q > 0`", f"got q={nums[2]}", "use a positive step")
    return cls(*nums)


def _check_json(path: str, value: Any, where: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise SearchSpaceError(
            path,
            f"{where} must be JSON-serialisable",
            f"got {value!r} ({type(value).__name__})",
            "use numbers, strings, booleans, null, lists or dicts",
        ) from e


def _contains_spec(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "_type" in value or any(_contains_spec(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_spec(v) for v in value)
    return False


def _parse_choice(path: str, options: list[Any]) -> Choice:
    if not options:
        raise SearchSpaceError(
            path, "choice needs at least one option", "got []", "list the options, e.g. [16, 32, 64]"
        )
    parsed: list[Any] = []
    names: set[str] = set()
    for i, opt in enumerate(options):
        if isinstance(opt, Mapping) and "_name" in opt:
            name = opt["_name"]
            _check_json(f"{path}[{i}]", name, "a nested option's _name")
            if canonical_json(name) in names:
                raise SearchSpaceError(
                    path,
                    "nested options need distinct _name values",
                    f"got _name={_fmt(name)} twice",
                    "rename one of them",
                )
            names.add(canonical_json(name))
            bpath = _join(path, name)
            params: dict[str, Any] = {}
            for key, sub in opt.items():
                if key == "_name":
                    continue
                if isinstance(sub, Mapping) and "_type" in sub:
                    params[key] = _parse_param(_join(bpath, key), sub)
                else:
                    if _contains_spec(sub):
                        raise SearchSpaceError(
                            _join(bpath, key),
                            "nested parameters must sit directly under a _name option",
                            f"got {_fmt(sub)}",
                            "flatten it",
                        )
                    _check_json(_join(bpath, key), sub, "a constant in a nested option")
                    params[key] = sub
            parsed.append(Branch(name, params))
        else:
            if _contains_spec(opt):
                raise SearchSpaceError(
                    f"{path}[{i}]",
                    "an option holding nested parameters needs a '_name' key",
                    f"got {_fmt(opt)}",
                    'add "_name": "<branch name>" to it',
                )
            _check_json(f"{path}[{i}]", opt, "choice options")
            parsed.append(opt)
    return Choice(tuple(parsed))


def _parse_param(path: str, spec: Any) -> Param:
    if isinstance(spec, Param):
        return spec
    if not isinstance(spec, Mapping):
        raise SearchSpaceError(
            path,
            "each parameter must be a dict with '_type' and '_value'",
            f"got {_fmt(spec)}",
            'write {"_type": "choice", "_value": [...]}',
        )
    for key in spec:
        if key not in _SPEC_KEYS:
            raise SearchSpaceError(
                path,
                f"unknown key {key!r}{did_you_mean(str(key), _SPEC_KEYS)}",
                f"got {_fmt(dict(spec))}",
                "a parameter has only '_type' and '_value'",
            )
    for key in _SPEC_KEYS:
        if key not in spec:
            raise SearchSpaceError(
                path,
                f"missing {key!r}",
                f"got {_fmt(dict(spec))}",
                'write {"_type": "choice", "_value": [...]}',
            )
    type_name, values = spec["_type"], spec["_value"]
    if type_name not in ALL_TYPES:
        raise SearchSpaceError(
            path,
            f"unknown _type {type_name!r}{did_you_mean(str(type_name), ALL_TYPES)}",
            "",
            f"use one of {', '.join(ALL_TYPES)}",
        )
    if not isinstance(values, (list, tuple)):
        raise SearchSpaceError(
            path, f"_value of {type_name} must be a list", f"got {_fmt(values)}", "write e.g. [0.1, 1.0]"
        )
    values = list(values)
    if type_name == "choice":
        return _parse_choice(path, values)
    return _parse_numeric(path, type_name, values)


# ------------------------------------------------------------------------------------------------
# helpers shared with Choice (grids and branch membership)
# ------------------------------------------------------------------------------------------------


def _grid_of_mapping(params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    keys = list(params)
    grids = []
    for k in keys:
        p = params[k]
        grids.append(p.grid() if isinstance(p, Param) else [json.loads(canonical_json(p))])
    for combo in itertools.product(*grids):
        yield dict(zip(keys, combo))


def _branch_problem(branch: Branch, value: Mapping[str, Any], path: str) -> str | None:
    extra = set(value) - set(branch.params) - {"_name"}
    if extra:
        return f"unexpected key(s) {sorted(map(str, extra))} in option {branch.name!r}"
    for key, p in branch.params.items():
        if key not in value:
            return f"missing key {key!r} of option {branch.name!r}"
        if isinstance(p, Param):
            if not p.contains(value[key]):
                return f"{_join(path, key)}={_fmt(value[key])} is outside {_fmt(p.to_json())}"
        elif canonical_json(p) != canonical_json(value[key]):
            return f"{_join(path, key)} must be the constant {_fmt(p)}"
    return None


# ------------------------------------------------------------------------------------------------
# the space
# ------------------------------------------------------------------------------------------------


class SearchSpace(Mapping[str, Param]):
    """An immutable, validated NNI search space.

    Build one from NNI's JSON form (a dict, JSON/YAML text or a file), then sample, enumerate or check
    parameter sets. The space maps each top-level name to its :class:`Param`.

    Example:
        >>> import numpy as np
        >>> space = SearchSpace.parse({
        ...     "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
        ...     "layer": {"_type": "choice", "_value": [
        ...         {"_name": "empty"},
        ...         {"_name": "conv", "kernel_size": {"_type": "choice", "_value": [1, 3, 5]}}]},
        ... })
        >>> params = space.sample(np.random.default_rng(0))
        >>> space.contains(params)
        True
        >>> SearchSpace.parse(space.to_json()) == space
        True
        >>> [d.name for d in space.dimensions()]
        ['lr', 'layer', 'layer/conv/kernel_size']
    """

    __slots__ = ("_dims", "_params")

    def __init__(self, params: Mapping[str, Param] | None = None) -> None:
        self._params: dict[str, Param] = dict(params or {})
        for name, p in self._params.items():
            if not isinstance(p, Param):
                raise SearchSpaceError(
                    str(name),
                    "must be a Param",
                    f"got {type(p).__name__}",
                    "use SearchSpace.parse() for NNI JSON",
                )
        self._dims: tuple[Dimension, ...] | None = None

    # --- construction -----------------------------------------------------------------------------
    @classmethod
    def parse(cls, source: Mapping[str, Any] | str | bytes | SearchSpace) -> SearchSpace:
        """Parse NNI's search-space format from a dict or from JSON/YAML text."""
        from nni_pl._files import load_structured

        if isinstance(source, SearchSpace):
            return source
        if isinstance(source, bytes):
            source = source.decode("utf-8")
        if isinstance(source, str):
            try:
                source = load_structured(source)
            except ValueError as e:
                raise SearchSpaceError(
                    "", "is neither valid JSON nor YAML", str(e), "check the syntax"
                ) from e
            if source is None:
                source = {}
        if not isinstance(source, Mapping):
            raise SearchSpaceError(
                "",
                "must be a dict of parameter name -> {_type, _value}",
                f"got {type(source).__name__} {_fmt(source)[:80]}",
                "an empty space is {}",
            )
        params: dict[str, Param] = {}
        for name, spec in source.items():
            if not isinstance(name, str) or not name:
                raise SearchSpaceError(
                    str(name), "parameter names must be non-empty strings", f"got {name!r}", "quote the name"
                )
            params[name] = _parse_param(name, spec)
        return cls(params)

    @classmethod
    def load(cls, path: str | Path) -> SearchSpace:
        """Read a search space from a ``.json`` or ``.yml``/``.yaml`` file."""
        from nni_pl._files import load_structured_file

        path = Path(path)
        try:
            data = load_structured_file(path)
        except FileNotFoundError as e:
            raise SearchSpaceError(
                "",
                "file not found",
                f"got {str(path)!r}",
                "check the path (relative paths resolve against the config file)",
            ) from e
        except ValueError as e:
            raise SearchSpaceError(
                "", f"file {str(path)!r} is neither valid JSON nor YAML", str(e), "check the syntax"
            ) from e
        return cls.parse({} if data is None else data)

    # --- serialisation -------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """NNI's JSON form; ``SearchSpace.parse(space.to_json()) == space``."""
        return {name: p.to_json() for name, p in self._params.items()}

    def dumps(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_json(), indent=indent)

    def dump(self, path: str | Path) -> None:
        """Write the space as JSON, or YAML when ``path`` ends in ``.yml``/``.yaml``."""
        from nni_pl._files import dump_yaml

        path = Path(path)
        text = dump_yaml(self.to_json()) if path.suffix in (".yml", ".yaml") else self.dumps() + "\n"
        path.write_text(text, encoding="utf-8")

    # --- Mapping protocol ------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Param:
        return self._params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SearchSpace):
            return NotImplemented
        return canonical_json(self.to_json()) == canonical_json(other.to_json())

    def __hash__(self) -> int:
        return hash(canonical_json(self.to_json()))

    def __repr__(self) -> str:
        return f"SearchSpace({self.to_json()!r})"

    # --- sampling and enumeration ------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One parameter set drawn from the prior (NNI's formulas) with a seeded generator."""
        return {name: p.sample(rng) for name, p in self._params.items()}

    @property
    def is_finite(self) -> bool:
        return all(p.is_finite for p in self._params.values())

    @property
    def size(self) -> float:
        """Number of distinct parameter sets (``math.inf`` for continuous spaces)."""
        n = 1.0
        for p in self._params.values():
            n *= p.size
        return n

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every parameter set of a finite space, in a fixed order (choices, randint, q-uniform types)."""
        for name, p in self._params.items():
            if not p.is_finite:
                raise SearchSpaceError(
                    name,
                    f"{p.TYPE} has infinitely many values and cannot be enumerated",
                    "",
                    "use choice, randint or quniform",
                )
        return _grid_of_mapping(self._params)

    # --- membership ------------------------------------------------------------------------------------
    def check(self, params: Mapping[str, Any]) -> None:
        """Raise :class:`SearchSpaceError` naming the first parameter of ``params`` that is not in the space."""
        if not isinstance(params, Mapping):
            raise SearchSpaceError(
                "", "a parameter set must be a dict", f"got {_fmt(params)}", "pass {name: value}"
            )
        extra = [k for k in params if k not in self._params]
        if extra:
            hint = did_you_mean(str(extra[0]), map(str, self._params))
            raise SearchSpaceError(
                str(extra[0]),
                f"is not in the search space{hint}",
                f"got {_fmt(params[extra[0]])}",
                f"known: {', '.join(self._params)}",
            )
        for name, p in self._params.items():
            if name not in params:
                raise SearchSpaceError(
                    name, "is missing from the parameter set", "", "give a value for every parameter"
                )
            value = params[name]
            if not p.contains(value):
                detail = ""
                if isinstance(p, Choice):
                    i = p.index_of(value)
                    opt = p.options[i] if i is not None else None
                    if isinstance(opt, Branch):
                        detail = _branch_problem(opt, value, _join(name, opt.name)) or ""
                raise SearchSpaceError(
                    name,
                    f"value is outside {_fmt(p.to_json())}",
                    f"got {_fmt(value)}" + (f" ({detail})" if detail else ""),
                    "pick a value inside the space",
                )

    def contains(self, params: Mapping[str, Any]) -> bool:
        try:
            self.check(params)
        except SearchSpaceError:
            return False
        return True

    # --- the flat view tuners use --------------------------------------------------------------------
    def dimensions(self) -> tuple[Dimension, ...]:
        """All searched parameters, parents before children, with the condition that activates each."""
        if self._dims is None:
            dims: list[Dimension] = []

            def walk(
                params: Mapping[str, Any], prefix: Key, parent: Key | None, parent_index: int | None
            ) -> None:
                for name, p in params.items():
                    if not isinstance(p, Param):
                        continue
                    key = (*prefix, name)
                    dims.append(Dimension(key, p, parent, parent_index))
                    if isinstance(p, Choice):
                        for i, opt in enumerate(p.options):
                            if isinstance(opt, Branch):
                                walk(opt.params, (*key, opt.name), key, i)

            walk(self._params, (), None, None)
            self._dims = tuple(dims)
        return self._dims

    def flatten(self, params: Mapping[str, Any]) -> dict[Key, Any]:
        """Nested parameters -> ``{key: value}`` of the active dimensions; a choice's value is its option index."""
        flat: dict[Key, Any] = {}

        def walk(spec: Mapping[str, Any], values: Mapping[str, Any], prefix: Key) -> None:
            for name, p in spec.items():
                if not isinstance(p, Param) or name not in values:
                    continue
                key = (*prefix, name)
                if isinstance(p, Choice):
                    i = p.index_of(values[name])
                    if i is None:
                        raise SearchSpaceError(
                            "/".join(map(str, key)),
                            "value is not one of the options",
                            f"got {_fmt(values[name])}",
                            "",
                        )
                    flat[key] = i
                    opt = p.options[i]
                    if isinstance(opt, Branch):
                        walk(opt.params, values[name], (*key, opt.name))
                else:
                    flat[key] = values[name]

        walk(self._params, params, ())
        return flat

    def assemble(self, flat: Mapping[Key, Any]) -> dict[str, Any]:
        """Inverse of :meth:`flatten`: build the nested parameter set from flat values (choice -> index)."""

        def build(spec: Mapping[str, Any], prefix: Key) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for name, p in spec.items():
                key = (*prefix, name)
                if not isinstance(p, Param):
                    out[name] = json.loads(canonical_json(p))
                elif isinstance(p, Choice):
                    opt = p.options[int(flat[key])]
                    if isinstance(opt, Branch):
                        out[name] = {"_name": opt.name, **build(opt.params, (*key, opt.name))}
                    else:
                        out[name] = json.loads(canonical_json(opt))
                else:
                    out[name] = flat[key]
            return out

        return build(self._params, ())

    def numeric_params(self) -> Iterator[tuple[str, _Numeric]]:
        for name, p in self._params.items():
            if isinstance(p, _Numeric):
                yield name, p
