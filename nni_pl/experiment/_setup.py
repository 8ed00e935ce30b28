"""Checking and creating an experiment: what :class:`~nni_pl.experiment.Experiment` does before its manager runs.

Every check runs before anything is created, and creating is all or nothing: a failure half-way removes
what was made. Files that may hold secrets (the config, the store, the manager's logs) are owner-only.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nni_pl._files import dump_yaml
from nni_pl.errors import ConfigError, ExperimentNotFoundError, NniPlError, SearchSpaceError
from nni_pl.experiment import locate
from nni_pl.experiment import store as st
from nni_pl.experiment.config import ExperimentConfig, LocalConfig

logger = logging.getLogger("nni_pl.experiment.experiment")

_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


# --- owner-only files ---------------------------------------------------------------------------------------------


def _remove_tree(path: Path) -> None:
    """``shutil.rmtree(path, ignore_errors=True)``, imported here: a launch that removes nothing does without it."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def private_fd(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_APPEND) -> int:
    """Open (create) a file only its owner can read: it may hold secrets (URLs, tokens, tracebacks)."""
    fd = os.open(path, flags, 0o600)
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o600)  # also a file an older version left readable
    return fd


def write_private(path: Path, text: str) -> None:
    with os.fdopen(private_fd(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "w", encoding="utf-8") as f:
        f.write(text)


def masked(url: str) -> str:
    """The URL with its ``token=`` value hidden, for logs."""
    return re.sub(r"([?&]token=)[^&\s]+", r"\1***", url)


# --- checks -----------------------------------------------------------------------------------------------------------


def check_webui(port: Any, host: Any, token: Any) -> None:
    """The dashboard settings of a start."""
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
        raise NniPlError(
            f"the dashboard port must be a whole number from 0 to 65535 (0: any free port), got {port!r}"
        )
    if not isinstance(host, str) or not host.strip():
        raise NniPlError(f"the dashboard host must be an address such as 127.0.0.1 or 0.0.0.0, got {host!r}")
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise NniPlError("the dashboard token must not be empty; leave it out to have one generated")


def check_new_id(exp_id: str, config: ExperimentConfig) -> None:
    """A new experiment's id: well formed, and not taken by an experiment elsewhere."""
    if not _ID_PATTERN.fullmatch(exp_id):
        raise NniPlError(
            f"experiment id {exp_id!r} is not valid; use 1 to 64 letters, digits, '-' or '_', starting with a letter or digit"
        )
    indexed: Path | None = None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        indexed = Path(json.loads((locate._index_dir() / f"{exp_id}.json").read_text())["directory"])
    if indexed is not None and indexed.exists() and indexed != config.experiment_working_directory / exp_id:
        raise ConfigError(
            "id", f"an experiment {exp_id!r} already exists in {indexed}; resume it or pick another id"
        )


def check_gpus(config: ExperimentConfig) -> None:
    """A command trial's ``trialGpuNumber`` GPUs must exist on this machine (or be listed in ``gpuIndices``), when
    trials run here (the local platform, alone or in a hybrid list); remote hosts' GPUs are their service's."""
    for ts in getattr(config.training_service, "services", [config.training_service]):
        if isinstance(ts, LocalConfig) and config.trial_gpu_number:
            from nni_pl.training.local import GpuScheduler

            GpuScheduler(
                gpu_number=config.trial_gpu_number,
                indices=ts.gpu_indices,
                per_gpu=ts.max_trial_number_per_gpu,
                use_active_gpu=ts.use_active_gpu,
            ).require_enough("each trial")


def build_algorithms(config: ExperimentConfig, tuner: Any = None, assessor: Any = None) -> tuple[Any, Any]:
    """The tuner (or advisor) and assessor of ``config``, built and checked against its search space (the
    manager wraps them in its one algorithm contract, :mod:`nni_pl.hpo.managed`).

    Args:
        config: a validated config.
        tuner, assessor: instances to use instead of building the configured ones.
    """
    from nni_pl.hpo import Tuner, create_algorithm, resolve_class
    from nni_pl.hpo.managed import managed_tuner
    from nni_pl.space import FreeFormSpace, SearchSpace

    algo = config.tuner or config.advisor
    kind = "tuner" if config.tuner else "advisor"
    assert algo is not None
    if tuner is None:
        class_args = dict(algo.class_args)
        if config.trial_concurrency > 1 and "parallel_optimize" not in class_args:
            cls = resolve_class(
                kind, algo.name, class_name=algo.class_name, code_directory=algo.code_directory, field=kind
            )
            if "parallel_optimize" in inspect.signature(cls).parameters:
                # NNI leaves it off; with concurrent trials the constant liar keeps suggestions apart
                class_args["parallel_optimize"] = True
                logger.info(
                    "trialConcurrency > 1: %s runs with parallel_optimize=True", algo.name or cls.__name__
                )
        tuner = create_algorithm(
            kind,
            algo.name,
            class_name=algo.class_name,
            code_directory=algo.code_directory,
            class_args=class_args,
            field=kind,
        )
    space = config.search_space
    if isinstance(space, FreeFormSpace) and not getattr(type(tuner), "free_form_search_space", False):
        try:  # this tuner reads NNI's format: the space must be valid after all
            SearchSpace.parse(space.to_json())
        except SearchSpaceError as e:
            raise ConfigError(
                "searchSpace",
                f"{e}; only a custom tuner with free_form_search_space = True takes a space in its own format",
            ) from None
    if isinstance(tuner, Tuner):
        type(tuner).check_search_space(space, name=algo.name or type(tuner).__name__)
    managed = managed_tuner(tuner)
    if config.assessor is not None and not managed.accepts_assessor:
        raise ConfigError(
            "assessor",
            f"{algo.name or managed.name} runs its trials as generations; an assessor cannot be used with it, remove it",
        )
    if assessor is None and config.assessor is not None:
        a = config.assessor
        resolve_class(
            "assessor", a.name, class_name=a.class_name, code_directory=a.code_directory, field="assessor"
        )
        assessor = create_algorithm(
            "assessor",
            a.name,
            class_name=a.class_name,
            code_directory=a.code_directory,
            class_args=a.class_args,
            field="assessor",
        )
    return tuner, assessor


def check_budget(config: ExperimentConfig, tuner: Any) -> list[str]:
    """Tell the tuner (or advisor) the experiment's budget through its optional ``check_budget`` hook
    (:meth:`nni_pl.hpo.Tuner.check_budget`); its warnings: settings that are degenerate for this budget."""
    hook = getattr(tuner, "check_budget", None)
    if not callable(hook):  # an NNI-style tuner object
        return []
    found = hook(max_trial_number=config.max_trial_number, max_duration_s=config.max_experiment_duration)
    return [str(w) for w in found or ()]


def warn_user(message: str) -> None:
    """A launch-time warning: logged, and on stderr once, whatever logging is set up to show.

    Without any logging handler Python's last resort already writes a warning to stderr (the command line
    configures none before the manager's log file); otherwise it is written there unless a handler does.
    """
    logger.warning(message)
    if not _warnings_reach_stderr():
        sys.stderr.write(f"warning: {message}\n")
        sys.stderr.flush()


def _warnings_reach_stderr() -> bool:
    current: logging.Logger | None = logger
    found = False
    while current is not None:
        for h in current.handlers:
            found = True
            if (
                isinstance(h, logging.StreamHandler)
                and getattr(h, "stream", None) in (sys.stderr, sys.__stderr__)
                and h.level <= logging.WARNING
            ):
                return True
        current = current.parent if current.propagate else None
    return not found and logging.lastResort is not None and logger.isEnabledFor(logging.WARNING)


# --- the code trials run in ----------------------------------------------------------------------------------------------

#: the folder of an experiment that holds the rewritten copy of its code (``useAnnotation: true``)
ANNOTATED_CODE = "annotated_code"


def trial_code_directory(config: ExperimentConfig, directory: Path | None, exp_id: str) -> Path:
    """Where trials start: ``trialCodeDirectory``, or with ``useAnnotation`` its rewritten copy.

    The copy is ``<experiment folder>/annotated_code``, made once and kept (a resumed experiment's new trials run
    the code its first ones ran; a missing copy is made again from the code, whose annotations must still give
    the stored space). Before the experiment folder exists (hosts of a remote platform are sent the code then)
    it is made in a temporary folder, removed when this process ends.
    """
    if not config.use_annotation:
        return config.trial_code_directory
    from nni_pl.annotation import prepare_trial_code

    if directory is None:
        import tempfile

        root = Path(tempfile.mkdtemp(prefix=f"nni-pl-{exp_id}-"))
        atexit.register(_remove_tree, root)
        target = root / ANNOTATED_CODE
    else:
        target = directory / ANNOTATED_CODE
    return prepare_trial_code(
        config.trial_code_directory,
        target,
        config.search_space,
        exclude=[config.experiment_working_directory],
    )


# --- creating and removing ----------------------------------------------------------------------------------------------


def create(
    config: ExperimentConfig, exp_id: str, trial: Callable[..., Any] | None, trial_path: str | None = None
) -> tuple[st.Store, Path]:
    """Make the experiment's folder, store row, ``config.yml``, ``search_space.json`` and index entry.

    A trial function given by import path (``trial_path``) is stored as such, so ``resume`` imports it again.

    Returns:
        The open store and the folder.

    Raises:
        ConfigError: the id is taken (in the folder or in a shared store); nothing was made.
    """
    directory = config.experiment_working_directory / exp_id
    if directory.exists() and (directory / "store.sqlite").exists():
        raise ConfigError(
            "id", f"an experiment {exp_id!r} already exists in {directory}; resume it or pick another id"
        )
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigError("id", f"{directory} exists and is not an empty folder; pick another id")
    shared = config.store_url is not None
    url = config.store_url or st.sqlite_url(directory / "store.sqlite")
    store: st.Store | None = None
    created_row = False
    made = not directory.exists()
    try:
        if shared:  # a shared database may hold this id already: ask before making anything
            store = st.Store(url)
            found: st.ExperimentRow | None = None
            with contextlib.suppress(ExperimentNotFoundError):
                found = store.get_experiment(exp_id)
            if found is not None:
                raise ConfigError(
                    "id",
                    f"an experiment {exp_id!r} already exists in {st.redact_url(url)} ({found.directory}); pick another id",
                )
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "trials").mkdir(exist_ok=True)
        (directory / "log").mkdir(exist_ok=True)
        if not shared:
            os.close(private_fd(directory / "store.sqlite"))  # SQLite gives its -wal/-shm files this mode
        store = store or st.Store(url)
        stored = config.to_dict()
        if trial_path is not None:
            stored["trialFunction"] = trial_path
            stored["trialFunctionImport"] = True
        elif trial is not None:
            name = getattr(trial, "__qualname__", repr(trial))
            stored["trialFunction"] = f"{getattr(trial, '__module__', '?')}.{name}"
        store.create_experiment(
            id=exp_id,
            name=config.experiment_name,
            config=stored,
            directory=str(directory),
            status=st.EXP_RUNNING,
        )
        created_row = True
        write_private(
            directory / "config.yml", dump_yaml({k: v for k, v in stored.items() if k != "searchSpace"})
        )
        config.search_space.dump(directory / "search_space.json")
        locate.register(exp_id, directory, url)
    except BaseException:
        if store is not None:
            if shared and created_row:
                with contextlib.suppress(Exception):
                    store.delete_experiment(exp_id)
            store.close()
        if made:
            _remove_tree(directory)
        raise
    return store, directory


def discard(store: st.Store | None, directory: Path | None, exp_id: str, *, shared: bool) -> None:
    """Remove an experiment that never ran: its store row (a shared store), its index entry and its folder."""
    if store is not None:
        if shared:
            with contextlib.suppress(Exception):
                store.delete_experiment(exp_id)
        store.close()
    if directory is not None:
        entry = locate._index_dir() / f"{exp_id}.json"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if Path(json.loads(entry.read_text())["directory"]) == directory:
                entry.unlink()
        _remove_tree(directory)
