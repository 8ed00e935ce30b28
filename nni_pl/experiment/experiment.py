"""The Python API: ``Experiment(config).run()`` for command trials, ``Experiment(trial=fn, ...)`` for functions.

Example (a function trial, each call in a pre-warmed worker):

    >>> from nni_pl.experiment import Experiment
    >>> def objective(params):
    ...     return -(params["x"] - 2) ** 2
    >>> exp = Experiment(trial=objective,
    ...                  search_space={"x": {"_type": "uniform", "_value": [-5, 5]}},
    ...                  tuner="TPE", max_trial_number=20, trial_concurrency=2)   # doctest: +SKIP
    >>> exp.run()                                                                 # doctest: +SKIP
    >>> exp.best_trial().parameters                                               # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import logging
import os
import secrets
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from nni_pl._files import dump_yaml
from nni_pl.errors import ConfigError, NniPlError, SearchSpaceError
from nni_pl.experiment import _locate
from nni_pl.experiment import store as st
from nni_pl.experiment.config import AlgorithmConfig, ExperimentConfig, LocalConfig, parse_duration
from nni_pl.experiment.manager import Manager, Snapshot

__all__ = ["Experiment"]

logger = logging.getLogger(__name__)

_ID_CHARS = string.ascii_lowercase + string.digits
# trial functions that ship with nni-pl, as stored under "trialFunction" -> where to import them from
_BUILTIN_TRIAL_FUNCTIONS = {"nni_pl.nas._trial.function_trial": "nni_pl.nas._trial:function_trial"}
_LOG_LEVELS = {
    "trace": 5,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}


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


class Experiment:
    """An HPO experiment: created, run, stopped, resumed and inspected through the store.

    Args:
        config: an :class:`ExperimentConfig`, a path to a YAML/JSON config, or a config dict.
        trial: a Python function to tune instead of a ``trialCommand`` (``fn(params)`` or ``fn()``).
        search_space, tuner, assessor, advisor, trial_concurrency, max_trial_number, max_experiment_duration,
        max_trial_duration, experiment_name, experiment_working_directory, store_url, trial_gpu_number:
            config fields in snake_case; they override ``config``. ``tuner``/``assessor`` may be a name
            (``"TPE"``), a dict (``{"name": "TPE", "classArgs": {...}}``) or an instance; so may ``advisor``
            (``"Hyperband"``), which replaces the tuner.
        id: the experiment id (default: 8 random characters, chosen now).
        preload: modules function-trial workers import once before their first trial.
        start_method: multiprocessing start method for function-trial workers.
    """

    def __init__(
        self,
        config: ExperimentConfig | str | os.PathLike[str] | Mapping[str, Any] | None = None,
        *,
        trial: Callable[..., Any] | None = None,
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
        if isinstance(config, ExperimentConfig):
            cfg = config
        elif isinstance(config, (str, os.PathLike)):
            cfg = ExperimentConfig.load(config)
        elif isinstance(config, Mapping):
            cfg = ExperimentConfig.from_dict(dict(config), function_trial=trial is not None)
        else:
            cfg = ExperimentConfig(trial_code_directory=Path.cwd())
        changes: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "search_space":
                try:
                    from nni_pl.space import SearchSpace

                    value = SearchSpace.parse(value)
                except SearchSpaceError as e:
                    raise ConfigError("searchSpace", str(e)) from e
            elif key in ("max_experiment_duration", "max_trial_duration"):
                value = parse_duration(value, key)
            elif key in ("experiment_working_directory", "trial_code_directory"):
                value = Path(value).expanduser().resolve()
            elif not hasattr(cfg, key) or key == "config_file":
                raise TypeError(f"Experiment() got an unexpected keyword argument {key!r}")
            changes[key] = value
        if tuner_cfg is not None:
            changes["tuner"] = tuner_cfg
        if assessor_cfg is not None:
            changes["assessor"] = assessor_cfg
        if advisor_cfg is not None:  # an advisor takes the tuner's place (NNI allows only one of them)
            changes["advisor"] = advisor_cfg
            if tuner_cfg is None:
                changes["tuner"] = None
        if changes:
            cfg = cfg.replace(**changes)
        self.config = cfg.validate(function_trial=trial is not None)
        if trial is not None and not callable(trial):
            raise TypeError(f"trial must be a function, got {type(trial).__name__}")
        self.trial = trial
        self.preload = tuple(preload)
        self.start_method = start_method
        self._id = id or "".join(secrets.choice(_ID_CHARS) for _ in range(8))
        self._store: st.Store | None = None
        self._directory: Path | None = None
        self._manager: Manager | None = None
        self._resumed = False
        self.webui_url: str | None = None  # where the dashboard is served while the experiment runs
        self.webui_error: str | None = None  # why it is not, when it was asked for

    # --- identity ----------------------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._id

    @property
    def directory(self) -> Path:
        if self._directory is None:
            raise NniPlError("the experiment has not been created yet; call run()")
        return self._directory

    @property
    def store(self) -> st.Store:
        if self._store is None:
            raise NniPlError("the experiment has not been created yet; call run()")
        return self._store

    # --- creating -----------------------------------------------------------------------------------------------
    def _build_algorithms(self) -> tuple[Any, Any]:
        from nni_pl.hpo._base import Tuner
        from nni_pl.hpo._registry import create_algorithm, resolve_class

        cfg = self.config
        algo = cfg.tuner or cfg.advisor
        kind = "tuner" if cfg.tuner else "advisor"
        assert algo is not None
        if self._tuner_instance is not None:
            tuner = self._tuner_instance
        else:
            class_args = dict(algo.class_args)
            if cfg.trial_concurrency > 1 and "parallel_optimize" not in class_args:
                cls = resolve_class(
                    kind,
                    algo.name,
                    class_name=algo.class_name,
                    code_directory=algo.code_directory,
                    field=kind,
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
        if isinstance(tuner, Tuner):
            type(tuner).check_search_space(cfg.search_space, name=algo.name or type(tuner).__name__)
        assessor = self._assessor_instance
        if cfg.assessor is not None and not getattr(type(tuner), "accepts_assessor", True):
            raise ConfigError(
                "assessor",
                f"{algo.name or type(tuner).__name__} runs its trials as generations; an assessor cannot be used with it, remove it",
            )
        if assessor is None and cfg.assessor is not None:
            a = cfg.assessor
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

    def _create(self) -> None:
        cfg = self.config
        exp_id = str(self._id)
        directory = cfg.experiment_working_directory / exp_id
        if directory.exists() and (directory / "store.sqlite").exists():
            raise ConfigError(
                "id", f"an experiment {exp_id!r} already exists in {directory}; resume it or pick another id"
            )
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "trials").mkdir(exist_ok=True)
        (directory / "log").mkdir(exist_ok=True)
        url = cfg.store_url or st.sqlite_url(directory / "store.sqlite")
        store = st.Store(url)
        stored = cfg.to_dict()
        if self.trial is not None:
            stored["trialFunction"] = (
                f"{getattr(self.trial, '__module__', '?')}.{getattr(self.trial, '__qualname__', repr(self.trial))}"
            )
        store.create_experiment(
            id=exp_id,
            name=cfg.experiment_name,
            config=stored,
            directory=str(directory),
            status=st.EXP_RUNNING,
        )
        (directory / "config.yml").write_text(
            dump_yaml({k: v for k, v in stored.items() if k != "searchSpace"}), encoding="utf-8"
        )
        cfg.search_space.dump(directory / "search_space.json")
        _locate.register(exp_id, directory, url)
        self._id, self._store, self._directory = exp_id, store, directory

    def _service(self) -> Any:
        cfg = self.config
        if self.trial is not None:
            from nni_pl.training.functions import FunctionTrainingService

            service = FunctionTrainingService(
                self.trial,
                concurrency=cfg.trial_concurrency,
                preload=self.preload,
                start_method=self.start_method,
            )
            service.start()
            return service
        from nni_pl.training._cli_args import lightning_cli_args
        from nni_pl.training.cgo import service_for
        from nni_pl.training.local import LocalTrainingService

        cgo = service_for(self.directory / "nas.json", self.directory, cfg)  # NasExperiment(execution="cgo")
        if cgo is not None:
            return cgo

        ts = cfg.training_service
        assert isinstance(ts, LocalConfig)
        mode = cfg.lightning_cli
        assert cfg.trial_command is not None
        return LocalTrainingService(
            command=cfg.trial_command,
            code_directory=cfg.trial_code_directory,
            concurrency=cfg.trial_concurrency,
            gpu_number=cfg.trial_gpu_number,
            gpu_indices=ts.gpu_indices,
            max_trial_number_per_gpu=ts.max_trial_number_per_gpu,
            use_active_gpu=ts.use_active_gpu,
            extra_args=lambda params: lightning_cli_args(params, mode),
        )

    # --- running -------------------------------------------------------------------------------------------------
    def run(
        self,
        *,
        display: bool | None = None,
        detach: bool = False,
        port: int | None = None,
        host: str = "127.0.0.1",
        token: str | None = None,
    ) -> Experiment:
        """Run until done (or Ctrl-C, which stops gracefully and leaves the experiment resumable).

        Args:
            display: show the live terminal view (default: when stdout is a terminal).
            detach: start the manager in the background and return at once (command trials only).
            port: serve the web dashboard while the experiment runs, on this port (a free one when it is
                taken; 0: any free port); ``None``: no dashboard. Its address is :attr:`webui_url`, printed on
                stderr, and ``nni-pl webui ID`` prints it too. Needs ``pip install 'nni-pl[webui]'``; without it
                the experiment runs without a dashboard.
            host: the address the dashboard binds (loopback by default); another one needs a token.
            token: the token the dashboard requires (generated when ``host`` is not loopback and none given).
        """
        tuner, assessor = self._build_algorithms()  # invalid names/classArgs fail before anything is created
        if self._store is None:
            self._create()
        webui = {"port": port, "host": host, "token": token}
        if detach:
            self._detach(**webui)
            return self
        self._run_manager(
            tuner, assessor, display=sys.stdout.isatty() if display is None else display, webui=webui
        )
        return self

    def _detach(self, *, port: int | None = None, host: str = "127.0.0.1", token: str | None = None) -> None:
        if self.trial is not None:
            raise NniPlError(
                "function-trial experiments run in the calling process; detach needs a trialCommand"
            )
        from nni_pl.webui import server as webui_server

        log = self.directory / "log" / "manager.out"
        env = dict(os.environ)
        argv = [sys.executable, "-m", "nni_pl.experiment._daemon", self.store.url, self.id]
        if port is not None:
            argv += ["--port", str(port), "--host", host]
            if token is not None:
                env["NNI_PL_WEBUI_TOKEN"] = token  # not on the command line, where `ps` shows it
        webui_server.remove_url_file(self.directory)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        deadline = time.time() + 60
        while time.time() < deadline:
            exp = self.store.get_experiment(self.id)
            if exp.manager_pid == proc.pid:
                if port is not None:
                    self._wait_for_webui(proc)
                return
            if proc.poll() is not None:
                tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise NniPlError(f"the experiment manager exited at start (code {proc.returncode}):\n{tail}")
            time.sleep(0.05)
        raise NniPlError(f"the experiment manager did not start within 60 s; see {log}")

    def _wait_for_webui(self, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
        from nni_pl.webui import server as webui_server

        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            info = webui_server.read_url_file(self.directory)
            if info is not None:
                self.webui_url = info["url"]
                self.webui_error = info.get("error")
                return
            time.sleep(0.05)

    @contextlib.contextmanager
    def _webui(self, manager: Manager, port: int | None, host: str, token: str | None) -> Iterator[None]:
        """Serve the dashboard while the manager runs (never fails the experiment)."""
        from nni_pl import webui
        from nni_pl.webui import server as webui_server

        if port is None:
            yield
            return
        server = None
        reason = None
        if not webui.available():
            reason = f"it needs FastAPI and uvicorn: {webui.INSTALL_HINT}"
        else:
            try:
                server = webui_server.serve(
                    self.store.url,
                    host=host,
                    port=port,
                    token=token,
                    experiment_id=self.id,
                    workdir=self.config.experiment_working_directory,
                    stop_hook=lambda: manager.request_stop("user"),
                    wait=False,  # bound now, built on the first request: an unopened dashboard costs nothing
                )
            except NniPlError as e:
                reason = str(e)
        try:
            if server is None:
                self.webui_error = reason
                logger.warning("no web dashboard: %s", reason)
                sys.stderr.write(f"no web dashboard: {reason}\n")
                with contextlib.suppress(OSError):
                    webui_server.write_url_file(self.directory, None, error=reason)
            else:
                self.webui_url = server.url
                webui_server.write_url_file(self.directory, server)
                self.store.update_experiment(self.id, port=server.port)
                if port and server.port != port:
                    sys.stderr.write(f"port {port} is taken; the dashboard uses {server.port}\n")
                sys.stderr.write(f"dashboard: {server.url}\n")
            sys.stderr.flush()
            yield
        finally:
            if server is not None:
                # the experiment is over: ask the server to end (its thread closes the socket); waiting for it
                # would add its shutdown to every run
                server.stop(wait=False)
                with contextlib.suppress(Exception):
                    self.store.update_experiment(self.id, port=None)
            webui_server.remove_url_file(self.directory)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        path = _locate.lock_path(self.directory)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                exp = self.store.get_experiment(self.id)
                raise NniPlError(
                    f"experiment {self.id} is already running (manager pid {exp.manager_pid}); stop it first"
                ) from None
            yield
        finally:
            os.close(fd)  # closing releases the lock; a killed manager releases it too

    @contextlib.contextmanager
    def _log_file(self) -> Iterator[None]:
        root = logging.getLogger("nni_pl")
        handler = logging.FileHandler(self.directory / "log" / "manager.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
        level = _LOG_LEVELS.get(self.config.log_level, logging.INFO)
        handler.setLevel(level)
        old_level = root.level
        if root.level == logging.NOTSET or root.level > level:
            root.setLevel(level)
        root.addHandler(handler)
        try:
            yield
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
            handler.close()

    def _run_manager(
        self, tuner: Any, assessor: Any, *, display: bool, webui: dict[str, Any] | None = None
    ) -> str:
        with self._lock(), self._log_file():
            from nni_pl.training.local import process_start_time

            pid = os.getpid()
            self.store.update_experiment(
                self.id,
                manager_pid=pid,
                manager_host=socket.gethostname(),
                manager_started_at=process_start_time(pid),
            )
            service = self._service()
            live: Any = None

            def on_update(s: Snapshot) -> None:
                if live is not None:
                    from nni_pl.experiment._display import render_snapshot

                    live.update(render_snapshot(s), refresh=True)

            manager = Manager(
                store=self.store,
                experiment_id=self.id,
                config=self.config,
                directory=self.directory,
                service=service,
                tuner=tuner,
                assessor=assessor,
                resumed=True,
                on_update=on_update if display else None,
            )
            self._manager = manager
            restore = self._install_signals(manager)
            webui = webui or {}
            try:
                with self._webui(
                    manager, webui.get("port"), webui.get("host", "127.0.0.1"), webui.get("token")
                ):
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

    def _install_signals(self, manager: Manager) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        presses = {"n": 0}

        def on_signal(signum: int, frame: Any) -> None:
            presses["n"] += 1
            if presses["n"] > 1 and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for trials to end
            manager.request_stop("user")

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for s, h in old.items():
                signal.signal(s, h)

        return restore

    def stop(self) -> None:
        """Stop the running experiment gracefully (this process's, or a detached manager)."""
        if self._manager is not None:
            self._manager.request_stop("user")
            return
        stop_experiment(self.store, self.id)

    # --- resuming and viewing -----------------------------------------------------------------------------------------
    @classmethod
    def resume(
        cls,
        experiment_id: str,
        *,
        trial: Callable[..., Any] | None = None,
        working_directory: str | Path | None = None,
        store_url: str | None = None,
        tuner: Any = None,
        preload: tuple[str, ...] | list[str] = (),
        start_method: str | None = None,
    ) -> Experiment:
        """Load a stopped (or killed) experiment; call :meth:`run` to continue it to its limits.

        ``trial`` is needed for an experiment that tunes a Python function; ``tuner`` replaces the stored
        tuner with an instance; ``preload``/``start_method`` are as for a new experiment.
        """
        located = _locate.find(experiment_id, working_directory=working_directory, store_url=store_url)
        self = cls._from_located(located, trial=trial, tuner=tuner)
        self.preload, self.start_method = tuple(preload), start_method
        return self

    @classmethod
    def _from_located(
        cls, located: _locate.Located, *, trial: Callable[..., Any] | None = None, tuner: Any = None
    ) -> Experiment:
        exp = located.experiment
        if _locate.manager_alive(exp) and exp.status == st.EXP_RUNNING and exp.manager_pid != os.getpid():
            raise NniPlError(f"experiment {exp.id} is still running (manager pid {exp.manager_pid})")
        stored = dict(exp.config)
        function_name = stored.pop("trialFunction", None)
        if function_name and trial is None and function_name in _BUILTIN_TRIAL_FUNCTIONS:
            # a trial function of nni-pl itself (NAS's warm-worker trials): the CLI can resume it too
            import importlib

            module_name, _, attr = _BUILTIN_TRIAL_FUNCTIONS[function_name].partition(":")
            trial = getattr(importlib.import_module(module_name), attr)
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
    def view(
        cls, experiment_id: str, *, working_directory: str | Path | None = None, store_url: str | None = None
    ) -> Experiment:
        """Open an experiment read-only, for its results."""
        located = _locate.find(experiment_id, working_directory=working_directory, store_url=store_url)
        self = cls.__new__(cls)
        stored = dict(located.experiment.config)
        stored.pop("trialFunction", None)
        self.config = ExperimentConfig.from_stored(stored)
        self.trial = None
        self.preload, self.start_method = (), None
        self._id = located.experiment.id
        self._store, self._directory = located.store, located.directory
        self._manager, self._resumed = None, False
        self._tuner_instance = self._assessor_instance = None
        self.webui_url = self.webui_error = None
        return self

    # --- results ---------------------------------------------------------------------------------------------------------
    def get_status(self) -> str:
        return _locate.shown_status(self.store.get_experiment(self.id))

    def trials(self, statuses: list[str] | None = None) -> list[st.TrialRow]:
        return self.store.list_trials(self.id, statuses=statuses)

    def best_trial(self) -> st.TrialRow | None:
        best = self.store.best_trials(self.id, optimize_mode=self.config.optimize_mode, limit=1)
        return best[0] if best else None

    def export_data(self) -> list[dict[str, Any]]:
        """NNI's ``export_data()``: ``[{"parameter": ..., "value": ..., "trialJobId": ...}]`` of finished results."""
        return [
            {"parameter": t.parameters, "value": t.final, "trialJobId": t.trial_id}
            for t in self.trials()
            if t.final is not None
        ]

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def stop_experiment(store: st.Store, experiment_id: str, *, timeout: float = 60.0) -> bool:
    """Stop an experiment's manager (SIGTERM, it stops gracefully); returns whether one was running.

    If the manager is gone (killed), its orphaned trials are terminated and the experiment is marked STOPPED.
    """
    from nni_pl.training.local import _alive

    exp = store.get_experiment(experiment_id)
    if (
        exp.manager_pid is not None
        and _locate.manager_alive(exp)
        and exp.manager_host == socket.gethostname()
    ):
        os.kill(exp.manager_pid, signal.SIGTERM)
        deadline = time.time() + timeout
        while time.time() < deadline and _alive(exp.manager_pid, exp.manager_started_at):
            time.sleep(0.1)
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
            manager_pid=None,
            message="stopped while no manager was running",
            ended_at=time.time(),
        )
    return False
