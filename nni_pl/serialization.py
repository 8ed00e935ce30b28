"""Record how an object was built, so that another process can build it again (NNI's ``nni.trace``/``dump``/``load``).

:func:`trace` wraps a class (or a function that returns an object): each instance it makes remembers the
callable and the arguments it was called with. :func:`dump` writes an object as JSON in which a traced object
is ``{"__trace__": "package.module:Class", "args": [...], "kwargs": {...}}`` (its arguments encoded the same
way, so ``DataLoader(dataset=MNIST(...))`` travels when both are traced), a module-level class or function is
its import path, and any other value that is not JSON is pickled (base64). :func:`load` builds it back.
This is how a NAS evaluator's LightningModule, Trainer and DataLoaders reach a trial process.

What cannot be serialised, with an error that names the argument: lambdas, functions and classes defined
inside a function or in ``__main__`` (a trial cannot import them), and objects that neither are traced nor
pickle (open files, locks, generators). Define such things at module level in an importable file, or trace
the class that builds them. Pickled values are capped by ``pickle_size_limit``: trace a dataset class instead
of pickling the data.

Importing this module does not import torch.

Example:
    >>> import fractions
    >>> Frac = trace(fractions.Fraction)
    >>> text = dump(Frac(3, denominator=4))
    >>> text
    '{"__trace__": "fractions:Fraction", "args": [3], "kwargs": {"denominator": 4}}'
    >>> load(text) == fractions.Fraction(3, 4), is_traced(load(text))
    (True, True)
"""

from __future__ import annotations

import base64
import copyreg
import functools
import inspect
import json
import pickle
from collections.abc import Callable, Mapping
from typing import IO, Any, TypeVar

from nni_pl._imports import import_object
from nni_pl.errors import ConfigError, NniPlError

__all__ = [
    "SerializationError",
    "dump",
    "from_jsonable",
    "is_serialized_form",
    "is_traced",
    "load",
    "to_jsonable",
    "trace",
    "trace_copy",
    "trace_info",
]

_T = TypeVar("_T")

_RECORD = "_nni_pl_trace"  # instance attribute: (callable, args, kwargs)
_BASE = "_nni_pl_traced_base"  # class attribute of a traced class: the class it wraps
_TRACE, _IMPORT, _TUPLE, _PICKLE = "__trace__", "__import__", "__tuple__", "__pickle__"
_TRACED: dict[type, type] = {}  # class -> its traced subclass, so trace(C) is trace(C)


class SerializationError(NniPlError, TypeError):
    """A value cannot be written for, or rebuilt in, another process (the message names the argument)."""


# --------------------------------------------------------------------------------------------- trace


def trace(obj: _T) -> _T:
    """Make ``obj`` (a class, or a function returning an object) record its call arguments on what it makes.

    Use it as a decorator on your own class (``@nni_pl.trace``), or call it on a class from a library
    (``DataLoader = nni_pl.trace(torch.utils.data.DataLoader)``); the latter returns a subclass that behaves
    like the class and leaves the library's class untouched. Tracing is idempotent.

    Args:
        obj: a class or a function.

    Returns:
        The traced class (a subclass of ``obj`` with the same name and module) or function.
    """
    if inspect.isclass(obj):
        return _trace_class(obj)  # type: ignore[return-value]
    if callable(obj):
        if getattr(obj, _BASE, None) is not None:
            return obj

        @functools.wraps(obj)
        def traced(*args: Any, **kwargs: Any) -> Any:
            out = obj(*args, **kwargs)
            try:
                out.__dict__[_RECORD] = (obj, args, kwargs)  # the outermost call built it
            except AttributeError as e:  # no __dict__: an int, a tuple, a slotted object
                raise SerializationError(
                    f"trace({getattr(obj, '__qualname__', obj)!r}) returned a {type(out).__name__}, which cannot "
                    "hold a trace record; trace functions that return ordinary objects"
                ) from e
            return out

        setattr(traced, _BASE, obj)
        return traced  # type: ignore[return-value]
    raise TypeError(f"trace takes a class or a function, got {obj!r}")


def _trace_class(cls: type) -> type:
    if cls.__dict__.get(_BASE) is not None:
        return cls
    if cls in _TRACED:
        return _TRACED[cls]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # the outermost traced class records; a subclass that is not traced itself is not a traced object
        if type(self) is traced and _RECORD not in self.__dict__:
            # the record holds the plain class: the traced one may not pickle by name (see __reduce_ex__)
            self.__dict__[_RECORD] = (cls, args, kwargs)
        if cls.__init__ is object.__init__:  # everything happens in __new__ (e.g. fractions.Fraction)
            return
        cls.__init__(self, *args, **kwargs)

    def __reduce_ex__(self: Any, protocol: Any) -> Any:
        rv = cls.__reduce_ex__(self, protocol)
        # pickle finds a class by its name; a library class's name leads to the untraced class
        if (
            isinstance(rv, tuple)
            and rv[0] is copyreg.__newobj__
            and rv[1][0] is traced
            and not _imports_back(traced)
        ):
            return (_new_traced, (cls, *rv[1][1:]), *rv[2:])
        return rv

    ns = {
        "__init__": __init__,
        "__reduce_ex__": __reduce_ex__,
        _BASE: cls,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
    }
    try:
        ns["__signature__"] = inspect.signature(cls)
    except (TypeError, ValueError):
        pass
    traced = type(cls.__name__, (cls,), ns)
    _TRACED[cls] = traced
    return traced


def _new_traced(cls: type, *args: Any) -> Any:
    t = _trace_class(cls)
    return t.__new__(t, *args)


def _imports_back(cls: type) -> bool:
    try:
        return import_object(f"{cls.__module__}:{cls.__qualname__}") is cls
    except ConfigError:
        return False


def is_traced(obj: Any) -> bool:
    """Whether ``obj`` was made by a traced class or function (it then records its arguments)."""
    record = getattr(obj, "__dict__", {}).get(_RECORD) if not inspect.isclass(obj) else None
    return isinstance(record, tuple) and len(record) == 3


def trace_info(obj: Any) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    """``(callable, args, kwargs)`` that made the traced object ``obj`` (NNI's ``trace_symbol/args/kwargs``).

    The callable is the plain (untraced) class or function; ``trace(callable)(*args, **kwargs)`` builds a twin.
    """
    if not is_traced(obj):
        raise SerializationError(
            f"{type(obj).__name__} object is not traced; build it with a class wrapped by nni_pl.trace"
        )
    fn, args, kwargs = obj.__dict__[_RECORD]
    return fn, tuple(args), dict(kwargs)


def trace_copy(obj: _T) -> _T:
    """A new object built like the traced ``obj`` (same callable and arguments; the arguments are shared)."""
    fn, args, kwargs = trace_info(obj)
    return trace(fn)(*args, **kwargs)


# --------------------------------------------------------------------------------------------- dump / load


def _symbol(fn: Any, path: str) -> str:
    base = getattr(fn, _BASE, None) or fn
    module, qualname = getattr(base, "__module__", None), getattr(base, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        kind = "a lambda or a local function/class" if qualname and "<" in qualname else "defined in __main__"
        raise SerializationError(
            f"{path}: {base!r} cannot be rebuilt in another process ({kind}); define it at module level in an "
            "importable file"
        )
    symbol = f"{module}:{qualname}"
    try:
        back = import_object(symbol, path)
    except ConfigError as e:
        raise SerializationError(f"{path}: {e}") from e
    if back is not base and getattr(back, _BASE, None) is not base:
        raise SerializationError(f"{path}: {symbol!r} does not import back to {base!r}")
    return symbol


def _arg_name(fn: Any, index: int) -> str:
    """The name of positional argument ``index`` of ``fn`` (for error messages), else ``args[index]``."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    if index < len(params) and params[index].kind in (
        params[index].POSITIONAL_ONLY,
        params[index].POSITIONAL_OR_KEYWORD,
    ):
        return params[index].name
    return f"args[{index}]"


def to_jsonable(obj: Any, path: str = "value", *, pickle_size_limit: int | None = 1 << 20) -> Any:
    """``obj`` as JSON-able data (see the module docstring); ``path`` names it in errors."""

    def enc(v: Any, p: str) -> Any:
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if is_traced(v):
            fn, args, kwargs = trace_info(v)
            return {
                _TRACE: _symbol(fn, p),
                "args": [enc(a, f"{p}.{_arg_name(fn, i)}") for i, a in enumerate(args)],
                "kwargs": {k: enc(a, f"{p}.{k}") for k, a in kwargs.items()},
            }
        if isinstance(v, list):
            return [enc(a, f"{p}[{i}]") for i, a in enumerate(v)]
        if type(v) is tuple:
            return {_TUPLE: [enc(a, f"{p}[{i}]") for i, a in enumerate(v)]}
        if (
            type(v) is dict
            and all(isinstance(k, str) for k in v)
            and not {_TRACE, _IMPORT, _TUPLE, _PICKLE} & set(v)
        ):
            return {k: enc(a, f"{p}.{k}") for k, a in v.items()}
        if inspect.isclass(v) or inspect.isfunction(v) or inspect.isbuiltin(v):
            return {_IMPORT: _symbol(v, p)}
        try:
            data = pickle.dumps(v)
        except Exception as e:  # pickle raises PicklingError, TypeError, AttributeError, ...
            raise SerializationError(
                f"{p}: a {type(v).__name__} cannot be serialised ({e}); trace its class with nni_pl.trace, or "
                "define what it refers to at module level"
            ) from e
        if pickle_size_limit is not None and len(data) > pickle_size_limit:
            raise SerializationError(
                f"{p}: a {type(v).__name__} pickles to {len(data)} bytes, over pickle_size_limit="
                f"{pickle_size_limit}; trace its class with nni_pl.trace so that only its arguments travel"
            )
        return {_PICKLE: base64.b64encode(data).decode("ascii")}

    return enc(obj, path)


def from_jsonable(data: Any, path: str = "value") -> Any:
    """Build back what :func:`to_jsonable` wrote (traced objects are traced again)."""
    if isinstance(data, list):
        return [from_jsonable(a, f"{path}[{i}]") for i, a in enumerate(data)]
    if not isinstance(data, Mapping):
        return data
    if _TRACE in data:
        fn = trace(import_object(str(data[_TRACE]), path))
        args = [from_jsonable(a, f"{path} argument {i}") for i, a in enumerate(data.get("args") or [])]
        kwargs = {k: from_jsonable(a, f"{path}.{k}") for k, a in dict(data.get("kwargs") or {}).items()}
        return fn(*args, **kwargs)
    if set(data) == {_IMPORT}:
        return import_object(str(data[_IMPORT]), path)
    if set(data) == {_TUPLE}:
        return tuple(from_jsonable(a, f"{path}[{i}]") for i, a in enumerate(data[_TUPLE]))
    if set(data) == {_PICKLE}:
        return pickle.loads(base64.b64decode(data[_PICKLE]))  # written by dump in this experiment
    return {k: from_jsonable(v, f"{path}.{k}") for k, v in data.items()}


def is_serialized_form(data: Any) -> bool:
    """Whether ``data`` is one of the special objects :func:`to_jsonable` writes (a trace, import, tuple, pickle)."""
    return isinstance(data, Mapping) and (_TRACE in data or set(data) in ({_IMPORT}, {_TUPLE}, {_PICKLE}))


def dump(obj: Any, fp: IO[str] | None = None, *, pickle_size_limit: int | None = 1 << 20) -> str | None:
    """``obj`` as a JSON string (or written to the text file ``fp``), NNI's ``nni.dump``.

    Raises:
        SerializationError: something inside cannot travel; the message names the argument and the fix.
    """
    text = json.dumps(to_jsonable(obj, type(obj).__name__, pickle_size_limit=pickle_size_limit))
    if fp is None:
        return text
    fp.write(text)
    return None


def load(string: str | None = None, fp: IO[str] | None = None) -> Any:
    """Build back an object written by :func:`dump`, from ``string`` or the text file ``fp`` (NNI's ``nni.load``).

    Only load what your own experiment wrote: pickled values run code when loaded.
    """
    if (string is None) == (fp is None):
        raise TypeError("load takes either a string or fp")
    return from_jsonable(json.loads(string if string is not None else fp.read()))  # type: ignore[union-attr]
