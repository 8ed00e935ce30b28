"""What `list`, `show`, `trial ls` and `log` print is true and bounded, whatever the trials reported."""

from __future__ import annotations

import io
import json
import os
import tracemalloc

import pytest

from nni_pl.cli.logs import head_lines, tail_lines
from nni_pl.cli.main import main
from nni_pl.experiment import store as st
from nni_pl.training.process import process_start_time
from tests.cli._rows import make_experiment


def _row(text: str, experiment_id: str) -> str:
    return next(line for line in text.splitlines() if experiment_id in line)


def test_list_counts_requeued_trials_as_the_manager_does(capsys):
    # 10 trials done and 2 canceled by a stop and re-queued: the re-queued ones do not count (their re-runs do)
    trials = [{"final": 0.5}] * 10 + [{"status": st.USER_CANCELED, "requeue": True}] * 2
    make_experiment("reqd0001", trials, maxTrialNumber=10)
    assert main(["list"]) == 0
    row = _row(capsys.readouterr().out, "reqd0001")
    assert "10/10" in row and "12/10" not in row


def test_trials_of_a_dead_manager_show_as_interrupted_unless_their_process_runs(capsys):
    me = {"pid": os.getpid(), "pid_started_at": process_start_time(os.getpid())}
    trials = [
        {"status": st.RUNNING, "trial_id": "dead1"},  # no process any more
        {"status": st.RUNNING, "trial_id": "dead2", "pid": 2**22 + 17},
        {"status": st.RUNNING, "trial_id": "live1", **me},  # a killed manager leaves trials running
        {"status": st.SUCCEEDED, "final": 0.7},
    ]
    make_experiment("intr0001", trials, status=st.EXP_RUNNING)  # RUNNING as recorded, no manager
    assert main(["list"]) == 0
    row = _row(capsys.readouterr().out, "intr0001")
    assert "INTERRUPTED" in row and "interrupted 2" in row and "running 1" in row

    assert main(["show", "intr0001"]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert "interrupted 2" in head and "running 1" in head

    assert main(["trial", "ls", "intr0001"]) == 0
    lines = capsys.readouterr().out.splitlines()
    status_of = {t: next(line for line in lines if t in line) for t in ("dead1", "dead2", "live1")}
    assert "INTERRUPTED" in status_of["dead1"] and "INTERRUPTED" in status_of["dead2"]
    assert "RUNNING" in status_of["live1"]

    assert main(["view", "intr0001", "--text"]) == 0
    assert "interrupted 2" in capsys.readouterr().out


def test_running_manager_keeps_its_trials_running(capsys):
    make_experiment("alive001", [{"status": st.RUNNING}], status=st.EXP_RUNNING, manager_alive=True)
    assert main(["list"]) == 0
    row = _row(capsys.readouterr().out, "alive001")
    assert "RUNNING" in row and "running 1" in row and "interrupted" not in row


def test_a_workdir_that_does_not_exist_is_an_error_naming_it(capsys, tmp_path):
    make_experiment("home0001", [{"final": 1.0}])
    missing = tmp_path / "no-such-folder"
    assert main(["list", "--workdir", str(missing)]) == 2
    err = capsys.readouterr()
    assert str(missing) in err.err and "does not exist" in err.err and "home0001" not in err.out
    assert main(["show", "home0001", "--workdir", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_tables_cut_wide_metrics_and_huge_parameters_and_export_keeps_them(capsys):
    wide = {"default": 0.9, **{f"k{i}": i for i in range(30_000)}}
    huge = {"x": 0.5, "blob": "y" * 500_000, **{f"p{i}": i for i in range(40)}}
    make_experiment("wide0001", [{"final": wide, "parameters": huge}, {"final": "z" * 500_000}])
    for argv in (["trial", "ls", "wide0001"], ["show", "wide0001"], ["list"], ["view", "wide0001", "--text"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert len(out) < 20_000 and len(out.splitlines()) < 60, argv
        assert "…(+" in out, argv
        if argv[0] in ("trial", "show"):
            assert "nni-pl export wide0001 --format json" in out
    assert main(["export", "wide0001", "--format", "json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported[0]["value"] == wide and exported[0]["parameter"] == huge
    assert exported[1]["value"] == "z" * 500_000


def test_tail_and_head_lines_read_only_what_they_need():
    data = b"".join(b"line %d\n" % i for i in range(100_000))

    class Counting(io.BytesIO):
        read_bytes = 0

        def read(self, n: int | None = -1) -> bytes:
            out = super().read(n)
            Counting.read_bytes += len(out)
            return out

        def readline(self, n: int | None = -1) -> bytes:
            out = super().readline(n)
            Counting.read_bytes += len(out)
            return out

    f = Counting(data)
    assert tail_lines(f, 2) == [b"line 99998", b"line 99999"]
    assert Counting.read_bytes < 70_000  # one block from the end, not the 1.2 MB file
    Counting.read_bytes = 0
    assert head_lines(Counting(data), 3) == [b"line 0", b"line 1", b"line 2"]
    assert Counting.read_bytes < 100
    assert tail_lines(io.BytesIO(b"a\nb"), 5) == [b"a", b"b"]
    assert tail_lines(io.BytesIO(b""), 1) == [] and head_lines(io.BytesIO(b"a\n"), 0) == []


def test_log_tail_of_a_large_output_in_bounded_memory(capsys):
    make_experiment("logs0001", [{"final": 1.0, "trial_id": "big01"}])
    from nni_pl.experiment.locate import find

    stdout = find("logs0001").directory / "trials" / "big01" / "stdout"
    line = b"x" * 99 + b"\n"
    with open(stdout, "wb") as f:
        for _ in range(30):
            f.write(line * 10_000)  # 30 MB
        f.write(b"second to last\nlast line\n")
    tracemalloc.start()
    try:
        assert main(["log", "logs0001", "big01", "--tail", "2"]) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert capsys.readouterr().out == "second to last\nlast line\n"
    assert peak < 4_000_000, f"peak {peak} bytes for the last 2 lines of a 30 MB file"
    assert main(["log", "logs0001", "big01", "--head", "1"]) == 0
    assert capsys.readouterr().out == "x" * 99 + "\n"
    assert main(["log", "logs0001", "big01", "--head", "1", "--tail", "1"]) == 2
    assert "not both" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["log", "logs0002"], ["log"]])
def test_log_without_a_trial_says_what_to_give(argv, capsys):
    make_experiment("logs0002", [{"final": 1.0}])
    assert main(argv) == 2
    assert "TRIAL" in capsys.readouterr().err
