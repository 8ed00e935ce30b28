"""A recording stand-in for Azure ML's ARM endpoint, on 127.0.0.1, for the AML service's tests.

The service under test builds a real ``MLClient``; only two things are doubles:

* the credential (:class:`FakeCredential`: ``get_token`` returns an ``AccessToken``; or one that raises), and
* the network: :class:`LocalTransport` is azure-core's ``RequestsTransport`` with each request's scheme and host
  rewritten to the local :class:`FakeAml` server (``https://management.azure.com/subscriptions/...`` becomes
  ``http://127.0.0.1:<port>/subscriptions/...``). Everything above it (the SDK's job building, REST
  serialisation, the bearer-token policy, the retry policy, error mapping) is the SDK's own code.

The server answers the calls the service makes: workspace and compute ``GET``, the code-snapshot lookup by
content hash (it answers that the snapshot exists, as AML does when the same code was uploaded before, so the
blob upload itself is not exercised), the anonymous environment ``PUT``, job ``PUT``/``GET`` and ``cancel``. Job
statuses follow a script per job: each ``GET`` moves one step on.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport

SUB = "9b1d4a4e-2f3c-4a57-9d2e-1c0f5e8b7a61"
RG = "ml-rg"
WS = "ml-ws"
COMPUTE = "cpu-cluster"
WS_PATH = (
    f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"
)
CODE_ID = f"{WS_PATH}/codes/0f2c-snapshot/versions/1"


class FakeCredential:
    """A credential that always has a token (the test double of ``DefaultAzureCredential``)."""

    def __init__(self) -> None:
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken("fake-token-for-tests", int(time.time()) + 3600)


class LocalTransport(RequestsTransport):
    """azure-core's requests transport, sending every request to ``http://127.0.0.1:<port>`` instead."""

    def __init__(self, port: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.port = port

    def send(self, request: Any, **kwargs: Any) -> Any:
        parts = urlsplit(request.url)
        request.url = urlunsplit(("http", f"127.0.0.1:{self.port}", parts.path, parts.query, ""))
        return super().send(request, **kwargs)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    authorization: str | None
    time: float = field(default_factory=time.monotonic)


@dataclass
class FakeAml:
    """The server's state: what exists, the job status scripts, and every request received."""

    workspaces: set[str] = field(default_factory=lambda: {WS})
    computes: set[str] = field(default_factory=lambda: {COMPUTE})
    default_script: list[str] = field(default_factory=lambda: ["Queued", "Running", "Completed"])
    scripts: dict[str, list[str]] = field(default_factory=dict)  # job name -> statuses, one per GET
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # job name -> the created job's body
    steps: dict[str, int] = field(default_factory=dict)
    canceled: list[str] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    fail_create: tuple[int, str, str] | None = None  # (status, code, message) for job PUTs
    get_delay: float = 0.0  # seconds each job GET takes to answer (a slow Azure)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    # --- helpers for tests --------------------------------------------------------------------------------
    def calls(self, method: str, contains: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == method and contains in r.path]

    def status_of(self, name: str) -> str:
        script = self.scripts.get(name, self.default_script)
        return script[min(self.steps.get(name, 0), len(script) - 1)]

    # --- the API --------------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        prefix = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/"
        if not path.startswith(prefix):
            if not path.startswith(f"/subscriptions/{SUB}/"):
                return 404, _error(
                    "SubscriptionNotFound", f"The subscription '{path.split('/')[2]}' could not be found."
                )
            return 404, _error("ResourceGroupNotFound", "Resource group could not be found.")
        ws, _, rest = path[len(prefix) :].partition("/")
        if ws not in self.workspaces:
            return 404, _error(
                "ResourceNotFound",
                f"The Resource 'Microsoft.MachineLearningServices/workspaces/{ws}' under resource group '{RG}' was "
                "not found.",
            )
        base = prefix + ws
        parts = rest.split("/") if rest else []
        if not parts and method == "GET":
            return 200, {
                "id": base,
                "name": ws,
                "type": "Microsoft.MachineLearningServices/workspaces",
                "location": "westeurope",
                "properties": {"friendlyName": ws, "workspaceId": "00000000-1111-2222-3333-444444444444"},
            }
        if parts[:1] == ["computes"] and method == "GET":
            name = parts[1]
            if name not in self.computes:
                return 404, _error("ResourceNotFound", f"Compute {name} not found")
            return 200, {
                "id": f"{base}/computes/{name}",
                "name": name,
                "type": "Microsoft.MachineLearningServices/workspaces/computes",
                "location": "westeurope",
                "properties": {
                    "computeType": "AmlCompute",
                    "provisioningState": "Succeeded",
                    "properties": {
                        "vmSize": "STANDARD_DS3_V2",
                        "scaleSettings": {"maxNodeCount": 4, "minNodeCount": 0},
                    },
                },
            }
        if parts[:1] == ["codes"] and method == "GET":
            if len(parts) == 3:  # the lookup by content hash: the snapshot is there already
                return 200, {
                    "value": [
                        {"id": CODE_ID, "name": "1", "properties": {"hash": query.get("hash", [""])[0]}}
                    ]
                }
            return 200, {
                "id": CODE_ID,
                "name": "1",
                "properties": {
                    "codeUri": "https://acct.blob.core.windows.net/snapshots/0f2c",
                    "isAnonymous": True,
                },
            }
        if parts[:1] == ["environments"] and method == "PUT":
            return 200, {
                "id": f"{base}/{rest}",
                "name": parts[-1],
                "properties": dict(body.get("properties", {})),
            }
        if parts[:1] == ["jobs"]:
            name = parts[1]
            if method == "PUT":
                if self.fail_create is not None:
                    status, code, message = self.fail_create
                    return status, _error(code, message)
                job = json.loads(json.dumps(body))
                job.update(
                    {
                        "id": f"{base}/jobs/{name}",
                        "name": name,
                        "type": "Microsoft.MachineLearningServices/workspaces/jobs",
                    }
                )
                job["properties"]["status"] = "NotStarted"
                job["properties"]["services"] = {
                    "Studio": {"jobServiceType": "Studio", "endpoint": f"https://ml.azure.com/runs/{name}"}
                }
                with self.lock:
                    self.jobs[name] = job
                    self.steps[name] = 0
                return 201, job
            if name not in self.jobs:
                return 404, _error("UserError", f"Job {name} not found.")
            if method == "POST" and parts[2:] == ["cancel"]:
                with self.lock:
                    self.canceled.append(name)
                    self.scripts[name] = ["CancelRequested", "Canceled"]
                    self.steps[name] = 0
                return 200, {}
            if method == "GET":
                time.sleep(self.get_delay)
                with self.lock:
                    job = json.loads(json.dumps(self.jobs[name]))
                    job["properties"]["status"] = self.status_of(name)
                    self.steps[name] = self.steps.get(name, 0) + 1
                return 200, job
        return 404, _error("NotImplementedInFake", f"{method} {path}")


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@contextmanager
def serve(state: FakeAml) -> Iterator[FakeAml]:
    """Run ``state``'s server on a free port of 127.0.0.1 (``state.port``) for the ``with`` block."""

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            with state.lock:
                state.requests.append(
                    Recorded(self.command, parts.path, query, body, self.headers.get("Authorization"))
                )
            status, payload = state.handle(self.command, parts.path, query, body)
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _any

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
