"""The training-service conformance suite: :class:`TrainingServiceTestCase`, which every training service passes.

A test module subclasses it once per service and says how to build that service for the suite's temporary
experiment folder; pytest collects the ``Test*`` subclass and runs every ``test_*`` check (no plugin, no
fixtures). The trials are one small program whose behaviour comes from its parameters
(:mod:`nni_pl.testing._service_trial`): a command (:data:`SERVICE_TRIAL_COMMAND`), a function
(:func:`service_trial`), or a NAS trial's evaluation (:func:`service_trial_nas_spec`). Most checks run a real
experiment: the store, the :class:`~nni_pl.experiment.manager.Manager` and the service, with a tuner that hands
out the suite's parameter sets in order; the others call the service directly, as the manager does.

The checks:

1. ``test_parameters_arrive``: a trial sees exactly its job's parameters (JSON types kept) and its ids.
2. ``test_metrics_arrive_in_order_once``: intermediate and final metrics reach the store in order, each once,
   and the tuner gets the final result once.
3. ``test_read_metrics_is_exact_and_idempotent``: :meth:`~nni_pl.training.service.TrainingService.read_metrics`
   returns every record once however often it is called, and everything when first called after the end.
4. ``test_exit_codes_map_to_status``: exit code 0 is SUCCEEDED, a non-zero exit or an exception is FAILED
   with what the trial said (its stderr, its exception) in the trial's ``error``.
5. ``test_kill_ends_the_process_tree``: ``nni_pl.experiment.control.kill_trial`` ends the trial and the
   child process it started, and the trial is USER_CANCELED.
6. ``test_max_trial_duration_stops_a_trial``: a trial past ``maxTrialDuration`` is stopped (TIMEOUT).
7. ``test_manager_crash_loses_and_duplicates_nothing``: the manager runs in a subprocess that is SIGKILLed
   while a trial is mid-way; a new service and a resumed manager then reattach to the trial and see it
   succeed (``reattaches_trials = True``), or record it FAILED and run its parameters again; either way the
   store holds every metric the trial wrote, once.
8. ``test_capacity_never_exceeds_concurrency``: never more than ``trialConcurrency`` trials run at once.
9. ``test_set_concurrency_takes_effect``: ``free_slots()`` follows ``set_concurrency()`` up and down.

A check that does not apply to a service is named in :attr:`TrainingServiceTestCase.not_applicable` with the
reason; it is reported skipped with that reason, never silently.

Example:
    >>> from nni_pl.training.local import LocalTrainingService
    >>> class TestLocal(TrainingServiceTestCase):
    ...     def make_service(self, *, directory, concurrency):
    ...         return LocalTrainingService(command=SERVICE_TRIAL_COMMAND, code_directory=directory,
    ...                                     concurrency=concurrency)
    >>> TestLocal.__test__
    True
    >>> TestLocal().test_exit_codes_map_to_status()   # raises AssertionError if the service breaks the contract
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from nni_pl.errors import NniPlError
from nni_pl.experiment import store as st
from nni_pl.experiment.config import ExperimentConfig
from nni_pl.experiment.control import kill_trial
from nni_pl.experiment.manager import Manager
from nni_pl.hpo import Tuner
from nni_pl.testing import _service_trial
from nni_pl.testing._service_harness import (
    CheckRun,
    Resources,
    ScriptedTuner,
    ensure,
    fail,
    file_records,
    fmt,
    same_json,
    store_url,
    touch,
    wait,
)
from nni_pl.testing._service_trial import TRIAL_COMMAND, read_record
from nni_pl.training.process import alive
from nni_pl.training.service import TrainingService, TrialEnd, TrialJob
from nni_pl.trial import protocol

__all__ = [
    "SERVICE_TRIAL_COMMAND",
    "CheckRun",
    "SuiteDeclarationError",
    "TrainingServiceTestCase",
    "service_trial",
    "service_trial_nas_spec",
]

#: the suite's trial program as a command (for services that run command trials)
SERVICE_TRIAL_COMMAND: str = TRIAL_COMMAND
#: the suite's trial program as a function (``fn(params)``, for services that run Python functions)
service_trial: Callable[[Mapping[str, Any] | None], None] = _service_trial.run
#: a NAS trial spec (``nas.json``) whose trials run the suite's trial program (for NAS services)
service_trial_nas_spec: Callable[..., dict[str, Any]] = _service_trial.nas_spec

_TMP_PREFIX = "nni-pl-service-conformance-"
_CHECKS = (
    "test_parameters_arrive",
    "test_metrics_arrive_in_order_once",
    "test_read_metrics_is_exact_and_idempotent",
    "test_exit_codes_map_to_status",
    "test_kill_ends_the_process_tree",
    "test_max_trial_duration_stops_a_trial",
    "test_manager_crash_loses_and_duplicates_nothing",
    "test_capacity_never_exceeds_concurrency",
    "test_set_concurrency_takes_effect",
)


class SuiteDeclarationError(NniPlError, TypeError):
    """A subclass of :class:`TrainingServiceTestCase` declares something the suite cannot honour."""


def _crashing_manager(
    case: TrainingServiceTestCase, directory: Path, experiment_id: str, script: list
) -> None:
    """The body of the manager subprocess the crash check SIGKILLs (run in a forked child)."""
    store = st.Store(store_url(directory))
    config = case._config(directory, concurrency=1, trials=len(script))
    service = case.make_service(directory=directory, concurrency=1)
    manager = case.make_manager(
        store=store,
        experiment_id=experiment_id,
        config=config,
        directory=directory,
        service=service,
        tuner=ScriptedTuner(script),
        resumed=False,
    )
    manager.run()


# ------------------------------------------------------------------------------------------------
# the suite
# ------------------------------------------------------------------------------------------------


class TrainingServiceTestCase:
    """The training-service contract as a test class: subclass it, say how to build the service, and pytest
    runs every check.

    Override :meth:`make_service`; the suite calls it with a fresh experiment folder and the concurrency a
    check needs, and expects a service ready to :meth:`~nni_pl.training.service.TrainingService.submit` (start
    worker pools there). Trials must run the suite's trial program: :data:`SERVICE_TRIAL_COMMAND` (a command),
    :func:`service_trial` (a function) or :func:`service_trial_nas_spec` (a NAS spec).

    Attributes:
        startup_timeout: seconds a trial may take from ``submit`` to running its program (a service that
            imports torch in every trial process needs more).
        not_applicable: ``{check name: reason}`` for checks that do not apply to the service; they are
            reported skipped with the reason. An unknown name or an empty reason raises
            :class:`SuiteDeclarationError` when the class is defined.

    The crash check reads what the service declares in ``reattaches_trials`` (see
    :class:`~nni_pl.training.service.TrainingService`): trials that outlive the manager are reattached and
    must succeed; the others must be recorded FAILED and run again.

    Example:
        >>> from nni_pl.training.local import LocalTrainingService
        >>> class TestLocal(TrainingServiceTestCase):
        ...     def make_service(self, *, directory, concurrency):
        ...         return LocalTrainingService(command=SERVICE_TRIAL_COMMAND, code_directory=directory,
        ...                                     concurrency=concurrency)
        >>> TestLocal.__test__   # pytest collects it and runs every check
        True
    """

    __test__: ClassVar[bool] = False

    startup_timeout: ClassVar[float] = 30.0
    not_applicable: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, reason in cls.not_applicable.items():
            if name not in _CHECKS:
                raise SuiteDeclarationError(
                    f"{cls.__name__}.not_applicable names {name!r}, which is no check of the suite; "
                    f"the checks are {', '.join(_CHECKS)}"
                )
            if not isinstance(reason, str) or not reason.strip():
                raise SuiteDeclarationError(
                    f"{cls.__name__}.not_applicable[{name!r}] must say why the check does not apply, got {reason!r}"
                )
        # collect concrete subclasses only (an intermediate base class without a factory is not a test)
        if "__test__" not in cls.__dict__:
            cls.__test__ = cls.make_service is not TrainingServiceTestCase.make_service

    # --- hooks a subclass overrides ------------------------------------------------------------------
    def make_service(self, *, directory: Path, concurrency: int) -> TrainingService:
        """A fresh service whose trials run the suite's trial program, ready to take trials.

        Args:
            directory: the experiment folder (trials are in ``directory / "trials"``); put the service's own
                files there.
            concurrency: how many trials it may run at once.
        """
        fail(f"{type(self).__name__}: override make_service(self, *, directory, concurrency)")

    def make_manager(
        self,
        *,
        store: st.Store,
        experiment_id: str,
        config: ExperimentConfig,
        directory: Path,
        service: TrainingService,
        tuner: Tuner,
        resumed: bool,
    ) -> Manager:
        """The experiment manager that drives the service in the checks that run an experiment."""
        return Manager(
            store=store,
            experiment_id=experiment_id,
            config=config,
            directory=directory,
            service=service,
            tuner=tuner,
            resumed=resumed,
            poll_interval=0.05,
        )

    def trial_output_dir(self, trial_dir: Path) -> Path:
        """Where the trial program of the trial whose folder is ``trial_dir`` writes (its record, ``metrics.jsonl``).

        The trial's own folder for services whose trials run on this machine's file system. A service whose trials
        write elsewhere (an SSH host) overrides this with a path this process can read (a mount, or, for test hosts
        that share this machine's file system, the remote folder itself).
        """
        return trial_dir

    def live_processes(self, record: Mapping[str, Any] | None, trial: st.TrialRow | None) -> list[str]:
        """The processes of a trial that still run: its own, the child it started, the one the store names.

        A service whose trials do not run on this machine overrides this with its own notion of "still running".
        """
        out = []
        candidates: list[tuple[str, Any, Any]] = []
        if record:
            candidates.append(("the trial process", record.get("pid"), record.get("pid_started_at")))
            candidates.append(("its child process", record.get("child_pid"), record.get("child_started_at")))
        if trial is not None:
            candidates.append(("the process the store names", trial.pid, trial.pid_started_at))
        for what, pid, started in candidates:
            if isinstance(pid, int) and pid > 0 and pid != os.getpid() and alive(pid, started):
                out.append(f"{what} (pid {pid})")
        return out

    # --- pytest hooks -----------------------------------------------------------------------------------
    def teardown_method(self, method: Any = None) -> None:
        self._cleanup()

    # --- the checks -----------------------------------------------------------------------------------
    def test_parameters_arrive(self) -> None:
        """A trial sees exactly the parameters of its job (JSON types and all) and its own ids."""
        self._applies("test_parameters_arrive")
        script = [
            {
                "lr": 0.001,
                "layers": [64, 32, 16],
                "name": 'résumé ✓ "quoted" $HOME `x`',
                "flag": True,
                "nothing": None,
                "nested": {"a": {"b": [1, 2.5, "c"]}, "empty": {}},
                "big": 2**53,
                "zero": 0.0,
                "final": 1.0,
            },
            {"lr": 1, "layers": [], "name": "", "flag": False, "nested": {"a": []}, "final": 2},
        ]
        run = self.run_experiment(script, concurrency=2)
        for pid, expected in enumerate(script):
            t = run.by_parameter_id(pid)
            ensure(t.status == st.SUCCEEDED, lambda t=t: f"{self._what(t)} did not succeed: {t.error}")
            record = read_record(self.trial_output_dir(Path(t.trial_dir)))
            ensure(record is not None, lambda t=t: f"{self._what(t)} never ran the trial program")
            assert record is not None
            got = record["parameters"]
            ensure(
                same_json(got, expected),
                lambda t=t, got=got, expected=expected: (
                    f"{self._what(t)} read the parameters {fmt(got)} from the trial SDK, "
                    f"but its job has {fmt(expected)}"
                ),
            )
            if record["argument"] is not None:
                ensure(
                    same_json(record["argument"], expected),
                    lambda t=t, record=record, expected=expected: (
                        f"{self._what(t)} was called with {fmt(record['argument'])}, but its job has {fmt(expected)}"
                    ),
                )
            ids = (record["experiment_id"], record["trial_id"], record["sequence_id"])
            ensure(
                ids == (run.experiment_id, t.trial_id, t.sequence_id),
                lambda t=t, ids=ids: (
                    f"{self._what(t)} saw experiment id, trial id and sequence id {ids}, "
                    f"expected {(run.experiment_id, t.trial_id, t.sequence_id)}"
                ),
            )

    def test_metrics_arrive_in_order_once(self) -> None:
        """Intermediate and final metrics reach the store in order, each once; the tuner hears the final once."""
        self._applies("test_metrics_arrive_in_order_once")
        intermediates: list[Any] = [0.25, 0.5, {"default": 0.75, "loss": 0.1}, 1, -0.0]
        final = {"default": 0.9, "loss": 0.05, "note": "text"}
        script = [{"intermediates": intermediates, "step_sleep": 0.05, "final": final}]
        run = self.run_experiment(script)
        t = run.by_parameter_id(0)
        ensure(t.status == st.SUCCEEDED, f"{self._what(t)} did not succeed: {t.error}")
        expected = [("PERIODICAL", v) for v in intermediates] + [("FINAL", final)]
        stored = [(m.type, m.value) for m in run.metrics[t.trial_id]]
        ensure(
            len(stored) == len(expected) and all(a == b for a, b in zip(stored, expected)),
            f"{self._what(t)} reported {fmt(expected)} but the store holds {fmt(stored)}",
        )
        seqs = [m.seq for m in run.metrics[t.trial_id]]
        ensure(
            seqs == list(range(len(expected))),
            f"{self._what(t)}: stored seqs {seqs}, expected 0..{len(expected) - 1}",
        )
        ensure(
            t.final == final,
            f"{self._what(t)}: the store's final result is {fmt(t.final)}, expected {fmt(final)}",
        )
        ensure(
            t.intermediate_count == len(intermediates),
            f"{self._what(t)}: intermediate_count {t.intermediate_count}, expected {len(intermediates)}",
        )
        heard = run.tuner.results.get(0, [])
        ensure(
            heard == [final],
            f"the tuner received {fmt(heard)} for {self._what(t)}, expected [{fmt(final)}]",
        )

    def test_read_metrics_is_exact_and_idempotent(self) -> None:
        """``read_metrics`` gives each record once, however often it is called, and all of them after the end."""
        self._applies("test_read_metrics_is_exact_and_idempotent")
        directory = self._tmpdir() / "experiment"
        service = self._service(directory, concurrency=2)
        watched_values = [i / 10 for i in range(8)]
        watched = self.new_job(
            directory, "watched", {"intermediates": watched_values, "step_sleep": 0.05, "final": 1.5}, 0
        )
        late = self.new_job(directory, "late", {"intermediates": [1, 2, 3], "final": {"default": 4}}, 1)
        service.submit(watched)
        service.submit(late)
        got: dict[str, list[dict[str, Any]]] = {"watched": [], "late": []}
        ended: dict[str, TrialEnd] = {}
        deadline = time.monotonic() + self.startup_timeout + 30
        while len(ended) < 2:
            ensure(
                time.monotonic() < deadline,
                f"{self._name()}: trials {sorted(set(got) - set(ended))} never ended",
            )
            for end in service.poll(0.05):
                ended[end.trial_id] = end
            if "watched" not in ended:  # read while it runs, twice in a row
                got["watched"] += self._read(service, watched)
                got["watched"] += self._read(service, watched)
        for job in (watched, late):
            got[job.trial_id] += self._read(service, job)  # the last read after the end: the rest
            again = self._read(service, job)
            ensure(
                not again,
                f"{self._name()}.read_metrics({job.trial_id}) gave {fmt(again)} again after every record was read",
            )
        for job, values, final in ((watched, watched_values, 1.5), (late, [1, 2, 3], {"default": 4})):
            end = ended[job.trial_id]
            ensure(end.exit_code == 0, f"{self._name()}: trial {job.trial_id} ended {end}")
            seqs = [r["seq"] for r in got[job.trial_id]]
            ensure(
                len(seqs) == len(set(seqs)),
                f"{self._name()}.read_metrics({job.trial_id}) returned a record twice (seqs {seqs})",
            )
            expected = [("PERIODICAL", v) for v in values] + [("FINAL", final)]
            records = [(r["type"], r["value"]) for r in got[job.trial_id]]
            ensure(
                records == expected and seqs == list(range(len(expected))),
                f"{self._name()}.read_metrics({job.trial_id}) gave {fmt(records)} (seqs {seqs}); "
                f"the trial wrote {fmt(expected)}",
            )
            service.cleanup(job)

    def test_exit_codes_map_to_status(self) -> None:
        """Exit code 0 is SUCCEEDED; a non-zero exit or an exception is FAILED with what the trial said."""
        self._applies("test_exit_codes_map_to_status")
        token = uuid.uuid4().hex[:8]
        said_exit, said_raise = f"conformance-exit-{token}", f"conformance-raise-{token}"
        script = [
            {"intermediates": [0.5], "final": 1.0},
            {"intermediates": [0.5], "stderr": said_exit, "exit_code": 3},
            {"intermediates": [0.5], "raise": said_raise},
        ]
        run = self.run_experiment(script, concurrency=3)
        ok, exited, raised = (run.by_parameter_id(i) for i in range(3))
        ensure(
            ok.status == st.SUCCEEDED and ok.exit_code == 0 and ok.error is None,
            f"{self._what(ok)} exited 0: expected SUCCEEDED, exit code 0, no error; "
            f"got {ok.status}, exit code {ok.exit_code}, error {ok.error!r}",
        )
        for t, said, how in (
            (exited, said_exit, "wrote to stderr and exited 3"),
            (raised, said_raise, "raised"),
        ):
            ensure(
                t.status == st.FAILED and t.exit_code not in (0, None),
                f"{self._what(t)} {how}: expected FAILED with a non-zero exit code, got {t.status}, "
                f"exit code {t.exit_code}",
            )
            ensure(
                said in (t.error or ""),
                f"{self._what(t)} {how} {said!r}, but its error does not say so: {t.error!r}",
            )

    def test_kill_ends_the_process_tree(self) -> None:
        """A user's kill ends the trial and the child it started; the trial is USER_CANCELED."""
        self._applies("test_kill_ends_the_process_tree")
        script = [{"spawn_child": True, "sleep": 120}]

        def kill_when_running(store: st.Store, experiment_id: str) -> tuple[str, float]:
            def started() -> st.TrialRow | None:
                for t in store.list_trials(experiment_id, statuses=[st.RUNNING]):
                    record = read_record(self.trial_output_dir(Path(t.trial_dir)))
                    if record and record.get("child_pid"):
                        return t
                return None

            t = wait(started, self.startup_timeout, f"{self._name()}: a trial starting its child process")
            begun = time.time()
            return kill_trial(store, experiment_id, t.trial_id, manager_alive=True, wait=60.0), begun

        run = self.run_experiment(script, during=kill_when_running)
        t = run.by_parameter_id(0)
        status, killed_at = run.during
        ensure(
            status == st.USER_CANCELED and t.status == st.USER_CANCELED,
            f"{self._what(t)} was killed by the user: expected USER_CANCELED, kill_trial saw {status}, "
            f"the store has {t.status} (error {t.error!r})",
        )
        ensure(
            t.ended_at is not None and t.ended_at - killed_at < 30,
            f"{self._what(t)} ended {t.ended_at and t.ended_at - killed_at:.1f} s after the kill",
        )
        self._ensure_gone(t, "was killed")

    def test_max_trial_duration_stops_a_trial(self) -> None:
        """A trial that runs past ``maxTrialDuration`` is stopped, with its child, and recorded TIMEOUT."""
        self._applies("test_max_trial_duration_stops_a_trial")
        limit = 1.5
        run = self.run_experiment([{"spawn_child": True, "sleep": 120}], max_trial_duration=limit)
        t = run.by_parameter_id(0)
        ensure(
            t.status == st.TIMEOUT,
            f"{self._what(t)} ran past maxTrialDuration: expected TIMEOUT, got {t.status}",
        )
        took = (t.ended_at or 0) - (t.started_at or 0)
        ensure(
            took < limit + 30,
            f"{self._what(t)} was stopped {took:.1f} s after it started (maxTrialDuration {limit} s)",
        )
        self._ensure_gone(t, "timed out")

    def test_manager_crash_loses_and_duplicates_nothing(self) -> None:
        """SIGKILL the manager mid-trial; a new service under a resumed manager reattaches to the trial (or ends
        it and runs it again) and the store holds every metric the trial wrote, once."""
        self._applies("test_manager_crash_loses_and_duplicates_nothing")
        directory = self._tmpdir() / "experiment"
        gates = [directory.parent / "gate-1", directory.parent / "gate-2"]
        params = {
            "intermediates": [0.1, 0.2, 0.3, 0.4],
            "gates": [[2, str(gates[0])], [3, str(gates[1])]],
            "final": 0.9,
        }
        script = [params]
        experiment_id = self._create_experiment(directory, concurrency=1, trials=1)
        store = self._store(directory)

        # 1. the manager runs in a subprocess; it dies (SIGKILL) once it stored two of the trial's reports
        child = multiprocessing.get_context("fork").Process(
            target=_crashing_manager,
            args=(self, directory, experiment_id, script),
            name="conformance-manager",
        )
        child.start()
        self._resources.children.append(child)

        def mid_way() -> st.TrialRow | None:
            ensure(
                child.is_alive(),
                f"{self._name()}: the manager subprocess ended early (exit code {child.exitcode})",
            )
            found = store.list_trials(experiment_id, statuses=[st.RUNNING])
            return found[0] if found and found[0].intermediate_count >= 2 else None

        first = wait(
            mid_way, self.startup_timeout + 30, f"{self._name()}: the trial reporting 2 intermediate results"
        )
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)

        # 2. a new service; a trial that outlived the manager reports once more while no manager runs
        service = self._service(directory, concurrency=1)
        reattaches = bool(getattr(service, "reattaches_trials", False))
        if reattaches:
            touch(gates[0])
            wait(
                lambda: len(file_records(self.trial_output_dir(Path(first.trial_dir)))) >= 3,
                30,
                f"{self._name()}: the trial reporting while no manager runs (it declares reattaches_trials)",
            )

        # 3. the resumed manager; the rest of the trial's reports come while it runs
        def open_gates(watch: st.Store, experiment_id: str) -> None:
            if reattaches:  # once the resumed manager has read what was written meanwhile
                wait(
                    lambda: watch.get_trial(experiment_id, first.trial_id).intermediate_count >= 3,
                    30,
                    f"{self._name()}: the resumed manager reading the report written while no manager ran",
                )
                touch(gates[1])
            else:  # once the resumed manager has ended the trial; a trial that did not end would report now
                wait(
                    lambda: watch.get_trial(experiment_id, first.trial_id).finished,
                    30,
                    f"{self._name()}: the resumed manager ending the trial its crashed manager ran "
                    "(the service declares reattaches_trials = False)",
                )
                for gate in gates:
                    touch(gate)

        run = self.run_experiment(
            script, directory=directory, experiment_id=experiment_id, service=service, during=open_gates
        )
        t = next(r for r in run.trials if r.trial_id == first.trial_id)
        retries = [r for r in run.trials if r.retry_of == first.trial_id]
        expected = [("PERIODICAL", v) for v in params["intermediates"]] + [("FINAL", params["final"])]

        for r in run.trials:  # whatever each trial wrote is in the store, once
            wrote = file_records(self.trial_output_dir(Path(r.trial_dir)))
            stored = run.metrics.get(r.trial_id, [])
            ensure(
                [m.seq for m in stored] == [w["seq"] for w in wrote],
                f"{self._what(r)} wrote the reports {fmt([(w['seq'], w['value']) for w in wrote])}, "
                f"the store holds {fmt([(m.seq, m.value) for m in stored])}",
            )
        if reattaches:
            ensure(
                t.status == st.SUCCEEDED and not t.requeue and not retries,
                f"{self._what(t)} was running when its manager was killed and {type(service).__name__} declares "
                f"reattaches_trials: expected it reattached and SUCCEEDED, got {t.status} "
                f"(requeue {t.requeue}, re-runs {[r.trial_id for r in retries]}, error {t.error!r})",
            )
            stored = [(m.type, m.value) for m in run.metrics[t.trial_id]]
            ensure(
                stored == expected,
                f"{self._what(t)}: the store holds {fmt(stored)}, expected {fmt(expected)}",
            )
        else:
            ensure(
                t.status == st.FAILED and t.requeue,
                f"{self._what(t)} was running when its manager was killed and {type(service).__name__} does not "
                f"reattach: expected FAILED and re-queued, got {t.status} (requeue {t.requeue}, error {t.error!r})",
            )
            ensure(
                len(retries) == 1,
                f"{self._what(t)} was re-queued: expected one re-run, got {[r.trial_id for r in retries]}",
            )
            retry = retries[0]
            ensure(
                retry.status == st.SUCCEEDED
                and same_json(retry.parameters, params)
                and retry.parameter_id == t.parameter_id,
                f"the re-run {self._what(retry)} of {t.trial_id}: {retry.status}, parameters "
                f"{fmt(retry.parameters)} (id {retry.parameter_id}), error {retry.error!r}",
            )
            stored = [(m.type, m.value) for m in run.metrics[retry.trial_id]]
            ensure(
                stored == expected,
                f"{self._what(retry)}: the store holds {fmt(stored)}, expected {fmt(expected)}",
            )
            self._ensure_gone(t, "was lost with its manager")

    def test_capacity_never_exceeds_concurrency(self) -> None:
        """With ``trialConcurrency: 2`` no more than two trials run at once."""
        self._applies("test_capacity_never_exceeds_concurrency")
        # each trial runs from its start to its final report (a service may end a trial at its final result)
        script = [{"intermediates": [0, 1], "step_sleep": 0.5, "final": i} for i in range(3)]
        run = self.run_experiment(script, concurrency=2)
        spans = []
        for t in run.trials:
            ensure(t.status == st.SUCCEEDED, f"{self._what(t)} did not succeed: {t.error}")
            record = read_record(self.trial_output_dir(Path(t.trial_dir)))
            finals = [
                r["time"]
                for r in file_records(self.trial_output_dir(Path(t.trial_dir)))
                if r["type"] == protocol.FINAL
            ]
            ensure(record and finals, f"{self._what(t)} left no record of its run")
            assert record is not None
            spans.append((float(record["started"]), float(finals[0]), t.trial_id))
        for start, _, tid in spans:
            overlapping = [other for s, e, other in spans if s <= start <= e]
            ensure(
                len(overlapping) <= 2,
                f"{self._name()} ran {overlapping} at once (trialConcurrency 2) when {tid} started",
            )

    def test_set_concurrency_takes_effect(self) -> None:
        """``free_slots()`` never offers more than ``concurrency`` minus the running trials, after every
        ``set_concurrency()``, up and down."""
        self._applies("test_set_concurrency_takes_effect")
        directory = self._tmpdir() / "experiment"
        service = self._service(directory, concurrency=2)
        name = self._name()
        ensure(
            service.free_slots() == 2,
            f"{name}(concurrency=2).free_slots() is {service.free_slots()}, expected 2",
        )
        gate = directory.parent / "gate"
        jobs = [
            self.new_job(directory, f"held{i}", {"intermediates": [i], "gates": [[0, str(gate)]]}, i)
            for i in range(2)
        ]
        for job in jobs:
            service.submit(job)
        ensure(
            service.free_slots() == 0,
            f"{name}.free_slots() is {service.free_slots()} with 2 of 2 trials running",
        )

        ended: dict[str, TrialEnd] = {}

        def slots(at_most: int, when: str) -> int:
            for end in service.poll(0.05):
                ended[end.trial_id] = end
            free = service.free_slots()
            ensure(free <= at_most, f"{name}.free_slots() is {free} {when}; at most {at_most} may start")
            return free

        service.set_concurrency(3)
        wait(
            lambda: slots(1, "after set_concurrency(3) with 2 trials running") == 1,
            self.startup_timeout,
            f"{name}.free_slots() reaching 1 after set_concurrency(3) with 2 trials running",
        )
        service.set_concurrency(1)
        slots(0, "after set_concurrency(1) with 2 trials running")
        touch(gate)
        wait(
            lambda: slots(1, "after set_concurrency(1)") >= 0 and len(ended) == 2,
            self.startup_timeout + 30,
            f"{name}: both trials ending",
        )
        wait(
            lambda: slots(1, "after set_concurrency(1) once its trials ended") == 1,
            self.startup_timeout,
            f"{name}.free_slots() reaching 1 after set_concurrency(1) once its trials ended",
        )
        for _ in range(5):
            slots(1, "after set_concurrency(1) once its trials ended")

    # --- building blocks --------------------------------------------------------------------------------
    def new_job(
        self, directory: Path, trial_id: str, parameters: dict[str, Any], sequence_id: int
    ) -> TrialJob:
        """A job as the manager hands it over: its folder and ``parameter.json`` written."""
        job = TrialJob(
            experiment_id="conformance",
            trial_id=trial_id,
            sequence_id=sequence_id,
            parameter_id=sequence_id,
            parameter_source="algorithm",
            parameters=parameters,
            trial_dir=directory / "trials" / trial_id,
        )
        protocol.write_parameter_file(job.trial_dir, job.parameter_record())
        return job

    def run_experiment(
        self,
        script: Sequence[Mapping[str, Any]],
        *,
        concurrency: int = 1,
        max_trial_duration: float | None = None,
        during: Callable[[st.Store, str], Any] | None = None,
        directory: Path | None = None,
        experiment_id: str | None = None,
        service: TrainingService | None = None,
    ) -> CheckRun:
        """Run an experiment whose tuner hands out ``script`` in order, and return what the store has.

        ``during(store, experiment_id)`` runs in a thread meanwhile (a user's action); what it returns, or
        raises, comes back. Given an ``experiment_id`` (and its ``directory`` and ``service``), the stored
        experiment is resumed.
        """
        resumed = experiment_id is not None
        if directory is None:
            directory = self._tmpdir() / "experiment"
        if experiment_id is None:
            experiment_id = self._create_experiment(
                directory, concurrency=concurrency, trials=len(script), max_trial_duration=max_trial_duration
            )
        config = self._config(
            directory, concurrency=concurrency, trials=len(script), max_trial_duration=max_trial_duration
        )
        store = self._store(directory)
        if service is None:
            service = self._service(directory, concurrency)
        tuner = ScriptedTuner(script)
        manager = self.make_manager(
            store=store,
            experiment_id=experiment_id,
            config=config,
            directory=directory,
            service=service,
            tuner=tuner,
            resumed=resumed,
        )
        outcome: dict[str, Any] = {}
        thread = None
        if during is not None:

            def act() -> None:
                watch = self._store(directory)
                try:
                    outcome["value"] = during(watch, experiment_id)
                except BaseException as e:  # re-raised in the test's thread
                    outcome["error"] = e
                    manager.request_stop("the conformance check failed")

            thread = threading.Thread(target=act, name="conformance-user", daemon=True)
        limit = 2 * self.startup_timeout + 60 + len(script) * 5
        watchdog = threading.Timer(limit, manager.request_stop, args=("the conformance suite's time limit",))
        watchdog.daemon = True
        started = time.monotonic()
        watchdog.start()
        if thread is not None:
            thread.start()
        try:
            status = manager.run()
        finally:
            watchdog.cancel()
        if thread is not None:
            thread.join(self.startup_timeout + 60)
        if "error" in outcome:
            raise outcome["error"]
        elapsed = time.monotonic() - started
        trials = sorted(store.list_trials(experiment_id), key=lambda t: t.sequence_id)
        metrics: dict[str, list[st.MetricRow]] = {}
        for m in store.list_metrics(experiment_id):
            metrics.setdefault(m.trial_id, []).append(m)
        ensure(
            status == st.EXP_DONE,
            f"{self._name()}: the experiment ended {status} after {elapsed:.0f} s, not DONE "
            f"({store.get_experiment(experiment_id).message}); trials: "
            + fmt([(t.trial_id, t.status, t.error) for t in trials], 1200),
        )
        return CheckRun(
            directory, experiment_id, status, trials, metrics, tuner, outcome.get("value"), elapsed
        )

    # --- helpers ----------------------------------------------------------------------------------------
    def _applies(self, check: str) -> None:
        reason = self.not_applicable.get(check)
        if reason is None:
            return
        message = f"{check} does not apply to {type(self).__name__}: {reason}"
        try:
            import pytest
        except ImportError:  # run by hand: say it, and pass
            import warnings

            warnings.warn(message, stacklevel=3)
            return
        pytest.skip(message)

    def _name(self) -> str:
        return self.__dict__.get("_service_name") or type(self).__name__

    def _what(self, t: st.TrialRow) -> str:
        return f"{self._name()}: trial {t.trial_id} (#{t.sequence_id}, {fmt(t.parameters, 160)})"

    def _ensure_gone(self, t: st.TrialRow, how: str) -> None:
        record = read_record(self.trial_output_dir(Path(t.trial_dir)))
        left: list[str] = []

        def gone() -> bool:
            left[:] = self.live_processes(record, t)
            return not left

        try:
            wait(gone, 3, "")
        except AssertionError:
            fail(f"{self._what(t)} {how}, but {', '.join(left)} still runs")

    def _config(
        self, directory: Path, *, concurrency: int, trials: int, max_trial_duration: float | None = None
    ) -> ExperimentConfig:
        raw: dict[str, Any] = {
            "trialCommand": SERVICE_TRIAL_COMMAND,
            "trialCodeDirectory": str(directory),
            "trialConcurrency": concurrency,
            "maxTrialNumber": trials,
            "searchSpace": {},
            "experimentWorkingDirectory": str(directory.parent),
        }
        if max_trial_duration is not None:
            raw["maxTrialDuration"] = max_trial_duration
        return ExperimentConfig.from_dict(raw)

    def _create_experiment(
        self, directory: Path, *, concurrency: int, trials: int, max_trial_duration: float | None = None
    ) -> str:
        directory.mkdir(parents=True, exist_ok=True)
        experiment_id = "cf" + uuid.uuid4().hex[:6]
        config = self._config(
            directory, concurrency=concurrency, trials=trials, max_trial_duration=max_trial_duration
        )
        store = self._store(directory)
        store.create_experiment(
            id=experiment_id, name="service conformance", config=config.json(), directory=str(directory)
        )
        return experiment_id

    def _store(self, directory: Path) -> st.Store:
        directory.mkdir(parents=True, exist_ok=True)
        store = st.Store(store_url(directory))
        self._resources.stores.append(store)
        return store

    def _service(self, directory: Path, concurrency: int) -> TrainingService:
        directory.mkdir(parents=True, exist_ok=True)
        service = self.make_service(directory=directory, concurrency=concurrency)
        self.__dict__["_service_name"] = type(service).__name__
        self._resources.services.append(service)
        return service

    def _read(self, service: TrainingService, job: TrialJob) -> list[dict[str, Any]]:
        records = service.read_metrics(job)
        ensure(
            isinstance(records, list) and all(isinstance(r, dict) and "seq" in r for r in records),
            f"{self._name()}.read_metrics({job.trial_id}) must return a list of records, got {fmt(records)}",
        )
        return records

    @property
    def _resources(self) -> Resources:
        found = self.__dict__.get("_conformance_resources")
        if found is None:
            found = self.__dict__["_conformance_resources"] = Resources()
            weakref.finalize(self, found.release)  # a check called by hand cleans up too
        return found

    def _tmpdir(self) -> Path:
        folder = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX))
        folder.chmod(0o755)  # trials that run under another account (an SSH test host's) see the gate files
        self._resources.folders.append(folder)
        return folder

    def _cleanup(self) -> None:
        found = self.__dict__.get("_conformance_resources")
        if found is not None:
            found.release()
