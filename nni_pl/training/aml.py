"""The AML training service (NNI's ``platform: aml``): each trial an Azure Machine Learning v2 command job.

A trial is one ``azure.ai.ml.command()`` job on ``computeTarget``: its code is ``trialCodeDirectory`` (packed as
for SSH hosts, with ``.nniignore`` and NNI's 2000-file/300 MB limits, unpacked into a staging folder that the SDK
uploads; AML keeps one snapshot per content hash, and the first job's snapshot is reused for the others), its
command is ``python -m nni_pl.training.job_runner`` (:func:`~nni_pl.training.job_runner.runner_command`), its
environment variables are :func:`~nni_pl.training.job_runner.job_environment`'s (the trial's ids, parameters and
command, and the store URL), and its environment is ``dockerImage`` (an anonymous AML environment) or the
registered ``environment``. The image must have nni-pl installed.

**Metrics go through the experiment's store.** A job in Azure cannot write to this machine, so ``platform: aml``
needs ``storeUrl`` naming a PostgreSQL or MySQL server the compute can reach; the job runner inserts each record
into the store's relay table as the trial writes it, and :meth:`AmlTrainingService.read_metrics` reads them back
(:class:`~nni_pl.training.relay.RelayTable`, one connection held for the service rather than one per read).
Nothing is parsed out of the job's log.

**Status** is polled in a background thread, per job, with back-off: 2 s after a change, doubling to 60 s while
the status stays the same. AML's statuses ``NotStarted``, ``Queued``, ``Preparing``, ``Starting``,
``Provisioning``, ``Running``, ``Finalizing``, ``CancelRequested`` (and ``Paused``, ``NotResponding``) mean
running; ``Completed`` ends the trial with exit code 0, ``Failed`` with 1, ``Canceled`` with 143 when nni-pl
canceled it (``terminate`` is ``ml_client.jobs.begin_cancel``) and as lost otherwise. :meth:`poll` waits on what
the thread found, so it never blocks longer than its ``timeout``, however slow Azure answers.

**A crashed manager loses nothing**: the job keeps running in Azure and its metrics go to the store. The job's
name (``nnipl-<experiment>-<trial>``, fixed before it is created) is written to the trial's ``.nni/aml.json``
before the job is created; ``resume`` finds the job by it (``reattaches_trials = True``).

**Logging in** uses ``DefaultAzureCredential`` (``az login``, a managed identity, or a service principal's
``AZURE_CLIENT_ID``/``AZURE_TENANT_ID``/``AZURE_CLIENT_SECRET``); nothing secret is in the config or stored.
Building the service reads the workspace and the compute target, so a failed login, a wrong
subscription/resource group/workspace or a missing compute is a one-line error before the experiment starts.

Example:
    >>> AmlTrainingService.platform, AmlTrainingService.reattaches_trials
    ('aml', True)
    >>> job_name("exp1", "Ab3xY")
    'nnipl-exp1-Ab3xY'
    >>> [ended(s) for s in ("Queued", "Running", "Completed", "Failed")]
    [False, False, True, True]
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import shlex
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nni_pl.errors import ConfigError, NniPlError
from nni_pl.training import job_runner
from nni_pl.training.service import SubmitInfo, TrainingService, TrialEnd, TrialJob

if TYPE_CHECKING:
    from nni_pl.training.aml_config import AmlConfig
    from nni_pl.training.platforms import ServiceSpec

__all__ = [
    "JOB_FILE",
    "RUNNING_STATUSES",
    "AmlError",
    "AmlTrainingService",
    "build_command_job",
    "ended",
    "job_name",
]

logger = logging.getLogger(__name__)

JOB_FILE = "aml.json"  # in a trial's local .nni/: the AML job that runs it
RUNNING_STATUSES = frozenset(
    {
        "NotStarted", "Queued", "Preparing", "Starting", "Provisioning", "Running", "Finalizing",
        "CancelRequested", "Paused", "NotResponding",
    }
)  # fmt: skip
_EXIT = {"Completed": 0, "Failed": 1}
CANCELED_EXIT = 143  # a job nni-pl canceled ends as a SIGTERM'd process would
MIN_POLL_S = 2.0
MAX_POLL_S = 60.0
_SERVER_SCHEMES = ("postgres", "postgresql", "mysql")
_ONE_LINE = 300  # characters of an Azure message kept in an error


class AmlError(NniPlError):
    """Azure ML refused or failed something the service asked (logging in, reading the workspace, a job)."""


def job_name(experiment_id: str, trial_id: str) -> str:
    """The AML job name of a trial (letters, digits, ``-`` and ``_``; fixed, so a resumed manager finds it)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"nnipl-{experiment_id}-{trial_id}")[:255]


def ended(status: str | None) -> bool:
    """Whether an AML job status is final (``Completed``, ``Failed``, ``Canceled``)."""
    return status is not None and status not in RUNNING_STATUSES


def _line(text: Any) -> str:
    """An Azure message as one short line."""
    first = " ".join(str(text).split())
    return first if len(first) <= _ONE_LINE else first[: _ONE_LINE - 3] + "..."


def _auth_summary(e: BaseException) -> str:
    """What each step of DefaultAzureCredential's chain said, on one line (their messages hold no secrets; a
    line that looks like it carries a token is dropped all the same)."""
    steps = re.findall(r"^\s*(\w*Credential): (.+)$", str(e), flags=re.M)
    said = []
    for name, message in steps:
        message = re.split(r"(?<=[.!])\s|\s(?=Visit |To mitigate|For more|Please visit)", message.strip())[0]
        if re.search(r"eyJ|token=|secret=|password=", message, flags=re.I):
            message = "failed"
        said.append(f"{name}: {message.rstrip('.')}")
    return "; ".join(said) if said else _line(e)


def build_command_job(
    job: TrialJob,
    *,
    section: AmlConfig,
    command: str,
    code: str | Path,
    store_url: str | None,
    experiment_name: str,
) -> Any:
    """The ``azure.ai.ml.command()`` job that runs ``job`` (not yet submitted).

    ``command`` is the trial command (it travels in ``NNI_PL_JOB``; the job's own command is the runner's);
    ``code`` a local folder the SDK uploads or the ARM id of a code snapshot already there.
    """
    from azure.ai.ml import command as aml_command
    from azure.ai.ml.entities import Environment

    environment: Any = (
        Environment(image=section.docker_image)
        if section.docker_image is not None
        else section.environment_reference
    )
    return aml_command(
        name=job_name(job.experiment_id, job.trial_id),
        display_name=f"{job.experiment_id} trial {job.trial_id} (#{job.sequence_id})",
        experiment_name=experiment_name,
        command=" ".join(shlex.quote(a) for a in job_runner.runner_command(section.python)),
        code=str(code),
        environment=environment,
        compute=section.compute_target,
        environment_variables=job_runner.job_environment(
            job, platform="aml", command=command, store_url=store_url
        ),
        tags={"nni-pl-experiment": job.experiment_id, "nni-pl-trial": job.trial_id},
    )


@dataclass
class _AJob:
    job: TrialJob
    name: str
    status: str | None = None
    interval: float = MIN_POLL_S
    next_at: float = 0.0
    canceled: bool = False  # nni-pl asked AML to cancel it
    last_seq: int = -1
    records: list[dict[str, Any]] = field(default_factory=list)
    studio_url: str | None = None


class AmlTrainingService(TrainingService):
    """Runs command trials as Azure ML command jobs; see the module docstring.

    Args:
        section: the ``trainingService`` section (:class:`~nni_pl.training.aml_config.AmlConfig`).
        command: the trial command (run by the job runner in the job's code folder).
        code_directory: the local trial code directory (uploaded by the SDK).
        store_url: the experiment's shared store, where the jobs relay their metrics (see
            :meth:`from_spec`, which insists on a database server; here any store URL is taken).
        experiment_id: names the AML experiment (``nnipl-<id>``) unless the section's ``experimentName`` does.
        concurrency: how many jobs run at once.
        extra_args: ``parameters -> list[str]`` appended to the command (LightningCLI overrides).
        credential: what logs in (default ``azure.identity.DefaultAzureCredential()``).
        client_kwargs: more keyword arguments for ``MLClient`` (a ``transport``, say).
        min_poll, max_poll: the status back-off (seconds), from ``min_poll`` after a change up to ``max_poll``.
        check: read the workspace and the compute target now (errors raised here, before any trial).
    """

    platform = "aml"
    reattaches_trials = True

    def __init__(
        self,
        *,
        section: AmlConfig,
        command: str | None,
        code_directory: Path,
        store_url: str | None,
        experiment_id: str | None = None,
        concurrency: int = 1,
        extra_args: Callable[[dict[str, Any]], list[str]] | None = None,
        credential: Any = None,
        client_kwargs: dict[str, Any] | None = None,
        min_poll: float = MIN_POLL_S,
        max_poll: float = MAX_POLL_S,
        check: bool = True,
    ) -> None:
        if not command:
            raise ConfigError("trialCommand", "the aml training service runs a trialCommand; none was given")
        self.section = section.check()
        self.command = command
        self.code_directory = Path(code_directory)
        self.store_url = store_url
        self.experiment_id = experiment_id
        self.concurrency = concurrency
        self.extra_args = extra_args
        self.min_poll, self.max_poll = min_poll, max_poll
        self.host = f"aml:{section.workspace_name}/{section.compute_target}"
        self.trials: dict[str, _AJob] = {}
        self._ended: dict[str, _AJob] = {}  # ended trials whose last metrics the manager reads next
        self._ends: queue.Queue[TrialEnd] = queue.Queue()
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()  # the status thread reads relayed records too (a failed job's)
        self._wake = threading.Event()
        self._closed = False
        self._store: Any = None
        self._code: str | None = None  # the ARM id of the uploaded code snapshot, once the first job made it
        self._staging: Path | None = None
        self.client = self._client(credential, client_kwargs or {})
        if check:
            self._check_workspace()
        self._thread = threading.Thread(target=self._watch_loop, name="nni-pl-aml-status", daemon=True)
        self._thread.start()

    # --- building ----------------------------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: ServiceSpec, **overrides: Any) -> AmlTrainingService:
        """The service of ``trainingService: {platform: aml, ...}`` for an experiment.

        Raises:
            ConfigError: ``storeUrl`` is not a PostgreSQL/MySQL server (trials in Azure cannot write to this
                machine), or has a password and ``passStorePassword`` is not set.
        """
        from nni_pl.training.lightning_cli import lightning_cli_args

        section = spec.section
        url = spec.store_url
        scheme = urlsplit(url).scheme.split("+")[0].lower() if url else ""
        if scheme not in _SERVER_SCHEMES:
            raise ConfigError(
                "storeUrl",
                f"got {url!r}; platform aml needs storeUrl: postgresql://... (or mysql://...) reachable from the "
                "compute; trials in Azure cannot write to this machine",
            )
        if urlsplit(url).password and not section.pass_store_password:
            raise ConfigError(
                f"{section.config_field}.passStorePassword",
                "storeUrl has a password, which would be written into every AML job's environment (readable by "
                "everyone with access to the workspace); use a login without a password that the compute may use, "
                "or set passStorePassword: true",
            )
        if spec.trial_function is not None:
            raise ConfigError(
                "trial", "platform aml runs a trialCommand; a Python function trial runs on local or remote"
            )
        mode = spec.lightning_cli
        args: dict[str, Any] = {
            "section": section,
            "command": spec.trial_command,
            "code_directory": spec.trial_code_directory,
            "store_url": url,
            "experiment_id": spec.experiment_id,
            "concurrency": spec.trial_concurrency,
            "extra_args": (lambda params: lightning_cli_args(params, mode)),
        }
        args.update(overrides)
        return cls(**args)

    def _client(self, credential: Any, kwargs: dict[str, Any]) -> Any:
        from azure.ai.ml import MLClient

        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        kwargs.setdefault("enable_telemetry", False)  # the SDK's own usage reports: not ours to send
        s = self.section
        return MLClient(credential, s.subscription_id, s.resource_group, s.workspace_name, **kwargs)

    def _where(self) -> str:
        s = self.section
        return f"workspace {s.workspace_name!r} (resource group {s.resource_group!r}, subscription {s.subscription_id})"

    def _error(self, e: BaseException, doing: str, *, resource: str = "workspace") -> NniPlError:
        """An Azure exception as a one-line nni-pl error naming the field to fix."""
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

        f = self.section.config_field
        if isinstance(e, ClientAuthenticationError):
            return AmlError(
                f"cannot log in to Azure to {doing}: {_auth_summary(e)}; run `az login`, or set AZURE_CLIENT_ID, "
                "AZURE_TENANT_ID and AZURE_CLIENT_SECRET for a service principal"
            )
        if isinstance(e, HttpResponseError):
            code = getattr(getattr(e, "error", None), "code", None) or ""
            message = _line(getattr(getattr(e, "error", None), "message", None) or e.reason or e)
            said = f"Azure said {e.status_code} {code}: {message}".replace(": :", ":")
            if e.status_code == 404 or "NotFound" in code:
                if "SubscriptionNotFound" in code or "InvalidSubscriptionId" in code:
                    return ConfigError(
                        f"{f}.subscriptionId",
                        f"subscription {self.section.subscription_id} not found ({said}); copy it from the "
                        "workspace's config.json",
                    )
                if "ResourceGroupNotFound" in code:
                    return ConfigError(
                        f"{f}.resourceGroup",
                        f"resource group {self.section.resource_group!r} not found in subscription "
                        f"{self.section.subscription_id} ({said}); copy it from the workspace's config.json",
                    )
                if resource == "compute":
                    return ConfigError(
                        f"{f}.computeTarget",
                        f"no compute {self.section.compute_target!r} in {self._where()} ({said}); create a compute "
                        "cluster there, or name one `az ml compute list` shows",
                    )
                return ConfigError(
                    f"{f}.workspaceName",
                    f"{self._where()} not found ({said}); check workspaceName, resourceGroup and subscriptionId "
                    "against the workspace's config.json",
                )
            if e.status_code == 403:
                return AmlError(
                    f"the Azure identity may not {doing} in {self._where()} ({said}); ask for a role such as "
                    "AzureML Data Scientist on the workspace"
                )
            return AmlError(f"cannot {doing} in {self._where()}: {said}")
        return AmlError(f"cannot {doing} in {self._where()}: {type(e).__name__}: {_line(e)}")

    def _check_workspace(self) -> None:
        """Log in, read the workspace and the compute target: any problem is an error now."""
        try:
            self.client.workspaces.get(self.section.workspace_name)
        except Exception as e:
            raise self._error(e, "read the workspace") from None
        try:
            self.client.compute.get(self.section.compute_target)
        except Exception as e:
            raise self._error(e, "read the compute target", resource="compute") from None

    def _stage_code(self) -> Path:
        """The code directory as it is uploaded: packed with ``.nniignore`` and NNI's limits, unpacked into a folder
        of ours (with an empty ``.amlignore``, so the SDK adds no ignore rules of its own, such as ``.gitignore``)."""
        if self._staging is not None:
            return self._staging
        from nni_pl.training.code_archive import pack_code_directory

        archive = pack_code_directory(self.code_directory)
        staging = Path(tempfile.mkdtemp(prefix="nni-pl-aml-code-"))
        try:
            with tarfile.open(archive.path) as t:
                kw: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                t.extractall(staging, **kw)
        finally:
            archive.path.unlink(missing_ok=True)
        amlignore = staging / ".amlignore"
        if not amlignore.exists():
            amlignore.write_text("# nni-pl applied .nniignore already\n", encoding="utf-8")
        self._staging = staging
        return staging

    # --- capacity -----------------------------------------------------------------------------------------------
    def free_slots(self) -> int:
        return max(0, self.concurrency - len(self.trials))

    def running(self) -> set[str]:
        return set(self.trials)

    # --- submitting ---------------------------------------------------------------------------------------------
    def _trial_command(self, job: TrialJob) -> str:
        command = self.command
        if callable(self.extra_args):
            args = self.extra_args(job.parameters)
            if args:
                command += " " + " ".join(shlex.quote(a) for a in args)
        return command

    def experiment_name(self, job: TrialJob) -> str:
        """The AML experiment the jobs are filed under."""
        name = self.section.experiment_name or f"nnipl-{self.experiment_id or job.experiment_id}"
        return re.sub(r"[^A-Za-z0-9_.-]", "_", name)

    def submit(self, job: TrialJob) -> SubmitInfo:
        name = job_name(job.experiment_id, job.trial_id)
        started = time.time()
        trial = _AJob(job, name)
        # the job's name in its local folder first: a manager that dies now finds the job again on resume
        self._write_job_file(job, name)
        with self._lock:
            self.trials[job.trial_id] = trial
        try:
            command_job = build_command_job(
                job,
                section=self.section,
                command=self._trial_command(job),
                code=self._code or self._stage_code(),
                store_url=self.store_url,
                experiment_name=self.experiment_name(job),
            )
            created = self.client.jobs.create_or_update(command_job)
        except Exception as e:
            from azure.core.exceptions import ServiceRequestError

            error = self._error(e, f"create the job {name}")
            # a request that never reached Azure (network): the trial did not start; its parameters run again
            self._end(trial, None, str(error), requeue=isinstance(e, ServiceRequestError))
            return SubmitInfo(pid=None, host=self.host, started_at=started, platform=self.platform)
        code = getattr(created, "code", None)
        if isinstance(code, str) and "/codes/" in code:
            self._code = code  # later jobs reuse this snapshot (AML would find it by its hash anyway)
        with self._lock:
            trial.status = getattr(created, "status", None) or "NotStarted"
            trial.studio_url = getattr(created, "studio_url", None)
            trial.next_at = time.monotonic() + self.min_poll
        self._wake.set()
        return SubmitInfo(pid=None, host=self.host, started_at=started, platform=self.platform)

    def _write_job_file(self, job: TrialJob, name: str) -> None:
        s = self.section
        record = {
            "job": name,
            "subscription": s.subscription_id,
            "resource_group": s.resource_group,
            "workspace": s.workspace_name,
        }
        job.control_dir.mkdir(parents=True, exist_ok=True)
        path = job.control_dir / JOB_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        tmp.replace(path)

    # --- status -----------------------------------------------------------------------------------------------------
    def _end(
        self, trial: _AJob, exit_code: int | None, error: str | None, *, requeue: bool | None = None
    ) -> None:
        with self._lock:
            if self.trials.pop(trial.job.trial_id, None) is None:
                return
            self._ended[trial.job.trial_id] = trial
        self._ends.put(TrialEnd(trial.job.trial_id, exit_code, time.time(), error, requeue=requeue))

    def _outcome(self, trial: _AJob, status: str) -> tuple[int | None, str | None, bool | None]:
        """``(exit code, error, requeue)`` of a job that ended with ``status``."""
        where = f" (studio: {trial.studio_url})" if trial.studio_url else ""
        if status == "Completed":
            return 0, None, None
        if status == "Canceled":
            if trial.canceled:
                return CANCELED_EXIT, f"AML job {trial.name} canceled by nni-pl", None
            return None, f"AML job {trial.name} was canceled in Azure, not by nni-pl{where}", False
        if status == "Failed":
            if not trial.records and not self._read(trial):
                image = self.section.docker_image or self.section.environment
                import nni_pl

                return (
                    1,
                    (
                        f"AML job {trial.name} failed before the trial reported anything{where}; see user_logs/"
                        f"std_log.txt there. If it says 'No module named nni_pl', the image {image!r} lacks nni-pl: "
                        f"install it there (pip install 'nni-pl=={nni_pl.__version__}'); if the trial reported nothing "
                        "else, check that the compute reaches storeUrl"
                    ),
                    None,
                )
            return 1, f"AML job {trial.name} failed{where}; its log is user_logs/std_log.txt there", None
        return 1, f"AML job {trial.name} ended with status {status}{where}", None

    def _status(self, trial: _AJob) -> str | None:
        """Ask AML for the job's status (``None``: no answer this time; the next try comes after the back-off)."""
        try:
            found = self.client.jobs.get(trial.name)
        except Exception as e:
            logger.warning(
                "AML job %s: reading its status failed: %s", trial.name, self._error(e, "read the job")
            )
            return None
        trial.studio_url = getattr(found, "studio_url", None) or trial.studio_url
        return getattr(found, "status", None)

    def _watch_loop(self) -> None:
        while not self._closed:
            try:
                self._watch_once()
            except Exception:  # a bug here must not end the watching: logged, and the next round comes
                logger.exception("AML status thread")
                time.sleep(self.min_poll)

    def _watch_once(self) -> None:
        """One round: ask for the status of every job that is due, then sleep until the next is due."""
        now = time.monotonic()
        with self._lock:
            due = [t for t in self.trials.values() if t.next_at <= now and t.status is not None]
        for trial in due:
            if self._closed:
                return
            status = self._status(trial)
            if status is not None and ended(status):
                code, error, requeue = self._outcome(trial, status)
                self._end(trial, code, error, requeue=requeue)
                continue
            with self._lock:
                if status is not None and status != trial.status:
                    logger.info("AML job %s: %s -> %s", trial.name, trial.status, status)
                    trial.status, trial.interval = status, self.min_poll
                else:
                    trial.interval = min(trial.interval * 2, self.max_poll)
                trial.next_at = time.monotonic() + trial.interval
        with self._lock:
            waits = [t.next_at for t in self.trials.values() if t.status is not None]
        delay = min(waits) - time.monotonic() if waits else self.max_poll
        self._wake.wait(max(0.05, min(delay, self.max_poll)))
        self._wake.clear()

    def poll(self, timeout: float) -> list[TrialEnd]:
        ends: list[TrialEnd] = []
        try:
            ends.append(self._ends.get(timeout=max(timeout, 0.0)) if timeout > 0 else self._ends.get_nowait())
        except queue.Empty:
            return ends
        while True:
            try:
                ends.append(self._ends.get_nowait())
            except queue.Empty:
                return ends

    # --- metrics --------------------------------------------------------------------------------------------------
    def _read(self, trial: _AJob) -> list[dict[str, Any]]:
        """New records the trial's runner relayed through the store (kept on ``trial`` until the manager reads)."""
        if not self.store_url:
            return []
        with self._read_lock:
            return self._read_locked(trial)

    def _read_locked(self, trial: _AJob) -> list[dict[str, Any]]:
        try:
            if self._store is None:
                from nni_pl.training.relay import RelayTable

                self._store = RelayTable(self.store_url)
            new = self._store.since(trial.job.experiment_id, trial.job.trial_id, after_seq=trial.last_seq)
        except Exception as e:  # the database is away: the records stay there for the next read
            logger.warning("reading relayed metrics of %s failed: %s", trial.job.trial_id, e)
            if self._store is not None:
                with contextlib.suppress(Exception):
                    self._store.close()
                self._store = None
            return []
        if new:
            trial.last_seq = int(new[-1]["seq"])
            trial.records.extend(new)
        return new

    def read_metrics(self, job: TrialJob) -> list[dict[str, Any]]:
        with self._lock:
            trial = self.trials.get(job.trial_id) or self._ended.get(job.trial_id)
        if trial is None:
            return []
        self._read(trial)
        with self._read_lock:
            records, trial.records = trial.records, []
        return records

    def cleanup(self, job: TrialJob) -> None:
        with self._lock:
            self._ended.pop(job.trial_id, None)

    # --- stopping -------------------------------------------------------------------------------------------------
    def terminate(self, trial_id: str, *, grace: float = 10.0) -> None:
        """Cancel the trial's AML job (``ml_client.jobs.begin_cancel``; a later :meth:`poll` reports it)."""
        with self._lock:
            trial = self.trials.get(trial_id)
        if trial is None or trial.canceled:
            return
        try:
            self.client.jobs.begin_cancel(trial.name)
        except Exception as e:
            from azure.core.exceptions import ResourceNotFoundError

            if isinstance(e, ResourceNotFoundError):  # never created: nothing runs
                self._end(trial, CANCELED_EXIT, f"AML job {trial.name} did not exist when it was canceled")
                return
            logger.warning("AML job %s: cancel failed: %s", trial.name, self._error(e, "cancel the job"))
            return
        with self._lock:
            trial.canceled = True
            trial.interval, trial.next_at = self.min_poll, time.monotonic() + self.min_poll
        self._wake.set()

    def request_stop(self, trial_id: str, trial_dir: Path, *, graceful_timeout: float) -> None:
        """The job's stop file is out of reach in Azure: a stop is a cancel."""
        self.terminate(trial_id)

    # --- recovery ---------------------------------------------------------------------------------------------
    def reattach(
        self,
        job: TrialJob,
        pid: int | None,
        pid_started_at: float | None,
        gpu_indices: Sequence[int] | None = None,
    ) -> TrialEnd | bool:
        try:
            record = json.loads((job.control_dir / JOB_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False  # never handed to AML
        s = self.section
        if (record.get("subscription"), record.get("resource_group"), record.get("workspace")) != (
            s.subscription_id,
            s.resource_group,
            s.workspace_name,
        ):
            return TrialEnd(
                job.trial_id,
                None,
                time.time(),
                f"the trial ran as AML job {record.get('job')} in workspace {record.get('workspace')!r}, which is no "
                "longer the configured workspace",
            )
        trial = _AJob(job, str(record["job"]))
        try:
            found = self.client.jobs.get(trial.name)
        except Exception as e:
            from azure.core.exceptions import ResourceNotFoundError

            if isinstance(e, ResourceNotFoundError):
                return False  # the manager died before AML had the job: submit it again
            raise self._error(e, f"read the job {trial.name}") from None
        status = getattr(found, "status", None) or "NotStarted"
        trial.studio_url = getattr(found, "studio_url", None)
        if ended(status):
            with self._lock:
                self._ended[job.trial_id] = trial
            code, error, requeue = self._outcome(trial, status)
            return TrialEnd(job.trial_id, code, time.time(), error, requeue=requeue)
        with self._lock:
            trial.status, trial.next_at = status, time.monotonic() + self.min_poll
            self.trials[job.trial_id] = trial
        self._wake.set()
        return True

    # --- the end --------------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()
            self._store = None
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
