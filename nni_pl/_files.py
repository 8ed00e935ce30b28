"""Reading the structured files users bring: JSON (tolerant of tabs) and YAML (tolerant of ``1e-5``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

__all__ = ["dump_yaml", "load_json", "load_structured", "load_structured_file", "load_yaml"]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, but ``1e-5`` is a float (YAML 1.1 demands ``1.0e-5``; YAML 1.2 and JSON do not)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def load_json(text: str) -> Any:
    # strict=False accepts literal tabs inside strings, which hand-edited NNI files often have.
    return json.loads(text, strict=False)


def load_structured(text: str, *, hint: str = "") -> Any:
    """Parse ``text`` as JSON, falling back to YAML (a superset for everything we read)."""
    if hint.endswith((".yml", ".yaml")):
        return load_yaml(text)
    try:
        return load_json(text)
    except json.JSONDecodeError:
        return load_yaml(text)


def load_structured_file(path: str | Path) -> Any:
    path = Path(path)
    return load_structured(path.read_text(encoding="utf-8"), hint=path.name)


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
