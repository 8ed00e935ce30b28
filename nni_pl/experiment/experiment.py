"""The Python API: NNI 2.5's ``Experiment`` and nni-pl's keyword style, over one store.

NNI's style: a blank config for a training platform, filled field by field, run with its dashboard on a port:

    >>> from nni_pl.experiment import Experiment
    >>> experiment = Experiment("local")
    >>> experiment.config.trial_command = "python3 mnist.py"
    >>> experiment.config.search_space = {"lr": {"_type": "loguniform", "_value": [1e-4, 0.1]}}
    >>> experiment.config.tuner.name = "TPE"
    >>> experiment.config.tuner.class_args["optimize_mode"] = "maximize"
    >>> experiment.config.max_trial_number = 10
    >>> experiment.run(8080)                                                       # doctest: +SKIP

nni-pl's keyword style, here with a Python function as the trial (each call in a pre-warmed worker):

    >>> def objective(params):
    ...     return -(params["x"] - 2) ** 2
    >>> exp = Experiment(trial=objective,
    ...                  search_space={"x": {"_type": "uniform", "_value": [-5, 5]}},
    ...                  tuner="TPE", max_trial_number=20, trial_concurrency=2)
    >>> exp.run()  # True: it ended DONE
    True
    >>> abs(exp.best_trial().parameters["x"] - 2) < 1
    True
    >>> exp.close()

Every start goes the same way: everything is checked first (config, tuner, port, GPUs), nothing is created
when a check fails; then the experiment's folder and store row are made (from this moment ``nni-pl stop ID``
works: a stop recorded before the manager runs is honoured when it starts); then the manager runs.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import string
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from nni_pl._ids import random_id
from nni_pl.errors import ConfigError, ExperimentNotFoundError, NniPlError
from nni_pl.experiment import _detached, _runtime, _setup, dashboard, locate
from nni_pl.experiment import store as st
from nni_pl.experiment._queries import _NniQueries
from nni_pl.experiment.config import AlgorithmConfig, ExperimentConfig
from nni_pl.experiment.control import stop_experiment
from nni_pl.experiment.manager import Manager, Snapshot
from nni_pl.training.platforms import PLATFORMS, UNAVAILABLE_PLATFORMS, ServiceSpec, create_service

__all__ = ["Experiment", "stop_experiment"]

logger = logging.getLogger(__name__)

_ID_CHARS = string.ascii_lowercase + string.digits


def _algorithm(value: Any, field: str) -> tuple[AlgorithmConfig | None, Any]:
    """A tuner/assessor given in the Python API: a name, a dict, an AlgorithmConfig or an instance."""
    if value is None:
        return None, None
    if isinstance(value, AlgorithmConfig):
        return value, None
    if isinstance(value, str):
        return AlgorithmConfig(name=value), None
    if isinstance(value, Mapping):
        return AlgorithmConfig.from_dict(dict(value), field, Path.cwd()), None
    # an instance (ours or an NNI-style tuner object)
    return AlgorithmConfig(class_name=f"{type(value).__module__}.{type(value).__qualname__}"), value


def _is_platform(value: Any) -> bool:
    """``Experiment('local')`` / ``Experiment(['local'])``: a training platform, not a config file."""
    if isinstance(value, (list, tuple)):
        return bool(value) and all(isinstance(v, str) for v in value)
    names = (*PLATFORMS, *UNAVAILABLE_PLATFORMS)
    return isinstance(value, str) and value in names and not Path(value).is_file()


class Experiment(_NniQueries):
    """An HPO experiment: created, run, stopped, resumed and inspected through the store.

    Args:
        config: a training platform (``'local'``, or a list of them) for a blank config to fill in as in NNI
            (``experiment.config.trial_command = ...``, checked when it starts); an :class:`ExperimentConfig`;
            a path to a YAML/JSON config; or a config dict.
        trial: a Python function to tune instead of a ``trialCommand`` (``fn(params)`` or ``fn()``), or its import
            path (``"package.module:fn"``): a function given by path is imported again by ``nni-pl resume``.
        id: the experiment id (default: 8 random characters, chosen now).
        preload: modules function-trial workers import once before their first trial.
        start_method: multiprocessing start method for function-trial workers.
        **fields: config fields in snake_case (``search_space``, ``tuner``, ``max_trial_number``, ...); they
            override ``config``. ``tuner``/``assessor`` may be a name (``"TPE"``), a dict
            (``{"name": "TPE", "classArgs": {...}}``) or an instance; so may ``advisor`` (``"Hyperband"``), which
            replaces the tuner.

    Example:
        >>> experiment = Experiment("local")
        >>> experiment.config.tuner.name = "Random"
        >>> experiment.config.trial_command = "python train.py"
        >>> experiment.run(8080)   # doctest: +SKIP
    """

    def __init__(
        self,
        config: ExperimentConfig | str | os.PathLike[str] | Mapping[str, Any] | list[str] | None = None,
        *,
        trial: Callable[..., Any] | str | None = None,
        id: str | None = None,
        preload: tuple[str, ...] | list[str] = (),
        start_method: str | None = None,
        **fields: Any,
    ) -> None:
        tuner_cfg, self._tuner_instance = _algorithm(fields.pop("tuner", None), "tuner")
        assessor_cfg, self._assessor_instance = _algorithm(fields.pop("assessor", None), "assessor")
        advisor_cfg, advisor_instance = _algorithm(fields.pop("advisor", None), "advisor")
        if advisor_instance is not None:
            self._tuner_instance = advisor_instance
        blank = _is_platform(config)
        if isinstance(config, ExperimentConfig):
            cfg = config
        elif blank:
            cfg = ExperimentConfig(config)  # type: ignore[arg-type]
        elif isinstance(config, (str, os.PathLike)):
            try:
                cfg = ExperimentConfig.load(config)
            except ConfigError as e:
                if os.sep in str(config) or Path(config).suffix or Path(config).exists():
                    raise
                platforms = ", ".join(repr(p) for p in PLATFORMS)
                raise ConfigError(
                    "", f"{e}; to configure the experiment in Python give a training platform ({platforms})"
                ) from None
        elif isinstance(config, Mapping):
            cfg = ExperimentConfig.from_dict(dict(config), function_trial=trial is not None)
        elif config is None:
            cfg = ExperimentConfig(trial_code_directory=Path.cwd())
        else:
            raise TypeError(
                f"Experiment() takes a training platform such as 'local', an ExperimentConfig, a config file or "
                f"a dict, got {type(config).__name__}"
            )
        changes: dict[str, Any] = {}
        for key, value in fields.items():
            if not hasattr(cfg, key) or key.startswith("_") or key == "config_file":
                raise TypeError(f"Experiment() got an unexpected keyword argument {key!r}")
            changes[key] = value
        if (
            self._tuner_instance is not None
            and cfg.tuner is not None
            and (cfg.tuner.name or cfg.tuner.class_name)
        ):
            # an instance runs now; the configured section stays in the stored config, for resume to rebuild
            tuner_cfg = None
        if tuner_cfg is not None:
            changes["tuner"] = tuner_cfg
        if assessor_cfg is not None:
            changes["assessor"] = assessor_cfg
        if advisor_cfg is not None:  # an advisor takes the tuner's place (NNI allows only one of them)
            changes["advisor"] = advisor_cfg
            if tuner_cfg is None:
                changes["tuner"] = None
        if getattr(type(self._tuner_instance), "free_form_search_space", False):
            from nni_pl.space import FreeFormSpace

            space = changes.get("search_space", cfg.search_space)
            if not isinstance(space, FreeFormSpace):  # the instance's class may not be importable by name
                changes["search_space"] = FreeFormSpace(space)
        if changes:
            cfg = cfg.replace(**changes)
        self._trial_path: str | None = None
        if isinstance(trial, str):  # by import path: stored as such, so `nni-pl resume` imports it again
            from nni_pl._imports import import_object

            self._trial_path, trial = trial, import_object(trial, "trial", what="function")
        if trial is not None and not callable(trial):
            raise TypeError(f"trial must be a function or its import path, got {type(trial).__name__}")
        # a blank config is filled in afterwards, as in NNI: it is checked when the experiment starts
        self.config = cfg if blank else cfg.validate(function_trial=trial is not None)
        self.trial = trial
        self.preload = tuple(preload)
        self.start_method = start_method
        self._id = id or random_id(8, _ID_CHARS)
        self._init_state()

    def _init_state(self) -> None:
        self._store: st.Store | None = None
        self._directory: Path | None = None
        self._manager: Manager | None = None
        self._resumed = False
        self._read_only = False
        self._fresh = False  # created by this object and never run: a failed start removes it
        self._prepared: tuple[Any, Any] | None = None
        self._budget_warnings: list[str] = []  # the tuner's, from the last _build_algorithms
        self._pending_service: Any = None
        self._requested_at: float | None = None  # a stop recorded after this moment is for this start
        self._previous: dict[str, Any] | None = None  # the stored state a failed resume goes back to
        self._stop_early = False  # a stop asked for before the manager existed
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None
        self._restore_sigterm: Callable[[], None] | None = None
        self._server: Any = None  # the read-only dashboard of view()
        self._announce = True  # print the dashboard URLs with their token (a detached manager's log must not)
        self.webui_url: str | None = None  # where the dashboard is served while the experiment runs
        self.webui_urls: list[str] = []  # every address to open it at (several when bound to all interfaces)
        self.webui_error: str | None = None  # why it is not, when it was asked for
        self.port: int | None = None  # the dashboard's port while it is served (NNI's ``experiment.port``)

    # --- identity ----------------------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._id

    @property
    def created(self) -> bool:
        """Whether the experiment exists (folder and store row): after :meth:`prepare`, a run, or when loaded."""
        return self._store is not None

    @property
    def directory(self) -> Path:
        if self._directory is None:
            raise NniPlError("the experiment has not been created yet; call run() or start()")
        return self._directory

    @property
    def store(self) -> st.Store:
        if self._store is None:
            raise NniPlError("the experiment has not been created yet; call run() or start()")
        return self._store

    # --- checking and creating ----------------------------------------------------------------------------------
    def _build_algorithms(self) -> tuple[Any, Any]:
        """The tuner (or advisor) and assessor, built and checked against the search space; the tuner is
        told the experiment's budget (its warnings are kept for :meth:`_prepare` to show)."""
        tuner, assessor = _setup.build_algorithms(self.config, self._tuner_instance, self._assessor_instance)
        self._budget_warnings = _setup.check_budget(self.config, tuner)
        return tuner, assessor

    def _check_resources(self) -> None:
        """What the trials need must exist here: the GPUs of ``trialGpuNumber``, a function workers can run."""
        cfg = self.config
        if self.trial is not None and self._runs_here():
            from nni_pl.training.functions import FunctionTrainingService

            # built (not started) now: a function that cannot reach a worker fails before anything exists
            self._pending_service = FunctionTrainingService(
                self.trial,
                concurrency=cfg.trial_concurrency,
                preload=self.preload,
                start_method=self.start_method,
            )
            return
        _setup.check_gpus(cfg)
        preflight = getattr(cfg.training_service, "preflight", None)
        if callable(preflight):  # e.g. a remote section: its secrets can be had, its known-hosts file exists
            preflight()
        if not self._runs_here():
            # hosts are reached, checked and sent the code now: an unreachable host, a failed login or a code
            # folder over the limits fails before anything exists
            if self._pending_service is not None:
                self._pending_service.shutdown()
            self._pending_service = create_service(self._spec(Path.cwd()))

    def _runs_here(self) -> bool:
        """Whether no trial runs on another machine: a section that reaches hosts (``platform: remote``, also
        inside a hybrid list) declares ``reaches_hosts``; its service is built, and the hosts checked, before the
        experiment exists, and function trials run there by import path."""
        section = self.config.training_service
        sections = getattr(section, "services", None) or [section]
        return not any(getattr(s, "reaches_hosts", False) for s in sections)

    def _function_import_path(self) -> str | None:
        """The trial function as ``module:qualname``, for services that import it where they run it."""
        if self.trial is None:
            return None
        if self._trial_path is not None:
            return self._trial_path
        module, name = getattr(self.trial, "__module__", None), getattr(self.trial, "__qualname__", "")
        if not module or module == "__main__" or "<locals>" in name or "<lambda>" in name:
            raise ConfigError(
                "trial",
                f"{getattr(self.trial, '__qualname__', self.trial)!r} is defined in {module or 'no module'}; on "
                f"platform {getattr(self.config.training_service, 'platform', '?')!r} a function trial is imported "
                "on the hosts, so it must live in a module importable there: pass it as "
                "trial='package.module:function'",
            )
        return f"{module}:{name}"

    def _spec(self, directory: Path) -> ServiceSpec:
        cfg = self.config
        # useAnnotation: trials run in the rewritten copy, which reads its own parameters (no --model.x args)
        annotated = cfg.use_annotation and self.trial is None
        return ServiceSpec(
            section=cfg.training_service,
            trial_command=cfg.trial_command,
            trial_code_directory=_setup.trial_code_directory(cfg, self._directory, str(self._id))
            if annotated
            else cfg.trial_code_directory,
            experiment_directory=directory,
            trial_concurrency=cfg.trial_concurrency,
            trial_gpu_number=cfg.trial_gpu_number,
            lightning_cli=False if annotated and cfg.lightning_cli == "auto" else cfg.lightning_cli,
            trial_function=self._function_import_path(),
            resumed=self._resumed,
            experiment_id=str(self._id),
            store_url=cfg.store_url,
        )

    def prepare(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        token: str | None = None,
        detach: bool = False,
        debug: bool = False,
    ) -> None:
        """Check everything, then create the experiment (its folder and store row) without starting it.

        :meth:`run` and :meth:`start` do this themselves; call it first to know the experiment exists before
        it runs (the command line announces the id only then). ``nni-pl stop ID`` from this moment stops the
        run that follows before its first trial. Arguments are those of :meth:`run`.

        Raises:
            ConfigError, NniPlError: something is wrong; nothing was created.
        """
        self._prepare({"port": port, "host": host, "token": token}, detach=detach, debug=debug)

    def _prepare(
        self, webui: Mapping[str, Any], *, detach: bool = False, debug: bool = False
    ) -> tuple[Any, Any]:
        if self._prepared is not None:
            return self._prepared
        if self._read_only:
            raise NniPlError(f"experiment {self.id} was opened read-only (view); resume it to run it")
        function_trial = self.trial is not None
        if detach and function_trial:
            raise NniPlError(
                "function-trial experiments run in the calling process; detach needs a trialCommand"
            )
        self.config.validate(function_trial=function_trial)
        if debug:
            self.config.debug, self.config.log_level = True, "debug"
        _setup.check_webui(webui.get("port"), webui.get("host", "127.0.0.1"), webui.get("token"))
        tuner, assessor = self._build_algorithms()  # invalid names/classArgs fail before anything is created
        # settings that are degenerate for maxTrialNumber: shown once per launch
        for message in self._budget_warnings:
            _setup.warn_user(message)
        self._check_resources()
        requested = time.time()
        try:
            if self._store is None:
                _setup.check_new_id(str(self._id), self.config)
                self._create()
                self._fresh = True
            else:
                self._claim()
        except BaseException:
            if self._pending_service is not None and not self._runs_here():  # its SSH connections, say
                self._pending_service.shutdown()
                self._pending_service = None
            raise
        self._requested_at = requested
        self._stop_early = False
        self._prepared = (tuner, assessor)
        return self._prepared

    def _create(self) -> None:
        """Make the folder, the store row and the index entry (``NasExperiment`` adds its spec after this)."""
        self._store, self._directory = _setup.create(self.config, str(self._id), self.trial, self._trial_path)

    def _claim(self) -> None:
        """Start an experiment that exists (resume, or run again): it must not run already; mark it RUNNING
        so that a stop from now on is recorded, remembering what to go back to if the start fails."""
        exp = self.store.get_experiment(self.id)
        mine = exp.manager_pid == os.getpid() and (self._manager is not None or self._thread_alive())
        if (
            exp.status == st.EXP_RUNNING
            and locate.manager_alive(exp)
            and (exp.manager_pid != os.getpid() or mine)
        ):
            raise NniPlError(
                f"experiment {exp.id} is already running (manager pid {exp.manager_pid}); stop it first"
            )
        self._previous = {"status": exp.status, "message": exp.message, "ended_at": exp.ended_at}
        self._fresh = False  # it exists from before: a failed start puts it back, never removes it
        self.store.update_experiment(self.id, status=st.EXP_RUNNING)

    def _abort_start(self) -> None:
        """The manager did not come up: leave nothing half-made (a fresh experiment is removed, a resumed one
        goes back to how it was), unless another manager runs it now."""
        try:
            exp = self.store.get_experiment(self.id)
            if exp.manager_pid not in (None, os.getpid()) and locate.manager_alive(exp):
                return  # a racing start won: the experiment is running, leave it be
            if self._fresh:
                self._discard()
                return
            values: dict[str, Any] = {"manager_pid": None}
            if self._previous is not None:
                values.update(self._previous)
            self.store.update_experiment(self.id, **values)
        except Exception:  # cleaning up must not hide why the start failed
            logger.debug("cleaning up after a failed start failed", exc_info=True)

    def _discard(self) -> None:
        """Remove an experiment that never ran: its folder, its index entry and its store row."""
        store, directory = self._store, self._directory
        self._store = self._directory = None
        self._fresh = False
        _setup.discard(store, directory, self.id, shared=self.config.store_url is not None)

    def _service(self) -> Any:
        cfg = self.config
        if self._pending_service is not None and not self._runs_here():
            service, self._pending_service = self._pending_service, None
            return service
        if self.trial is not None and self._runs_here():
            from nni_pl.training.functions import FunctionTrainingService

            service = self._pending_service or FunctionTrainingService(
                self.trial,
                concurrency=cfg.trial_concurrency,
                preload=self.preload,
                start_method=self.start_method,
            )
            self._pending_service = None
            service.start()
            return service
        return create_service(self._spec(self.directory))

    # --- running -------------------------------------------------------------------------------------------------
    def run(
        self,
        port: int | None = None,
        wait_completion: bool = True,
        debug: bool = False,
        *,
        display: bool | None = None,
        detach: bool = False,
        host: str = "127.0.0.1",
        token: str | None = None,
    ) -> bool | None:
        """Run until done (NNI's ``run``); Ctrl-C stops gracefully and leaves the experiment resumable.

        Args:
            port: serve the web dashboard while the experiment runs, on this port (a free one when it is
                taken; 0: any free port); ``None``: no dashboard. Its addresses are :attr:`webui_urls`, printed
                on stderr; ``nni-pl webui ID`` prints them too. Needs ``pip install 'nni-pl[webui]'``; without it
                the experiment runs without a dashboard.
            wait_completion: ``False``: start it in the background and return at once, as :meth:`start`.
            debug: log at debug level (``log/manager.log``).
            display: show the live terminal view (default: when stdout is a terminal).
            detach: start the manager as a background process that outlives this one (command trials only).
            host: the address the dashboard binds (loopback by default); another one needs a token.
            token: the token the dashboard requires (generated when ``host`` is not loopback and none given).

        Returns:
            ``True`` when the experiment ended DONE or STOPPED, ``False`` on ERROR; ``None`` when it was only
            started (``wait_completion=False`` or ``detach``).

        Raises:
            ConfigError, NniPlError: the config, the tuner, the port or the GPUs are wrong; nothing was created.
        """
        if not wait_completion and not detach:
            self.start(port, debug, host=host, token=token)
            return None
        webui = {"port": port, "host": host, "token": token}
        tuner, assessor = self._prepare(webui, detach=detach, debug=debug)
        self._prepared = None
        if detach:
            self._detach(**webui)
            return None
        status = self._run_manager(
            tuner, assessor, display=sys.stdout.isatty() if display is None else display, webui=webui
        )
        return status in (st.EXP_DONE, st.EXP_STOPPED)

    def start(
        self,
        port: int | None = None,
        debug: bool = False,
        *,
        host: str = "127.0.0.1",
        token: str | None = None,
        timeout: float = 300.0,
    ) -> None:
        """Start the experiment in the background of this process and return once it runs (NNI's ``start``).

        :meth:`stop` ends it, and so does the end of the Python process; meanwhile :meth:`get_status`,
        :meth:`export_data`, the ``update_*`` methods and the command line see and steer it. Arguments are
        those of :meth:`run`.

        Raises:
            ConfigError, NniPlError: as :meth:`run`; also when it failed to start (the message says why).
        """
        if self._thread_alive():
            raise NniPlError(f"experiment {self.id} is running already; stop() it first")
        webui = {"port": port, "host": host, "token": token}
        tuner, assessor = self._prepare(webui, debug=debug)
        self._prepared = None
        up = threading.Event()
        self._thread_error = None

        def target() -> None:
            try:
                self._run_manager(tuner, assessor, display=False, webui=webui, up=up)
            except BaseException as e:  # kept for start() (before it runs) and for stop()
                self._thread_error = e
            finally:
                up.set()

        self._thread = threading.Thread(target=target, name=f"nni-pl-experiment-{self.id}", daemon=True)
        self._restore_sigterm = _runtime.sigterm_while(self._thread_alive, self._request_stop)
        self._thread.start()
        atexit.register(self._stop_at_exit)
        up.wait(timeout)
        error = self._thread_error
        if error is not None and not self._thread_alive():
            self._after_background()
            if isinstance(error, NniPlError):
                raise error
            raise NniPlError(
                f"experiment {self.id} did not start: {type(error).__name__}: {error}"
            ) from error

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _after_background(self) -> None:
        with contextlib.suppress(ValueError):
            atexit.unregister(self._stop_at_exit)
        if self._restore_sigterm is not None:
            self._restore_sigterm()
            self._restore_sigterm = None

    def _stop_at_exit(self) -> None:
        if self._thread_alive():
            self.stop()

    def _detach(self, *, port: int | None = None, host: str = "127.0.0.1", token: str | None = None) -> None:
        """Run the manager as a background process; return once it is up (or raise, leaving nothing behind)."""
        if self._pending_service is not None:  # checked the hosts; the background manager connects by itself
            self._pending_service.hand_over()
            self._pending_service = None
        try:
            started = _detached.spawn(
                self.store,
                self.id,
                self.directory,
                requested_at=self._requested_at or time.time(),
                port=port,
                host=host,
                token=token,
                section=self.config.training_service,
            )
        except BaseException:
            self._abort_start()
            raise
        self._fresh = False  # its manager ran: from now on it is an experiment to keep
        info = started.webui
        if info is not None:
            self.webui_url, self.webui_error = info["url"], info.get("error")
            self.webui_urls = list(info.get("urls") or ([info["url"]] if info["url"] else []))
            self.port = info.get("port")

    @contextlib.contextmanager
    def _webui(self, port: int | None, host: str, token: str | None) -> Iterator[None]:
        """Serve the dashboard while the manager runs, through the dashboard plug-in (never fails the run)."""
        if port is None:
            yield
            return
        with dashboard.hosted(
            store=self.store,
            experiment_id=self.id,
            directory=self.directory,
            port=port,
            host=host,
            token=token,
            workdir=self.config.experiment_working_directory,
            stop_hook=self._request_stop,
            announce=self._announce,
        ) as info:
            self.webui_url, self.webui_urls, self.port = info.url, list(info.urls), info.port
            self.webui_error = info.error
            try:
                yield
            finally:
                self.port = None

    def _stop_recorded(self) -> bool:
        """Whether ``nni-pl stop`` recorded a stop for this start before its manager was there to signal."""
        if self._requested_at is None:
            return False
        exp = self.store.get_experiment(self.id)
        return (
            exp.status == st.EXP_STOPPED and exp.ended_at is not None and exp.ended_at >= self._requested_at
        )

    def _request_stop(self) -> None:
        manager = self._manager
        if manager is not None:
            manager.request_stop("user")
        else:
            self._stop_early = True

    def _run_manager(
        self,
        tuner: Any,
        assessor: Any,
        *,
        display: bool,
        webui: Mapping[str, Any] | None = None,
        up: threading.Event | None = None,
    ) -> str:
        with (
            _runtime.manager_lock(self.directory, self.id),
            _runtime.log_file(self.directory, self.config.log_level),
        ):
            from nni_pl.training.process import process_start_time

            restore = _runtime.stop_signals(self._request_stop)
            live: Any = None
            try:
                pid = os.getpid()
                # signals are handled from here on: `nni-pl stop` may find this pid and send SIGTERM at once
                self.store.update_experiment(
                    self.id,
                    manager_pid=pid,
                    manager_host=socket.gethostname(),
                    manager_started_at=process_start_time(pid),
                )
                if self._stop_early or self._stop_recorded():
                    return self._stopped_before_start()
                service = None
                try:
                    service = self._service()

                    def on_update(s: Snapshot) -> None:
                        if live is not None:
                            from nni_pl.experiment.display import render_snapshot

                            live.update(render_snapshot(s), refresh=True)

                    manager = Manager(
                        store=self.store,
                        experiment_id=self.id,
                        config=self.config,
                        directory=self.directory,
                        service=service,
                        tuner=tuner,
                        assessor=assessor,
                        resumed=self._resumed,
                        on_update=on_update if display else None,
                    )
                except BaseException:
                    if service is not None:
                        service.shutdown()
                    self._abort_start()
                    raise
                self._manager = manager
                self._fresh = False
                if self._stop_early:
                    manager.request_stop("user")
                webui = webui or {}
                with self._webui(webui.get("port"), webui.get("host", "127.0.0.1"), webui.get("token")):
                    if up is not None:
                        up.set()
                    if display:  # after the dashboard's address is printed
                        from rich.live import Live

                        live = Live(refresh_per_second=4, transient=False, auto_refresh=False)
                        live.start()
                    return manager.run()
            finally:
                restore()
                if live is not None:
                    live.stop()
                self._manager = None

    def _stopped_before_start(self) -> str:
        self.store.update_experiment(
            self.id,
            status=st.EXP_STOPPED,
            manager_pid=None,
            message="stopped before its first trial",
            ended_at=time.time(),
        )
        self._fresh = False
        logger.info("experiment %s stopped before its first trial", self.id)
        return st.EXP_STOPPED

    def stop(self) -> None:
        """Stop the experiment gracefully (NNI's ``stop``): the one this object started or runs, a connected or
        detached one through its manager, or the dashboard of :meth:`view`. It stays resumable."""
        logger.info("Stopping experiment, please wait...")
        if self._server is not None:
            self._server.stop()
            self._server = None
            self.port = None
        if self._thread is not None:
            self._request_stop()
            self._thread.join()
            self._thread = None
            self._after_background()
        elif self._manager is not None:
            self._request_stop()  # run() in another thread of this process
        elif self._store is not None and not self._read_only:
            stop_experiment(self.store, self.id)
        logger.info("Experiment stopped")

    # --- resuming, viewing, connecting ------------------------------------------------------------------------------
    @classmethod
    def resume(
        cls,
        experiment_id: str,
        port: int | None = None,
        wait_completion: bool | None = None,
        debug: bool = False,
        *,
        trial: Callable[..., Any] | str | None = None,
        working_directory: str | Path | None = None,
        store_url: str | None = None,
        tuner: Any = None,
        preload: tuple[str, ...] | list[str] = (),
        start_method: str | None = None,
    ) -> Experiment:
        """Continue a stopped (or killed) experiment to its limits.

        NNI's form ``Experiment.resume(id, 8080)`` runs it at once with its dashboard on the port, until done
        (``wait_completion=False``: started in the background, as :meth:`start`). Without ``port`` and
        ``wait_completion`` the experiment is only loaded: call :meth:`run` (or :meth:`start`) to continue it.

        Args:
            experiment_id: its id (or a unique prefix).
            port, wait_completion, debug: as for :meth:`run`.
            trial: the function of an experiment that tunes a Python function.
            working_directory, store_url: where to look for it (default: the index and ``$NNI_PL_HOME``).
            tuner: a tuner instance to use instead of the stored tuner.
            preload, start_method: as for a new experiment.

        Returns:
            The experiment (after its run, when it ran).
        """
        located = locate.find(experiment_id, working_directory=working_directory, store_url=store_url)
        self = cls._from_located(located, trial=trial, tuner=tuner)
        self.preload, self.start_method = tuple(preload), start_method
        if port is None and wait_completion is None and not debug:
            return self
        if wait_completion is False:
            self.start(port, debug)
        else:
            self.run(port, debug=debug)
        return self

    @classmethod
    def _from_located(
        cls, located: locate.Located, *, trial: Callable[..., Any] | str | None = None, tuner: Any = None
    ) -> Experiment:
        exp = located.experiment
        if locate.manager_alive(exp) and exp.status == st.EXP_RUNNING and exp.manager_pid != os.getpid():
            raise NniPlError(f"experiment {exp.id} is still running (manager pid {exp.manager_pid})")
        stored = dict(exp.config)
        function_name = stored.pop("trialFunction", None)
        by_path = stored.pop("trialFunctionImport", False)
        if function_name and trial is None and by_path:
            trial = function_name  # given by import path: imported again (the command line can resume it too)
        if function_name and trial is None:
            raise NniPlError(
                f"experiment {exp.id} tunes the function {function_name}; resume it from Python: "
                f"Experiment.resume({exp.id!r}, trial={function_name.rsplit('.', 1)[-1]})"
            )
        cfg = ExperimentConfig.from_stored(stored)
        self = cls(cfg, trial=trial, id=exp.id, tuner=tuner)
        self._store, self._directory = located.store, located.directory
        self._resumed = True
        return self

    @classmethod
    def _attached(cls, located: locate.Located, *, read_only: bool) -> Experiment:
        """An object for an experiment that runs elsewhere or not at all: it reads and steers the store."""
        self = cls.__new__(cls)
        self.config = ExperimentConfig.from_stored(located.experiment.config)
        self.trial, self._trial_path = None, None
        self.preload, self.start_method = (), None
        self._id = located.experiment.id
        self._tuner_instance = self._assessor_instance = None
        self._init_state()
        self._store, self._directory = located.store, located.directory
        self._read_only = read_only
        return self

    @classmethod
    def view(
        cls,
        experiment_id: str,
        port: int | None = None,
        wait_completion: bool | None = None,
        *,
        non_blocking: bool | None = None,
        working_directory: str | Path | None = None,
        store_url: str | None = None,
        host: str = "127.0.0.1",
        token: str | None = None,
    ) -> Experiment:
        """Open an experiment read-only, for its results; with ``port``, also serve its dashboard (NNI's ``view``).

        With a port the dashboard is served until Ctrl-C (``wait_completion=False`` or NNI 3's
        ``non_blocking=True``: in the background until :meth:`stop`). Without one nothing is served.

        Raises:
            ExperimentNotFoundError: no such experiment.
            MissingDependencyError: a port was given but FastAPI/uvicorn are not installed.
        """
        located = locate.find(experiment_id, working_directory=working_directory, store_url=store_url)
        self = cls._attached(located, read_only=True)
        if port is None and wait_completion is None and non_blocking is None:
            return self
        blocking = (not non_blocking) if non_blocking is not None else wait_completion is not False
        self._serve_read_only(8080 if port is None else port, host, token)
        if blocking:
            try:
                self._server.wait()
            except KeyboardInterrupt:
                pass
            finally:
                self.stop()
        return self

    def _serve_read_only(self, port: int, host: str, token: str | None) -> None:
        _setup.check_webui(port, host, token)
        server = dashboard.serve_read_only(self.store.url, self.id, port=port, host=host, token=token)
        self._server = server
        self.webui_url, self.webui_urls, self.port = server.url, server.urls, server.port

    @classmethod
    def connect(
        cls, port: int, *, working_directory: str | Path | None = None, store_url: str | None = None
    ) -> Experiment:
        """The running experiment whose dashboard is on ``port`` (NNI's ``connect``), to watch and steer it:
        :meth:`get_status`, :meth:`export_data`, ``update_*``, :meth:`stop`.

        Raises:
            ExperimentNotFoundError: no running experiment serves its dashboard on that port.
        """
        found: locate.Located | None = None
        opened: list[st.Store] = []
        for loc in locate.iter_experiments(working_directory=working_directory, store_url=store_url):
            exp = loc.experiment
            if (
                found is None
                and exp.port == port
                and exp.status == st.EXP_RUNNING
                and locate.manager_alive(exp)
            ):
                found = loc
            elif all(loc.store is not s for s in opened):
                opened.append(loc.store)
        for s in opened:
            if found is None or s is not found.store:
                s.close()
        if found is None:
            raise ExperimentNotFoundError(
                f"no running experiment serves its dashboard on port {port}; `nni-pl list` shows the running ones"
            )
        self = cls._attached(found, read_only=False)
        self.port = port
        logger.info(
            "Connect to port %d success, experiment id is %s, status is %s.", port, self.id, self.get_status()
        )
        return self

    # --- results ---------------------------------------------------------------------------------------------------------
    def get_status(self) -> str:
        """``RUNNING``, ``DONE``, ``STOPPED``, ``ERROR``, or ``INTERRUPTED`` (its manager died: resume it)."""
        return locate.shown_status(self.store.get_experiment(self.id))

    def trials(self, statuses: list[str] | None = None) -> list[st.TrialRow]:
        return self.store.list_trials(self.id, statuses=statuses)

    def best_trial(self) -> st.TrialRow | None:
        best = self.store.best_trials(self.id, optimize_mode=self.config.optimize_mode, limit=1)
        return best[0] if best else None

    def close(self) -> None:
        if self._server is not None:
            self.stop()
        if self._store is not None:
            self._store.close()
