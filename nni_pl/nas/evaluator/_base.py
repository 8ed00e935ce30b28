"""The evaluator contract: score one model inside a trial, travel to the trial as a JSON config.

An evaluator is a plain object with ``evaluate(model) -> metric``; it reports through the trial SDK
(:func:`nni_pl.report_intermediate_result`, :func:`nni_pl.report_final_result`). It reaches a trial process
as ``to_config()`` -> ``{"class": "module:Qual", "kwargs": {...}}``, rebuilt there by :meth:`Evaluator.from_config`:
classes and functions travel as import paths, data as import paths of factories, values as JSON, and objects
built by an :func:`nni_pl.trace`'d class (NNI's ``pl.DataLoader(...)``, ``pl.Trainer(...)``) by their arguments.

An argument may itself be a choice: a :class:`nni_pl.nas.ValueChoice` (or arithmetic on choices) or an
``nni_pl.space`` spec such as ``{"_type": "loguniform", "_value": [1e-4, 1e-1]}``. Such arguments join the
architecture's search space (:meth:`Evaluator.search_space`) and :meth:`Evaluator.freeze` resolves them.
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from nni_pl._imports import import_object  # re-exported: the evaluator's public name for it
from nni_pl.errors import ConfigError, NniPlError
from nni_pl.serialization import (
    SerializationError,
    from_jsonable,
    is_serialized_form,
    is_traced,
    to_jsonable,
)

__all__ = [
    "Evaluator",
    "EvaluatorError",
    "config_search_space",
    "freeze_config",
    "import_object",
    "import_path_of",
    "is_choice",
    "resolve_factory",
]

log = logging.getLogger(__name__)

_IMPORT = "__import__"  # {"__import__": "module:Qual"}: a class or function
_CHOICE = "__choice__"  # {"__choice__": {"labels": [...], "table": [[values, value], ...]}}: a ValueChoice expression


class EvaluatorError(NniPlError, ValueError):
    """An evaluator argument cannot be used (or cannot travel to a trial process)."""


def import_path_of(obj: Any, field: str) -> str:
    """``"module:QualName"`` of a module-level class or function, checked to import back to ``obj``."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise EvaluatorError(
            f"evaluator argument {field!r}: {obj!r} cannot reach a trial process by import path "
            f"(it is a lambda, a local or a __main__ object); define it at module level in an importable module"
        )
    path = f"{module}:{qualname}"
    try:
        back = import_object(path, field)
    except ConfigError as e:
        raise EvaluatorError(f"evaluator argument {field!r}: {e}") from e
    if back is not obj and getattr(back, "__wrapped__", None) is not obj:
        raise EvaluatorError(f"evaluator argument {field!r}: {path!r} does not import back to {obj!r}")
    return path


def resolve_factory(spec: Any, field: str) -> Any:
    """Call a data factory: ``"module:fn"`` or ``{"factory": "module:fn", "kwargs": {...}}``; else ``spec`` itself."""
    if isinstance(spec, str):
        return import_object(spec, field)()
    if isinstance(spec, Mapping) and "factory" in spec:
        return import_object(spec["factory"], f"{field}.factory")(**dict(spec.get("kwargs") or {}))
    return spec


def _is_space_spec(value: Any) -> bool:
    return (
        isinstance(value, Mapping) and set(value) == {"_type", "_value"} and isinstance(value["_type"], str)
    )


def _value_expr_type() -> type | None:
    try:
        from nni_pl.nas.mutables import ValueExpr
    except ImportError:  # pragma: no cover - the primitives are part of the package
        return None
    return ValueExpr


def _encode(value: Any, path: str) -> Any:
    """A constructor argument as JSON (see the module docstring)."""
    expr = _value_expr_type()
    if expr is not None and isinstance(value, expr):
        leaves = value.leaves()
        table = []
        for combo in itertools.product(*(leaf.candidates for leaf in leaves)):
            result = value.evaluate({leaf.label: c for leaf, c in zip(leaves, combo)})
            table.append([list(combo), _encode(result, path)])
        return {
            _CHOICE: {
                "labels": [leaf.label for leaf in leaves],
                "candidates": [list(leaf.candidates) for leaf in leaves],
                "table": table,
            }
        }
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _encode(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if inspect.isclass(value) or inspect.isfunction(value) or inspect.isbuiltin(value):
        return {_IMPORT: import_path_of(value, path)}
    if is_traced(value):  # NNI's form: pl.DataLoader(...), pl.Trainer(...) travel by their arguments
        try:
            return to_jsonable(value, path)
        except SerializationError as e:
            raise EvaluatorError(f"evaluator argument {e}") from e
    raise EvaluatorError(
        f"evaluator argument {path!r}: a {type(value).__name__} cannot travel to a trial process; "
        "give JSON values, module-level classes/functions, or data as the import path of a factory "
        "('package.module:make_loaders')"
    )


def _decode(value: Any, path: str) -> Any:
    if isinstance(value, Mapping):
        if is_serialized_form(value) and set(value) != {_IMPORT}:
            return from_jsonable(value, path)
        if set(value) == {_IMPORT}:
            return import_object(value[_IMPORT], path)
        return {k: _decode(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _choices(value: Any, path: str, out: dict[str, dict[str, Any]]) -> None:
    """Collect the search-space entries of (encoded) argument ``value`` into ``out``."""
    if isinstance(value, Mapping):
        if _CHOICE in value and len(value) == 1:
            spec = value[_CHOICE]
            for label, cands in zip(spec["labels"], spec["candidates"]):
                _add(out, label, {"_type": "choice", "_value": cands})
            return
        if _is_space_spec(value):
            _add(out, path, dict(value))
            return
        for k, v in value.items():
            _choices(v, f"{path}.{k}", out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _choices(v, f"{path}[{i}]", out)


def _add(out: dict[str, dict[str, Any]], label: str, spec: dict[str, Any]) -> None:
    if label in out and _canon(out[label]) != _canon(spec):
        raise EvaluatorError(
            f"label {label!r} is used by two evaluator arguments with different values: {out[label]} and {spec}"
        )
    out[label] = spec


def _resolve(value: Any, path: str, arch: Mapping[str, Any]) -> Any:
    if isinstance(value, Mapping):
        if _CHOICE in value and len(value) == 1:
            spec = value[_CHOICE]
            key = [_take(arch, label) for label in spec["labels"]]
            for combo, result in spec["table"]:
                if _canon(combo) == _canon(key):
                    return result
            raise EvaluatorError(
                f"evaluator argument {path!r}: values {key} of labels {spec['labels']} are not among the candidates {spec['candidates']}"
            )
        if _is_space_spec(value):
            return _take(arch, path)
        return {k: _resolve(v, f"{path}.{k}", arch) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, f"{path}[{i}]", arch) for i, v in enumerate(value)]
    return value


def _take(arch: Mapping[str, Any], label: str) -> Any:
    if label not in arch:
        raise EvaluatorError(
            f"the architecture has no value for the evaluator's label {label!r}; add it (evaluator.search_space() lists them)"
        )
    return arch[label]


class Evaluator(ABC):
    """Scores one model: :meth:`evaluate` trains/tests it and reports the result through the trial SDK.

    A subclass passes its constructor arguments to ``super().__init__(**kwargs)`` (so :meth:`to_config`
    can rebuild it in a trial process) and implements :meth:`evaluate`.

    Example:
        >>> class CountParams(Evaluator):
        ...     def __init__(self, *, scale=1.0):
        ...         super().__init__(scale=scale)
        ...         self.scale = scale
        ...     def evaluate(self, model):
        ...         return -self.scale * sum(p.numel() for p in model.parameters())
        >>> CountParams(scale={"_type": "choice", "_value": [1.0, 2.0]}).search_space()
        {'scale': {'_type': 'choice', '_value': [1.0, 2.0]}}
    """

    def __init__(self, **init_kwargs: Any) -> None:
        self.init_kwargs = dict(init_kwargs)

    @abstractmethod
    def evaluate(self, model: Any) -> Any:
        """Evaluate ``model`` (a frozen ``nn.Module``), report its final result and return it."""

    # --- choices among the arguments ----------------------------------------------------------------------
    def _encoded(self) -> dict[str, Any]:
        return {k: _encode(v, k) for k, v in self.init_kwargs.items()}

    def search_space(self) -> dict[str, dict[str, Any]]:
        """The choices among this evaluator's arguments, as NNI search-space entries (label -> spec).

        A ``ValueChoice`` keeps its label; an ``nni_pl.space`` spec is labelled by the argument's name
        (``"learning_rate"``, or ``"trainer_kwargs.max_epochs"`` inside a dict).
        """
        return config_search_space({"kwargs": self._encoded()})

    def freeze(self, arch: Mapping[str, Any]) -> Evaluator:
        """A copy with every choice among the arguments replaced by its value in ``arch``."""
        if not self.search_space():
            return self
        return Evaluator.from_config(freeze_config(self.to_config(), arch))

    # --- travelling ------------------------------------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        """``{"class": "module:Qual", "kwargs": {...}}`` (JSON), rebuilt by :meth:`from_config` in a trial."""
        return {"class": import_path_of(type(self), "class"), "kwargs": self._encoded()}

    @staticmethod
    def from_config(config: Mapping[str, Any]) -> Evaluator:
        """Rebuild an evaluator from :meth:`to_config` output."""
        if not isinstance(config, Mapping) or "class" not in config:
            raise ConfigError(
                "evaluator", f"got {config!r}; give {{'class': 'module:Qual', 'kwargs': {{...}}}}"
            )
        cls = import_object(str(config["class"]), "evaluator.class")
        if not (inspect.isclass(cls) and issubclass(cls, Evaluator)):
            raise ConfigError("evaluator.class", f"{config['class']!r} is not an Evaluator subclass")
        kwargs = {k: _decode(v, k) for k, v in dict(config.get("kwargs") or {}).items()}
        return cls(**kwargs)


def config_search_space(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The search-space entries of the choices in an evaluator config (see :meth:`Evaluator.search_space`)."""
    out: dict[str, dict[str, Any]] = {}
    for k, v in dict(config.get("kwargs") or {}).items():
        _choices(v, k, out)
    return out


def freeze_config(config: Mapping[str, Any], arch: Mapping[str, Any]) -> dict[str, Any]:
    """An evaluator config with every choice replaced by its value in ``arch`` (labels outside it are ignored)."""
    kwargs = {k: _resolve(v, k, arch) for k, v in dict(config.get("kwargs") or {}).items()}
    return {**dict(config), "kwargs": kwargs}


def is_choice(value: Any) -> bool:
    """Whether an evaluator argument is a choice (a ValueChoice expression or an ``nni_pl.space`` spec)."""
    expr = _value_expr_type()
    return (expr is not None and isinstance(value, expr)) or _is_space_spec(value)
