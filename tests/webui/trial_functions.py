"""Function trials for the browser tests (a module of its own so spawned trial workers import little)."""

from __future__ import annotations

import time
from typing import Any

import nni_pl as nni

SLOW_SEQUENCE = 4  # this trial keeps running until a test kills it (or the experiment stops)


def objective(params: dict[str, Any]) -> float:
    """Three quick intermediate results and a final one; trial #4 reports slowly for up to a minute."""
    slow = nni.get_sequence_id() == SLOW_SEQUENCE
    steps = 300 if slow else 3
    for i in range(steps):
        time.sleep(0.2 if slow else 0.1)
        nni.report_intermediate_result(params["x"] + 0.1 * i)
        print(f"step {i} x={params['x']:.3f} opt={params['opt']}", flush=True)
    return params["x"] * 10 + params["layers"]
