"""Finding experiments by id: an index under ``$NNI_PL_HOME/.index`` plus a scan of working directories."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nni_pl.errors import ExperimentNotFoundError, StoreError
from nni_pl.experiment import store as st
from nni_pl.experiment.config import default_working_directory

__all__ = [
    "Located",
    "candidates",
    "find",
    "is_known",
    "iter_experiments",
    "manager_alive",
    "register",
    "shown_status",
    "shown_trial_status",
    "unregister",
]

INTERRUPTED = "INTERRUPTED"  # shown for a RUNNING experiment (or trial) whose manager (or process) is gone


@dataclass
class Located:
    store: st.Store
    experiment: st.ExperimentRow

    @property
    def directory(self) -> Path:
        return Path(self.experiment.directory)


def _index_dir() -> Path:
    return default_working_directory() / ".index"


def register(experiment_id: str, directory: Path, store_url: str) -> None:
    """Remember where an experiment lives, so ``nni-pl resume ID`` finds it from anywhere."""
    index = _index_dir()
    index.mkdir(parents=True, exist_ok=True)
    tmp = index / f".{experiment_id}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # owner-only: the URL may hold a password
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"directory": str(directory), "store_url": store_url}, f)
    tmp.replace(index / f"{experiment_id}.json")


def unregister(experiment_id: str) -> None:
    """Forget an experiment's index entry (``nni-pl experiment delete``)."""
    (_index_dir() / f"{experiment_id}.json").unlink(missing_ok=True)


def is_known(experiment_id: str, *, working_directory: str | Path | None = None) -> Path | None:
    """The folder of the experiment with exactly this id, when one is indexed or in the working directory."""
    wd = _existing(working_directory)
    for exp_id, directory, _url in candidates(wd):
        if exp_id == experiment_id:
            return directory
    return None


def _existing(working_directory: str | Path | None) -> Path | None:
    """The working directory a user named, which must exist (a typo must not silently mean the default)."""
    if working_directory is None or working_directory == "":
        return None
    wd = Path(working_directory).expanduser()
    if not wd.is_dir():
        raise ExperimentNotFoundError(
            f"the experiments folder {str(wd)!r} (--workdir, working_directory=) does not exist; give an existing folder, "
            f"or leave it out for the default {str(default_working_directory())!r}"
        )
    return wd


def candidates(working_directory: Path | None) -> Iterator[tuple[str, Path, str]]:
    """(id, directory, store URL) of every experiment we know of."""
    seen: set[str] = set()
    index = _index_dir()
    if index.is_dir():
        for entry in sorted(index.glob("*.json")):
            try:
                data = json.loads(entry.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            seen.add(entry.stem)
            yield entry.stem, Path(data["directory"]), data["store_url"]
    for base in {working_directory or default_working_directory(), default_working_directory()}:
        if not base.is_dir():
            continue
        for store_file in sorted(base.glob("*/store.sqlite")):
            exp_id = store_file.parent.name
            if exp_id not in seen:
                seen.add(exp_id)
                yield exp_id, store_file.parent, st.sqlite_url(store_file)


def find(
    experiment_id: str, *, working_directory: str | Path | None = None, store_url: str | None = None
) -> Located:
    """The experiment with this id (or unique id prefix).

    Raises:
        ExperimentNotFoundError: listing what exists when nothing (or more than one) matches.
    """
    if store_url:
        store = st.Store(store_url)
        rows = [e for e in store.list_experiments() if e.id == experiment_id] or [
            e for e in store.list_experiments() if e.id.startswith(experiment_id)
        ]
        if len(rows) != 1:
            store.close()
            raise ExperimentNotFoundError(f"no unique experiment {experiment_id!r} in {store_url}")
        return Located(store, rows[0])
    cands = list(candidates(_existing(working_directory)))
    exact = [c for c in cands if c[0] == experiment_id]
    matches = exact or [c for c in cands if c[0].startswith(experiment_id)]
    if len(matches) > 1:
        raise ExperimentNotFoundError(
            f"{experiment_id!r} matches several experiments: {', '.join(c[0] for c in matches)}; give more of the id"
        )
    if not matches:
        known = ", ".join(c[0] for c in cands[-10:]) or "none"
        raise ExperimentNotFoundError(
            f"no experiment {experiment_id!r} (known: {known}); `nni-pl list` shows them all"
        )
    exp_id, _directory, url = matches[0]
    try:
        store = st.Store(url)
        return Located(store, store.get_experiment(exp_id))
    except (StoreError, ExperimentNotFoundError) as e:
        raise ExperimentNotFoundError(
            f"experiment {exp_id!r} is indexed at {url} but cannot be read: {e}"
        ) from e


def iter_experiments(
    *, working_directory: str | Path | None = None, store_url: str | None = None
) -> Iterator[Located]:
    """Every readable experiment (open stores are handed to the caller, who closes them)."""
    if store_url:
        store = st.Store(store_url)
        for exp in store.list_experiments():
            yield Located(store, exp)
        return
    for exp_id, _directory, url in candidates(_existing(working_directory)):
        if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
            continue
        try:
            store = st.Store(url)
            yield Located(store, store.get_experiment(exp_id))
        except (StoreError, ExperimentNotFoundError):
            continue


def manager_alive(exp: st.ExperimentRow) -> bool:
    """Whether the experiment's manager process is running (checked on this host only)."""
    from nni_pl.training.process import alive as _alive

    if exp.manager_pid is None:
        return False
    if exp.manager_host and exp.manager_host != socket.gethostname():
        return True  # cannot check another host: trust the record
    return _alive(exp.manager_pid, exp.manager_started_at)


def shown_status(exp: st.ExperimentRow) -> str:
    """The status to show: a RUNNING experiment whose manager died is ``INTERRUPTED`` (resume it)."""
    if exp.status == st.EXP_RUNNING and not manager_alive(exp):
        return INTERRUPTED
    return exp.status


def shown_trial_status(trial: st.TrialRow, *, manager_running: bool) -> str:
    """The status to show for a trial: a ``RUNNING`` one whose manager is gone is ``INTERRUPTED`` unless its
    process still runs (a killed manager leaves its trials running; ``resume`` re-attaches to them).

    Args:
        trial: the stored trial.
        manager_running: whether the experiment's manager runs (:func:`manager_alive`).
    """
    if trial.status != st.RUNNING or manager_running:
        return trial.status
    if trial.host and trial.host != socket.gethostname():
        return INTERRUPTED  # nothing to check here, and no manager to keep it
    from nni_pl.training.process import alive as _alive

    if trial.pid is not None and _alive(trial.pid, trial.pid_started_at):
        return st.RUNNING
    return INTERRUPTED


def lock_path(directory: Path) -> Path:
    return Path(directory) / ".manager.lock"
