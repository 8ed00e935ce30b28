"""The dashboard's FastAPI app: a JSON API over the experiment store (``/api/v1``) and the static page.

The app keeps no state of its own: every request reads the store, and every action writes it through
:mod:`nni_pl.experiment.control` (the same code the ``nni-pl`` commands use), which the running manager
picks up. See ``create_app`` for the safety rules (token, read-only mode, secrets, log paths).
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from nni_pl import __version__
from nni_pl.errors import ExperimentNotFoundError, NniPlError, StoreError
from nni_pl.experiment import control, locate
from nni_pl.experiment import store as st
from nni_pl.webui._limits import MAX_BODY_BYTES, BodyLimit

__all__ = ["MAX_BODY_BYTES", "STATIC_DIR", "TOKEN_COOKIE", "create_app"]

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
TOKEN_COOKIE = "nni_pl_token"
API = "/api/v1"
_STATIC_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_PATCH_FIELDS = ("trialConcurrency", "maxTrialNumber", "maxExperimentDuration")
_MAX_LOG_BYTES = 2_000_000
_MAX_ERROR_CHARS = 600  # an error answer is one short line, whatever the request carried
_LONG_WORD = re.compile(r"\S{81,}")


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(_clean(data), status_code=status, headers={"Cache-Control": "no-store"})


def _error(status: int, message: str) -> JSONResponse:
    return _json({"error": _one_line(message)}, status)


def _one_line(message: str) -> str:
    """``message`` on one line and at most ``_MAX_ERROR_CHARS`` long. A value a request carried, echoed by an error
    deeper down, is cut: each run of more than 80 non-blank characters to 60, then the message in the middle,
    so the start (what was wrong) and the end (how to fix it) remain."""
    message = _LONG_WORD.sub(lambda m: m.group()[:60] + "...", " ".join(message.split()))
    if len(message) <= _MAX_ERROR_CHARS:
        return message
    cut = len(message) - _MAX_ERROR_CHARS
    head, tail = _MAX_ERROR_CHARS * 2 // 3, _MAX_ERROR_CHARS // 3
    return f"{message[:head]} ...[{cut} characters cut]... {message[-tail:]}"


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (values from a request body are echoed only so)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Catalog:
    """Where the app finds experiments: one store and/or every experiment indexed under a working directory."""

    def __init__(
        self, store: st.Store | None, workdir: str | Path | None, scan: bool, *, owned: bool
    ) -> None:
        self.store = store
        self.owned = owned  # the app opened the store: it closes it too
        self.workdir = Path(workdir).expanduser() if workdir else None
        self.scan = scan
        self._stores: dict[str, st.Store] = {}
        if store is not None:
            self._stores[store.url] = store
        self._lock = threading.Lock()

    def _store(self, url: str) -> st.Store:
        with self._lock:
            store = self._stores.get(url)
            if store is None:
                store = self._stores[url] = st.Store(url)
            return store

    def experiments(self) -> list[locate.Located]:
        found: dict[str, locate.Located] = {}
        if self.store is not None:
            for exp in self.store.list_experiments():
                found[exp.id] = locate.Located(self.store, exp)
        if self.scan:
            for exp_id, _directory, url in locate.candidates(self.workdir):
                if exp_id in found:
                    continue
                if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
                    continue
                try:
                    store = self._store(url)
                    found[exp_id] = locate.Located(store, store.get_experiment(exp_id))
                except (StoreError, ExperimentNotFoundError):
                    continue
        return sorted(found.values(), key=lambda loc: loc.experiment.created_at)

    def get(self, experiment_id: str) -> locate.Located:
        if self.store is not None:
            try:
                return locate.Located(self.store, self.store.get_experiment(experiment_id))
            except ExperimentNotFoundError:
                if not self.scan:
                    raise ExperimentNotFoundError(
                        f"no experiment {experiment_id!r} here; GET {API}/experiments lists those there are"
                    ) from None
        for exp_id, _directory, url in locate.candidates(self.workdir):
            if exp_id == experiment_id:
                store = self._store(url)
                return locate.Located(store, store.get_experiment(exp_id))
        raise ExperimentNotFoundError(
            f"no experiment {experiment_id!r}; GET {API}/experiments lists those there are"
        )

    def close(self) -> None:
        with self._lock:
            for url, store in self._stores.items():
                if self.store is None or url != self.store.url or self.owned:
                    store.close()
            self._stores.clear()


# --- what the API answers ---------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, dict):
        value = value.get("default")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _summary(loc: locate.Located) -> dict[str, Any]:
    exp, store = loc.experiment, loc.store
    counts = store.count_trials(exp.id)
    counts["total"] = sum(counts.values())
    mode = control.optimize_mode(exp.config)
    best = store.best_trials(exp.id, optimize_mode=mode, limit=1)
    return {
        "id": exp.id,
        "name": exp.name,
        "status": locate.shown_status(exp),
        "best": best[0].final_default if best else None,
        "optimize_mode": mode,
        "counts": counts,
        "started_at": exp.created_at,
        "ended_at": exp.ended_at if exp.status != st.EXP_RUNNING else None,
        "duration": exp.elapsed,
        "max_trial_number": exp.config.get("maxTrialNumber"),
        "directory": exp.directory,
        "manager_alive": locate.manager_alive(exp),
    }


def _detail(loc: locate.Located, read_only: bool) -> dict[str, Any]:
    from nni_pl.experiment.config import parse_duration

    exp = loc.experiment
    data = _summary(loc)
    cfg = exp.config
    best = loc.store.best_trials(exp.id, optimize_mode=data["optimize_mode"], limit=1)
    try:
        max_duration = parse_duration(cfg.get("maxExperimentDuration"), "maxExperimentDuration")
    except NniPlError:
        max_duration = None
    data.update(
        config=control.redact({k: v for k, v in cfg.items() if k != "searchSpace"}),
        search_space=cfg.get("searchSpace") or {},
        best_trial=(
            {"trial_id": best[0].trial_id, "final": best[0].final_default, "parameters": best[0].parameters}
            if best
            else None
        ),
        trial_concurrency=cfg.get("trialConcurrency"),
        max_experiment_duration=max_duration,
        elapsed=exp.elapsed,
        read_only=read_only or data["status"] != st.EXP_RUNNING,
        message=exp.message,
    )
    return data


def _trial(t: st.TrialRow) -> dict[str, Any]:
    return {
        "trial_id": t.trial_id,
        "sequence_id": t.sequence_id if t.sequence_id >= 0 else None,
        "status": t.status,
        "parameters": t.parameters,
        "final": t.final_default if t.final_default is not None else _number(t.final),
        "duration": t.duration,
        "started_at": t.started_at,
        "ended_at": t.ended_at,
        "intermediate_count": t.intermediate_count,
        "parameter_source": t.parameter_source,
        "platform": t.platform,  # where it ran: "local", "remote"... (hybrid experiments use several)
    }


def _metric_value(m: st.MetricRow) -> Any:
    return m.default if m.default is not None else _number(m.value)


def _tail(path: Path, lines: int) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - _MAX_LOG_BYTES))
        data = f.read()
    text = data.decode("utf-8", errors="replace")
    if size > _MAX_LOG_BYTES:
        text = text.split("\n", 1)[-1]
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) + ("\n" if kept and text.endswith("\n") else "")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return False
    return True


# --- the app ------------------------------------------------------------------------------------------------------


def create_app(
    store_or_url: st.Store | str | None = None,
    *,
    read_only: bool = False,
    token: str | None = None,
    experiment_id: str | None = None,
    workdir: str | Path | None = None,
    scan: bool | None = None,
    allowed_hosts: set[str] | frozenset[str] | None = None,
    stop_hook: Callable[[], None] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The dashboard app over a store.

    Args:
        store_or_url: the store (or its URL) whose experiments are shown; ``None`` shows every experiment
            indexed under ``workdir`` (``$NNI_PL_HOME`` by default).
        read_only: refuse every change (PATCH, stop, resume, kill, add answer 409); ``nni-pl view`` serves so.
        token: when set, every request (page, static files and API) must carry it: header
            ``Authorization: Bearer <token>``, query ``?token=<token>``, or the cookie the page gets when it is
            opened with ``?token=``. Otherwise the answer is 401.
        experiment_id: the experiment the page opens first (``GET /api/v1/version`` names it).
        workdir: also list the experiments found in this working directory (and the id index).
        scan: list the experiments of ``workdir``/the index besides those of the store (default: when no
            store is given, or a ``workdir`` is).
        allowed_hosts: when set, refuse requests whose ``Host`` header names another host (a loopback-bound
            server sets the loopback names, which defeats DNS rebinding).
        stop_hook: how to stop ``experiment_id`` when this process runs its manager (instead of a signal).
        max_body_bytes: the largest request body accepted (1 MiB); a larger one, declared or streamed
            (chunked), is answered 413 as soon as the limit is passed, without reading the rest.

    Safety: secrets in the config are masked (:func:`nni_pl.experiment.control.redact`); log endpoints read
    only ``stdout``/``stderr`` files inside the experiment directory; a request that changes something and
    carries an ``Origin`` header of another site is refused (no cross-site requests). Request bodies are
    limited (``max_body_bytes``) and never echoed: an error answer is one line that quotes at most a short
    prefix of a value it names.

    Example:
        >>> import tempfile
        >>> from fastapi.testclient import TestClient
        >>> from nni_pl.experiment import store as st
        >>> store = st.Store(st.sqlite_url(tempfile.mkdtemp() + "/store.sqlite"))
        >>> _ = store.create_experiment(id="abcd1234", name="demo", config={}, directory="", status="DONE")
        >>> client = TestClient(create_app(store.url, read_only=True))
        >>> [(e["id"], e["status"]) for e in client.get("/api/v1/experiments").json()]
        [('abcd1234', 'DONE')]
        >>> client.post("/api/v1/experiments/abcd1234/stop").status_code  # read-only
        409
        >>> store.close()
    """
    if isinstance(store_or_url, str):
        store: st.Store | None = st.Store(store_or_url)
    else:
        store = store_or_url
    catalog = _Catalog(
        store,
        workdir,
        scan if scan is not None else (store is None or workdir is not None),
        owned=isinstance(store_or_url, str),
    )
    app = FastAPI(
        title="nni-pl dashboard", version=__version__, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.catalog = catalog
    app.state.read_only = read_only
    # added before the guard below, so it runs inside it: hosts and tokens are checked before a body is read
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    # --- errors: always JSON with a reason ------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(ExperimentNotFoundError)
    async def _not_found(request: Request, exc: ExperimentNotFoundError) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(NniPlError)
    async def _bad_request(request: Request, exc: NniPlError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _error(404, f"no such page or endpoint: {request.method} {request.url.path}")
        if exc.status_code == 405:
            return _error(405, f"{request.method} is not allowed on {request.url.path}")
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors()[:3]:
            loc = e.get("loc", ())
            where = ".".join(str(p) for p in loc if p not in ("body", "query", "path"))
            if e.get("type") == "json_invalid":
                problems.append(
                    f"the body is not valid JSON ({e.get('ctx', {}).get('error', 'decode error')})"
                )
            elif loc[:1] == ("body",):  # never echo a body: name the type of what came
                problems.append(f"{where or 'body'}: {e.get('msg')} (got a {type(e.get('input')).__name__})")
            else:
                problems.append(f"{where}: {e.get('msg')} (got {_short(e.get('input'))})")
        return _error(400, "invalid request: " + "; ".join(problems))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("dashboard request %s %s failed", request.method, request.url.path)
        return _error(500, f"{type(exc).__name__}: {exc}")

    # --- the guard: hosts, token, cross-site changes -----------------------------------------------------------
    @app.middleware("http")
    async def _guard(request: Request, call_next: Callable[[Request], Any]) -> Response:
        host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if request.headers.get("host", "").startswith("["):
            host = request.headers["host"][1:].split("]", 1)[0].lower()
        if allowed_hosts is not None and host not in allowed_hosts:
            return _error(403, f"host {host!r} is not served here; open the dashboard at 127.0.0.1")
        via_query = False
        if token is not None:
            given = None
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            elif request.query_params.get("token") is not None:
                given, via_query = request.query_params["token"], True
            elif request.cookies.get(TOKEN_COOKIE):
                given = request.cookies[TOKEN_COOKIE]
            if given is None or not hmac.compare_digest(given.encode(), token.encode()):
                reason = "a wrong token" if given is not None else "no token"
                return _error(
                    401,
                    f"this dashboard needs its token and the request carried {reason}: open the URL printed at "
                    "start (it ends in ?token=...) or send the header 'Authorization: Bearer <token>'",
                )
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("origin")
            if origin and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
                return _error(403, f"cross-site request from {origin} refused")
        response = await call_next(request)
        if via_query and request.url.path == "/":
            # the page's own script and style requests then carry the token as a cookie
            response.set_cookie(TOKEN_COOKIE, token or "", httponly=True, samesite="strict")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    def writable(loc: locate.Located, what: str) -> None:
        if read_only:
            raise ApiError(
                409,
                f"this dashboard is read-only (nni-pl view): cannot {what} experiment {loc.experiment.id}; "
                f"use the nni-pl command, or the dashboard of the running experiment",
            )

    # --- API ------------------------------------------------------------------------------------------------------
    @app.get(f"{API}/version")
    def version() -> JSONResponse:
        return _json({"version": __version__, "read_only": read_only, "experiment_id": experiment_id})

    @app.get(f"{API}/experiments")
    def experiments() -> JSONResponse:
        return _json([_summary(loc) for loc in catalog.experiments()])

    @app.get(f"{API}/experiments/{{exp_id}}")
    def experiment(exp_id: str) -> JSONResponse:
        return _json(_detail(catalog.get(exp_id), read_only))

    @app.patch(f"{API}/experiments/{{exp_id}}")
    def patch_experiment(exp_id: str, body: dict[str, Any] = Body(...)) -> JSONResponse:  # noqa: B008
        loc = catalog.get(exp_id)
        writable(loc, "change")
        unknown = [k for k in body if k not in _PATCH_FIELDS]
        if unknown:
            raise ApiError(
                400,
                f"cannot change {_short(unknown[0])} (got {_short(body[unknown[0]])}); "
                f"changeable: {', '.join(_PATCH_FIELDS)}",
            )
        control.update_limits(
            loc.store,
            exp_id,
            concurrency=body.get("trialConcurrency"),
            max_trials=body.get("maxTrialNumber"),
            duration=body.get("maxExperimentDuration"),
        )
        return _json(_detail(catalog.get(exp_id), read_only))

    @app.post(f"{API}/experiments/{{exp_id}}/stop")
    def stop(exp_id: str) -> JSONResponse:
        from nni_pl.experiment.control import stop_experiment

        loc = catalog.get(exp_id)
        writable(loc, "stop")
        exp = loc.experiment
        if exp.status != st.EXP_RUNNING:
            return _json({"ok": True, "status": exp.status})
        if stop_hook is not None and exp_id == experiment_id and exp.manager_pid == os.getpid():
            stop_hook()  # this process runs the manager: it stops after this answer
            return _json({"ok": True, "status": "STOPPING"})
        stop_experiment(loc.store, exp_id, timeout=20.0)
        return _json({"ok": True, "status": locate.shown_status(loc.store.get_experiment(exp_id))})

    @app.post(f"{API}/experiments/{{exp_id}}/resume")
    def resume(exp_id: str) -> JSONResponse:
        from nni_pl.experiment.experiment import Experiment

        loc = catalog.get(exp_id)
        writable(loc, "resume")
        exp = loc.experiment
        if locate.shown_status(exp) == st.EXP_RUNNING:
            return _json({"ok": True, "status": st.EXP_RUNNING})
        function = exp.config.get("trialFunction")
        if function:
            raise ApiError(
                409,
                f"experiment {exp_id} tunes the Python function {function}; resume it from Python: "
                f"Experiment.resume({exp_id!r}, trial=...).run()",
            )
        Experiment.resume(exp_id, store_url=loc.store.url).run(detach=True)
        return _json({"ok": True, "status": locate.shown_status(loc.store.get_experiment(exp_id))})

    @app.get(f"{API}/experiments/{{exp_id}}/trials")
    def trials(exp_id: str) -> JSONResponse:
        loc = catalog.get(exp_id)
        return _json([_trial(t) for t in loc.store.list_trials(exp_id)])

    @app.post(f"{API}/experiments/{{exp_id}}/trials")
    def add_trial(exp_id: str, body: dict[str, Any] = Body(...)) -> JSONResponse:  # noqa: B008
        loc = catalog.get(exp_id)
        writable(loc, "add a trial to")
        if "parameters" not in body:
            raise ApiError(
                400,
                f'the body needs "parameters", e.g. {{"parameters": {{"lr": 0.01}}}}; '
                f"got keys {_short(sorted(body)[:5])}",
            )
        t = control.add_trial(loc.store, exp_id, body["parameters"])
        return _json({"trial_id": t.trial_id}, 201)

    @app.get(f"{API}/experiments/{{exp_id}}/trials/{{trial_id}}")
    def trial(exp_id: str, trial_id: str) -> JSONResponse:
        loc = catalog.get(exp_id)
        t = loc.store.get_trial(exp_id, trial_id)
        data = _trial(t)
        data.update(
            error=t.error,
            exit_code=t.exit_code,
            final_raw=t.final,
            intermediate=[
                {"sequence": m.sequence, "value": _metric_value(m), "time": m.timestamp}
                for m in loc.store.list_metrics(exp_id, trial_id, type="PERIODICAL")
            ],
        )
        return _json(data)

    @app.get(f"{API}/experiments/{{exp_id}}/metrics")
    def metrics(exp_id: str) -> JSONResponse:
        loc = catalog.get(exp_id)
        curves: dict[str, list[list[Any]]] = {}
        for m in loc.store.list_metrics(exp_id, type="PERIODICAL"):
            curves.setdefault(m.trial_id, []).append([m.sequence, _metric_value(m)])
        return _json(curves)

    @app.get(f"{API}/experiments/{{exp_id}}/trials/{{trial_id}}/log")
    def log(exp_id: str, trial_id: str, stream: str = "stdout", tail: int = 200) -> JSONResponse:
        if stream not in ("stdout", "stderr"):
            raise ApiError(400, f"stream must be stdout or stderr, got {stream!r}")
        if not 1 <= tail <= 100_000:
            raise ApiError(400, f"tail must be between 1 and 100000 lines, got {tail}")
        loc = catalog.get(exp_id)
        t = loc.store.get_trial(exp_id, trial_id)
        root = Path(loc.experiment.directory)
        path = Path(t.trial_dir) / stream
        if not _inside(path, root):
            raise ApiError(
                403,
                f"the {stream} of trial {trial_id} is recorded at {t.trial_dir}, outside the experiment "
                f"directory {root}; the dashboard reads logs only inside it",
            )
        if not path.is_file():
            raise ApiError(404, f"trial {trial_id} has no {stream} yet")
        return _json({"text": _tail(path, tail)})

    @app.post(f"{API}/experiments/{{exp_id}}/trials/{{trial_id}}/kill")
    def kill(exp_id: str, trial_id: str) -> JSONResponse:
        loc = catalog.get(exp_id)
        writable(loc, "kill a trial of")
        t = loc.store.get_trial(exp_id, trial_id)
        if t.finished:
            return _json({"ok": True, "status": t.status})
        status = control.kill_trial(
            loc.store, exp_id, trial_id, manager_alive=locate.manager_alive(loc.experiment), wait=10.0
        )
        return _json({"ok": True, "status": status})

    # --- the page ----------------------------------------------------------------------------------------------
    @app.get("/", response_model=None)
    def index() -> Response:
        page = STATIC_DIR / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html", headers={"Cache-Control": "no-store"})
        return HTMLResponse(
            "<!doctype html><title>nni-pl</title><p>The dashboard page is not installed; "
            f'the API is at <a href="{API}/experiments">{API}/experiments</a>.</p>'
        )

    @app.get("/static/{name}", response_model=None)
    def static(name: str) -> Response:
        if not _STATIC_NAME.match(name):
            raise ApiError(404, f"no static file {name!r}")
        if name == "plotly.min.js":
            path = _plotly_js()
            if path is None:
                raise ApiError(404, "plotly is not installed: pip install 'nni-pl[webui]'")
            return FileResponse(
                path, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"}
            )
        path = STATIC_DIR / name
        if not path.is_file():
            raise ApiError(404, f"no static file {name!r}")
        media = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}
        return FileResponse(path, media_type=media.get(path.suffix), headers={"Cache-Control": "no-cache"})

    return app


def _plotly_js() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    return path if path.is_file() else None
