"""Transitional aliases: the contract moved to :mod:`nni_pl.training.service`, the files to
:mod:`nni_pl.trial.protocol`. Removed once every importer uses those."""

from __future__ import annotations

from pathlib import Path

from nni_pl.training.service import SubmitInfo, TrainingService, TrialEnd, TrialJob
from nni_pl.trial import protocol as _protocol
from nni_pl.trial.protocol import EXITCODE_FILE, PID_FILE, MetricsReader, stderr_tail

__all__ = [
    "EXITCODE_FILE",
    "PID_FILE",
    "MetricsReader",
    "SubmitInfo",
    "TrainingService",
    "TrialEnd",
    "TrialJob",
    "read_exitcode",
    "stderr_tail",
    "write_parameter_file",
]


def read_exitcode(control_dir: Path) -> tuple[int, float] | None:
    return _protocol.read_exitcode(Path(control_dir).parent)


def write_parameter_file(job: TrialJob) -> None:
    _protocol.write_parameter_file(job.trial_dir, job.parameter_record())
