"""Import an object by its path: the one helper behind every ``className``, ``import_path`` and ``"class"``.

A path reads ``"package.module:Qual.Name"`` (the module left of the colon) or ``"package.module.Name"``
(the longest importable prefix is the module; the last part is never a module). An optional code
directory is put first on ``sys.path``, as NNI does for a tuner's ``codeDirectory``. Errors are
:class:`~nni_pl.errors.ConfigError` naming the field, the value and the fix, and they tell apart a module
that does not exist, a module whose own import fails (its error is chained) and a missing attribute.

Example:
    >>> from nni_pl._imports import import_object
    >>> import_object("nni_pl.space:SearchSpace.parse").__qualname__
    'SearchSpace.parse'
    >>> import_object("nni_pl.hpo.tuners.TPETuner").__name__
    'TPETuner'
    >>> import_object("nni_pl.space:Nope", "tuner.className", what="class")
    Traceback (most recent call last):
    ...
    nni_pl.errors.ConfigError: config field 'tuner.className': module 'nni_pl.space' has no class 'Nope' (from 'nni_pl.space:Nope'); check the spelling
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from nni_pl.errors import ConfigError, did_you_mean

__all__ = ["import_object", "lazy_exports"]


def import_object(
    path: str,
    field: str = "",
    *,
    code_directory: str | Path | None = None,
    what: str = "",
) -> Any:
    """The object at ``path`` (``"package.module:Qual.Name"`` or ``"package.module.Name"``).

    Args:
        path: where the object is.
        field: the config field (or argument) the path was given in, for error messages.
        code_directory: a folder put first on ``sys.path`` before importing (a tuner's ``codeDirectory``).
        what: what the path should name, for error messages (``"class"``: "has no class 'X'").

    Raises:
        ConfigError: the path is malformed, its module does not exist, the module's own import failed
            (the cause is chained), or the module has no such attribute.
    """
    if not isinstance(path, str) or not path.strip(":."):
        raise ConfigError(field, f"an import path must read 'package.module:Name', got {path!r}")
    if code_directory is not None:
        folder = str(Path(code_directory).resolve())
        if folder not in sys.path:
            sys.path.insert(0, folder)
    where = f" (searched codeDirectory {str(code_directory)!r} first)" if code_directory is not None else ""
    module_name, sep, qualname = path.partition(":")
    if sep:
        if not module_name or not qualname or ":" in qualname:
            raise ConfigError(field, f"an import path must read 'package.module:Name', got {path!r}")
        module = _import_module(module_name, path, field)
        if module is None:
            _not_found(module_name, path, field, where)
    else:
        parts = path.split(".")
        if len(parts) < 2 or not all(parts):
            fix = "; name the module too" if len(parts) < 2 else ""
            raise ConfigError(
                field,
                f"an import path must read 'package.module:Name' or 'package.module.Name', got {path!r}{fix}",
            )
        module = None
        for cut in range(len(parts) - 1, 0, -1):  # the longest importable prefix is the module
            module_name = ".".join(parts[:cut])
            module = _import_module(module_name, path, field)
            if module is not None:
                qualname = ".".join(parts[cut:])
                break
        if module is None:
            _not_found(parts[0], path, field, where)
    obj: Any = module
    for i, part in enumerate(qualname.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            owner = (
                f"module {module_name!r}" if i == 0 else f"{module_name}:{'.'.join(qualname.split('.')[:i])}"
            )
            names = [n for n in dir(obj) if not n.startswith("_")]
            kind = f"{what} " if what else ""
            raise ConfigError(
                field,
                f"{owner} has no {kind}{part!r} (from {path!r}){did_you_mean(part, names)}; check the spelling",
            ) from None
    return obj


def _import_module(name: str, path: str, field: str) -> ModuleType | None:
    """The module ``name``; ``None`` if it (or a package above it) does not exist."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if missing == name or name.startswith(missing + "."):
            return None
        raise ConfigError(
            field,
            f"cannot import module {name!r} of {path!r}: importing it failed with {type(e).__name__}: {e}; "
            f"install {missing!r} or fix the module's imports",
        ) from e
    except Exception as e:  # the module's own code failed (SyntaxError, ImportError, anything it raises)
        raise ConfigError(
            field,
            f"cannot import module {name!r} of {path!r}: importing it failed with {type(e).__name__}: {e}; "
            "fix the module (its traceback is chained above)",
        ) from e


def _not_found(name: str, path: str, field: str, where: str) -> NoReturn:
    raise ConfigError(
        field,
        f"cannot import module {name!r} of {path!r}: no such module{where}; check the spelling, install "
        "the package or put its folder on sys.path",
    )


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Any, Any]:
    """``__getattr__`` and ``__dir__`` for a package that re-exports ``names`` (name -> submodule) on first use.

    A submodule is named relative to ``package``, or in full when it starts with ``nni_pl.``.

    A package whose submodules import heavy libraries stays light to import: ``__getattr__, __dir__ =
    lazy_exports(__name__, {"Cls": "module"})``.

    Example:
        >>> getattr_, dir_ = lazy_exports("json", {"JSONEncoder": "encoder"})
        >>> getattr_("JSONEncoder").__name__, "JSONEncoder" in dir_(), "dumps" in dir_()
        ('JSONEncoder', True, True)
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            module = names[name] if names[name].startswith("nni_pl.") else f"{package}.{names[name]}"
            return getattr(importlib.import_module(module), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        module = sys.modules.get(package)
        return sorted(set(names) | set(vars(module) if module is not None else ()))

    return __getattr__, __dir__
