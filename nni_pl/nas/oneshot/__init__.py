"""One-shot NAS: one supernet holds every architecture of a model space; a strategy trains it and reads the
architecture off it (DARTS, GumbelDARTS, ENAS, RandomOneShot/SPOS, Proxyless).

Four ways in: :func:`search` (a model space, an evaluator and a strategy of :mod:`nni_pl.nas.strategy`), the
LightningModules of :mod:`nni_pl.nas.oneshot.lightning` for your own ``Trainer``, :class:`OneShotSearch` around
your LightningModule (``LightningCLI`` with ``callbacks/oneshot_nas.yaml``), and NNI 2.5's trainers
(:class:`DartsTrainer`, :class:`EnasTrainer`, :class:`ProxylessTrainer`, :class:`SinglePathTrainer`).
The names are imported on first use (PEP 562): ``import nni_pl.nas.oneshot`` alone imports neither torch nor
Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nni_pl.nas.oneshot.cli import OneShotSearch
    from nni_pl.nas.oneshot.runner import OneShotResult, paired_loader, search
    from nni_pl.nas.oneshot.supernet import OneShotError, Supernet, build_supernet
    from nni_pl.nas.oneshot.trainers import (
        BaseOneShotTrainer,
        DartsTrainer,
        EnasTrainer,
        ProxylessTrainer,
        SinglePathTrainer,
        replace_input_choice,
        replace_layer_choice,
    )

_LAZY: dict[str, str] = {
    "OneShotSearch": "nni_pl.nas.oneshot.cli",
    **dict.fromkeys(("OneShotResult", "paired_loader", "search"), "nni_pl.nas.oneshot.runner"),
    **dict.fromkeys(("OneShotError", "Supernet", "build_supernet"), "nni_pl.nas.oneshot.supernet"),
    **dict.fromkeys(
        (
            "BaseOneShotTrainer",
            "DartsTrainer",
            "EnasTrainer",
            "ProxylessTrainer",
            "SinglePathTrainer",
            "replace_input_choice",
            "replace_layer_choice",
        ),
        "nni_pl.nas.oneshot.trainers",
    ),
}

__all__ = [
    "BaseOneShotTrainer",
    "DartsTrainer",
    "EnasTrainer",
    "OneShotError",
    "OneShotResult",
    "OneShotSearch",
    "ProxylessTrainer",
    "SinglePathTrainer",
    "Supernet",
    "build_supernet",
    "paired_loader",
    "replace_input_choice",
    "replace_layer_choice",
    "search",
]


def __getattr__(name: str) -> Any:
    """The public names, imported on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value
