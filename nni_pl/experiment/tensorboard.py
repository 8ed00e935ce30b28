"""``nni-pl tensorboard ID [TRIAL...]``: TensorBoard over the trials' Lightning logs, one run per trial.

Each trial's Lightning logs land in its own directory (see :mod:`nni_pl.callbacks._logdir`), so TensorBoard is
started with ``--logdir_spec`` naming every trial: ``<sequence id>_<trial id>:<trial dir>``. Like the
dashboard, it binds 127.0.0.1 unless told otherwise.

Example:
    An experiment whose trial ``Ab3xY`` wrote TensorBoard events and whose trial ``Qw7rT`` wrote none:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from nni_pl.experiment import locate, tensorboard
    >>> from nni_pl.experiment import store as st
    >>> folder = Path(tempfile.mkdtemp())
    >>> db = st.Store(st.sqlite_url(folder / "store.sqlite"))
    >>> _ = db.create_experiment(id="abcd1234", name=None, config={}, directory=str(folder))
    >>> for seq, trial_id in enumerate(["Ab3xY", "Qw7rT"]):
    ...     db.add_trial(st.TrialRow(experiment_id="abcd1234", trial_id=trial_id, sequence_id=seq,
    ...                              parameter_id=seq, parameters={}, trial_dir=str(folder / trial_id)))
    >>> (folder / "Ab3xY" / "lightning_logs").mkdir(parents=True)
    >>> (folder / "Ab3xY" / "lightning_logs" / "events.out.tfevents.1733350000.host").touch()
    >>> located = locate.find("abcd1234", store_url=db.url)  # as ``nni-pl tensorboard abcd1234`` finds it
    >>> tensorboard.logdir_spec(located) == f"0_Ab3xY:{folder / 'Ab3xY'}"
    True
    >>> located.store.close(); db.close()
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from nni_pl.errors import NniPlError
from nni_pl.experiment import locate
from nni_pl.experiment import store as st

__all__ = ["DEFAULT_PORT", "has_event_files", "logdir_spec", "tensorboard_command"]

DEFAULT_PORT = 6006
_EVENTS = "events.out.tfevents.*"


def has_event_files(directory: str | Path) -> bool:
    """Whether TensorBoard has anything to show under ``directory``."""
    return any(Path(directory).rglob(_EVENTS))


def _installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def _select(located: locate.Located, trial_ids: Sequence[str]) -> list[st.TrialRow]:
    exp_id = located.experiment.id
    trials = located.store.list_trials(exp_id)
    if not trial_ids:
        return trials
    by_id = {t.trial_id: t for t in trials}
    unknown = [t for t in trial_ids if t not in by_id]
    if unknown:
        known = ", ".join(t.trial_id for t in trials[:20]) or "none"
        raise NniPlError(f"experiment {exp_id} has no trial {unknown[0]!r} (its trials: {known})")
    return [by_id[t] for t in trial_ids]


def logdir_spec(located: locate.Located, trial_ids: Sequence[str] = ()) -> str:
    """TensorBoard's ``--logdir_spec``: ``name:dir`` for every chosen trial (all by default) that has logs.

    Raises:
        NniPlError: an unknown trial id, a directory TensorBoard cannot name, or no trial with logs.
    """
    runs = []
    for t in _select(located, trial_ids):
        directory = Path(t.trial_dir)
        if not has_event_files(directory):
            continue
        if "," in str(directory):
            raise NniPlError(
                f"TensorBoard cannot take the directory {directory} of trial {t.trial_id} (a comma)"
            )
        name = f"{t.sequence_id}_{t.trial_id}" if t.sequence_id >= 0 else t.trial_id
        runs.append(f"{name}:{directory}")
    if not runs:
        which = f"trials {', '.join(trial_ids)}" if trial_ids else "any trial"
        raise NniPlError(
            f"no TensorBoard logs in {which} of experiment {located.experiment.id}: a trial's Lightning logs "
            "land in its directory when tensorboard is installed where the trial runs (or log there yourself: "
            "nni_pl.get_output_dir())"
        )
    return ",".join(runs)


def tensorboard_command(
    located: locate.Located,
    trial_ids: Sequence[str] = (),
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
) -> list[str]:
    """The command that serves TensorBoard over the chosen trials.

    Raises:
        NniPlError: TensorBoard is not installed, or nothing to show (see :func:`logdir_spec`).
    """
    if not _installed():
        raise NniPlError(
            "TensorBoard is not installed in this environment; install it with: pip install tensorboard"
        )
    spec = logdir_spec(located, trial_ids)
    return [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir_spec",
        spec,
        "--host",
        host,
        "--port",
        str(port),
    ]
