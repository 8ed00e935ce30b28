"""Smoke test of ``benchmarks/quantization.py --quick --skip-nni3``: every flow runs or records its failure, and the
report (accuracy, ONNX Runtime latency and op counts, NaiveModel, targets) and the plot are written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.extended

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "quantization.py"

pytest.importorskip("sklearn")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.mark.slow
def test_quantization_benchmark_quick_run_writes_report_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "quantization.md"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--skip-nni3", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = out.read_text(encoding="utf-8")
    for heading in ("## Accuracy", "## ONNX Runtime latency", "## NNI's tutorial model", "## Targets"):
        assert heading in report, report
    assert "| nni-pl QAT 8-bit | " in report and "| fp32 (checkpoint) | " in report
    qat = next(line for line in report.splitlines() if line.startswith("| nni-pl QAT 8-bit | "))
    assert "failed" not in qat, qat
    assert "| nni-pl QDQ (uint8) | " in report and "| quantize_static | " in report
    assert "com.microsoft:QLinearConv" in report  # the op counts of the graphs ONNX Runtime runs
    assert "NNI 3.0" not in report.split("## Accuracy")[1].split("## ONNX")[0]
    assert report.count("PASS") + report.count("FAIL") >= 8
    assert "PASS:" in done.stdout or "FAIL:" in done.stdout
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert out.with_suffix(".json").exists()
