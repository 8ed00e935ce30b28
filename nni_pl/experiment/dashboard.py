"""The dashboard seam: the engine serves a dashboard through a plug-in and knows nothing of web servers.

A plug-in is a module named by the ``nni_pl.dashboard`` entry point (nni-pl's own is
:mod:`nni_pl.webui.hosting`, declared in ``pyproject.toml``) that provides ``host_dashboard(**kwargs)`` (a
context manager around the manager's run, yielding an object with ``url``, ``urls``, ``port`` and ``error``),
``serve_read_only(store_url, experiment_id, port=..., host=..., token=...)``, ``read_dashboard(directory)``
and ``forget_dashboard(directory)``. Without a plug-in, experiments run as before and say once why there is
no dashboard.

Example:
    >>> plugin() is not None      # nni-pl's own web dashboard is installed with the package
    True
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nni_pl.errors import MissingDependencyError

__all__ = ["ENTRY_POINT_GROUP", "Hosted", "forget", "hosted", "plugin", "read", "serve_read_only"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "nni_pl.dashboard"
_NO_PLUGIN = (
    f"no dashboard plug-in is installed (entry point group {ENTRY_POINT_GROUP!r}); reinstall nni-pl with "
    "pip install -e '.[webui]'"
)


@dataclass
class Hosted:
    """What :func:`hosted` yields when no plug-in serves the dashboard."""

    url: str | None = None
    urls: list[str] = field(default_factory=list)
    port: int | None = None
    error: str | None = None


def _declared(group: str) -> Iterator[str]:
    """The targets (``module`` or ``module:attr``) of an entry-point group, read from the installed packages'
    ``entry_points.txt``. ``import importlib.metadata`` alone costs ~55 ms of CPU, paid by every experiment that
    serves a dashboard; scanning the metadata folders on ``sys.path`` costs a few."""
    seen: set[str] = set()
    for base in sys.path:
        try:
            names = os.listdir(base or ".")
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(base or ".", name, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            section = None
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1].strip()
                elif section == group and "=" in line and not line.startswith(("#", ";")):
                    target = line.split("=", 1)[1].split("[", 1)[0].strip()
                    if target not in seen:
                        seen.add(target)
                        yield target


@functools.cache
def plugin() -> Any | None:
    """The dashboard plug-in module, or ``None`` when none is installed."""
    import importlib

    for target in _declared(ENTRY_POINT_GROUP):
        module_name, _, attr = target.partition(":")
        try:
            obj = importlib.import_module(module_name.strip())
            for part in filter(None, attr.strip().split(".")):
                obj = getattr(obj, part)
            return obj
        except Exception as e:  # a broken plug-in must not stop experiments
            logger.warning("the dashboard plug-in %s cannot be loaded: %s", target, e)
    return None


@contextlib.contextmanager
def hosted(**kwargs: Any) -> Iterator[Any]:
    """Serve the dashboard around the ``with`` block (the plug-in's ``host_dashboard``), never failing it."""
    p = plugin()
    if p is None:
        sys.stderr.write(f"no web dashboard: {_NO_PLUGIN}\n")
        yield Hosted(error=_NO_PLUGIN)
        return
    with p.host_dashboard(**kwargs) as info:
        yield info


def serve_read_only(store_url: str, experiment_id: str, *, port: int, host: str, token: str | None) -> Any:
    """A read-only dashboard server (``view``).

    Raises:
        MissingDependencyError: no dashboard plug-in is installed.
    """
    p = plugin()
    if p is None:
        raise MissingDependencyError("fastapi uvicorn", "webui", "the web dashboard")
    return p.serve_read_only(store_url, experiment_id, port=port, host=host, token=token)


def read(directory: Path) -> dict[str, Any] | None:
    """Where the running manager of ``directory`` serves its dashboard, as it recorded it."""
    p = plugin()
    return p.read_dashboard(directory) if p is not None else None


def forget(directory: Path) -> None:
    p = plugin()
    if p is not None:
        p.forget_dashboard(directory)
