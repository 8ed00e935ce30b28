"""Reading the structured files users bring: JSON (tolerant of tabs) and YAML (tolerant of ``1e-5``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "YamlSyntaxError",
    "dump_yaml",
    "load_json",
    "load_structured",
    "load_structured_file",
    "load_yaml",
]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, but ``1e-5`` is a float (YAML 1.1 demands ``1.0e-5``; YAML 1.2 and JSON do not)."""


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper that quotes strings such as ``"1e-5"``, which :class:`_Loader` would read as floats."""


class YamlSyntaxError(ValueError, yaml.YAMLError):
    """Text that is not valid YAML (a ``ValueError``, like ``json.JSONDecodeError``)."""


_SCIENTIFIC = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _SCIENTIFIC, list("-+0123456789"))


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # PyYAML writes NEL (U+0085) raw in quoted scalars and reads it back as a line break: escape it
    style = '"' if "\x85" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise YamlSyntaxError(str(e)) from e


def load_json(text: str) -> Any:
    # strict=False accepts literal tabs inside strings, which hand-edited NNI files often have.
    return json.loads(text, strict=False)


def load_structured(text: str, *, hint: str = "") -> Any:
    """Parse ``text`` as JSON, falling back to YAML (a superset for everything we read)."""
    if hint.endswith((".yml", ".yaml")):
        try:
            return load_yaml(text)
        except YamlSyntaxError:
            try:  # JSON indented with tabs is not YAML, but NNI users name JSON files .yaml too
                return load_json(text)
            except json.JSONDecodeError:
                pass
            raise
    try:
        return load_json(text)
    except json.JSONDecodeError:
        return load_yaml(text)


def load_structured_file(path: str | Path) -> Any:
    path = Path(path)
    return load_structured(path.read_text(encoding="utf-8"), hint=path.name)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)
