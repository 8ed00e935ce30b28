"""Smoke test of ``benchmarks/trial_cpu.py``: one short run of this checkout against itself as ``--base``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

# `make test-extended` (and CI) runs these; the default `make test` leaves them out to stay within its time budget
pytestmark = [
    pytest.mark.extended,
    pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux only)"),
]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "trial_cpu.py"


def test_trial_cpu_reports_the_manager_reaper_and_kernel_split_of_each_checkout(tmp_path: Path) -> None:
    out = tmp_path / "trial_cpu.md"
    args = ["--n", "8", "--warmup", "2", "--runs", "1", "--bare", "2", "--base", str(ROOT)]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--workdir", str(tmp_path / "work"), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = out.read_text(encoding="utf-8")
    rows = re.findall(
        r"^\| (\d) \| ([^|]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ", report, re.M
    )
    assert len(rows) == 2, report  # the base run, then this checkout's
    for _, code, manager, reaper, kernel, total in rows:
        assert code == "this checkout", report  # --base was this checkout: the same package both times
        assert float(manager) > 0 and float(reaper) > 0, report
        assert float(total) == pytest.approx(float(manager) + float(reaper) + float(kernel), abs=0.002)
    assert re.search(r"The bare trial \(run standalone, 2 times\) used [\d.]+ ms of CPU", report), report
    assert not list((tmp_path / "work").iterdir()), "the work folder was not removed without --keep"


def test_trial_cpu_rejects_a_base_that_is_no_checkout(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--base", str(tmp_path), "--output", str(tmp_path / "x.md")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"--base {tmp_path}: no nni_pl package there" in done.stderr
