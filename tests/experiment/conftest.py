"""Helpers for experiment tests: a tiny project (trial script + NNI config) in a tmp folder."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import _wait

# A trial that reports `steps` intermediate results and a final one. Parameters steer it:
# sleep (seconds per step), fail (exit code), graceful (poll should_stop between steps).
TRIAL = textwrap.dedent(
    """
    import sys, time
    import nni_pl as nni
    from nni_pl.trial import enable_graceful_stop
    p = nni.get_next_parameter()
    steps = int(p.get("steps", 3))
    if p.get("graceful"):
        enable_graceful_stop()
    x = float(p.get("x", 0))
    for i in range(steps):
        time.sleep(float(p.get("sleep", 0)))
        nni.report_intermediate_result(x + i)
        if p.get("graceful") and nni.should_stop():
            print("stopping at step", i, flush=True)
            sys.exit(0)
    if p.get("fail"):
        print("trial failed on purpose", file=sys.stderr)
        sys.exit(int(p["fail"]))
    nni.report_final_result({"default": x * 10, "steps": steps})
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., Path]:
    """``project(search_space, **config)`` -> path of a config.yml next to trial.py."""

    def make(search_space: dict[str, Any], trial: str = TRIAL, **config: Any) -> Path:
        code = tmp_path / "code"
        code.mkdir(exist_ok=True)
        (code / "trial.py").write_text(trial)
        (code / "search_space.json").write_text(__import__("json").dumps(search_space))
        cfg = {
            "experimentName": "test",
            "searchSpaceFile": "search_space.json",
            "trialCommand": "python trial.py",
            "trialCodeDirectory": ".",
            "trialConcurrency": 2,
            "tuner": {"name": "Random", "classArgs": {"seed": 0}},
            "trainingService": {"platform": "local"},
            "experimentWorkingDirectory": str(tmp_path / "experiments"),
        }
        cfg.update(config)
        path = code / "config.yml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """``wait_for(condition, timeout=60)``: poll until ``condition()`` is truthy; returns its value."""
    return _wait.wait_for
