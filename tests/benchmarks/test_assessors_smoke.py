"""Smoke test of ``benchmarks/hpo/assessors.py``: a few stored digits curves and a few synthetic ones, one ordering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# `make test-extended` (and CI) runs these; the default `make test` leaves them out to stay within its time budget
pytestmark = pytest.mark.extended

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "hpo" / "assessors.py"


def test_assessor_benchmark_replays_every_contender_and_writes_the_report(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    out = tmp_path / "assessors.md"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--limit", "8", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = out.read_text(encoding="utf-8")
    for curve_set in ("digits", "synthetic"):
        assert f"## Curve set `{curve_set}`" in report
    for label in (
        "no early stopping",
        "nni-pl Medianstop",
        "nni-pl Curvefitting",
        "nni-pl ASHA",
        "optuna MedianPruner",
        "optuna SuccessiveHalving",
    ):
        assert f"| {label} | " in report, f"no row for {label!r} in:\n{report}"
    assert "## Target check" in report and "## Method" in report
    no_es = [line for line in report.splitlines() if line.startswith("| no early stopping |")]
    assert len(no_es) == 2 and all("| 0.00 | 1.0000 | 1.0000 |" in line for line in no_es)
