"""Smoke test of ``benchmarks/nas_oneshot.py --quick``: every one-shot strategy searches, the report and plot exist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# `make test-extended` (and CI) runs these; the default `make test` leaves them out to stay within its time budget
pytestmark = pytest.mark.extended

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "nas_oneshot.py"

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


def test_nas_oneshot_quick_run_writes_report_with_every_strategy_and_plot(tmp_path: Path) -> None:
    out, plot = tmp_path / "nas_oneshot.md", tmp_path / "nas_oneshot.png"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--plot", str(plot)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = out.read_text(encoding="utf-8")
    for name in ("DARTS", "GumbelDARTS", "ENAS", "SPOS", "Proxyless"):
        assert f"| {name} |" in report, report
    assert "## Targets" in report and "## Memory" in report and "MAPE" in report
    assert "| Random | GridSearch | RegularizedEvolution | TPE |" in report
    assert plot.stat().st_size > 10_000
