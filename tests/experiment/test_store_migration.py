"""A store made by an older nni-pl (schema version 1: no ``platform`` column, no relay table, three indexes schema 4
dropped) is migrated when opened, over every back end, keeping its data; several processes opening it at once all
succeed."""

from __future__ import annotations

import threading

import peewee as pw
import pytest
from playhouse.migrate import SchemaMigrator, migrate

from nni_pl.errors import StoreError
from nni_pl.experiment import store as st
from nni_pl.experiment.store import Store, TrialRow

EXP = "old00001"


def _make_v1_store(url: str) -> None:
    """A store as schema version 1 left it: two trials (one with a final result), no ``platform`` column."""
    with Store(url) as s:
        s.create_experiment(id=EXP, name="old", config={"trialConcurrency": 2}, directory="/d/old")
        for i in range(2):
            s.add_trial(
                TrialRow(
                    experiment_id=EXP,
                    trial_id=f"T{i}",
                    sequence_id=i,
                    parameter_id=i,
                    parameters={"x": i},
                    trial_dir=f"/d/old/trials/T{i}",
                    status=st.SUCCEEDED,
                    host="hostA",
                    exit_code=0,
                )
            )
        s.add_metrics(EXP, "T1", [{"seq": 0, "type": "FINAL", "value": {"default": 0.5}, "time": 1.0}])
        migrate(SchemaMigrator.from_database(s.db).drop_column("nnipl_trial", "platform"))
        s.db.drop_tables([s._Relay])
        for table, name, column in (
            ("nnipl_trial", "trial_experiment_id", "experiment_id"),
            ("nnipl_trial", "trial_status", "status"),
            ("nnipl_metric", "metric_experiment_id", "experiment_id"),
        ):
            s.db.execute_sql(f"CREATE INDEX {s._q(name)} ON {s._q(table)} ({s._q(column)})")
        assert _old_indexes(s) == {name for _, name in st._DROPPED_INDEXES}
        s._Meta.update(value="1").where(s._Meta.key == "schema_version").execute()
        assert "platform" not in {c.name for c in s.db.get_columns("nnipl_trial")}


def _old_indexes(s: Store) -> set[str]:
    return {i.name for table in ("nnipl_trial", "nnipl_metric") for i in s.db.get_indexes(table)} & {
        name for _, name in st._DROPPED_INDEXES
    }


def _schema_version(s: Store) -> int:
    return int(s._Meta.get(s._Meta.key == "schema_version").value)


def test_an_old_store_is_migrated_on_open_and_keeps_its_data(store_url: str) -> None:
    _make_v1_store(store_url)
    with Store(store_url) as s:
        assert st.SCHEMA_VERSION == 4 and _schema_version(s) == 4
        assert s.relayed(EXP, "T0") == []  # the relay table exists
        assert _old_indexes(s) == set()
        assert "platform" in {c.name for c in s.db.get_columns("nnipl_trial")}
        trials = s.list_trials(EXP)
        assert [(t.trial_id, t.parameters, t.status, t.host, t.exit_code, t.platform) for t in trials] == [
            ("T0", {"x": 0}, st.SUCCEEDED, "hostA", 0, None),
            ("T1", {"x": 1}, st.SUCCEEDED, "hostA", 0, None),
        ]
        assert s.get_trial(EXP, "T1").final == {"default": 0.5} and trials[1].final_default == 0.5
        assert [(m.trial_id, m.type) for m in s.list_metrics(EXP)] == [("T1", "FINAL")]
        assert s.get_experiment(EXP).config == {"trialConcurrency": 2}
        # the migrated store takes the new column like a new one
        s.update_trial(EXP, "T0", platform="remote")
        s.add_trial(
            TrialRow(experiment_id=EXP, trial_id="T2", sequence_id=2, parameter_id=2, parameters={},
                     trial_dir="/d/old/trials/T2", platform="local")
        )  # fmt: skip
        assert [t.platform for t in s.list_trials(EXP)] == ["remote", None, "local"]
    with Store(store_url) as s:  # opening it again changes nothing
        assert _schema_version(s) == 4 and [t.platform for t in s.list_trials(EXP)] == [
            "remote",
            None,
            "local",
        ]


def test_several_openers_of_an_old_store_all_succeed(store_url: str) -> None:
    _make_v1_store(store_url)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []
    opened: list[Store] = []

    def open_it() -> None:
        barrier.wait()
        try:
            opened.append(Store(store_url))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        assert len(opened) == 4
        assert all(s.get_trial(EXP, "T0").platform is None for s in opened)
        assert _schema_version(opened[0]) == 4 and _old_indexes(opened[0]) == set()
        opened[0].relay(EXP, "T0", [{"seq": 0, "type": "FINAL", "value": 1.0}])
        assert [r["value"] for r in opened[1].relayed(EXP, "T0")] == [1.0]
    finally:
        for s in opened:
            s.close()


def test_a_failed_migration_says_what_it_could_not_add(tmp_path, monkeypatch) -> None:
    url = st.sqlite_url(tmp_path / "store.sqlite")
    _make_v1_store(url)

    def refuse(self, *args, **kwargs):
        raise pw.OperationalError("disk I/O error")

    monkeypatch.setattr(Store, "_add_missing_columns", refuse)
    with pytest.raises(
        StoreError, match=r"from schema version 1 to 4 \(adding nnipl_trial.platform\).*disk I/O"
    ):
        Store(url)
