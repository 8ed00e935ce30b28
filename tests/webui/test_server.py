"""The dashboard server: a real uvicorn on a real socket (loopback by default, a free port when taken, tokens)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from nni_pl.errors import NniPlError
from nni_pl.experiment import store as st
from nni_pl.webui.server import is_loopback, read_url_file, remove_url_file, serve, write_url_file


@pytest.fixture
def store_url(tmp_path):
    store = st.Store.for_directory(tmp_path / "exp1")
    store.create_experiment(
        id="srv00001", name="srv", config={"maxTrialNumber": 3}, directory=str(tmp_path / "exp1")
    )
    store.close()
    return st.sqlite_url(tmp_path / "exp1" / "store.sqlite")


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_serves_on_loopback_and_picks_a_free_port_when_taken(store_url):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    taken = busy.getsockname()[1]
    try:
        with serve(store_url, port=taken) as server:
            assert server.host == "127.0.0.1" and server.port != taken and server.token is None
            assert server.url == f"http://127.0.0.1:{server.port}/"
            status, data = _get(server.url + "api/v1/experiments")
            assert status == 200 and data[0]["id"] == "srv00001"
            # a name other than the loopback ones is refused (DNS rebinding)
            status, data = _get(server.url + "api/v1/experiments", {"Host": f"evil.example:{server.port}"})
            assert status == 403 and "error" in data
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    finally:
        busy.close()


def test_a_server_started_without_waiting_answers_once_built_and_stops_without_waiting(store_url):
    # what a running experiment does: the address is bound at once, the app is built on the first request
    import time

    server = serve(store_url, port=0, wait=False)
    try:
        assert server.url == f"http://127.0.0.1:{server.port}/"
        time.sleep(0.5)
        assert server.app is None and not server.started  # nobody asked yet: FastAPI not even imported
        status, data = _get(server.url + "api/v1/experiments")  # queued in the backlog until it serves
        assert status == 200 and data[0]["id"] == "srv00001" and server.started
    finally:
        server.stop(wait=False)
    deadline = time.time() + 10
    while server._thread.is_alive():
        assert time.time() < deadline, "the server thread did not end"
        time.sleep(0.05)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_a_server_stopped_before_it_was_built_never_serves(store_url):
    server = serve(store_url, port=0, wait=False)
    server.stop()  # waits for the thread, which ends without building the app
    assert not server._thread.is_alive() and not server.started and server.app is None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_a_non_loopback_bind_requires_a_token(store_url):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    with serve(store_url, host="0.0.0.0", port=0) as server:
        assert server.token and len(server.token) >= 24  # generated
        assert server.url.endswith(f"?token={server.token}")
        base = server.base_url
        status, data = _get(base + "api/v1/experiments")
        assert status == 401 and "token" in data["error"]
        status, _ = _get(base + "api/v1/experiments", {"Authorization": f"Bearer {server.token}"})
        assert status == 200
        status, _ = _get(base + f"api/v1/version?token={server.token}")
        assert status == 200
    with serve(store_url, host="0.0.0.0", port=0, token="given-token") as server:
        assert server.token == "given-token"
        assert _get(server.base_url + "api/v1/version?token=given-token")[0] == 200
    with pytest.raises(NniPlError, match="token must not be empty"):
        serve(store_url, host="0.0.0.0", port=0, token=" ")


def test_url_file_is_private_and_round_trips(store_url, tmp_path):
    with serve(store_url, port=0) as server:
        path = write_url_file(tmp_path, server)
        assert path.stat().st_mode & 0o077 == 0
        assert read_url_file(tmp_path)["url"] == server.url
    remove_url_file(tmp_path)
    assert read_url_file(tmp_path) is None


def test_import_nni_pl_stays_light():
    import subprocess
    import sys

    code = "import sys, nni_pl, nni_pl.webui, nni_pl.experiment; print(any(m.split('.')[0] in ('fastapi', 'uvicorn', 'starlette', 'plotly') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
