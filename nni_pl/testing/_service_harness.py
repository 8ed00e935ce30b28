"""What :class:`nni_pl.testing.TrainingServiceTestCase` runs its checks with: a scripted tuner, the record of
one experiment, assertion helpers, and the cleanup of whatever a check (or a broken service) left running."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from nni_pl.errors import NoMoreTrialError
from nni_pl.experiment import store as st
from nni_pl.hpo import HistoryEntry, Tuner
from nni_pl.testing._service_trial import RECORD_FILE, read_record
from nni_pl.training.process import alive
from nni_pl.training.service import TrainingService
from nni_pl.trial import protocol

__all__ = [
    "CheckRun",
    "Resources",
    "ScriptedTuner",
    "ensure",
    "fail",
    "file_records",
    "fmt",
    "kill_leftovers",
    "same_json",
    "store_url",
    "touch",
    "wait",
]


def fail(message: str) -> NoReturn:
    raise AssertionError(message)


def ensure(condition: Any, message: str | Callable[[], str]) -> None:
    """``assert`` that survives ``python -O`` (a conformance check must never be compiled away)."""
    if not condition:
        fail(message() if callable(message) else message)


def fmt(value: Any, limit: int = 400) -> str:
    try:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def same_json(a: Any, b: Any) -> bool:
    """Equal and of the same JSON types all the way down (``1 != 1.0 != True`` here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return a == b


def wait(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            fail(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(interval)


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def file_records(trial_dir: str | Path) -> list[dict[str, Any]]:
    """Every complete record of a trial's ``metrics.jsonl`` (what the trial wrote)."""
    return protocol.MetricsReader(Path(trial_dir)).read()


# ------------------------------------------------------------------------------------------------
# the engine around the service
# ------------------------------------------------------------------------------------------------


class ScriptedTuner(Tuner):
    """Hands out the suite's parameter sets in order (parameter id ``i`` gets ``script[i]``), then no more."""

    def __init__(self, script: Sequence[Mapping[str, Any]]) -> None:
        self.script = [copy.deepcopy(dict(p)) for p in script]
        self.results: dict[int, list[Any]] = {}
        self.ends: dict[int, list[bool]] = {}

    def update_search_space(self, search_space: Any) -> None:
        pass

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if parameter_id >= len(self.script):
            raise NoMoreTrialError(f"the conformance script has {len(self.script)} trials")
        return copy.deepcopy(self.script[parameter_id])

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        self.results.setdefault(parameter_id, []).append(value)

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        self.ends.setdefault(parameter_id, []).append(success)

    def resume(self, history: Sequence[HistoryEntry]) -> None:
        pass  # the manager continues the parameter ids after the stored ones


@dataclass
class CheckRun:
    """What one experiment of a check left behind: the store's trials and metrics, and what the tuner heard."""

    directory: Path
    experiment_id: str
    status: str
    trials: list[st.TrialRow]
    metrics: dict[str, list[st.MetricRow]]
    tuner: ScriptedTuner
    during: Any = None
    elapsed: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def by_parameter_id(self, parameter_id: int) -> st.TrialRow:
        found = [t for t in self.trials if t.parameter_id == parameter_id and not t.retry_of]
        ensure(found, f"no trial of parameter id {parameter_id} in the store: {self._summary()}")
        return found[0]

    def _summary(self) -> str:
        return fmt([(t.trial_id, t.parameter_id, t.status, t.exit_code) for t in self.trials])


def store_url(directory: Path) -> str:
    return st.sqlite_url(directory / "store.sqlite")


@dataclass
class Resources:
    """What the checks of one test case started: released after each check (and when the case is collected)."""

    folders: list[Path] = field(default_factory=list)
    stores: list[st.Store] = field(default_factory=list)
    services: list[TrainingService] = field(default_factory=list)
    children: list[Any] = field(default_factory=list)  # manager subprocesses

    def release(self) -> None:
        """End whatever a check left running (also when a service failed to), then remove the folders."""
        while self.children:
            child = self.children.pop()
            if child.is_alive():
                child.kill()
            child.join(5)
        while self.services:
            service = self.services.pop()
            try:
                for trial_id in list(service.running()):
                    service.terminate(trial_id, grace=0.5)
                service.shutdown()
            except Exception:  # a broken service must not hide the check's own failure
                pass
        while self.stores:
            self.stores.pop().close()
        while self.folders:
            folder = self.folders.pop()
            kill_leftovers(folder)
            shutil.rmtree(folder, ignore_errors=True)


def kill_leftovers(folder: Path) -> None:
    """SIGKILL every process a trial under ``folder`` recorded (its own, its child, its process group)."""
    own_group = os.getpgid(0)
    for record_file in folder.glob(f"**/trials/*/{RECORD_FILE}"):
        record = read_record(record_file.parent) or {}
        for pid_key, started_key in (("child_pid", "child_started_at"), ("pid", "pid_started_at")):
            pid = record.get(pid_key)
            if (
                isinstance(pid, int)
                and pid > 1
                and pid != os.getpid()
                and alive(pid, record.get(started_key))
            ):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
    for pid_file in folder.glob(f"**/trials/*/{protocol.CONTROL_DIR}/{protocol.PID_FILE}"):
        found = protocol.read_pid(pid_file.parent.parent)
        if found is None or found[0] <= 1 or not alive(*found):
            continue
        try:
            if os.getpgid(found[0]) == found[0] != own_group:
                os.killpg(found[0], signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
