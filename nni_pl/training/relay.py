"""The relay table: where trials on cluster workers put their metric records for the manager to read.

A trial that runs where the manager cannot read its files (a Kubeflow pod, an Azure ML job) may have its records
inserted, by :mod:`nni_pl.training.job_runner`, into the table ``nnipl_relay`` of the experiment's shared database
(its ``storeUrl``), keyed by ``(experiment, trial, seq)``; the trial's service reads them back with :func:`since`.
The experiment store creates the table with its own (schema 3) and uses the same model; workers need nothing but
this module and the database's driver.

Example:
    >>> import tempfile
    >>> table = RelayTable(f"sqlite:///{tempfile.mkdtemp()}/s.sqlite")
    >>> rec = {"seq": 0, "type": "FINAL", "value": 0.5, "time": 1.0}
    >>> table.put("e", "t", [rec]); table.put("e", "t", [rec])   # idempotent on seq
    >>> [r["value"] for r in table.since("e", "t")], table.since("e", "t", after_seq=0)
    ([0.5], [])
    >>> table.close()
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from nni_pl._database import create_tables, driver_error, open_database, redact_url
from nni_pl._peewee import pw
from nni_pl.errors import StoreError

__all__ = ["TABLE", "RelayTable", "put", "relay_model", "since"]

TABLE = "nnipl_relay"


def relay_model(db: pw.Database) -> type[pw.Model]:
    """The peewee model of the relay table in ``db``."""

    class Relay(pw.Model):
        # no foreign key: a worker relays with nothing but the ids it was given
        experiment_id = pw.CharField(max_length=64)
        trial_id = pw.CharField(max_length=32)
        seq = pw.IntegerField()
        record = pw.TextField()

        class Meta:
            database = db
            table_name = TABLE
            primary_key = pw.CompositeKey("experiment_id", "trial_id", "seq")

    return Relay


def put(model: type[pw.Model], experiment_id: str, trial_id: str, records: Sequence[dict[str, Any]]) -> None:
    """Insert a trial's records (those whose ``seq`` is there already are skipped)."""
    if records:
        rows = [
            {"experiment_id": experiment_id, "trial_id": trial_id, "seq": int(r["seq"]),
             "record": json.dumps(r, separators=(",", ":"))}
            for r in records
        ]  # fmt: skip
        model.insert_many(rows).on_conflict_ignore().execute()


def since(
    model: type[pw.Model], experiment_id: str, trial_id: str, *, after_seq: int = -1
) -> list[dict[str, Any]]:
    """A trial's records with ``seq`` above ``after_seq``, in ``seq`` order."""
    m: Any = model
    q = (
        m.select(m.record)
        .where((m.experiment_id == experiment_id) & (m.trial_id == trial_id) & (m.seq > after_seq))
        .order_by(m.seq)
    )
    return [json.loads(r.record) for r in q]


class RelayTable:
    """The relay table of the database at ``url`` (created if missing), for a worker or a service."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.db = open_database(url)
        self.model = relay_model(self.db)
        try:
            self.db.connect(reuse_if_open=True)
            create_tables(self.db, [self.model])
        except pw.ImproperlyConfigured as e:
            self.db.close()
            raise driver_error(url) from e
        except (pw.DatabaseError, pw.InterfaceError) as e:
            self.db.close()
            raise StoreError(f"cannot open the relay table at {redact_url(url)!r}: {str(e).strip()}") from e

    def put(self, experiment_id: str, trial_id: str, records: Sequence[dict[str, Any]]) -> None:
        with self.db.atomic():
            put(self.model, experiment_id, trial_id, records)

    def since(self, experiment_id: str, trial_id: str, *, after_seq: int = -1) -> list[dict[str, Any]]:
        return since(self.model, experiment_id, trial_id, after_seq=after_seq)

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()
