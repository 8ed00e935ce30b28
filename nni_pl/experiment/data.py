"""What NNI's ``Experiment`` query methods return: ``TrialResult``, ``TrialMetricData``, ``TrialJob``.

The field names are NNI's (``trialJobId``, ``parameterId``, ...), so code written against ``nni.experiment``
reads them unchanged; times are milliseconds since the epoch, as NNI's REST API gives them. Each record also
reads like a dict (``r["value"]``, ``dict(r)``) and compares equal to its dict form, which is what
``export_data()`` returned before it returned records.

Example:
    >>> r = TrialResult(parameter={"lr": 0.1}, value=0.93, trialJobId="Ab3xY")
    >>> r.value, r["trialJobId"], dict(r) == {"parameter": {"lr": 0.1}, "value": 0.93, "trialJobId": "Ab3xY"}
    (0.93, 'Ab3xY', True)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nni_pl.experiment import store as st

__all__ = ["TrialHyperParameters", "TrialJob", "TrialMetricData", "TrialResult"]


class _Record:
    """Dict-style reading and comparison for the dataclasses below."""

    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict (nested records too)."""
        return {k: _plain(getattr(self, k)) for k in self.keys()}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Record):
            return type(other) is type(self) and self.to_dict() == other.to_dict()
        if isinstance(other, Mapping):
            return self.to_dict() == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _plain(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


@dataclass(eq=False, kw_only=True)
class TrialResult(_Record):
    """A trial's final result, as NNI's ``Experiment.export_data()`` lists it.

    Attributes:
        parameter: the trial's hyperparameters.
        value: its final result (a number, or a dict with ``default``).
        trialJobId: the trial's id.

    Example:
        >>> TrialResult(parameter={"x": 1}, value=0.5, trialJobId="Ab3xY").value
        0.5
    """

    parameter: dict[str, Any]
    value: Any
    trialJobId: str


@dataclass(eq=False, kw_only=True)
class TrialMetricData(_Record):
    """One reported metric, as NNI's ``Experiment.get_job_metrics()`` gives it.

    Attributes:
        timestamp: when it was reported, in milliseconds since the epoch.
        trialJobId: the trial's id.
        parameterId: the id of the trial's parameter set, as a string (NNI's REST form).
        type: ``"PERIODICAL"`` (an intermediate result) or ``"FINAL"``.
        sequence: the index of an intermediate result (0 for the final one).
        data: the value reported.

    Example:
        >>> TrialMetricData(timestamp=0, trialJobId="Ab3xY", parameterId="0", type="FINAL", sequence=0, data=0.5).data
        0.5
    """

    timestamp: int
    trialJobId: str
    parameterId: str | None
    type: str
    sequence: int
    data: Any


@dataclass(eq=False, kw_only=True)
class TrialHyperParameters(_Record):
    """A trial's parameter set with where it came from (NNI's ``hyperParameters`` entries).

    Example:
        >>> TrialHyperParameters(parameter_id=0, parameter_source="algorithm", parameters={"x": 1}).parameters
        {'x': 1}
    """

    parameter_id: int | None
    parameter_source: str
    parameters: dict[str, Any]
    parameter_index: int = 0


@dataclass(eq=False, kw_only=True)
class TrialJob(_Record):
    """One trial, as NNI's ``Experiment.list_trial_jobs()`` and ``get_trial_job()`` return it.

    Attributes:
        trialJobId, status, sequenceId: the trial's id, NNI status name and sequence number.
        hyperParameters: its parameter set (one :class:`TrialHyperParameters`).
        logPath, stderrPath: its folder and its stderr file.
        startTime, endTime: milliseconds since the epoch (``None`` while unknown).
        finalMetricData: its final result, if reported (one :class:`TrialMetricData`).
        message: why it ended, when it failed.
        platform: the training platform it ran on (``local``, ``remote``...; hybrid experiments spread their
            trials over several, as NNI's WebUI shows); ``None`` before it started.

    Example:
        >>> TrialJob(trialJobId="Ab3xY", status="SUCCEEDED", sequenceId=0).status
        'SUCCEEDED'
    """

    trialJobId: str
    status: str
    sequenceId: int
    hyperParameters: list[TrialHyperParameters] = field(default_factory=list)
    logPath: str = ""
    startTime: int | None = None
    endTime: int | None = None
    finalMetricData: list[TrialMetricData] = field(default_factory=list)
    stderrPath: str = ""
    message: str = "--"
    platform: str | None = None


def metric_data(m: st.MetricRow, parameter_id: int | None) -> TrialMetricData:
    """A stored metric as NNI's :class:`TrialMetricData`."""
    return TrialMetricData(
        timestamp=_ms(m.timestamp) or 0,
        trialJobId=m.trial_id,
        parameterId=None if parameter_id is None else str(parameter_id),
        type=m.type,
        sequence=m.sequence,
        data=m.value,
    )


def trial_job(t: st.TrialRow, finals: Sequence[st.MetricRow] = ()) -> TrialJob:
    """A stored trial (and its FINAL metric rows) as NNI's :class:`TrialJob`."""
    return TrialJob(
        trialJobId=t.trial_id,
        status=t.status,
        sequenceId=t.sequence_id,
        hyperParameters=[
            TrialHyperParameters(
                parameter_id=t.parameter_id, parameter_source=t.parameter_source, parameters=t.parameters
            )
        ],
        logPath=t.trial_dir,
        startTime=_ms(t.started_at),
        endTime=_ms(t.ended_at),
        finalMetricData=[metric_data(m, t.parameter_id) for m in finals],
        stderrPath=str(Path(t.trial_dir) / "stderr"),
        message=(t.error or "").strip().splitlines()[-1] if t.error else "--",
        platform=t.platform,
    )
