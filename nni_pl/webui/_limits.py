"""The dashboard's request-body limit: an ASGI middleware that reads at most ``max_bytes`` of any body.

Every body the API takes is a small JSON object (``{"maxTrialNumber": 20}``, ``{"parameters": {...}}``), so a
larger one is refused with 413 before the app sees it. The limit holds while the body streams in, also for
chunked bodies that declare no length: the middleware buffers at most ``max_bytes`` and stops reading past
them, and its answer closes the connection, so the server's memory stays bounded whatever the client sends.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["MAX_BODY_BYTES", "BodyLimit", "describe_bytes"]

MAX_BODY_BYTES = 1024 * 1024  # 1 MiB: the largest API body (a customised trial's parameters) is far smaller

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def describe_bytes(n: int) -> str:
    """``n`` bytes for people: ``"1 MiB (1048576 bytes)"``, ``"64 KiB (65536 bytes)"``, ``"100 bytes"``."""
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit} ({n} bytes)"
    return f"{n} bytes"


class BodyLimit:
    """ASGI middleware: answer 413 (one-line JSON ``{"error": ...}``) to a request body over ``max_bytes``.

    A declared ``Content-Length`` over the limit is refused before a byte of the body is read; otherwise the body
    is read (buffered) up to the limit and replayed to the app, and the first byte past it ends the request.
    The body is never echoed.

    Args:
        app: the ASGI app to protect.
        max_bytes: the largest body accepted.

    Example:
        >>> from fastapi import FastAPI
        >>> from fastapi.testclient import TestClient
        >>> app = FastAPI()
        >>> app.add_middleware(BodyLimit, max_bytes=1024)
        >>> @app.post("/echo")
        ... def echo(body: dict) -> dict:
        ...     return body
        >>> client = TestClient(app)
        >>> client.post("/echo", json={"a": 1}).json()
        {'a': 1}
        >>> reply = client.post("/echo", content=b"x" * 2000, headers={"content-type": "application/json"})
        >>> reply.status_code, reply.json()["error"]
        (413, 'request body too large (it declares 2000 bytes): the dashboard accepts at most 1 KiB (1024 bytes); ...')
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
            raise ValueError(f"max_bytes must be an int >= 0, got {max_bytes!r}")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", ()):
            if name.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(send, 400, "the Content-Length header is not a number")
                    return
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, 413, self._too_large(f"it declares {declared} bytes"))
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send, 413, self._too_large(f"more than {self.max_bytes} bytes arrived"))
                return
            messages.append(message)
            if not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in messages)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)

    def _too_large(self, what: str) -> str:
        return (
            f"request body too large ({what}): the dashboard accepts at most {describe_bytes(self.max_bytes)}; "
            'its API takes small JSON objects such as {"maxTrialNumber": 20}'
        )

    @staticmethod
    async def _refuse(send: Send, status: int, message: str) -> None:
        payload = json.dumps({"error": message}).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"cache-control", b"no-store"),
                    (b"connection", b"close"),  # stop reading what is left of the body: the server closes
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
