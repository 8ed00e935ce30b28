"""NNI's nnictl spellings work beside nni-pl's own commands (seed §2(b))."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from nni_pl.cli import nnictl
from nni_pl.cli.main import main
from nni_pl.experiment import locate
from nni_pl.experiment import store as st
from nni_pl.experiment.locate import find
from tests._wait import wait_for
from tests.cli._rows import make_experiment

TRIAL = textwrap.dedent(
    """
    import sys, time
    import nni_pl as nni
    p = nni.get_next_parameter()
    print("trial says hello")
    nni.report_intermediate_result(p["x"])
    time.sleep(p.get("sleep", 0))
    nni.report_final_result(p["x"])
    """
)


def _err_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --- create and steering a running experiment --------------------------------------------------------------------


def test_create_runs_in_the_background_and_nnictl_commands_steer_it(config, capsys):
    assert main(["create", "--config", str(config(sleep=30, maxTrialNumber=3)), "--port", "0"]) == 0
    out = capsys.readouterr().out
    exp_id = re.search(r"nni-pl stop (\w{8})", out).group(1)  # create returns; the experiment runs on
    store = find(exp_id).store
    wait_for(lambda: len(store.list_trials(exp_id, statuses=[st.RUNNING])) == 2)

    assert main(["experiment", "list"]) == 0
    assert exp_id in capsys.readouterr().out
    assert main(["webui", "url"]) == 0  # no id: the one running experiment
    url = capsys.readouterr().out.strip()
    assert main(["webui", "url", exp_id]) == 0 and capsys.readouterr().out.strip() == url
    assert main(["top", "--once"]) == 0
    top = capsys.readouterr().out
    assert exp_id in top and "2/3" in top and url in top

    assert main(["update", "trialnum", exp_id, "--value", "4"]) == 0
    assert main(["update", "concurrency", "-v", "1"]) == 0
    assert main(["update", "duration", exp_id, "-v", "1h"]) == 0
    cfg = store.get_experiment(exp_id).config
    assert (cfg["maxTrialNumber"], cfg["trialConcurrency"], cfg["maxExperimentDuration"]) == (4, 1, "1h")
    capsys.readouterr()
    assert main(["update", "trialnum", exp_id, "--value", "many"]) == 2
    assert "--value must be a whole number" in _err_line(capsys)

    victim = store.list_trials(exp_id, statuses=[st.RUNNING])[0]
    assert main(["trial", "kill", exp_id, "--trial_id", victim.trial_id]) == 0
    assert store.get_trial(exp_id, victim.trial_id).status == st.USER_CANCELED
    capsys.readouterr()
    assert main(["log", "stdout", exp_id, "--tail", "1"]) == 0
    assert capsys.readouterr().out.count("\n") == 1

    assert main(["experiment", "delete", exp_id, "--yes"]) == 2
    assert f"`nni-pl stop {exp_id}`" in _err_line(capsys)
    assert main(["stop", "--port", str(urlsplit(url).port)]) == 0
    assert f"{exp_id} stopped" in capsys.readouterr().out
    assert store.get_experiment(exp_id).status == st.EXP_STOPPED


def test_create_foreground_runs_in_the_terminal_like_launch(config, capsys):
    assert main(["create", "-c", str(config()), "-f", "-d"]) == 0
    out = capsys.readouterr().out
    assert "--debug changes nothing" in out and "DONE" in out
    exp_id = re.search(r"experiment (\w{8}) DONE", out).group(1)
    assert find(exp_id).experiment.status == st.EXP_DONE


# --- moving experiments: save / load / delete ---------------------------------------------------------------------


def test_save_and_load_move_an_experiment_with_its_code_to_another_home(
    config, tmp_path, monkeypatch, capsys
):
    shared = st.sqlite_url(tmp_path / "shared.sqlite")  # a store outside the folder, as a shared database is
    cfg = config(maxTrialNumber=2, storeUrl=shared)
    assert main(["launch", str(cfg), "--id", "move0001", "--no-display", "--no-webui"]) == 0
    before = find("move0001").store.export_experiment("move0001")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["experiment", "save", "move0001", "--path", str(out_dir), "--saveCodeDir"]) == 0
    archive = out_dir / "nni_experiment_move0001.tar.gz"
    assert archive.is_file()
    assert main(["experiment", "save", "move0001", "-p", str(out_dir)]) == 2  # never overwrites
    assert "already exists" in _err_line(capsys)

    # the original is gone (its rows in the shared store too), and so is its code
    old_folder = find("move0001").directory
    assert main(["experiment", "delete", "move0001", "--yes"]) == 0
    assert not old_folder.exists() and st.Store(shared).list_experiments() == []
    (tmp_path / "trial.py").unlink()

    # another machine: a fresh home
    monkeypatch.setenv("NNI_PL_HOME", str(tmp_path / "elsewhere"))
    code = tmp_path / "code-here"
    code.mkdir()
    capsys.readouterr()
    assert main(["experiment", "load", "--path", str(archive), "--codeDir", str(code)]) == 0
    assert "loaded experiment move0001 (2 trials)" in capsys.readouterr().out
    loc = find("move0001")
    assert loc.directory == tmp_path / "elsewhere" / "move0001" and loc.store.url != shared
    after = loc.store.export_experiment("move0001")
    assert [(t["trial_id"], t["parameters"], t["final"], t["status"]) for t in after["trials"]] == [
        (t["trial_id"], t["parameters"], t["final"], t["status"]) for t in before["trials"]
    ]
    assert len(after["metrics"]) == len(before["metrics"]) == 4
    assert all(Path(t["trial_dir"]).parent == loc.directory / "trials" for t in after["trials"])
    assert (code / "trial.py").exists() and loc.experiment.config["trialCodeDirectory"] == str(code)

    assert main(["list"]) == 0
    assert "2/2" in next(line for line in capsys.readouterr().out.splitlines() if "move0001" in line)
    assert main(["export", "move0001", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main(["log", "move0001", after["trials"][0]["trial_id"]]) == 0
    assert capsys.readouterr().out == "trial says hello\n"
    assert main(["view", "move0001", "--text"]) == 0

    # it resumes here, with the code it brought
    assert main(["update", "trialnum", "move0001", "--value", "3"]) == 0
    assert main(["resume", "move0001", "--no-display", "--no-webui"]) == 0
    trials = find("move0001").store.list_trials("move0001")
    assert [t.status for t in trials] == [st.SUCCEEDED] * 3
    assert Path(trials[-1].trial_dir).parent == loc.directory / "trials"

    capsys.readouterr()
    assert main(["experiment", "load", "-p", str(archive)]) == 2  # the id exists here now
    assert "already exists here" in _err_line(capsys)
    assert main(["experiment", "load", "-p", str(cfg)]) == 2
    assert "is not an experiment saved by" in _err_line(capsys)


def test_save_and_load_carry_the_rows_of_every_store_back_end(store_url, tmp_path, capsys):
    trials = [
        {"final": {"default": 0.5, "loss": 1.5}},
        {"status": st.FAILED, "error": "boom", "exit_code": 3},
    ]
    make_experiment("srv00001", trials, store_url=store_url)
    before = st.Store(store_url).export_experiment("srv00001")
    assert main(["experiment", "save", "srv00001", "--store", store_url, "-p", str(tmp_path)]) == 0
    archive = str(tmp_path / "nni_experiment_srv00001.tar.gz")
    assert main(["experiment", "delete", "srv00001", "--store", store_url, "-y"]) == 0
    assert st.Store(store_url).list_experiments() == []

    assert main(["experiment", "load", "-p", archive]) == 0  # into the folder's own SQLite store
    local = find("srv00001")
    assert local.store.url != store_url
    after = local.store.export_experiment("srv00001")
    assert after["trials"] == before["trials"] and after["metrics"] == before["metrics"]

    assert main(["experiment", "delete", "srv00001", "-y"]) == 0
    assert main(["experiment", "load", "-p", archive, "--store", store_url]) == 0  # back into a shared store
    again = st.Store(store_url).export_experiment("srv00001")
    assert again["trials"] == before["trials"] and again["metrics"] == before["metrics"]
    capsys.readouterr()
    assert main(["show", "srv00001", "--store", store_url]) == 0
    assert "succeeded 1" in capsys.readouterr().out


def test_an_archive_keeps_no_store_password(tmp_path):
    import tarfile

    make_experiment("pass0001", [{"final": 1.0}], storeUrl="postgresql://nni:s3cret@db.example/nni")
    (find("pass0001").directory / "config.yml").write_text(
        "storeUrl: postgresql://nni:s3cret@db.example/nni\n"
    )
    assert main(["experiment", "save", "pass0001", "-p", str(tmp_path)]) == 0
    with tarfile.open(tmp_path / "nni_experiment_pass0001.tar.gz") as tar:
        files = [tar.extractfile(m) for m in tar.getmembers() if m.isfile()]
        assert files and not any(b"s3cret" in f.read() for f in files if f is not None)


def test_experiment_delete_removes_rows_folder_and_index_and_refuses_a_running_one(tmp_path, capsys):
    make_experiment("gone0001", [{"final": 1.0}])
    shared = st.sqlite_url(tmp_path / "shared.sqlite")
    make_experiment("gone0002", [{"final": 1.0}], store_url=shared)
    make_experiment("busy0001", [{"status": st.RUNNING}], status=st.EXP_RUNNING, manager_alive=True)
    folder = find("gone0001").directory

    assert main(["experiment", "delete", "gone0001"]) == 2  # no terminal to confirm on: --yes is needed
    assert "--yes" in _err_line(capsys) and folder.exists()
    assert main(["experiment", "delete", "gone0001", "--yes"]) == 0
    assert "deleted experiment gone0001 (1 trials" in capsys.readouterr().out
    assert not folder.exists() and locate.is_known("gone0001") is None
    assert main(["show", "gone0001"]) == 2
    capsys.readouterr()

    assert main(["experiment", "delete", "gone0002", "-y"]) == 0  # a shared store loses its rows too
    assert st.Store(shared).list_experiments() == []

    assert main(["experiment", "delete", "busy0001", "-y"]) == 2
    assert "cannot be deleted: its manager runs" in _err_line(capsys)
    assert find("busy0001").directory.exists()

    make_experiment("gone0003", [{"status": st.FAILED}])
    assert main(["experiment", "delete", "--all", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "kept experiment busy0001" in out and "deleted experiment gone0003" in out
    assert [loc.experiment.id for loc in locate.iter_experiments()] == ["busy0001"]
    assert main(["experiment", "delete"]) == 2
    assert "give the experiment to delete, or --all" in _err_line(capsys)


# --- reading an experiment -------------------------------------------------------------------------------------


def test_experiment_show_status_and_export(tmp_path, capsys):
    secret_args = {"optimize_mode": "minimize", "api_key": "s3cret"}
    trials = [{"final": v} for v in (0.3, 0.1, 0.2)]
    make_experiment("prof0001", trials, tuner={"name": "Random", "classArgs": secret_args})
    assert main(["experiment", "show", "prof0001"]) == 0
    profile = json.loads(capsys.readouterr().out)
    assert profile["id"] == "prof0001" and profile["status"] == st.EXP_DONE
    assert profile["bestTrial"]["value"] == 0.1 and profile["trialCounts"] == {st.SUCCEEDED: 3}
    assert profile["params"]["tuner"]["classArgs"]["api_key"] == "***"
    assert main(["experiment", "status", "prof0001"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == st.EXP_DONE

    target = tmp_path / "trials.csv"
    assert main(["experiment", "export", "prof0001", "--filename", str(target), "--type", "csv", "-i"]) == 0
    lines = target.read_text().splitlines()
    assert lines[0].startswith("trialJobId,sequenceId,status,x,value") and len(lines) == 4
    assert main(["experiment", "export", "prof0001", "-f", str(tmp_path), "--type", "json"]) == 2
    assert "is a folder" in _err_line(capsys)
    assert main(["experiment", "status"]) == 2  # no id and nothing running
    assert "needs an experiment id" in _err_line(capsys)


def test_trial_ls_head_and_tail_list_complete_trials_by_default_metric(capsys):
    trials = [{"final": v, "trial_id": f"tr{int(v * 10)}"} for v in (0.3, 0.1, 0.5, 0.2)]
    trials.append({"final": 0.9, "trial_id": "bad09", "status": st.FAILED})  # not complete
    make_experiment("head0001", trials)
    assert main(["trial", "ls", "head0001", "--head", "2"]) == 0
    out = capsys.readouterr().out
    assert "tr5" in out and "tr3" in out and "tr1" not in out and "bad09" not in out
    assert main(["trial", "ls", "head0001", "--tail", "1"]) == 0
    out = capsys.readouterr().out
    assert "tr1" in out and "tr2" not in out
    assert main(["trial", "ls", "head0001", "--head", "1", "--tail", "1"]) == 2
    assert "not both" in _err_line(capsys)


def test_log_stdout_stderr_and_trial_paths(capsys):
    make_experiment("logn0001", [{"final": 1.0, "trial_id": "abcde"}])
    folder = find("logn0001").directory
    (folder / "log" / "manager.log").write_text("one\ntwo\nthree\n")
    assert main(["log", "stdout", "logn0001", "--tail", "2"]) == 0
    assert capsys.readouterr().out == "two\nthree\n"
    assert main(["log", "stdout", "logn0001", "-h", "1"]) == 0
    assert capsys.readouterr().out == "one\n"
    assert main(["log", "stderr", "logn0001", "--path"]) == 0
    assert capsys.readouterr().out == f"{folder / 'log' / 'manager.out'}\n"
    assert main(["log", "trial", "logn0001", "--trial_id", "abcde"]) == 0
    assert capsys.readouterr().out == f"abcde: {folder / 'trials' / 'abcde'}\n"


def test_top_refreshes_until_ctrl_c(monkeypatch, capsys):
    make_experiment("topp0001", [{"status": st.RUNNING}], status=st.EXP_RUNNING, manager_alive=True)
    sleeps = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(nnictl.time, "sleep", sleep)
    assert main(["top", "--time", "0.5"]) == 0
    assert sleeps == [0.5, 0.5] and capsys.readouterr().out.count("topp0001") == 2
    assert main(["top", "topp0001", "--once"]) == 0
    assert "topp0001" in capsys.readouterr().out
    assert main(["top", "-t", "0"]) == 2
    assert "--time must be a positive" in _err_line(capsys)


# --- stop, update -------------------------------------------------------------------------------------------------------


def test_stop_with_a_wildcard_stops_every_match(capsys):
    for exp_id in ("wild0001", "wild0002", "tame0001"):
        make_experiment(exp_id, status=st.EXP_RUNNING)  # recorded running, manager gone
    assert main(["stop", "wild*"]) == 0
    assert capsys.readouterr().out.count("marked stopped") == 2
    statuses = {loc.experiment.id: loc.experiment.status for loc in locate.iter_experiments()}
    assert statuses == {"wild0001": "STOPPED", "wild0002": "STOPPED", "tame0001": "RUNNING"}
    assert main(["stop", "nomatch*"]) == 2
    assert "no running experiment matches 'nomatch*'" in _err_line(capsys)
    assert main(["stop", "--port", "1"]) == 2
    assert "no running experiment serves a dashboard on port 1" in _err_line(capsys)


def test_update_forms_say_what_is_missing(capsys):
    make_experiment("upd00009")
    assert main(["update", "trialnum", "upd00009"]) == 2
    assert "--value V" in _err_line(capsys)
    assert main(["update", "upd00009", "--value", "3"]) == 2
    assert "update trialnum|concurrency|duration ID --value V" in _err_line(capsys)
    assert main(["update", "searchspace", "upd00009"]) == 2
    assert "--filename F" in _err_line(capsys)
    assert main(["update", "duration", "upd00009", "--value", "soon"]) == 2
    assert "--value" in _err_line(capsys)


def test_update_searchspace_from_a_file(tmp_path, capsys):
    make_experiment("ssup0001")
    new_space = {"lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]}}
    path = tmp_path / "space.json"
    path.write_text(json.dumps(new_space))
    assert main(["update", "searchspace", "ssup0001", "--filename", str(path)]) == 0
    assert "search space updated" in capsys.readouterr().out
    assert find("ssup0001").experiment.config["searchSpace"] == new_space
    path.write_text('{"lr": {"_type": "loguniform", "_value": [1, 0]}}')
    assert main(["update", "searchspace", "ssup0001", "-f", str(path)]) == 2
    assert "'lr'" in _err_line(capsys)
    assert main(["update", "searchspace", "ssup0001", "-f", str(tmp_path / "nope.json")]) == 2
    assert "no such file" in _err_line(capsys)


# --- what nni-pl does not have ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["config", "show"], "no current-experiment context"),
        (["ss_gen", "--trial_command", "python x.py"], "ModelSpace.search_space()"),
        (["package", "list"], "nni-pl algo list"),
        (["experiment", "import", "abc", "--filename", "x.json"], "nni-pl trial add"),
        (["tensorboard", "stop"], "Ctrl-C"),
    ],
)
def test_nnictl_commands_nni_pl_lacks_answer_in_one_line(argv, expected, capsys):
    assert main(argv) == 2
    err = _err_line(capsys)
    assert expected in err and "invalid choice" not in err


def test_algo_show_names_class_and_class_args(capsys):
    assert main(["algo", "show", "TPE"]) == 0
    out = capsys.readouterr().out
    assert "type: tuner" in out and "nni_pl.hpo.tuners.tpe.TPETuner" in out and "optimize_mode" in out
    assert main(["algo", "show", "NoSuchTuner"]) == 2
    assert "nni-pl algo list" in _err_line(capsys)
