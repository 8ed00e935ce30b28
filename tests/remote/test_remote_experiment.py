"""Remote experiments end to end, as users run them: NNI's v2 and v1 configs through ``nni-pl launch``, the Python
API, ``kill -9`` of the manager and ``resume``, ``stop``, ``export``, on two real OpenSSH hosts."""

from __future__ import annotations

import json
import os
import re
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from nni_pl.cli.main import main
from nni_pl.experiment import Experiment
from nni_pl.experiment import store as st
from nni_pl.experiment.locate import find
from nni_pl.testing.sshd import SshHost
from nni_pl.training.process import alive
from tests._wait import wait_for

from .test_remote_conformance import known_hosts, remote_folder

TRIAL = textwrap.dedent(
    """
    import json, os, socket, time
    import nni_pl as nni
    import helper  # from the uploaded code directory

    p = nni.get_next_parameter()
    nni.report_intermediate_result(helper.double(p["x"]))
    with open(os.path.join(nni.get_output_dir(), "where.json"), "w") as f:
        json.dump({"pid": os.getpid(), "cwd": os.getcwd(), "user": os.environ.get("USER"),
                   "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "platform": os.environ.get("NNI_PLATFORM"),
                   "big_file_here": os.path.exists("big.bin")}, f)
    time.sleep(p.get("sleep", 0))
    nni.report_final_result(p["x"])
    """
)


def code_dir(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "trial.py").write_text(TRIAL)
    (code / "helper.py").write_text("def double(x):\n    return 2 * x\n")
    (code / "big.bin").write_bytes(b"\0" * 1024)
    (code / ".nniignore").write_text("# not needed by the trial\nbig.bin\n")
    return code


def v2_config(tmp_path: Path, hosts: list[SshHost], **extra: Any) -> Path:
    cfg = {
        "searchSpace": {
            "x": {"_type": "uniform", "_value": [0, 1]},
            "sleep": {"_type": "choice", "_value": [extra.pop("sleep", 0)]},
        },
        "trialCommand": "python trial.py",
        "trialCodeDirectory": str(code_dir(tmp_path)),
        "trialConcurrency": 2,
        "maxTrialNumber": 4,
        "trialGpuNumber": 1,
        "tuner": {"name": "Random", "classArgs": {"seed": 1}},
        "experimentWorkingDirectory": str(tmp_path / "exps"),
        "trainingService": {
            "platform": "remote",
            "knownHostsFile": str(known_hosts(hosts, tmp_path)),
            "machineList": [
                {
                    "host": h.address,
                    "port": h.port,
                    "user": h.user,
                    "sshKeyFile": str(h.key_file),
                    "pythonPath": h.python_path,
                    "gpuIndices": [0, 1] if i == 0 else "2",
                }
                for i, h in enumerate(hosts)
            ],
        },
        **extra,
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def where(t: st.TrialRow) -> dict[str, Any]:
    return json.loads((remote_folder(Path(t.trial_dir)) / "where.json").read_text())


def launched_id(out: str) -> str:
    return re.search(r"experiment (\w{8})", out).group(1)


def test_launch_a_v2_remote_config_spreads_trials_over_the_hosts(ssh_hosts, tmp_path, capsys) -> None:
    assert main(["launch", str(v2_config(tmp_path, ssh_hosts)), "--no-display"]) == 0
    exp_id = launched_id(capsys.readouterr().out)
    store = find(exp_id).store
    trials = store.list_trials(exp_id)
    assert [t.status for t in trials] == [st.SUCCEEDED] * 4, [(t.status, t.error) for t in trials]
    assert {t.host for t in trials} == {h.address for h in ssh_hosts}
    users = {h.address: h.user for h in ssh_hosts}
    for t in trials:
        w = where(t)
        assert w["platform"] == "remote" and w["user"] == users[t.host]
        assert w["cwd"].startswith(next(h.home for h in ssh_hosts if h.address == t.host).as_posix())
        assert not w["big_file_here"]  # .nniignore honoured
        assert w["cuda"] in ("0", "1", "2")  # declared gpuIndices, one GPU per trial
        assert (w["cuda"] == "2") == (t.host == ssh_hosts[1].address)
        metrics = [m for m in store.list_metrics(exp_id) if m.trial_id == t.trial_id]
        assert [(m.type, m.value) for m in metrics] == [
            ("PERIODICAL", 2 * t.parameters["x"]),
            ("FINAL", t.parameters["x"]),
        ]
        assert t.platform == "remote"
    # export, as with local trials
    out_file = tmp_path / "export.json"
    assert main(["experiment", "export", exp_id, "--type", "json", "--filename", str(out_file)]) == 0
    exported = json.loads(out_file.read_text())
    assert len(exported) == 4


def test_a_v1_machine_list_config_runs_unchanged(ssh_hosts, tmp_path, capsys, monkeypatch) -> None:
    h = ssh_hosts[1]
    cfg = {
        "authorName": "nni-user",
        "experimentName": "v1 remote",
        "trialConcurrency": 1,
        "maxTrialNum": 2,
        "trainingServicePlatform": "remote",
        "searchSpacePath": "space.json",
        "tuner": {"builtinTunerName": "Random"},
        "trial": {"command": "python trial.py", "codeDir": "code", "gpuNum": 0},
        "logDir": str(tmp_path / "exps"),
        "machineList": [
            {
                "ip": h.address,
                "port": h.port,
                "username": h.user,
                "sshKeyPath": str(h.key_file),
                "pythonPath": h.python_path,
            }
        ],
    }
    code_dir(tmp_path)
    (tmp_path / "space.json").write_text(json.dumps({"x": {"_type": "uniform", "_value": [0, 1]}}))
    (tmp_path / "config.yml").write_text(yaml.safe_dump(cfg))
    # v1 has no knownHostsFile: the host key must be in ~/.ssh/known_hosts, as for NNI's own ssh
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    (tmp_path / "home" / ".ssh" / "known_hosts").write_text(h.known_hosts_line + "\n")
    assert main(["launch", str(tmp_path / "config.yml"), "--no-display"]) == 0
    exp_id = launched_id(capsys.readouterr().out)
    trials = find(exp_id).store.list_trials(exp_id)
    assert [t.status for t in trials] == [st.SUCCEEDED] * 2
    assert {t.host for t in trials} == {h.address}
    assert (
        find(exp_id).store.get_experiment(exp_id).config["trainingService"]["reuseMode"] is False
    )  # v1 default


def test_kill_9_of_the_manager_then_resume_reattaches_and_stop_ends_remote_trees(
    ssh_hosts, tmp_path, capsys
) -> None:
    assert main(["launch", str(v2_config(tmp_path, ssh_hosts, sleep=4, maxTrialNumber=2)), "--detach"]) == 0
    exp_id = launched_id(capsys.readouterr().out)
    store = find(exp_id).store
    running = wait_for(
        lambda: len(store.list_trials(exp_id, statuses=[st.RUNNING])) == 2 and store.list_trials(exp_id), 60
    )
    records = [
        wait_for(lambda t=t: (remote_folder(Path(t.trial_dir)) / "where.json").exists() and where(t), 60)
        for t in running
    ]
    manager = store.get_experiment(exp_id).manager_pid
    os.kill(manager, signal.SIGKILL)
    wait_for(lambda: not alive(manager, None), 10)
    assert all(alive(r["pid"], None) for r in records)  # the remote trials outlive the manager
    assert main(["resume", exp_id, "--detach"]) == 0
    wait_for(lambda: store.get_experiment(exp_id).status == st.EXP_DONE, 90)
    trials = store.list_trials(exp_id)
    assert sorted(t.trial_id for t in trials) == sorted(t.trial_id for t in running)  # reattached, not re-run
    assert all(t.status == st.SUCCEEDED for t in trials), [(t.status, t.error) for t in trials]
    for t in trials:
        assert [m.type for m in store.list_metrics(exp_id) if m.trial_id == t.trial_id] == [
            "PERIODICAL",
            "FINAL",
        ]

    # stop ends the remote process trees
    (tmp_path / "again").mkdir()
    capsys.readouterr()
    assert (
        main(
            ["launch", str(v2_config(tmp_path / "again", ssh_hosts, sleep=120, maxTrialNumber=2)), "--detach"]
        )
        == 0
    )
    exp2 = launched_id(capsys.readouterr().out)
    found2 = find(exp2)
    store2 = found2.store

    def two_running() -> Any:
        e = store2.get_experiment(exp2)
        if e.status not in (st.EXP_RUNNING, "CREATED", "INITIALIZED"):
            raise AssertionError(
                f"{e.status} {e.message}: " + (found2.directory / "log" / "manager.out").read_text()[-3000:]
            )
        return len(store2.list_trials(exp2, statuses=[st.RUNNING])) == 2 and store2.list_trials(exp2)

    running = wait_for(two_running, 60)
    pids = [
        wait_for(
            lambda t=t: (remote_folder(Path(t.trial_dir)) / "where.json").exists() and where(t)["pid"], 60
        )
        for t in running
    ]
    assert main(["stop", exp2]) == 0
    wait_for(lambda: not any(alive(p, None) for p in pids), 20, "the remote trials ending")
    assert {t.status for t in store2.list_trials(exp2)} == {st.USER_CANCELED}


def test_python_api_runs_a_remote_function_trial(ssh_hosts, tmp_path) -> None:
    from nni_pl.experiment import RemoteMachineConfig

    exp = Experiment("remote", trial="nni_pl.testing._service_trial:run")
    exp.config.search_space = {"final": {"_type": "choice", "_value": [1.5, 2.5]}}
    exp.config.trial_concurrency = 2
    exp.config.max_trial_number = 2
    exp.config.tuner.name = "GridSearch"
    exp.config.trial_code_directory = str(code_dir(tmp_path))
    exp.config.experiment_working_directory = str(tmp_path / "exps")
    ts = exp.config.training_service
    ts.known_hosts_file = str(known_hosts(ssh_hosts, tmp_path))
    for h in ssh_hosts:
        ts.machine_list.append(
            RemoteMachineConfig(
                host=h.address,
                port=h.port,
                user=h.user,
                ssh_key_file=str(h.key_file),
                python_path=h.python_path,
            )
        )
    exp.run(display=False)
    trials = exp.store.list_trials(exp.id)
    assert sorted(t.final for t in trials) == [1.5, 2.5] and {t.status for t in trials} == {st.SUCCEEDED}


def test_a_function_from_main_is_refused_on_remote_hosts(ssh_hosts, tmp_path) -> None:
    def objective(params):  # defined in a test function: not importable on a host
        return 1.0

    exp = Experiment("remote", trial=objective)
    exp.config.search_space = {"x": {"_type": "choice", "_value": [1]}}
    h = ssh_hosts[0]
    exp.config.training_service.known_hosts_file = str(known_hosts(ssh_hosts, tmp_path))
    exp.config.training_service.machine_list.append(RemoteMachineConfig_(h))
    with pytest.raises(Exception, match=r"'trial'.*importable there.*trial='package.module:function'"):
        exp.prepare()


def RemoteMachineConfig_(h: SshHost) -> Any:
    from nni_pl.experiment import RemoteMachineConfig

    return RemoteMachineConfig(
        host=h.address, port=h.port, user=h.user, ssh_key_file=str(h.key_file), python_path=h.python_path
    )


def test_platform_clean_removes_what_experiments_left_on_the_hosts(ssh_hosts, tmp_path, capsys) -> None:
    config = v2_config(tmp_path, ssh_hosts, maxTrialNumber=2)
    assert main(["launch", str(config), "--no-display"]) == 0
    exp_id = launched_id(capsys.readouterr().out)
    left = [h.home / "nni-pl-experiments" / exp_id for h in ssh_hosts]
    assert any(p.is_dir() for p in left)
    assert main(["platform", "clean", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert all(h.user in out for h in ssh_hosts) and "removed" in out, out
    assert not any(p.exists() for p in left)
    local = tmp_path / "local.yml"
    local.write_text(
        yaml.safe_dump({"trialCommand": "python t.py", "trialConcurrency": 1, "searchSpace": {}})
    )
    assert main(["platform", "clean", "--config", str(local)]) == 0
    assert "nothing to clean on platform 'local'" in capsys.readouterr().out


def test_a_password_login_leaves_the_password_nowhere(ssh_hosts, tmp_path, capsys) -> None:
    h = ssh_hosts[0]
    if h.password is None:
        pytest.skip("password logins need netns hosts with accounts of their own")
    config = v2_config(tmp_path, [h], maxTrialNumber=2, trialGpuNumber=0)
    raw = yaml.safe_load(config.read_text())
    machine = raw["trainingService"]["machineList"][0]
    del machine["sshKeyFile"], machine["gpuIndices"]
    machine["password"] = h.password
    config.write_text(yaml.safe_dump(raw))
    assert main(["launch", str(config), "--no-display"]) == 0
    out = capsys.readouterr()
    exp_id = launched_id(out.out)
    assert {t.status for t in find(exp_id).store.list_trials(exp_id)} == {st.SUCCEEDED}
    secret = h.password.encode()
    assert secret not in (out.out + out.err).encode()
    places = [tmp_path / "exps", Path(os.environ["NNI_PL_HOME"]), h.home / "nni-pl-experiments" / exp_id]
    for place in places:
        for path in place.rglob("*"):
            if path.is_file():
                assert secret not in path.read_bytes(), f"the password is in {path}"


def test_hybrid_local_and_remote_trials_show_their_platform(ssh_hosts, tmp_path, capsys) -> None:
    config = v2_config(tmp_path, ssh_hosts[:1], maxTrialNumber=4, trialGpuNumber=0, sleep=1)
    raw = yaml.safe_load(config.read_text())
    remote = raw["trainingService"]
    del remote["machineList"][0]["gpuIndices"]
    raw["trainingService"] = [{"platform": "local"}, remote]
    config.write_text(yaml.safe_dump(raw))
    assert main(["launch", str(config), "--no-display"]) == 0
    exp_id = launched_id(capsys.readouterr().out)
    trials = find(exp_id).store.list_trials(exp_id)
    assert {t.status for t in trials} == {st.SUCCEEDED}, [(t.status, t.error) for t in trials]
    assert {t.platform for t in trials} == {"local", "remote"}
    for t in trials:
        folder = remote_folder(Path(t.trial_dir)) if t.platform == "remote" else Path(t.trial_dir)
        assert json.loads((folder / "where.json").read_text())["platform"] == t.platform
    assert main(["trial", "ls", exp_id]) == 0
    listing = capsys.readouterr().out
    assert "local" in listing and "remote" in listing
