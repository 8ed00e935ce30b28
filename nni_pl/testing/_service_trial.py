"""The trial program of :class:`nni_pl.testing.TrainingServiceTestCase`: its behaviour comes from its parameters.

One program serves every kind of training service: run it as a command (``python -m
nni_pl.testing._service_trial``, :data:`TRIAL_COMMAND`), call :func:`run` as a function trial, or let a NAS
trial evaluate with :func:`evaluate` (:func:`nas_spec` is a NAS spec whose evaluator calls it). It reads its
parameters through the trial SDK, and these keys of them say what it does, in this order (all optional):

* ``intermediates``: metrics reported one after another with ``report_intermediate_result``;
  ``step_sleep`` seconds apart;
* ``gates``: ``[[index, path], ...]``: before reporting intermediate ``index``, wait until the file ``path``
  exists (at most ``gate_timeout`` seconds, 120 by default; then it ends with :data:`EXIT_GATE_TIMEOUT`);
* ``final``: the metric reported with ``report_final_result``;
* ``spawn_child``: start a child process (a Python that sleeps ``child_sleep`` seconds, 120 by default) and
  keep it running;
* ``sleep``: seconds to sleep before ending;
* ``stderr``: text written to the standard error just before ending;
* ``exit_code``: end with ``sys.exit(exit_code)``;
* ``raise``: end by raising ``RuntimeError(raise)``.

It keeps a record in its output folder (:data:`RECORD_FILE`, JSON, replaced atomically on every change):
the parameters the SDK gave it (``parameters``) and those passed as an argument (``argument``, function trials),
its ids, its pid and process start time, its child's, and when it started and ended, so a test can check
what arrived and find every process the trial made.

Example:
    >>> run({"intermediates": [0.1, 0.2], "final": 0.5})   # standalone: reports are logged, no record kept
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nni_pl
from nni_pl.training.process import process_start_time

__all__ = [
    "EXIT_GATE_TIMEOUT",
    "RECORD_FILE",
    "TRIAL_COMMAND",
    "evaluate",
    "main",
    "nas_space",
    "nas_spec",
    "read_record",
    "run",
]

#: the command that runs this program as a command trial (``python`` is the interpreter nni-pl runs under)
TRIAL_COMMAND = "python -m nni_pl.testing._service_trial"
#: the trial's record, in its output folder
RECORD_FILE = "service_trial.json"
#: the exit code of a trial whose gate file never appeared
EXIT_GATE_TIMEOUT = 70
_MODULE = "nni_pl.testing._service_trial"  # not __name__: that is "__main__" when run with -m


def _write_record(folder: Path | None, record: Mapping[str, Any]) -> None:
    if folder is None:
        return
    tmp = folder / (RECORD_FILE + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    tmp.replace(folder / RECORD_FILE)


def read_record(trial_dir: Path) -> dict[str, Any] | None:
    """The record the trial keeps in ``trial_dir``, or ``None`` before it started."""
    try:
        return json.loads((Path(trial_dir) / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _wait_for_gate(path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def run(params: Mapping[str, Any] | None = None) -> None:
    """Run the behaviour its parameters describe (see the module docstring); ``params`` is what a function
    trial is called with, ``None`` for a command trial (both read the SDK's parameters)."""
    sdk = nni_pl.get_next_parameter()
    behaviour = dict(params) if params is not None else sdk
    folder = nni_pl.get_output_dir()
    pid = os.getpid()
    record: dict[str, Any] = {
        "parameters": sdk,
        "argument": None if params is None else dict(params),
        "experiment_id": nni_pl.get_experiment_id(),
        "trial_id": nni_pl.get_trial_id(),
        "sequence_id": nni_pl.get_sequence_id(),
        "pid": pid,
        "pid_started_at": process_start_time(pid),
        "started": time.time(),
    }
    _write_record(folder, record)

    gates = {int(index): str(path) for index, path in behaviour.get("gates") or []}
    timeout = float(behaviour.get("gate_timeout", 120.0))
    for index, value in enumerate(behaviour.get("intermediates") or []):
        if index in gates and not _wait_for_gate(gates[index], timeout):
            sys.stderr.write(f"service trial: the gate {gates[index]} did not open within {timeout} s\n")
            sys.stderr.flush()
            sys.exit(EXIT_GATE_TIMEOUT)
        if index and behaviour.get("step_sleep"):
            time.sleep(float(behaviour["step_sleep"]))
        nni_pl.report_intermediate_result(value)
    if "final" in behaviour:
        nni_pl.report_final_result(behaviour["final"])

    if behaviour.get("spawn_child"):
        child_sleep = float(behaviour.get("child_sleep", 120.0))
        child = subprocess.Popen(
            [sys.executable, "-c", f"import time; time.sleep({child_sleep!r})"],
            stdin=subprocess.DEVNULL,
        )
        record.update(child_pid=child.pid, child_started_at=process_start_time(child.pid))
        _write_record(folder, record)
    if behaviour.get("sleep"):
        time.sleep(float(behaviour["sleep"]))

    record["ended"] = time.time()
    _write_record(folder, record)
    if behaviour.get("stderr"):
        sys.stderr.write(str(behaviour["stderr"]) + "\n")
        sys.stderr.flush()
    if behaviour.get("raise"):
        raise RuntimeError(str(behaviour["raise"]))
    if behaviour.get("exit_code"):
        sys.exit(int(behaviour["exit_code"]))


def evaluate(model: Any) -> None:
    """The evaluation function of a NAS trial (``FunctionalEvaluator``): the behaviour of its parameters."""
    run()


def nas_space() -> Any:
    """A model space with nothing to choose: NAS trials of :func:`nas_spec` are this program with parameters."""
    from nni_pl.nas import ModelSpace

    class NothingToChoose(ModelSpace):
        def forward(self, x: Any) -> Any:
            return x

    return NothingToChoose()


def nas_spec(*, code_directory: str | None = None) -> dict[str, Any]:
    """A NAS experiment's trial spec (``nas.json``) whose trials run this program (see :func:`evaluate`)."""
    spec: dict[str, Any] = {
        "model_space": {"import_path": f"{_MODULE}:nas_space", "init_kwargs": {}},
        "evaluator": {
            "class": "nni_pl.nas.evaluator.functional:FunctionalEvaluator",
            "kwargs": {"function": f"{_MODULE}:evaluate"},
        },
        "seed": 0,
    }
    if code_directory is not None:
        spec["code_directory"] = code_directory
    return spec


def main() -> int:
    """``python -m nni_pl.testing._service_trial``: a command trial."""
    run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
