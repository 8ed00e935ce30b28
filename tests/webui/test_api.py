"""The dashboard's JSON API, in-process (FastAPI TestClient) over a store filled by a real experiment."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # starlette's note that it prefers httpx2 to httpx
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

from nni_pl.experiment import Experiment, control
from nni_pl.experiment import store as st
from nni_pl.webui.app import TOKEN_COOKIE, create_app

SPACE = {
    "x": {"_type": "uniform", "_value": [0, 1]},
    "opt": {"_type": "choice", "_value": ["adam", "sgd"]},
}


def objective(params):
    import nni_pl as nni

    # the trial's fds 1 and 2 are its log files (print would go to pytest's capture in a fork worker)
    os.write(1, f"hello x={params['x']:.3f}\nline two\n".encode())
    os.write(2, b"a warning\n")
    for i in range(3):
        nni.report_intermediate_result(params["x"] * (i + 1))
    return params["x"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory):
    """A finished 4-trial experiment (function trials), its store, and a tampered copy of its config."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NNI_PL_HOME", str(home / "experiments"))
        exp = Experiment(
            trial=objective,
            search_space=SPACE,
            tuner={"name": "Random", "classArgs": {"seed": 7}},
            max_trial_number=4,
            trial_concurrency=2,
            experiment_working_directory=home / "exps",
            id="api00001",
            start_method="fork",
        )
        exp.run(display=False)
        store = exp.store
        cfg = dict(store.get_experiment("api00001").config)
        # secrets a config may carry: a store URL with a password, an algorithm argument named like a key
        cfg["storeUrl"] = "postgresql://nni:s3cret-pw@db.example:5432/nni"
        cfg["tuner"] = {"name": "Random", "classArgs": {"seed": 7, "api_key": "sk-very-secret"}}
        store.update_experiment("api00001", config=cfg)
        yield exp


@pytest.fixture
def client(experiment) -> TestClient:
    return TestClient(create_app(experiment.store.url, experiment_id="api00001"))


def test_experiment_list_and_detail(client, experiment):
    listed = client.get("/api/v1/experiments").json()
    assert [e["id"] for e in listed] == ["api00001"]
    e = listed[0]
    assert e["status"] == "DONE" and e["optimize_mode"] == "maximize"
    assert e["counts"] == {"SUCCEEDED": 4, "total": 4}
    assert e["max_trial_number"] == 4 and e["manager_alive"] is False
    best = max(t.final for t in experiment.trials())
    assert e["best"] == pytest.approx(best)
    assert e["duration"] > 0 and e["started_at"] > 0 and e["ended_at"] >= e["started_at"]
    assert e["directory"] == str(experiment.directory)

    d = client.get("/api/v1/experiments/api00001").json()
    assert set(e) <= set(d)
    assert d["read_only"] is True  # not running
    assert d["trial_concurrency"] == 2 and d["max_experiment_duration"] is None
    assert d["search_space"] == SPACE
    assert d["best_trial"]["final"] == pytest.approx(best)
    assert set(d["best_trial"]["parameters"]) == {"x", "opt"}
    assert d["message"] == "maxTrialNumber reached"
    version = client.get("/api/v1/version").json()
    assert version == {"version": version["version"], "read_only": False, "experiment_id": "api00001"}


def test_secrets_never_leave_the_server(client):
    response = client.get("/api/v1/experiments/api00001")
    text = response.text
    assert "s3cret-pw" not in text and "sk-very-secret" not in text
    cfg = response.json()["config"]
    assert cfg["storeUrl"] == "postgresql://nni:***@db.example:5432/nni"
    assert cfg["tuner"]["classArgs"] == {"seed": 7, "api_key": "***"}
    assert control.redact({"a": ["mysql://u:p@h/db", {"clientSecret": "x"}], "token": None}) == {
        "a": ["mysql://u:***@h/db", {"clientSecret": "***"}],
        "token": None,
    }


def test_trials_trial_detail_and_metrics(client, experiment):
    trials = client.get("/api/v1/experiments/api00001/trials").json()
    assert len(trials) == 4
    keys = {
        "trial_id",
        "sequence_id",
        "status",
        "parameters",
        "final",
        "duration",
        "started_at",
        "ended_at",
        "intermediate_count",
        "parameter_source",
        "platform",
    }
    assert all(set(t) == keys for t in trials)
    assert all(t["platform"] == "local" for t in trials)  # function trials run on this machine
    assert [t["sequence_id"] for t in trials] == [0, 1, 2, 3]
    t = trials[0]
    assert (
        t["status"] == "SUCCEEDED" and t["intermediate_count"] == 3 and t["parameter_source"] == "algorithm"
    )
    assert t["final"] == pytest.approx(t["parameters"]["x"]) and t["duration"] > 0

    d = client.get(f"/api/v1/experiments/api00001/trials/{t['trial_id']}").json()
    assert d["platform"] == "local"
    assert d["error"] is None and d["exit_code"] == 0 and d["final_raw"] == pytest.approx(t["final"])
    x = t["parameters"]["x"]
    assert [i["sequence"] for i in d["intermediate"]] == [0, 1, 2]
    assert [i["value"] for i in d["intermediate"]] == pytest.approx([x, 2 * x, 3 * x])
    assert all(i["time"] > 0 for i in d["intermediate"])

    curves = client.get("/api/v1/experiments/api00001/metrics").json()
    assert set(curves) == {t["trial_id"] for t in trials}
    assert [s for s, _ in curves[t["trial_id"]]] == [0, 1, 2]
    assert [v for _, v in curves[t["trial_id"]]] == pytest.approx([x, 2 * x, 3 * x])


def test_log_tail_and_streams(client, experiment):
    tid = experiment.trials()[0].trial_id
    base = f"/api/v1/experiments/api00001/trials/{tid}/log"
    out = client.get(base).json()["text"]
    assert out.startswith("hello x=") and out.endswith("line two\n")
    assert client.get(base, params={"tail": 1}).json() == {"text": "line two\n"}
    assert "a warning" in client.get(base, params={"stream": "stderr"}).json()["text"]
    bad = client.get(base, params={"stream": "../../store.sqlite"})
    assert bad.status_code == 400 and "stdout or stderr" in bad.json()["error"]
    assert client.get(base, params={"tail": 0}).status_code == 400
    assert client.get(base, params={"tail": "many"}).status_code == 400


def test_log_endpoint_refuses_paths_outside_the_experiment(client, experiment, tmp_path):
    store = experiment.store
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    (secret / "stdout").write_text("private\n")
    t1, t2 = experiment.trials()[1:3]
    try:
        store.update_trial("api00001", t1.trial_id, trial_dir=str(secret))
        store.update_trial(
            "api00001", t2.trial_id, trial_dir=f"{experiment.directory}/trials/../../elsewhere"
        )
        (experiment.directory.parent / "elsewhere").mkdir(exist_ok=True)
        (experiment.directory.parent / "elsewhere" / "stdout").write_text("private\n")
        for t in (t1, t2):
            r = client.get(f"/api/v1/experiments/api00001/trials/{t.trial_id}/log")
            assert r.status_code == 403, r.text
            assert "outside the experiment directory" in r.json()["error"] and "private" not in r.text
        # a trial id that tries to climb out is just an unknown trial
        r = client.get("/api/v1/experiments/api00001/trials/..%2F..%2Fstore.sqlite/log")
        assert r.status_code == 404 and "error" in r.json()
    finally:
        store.update_trial("api00001", t1.trial_id, trial_dir=t1.trial_dir)
        store.update_trial("api00001", t2.trial_id, trial_dir=t2.trial_dir)


def test_log_of_a_trial_without_output_is_404(client, experiment):
    t = experiment.trials()[3]
    stdout = Path(t.trial_dir) / "stdout"
    saved = stdout.read_bytes()
    stdout.unlink()
    try:
        r = client.get(f"/api/v1/experiments/api00001/trials/{t.trial_id}/log")
        assert r.status_code == 404 and "no stdout yet" in r.json()["error"]
    finally:
        stdout.write_bytes(saved)


def test_errors_are_json_with_a_reason(client):
    r = client.get("/api/v1/experiments/nope")
    assert r.status_code == 404 and "no experiment 'nope'" in r.json()["error"]
    r = client.get("/api/v1/experiments/api00001/trials/zzzzz")
    assert r.status_code == 404 and "has no trial 'zzzzz'" in r.json()["error"]
    r = client.get("/api/v1/nothing")
    assert r.status_code == 404 and "no such page or endpoint" in r.json()["error"]
    r = client.delete("/api/v1/experiments/api00001")
    assert r.status_code == 405 and "error" in r.json()
    r = client.patch("/api/v1/experiments/api00001", json={"trialConcurrency": 0})
    assert r.status_code == 400 and "trialConcurrency" in r.json()["error"] and "0" in r.json()["error"]
    r = client.patch("/api/v1/experiments/api00001", json={"maxExperimentDuration": "soon"})
    assert r.status_code == 400 and "'soon'" in r.json()["error"]
    r = client.patch("/api/v1/experiments/api00001", json={"searchSpace": {}})
    assert r.status_code == 400 and "searchSpace" in r.json()["error"] and "changeable" in r.json()["error"]
    r = client.patch(
        "/api/v1/experiments/api00001", content=b"[1, 2]", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "error" in r.json()
    r = client.post("/api/v1/experiments/api00001/trials", json={"params": {}})
    assert r.status_code == 400 and '"parameters"' in r.json()["error"]


def test_patch_updates_the_limits_like_nni_pl_update(client, experiment):
    store = experiment.store
    before = store.get_experiment("api00001")
    r = client.patch(
        "/api/v1/experiments/api00001",
        json={"trialConcurrency": 3, "maxTrialNumber": 6, "maxExperimentDuration": "2h"},
    )
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["trial_concurrency"] == 3 and d["max_trial_number"] == 6 and d["max_experiment_duration"] == 7200
    after = store.get_experiment("api00001")
    assert after.revision == before.revision + 1
    assert after.config["maxExperimentDuration"] == "2h"
    r = client.patch("/api/v1/experiments/api00001", json={"maxExperimentDuration": 90, "maxTrialNumber": 4})
    assert r.json()["max_experiment_duration"] == 90 and r.json()["max_trial_number"] == 4
    store.update_experiment("api00001", config=before.config)


def test_add_a_customised_trial_validated_against_the_space(client, experiment):
    store = experiment.store
    url = "/api/v1/experiments/api00001/trials"
    r = client.post(url, json={"parameters": {"x": 0.5, "opt": "adamw"}})
    assert r.status_code == 400
    err = r.json()["error"]
    assert "opt" in err and "adamw" in err and "sgd" in err  # names it, echoes it, says what is allowed
    r = client.post(url, json={"parameters": {"x": 7, "opt": "sgd"}})
    assert r.status_code == 400 and "x" in r.json()["error"] and "7" in r.json()["error"]
    r = client.post(url, json={"parameters": {"x": 0.5, "opt": "sgd", "lr": 1}})
    assert r.status_code == 400 and "'lr'" in r.json()["error"]
    r = client.post(url, json={"parameters": {"x": 0.5, "opt": "sgd"}})
    assert r.status_code == 400 and "maxTrialNumber (4) is reached" in r.json()["error"]

    control.update_limits(store, "api00001", max_trials=5)
    try:
        r = client.post(url, json={"parameters": {"x": 0.25, "opt": "sgd"}})
        assert r.status_code == 201, r.text
        tid = r.json()["trial_id"]
        t = store.get_trial("api00001", tid)
        assert t.status == st.WAITING and t.parameter_source == "customized" and t.parameters["x"] == 0.25
        shown = client.get(f"{url}/{tid}").json()
        assert shown["status"] == "WAITING" and shown["sequence_id"] is None
        # killing a trial no manager has taken up cancels it at once
        r = client.post(f"{url}/{tid}/kill")
        assert r.json() == {"ok": True, "status": "USER_CANCELED"}
    finally:
        store.db.execute_sql("DELETE FROM nnipl_trial WHERE parameter_source = 'customized'")
        cfg = dict(store.get_experiment("api00001").config)
        cfg["maxTrialNumber"] = 4
        store.update_experiment("api00001", config=cfg)


def test_stop_and_kill_of_a_finished_experiment_report_the_status(client, experiment):
    assert client.post("/api/v1/experiments/api00001/stop").json() == {"ok": True, "status": "DONE"}
    tid = experiment.trials()[0].trial_id
    r = client.post(f"/api/v1/experiments/api00001/trials/{tid}/kill")
    assert r.json() == {"ok": True, "status": "SUCCEEDED"}
    r = client.post("/api/v1/experiments/api00001/resume")
    assert r.status_code == 409 and "Experiment.resume" in r.json()["error"]  # a function trial


def test_read_only_refuses_every_change(experiment):
    client = TestClient(create_app(experiment.store.url, read_only=True))
    tid = experiment.trials()[0].trial_id
    base = "/api/v1/experiments/api00001"
    for method, path, body in [
        ("PATCH", base, {"maxTrialNumber": 9}),
        ("POST", f"{base}/stop", None),
        ("POST", f"{base}/resume", None),
        ("POST", f"{base}/trials/{tid}/kill", None),
        ("POST", f"{base}/trials", {"parameters": {"x": 0.5, "opt": "sgd"}}),
    ]:
        r = client.request(method, path, json=body)
        assert r.status_code == 409, (method, path, r.text)
        assert "read-only" in r.json()["error"]
    assert client.get(base).json()["read_only"] is True
    assert client.get("/api/v1/version").json()["read_only"] is True
    assert experiment.store.get_experiment("api00001").config["maxTrialNumber"] == 4


def test_token_is_required_on_every_request(experiment):
    client = TestClient(create_app(experiment.store.url, token="s3cr3t-token"))
    for path in ("/", "/api/v1/experiments", "/static/plotly.min.js", "/api/v1/nothing"):
        r = client.get(path)
        assert r.status_code == 401, path
        assert "token" in r.json()["error"]
    assert client.get("/api/v1/experiments", params={"token": "wrong"}).status_code == 401
    assert client.get("/api/v1/experiments", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/api/v1/experiments", headers={"Authorization": "Bearer s3cr3t-token"})
    assert ok.status_code == 200 and ok.json()[0]["id"] == "api00001"
    assert client.get("/api/v1/experiments", params={"token": "s3cr3t-token"}).status_code == 200
    # opening the page with ?token= gives the page's own script requests a cookie
    page = client.get("/", params={"token": "s3cr3t-token"})
    assert page.status_code == 200 and TOKEN_COOKIE in page.cookies
    assert client.get("/static/plotly.min.js").status_code == 200


def test_page_static_files_and_the_bundled_plotly(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    js = client.get("/static/plotly.min.js")
    assert (
        js.status_code == 200 and "javascript" in js.headers["content-type"] and len(js.content) > 1_000_000
    )
    for bad in ("/static/..%2Fapp.py", "/static/.hidden", "/static/nothing.js"):
        r = client.get(bad)
        assert r.status_code == 404 and "error" in r.json(), bad


def test_foreign_hosts_and_cross_site_changes_are_refused(experiment):
    app = create_app(experiment.store.url, allowed_hosts=frozenset({"127.0.0.1", "localhost"}))
    local = TestClient(app, base_url="http://127.0.0.1:8080")
    assert local.get("/api/v1/experiments").status_code == 200
    rebound = TestClient(app, base_url="http://attacker.example:8080")
    r = rebound.get("/api/v1/experiments")
    assert r.status_code == 403 and "attacker.example" in r.json()["error"]
    r = local.post("/api/v1/experiments/api00001/stop", headers={"Origin": "http://attacker.example"})
    assert r.status_code == 403 and "cross-site" in r.json()["error"]
    r = local.post("/api/v1/experiments/api00001/stop", headers={"Origin": "http://127.0.0.1:8080"})
    assert r.status_code == 200


def test_the_app_lists_every_experiment_of_a_working_directory(experiment, monkeypatch):
    monkeypatch.setenv("NNI_PL_HOME", str(experiment.directory.parent.parent / "experiments"))
    client = TestClient(create_app(None))
    assert [e["id"] for e in client.get("/api/v1/experiments").json()] == ["api00001"]
    assert client.get("/api/v1/experiments/api00001").json()["counts"]["total"] == 4
