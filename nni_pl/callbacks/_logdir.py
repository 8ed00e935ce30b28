"""Put a trial's Lightning logs (TensorBoard, CSV) and checkpoints in its trial directory.

Lightning writes them under ``Trainer(default_root_dir=...)``, which defaults to the working directory: every
trial of an experiment would share one ``lightning_logs/`` in the trial code directory. Two mechanisms move
them into the trial's own directory, where ``nni-pl tensorboard`` finds them:

* the trial environment sets ``PL_TRAINER_DEFAULT_ROOT_DIR`` (Lightning reads ``PL_TRAINER_<ARG>`` variables as
  defaults of ``Trainer`` arguments), which covers a plain ``Trainer(...)``;
* ``LightningCLI`` passes every Trainer argument explicitly (``default_root_dir=None`` included), so the
  variable is not seen; :class:`~nni_pl.callbacks.NNICallback` then re-roots the default loggers at setup,
  before they have written anything, with :func:`use_trial_dir`.

A ``default_root_dir`` or a logger ``save_dir`` chosen by the user is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from nni_pl.trial.protocol import ENV_DEFAULT_ROOT_DIR

__all__ = ["ENV_DEFAULT_ROOT_DIR", "use_trial_dir"]

log = logging.getLogger(__name__)


def use_trial_dir(trainer: Any, trial_dir: str | Path) -> bool:
    """Re-root the trainer's default directory and its default loggers at ``trial_dir``.

    Only when the trainer's ``default_root_dir`` is the working directory (nobody chose one); loggers whose
    ``save_dir`` is elsewhere are left alone. Lightning opens its loggers just before the callbacks' ``setup``:
    a logger that has written nothing but its empty start is closed, that start removed, and it is re-opened
    in the trial directory at its first write. Returns whether anything moved.

    Example:
        >>> import tempfile
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(enable_progress_bar=False)  # as LightningCLI builds it: default_root_dir=None
        >>> trial_dir = tempfile.mkdtemp()  # nni_pl.get_output_dir() in a trial
        >>> use_trial_dir(trainer, trial_dir), trainer.default_root_dir == trial_dir
        (True, True)
        >>> trainer.logger.log_dir.startswith(trial_dir), use_trial_dir(trainer, trial_dir)  # moved once
        (True, False)
    """
    target = os.path.normpath(os.fspath(trial_dir))
    old = os.path.normpath(os.fspath(trainer.default_root_dir))
    if old == target or old != os.path.normpath(os.getcwd()):
        return False
    trainer._default_root_dir = target
    for logger in trainer.loggers:
        save_dir = getattr(logger, "save_dir", None)
        if save_dir is None or os.path.normpath(os.fspath(save_dir)) != old:
            continue
        if not all(hasattr(logger, a) for a in ("_experiment", "_version", "log_dir")):
            continue  # not a logger we know how to move
        if logger._experiment is not None:
            started = Path(logger.log_dir)
            if not _only_a_fresh_start(started):
                log.debug("logger %s already wrote to %s; left there", type(logger).__name__, started)
                continue
            close = getattr(logger._experiment, "close", None)
            if callable(close):
                close()
            logger._experiment = None
            _remove_fresh_start(started, stop_at=Path(old))
        for attr in ("_root_dir", "_save_dir"):
            if hasattr(logger, attr):
                setattr(logger, attr, target)
        if not isinstance(logger._version, str):
            logger._version = None  # numbered afresh inside the trial directory
    log.info("Lightning logs and checkpoints of this trial go to %s", target)
    return True


_FRESH_BYTES = 4096  # an event file holding only its header (a few dozen bytes)


def _only_a_fresh_start(directory: Path) -> bool:
    if not directory.is_dir():
        return True
    for path in directory.rglob("*"):
        if path.is_dir():
            continue
        if not path.name.startswith("events.out.tfevents.") or path.stat().st_size > _FRESH_BYTES:
            return False
    return True


def _remove_fresh_start(directory: Path, *, stop_at: Path) -> None:
    if directory.is_dir():
        for path in sorted(directory.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()
    current = directory
    while current != stop_at and stop_at in current.parents:
        try:
            current.rmdir()  # only when empty
        except OSError:
            break
        current = current.parent
