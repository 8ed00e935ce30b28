"""The one quiet-Trainer helper (nni_pl/_lightning.py) used by the compression Evaluator, the NAS evaluators and CGO."""

from __future__ import annotations

import subprocess
import sys

from nni_pl._lightning import QUIET_TRAINER, quiet_trainer_kwargs


def test_quiet_trainer_kwargs_layers_quiet_then_defaults_then_given() -> None:
    kwargs = quiet_trainer_kwargs({"logger": True, "devices": 2}, devices=1, num_sanity_val_steps=0)
    assert kwargs == {
        "logger": True,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "devices": 2,
        "num_sanity_val_steps": 0,
    }
    kwargs["enable_progress_bar"] = True
    assert QUIET_TRAINER["enable_progress_bar"] is False  # a fresh dict every call


def test_quiet_trainer_kwargs_keep_logger_leaves_lightnings_default() -> None:
    assert "logger" not in quiet_trainer_kwargs(keep_logger=True)
    assert quiet_trainer_kwargs()["logger"] is False


def test_quiet_trainer_helper_imports_neither_torch_nor_lightning() -> None:
    code = "import sys, nni_pl._lightning; print(sorted({'torch', 'lightning'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
