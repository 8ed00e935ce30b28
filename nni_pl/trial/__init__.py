"""The trial SDK: what trial code calls to get its parameters and report metrics.

The names and contracts are NNI's (``nni.get_next_parameter()`` etc.). Outside an experiment the same
script runs standalone: parameters come back empty (or from the ``NNI_PL_PARAMETERS`` environment
variable: JSON text or a JSON/YAML file), ids are ``"STANDALONE"``/``0`` and reports are logged.

A report holds at most 64 KiB of JSON (a number, or a dict of a few named values): a larger one raises
:class:`MetricTooLargeError`. The environment variable ``NNI_PL_MAX_METRIC_BYTES`` sets another limit; set it
where ``nni-pl launch`` runs, as trials inherit it and the manager skips larger lines in ``metrics.jsonl``.

Example:
    >>> import nni_pl as nni
    >>> nni.get_next_parameter()   # standalone: nothing to tune
    {}
    >>> nni.get_trial_id()
    'STANDALONE'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nni_pl.trial._context import (
    MetricTooLargeError,
    TrialContext,
    activate,
    current,
    normalize_metric,
)
from nni_pl.trial.protocol import (
    DEFAULT_MAX_METRIC_BYTES,
    FINAL,
    PERIODICAL,
    TRIAL_BUDGET,
    TrialSetupError,
    max_metric_bytes,
)

__all__ = [
    "DEFAULT_MAX_METRIC_BYTES",
    "MetricTooLargeError",
    "TrialContext",
    "TrialSetupError",
    "activate",
    "current",
    "enable_graceful_stop",
    "get_current_parameter",
    "get_experiment_id",
    "get_next_parameter",
    "get_output_dir",
    "get_sequence_id",
    "get_trial_budget",
    "get_trial_id",
    "max_metric_bytes",
    "normalize_metric",
    "report_final_result",
    "report_intermediate_result",
    "should_stop",
]


def get_next_parameter() -> dict[str, Any]:
    """The parameters the tuner chose for this trial, keyed by search-space name.

    Unlike NNI (which returns ``None`` from the second call on), every call returns the same parameters,
    so a model and a datamodule may both ask. Standalone: ``{}`` or the ``NNI_PL_PARAMETERS`` override.

    Raises:
        TrialSetupError: ``NNI_PL_PARAMETERS`` or the trial's ``parameter.json`` cannot be read (one line naming
            it, the value given and what is accepted).
    """
    return dict(current().parameters)


def get_current_parameter(tag: str | None = None) -> Any:
    """The current parameters, or the one named ``tag`` (``None`` if the space has no such key)."""
    params = current().parameters
    return dict(params) if tag is None else params.get(tag)


def report_intermediate_result(metric: Any) -> None:
    """Report a per-epoch/per-step metric (a number, or a dict with a numeric ``default``).

    The report is on disk when this returns; the assessor sees it as the next point of the trial's curve.

    Raises:
        TypeError: if ``metric`` is neither a number nor a dict with a numeric ``default``.
        MetricTooLargeError: if ``metric`` is over ``NNI_PL_MAX_METRIC_BYTES`` (64 KiB) as JSON.
    """
    current().report(PERIODICAL, metric)


def report_final_result(metric: Any) -> None:
    """Report the trial's result, which the tuner optimises (a number or a dict with a numeric ``default``).

    A refused report does not count: the trial may report a corrected final result.

    Raises:
        TypeError: if ``metric`` is neither a number nor a dict with a numeric ``default``.
        MetricTooLargeError: if ``metric`` is over ``NNI_PL_MAX_METRIC_BYTES`` (64 KiB) as JSON.
    """
    current().report(FINAL, metric)


def get_experiment_id() -> str:
    return current().experiment_id


def get_trial_id() -> str:
    return current().trial_id


def get_sequence_id() -> int:
    return current().sequence_id


def get_output_dir() -> Path | None:
    """The trial's own directory (``NNI_OUTPUT_DIR``): put logs and checkpoints there; ``None`` standalone."""
    return current().trial_dir


def get_trial_budget() -> float | None:
    """The budget a Hyperband/BOHB advisor gave this trial (NNI's ``TRIAL_BUDGET`` key), or ``None``."""
    return current().parameters.get(TRIAL_BUDGET)


def should_stop() -> bool:
    """Whether the manager asked this trial to stop (the assessor judged it bad, or a user killed it).

    Trials that check this and exit on their own should call :func:`enable_graceful_stop` once, so the
    manager waits for them instead of terminating them at once.
    """
    return current().stop_requested()


def enable_graceful_stop() -> None:
    """Declare that this trial polls :func:`should_stop` and exits cleanly (the Lightning callback does)."""
    current().declare_graceful()
