"""Smoke test of ``benchmarks/trial_overhead.py``: 3 trials per nni-pl mode, no NNI, one repeat."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

# `make test-extended` (and CI) runs these; the default `make test` leaves them out to stay within its time budget
pytestmark = pytest.mark.extended

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "trial_overhead.py"


def test_trial_overhead_runs_every_nni_pl_mode_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "trial_overhead.md"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--skip-nni",
            "--n",
            "3",
            "--repeats",
            "1",
            "--output",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = out.read_text(encoding="utf-8")
    for mode in ("bare nni-pl", "bare nni-pl x2", "nni-pl cmd", "nni-pl fn"):
        assert f"| {mode} | " in report, f"no row for {mode!r} in:\n{report}"
    assert "failed" not in report, report
    assert "NNI 3.0 was skipped" in report
    assert "## Targets" in report and "function trials under 20 ms" in report
    # the work folder went where --workdir said, and the report gives what creating a file there cost
    assert f"Work folder under `{tmp_path / 'work'}`" in report, report
    assert re.search(r"cost \d+ us of CPU before the runs and \d+ us after them", report), report
    assert not list((tmp_path / "work").iterdir()), "the work folder was not removed without --keep"
