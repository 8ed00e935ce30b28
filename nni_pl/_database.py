"""Opening a peewee database from a URL: shared by the experiment store and the relay table of cluster trials.

Example:
    >>> redact_url("postgresql://nni:s3cret@db.example:5432/nni")
    'postgresql://nni:***@db.example:5432/nni'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nni_pl._peewee import pw
from nni_pl.errors import MissingDependencyError, StoreError

__all__ = ["create_tables", "driver_error", "open_database", "redact_url", "sqlite_url"]


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def redact_url(url: str) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
    except ValueError:
        return url


def driver_error(url: str) -> MissingDependencyError:
    scheme = url.split("://", 1)[0].lower()
    if scheme.startswith("mysql"):
        return MissingDependencyError("pymysql", "mysql", "a MySQL store")
    return MissingDependencyError("psycopg2-binary", "postgres", "a PostgreSQL store")


def open_database(url: str) -> pw.Database:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path.startswith("/"):
            path = str(Path(path).resolve())
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the folder of the SQLite store {url!r}: {e}") from e
        return pw.SqliteDatabase(
            path,
            pragmas={
                "journal_mode": "wal",  # readers (CLI, dashboard) never block the manager
                "synchronous": "normal",  # with WAL: a committed write survives a crash of the process
                "busy_timeout": 15000,
                "foreign_keys": 1,
            },
            timeout=15,
            # Writers take the lock at BEGIN: a deferred transaction that reads first and then writes
            # cannot wait for another writer (SQLite answers "database is locked" at once, whatever busy_timeout).
            lock_type="IMMEDIATE",
        )
    from playhouse.db_url import connect

    try:
        # unquote: a password such as "p@ss" must be written "p%40ss" in a URL
        return connect(url, unquote_password=True, unquote_user=True)
    except (ValueError, RuntimeError) as e:
        shown = redact_url(url)
        raise StoreError(
            f"cannot use store URL {shown!r}: {str(e).replace(url, shown)}; "
            "expected e.g. sqlite:///path/store.sqlite or postgresql://user@host:5432/db"
        ) from e


def create_tables(
    db: pw.Database, models: Sequence[type[pw.Model]], then: Callable[[], Any] | None = None
) -> None:
    """Create the tables ``db`` lacks (and run ``then`` in the same transaction). Processes opening one database at
    once may race to create a table (PostgreSQL's ``IF NOT EXISTS`` is no lock): losing that race is no error
    once the table exists."""
    for attempt in range(5):
        try:
            with db.atomic():
                db.create_tables(list(models), safe=True)
                if then is not None:
                    then()
            return
        except (pw.IntegrityError, pw.ProgrammingError, pw.OperationalError):
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))  # another process is creating them: look again
