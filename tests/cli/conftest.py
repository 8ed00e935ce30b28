"""Fixtures for the CLI tests: an NNI-style experiment config around a small command trial."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml


@pytest.fixture
def config(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., Path]:
    """``config(**keys)`` writes the requesting module's ``TRIAL`` script and a config running it (Random tuner,
    ``x`` uniform in [0, 1], ``sleep`` seconds per trial); the module's ``CONFIG_DEFAULTS`` and ``keys`` override
    the defaults."""

    def make(**extra: Any) -> Path:
        (tmp_path / "trial.py").write_text(request.module.TRIAL)
        cfg = {
            "searchSpace": {
                "x": {"_type": "uniform", "_value": [0, 1]},
                "sleep": {"_type": "choice", "_value": [extra.pop("sleep", 0)]},
            },
            "trialCommand": "python trial.py",
            "trialConcurrency": 2,
            "maxTrialNumber": 4,
            "tuner": {"name": "Random", "classArgs": {"seed": 1}},
            "experimentWorkingDirectory": str(tmp_path / "exps"),
            **getattr(request.module, "CONFIG_DEFAULTS", {}),
            **extra,
        }
        path = tmp_path / "config.yml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make
