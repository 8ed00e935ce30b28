"""One-shot search under real 2-process DDP on CPU: every rank ends with one architecture (the same
architecture parameters or controller, the same exported architecture) although each trains on its own data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

SCRIPT = Path(__file__).with_name("_ddp_oneshot.py")
STRATEGIES = ["DARTS", "ENAS", "RandomOneShot", "Proxyless"]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("ddp_oneshot")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NNI_", "LOCAL_RANK", "WORLD_SIZE", "MASTER_"))
    }
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)], env=env, capture_output=True, text=True, timeout=500
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {s: [torch.load(out / f"{s}_rank{r}.pt") for r in (0, 1)] for s in STRATEGIES}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_rank_ends_with_one_architecture(ranks: dict[str, list[dict[str, Any]]], strategy: str) -> None:
    rank0, rank1 = ranks[strategy]
    assert rank0["world_size"] == rank1["world_size"] == 2 and {rank0["rank"], rank1["rank"]} == {0, 1}
    assert rank0["arch"] == rank1["arch"]
    assert rank0["arch_params"].keys() == rank1["arch_params"].keys()
    if strategy != "RandomOneShot":
        assert rank0["arch_params"]
    for key, value in rank0["arch_params"].items():
        torch.testing.assert_close(value, rank1["arch_params"][key], rtol=0, atol=0)
    for key, value in rank0["weights"].items():  # DDP averages the weights' gradients as usual
        torch.testing.assert_close(value, rank1["weights"][key], rtol=1e-5, atol=1e-6)
