"""Algorithms users registered under a name (``nni-pl algo register``), kept in a small YAML file."""

from __future__ import annotations

import os
from pathlib import Path

from nni_pl.errors import ConfigError

__all__ = ["lookup", "read", "register", "unregister"]

KINDS = ("tuner", "assessor", "advisor")


def registry_path() -> Path:
    base = os.environ.get("NNI_PL_CONFIG_DIR") or os.path.join(os.path.expanduser("~"), ".config", "nni-pl")
    return Path(base) / "algorithms.yml"


def read() -> dict[str, dict[str, str]]:
    """``{kind: {name: "module.Class"}}`` of the registered algorithms."""
    from nni_pl._files import load_yaml

    path = registry_path()
    if not path.exists():
        return {k: {} for k in KINDS}
    data = load_yaml(path.read_text(encoding="utf-8")) or {}
    return {k: dict(data.get(k) or {}) for k in KINDS}


def _write(data: dict[str, dict[str, str]]) -> None:
    from nni_pl._files import dump_yaml

    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(dump_yaml(data), encoding="utf-8")
    tmp.replace(path)


def lookup(kind: str, name: str) -> str | None:
    return read().get(kind, {}).get(name)


def register(kind: str, name: str, class_name: str) -> None:
    from nni_pl.hpo._registry import _TABLES

    if kind not in KINDS:
        raise ConfigError("algoType", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    if name in _TABLES[kind]:
        raise ConfigError("builtinName", f"{name!r} is a built-in {kind}; pick another name")
    data = read()
    data[kind][name] = class_name
    _write(data)


def unregister(kind: str, name: str) -> bool:
    data = read()
    if name not in data.get(kind, {}):
        return False
    del data[kind][name]
    _write(data)
    return True
