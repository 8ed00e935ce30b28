"""The web dashboard: a small JSON API over the experiment store and the page that uses it.

The manager serves it while an experiment runs (``nni-pl launch CONFIG --port 8080``); ``nni-pl view ID``
serves it read-only for a finished one. It needs the ``webui`` extra (``pip install 'nni-pl[webui]'``:
FastAPI, uvicorn and plotly, whose bundled JavaScript draws the charts, so nothing is fetched from the
internet). Importing this package is cheap; FastAPI is imported by :func:`create_app` and :func:`serve`.

Example:
    Serve an experiment's store (here a new, empty one) on a free port:

    >>> import json, tempfile, urllib.request
    >>> from nni_pl.experiment import store as st
    >>> from nni_pl.webui import serve
    >>> store = st.Store(st.sqlite_url(tempfile.mkdtemp() + "/store.sqlite"))
    >>> server = serve(store.url, port=0)  # 0: any free port (``nni-pl view`` tries 8080 first)
    >>> server.url
    'http://127.0.0.1:.../'
    >>> json.load(urllib.request.urlopen(server.url + "api/v1/experiments"))
    []
    >>> server.stop(); store.close()
"""

from __future__ import annotations

from typing import Any

__all__ = ["INSTALL_HINT", "WebServer", "available", "create_app", "serve"]

INSTALL_HINT = "pip install 'nni-pl[webui]'"


def available() -> bool:
    """Whether FastAPI and uvicorn can be imported (the ``webui`` extra is installed)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("fastapi", "uvicorn"))


def create_app(*args: Any, **kwargs: Any) -> Any:
    """See :func:`nni_pl.webui.app.create_app`."""
    from nni_pl.webui.app import create_app as _create_app

    return _create_app(*args, **kwargs)


def serve(*args: Any, **kwargs: Any) -> Any:
    """See :func:`nni_pl.webui.server.serve`."""
    from nni_pl.webui.server import serve as _serve

    return _serve(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "WebServer":
        from nni_pl.webui.server import WebServer

        return WebServer
    raise AttributeError(f"module 'nni_pl.webui' has no attribute {name!r}")
