"""The dashboard's request-body limit (413, one line of JSON, memory bounded) and errors that never echo a body."""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import warnings

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

with warnings.catch_warnings():  # starlette's note that it prefers httpx2 to httpx
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

from nni_pl.experiment import store as st
from nni_pl.webui._limits import BodyLimit
from nni_pl.webui.app import MAX_BODY_BYTES, create_app
from nni_pl.webui.server import serve

MARK = "Zq7xW"  # a run of it in an answer would mean the body was echoed
SPACE = {"lr": {"_type": "uniform", "_value": [0.0, 1.0]}}


@pytest.fixture
def store(tmp_path):
    store = st.Store.for_directory(tmp_path / "exp1")
    store.create_experiment(
        id="lim00001",
        name="lim",
        config={"maxTrialNumber": 3, "trialConcurrency": 1, "searchSpace": SPACE},
        directory=str(tmp_path / "exp1"),
    )
    yield store
    store.close()


def _one_line_error(r) -> str:
    assert r.headers["content-type"].startswith("application/json"), r.headers
    data = r.json()
    assert set(data) == {"error"} and "\n" not in data["error"]
    return data["error"]


def test_a_body_over_the_limit_is_413_naming_the_limit_and_a_body_within_it_works(store):
    client = TestClient(create_app(store))
    url = "/api/v1/experiments/lim00001"
    big = b'{"maxTrialNumber": 5, "pad": "' + MARK.encode() * (MAX_BODY_BYTES // len(MARK)) + b'"}'
    r = client.patch(url, content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    err = _one_line_error(r)
    assert "request body too large" in err and "1 MiB (1048576 bytes)" in err and MARK not in err
    assert r.headers["connection"] == "close"
    assert store.get_experiment("lim00001").config["maxTrialNumber"] == 3  # nothing changed
    r = client.patch(url, json={"maxTrialNumber": 5})
    assert r.status_code == 200 and r.json()["max_trial_number"] == 5


def test_hosts_and_tokens_are_checked_before_a_body_is_read(store):
    client = TestClient(create_app(store, token="tok3n"))
    big = b"{" + b"x" * (2 * MAX_BODY_BYTES)
    r = client.patch(
        "/api/v1/experiments/lim00001", content=big, headers={"content-type": "application/json"}
    )
    assert r.status_code == 401 and "token" in _one_line_error(r)
    r = client.patch(
        "/api/v1/experiments/lim00001",
        content=big,
        headers={"content-type": "application/json", "authorization": "Bearer tok3n"},
    )
    assert r.status_code == 413


def test_the_limit_is_a_create_app_argument(store):
    client = TestClient(create_app(store, max_body_bytes=100))
    url = "/api/v1/experiments/lim00001"
    r = client.patch(url, json={"maxTrialNumber": 4, "x": "y" * 100})
    assert r.status_code == 413 and "at most 100 bytes" in _one_line_error(r)
    assert client.patch(url, json={"maxTrialNumber": 4}).status_code == 200
    with pytest.raises(ValueError, match="max_bytes must be an int >= 0, got -1"):
        BodyLimit(lambda *a: None, max_bytes=-1)  # type: ignore[arg-type]


def test_a_streamed_body_without_length_is_refused_once_past_the_limit_and_not_read_further():
    """The middleware alone, fed a 200 MiB chunked body: it stops receiving just past the limit."""
    chunk = b"x" * 65536
    received = 0
    sent: list[dict] = []
    app_called = False

    async def receive() -> dict:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": chunk, "more_body": received < 3200}

    async def send(message: dict) -> None:
        sent.append(message)

    async def app(scope, receive, send) -> None:
        nonlocal app_called
        app_called = True

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"transfer-encoding", b"chunked")]}
    asyncio.run(BodyLimit(app, max_bytes=MAX_BODY_BYTES)(scope, receive, send))
    assert not app_called
    assert received == MAX_BODY_BYTES // len(chunk) + 1  # 17 chunks of 64 KiB read, not 3200
    assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]
    err = json.loads(sent[1]["body"])["error"]
    assert "more than 1048576 bytes arrived" in err and "at most 1 MiB" in err


def test_a_body_within_the_limit_reaches_the_app_whole_in_chunks():
    parts = [b'{"a": ', b"1", b"}"]
    got: list[bytes] = []

    async def receive() -> dict:
        body = parts.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(parts)}

    async def send(message: dict) -> None:
        pass

    async def app(scope, receive, send) -> None:
        got.append((await receive())["body"])

    asyncio.run(
        BodyLimit(app, max_bytes=8)(scope={"type": "http", "headers": []}, receive=receive, send=send)
    )
    assert got == [b'{"a": 1}']


def test_errors_never_echo_the_body(store):
    client = TestClient(create_app(store))
    base = "/api/v1/experiments/lim00001"
    payload = MARK * 20_000  # 100 kB, well within the body limit
    cases = [
        ("PATCH", base, b"[" + json.dumps(payload).encode() + b"]"),  # not a dict: pydantic's error
        ("PATCH", base, json.dumps(payload).encode()),
        ("PATCH", base, b"{" + payload.encode()),  # not JSON
        ("PATCH", base, json.dumps({"pad": payload}).encode()),  # an unknown field with a huge value
        ("PATCH", base, json.dumps({"maxTrialNumber": payload}).encode()),  # a bad value
        ("PATCH", base, json.dumps({payload: 1}).encode()),  # a huge key
        ("POST", f"{base}/trials", json.dumps({payload: 1}).encode()),  # no "parameters"
        ("POST", f"{base}/trials", json.dumps({"parameters": {"lr": payload}}).encode()),
        ("POST", f"{base}/trials", json.dumps({"parameters": {payload: 0.5}}).encode()),
    ]
    for method, url, body in cases:
        r = client.request(method, url, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, (method, url, r.text[:200])
        err = _one_line_error(r)
        assert len(r.content) < 1000 and MARK * 20 not in err, (body[:40], err)
    # the errors still say what was wrong
    r = client.patch(base, content=b"[1, 2]", headers={"content-type": "application/json"})
    assert "valid dictionary (got a list)" in r.json()["error"]
    r = client.patch(base, content=b"{bad", headers={"content-type": "application/json"})
    assert "the body is not valid JSON" in r.json()["error"]
    r = client.patch(base, json={"pad": 1})
    assert r.json()["error"].startswith("cannot change 'pad' (got 1); changeable:")
    # a query parameter is echoed, cut short
    r = client.get(f"{base}/trials/t/log", params={"tail": "9" * 300 + "x"})
    err = _one_line_error(r)
    assert r.status_code == 400 and "tail" in err and len(err) < 300


def test_a_real_server_cuts_off_a_huge_chunked_body_early_and_keeps_its_memory(store):
    """200 MB through a real socket, chunked (no length): the server answers 413 and closes after ~1 MiB."""
    url = store.url
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with serve(url, port=0) as server:
        # a declared length over the limit: refused before a byte of the body is sent
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"PATCH /api/v1/experiments/lim00001 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 200000000\r\n\r\n"
            )
            head, _, body = _read_response(sock).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 413") and b"connection: close" in head.lower()
            assert "at most 1 MiB" in json.loads(body)["error"]

        frame = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"  # 64 KiB chunks
        sent = 0
        cut = False
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"PATCH /api/v1/experiments/lim00001 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            try:
                while sent < 200_000_000:
                    sock.sendall(frame)
                    sent += 0x10000
            except (BrokenPipeError, ConnectionResetError):
                cut = True
            response = b""
            try:
                response = _read_response(sock)
            except (ConnectionResetError, OSError):
                pass  # the reset may drop the answer on the client's side; being cut off is the point
        assert cut, f"the server read all {sent} bytes"
        # the kernel's socket buffers take a few MB more than the server read before it closed
        assert sent < 32 * 1024 * 1024, sent
        assert not response or response.startswith(b"HTTP/1.1 413"), response[:200]
        # and it still serves
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /api/v1/experiments HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert _read_response(sock).startswith(b"HTTP/1.1 200")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mib < 64, f"peak memory grew by {grown_mib:.0f} MiB"


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while True:
        part = sock.recv(65536)
        if not part:
            return data
        data += part
