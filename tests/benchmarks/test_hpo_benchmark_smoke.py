"""Smoke test of ``benchmarks/hpo/run.py --quick``: three fast tuners (no NNI 3.0), report and plot written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# `make test-extended` (and CI) runs these; the default `make test` leaves them out to stay within its time budget
pytestmark = pytest.mark.extended

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "hpo" / "run.py"

pytest.importorskip("optuna")
pytest.importorskip("matplotlib")


@pytest.mark.slow
def test_hpo_benchmark_quick_run_writes_tables_targets_and_plot(tmp_path: Path) -> None:
    out, plot, runs = tmp_path / "hpo.md", tmp_path / "hpo.png", tmp_path / "runs.jsonl"
    cmd = [
        sys.executable, str(SCRIPT), "--quick", "--workers", "1", "--samples", "2000",
        "--tuners", "nni-pl TPE", "nni-pl Random", "optuna TPE", "--latency", "tpe",
        "--runs", str(runs), "--out", str(out), "--plot", str(plot),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    records = [json.loads(line) for line in runs.read_text().splitlines()]
    # 2 problems x 2 seeds x 2 modes x 3 tuners, 30 trials each
    assert len(records) == 24
    assert all(r["status"] == "ok" and len(r["values"]) == 30 for r in records), [
        (r["tuner"], r.get("error")) for r in records if r["status"] != "ok"
    ]
    report = out.read_text(encoding="utf-8")
    for heading in (
        "## Synthetic functions, sequential",
        "## Scikit-learn surrogates, concurrency 4",
        "## Targets",
    ):
        assert heading in report, report
    for tuner in ("**nni-pl TPE**", "optuna TPE", "**nni-pl Random**"):
        assert f"| {tuner} |" in report, report
    assert "nni-pl TPE's mean rank is no worse than Optuna TPE's" in report
    assert "suggestion latency at 1,000 observations" in report
    assert "| rf-wine |" in report  # the surrogate's quality row
    assert plot.stat().st_size > 10_000

    # resuming finds every run recorded and only rebuilds the report
    again = subprocess.run([*cmd, "--latency", "none"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "24 already in" in again.stderr
    assert len(runs.read_text().splitlines()) == 24
