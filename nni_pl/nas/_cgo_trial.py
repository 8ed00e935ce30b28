"""The entry point of a merged CGO trial: ``python -m nni_pl.nas._cgo_trial JOBS.json``.

:class:`~nni_pl.nas.cgo_service.CgoTrainingService` writes ``JOBS.json`` (the NAS spec's path, ``max_models`` and
one record per trial: ids, trial directory, parameters) and starts this module once for the whole group. It
trains the group with :func:`nni_pl.nas.cgo.run_merged_trials`; each trial's reports go to its own
``metrics.jsonl``. Every trial gets its own ``.nni/exitcode`` as soon as its fate is known (``0`` once it
reported its final result, ``143`` once it left the run on request; ``1`` at the end for a model that failed
also alone, with the error appended to the trial's ``stderr``), which the service turns into one trial end
per trial, so a trial ends when its model does, not when the whole group does. A trial is asked to stop with its ``.nni/stop`` file (what the manager
writes for the assessor, and what the service writes to cancel one trial of the group): its model leaves
the merged run at the next training step and the others go on.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["JOBS_FILE", "MARKER_FILE", "main", "run_jobs"]

JOBS_FILE = "jobs.json"
#: written into each trial's directory: which merged process trained it (group, pid, group-mates)
MARKER_FILE = "cgo.json"

#: per-trial exit codes written by the merged process
EXIT_SUCCEEDED, EXIT_FAILED, EXIT_STOPPED = 0, 1, 143

log = logging.getLogger("nni_pl.nas.cgo_trial")


def _write_exitcode(trial_dir: Path, code: int) -> None:
    from nni_pl.trial import protocol

    protocol.write_exitcode(trial_dir, code)


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text.rstrip("\n") + "\n")


def _context_class() -> type:
    from nni_pl.trial import FINAL, TrialContext

    class _CgoContext(TrialContext):
        """A trial's context in a merged process: its final result also ends the trial (exit code 0)."""

        def report(self, kind: str, value: Any) -> None:
            super().report(kind, value)
            if kind == FINAL and self.trial_dir is not None:
                _write_exitcode(self.trial_dir, EXIT_SUCCEEDED)

    return _CgoContext


def run_jobs(jobs: dict[str, Any]) -> list[Any]:
    """Train the trials of ``jobs`` (the ``JOBS.json`` content) merged; write each trial's exit code.

    Returns:
        The :class:`~nni_pl.nas.cgo.ModelResult` of each trial, in the order of ``jobs["trials"]``.
    """
    from nni_pl.nas.cgo import STOPPED, run_merged_trials
    from nni_pl.training.process import process_start_time
    from nni_pl.trial import protocol

    spec = json.loads(Path(jobs["spec"]).read_text(encoding="utf-8"))
    code_dir = spec.get("code_directory")
    if code_dir and code_dir not in sys.path:
        sys.path.insert(0, code_dir)  # where the space's module is, as for a trial started there
    records = jobs["trials"]
    pid = os.getpid()
    started = process_start_time(pid)
    context_class = _context_class()
    contexts = []
    for rec in records:
        trial_dir = Path(rec["trial_dir"])
        (trial_dir / protocol.CONTROL_DIR).mkdir(parents=True, exist_ok=True)
        protocol.write_pid(trial_dir, pid, started)
        marker = {
            "group": jobs.get("group"),
            "pid": pid,
            "host": jobs.get("host"),
            "trials": [r["trial_id"] for r in records],
        }
        (trial_dir / MARKER_FILE).write_text(json.dumps(marker), encoding="utf-8")
        _append(
            trial_dir / "stdout",
            f"[nni-pl] trained by the merged CGO trial {jobs.get('group')} (pid {pid}) "
            f"with trials {', '.join(marker['trials'])}",
        )
        contexts.append(
            context_class(
                experiment_id=rec["experiment_id"],
                trial_id=rec["trial_id"],
                sequence_id=int(rec.get("sequence_id") or 0),
                trial_dir=trial_dir,
                parameters=rec["parameters"],
            )
        )
    log.info("merged CGO trial: %d trials %s", len(records), [r["trial_id"] for r in records])
    trials = [(rec["parameters"], ctx) for rec, ctx in zip(records, contexts)]
    stopped: set[int] = set()

    def should_stop(i: int) -> bool:
        if i in stopped:
            return True
        if not contexts[i].stop_requested():
            return False
        stopped.add(i)  # its model leaves the run now: the trial ends now
        _write_exitcode(Path(records[i]["trial_dir"]), EXIT_STOPPED)
        log.info("trial %s was asked to stop; its model leaves the merged run", records[i]["trial_id"])
        return True

    try:
        results = run_merged_trials(
            spec,
            trials,
            max_models=int(jobs.get("max_models") or len(records) or 1),
            should_stop=should_stop,
        )
    finally:
        for ctx in contexts:
            ctx.close()
    for rec, result in zip(records, results):
        trial_dir = Path(rec["trial_dir"])
        written = protocol.read_exitcode(trial_dir)
        if written is not None and result.status != "failed":
            continue  # ended already (final result reported, or stopped)
        if result.status == "succeeded":
            code = EXIT_SUCCEEDED
        elif result.status == STOPPED:
            code = EXIT_STOPPED
        else:
            code = EXIT_FAILED
            _append(trial_dir / "stderr", f"CGO: this trial's model failed (also alone): {result.error}")
        _write_exitcode(trial_dir, code)
        log.info("trial %s: %s %s", rec["trial_id"], result.status, result.error)
    return results


def _wait_for(path: Path, seconds: float) -> bool:
    """Wait until ``path`` exists (the service seals the group): warm up meanwhile."""
    if path.exists():
        return True
    import lightning.pytorch  # noqa: F401 - imported while the group fills, not after
    import torch  # noqa: F401

    import nni_pl.nas.cgo  # noqa: F401

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.05)
    return path.exists()


def main(argv: list[str] | None = None) -> int:
    """``python -m nni_pl.nas._cgo_trial JOBS.json [WAIT_S]``: wait up to ``WAIT_S`` seconds for the file."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (1, 2):
        sys.stderr.write("usage: python -m nni_pl.nas._cgo_trial JOBS.json [WAIT_S]\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    path = Path(argv[0])
    if not _wait_for(path, float(argv[1]) if len(argv) == 2 else 0.0):
        sys.stderr.write(
            f"no trials to train: {path} was not written in time (is the experiment manager gone?)\n"
        )
        return 1
    run_jobs(json.loads(path.read_text(encoding="utf-8")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
