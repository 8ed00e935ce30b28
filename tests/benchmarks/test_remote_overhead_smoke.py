"""Smoke test of ``benchmarks/remote_overhead.py --quick``: two real SSH hosts, every mode, one repeat of 4 trials."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from nni_pl.testing.sshd import skip_reason

# `make test-extended` (and CI) runs these; the default `make test` leaves them out to stay within its time budget
pytestmark = pytest.mark.extended

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "remote_overhead.py"
MODES = ("bare x2", "local cmd", "local fn", "remote reuse", "remote no-reuse", "remote fn")
NUMBER = r"[\d,]+\.\d"


@pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")
def test_remote_overhead_quick_run_reports_every_mode_and_both_targets(tmp_path: Path) -> None:
    out = tmp_path / "remote_overhead.md"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = out.read_text(encoding="utf-8")
    assert "failed" not in report, report
    per_trial = report.split("## Per-trial time")[1].split("## Metric latency")[0]
    for mode in MODES:  # wall, e2e slot and its ratio to local cmd are numbers in every row
        assert re.search(
            rf"^\| {re.escape(mode)} \| \d+\.\d\d \| {NUMBER} \| \d+\.\d\dx \|", per_trial, re.M
        ), f"no numbers for {mode!r} in:\n{per_trial}"
    latency = report.split("## Metric latency")[1].split("## Where the time goes")[0]
    for mode in MODES[1:]:
        for kind in ("trivial", "streaming"):
            assert re.search(rf"^\| {re.escape(mode)} \| {kind} \| \d+ \| {NUMBER} \|", latency, re.M), (
                f"no {kind} latency for {mode!r} in:\n{latency}"
            )
    targets = report.split("## Targets")[1].split("## Per-trial time")[0]
    assert "remote reuse within 1.5x of local command trials" in targets
    assert targets.count("under 200 ms at the median") == 3  # reuse, no-reuse, fn
    assert re.search(r"\*\*(PASS|FAIL)\*\*", targets), targets
