"""End to end on a database server: a function-trial experiment whose store is a real PostgreSQL or MariaDB
(the MySQL store) database."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from nni_pl.experiment import locate
from nni_pl.experiment import store as st

N_TRIALS = 12


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def server_store_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_store_url")


def objective(params):  # module level, so spawn workers can import it
    import nni_pl as nni

    nni.report_intermediate_result(params["x"])
    return -((params["x"] - 2) ** 2)


def test_function_experiment_writes_everything_to_the_server(
    server_store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nni_pl.cli.main import main
    from nni_pl.experiment import Experiment

    url = server_store_url
    exp = Experiment(
        trial=objective,
        search_space={"x": {"_type": "uniform", "_value": [-5, 5]}},
        tuner="Random",
        max_trial_number=N_TRIALS,
        trial_concurrency=2,
        experiment_working_directory=tmp_path,
        store_url=url,
    )
    exp.run(display=False)
    exp_id = exp.id
    assert exp_id is not None
    # the experiment directory holds trial files, but no SQLite store: the server is the store
    assert not (tmp_path / exp_id / "store.sqlite").exists()

    with st.Store(url) as store:
        row = store.get_experiment(exp_id)
        assert row.status == st.EXP_DONE
        assert row.directory == str(tmp_path / exp_id)
        assert row.config["storeUrl"] == url
        trials = store.list_trials(exp_id)
        assert len(trials) == N_TRIALS
        assert [t.sequence_id for t in trials] == list(range(N_TRIALS))
        assert store.count_trials(exp_id) == {st.SUCCEEDED: N_TRIALS}
        for t in trials:
            x = t.parameters["x"]
            assert -5 <= x <= 5
            assert t.final_default == pytest.approx(-((x - 2) ** 2))
            assert t.intermediate_count == 1
            assert t.started_at is not None and t.ended_at is not None and t.ended_at >= t.started_at
            ms = store.list_metrics(exp_id, t.trial_id)
            assert [(m.type, m.sequence) for m in ms] == [("PERIODICAL", 0), ("FINAL", 0)]
            assert ms[0].value == pytest.approx(x) and ms[1].default == pytest.approx(t.final_default)
        best = store.best_trials(exp_id, limit=1)[0]
        assert best.final_default == max(t.final_default for t in trials)
        assert math.isfinite(best.final_default)

    located = locate.find(exp_id, store_url=url)
    try:
        assert located.experiment.id == exp_id
        assert located.directory == tmp_path / exp_id
    finally:
        located.store.close()
    by_prefix = locate.find(exp_id[:5], store_url=url)  # a unique prefix will do
    by_prefix.store.close()
    assert by_prefix.experiment.id == exp_id

    capsys.readouterr()
    assert main(["list", "--store", url]) == 0
    out = capsys.readouterr().out
    assert exp_id in out and "DONE" in out and f"{N_TRIALS}/{N_TRIALS}" in out

    assert main(["show", exp_id, "--store", url, "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert exp_id in out and f"succeeded {N_TRIALS}" in out
    assert best.trial_id in out

    assert main(["show", "nosuchid", "--store", url]) == 2
    assert "no unique experiment 'nosuchid'" in capsys.readouterr().err

    exp.close()
