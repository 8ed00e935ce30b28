"""Where each trial ran (its training platform) in `trial ls`, `export` and `experiment export`."""

from __future__ import annotations

import csv
import io
import json

from nni_pl.cli.main import main
from tests.cli._rows import make_experiment

HYBRID = [{"platform": "remote", "machineList": [{"host": "10.0.0.1", "user": "bob"}]}, {"platform": "local"}]


def _header(out: str) -> str:
    return next(line for line in out.splitlines() if "trial" in line and "status" in line)


def test_trial_ls_shows_the_platform_of_each_trial_of_a_hybrid_experiment(capsys):
    trials = [
        {"final": 0.1, "trial_id": "onrem", "platform": "remote"},
        {"final": 0.2, "trial_id": "onloc", "platform": "local"},
        {"trial_id": "never", "status": "WAITING"},
    ]
    make_experiment("hybr0001", trials, trainingService=HYBRID)
    assert main(["trial", "ls", "hybr0001"]) == 0
    out = capsys.readouterr().out
    assert "platform" in _header(out)
    row = {t: next(line for line in out.splitlines() if t in line) for t in ("onrem", "onloc", "never")}
    assert "remote" in row["onrem"] and "local" in row["onloc"] and " - " in row["never"]
    assert main(["trial", "ls", "hybr0001", "--head", "1"]) == 0
    out = capsys.readouterr().out
    assert "platform" in _header(out) and "local" in next(
        line for line in out.splitlines() if "onloc" in line
    )


def test_trial_ls_of_a_single_platform_experiment_has_no_platform_column(capsys):
    make_experiment("sing0001", [{"final": 0.1, "platform": "local"}, {"final": 0.3, "platform": "local"}])
    assert main(["trial", "ls", "sing0001"]) == 0
    assert "platform" not in _header(capsys.readouterr().out)
    # trials that ran on two platforms show it whatever the config says (a config edited since, say)
    make_experiment("twop0001", [{"final": 0.1, "platform": "local"}, {"final": 0.3, "platform": "remote"}])
    assert main(["trial", "ls", "twop0001"]) == 0
    assert "platform" in _header(capsys.readouterr().out)


def test_export_json_and_csv_give_each_trials_platform(tmp_path, capsys):
    trials = [
        {"final": 0.1, "platform": "remote"},
        {"final": 0.2, "platform": "local"},
        {"status": "WAITING"},
    ]
    make_experiment("expo0001", trials, trainingService=HYBRID)
    assert main(["export", "expo0001", "--format", "json"]) == 0
    assert [t["platform"] for t in json.loads(capsys.readouterr().out)] == ["remote", "local", None]
    assert main(["export", "expo0001", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["platform"] for r in rows] == ["remote", "local", ""]
    target = tmp_path / "trials.csv"
    assert main(["experiment", "export", "expo0001", "--filename", str(target), "--type", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [r["platform"] for r in rows] == ["remote", "local", ""]
