"""Search-space keys written as LightningCLI paths become command-line overrides of the trial command.

Example:
    >>> lightning_cli_args({"model.learning_rate": 0.01, "data.batch_size": 64, "seed": 3})
    ['--model.learning_rate=0.01', '--data.batch_size=64']
    >>> lightning_cli_args({"optimizer": {"_name": "Adam", "lr": 0.1}}, mode=True)
    ['--optimizer=Adam', '--optimizer.lr=0.1']
"""

from __future__ import annotations

import json
from typing import Any

from nni_pl.trial.protocol import TRIAL_BUDGET

__all__ = ["LIGHTNING_CLI_ROOTS", "lightning_cli_args"]

LIGHTNING_CLI_ROOTS = (
    "model",
    "data",
    "trainer",
    "optimizer",
    "lr_scheduler",
    "seed_everything",
    "ckpt_path",
)


def _is_cli_path(key: str) -> bool:
    root, _, rest = key.partition(".")
    return root in LIGHTNING_CLI_ROOTS and (bool(rest) or root in ("seed_everything", "ckpt_path"))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)  # true/false/null, numbers, lists and dicts as jsonargparse reads them


def lightning_cli_args(params: dict[str, Any], mode: str | bool = "auto") -> list[str]:
    """``--key=value`` arguments for ``params``: LightningCLI-path keys (``auto``), all keys (``True``) or none."""
    if mode is False:
        return []
    out: list[str] = []
    for key, value in params.items():
        if key == TRIAL_BUDGET or (mode == "auto" and not _is_cli_path(key)):
            continue
        if isinstance(value, dict) and "_name" in value:  # a nested choice: the class, then its arguments
            out.append(f"--{key}={_text(value['_name'])}")
            out += [f"--{key}.{k}={_text(v)}" for k, v in value.items() if k != "_name"]
        else:
            out.append(f"--{key}={_text(value)}")
    return out
