"""The experiment store, over every back end (SQLite file and a real PostgreSQL database)."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import peewee
import pytest

from nni_pl.errors import ExperimentNotFoundError, MissingDependencyError, NniPlError, StoreError
from nni_pl.experiment import store as st
from nni_pl.experiment.store import Store, TrialRow, redact_url, sqlite_url

REPO = Path(__file__).resolve().parents[2]
EXP = "exp00001"


@pytest.fixture
def store(store_url: str):
    s = Store(store_url)
    s.create_experiment(id=EXP, name="demo", config={"searchSpace": {"x": 1}}, directory="/tmp/exp")
    yield s
    s.close()


def _trial(seq: int, trial_id: str | None = None, **kw) -> TrialRow:
    return TrialRow(
        experiment_id=EXP,
        trial_id=trial_id or f"T{seq:04d}",
        sequence_id=seq,
        parameter_id=seq,
        parameters={"x": seq, "nested": {"_name": "a", "y": [1, 2]}},
        trial_dir=f"/tmp/exp/trials/T{seq:04d}",
        **kw,
    )


def _rec(seq: int, value, type: str = "PERIODICAL") -> dict:
    return {"seq": seq, "type": type, "value": value, "time": 1000.0 + seq}


# --- experiments -------------------------------------------------------------------------------------------------


def test_experiment_create_get_list_update_delete(store_url: str) -> None:
    with Store(store_url) as s:
        assert s.list_experiments() == []
        row = s.create_experiment(
            id="aaa", name="first", config={"tuner": {"name": "TPE"}, "n": [1, 2]}, directory="/d/aaa"
        )
        assert (row.id, row.name, row.status, row.directory) == ("aaa", "first", st.EXP_RUNNING, "/d/aaa")
        assert row.config == {"tuner": {"name": "TPE"}, "n": [1, 2]}
        assert row.created_at > 0 and row.revision == 0 and row.elapsed == 0.0
        s.create_experiment(id="bbb", name=None, config={}, directory="/d/bbb", status=st.EXP_STOPPED)
        assert [e.id for e in s.list_experiments()] == ["aaa", "bbb"]  # oldest first

        s.update_experiment(
            "aaa", status=st.EXP_DONE, config={"changed": True}, revision=1, manager_pid=123, message="ok"
        )
        got = s.get_experiment("aaa")
        assert (got.status, got.config, got.revision, got.manager_pid, got.message) == (
            st.EXP_DONE,
            {"changed": True},
            1,
            123,
            "ok",
        )
        assert s.get_experiment("bbb").status == st.EXP_STOPPED

        s.delete_experiment("aaa")
        assert [e.id for e in s.list_experiments()] == ["bbb"]
        with pytest.raises(ExperimentNotFoundError, match="no experiment 'aaa'"):
            s.get_experiment("aaa")


def test_experiment_rows_are_shared_between_store_objects(store_url: str) -> None:
    with Store(store_url) as a, Store(store_url) as b:
        a.create_experiment(id="shared", name="n", config={"k": "v"}, directory="/d")
        assert b.get_experiment("shared").config == {"k": "v"}
        b.update_experiment("shared", status=st.EXP_STOPPED)
        assert a.get_experiment("shared").status == st.EXP_STOPPED


def test_experiment_duplicate_id_error(store: Store) -> None:
    with pytest.raises(StoreError, match=rf"an experiment with id '{EXP}' already exists in .*pick another"):
        store.create_experiment(id=EXP, name="again", config={}, directory="/elsewhere")
    assert store.get_experiment(EXP).name == "demo"  # the original is untouched
    store.create_experiment(id="other", name=None, config={}, directory="/d")  # the store still works


def test_experiment_missing_and_unknown_fields(store: Store) -> None:
    with pytest.raises(ExperimentNotFoundError, match="no experiment 'nope'"):
        store.get_experiment("nope")
    with pytest.raises(ExperimentNotFoundError, match="no experiment 'nope'"):
        store.update_experiment("nope", status=st.EXP_DONE)
    with pytest.raises(TypeError, match=r"unknown experiment fields \['colour'\]"):
        store.update_experiment(EXP, colour="red")


# --- trials ------------------------------------------------------------------------------------------------------


def test_trial_add_update_get_list_filter_count(store: Store) -> None:
    for seq in range(4):
        store.add_trial(_trial(seq))
    t = store.get_trial(EXP, "T0002")
    assert t.parameters == {"x": 2, "nested": {"_name": "a", "y": [1, 2]}}
    assert (t.status, t.final, t.final_default, t.intermediate_count, t.requeue) == (
        st.WAITING,
        None,
        None,
        0,
        False,
    )
    assert not t.finished and t.duration is None

    store.update_trial(EXP, "T0000", status=st.RUNNING, started_at=10.0, pid=42, gpu_indices="0,1")
    store.update_trial(EXP, "T0001", status=st.SUCCEEDED, started_at=10.0, ended_at=12.5, exit_code=0)
    store.update_trial(EXP, "T0002", status=st.FAILED, error="boom", requeue=True, final={"default": 1})
    got = store.get_trial(EXP, "T0001")
    assert got.finished and got.duration == pytest.approx(2.5)
    assert store.get_trial(EXP, "T0000").gpu_indices == "0,1"
    failed = store.get_trial(EXP, "T0002")
    assert (failed.error, failed.requeue, failed.final) == ("boom", True, {"default": 1})

    assert [t.trial_id for t in store.list_trials(EXP)] == ["T0000", "T0001", "T0002", "T0003"]
    done = store.list_trials(EXP, statuses=[st.SUCCEEDED, st.FAILED])
    assert [t.trial_id for t in done] == ["T0001", "T0002"]
    assert store.list_trials(EXP, statuses=[]) == []
    assert store.count_trials(EXP) == {st.WAITING: 1, st.RUNNING: 1, st.SUCCEEDED: 1, st.FAILED: 1}
    assert store.count_trials("other") == {}

    with pytest.raises(ExperimentNotFoundError, match="has no trial 'nope'"):
        store.get_trial(EXP, "nope")
    with pytest.raises(TypeError, match="unknown trial fields"):
        store.update_trial(EXP, "T0000", colour="red")


def test_trials_are_kept_per_experiment(store: Store) -> None:
    store.create_experiment(id="exp2", name=None, config={}, directory="/d")
    store.add_trial(_trial(0))
    # the same trial and sequence ids are fine in another experiment
    store.add_trial(TrialRow(experiment_id="exp2", trial_id="T0000", sequence_id=0, parameter_id=0,
                             parameters={"x": 9}, trial_dir="/d"))  # fmt: skip
    assert store.get_trial("exp2", "T0000").parameters == {"x": 9}
    assert store.get_trial(EXP, "T0000").parameters["x"] == 0
    store.delete_experiment(EXP)
    assert store.list_trials(EXP) == [] and len(store.list_trials("exp2")) == 1


@pytest.mark.parametrize(
    ("trial_id", "sequence_id"), [("T0000", 7), ("Tnew", 0)], ids=["same-trial-id", "same-sequence-id"]
)
def test_trial_unique_per_experiment(store: Store, trial_id: str, sequence_id: int) -> None:
    store.add_trial(_trial(0))
    with pytest.raises(StoreError, match=rf"experiment '{EXP}' cannot take trial '{trial_id}'"):
        store.add_trial(_trial(sequence_id, trial_id=trial_id))
    # a failed insert leaves the connection usable (on PostgreSQL an aborted transaction would not be)
    store.add_trial(_trial(1))
    assert [t.trial_id for t in store.list_trials(EXP)] == ["T0000", "T0001"]


def test_trial_of_unknown_experiment_is_refused(store: Store) -> None:
    row = _trial(0)
    row.experiment_id = "ghost"
    with pytest.raises(StoreError, match="'ghost' cannot take trial"):
        store.add_trial(row)


# --- metrics -----------------------------------------------------------------------------------------------------


def test_metrics_idempotent_and_numbered_per_type(store: Store) -> None:
    store.add_trial(_trial(0))
    records = [_rec(0, 0.1), _rec(1, 0.2), _rec(2, 0.3)]
    new = store.add_metrics(EXP, "T0000", records)
    assert [(m.seq, m.sequence, m.type) for m in new] == [(0, 0, "PERIODICAL"), (1, 1, "PERIODICAL"), (2, 2, "PERIODICAL")]  # fmt: skip
    assert store.add_metrics(EXP, "T0000", records) == []  # re-reading metrics.jsonl adds nothing
    assert store.add_metrics(EXP, "T0000", []) == []

    # a later read: the old lines again plus new ones, out of order
    new = store.add_metrics(EXP, "T0000", [_rec(4, 0.9, "FINAL"), *records, _rec(3, 0.4)])
    assert [(m.seq, m.sequence, m.type) for m in new] == [(3, 3, "PERIODICAL"), (4, 0, "FINAL")]

    stored = store.list_metrics(EXP, "T0000")
    assert [(m.seq, m.sequence, m.type, m.value) for m in stored] == [
        (0, 0, "PERIODICAL", 0.1),
        (1, 1, "PERIODICAL", 0.2),
        (2, 2, "PERIODICAL", 0.3),
        (3, 3, "PERIODICAL", 0.4),
        (4, 0, "FINAL", 0.9),
    ]
    assert stored[0].timestamp == 1000.0 and stored[0].default == 0.1
    assert [m.seq for m in store.list_metrics(EXP, type="FINAL")] == [4]
    t = store.get_trial(EXP, "T0000")
    assert (t.intermediate_count, t.final, t.final_default) == (4, 0.9, 0.9)


def test_metrics_of_another_store_are_read_once_then_known(store: Store, store_url: str) -> None:
    # a manager's store knows the metrics of the trials it created; a resumed one reads a trial's stored metrics
    # once, and a reader that starts again from the first line (a restarted manager) duplicates nothing
    store.add_trial(_trial(0))
    store.add_metrics(EXP, "T0000", [_rec(0, 0.1), _rec(1, 0.2)])
    other = Store(store_url)
    try:
        new = other.add_metrics(EXP, "T0000", [_rec(0, 0.1), _rec(1, 0.2), _rec(2, 0.3)])
        assert [(m.seq, m.sequence) for m in new] == [(2, 2)]
        new = other.add_metrics(
            EXP, "T0000", [_rec(0, 0.1), _rec(1, 0.2), _rec(2, 0.3), _rec(3, 0.9, "FINAL")]
        )
        assert [(m.seq, m.sequence, m.type) for m in new] == [(3, 0, "FINAL")]
    finally:
        other.close()
    assert [m.seq for m in store.list_metrics(EXP, "T0000")] == [0, 1, 2, 3]


def test_metrics_noted_in_a_rolled_back_batch_are_stored_again(store: Store) -> None:
    store.add_trial(_trial(0))
    with pytest.raises(RuntimeError), store.batch():
        store.add_metrics(EXP, "T0000", [_rec(0, 0.1)])
        raise RuntimeError("the turn failed")
    assert store.list_metrics(EXP, "T0000") == []
    assert [m.seq for m in store.add_metrics(EXP, "T0000", [_rec(0, 0.1)])] == [0]
    assert [m.seq for m in store.list_metrics(EXP, "T0000")] == [0]


def test_metrics_without_the_rows_result_fields(store: Store) -> None:
    # update_trial=False: the caller writes intermediate_count / final itself (the manager, with the trial's end)
    store.add_trial(_trial(0))
    store.add_metrics(EXP, "T0000", [_rec(0, 0.1), _rec(1, 0.5, "FINAL")], update_trial=False)
    t = store.get_trial(EXP, "T0000")
    assert (t.intermediate_count, t.final) == (0, None)
    assert [m.seq for m in store.list_metrics(EXP, "T0000")] == [0, 1]


def test_metrics_first_final_wins(store: Store) -> None:
    store.add_trial(_trial(0))
    store.add_metrics(EXP, "T0000", [_rec(0, 0.5, "FINAL")])
    new = store.add_metrics(EXP, "T0000", [_rec(1, 0.99, "FINAL")])
    assert [(m.seq, m.sequence) for m in new] == [(1, 1)]  # kept as a metric ...
    t = store.get_trial(EXP, "T0000")
    assert (t.final, t.final_default) == (0.5, 0.5)  # ... but not the result

    store.add_trial(_trial(1))
    store.add_metrics(EXP, "T0001", [_rec(0, 0.3, "FINAL"), _rec(1, 0.7, "FINAL")])  # in one batch too
    assert store.get_trial(EXP, "T0001").final_default == 0.3


def test_metrics_per_trial(store: Store) -> None:
    store.add_trial(_trial(0))
    store.add_trial(_trial(1))
    store.add_metrics(EXP, "T0000", [_rec(0, 1.0)])
    assert [m.sequence for m in store.add_metrics(EXP, "T0001", [_rec(0, 2.0), _rec(1, 3.0)])] == [0, 1]
    assert [m.value for m in store.list_metrics(EXP, "T0001")] == [2.0, 3.0]
    assert [(m.trial_id, m.seq) for m in store.list_metrics(EXP)] == [("T0000", 0), ("T0001", 0), ("T0001", 1)]  # fmt: skip
    assert store.get_trial(EXP, "T0000").intermediate_count == 1


def test_metrics_dict_with_default(store: Store) -> None:
    store.add_trial(_trial(0))
    store.add_metrics(
        EXP,
        "T0000",
        [
            _rec(0, {"default": 0.25, "loss": 1.5}),
            _rec(1, {"loss": 1.0}),  # no default: kept, but not a number to rank by
            _rec(2, {"default": 0.75, "loss": 0.5, "per_class": [0.1, 0.9]}, "FINAL"),
        ],
    )
    ms = store.list_metrics(EXP, "T0000")
    assert [m.default for m in ms] == [0.25, None, 0.75]
    assert ms[2].value == {"default": 0.75, "loss": 0.5, "per_class": [0.1, 0.9]}
    t = store.get_trial(EXP, "T0000")
    assert t.final == {"default": 0.75, "loss": 0.5, "per_class": [0.1, 0.9]}
    assert t.final_default == 0.75


def test_metrics_nan_round_trips(store: Store) -> None:
    store.add_trial(_trial(0))
    store.add_metrics(
        EXP,
        "T0000",
        [_rec(0, float("nan")), _rec(1, {"default": float("inf")}), _rec(2, float("nan"), "FINAL")],
    )
    ms = store.list_metrics(EXP, "T0000")
    assert math.isnan(ms[0].value) and ms[0].default is None
    assert ms[1].value == {"default": math.inf} and ms[1].default is None
    t = store.get_trial(EXP, "T0000")
    assert math.isnan(t.final) and t.final_default is None
    assert store.best_trials(EXP) == []  # no number to rank by


def test_best_trials_ordering(store: Store) -> None:
    finals = [0.5, 0.9, None, 0.1, 0.9, {"default": 0.7}]
    for seq, value in enumerate(finals):
        store.add_trial(_trial(seq))
        if value is not None:
            store.add_metrics(EXP, f"T{seq:04d}", [_rec(0, value, "FINAL")])
    best = store.best_trials(EXP, optimize_mode="maximize")
    # ties (0.9) are broken by sequence id; the trial without a result is left out
    assert [t.trial_id for t in best] == ["T0001", "T0004", "T0005", "T0000", "T0003"]
    worst_first = store.best_trials(EXP, optimize_mode="minimize")
    assert [t.trial_id for t in worst_first] == ["T0003", "T0000", "T0005", "T0001", "T0004"]
    assert [t.trial_id for t in store.best_trials(EXP, optimize_mode="minimize", limit=2)] == ["T0003", "T0000"]  # fmt: skip
    assert store.best_trials("other") == []


# --- durability and concurrency ----------------------------------------------------------------------------------


def _writer(url: str, worker: int, n: int, barrier, errors) -> None:
    """One of two processes writing to the same store: a trial and its metrics per transaction."""
    try:
        s = Store(url)
        barrier.wait(timeout=60)
        for i in range(n):
            seq = worker * 100_000 + i
            tid = f"w{worker}-{i}"
            s.add_trial(_trial(seq, trial_id=tid))
            s.add_metrics(EXP, tid, [_rec(0, float(i)), _rec(1, float(i), "FINAL")])
            s.update_trial(EXP, tid, status=st.SUCCEEDED)
            s.get_experiment(EXP)  # a read between the writes, as the CLI/dashboard would
        s.close()
    except BaseException as e:
        errors.put(f"worker {worker}: {type(e).__name__}: {e}")
        raise


def test_two_processes_write_concurrently(store: Store, store_url: str) -> None:
    n = 200
    ctx = mp.get_context("spawn")  # two independent processes, each with its own connection
    barrier, errors = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(store_url, w, n, barrier, errors)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == [] and [p.exitcode for p in procs] == [0, 0]
    trials = store.list_trials(EXP)
    assert len(trials) == 2 * n
    assert store.count_trials(EXP) == {st.SUCCEEDED: 2 * n}
    assert len(store.list_metrics(EXP)) == 4 * n
    assert all(t.final_default == float(t.trial_id.split("-")[1]) for t in trials)


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    with Store(sqlite_url(tmp_path / "store.sqlite")) as s:
        assert s.is_sqlite
        assert s.db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.db.execute_sql("PRAGMA busy_timeout").fetchone()[0] >= 5000
        assert s.db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1


def test_sqlite_store_in_a_new_folder_and_for_directory(tmp_path: Path) -> None:
    with Store.for_directory(tmp_path / "a" / "b") as s:
        s.create_experiment(id="x", name=None, config={}, directory=str(tmp_path))
    assert (tmp_path / "a" / "b" / "store.sqlite").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot create the folder of the SQLite store"):
        Store(sqlite_url(tmp_path / "file" / "store.sqlite"))


_KILLED_WRITER = """
import os, signal, sys
from nni_pl.experiment.store import Store, TrialRow
s = Store(sys.argv[1])
s.create_experiment(id="killed", name=None, config={}, directory="/d")
s.add_trial(TrialRow(experiment_id="killed", trial_id="T1", sequence_id=0, parameter_id=0,
                     parameters={"x": 1}, trial_dir="/d/T1"))
s.add_metrics("killed", "T1", [{"seq": 0, "type": "FINAL", "value": 0.5, "time": 1.0}])
os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint, no atexit
"""


def test_committed_write_survives_sigkill(store_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLED_WRITER), store_url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with Store(store_url) as s:
        t = s.get_trial("killed", "T1")
        assert (t.parameters, t.final_default) == ({"x": 1}, 0.5)
        assert [m.value for m in s.list_metrics("killed")] == [0.5]


# --- opening errors ----------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_missing_database_is_store_error(postgres_server) -> None:
    url = postgres_server.url("no_such_database")
    with pytest.raises(StoreError, match=rf"cannot open the store at '{url}'.*no_such_database"):
        Store(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("foo://host/db", "foo://host/db"),
        ("not a url", "not a url"),
        ("postgresql://127.0.0.1:5432", "postgresql://127.0.0.1:5432"),  # no database name
        # nothing listens on port 1: the password must not appear in the message
        ("postgresql://nni:s3cret@127.0.0.1:1/nni", "postgresql://nni:***@127.0.0.1:1/nni"),
    ],
)
def test_bad_url_is_store_error(url: str, shown: str) -> None:
    with pytest.raises(StoreError) as info:
        Store(url)
    message = str(info.value)
    assert repr(shown) in message
    assert "s3cret" not in message
    assert isinstance(info.value, NniPlError)


def test_redact_url() -> None:
    assert redact_url("postgresql://u:p%40ss@h:5/db?x=1") == "postgresql://u:***@h:5/db?x=1"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact_url("sqlite:////tmp/a.sqlite") == "sqlite:////tmp/a.sqlite"


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # peewee imports drivers softly; a missing one shows as a None module attribute
    monkeypatch.setattr(peewee, "psycopg2", None)
    monkeypatch.setattr(peewee, "psycopg", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'nni-pl\[postgres\]'"):
        Store("postgresql://postgres@127.0.0.1:1/nni")
    monkeypatch.setattr(peewee, "mysql", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'nni-pl\[mysql\]'"):
        Store("mysql://root@127.0.0.1:1/nni")


def test_store_url_fixture_gives_a_fresh_database(store_url: str) -> None:
    # every test starts empty, whatever the test before it wrote
    with Store(store_url) as s:
        assert s.list_experiments() == []
        assert os.environ["NNI_PL_HOME"] != str(Path.home() / "nni-pl-experiments")
