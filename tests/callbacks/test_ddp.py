"""NNICallback and PruningCallback under a real 2-process DDP fit (CPU, gloo), run once as one trial.

``_ddp_fit.py`` trains with ``Trainer(strategy="ddp", devices=2)``: each rank on data of its own, TaylorFO pruning
(data-dependent) with the speed-up at epoch 1, and a stop request written by "the manager" during epoch 2. The
fit runs in a process group of its own, killed if it hangs.
"""

from __future__ import annotations

import json
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
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ddp")
    trial_dir, out = root / "trial", root / "out"
    trial_dir.mkdir()
    out.mkdir()
    record = {"parameter_id": 0, "parameter_source": "algorithm", "parameters": {}}
    (trial_dir / "parameter.json").write_text(json.dumps(record), encoding="utf-8")
    env = {
        **os.environ,
        "NNI_PLATFORM": "local",
        "NNI_EXP_ID": "ddp",
        "NNI_TRIAL_JOB_ID": "trial0",
        "NNI_TRIAL_SEQ_ID": "0",
        "NNI_SYS_DIR": str(trial_dir),
        "NNI_OUTPUT_DIR": str(trial_dir),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_ddp_fit.py"), str(out)],
        cwd=root,
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
        pytest.fail(f"the DDP fit hung for {HANG_AFTER_S} s and was killed; its output:\n{log[-4000:]}")
    assert proc.returncode == 0, log[-4000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    lines = (trial_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return {
        "ranks": ranks,
        "metrics": [json.loads(line) for line in lines],
        "trial_dir": trial_dir,
        "log": log,
    }


def test_ddp_nni_callback_reports_once_from_rank_zero_and_every_rank_stops_at_the_same_epoch(
    ddp_run: dict[str, Any],
) -> None:
    rank0, rank1 = ddp_run["ranks"]
    assert rank0["world_size"] == rank1["world_size"] == 2
    # the stop file appeared during epoch 2: both ranks left fit at its end (max_epochs is 4), none hung
    assert rank0["stopped_epoch"] == rank1["stopped_epoch"] == 2
    assert rank0["current_epoch"] == rank1["current_epoch"] == 3
    metrics = ddp_run["metrics"]
    assert [(m["type"], m["value"]) for m in metrics] == [
        ("PERIODICAL", 0.0),
        ("PERIODICAL", 1.0),
        ("PERIODICAL", 2.0),
        ("FINAL", 2.0),
    ]  # each epoch exactly once: only global rank 0 reports
    assert [m["seq"] for m in metrics] == [0, 1, 2, 3]
    assert (ddp_run["trial_dir"] / ".nni" / "graceful").exists()


def test_ddp_pruning_callback_gives_every_rank_the_same_small_model(ddp_run: dict[str, Any]) -> None:
    rank0, rank1 = ddp_run["ranks"]
    assert rank0["done_steps"] == rank1["done_steps"] == [1] and rank0["sped_up"] and rank1["sped_up"]
    # the masks were computed on rank 0 and broadcast: on its own data, rank 1's Taylor scores differ
    assert rank0["masks"].keys() == rank1["masks"].keys() == {"net.0", "net.3"}
    for name in rank0["masks"]:
        for param, mask in rank0["masks"][name].items():
            assert torch.equal(mask, rank1["masks"][name][param]), (
                f"the mask of {name}.{param} differs between ranks"
            )
    shapes = {k: tuple(v.shape) for k, v in rank0["state_dict"].items()}
    assert shapes == {k: tuple(v.shape) for k, v in rank1["state_dict"].items()}
    assert shapes["net.0.weight"] == (4, 1, 3, 3) and shapes["net.3.weight"] == (8, 4, 3, 3)
    assert shapes["net.7.weight"] == (3, 8)
    # after the speed-up the small module was wrapped in DDP again: two more epochs of gradients on different
    # data were averaged, so the weights still agree
    assert rank0["ddp_wraps_the_small_module"] and rank1["ddp_wraps_the_small_module"]
    for key, value in rank0["state_dict"].items():
        torch.testing.assert_close(value, rank1["state_dict"][key], msg=f"weight {key} differs between ranks")
