"""Serving the dashboard: uvicorn in a background thread, on 127.0.0.1 unless told otherwise.

* The requested port (8080 by default, like NNI) is used when it is free; otherwise the system picks a free
  one, so two experiments never fight over a port. The URL says which.
* A non-loopback address (``--host 0.0.0.0``) needs a token: the one given, or a fresh random one
  (:func:`nni_pl._ids.url_token`, as ``secrets.token_urlsafe`` makes them). Every request must carry it; the URL
  handed back ends in ``?token=...``.
* On loopback, requests naming another host are refused (no DNS rebinding).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import os
import select
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nni_pl._ids import url_token
from nni_pl.errors import MissingDependencyError, NniPlError

__all__ = [
    "DEFAULT_PORT",
    "WebServer",
    "free_port",
    "is_loopback",
    "machine_addresses",
    "read_url_file",
    "serve",
    "write_url_file",
]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8080
URL_FILE = "webui.json"  # in the experiment directory while its manager serves the dashboard
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def machine_addresses() -> list[str]:
    """This machine's IPv4 addresses other computers can reach (not loopback), for the dashboard's URLs.

    Every interface's address on Linux (``SIOCGIFADDR``), plus what the host name resolves to; falls back to
    the host name itself when no address is found.
    """
    found: list[str] = []
    with contextlib.suppress(OSError, AttributeError):
        import fcntl
        import struct

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _, name in socket.if_nameindex():
                with contextlib.suppress(OSError):
                    request = struct.pack("256s", name.encode()[:15])
                    packed = fcntl.ioctl(s.fileno(), 0x8915, request)  # SIOCGIFADDR: the interface's IPv4
                    found.append(socket.inet_ntoa(packed[20:24]))
    with contextlib.suppress(OSError, UnicodeError):
        found += socket.gethostbyname_ex(socket.gethostname())[2]
    out: list[str] = []
    for ip in found:
        with contextlib.suppress(ValueError):
            if not ipaddress.ip_address(ip).is_loopback and ip not in out:
                out.append(ip)
    if not out:
        with contextlib.suppress(OSError):
            name = socket.gethostname()
            if name and name != "localhost":
                out.append(name)
    return out


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``port``, or on a free port when that one is taken (port 0: always a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for candidate in (port, 0) if port else (0,):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as e:
            sock.close()
            last = e
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                logger.info("port %d on %s is taken; picking a free one", candidate, host)
                continue
            raise NniPlError(f"cannot serve the dashboard on {host}:{candidate}: {e.strerror or e}") from e
        sock.listen(128)
        sock.set_inheritable(False)
        return sock
    raise NniPlError(f"cannot serve the dashboard on {host}: {last}")


def free_port(host: str = "127.0.0.1", port: int = 0) -> int:
    """``port`` when it is free on ``host``, else a free one (for servers started by another program)."""
    sock = _bind(host, port)
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


class WebServer:
    """A running dashboard server (uvicorn in a daemon thread).

    The socket is bound before the server is made, so :attr:`url` is right from the start; with
    ``serve(..., wait=False)`` the app is built when the first request arrives, which waits in the socket's backlog.

    Attributes:
        host, port: where it listens.
        token: the token every request needs (``None`` on loopback without one).
        url: the address to open, with ``?token=`` when there is a token.

    Example:
        >>> server = serve(port=0)  # every experiment of $NNI_PL_HOME, on any free port
        >>> server.host, server.port > 0, server.token  # loopback: no token
        ('127.0.0.1', True, None)
        >>> server.stop()
    """

    def __init__(
        self, app: Any, sock: socket.socket, host: str, token: str | None, *, app_factory: Any = None
    ) -> None:
        self.app = app
        self._app_factory = app_factory  # builds the app in the server thread when ``app`` is None
        self.host = host
        self.port = int(sock.getsockname()[1])
        self.token = token
        self._sock = sock
        self._server: Any = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"nni-pl-webui-{self.port}", daemon=True)

    def _run(self) -> None:
        try:
            if self.app is None:
                # built on demand: an experiment nobody looks at never pays for FastAPI's imports. A connection
                # waiting in the backlog makes the socket readable; it is served once the app is built.
                while not self._stopping.is_set():
                    if select.select([self._sock], [], [], 0.2)[0]:
                        break
                else:
                    return
            import uvicorn

            if self.app is None:
                self.app = self._app_factory()
            config = uvicorn.Config(
                self.app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=2,
                server_header=False,
            )
            with self._lock:  # stop() either sees the server (and ends it) or this thread sees the stop
                if self._stopping.is_set():
                    return
                self._server = uvicorn.Server(config)
            self._server.run(sockets=[self._sock])
        except Exception:  # the dashboard must never take the experiment down with it
            logger.exception("the dashboard server stopped with an error")
        finally:
            self._close()

    @property
    def base_url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        if shown == "::":
            shown = "::1"
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}/"

    @property
    def url(self) -> str:
        return self.base_url + (f"?token={quote(self.token)}" if self.token else "")

    @property
    def urls(self) -> list[str]:
        """Every address to open the dashboard at: :attr:`url` first; bound to all interfaces (``0.0.0.0``,
        ``::``), also one per address of this machine that another computer can reach (as NNI lists them)."""
        if self.host not in ("0.0.0.0", "", "::"):
            return [self.url]
        query = f"?token={quote(self.token)}" if self.token else ""
        return [self.url] + [f"http://{ip}:{self.port}/{query}" for ip in machine_addresses()]

    @property
    def started(self) -> bool:
        """Whether the server accepts requests (they queue in the socket's backlog until then)."""
        return self._server is not None and bool(self._server.started)

    def start(self, timeout: float = 15.0, *, wait: bool = True) -> WebServer:
        """Start the server thread; with ``wait``, return once it serves (or raise ``NniPlError``)."""
        self._thread.start()
        if not wait:
            return self
        deadline = time.time() + timeout
        while not self.started and self._thread.is_alive() and time.time() < deadline:
            time.sleep(0.02)
        if not self.started:
            self.stop()
            raise NniPlError(f"the dashboard server did not start on {self.host}:{self.port}")
        return self

    def stop(self, timeout: float = 5.0, *, wait: bool = True) -> None:
        """Stop serving (idempotent). ``wait=False`` only asks: the thread closes the socket as it ends."""
        with self._lock:
            self._stopping.set()
            if self._server is not None:
                self._server.should_exit = True
        if not wait:
            return
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        self._close()

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        catalog = getattr(getattr(self.app, "state", None), "catalog", None)
        if catalog is not None:
            with contextlib.suppress(Exception):
                catalog.close()

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C raises KeyboardInterrupt here)."""
        while self._thread.is_alive():
            self._thread.join(0.2)

    def __enter__(self) -> WebServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    store_or_url: Any = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = DEFAULT_PORT,
    token: str | None = None,
    read_only: bool = False,
    experiment_id: str | None = None,
    workdir: str | Path | None = None,
    stop_hook: Any = None,
    wait: bool = True,
) -> WebServer:
    """Start the dashboard in a background thread; returns the running :class:`WebServer`.

    Args:
        store_or_url: the store (or URL) to show; ``None``: every experiment in ``workdir``/the index.
        host: the address to bind; anything but loopback needs a token (generated when not given).
        port: the port to try first (``None`` or 0: any free port); when it is taken a free one is used.
        token: the token every request must carry (also honoured on loopback when given).
        read_only, experiment_id, workdir, stop_hook: as for :func:`nni_pl.webui.app.create_app`.
        wait: build the app and wait until it serves before returning. ``False`` (what a running experiment
            uses): the address is bound and returned at once, and the app (FastAPI's imports take ~0.3 s of CPU)
            is built in the server thread when the first request arrives.

    Raises:
        MissingDependencyError: FastAPI or uvicorn is not installed.
        NniPlError: the address cannot be bound.
    """
    from nni_pl import webui

    if not webui.available():
        raise MissingDependencyError("fastapi uvicorn", "webui", "the web dashboard")
    if token is not None and not token.strip():
        raise NniPlError("the dashboard token must not be empty; leave it out to have one generated")
    if not is_loopback(host) and token is None:
        token = url_token(24)
    sock = _bind(host, port or 0)

    def build() -> Any:
        from nni_pl.webui.app import create_app

        return create_app(
            store_or_url,
            read_only=read_only,
            token=token,
            experiment_id=experiment_id,
            workdir=workdir,
            allowed_hosts=_LOOPBACK_NAMES if is_loopback(host) else None,
            stop_hook=stop_hook,
        )

    try:
        app = build() if wait else None  # waiting: errors of the app reach the caller as they are
    except BaseException:
        sock.close()
        raise
    server = WebServer(app, sock, host, token, app_factory=build).start(wait=wait)
    logger.info("dashboard at %s", server.base_url if token is None else server.base_url + "?token=***")
    return server


def write_url_file(directory: str | Path, server: WebServer | None, *, error: str | None = None) -> Path:
    """Record where a running manager serves the dashboard (``nni-pl webui ID`` reads it); owner-only.

    ``server=None`` records why there is no dashboard (``error``), so a detached launch can say so.
    """
    path = Path(directory) / URL_FILE
    tmp = path.with_suffix(".tmp")
    if server is None:
        data: dict[str, Any] = {"url": None, "error": error, "pid": os.getpid()}
    else:
        data = {
            "url": server.url,
            "urls": server.urls,
            "host": server.host,
            "port": server.port,
            "pid": os.getpid(),
        }
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
    tmp.replace(path)
    return path


def read_url_file(directory: str | Path) -> dict[str, Any] | None:
    """What :func:`write_url_file` recorded (``url`` is ``None`` when the dashboard could not start)."""
    try:
        data = json.loads((Path(directory) / URL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "url" in data else None


def remove_url_file(directory: str | Path) -> None:
    with contextlib.suppress(OSError):
        (Path(directory) / URL_FILE).unlink()
