"""The dashboard shows where each trial ran: the API gives each trial's ``platform``, and the trials table has a
Platform column for an experiment on several platforms (a hybrid ``trainingService`` list)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # starlette's note that it prefers httpx2 to httpx
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

from nni_pl.experiment import store as st
from nni_pl.webui.app import create_app

STATIC = Path(__file__).resolve().parents[2] / "nni_pl" / "webui" / "static" / "app.js"
HYBRID = [{"platform": "remote", "machineList": [{"host": "10.0.0.1", "user": "bob"}]}, {"platform": "local"}]


def make_store(url: str, exp_id: str, platforms: list[str | None], training_service) -> st.Store:
    store = st.Store(url)
    store.create_experiment(
        id=exp_id,
        name="platforms",
        config={"trainingService": training_service, "searchSpace": {}, "trialConcurrency": 2},
        directory="/nowhere",
        status=st.EXP_DONE,
    )
    for i, platform in enumerate(platforms):
        store.add_trial(
            st.TrialRow(
                experiment_id=exp_id,
                trial_id=f"t{i}",
                sequence_id=i,
                parameter_id=i,
                parameters={"x": i},
                trial_dir=f"/nowhere/trials/t{i}",
                status=st.SUCCEEDED if platform else st.WAITING,
                platform=platform,
            )
        )
    return store


def test_the_api_gives_each_trials_platform(tmp_path):
    store = make_store(st.sqlite_url(tmp_path / "s.sqlite"), "plat0001", ["remote", "local", None], HYBRID)
    client = TestClient(create_app(store.url, experiment_id="plat0001"))
    trials = client.get("/api/v1/experiments/plat0001/trials").json()
    assert [t["platform"] for t in trials] == ["remote", "local", None]
    assert client.get("/api/v1/experiments/plat0001/trials/t0").json()["platform"] == "remote"
    # the page decides on the column from the config's list, which the API gives (secrets masked)
    config = client.get("/api/v1/experiments/plat0001").json()["config"]
    assert [s["platform"] for s in config["trainingService"]] == ["remote", "local"]


def test_the_page_has_a_platform_column_shown_for_several_platforms():
    js = STATIC.read_text(encoding="utf-8")
    assert '{ key: "platform", label: "Platform"' in js  # a trials-table column
    assert "function showsPlatform(exp, trials)" in js and "platformShown = showsPlatform(exp, trials)" in js
    assert 'id: "trial-platform"' in js  # and the trial's own page says it
