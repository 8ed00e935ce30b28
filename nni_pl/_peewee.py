"""peewee, imported without its eager database-driver imports; every nni-pl module takes ``pw`` from here.

peewee imports psycopg2, psycopg 3 and pymysql (which imports ``cryptography``) when it is itself imported,
whether or not a server database is ever used: about 35 ms of every ``nni-pl`` start, where the default store
is SQLite. Here peewee is imported with those drivers hidden, and :func:`attach_drivers` attaches them to
peewee exactly as its own import would have, the first time a PostgreSQL or MySQL database is set up, by
nni-pl or by any other code in the process (``PostgresqlDatabase.init`` and ``MySQLDatabase.init`` call it).
A peewee whose layout this module does not know gets its drivers attached at once, as before.

When peewee was imported before nni-pl, nothing changes: it has its drivers already.

Example:
    >>> from nni_pl._peewee import pw
    >>> db = pw.PostgresqlDatabase(None)  # setting one up attaches the drivers, as a plain peewee has them
    >>> pw.psycopg2 is not None or pw.psycopg is not None  # this environment has a PostgreSQL driver
    True
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType
from typing import Any

__all__ = ["attach_drivers", "pw"]

_DRIVERS = ("psycopg2cffi", "psycopg2", "psycopg", "pymysql", "MySQLdb")
_lock = threading.Lock()
_pending = False  # drivers were hidden from peewee's import and are not attached yet


def _fits(peewee: ModuleType) -> bool:
    """Whether this peewee has the layout :func:`attach_drivers` fills in (peewee 3.17 to 4.x)."""
    names = (
        "psycopg2",
        "Json_pg2",
        "psycopg",
        "Json_pg3",
        "Jsonb_pg3",
        "mysql",
        "Psycopg2Adapter",
        "Psycopg3Adapter",
    )
    return all(hasattr(peewee, n) for n in names) and all(
        "init" in vars(getattr(peewee, cls, object)) for cls in ("PostgresqlDatabase", "MySQLDatabase")
    )


def _import() -> ModuleType:
    global _pending
    if "peewee" in sys.modules:
        return sys.modules["peewee"]
    hidden = [name for name in _DRIVERS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        import peewee
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    if not hidden:
        return peewee
    _pending = True
    if not _fits(peewee):
        attach_drivers(peewee)
        return peewee
    for cls in (peewee.PostgresqlDatabase, peewee.MySQLDatabase):
        cls.init = _attaching(cls.init)
    return peewee


def _attaching(init: Any) -> Any:
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _pending:
            attach_drivers()
        return init(self, *args, **kwargs)

    wrapper.__wrapped__ = init  # type: ignore[attr-defined]
    wrapper.__name__, wrapper.__qualname__, wrapper.__doc__ = init.__name__, init.__qualname__, init.__doc__
    return wrapper


def _set_statuses(adapter: type, idle: Any, inerror: Any, unknown: Any) -> None:
    """The transaction-status constants peewee's adapter class body takes from its driver when it has one."""
    adapter.txn_idle, adapter.txn_inerror, adapter.txn_unknown = idle, inerror, unknown  # type: ignore[attr-defined]


def attach_drivers(peewee: ModuleType | None = None) -> None:
    """Import the database drivers peewee's own import would have and hand them to peewee (once)."""
    global _pending
    with _lock:
        if not _pending:
            return
        peewee = peewee or sys.modules["peewee"]
        try:
            from psycopg2cffi import compat  # type: ignore[import-not-found]

            compat.register()
        except ImportError:
            pass
        if peewee.psycopg2 is None:
            try:
                import psycopg2
                from psycopg2 import extensions
                from psycopg2.extras import Json, register_uuid
            except ImportError:
                pass
            else:
                register_uuid()
                peewee.psycopg2, peewee.pg_extensions, peewee.Json_pg2 = psycopg2, extensions, Json
                peewee.pg_register_uuid = register_uuid
                _set_statuses(
                    peewee.Psycopg2Adapter,
                    extensions.TRANSACTION_STATUS_IDLE,
                    extensions.TRANSACTION_STATUS_INERROR,
                    extensions.TRANSACTION_STATUS_UNKNOWN,
                )
        if peewee.psycopg is None:
            try:
                import psycopg  # type: ignore[import-not-found]
                from psycopg.pq import TransactionStatus  # type: ignore[import-not-found]
                from psycopg.types.json import Json as Json3  # type: ignore[import-not-found]
                from psycopg.types.json import Jsonb as Jsonb3  # type: ignore[import-not-found]
            except ImportError:
                pass
            else:
                peewee.psycopg, peewee.TransactionStatus = psycopg, TransactionStatus
                peewee.Json_pg3, peewee.Jsonb_pg3 = Json3, Jsonb3
                _set_statuses(
                    peewee.Psycopg3Adapter,
                    TransactionStatus.IDLE,
                    TransactionStatus.INERROR,
                    TransactionStatus.UNKNOWN,
                )
        if peewee.mysql is None:
            try:
                import pymysql as mysql
            except ImportError:
                try:
                    import MySQLdb as mysql  # type: ignore[import-not-found,no-redef]
                except ImportError:
                    mysql = None  # type: ignore[assignment]
            peewee.mysql = mysql
        _pending = False


pw = _import()
