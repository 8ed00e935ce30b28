"""Steering an experiment through its store: the one implementation the CLI and the dashboard API share.

Nothing here talks to the manager directly. Every action is a write to the store that the running manager
picks up when it polls (``Manager._sync_from_store``), or that the next ``resume`` reads:

* :func:`update_limits` writes the new ``trialConcurrency``/``maxTrialNumber``/``maxExperimentDuration`` into
  the stored config and bumps its ``revision``; the manager reloads them.
* :func:`update_search_space` stores a new search space the same way; the manager passes it to its tuner.
* :func:`kill_trial` marks a trial ``stop_requested="user"``; the manager terminates it.
* :func:`add_trial` records a *customised* trial (parameters a user typed), validated against the search
  space, as a ``WAITING`` row with a provisional negative sequence id; the manager adopts it, gives it the
  next sequence id and runs it before asking the tuner for more (NNI's ``addCustomizedTrialJob``).

Example:
    >>> import tempfile
    >>> from nni_pl.experiment import control
    >>> from nni_pl.experiment import store as st
    >>> store = st.Store(st.sqlite_url(tempfile.mkdtemp() + "/store.sqlite"))
    >>> _ = store.create_experiment(id="abcd1234", name=None, config={"maxTrialNumber": 10}, directory="")
    >>> control.update_limits(store, "abcd1234", max_trials=50, duration="2h")
    ['maxTrialNumber=50', 'maxExperimentDuration=2h']
    >>> exp = store.get_experiment("abcd1234")
    >>> exp.config["maxTrialNumber"], exp.config["maxExperimentDuration"], exp.revision
    (50, '2h', 1)
    >>> store.close()
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nni_pl._ids import random_below, random_id
from nni_pl.errors import NniPlError, SearchSpaceError, StoreError
from nni_pl.experiment import locate
from nni_pl.experiment import store as st
from nni_pl.hpo.managed import CUSTOMIZED
from nni_pl.training.process import alive as _alive
from nni_pl.trial import protocol

__all__ = [
    "CUSTOMIZED",
    "add_trial",
    "kill_trial",
    "optimize_mode",
    "redact",
    "stop_experiment",
    "update_limits",
    "update_search_space",
]

_SECRET_KEY = re.compile(r"passw(or)?d|passphrase|secret|token|key|credential", re.IGNORECASE)
# where a secret lives is no secret: sshKeyFile, knownHostsFile, keyPath show as written
_PATH_KEY = re.compile(r"(file|path|dir|directory)$", re.IGNORECASE)
# `password: ${VAR}` names a variable and holds no secret
_ENV_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_URL_WITH_PASSWORD = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/@:]*:[^\s/@]*@[^\s]*")


def optimize_mode(config: Mapping[str, Any]) -> str:
    """``maximize`` or ``minimize``: the tuner's (or advisor's) ``optimize_mode`` in a stored config."""
    algo = config.get("tuner") or config.get("advisor") or {}
    mode = (algo.get("classArgs") or {}).get("optimize_mode") if isinstance(algo, Mapping) else None
    return mode if mode in ("maximize", "minimize") else "maximize"


def redact(value: Any, *, _key: str = "") -> Any:
    """A copy of a config with its secrets masked: values of keys that look like passwords, passphrases, secrets,
    tokens, keys or credentials become ``"***"`` (a ``${VARIABLE}`` reference is kept: it is no secret), and
    passwords inside URLs are masked (the search space is kept).

    Example:
        >>> redact({"storeUrl": "postgresql://nni:s3cret@db/nni", "tuner": {"classArgs": {"api_key": "abc"}}})
        {'storeUrl': 'postgresql://nni:***@db/nni', 'tuner': {'classArgs': {'api_key': '***'}}}
        >>> redact({"machineList": [{"sshKeyFile": "~/.ssh/id_ed25519", "sshPassphrase": "p"}]})
        {'machineList': [{'sshKeyFile': '~/.ssh/id_ed25519', 'sshPassphrase': '***'}]}
    """
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "searchSpace":
                out[k] = v
            elif (
                _SECRET_KEY.search(str(k))
                and not _PATH_KEY.search(str(k))
                and v is not None
                and not isinstance(v, (Mapping, list, bool))
            ):
                out[k] = v if isinstance(v, str) and _ENV_REFERENCE.fullmatch(v) else "***"
            else:
                out[k] = redact(v, _key=str(k))
        return out
    if isinstance(value, list):
        return [redact(v, _key=_key) for v in value]
    if isinstance(value, str) and "://" in value:
        return _URL_WITH_PASSWORD.sub(lambda m: st.redact_url(m.group(0)), value)
    return value


# --- limits ---------------------------------------------------------------------------------------------------


def update_limits(
    store: st.Store,
    experiment_id: str,
    *,
    concurrency: Any = None,
    max_trials: Any = None,
    duration: Any = None,
    names: tuple[str, str, str] = ("trialConcurrency", "maxTrialNumber", "maxExperimentDuration"),
) -> list[str]:
    """Change an experiment's limits; a running manager applies them within a second, ``resume`` uses them.

    Args:
        store: the experiment's store.
        experiment_id: its id.
        concurrency: the new ``trialConcurrency`` (an integer of at least 1).
        max_trials: the new ``maxTrialNumber`` (an integer of at least 1).
        duration: the new ``maxExperimentDuration``: ``"2h"``, ``"30m"`` or seconds.
        names: how to name the three values in errors (the CLI says ``--concurrency`` ...).

    Returns:
        The changes, e.g. ``["maxTrialNumber=50"]``.

    Raises:
        NniPlError: a value is invalid or nothing is to change; the message names the field and the value.
    """
    from nni_pl.errors import ConfigError
    from nni_pl.experiment.config import format_duration, parse_duration

    exp = store.get_experiment(experiment_id)
    cfg = dict(exp.config)
    changes = []
    if concurrency is not None:
        cfg["trialConcurrency"] = _positive_int(concurrency, names[0])
        changes.append(f"trialConcurrency={cfg['trialConcurrency']}")
    if max_trials is not None:
        cfg["maxTrialNumber"] = _positive_int(max_trials, names[1])
        changes.append(f"maxTrialNumber={cfg['maxTrialNumber']}")
    if duration is not None:
        if isinstance(duration, bool):
            raise NniPlError(
                f"{names[2]} must be a duration such as '2h', '30m' or seconds, got {duration!r}"
            )
        try:
            seconds = parse_duration(duration, names[2])
        except ConfigError as e:
            raise NniPlError(str(e)) from None
        if seconds is None or seconds <= 0:
            raise NniPlError(f"{names[2]} must be a positive duration such as '2h', got {duration!r}")
        cfg["maxExperimentDuration"] = format_duration(seconds)
        changes.append(f"maxExperimentDuration={cfg['maxExperimentDuration']}")
    if not changes:
        raise NniPlError(f"nothing to update: give {', '.join(names[:2])} or {names[2]}")
    store.update_experiment(experiment_id, config=cfg, revision=exp.revision + 1)
    return changes


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise NniPlError(f"{name} must be a whole number of at least 1, got {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        number: float = int(value)  # exact: a whole number never goes through a float
    else:
        try:
            number = float(value)
        except ValueError:
            raise NniPlError(f"{name} must be a whole number of at least 1, got {value!r}") from None
        if math.isfinite(number) and abs(number) > 2**53:  # past 2**53 a float is not the number written
            raise NniPlError(
                f"{name} must be written as a whole number without a decimal point, got {value!r}"
            )
    if not math.isfinite(number) or number != int(number) or number < 1:
        raise NniPlError(f"{name} must be a whole number of at least 1, got {value!r}")
    return int(number)


# --- search space ---------------------------------------------------------------------------------------------


def update_search_space(store: st.Store, experiment_id: str, space: Any) -> Any:
    """Replace an experiment's search space; a running manager hands it to its tuner within a second
    (``tuner.update_search_space``), and ``resume`` uses it.

    Args:
        store: the experiment's store.
        experiment_id: its id.
        space: the new space in NNI's format: a dict, JSON/YAML text, or a :class:`~nni_pl.space.SearchSpace`.

    Returns:
        The new space, parsed (a :class:`~nni_pl.space.SearchSpace`).

    Raises:
        NniPlError: the space is invalid (the message names the parameter), the experiment's tuner cannot
            search it, or the experiment is a NAS experiment (its space is its model space).
    """
    exp = store.get_experiment(experiment_id)
    try:
        parsed = _parse_space(exp.config, space)
    except SearchSpaceError as e:
        raise NniPlError(f"the new search space is invalid: {e}") from None
    if (Path(exp.directory) / "nas.json").exists():
        raise NniPlError(
            f"experiment {experiment_id} is a NAS experiment: its search space is its model space and cannot be replaced"
        )
    cfg = dict(exp.config)
    _check_tuner_can_search(cfg, parsed)
    cfg["searchSpace"] = parsed.to_json()
    store.update_experiment(experiment_id, config=cfg, revision=exp.revision + 1)
    try:  # the copy beside the store, for people reading the folder
        parsed.dump(Path(exp.directory) / "search_space.json")
    except OSError:
        pass
    return parsed


def _parse_space(config: Mapping[str, Any], space: Any) -> Any:
    """``space`` as the experiment's tuner reads it: NNI's format, or any JSON for a tuner that declares
    ``free_form_search_space`` (a :class:`~nni_pl.space.FreeFormSpace`)."""
    from nni_pl.hpo._registry import declares_free_form_space
    from nni_pl.space import FreeFormSpace, SearchSpace

    for kind in ("tuner", "advisor"):
        algo = config.get(kind)
        if isinstance(algo, Mapping) and declares_free_form_space(
            kind, algo.get("name"), class_name=algo.get("className"), code_directory=algo.get("codeDirectory")
        ):
            return FreeFormSpace.parse(space)
    return SearchSpace.parse(space)


def _check_tuner_can_search(config: Mapping[str, Any], space: Any) -> None:
    """Refuse a space the experiment's tuner (or advisor) cannot search, naming the parameter."""
    from nni_pl.errors import ConfigError
    from nni_pl.hpo import Tuner, resolve_class

    for kind in ("tuner", "advisor"):
        algo = config.get(kind)
        if not isinstance(algo, Mapping):
            continue
        try:
            cls = resolve_class(
                kind,
                algo.get("name"),
                class_name=algo.get("className"),
                code_directory=algo.get("codeDirectory"),
                field=kind,
            )
        except (ConfigError, ImportError):
            return  # the manager has it loaded; it will judge the space itself
        if isinstance(cls, type) and issubclass(cls, Tuner):
            try:
                cls.check_search_space(space, name=algo.get("name") or cls.__name__)
            except SearchSpaceError as e:
                raise NniPlError(f"the new search space does not suit the tuner: {e}") from None


# --- trials ---------------------------------------------------------------------------------------------------


def kill_trial(
    store: st.Store, experiment_id: str, trial_id: str, *, manager_alive: bool, wait: float = 30.0
) -> str:
    """Stop one trial; returns its status afterwards.

    With a running manager the trial is marked ``stop_requested="user"`` and the manager terminates it (this
    waits up to ``wait`` seconds for it to end). Without one, its process group is sent SIGTERM and it is
    recorded ``USER_CANCELED`` (a trial the store still has waiting is found from its folder's ``.nni/pid``: a
    killed manager may have started it). A trial that never started (a waiting customised trial) is cancelled at
    once.
    """

    t = store.get_trial(experiment_id, trial_id)
    if t.finished:
        return t.status
    store.update_trial(experiment_id, t.trial_id, stop_requested="user")
    if t.status == st.WAITING and t.started_at is None and (t.sequence_id < 0 or not manager_alive):
        # a manager killed right after it started the trial had not recorded so yet: its folder says
        found = protocol.read_pid(Path(t.trial_dir)) if t.sequence_id >= 0 else None
        if found is None:  # not adopted by a manager yet, or never started: nothing runs, cancel it here
            store.update_trial(experiment_id, t.trial_id, status=st.USER_CANCELED, ended_at=time.time())
            return st.USER_CANCELED
        t.pid, t.pid_started_at = found
    if manager_alive:
        deadline = time.time() + wait
        while time.time() < deadline:
            status = store.get_trial(experiment_id, t.trial_id).status
            if status in st.FINISHED_STATUSES:
                return status
            time.sleep(0.1)
        return store.get_trial(experiment_id, t.trial_id).status
    if t.pid is not None and _alive(t.pid, t.pid_started_at):
        try:
            os.killpg(t.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    store.update_trial(experiment_id, t.trial_id, status=st.USER_CANCELED, ended_at=time.time())
    return st.USER_CANCELED


def add_trial(store: st.Store, experiment_id: str, parameters: Any) -> st.TrialRow:
    """Record a customised trial: ``parameters`` are checked against the search space first.

    The trial waits (``WAITING``) until the manager adopts it: at once when the experiment runs, at
    ``resume`` otherwise. It counts towards ``maxTrialNumber`` like any other trial, so adding one when the
    limit is reached is refused (raise the limit first, as with NNI).

    Raises:
        NniPlError: the parameters are not a dict, are outside the search space (the message names the
            parameter, echoes the value and says what is allowed), or ``maxTrialNumber`` is reached.
    """

    if isinstance(parameters, str):
        try:
            parameters = json.loads(parameters)
        except ValueError as e:
            raise NniPlError(
                f"the parameters must be a JSON object such as '{{\"lr\": 0.01}}', got {parameters!r}: {e}"
            ) from None
    if not isinstance(parameters, Mapping):
        raise NniPlError(
            f'the parameters must be a JSON object such as {{"lr": 0.01}}, got {type(parameters).__name__} {parameters!r}'
        )
    exp = store.get_experiment(experiment_id)
    space = _parse_space(exp.config, exp.config.get("searchSpace") or {})  # a free-form space checks nothing
    try:
        space.check(parameters)
    except SearchSpaceError as e:
        raise NniPlError(f"parameters {json.dumps(parameters)} do not fit the search space: {e}") from None
    trials = store.list_trials(experiment_id)
    limit = exp.config.get("maxTrialNumber")
    counted = sum(1 for t in trials if not t.requeue)
    if limit is not None and counted >= int(limit):
        raise NniPlError(
            f"maxTrialNumber ({limit}) is reached ({counted} trials); raise it first, e.g. "
            f"`nni-pl update {experiment_id} --max-trials {counted + 1}`"
        )
    taken_ids = {t.trial_id for t in trials}
    taken_seqs = {t.sequence_id for t in trials}
    directory = Path(exp.directory)
    for _ in range(20):
        tid = random_id(5)
        # a provisional sequence id below zero: the manager's own ids are >= 0, so an add never collides with
        # a trial the manager is creating at this moment; the manager renumbers it when it adopts it
        seq = -random_below(2**31 - 2) - 1
        if tid in taken_ids or seq in taken_seqs:
            continue
        row = st.TrialRow(
            experiment_id=experiment_id,
            trial_id=tid,
            sequence_id=seq,
            parameter_id=None,
            parameters=json.loads(json.dumps(dict(parameters))),
            trial_dir=str(directory / "trials" / tid),
            parameter_source=CUSTOMIZED,
            status=st.WAITING,
            submitted_at=time.time(),
        )
        try:
            store.add_trial(row)
        except StoreError:
            continue
        return row
    raise NniPlError(f"could not record a customised trial in experiment {experiment_id}; try again")


# --- stopping -------------------------------------------------------------------------------------------------------


def stop_experiment(store: st.Store, experiment_id: str, *, timeout: float = 60.0) -> bool:
    """Stop an experiment's manager (SIGTERM, it stops gracefully); returns whether one was running.

    Without a manager the experiment is marked STOPPED and the trials it left running are terminated. That
    record is a stop request too: a manager starting at this moment (before it wrote its pid) reads it and
    stops; one that wrote its pid meanwhile is signalled.
    """
    exp = store.get_experiment(experiment_id)
    if _signal_manager(store, exp, timeout):
        return True
    # no manager: end what it left running; resume will record them
    for t in store.list_trials(experiment_id, statuses=[st.RUNNING]):
        if t.pid is not None and _alive(t.pid, t.pid_started_at):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(t.pid, signal.SIGTERM)
    if exp.status == st.EXP_RUNNING:
        store.update_experiment(
            experiment_id,
            status=st.EXP_STOPPED,
            message="stopped while no manager was running",
            ended_at=time.time(),
        )
        if _signal_manager(store, store.get_experiment(experiment_id), timeout):
            return True  # a manager wrote its pid meanwhile; it may have read the store before the record
    return False


def _signal_manager(store: st.Store, exp: st.ExperimentRow, timeout: float) -> bool:
    """SIGTERM the experiment's manager on this host and wait until it has ended the experiment (it clears its
    pid then; a manager running in this very process does not exit)."""
    pid = exp.manager_pid
    if pid is None or exp.manager_host != socket.gethostname() or not locate.manager_alive(exp):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.time() + timeout
    while time.time() < deadline and _alive(pid, exp.manager_started_at):
        if store.get_experiment(exp.id).manager_pid != pid:
            break
        time.sleep(0.1)
    return True
