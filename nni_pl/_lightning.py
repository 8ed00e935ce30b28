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

import atexit
from collections.abc import Mapping
from typing import Any

__all__ = ["QUIET_TRAINER", "destroy_process_group_at_exit", "quiet_trainer_kwargs"]

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


_DESTROY_REGISTERED = False


def destroy_process_group_at_exit() -> None:
    """Destroy the default ``torch.distributed`` process group when the interpreter exits (registered once).

    Lightning does this for NCCL only. A gloo process group left alive at exit still has worker threads holding
    Python objects while the interpreter is torn down, and the process can abort with "terminate called without an
    active exception" (exit code 134) after a successful run: a DDP trial on CPU would then be recorded FAILED.
    ``NNICallback`` calls this in a distributed fit. A group the program destroyed itself is left alone.
    """
    global _DESTROY_REGISTERED
    if _DESTROY_REGISTERED:
        return
    _DESTROY_REGISTERED = True
    atexit.register(_destroy_default_group)


def _destroy_default_group() -> None:
    import sys

    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    try:
        dist.destroy_process_group()
    except Exception:  # at exit, a group the peers already tore down must not fail the process
        pass
