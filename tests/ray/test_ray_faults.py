"""Ray experiments as users run them, on the real three-node local cluster of ``conftest.py``: placement by custom
resource, bad input refused before anything is submitted, a worker node killed mid-trial (FAILED naming the node,
or run again), ``kill -9`` of the manager and ``resume`` (nothing lost, nothing twice), ``stop`` (the trial's
process ends and the experiment's actors go), warm actors for function trials, and a cluster nni-pl starts and
stops itself."""

from __future__ import annotations

import json
import os
import re
import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from nni_pl.cli.main import main
from nni_pl.errors import ConfigError
from nni_pl.experiment import store as st
from nni_pl.experiment.locate import find
from nni_pl.training.process import alive
from nni_pl.training.ray_config import RayConfig
from nni_pl.training.service import TrialJob
from nni_pl.trial import protocol
from tests._wait import wait_for

from .conftest import RayCluster, ray_query

ray_service = pytest.importorskip("nni_pl.training.ray_service", reason="the ray extra is not installed")

# `make test-extended` (and CI) runs these; the default `make test` leaves them out to stay within its time budget
pytestmark = [pytest.mark.timeout(600), pytest.mark.extended]

TRIAL = textwrap.dedent(
    """
    import json, os, socket, time
    import nni_pl as nni
    import ray

    p = nni.get_next_parameter()
    for i, v in enumerate(p.get("intermediates", [])):
        gate = dict((str(k), g) for k, g in p.get("gates", [])).get(str(i))
        while gate and not os.path.exists(gate):
            time.sleep(0.05)
        nni.report_intermediate_result(v)
    with open(os.path.join(nni.get_output_dir(), "where.json"), "w") as f:
        json.dump({"pid": os.getpid(), "node": os.environ.get("RAY_NODE_ID"), "cwd": os.getcwd(),
                   "platform": os.environ.get("NNI_PLATFORM")}, f)
    time.sleep(p.get("sleep", 0))
    started = time.time()
    while p.get("hold") and not os.path.exists(p["hold"]) and time.time() - started < 120:
        time.sleep(0.05)  # until the test opens the gate
    nni.report_final_result(p.get("final", 1.0))
    """
)


def code_dir(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "trial.py").write_text(TRIAL)
    return code


def config(tmp_path: Path, cluster: RayCluster, space: dict[str, Any], **extra: Any) -> Path:
    service = {
        "platform": "ray",
        "address": cluster.address,
        "trialCpuNumber": 0.5,
        **extra.pop("service", {}),
    }
    cfg = {
        # x tells the trials apart (a finite space runs each point once); the trial ignores it
        "searchSpace": {"x": {"_type": "choice", "_value": [1, 2, 3, 4]}}
        | {k: {"_type": "choice", "_value": [v]} for k, v in space.items()},
        "trialCommand": "python trial.py",
        "trialCodeDirectory": str(code_dir(tmp_path)),
        "trialConcurrency": 1,
        "maxTrialNumber": 1,
        "tuner": {"name": "Random", "classArgs": {"seed": 1}},
        "experimentWorkingDirectory": str(tmp_path / "exps"),
        "trainingService": service,
        **extra,
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def launched_id(out: str) -> str:
    return re.search(r"experiment (\w{8})", out).group(1)


def worker_dir(t: st.TrialRow) -> Path:
    """The trial's folder on its node (the test nodes share this file system); a missing path until it started."""
    try:
        record = json.loads((Path(t.trial_dir) / protocol.CONTROL_DIR / ray_service.ACTOR_FILE).read_text())
        return Path(record["node"]["trial_dir"])
    except (OSError, ValueError, KeyError):
        return Path(t.trial_dir) / "not-started-yet"


def actor_record(t: st.TrialRow) -> dict[str, Any]:
    return json.loads((Path(t.trial_dir) / protocol.CONTROL_DIR / ray_service.ACTOR_FILE).read_text())


def node_with(cluster: RayCluster, resource: str) -> dict[str, Any]:
    return next(n for n in cluster.live_nodes() if resource in n["Resources"])


def _service(tmp_path: Path, cluster: RayCluster, **section: Any):
    code = code_dir(tmp_path)
    return ray_service.RayTrainingService(
        RayConfig(address=cluster.address, trial_cpu_number=0.5, **section),
        experiment_id="svc" + tmp_path.name[-6:],
        experiment_directory=tmp_path / "exp",
        command="python trial.py",
        code_directory=code,
        concurrency=2,
        trial_root=str(tmp_path / "workers"),
    )


def _job(tmp_path: Path, trial_id: str, params: dict[str, Any]) -> TrialJob:
    job = TrialJob(
        "svc" + tmp_path.name[-6:], trial_id, 0, 0, "algorithm", params, tmp_path / "exp" / trial_id
    )
    protocol.write_parameter_file(job.trial_dir, job.parameter_record())
    return job


def _until_end(service, timeout: float = 120.0) -> list:
    ended: list = []
    deadline = time.time() + timeout
    while not ended and time.time() < deadline:
        ended = service.poll(0.5)
    assert ended, "no trial ended in time"
    return ended


def test_a_trial_asking_for_a_resource_only_one_node_has_runs_there(
    tmp_path: Path, ray_cluster: RayCluster
) -> None:
    service = _service(tmp_path, ray_cluster, trial_resources={"node_b": 1})
    try:
        job = _job(tmp_path, "Place1", {"final": 0.5})
        service.submit(job)
        (end,) = _until_end(service)
        assert end.exit_code == 0, end.error
        assert [r["value"] for r in service.read_metrics(job)] == [0.5]
        ran_on = json.loads((job.control_dir / ray_service.ACTOR_FILE).read_text())["node"]["node_id"]
        assert ran_on == node_with(ray_cluster, "node_b")["NodeID"]
    finally:
        service.shutdown()


def test_a_resource_no_node_offers_is_refused_before_submitting(
    tmp_path: Path, ray_cluster: RayCluster
) -> None:
    with pytest.raises(ConfigError) as e:
        _service(tmp_path, ray_cluster, trial_resources={"tpu_v9": 2})
    text = str(e.value)
    assert "\n" not in text and "trainingService.trialResources" in text and "tpu_v9=2" in text
    assert "node_a=1" in text and "node_b=1" in text and "head_only=1" in text  # what the nodes offer
    with pytest.raises(ConfigError, match=r"trialCpuNumber.*no node of the Ray cluster offers CPU=64"):
        ray_service.RayTrainingService(
            RayConfig(address=ray_cluster.address, trial_cpu_number=64), experiment_id="x",
            experiment_directory=tmp_path / "e2", command="true",
        )  # fmt: skip


def test_an_unreachable_address_is_one_line(tmp_path: Path, capsys) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.time()
    cluster = RayCluster(address=f"127.0.0.1:{port}", folder=tmp_path)
    assert main(["launch", str(config(tmp_path, cluster, {"final": 1})), "--no-display"]) != 0
    err = capsys.readouterr().err.strip()
    assert time.time() - started < 30
    assert f"no Ray cluster answers at '127.0.0.1:{port}'" in err and "trainingService.address" in err
    assert len(err.splitlines()) == 1, err


def test_a_killed_worker_node_fails_its_trial_naming_the_node_and_the_experiment_goes_on(
    tmp_path: Path, ray_cluster: RayCluster, capsys
) -> None:
    victim = ray_cluster.add_node({"victim": 1}, num_cpus=1)
    node = node_with(ray_cluster, "victim")
    node_id, victim_address = node["NodeID"], node["NodeManagerAddress"]
    gate = tmp_path / "gate"
    path = config(tmp_path, ray_cluster, {"hold": str(gate), "final": 1.0}, maxTrialNumber=2,
                  service={"trialResources": {"victim": 1}})  # fmt: skip
    assert main(["launch", str(path), "--detach"]) == 0
    exp_id = launched_id(capsys.readouterr().out)
    store = find(exp_id).store
    first = wait_for(lambda: (r := store.list_trials(exp_id, statuses=[st.RUNNING])) and r[0], 90)
    wait_for(lambda: (worker_dir(first) / "where.json").exists(), 90, "the trial running on the victim node")
    victim.kill()
    ended = wait_for(
        lambda: store.get_trial(exp_id, first.trial_id).finished and store.get_trial(exp_id, first.trial_id),
        90,
    )
    assert ended.status == st.FAILED
    assert f"Ray node {victim_address} (node id {node_id[:12]})" in ended.error, ended.error
    assert len(ended.error.splitlines()) == 1
    # the experiment goes on: a new node with the resource takes the next trial
    ray_cluster.add_node({"victim": 1}, num_cpus=1)
    gate.touch()
    try:
        wait_for(lambda: store.get_experiment(exp_id).status == st.EXP_DONE, 120)
        trials = store.list_trials(exp_id)
        assert [t.status for t in trials] == [st.FAILED, st.SUCCEEDED]
        assert trials[1].retry_of is None  # not a re-run: retryOnHostFailure is off
    finally:
        main(["stop", exp_id])
        ray_cluster.nodes[-1].kill()


def test_retry_on_node_failure_runs_the_trial_again(tmp_path: Path, ray_cluster: RayCluster, capsys) -> None:
    victim = ray_cluster.add_node({"victim2": 1}, num_cpus=1)
    path = config(tmp_path, ray_cluster, {"hold": str(tmp_path / "gate"), "final": 1.0},
                  service={"trialResources": {"victim2": 1}, "retryOnHostFailure": True})  # fmt: skip
    assert main(["launch", str(path), "--detach"]) == 0
    exp_id = launched_id(capsys.readouterr().out)
    store = find(exp_id).store
    first = wait_for(lambda: (r := store.list_trials(exp_id, statuses=[st.RUNNING])) and r[0], 90)
    wait_for(lambda: (worker_dir(first) / "where.json").exists(), 90)
    victim.kill()
    retry = wait_for(lambda: [t for t in store.list_trials(exp_id) if t.retry_of == first.trial_id], 90)[0]
    assert store.get_trial(exp_id, first.trial_id).status == st.FAILED
    assert retry.parameters == first.parameters
    main(["stop", exp_id])


def test_a_killed_manager_loses_nothing_and_resume_reattaches(
    tmp_path: Path, ray_cluster: RayCluster, capsys
) -> None:
    gates = [str(tmp_path / "gate-1"), str(tmp_path / "gate-2")]
    space = {"intermediates": [0.1, 0.2, 0.3, 0.4], "gates": [[2, gates[0]], [3, gates[1]]], "final": 0.9}
    assert main(["launch", str(config(tmp_path, ray_cluster, space)), "--detach"]) == 0
    exp_id = launched_id(capsys.readouterr().out)
    store = find(exp_id).store
    first = wait_for(
        lambda: (
            (r := store.list_trials(exp_id, statuses=[st.RUNNING])) and r[0].intermediate_count >= 2 and r[0]
        ),
        90,
    )
    manager = store.get_experiment(exp_id).manager_pid
    os.kill(manager, signal.SIGKILL)
    wait_for(lambda: not alive(manager, None), 10)
    # the trial goes on while no manager runs
    Path(gates[0]).touch()
    wait_for(lambda: len((worker_dir(first) / "metrics.jsonl").read_text().splitlines()) >= 3, 30)
    assert main(["resume", exp_id, "--detach"]) == 0
    wait_for(lambda: store.get_trial(exp_id, first.trial_id).intermediate_count >= 3, 60)
    Path(gates[1]).touch()
    wait_for(lambda: store.get_experiment(exp_id).status == st.EXP_DONE, 90)
    (t,) = store.list_trials(exp_id)  # reattached, not run again
    assert t.trial_id == first.trial_id and t.status == st.SUCCEEDED, (t.status, t.error)
    assert [(m.type, m.value) for m in store.list_metrics(exp_id)] == [
        ("PERIODICAL", 0.1), ("PERIODICAL", 0.2), ("PERIODICAL", 0.3), ("PERIODICAL", 0.4), ("FINAL", 0.9),
    ]  # fmt: skip


def test_stop_ends_the_trial_and_removes_the_experiments_actors(
    tmp_path: Path, ray_cluster: RayCluster, capsys
) -> None:
    path = config(tmp_path, ray_cluster, {"sleep": 120}, trialConcurrency=2, maxTrialNumber=2)
    assert main(["launch", str(path), "--detach"]) == 0
    exp_id = launched_id(capsys.readouterr().out)
    store = find(exp_id).store
    running = wait_for(lambda: len(r := store.list_trials(exp_id, statuses=[st.RUNNING])) == 2 and r, 90)
    pids = [wait_for(lambda t=t: (worker_dir(t) / "where.json").exists() and
                     json.loads((worker_dir(t) / "where.json").read_text())["pid"], 60) for t in running]  # fmt: skip
    actors = {actor_record(t)["actor"] for t in running}
    assert main(["stop", exp_id]) == 0
    wait_for(lambda: not any(alive(p, None) for p in pids), 30, "the trials' processes ending")
    assert {t.status for t in store.list_trials(exp_id)} == {st.USER_CANCELED}
    assert not actors & _named_actors(ray_cluster)


def _named_actors(cluster: RayCluster) -> set[str]:
    return set(
        ray_query(cluster.address, "[a['name'] for a in ray.util.list_named_actors(all_namespaces=True)]")
    )


def test_function_trials_reuse_warm_actors(tmp_path: Path, ray_cluster: RayCluster) -> None:
    from nni_pl.experiment import Experiment

    exp = Experiment("ray", trial="nni_pl.testing._service_trial:run")
    exp.config.search_space = {"final": {"_type": "choice", "_value": [0.1, 0.2, 0.3, 0.4]}}
    exp.config.tuner.name = "GridSearch"
    exp.config.max_trial_number = 4
    exp.config.trial_concurrency = 1
    exp.config.experiment_working_directory = str(tmp_path / "exps")
    exp.config.training_service.address = ray_cluster.address
    exp.config.training_service.trial_cpu_number = 0.5
    exp.config.training_service.runtime_env = {"working_dir": str(code_dir(tmp_path))}
    exp.run(display=False)
    trials = exp.store.list_trials(exp.id)
    assert sorted(t.final_default for t in trials) == [0.1, 0.2, 0.3, 0.4]
    pids = {json.loads((worker_dir(t) / "service_trial.json").read_text())["pid"] for t in trials}
    assert len(pids) == 1  # one warm actor ran them all: its module imported once
    assert {actor_record(t)["actor"] for t in trials} == {f"{exp.id}-1"}


def test_without_an_address_nni_pl_starts_and_stops_a_local_cluster(tmp_path: Path, capsys) -> None:
    path = config(tmp_path, RayCluster(address="unused:1", folder=tmp_path), {"final": 0.7}, maxTrialNumber=2,
                  service={"address": None, "localCluster": {"numCpus": 1}})  # fmt: skip
    cfg = yaml.safe_load(path.read_text())
    del cfg["trainingService"]["address"]
    path.write_text(yaml.safe_dump(cfg))
    assert main(["launch", str(path), "--no-display"]) == 0
    exp_id = launched_id(capsys.readouterr().out)
    found = find(exp_id)
    trials = found.store.list_trials(exp_id)
    assert [t.final_default for t in trials] == [0.7, 0.7] and {t.platform for t in trials} == {"ray"}
    folder = ray_service.cluster_directory(exp_id)
    assert (folder / "ray-cluster.log").exists()
    assert not (folder / ray_service.CLUSTER_FILE).exists()  # stopped, and so forgotten
