"""QuantizationCallback under real 2-process DDP fits (CPU, gloo): one set of scales on every rank.

``_ddp_quant_fit.py`` trains with ``Trainer(strategy="ddp", devices=2)``, each rank on data of its own: QAT wrapped in
the middle of the fit (epoch 1) and frozen at epoch 2, then LSQ from epoch 0. The fits run in a process group of
their own, killed if they hang.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
HANG_AFTER_S = 300

pytestmark = [pytest.mark.slow, pytest.mark.timeout(HANG_AFTER_S + 60)]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("ddp_quant")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_ddp_quant_fit.py"), str(out)],
        cwd=out,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # rank 1 joins this group: one kill ends both ranks
    )
    try:
        log, _ = proc.communicate(timeout=HANG_AFTER_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"the DDP fits hung for {HANG_AFTER_S} s and were killed; their output:\n{log[-4000:]}")
    assert proc.returncode == 0, log[-4000:]
    return {
        tag: [torch.load(out / f"{tag}_rank{r}.pt", weights_only=False) for r in (0, 1)]
        for tag in ("qat", "lsq")
    }


def _differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    assert a.keys() == b.keys()
    return sorted(k for k in a if not torch.equal(a[k], b[k]))


@pytest.mark.parametrize("tag", ["qat", "lsq"])
def test_ddp_every_rank_ends_with_rank_zeros_scales(
    ddp_run: dict[str, list[dict[str, Any]]], tag: str
) -> None:
    rank0, rank1 = ddp_run[tag]
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["ddp_wraps_the_quantized_module"] and rank1["ddp_wraps_the_quantized_module"]
    # right after a forward on its own data each rank holds other ranges (LSQ: other first-batch scales) ...
    first = min(rank0["local"])
    assert rank0["local"].keys() == rank1["local"].keys()
    moved = _differing(rank0["local"][first], rank1["local"][first])
    if tag == "qat":
        assert {"net.2.tracked_max_output", "net.0.tracked_min_input"} <= set(moved)
    else:
        assert {"net.0.input_scale", "net.7.output_scale"} <= set(moved)
    # ... and the callback gives every rank rank 0's: one set of scales, ranges and BatchNorm statistics
    assert _differing(rank0["final"], rank1["final"]) == []
    assert rank0["calibration"] == rank1["calibration"]
    assert _differing(rank0["state_dict"], rank1["state_dict"]) == []
    assert rank0["steps"] == rank1["steps"] == (6 if tag == "qat" else 9)


def test_ddp_qat_freezes_on_every_rank(ddp_run: dict[str, list[dict[str, Any]]]) -> None:
    rank0, rank1 = ddp_run["qat"]
    assert rank0["frozen"] and rank1["frozen"]
    assert rank0["calibration"]["net.2"]["tracked_max_output"] > 0
