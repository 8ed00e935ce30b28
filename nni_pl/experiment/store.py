"""The experiment store: peewee models over SQLite (WAL, the default) or PostgreSQL/MySQL.

The store is the one source of truth: the manager writes it, and the CLI, the dashboard and ``resume``
read it. Each experiment directory holds its own ``store.sqlite`` by default; a database URL puts many
experiments (from several hosts) into one server database.

The schema has a version (:data:`SCHEMA_VERSION`, in the ``nnipl_meta`` table). Opening a store made by an
older version migrates it in place, keeping its data: version 2 added the trial's ``platform`` column (where a
trial ran, for hybrid experiments); version 3 the ``nnipl_relay`` table, where trials on cluster workers put
their metric records (:meth:`Store.relay`) for the manager to read (:meth:`Store.relayed`); version 4 dropped
three indexes that every trial's writes kept up and no query used. Several processes may open an old store at
once; one of them migrates it.

Example:
    >>> import tempfile, os
    >>> store = Store(f"sqlite:///{tempfile.mkdtemp()}/store.sqlite")
    >>> exp = store.create_experiment(id="abcd1234", name="demo", config={}, directory="/tmp/x")
    >>> store.add_trial(TrialRow(experiment_id="abcd1234", trial_id="Ab3xY", sequence_id=0, parameter_id=0,
    ...                          parameters={"lr": 0.1}, trial_dir="/tmp/x/trials/Ab3xY"))
    >>> new = store.add_metrics("abcd1234", "Ab3xY", [{"seq": 0, "type": "FINAL", "value": 0.9, "time": 1.0}])
    >>> store.get_trial("abcd1234", "Ab3xY").final_default
    0.9
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import math
import operator
import time
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from nni_pl._database import create_tables, driver_error, open_database, redact_url, sqlite_url
from nni_pl._peewee import pw
from nni_pl.errors import ExperimentNotFoundError, StoreError
from nni_pl.training import relay
from nni_pl.training.relay import relay_model

__all__ = [
    "FINISHED_STATUSES",
    "TRIAL_STATUSES",
    "ExperimentRow",
    "MetricRow",
    "Store",
    "TrialRow",
    "redact_url",
    "sqlite_url",
]

SCHEMA_VERSION = 4  # 2: nnipl_trial.platform; 3: nnipl_relay; 4: three redundant indexes dropped
# (table, index) that schema 4 drops: each trial's writes updated them, and no query needs them (the unique
# indexes that start with experiment_id serve the foreign keys; queries by status also name the experiment)
_DROPPED_INDEXES = (
    ("nnipl_trial", "trial_experiment_id"),
    ("nnipl_trial", "trial_status"),
    ("nnipl_metric", "metric_experiment_id"),
)

# Trial statuses (NNI's names).
WAITING = "WAITING"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
EARLY_STOPPED = "EARLY_STOPPED"
USER_CANCELED = "USER_CANCELED"
TIMEOUT = "TIMEOUT"
TRIAL_STATUSES = (WAITING, RUNNING, SUCCEEDED, FAILED, EARLY_STOPPED, USER_CANCELED, TIMEOUT)
FINISHED_STATUSES = frozenset({SUCCEEDED, FAILED, EARLY_STOPPED, USER_CANCELED, TIMEOUT})

# Experiment statuses.
EXP_RUNNING = "RUNNING"
EXP_STOPPED = "STOPPED"  # stopped by a user (Ctrl-C, `nni-pl stop`): resumable
EXP_DONE = "DONE"  # reached its limits or exhausted the space
EXP_ERROR = "ERROR"  # the manager hit an error
EXP_VIEWED = "VIEWED"


# json.dumps(value, separators=(",", ":")) without building an encoder per call
_dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _default_of(value: Any) -> float | None:
    if isinstance(value, dict):
        value = value.get("default")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


# --- rows handed to callers (plain data, no peewee) --------------------------------------------------------


@dataclass
class ExperimentRow:
    id: str
    name: str | None = None
    status: str = EXP_RUNNING
    config: dict[str, Any] = field(default_factory=dict)
    directory: str = ""
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    manager_pid: int | None = None
    manager_host: str | None = None
    manager_started_at: float | None = None
    port: int | None = None
    revision: int = 0
    message: str | None = None
    elapsed: float = 0.0  # seconds the experiment has run, over all its manager sessions

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrialRow:
    experiment_id: str
    trial_id: str
    sequence_id: int
    parameter_id: int | None
    parameters: dict[str, Any]
    trial_dir: str
    parameter_source: str = "algorithm"
    status: str = WAITING
    submitted_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    host: str | None = None
    # the training platform it ran on ("local", "remote"...); None in stores older than schema version 2
    platform: str | None = None
    pid: int | None = None
    pid_started_at: float | None = None
    gpu_indices: str | None = None
    final: Any = None
    final_default: float | None = None
    intermediate_count: int = 0
    error: str | None = None
    retry_of: str | None = None
    requeue: bool = False
    stop_requested: str | None = (
        None  # why the manager asked it to stop: "assessor", "user", "timeout", "experiment"
    )

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or time.time()) - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MetricRow:
    trial_id: str
    type: str
    seq: int
    sequence: int
    value: Any
    default: float | None
    timestamp: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- peewee models, built per database so several stores can be open at once --------------------------------


def _models(db: pw.Database) -> tuple[type[pw.Model], ...]:
    class Base(pw.Model):
        class Meta:
            database = db

    class Meta(Base):
        key = pw.CharField(primary_key=True)
        value = pw.TextField()

        class Meta:
            table_name = "nnipl_meta"

    class Experiment(Base):
        id = pw.CharField(primary_key=True, max_length=64)
        name = pw.CharField(null=True)
        status = pw.CharField(max_length=32)
        config = pw.TextField()
        directory = pw.TextField()
        created_at = pw.DoubleField()
        started_at = pw.DoubleField(null=True)
        ended_at = pw.DoubleField(null=True)
        manager_pid = pw.IntegerField(null=True)
        manager_host = pw.CharField(null=True)
        manager_started_at = pw.DoubleField(null=True)
        port = pw.IntegerField(null=True)
        revision = pw.IntegerField(default=0)
        message = pw.TextField(null=True)
        elapsed = pw.DoubleField(default=0.0)

        class Meta:
            table_name = "nnipl_experiment"

    class Trial(Base):
        # no index of its own: the unique (experiment, trial_id) index serves the key (schema 4)
        experiment = pw.ForeignKeyField(
            Experiment, on_delete="CASCADE", column_name="experiment_id", index=False
        )
        trial_id = pw.CharField(max_length=32)
        sequence_id = pw.IntegerField()
        parameter_id = pw.IntegerField(null=True)
        parameter_source = pw.CharField(max_length=32)
        parameters = pw.TextField()
        status = pw.CharField(max_length=32)
        submitted_at = pw.DoubleField(null=True)
        started_at = pw.DoubleField(null=True)
        ended_at = pw.DoubleField(null=True)
        exit_code = pw.IntegerField(null=True)
        host = pw.CharField(null=True)
        platform = pw.CharField(null=True, max_length=64)  # schema 2
        pid = pw.IntegerField(null=True)
        pid_started_at = pw.DoubleField(null=True)
        gpu_indices = pw.CharField(null=True)
        trial_dir = pw.TextField()
        final = pw.TextField(null=True)
        final_default = pw.DoubleField(null=True)
        intermediate_count = pw.IntegerField(default=0)
        error = pw.TextField(null=True)
        retry_of = pw.CharField(null=True)
        requeue = pw.BooleanField(default=False)
        stop_requested = pw.CharField(null=True)

        class Meta:
            table_name = "nnipl_trial"
            indexes = ((("experiment", "trial_id"), True), (("experiment", "sequence_id"), True))

    class Metric(Base):
        # no index of its own: the unique (experiment, trial_id, seq) index serves the key (schema 4)
        experiment = pw.ForeignKeyField(
            Experiment, on_delete="CASCADE", column_name="experiment_id", index=False
        )
        trial_id = pw.CharField(max_length=32)
        type = pw.CharField(max_length=16)
        seq = pw.IntegerField()
        sequence = pw.IntegerField()
        value = pw.TextField()
        default = pw.DoubleField(null=True)
        timestamp = pw.DoubleField()

        class Meta:
            table_name = "nnipl_metric"
            indexes = ((("experiment", "trial_id", "seq"), True),)

    Relay = relay_model(db)  # schema 3: defined with the cluster services that write it

    return Meta, Experiment, Trial, Metric, Relay


_TRIAL_FIELDS = [f.name for f in fields(TrialRow)]
_TRIAL_VALUES = operator.attrgetter(*_TRIAL_FIELDS)  # a row's values in that order, in one call
_PARAMETERS_AT, _FINAL_AT = _TRIAL_FIELDS.index("parameters"), _TRIAL_FIELDS.index("final")
_EXP_FIELDS = [f.name for f in fields(ExperimentRow)]
# the columns Store.add_metrics inserts, in its rows' order
_METRIC_COLUMNS = ("experiment_id", "trial_id", "type", "seq", "sequence", "value", "default", "timestamp")
_KEPT_INSERT_ROWS = 16  # Store.add_metrics keeps the SQL text of inserts of up to this many rows


# The databases of every store, weakly: a dropped store's database can outlive it in reference cycles (its
# per-store model classes point at it) until the garbage collector runs, which a quick exit never does.
_open_databases: weakref.WeakSet[pw.Database] = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    """Close this thread's connection of every store's database still open when the process exits.

    SQLite folds its write-ahead log back into ``store.sqlite`` when the last connection closes, so the file is
    whole on its own; this also holds when the ``nni-pl`` command ends without tearing its modules down.
    """
    for db in list(_open_databases):
        with contextlib.suppress(Exception):
            if not db.is_closed():
                db.close()


class Store:
    """Read and write experiments, trials and metrics.

    Args:
        url: ``sqlite:///abs/path/store.sqlite`` (default kind) or any peewee database URL
            (``postgresql://user:pass@127.0.0.1:5432/nni``, ``mysql://...``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.db = open_database(url)
        self._batching = False
        # what this store knows of each trial's stored metrics, so that add_metrics need not read them per call:
        # (the highest seq stored, count by type); a trial it created has none, another's are read once
        self._metric_state: dict[tuple[str, str], tuple[int, dict[str, int]]] = {}
        self._sql: dict[Hashable, str] = {}  # the hot paths' SQL text by its shape, built once per store
        _open_databases.add(self.db)
        self._Meta, self._Exp, self._Trial, self._Metric, self._Relay = _models(self.db)
        try:
            self.db.connect(reuse_if_open=True)
            self._create_tables()
            self._migrate()
        except StoreError:
            self.close()
            raise
        except pw.ImproperlyConfigured as e:
            # peewee imports the drivers softly and only complains here ("... driver not found.")
            self.close()
            raise driver_error(url) from e
        except (pw.DatabaseError, pw.InterfaceError) as e:
            self.close()
            raise StoreError(f"cannot open the store at {redact_url(url)!r}: {str(e).strip()}") from e

    def _create_tables(self) -> None:
        """Create the tables a store lacks (safe when several processes open a new store at once)."""
        create_tables(
            self.db,
            [self._Meta, self._Exp, self._Trial, self._Metric, self._Relay],
            then=lambda: (
                self._Meta.insert(key="schema_version", value=str(SCHEMA_VERSION))
                .on_conflict_ignore()
                .execute()
            ),
        )

    def _migrate(self) -> None:
        """Bring a store made by an older version up to :data:`SCHEMA_VERSION` (new columns are added, nothing
        is lost). Another process may be migrating the same store: a column it added meanwhile is no error."""
        row = self._Meta.get_or_none(self._Meta.key == "schema_version")
        try:
            version = int(row.value) if row is not None else SCHEMA_VERSION
        except ValueError:
            version = 0
        if version >= SCHEMA_VERSION:
            return
        try:
            with self.db.atomic():
                self._add_missing_columns()
                self._drop_old_indexes()
                self._Meta.update(value=str(SCHEMA_VERSION)).where(
                    self._Meta.key == "schema_version"
                ).execute()
        except (pw.OperationalError, pw.ProgrammingError, pw.IntegrityError, pw.InternalError) as e:
            missing = self._missing_columns()
            if missing:  # not a race with another process: it really failed
                raise StoreError(
                    f"cannot migrate the store at {redact_url(self.url)!r} from schema version {version} to "
                    f"{SCHEMA_VERSION} (adding {', '.join(f'{t}.{c}' for t, c, _ in missing)}): {str(e).strip()}"
                ) from e

    def _missing_columns(self) -> list[tuple[str, str, pw.Field]]:
        """Columns of the models that the database's tables lack: ``(table, column, field)``."""
        out = []
        for model in (self._Exp, self._Trial, self._Metric):
            table = model._meta.table_name
            have = {c.name for c in self.db.get_columns(table)}
            for f in model._meta.sorted_fields:
                if f.column_name not in have:
                    out.append((table, f.column_name, f))
        return out

    def _drop_old_indexes(self) -> None:
        from playhouse.migrate import SchemaMigrator, migrate

        migrator = SchemaMigrator.from_database(self.db)
        for table, name in _DROPPED_INDEXES:
            if name in {i.name for i in self.db.get_indexes(table)}:
                migrate(migrator.drop_index(table, name))

    def _add_missing_columns(self) -> None:
        from playhouse.migrate import SchemaMigrator, migrate

        missing = self._missing_columns()
        if missing:
            migrator = SchemaMigrator.from_database(self.db)
            migrate(*(migrator.add_column(table, column, f) for table, column, f in missing))

    @classmethod
    def for_directory(cls, directory: str | Path) -> Store:
        return cls(sqlite_url(Path(directory) / "store.sqlite"))

    @property
    def is_sqlite(self) -> bool:
        return isinstance(self.db, pw.SqliteDatabase)

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Run the writes of the block as one transaction: one commit instead of one per write.

        The manager wraps each turn of its loop in one (a trial's end, its metrics and the next trial's row go
        in together). A batch inside a batch joins it. Reads in the block see its writes.
        """
        if self._batching:
            yield
            return
        self._batching = True
        try:
            with self.db.atomic():
                yield
        except BaseException:
            self._metric_state.clear()  # rolled back: what it noted of the block's metrics may not be stored
            raise
        finally:
            self._batching = False

    def _tx(self) -> Any:
        """A transaction of its own, or nothing inside :meth:`batch` (which is the transaction)."""
        return contextlib.nullcontext() if self._batching else self.db.atomic()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- experiments -----------------------------------------------------------------------------------------
    def _exp_row(self, m: Any) -> ExperimentRow:
        data = {k: getattr(m, k) for k in _EXP_FIELDS}
        data["config"] = _loads(m.config) or {}
        return ExperimentRow(**data)

    def create_experiment(
        self, *, id: str, name: str | None, config: dict[str, Any], directory: str, status: str = EXP_RUNNING
    ) -> ExperimentRow:
        now = time.time()
        try:
            # the primary key decides, so two hosts creating the same id at once cannot both succeed
            with self.db.atomic():
                self._Exp.create(
                    id=id,
                    name=name,
                    status=status,
                    config=_dumps(config),
                    directory=directory,
                    created_at=now,
                )
        except pw.IntegrityError as e:
            raise StoreError(
                f"an experiment with id {id!r} already exists in {redact_url(self.url)}; pick another --id or resume it"
            ) from e
        return self.get_experiment(id)

    def get_experiment(self, id: str) -> ExperimentRow:
        # prepared SQL: the manager reads its row twice a second
        sql = self._prepared(
            "get_experiment",
            lambda q: (
                f"SELECT {', '.join(q(c) for c in _EXP_FIELDS)} FROM {q('nnipl_experiment')} WHERE {q('id')} = ?"
            ),
        )
        row = self.db.execute_sql(sql, (id,)).fetchone()
        if row is None:
            raise ExperimentNotFoundError(f"no experiment {id!r} in store {redact_url(self.url)}")
        data = dict(zip(_EXP_FIELDS, row))
        data["config"] = _loads(data["config"]) or {}
        return ExperimentRow(**data)

    def list_experiments(self) -> list[ExperimentRow]:
        return [self._exp_row(m) for m in self._Exp.select().order_by(self._Exp.created_at)]

    def update_experiment(self, id: str, **values: Any) -> None:
        unknown = set(values) - set(_EXP_FIELDS)
        if unknown:
            raise TypeError(f"unknown experiment fields {sorted(unknown)}")
        if "config" in values:
            values["config"] = _dumps(values["config"])
        with self._tx():
            n = self._Exp.update(**values).where(self._Exp.id == id).execute()
        if n == 0:
            raise ExperimentNotFoundError(f"no experiment {id!r} in store {redact_url(self.url)}")

    def delete_experiment(self, id: str) -> None:
        self._metric_state = {k: v for k, v in self._metric_state.items() if k[0] != id}
        with self.db.atomic():
            self._Relay.delete().where(self._Relay.experiment_id == id).execute()
            self._Metric.delete().where(self._Metric.experiment == id).execute()
            self._Trial.delete().where(self._Trial.experiment == id).execute()
            self._Exp.delete().where(self._Exp.id == id).execute()

    def export_experiment(self, id: str) -> dict[str, Any]:
        """Everything stored about one experiment as plain JSON-able data (:meth:`import_experiment` reads it).

        Example:
            >>> data = store.export_experiment("abcd1234")           # doctest: +SKIP
            >>> sorted(data)                                          # doctest: +SKIP
            ['experiment', 'metrics', 'trials']
        """
        return {
            "experiment": self.get_experiment(id).to_dict(),
            "trials": [t.to_dict() for t in self.list_trials(id)],
            "metrics": [m.to_dict() for m in self.list_metrics(id)],
        }

    def import_experiment(self, data: dict[str, Any]) -> ExperimentRow:
        """Store an experiment exported by :meth:`export_experiment` (one transaction: all or nothing).

        Raises:
            StoreError: an experiment with that id is already in this store, or the data is not an export.
        """
        try:
            exp = ExperimentRow(**data["experiment"])
            trials = [TrialRow(**t) for t in data["trials"]]
            metrics = [MetricRow(**m) for m in data["metrics"]]
        except (KeyError, TypeError) as e:
            raise StoreError(
                f"not an exported experiment (expected experiment, trials, metrics rows): {e}"
            ) from e
        if self._Exp.get_or_none(self._Exp.id == exp.id) is not None:
            raise StoreError(f"an experiment with id {exp.id!r} already exists in {redact_url(self.url)}")
        row = exp.to_dict()
        row["config"] = _dumps(row["config"])
        trial_rows = []
        for t in trials:
            values = {k: getattr(t, k) for k in _TRIAL_FIELDS if k != "experiment_id"}
            values.update(experiment=exp.id, parameters=_dumps(t.parameters))
            values["final"] = None if t.final is None else _dumps(t.final)
            trial_rows.append(values)
        metric_rows = [{**m.to_dict(), "experiment": exp.id, "value": _dumps(m.value)} for m in metrics]
        try:
            with self.db.atomic():
                self._Exp.insert(**row).execute()
                for batch in pw.chunked(trial_rows, 200):
                    self._Trial.insert_many(batch).execute()
                for batch in pw.chunked(metric_rows, 500):
                    self._Metric.insert_many(batch).execute()
        except pw.IntegrityError as e:
            raise StoreError(
                f"cannot import experiment {exp.id!r} into {redact_url(self.url)}: {str(e).strip()}"
            ) from e
        return self.get_experiment(exp.id)

    # --- trials --------------------------------------------------------------------------------------------------
    def _trial_row(self, m: Any) -> TrialRow:
        data = {k: getattr(m, k) for k in _TRIAL_FIELDS if k != "experiment_id"}
        data["experiment_id"] = m.experiment_id
        data["parameters"] = _loads(m.parameters)
        data["final"] = _loads(m.final)
        return TrialRow(**data)

    # The manager writes a trial a few times in its life (created, started, metrics, ended): those hot
    # paths use prepared SQL text instead of building peewee queries, which costs ~1 ms each.
    def _q(self, name: str) -> str:
        quote = self.db.quote
        return f"{quote[0]}{name}{quote[1]}"

    def _prepared(
        self, shape: Hashable, build: Callable[[Callable[[str], str]], str], *, keep: bool = True
    ) -> str:
        """The SQL text ``build(quote)`` makes for a statement of this ``shape`` (with this database's
        placeholders), built on first use and kept (``keep=False``: not kept): the manager runs the same few
        statements for every trial."""
        sql = self._sql.get(shape)
        if sql is None:
            sql = build(self._q).replace("?", self.db.param)
            if keep:
                self._sql[shape] = sql
        return sql

    def add_trial(self, trial: TrialRow) -> None:
        # the row's own values (asdict would deep-copy the parameters only to serialise them)
        values = list(_TRIAL_VALUES(trial))
        values[_PARAMETERS_AT] = _dumps(trial.parameters)
        values[_FINAL_AT] = None if trial.final is None else _dumps(trial.final)
        sql = self._prepared(
            "add_trial",
            lambda q: (
                f"INSERT INTO {q('nnipl_trial')} ({', '.join(q(c) for c in _TRIAL_FIELDS)}) "
                f"VALUES ({', '.join('?' for _ in _TRIAL_FIELDS)})"
            ),
        )
        try:
            with self._tx():
                self.db.execute_sql(sql, values)
        except pw.IntegrityError as e:
            raise StoreError(
                f"experiment {trial.experiment_id!r} cannot take trial {trial.trial_id!r} "
                f"(sequence id {trial.sequence_id}): a trial with that id or sequence id exists, "
                f"or the experiment does not: {str(e).strip()}"
            ) from e
        self._metric_state[(trial.experiment_id, trial.trial_id)] = (-1, {})  # a new trial has no metrics

    def update_trial(self, experiment_id: str, trial_id: str, **values: Any) -> None:
        unknown = set(values) - set(_TRIAL_FIELDS)
        if unknown:
            raise TypeError(f"unknown trial fields {sorted(unknown)}")
        if not values:
            return
        if "parameters" in values:
            values["parameters"] = _dumps(values["parameters"])
        if "final" in values:
            values["final"] = None if values["final"] is None else _dumps(values["final"])
        with self._tx():
            self.db.execute_sql(self._update_sql(tuple(values)), (*values.values(), experiment_id, trial_id))

    def _update_sql(self, columns: tuple[str, ...]) -> str:
        return self._prepared(
            ("update_trial", columns),
            lambda q: (
                f"UPDATE {q('nnipl_trial')} SET {', '.join(f'{q(k)} = ?' for k in columns)} "
                f"WHERE {q('experiment_id')} = ? AND {q('trial_id')} = ?"
            ),
        )

    def get_trial(self, experiment_id: str, trial_id: str) -> TrialRow:
        m = self._Trial.get_or_none(
            (self._Trial.experiment == experiment_id) & (self._Trial.trial_id == trial_id)
        )
        if m is None:
            raise ExperimentNotFoundError(f"experiment {experiment_id!r} has no trial {trial_id!r}")
        return self._trial_row(m)

    def list_trials(self, experiment_id: str, statuses: Iterable[str] | None = None) -> list[TrialRow]:
        # prepared SQL, not a peewee query: the manager lists its unfinished trials twice a second
        wanted = None if statuses is None else list(statuses)
        if wanted is not None and not wanted:
            return []

        def build(q: Callable[[str], str]) -> str:
            sql = f"SELECT {', '.join(q(c) for c in _TRIAL_FIELDS)} FROM {q('nnipl_trial')} WHERE {q('experiment_id')} = ?"
            if wanted is not None:
                sql += f" AND {q('status')} IN ({', '.join('?' for _ in wanted)})"
            return sql + f" ORDER BY {q('sequence_id')}"

        sql = self._prepared(("list_trials", None if wanted is None else len(wanted)), build)
        rows = self.db.execute_sql(sql, (experiment_id, *(wanted or ()))).fetchall()
        out = []
        for row in rows:
            data = dict(zip(_TRIAL_FIELDS, row))
            data["parameters"] = _loads(data["parameters"])
            data["final"] = _loads(data["final"])
            data["requeue"] = bool(data["requeue"])
            out.append(TrialRow(**data))
        return out

    def count_requeued(self, experiment_id: str) -> int:
        """Trials stopped before their result and queued to run again: they do not count towards maxTrialNumber."""
        T = self._Trial
        return T.select().where((T.experiment == experiment_id) & (T.requeue == True)).count()  # noqa: E712

    def count_trials(self, experiment_id: str) -> dict[str, int]:
        q = (
            self._Trial.select(self._Trial.status, pw.fn.COUNT(self._Trial.id).alias("n"))
            .where(self._Trial.experiment == experiment_id)
            .group_by(self._Trial.status)
        )
        return {row.status: row.n for row in q}

    # --- metrics ------------------------------------------------------------------------------------------------
    def add_metrics(
        self,
        experiment_id: str,
        trial_id: str,
        records: Sequence[dict[str, Any]],
        *,
        update_trial: bool = True,
    ) -> list[MetricRow]:
        """Store a trial's reports (idempotent on ``seq``); returns the ones that were new.

        The first FINAL report becomes the trial's result; later ones are kept as metrics but ignored.
        ``update_trial=False``: the caller writes the trial's ``intermediate_count``, ``final`` and
        ``final_default`` itself, in the same transaction (the manager, with the trial's end: one write).

        A trial's reports come from its ``metrics.jsonl`` in ``seq`` order, so a record whose ``seq`` is not above
        the highest one stored is one stored already (or one skipped as too large every time).
        """
        if not records:
            return []
        new: list[MetricRow] = []
        key = (experiment_id, trial_id)
        with self._tx():
            state = self._metric_state.get(key)
            if state is None:  # not written by this store yet: what is stored decides
                cursor = self.db.execute_sql(
                    self._prepared(
                        "metric_seqs",
                        lambda q: (
                            f"SELECT {q('seq')}, {q('type')} FROM {q('nnipl_metric')} "
                            f"WHERE {q('experiment_id')} = ? AND {q('trial_id')} = ?"
                        ),
                    ),
                    (experiment_id, trial_id),
                )
                last, counts = -1, {}
                for seq, kind in cursor.fetchall():
                    last = max(last, int(seq))
                    counts[kind] = counts.get(kind, 0) + 1
            else:
                last, counts = state[0], dict(state[1])
            final_before = counts.get("FINAL", 0) > 0
            rows = []
            for rec in sorted(records, key=lambda r: int(r["seq"])):
                seq = int(rec["seq"])
                if seq <= last:  # stored already
                    continue
                last = seq
                kind = str(rec["type"])
                counts[kind] = counts.get(kind, 0) + 1
                row = MetricRow(
                    trial_id=trial_id,
                    type=kind,
                    seq=seq,
                    sequence=counts[kind] - 1,
                    value=rec["value"],
                    default=_default_of(rec["value"]),
                    timestamp=float(rec.get("time") or time.time()),
                )
                new.append(row)
                rows.append(
                    (
                        experiment_id,
                        trial_id,
                        kind,
                        seq,
                        row.sequence,
                        _dumps(row.value),
                        row.default,
                        row.timestamp,
                    )
                )
            if rows:
                # the text of a few rows' insert is kept (a trial's reports come a few per read), a longer one's
                # is not: every count of rows would be kept
                sql = self._prepared(
                    ("add_metrics", len(rows)),
                    lambda q: (
                        f"INSERT INTO {q('nnipl_metric')} ({', '.join(q(c) for c in _METRIC_COLUMNS)}) VALUES "
                        + ", ".join(f"({', '.join('?' for _ in _METRIC_COLUMNS)})" for _ in rows)
                    ),
                    keep=len(rows) <= _KEPT_INSERT_ROWS,
                )
                self.db.execute_sql(sql, tuple(itertools.chain.from_iterable(rows)))
                if update_trial:
                    update: dict[str, Any] = {"intermediate_count": counts.get("PERIODICAL", 0)}
                    finals = [r for r in new if r.type == "FINAL"]
                    if finals and not final_before:
                        update["final"] = _dumps(finals[0].value)
                        update["final_default"] = finals[0].default
                    self.db.execute_sql(
                        self._update_sql(tuple(update)), (*update.values(), experiment_id, trial_id)
                    )
        self._metric_state[key] = (last, counts)
        return new

    def relay(self, experiment_id: str, trial_id: str, records: Sequence[dict[str, Any]]) -> None:
        """A trial on a cluster worker hands its metric records to the manager (idempotent on ``seq``).

        Example:
            >>> import tempfile
            >>> store = Store(f"sqlite:///{tempfile.mkdtemp()}/s.sqlite")
            >>> rec = {"seq": 0, "type": "FINAL", "value": 0.5, "time": 1.0}
            >>> store.relay("e", "t", [rec]); store.relay("e", "t", [rec])
            >>> [r["value"] for r in store.relayed("e", "t")], store.relayed("e", "t", after_seq=0)
            ([0.5], [])
        """
        with self._tx():
            relay.put(self._Relay, experiment_id, trial_id, records)

    def relayed(self, experiment_id: str, trial_id: str, *, after_seq: int = -1) -> list[dict[str, Any]]:
        """The records :meth:`relay` received for a trial with ``seq`` above ``after_seq``, in ``seq`` order."""
        return relay.since(self._Relay, experiment_id, trial_id, after_seq=after_seq)

    def list_metrics(
        self, experiment_id: str, trial_id: str | None = None, type: str | None = None
    ) -> list[MetricRow]:
        M = self._Metric
        q = M.select().where(M.experiment == experiment_id)
        if trial_id is not None:
            q = q.where(M.trial_id == trial_id)
        if type is not None:
            q = q.where(M.type == type)
        return [
            MetricRow(
                trial_id=m.trial_id,
                type=m.type,
                seq=m.seq,
                sequence=m.sequence,
                value=_loads(m.value),
                default=m.default,
                timestamp=m.timestamp,
            )
            for m in q.order_by(M.trial_id, M.seq)
        ]

    def best_trials(
        self, experiment_id: str, *, optimize_mode: str = "maximize", limit: int | None = None
    ) -> list[TrialRow]:
        """Trials with a final result, best first."""
        T = self._Trial
        order = T.final_default.desc() if optimize_mode == "maximize" else T.final_default.asc()
        q = (
            T.select()
            .where((T.experiment == experiment_id) & T.final_default.is_null(False))
            .order_by(order, T.sequence_id)
        )
        if limit is not None:
            q = q.limit(limit)
        return [self._trial_row(m) for m in q]
