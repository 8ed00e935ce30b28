"""Hosting the dashboard of a running experiment: the ``nni_pl.dashboard`` plug-in of the experiment engine.

The engine (``nni_pl.experiment``) knows no web server: when an experiment runs with a port it looks up the
``nni_pl.dashboard`` entry point (this module, declared in ``pyproject.toml``) and enters
:func:`host_dashboard` around the manager's run. The dashboard binds its address at once and builds the app
on the first request, so an experiment nobody opens never imports FastAPI; it never fails the experiment
(a dashboard that cannot start is reported, and the experiment runs without one).

Where it is served is recorded in the experiment folder (``webui.json``, owner-only), which
``nni-pl webui ID`` and a detached launch read with :func:`read_dashboard`.

Example:
    What the engine does around a manager's run (here with nothing to run):

    >>> import tempfile
    >>> from pathlib import Path
    >>> from nni_pl.experiment import store as st
    >>> from nni_pl.webui import hosting
    >>> folder = Path(tempfile.mkdtemp())
    >>> store = st.Store(st.sqlite_url(folder / "store.sqlite"))
    >>> _ = store.create_experiment(id="abc", name=None, config={}, directory=str(folder))
    >>> with hosting.host_dashboard(store=store, experiment_id="abc", directory=folder, port=0) as info:
    ...     print(info.url == hosting.read_dashboard(folder)["url"], store.get_experiment("abc").port == info.port)
    True True
    >>> hosting.read_dashboard(folder), store.get_experiment("abc").port  # gone with the run
    (None, None)
    >>> store.close()
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DashboardInfo", "forget_dashboard", "host_dashboard", "read_dashboard", "serve_read_only"]

logger = logging.getLogger(__name__)


@dataclass
class DashboardInfo:
    """Where the dashboard is served (``urls``: every address to open it at), or why it is not (``error``).

    Example:
        >>> DashboardInfo(url=None, error="it needs FastAPI").error
        'it needs FastAPI'
    """

    url: str | None
    urls: list[str] = field(default_factory=list)
    port: int | None = None
    error: str | None = None


def masked(url: str) -> str:
    """The URL with its ``token=`` value hidden, for logs.

    Example:
        >>> masked("http://10.0.0.2:8080/?token=s3cret")
        'http://10.0.0.2:8080/?token=***'
    """
    return re.sub(r"([?&]token=)[^&\s]+", r"\1***", url)


@contextlib.contextmanager
def host_dashboard(
    *,
    store: Any,
    experiment_id: str,
    directory: Path,
    port: int,
    host: str = "127.0.0.1",
    token: str | None = None,
    workdir: Path | None = None,
    stop_hook: Callable[[], None] | None = None,
    announce: bool = True,
) -> Iterator[DashboardInfo]:
    """Serve the dashboard of a running experiment while the ``with`` block runs; never raises for it.

    Args:
        store: the experiment's store (its ``port`` column is kept up to date).
        experiment_id, directory: the experiment and its folder (``webui.json`` goes there).
        port: the port to try first (a free one when it is taken; 0: any).
        host, token: the address to bind and the token off loopback (generated when not given).
        workdir: the experiments folder the dashboard also lists.
        stop_hook: what the dashboard's Stop button calls.
        announce: print the addresses with their token (``False``: masked, for a detached manager's log).
    """
    from nni_pl import webui
    from nni_pl.webui import server as webui_server

    server = None
    reason = None
    if not webui.available():
        reason = f"it needs FastAPI and uvicorn: {webui.INSTALL_HINT}"
    else:
        try:
            server = webui_server.serve(
                store.url,
                host=host,
                port=port,
                token=token,
                experiment_id=experiment_id,
                workdir=workdir,
                stop_hook=stop_hook,
                wait=False,  # bound now, built on the first request: an unopened dashboard costs nothing
            )
        except Exception as e:  # the dashboard must never fail the experiment
            reason = str(e) or type(e).__name__
    try:
        if server is None:
            logger.warning("no web dashboard: %s", reason)
            sys.stderr.write(f"no web dashboard: {reason}\n")
            with contextlib.suppress(OSError):
                webui_server.write_url_file(directory, None, error=reason)
            info = DashboardInfo(url=None, error=reason)
        else:
            webui_server.write_url_file(directory, server)
            store.update_experiment(experiment_id, port=server.port)
            if port and server.port != port:
                sys.stderr.write(f"port {port} is taken; the dashboard uses {server.port}\n")
            # the token goes to the user's terminal only; a detached manager's stderr is a log file
            shown = server.urls if announce else [masked(u) for u in server.urls]
            sys.stderr.write(f"dashboard: {' '.join(shown)}\n")
            info = DashboardInfo(url=server.url, urls=list(server.urls), port=server.port)
        sys.stderr.flush()
        yield info
    finally:
        if server is not None:
            # the experiment is over: ask the server to end (its thread closes the socket); waiting for it would
            # add its shutdown to every run
            server.stop(wait=False)
            with contextlib.suppress(Exception):
                store.update_experiment(experiment_id, port=None)
        webui_server.remove_url_file(directory)


def serve_read_only(
    store_url: str, experiment_id: str, *, port: int, host: str = "127.0.0.1", token: str | None = None
) -> Any:
    """Serve a stopped experiment's dashboard read-only (``view``); returns the running server."""
    from nni_pl.webui import server as webui_server

    server = webui_server.serve(
        store_url, host=host, port=port, token=token, read_only=True, experiment_id=experiment_id
    )
    sys.stderr.write(f"dashboard: {' '.join(server.urls)}\n")
    sys.stderr.flush()
    return server


def read_dashboard(directory: Path) -> dict[str, Any] | None:
    """What the running experiment of ``directory`` recorded of its dashboard (``url`` ``None``: none started)."""
    from nni_pl.webui.server import read_url_file

    return read_url_file(directory)


def forget_dashboard(directory: Path) -> None:
    """Remove the record (before a detached start, so a stale one is never read)."""
    from nni_pl.webui.server import remove_url_file

    remove_url_file(directory)
