"""nni-pl imports peewee without its database drivers and attaches them on first use, as peewee would have."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

STATE = """
import json, sys
pw = sys.modules["peewee"]
out = {"loaded": sorted(m for m in ("psycopg2", "psycopg", "pymysql", "MySQLdb", "cryptography") if m in sys.modules)}
def state():
    a = pw.Psycopg2Adapter
    return {
        "psycopg2": getattr(pw.psycopg2, "__name__", None),
        "json_pg2": getattr(pw.Json_pg2, "__qualname__", None),
        "txn": [getattr(a, n, None) for n in ("txn_idle", "txn_inerror", "txn_unknown")],
        "mysql": getattr(pw.mysql, "__name__", None),
    }
"""


def _run(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_store_loads_no_driver_and_a_server_database_gets_what_plain_peewee_has() -> None:
    plain = _run("import peewee\n" + STATE + "out['state'] = state()\nprint(json.dumps(out))")
    lazy = _run(
        "import nni_pl.experiment, nni_pl._peewee\n"
        + STATE
        + "out['before'] = state()\n"
        + "db = pw.PostgresqlDatabase('nni', host='127.0.0.1')\n"
        + "out['adapter'] = type(db._adapter).__name__\n"
        + "out['state'] = state()\n"
        + "print(json.dumps(out))"
    )
    if plain["state"]["psycopg2"] is None or plain["state"]["mysql"] is None:
        pytest.skip("psycopg2 or pymysql is not installed (the postgres and mysql extras)")
    assert lazy["loaded"] == [], "importing the experiment engine imported a database driver"
    assert lazy["before"]["psycopg2"] is None and lazy["before"]["mysql"] is None
    assert lazy["state"] == plain["state"]
    assert lazy["adapter"] == "Psycopg2Adapter"


def test_mysql_database_set_up_by_other_code_gets_its_driver() -> None:
    out = _run(
        "import nni_pl._peewee\n"
        + STATE
        + "pw.MySQLDatabase('nni')\nout['state'] = state()\nprint(json.dumps(out))"
    )
    assert out["loaded"] == []
    assert out["state"]["mysql"] in ("pymysql", "MySQLdb")


def test_peewee_imported_first_keeps_its_drivers() -> None:
    out = _run("import peewee, nni_pl._peewee\n" + STATE + "out['state'] = state()\nprint(json.dumps(out))")
    assert "psycopg2" in out["loaded"] and out["state"]["psycopg2"] == "psycopg2"
