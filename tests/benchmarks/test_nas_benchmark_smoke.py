"""Smoke test of ``benchmarks/nas/run.py --quick`` on the committed digits table: report and plot written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# `make test-extended` (and CI) runs these; the default `make test` leaves them out to stay within its time budget
pytestmark = pytest.mark.extended

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "nas" / "run.py"
TABLE = ROOT / "benchmarks" / "data" / "nas_digits.json"

pytest.importorskip("matplotlib")


def test_nas_table_has_every_architecture_with_its_recipe() -> None:
    table = json.loads(TABLE.read_text(encoding="utf-8"))
    n = 1
    for spec in table["search_space"].values():
        n *= len(spec["_value"])
    assert table["n_archs"] == len(table["archs"]) == n <= 200
    assert {"torch", "sklearn"} <= set(table["built_with"]) and table["recipe"]["epochs"] > 0
    rows = list(table["archs"].values())
    assert all(len(r["val_acc"]) == len(table["recipe"]["seeds"]) == 3 for r in rows)
    assert max(r["val_acc_mean"] for r in rows) == table["optimum"]["val_acc_mean"]


def test_nas_benchmark_quick_run_writes_regret_table_and_plot(tmp_path: Path) -> None:
    out, plot = tmp_path / "nas.md", tmp_path / "nas.png"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--plot", str(plot)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = out.read_text(encoding="utf-8")
    assert "| strategy | mean @5 | median @5 | rank @5 | mean @10 |" in report, report
    assert "| Random |" in report and "## Targets" in report
    assert plot.stat().st_size > 10_000


@pytest.mark.slow
def test_nas_cgo_benchmark_quick_run_writes_ratio_table(tmp_path: Path) -> None:
    out = tmp_path / "nas_cgo.md"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "nas" / "cgo.py"), "--quick", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = out.read_text(encoding="utf-8")
    row = next(line for line in report.splitlines() if line.startswith("| 2 |"))
    assert row.endswith("| yes |"), row  # merged and separate runs give the same per-model metrics
