"""A recording stand-in for the Kubernetes API server, for the kubeflow service's tests (no cluster here).

It is a ``ThreadingHTTPServer`` on 127.0.0.1 (a random port) that records every request and answers the few
endpoints the service calls as the API server does (paths, JSON ``Status`` bodies with ``reason``/``details``,
400 for a log of a container not started, 404 for an unknown API group): namespaces, PyTorchJobs (create, get,
list by label, delete), pods (list by label, log) and ConfigMaps. It plays the training operator too, but only
as far as the tests script it: a created job gets one pod per replica, named and labelled as the operator names
them; its conditions and the master's log change when a test calls :meth:`FakeApiServer.set_condition` and
:meth:`FakeApiServer.set_log`.

Nothing runs: there is no kubelet, so no container command is executed here.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

JOBS = re.compile(r"^/apis/kubeflow\.org/v1/namespaces/([^/]+)/pytorchjobs(?:/([^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+)(/log)?)?$")
CONFIGMAPS = re.compile(r"^/api/v1/namespaces/([^/]+)/configmaps(?:/([^/]+))?$")
NAMESPACE = re.compile(r"^/api/v1/namespaces/([^/]+)$")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


def _status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class FakeApiServer:
    """See the module docstring. Use as a context manager; ``url`` is the server's address."""

    def __init__(
        self,
        *,
        namespaces: tuple[str, ...] = ("default",),
        crd: bool = True,
    ) -> None:
        self.namespaces = set(namespaces)
        self.crd = crd
        self.forbidden: set[tuple[str, str]] = set()  # (verb, resource), e.g. ("create", "pytorchjobs")
        self.requests: list[Request] = []
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], str] = {}
        self.configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.RLock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def kubeconfig(self, path: Path, *, token: str = "t0ken-fake") -> Path:
        """Write a kubeconfig for this server (bearer token auth) and return its path."""
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "me", "user": {"token": token}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
                    "current-context": "fake",
                }
            )
        )
        return path

    # --- what the tests look at and script ------------------------------------------------------------------------
    def calls(self, method: str | None = None, pattern: str = "") -> list[Request]:
        with self.lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and re.search(pattern, r.path)
            ]

    def set_condition(self, name: str, kind: str, message: str = "", namespace: str = "default") -> None:
        """Append a true condition (``Created``, ``Running``, ``Restarting``, ``Succeeded``, ``Failed``); the
        operator's earlier Running condition turns false when the job ends."""
        with self.lock:
            job = self.jobs[(namespace, name)]
            conditions = job.setdefault("status", {}).setdefault("conditions", [])
            if kind in ("Succeeded", "Failed"):
                for c in conditions:
                    if c["type"] == "Running":
                        c["status"] = "False"
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            conditions.append(
                {"type": kind, "status": "True", "reason": f"PyTorchJob{kind}", "message": message,
                 "lastUpdateTime": stamp, "lastTransitionTime": stamp}
            )  # fmt: skip

    def set_log(self, name: str, text: str, namespace: str = "default", exit_code: int | None = None) -> None:
        """The master pod's log (its container has started); ``exit_code``: the container has ended."""
        with self.lock:
            pod = f"{name}-master-0"
            self.logs[(namespace, pod)] = text
            state: dict[str, Any] = {"running": {}}
            if exit_code is not None:
                state = {"terminated": {"exitCode": exit_code}}
            self.pods[(namespace, pod)]["status"] = {
                "phase": "Running" if exit_code is None else ("Succeeded" if exit_code == 0 else "Failed"),
                "containerStatuses": [{"name": "pytorch", "state": state}],
            }

    def set_waiting(self, name: str, reason: str, message: str = "", namespace: str = "default") -> None:
        with self.lock:
            self.pods[(namespace, f"{name}-master-0")]["status"] = {
                "phase": "Pending",
                "containerStatuses": [
                    {"name": "pytorch", "state": {"waiting": {"reason": reason, "message": message}}}
                ],
            }

    # --- the "operator" -------------------------------------------------------------------------------------------
    def _create_pods(self, namespace: str, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        for kind, spec in job["spec"]["pytorchReplicaSpecs"].items():
            for i in range(int(spec.get("replicas", 1))):
                pod = f"{name}-{kind.lower()}-{i}"
                labels = dict(spec["template"].get("metadata", {}).get("labels") or {})
                labels.update(
                    {
                        "training.kubeflow.org/job-name": name,
                        "training.kubeflow.org/replica-type": kind.lower(),
                        "training.kubeflow.org/replica-index": str(i),
                    }
                )
                self.pods[(namespace, pod)] = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": pod, "namespace": namespace, "labels": labels},
                    "spec": spec["template"]["spec"],
                    "status": {"phase": "Pending"},
                }

    def _log(self, namespace: str, pod: str) -> str | None:
        return self.logs.get((namespace, pod))

    # --- HTTP ---------------------------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, code: int, body: Any, content_type: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                with server.lock:
                    server.requests.append(
                        Request(
                            self.command,
                            url.path,
                            query,
                            body,
                            {k.lower(): v for k, v in self.headers.items()},
                        )
                    )
                    code, answer, kind = server._route(self.command, url.path, query, body)
                self._answer(code, answer, kind)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle

        return Handler

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any, str]:
        verb = {"GET": "get", "POST": "create", "DELETE": "delete", "PUT": "update", "PATCH": "patch"}[method]
        json_type = "application/json"
        if m := NAMESPACE.match(path):
            if ("get", "namespaces") in self.forbidden:
                return 403, self._forbidden("get", "namespaces", "", m.group(1)), json_type
            if m.group(1) not in self.namespaces:
                return 404, self._no_namespace(m.group(1)), json_type
            return 200, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": m.group(1)}}, json_type
        if path.startswith("/apis/kubeflow.org/"):
            if not self.crd:
                return (
                    404,
                    _status(404, "NotFound", "the server could not find the requested resource"),
                    json_type,
                )
            m = JOBS.match(path)
            if m is None:
                return (
                    404,
                    _status(404, "NotFound", "the server could not find the requested resource"),
                    json_type,
                )
            ns, name = m.group(1), m.group(2)
            if name is None and method == "GET":
                verb = "list"
            if (verb, "pytorchjobs") in self.forbidden:
                return 403, self._forbidden(verb, "pytorchjobs", "kubeflow.org", ns), json_type
            return (*self._jobs(method, ns, name, query, body), json_type)
        if m := PODS.match(path):
            ns, name, log = m.groups()
            if name is None:
                items = [p for (n, _), p in self.pods.items() if n == ns and _matches(p["metadata"]["labels"], query.get("labelSelector"))]  # fmt: skip
                return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}, json_type
            if (ns, name) not in self.pods:
                return (
                    404,
                    _status(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"}),
                    json_type,
                )
            if log:
                text = self._log(ns, name)
                if text is None:
                    message = f'container "pytorch" in pod "{name}" is waiting to start: ContainerCreating'
                    return 400, _status(400, "BadRequest", message), json_type
                return 200, text, "text/plain"
            return 200, self.pods[(ns, name)], json_type
        if m := CONFIGMAPS.match(path):
            ns, name = m.groups()
            if method == "POST":
                key = (ns, body["metadata"]["name"])
                if key in self.configmaps:
                    return (
                        409,
                        _status(409, "AlreadyExists", f'configmaps "{key[1]}" already exists'),
                        json_type,
                    )
                self.configmaps[key] = body
                return 201, body, json_type
            if (ns, name) not in self.configmaps:
                return (
                    404,
                    _status(404, "NotFound", f'configmaps "{name}" not found', {"name": name}),
                    json_type,
                )
            if method == "DELETE":
                del self.configmaps[(ns, name)]
                return 200, _status(200, "", ""), json_type
            return 200, self.configmaps[(ns, name)], json_type
        return 404, _status(404, "NotFound", "the server could not find the requested resource"), json_type

    def _jobs(
        self, method: str, ns: str, name: str | None, query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if name is None and method == "GET":
            items = [j for (n, _), j in self.jobs.items() if n == ns and _matches(j["metadata"].get("labels") or {}, query.get("labelSelector"))]  # fmt: skip
            return 200, {
                "apiVersion": "kubeflow.org/v1",
                "kind": "PyTorchJobList",
                "metadata": {},
                "items": items,
            }
        if name is None and method == "POST":
            if ns not in self.namespaces:
                return 404, self._no_namespace(ns)
            key = (ns, body["metadata"]["name"])
            if key in self.jobs:
                message = f'pytorchjobs.kubeflow.org "{key[1]}" already exists'
                return 409, _status(409, "AlreadyExists", message, {"name": key[1], "group": "kubeflow.org", "kind": "pytorchjobs"})  # fmt: skip
            job = json.loads(json.dumps(body))
            job["metadata"]["uid"] = f"uid-{len(self.jobs)}"
            self.jobs[key] = job
            self._create_pods(ns, job)
            return 201, job
        key = (ns, name or "")
        if key not in self.jobs:
            message = f'pytorchjobs.kubeflow.org "{name}" not found'
            return 404, _status(
                404, "NotFound", message, {"name": name, "group": "kubeflow.org", "kind": "pytorchjobs"}
            )
        if method == "DELETE":
            job = self.jobs.pop(key)
            for pod in [p for p in self.pods if p[0] == ns and p[1].startswith(f"{name}-")]:
                del self.pods[pod]
            return 200, job
        return 200, self.jobs[key]

    @staticmethod
    def _no_namespace(ns: str) -> dict[str, Any]:
        return _status(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})

    @staticmethod
    def _forbidden(verb: str, resource: str, group: str, ns: str) -> dict[str, Any]:
        full = f"{resource}.{group}" if group else resource
        message = (
            f'{full} is forbidden: User "alice" cannot {verb} resource "{resource}" in API group "{group}" in the '
            f'namespace "{ns}"'
        )
        return _status(403, "Forbidden", message, {"group": group, "kind": resource})
