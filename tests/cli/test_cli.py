"""The `nni-pl` commands a user watches and steers an experiment with (launch/resume are in tests/experiment)."""

from __future__ import annotations

import os
import signal
import textwrap

from rich.console import Console

from nni_pl.cli.main import main
from nni_pl.experiment import store as st
from nni_pl.experiment.display import format_seconds, format_value, render_snapshot
from nni_pl.experiment.locate import find
from nni_pl.experiment.manager import Snapshot
from nni_pl.training.process import alive as _alive
from tests._wait import wait_for

TRIAL = textwrap.dedent(
    """
    import sys, time
    import nni_pl as nni
    p = nni.get_next_parameter()
    print("trial says hello")
    print("warning line", file=sys.stderr)
    nni.report_intermediate_result(p["x"])
    time.sleep(p.get("sleep", 0))
    nni.report_final_result(p["x"])
    """
)


def test_live_display_shows_counts_best_elapsed_and_budget():
    trial = st.TrialRow(
        experiment_id="e",
        trial_id="Ab3xY",
        sequence_id=0,
        parameter_id=0,
        parameters={"lr": 0.1},
        trial_dir="/x",
        status=st.SUCCEEDED,
        final=0.93,
        final_default=0.93,
    )
    snap = Snapshot(
        experiment_id="e1234567",
        status="RUNNING",
        counts={st.SUCCEEDED: 3, st.FAILED: 1, st.RUNNING: 2},
        counted=6,
        running=2,
        max_trial_number=10,
        elapsed=75,
        max_duration=600,
        best_value=0.93,
        best_params={"lr": 0.1},
        best_trial="Ab3xY",
        recent=[trial],
    )
    console = Console(record=True, width=120)
    console.print(render_snapshot(snap))
    text = console.export_text()
    for expected in (
        "e1234567",
        "6/10",
        "done 3",
        "running 2",
        "failed 1",
        "1m15s",
        "left: 4 trials, 8m45s",
        "0.93",
        '{"lr": 0.1}',
        "Ab3xY",
    ):
        assert expected in text, expected
    assert format_seconds(3.25) == "3.2s" and format_seconds(3725) == "1h02m05s"
    assert format_value({"default": 0.5, "loss": 1}) == '0.5 {"loss": 1}'


def test_view_log_and_trial_ls_of_a_finished_experiment(config, capsys):
    assert main(["launch", str(config()), "--id", "view0001", "--no-display"]) == 0
    capsys.readouterr()
    assert main(["view", "view0001", "--text"]) == 0
    out = capsys.readouterr().out
    assert "view0001" in out and "DONE" in out and "4/4" in out
    trial = find("view0001").store.list_trials("view0001")[0]
    assert main(["log", "view0001", trial.trial_id]) == 0
    assert capsys.readouterr().out == "trial says hello\n"
    assert main(["log", "view0001", trial.trial_id, "--stderr", "--tail", "1"]) == 0
    assert capsys.readouterr().out == "warning line\n"
    assert main(["trial", "ls", "view0001", "--status", "SUCCEEDED"]) == 0
    assert capsys.readouterr().out.count("SUCCEEDED") == 4
    assert main(["list", "--status", "DONE"]) == 0
    assert "view0001" in capsys.readouterr().out


def test_unknown_experiment_or_trial_is_a_clear_error(config, capsys):
    assert main(["show", "nope"]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err
    assert main(["launch", str(config()), "--id", "known001", "--no-display"]) == 0
    assert main(["log", "known001", "zzzzz"]) == 2
    assert "has no trial 'zzzzz'" in capsys.readouterr().err
    assert main(["update", "known001"]) == 2
    assert "nothing to update" in capsys.readouterr().err


def test_trial_kill_and_stop_all_with_a_running_manager(config, capsys):
    assert main(["launch", str(config(sleep=30, maxTrialNumber=3)), "--id", "kill0002", "--detach"]) == 0
    store = find("kill0002").store
    wait_for(lambda: len(store.list_trials("kill0002", statuses=[st.RUNNING])) == 2)
    victim = store.list_trials("kill0002", statuses=[st.RUNNING])[0]
    assert main(["trial", "kill", "kill0002", victim.trial_id]) == 0
    assert store.get_trial("kill0002", victim.trial_id).status == st.USER_CANCELED
    assert not store.get_trial("kill0002", victim.trial_id).requeue  # a user's kill is final
    capsys.readouterr()
    assert main(["stop", "--all"]) == 0
    assert "kill0002 stopped" in capsys.readouterr().out
    exp = store.get_experiment("kill0002")
    assert exp.status == st.EXP_STOPPED and exp.manager_pid is None
    assert not store.list_trials("kill0002", statuses=[st.RUNNING])


def test_list_marks_an_experiment_whose_manager_died(config, capsys):
    assert main(["launch", str(config(sleep=30, maxTrialNumber=2)), "--id", "dead0001", "--detach"]) == 0
    loc = find("dead0001")
    wait_for(lambda: len(loc.store.list_trials("dead0001", statuses=[st.RUNNING])) == 2)
    exp = loc.store.get_experiment("dead0001")
    os.kill(exp.manager_pid, signal.SIGKILL)
    wait_for(lambda: not _alive(exp.manager_pid, exp.manager_started_at))
    capsys.readouterr()
    assert main(["list"]) == 0
    assert "INTERRUPTED" in capsys.readouterr().out
    # stop without a manager: the orphaned trials are ended and the experiment marked stopped
    assert main(["stop", "dead0001"]) == 0
    assert "no manager was running" in capsys.readouterr().out
    for t in loc.store.list_trials("dead0001"):
        wait_for(lambda t=t: not _alive(t.pid, t.pid_started_at))
    assert loc.store.get_experiment("dead0001").status == st.EXP_STOPPED


def test_the_command_exits_quickly_with_its_store_whole_and_no_numpy_rich_or_driver(config, tmp_path):
    """`nni-pl launch` (the console entry point, a real process) ends without module teardown: open stores
    are closed first (SQLite folds its log back into store.sqlite), and a Random launch loads no numpy, no
    rich and no database driver."""
    import json
    import subprocess
    import sys

    probe = tmp_path / "probe.py"
    probe.write_text(
        "import atexit, json, sys\n"
        "from nni_pl.cli.main import run\n"
        "heavy = ('numpy', 'rich', 'psycopg2', 'pymysql', 'cryptography')\n"
        "atexit.register(lambda: print(json.dumps([m for m in heavy if m in sys.modules]), file=sys.stderr))\n"
        "run()\n"
    )
    cfg = config()
    done = subprocess.run(
        [sys.executable, str(probe), "launch", str(cfg), "--id", "quick001", "--no-display", "--no-webui"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "NNI_PL_HOME": str(tmp_path / "home")},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []
    assert "experiment quick001 DONE" in done.stdout
    folder = tmp_path / "exps" / "quick001"
    assert (folder / "store.sqlite").exists() and not (folder / "store.sqlite-wal").exists()
    located = find("quick001", working_directory=tmp_path / "exps")
    assert [t.status for t in located.store.list_trials("quick001")] == [st.SUCCEEDED] * 4
    located.store.close()
