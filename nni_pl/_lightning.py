"""The quiet ``Trainer`` settings used wherever nni-pl builds a Lightning ``Trainer`` of its own.

A Trainer that nni-pl starts for the user (a pruner's evaluator, a NAS evaluator, a CGO run) should not print
progress bars and model summaries into a trial's log, nor write ``lightning_logs/`` and checkpoints into the
working directory: those defaults live here, once. The caller's own keyword arguments always win.

This module imports nothing heavy, so that modules low in the layering can use it.

Example:
    >>> from nni_pl._lightning import quiet_trainer_kwargs
    >>> kwargs = quiet_trainer_kwargs({"max_epochs": 3, "enable_progress_bar": True})
    >>> kwargs["enable_progress_bar"], kwargs["enable_model_summary"], kwargs["logger"], kwargs["max_epochs"]
    (True, False, False, 3)
    >>> "logger" in quiet_trainer_kwargs(keep_logger=True)
    False
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["QUIET_TRAINER", "quiet_trainer_kwargs"]

#: Trainer keyword arguments for a Trainer that nni-pl runs on the user's behalf.
QUIET_TRAINER: Mapping[str, Any] = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def quiet_trainer_kwargs(
    given: Mapping[str, Any] | None = None, *, keep_logger: bool = False, **defaults: Any
) -> dict[str, Any]:
    """``Trainer`` keyword arguments: the quiet settings, then ``defaults``, then the caller's ``given`` ones.

    Args:
        given: the user's Trainer keyword arguments; they override everything else.
        keep_logger: leave ``logger`` to Lightning's default (e.g. in a trial, whose logs belong in its directory)
            instead of turning it off.
        **defaults: the caller's own defaults (e.g. ``num_sanity_val_steps=0``), under ``given``.

    Returns:
        A new dict, safe to change.
    """
    kwargs = dict(QUIET_TRAINER)
    if keep_logger:
        del kwargs["logger"]
    kwargs.update(defaults)
    kwargs.update(given or {})
    return kwargs
