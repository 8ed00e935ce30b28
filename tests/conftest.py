"""Shared fixtures: an isolated ``NNI_PL_HOME`` for every test and private PostgreSQL and MariaDB servers.

The PostgreSQL server is real (Debian's ``postgresql`` package, found under
``/usr/lib/postgresql/<N>/bin``): one per test session, started in a temporary directory on a free port,
bound to 127.0.0.1 with its unix socket inside that directory, run as the ``postgres`` OS user when the
tests run as root (``initdb`` refuses root). It is stopped by PID at the end of the session, whether the
tests passed or not. Every test that asks for ``postgres_store_url`` gets a database of its own.

Without the binaries (or psycopg2) the PostgreSQL tests are skipped locally, and fail under ``CI=true``:
CI installs PostgreSQL and must never skip these tests silently.

The MySQL store is tested on a real MariaDB server (Debian's ``mariadb-server``) the same way: one per session,
its data directory in a temporary folder, TCP on a free port of 127.0.0.1 only, its socket and PID file in
that folder, stopped by PID. It runs without grant tables (any user may connect; it listens on 127.0.0.1 only);
every test that asks for ``mysql_store_url`` gets a database of its own.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

# Two xdist workers share two cores: one compute thread per process (trial subprocesses inherit it) instead of
# torch's default of one per core, which oversubscribes the cores and slows the small models here many times over.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

_PG_USER = "postgres"  # both the OS user the server runs as and the database superuser
_START_TIMEOUT = 30.0


# --- every test: no writes to ~ -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``NNI_PL_HOME`` (experiments, the id index) and ``NNI_PL_CONFIG_DIR`` at a fresh tmp dir."""
    home = tmp_path_factory.mktemp("nni-pl-home")
    monkeypatch.setenv("NNI_PL_HOME", str(home / "experiments"))
    monkeypatch.setenv("NNI_PL_CONFIG_DIR", str(home / "config"))
    # pytest-xdist's workers get COLUMNS=80; the CLI's tables are checked at the width a pipe gets
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
    return home


# --- PostgreSQL --------------------------------------------------------------------------------------------------


def _unavailable(reason: str, what: str = "PostgreSQL") -> NoReturn:
    """Skip locally; fail on CI, where the server is installed and these tests must run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} tests cannot run on CI: {reason}", pytrace=False)
    pytest.skip(f"{what} tests need a local server: {reason}")


def _pg_bindir() -> Path | None:
    """The newest Debian PostgreSQL install, or one whose ``pg_ctl`` is on PATH (``$PG_BINDIR`` wins)."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    found = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    if found:

        def version(p: str) -> tuple[int, ...]:
            name = Path(p).parent.parent.name
            return tuple(int(x) for x in name.split(".") if x.isdigit())

        return Path(max(found, key=version)).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # The postmaster is re-parented to PID 1, which may reap it late: a zombie has exited.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@dataclass
class _PgServer:
    bindir: Path
    base: Path  # owned by the server user; holds data/, the socket and the log
    port: int
    as_root: bool
    pid: int | None = None

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def url(self, database: str) -> str:
        return f"postgresql://{_PG_USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = _START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", _PG_USER, "--", *cmd]
        return subprocess.run(
            cmd, cwd=self.base, capture_output=True, text=True, timeout=timeout, check=False
        )

    def _check(self, proc: subprocess.CompletedProcess[str], what: str) -> None:
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{what} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}"
            )

    def start(self) -> None:
        self._check(
            self._run(
                "initdb", "-D", str(self.data), "-A", "trust", "-U", _PG_USER, "-E", "UTF8",
                "--locale=C", "--no-sync",
            ),
            "initdb",
        )  # fmt: skip
        # fsync off: a test server needs no durability across power loss, and it halves the run time.
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        self._check(
            self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start"),
            "pg_ctl start",
        )
        self.pid = self._postmaster_pid()

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Stop by PID: ``pg_ctl stop -m fast``, then SIGKILL if the postmaster is still alive."""
        pid = self._postmaster_pid() or self.pid
        if pid is not None and _pid_alive(pid):
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "10", "stop", timeout=15)
            deadline = time.monotonic() + 5
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.pid = None
        shutil.rmtree(self.base, ignore_errors=True)


def _start_server() -> _PgServer:
    bindir = _pg_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists() or not (bindir / "initdb").exists():
        _unavailable("no PostgreSQL binaries (apt-get install postgresql, or set PG_BINDIR)")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        _unavailable("psycopg2 is not installed (pip install 'nni-pl[postgres]')")
    as_root = os.geteuid() == 0
    if as_root:
        try:
            pw_entry = pwd.getpwnam(_PG_USER)
        except KeyError:
            _unavailable(f"running as root, but there is no {_PG_USER!r} OS user to run the server as")
        if shutil.which("runuser") is None:
            _unavailable("running as root, but `runuser` is missing")
    last_error: Exception | None = None
    for _attempt in range(3):  # the free port may be taken between probing and binding
        # Short path under /tmp: the socket path must stay under ~107 bytes, and pytest's tmp dirs are 0700 root.
        base = Path(tempfile.mkdtemp(prefix="nnipl-pg-"))
        if as_root:
            os.chown(base, pw_entry.pw_uid, pw_entry.pw_gid)
        server = _PgServer(bindir=bindir, base=base, port=_free_port(), as_root=as_root)
        try:
            server.start()
            return server
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            last_error = e
            server.stop()
    _unavailable(f"the server did not start: {last_error}")


def _admin_sql(server: _PgServer, sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=server.port, user=_PG_USER, dbname="postgres")
    try:
        conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def _held(server: Any) -> Iterator[Any]:
    """Yield a started server; stop it afterwards, or at exit if the session dies before teardown."""
    atexit.register(server.stop)
    try:
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[_PgServer]:
    """The session's private PostgreSQL server (started once, about 1.5 s)."""
    yield from _held(_start_server())


@pytest.fixture(scope="session")
def postgres_url(postgres_server: _PgServer) -> str:
    """``postgresql://postgres@127.0.0.1:<port>/nnipl_session``: one database shared by the session."""
    _admin_sql(postgres_server, "CREATE DATABASE nnipl_session")
    return postgres_server.url("nnipl_session")


@pytest.fixture
def postgres_store_url(postgres_server: _PgServer) -> Iterator[str]:
    """A fresh, empty database for this test alone; dropped afterwards."""
    name = f"nnipl_{uuid.uuid4().hex[:12]}"
    _admin_sql(postgres_server, f"CREATE DATABASE {name}")
    try:
        yield postgres_server.url(name)
    finally:
        # FORCE (PostgreSQL 13+) ends connections a test left open.
        _admin_sql(postgres_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- MariaDB (the MySQL store) ----------------------------------------------------------------------------------

_MY_USER = "root"


@dataclass
class _MyServer:
    base: Path  # data/, the socket, the PID file and the error log
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid_file(self) -> Path:
        return self.base / "mariadbd.pid"

    @property
    def log(self) -> Path:
        return self.base / "error.log"

    def url(self, database: str) -> str:
        return f"mysql://{_MY_USER}@127.0.0.1:{self.port}/{database}"

    def _fail(self, what: str, detail: str = "") -> NoReturn:
        log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        raise RuntimeError(f"{what} failed: {detail}\n{log}")

    def start(self, server: str, install_db: str) -> None:
        root = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses root unless told to
        proc = subprocess.run(
            [install_db, "--no-defaults", f"--datadir={self.base / 'data'}", *root, "--skip-test-db",
             "--auth-root-authentication-method=normal"],
            capture_output=True, text=True, timeout=_START_TIMEOUT, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            self._fail("mariadb-install-db", proc.stdout + proc.stderr)
        # no durability across power loss needed: no binary log, lazy redo-log flushes, a small buffer pool
        self.process = subprocess.Popen(
            [server, "--no-defaults", *root, f"--datadir={self.base / 'data'}", f"--socket={self.base / 'sock'}",
             f"--port={self.port}", "--bind-address=127.0.0.1", f"--pid-file={self.pid_file}",
             f"--log-error={self.log}", "--skip-grant-tables", "--skip-log-bin", "--skip-name-resolve",
             "--innodb-flush-log-at-trx-commit=0", "--innodb-buffer-pool-size=32M", "--max-connections=200"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._fail("mariadbd", f"exited with {self.process.returncode}")
            try:
                self.admin_sql("SELECT 1")
                return
            except Exception:  # not accepting connections yet (pymysql.err.OperationalError)
                time.sleep(0.1)
        self._fail("mariadbd", f"no connection within {_START_TIMEOUT:.0f} s")

    def admin_sql(self, sql: str) -> None:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=self.port, user=_MY_USER, connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop by PID: SIGTERM (a clean shutdown), then SIGKILL if it is still alive after 10 s."""
        pid = self.process.pid if self.process is not None else None
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_file.read_text().split()[0])
        if pid is not None and _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
            self.process = None
        shutil.rmtree(self.base, ignore_errors=True)


def _start_mysql_server() -> _MyServer:
    server = shutil.which("mariadbd") or (
        "/usr/sbin/mariadbd" if os.path.exists("/usr/sbin/mariadbd") else None
    )
    install_db = shutil.which("mariadb-install-db")
    if server is None or install_db is None:
        _unavailable("no MariaDB binaries (apt-get install mariadb-server)", "MySQL")
    try:
        import pymysql  # noqa: F401
    except ImportError:
        _unavailable("pymysql is not installed (pip install 'nni-pl[mysql]')", "MySQL")
    last_error: Exception | None = None
    for _attempt in range(3):  # the free port may be taken between probing and binding
        base = Path(tempfile.mkdtemp(prefix="nnipl-my-"))  # short: the socket path must stay under ~107 bytes
        my = _MyServer(base=base, port=_free_port())
        try:
            my.start(server, install_db)
            return my
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            last_error = e
            my.stop()
    _unavailable(f"the server did not start: {last_error}", "MySQL")


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[_MyServer]:
    """The session's private MariaDB server (started once, about 1 s)."""
    yield from _held(_start_mysql_server())


@pytest.fixture
def mysql_store_url(mysql_server: _MyServer) -> Iterator[str]:
    """A fresh, empty MariaDB database for this test alone; dropped afterwards."""
    name = f"nnipl_{uuid.uuid4().hex[:12]}"
    mysql_server.admin_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    try:
        yield mysql_server.url(name)
    finally:
        mysql_server.admin_sql(f"DROP DATABASE IF EXISTS {name}")


# --- every back end ------------------------------------------------------------------------------------------------


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL for each back end: a SQLite file in ``tmp_path``, a fresh PostgreSQL or MariaDB database."""
    if request.param == "sqlite":
        from nni_pl.experiment.store import sqlite_url

        return sqlite_url(tmp_path / "store.sqlite")
    return request.getfixturevalue(f"{request.param}_store_url")
