"""The NAS example runs as a user runs it: ``python search.py`` in its folder, then the CLI sees the experiment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nas_digits"


@pytest.mark.slow
def test_search_script_runs_a_nas_experiment(tmp_path: Path) -> None:
    env = {**os.environ, "NNI_PL_HOME": str(tmp_path)}
    repo = str(EXAMPLE.parents[1])
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    argv = [sys.executable, "search.py", "--strategy", "tpe", "--trials", "2", "--epochs", "1"]
    out = subprocess.run(
        [*argv, "--execution", "function", "--search-lr", "--workdir", str(tmp_path)],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    exp_id = lines[-3].split()[1].rstrip(":")
    assert lines[-3].endswith("2 trials") and lines[-2].startswith("1 {")
    listed = subprocess.run(
        [sys.executable, "-m", "nni_pl", "list", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert exp_id in listed.stdout
